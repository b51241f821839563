"""The insights' vocabulary and shapes: labels and buckets, scopes, and tables suppressed under k."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from babel.dates import get_day_names, get_month_names
from flask_babel import LazyString, get_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from core.models import (
    CATEGORIES,
    CHANNELS,
    CIRCUMSTANCES,
    DISCIPLINES,
    Organisation,
    Show,
    Spectator,
    Transaction,
)
from core.privacy import (
    is_small,
    strictest_k,
    suppress,
    suppress_matrix,
    suppress_total,
)
from core.sql_expressions import unindexed
from segments.lifecycle import STAGES

T = Transaction.__table__
S = Show.__table__
SP = Spectator.__table__

LIFECYCLE_STAGES = STAGES
# The stages' names on every page (the insights, the comparison, the rule builder, the campaigns).
STAGE_LABELS = {
    "new": _l("New"),
    "once_before": _l("Once before"),
    "convertee": _l("Convertee"),
    "active": _l("Active"),
    "super_active": _l("Super active"),
    "stale": _l("Stale"),
    "lapsed": _l("Lapsed"),
}
# (low, high) inclusive bounds of the buckets; high None = no upper bound.
FREQUENCY_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, None))
PARTY_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 9), (10, None))
LEAD_BUCKETS = ((0, 0), (1, 6), (7, 13), (14, 29), (30, 59), (60, 89), (90, 179), (180, None))
LEAD_UNKNOWN = len(LEAD_BUCKETS)  # no show date, or bought after the show
LEAD_LABELS = (
    _l("Same day"),
    _l("1–6 days"),
    _l("7–13 days"),
    _l("14–29 days"),
    _l("30–59 days"),
    _l("60–89 days"),
    _l("90–179 days"),
    _l("180 days or more"),
    _l("Unknown"),
)
REGIONS = ("island", "laval", "quebec", "ontario", "canada", "elsewhere", "unknown")
REGION_LABELS = {
    "island": _l("Island of Montreal"),
    "laval": _l("Laval"),
    "quebec": _l("Rest of Quebec"),
    "ontario": _l("Ontario"),
    "canada": _l("Rest of Canada"),
    "elsewhere": _l("Outside Canada or unrecognised"),
    "unknown": _l("Unknown"),
}
# The last entry of each list stands for anything else (unknown channel, other price...).
CHANNEL_KEYS = (*CHANNELS, "unknown")
CATEGORY_KEYS = (*CATEGORIES, "other")
CIRCUMSTANCE_KEYS = CIRCUMSTANCES  # ("regular", "promotion", "complimentary", "other")
CHANNEL_LABELS = {"web": _l("Web"), "box_office": _l("Box office"), "phone": _l("Phone"), "unknown": _l("Unknown")}
CATEGORY_LABELS = {"single": _l("Single tickets"), "subscription": _l("Subscription"), "other": _l("Other")}
CIRCUMSTANCE_LABELS = {
    "regular": _l("Regular price"),
    "promotion": _l("Promotion"),
    "complimentary": _l("Complimentary"),
    "other": _l("Other"),
}
TOP_FSAS = 15
FSA_PATTERN = re.compile(r"^[A-Z][0-9][A-Z]$")
# SQL numbers days from Sunday = 0; the day × hour table runs Monday to Sunday.
WEEK = (1, 2, 3, 4, 5, 6, 0)

QUESTIONS = (
    ("who", _l("Who are they?")),
    ("where", _l("Where do they come from?")),
    ("when", _l("When do they buy?")),
    ("what", _l("What do they buy?")),
)


def _month_name(month: int, width: Literal["abbreviated", "narrow", "wide"] = "wide") -> str:
    return get_month_names(width, locale=str(get_locale() or "fr"))[month].capitalize()


def _day_name(dow: int, width: Literal["abbreviated", "narrow", "short", "wide"] = "wide") -> str:
    # babel counts days from Monday = 0; SQL from Sunday = 0
    return get_day_names(width, locale=str(get_locale() or "fr"))[(dow - 1) % 7].capitalize()


def month_label(month: int, width: str = "wide") -> LazyString:
    """The month's name in the request's language, resolved when shown."""
    return LazyString(_month_name, month, width)


def day_label(dow: int, width: str = "wide") -> LazyString:
    """The day's name (SQL numbering, Sunday = 0) in the request's language, resolved when shown."""
    return LazyString(_day_name, dow, width)


# --- the table structure ----------------------------------------------------------------------------


@dataclass
class Column:
    """A column: its key, its heading and its kind.

    Kinds: ``label`` (the row's name), ``spectators``, ``purchases``, ``tickets`` (counts),
    ``money`` (integer cents), ``share`` (a fraction 0..1).
    """

    key: str
    label: Any
    kind: str


@dataclass
class InsightTable:
    """A small table ready to show: ``rows`` and ``total`` are lists aligned with ``columns``,
    the first cell of each the row's label; ``None`` is a hidden (suppressed) figure.

    A ``matrix`` table is one measure by rows and columns (its chart is a heat map); when it has
    ``margins`` its last column and its total row are the row and column totals.
    """

    key: str
    question: str
    title: Any
    columns: list[Column]
    rows: list[list]
    total: list | None
    k: int
    chart: str  # "hbar", "vbar" or "heatmap"
    measure: str  # the column the chart draws (one-way tables)
    unit: Any = None  # what the counts count, for the chart's description
    note: Any = None
    matrix: bool = False
    margins: bool = False
    summary: dict = field(default_factory=dict)
    row_keys: list = field(default_factory=list)  # machine keys of the rows, in order
    share_of: str | None = None  # the column the "share" column divides
    chart_labels: list | None = None  # shorter row labels for the chart's axis
    axis_label: Any = None  # what the chart's axis counts in (days...)

    def index(self, key: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.key == key)


def _col(key: str) -> Column:
    labels = {
        "spectators": (_l("Spectators"), "spectators"),
        "purchases": (_l("Purchases"), "purchases"),
        "tickets": (_l("Tickets"), "tickets"),
        "revenue": (_l("Revenue"), "money"),
        "share": (_l("Share"), "share"),
    }
    label, kind = labels[key]
    return Column(key, label, kind)


TOTAL_LABEL = _l("Total")
# The share column says what it divides: a table may count spectators but share out tickets.
SHARE_LABELS = {
    "spectators": _l("Share of spectators"),
    "purchases": _l("Share of purchases"),
    "tickets": _l("Share of tickets"),
}


def _hide_lone(shown: dict, counts: dict) -> None:
    """Complementary suppression after extra hiding: never exactly one hidden non-zero part."""
    hidden = [key for key, v in shown.items() if v is None and counts[key]]
    if len(hidden) == 1:
        visible = sorted(((v, str(key), key) for key, v in shown.items() if v), key=lambda t: t[:2])
        if visible:
            shown[visible[0][2]] = None


def one_way(
    key: str,
    question: str,
    title,
    label_column: Column,
    items: list[tuple],
    population: int,
    k: int,
    *,
    measures: Iterable[str] = (),
    share_of: str | None = "spectators",
    overlapping: bool = False,
    sort: bool = False,
    chart: str = "hbar",
    measure: str = "spectators",
    unit=None,
    note=None,
) -> InsightTable:
    """Build a one-way table from ``items`` = [(row_key, label, spectators, {measure: value})].

    ``population`` is the number of distinct spectators of the whole table. In a partition each
    spectator falls in one row; ``overlapping`` rows (a spectator in several) also hide a row whose
    complement, ``population - row``, is small. ``measures`` (purchases, tickets, revenue) are
    additive over the rows and hidden with the row's spectators.
    """
    measures = list(measures)
    counts = {row_key: n for row_key, _label, n, _values in items}
    shown = suppress(counts, k, total_shown=True)
    if overlapping:
        for row_key, n in counts.items():
            if shown[row_key] is not None and is_small(population - n, k):
                shown[row_key] = None
        _hide_lone(shown, counts)
    total_visible = suppress_total(population, shown, k) is not None
    totals = {m: sum(values.get(m, 0) for *_rest, values in items) for m in measures}
    totals["spectators"] = population
    columns = [label_column, _col("spectators")] + [_col(m) for m in measures]
    if share_of:
        columns.append(Column("share", SHARE_LABELS.get(share_of, _l("Share")), "share"))
    rows: list[Any] = []  # (people, key, row) while sorting, then the rows
    hidden_rows: list[Any] = []
    for row_key, label, n, values in items:
        hidden = shown[row_key] is None
        figures = {"spectators": n, **values}
        row = [label, None if hidden else n] + [None if hidden else values.get(m, 0) for m in measures]
        if share_of:
            whole = totals[share_of]
            row.append(None if hidden or not total_visible or not whole else figures[share_of] / whole)
        (hidden_rows if hidden and sort else rows).append((n, row_key, row))
    if sort:
        # Visible rows by size; hidden ones after, in their usual order (their sizes stay unknown).
        rows.sort(key=lambda t: -t[0])
    row_keys = [row_key for _n, row_key, _row in rows + hidden_rows]
    rows = [row for _n, _key, row in rows + hidden_rows]
    if total_visible:
        total = [TOTAL_LABEL, population] + [totals[m] for m in measures]
        if share_of:
            total.append(None if overlapping and share_of == "spectators" else (1.0 if totals[share_of] else None))
    else:
        total = [TOTAL_LABEL] + [None] * (len(columns) - 1)
    return InsightTable(
        key=key,
        question=question,
        title=title,
        columns=columns,
        rows=rows,
        total=total,
        k=k,
        chart=chart,
        measure=measure,
        unit=unit,
        note=note,
        row_keys=row_keys,
        share_of=share_of,
    )


def matrix_with_margins(
    key: str,
    question: str,
    title,
    row_labels: list,
    col_labels: list,
    spectators: list[list[int]],
    row_spectators: list[int],
    col_spectators: list[int],
    population: int,
    values: list[list[int]],
    k: int,
    *,
    corner_label,
    unit=None,
    note=None,
) -> InsightTable:
    """A two-way table of an additive measure (``values``) with row and column totals.

    Suppression runs on the distinct spectators behind each cell and margin, extended with the
    margins so that no cell, row total or column total is alone hidden on its line.
    """
    n_rows, n_cols = len(row_labels), len(col_labels)
    ext_spectators = [spectators[r] + [row_spectators[r]] for r in range(n_rows)] + [col_spectators + [population]]
    ext_values = [values[r] + [sum(values[r])] for r in range(n_rows)]
    ext_values.append([sum(values[r][c] for r in range(n_rows)) for c in range(n_cols)] + [sum(map(sum, values))])
    mask = suppress_matrix(ext_spectators, k)
    shown = [[None if mask[r][c] is None else ext_values[r][c] for c in range(n_cols + 1)] for r in range(n_rows + 1)]
    columns = [Column("label", corner_label, "label")]
    columns += [Column(f"c{c}", col_labels[c], "purchases") for c in range(n_cols)]
    columns.append(Column("total", TOTAL_LABEL, "purchases"))
    rows = [[row_labels[r]] + shown[r] for r in range(n_rows)]
    return InsightTable(
        key=key,
        question=question,
        title=title,
        columns=columns,
        rows=rows,
        total=[TOTAL_LABEL] + shown[n_rows],
        k=k,
        chart="heatmap",
        measure="purchases",
        unit=unit,
        note=note,
        matrix=True,
        margins=True,
    )


# --- scopes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What a page describes: the district, one discipline (``key``) or one organisation."""

    kind: str  # "district", "discipline" or "organisation"
    key: str | None = None  # discipline key or organisation slug
    organisation_id: int | None = None

    @classmethod
    def district(cls) -> "Scope":
        return cls("district")

    @classmethod
    def discipline(cls, key: str) -> "Scope":
        if key not in DISCIPLINES:
            raise ValueError(f"unknown discipline {key!r}")
        return cls("discipline", key)

    @classmethod
    def organisation(cls, organisation: Organisation) -> "Scope":
        return cls("organisation", organisation.slug, organisation.id)


def in_scope(scope: Scope, high, table=T):
    """SQL: a purchase of ``table`` (the transactions or an alias) is the scope's, made before
    ``high`` (a datetime)."""
    conditions = [unindexed(table.c.purchased_at) < high]
    if scope.kind == "organisation":
        conditions.append(table.c.organisation_id == scope.organisation_id)
    elif scope.kind == "discipline":
        shows = S.alias("scope_show")  # an alias, so that it never correlates with a joined show
        conditions.append(table.c.show_id.in_(select(shows.c.id).where(shows.c.discipline == scope.key)))
    return and_(*conditions)


def scope_k(session: Session, scope: Scope) -> int:
    """The k of a scope's own data: every organisation for the district, the organisations that
    sell the discipline, or the one organisation."""
    if scope.kind == "organisation":
        return strictest_k(session, [scope.organisation_id] if scope.organisation_id is not None else [])
    if scope.kind == "discipline":
        ids = session.scalars(select(S.c.organisation_id).where(S.c.discipline == scope.key).distinct()).all()
        return strictest_k(session, ids)
    return strictest_k(session)


def region_of(fsa: str | None) -> str:
    """The region of a forward sortation area (first letter of a Canadian postal code; H7 = Laval)."""
    if not fsa:
        return "unknown"
    fsa = fsa.upper()
    if not FSA_PATTERN.match(fsa):
        return "elsewhere"
    letter, digit = fsa[0], fsa[1]
    if letter == "H":
        if digit == "7":
            return "laval"
        return "quebec" if digit == "0" else "island"
    if letter in "GJ":
        return "quebec"
    if letter in "KLMNP":
        return "ontario"
    if letter in "ABCERSTVXY":
        return "canada"
    return "elsewhere"


def range_label(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}–{high}"


def bucket_of(value: int, buckets) -> int:
    for i, (_low, high) in enumerate(buckets):
        if high is None or value <= high:
            return i
    return len(buckets) - 1


def discipline_choices(session: Session, organisation_id: int | None = None) -> list[str]:
    """Disciplines with shows (of one organisation, with those it declares), in the usual order."""
    query = select(S.c.discipline).distinct()
    if organisation_id is not None:
        query = query.where(S.c.organisation_id == organisation_id)
    found = set(session.scalars(query))
    if organisation_id is not None:
        organisation = session.get(Organisation, organisation_id)
        if organisation is not None:
            found |= set(organisation.discipline_list)
    return [d for d in DISCIPLINES if d in found]
