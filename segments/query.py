"""The rule compiler: a parsed segment rule (segments.rules) as one SQL SELECT of spectator ids.

Conditions go to the cheapest place that answers them exactly like the reference evaluator
(``segments.rules.evaluate``):

- the stored profiles (``spectator_profile``), when the rule's ``as_of`` is the profiles' date and
  the condition has no ``within_days`` or one the profiles hold (``profiles.WINDOW_COLUMNS``: spend
  and organisation and discipline sets over 365 and 730 days, shows over the life cycle's 548);
  organisation and discipline sets are bit tests on the masks (any: ``mask & m <> 0``, all:
  ``mask & m = m``, none: ``mask & m = 0``);
- the same facts computed from the transactions as a derived table (``profiles.facts_select``),
  when the rule's date is another one;
- IN / NOT IN subqueries on the transactions, grouped by spectator, for the other windows, venues
  and organisations whose id does not fit the mask. A spectator without purchases in the window
  is in no such subquery, so a condition that such a spectator satisfies (``shows < 3``,
  ``none``) is written as the complement: NOT IN the spectators who fail it.

On SQLite, windows of 90 days or more read the transactions in spectator order rather than through
the purchase-date index, and a range of 90 days or more of the last or first purchase date reads the
profiles in order rather than through the last-purchase index (see ``SQLITE_SCAN_FROM_DAYS``).

The member ids and the organisation masks of a preview come back as one aggregated value (an
array in binary form on PostgreSQL, a comma-separated text on SQLite; see ``every_value``): a row
per member costs the drivers more than the scan that finds them. ``members`` and ``preview`` run one query
that finds both the members and the breakdown (``_scan``), remembered for the rest of the
session's transaction until the session writes: asked one after the other, as the segment builder
and the benchmark do, they cost one scan of the profiles.

On a region (``fsa``), SQLite reads the FSA index alone when it holds every column the query
reads (``FSA_INDEX_COLUMNS``); PostgreSQL writes ``starts_with`` as a ``LIKE`` its
``varchar_pattern_ops`` index serves, over a table a full refresh writes in FSA order.

The spectators a rule can select are those who bought something on or before ``as_of``. Every
leaf is NULL-free (``x IS NOT NULL AND x op v``), so that NOT behaves as the evaluator's
two-valued logic. Values only ever reach SQL as bound parameters.

``newsletter`` and ``contactable`` are current facts (see ``SpectatorFacts``): they are judged at
the end of the profiles' date, or of the rule's date when that is later.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from sqlalchemy import (
    BigInteger,
    Select,
    String,
    and_,
    case,
    cast,
    distinct,
    event,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

from core import sql
from core.db import no_index
from core.models import DISCIPLINES, Organisation, Show, Spectator, Transaction, Venue
from core.privacy import Cell, Figure, Release, is_small, share, strictest_k, suppress
from segments.models import SpectatorProfile
from segments.profiles import (
    LIFECYCLE_STAGES,
    MAX_MASK_ORGANISATION_ID,
    WINDOW_COLUMNS,
    facts_select,
    order_key,
    profiles_as_of,
    window_bounds,
)
from segments.rules import Condition, Group, Node, Not, check_as_of, iter_conditions, parse_rule

T = Transaction.__table__
S = Show.__table__
V = Venue.__table__
ORG = Organisation.__table__
P = SpectatorProfile.__table__

# The profile column that answers each field (with no window, on the profiles' date).
PROFILE_COLUMN = {
    "organisation": "organisation_mask",
    "discipline": "discipline_mask",
    "shows": "shows",
    "orders": "orders",
    "tickets": "tickets",
    "spent": "spent_cents",
    "days_since_last": "last_purchase_on",
    "days_since_first": "first_purchase_on",
    "lifecycle": "lifecycle",
    "subscriber": "subscriber",
    "newsletter": "newsletter",
    "contactable": "contactable",
    "channel": "main_channel",
    "promo_share": "promo_share",
    "lead_days": "lead_days",
    "fsa": "fsa",
}
# Columns the preview's breakdown reads from the base table.
BREAKDOWN_COLUMNS = ("organisation_mask", "lifecycle", "contactable", "cell_key")
# The profile columns the FSA index holds (with the spectator id, SQLite's rowid): a query reading
# only these reads the index alone on SQLite.
FSA_INDEX_COLUMNS = frozenset(
    {"spectator_id", *next(index for index in P.indexes if index.name == "ix_spectator_profile_fsa").columns.keys()})


@dataclass(frozen=True)
class _Context:
    as_of: dt.date
    organisations: Mapping[str, int] | None
    base: Any  # the profile table, or the facts derived table
    windows: bool  # whether the base's windowed columns answer the windows they hold
    fsa_covers: bool = False  # whether the FSA index holds every column of the base the query reads


def as_node(rule: Any) -> Node:
    """A parsed rule from a tree, a dict or JSON text (raises ``segments.rules.RuleError``)."""
    if isinstance(rule, (Group, Not, Condition)):
        return rule
    return parse_rule(rule)


def consents_day(as_of: dt.date, profile_as_of: dt.date | None) -> dt.date:
    """The day whose end ``newsletter`` and ``contactable`` are judged at (current facts)."""
    return max(as_of, profile_as_of) if profile_as_of else as_of


def _mask_ids(cond: Condition, organisations: Mapping[str, int] | None) -> list[int] | None:
    """The organisation ids of an organisation condition when the mask can answer it, else None."""
    if organisations is None:
        return None
    ids = [organisations[slug] for slug in cond.value if slug in organisations]
    if any(i > MAX_MASK_ORGANISATION_ID for i in ids):
        return None
    return ids


def _base_column(cond: Condition) -> str:
    """The base's column for a condition it answers (see :func:`_on_base`)."""
    if cond.within_days is not None:
        return WINDOW_COLUMNS[(cond.field, cond.within_days)]
    return PROFILE_COLUMN[cond.field]


