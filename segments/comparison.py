"""The district comparison: one organisation's audience against its discipline's and the whole district's.

Three series describe the same questions (who, where, when, what) over the same period: the
organisation's own purchases, the purchases of one discipline (every organisation's shows of that
discipline) and every purchase of the district. The period is every purchase up to today, or one
cultural season (1 September to 31 August, by the date of purchase).

Each series is read with ONE aggregate statement (:func:`series_statement`): a UNION ALL of small
GROUP BYs over the series' purchases, whose rows are ``(dimension, bucket, spectators, lines,
tickets)``. The buckets and labels are those of the insight pages (``segments.insights``), the life
cycle that of DESIGN.md §7 (``segments.lifecycle``, written as SQL by ``segments.profiles``).

The raw figures ("facts") are exact and never shown as such: :func:`comparison_tables` turns them
into :class:`segments.insights.InsightTable` rows (unsuppressed, k = 1), which the web layer shows
either exactly with small cells suppressed (a venue's own series) or through the noisy figures of
``core.privacy`` (everything pooled: ``segments.comparison_views``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import Integer, String, and_, case, cast, distinct, func, literal, select, union_all
from sqlalchemy.orm import Session

from core.identity import fsa_of
from core.models import DISCIPLINES, Contact, Organisation
from core.sql import day_of_week, month_of, without_jit
from core.sql_expressions import bit_union, mask_bit, one_shl, unindexed
from core.vocabulary import DISCIPLINE_LABELS
from segments.insight_store import ALL, COMPARISON, read_facts, scope_key
from segments.insight_tables import (
    CHANNEL_KEYS,
    CHANNEL_LABELS,
    LEAD_LABELS,
    PARTY_BUCKETS,
    REGION_LABELS,
    REGIONS,
    SP,
    STAGE_LABELS,
    Column,
    InsightTable,
    S,
    Scope,
    T,
    day_label,
    discipline_choices,
    in_scope,
    month_label,
    one_way,
    range_label,
    region_of,
)
from segments.insights import index_of, lead_bucket
from segments.lifecycle import LIFECYCLE_DAYS, STAGES, window_start
from segments.profiles import lifecycle_case

SEASON_START_MONTH = 9  # a cultural season runs from 1 September to 31 August
TOP_FSAS = 10
# Price paid per ticket, in cents: (low, high) inclusive, high None = no upper bound.
PRICE_BUCKETS = ((0, 0), (1, 2499), (2500, 4999), (5000, 7499), (7500, 9999), (10000, None))
PRICE_LABELS = (
    _l("Free"),
    _l("Under $25"),
    _l("$25 to $49.99"),
    _l("$50 to $74.99"),
    _l("$75 to $99.99"),
    _l("$100 or more"),
    _l("Unknown"),
)
PRICE_UNKNOWN = len(PRICE_BUCKETS)
SUBSCRIBER_LABELS = {"1": _l("Subscribers"), "0": _l("Single tickets only")}
# SQL numbers days from Sunday = 0; the tables run Monday to Sunday.
WEEK = (1, 2, 3, 4, 5, 6, 0)
SEASON_MONTHS = (9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8)
# The dimensions of a purchase kept as a bit mask per spectator: (first value, number of values).
MASKED = {
    "dow": (0, 7),
    "month": (1, 12),
    "lead": (0, len(LEAD_LABELS)),
    "channel": (0, len(CHANNEL_KEYS)),
    "price": (0, len(PRICE_BUCKETS) + 1),
}

QUESTIONS = (
    ("who", _l("Who are they?")),
    ("where", _l("Where do they come from?")),
    ("when", _l("When do they buy?")),
    ("what", _l("What do they buy?")),
)
# (key, question, title, what the figures count, note)
DIMENSIONS = (
    (
        "lifecycle",
        "who",
        _l("Life-cycle stage"),
        "spectators",
        _l("As of the end of the period (or today), from the purchases of each series only."),
    ),
    (
        "subscribers",
        "who",
        _l("Subscribers"),
        "spectators",
        _l("Spectators who bought at least one subscription in the period."),
    ),
    (
        "regions",
        "where",
        _l("Regions"),
        "spectators",
        _l("From the first three characters of the postal code (FSA); Laval is H7."),
    ),
    (
        "fsas",
        "where",
        _l("Forward sortation areas (FSA)"),
        "spectators",
        _l("The organisation's %(n)d areas with the most spectators; the others are grouped.", n=TOP_FSAS),
    ),
    (
        "lead_time",
        "when",
        _l("Lead time: days between purchase and performance"),
        "tickets",
        _l("Unknown: no performance date, or a purchase recorded after the performance."),
    ),
    ("weekday", "when", _l("Day of purchase"), "purchases", None),
    ("month", "when", _l("Month of purchase"), "tickets", _l("In the order of a season, September to August.")),
    ("channels", "what", _l("Purchase channels"), "tickets", None),
    ("prices", "what", _l("Price paid per ticket"), "tickets", _l("The amount of a purchase divided by its tickets.")),
    (
        "order_size",
        "what",
        _l("Tickets per order"),
        "orders",
        _l(
            "An order is the lines of one order number at one organisation (a line without a number is an order "
            "by itself)."
        ),
    ),
    (
        "crossover",
        "what",
        _l("Disciplines bought"),
        "spectators",
        _l(
            "Spectators of each series who bought the discipline anywhere in the district in the period (a "
            "spectator counts in each): figures that read every organisation's sales."
        ),
    ),
)
DIMENSION_KEYS = tuple(d[0] for d in DIMENSIONS)
# Dimensions that follow a series' spectators to every organisation's sales: pooled even for the
# organisation's own series.
POOLED_DIMENSIONS = ("crossover",)
UNITS = {"spectators": _l("spectators"), "tickets": _l("tickets"), "purchases": _l("purchases"), "orders": _l("orders")}
MEASURE_LABELS = {"tickets": _l("Tickets"), "purchases": _l("Purchases"), "orders": _l("Orders")}


# --- seasons -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Season:
    """The cultural season that starts on 1 September of ``start_year``."""

    start_year: int

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.start_year, SEASON_START_MONTH, 1)

    @property
    def last_day(self) -> dt.date:
        return dt.date(self.start_year + 1, SEASON_START_MONTH, 1) - dt.timedelta(days=1)

    @property
    def label(self) -> str:
        return f"{self.start_year}-{self.start_year + 1}"

    @classmethod
    def of(cls, day: dt.date) -> "Season":
        """The season a day falls in."""
        return cls(day.year if day.month >= SEASON_START_MONTH else day.year - 1)

    @classmethod
    def parse(cls, text: str) -> "Season":
        """``"2024"`` or ``"2024-2025"``; ValueError for anything else."""
        text = (text or "").strip()
        head, _sep, tail = text.partition("-")
        if not (head.isascii() and head.isdigit() and len(head) == 4) or (tail and tail != str(int(head) + 1)):
            raise ValueError(f"not a season: {text!r}")
        year = int(head)
        if not 1900 <= year <= 2999:
            raise ValueError(f"not a season: {text!r}")
        return cls(year)


def available_seasons(session: Session, today: dt.date | None = None) -> list[Season]:
    """The seasons from the first purchase on record to today's, latest first (two index lookups)."""
    today = today or dt.date.today()
    first = session.scalar(select(func.min(T.c.purchased_at)))
    if first is None:
        return []
    first_day = first.date() if isinstance(first, dt.datetime) else dt.date.fromisoformat(str(first)[:10])
    start, end = Season.of(min(first_day, today)).start_year, Season.of(today).start_year
    return [Season(year) for year in range(end, start - 1, -1)]


