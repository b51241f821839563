"""The profiles kept as columns (``segments.profile_columns``) and the breakdown counted over them
(``segments.column_scan``): the same figures as the profile table's scan for every rule they answer,
kept up to date by full and incremental refreshes, and never used when they cannot answer."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import delete, func, insert, select, update

from core.models import Organisation, Spectator, Transaction
from segments import column_scan, profile_columns
from segments.models import ProfileColumn, SpectatorProfile
from segments.preview import _kept_scan, _scan
from segments.profiles import MAX_MASK_ORGANISATION_ID, profiles_as_of, refresh_profiles
from segments.rules import FIELDS, parse_rule
from tests.segments.district import (  # noqa: F401  (fixtures)
    AS_OF,
    PAST,
    district_databases,
    shared_district,
    small_district,
)
from tests.segments.test_query_scan import ALL_RULES
from tests.segments.test_rules_sql import expected, rules_for


def _orgs(session, in_mask_only: bool = True) -> list:
    rows = session.execute(select(Organisation.id, Organisation.slug, Organisation.name).order_by(Organisation.slug))
    return [tuple(row) for row in rows if not in_mask_only or row[0] <= MAX_MASK_ORGANISATION_ID]


def _every_rule(built) -> list[dict]:
    rules = list(ALL_RULES)
    for name, spec in FIELDS.items():
        for op in spec.ops:
            rules += rules_for(built, name, op)
    return rules + [{"not": rule} for rule in rules]


def _same_as_the_scan(session, node, orgs) -> bool:
    """Compare the columns' breakdown of ``node`` with the table scan's; False when they do not answer."""
    stored = profiles_as_of(session)
    counts = column_scan.breakdown(session, node, AS_OF, stored, orgs)
    if counts is None:
        return False
    ids = counts.ids
    scanned = _scan(session, node, AS_OF, stored, orgs, columns=False)
    assert sorted(ids.tolist()) == sorted(scanned.ids.tolist()), node
    for name in ("size", "size_keys", "stages", "stage_keys", "contactable", "contactable_keys", "per_org", "org_keys"):
        assert getattr(counts, name) == getattr(scanned, name), (node, name)
    return True


def test_the_columns_count_what_the_table_scan_counts(shared_district):
    db, built = shared_district
    with db.session() as session:
        orgs = _orgs(session)
        slugs = {slug: id_ for id_, slug, _name in orgs}
        every_slug = {slug: id_ for id_, slug, _name in _orgs(session, in_mask_only=False)}
        answered, passed_on, with_reference = 0, 0, 0
        for rule in _every_rule(built):
            node = parse_rule(rule)
            if _same_as_the_scan(session, node, orgs):
                answered += 1
                if column_scan.answers(node, every_slug):  # no organisation beyond the mask (left out of orgs)
                    ids = column_scan.breakdown(session, node, AS_OF, AS_OF, orgs).ids
                    assert sorted(ids.tolist()) == expected(built, node, AS_OF), rule  # the reference evaluator's
                    with_reference += 1
            else:
                passed_on += 1
                assert not column_scan.answers(node, slugs), rule  # only a rule they cannot answer is passed on
        # most rules are answered; venues, other windows and the organisation beyond the mask are not
        assert answered > passed_on > 0, (answered, passed_on)
        assert with_reference > answered // 2


def test_nothing_is_answered_that_the_columns_cannot_answer(shared_district):
    db, _built = shared_district
    rule = parse_rule({"field": "shows", "op": ">=", "value": 2})
    with db.session() as session:
        stored = profiles_as_of(session)
        in_mask = _orgs(session)
        assert column_scan.breakdown(session, rule, AS_OF, stored, in_mask) is not None
        # an organisation beyond the mask is counted from the transactions: the table scan does it
        assert column_scan.breakdown(session, rule, AS_OF, stored, _orgs(session, in_mask_only=False)) is None
        # another date than the profiles' reads the transactions
        assert column_scan.breakdown(session, rule, PAST, stored, in_mask) is None
        venue = parse_rule({"field": "venue", "op": "any", "value": ["Studio"]})
        assert column_scan.breakdown(session, venue, AS_OF, stored, in_mask) is None
        window = parse_rule({"field": "shows", "op": ">=", "value": 1, "within_days": 90})
        assert column_scan.breakdown(session, window, AS_OF, stored, in_mask) is None


def _kept_equal_read(session) -> None:
    """The kept columns are exactly what reading the whole profile table gives."""
    kept = profile_columns.kept_columns(session, profile_columns.NAMES, AS_OF)
    assert kept is not None
    read = profile_columns._read_rows(session)
    for name in profile_columns.NAMES:
        have, want = kept[name], read[name]
        if have.kind == "text":  # codes may differ between vocabularies: compare the words
            words = lambda column: [column.vocabulary[c] if c >= 0 else None for c in column.values]  # noqa: E731
            assert words(have) == words(want), name
        else:
            np.testing.assert_array_equal(have.values, want.values, err_msg=name)


def test_an_incremental_refresh_keeps_the_columns_exact(db, small_district):
    built = small_district
    rule_nodes = [parse_rule(rule) for rule in ALL_RULES]
    with db.session() as session:
        _kept_equal_read(session)
        first_version = session.scalar(select(ProfileColumn.version).limit(1))
        universe = built.universe(AS_OF)
        buyer, lost, newcomer_key = universe[0], universe[1], "spectator-new-fsa"
        # a purchase by a known buyer, a new spectator with a new postal area, one who loses every purchase
        session.execute(insert(Spectator), [{"key": newcomer_key, "fsa": "Z9Z"}])
        newcomer = session.scalar(select(Spectator.id).where(Spectator.key == newcomer_key))
        org = session.scalar(select(Organisation.id).where(Organisation.slug == "danse-sud"))
        when = dt.datetime.combine(AS_OF, dt.time(10, 0))
        session.execute(
            insert(Transaction),
            [
                {
                    "organisation_id": org,
                    "spectator_id": spectator,
                    "purchased_at": when,
                    "amount_cents": 99_900,
                    "tickets": 7,
                    "circumstance": "regular",
                    "category": "single",
                    "channel": "web",
                    "external_id": f"column-{spectator}",
                }
                for spectator in (buyer, newcomer)
            ],
        )
        session.execute(delete(Transaction).where(Transaction.spectator_id == lost))
        before = profile_columns.kept_columns(session, ["spectator_id"], AS_OF)
        assert before is not None and newcomer not in before["spectator_id"].values
        refresh_profiles(session, [buyer, newcomer, lost], as_of=AS_OF)
        _kept_equal_read(session)
        ids = profile_columns.kept_columns(session, ["spectator_id"], AS_OF)["spectator_id"].values
        assert newcomer in ids and lost not in ids and list(ids) == sorted(ids)
        assert session.scalar(select(ProfileColumn.version).limit(1)) != first_version
        orgs = _orgs(session)
        assert sum(_same_as_the_scan(session, node, orgs) for node in rule_nodes) > len(rule_nodes) // 2
        # the new FSA is in the vocabulary: a rule on it finds the newcomer alone
        region = parse_rule({"field": "fsa", "op": "in", "value": ["Z9Z"]})
        counts = column_scan.breakdown(session, region, AS_OF, AS_OF, orgs)
        found = counts.ids
        assert found.tolist() == [newcomer] and counts.size == 1
        session.commit()
        # a refresh of a SELECT of ids, as after an import
        session.execute(update(Spectator).where(Spectator.id == buyer).values(fsa="A1A"))
        refresh_profiles(session, select(Spectator.id).where(Spectator.id == buyer), as_of=AS_OF)
        _kept_equal_read(session)
        session.commit()


def test_a_full_refresh_to_another_date_rewrites_the_columns(db, small_district):
    with db.session() as session:
        assert profile_columns.kept_columns(session, ["shows"], AS_OF) is not None
        refresh_profiles(session, [small_district.universe(AS_OF)[0]], as_of=PAST)  # another date: a full one
        assert profile_columns.kept_columns(session, ["shows"], AS_OF) is None
        kept = profile_columns.kept_columns(session, ["shows"], PAST)
        assert kept is not None
        assert len(kept["spectator_id"].values) == session.scalar(select(func.count()).select_from(profile_columns.P))
        session.commit()


def test_another_process_sees_a_new_version(db, small_district):
    """The process keeps the arrays it read; a refresh elsewhere writes a new version, read anew."""
    rule = parse_rule({"field": "fsa", "op": "starts_with", "value": ["H"]})
    spectator = small_district.universe(AS_OF)[0]
    with db.session() as session:
        orgs = _orgs(session)
        before = column_scan.breakdown(session, rule, AS_OF, AS_OF, orgs)
        was_in = spectator in before.ids
    with db.session() as session:
        session.execute(update(Spectator).where(Spectator.id == spectator).values(fsa="G1R" if was_in else "H1R"))
        refresh_profiles(session, [spectator], as_of=AS_OF)
        session.commit()
    # what another process would hold: the same arrays under the old version
    profile_columns._copy.update(version="an-older-version")
    with db.session() as session:
        after = column_scan.breakdown(session, rule, AS_OF, AS_OF, orgs)
        assert after.size == before.size + (-1 if was_in else 1)
        assert _same_as_the_scan(session, rule, orgs)


def test_without_kept_columns_the_preview_scans_the_table(db, small_district):
    """Columns dropped (or never kept) leave the pages' preview to the table scan, with the same figures."""
    rule = parse_rule({"field": "shows", "op": ">=", "value": 2})
    with db.session() as session:
        orgs = _orgs(session)
        with_columns = _kept_scan(session, rule, AS_OF, AS_OF, orgs)
        session.rollback()  # nothing kept: the next preview counts again
        profile_columns.forget(session)
        assert column_scan.breakdown(session, rule, AS_OF, AS_OF, orgs) is None
        without = _kept_scan(session, rule, AS_OF, AS_OF, orgs)
        assert replace(without, ids=None) == replace(with_columns, ids=None)


