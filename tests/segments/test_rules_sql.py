"""The SQL compiler against the reference evaluator: every field and operator of DESIGN.md §7, on the
profiles' date, on a date in the past and with windows, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from benchmarks.rules import GEOGRAPHY_BOUGHT, GEOGRAPHY_NEVER
from benchmarks.rules import RULES as BENCH_RULES
from core.models import Organisation, Show, Transaction
from segments.preview import members, organisation_ids
from segments.profiles import WINDOW_COLUMNS, refresh_profiles
from segments.query import compile_rule, consents_day
from segments.rules import FIELDS, Purchase, evaluate, parse_rule
from tests.segments.district import (  # noqa: F401  (fixtures)
    AS_OF,
    PAST,
    WINDOWS,
    district_databases,
    shared_district,
    small_district,
)

VALUES = {
    "organisation": [
        ["theatre-nord"],
        ["theatre-nord", "danse-sud"],
        ["danse-sud", "grand-ensemble"],
        ["grand-ensemble"],
        ["nobody-here"],
        ["festival-est", "nobody-here"],
    ],
    "discipline": [["theatre"], ["theatre", "dance"], ["music", "circus", "other"], ["classical"]],
    "venue": [["Grande salle"], ["Grande salle", "Studio"], ["Esplanade", "Maison"], ["Nulle part"]],
    "shows": [0, 1, 2, 3, 5, 12],
    "orders": [0, 1, 2, 4, 8],
    "tickets": [0, 2, 5, 10, 30],
    "spent": [0, 19.99, 100, 250.5, 1000],
    "days_since_last": [0, 30, 89, 90, 400, 548, 1200],
    "days_since_first": [0, 89, 90, 365, 547, 548, 700, 1095, 1096, 1200],
    "lifecycle": [["new"], ["once_before", "convertee"], ["active", "super_active"], ["stale"], ["lapsed"]],
    "subscriber": [True, False],
    "newsletter": [True, False],
    "contactable": [True, False],
    "channel": [["web"], ["box_office", "phone"], ["phone"]],
    "promo_share": [0, 0.25, 1 / 3, 0.5, 1],
    "lead_days": [0, 7, 14.5, 30, 60],
    "fsa": [["H2X"], ["H2X", "H3A"], ["G1R"]],
}
RANGES = {
    "shows": [[0, 0], [1, 3], [2, 10]],
    "orders": [[1, 2], [3, 100]],
    "tickets": [[0, 4], [5, 20]],
    "spent": [[0, 50], [45.5, 300]],
    "days_since_last": [[0, 90], [100, 700]],
    "days_since_first": [[0, 365], [366, 2000]],
    "promo_share": [[0.2, 0.6], [0, 0]],
    "lead_days": [[5, 20], [0, 400]],
}
PREFIXES = [["H2"], ["H"], ["J4K"], ["G", "J"]]

CASES = [(name, op) for name, spec in FIELDS.items() for op in spec.ops]


@pytest.fixture
def district(shared_district):
    """The hand-made district with profiles as of AS_OF, in a database of its own (read-only)."""
    return shared_district


def observed(built, name: str) -> list:
    """A few values the district really has, so that = and != select someone."""
    found = []
    for spectator in built.universe(AS_OF)[:40]:
        rows = [p for p in built.purchases[spectator] if p.purchased_at <= AS_OF]
        if name == "days_since_first":
            found.append((AS_OF - min(p.purchased_at for p in rows)).days)
        elif name == "lead_days":
            leads = sorted((p.show_date - p.purchased_at).days for p in rows if p.show_date is not None)
            if leads:
                middle = len(leads) // 2
                found.append(leads[middle] if len(leads) % 2 else (leads[middle - 1] + leads[middle]) / 2)
    spec = FIELDS[name]
    return sorted({v for v in found if spec.minimum <= v <= spec.maximum})[:3]


def rules_for(built, name: str, op: str) -> list[dict]:
    spec = FIELDS[name]
    if op == "between":
        values = RANGES.get(name, [[1, 3]])
    elif op == "starts_with":
        values = PREFIXES
    else:
        values = VALUES[name] + (observed(built, name) if op in ("=", "!=") else [])
    windows = (None, *WINDOWS) if spec.within_days else (None,)
    rules = []
    for value in values:
        for days in windows:
            rule = {"field": name, "op": op, "value": value}
            if days is not None:
                rule["within_days"] = days
            rules.append(rule)
    return rules


def expected(built, node, as_of):
    consents_on = consents_day(as_of, AS_OF)
    return sorted(s for s in built.universe(as_of) if evaluate(node, built.facts(s, as_of, consents_on)))


@pytest.mark.parametrize("name,op", CASES, ids=[f"{n}{o}" for n, o in CASES])
def test_compiled_rule_matches_the_reference_evaluator(district, name, op):
    db, built = district
    non_trivial = 0
    with db.session() as session:
        organisations = organisation_ids(session)
        for rule in rules_for(built, name, op):
            for as_of in (AS_OF, PAST):
                for variant in (rule, {"not": rule}):
                    node = parse_rule(variant)
                    want = expected(built, node, as_of)
                    got = sorted(session.scalars(compile_rule(node, as_of, AS_OF, organisations)))
                    assert got == want, (variant, as_of.isoformat(), sorted(set(got) ^ set(want)))
                    if as_of == AS_OF and variant is rule and 0 < len(want) < len(built.universe(as_of)):
                        non_trivial += 1
            if name == "organisation":
                # Without the slug → id mapping, organisation sets come from the transactions.
                node = parse_rule(rule)
                got = sorted(session.scalars(compile_rule(node, AS_OF, AS_OF, organisations=None)))
                assert got == expected(built, node, AS_OF), rule
    assert non_trivial, f"the district does not exercise {name} {op}: every rule selects nobody or everyone"


COMPOSITES = [
    {
        "all": [
            {"field": "discipline", "op": "any", "value": ["theatre"]},
            {"field": "discipline", "op": "none", "value": ["dance"]},
        ]
    },
    {
        "all": [
            {"field": "subscriber", "op": "is", "value": False},
            {"field": "shows", "op": ">=", "value": 3, "within_days": 548},
        ]
    },
    {
        "all": [
            {"field": "lifecycle", "op": "in", "value": ["stale", "lapsed"]},
            {"field": "shows", "op": ">=", "value": 4},
        ]
    },
    {
        "any": [
            {"field": "lifecycle", "op": "in", "value": ["new"]},
            {
                "not": {
                    "all": [
                        {"field": "channel", "op": "in", "value": ["web"]},
                        {"field": "lead_days", "op": "<", "value": 20},
                    ]
                }
            },
        ]
    },
    {
        "not": {
            "any": [
                {"field": "fsa", "op": "starts_with", "value": ["H2"]},
                {"field": "venue", "op": "all", "value": ["Grande salle", "Studio"], "within_days": 365},
                {"field": "organisation", "op": "all", "value": ["grand-ensemble", "danse-sud"]},
            ]
        }
    },
    {
        "all": [
            {"field": "contactable", "op": "is", "value": True},
            {"not": {"field": "promo_share", "op": ">", "value": 0.4}},
            {"field": "spent", "op": "between", "value": [20, 400], "within_days": 365},
        ]
    },
]


@pytest.mark.parametrize("rule", COMPOSITES, ids=[f"composite-{i}" for i in range(len(COMPOSITES))])
def test_nested_groups_and_negations_match_the_reference(district, rule):
    db, built = district
    with db.session() as session:
        for as_of in (AS_OF, PAST):
            assert members(session, rule, as_of) == expected(built, parse_rule(rule), as_of), as_of


def test_a_date_after_the_profiles_is_answered_from_the_transactions(district):
    db, built = district
    later = AS_OF.replace(day=20, month=7)
    rule = {
        "all": [
            {"field": "lifecycle", "op": "not_in", "value": ["lapsed"]},
            {"field": "days_since_last", "op": "<=", "value": 30},
        ]
    }
    with db.session() as session:
        assert members(session, rule, later) == expected(built, parse_rule(rule), later)


def _all_leaves() -> list[dict]:
    leaves = []
    for name, spec in FIELDS.items():
        for op in spec.ops:
            if op == "between":
                values = RANGES.get(name, [[1, 3]])
            elif op == "starts_with":
                values = PREFIXES
            else:
                values = VALUES[name]
            for value in values[:3]:
                leaves.append({"field": name, "op": op, "value": value})
                if spec.within_days:
                    leaves.append({"field": name, "op": op, "value": value, "within_days": WINDOWS[0]})
    return leaves


LEAVES = _all_leaves()
RULES = st.recursive(
    st.sampled_from(LEAVES),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"any": items}),
        children.map(lambda child: {"not": child}),
    ),
    max_leaves=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=RULES, as_of=st.sampled_from([AS_OF, PAST, dt.date(2022, 2, 28)]))
def test_any_rule_matches_the_reference_evaluator(district, rule, as_of):
    db, built = district
    node = parse_rule(rule)
    with db.session() as session:
        got = sorted(session.scalars(compile_rule(node, as_of, AS_OF, organisation_ids(session))))
    assert got == expected(built, node, as_of)


# --- the windows the profiles hold ----------------------------------------------------------------


def _window_values(name: str, op: str) -> list:
    if op == "between":
        return RANGES.get(name, [[1, 3]])
    return VALUES[name]


def _run(session, node, as_of, organisations, windows: bool) -> list[int]:
    return sorted(session.scalars(compile_rule(node, as_of, AS_OF, organisations, windows=windows)))


@pytest.mark.parametrize("name", sorted({field for field, _days in WINDOW_COLUMNS}))
def test_a_window_the_profiles_hold_selects_the_members_of_the_transactions(district, name):
    """A condition whose window has a profile column (365, 548, 730) reads that column, a day more
    or less goes to the transactions: both give the members the reference evaluator gives, on the
    profiles' date (stored columns) and on another date (the derived facts)."""
    db, built = district
    non_trivial = 0
    with db.session() as session:
        organisations = organisation_ids(session)
        for held in sorted(days for field, days in WINDOW_COLUMNS if field == name):
            for days in (held - 1, held, held + 1):
                for op in FIELDS[name].ops:
                    for value in _window_values(name, op):
                        rule = {"field": name, "op": op, "value": value, "within_days": days}
                        for as_of in (AS_OF, PAST):
                            for variant in (rule, {"not": rule}):
                                node = parse_rule(variant)
                                want = expected(built, node, as_of)
                                fast = _run(session, node, as_of, organisations, windows=True)
                                slow = _run(session, node, as_of, organisations, windows=False)
                                assert fast == slow == want, (variant, as_of.isoformat(), sorted(set(fast) ^ set(want)))
                                if days == held and 0 < len(want) < len(built.universe(as_of)):
                                    non_trivial += 1
    assert non_trivial, f"the district does not exercise {name} on its held windows"


