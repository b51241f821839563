"""The segment rule language (DESIGN.md §7): parsing, validation and a reference evaluator."""

# This module is pure: standard library only, no Flask, no ORM. The SQL compiler lives elsewhere and
# walks the tree built here; `evaluate` below is the plain-Python reference that the compiler's
# results are tested against, so every definition it uses is written out once, here, and the SQL
# must mirror it (notes marked "SQL:" say how).

from __future__ import annotations

import datetime as dt
import json
import math
import operator
import re
import statistics
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Union

from segments.lifecycle import LAPSE_DAYS, LIFECYCLE_DAYS, STAGES, lifecycle_stage

__all__ = [
    "CHANNELS",
    "DISCIPLINES",
    "FIELDS",
    "LIFECYCLE_STAGES",
    "MAX_DEPTH",
    "MAX_NODES",
    "MESSAGES",
    "Condition",
    "FieldSpec",
    "Group",
    "Node",
    "Not",
    "Purchase",
    "RuleError",
    "SpectatorFacts",
    "evaluate",
    "iter_conditions",
    "lifecycle_stage",
    "parse_rule",
    "stage_of",
]

# Closed vocabularies. They repeat core.models (which imports SQLAlchemy, so it cannot be imported
# here); a test checks that the two stay equal.
DISCIPLINES = ("music", "theatre", "dance", "humour", "circus", "classical", "festival", "other")
CHANNELS = ("web", "box_office", "phone")  # also the tie-break order of the main channel
LIFECYCLE_STAGES = STAGES

# Limits that keep hostile input cheap: parsing is linear in the input and never recurses deeper
# than MAX_DEPTH, whatever it is given.
MAX_DEPTH = 12  # nesting levels, the root being level 1
MAX_NODES = 200  # groups, negations and conditions together
MAX_VALUES = 1000  # items in one list value (there are about 1,600 FSAs in Canada)
MAX_TEXT = 200  # characters in one string value (the longest stored key, a venue name)
MAX_RULE_CHARS = 1_000_000
MAX_COUNT = 1_000_000_000
MAX_DAYS = 36_525  # 100 years: as_of − D stays a valid date, and fits any SQL interval
MAX_DOLLARS = 1_000_000_000  # 10^11 cents: fits BIGINT, and dollars round-trip exactly as floats
# The dates a rule may be evaluated on: wide enough for any ticketing history, narrow enough that
# as_of − MAX_DAYS and as_of + 1 day stay valid dates in Python and in both databases.
EARLIEST_AS_OF = dt.date(1900, 1, 1)
LATEST_AS_OF = dt.date(2999, 12, 31)


_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # as `pilot orgs create` accepts them
_FSA = re.compile(r"[A-Z][0-9][A-Z]")  # as core.identity.fsa_of stores them (ASCII digits)
_FSA_PREFIX = re.compile(r"[A-Z]([0-9][A-Z]?)?")

NUMERIC_OPS = ("=", "!=", ">", ">=", "<", "<=", "between")
SET_OPS = ("any", "all", "none")
MEMBER_OPS = ("in", "not_in")


