"""The rule compiler: a parsed segment rule (segments.rules) as one SQL SELECT of spectator ids.

Conditions go to the cheapest place that answers them exactly like the reference evaluator
(``segments.rules.evaluate``):

- the stored profiles (``spectator_profile``), when the rule's ``as_of`` is the profiles' date and
  the condition has no ``within_days``; organisation and discipline sets are bit tests on the masks
  (any: ``mask & m <> 0``, all: ``mask & m = m``, none: ``mask & m = 0``);
- the same facts computed from the transactions as a derived table (``profiles.facts_select``),
  when the rule's date is another one;
- IN / NOT IN subqueries on the transactions, grouped by spectator, for ``within_days``, venues
  and organisations whose id does not fit the mask. A spectator without purchases in the window
  is in no such subquery, so a condition that such a spectator satisfies (``shows < 3``,
  ``none``) is written as the complement: NOT IN the spectators who fail it.

``shows`` within 548 days is the life cycle's window, stored as ``shows_548``: the classic upsell
rule stays on the profiles. On SQLite, windows of 90 days or more read the transactions in
spectator order rather than through the purchase-date index (see ``SQLITE_SCAN_FROM_DAYS``).

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
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from core.models import DISCIPLINES, Organisation, Show, Transaction, Venue
from core.privacy import is_small, share, strictest_k, suppress
from segments.models import SpectatorProfile
from segments.profiles import (
    LIFECYCLE_STAGES,
    LIFECYCLE_WINDOW_DAYS,
    MAX_MASK_ORGANISATION_ID,
    facts_select,
    order_key,
    profiles_as_of,
    window_bounds,
    without_jit,
)
from segments.rules import Condition, Group, Node, Not, iter_conditions, parse_rule

T = Transaction.__table__
S = Show.__table__
V = Venue.__table__
O = Organisation.__table__
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
BREAKDOWN_COLUMNS = ("organisation_mask", "lifecycle", "contactable")


@dataclass(frozen=True)
class _Context:
    as_of: dt.date
    organisations: Mapping[str, int] | None
    base: Any  # the profile table, or the facts derived table


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
    if cond.field == "shows" and cond.within_days == LIFECYCLE_WINDOW_DAYS:
        return "shows_548"
    return PROFILE_COLUMN[cond.field]


def _on_base(cond: Condition, organisations: Mapping[str, int] | None) -> bool:
    """Whether the base table (profiles or derived facts) answers this condition."""
    if cond.field == "shows" and cond.within_days == LIFECYCLE_WINDOW_DAYS:
        return True  # the life cycle's window: stored as shows_548
    if cond.within_days is not None or cond.field == "venue":
        return False
    if cond.field == "organisation":
        return _mask_ids(cond, organisations) is not None
    return True


def _base_columns(node: Node, organisations, extra=()) -> set[str]:
    columns = {"spectator_id", *extra}
    for cond in iter_conditions(node):
        if _on_base(cond, organisations):
            columns.add(_base_column(cond))
    return columns


def _plan(node: Node, as_of: dt.date, profile_as_of: dt.date | None,
          organisations: Mapping[str, int] | None, extra_columns=()) -> tuple[Any, Any]:
    """(base, where): the FROM of the rule's spectators and the predicate that selects them."""
    if profile_as_of is not None and as_of == profile_as_of:
        base = P
    else:
        columns = _base_columns(node, organisations, extra_columns)
        base = facts_select(as_of, columns=columns, consents_on=consents_day(as_of, profile_as_of)).subquery("facts")
    ctx = _Context(as_of, organisations, base)
    return base, _node(node, ctx)


def compile_rule(node: Node, as_of: dt.date, profile_as_of: dt.date | None,
                 organisations: Mapping[str, int] | None = None) -> Select:
    """One SELECT of the ids of the spectators matching ``node`` on ``as_of``.

    :param node: a parsed rule (``segments.rules.parse_rule``).
    :param as_of: the date the rule is evaluated on.
    :param profile_as_of: the date of the stored profiles (None when there are none); when it
        equals ``as_of`` the profiles answer what they can.
    :param organisations: slug → id of the organisations, to answer organisation sets from the
        profiles' bit masks; without it, organisation sets are answered from the transactions.
    """
    base, where = _plan(node, as_of, profile_as_of, organisations)
    return select(base.c.spectator_id).where(where)


# --- the tree -------------------------------------------------------------------------------------

def _node(node: Node, ctx: _Context):
    if isinstance(node, Group):
        parts = [_node(child, ctx) for child in node.children]
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


