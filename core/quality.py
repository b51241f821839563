"""Data quality of an organisation's imports: how often each field is filled in its sales, month by month."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select

from core import sql
from core.kept import read_kept, write_kept
from core.models import Contact, Spectator, Transaction, utcnow
from core.privacy import Cell, Release

MONTHS = 24  # the months shown, the latest first
WEAK = 0.5  # a field filled in fewer than half of the recent sales is worth adding to the exports
RECENT = 3  # the months that decide what to add
# A rate read from noisy counts is shown only for a month of at least this many σ of sales (its
# noise is then within about ±20 points); a smaller month's rates are hidden from others.
RATE_MIN_SIGMAS = 7

# field → the condition under which a sale has it (a buyer's own fields are read from the
# organisation's record of that buyer; "circumstance" counts when its label was recognised).
FIELDS = {
    "last_name": Contact.last_name.is_not(None),
    "first_name": Contact.first_name.is_not(None),
    "address": Contact.address.is_not(None),
    "postal_code": Contact.postal_code.is_not(None),
    "email": Contact.email.is_not(None),
    "phone": Contact.phone.is_not(None),
    "circumstance": Transaction.circumstance != "other",
    "channel": Transaction.channel.is_not(None),
    "order_id": Transaction.order_id.is_not(None),
    "customer_id": Contact.customer_id.is_not(None),
}
# Essential fields an import never lets through empty: always 100 %, not tabulated.
ALWAYS = ("amount", "tickets", "purchased_at", "show_date", "show_title")


@dataclass
class QualityCell:
    """One field in one month: the share of sales that have it (None when hidden), and the counts."""

    rate: float | None
    filled: int | None
    sales: int | None


@dataclass
class QualityMonth:
    month: str  # "2026-03"
    sales: int | None  # None when hidden (fewer than k, for someone else's data)
    cells: dict[str, QualityCell]


def _month(session, column):
    """``YYYY-MM`` of a timestamp column (SQLite stores it as ISO text: its first 7 characters)."""
    if sql.stores_text_datetimes(session):
        return func.substr(column, 1, 7)
    return func.to_char(column, "YYYY-MM")


def _first_month(today: dt.date, months: int) -> str:
    """``YYYY-MM`` of the first of the ``months`` months that end with ``today``'s."""
    first = today.year * 12 + today.month - 1 - (months - 1)  # counted from year 0
    return f"{first // 12:04d}-{first % 12 + 1:02d}"


def month_facts(session, organisation_ids: list[int], start: str) -> dict[int, list]:
    """The exact facts behind the fill rates of each organisation's sales, by month of purchase from
    ``start`` (``YYYY-MM``) on: ``{organisation id: [[month, sales, keysum, [filled of each field of
    FIELDS], [sum of their buyers' cell keys]], ...]}``, the latest month first. The key sums are
    the fingerprints (core.privacy.Cell) that key the noise of the protected figures. One statement
    for all the organisations (one pass over the district's recent sales when there are several)."""
    if not organisation_ids:
        return {}
    begin = dt.datetime(int(start[:4]), int(start[5:7]), 1)
    month = _month(session, Transaction.purchased_at).label("month")
    columns = [Transaction.organisation_id, month, func.count(), func.sum(Spectator.cell_key)]
    for condition in FIELDS.values():
        columns.append(func.sum(case((condition, 1), else_=0)))
        columns.append(func.sum(case((condition, Spectator.cell_key), else_=0)))
    query = (
        select(*columns)
        .select_from(Transaction)
        .join(Spectator, Spectator.id == Transaction.spectator_id)
        .outerjoin(
            Contact,
            and_(
                Contact.organisation_id == Transaction.organisation_id, Contact.spectator_id == Transaction.spectator_id
            ),
        )
        .where(
            Transaction.organisation_id == organisation_ids[0]
            if len(organisation_ids) == 1
            else Transaction.organisation_id.in_(organisation_ids),
            Transaction.purchased_at >= begin,
        )
        .group_by(Transaction.organisation_id, month)
        .order_by(Transaction.organisation_id, month.desc())
    )
    facts: dict[int, list] = {int(o): [] for o in organisation_ids}
    for organisation_id, month_, sales, keysum, *fields in session.execute(query).all():
        facts[int(organisation_id)].append(
            [
                str(month_),
                int(sales),
                int(keysum or 0),
                [int(fields[2 * i] or 0) for i in range(len(FIELDS))],
                [int(fields[2 * i + 1] or 0) for i in range(len(FIELDS))],
            ]
        )
    return facts


def rates_of(
    facts: list, organisation_id: int, *, release: Release | None = None, start: str = "", months: int = MONTHS
) -> list[QualityMonth]:
    """The fill rates that the month facts of :func:`month_facts` give, for the months from
    ``start`` on (up to ``months`` of them, the latest first): exact without ``release``, else each
    count noisy (see :func:`fill_rates`), the noise drawn now."""
    result = []
    for month, sales, keysum, filled, keys in [f for f in facts if f[0] >= start][:months]:
        if release is None:
            cells = {
                name: QualityCell(filled[i] / sales if sales else None, filled[i], sales)
                for i, name in enumerate(FIELDS)
            }
            result.append(QualityMonth(month, sales, cells))
            continue
        base = f"quality.{organisation_id}.{month}"
        whole = release.figure(f"{base}.sales", Cell.of(sales, keysum))
        cells = {}
        for i, name in enumerate(FIELDS):
            part = release.figure(f"{base}.{name}", Cell.of(filled[i], keys[i]))
            if whole.value is None or whole.value < RATE_MIN_SIGMAS * release.sigma or part.value is None:
                cells[name] = QualityCell(None, None, whole.value)  # too few sales to tell: hidden
            else:
                cells[name] = QualityCell(min(part.value / whole.value, 1.0), part.value, whole.value)
        result.append(QualityMonth(month, whole.value, cells))
    return result