@dataclass(frozen=True)
class Period:
    """The purchases a comparison reads: those of ``season`` (every season when None), up to ``as_of``."""

    season: Season | None
    as_of: dt.date

    @classmethod
    def make(cls, season: Season | None, today: dt.date | None = None) -> "Period":
        today = today or dt.date.today()
        return cls(season, min(season.last_day, today) if season else today)

    @property
    def low(self) -> dt.datetime | None:
        return dt.datetime.combine(self.season.first_day, dt.time()) if self.season else None

    @property
    def high(self) -> dt.datetime:
        return dt.datetime.combine(self.as_of + dt.timedelta(days=1), dt.time())

    @property
    def key(self) -> str:
        return f"{self.season.label if self.season else 'all'}@{self.as_of.isoformat()}"


# --- series ------------------------------------------------------------------------------------------


# One side of the comparison: an organisation's sales, a discipline's or the district's, the sales
# an insight page describes.
Series = Scope


def main_discipline(session: Session, organisation: Organisation) -> str | None:
    """The organisation's discipline for the comparison: the first it declares, else the one of most of
    its shows; None when it has neither."""
    declared = [d for d in organisation.discipline_list if d in DISCIPLINES]
    if declared:
        return declared[0]
    row = session.execute(
        select(S.c.discipline, func.count())
        .where(S.c.organisation_id == organisation.id)
        .group_by(S.c.discipline)
        .order_by(func.count().desc(), S.c.discipline)
    ).first()
    return row[0] if row else None