# --- The field table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """What one rule field accepts; the rule builder of the UI reads these to offer its choices.

    ``kind`` is one of set, count, money, days, stage, boolean, channel, share, fsa. ``values`` is
    the closed vocabulary of the field's list values, if it has one. ``minimum``/``maximum`` bound
    numeric values, in the unit the JSON uses (dollars for money). ``integer`` says whether
    numeric values must be whole numbers.
    """

    name: str
    kind: str
    ops: tuple[str, ...]
    within_days: bool = False
    values: tuple[str, ...] | None = None
    integer: bool = True
    minimum: int | float | None = None
    maximum: int | float | None = None


def _spec(name: str, kind: str, ops: tuple[str, ...], **extra: Any) -> tuple[str, FieldSpec]:
    return name, FieldSpec(name, kind, ops, **extra)


FIELDS: dict[str, FieldSpec] = dict(
    [
        _spec("organisation", "set", SET_OPS, within_days=True),
        _spec("discipline", "set", SET_OPS, within_days=True, values=DISCIPLINES),
        _spec("venue", "set", SET_OPS, within_days=True),
        _spec("shows", "count", NUMERIC_OPS, within_days=True, minimum=0, maximum=MAX_COUNT),
        _spec("orders", "count", NUMERIC_OPS, within_days=True, minimum=0, maximum=MAX_COUNT),
        _spec("tickets", "count", NUMERIC_OPS, within_days=True, minimum=0, maximum=MAX_COUNT),
        # Given in dollars (two decimals at most), stored in the tree as integer cents.
        _spec("spent", "money", NUMERIC_OPS, within_days=True, integer=False, minimum=0, maximum=MAX_DOLLARS),
        _spec("days_since_last", "days", NUMERIC_OPS, minimum=0, maximum=MAX_DAYS),
        _spec("days_since_first", "days", NUMERIC_OPS, minimum=0, maximum=MAX_DAYS),
        _spec("lifecycle", "stage", MEMBER_OPS, values=LIFECYCLE_STAGES),
        _spec("subscriber", "boolean", ("is",)),
        _spec("newsletter", "boolean", ("is",)),
        _spec("contactable", "boolean", ("is",)),
        _spec("channel", "channel", MEMBER_OPS, values=CHANNELS),
        _spec("promo_share", "share", NUMERIC_OPS, integer=False, minimum=0, maximum=1),
        # A median, so it may be fractional.
        _spec("lead_days", "days", NUMERIC_OPS, integer=False, minimum=0, maximum=MAX_DAYS),
        _spec("fsa", "fsa", (*MEMBER_OPS, "starts_with")),
    ]
)


# --- Errors --------------------------------------------------------------------------------------

# One English template per error code, filled with the error's params and ``where`` (its path, "/"
# for the root); `code` and `params` let the UI translate them later.
MESSAGES = {
    "invalid_json": "the rule is not valid JSON ({reason})",
    "too_long": "the rule is too long ({length} characters, at most {limit})",
    "not_a_node": "expected a group or a condition (a JSON object), got {value} at {where}",
    "unknown_node": "expected a group ('all', 'any', 'not') or a condition ('field', 'op', 'value'), got keys {keys} at {where}",
    "ambiguous_node": "a node is either one group or one condition, got keys {keys} at {where}",
    "unknown_key": "unknown key {key} at {where} (expected: {expected})",
    "missing_key": "the condition has no '{key}' at {where}",
    "group_not_a_list": "group '{group}' takes a list of groups and conditions, got {value} at {where}",
    "empty_group": "group '{group}' is empty at {where}: give it at least one condition",
    "too_deep": "the rule is nested too deeply at {where} (at most {limit} levels)",
    "too_many_nodes": "the rule has too many groups and conditions at {where} (at most {limit})",
    "unknown_field": "unknown field {field} at {where} (known fields: {known})",
    "unknown_operator": "operator {op} is not valid for field '{field}' (valid: {valid}) at {where}",
    "within_days_not_allowed": "'within_days' is not allowed for field '{field}' at {where} (allowed for: {allowed})",
    "invalid_within_days": "'within_days' of field '{field}' at {where} must be a whole number of days from 1 to {limit}, got {value}",
    "expected_list": "field '{field}' with operator '{op}' takes a list of values, got {value} at {where}",
    "empty_list": "field '{field}' with operator '{op}' at {where} needs at least one value",
    "too_many_values": "field '{field}' takes at most {limit} values, got {count} at {where}",
    "invalid_text": "value {value} of field '{field}' at {where} must be non-empty text of at most {limit} characters, without control characters",
    "unknown_value": "unknown value {value} for field '{field}' at {where} (valid: {valid})",
    "invalid_slug": "value {value} of field 'organisation' is not an organisation slug at {where} (lower-case letters, digits and dashes)",
    "invalid_fsa": "value {value} of field 'fsa' is not an FSA at {where} (letter, digit, letter, like 'H2X')",
    "invalid_fsa_prefix": "value {value} of field 'fsa' is not the start of an FSA at {where} (like 'H', 'H2' or 'H2X')",
    "expected_boolean": "field '{field}' takes true or false, got {value} at {where}",
    "expected_number": "field '{field}' takes a number, got {value} at {where}",
    "expected_integer": "field '{field}' takes a whole number, got {value} at {where}",
    "out_of_range": "value {value} of field '{field}' is out of range at {where} ({low} to {high})",
    "too_precise": "amount {value} of field '{field}' has more than two decimals at {where} (give dollars and cents)",
    "expected_range": "operator 'between' of field '{field}' takes [low, high], got {value} at {where}",
    "reversed_range": "range of field '{field}' is reversed at {where}: low {low} is above high {high}",
    "as_of_out_of_range": "the date {value} is out of range ({low} to {high})",
}


class RuleError(Exception):
    """A refused rule: where (``path``), why (``message``, English) and, for translation, ``code``
    (a key of MESSAGES) with ``params`` (strings and numbers the template is filled with).

    ``path`` is a JSON pointer into the rule, e.g. ``/all/2/value``; the root is ``""``.
    """

    def __init__(self, code: str, path: str, **params: Any) -> None:
        self.code = code
        self.path = path
        self.params = params
        self.message = MESSAGES[code].format(**params, where=path or "/")
        super().__init__(self.message)

    @property
    def message_key(self) -> str:
        return self.code


def _show(value: Any) -> str:
    """A short, safe description of any value for a message (never a huge or recursive repr)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of an int of thousands of digits raises ValueError; nobody needs to read it anyway.
        return str(value) if value.bit_length() <= 64 else "a very large number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:50]) + ("…" if len(value) > 50 else "")
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _join(names: Iterable[str]) -> str:
    return ", ".join(names)


