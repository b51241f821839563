"""Unsubscribe links: a signed token per recipient, and the opt-out it records (DESIGN.md §10).

Each line of a contact list carries a link ``/experiments/unsubscribe/<token>``: the token signs
the recipient's id (``itsdangerous``, keyed by the application's secret, with its own salt), so
it names one test-arm recipient of one campaign, sent by one organisation, and cannot be forged or
altered. It never expires: an unsubscribe link must keep working long after the message is sent
(Canada's anti-spam law asks for at least 60 days). It holds no personal data.

Following it (a confirmation, then a post: mail filters that open links must not unsubscribe
anyone) withdraws the person's e-mail consent at that organisation, and, since the link answers a
district campaign they received through that organisation, opts them out district-wide, as an
unsubscribe list that answers a campaign does (``core.importing``). Recording it again changes
nothing. Every use is in the audit log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

from flask import current_app, url_for
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from core.models import Consent, Contact, Organisation, Spectator, audit, utcnow
from experiments.models import Recipient

TOKEN_SALT = "quartier-pilot/unsubscribe/v1"
ACTOR = "recipient (unsubscribe link)"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


def token_for(recipient_id: int) -> str:
    """The signed token of a recipient's unsubscribe link."""
    return str(_serializer().dumps(int(recipient_id)))


def recipient_of(token: str) -> int | None:
    """The recipient id a token signs, or None when the token is forged, altered or malformed."""
    try:
        value = _serializer().loads(token)
    except (BadSignature, ValueError, TypeError, UnicodeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def link_maker() -> Callable[[int, str], str]:
    """``link(recipient_id, language)``: the absolute unsubscribe link of a recipient, in their
    language (``PUBLIC_URL`` when set, else the address the request came to). The address is
    built once, so that a list of many thousand lines only signs a token per line."""
    placeholder = "TOKEN-PLACEHOLDER"
    base = (current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    path = url_for("experiments.unsubscribe", token=placeholder)
    template = base + path if base else url_for("experiments.unsubscribe", token=placeholder, _external=True)
    serializer = _serializer()

    def link(recipient_id: int, language: str) -> str:
        query = "?" + urlencode({"lang": language}) if language else ""
        return template.replace(placeholder, str(serializer.dumps(int(recipient_id)))) + query

    return link


def link_for(recipient_id: int, language: str) -> str:
    """The absolute unsubscribe link of one recipient (:func:`link_maker`)."""
    return link_maker()(recipient_id, language)


@dataclass
class Unsubscribed:
    """What following a link found and did."""

    organisation: str  # the sending organisation's name, which the person knows
    changed: bool  # False when it was already recorded


def find(session: Session, token: str) -> tuple[Recipient, Organisation] | None:
    """The test-arm recipient and sending organisation a token names (None: a bad token)."""
    recipient_id = recipient_of(token)
    recipient = session.get(Recipient, recipient_id) if recipient_id else None
    if recipient is None or recipient.arm == "control":
        return None
    organisation = session.get(Organisation, recipient.organisation_id)
    return (recipient, organisation) if organisation is not None else None


def record(session: Session, token: str, now: dt.datetime | None = None) -> Unsubscribed | None:
    """Record the opt-out a token asks for (flushes; idempotent). None for a bad token.

    Withdraws every e-mail consent the sending organisation holds for the person, and opts the
    spectator out district-wide (``Spectator.opted_out_at``) if not already.
    """
    found = find(session, token)
    if found is None:
        return None
    recipient, organisation = found
    now = now or utcnow()
    contact_id = session.scalar(
        select(Contact.id).where(
            Contact.organisation_id == recipient.organisation_id, Contact.spectator_id == recipient.spectator_id
        )
    )
    withdrawn = 0
    if contact_id is not None:  # an erased contact has nothing left to withdraw
        result: CursorResult = session.execute(  # type: ignore[assignment]
            update(Consent)
            .where(Consent.contact_id == contact_id, Consent.channel == "email", Consent.withdrawn_at.is_(None))
            .values(withdrawn_at=now)
            .execution_options(synchronize_session=False)
        )
        withdrawn = result.rowcount or 0
    result = session.execute(  # type: ignore[assignment]
        update(Spectator)
        .where(Spectator.id == recipient.spectator_id, Spectator.opted_out_at.is_(None))
        .values(opted_out_at=now)
        .execution_options(synchronize_session=False)
    )
    district = result.rowcount or 0
    changed = bool(withdrawn or district)
    audit(
        session,
        "unsubscribe.link",
        actor=ACTOR,
        object_type="recipient",
        object_id=recipient.id,
        organisation_id=recipient.organisation_id,
        experiment_id=recipient.experiment_id,
        consents_withdrawn=int(withdrawn),
        district_opt_out=bool(district),
        already=not changed,
    )
    session.flush()
    return Unsubscribed(organisation.name, changed)