def comparison_disciplines(session: Session, organisation: Organisation) -> list[str]:
    """The disciplines an organisation may be compared with: its own (declared or with shows)."""
    return discipline_choices(session, organisation.id)


def _bucket_case(column, buckets):
    return case(
        *[(column <= high, i) for i, (_low, high) in enumerate(buckets) if high is not None], else_=len(buckets) - 1
    )


def _price_bucket():
    """The price paid per ticket's bucket, compared as cents against tickets × bound (no division)."""
    whens = [(T.c.tickets <= 0, PRICE_UNKNOWN), (T.c.amount_cents <= 0, 0)]
    whens += [
        (T.c.amount_cents <= T.c.tickets * high, i)
        for i, (_low, high) in enumerate(PRICE_BUCKETS)
        if high is not None and i > 0
    ]
    return case(*whens, else_=len(PRICE_BUCKETS) - 1)


def _every(series: Series) -> bool:
    """Whether ``series`` stands for every organisation's or every discipline's series at once (no id
    nor key): :func:`grouped_series_facts`."""
    return (
        series.kind != "district" and (series.organisation_id if series.kind == "organisation" else series.key) is None
    )


def series_statement(session: Session, series: Series, period: Period):
    """The one statement of a series: rows ``(dimension, bucket, spectators, lines, tickets)``.

    ``spectators`` are distinct spectators; ``lines`` purchases (orders for ``order_size``). For every
    organisation's or discipline's series at once (a series without id or key), each row starts with
    the ``grp`` it belongs to (the organisation id or the discipline, as text): every GROUP BY is also by it.
    """
    every = _every(series)
    group: Any = None  # the column that tells the series apart, when every series is read at once
    where = in_scope(series, period.high)
    if every:  # every organisation's (or discipline's) sales, told apart by the group column
        group = T.c.organisation_id if series.kind == "organisation" else S.c.discipline
        where = and_(in_scope(Series.district(), period.high), group.is_not(None))
    in_period = literal(1) if period.low is None else case((T.c.purchased_at >= period.low, 1), else_=0)
    order_key = func.coalesce(T.c.order_id, literal("#") + cast(T.c.id, String))
    rows = (
        select(
            T.c.spectator_id.label("sid"),
            T.c.organisation_id.label("org"),
            order_key.label("okey"),
            T.c.show_id.label("show_id"),
            T.c.purchased_at.label("at"),
            T.c.tickets.label("tickets"),
            in_period.label("inp"),
            case((T.c.purchased_at >= window_start(period.as_of, LIFECYCLE_DAYS), T.c.show_id)).label("show548"),
            case((T.c.category == "subscription", 1), else_=0).label("sub"),
            day_of_week(session, T.c.purchased_at).label("dow"),
            month_of(session, T.c.purchased_at).label("month"),
            lead_bucket(session).label("lead"),
            index_of(T.c.channel, CHANNEL_KEYS).label("channel"),
            _price_bucket().label("price"),
            S.c.discipline.label("discipline"),
            *([group.label("grp")] if every else []),
        )
        .select_from(T.outerjoin(S, S.c.id == T.c.show_id))
        .where(where)
    )
    # The pass per spectator reads the rows afresh (a subquery the engine may flatten and read along
    # the (spectator, purchase date) index, with no sort); the other GROUP BYs share them (a CTE),
    # which keeps only the period's purchases (they read no other): a season's statement no longer
    # materialises the whole history before it.
    r = rows.subquery("rows").c
    base = (rows if period.low is None else rows.where(T.c.purchased_at >= period.low)).cte("base")
    b = base.c
    # Per spectator, the set of days, months, lead times, channels and prices of their purchases in the
    # period as one bit mask each: distinct spectators per bucket are then sums of bits (one pass
    # instead of a COUNT(DISTINCT) per dimension, as the insight pages do).
    masks = {
        name: bit_union(case((r.inp == 1, one_shl(r[name] - offset)), else_=0)).label(f"m_{name}")
        for name, (offset, _size) in MASKED.items()
    }
    per_spectator = (
        select(
            *([r.grp] if every else []),
            r.sid,
            func.count(distinct(r.show548)).label("shows"),
            func.min(r.at).label("first_at"),
            func.max(r.at).label("last_at"),
            func.max(r.inp).label("inp"),
            func.max(r.sub * r.inp).label("sub"),
            *masks.values(),
        )
        .group_by(*([r.grp] if every else []), r.sid)
        .cte("per_spectator")
    )
    p = per_spectator.c
    people = (
        select(
            *([p.grp] if every else []),
            p.sid,
            lifecycle_case(p.shows, p.first_at, p.last_at, period.as_of).label("stage"),
            p.sub,
            *[p[f"m_{name}"] for name in MASKED],
        )
        .where(p.inp == 1)
        .cte("people")
    )
    q = people.c
    zero = literal(0, Integer)
    by_q = [q.grp] if every else []  # the extra GROUP BY of every series at once, over people or base
    by_b = [b.grp] if every else []

    def row(name: str, bucket, spectators, lines=zero, tickets=zero, grp=None):
        return [
            *([cast(q.grp if grp is None else grp, String).label("grp")] if every else []),
            literal(name, String).label("dimension"),
            cast(bucket, String).label("bucket"),
            spectators.label("spectators"),
            lines.label("lines"),
            tickets.label("tickets"),
        ]

    branches = [
        select(*row("lifecycle", q.stage, func.count())).group_by(*by_q, q.stage),
        select(*row("subscribers", q.sub, func.count())).group_by(*by_q, q.sub),
    ]
    if series.kind == "organisation":
        # The organisation's own contact records' postal codes: the pooled spectator's FSA may have been
        # learnt from another organisation's sale (DESIGN.md §10, as the insight pages do).
        prefix = func.upper(func.substr(Contact.postal_code, 1, 3))
        own = q.grp if every else series.organisation_id
        homes = (
            select(*by_q, q.sid, func.min(prefix).label("fsa"))
            .select_from(people.outerjoin(Contact, and_(Contact.spectator_id == q.sid, Contact.organisation_id == own)))
            .group_by(*by_q, q.sid)
            .subquery()
        )
        by_home = [homes.c.grp] if every else []
        branches.append(
            select(*row("fsa", homes.c.fsa, func.count(), grp=by_home[0] if every else None)).group_by(
                *by_home, homes.c.fsa
            )
        )
    else:
        branches.append(
            select(*row("fsa", SP.c.fsa, func.count()))
            .select_from(people.join(SP, SP.c.id == q.sid))
            .group_by(*by_q, SP.c.fsa)
        )
    for name, (offset, size) in MASKED.items():
        for i in range(size):
            branches.append(
                select(*row(name, literal(i + offset), func.sum(mask_bit(q[f"m_{name}"], i)))).group_by(*by_q)
            )
    # purchases and tickets of the five dimensions at once: one GROUP BY on one integer code
    code: Any = literal(0, Integer)
    for name, (offset, size) in MASKED.items():
        code = code * (size + offset) + b[name]
    branches.append(
        select(
            *row(
                "code", code, zero, func.count(), func.coalesce(func.sum(b.tickets), 0), grp=by_b[0] if every else None
            )
        )
        .where(b.inp == 1)
        .group_by(*by_b, code)
    )
    orders = (
        select(*by_b, func.min(b.sid).label("sid"), func.sum(b.tickets).label("tickets"))
        .where(b.inp == 1)
        .group_by(*by_b, b.org, b.okey)
        .subquery()
    )
    size = _bucket_case(orders.c.tickets, PARTY_BUCKETS)
    branches.append(
        select(
            *row(
                "orders",
                size,
                func.count(distinct(orders.c.sid)),
                func.count(),
                func.coalesce(func.sum(orders.c.tickets), 0),
                grp=orders.c.grp if every else None,
            )
        ).group_by(*([orders.c.grp] if every else []), size)
    )
    # The disciplines each spectator bought in the period, anywhere in the district: one row per
    # (spectator, discipline), then counted (a hash aggregate on PostgreSQL, no COUNT(DISTINCT) sort).
    if series.kind == "district":
        pairs = (
            select(b.sid.label("sid"), b.discipline.label("discipline"))
            .where(b.inp == 1, b.discipline.is_not(None))
            .group_by(b.sid, b.discipline)
            .subquery()
        )
    else:  # every organisation's sales of the series' spectators, joined (not probed) with them
        elsewhere = T.alias("elsewhere")
        shows = S.alias("elsewhere_show")
        bought = [unindexed(elsewhere.c.purchased_at) < period.high]
        if period.low is not None:
            bought.append(elsewhere.c.purchased_at >= period.low)
        if every:  # each spectator's disciplines once (a mask), not once per series they are in
            _crossover_of_every(branches, row, people, elsewhere, shows, bought)
            return union_all(*branches)
        pairs = (
            select(elsewhere.c.spectator_id.label("sid"), shows.c.discipline.label("discipline"))
            .select_from(
                elsewhere.join(people, q.sid == elsewhere.c.spectator_id).join(shows, shows.c.id == elsewhere.c.show_id)
            )
            .where(*bought)
            .group_by(elsewhere.c.spectator_id, shows.c.discipline)
            .subquery()
        )
    branches.append(select(*row("crossover", pairs.c.discipline, func.count())).group_by(pairs.c.discipline))
    return union_all(*branches)


