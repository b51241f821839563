"""The segment rule language: parsing, validation, the reference evaluator and the life cycle."""

from __future__ import annotations

import ast
import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segments import lifecycle, rules
from segments.rules import (
    FIELDS,
    MAX_DAYS,
    MAX_DEPTH,
    MAX_NODES,
    Condition,
    Group,
    Not,
    Purchase,
    RuleError,
    SpectatorFacts,
    evaluate,
    lifecycle_stage,
    parse_rule,
    stage_of,
)

AS_OF = dt.date(2024, 6, 30)
OK = {"field": "shows", "op": ">", "value": 0}


def cond(field, op, value, within_days=None):
    rule = {"field": field, "op": op, "value": value}
    if within_days is not None:
        rule["within_days"] = within_days
    return rule


# --- The module and its table --------------------------------------------------------------------


@pytest.mark.parametrize("module", [rules, lifecycle])
def test_module_imports_only_the_standard_library(module):
    """The reference evaluator and the life-cycle definition it reads stand apart from SQL."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules -= {"segments.lifecycle"}
    roots = {name.split(".")[0] for name in modules}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots


def test_vocabularies_match_the_stored_keys():
    from core import models

    assert rules.DISCIPLINES == models.DISCIPLINES
    assert rules.CHANNELS == models.CHANNELS


def test_field_table_covers_design_section_7():
    kinds = {name: spec.kind for name, spec in FIELDS.items()}
    assert kinds == {
        "organisation": "set",
        "discipline": "set",
        "venue": "set",
        "shows": "count",
        "orders": "count",
        "tickets": "count",
        "spent": "money",
        "days_since_last": "days",
        "days_since_first": "days",
        "lifecycle": "stage",
        "subscriber": "boolean",
        "newsletter": "boolean",
        "contactable": "boolean",
        "channel": "channel",
        "promo_share": "share",
        "lead_days": "days",
        "fsa": "fsa",
    }
    assert {n for n, s in FIELDS.items() if s.within_days} == {
        "organisation",
        "discipline",
        "venue",
        "shows",
        "orders",
        "tickets",
        "spent",
    }
    assert FIELDS["organisation"].ops == ("any", "all", "none")
    assert FIELDS["spent"].ops == ("=", "!=", ">", ">=", "<", "<=", "between")
    assert FIELDS["fsa"].ops == ("in", "not_in", "starts_with")
    assert FIELDS["lifecycle"].values == rules.LIFECYCLE_STAGES


# --- Valid rules ---------------------------------------------------------------------------------

VALID = [
    (cond("organisation", "any", ["tnm", " OSM "], 30), Condition("organisation", "any", ("tnm", "osm"), 30)),
    (cond("organisation", "all", ["tnm"]), Condition("organisation", "all", ("tnm",))),
    (cond("organisation", "none", ["fta-2", "FTA-2"]), Condition("organisation", "none", ("fta-2",))),
    (cond("discipline", "any", ["Music", "dance"], 365), Condition("discipline", "any", ("music", "dance"), 365)),
    (cond("discipline", "none", ["circus"]), Condition("discipline", "none", ("circus",))),
    (
        cond("venue", "all", ["Salle Wilfrid-Pelletier", "42"]),
        Condition("venue", "all", ("Salle Wilfrid-Pelletier", "42")),
    ),
    (cond("shows", "=", 0), Condition("shows", "=", 0)),
    (cond("shows", "!=", 2, 548), Condition("shows", "!=", 2, 548)),
    (cond("orders", ">", 1), Condition("orders", ">", 1)),
    (cond("tickets", ">=", 4), Condition("tickets", ">=", 4)),
    (cond("tickets", "<", 10, 1), Condition("tickets", "<", 10, 1)),
    (cond("orders", "<=", 3), Condition("orders", "<=", 3)),
    (cond("shows", "between", [2, 2]), Condition("shows", "between", (2, 2))),
    (cond("spent", ">", 12.5), Condition("spent", ">", 1250)),
    (cond("spent", "<=", 100), Condition("spent", "<=", 10000)),
    (cond("spent", "between", [0.01, 19.99], 90), Condition("spent", "between", (1, 1999), 90)),
    (cond("days_since_last", ">", 365), Condition("days_since_last", ">", 365)),
    (cond("days_since_first", "between", [0, 30]), Condition("days_since_first", "between", (0, 30))),
    (cond("lifecycle", "in", ["new", "Stale"]), Condition("lifecycle", "in", ("new", "stale"))),
    (cond("lifecycle", "not_in", ["lapsed"]), Condition("lifecycle", "not_in", ("lapsed",))),
    (cond("subscriber", "is", True), Condition("subscriber", "is", True)),
    (cond("newsletter", "is", False), Condition("newsletter", "is", False)),
    (cond("contactable", "is", True), Condition("contactable", "is", True)),
    (cond("channel", "in", ["web", "box_office"]), Condition("channel", "in", ("web", "box_office"))),
    (cond("channel", "not_in", ["phone"]), Condition("channel", "not_in", ("phone",))),
    (cond("promo_share", ">=", 0.5), Condition("promo_share", ">=", 0.5)),
    (cond("promo_share", "between", [0, 1]), Condition("promo_share", "between", (0, 1))),
    (cond("lead_days", "<", 7.5), Condition("lead_days", "<", 7.5)),
    (cond("lead_days", "=", 0), Condition("lead_days", "=", 0)),
    (cond("fsa", "in", [" h2x", "H2L"]), Condition("fsa", "in", ("H2X", "H2L"))),
    (cond("fsa", "not_in", ["h3a"]), Condition("fsa", "not_in", ("H3A",))),
    (cond("fsa", "starts_with", ["h", "H2", "j4k"]), Condition("fsa", "starts_with", ("H", "H2", "J4K"))),
]


@pytest.mark.parametrize(("rule", "expected"), VALID, ids=[f"{r['field']}{r['op']}" for r, _ in VALID])
def test_valid_condition_parses_normalises_and_round_trips(rule, expected):
    node = parse_rule(rule)
    assert node == expected
    assert parse_rule(node.to_json()) == node
    assert parse_rule(json.dumps(rule)) == node
    assert parse_rule(json.dumps(node.to_json()).encode()) == node


SAMPLE_VALUES = {  # one valid JSON value per kind (and per operator where it differs)
    "set": {"organisation": ["tnm"], "discipline": ["music"], "venue": ["Salle"]},
    "count": 3,
    "money": 12.5,
    "days": 30,
    "share": 0.25,
    "boolean": True,
    "stage": ["active"],
    "channel": ["web"],
    "fsa": ["H2X"],
}
EVERY_FIELD_AND_OP = [(name, op) for name, spec in FIELDS.items() for op in spec.ops]


@pytest.mark.parametrize(("name", "op"), EVERY_FIELD_AND_OP, ids=[f"{n}{op}" for n, op in EVERY_FIELD_AND_OP])
def test_every_field_and_operator_round_trips(name, op):
    spec = FIELDS[name]
    value = SAMPLE_VALUES[spec.kind]
    value = value[name] if spec.kind == "set" else value
    if op == "between":
        value = [value, value * 2]
    for within_days in (None, 7) if spec.within_days else (None,):
        node = parse_rule(cond(name, op, value, within_days))
        assert (node.field, node.op, node.within_days) == (name, op, within_days)
        assert parse_rule(node.to_json()) == node
        assert parse_rule(json.dumps(node.to_json())) == node
        assert node.to_json() == cond(name, op, value, within_days)


def test_groups_and_negation_round_trip():
    rule = {
        "all": [
            cond("organisation", "any", ["tnm"], 365),
            {"any": [cond("spent", ">", 250.75), {"not": cond("fsa", "starts_with", ["h2"])}]},
            {"not": {"all": [cond("newsletter", "is", True)]}},
        ]
    }
    node = parse_rule(rule)
    assert isinstance(node, Group) and node.kind == "all" and len(node.children) == 3
    assert node.children[1].children[0] == Condition("spent", ">", 25075)
    assert isinstance(node.children[2], Not)
    assert node.to_json()["all"][1]["any"][0]["value"] == 250.75
    assert parse_rule(node.to_json()) == node
    assert list(rules.iter_conditions(node)) == [
        Condition("organisation", "any", ("tnm",), 365),
        Condition("spent", ">", 25075),
        Condition("fsa", "starts_with", ("H2",)),
        Condition("newsletter", "is", True),
    ]
    hash(node)  # immutable all the way down


def test_money_is_stored_in_cents_and_written_in_dollars():
    assert parse_rule(cond("spent", ">", 20)).value == 2000
    assert parse_rule(cond("spent", ">", 20)).to_json()["value"] == 20
    assert parse_rule(cond("spent", ">", 0.1)).value == 10
    assert parse_rule(cond("spent", ">", 1_000_000_000)).value == 100_000_000_000
    node = parse_rule(cond("spent", ">", 999_999_999.99))
    assert node.value == 99_999_999_999 and parse_rule(node.to_json()) == node


def test_explicit_null_within_days_means_no_window():
    assert parse_rule({**cond("shows", ">", 1), "within_days": None}) == Condition("shows", ">", 1)
    assert parse_rule({**cond("lifecycle", "in", ["new"]), "within_days": None}).within_days is None


def test_limits_are_inclusive():
    rule = OK
    for _ in range(MAX_DEPTH - 1):
        rule = {"not": rule}
    assert isinstance(parse_rule(rule), Not)
    assert isinstance(parse_rule({"any": [OK] * (MAX_NODES - 1)}), Group)
    assert len(parse_rule(cond("fsa", "in", [f"H{i % 10}{c}" for i in range(10) for c in "ABCDEFGHIJ"])).value) == 100


# --- Refused rules -------------------------------------------------------------------------------


def in_third(bad):
    """The bad condition as the third child of a group, so paths start with /all/2."""
    return {"all": [OK, OK, bad]}


ERRORS = [
    # (rule, code, path, fragments the message must contain)
    (
        in_third(cond("spend", ">", 1)),
        "unknown_field",
        "/all/2",
        ["unknown field 'spend' at /all/2", "known fields: organisation, discipline"],
    ),
    (in_third(cond(5, ">", 1)), "unknown_field", "/all/2", ["unknown field 5"]),
    (
        in_third(cond("organisation", ">", ["tnm"])),
        "unknown_operator",
        "/all/2",
        ["operator '>' is not valid for field 'organisation' (valid: any, all, none)"],
    ),
    (in_third(cond("shows", "any", 1)), "unknown_operator", "/all/2", ["operator 'any'", "field 'shows'", "between"]),
    (in_third(cond("fsa", None, ["H2X"])), "unknown_operator", "/all/2", ["operator null", "'fsa'"]),
    (in_third({"field": "shows", "value": 1}), "missing_key", "/all/2", ["no 'op'"]),
    (in_third({"field": "shows", "op": ">"}), "missing_key", "/all/2", ["no 'value'"]),
    (in_third({"op": ">", "value": 1}), "missing_key", "/all/2", ["no 'field'"]),
    (
        in_third({**OK, "withn_days": 3}),
        "unknown_key",
        "/all/2/withn_days",
        ["unknown key 'withn_days'", "within_days"],
    ),
    (
        in_third(cond("organisation", "any", "tnm")),
        "expected_list",
        "/all/2/value",
        ["field 'organisation' with operator 'any' takes a list", "'tnm'"],
    ),
    (in_third(cond("organisation", "any", [])), "empty_list", "/all/2/value", ["'organisation'", "at least one value"]),
    (in_third(cond("fsa", "in", ["H2X"] * 1001)), "too_many_values", "/all/2/value", ["at most 1000 values, got 1001"]),
    (
        in_third(cond("organisation", "any", ["tnm", "Théâtre du Nouveau Monde"])),
        "invalid_slug",
        "/all/2/value/1",
        ["'Théâtre du Nouveau Monde'", "'organisation'"],
    ),
    (
        in_third(cond("discipline", "any", ["music", "opera"])),
        "unknown_value",
        "/all/2/value/1",
        ["unknown value 'opera' for field 'discipline'", "music, theatre"],
    ),
    (in_third(cond("venue", "any", [" "])), "invalid_text", "/all/2/value/0", ["' '", "'venue'"]),
    (in_third(cond("venue", "any", [42])), "invalid_text", "/all/2/value/0", ["value 42 of field 'venue'"]),
    (in_third(cond("venue", "none", ["Salle\x00"])), "invalid_text", "/all/2/value/0", ["'venue'"]),
    (in_third(cond("venue", "none", ["x" * 201])), "invalid_text", "/all/2/value/0", ["at most 200 characters"]),
    (in_third(cond("fsa", "in", ["H2"])), "invalid_fsa", "/all/2/value/0", ["value 'H2' of field 'fsa' is not an FSA"]),
    (in_third(cond("fsa", "not_in", ["2HX"])), "invalid_fsa", "/all/2/value/0", ["'2HX'"]),
    (
        in_third(cond("fsa", "starts_with", ["H2", "2X"])),
        "invalid_fsa_prefix",
        "/all/2/value/1",
        ["'2X'", "start of an FSA"],
    ),
    (in_third(cond("fsa", "starts_with", ["H2X1"])), "invalid_fsa_prefix", "/all/2/value/0", ["'H2X1'"]),
    (
        in_third(cond("lifecycle", "in", ["churned"])),
        "unknown_value",
        "/all/2/value/0",
        ["'churned'", "'lifecycle'", "super_active"],
    ),
    (
        in_third(cond("channel", "in", ["email"])),
        "unknown_value",
        "/all/2/value/0",
        ["'email'", "'channel'", "web, box_office, phone"],
    ),
    (
        in_third(cond("shows", ">", "3")),
        "expected_integer",
        "/all/2/value",
        ["field 'shows' takes a whole number, got '3'"],
    ),
    (in_third(cond("shows", ">", True)), "expected_integer", "/all/2/value", ["got true"]),
    (in_third(cond("tickets", ">", 2.5)), "expected_integer", "/all/2/value", ["'tickets'", "2.5"]),
    (
        in_third(cond("orders", ">=", -1)),
        "out_of_range",
        "/all/2/value",
        ["value -1 of field 'orders' is out of range at /all/2/value (0 to 1000000000)"],
    ),
    (in_third(cond("days_since_last", ">", MAX_DAYS + 1)), "out_of_range", "/all/2/value", ["'days_since_last'"]),
    (in_third(cond("spent", ">", "12")), "expected_number", "/all/2/value", ["field 'spent' takes a number, got '12'"]),
    (in_third(cond("spent", ">", 12.345)), "too_precise", "/all/2/value", ["amount 12.345", "two decimals"]),
    (in_third(cond("spent", ">", -5)), "out_of_range", "/all/2/value", ["-5", "'spent'"]),
    (in_third(cond("spent", ">", float("nan"))), "expected_number", "/all/2/value", ["nan"]),
    (in_third(cond("promo_share", ">", 1.5)), "out_of_range", "/all/2/value", ["1.5", "'promo_share'", "(0 to 1)"]),
    (in_third(cond("promo_share", ">", False)), "expected_number", "/all/2/value", ["got false"]),
    (in_third(cond("lead_days", "<", -1)), "out_of_range", "/all/2/value", ["'lead_days'"]),
    (in_third(cond("shows", "between", [5, 2])), "reversed_range", "/all/2/value", ["low 5 is above high 2"]),
    (in_third(cond("spent", "between", [1])), "expected_range", "/all/2/value", ["[low, high]", "'spent'"]),
    (in_third(cond("shows", "between", 3)), "expected_range", "/all/2/value", ["got 3"]),
    (in_third(cond("shows", "between", [1, "x"])), "expected_integer", "/all/2/value/1", ["'x'"]),
    (
        in_third(cond("subscriber", "is", "yes")),
        "expected_boolean",
        "/all/2/value",
        ["field 'subscriber' takes true or false, got 'yes'"],
    ),
    (in_third(cond("newsletter", "is", 1)), "expected_boolean", "/all/2/value", ["got 1"]),
    (
        in_third(cond("lifecycle", "in", ["new"], 30)),
        "within_days_not_allowed",
        "/all/2/within_days",
        ["'within_days' is not allowed for field 'lifecycle'", "organisation, discipline, venue, shows"],
    ),
    (in_third(cond("shows", ">", 1, 0)), "invalid_within_days", "/all/2/within_days", ["'shows'", "got 0"]),
    (in_third(cond("shows", ">", 1, 2.5)), "invalid_within_days", "/all/2/within_days", ["got 2.5"]),
    (in_third(cond("shows", ">", 1, True)), "invalid_within_days", "/all/2/within_days", ["got true"]),
    (in_third(cond("shows", ">", 1, MAX_DAYS + 1)), "invalid_within_days", "/all/2/within_days", [str(MAX_DAYS)]),
    ({"all": []}, "empty_group", "/all", ["group 'all' is empty"]),
    ({"any": {"field": "shows"}}, "group_not_a_list", "/any", ["group 'any'", "an object"]),
    ({"any": [OK], "extra": 1}, "unknown_key", "/extra", ["unknown key 'extra'"]),
    ({"all": [OK], "any": [OK]}, "ambiguous_node", "", ["'all', 'any'"]),
    ({"not": OK, **OK}, "ambiguous_node", "", ["either one group or one condition"]),
    ({"not": [OK]}, "not_a_node", "/not", ["a list of 1 items"]),
    ({"any": [OK, "shows > 1"]}, "not_a_node", "/any/1", ["'shows > 1'"]),
    (5, "not_a_node", "", ["got 5 at /"]),
    ({}, "unknown_node", "", ["got keys none"]),
    ({"fields": "shows"}, "unknown_node", "", ["'fields'"]),
    ({"a/b~": 1}, "unknown_node", "", []),
    ({"not": OK, "a/b~": 1}, "unknown_key", "/a~1b~0", []),
    ({1: 2}, "unknown_node", "", ["1"]),
    ("{", "invalid_json", "", ["not valid JSON"]),
    ('{"field": "spent", "op": ">", "value": NaN}', "invalid_json", "", ["NaN"]),
    ("[" * 100_000, "invalid_json", "", ["nested too deeply"]),
    ('{"field": "shows", "op": ">", "value": ' + "9" * 5000 + "}", "invalid_json", "", []),
    (b"\xff", "invalid_json", "", ["UTF-8"]),
    ("x" * 1_000_001, "too_long", "", ["too long"]),
]


@pytest.mark.parametrize(
    ("rule", "code", "path", "fragments"), ERRORS, ids=[f"{i}-{e[1]}" for i, e in enumerate(ERRORS)]
)
def test_refused_rule_names_what_is_wrong_and_where(rule, code, path, fragments):
    with pytest.raises(RuleError) as caught:
        parse_rule(rule)
    error = caught.value
    assert (error.code, error.path) == (code, path), error.message
    assert error.message_key == code
    assert str(error) == error.message
    assert error.message == rules.MESSAGES[code].format(**error.params, where=path or "/")
    if code not in ("invalid_json", "too_long"):  # those two are about the whole text
        assert f" at {path or '/'}" in error.message
    json.dumps(error.params)  # the UI can ship them to a translator as they are
    for fragment in fragments:
        assert fragment in error.message


def test_error_codes_all_have_a_message_and_are_exercised():
    exercised_elsewhere = {"too_deep", "too_many_nodes", "as_of_out_of_range"}
    assert {code for _, code, _, _ in ERRORS} | exercised_elsewhere == set(rules.MESSAGES)


def test_a_date_outside_the_evaluable_range_is_refused_at_as_of():
    assert rules.check_as_of(AS_OF) == AS_OF
    for day in (rules.EARLIEST_AS_OF - dt.timedelta(days=1), rules.LATEST_AS_OF + dt.timedelta(days=1)):
        with pytest.raises(RuleError) as caught:
            rules.check_as_of(day)
        assert caught.value.code == "as_of_out_of_range"
        assert caught.value.path == "/as_of" and day.isoformat() in caught.value.message


def test_nesting_deeper_than_the_limit_is_refused_without_recursing():
    rule = OK
    for _ in range(MAX_DEPTH):
        rule = {"not": rule}
    with pytest.raises(RuleError) as caught:
        parse_rule(rule)
    assert caught.value.code == "too_deep"
    assert caught.value.path == "/not" * MAX_DEPTH
    for _ in range(50_000):  # far past Python's recursion limit
        rule = {"all": [rule]}
    with pytest.raises(RuleError, match="nested too deeply"):
        parse_rule(rule)
    with pytest.raises(RuleError, match="nested too deeply"):
        parse_rule('{"not": ' * 50_000 + json.dumps(OK) + "}" * 50_000)


def test_more_nodes_than_the_limit_are_refused():
    with pytest.raises(RuleError) as caught:
        parse_rule({"any": [OK] * MAX_NODES})
    assert (caught.value.code, caught.value.path) == ("too_many_nodes", f"/any/{MAX_NODES - 1}")
    with pytest.raises(RuleError, match="too many"):
        parse_rule({"any": [OK] * 1_000_000})  # a list of a million: refused at item 201


def test_huge_values_are_described_not_printed():
    with pytest.raises(RuleError) as caught:
        parse_rule(cond("shows", ">", 10**5000))
    assert "a very large number" in caught.value.message
    with pytest.raises(RuleError) as caught:
        parse_rule(cond("venue", "any", ["x" * 10_000]))
    assert len(caught.value.message) < 300


# --- Any input: a tree or a RuleError ------------------------------------------------------------

ALL_OPS = sorted({op for spec in FIELDS.values() for op in spec.ops})
KEYS = st.sampled_from(["all", "any", "not", "field", "op", "value", "within_days"]) | st.text(max_size=4)
ATOMS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-3, 40)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(
        [
            *FIELDS,
            *ALL_OPS,
            *rules.DISCIPLINES,
            *rules.LIFECYCLE_STAGES,
            *rules.CHANNELS,
            "H2X",
            "h2",
            "tnm",
            "TNM",
            "Salle",
            0.5,
            12.34,
            548,
        ]
    )
)
JSON_LIKE = st.recursive(
    ATOMS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=25
)
VALUE_LIKE = (
    JSON_LIKE | st.lists(ATOMS, max_size=3) | st.lists(st.integers(-2, 30) | st.floats(-1, 2), min_size=2, max_size=2)
)


@st.composite
def condition_like(draw):
    """Mostly a known field with one of its operators, so the value validators are reached."""
    likely = st.integers(0, 9).map(lambda n: n < 9)  # nine times in ten
    name = draw(st.sampled_from(list(FIELDS)) if draw(likely) else ATOMS)
    ops = FIELDS[name].ops if isinstance(name, str) and name in FIELDS else ALL_OPS
    rule = {"field": name, "op": draw(st.sampled_from(ops) if draw(likely) else ATOMS), "value": draw(VALUE_LIKE)}
    if draw(st.booleans()):
        rule["within_days"] = draw(st.integers(-1, MAX_DAYS + 1) if draw(likely) else ATOMS)
    return rule


CONDITION_LIKE = condition_like()
RULE_LIKE = st.recursive(
    st.integers(0, 3).flatmap(lambda n: JSON_LIKE if n == 0 else CONDITION_LIKE),
    lambda inner: (
        st.dictionaries(st.sampled_from(["all", "any"]), st.lists(inner, max_size=4), min_size=1, max_size=1)
        | st.builds(lambda child: {"not": child}, inner)
    ),
    max_leaves=12,
)


def check_tree_or_rule_error(data):
    try:
        node = parse_rule(data)
    except RuleError as error:
        assert error.code in rules.MESSAGES
        assert error.path == "" or error.path.startswith("/")
        return None
    assert isinstance(node, (Group, Not, Condition))
    assert parse_rule(node.to_json()) == node
    assert parse_rule(json.dumps(node.to_json())) == node
    return node


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(RULE_LIKE)
def test_any_json_like_value_gives_a_tree_or_a_rule_error(data):
    check_tree_or_rule_error(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | RULE_LIKE.map(lambda data: json.dumps(data, allow_nan=True)))
def test_any_text_gives_a_tree_or_a_rule_error(text):
    check_tree_or_rule_error(text)


# --- Valid rules of every shape: round trip and evaluation -----------------------------------

CLEAN_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12).filter(str.strip)


@st.composite
def valid_condition(draw):
    """A valid condition of any field and operator, in the loose form users may type."""
    spec = FIELDS[draw(st.sampled_from(list(FIELDS)))]
    op = draw(st.sampled_from(spec.ops))
    if spec.kind == "boolean":
        value = draw(st.booleans())
    elif op in rules.NUMERIC_OPS:
        if spec.kind == "money":
            number = st.integers(0, 10**11).map(lambda c: c // 100 if c % 100 == 0 else c / 100)
        elif spec.integer:
            number = st.integers(spec.minimum, spec.maximum)
        else:
            number = st.integers(spec.minimum, spec.maximum) | st.floats(spec.minimum, spec.maximum)
        value = sorted(draw(st.lists(number, min_size=2, max_size=2))) if op == "between" else draw(number)
    else:
        if spec.name == "organisation":
            items = st.sampled_from(["tnm", "OSM", " fta-2 ", "a"])
        elif spec.name == "venue":
            items = CLEAN_TEXT
        elif spec.name == "fsa":
            items = st.from_regex(
                r"[A-Za-z][0-9]?" if op == "starts_with" else r"[A-Za-z][0-9][A-Za-z]", fullmatch=True
            )
        else:
            items = st.sampled_from([*spec.values, *(v.upper() for v in spec.values)])
        value = draw(st.lists(items, min_size=1, max_size=4))
    within = draw(st.none() | st.integers(1, MAX_DAYS)) if spec.within_days else None
    return cond(spec.name, op, value, within)


VALID_RULE = st.recursive(
    valid_condition(),
    lambda inner: (
        st.builds(
            lambda kind, kids: {kind: kids}, st.sampled_from(["all", "any"]), st.lists(inner, min_size=1, max_size=3)
        )
        | st.builds(lambda child: {"not": child}, inner)
    ),
    max_leaves=8,
)

PURCHASE = st.builds(
    Purchase,
    purchased_at=st.integers(-30, 1200).map(lambda ago: AS_OF - dt.timedelta(days=ago)),
    organisation=st.sampled_from(["tnm", "osm", "fta-2"]),
    discipline=st.sampled_from(rules.DISCIPLINES),
    venue=st.none() | st.sampled_from(["Salle", "42"]),
    show_id=st.none() | st.integers(1, 6),
    order_id=st.none() | st.sampled_from(["A", "B", "C"]),
    tickets=st.integers(1, 4),
    amount_cents=st.integers(0, 20_000),
    promo=st.booleans(),
    channel=st.none() | st.sampled_from(rules.CHANNELS),
    category=st.sampled_from(["single", "subscription"]),
    show_date=st.none() | st.integers(-400, 400).map(lambda d: AS_OF + dt.timedelta(days=d)),
)
FACTS = st.builds(
    SpectatorFacts,
    as_of=st.just(AS_OF),
    purchases=st.lists(PURCHASE, max_size=6),
    fsa=st.none() | st.sampled_from(["H2X", "H3A", "J4K"]),
    newsletter=st.booleans(),
    contactable=st.booleans(),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(VALID_RULE, FACTS)
def test_valid_rules_round_trip_and_evaluate_to_a_boolean(rule, facts):
    node = parse_rule(rule)
    assert parse_rule(node.to_json()) == node
    assert parse_rule(json.dumps(rule)) == node
    result = evaluate(node, facts)
    assert isinstance(result, bool)
    assert evaluate(Not(node), facts) is (not result)


# --- The reference evaluator ---------------------------------------------------------------------


def buy(days_ago, organisation="tnm", **fields):
    return Purchase(purchased_at=AS_OF - dt.timedelta(days=days_ago), organisation=organisation, **fields)


def facts(*purchases, **fields):
    return SpectatorFacts(as_of=AS_OF, purchases=purchases, **fields)


def matches(rule, spectator):
    return evaluate(parse_rule(rule), spectator)


def test_set_fields_any_all_none():
    spectator = facts(
        buy(10, "tnm", discipline="theatre", venue="Salle"), buy(400, "osm", discipline="classical", venue="42")
    )
    assert matches(cond("organisation", "any", ["osm", "fta"]), spectator)
    assert not matches(cond("organisation", "any", ["fta"]), spectator)
    assert matches(cond("organisation", "all", ["tnm", "osm"]), spectator)
    assert not matches(cond("organisation", "all", ["tnm", "fta"]), spectator)
    assert matches(cond("organisation", "none", ["fta"]), spectator)
    assert not matches(cond("organisation", "none", ["fta", "tnm"]), spectator)
    assert matches(cond("discipline", "all", ["theatre", "classical"]), spectator)
    assert matches(cond("venue", "any", ["42"]), spectator)
    assert not matches(cond("venue", "any", ["Salle Bourgie"]), spectator)
    # Within 365 days only the first purchase counts.
    assert not matches(cond("organisation", "any", ["osm"], 365), spectator)
    assert matches(cond("organisation", "none", ["osm"], 365), spectator)
    assert matches(cond("discipline", "all", ["theatre"], 365), spectator)
    # Nobody bought anything: "none" holds, "any" and "all" do not.
    assert matches(cond("organisation", "none", ["tnm"]), facts())
    assert not matches(cond("organisation", "any", ["tnm"]), facts())


def test_within_days_counts_the_d_days_ending_with_as_of():
    spectator = facts(buy(0), buy(29), buy(30), buy(-1))  # the last one is after as_of
    assert matches(cond("orders", "=", 3), spectator)
    assert matches(cond("orders", "=", 2, 30), spectator)  # 30 days ago is outside a 30-day window
    assert matches(cond("orders", "=", 3, 31), spectator)
    assert matches(cond("orders", "=", 1, 1), spectator)  # within_days 1: as_of itself only


def test_counts_and_money():
    spectator = facts(
        buy(5, "tnm", show_id=1, order_id="A", tickets=2, amount_cents=5000),
        buy(5, "tnm", show_id=2, order_id="A", tickets=1, amount_cents=2550),
        buy(50, "osm", show_id=1, order_id="A", tickets=3, amount_cents=0),  # same number, other organisation
        buy(60, "osm", show_id=3, tickets=1, amount_cents=1000),  # no order id: its own order
        buy(60, "osm", show_id=None, tickets=1, amount_cents=1000),
    )
    assert matches(cond("shows", "=", 3), spectator)
    assert matches(cond("orders", "=", 4), spectator)
    assert matches(cond("tickets", "=", 8), spectator)
    assert matches(cond("spent", "=", 95.50), spectator)
    assert matches(cond("spent", "between", [95.5, 95.5]), spectator)
    assert not matches(cond("spent", ">", 95.5), spectator)
    assert matches(cond("spent", "=", 75.50, 30), spectator)
    assert matches(cond("shows", "=", 2, 30), spectator)
    assert matches(cond("orders", "!=", 2, 30), facts(buy(1, order_id="X")))
    assert matches(cond("shows", "=", 0), facts())
    assert matches(cond("spent", "<", 0.01), facts())


def test_days_since_last_and_first():
    spectator = facts(buy(10), buy(400), buy(-5))
    assert matches(cond("days_since_last", "=", 10), spectator)
    assert matches(cond("days_since_first", "=", 400), spectator)
    assert matches(cond("days_since_last", "between", [10, 10]), spectator)
    # Without purchases up to as_of the fact does not exist: every comparison is false, != too.
    nobody = facts(buy(-5))
    for op in ("=", "!=", ">", ">=", "<", "<="):
        assert not matches(cond("days_since_last", op, 0), nobody)
        assert not matches(cond("days_since_first", op, 0), nobody)
    assert matches({"not": cond("days_since_last", "<", 30)}, nobody)


def test_lifecycle_condition():
    assert matches(cond("lifecycle", "in", ["new"]), facts(buy(3, show_id=1)))
    assert matches(cond("lifecycle", "not_in", ["new", "stale"]), facts())  # lapsed
    assert matches(cond("lifecycle", "in", ["lapsed"]), facts(buy(-1, show_id=1)))  # future purchases ignored


def test_boolean_fields():
    subscriber = facts(buy(100, category="subscription"), newsletter=True)
    assert matches(cond("subscriber", "is", True), subscriber)
    assert matches(cond("subscriber", "is", False), facts(buy(100), buy(-1, category="subscription")))
    assert matches(cond("newsletter", "is", True), subscriber)
    assert matches(cond("contactable", "is", False), subscriber)
    assert matches(cond("contactable", "is", True), facts(contactable=True))


def test_main_channel_counts_orders_and_breaks_ties_web_box_office_phone():
    phone_first = facts(
        buy(1, order_id="A", channel="phone"),
        buy(1, order_id="A", channel="phone"),
        buy(1, order_id="A", channel="phone"),
        buy(2, order_id="B", channel="web"),
    )
    assert matches(cond("channel", "in", ["web"]), phone_first)  # one order each: tie, web first
    two_phone_orders = facts(
        buy(1, order_id="A", channel="phone"),
        buy(1, order_id="C", channel="phone"),
        buy(2, order_id="B", channel="web"),
    )
    assert matches(cond("channel", "in", ["phone"]), two_phone_orders)
    assert matches(cond("channel", "not_in", ["web"]), two_phone_orders)
    tie = facts(buy(1, channel="phone"), buy(2, channel="box_office"))
    assert matches(cond("channel", "in", ["box_office"]), tie)
    no_channel = facts(buy(1, channel=None))
    assert not matches(cond("channel", "in", ["web"]), no_channel)
    assert not matches(cond("channel", "not_in", ["web"]), no_channel)


def test_promo_share_is_over_orders():
    spectator = facts(
        buy(1, order_id="A", promo=True),
        buy(1, order_id="A", promo=False),
        buy(2, order_id="B"),
        buy(3, order_id="C"),
        buy(4, promo=True),
    )
    assert matches(cond("promo_share", "=", 0.5), spectator)  # A and the no-id row, of 4 orders
    assert matches(cond("promo_share", "between", [0.5, 1]), spectator)
    assert not matches(cond("promo_share", ">", 0.5), spectator)
    assert not matches(cond("promo_share", ">=", 0), facts())  # no orders: no share


def test_lead_days_is_the_median_over_purchases():
    def at(days_ago, lead):
        return buy(days_ago, show_date=AS_OF - dt.timedelta(days=days_ago - lead))

    assert matches(cond("lead_days", "=", 7), facts(at(30, 2), at(20, 7), at(10, 30)))
    assert matches(cond("lead_days", "=", 4.5), facts(at(30, 2), at(20, 7)))
    assert matches(cond("lead_days", "=", 2), facts(at(30, 2), buy(5), at(-1, 50)))  # no show date / after as_of
    assert matches(cond("lead_days", "=", 0), facts(buy(5, show_date=dt.datetime(2024, 6, 25, 20, 0))))
    assert not matches(cond("lead_days", ">=", 0), facts(buy(5)))


def test_fsa_in_not_in_starts_with():
    montreal = facts(fsa="H2X")
    assert matches(cond("fsa", "in", ["h2x", "H3A"]), montreal)
    assert matches(cond("fsa", "not_in", ["H3A"]), montreal)
    assert matches(cond("fsa", "starts_with", ["J", "h2"]), montreal)
    assert matches(cond("fsa", "starts_with", ["H2X"]), montreal)
    assert not matches(cond("fsa", "starts_with", ["H3"]), montreal)
    unknown = facts(fsa=None)
    assert not matches(cond("fsa", "in", ["H2X"]), unknown)
    assert not matches(cond("fsa", "not_in", ["H2X"]), unknown)
    assert matches({"not": cond("fsa", "in", ["H2X"])}, unknown)


def test_groups_combine_conditions():
    spectator = facts(buy(10, show_id=1), fsa="H2X")
    yes, no = cond("shows", "=", 1), cond("shows", "=", 2)
    assert matches({"all": [yes, cond("fsa", "in", ["H2X"])]}, spectator)
    assert not matches({"all": [yes, no]}, spectator)
    assert matches({"any": [no, yes]}, spectator)
    assert not matches({"any": [no, no]}, spectator)
    assert matches({"not": no}, spectator)


def test_datetimes_count_by_their_date():
    late = Purchase(purchased_at=dt.datetime(2024, 6, 30, 23, 59), organisation="tnm")
    assert late.purchased_at == dt.date(2024, 6, 30)
    spectator = SpectatorFacts(as_of=dt.datetime(2024, 6, 30, 8, 0), purchases=[late])
    assert matches(cond("orders", "=", 1, 1), spectator)


# --- The life cycle ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shows", "earlier", "stage"),
    [
        (1, False, "new"),
        (1, True, "once_before"),
        (2, False, "once_before"),
        (2, True, "once_before"),
        (3, False, "convertee"),
        (4, True, "active"),
        (10, False, "active"),
        (11, False, "super_active"),
        (500, True, "super_active"),
    ],
)
def test_lifecycle_thresholds_on_shows(shows, earlier, stage):
    assert lifecycle_stage(shows, earlier, True) == stage


def test_lifecycle_without_shows_in_548_days():
    assert lifecycle_stage(0, True, True) == "stale"
    assert lifecycle_stage(0, True, False) == "lapsed"
    assert lifecycle_stage(0, False, False) == "lapsed"
    with pytest.raises(ValueError):
        lifecycle_stage(-1, False, False)


@pytest.mark.parametrize(
    ("count", "stage"),
    [(1, "new"), (2, "once_before"), (3, "convertee"), (4, "active"), (10, "active"), (11, "super_active")],
)
def test_stage_of_counts_distinct_shows(count, stage):
    purchases = [buy(i + 1, show_id=i) for i in range(count)] + [buy(1, show_id=0)]  # a repeat adds nothing
    assert stage_of(facts(*purchases)) == stage


@pytest.mark.parametrize(("days_ago", "stage"), [(547, "new"), (548, "stale"), (549, "stale")])
def test_stage_at_the_548_day_boundary(days_ago, stage):
    assert stage_of(facts(buy(days_ago, show_id=1))) == stage


@pytest.mark.parametrize(("days_ago", "stage"), [(547, "new"), (548, "once_before"), (549, "once_before")])
def test_earlier_history_at_the_548_day_boundary(days_ago, stage):
    # One show in the window, plus a purchase of that same show days_ago: inside the window it is
    # the same single show with nothing earlier, outside it is earlier history.
    assert stage_of(facts(buy(10, show_id=1), buy(days_ago, show_id=1))) == stage


@pytest.mark.parametrize(("days_ago", "stage"), [(1095, "stale"), (1096, "lapsed"), (1097, "lapsed")])
def test_stage_at_the_1096_day_boundary(days_ago, stage):
    assert stage_of(facts(buy(days_ago, show_id=1))) == stage
    assert matches(cond("lifecycle", "in", [stage]), facts(buy(days_ago, show_id=1)))