def _child_path(path: str, key: Any) -> str:
    # RFC 6901 escaping, so a key holding "/" cannot fake a deeper path.
    text = key.replace("~", "~0").replace("/", "~1") if isinstance(key, str) else _show(key)
    return f"{path}/{text}"


# --- The tree ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """``{"all": [...]}`` (every child holds) or ``{"any": [...]}`` (at least one does)."""

    kind: Literal["all", "any"]
    children: tuple[Node, ...]

    def to_json(self) -> dict[str, Any]:
        return {self.kind: [child.to_json() for child in self.children]}


@dataclass(frozen=True)
class Not:
    """``{"not": NODE}``."""

    child: Node

    def to_json(self) -> dict[str, Any]:
        return {"not": self.child.to_json()}


@dataclass(frozen=True)
class Condition:
    """A leaf ``{"field": F, "op": OP, "value": V, "within_days": D}``, normalised.

    ``value`` by kind: a tuple of strings for list values (set, stage, channel, fsa, deduplicated,
    in the given order); a bool for ``is``; a number for comparisons, and a ``(low, high)`` tuple for
    ``between``. Money (``spent``) is integer cents here and dollars in JSON. Build conditions with
    `parse_rule`: the constructor does not validate.
    """

    field: str
    op: str
    value: Any
    within_days: int | None = None

    @property
    def spec(self) -> FieldSpec:
        return FIELDS[self.field]

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if self.spec.kind == "money":
            value = tuple(_cents_to_dollars(v) for v in value) if self.op == "between" else _cents_to_dollars(value)
        out = {"field": self.field, "op": self.op, "value": list(value) if isinstance(value, tuple) else value}
        if self.within_days is not None:
            out["within_days"] = self.within_days
        return out


Node = Union[Group, Not, Condition]


def _cents_to_dollars(cents: int) -> int | float:
    # Below 10^15 cents a float's shortest repr is exactly the two-decimal amount, so parsing it
    # back gives the same cents.
    return cents // 100 if cents % 100 == 0 else cents / 100


def iter_conditions(node: Node) -> Iterator[Condition]:
    """Every condition of a tree, depth first (e.g. to know which facts a compiler must join)."""
    if isinstance(node, Condition):
        yield node
    elif isinstance(node, Not):
        yield from iter_conditions(node.child)
    else:
        for child in node.children:
            yield from iter_conditions(child)


# --- Parsing -------------------------------------------------------------------------------------

_GROUP_KEYS = ("all", "any", "not")
_CONDITION_KEYS = ("field", "op", "value", "within_days")