def _crossover_of_every(branches: list, row, people, elsewhere, shows, bought: list) -> None:
    """The crossover rows of every organisation's (or discipline's) series at once: the disciplines
    each spectator bought in the period anywhere, one mask per spectator from one pass over the
    period's purchases, joined with the series' spectators and summed bit by bit (joining each
    series' spectators with their purchases would read a spectator's purchases once per series)."""
    index = case({d: i for i, d in enumerate(DISCIPLINES)}, value=shows.c.discipline)
    masks = (
        select(elsewhere.c.spectator_id.label("sid"), bit_union(one_shl(index)).label("mask"))
        .select_from(elsewhere.join(shows, shows.c.id == elsewhere.c.show_id))
        .where(*bought)
        .group_by(elsewhere.c.spectator_id)
        .subquery()
    )
    q = people.c
    crossed = select(q.grp, masks.c.mask).select_from(people.join(masks, masks.c.sid == q.sid)).cte("crossed")
    for i, discipline in enumerate(DISCIPLINES):
        n = func.sum(mask_bit(crossed.c.mask, i))
        branches.append(
            select(*row("crossover", literal(discipline, String), n, grp=crossed.c.grp))
            .group_by(crossed.c.grp)
            .having(n > 0)
        )


def _empty_facts() -> dict:
    return {
        name: {}
        for name in (
            "lifecycle",
            "subscribers",
            "fsa",
            "dow",
            "month",
            "lead",
            "channel",
            "price",
            "orders",
            "crossover",
        )
    }