def _on_base(cond: Condition, organisations: Mapping[str, int] | None, windows: bool = True) -> bool:
    """Whether the base table (profiles or derived facts) answers this condition.

    :param windows: False leaves every window to the transactions (the reference path the tests
        compare the windowed columns with).
    """
    if cond.within_days is not None and not (windows and (cond.field, cond.within_days) in WINDOW_COLUMNS):
        return False
    if cond.field == "venue":
        return False
    if cond.field == "organisation":
        return _mask_ids(cond, organisations) is not None
    return True


def _base_columns(node: Node, organisations, extra=(), windows: bool = True) -> set[str]:
    columns = {"spectator_id", *extra}
    for cond in iter_conditions(node):
        if _on_base(cond, organisations, windows):
            columns.add(_base_column(cond))
    return columns


def _plan(node: Node, as_of: dt.date, profile_as_of: dt.date | None,
          organisations: Mapping[str, int] | None, extra_columns=(), windows: bool = True) -> tuple[Any, Any]:
    """(base, where): the FROM of the rule's spectators and the predicate that selects them."""
    check_as_of(as_of)
    columns = _base_columns(node, organisations, extra_columns, windows)
    if profile_as_of is not None and as_of == profile_as_of:
        base = P
    else:
        base = facts_select(as_of, columns=columns, consents_on=consents_day(as_of, profile_as_of)).subquery("facts")
    ctx = _Context(as_of, organisations, base, windows, fsa_covers=base is P and columns <= FSA_INDEX_COLUMNS)
    return base, _node(node, ctx)


def compile_rule(node: Node, as_of: dt.date, profile_as_of: dt.date | None,
                 organisations: Mapping[str, int] | None = None, windows: bool = True) -> Select:
    """One SELECT of the ids of the spectators matching ``node`` on ``as_of``.

    :param node: a parsed rule (``segments.rules.parse_rule``).
    :param as_of: the date the rule is evaluated on.
    :param profile_as_of: the date of the stored profiles (None when there are none); when it
        equals ``as_of`` the profiles answer what they can.
    :param organisations: slug → id of the organisations, to answer organisation sets from the
        profiles' bit masks; without it, organisation sets are answered from the transactions.
    :param windows: whether a window the profiles hold (``profiles.WINDOW_COLUMNS``) is read from
        its column; False sends every window to the transactions (same members, slower).
    """
    base, where = _plan(node, as_of, profile_as_of, organisations, windows=windows)
    return select(base.c.spectator_id).where(where)


# --- the tree -------------------------------------------------------------------------------------

def _cost_rank(node: Node, ctx: _Context) -> int:
    """Where a group's child comes in the SQL: conditions on the base table by the position of
    their column, then the rest (subgroups, transactions). Engines mostly test a row's conditions
    in the written order and stop at the first that decides: an early, fixed-width column is
    cheap to read, a late text or a subquery is not."""
    if isinstance(node, Condition) and _on_base(node, ctx.organisations, ctx.windows):
        name = _base_column(node)
        if name in ctx.base.c:
            return list(ctx.base.c.keys()).index(name)
    return len(ctx.base.c)