def parse_rule(data: Any) -> Node:
    """Validate and normalise a rule given as a dict or a JSON text; raise RuleError if refused.

    Any input at all either gives a tree or raises RuleError: never another exception, and never
    work beyond MAX_DEPTH levels, MAX_NODES nodes and MAX_VALUES values per list.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RuleError("invalid_json", "", reason=f"not UTF-8 at byte {exc.start}") from None
    if isinstance(data, str):
        if len(data) > MAX_RULE_CHARS:
            raise RuleError("too_long", "", length=len(data), limit=MAX_RULE_CHARS)
        try:
            data = json.loads(data, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            # RecursionError: deeply nested brackets; ValueError also covers huge integers.
            reason = str(exc)[:100] if isinstance(exc, ValueError) else "nested too deeply"
            raise RuleError("invalid_json", "", reason=reason) from None
    return _Parser().node(data, "", 1)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


class _Parser:
    """One parse: counts nodes so the MAX_NODES limit covers the whole tree."""

    def __init__(self) -> None:
        self.nodes = 0

    def node(self, data: Any, path: str, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise RuleError("too_deep", path, limit=MAX_DEPTH)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise RuleError("too_many_nodes", path, limit=MAX_NODES)
        if not isinstance(data, dict):
            raise RuleError("not_a_node", path, value=_show(data))
        keys = list(data)
        groups = [k for k in _GROUP_KEYS if k in data]
        if len(groups) > 1 or (groups and "field" in data):
            raise RuleError("ambiguous_node", path, keys=_join(_show(k) for k in keys[:6]))
        if groups:
            kind = groups[0]
            for key in keys:
                if key != kind:
                    raise RuleError("unknown_key", _child_path(path, key), key=_show(key), expected=f"'{kind}' alone")
            if kind == "not":
                return Not(self.node(data["not"], _child_path(path, "not"), depth + 1))
            return self.group(kind, data[kind], _child_path(path, kind), depth)
        if "field" in data:
            return self.condition(data, path)
        if "op" in data or "value" in data:
            raise RuleError("missing_key", path, key="field")
        raise RuleError("unknown_node", path, keys=_join(_show(k) for k in keys[:6]) or "none")

    def group(self, kind: str, children: Any, path: str, depth: int) -> Group:
        if not isinstance(children, (list, tuple)):
            raise RuleError("group_not_a_list", path, group=kind, value=_show(children))
        if not children:
            raise RuleError("empty_group", path, group=kind)
        parsed = tuple(self.node(child, _child_path(path, i), depth + 1) for i, child in enumerate(children))
        return Group(kind, parsed)  # type: ignore[arg-type]

    def condition(self, data: dict, path: str) -> Condition:
        for key in data:
            if key not in _CONDITION_KEYS:
                raise RuleError("unknown_key", _child_path(path, key), key=_show(key), expected=_join(_CONDITION_KEYS))
        name = data["field"]
        spec = FIELDS.get(name) if isinstance(name, str) else None
        if spec is None:
            raise RuleError("unknown_field", path, field=_show(name), known=_join(FIELDS))
        if "op" not in data:
            raise RuleError("missing_key", path, key="op")
        op = data["op"]
        if not isinstance(op, str) or op not in spec.ops:
            raise RuleError("unknown_operator", path, op=_show(op), field=name, valid=_join(spec.ops))
        if "value" not in data:
            raise RuleError("missing_key", path, key="value")
        value = _value(spec, op, data["value"], _child_path(path, "value"))
        within_days = _within_days(spec, data.get("within_days"), _child_path(path, "within_days"))
        return Condition(name, op, value, within_days)


def _within_days(spec: FieldSpec, raw: Any, path: str) -> int | None:
    if raw is None:  # absent, or an explicit null from a form: all purchases up to as_of count
        return None
    if not spec.within_days:
        allowed = [f.name for f in FIELDS.values() if f.within_days]
        raise RuleError("within_days_not_allowed", path, field=spec.name, allowed=_join(allowed))
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_DAYS:
        raise RuleError("invalid_within_days", path, field=spec.name, limit=MAX_DAYS, value=_show(raw))
    return raw


def _value(spec: FieldSpec, op: str, raw: Any, path: str) -> Any:
    if spec.kind == "boolean":
        if not isinstance(raw, bool):
            raise RuleError("expected_boolean", path, field=spec.name, value=_show(raw))
        return raw
    if op in NUMERIC_OPS:
        if op != "between":
            return _number(spec, raw, path)
        if not isinstance(raw, (list, tuple)) or len(raw) != 2:
            raise RuleError("expected_range", path, field=spec.name, value=_show(raw))
        low = _number(spec, raw[0], _child_path(path, 0))
        high = _number(spec, raw[1], _child_path(path, 1))
        if low > high:
            raise RuleError("reversed_range", path, field=spec.name, low=_show(raw[0]), high=_show(raw[1]))
        return (low, high)
    # Everything else takes a list of strings.
    if not isinstance(raw, (list, tuple)):
        raise RuleError("expected_list", path, field=spec.name, op=op, value=_show(raw))
    if not raw:
        raise RuleError("empty_list", path, field=spec.name, op=op)
    if len(raw) > MAX_VALUES:
        raise RuleError("too_many_values", path, field=spec.name, limit=MAX_VALUES, count=len(raw))
    items: dict[str, None] = {}  # an ordered set: duplicates mean nothing in a set of values
    for i, item in enumerate(raw):
        items[_item(spec, op, item, _child_path(path, i))] = None
    return tuple(items)


def _item(spec: FieldSpec, op: str, raw: Any, path: str) -> str:
    """One string of a list value, normalised to the stored form."""
    if (
        not isinstance(raw, str)
        or not raw.strip()
        or len(raw) > MAX_TEXT
        # NUL and lone surrogates are refused by PostgreSQL even as bound parameters.
        or any(unicodedata.category(c) in ("Cc", "Cs") for c in raw)
    ):
        raise RuleError("invalid_text", path, field=spec.name, value=_show(raw), limit=MAX_TEXT)
    text = raw.strip()
    if spec.kind == "fsa":
        text = text.upper()
        if op == "starts_with":
            if not _FSA_PREFIX.fullmatch(text):
                raise RuleError("invalid_fsa_prefix", path, value=_show(raw))
        elif not _FSA.fullmatch(text):
            raise RuleError("invalid_fsa", path, value=_show(raw))
        return text
    if spec.name == "organisation":
        text = text.lower()
        if not _SLUG.fullmatch(text):
            raise RuleError("invalid_slug", path, value=_show(raw))
        return text
    if spec.values is not None:
        text = text.lower()
        if text not in spec.values:
            raise RuleError("unknown_value", path, field=spec.name, value=_show(raw), valid=_join(spec.values))
        return text
    return text  # venue: a name or an id, compared as given


def _number(spec: FieldSpec, raw: Any, path: str) -> int | float:
    """A numeric value checked against the field's bounds; money comes back as integer cents."""
    if (
        isinstance(raw, bool)
        or not isinstance(raw, (int, float))
        or (isinstance(raw, float) and not math.isfinite(raw))
    ):
        code = "expected_integer" if spec.integer else "expected_number"
        raise RuleError(code, path, field=spec.name, value=_show(raw))
    if spec.integer and not isinstance(raw, int):
        raise RuleError("expected_integer", path, field=spec.name, value=_show(raw))
    if not spec.minimum <= raw <= spec.maximum:
        raise RuleError("out_of_range", path, field=spec.name, value=_show(raw), low=spec.minimum, high=spec.maximum)
    if spec.kind != "money":
        return raw
    # repr() is the shortest text that reads back as the same float: what the user typed.
    cents = Decimal(repr(raw) if isinstance(raw, float) else raw) * 100
    if cents != cents.to_integral_value():
        raise RuleError("too_precise", path, field=spec.name, value=_show(raw))
    return int(cents)