def _finished(facts: dict) -> dict:
    for name in MASKED:  # a bucket nobody bought in is no bucket
        facts[name] = {key: cell for key, cell in facts[name].items() if any(cell)}
    facts["population"] = sum(cell[0] for cell in facts["lifecycle"].values())
    return facts


def series_facts(session: Session, series: Series, period: Period) -> dict:
    """The exact facts of a series: ``{"population": n, "dimension": {bucket: [spectators, lines, tickets]}}``."""
    facts = _empty_facts()
    without_jit(session)  # PostgreSQL would spend longer compiling the statement than running it
    for name, bucket, spectators, lines, tickets in session.execute(series_statement(session, series, period)):
        _add_row(facts, name, bucket, spectators, lines, tickets)
    return _finished(facts)


def grouped_series_facts(session: Session, kind: str, period: Period, keys) -> dict[str, dict]:
    """:func:`series_facts` of several organisations' (``kind`` "organisation", ``keys`` their ids as
    text) or disciplines' series, in one statement: one pass over the district's purchases instead of
    one per series (the publisher's, ``segments.insight_publish``). Returns a key's facts for each key."""
    every = {str(key): _empty_facts() for key in keys}
    without_jit(session)
    for grp, name, bucket, spectators, lines, tickets in session.execute(
        series_statement(session, Series(kind), period)
    ):
        if str(grp) in every:
            _add_row(every[str(grp)], name, bucket, spectators, lines, tickets)
    return {key: _finished(facts) for key, facts in every.items()}