def _node(node: Node, ctx: _Context):
    if isinstance(node, Group):
        # AND and OR of NULL-free conditions do not depend on their order: the cheapest go first.
        children = sorted(node.children, key=lambda child: _cost_rank(child, ctx))
        parts = [_node(child, ctx) for child in children]
        return and_(*parts) if node.kind == "all" else or_(*parts)
    if isinstance(node, Not):
        return not_(_node(node.child, ctx))
    return _condition(node, ctx)


def _compare(column, op: str, value):
    if op == "between":
        low, high = value
        return and_(column >= low, column <= high)
    return {
        "=": lambda: column == value, "!=": lambda: column != value, ">": lambda: column > value,
        ">=": lambda: column >= value, "<": lambda: column < value, "<=": lambda: column <= value,
    }[op]()


def _holds_in_python(actual, op: str, value) -> bool:
    if op == "between":
        return value[0] <= actual <= value[1]
    return {"=": actual == value, "!=": actual != value, ">": actual > value,
            ">=": actual >= value, "<": actual < value, "<=": actual <= value}[op]


def _not_null(column, predicate):
    return and_(column.is_not(None), predicate)


def _bits(column, mask: int):
    return column.op("&")(cast(literal(mask), BigInteger))


def _mask_test(column, op: str, mask: int, complete: bool = True):
    """any / all / none of the bits of ``mask``; ``complete`` False makes ``all`` impossible
    (a value of the rule that matches nothing)."""
    if op == "any":
        return _bits(column, mask) != 0 if mask else false()
    if op == "all":
        return _bits(column, mask) == mask if complete else false()
    return _bits(column, mask) == 0


def _date_span(op: str, value) -> float:
    """How many days of purchase dates a days-since condition keeps (purchases are ≤ as_of)."""
    if op == "between":
        return value[1] - value[0]
    if op in ("<", "<="):
        return value
    if op == "=":
        return 0
    return float("inf")  # >, >=, != reach back to the first purchase


def _days_since(column, op: str, value, as_of: dt.date):
    """days = as_of − column (a date): compare on the column, so an index can serve a narrow
    range; SQLite reads a wide one in table order (see ``SQLITE_SCAN_FROM_DAYS``)."""

    def day(days: int) -> dt.date:
        return as_of - dt.timedelta(days=days)

    if _date_span(op, value) >= SQLITE_SCAN_FROM_DAYS:
        column = no_index(column)
    if op == "between":
        low, high = value
        predicate = and_(column >= day(high), column <= day(low))
    else:
        flipped = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}[op]
        predicate = _compare(column, flipped, day(value))
    return _not_null(column, predicate)


def _condition(cond: Condition, ctx: _Context):
    field, op, value = cond.field, cond.op, cond.value
    if not _on_base(cond, ctx.organisations, ctx.windows):
        kind = cond.spec.kind
        if kind == "set":
            return _set_from_transactions(cond, ctx)
        return _count_from_transactions(cond, ctx)
    column = ctx.base.c[_base_column(cond)]
    if field == "organisation":
        ids = _mask_ids(cond, ctx.organisations)
        mask = sum(1 << i for i in set(ids))
        return _mask_test(column, op, mask, complete=len(ids) == len(value))
    if field == "discipline":
        mask = sum(1 << DISCIPLINES.index(d) for d in value)
        return _mask_test(column, op, mask)
    if field in ("days_since_last", "days_since_first"):
        return _days_since(column, op, value, ctx.as_of)
    if cond.spec.kind == "boolean":
        return _not_null(column, column == (true() if value else false()))
    if op == "in":
        return _not_null(column, column.in_(list(value)))
    if op == "not_in":
        return _not_null(column, column.not_in(list(value)))
    if op == "starts_with":
        return _not_null(column, or_(*(_starts_with(column, prefix, ctx.fsa_covers) for prefix in value)))
    return _not_null(column, _compare(column, op, value))


# From this many days on, SQLite reads a window's purchases in spectator order rather than through
# the purchase-date index: that index costs a table lookup per row, which loses once the window
# holds more than about a tenth of the rows (measured on the 50k demo: 3x faster at a year). The
# same holds for the profiles' last-purchase index (3.5x faster on a 548-day range at 250k).
SQLITE_SCAN_FROM_DAYS = 90


