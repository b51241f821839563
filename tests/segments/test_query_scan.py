"""One scan for a rule's members and its preview (``segments.query._scan``): what it counts against
the reference evaluator, when a second call reuses it and when it must not, and the FSA index."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select, update

from benchmarks.rules import RULES as BENCH_RULES
from core.models import Organisation, Spectator
from core.privacy import Cell
from segments import profile_columns
from segments.models import SpectatorProfile
from segments.preview import _scan, members, preview
from segments.profiles import LIFECYCLE_STAGES, MAX_MASK_ORGANISATION_ID, profiles_as_of, refresh_profiles
from segments.rules import parse_rule, stage_of
from tests.segments.district import (  # noqa: F401  (fixtures)
    AS_OF,
    PAST,
    district_databases,
    shared_district,
    small_district,
)
from tests.segments.test_rules_sql import COMPOSITES, expected

# Rules on a region (the FSA index answers them alone on SQLite when they read nothing else), on a
# region and something the index does not hold, and the benchmark's.
REGION_RULES = [
    {"field": "fsa", "op": "starts_with", "value": ["H2"]},
    {"field": "fsa", "op": "starts_with", "value": ["H"]},
    {"field": "fsa", "op": "starts_with", "value": ["G", "J4"]},
    {"field": "fsa", "op": "starts_with", "value": ["H2X"]},
    {"not": {"field": "fsa", "op": "starts_with", "value": ["H2"]}},
    {"field": "fsa", "op": "in", "value": ["H2X", "H3A"]},
    {
        "all": [
            {"field": "fsa", "op": "starts_with", "value": ["H2"]},
            {"field": "organisation", "op": "any", "value": ["theatre-nord"]},
            {"field": "organisation", "op": "none", "value": ["danse-sud"]},
        ]
    },
    {
        "all": [
            {"field": "fsa", "op": "starts_with", "value": ["H"]},
            {"field": "organisation", "op": "all", "value": ["theatre-nord", "festival-est"]},
        ]
    },
    {
        "all": [
            {"field": "fsa", "op": "starts_with", "value": ["H"]},
            {"field": "lifecycle", "op": "in", "value": ["active", "stale", "lapsed"]},
            {"field": "contactable", "op": "is", "value": True},
        ]
    },
    {"any": [{"field": "fsa", "op": "starts_with", "value": ["H3"]}, {"field": "shows", "op": ">=", "value": 3}]},
    {
        "all": [
            {"field": "fsa", "op": "starts_with", "value": ["H"]},
            {"field": "organisation", "op": "any", "value": ["grand-ensemble"]},
        ]
    },
]
ALL_RULES = REGION_RULES + COMPOSITES + [r.rule for r in BENCH_RULES]


def reference_breakdown(built, node, as_of, organisations: dict[str, int]) -> dict:
    """Size, stages, contactable members and members per organisation, from the reference facts."""
    from segments.query import consents_day

    found = expected(built, node, as_of)
    facts = [built.facts(s, as_of, consents_day(as_of, AS_OF)) for s in found]
    bought = [{p.organisation for p in f.purchases if p.purchased_at <= as_of} for f in facts]
    return {
        "ids": found,
        "size": len(found),
        "stages": {stage: sum(1 for f in facts if stage_of(f) == stage) for stage in LIFECYCLE_STAGES},
        "contactable": sum(1 for f in facts if f.contactable),
        "per_org": {slug: sum(1 for b in bought if slug in b) for slug in organisations},
    }


@pytest.mark.parametrize("rule", ALL_RULES, ids=[f"rule-{i}" for i in range(len(ALL_RULES))])
def test_one_scan_counts_what_the_reference_counts(shared_district, rule):
    db, built = shared_district
    node = parse_rule(rule)
    with db.session() as session:
        organisations = dict(session.execute(select(Organisation.slug, Organisation.id)).all())
        assert any(i > MAX_MASK_ORGANISATION_ID for i in organisations.values())  # the path beyond the mask too
        for as_of in (AS_OF, PAST):
            want = reference_breakdown(built, node, as_of, organisations)
            found = _scan(session, node, as_of, profiles_as_of(session))
            assert sorted(found.ids.tolist()) == want["ids"], (rule, as_of)
            got = {
                "ids": want["ids"],
                "size": found.size,
                "stages": found.stages,
                "contactable": found.contactable,
                "per_org": found.per_org,
            }
            assert got == want, (rule, as_of)


@pytest.mark.parametrize("rule", ALL_RULES, ids=[f"rule-{i}" for i in range(len(ALL_RULES))])
def test_members_then_preview_say_what_each_says_alone(shared_district, rule):
    db, built = shared_district
    for as_of in (AS_OF, PAST):
        with db.session() as session:
            together = (members(session, rule, as_of), preview(session, rule, as_of))
        with db.session() as session:
            alone_preview = preview(session, rule, as_of)
        with db.session() as session:
            alone_members = members(session, rule, as_of)
        assert together == (alone_members, alone_preview)
        assert alone_members == expected(built, parse_rule(rule), as_of)


def _profile_scans(db):
    """A list that fills with the statements reading the profiles, or their kept columns, with a
    WHERE (the scans)."""
    seen: list[str] = []

    def listen(_conn, _cursor, statement, *_args):
        profiles = "spectator_profile" in statement or "profile_column" in statement
        if profiles and "WHERE" in statement and "LIMIT" not in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", listen)
    return seen, lambda: event.remove(db.engine, "before_cursor_execute", listen)


def test_preview_after_members_reuses_the_scan_within_the_transaction(shared_district):
    db, _built = shared_district
    rule = BENCH_RULES[0].rule
    scans, stop = _profile_scans(db)
    try:
        with db.session() as session:
            members(session, rule)
            once = len(scans)
            assert once >= 1
            preview(session, rule)
            assert len(scans) == once
            preview(session, BENCH_RULES[1].rule)  # another rule: its own scan
            assert len(scans) > once
            twice = len(scans)
            session.rollback()  # a new transaction sees anew
            preview(session, BENCH_RULES[1].rule)
            assert len(scans) > twice
    finally:
        stop()


def test_a_write_in_the_session_forgets_the_scan(db, small_district):
    rule = {"field": "fsa", "op": "starts_with", "value": ["H"]}
    with db.session() as session:
        before = members(session, rule)
        assert len(before) >= 10  # a size the preview shows (k = 10)
        outsider = next(s for s in small_district.universe(AS_OF) if s not in before)
        # A Core write through the session.
        session.execute(update(SpectatorProfile).where(SpectatorProfile.spectator_id == outsider).values(fsa="H9Z"))
        after_core = members(session, rule)
        assert after_core == sorted([*before, outsider])
        assert preview(session, rule)["size"] == len(after_core)
        # An ORM change, flushed before the next query.
        profile = session.get(SpectatorProfile, outsider)
        profile.fsa = "G1R"
        assert members(session, rule) == before
        assert preview(session, rule)["size"] == len(before)
        session.commit()
        # The direct writes dropped the kept columns (segments.profile_columns): the table answered.
        # The next transaction sees what a refresh wrote (and the columns it kept again).
        session.execute(update(Spectator).where(Spectator.id == outsider).values(fsa="H0A"))
        refresh_profiles(session, [outsider], as_of=AS_OF)
        session.commit()
        assert preview(session, rule)["size"] == len(before) + 1
        assert members(session, rule) == sorted([*before, outsider])


@pytest.mark.engines("sqlite")
def test_sqlite_reads_a_region_rule_from_the_fsa_index_alone(db, small_district, engine_name):
    """The geography rule and its preview read ix_spectator_profile_fsa only; a region rule that
    reads another column keeps to the table (a lookup per index entry would cost more)."""
    from segments.preview import organisation_ids
    from segments.query import compile_rule

    plans = []

    def listen(conn, _cursor, statement, parameters, *_args):
        if "spectator_profile" in statement and "WHERE" in statement and not statement.startswith("EXPLAIN"):
            plans.append(" ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        with db.session() as session:
            profile_columns.forget(session)  # the table's plan, not the kept columns'
            preview(session, REGION_RULES[6])
            assert plans and all("COVERING INDEX ix_spectator_profile_fsa" in p for p in plans), plans
            node = parse_rule(REGION_RULES[0])
            sql = str(compile_rule(node, AS_OF, AS_OF, organisation_ids(session)).compile(dialect=db.engine.dialect))
            assert "+spectator_profile.fsa" not in sql
            node = parse_rule({"all": [REGION_RULES[0], {"field": "shows", "op": ">=", "value": 2}]})
            sql = str(compile_rule(node, AS_OF, AS_OF, organisation_ids(session)).compile(dialect=db.engine.dialect))
            assert "+spectator_profile.fsa" in sql
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


@pytest.mark.engines("postgresql")
def test_postgresql_prefix_is_a_like_the_fsa_index_serves(db, small_district, engine_name):
    from segments.preview import organisation_ids
    from segments.query import compile_rule

    with db.session() as session:
        node = parse_rule(REGION_RULES[0])
        statement = compile_rule(node, AS_OF, AS_OF, organisation_ids(session))
        compiled = statement.compile(dialect=db.engine.dialect)
        assert " LIKE " in str(compiled) and "H2%" in compiled.params.values()
        session.execute(select(SpectatorProfile.spectator_id).limit(1))
        connection = session.connection()
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        literal = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
        cursor = connection.connection.driver_connection.execute("EXPLAIN " + literal)  # no placeholders
        plan = "\n".join(r[0] for r in cursor.fetchall())
        assert "ix_spectator_profile_fsa" in plan, plan


@pytest.mark.parametrize("type_", ["smallint", "integer", "bigint"])
def test_every_value_reads_back_the_integers_of_its_group(db, engine_name, type_):
    """Each engine's aggregated form (PostgreSQL's binary array, SQLite's text) gives back the
    group's integers, in full range and sign, and nothing for an empty group."""
    from sqlalchemy import BigInteger, Integer, SmallInteger, cast, false, literal, union_all

    from core.sql_expressions import every_value, integers

    sql_type = {"smallint": SmallInteger, "integer": Integer, "bigint": BigInteger}[type_]
    bits = {"smallint": 15, "integer": 31, "bigint": 63}[type_]
    numbers = [0, 1, -1, 7, 2**bits - 1, -(2**bits), 12345 % (2**bits)]
    rows = union_all(*(select(cast(literal(n), sql_type).label("n")) for n in numbers)).subquery("numbers")
    with db.session() as session:
        got = integers(session.scalar(select(every_value(rows.c.n))))
        assert sorted(got.tolist()) == sorted(numbers)
        assert got.dtype.name == "int64"
        empty = integers(session.scalar(select(every_value(rows.c.n)).where(false())))
        assert empty.size == 0