# --- Facts and the life cycle --------------------------------------------------------------------


def _as_date(value: dt.date) -> dt.date:
    # Purchases are compared by calendar day: a datetime keeps only its date.
    return value.date() if isinstance(value, dt.datetime) else value


@dataclass(frozen=True)
class Purchase:
    """One transaction row of a spectator, as the evaluator sees it (a `Transaction` in core).

    ``purchased_at`` and ``show_date`` are dates (a datetime is cut to its date). ``organisation``
    is a slug, ``discipline`` a key of DISCIPLINES, ``venue`` the venue's name or id as a string,
    ``show_id`` a district-wide show id. ``order_id`` is the export's order number, unique within
    its organisation; None makes the row an order of its own (§6). ``amount_cents`` is integer
    cents. ``promo`` says the row was bought on a promotion. ``channel`` is a key of CHANNELS or
    None, ``category`` "single" or "subscription".
    """

    purchased_at: dt.date
    organisation: str
    discipline: str = "other"
    venue: str | None = None
    show_id: int | str | None = None
    order_id: str | None = None
    tickets: int = 1
    amount_cents: int = 0
    promo: bool = False
    channel: str | None = None
    category: str = "single"
    show_date: dt.date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "purchased_at", _as_date(self.purchased_at))
        if self.show_date is not None:
            object.__setattr__(self, "show_date", _as_date(self.show_date))