def _add_row(facts: dict, name: str, bucket, spectators, lines, tickets) -> None:
    """Add one row of :func:`series_statement` to a series' facts."""
    if name == "code":  # purchases and tickets of a (day, month, lead time, channel, price)
        value = int(bucket)
        for dimension, (offset, size) in reversed(MASKED.items()):
            value, at = divmod(value, size + offset)
            cell = facts[dimension].setdefault(str(at), [0, 0, 0])
            cell[1] += int(lines or 0)
            cell[2] += int(tickets or 0)
        return
    key = "" if bucket is None else str(bucket)
    cell = facts[name].setdefault(key, [0, 0, 0])
    for i, value in enumerate((spectators, lines, tickets)):
        cell[i] += int(value or 0)


def kept_series_facts(session: Session, series: Series, period: Period) -> dict:
    """:func:`series_facts` as last published in the summary table (``segments.insight_store``, kept
    by ``segments.insight_publish`` after imports and profile refreshes); computed from the rows only
    when none were ever published for this series and period."""
    kept = read_facts(session, COMPARISON, scope_key(series), period.season.label if period.season else ALL)
    return kept[0] if kept is not None else series_facts(session, series, period)


# --- the tables of one series --------------------------------------------------------------------


def _items(facts: dict, name: str, keys, labels, measure: str | None) -> list[tuple]:
    """``one_way`` items: (row key, label, spectators, {measure: value})."""
    cells = facts[name]
    items = []
    for key, label in zip(keys, labels):
        spectators, lines, tickets = cells.get(str(key), [0, 0, 0])
        values = {} if measure is None else {measure: tickets if measure == "tickets" else lines}
        items.append((str(key), label, spectators, values))
    return items


def _fsa_counts(facts: dict) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for bucket, (spectators, _lines, _tickets) in facts["fsa"].items():
        fsa = fsa_of(bucket.upper()) if bucket else None
        counts[fsa] = counts.get(fsa, 0) + spectators
    return counts