def test_members_after_a_preview_in_the_same_transaction_are_scanned_for(shared_district):
    """A preview's scan leaves the members' ids out; ``members`` after it in the same transaction
    scans for them rather than reading the preview's empty list, and a preview after that reuses it."""
    db, built = shared_district
    rule = BENCH_RULES[0].rule
    scans, stop = _profile_scans(db)
    try:
        with db.session() as session:
            shown = preview(session, rule)
            once = len(scans)
            found = members(session, rule)
            assert len(scans) > once and found == expected(built, parse_rule(rule), AS_OF) and found
            assert preview(session, rule) == shown
            assert len(scans) == 2 * once  # one scan for the preview, one for the members: no third
    finally:
        stop()


def _profile_count(session) -> Cell:
    return Cell.of(*session.execute(select(func.count(), func.sum(SpectatorProfile.cell_key))).one())


@contextmanager
def _counts_of_the_profile_table(db):
    """The statements that count the whole profile table, as the engine runs them (listened to)."""
    whole: list[str] = []

    def listen(_conn, _cursor, statement, *_args):
        if "spectator_profile" in statement and "WHERE" not in statement and "count(" in statement:
            whole.append(statement)

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield whole
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


def test_the_universe_is_read_from_the_kept_profile_columns(db, small_district):
    """On the profiles' date, the whole a preview's size is protected against (every profile) is the
    kept columns' length and cell-key sum: equal to a count of the profile table, before and after
    a refresh that adds a profile, and no request counts the table."""
    from segments.preview import universe
    from segments.profiles import refresh_after_import
    from tests.segments.test_profiles import _new_sales

    with _counts_of_the_profile_table(db) as whole, db.session() as session:
        first = universe(session)
        assert not whole  # the kept columns answered
        assert first == _profile_count(session) and first.count == len(small_district.universe(AS_OF))
        whole.clear()
        newcomer = next(s for s in small_district.spectators if s not in small_district.universe(AS_OF))
        batch_id = _new_sales(session, [newcomer], dt.datetime(2024, 6, 29, 18, 0))
        refresh_after_import(session, batch_id, as_of=AS_OF)
        session.commit()
        after = universe(session)
        assert not whole
        assert after.count == first.count + 1 and after == _profile_count(session)