@dataclass(frozen=True)
class SpectatorFacts:
    """Everything a rule can ask about one spectator, on the date ``as_of``.

    ``purchases``: all their purchases (those after ``as_of`` are ignored by the evaluator);
    ``fsa``: the upper-case FSA or None; ``newsletter``: subscribed to a newsletter;
    ``contactable``: may be contacted (the consent engine's answer). The last three are current
    facts, not relative to ``as_of``.
    """

    as_of: dt.date
    purchases: tuple[Purchase, ...] = ()
    fsa: str | None = None
    newsletter: bool = False
    contactable: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", _as_date(self.as_of))
        object.__setattr__(self, "purchases", tuple(self.purchases))


def check_as_of(as_of: dt.date) -> dt.date:
    """``as_of`` itself when a rule can be evaluated on it; else a RuleError at ``/as_of``."""
    if not EARLIEST_AS_OF <= as_of <= LATEST_AS_OF:
        raise RuleError(
            "as_of_out_of_range",
            "/as_of",
            value=as_of.isoformat(),
            low=EARLIEST_AS_OF.isoformat(),
            high=LATEST_AS_OF.isoformat(),
        )
    return as_of


def stage_of(facts: SpectatorFacts) -> str:
    """The life-cycle stage of a spectator on ``facts.as_of``, from their purchases."""
    shows_548 = len(_distinct_shows(_window(facts, LIFECYCLE_DAYS)))
    before = any(p.purchased_at <= facts.as_of - dt.timedelta(days=LIFECYCLE_DAYS) for p in _window(facts, None))
    in_1096 = bool(_window(facts, LAPSE_DAYS))
    return lifecycle_stage(shows_548, before, in_1096)


# --- The reference evaluator ---------------------------------------------------------------------


def evaluate(node: Node, facts: SpectatorFacts) -> bool:
    """Whether one spectator matches a parsed rule on ``facts.as_of``: the reference for the SQL.

    Definitions (only purchases dated ≤ as_of count; with ``within_days`` D, only those dated
    > as_of − D as well):
    - ``organisation``/``discipline``/``venue``: the set of values over those purchases;
      ``any``: it meets the rule's values, ``all``: it holds every one, ``none``: it meets none.
    - ``shows``: distinct non-null show ids; ``orders``: distinct (organisation, order id), a row
      without order id being an order of its own; ``tickets``: sum of tickets; ``spent``: sum of
      amounts in cents.
    - ``days_since_last``/``days_since_first``: days from the latest/earliest purchase to as_of.
    - ``lifecycle``: `stage_of`. ``subscriber``: any purchase of category "subscription".
      ``newsletter``, ``contactable``: the facts' flags.
    - ``channel``: the channel with the most distinct orders (rows without a channel ignored;
      an order seen on two channels counts for both), ties going to the first of web, box_office,
      phone.
    - ``promo_share``: orders with at least one promotional row / orders.
    - ``lead_days``: median over purchase rows with a show date of (show date − purchase date) in
      days (the mean of the middle two for an even count).
    - ``fsa``: ``starts_with`` holds when the FSA starts with one of the prefixes.

    Two-valued logic: a condition on a fact that does not exist (days since last, channel,
    promo share or lead days of a spectator without such purchases; an unknown FSA) is false, for
    ``!=`` and ``not_in`` too, and ``not`` of it is therefore true. SQL: make each leaf NULL-free
    (``x IS NOT NULL AND x op v``) so that NOT behaves the same.
    """
    if isinstance(node, Group):
        results = (evaluate(child, facts) for child in node.children)
        return all(results) if node.kind == "all" else any(results)
    if isinstance(node, Not):
        return not evaluate(node.child, facts)
    return _holds(node, facts)