def _days_since(column, op: str, value, as_of: dt.date):
    """days = as_of − column (a date): compare on the column, so an index can serve."""

    def day(days: int) -> dt.date:
        return as_of - dt.timedelta(days=days)

    if op == "between":
        low, high = value
        predicate = and_(column >= day(high), column <= day(low))
    else:
        flipped = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}[op]
        predicate = _compare(column, flipped, day(value))
    return _not_null(column, predicate)


def _condition(cond: Condition, ctx: _Context):
    field, op, value = cond.field, cond.op, cond.value
    if not _on_base(cond, ctx.organisations):
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
        return _not_null(column, or_(*(func.substr(column, 1, len(prefix)) == prefix for prefix in value)))
    return _not_null(column, _compare(column, op, value))


# From this many days on, SQLite reads a window's purchases in spectator order rather than through
# the purchase-date index: that index costs a table lookup per row, which loses once the window
# holds more than about a tenth of the rows (measured on the 50k demo: 3x faster at a year).
SQLITE_SCAN_FROM_DAYS = 90


class _no_index(FunctionElement):
    """A column SQLite must not use an index for (``+column``); the column itself elsewhere."""

    name = "no_index"
    inherit_cache = True

    def __init__(self, column):
        super().__init__(column)
        self.type = column.type


@compiles(_no_index)
def _no_index_default(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(_no_index, "sqlite")
def _no_index_sqlite(element, compiler, **kw):
    return "+" + compiler.process(element.clauses, **kw)


def _window(t, cond: Condition, as_of: dt.date, prefer_scan: bool = True) -> list:
    low, high = window_bounds(as_of, cond.within_days)
    purchased_at = t.c.purchased_at
    if prefer_scan and (cond.within_days is None or cond.within_days >= SQLITE_SCAN_FROM_DAYS):
        purchased_at = _no_index(purchased_at)
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
        match = t.c.organisation_id.in_(select(O.c.id).where(O.c.slug.in_(values)))
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
    return dict(session.execute(select(O.c.slug, O.c.id)).all())


def default_as_of(session: Session) -> dt.date:
    """The profiles' date (the fast path), or today when there are no profiles."""
    return profiles_as_of(session) or dt.date.today()


def members_select(session: Session, rule: Any, as_of: dt.date | None = None) -> Select:
    """The compiled SELECT of a rule's spectator ids, for this database's profiles."""
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    without_jit(session)
    return compile_rule(node, as_of, stored, organisation_ids(session))


def members(session: Session, rule: Any, as_of: dt.date | None = None) -> list[int]:
    """The sorted ids of the spectators matching ``rule`` (dict, JSON text or tree) on ``as_of``
    (default: the profiles' date)."""
    return sorted(session.scalars(members_select(session, rule, as_of)))


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
    without_jit(session)
    orgs = session.execute(select(O.c.id, O.c.slug, O.c.name).order_by(O.c.slug)).all()
    slugs = {slug: id_ for id_, slug, _name in orgs}
    base, where = _plan(node, as_of, stored, slugs, BREAKDOWN_COLUMNS)
    in_mask = [(id_, slug) for id_, slug, _name in orgs if id_ <= MAX_MASK_ORGANISATION_ID]
    columns = [func.count().label("size")]
    columns += [func.sum(case((_bits(base.c.organisation_mask, 1 << id_) != 0, 1), else_=0)) for id_, _ in in_mask]
    columns += [func.sum(case((base.c.lifecycle == stage, 1), else_=0)) for stage in LIFECYCLE_STAGES]
    columns.append(func.sum(case((base.c.contactable, 1), else_=0)))
    row = session.execute(select(*columns).select_from(base).where(where)).one()
    values = [int(v or 0) for v in row]
    size = values[0]
    per_org = {slug: values[1 + i] for i, (_id, slug) in enumerate(in_mask)}
    stages = dict(zip(LIFECYCLE_STAGES, values[1 + len(in_mask):1 + len(in_mask) + len(LIFECYCLE_STAGES)]))
    contactable = values[-1]
    beyond = [(id_, slug) for id_, slug, _name in orgs if id_ > MAX_MASK_ORGANISATION_ID]
    if beyond:
        # Organisations whose id does not fit the mask: count their buyers among the members.
        _, high = window_bounds(as_of, None)
        members_ids = select(base.c.spectator_id).where(where)
        counted = dict(session.execute(
            select(T.c.organisation_id, func.count(distinct(T.c.spectator_id)))
            .where(T.c.organisation_id.in_([i for i, _ in beyond]), T.c.purchased_at < high,
                   T.c.spectator_id.in_(members_ids))
            .group_by(T.c.organisation_id)).all())
        per_org.update({slug: int(counted.get(id_, 0)) for id_, slug in beyond})

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