def test_only_the_held_windows_skip_the_transactions():
    organisations = {"theatre-nord": 1, "grand-ensemble": 70}
    for field, days in WINDOW_COLUMNS:
        value = {"organisation": ["theatre-nord"], "discipline": ["theatre"]}.get(field, 3)
        op = "any" if field in ("organisation", "discipline") else ">="
        for within, windows, reads_transactions in (
            (days, True, False),
            (days, False, True),
            (days - 1, True, True),
            (days + 1, True, True),
        ):
            node = parse_rule({"field": field, "op": op, "value": value, "within_days": within})
            sql = str(compile_rule(node, AS_OF, AS_OF, organisations, windows=windows))
            assert ("transaction" in sql) is reads_transactions, (field, within, windows, sql)
    # An organisation beyond the 64-bit mask is never in a mask, windowed or not.
    node = parse_rule({"field": "organisation", "op": "any", "value": ["grand-ensemble"], "within_days": 365})
    assert "transaction" in str(compile_rule(node, AS_OF, AS_OF, organisations))


def test_the_five_benchmark_rules_read_only_the_profiles():
    """DESIGN.md §12: the standard previews scan the profile table once, no transactions."""
    organisations = {GEOGRAPHY_BOUGHT: 3, GEOGRAPHY_NEVER: 4}
    for bench_rule in BENCH_RULES:
        sql = str(compile_rule(parse_rule(bench_rule.rule), AS_OF, AS_OF, organisations))
        assert "transaction" not in sql and sql.count("FROM") == 1, (bench_rule.name, sql)