def fill_rates(
    session, organisation_id: int, *, release: Release | None = None, today: dt.date | None = None, months: int = MONTHS
) -> list[QualityMonth]:
    """The share of the organisation's sales that have each field of :data:`FIELDS`, by month of
    purchase, the latest first (up to ``months`` months), counted now from the sales.

    :param release: None for the organisation's own users: exact figures. For anyone else (staff,
        administrators) the pooled-figure protection: each count is a noisy figure of
        :class:`core.privacy.Release` keyed by the sales' fingerprint (their count and the sum of
        their buyers' cell keys), a month or a field under k sales hidden, rates from noisy counts
        and only for months of at least RATE_MIN_SIGMAS·σ sales.
    """
    start = _first_month(today or dt.date.today(), months)
    facts = month_facts(session, [organisation_id], start)[organisation_id]
    return rates_of(facts, organisation_id, release=release, start=start, months=months)


# --- kept ready (issue 18) ----------------------------------------------------------------------------
#
# At a million spectators an organisation's two years of sales are seconds to read: the month facts
# are kept (core.kept) with what they move with, and a page reads them. An organisation's facts move
# with its own imports (its sales, and its records of their buyers) and with erasures (which delete
# the buyers' records); the ``imports.quality`` job counts again those whose fingerprint moved, and
# a page that finds them moved (a venue looking at its import at once) counts them itself.

SETTING_PREFIX = "quality:"


def _setting_name(organisation_id: int) -> str:
    return f"{SETTING_PREFIX}{organisation_id}"


def quality_fingerprint(session, organisation_id: int) -> list[int]:
    """What an organisation's month facts move with: its imports (core.headline.imports_fingerprint)
    and the erasures on request (each an audit event)."""
    from core.headline import imports_fingerprint
    from core.models import PERSON_ERASED, AuditEvent

    erasures = session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == PERSON_ERASED))
    return [*imports_fingerprint(session, organisation_id), int(erasures or 0)]


def _still_good(kept: dict | None, fingerprint: list[int], start: str) -> bool:
    return (
        kept is not None
        and kept.get("fingerprint") == fingerprint
        and kept.get("fields") == list(FIELDS)
        and kept.get("start", "9999") <= start
    )


def keep_month_facts(session, organisation_ids: list[int], today: dt.date | None = None) -> dict[int, list]:
    """Count and keep the month facts of the organisations (from :data:`MONTHS` months before
    ``today``), each with its fingerprint, read before counting (an import committed meanwhile
    leaves them behind, for the next run). Flushes; the caller commits."""
    start = _first_month(today or dt.date.today(), MONTHS)
    fingerprints = {o: quality_fingerprint(session, o) for o in organisation_ids}
    began = time.perf_counter()
    facts = month_facts(session, organisation_ids, start)
    seconds = round(time.perf_counter() - began, 3)
    for organisation_id, months in facts.items():
        write_kept(
            session,
            _setting_name(organisation_id),
            {
                "fingerprint": fingerprints[organisation_id],
                "fields": list(FIELDS),
                "start": start,
                "computed_at": utcnow().isoformat(timespec="seconds"),
                "seconds": seconds,
                "months": months,
            },
        )
    return facts


def kept_fill_rates(
    session, organisation_id: int, *, release: Release | None = None, today: dt.date | None = None
) -> list[QualityMonth]:
    """:func:`fill_rates` from the kept month facts (the noise drawn now); counted and kept first
    when none are kept or the organisation's data moved since. Flushes when it counts; the caller commits."""
    start = _first_month(today or dt.date.today(), MONTHS)
    kept = read_kept(session, _setting_name(organisation_id))
    if kept is not None and _still_good(kept, quality_fingerprint(session, organisation_id), start):
        facts = kept["months"]
    else:
        facts = keep_month_facts(session, [organisation_id], today)[organisation_id]
    return rates_of(facts, organisation_id, release=release, start=start)


def keep_quality(session, commit=None, today: dt.date | None = None) -> dict:
    """The ``imports.quality`` job: count again the month facts of every organisation whose data
    moved since they were kept (or that were never kept, or kept for other fields), the due
    organisations in one statement; committed when ``commit`` is given.

    :returns: ``{"counted": n, "seconds": s}``.
    """
    from core.models import Organisation

    began = time.perf_counter()
    start = _first_month(today or dt.date.today(), MONTHS)
    due = [
        organisation_id
        for organisation_id in session.scalars(select(Organisation.id).order_by(Organisation.id))
        if not _still_good(
            read_kept(session, _setting_name(organisation_id)), quality_fingerprint(session, organisation_id), start
        )
    ]
    if due:
        tuned = sql.tune_for_large_joins(session)
        keep_month_facts(session, due, today)
        if tuned:
            sql.untune_large_joins(session)
        if commit is not None:
            commit()
    return {"counted": len(due), "seconds": round(time.perf_counter() - began, 3)}


def to_add(months: list[QualityMonth], recent: int = RECENT, weak: float = WEAK) -> list[str]:
    """The fields filled in fewer than ``weak`` of the sales of the latest ``recent`` months: what
    the organisation should add to its exports."""
    latest = months[:recent]
    weak_fields = []
    for name in FIELDS:
        filled = sum(m.cells[name].filled or 0 for m in latest if m.cells[name].sales)
        sales = sum(m.cells[name].sales or 0 for m in latest if m.cells[name].sales)
        if sales and filled / sales < weak:
            weak_fields.append(name)
    return weak_fields
