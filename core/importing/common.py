"""What every stage of the importer shares: its limits, the tables it writes and the message translator."""

from __future__ import annotations

from flask import has_request_context

from core.models import (
    Consent,
    Contact,
    Show,
    Spectator,
    Transaction,
    Venue,
)

KINDS = ("sales", "unsubscribes")
BATCH_SIZE = 20_000  # rows read, parsed and written at once
MAX_ERRORS = 100
MAX_UNKNOWN_DISCIPLINES = 100
SHOWS_KEPT = 1 << 14  # performances whose ids an import keeps from one batch to the next
READ_CHUNK = 1 << 20

_spectators = Spectator.__table__
_contacts = Contact.__table__
_consents = Consent.__table__
_shows = Show.__table__
_venues = Venue.__table__
_transactions = Transaction.__table__


def _(msgid: str, **variables) -> str:
    """The message in the user's language inside a request (French by default), plain English elsewhere."""
    if has_request_context():
        from flask_babel import gettext

        return gettext(msgid, **variables)
    return msgid % variables if variables else msgid