def _add_purchase(session, built, spectator: int, org: str, show: tuple, on: dt.datetime, amount: int) -> None:
    """One more purchase of ``spectator``, in the database and in the reference facts."""
    show_id, discipline, starts = show
    org_id = session.scalar(select(Organisation.id).where(Organisation.slug == org))
    session.execute(
        insert(Transaction).values(
            organisation_id=org_id,
            spectator_id=spectator,
            show_id=show_id,
            purchased_at=on,
            amount_cents=amount,
            tickets=1,
            circumstance="regular",
            category="single",
            channel="web",
            order_id=None,
            external_id=f"edge-{spectator}-{on.isoformat()}",
        )
    )
    built.purchases[spectator].append(
        Purchase(
            purchased_at=on.date(),
            organisation=org,
            discipline=discipline,
            show_id=show_id,
            tickets=1,
            amount_cents=amount,
            promo=False,
            channel="web",
            category="single",
            show_date=starts.date(),
        )
    )


def test_purchases_on_the_edges_of_the_held_windows(db, small_district):
    """Purchases on the first day of each held window and on the day before it, at midnight and
    just before the next: the stored columns count the first, not the second, like the
    transactions and the reference."""
    built = small_district
    with db.session() as session:
        circus = session.execute(
            select(Show.id, Show.discipline, Show.starts_at)
            .join(Organisation)
            .where(Organisation.slug == "festival-est", Show.discipline == "circus")
        ).first()
        assert circus is not None
        buyers = built.universe(AS_OF)[:12]
        held = sorted({days for _field, days in WINDOW_COLUMNS})
        for i, spectator in enumerate(buyers):
            days = held[i % len(held)] + (i // len(held)) % 2  # the first day of the window, or the day before
            moment = dt.time(0, 0) if i % 4 < 2 else dt.time(23, 59, 59)
            on = dt.datetime.combine(AS_OF - dt.timedelta(days=days - 1), moment)
            _add_purchase(session, built, spectator, "festival-est", tuple(circus), on, 77_700)
        refresh_profiles(session, as_of=AS_OF)
        session.commit()
        organisations = organisation_ids(session)
        rules = []
        for days in held:
            rules += [
                {"field": "organisation", "op": "any", "value": ["festival-est"], "within_days": days},
                {"field": "discipline", "op": "all", "value": ["circus", "theatre"], "within_days": days},
                {"field": "discipline", "op": "none", "value": ["circus"], "within_days": days},
                {"field": "spent", "op": ">=", "value": 777, "within_days": days},
                {"field": "shows", "op": ">=", "value": 2, "within_days": days},
            ]
        for rule in rules:
            node = parse_rule(rule)
            want = expected(built, node, AS_OF)
            assert _run(session, node, AS_OF, organisations, windows=True) == want, rule
            assert _run(session, node, AS_OF, organisations, windows=False) == want, rule
