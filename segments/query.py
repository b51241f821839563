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

Previews and member lists (``segments.preview``) read the ids and organisation masks as one
aggregated value (``core.sql_expressions.every_value``): a row per member costs the drivers more than the scan
that finds them; one scan answers both, remembered until the session writes.

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
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import (
    BigInteger,
    Select,
    String,
    and_,
    case,
    cast,
    distinct,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from core.models import DISCIPLINES, Organisation, Show, Transaction, Venue
from core.sql_expressions import prefix_match, unindexed
from segments.models import SpectatorProfile
from segments.profiles import (
    MAX_MASK_ORGANISATION_ID,
    WINDOW_COLUMNS,
    facts_select,
    order_key,
    window_bounds,
)
from segments.rules import Condition, Group, Node, Not, check_as_of, compare, iter_conditions, parse_rule

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
    {"spectator_id", *next(index for index in P.indexes if index.name == "ix_spectator_profile_fsa").columns.keys()}
)


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


def mask_ids(cond: Condition, organisations: Mapping[str, int] | None) -> list[int] | None:
    """The organisation ids of an organisation condition when the mask can answer it, else None."""
    if organisations is None:
        return None
    ids = [organisations[slug] for slug in cond.value if slug in organisations]
    if any(i > MAX_MASK_ORGANISATION_ID for i in ids):
        return None
    return ids


def base_column(cond: Condition) -> str:
    """The base's column for a condition it answers (see :func:`on_base`)."""
    if cond.within_days is not None:
        return WINDOW_COLUMNS[(cond.field, cond.within_days)]
    return PROFILE_COLUMN[cond.field]


def on_base(cond: Condition, organisations: Mapping[str, int] | None, windows: bool = True) -> bool:
    """Whether the base table (profiles or derived facts) answers this condition.

    :param windows: False leaves every window to the transactions (the reference path the tests
        compare the windowed columns with).
    """
    if cond.within_days is not None and not (windows and (cond.field, cond.within_days) in WINDOW_COLUMNS):
        return False
    if cond.field == "venue":
        return False
    if cond.field == "organisation":
        return mask_ids(cond, organisations) is not None
    return True


def _base_columns(node: Node, organisations, extra=(), windows: bool = True) -> set[str]:
    columns = {"spectator_id", *extra}
    for cond in iter_conditions(node):
        if on_base(cond, organisations, windows):
            columns.add(base_column(cond))
    return columns


def plan_rule(
    node: Node,
    as_of: dt.date,
    profile_as_of: dt.date | None,
    organisations: Mapping[str, int] | None,
    extra_columns=(),
    windows: bool = True,
) -> tuple[Any, Any]:
    """(base, where): the FROM of the rule's spectators and the predicate that selects them."""
    check_as_of(as_of)
    columns = _base_columns(node, organisations, extra_columns, windows)
    if profile_as_of is not None and as_of == profile_as_of:
        base = P
    else:
        base = facts_select(as_of, columns=columns, consents_on=consents_day(as_of, profile_as_of)).subquery("facts")
    ctx = _Context(as_of, organisations, base, windows, fsa_covers=base is P and columns <= FSA_INDEX_COLUMNS)
    return base, _node(node, ctx)


def compile_rule(
    node: Node,
    as_of: dt.date,
    profile_as_of: dt.date | None,
    organisations: Mapping[str, int] | None = None,
    windows: bool = True,
) -> Select:
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
    base, where = plan_rule(node, as_of, profile_as_of, organisations, windows=windows)
    return select(base.c.spectator_id).where(where)


# --- the tree -------------------------------------------------------------------------------------


def _cost_rank(node: Node, ctx: _Context) -> int:
    """Where a group's child comes in the SQL: conditions on the base table by the position of
    their column, then the rest (subgroups, transactions). Engines mostly test a row's conditions
    in the written order and stop at the first that decides: an early, fixed-width column is
    cheap to read, a late text or a subquery is not."""
    if isinstance(node, Condition) and on_base(node, ctx.organisations, ctx.windows):
        name = base_column(node)
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


def _not_null(column, predicate):
    return and_(column.is_not(None), predicate)


def mask_and(column, mask: int):
    """``column & mask``, the mask a 64-bit integer on both engines."""
    return column.op("&")(cast(literal(mask), BigInteger))