class _prefix_match(FunctionElement):
    """Whether a text starts with a prefix: clauses (text, prefix, length of prefix, successor of
    prefix, the LIKE pattern of the prefix with its wildcards escaped). ``substr`` in general; on
    SQLite the range [prefix, successor), which is the same test under its bytewise BINARY
    collation and spares a function call per row; on PostgreSQL a LIKE, which its FSA index
    serves."""

    type = NullType()  # a Boolean would be compared with 1 on SQLite
    name = "prefix_match"
    inherit_cache = True


@compiles(_prefix_match, "postgresql")
def _prefix_match_postgresql(element, compiler, **kw):
    """``LIKE 'prefix%'``, which PostgreSQL answers through the FSA index (``varchar_pattern_ops``)
    whatever the database's collation."""
    column, _prefix, _length, _successor, pattern = (compiler.process(c, **kw) for c in element.clauses)
    return "(%s LIKE %s)" % (column, pattern)


@compiles(_prefix_match)
def _prefix_match_default(element, compiler, **kw):
    column, prefix, length, _successor, _pattern = (compiler.process(c, **kw) for c in element.clauses)
    return "(substr(%s, 1, %s) = %s)" % (column, length, prefix)


@compiles(_prefix_match, "sqlite")
def _prefix_match_sqlite(element, compiler, **kw):
    column, prefix, _length, successor, _pattern = (compiler.process(c, **kw) for c in element.clauses)
    return "(%s >= %s AND %s < %s)" % (column, prefix, column, successor)


def _starts_with(column, prefix: str, covered: bool = False):
    """``column`` starts with ``prefix`` (a non-empty ASCII text). On SQLite, a prefix shorter
    than a whole FSA reads the table in order rather than through the FSA index, unless that
    index holds every column the query reads (``covered``): such a prefix holds a large share of
    the district, and a table lookup per index entry loses (as for dates) where a range of the
    narrower index alone wins (5x on the geography rule of the benchmark)."""
    successor = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if len(prefix) < 3 and not covered:
        column = no_index(column)
    # LIKE's wildcards and its escape character (backslash, PostgreSQL's default) stand for themselves.
    pattern = "".join("\\" + c if c in "%_\\" else c for c in prefix) + "%"
    return _prefix_match(column, literal(prefix, String), literal(len(prefix)), literal(successor, String),
                         literal(pattern, String))


class every_value(FunctionElement):
    """The integer values of a column over a group, as one value: on PostgreSQL the binary form
    of their ``array_agg`` (``array_send``, a bytea), ``group_concat`` (text, comma-separated)
    elsewhere; NULL for no row. Read it with :func:`integers`."""

    name = "every_value"
    inherit_cache = True


@compiles(every_value)
def _every_value_default(element, compiler, **kw):
    return "group_concat(%s)" % compiler.process(element.clauses, **kw)


@compiles(every_value, "postgresql")
def _every_value_postgresql(element, compiler, **kw):
    # The binary form, which numpy reads as it is: the array's text form costs psycopg a parse and
    # a Python int per member (30 ms of a 180,000-member rule at 1M spectators).
    return "array_send(array_agg(%s))" % compiler.process(element.clauses, **kw)


# array_send's element type (its oid) → the element's big-endian dtype.
_SENT_ELEMENT = {21: ">i2", 23: ">i4", 20: ">i8"}


def integers(value) -> np.ndarray:
    """The int64 array of an ``every_value`` result (the bytes of an ``array_send`` of a
    one-dimensional array of integers without NULL, a comma-separated text, a list or None)."""
    if value is None or len(value) == 0:
        return np.zeros(0, dtype=np.int64)
    if isinstance(value, str):
        return np.fromstring(value, dtype=np.int64, sep=",")
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Header: dimensions, NULL flag, element oid, then (length, lower bound) per dimension;
        # then each element as (its byte length, its value).
        dimensions, _has_null, oid = np.frombuffer(value, dtype=">i4", count=3)
        if dimensions == 0:
            return np.zeros(0, dtype=np.int64)
        element = np.dtype([("length", ">i4"), ("value", _SENT_ELEMENT[int(oid)])])
        return np.frombuffer(value, dtype=element, offset=12 + 8 * int(dimensions))["value"].astype(np.int64)
    return np.asarray(value, dtype=np.int64)


def _window(t, cond: Condition, as_of: dt.date, prefer_scan: bool = True) -> list:
    low, high = window_bounds(as_of, cond.within_days)
    purchased_at = t.c.purchased_at
    if prefer_scan and (cond.within_days is None or cond.within_days >= SQLITE_SCAN_FROM_DAYS):
        purchased_at = no_index(purchased_at)
    clauses = [purchased_at < high]
    if low is not None:
        clauses.append(purchased_at >= low)
    return clauses