@pytest.mark.parametrize("field", ["lifecycle", "main_channel", "fsa"])
def test_text_codes_stand_for_their_words(shared_district, field):
    db, _built = shared_district
    with db.session() as session:
        kept = profile_columns.kept_columns(session, [field], AS_OF)
        words = [kept[field].vocabulary[c] if c >= 0 else None for c in kept[field].values]
        from segments.models import SpectatorProfile

        table = dict(session.execute(select(SpectatorProfile.spectator_id, getattr(SpectatorProfile, field))).all())
        assert words == [table[int(i)] for i in kept["spectator_id"].values]


def test_a_refresh_of_nobody_keeps_the_columns_as_they_are(db, small_district):
    with db.session() as session:
        version = session.scalar(select(ProfileColumn.version).limit(1))
        refresh_profiles(session, select(Spectator.id).where(Spectator.id < 0), as_of=AS_OF)
        assert session.scalar(select(ProfileColumn.version).limit(1)) == version
        _kept_equal_read(session)


def test_a_direct_write_of_the_profiles_drops_the_columns_in_its_transaction(db, small_district):
    """Only a refresh keeps the columns: a Core statement or an ORM flush writing the profiles
    otherwise drops them, and a rollback brings them back with the rows."""
    spectator = small_district.universe(AS_OF)[0]
    rule = parse_rule({"field": "shows", "op": ">=", "value": 2})
    with db.session() as session:
        orgs = _orgs(session)
        assert column_scan.breakdown(session, rule, AS_OF, AS_OF, orgs) is not None
        session.execute(update(SpectatorProfile).where(SpectatorProfile.spectator_id == spectator).values(shows=99))
        assert session.scalar(select(func.count()).select_from(ProfileColumn)) == 0
        assert column_scan.breakdown(session, rule, AS_OF, AS_OF, orgs) is None
        session.rollback()
        assert column_scan.breakdown(session, rule, AS_OF, AS_OF, orgs) is not None
        session.get(SpectatorProfile, spectator).shows = 98
        session.flush()
        assert session.scalar(select(func.count()).select_from(ProfileColumn)) == 0
        session.commit()
        assert column_scan.breakdown(session, rule, AS_OF, AS_OF, orgs) is None  # until the next refresh
        refresh_profiles(session, [spectator], as_of=AS_OF)  # kept again, whole
        _kept_equal_read(session)
        assert _same_as_the_scan(session, rule, orgs)
        session.commit()