def top_fsas(facts: dict, k: int) -> list[str]:
    """The organisation's areas with the most spectators (at least ``k`` each), at most TOP_FSAS."""
    ranked = sorted(((n, fsa) for fsa, n in _fsa_counts(facts).items() if fsa and n >= k), key=lambda t: (-t[0], t[1]))
    return [fsa for _n, fsa in ranked[:TOP_FSAS]]


def dimension_items(facts: dict, dimension: str, fsas: list[str]) -> tuple[list[tuple], str | None, bool]:
    """The rows of one dimension of one series: (items, measure or None, whether rows overlap)."""
    if dimension == "lifecycle":
        return _items(facts, "lifecycle", STAGES, [STAGE_LABELS[s] for s in STAGES], None), None, False
    if dimension == "subscribers":
        return (
            _items(facts, "subscribers", ("1", "0"), [SUBSCRIBER_LABELS["1"], SUBSCRIBER_LABELS["0"]], None),
            None,
            False,
        )
    if dimension == "regions":
        regions = dict.fromkeys(REGIONS, 0)
        for fsa, n in _fsa_counts(facts).items():
            regions[region_of(fsa)] += n
        return [(r, REGION_LABELS[r], regions[r], {}) for r in REGIONS], None, False
    if dimension == "fsas":
        counts = _fsa_counts(facts)
        unknown = counts.pop(None, 0)
        items: list[tuple] = [(f"fsa:{fsa}", fsa, counts.get(fsa, 0), {}) for fsa in fsas]
        items.append(("other", _l("Other FSAs"), sum(n for fsa, n in counts.items() if fsa not in fsas), {}))
        items.append(("unknown", _l("Unknown"), unknown, {}))
        return items, None, False
    if dimension == "lead_time":
        return _items(facts, "lead", range(len(LEAD_LABELS)), LEAD_LABELS, "tickets"), "tickets", True
    if dimension == "weekday":
        return _items(facts, "dow", WEEK, [day_label(d) for d in WEEK], "purchases"), "purchases", True
    if dimension == "month":
        return (
            _items(facts, "month", SEASON_MONTHS, [month_label(m) for m in SEASON_MONTHS], "tickets"),
            "tickets",
            True,
        )
    if dimension == "channels":
        return (
            _items(facts, "channel", range(len(CHANNEL_KEYS)), [CHANNEL_LABELS[c] for c in CHANNEL_KEYS], "tickets"),
            "tickets",
            True,
        )
    if dimension == "prices":
        return _items(facts, "price", range(len(PRICE_LABELS)), PRICE_LABELS, "tickets"), "tickets", True
    if dimension == "order_size":
        labels = [range_label(low, high) for low, high in PARTY_BUCKETS]
        return _items(facts, "orders", range(len(PARTY_BUCKETS)), labels, "purchases"), "orders", True
    if dimension == "crossover":
        # every discipline, so that each series and season has the same rows (none bought: 0)
        return _items(facts, "crossover", DISCIPLINES, [DISCIPLINE_LABELS[d] for d in DISCIPLINES], None), None, True
    raise KeyError(dimension)


def series_table(facts: dict, dimension: str, fsas: list[str], k: int = 1) -> InsightTable:
    """One dimension of one series as an insight table (``k`` = 1: exact, nothing hidden), its share
    column dividing what the dimension counts (spectators, tickets, purchases or orders)."""
    key, question, title, counts, note = next(d for d in DIMENSIONS if d[0] == dimension)
    items, measure, overlapping = dimension_items(facts, dimension, fsas)
    population = facts["population"]
    measure_key = None if measure is None else ("purchases" if measure == "orders" else measure)
    table = one_way(
        key,
        question,
        title,
        Column("label", title, "label"),
        items,
        population,
        k,
        measures=[measure_key] if measure_key else [],
        share_of=measure_key or "spectators",
        overlapping=overlapping,
        measure=measure_key or "spectators",
        unit=UNITS[counts],
        note=note,
    )
    if measure == "orders":
        at = table.index("purchases")
        table.columns[at] = Column("purchases", MEASURE_LABELS["orders"], "purchases")
    return table