def _set_from_transactions(cond: Condition, ctx: _Context):
    """organisation / discipline / venue sets from the purchases of the window."""
    t = T.alias("tx")
    values = list(cond.value)
    flags = None
    if cond.field == "organisation":
        source = t
        match = t.c.organisation_id.in_(select(ORG.c.id).where(ORG.c.slug.in_(values)))
        key = t.c.organisation_id
    elif cond.field == "discipline":
        s = S.alias("sh")
        source = t.join(s, s.c.id == t.c.show_id)
        match = s.c.discipline.in_(values)
        key = s.c.discipline
    else:
        s = S.alias("sh")
        v = V.alias("ve")

        def venue_is(names: list[str]):
            # A venue is named in a rule by its name or its id (rules.py).
            return or_(v.c.name.in_(names), cast(v.c.id, String).in_(names))

        if cond.op == "all":
            source = t.join(s, s.c.id == t.c.show_id).join(v, v.c.id == s.c.venue_id)
            match = venue_is(values)
            flags = [func.max(case((venue_is([name]), 1), else_=0)) == 1 for name in values]
        else:
            # The shows of those halls are few: find their buyers through the show index.
            source = t
            match = t.c.show_id.in_(select(s.c.id).join(v, v.c.id == s.c.venue_id).where(venue_is(values)))
        key = None
    selective = cond.field == "venue" and cond.op != "all"
    buyers = select(t.c.spectator_id).select_from(source).where(
        *_window(t, cond, ctx.as_of, prefer_scan=not selective), match)
    spectator = ctx.base.c.spectator_id
    if cond.op == "any":
        return spectator.in_(buyers)
    if cond.op == "none":
        return spectator.not_in(buyers)
    grouped = buyers.group_by(t.c.spectator_id)
    if flags is None:
        # Values are distinct and name distinct keys, so "every one" is a count.
        grouped = grouped.having(func.count(distinct(key)) == len(values))
    else:
        grouped = grouped.having(and_(*flags))
    return spectator.in_(grouped)


def _count_from_transactions(cond: Condition, ctx: _Context):
    """shows / orders / tickets / spent over the purchases of the window."""
    t = T.alias("tx")
    aggregate = {
        "shows": lambda: func.count(distinct(t.c.show_id)),
        "orders": lambda: func.count(distinct(order_key(t))),
        "tickets": lambda: func.coalesce(func.sum(t.c.tickets), 0),
        "spent": lambda: func.coalesce(func.sum(t.c.amount_cents), 0),
    }
    if cond.field not in aggregate:  # FIELDS grew a windowed field this compiler does not know
        raise ValueError(f"no window aggregate for field {cond.field!r}")
    value = aggregate[cond.field]()
    predicate = _compare(value, cond.op, cond.value)
    grouped = select(t.c.spectator_id).where(*_window(t, cond, ctx.as_of)).group_by(t.c.spectator_id)
    spectator = ctx.base.c.spectator_id
    if _holds_in_python(0, cond.op, cond.value):
        # Spectators without purchases in the window hold: keep all but those who fail.
        return spectator.not_in(grouped.having(not_(predicate)))
    return spectator.in_(grouped.having(predicate))


# --- previews and members -------------------------------------------------------------------------

def organisation_ids(session: Session) -> dict[str, int]:
    return dict(session.execute(select(ORG.c.slug, ORG.c.id)).all())


def default_as_of(session: Session) -> dt.date:
    """The profiles' date (the fast path), or today when there are no profiles."""
    return profiles_as_of(session) or dt.date.today()


def members_select(session: Session, rule: Any, as_of: dt.date | None = None) -> Select:
    """The compiled SELECT of a rule's spectator ids, for this database's profiles."""
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    sql.without_jit(session)
    return compile_rule(node, as_of, stored, organisation_ids(session))


def members(session: Session, rule: Any, as_of: dt.date | None = None) -> list[int]:
    """The sorted ids of the spectators matching ``rule`` (dict, JSON text or tree) on ``as_of``
    (default: the profiles' date)."""
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    if stored is not None and as_of == stored:
        # On the profiles' date, one scan finds the members and the preview's breakdown.
        return np.sort(_scan(session, node, as_of, stored).ids).tolist()
    sql.without_jit(session)
    ids = compile_rule(node, as_of, stored, organisation_ids(session)).subquery("matching")
    return np.sort(integers(session.scalar(select(every_value(ids.c.spectator_id))))).tolist()