def _mask_test(column, op: str, mask: int, complete: bool = True):
    """any / all / none of the bits of ``mask``; ``complete`` False makes ``all`` impossible
    (a value of the rule that matches nothing)."""
    if op == "any":
        return mask_and(column, mask) != 0 if mask else false()
    if op == "all":
        return mask_and(column, mask) == mask if complete else false()
    return mask_and(column, mask) == 0


def _date_span(op: str, value) -> float:
    """How many days of purchase dates a days-since condition keeps (purchases are ≤ as_of)."""
    if op == "between":
        return value[1] - value[0]
    if op in ("<", "<="):
        return value
    if op == "=":
        return 0
    return float("inf")  # >, >=, != reach back to the first purchase


# days = as_of − date, so "days op v" is "date FLIPPED[op] as_of − v"
FLIPPED = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _days_since(column, op: str, value, as_of: dt.date):
    """days = as_of − column (a date): compare on the column, so an index can serve a narrow
    range; SQLite reads a wide one in table order (see ``SQLITE_SCAN_FROM_DAYS``)."""

    def day(days: int) -> dt.date:
        return as_of - dt.timedelta(days=days)

    if _date_span(op, value) >= SQLITE_SCAN_FROM_DAYS:
        column = unindexed(column)
    if op == "between":
        low, high = value
        predicate = and_(column >= day(high), column <= day(low))
    else:
        predicate = compare(column, FLIPPED[op], day(value))
    return _not_null(column, predicate)


def _condition(cond: Condition, ctx: _Context):
    field, op, value = cond.field, cond.op, cond.value
    if not on_base(cond, ctx.organisations, ctx.windows):
        kind = cond.spec.kind
        if kind == "set":
            return _set_from_transactions(cond, ctx)
        return _count_from_transactions(cond, ctx)
    column = ctx.base.c[base_column(cond)]
    if field == "organisation":
        ids = mask_ids(cond, ctx.organisations)
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
    return _not_null(column, compare(column, op, value))


# From this many days on, SQLite reads a window's purchases in spectator order rather than through
# the purchase-date index: that index costs a table lookup per row, which loses once the window
# holds more than about a tenth of the rows (measured on the 50k demo: 3x faster at a year). The
# same holds for the profiles' last-purchase index (3.5x faster on a 548-day range at 250k).
SQLITE_SCAN_FROM_DAYS = 90


def _starts_with(column, prefix: str, covered: bool = False):
    """``column`` starts with ``prefix`` (a non-empty ASCII text). On SQLite, a prefix shorter
    than a whole FSA reads the table in order rather than through the FSA index, unless that
    index holds every column the query reads (``covered``): such a prefix holds a large share of
    the district, and a table lookup per index entry loses (as for dates) where a range of the
    narrower index alone wins (5x on the geography rule of the benchmark)."""
    successor = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if len(prefix) < 3 and not covered:
        column = unindexed(column)
    # LIKE's wildcards and its escape character (backslash, PostgreSQL's default) stand for themselves.
    pattern = "".join("\\" + c if c in "%_\\" else c for c in prefix) + "%"
    return prefix_match(
        column, literal(prefix, String), literal(len(prefix)), literal(successor, String), literal(pattern, String)
    )


def _window(t, cond: Condition, as_of: dt.date, prefer_scan: bool = True) -> list:
    low, high = window_bounds(as_of, cond.within_days)
    purchased_at = t.c.purchased_at
    if prefer_scan and (cond.within_days is None or cond.within_days >= SQLITE_SCAN_FROM_DAYS):
        purchased_at = unindexed(purchased_at)
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
    buyers = (
        select(t.c.spectator_id)
        .select_from(source)
        .where(*_window(t, cond, ctx.as_of, prefer_scan=not selective), match)
    )
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
    predicate = compare(value, cond.op, cond.value)
    grouped = select(t.c.spectator_id).where(*_window(t, cond, ctx.as_of)).group_by(t.c.spectator_id)
    spectator = ctx.base.c.spectator_id
    if compare(0, cond.op, cond.value):
        # Spectators without purchases in the window hold: keep all but those who fail.
        return spectator.not_in(grouped.having(not_(predicate)))
    return spectator.in_(grouped.having(predicate))
