"""Data quality of an organisation's imports: how often each field is filled in its sales, month by month."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select

from core import sql
from core.models import Contact, Spectator, Transaction
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


def fill_rates(
    session, organisation_id: int, *, release: Release | None = None, today: dt.date | None = None, months: int = MONTHS
) -> list[QualityMonth]:
    """The share of the organisation's sales that have each field of :data:`FIELDS`, by month of
    purchase, the latest first (up to ``months`` months).

    :param release: None for the organisation's own users: exact figures. For anyone else (staff,
        administrators) the pooled-figure protection: each count is a noisy figure of
        :class:`core.privacy.Release` keyed by the sales' fingerprint (their count and the sum of
        their buyers' cell keys), a month or a field under k sales hidden, rates from noisy counts
        and only for months of at least RATE_MIN_SIGMAS·σ sales.
    """
    today = today or dt.date.today()
    first = today.year * 12 + today.month - 1 - (months - 1)  # the first month shown, counted from year 0
    start = dt.datetime(first // 12, first % 12 + 1, 1)
    month = _month(session, Transaction.purchased_at).label("month")
    columns = [month, func.count().label("sales")]
    for name, condition in FIELDS.items():
        columns.append(func.sum(case((condition, 1), else_=0)).label(f"n_{name}"))
        if release is not None:  # the fingerprints that key the noise (the exact figures need none)
            columns.append(func.sum(case((condition, Spectator.cell_key), else_=0)).label(f"k_{name}"))
    query = select(*columns).select_from(Transaction)
    if release is not None:
        query = query.add_columns(func.sum(Spectator.cell_key).label("keysum")).join(
            Spectator, Spectator.id == Transaction.spectator_id
        )
    query = (
        query.outerjoin(
            Contact,
            and_(
                Contact.organisation_id == Transaction.organisation_id, Contact.spectator_id == Transaction.spectator_id
            ),
        )
        .where(Transaction.organisation_id == organisation_id, Transaction.purchased_at >= start)
        .group_by(month)
        .order_by(month.desc())
        .limit(months)
    )
    result = []
    for row in session.execute(query).mappings():
        if release is None:
            sales = int(row["sales"])
            cells = {
                name: QualityCell(int(row[f"n_{name}"]) / sales if sales else None, int(row[f"n_{name}"]), sales)
                for name in FIELDS
            }
            result.append(QualityMonth(row["month"], sales, cells))
            continue
        base = f"quality.{organisation_id}.{row['month']}"
        whole = release.figure(f"{base}.sales", Cell.of(row["sales"], row["keysum"]))
        cells = {}
        for name in FIELDS:
            part = release.figure(f"{base}.{name}", Cell.of(row[f"n_{name}"], row[f"k_{name}"]))
            if whole.value is None or whole.value < RATE_MIN_SIGMAS * release.sigma or part.value is None:
                cells[name] = QualityCell(None, None, whole.value)  # too few sales to tell: hidden
            else:
                cells[name] = QualityCell(min(part.value / whole.value, 1.0), part.value, whole.value)
        result.append(QualityMonth(row["month"], whole.value, cells))
    return result


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