@dataclass(frozen=True)
class _Breakdown:
    """What one pass over a rule's members finds: their ids (unsorted), their number, their count
    per life-cycle stage, the contactable ones and the count per organisation of the mask."""

    ids: np.ndarray
    size: int
    stages: dict[str, int]
    contactable: int
    per_org: dict[str, int]
    # The same cells' sums of cell keys (core.privacy.Cell): their fingerprints.
    size_keys: int = 0
    stage_keys: dict[str, int] | None = None
    contactable_keys: int = 0
    org_keys: dict[str, int] | None = None


_SCAN_KEY = "segments.query.scan"


def _forget_scan(session, *_args) -> None:
    session.info.pop(_SCAN_KEY, None)


def _forget_scan_on_write(state) -> None:
    if not state.is_select:
        _forget_scan(state.session)


def _watch(session: Session) -> None:
    """Forget the remembered scan on any write, flush or end of transaction of this session."""
    if session.info.get(_SCAN_KEY + ".watched"):
        return
    session.info[_SCAN_KEY + ".watched"] = True
    event.listen(session, "do_orm_execute", _forget_scan_on_write)
    event.listen(session, "after_flush", _forget_scan)
    event.listen(session, "after_transaction_end", _forget_scan)


def _scan(session: Session, node: Node, as_of: dt.date, stored: dt.date | None,
          orgs: list | None = None) -> _Breakdown:
    """Members and breakdown of ``node`` on ``as_of`` in one query (one scan of the base).

    The result is remembered for the session's current transaction (the same rule, date and
    profiles' date), so that ``members`` then ``preview`` of one rule, as the builder and the
    benchmark ask them, cost one scan; any write, flush, commit or rollback of the session forgets
    it. Within one transaction the second call sees what the first saw.
    """
    if orgs is None:
        orgs = session.execute(select(ORG.c.id, ORG.c.slug, ORG.c.name).order_by(ORG.c.slug)).all()
    key = (node, as_of, stored, tuple(tuple(org) for org in orgs))
    transaction = session.get_transaction()
    remembered = session.info.get(_SCAN_KEY)
    if remembered is not None and transaction is not None and remembered[0] is transaction \
            and remembered[1] == key:
        return remembered[2]
    sql.without_jit(session)
    slugs = {slug: id_ for id_, slug, _name in orgs}
    base, where = _plan(node, as_of, stored, slugs, BREAKDOWN_COLUMNS)
    in_mask = [(id_, slug) for id_, slug, _name in orgs if id_ <= MAX_MASK_ORGANISATION_ID]
    # PostgreSQL counts each organisation's bit over the members as it aggregates (a test per
    # member, not per row: the scan's filter comes first); SQLite hands over the members' masks as
    # one value whose bits numpy counts, since a test per organisation and member costs it five
    # times the scan.
    count_bits_in_sql = sql.counts_bits_in_sql(session)
    # Beside each count, the sum of the members' cell keys: the cell's fingerprint (core.privacy).
    keys = base.c.cell_key
    columns = [every_value(base.c.spectator_id), func.count().label("size"), func.coalesce(func.sum(keys), 0)]
    columns += [func.count().filter(base.c.lifecycle == stage) for stage in LIFECYCLE_STAGES]
    columns += [func.coalesce(func.sum(keys).filter(base.c.lifecycle == stage), 0) for stage in LIFECYCLE_STAGES]
    columns.append(func.count().filter(base.c.contactable))
    columns.append(func.coalesce(func.sum(keys).filter(base.c.contactable), 0))
    if count_bits_in_sql:
        columns += [func.count().filter(_bits(base.c.organisation_mask, 1 << id_) != 0) for id_, _ in in_mask]
        columns += [func.coalesce(func.sum(keys).filter(_bits(base.c.organisation_mask, 1 << id_) != 0), 0)
                    for id_, _ in in_mask]
    else:
        # Two aggregates of one query read the rows in the same order: the i-th key is the i-th mask's.
        columns.append(every_value(base.c.organisation_mask))
        columns.append(every_value(keys))
    row = session.execute(select(*columns).select_from(base).where(where)).one()
    ids, size, size_keys, row = integers(row[0]), int(row[1]), int(row[2]), row[3:]
    n_stages = len(LIFECYCLE_STAGES)
    stages = {stage: int(n) for stage, n in zip(LIFECYCLE_STAGES, row)}
    stage_keys = {stage: int(n) for stage, n in zip(LIFECYCLE_STAGES, row[n_stages:])}
    row = row[2 * n_stages:]
    contactable, contactable_keys, row = int(row[0]), int(row[1]), row[2:]
    if count_bits_in_sql:
        per_org = {slug: int(n) for (_id, slug), n in zip(in_mask, row)}
        org_keys = {slug: int(n) for (_id, slug), n in zip(in_mask, row[len(in_mask):])}
    else:
        masks, member_keys = integers(row[0]), integers(row[1])
        per_org = {slug: int(np.count_nonzero(masks & (1 << id_))) for id_, slug in in_mask}
        org_keys = {slug: int(member_keys[(masks & (1 << id_)) != 0].sum()) for id_, slug in in_mask}
    beyond = [(id_, slug) for id_, slug, _name in orgs if id_ > MAX_MASK_ORGANISATION_ID]
    if beyond:
        # Organisations whose id does not fit the mask: count their buyers among the members.
        _, high = window_bounds(as_of, None)
        members_ids = select(base.c.spectator_id).where(where)
        buyers = (select(T.c.organisation_id, T.c.spectator_id)
                  .where(T.c.organisation_id.in_([i for i, _ in beyond]), T.c.purchased_at < high,
                         T.c.spectator_id.in_(members_ids)).distinct().subquery("buyers"))
        sp = Spectator.__table__
        counted = {org: (n, k) for org, n, k in session.execute(
            select(buyers.c.organisation_id, func.count(), func.coalesce(func.sum(sp.c.cell_key), 0))
            .join(sp, sp.c.id == buyers.c.spectator_id)
            .group_by(buyers.c.organisation_id)).all()}
        per_org.update({slug: int(counted.get(id_, (0, 0))[0]) for id_, slug in beyond})
        org_keys.update({slug: int(counted.get(id_, (0, 0))[1]) for id_, slug in beyond})
    found = _Breakdown(ids, size, stages, contactable, per_org, size_keys, stage_keys, contactable_keys, org_keys)
    if transaction is not None:
        _watch(session)
        session.info[_SCAN_KEY] = (transaction, key, found)
    return found