def test_without_kept_columns_the_universe_is_counted_once_per_data_epoch(db, small_district):
    """When no kept columns describe the profiles (a repair dropped them), the universe is counted
    over the profile table once per data epoch and kept: counted again after a refresh moved the
    profiles, and equal to a count of them."""
    from segments.preview import universe
    from segments.profiles import refresh_after_import
    from tests.segments.test_profiles import _new_sales

    with _counts_of_the_profile_table(db) as whole, db.session() as session:
        profile_columns.forget(session)
        session.commit()
        first = universe(session)
        session.commit()
        assert first.count == len(small_district.universe(AS_OF)) and len(whole) == 1
        assert universe(session) == first and len(whole) == 1  # kept: not counted again
        newcomer = next(s for s in small_district.spectators if s not in small_district.universe(AS_OF))
        batch_id = _new_sales(session, [newcomer], dt.datetime(2024, 6, 29, 18, 0))
        refresh_after_import(session, batch_id, as_of=AS_OF)  # moves the data epoch
        session.commit()
        profile_columns.forget(session)
        session.commit()
        after = universe(session)
        assert len(whole) == 2 and after.count == first.count + 1
        assert after == _profile_count(session)


def test_a_page_preview_keeps_its_breakdown_for_the_data_epoch(app, db, small_district):
    """Asking a rule's preview again in the same data epoch reads the breakdown its first preview
    kept (no scan of the profiles, the same figures); a refresh moves the epoch and the rule is
    scanned again, its new member counted, and the earlier epoch's breakdowns are dropped; on a
    date other than the profiles' (the transactions and consents, which an erasure moves without
    a new epoch) every preview scans."""
    from core.models import Setting
    from core.privacy import Release, data_epoch
    from segments.preview import KEPT_SCAN_PREFIX, protected_preview
    from segments.profiles import refresh_after_import
    from tests.segments.test_profiles import _new_sales

    rule = {"field": "shows", "op": "<=", "value": 3}
    scans: list[str] = []  # the breakdown's scans, on the profiles or the transactions

    def listen(_conn, _cursor, statement, *_args):
        if "count(*) AS size" in statement:
            scans.append(statement)

    event.listen(db.engine, "before_cursor_execute", listen)

    def kept_names(session):
        return session.scalars(select(Setting.name).where(Setting.name.like(f"{KEPT_SCAN_PREFIX}%"))).all()

    try:
        with app.test_request_context(), db.session() as session:
            release = Release("secret", data_epoch(session), 2, sigma=0.0)
            first = protected_preview(session, rule, release)
            session.commit()
            assert len(scans) == 1 and len(kept_names(session)) == 1
            assert protected_preview(session, dict(rule), release) == first and len(scans) == 1
            session.commit()
            few = select(func.count()).where(SpectatorProfile.shows <= 3)
            assert first["size"] == session.scalar(few) > 0  # σ = 0: the exact count

            newcomer = next(s for s in small_district.spectators if s not in small_district.universe(AS_OF))
            batch_id = _new_sales(session, [newcomer], dt.datetime(2024, 6, 29, 18, 0))
            refresh_after_import(session, batch_id, as_of=AS_OF)  # moves the data epoch
            session.commit()
            release = Release("secret", data_epoch(session), 2, sigma=0.0)
            after = protected_preview(session, rule, release)
            session.commit()
            assert len(scans) == 2 and after["size"] == session.scalar(few) == first["size"] + 1
            (name,) = kept_names(session)  # the earlier epoch's breakdown went
            assert name.startswith(f"{KEPT_SCAN_PREFIX}{data_epoch(session)}:")

            protected_preview(session, rule, release, PAST)
            session.commit()  # a new request
            protected_preview(session, rule, release, PAST)
            assert len(scans) == 4 and len(kept_names(session)) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
