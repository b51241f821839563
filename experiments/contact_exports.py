"""Contact lists in the formats of the e-mail tools Quebec venues use, each line with its unsubscribe link.

Three formats of the same lines (a venue's own test-arm recipients, ``services.contact_rows``):

- ``generic``: a spreadsheet CSV, headers in the reader's language (UTF-8 with a byte-order mark);
- ``mailchimp``: Mailchimp's audience import: its default fields ``Email Address``, ``First
  Name``, ``Last Name``, then one column per merge field (upper-case tags of at most 10
  characters, which the import creates or matches by name);
- ``cyberimpact``: Cyberimpact's contact import. Its documented list of import columns could not
  be consulted here; the assumption is that its import screen maps each column to a member field,
  so the columns are named after the member fields of its public API v4 (``email``,
  ``firstname``, ``lastname``, as public clients of ``apiv4.cyberimpact.com`` send them, and
  ``language`` in its locale codes ``fr_ca``/``en_ca``, those of its own pages), and the
  campaign's values follow as custom fields named plainly (to be created once in the account,
  then mapped by name).

The e-mail tools' formats are machine formats: fixed English column names whatever the reader's
language, comma-separated, UTF-8 without a byte-order mark (a mark would stick to the first column
name), dates in ISO 8601. Every line carries the recipient's code and message from their own arm's
promotion (``experiments.offers``), in their language, and their own unsubscribe link
(``experiments.unsubscribe``): it records the opt-out in the pilot, which the tool's own
unsubscribe link does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from flask_babel import gettext as _

from campaigns.models import Promotion
from experiments.services import ContactRow

FORMATS = ("generic", "mailchimp", "cyberimpact")
MAILCHIMP_COLUMNS = (
    "Email Address",
    "First Name",
    "Last Name",
    "LANGUAGE",
    "PROMOCODE",
    "OFFER",
    "MESSAGE",
    "VALIDFROM",
    "VALIDUNTIL",
    "ARM",
    "UNSUBURL",
)
CYBERIMPACT_COLUMNS = (
    "email",
    "firstname",
    "lastname",
    "language",
    "promo_code",
    "offer",
    "message",
    "valid_from",
    "valid_until",
    "arm",
    "unsubscribe_url",
)


@dataclass
class Export:
    """One download: its header, lines, and how it is written."""

    header: list[str]
    lines: list[tuple]
    suffix: str  # added to the file name ("" for the generic list)
    bom: bool


def generic_header() -> list[str]:
    return [
        _("Last name"),
        _("First name"),
        _("E-mail"),
        _("Language"),
        _("Arm"),
        _("Promotion code"),
        _("Promotion"),
        _("Message"),
        _("Valid from"),
        _("Valid until"),
        _("Unsubscribe link"),
    ]


def build(
    fmt: str, rows: Sequence[ContactRow], promotions: dict[str, Promotion | None], link: Callable[[ContactRow], str]
) -> Export:
    """The lines of a contact list in format ``fmt`` (one of :data:`FORMATS`).

    :param promotions: ``{test arm: its promotion}`` (``experiments.offers.arm_promotions``).
    :param link: the unsubscribe link of a line.
    :raises ValueError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown contact list format {fmt!r}")
    lines: list[tuple] = []
    for row in rows:
        promotion = promotions.get(row.arm)
        name = promotion.name(row.language) if promotion else None
        message = promotion.message(row.language) if promotion else None
        valid_from = promotion.valid_from if promotion else None
        valid_until = promotion.valid_until if promotion else None
        url = link(row)
        if fmt == "generic":
            lines.append(
                (
                    row.last_name,
                    row.first_name,
                    row.email,
                    row.language,
                    row.arm,
                    row.code,
                    name,
                    message,
                    valid_from,
                    valid_until,
                    url,
                )
            )
        else:
            language = f"{row.language}_ca" if fmt == "cyberimpact" else row.language
            lines.append(
                (
                    row.email,
                    row.first_name,
                    row.last_name,
                    language,
                    row.code,
                    name,
                    message,
                    valid_from,
                    valid_until,
                    row.arm,
                    url,
                )
            )
    if fmt == "generic":
        return Export(generic_header(), lines, "", True)
    columns = MAILCHIMP_COLUMNS if fmt == "mailchimp" else CYBERIMPACT_COLUMNS
    return Export(list(columns), lines, f"-{fmt}", False)
