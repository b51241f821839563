"""Refusals: what an operation raises when its rules say no, with a reason for the user, and how a view answers."""

from __future__ import annotations

from typing import Callable, TypeVar

from flask import flash
from sqlalchemy.orm import Session

T = TypeVar("T")


class Refused(ValueError):
    """A request the rules refuse; ``reason`` is a sentence for the user, in their language.

    Each feature raises its own kind (``campaigns.common.CampaignError``,
    ``experiments.services.ExperimentError``), so that callers can tell them apart; views answer
    them all the same way through :func:`commit_or_refuse`.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def commit_or_refuse(
    session: Session,
    step: Callable[[], T],
    success: str | Callable[[T], str],
    refused: Callable[[str], str] | None = None,
) -> tuple[bool, T | None]:
    """Run ``step`` (operations that flush) in the request's transaction and say how it went.

    When it succeeds, commit and flash ``success`` (a message, or a function of the step's result,
    made after the step); when it raises :class:`Refused`, roll the whole request back (nothing
    half-written) and flash its reason, or ``refused(reason)``. Returns ``(True, result)`` or
    ``(False, None)``; any other exception goes on to the error page, which rolls back too.
    """
    try:
        result = step()
    except Refused as exc:
        session.rollback()
        flash(refused(exc.reason) if refused else exc.reason, "error")
        return False, None
    session.commit()
    flash(success(result) if callable(success) else success, "success")
    return True, result