def preview(session: Session, rule: Any, as_of: dt.date | None = None) -> dict:
    """The size of a rule's segment and its breakdowns, small counts suppressed (DESIGN.md §5, §10).

    :param rule: a dict, JSON text or parsed tree; a bad rule raises ``segments.rules.RuleError``.
    :param as_of: the date to evaluate on (default: the profiles' date, else today).
    :returns: ``{"as_of", "profile_as_of", "size", "size_suppressed", "k", "by_organisation":
        [{"organisation": slug, "name", "spectators", "suppressed"}], "lifecycle": [{"stage",
        "spectators", "suppressed"}], "contactable": {"spectators", "share", "suppressed"}}``.
        A spectator counts under every organisation they bought from up to ``as_of``; every count
        under k is None with ``suppressed`` true, and so is what subtraction would reveal.
    """
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    orgs = session.execute(select(ORG.c.id, ORG.c.slug, ORG.c.name).order_by(ORG.c.slug)).all()
    found = _scan(session, node, as_of, stored, orgs)
    size, stages, contactable, per_org = found.size, found.stages, found.contactable, found.per_org

    k = strictest_k(session)
    size_hidden = is_small(size, k)
    # A spectator counts under several organisations: no total adds them up, nothing to subtract.
    org_shown = suppress(per_org, k, total_shown=False)
    stage_shown = suppress(stages, k, total_shown=True)
    reach = suppress({"yes": contactable, "no": size - contactable}, k, total_shown=True)
    if size_hidden:
        org_shown = {key: (None if n else n) for key, n in org_shown.items()}
        stage_shown = {key: (None if n else n) for key, n in stage_shown.items()}
        reach = {"yes": None, "no": None}
    names = {slug: name for _id, slug, name in orgs}
    return {
        "as_of": as_of.isoformat(),
        "profile_as_of": stored.isoformat() if stored else None,
        "size": None if size_hidden else size,
        "size_suppressed": size_hidden,
        "k": k,
        "by_organisation": [
            {"organisation": slug, "name": names[slug], "spectators": org_shown[slug],
             "suppressed": org_shown[slug] is None}
            for slug in sorted(per_org)
        ],
        "lifecycle": [
            {"stage": stage, "spectators": stage_shown[stage], "suppressed": stage_shown[stage] is None}
            for stage in LIFECYCLE_STAGES
        ],
        "contactable": {
            "spectators": reach["yes"],
            "share": None if size_hidden or reach["yes"] is None else share(reach["yes"], size),
            "suppressed": reach["yes"] is None,
        },
    }