def _holds(cond: Condition, facts: SpectatorFacts) -> bool:
    kind, op, value = cond.spec.kind, cond.op, cond.value
    if kind == "set":
        bought = {getattr(p, cond.field) for p in _window(facts, cond.within_days)} - {None}
        wanted = set(value)
        if op == "any":
            return bool(bought & wanted)
        if op == "all":
            return wanted <= bought
        return not bought & wanted  # none
    if kind == "boolean":
        return bool(_fact(cond, facts)) == value
    actual = _fact(cond, facts)
    if actual is None:
        return False
    if op in ("in", "not_in"):
        return (actual in value) == (op == "in")
    if op == "starts_with":
        return any(actual.startswith(prefix) for prefix in value)
    return compare(actual, op, value)


# A numeric condition's comparisons, as operators: they apply to a number, an SQL column
# (segments.query) and a numpy array (segments.column_scan) alike.
COMPARISONS = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def compare(actual: Any, op: str, value: Any) -> Any:
    """Whether ``actual`` stands in ``op`` (a comparison or ``between``, both ends included) to
    ``value``: a bool for a number, a predicate for an SQL column, a boolean array for an array."""
    if op == "between":
        low, high = value
        return (actual >= low) & (actual <= high)
    return COMPARISONS[op](actual, value)


def _fact(cond: Condition, facts: SpectatorFacts) -> Any:
    """The spectator's value for a non-set field, or None when it does not exist."""
    name = cond.field
    rows = _window(facts, cond.within_days)
    if name == "shows":
        return len(_distinct_shows(rows))
    if name == "orders":
        return len(_orders(facts, cond.within_days))
    if name == "tickets":
        return sum(p.tickets for p in rows)
    if name == "spent":
        return sum(p.amount_cents for p in rows)
    if name in ("days_since_last", "days_since_first"):
        if not rows:
            return None
        day = max(p.purchased_at for p in rows) if name == "days_since_last" else min(p.purchased_at for p in rows)
        return (facts.as_of - day).days
    if name == "lifecycle":
        return stage_of(facts)
    if name == "subscriber":
        return any(p.category == "subscription" for p in rows)
    if name == "newsletter":
        return facts.newsletter
    if name == "contactable":
        return facts.contactable
    if name == "channel":
        return _main_channel(facts, cond.within_days)
    if name == "promo_share":
        orders = _orders(facts, cond.within_days)
        return sum(1 for promo in orders.values() if promo) / len(orders) if orders else None
    if name == "lead_days":
        leads = [(p.show_date - p.purchased_at).days for p in rows if p.show_date is not None]
        return statistics.median(leads) if leads else None
    if name == "fsa":
        return facts.fsa
    raise ValueError(f"no fact for field {name!r}")  # FIELDS grew without the evaluator


def _window(facts: SpectatorFacts, days: int | None) -> list[Purchase]:
    """Purchases dated ≤ as_of, and > as_of − days when days is given."""
    return [p for _, p in _numbered_window(facts, days)]


def _numbered_window(facts: SpectatorFacts, days: int | None) -> list[tuple[int, Purchase]]:
    # The position in facts.purchases identifies a row (SQL: the transaction id).
    start = facts.as_of - dt.timedelta(days=days) if days is not None else None
    return [
        (i, p)
        for i, p in enumerate(facts.purchases)
        if p.purchased_at <= facts.as_of and (start is None or p.purchased_at > start)
    ]


def _distinct_shows(rows: list[Purchase]) -> set:
    return {p.show_id for p in rows if p.show_id is not None}


def _orders(facts: SpectatorFacts, days: int | None) -> dict[tuple, bool]:
    """Distinct orders in the window, each mapped to whether any of its rows was on promotion."""
    orders: dict[tuple, bool] = {}
    for i, p in _numbered_window(facts, days):
        key = _order_key(i, p)
        orders[key] = orders.get(key, False) or p.promo
    return orders


def _order_key(row: int, p: Purchase) -> tuple:
    # Order numbers are only unique within an organisation; a row without one is its own order.
    return ("order", p.organisation, p.order_id) if p.order_id is not None else ("row", row)


def _main_channel(facts: SpectatorFacts, days: int | None) -> str | None:
    per_channel: dict[str, set] = {channel: set() for channel in CHANNELS}
    for i, p in _numbered_window(facts, days):
        if p.channel in per_channel:
            per_channel[p.channel].add(_order_key(i, p))
    best = max(CHANNELS, key=lambda channel: len(per_channel[channel]))  # max keeps the first on ties
    return best if per_channel[best] else None
