"""What every campaign operation shares: its errors, who acts (a user or the scheduler) and its
audit entries, ids in chunks."""

from __future__ import annotations

from typing import Iterator

from core.errors import Refused
from core.models import AuditEvent, audit

SCHEDULER = "scheduler"


class CampaignError(Refused):
    """A request the campaign rules refuse; ``reason`` is a sentence for the user."""


class TransitionRefused(CampaignError):
    """A workflow transition whose conditions are not met."""


def actor_name(user) -> str:
    """The audit log's actor: the user's e-mail, or ``scheduler`` for a job."""
    return getattr(user, "email", None) or SCHEDULER


def actor_id(user) -> int | None:
    """The acting user's id, or None for a job."""
    return getattr(user, "id", None)


def audit_as(session, user, action: str, **fields) -> AuditEvent:
    """Write ``action`` to the audit log as done by ``user`` (a user, or None for a job: the
    scheduler); ``fields`` as :func:`core.models.audit` takes them."""
    return audit(session, action, actor=actor_name(user), user_id=actor_id(user), **fields)


def in_chunks(values: list, size: int = 500) -> Iterator[list]:
    """``values`` in lists of at most ``size``, so that an ``IN (...)`` stays within every engine's limit."""
    for i in range(0, len(values), size):
        yield values[i : i + size]