def universe(session: Session, as_of: dt.date | None = None) -> Cell:
    """The fingerprint of every spectator a rule can select on ``as_of`` (those who bought something
    up to then): the whole whose complement a preview's size must not reveal."""
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    if stored is not None and as_of == stored:
        count, keys = session.execute(select(func.count(), func.sum(P.c.cell_key))).one()
    else:
        facts = facts_select(as_of, columns={"spectator_id", "cell_key"}).subquery("facts")
        count, keys = session.execute(select(func.count(), func.sum(facts.c.cell_key))).one()
    return Cell.of(count, keys)


def question_key(node: Node, as_of: dt.date) -> str:
    """The name of a preview question in the noise's seed: the parsed rule in canonical JSON and
    the date, so that asking it again gives the same figures (core.privacy)."""
    return "preview:" + json.dumps({"rule": node.to_json(), "as_of": as_of.isoformat()}, sort_keys=True,
                                   separators=(",", ":"), ensure_ascii=False)


def protected_preview(session: Session, rule: Any, release: Release, as_of: dt.date | None = None) -> dict:
    """The preview shown in the web pages: every figure noisy and thresholded (core.privacy).

    The same shape as :func:`preview` (``size``, ``size_suppressed``, ``by_organisation``,
    ``lifecycle``, ``contactable``), with ``k`` the release's, each hidden figure None with
    ``suppressed`` true and a ``status`` ("shown", "small": fewer than k, "all_but": all but fewer
    than k) and a ``text`` that says it. Each figure has noise of its own, keyed by the question
    (:func:`question_key`), the field (``size``, ``org.<slug>``, ``stage.<stage>``,
    ``contactable``: two fields over one set are independent draws) and the set's fingerprint.
    The size is also hidden when the noisy complement (noisy universe minus the noisy size) is
    under k; each breakdown figure when the noisy size minus it is under k. When the size is
    hidden, so is every breakdown figure.

    :returns: that dict, plus ``epoch`` (the data epoch the figures belong to).
    """
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    orgs = session.execute(select(ORG.c.id, ORG.c.slug, ORG.c.name).order_by(ORG.c.slug)).all()
    found = _scan(session, node, as_of, stored, orgs)
    whole = release.noisy(f"universe.{as_of.isoformat()}", universe(session, as_of))
    # The question itself keys the noise too (core.privacy, "Why the question keys the noise").
    asked = question_key(node, as_of)
    size = release.figure(f"{asked}.size", Cell(found.size, found.size_keys), whole=whole)

    def part(name: str, cell: Cell) -> Figure:
        if size.status != "shown":
            return Figure(None, "small", release.k)
        return release.figure(f"{asked}.{name}", cell, whole=size.value)

    names = {slug: name for _id, slug, name in orgs}
    orgs_shown = {slug: part(f"org.{slug}", Cell(found.per_org[slug], (found.org_keys or {}).get(slug, 0)))
                  for slug in sorted(found.per_org)}
    stages = {stage: part(f"stage.{stage}", Cell(found.stages[stage], (found.stage_keys or {}).get(stage, 0)))
              for stage in LIFECYCLE_STAGES}
    reach = part("contactable", Cell(found.contactable, found.contactable_keys))
    return {
        "as_of": as_of.isoformat(),
        "profile_as_of": stored.isoformat() if stored else None,
        "size": size.value,
        "size_suppressed": size.suppressed,
        "size_status": size.status,
        "size_text": size.label(),
        "k": release.k,
        "epoch": release.epoch,
        "by_organisation": [
            {"organisation": slug, "name": names[slug], "spectators": fig.value, "suppressed": fig.suppressed,
             "status": fig.status, "text": fig.label()}
            for slug, fig in orgs_shown.items()
        ],
        "lifecycle": [
            {"stage": stage, "spectators": fig.value, "suppressed": fig.suppressed, "status": fig.status,
             "text": fig.label()}
            for stage, fig in stages.items()
        ],
        "contactable": {
            "spectators": reach.value,
            "share": share(reach.value, size.value) if reach.value is not None else None,
            "suppressed": reach.suppressed,
            "status": reach.status,
            "text": reach.label(),
        },
    }
