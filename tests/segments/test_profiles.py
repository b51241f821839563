"""Spectator profiles: what a row says, and incremental refreshes giving the rows of a full one."""

from __future__ import annotations

import datetime as dt
import statistics
import time

import pytest
from sqlalchemy import func, insert, select, text, update

from core.models import DISCIPLINES, Consent, Contact, ImportBatch, Organisation, Setting, Spectator, Transaction
from segments.models import SpectatorProfile
from segments.profiles import (
    REFRESHED_AT_SETTING,
    changed_since,
    profiles_as_of,
    refresh_after_import,
    refresh_changed,
    refresh_profiles,
)
from segments.rules import stage_of
from tests.segments.district import AS_OF, PAST, small_district  # noqa: F401  (fixture)

COLUMNS = [c for c in SpectatorProfile.__table__.columns]


def rows(session) -> dict[int, tuple]:
    return {row[0]: tuple(row) for row in session.execute(select(*COLUMNS).order_by(SpectatorProfile.spectator_id))}


def approx(value):
    return None if value is None else round(value, 9)


def test_profile_rows_say_what_the_purchases_say(db, small_district):
    built = small_district
    with db.session() as session:
        orgs = dict(session.execute(select(Organisation.slug, Organisation.id)).all())
        stored = {p.spectator_id: p for p in session.scalars(select(SpectatorProfile))}
    assert sorted(stored) == built.universe(AS_OF)
    for spectator, profile in stored.items():
        facts = built.facts(spectator, AS_OF, AS_OF)
        rows_ = [(i, p) for i, p in enumerate(facts.purchases) if p.purchased_at <= AS_OF]
        purchases = [p for _, p in rows_]
        orders: dict = {}
        for i, p in rows_:
            key = (p.organisation, p.order_id) if p.order_id is not None else i
            orders.setdefault(key, {"promo": False, "channel": set()})
            orders[key]["promo"] |= p.promo
            if p.channel:
                orders[key]["channel"].add(p.channel)
        assert profile.as_of == AS_OF
        assert profile.first_purchase_on == min(p.purchased_at for p in purchases)
        assert profile.last_purchase_on == max(p.purchased_at for p in purchases)
        assert profile.shows == len({p.show_id for p in purchases if p.show_id is not None})
        assert profile.orders == len(orders)
        assert profile.tickets == sum(p.tickets for p in purchases)
        assert profile.spent_cents == sum(p.amount_cents for p in purchases)
        assert profile.lifecycle == stage_of(facts)
        assert profile.organisation_mask == sum(
            1 << orgs[slug] for slug in {p.organisation for p in purchases} if orgs[slug] <= 62
        )
        assert profile.discipline_mask == sum(
            1 << DISCIPLINES.index(d) for d in {p.discipline for p in purchases} - {None}
        )
        assert profile.subscriber == any(p.category == "subscription" for p in purchases)
        assert (profile.newsletter, profile.contactable) == (facts.newsletter, facts.contactable)
        per_channel = {c: sum(1 for o in orders.values() if c in o["channel"]) for c in ("web", "box_office", "phone")}
        best = max(per_channel, key=lambda c: per_channel[c])
        assert profile.main_channel == (best if per_channel[best] else None)
        assert approx(profile.promo_share) == approx(sum(o["promo"] for o in orders.values()) / len(orders))
        leads = [(p.show_date - p.purchased_at).days for p in purchases if p.show_date is not None]
        assert approx(profile.lead_days) == approx(statistics.median(leads) if leads else None)
        assert approx(profile.tickets_per_order) == approx(profile.tickets / len(orders))
        assert profile.fsa == built.fsa[spectator]
        for days in (365, 730):
            # The D days ending with AS_OF: purchase date > AS_OF - D (DESIGN.md §7).
            recent = [p for p in purchases if p.purchased_at > AS_OF - dt.timedelta(days=days)]
            assert getattr(profile, f"spent_cents_{days}") == sum(p.amount_cents for p in recent)
            assert getattr(profile, f"organisation_mask_{days}") == sum(
                1 << orgs[slug] for slug in {p.organisation for p in recent} if orgs[slug] <= 62
            )
            assert getattr(profile, f"discipline_mask_{days}") == sum(
                1 << DISCIPLINES.index(d) for d in {p.discipline for p in recent} - {None}
            )


def test_an_organisation_beyond_the_mask_is_left_out_of_it(db, small_district):
    with db.session() as session:
        big = session.scalar(select(Organisation.id).where(Organisation.slug == "grand-ensemble"))
        buyers = set(session.scalars(select(Transaction.spectator_id).where(Transaction.organisation_id == big)))
        masks = dict(session.execute(select(SpectatorProfile.spectator_id, SpectatorProfile.organisation_mask)).all())
    assert big > 62 and buyers
    assert all(mask < (1 << 63) for mask in masks.values())


def _new_sales(session, spectator_ids: list[int], on: dt.datetime) -> int:
    """A sales batch adding a purchase to each of ``spectator_ids`` (and one new consent)."""
    org = session.scalar(select(Organisation).where(Organisation.slug == "danse-sud"))
    batch = ImportBatch(organisation_id=org.id, kind="sales", filename="more.csv", checksum="x" * 64, status="done")
    session.add(batch)
    session.flush()
    session.execute(
        insert(Transaction),
        [
            {
                "organisation_id": org.id,
                "spectator_id": s,
                "show_id": None,
                "batch_id": batch.id,
                "purchased_at": on,
                "amount_cents": 3000,
                "tickets": 2,
                "circumstance": "promotion",
                "category": "subscription",
                "channel": "phone",
                "order_id": None,
                "external_id": f"new-{s}",
            }
            for s in spectator_ids
        ],
    )
    return batch.id


def test_incremental_refresh_gives_the_rows_of_a_full_one(db, small_district):
    built = small_district
    changed = built.universe(AS_OF)[:6] + [s for s in built.spectators if s not in built.universe(AS_OF)][:2]
    with db.session() as session:
        before = rows(session)
        batch_id = _new_sales(session, changed, dt.datetime(2024, 6, 29, 18, 0))
        session.execute(
            update(Spectator).where(Spectator.id == changed[0]).values(opted_out_at=dt.datetime(2024, 6, 1))
        )
        written = refresh_after_import(session, batch_id, as_of=AS_OF)
        session.commit()
        incremental = rows(session)
        assert written == len(changed)
        assert {s for s in incremental if incremental.get(s) != before.get(s)} == set(changed)
        refresh_profiles(session, as_of=AS_OF)
        session.commit()
        assert rows(session) == incremental

        # An explicit list of ids, and a SELECT of ids, do the same.
        refresh_profiles(session, changed, as_of=AS_OF)
        assert rows(session) == incremental
        refresh_profiles(session, select(Transaction.spectator_id).where(Transaction.batch_id == batch_id), as_of=AS_OF)
        assert rows(session) == incremental


def test_an_incremental_refresh_on_another_date_rebuilds_everything(db, small_district):
    built = small_district
    with db.session() as session:
        written = refresh_profiles(session, built.universe(AS_OF)[:3], as_of=PAST)
        session.commit()
        assert written == len(built.universe(PAST))
        assert profiles_as_of(session) == PAST
        assert {p for (p,) in session.execute(select(SpectatorProfile.as_of).distinct())} == {PAST}


def test_refresh_changed_picks_the_spectators_of_newer_batches(db, small_district):
    built = small_district
    with db.session() as session:
        kind, _ = refresh_changed(session, AS_OF)
        assert kind == "incremental"  # the fixture's refresh recorded its time
        since = dt.datetime.fromisoformat(session.get(Setting, REFRESHED_AT_SETTING).value)
        assert list(session.execute(changed_since(since))) == []
        assert refresh_changed(session, AS_OF) == ("incremental", 0)
        target = built.universe(AS_OF)[:3]
        _new_sales(session, target, dt.datetime(2024, 6, 30, 10, 0))
        kind, written = refresh_changed(session, AS_OF)
        assert (kind, written) == ("incremental", 3)
        assert refresh_changed(session, AS_OF, full=True) == ("full", len(built.universe(AS_OF)))
        assert refresh_changed(session, PAST)[0] == "full"  # a new date is always a full refresh


def test_consents_withdrawn_by_an_unsubscribe_batch_are_refreshed(db, small_district):
    with db.session() as session:
        contact = session.scalars(
            select(Contact)
            .join(Consent)
            .where(Consent.basis == "express", Consent.withdrawn_at.is_(None), Consent.channel == "email")
        ).first()
        profile = session.get(SpectatorProfile, contact.spectator_id)
        batch = ImportBatch(
            organisation_id=contact.organisation_id,
            kind="unsubscribes",
            filename="u.csv",
            checksum="u" * 64,
            status="done",
            created_at=dt.datetime(2024, 6, 1),
        )
        session.add(batch)
        session.flush()
        session.execute(
            update(Consent).where(Consent.contact_id == contact.id).values(withdrawn_at=dt.datetime(2024, 6, 2))
        )
        session.execute(
            update(Spectator).where(Spectator.id == contact.spectator_id).values(opted_out_at=dt.datetime(2024, 6, 2))
        )
        refresh_after_import(session, batch.id, as_of=AS_OF)
        session.commit()
        session.refresh(profile)
        assert profile.contactable is False


def test_pilot_profiles_refresh(runner, small_district):
    result = runner.invoke(args=["profiles", "refresh", "--as-of", AS_OF.isoformat()])
    assert result.exit_code == 0, result.output
    assert "(incremental)" in result.output and "0 rows" in result.output
    result = runner.invoke(args=["profiles", "refresh", "--full", "--as-of", AS_OF.isoformat()])
    assert result.exit_code == 0, result.output
    assert f"(full) as of {AS_OF.isoformat()}: {len(small_district.universe(AS_OF))} rows" in result.output


def _pages(session) -> int:
    return session.execute(
        text("SELECT pg_relation_size('spectator_profile') / current_setting('block_size')::int")
    ).scalar()


@pytest.mark.engines("postgresql")
def test_a_full_refresh_on_postgresql_leaves_no_dead_rows_behind(db, small_district, engine_name):
    """A full rebuild truncates: the table holds its rows' pages only, not those of every former
    rebuild (which each preview's scan would read), and its rows come in FSA order."""
    with db.session() as session:
        before = rows(session)
        pages = _pages(session)
        for _ in range(3):
            refresh_profiles(session, as_of=AS_OF)
            session.commit()
        assert _pages(session) == pages
        assert rows(session) == before
        assert (
            session.execute(
                text("SELECT lock_timeout FROM (SELECT current_setting('lock_timeout') AS lock_timeout) t")
            ).scalar()
            == "0"
        )  # the refresh's own lock timeout is gone
        in_order = session.scalars(text("SELECT fsa FROM spectator_profile ORDER BY ctid")).all()
        assert in_order == sorted(in_order, key=lambda fsa: (fsa is None, fsa or ""))


@pytest.mark.engines("postgresql")
def test_a_full_refresh_does_not_wait_for_a_reader_of_the_profiles(db, small_district, engine_name, monkeypatch):
    """With a reader holding the table, the full rebuild deletes instead of truncating (after a
    short wait) and gives the same rows; the reader still sees the former ones until it ends."""
    import segments.profiles as profiles

    monkeypatch.setattr(profiles, "TRUNCATE_LOCK_TIMEOUT", "200ms")
    with db.session() as reader, db.session() as session:
        seen = reader.scalar(select(func.count()).select_from(SpectatorProfile))  # holds ACCESS SHARE
        before = rows(session)
        session.execute(update(SpectatorProfile).values(lead_days=-1.0))  # to tell the rebuilt rows
        started = time.perf_counter()
        written = refresh_profiles(session, as_of=AS_OF)
        waited = time.perf_counter() - started
        session.commit()
        assert written == len(before) == seen
        assert rows(session) == before
        assert reader.scalar(select(func.count()).select_from(SpectatorProfile)) == seen
        assert waited < 30
        assert session.execute(text("SHOW lock_timeout")).scalar() == "0"


def _vacuums(session) -> int:
    session.execute(text("SELECT pg_stat_clear_snapshot()"))
    return session.execute(
        text("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'spectator_profile'")
    ).scalar()


@pytest.mark.engines("postgresql")
def test_a_committed_refresh_is_vacuumed_and_a_rolled_back_one_is_not(db, small_district, engine_name):
    """After a committed refresh, full or incremental, every page of the profiles is all-visible: a
    rule on a region reads the FSA index alone, without a visit to the table. A refresh rolled back
    asks for no vacuum, not even at the session's next commit."""
    region = "SELECT spectator_id, organisation_mask, lifecycle, contactable FROM spectator_profile WHERE fsa LIKE 'H%'"

    def index_only_plan(session) -> str:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_bitmapscan = off"))
        plan = "\n".join(session.scalars(text("EXPLAIN (ANALYZE, COSTS OFF) " + region)))
        session.rollback()
        return plan

    with db.session() as session:
        some = session.scalars(
            select(SpectatorProfile.spectator_id).order_by(SpectatorProfile.spectator_id).limit(5)
        ).all()
        vacuums = _vacuums(session)
        refresh_profiles(session, as_of=AS_OF)
        session.commit()
        assert _vacuums(session) == vacuums + 1
        plan = index_only_plan(session)
        assert "Index Only Scan using ix_spectator_profile_fsa" in plan and "Heap Fetches: 0" in plan, plan
        refresh_profiles(session, some, as_of=AS_OF)
        session.commit()
        assert _vacuums(session) == vacuums + 2
        plan = index_only_plan(session)
        assert "Index Only Scan using ix_spectator_profile_fsa" in plan and "Heap Fetches: 0" in plan, plan
        refresh_profiles(session, as_of=AS_OF)
        session.rollback()
        refresh_profiles(session, some, as_of=AS_OF)
        session.rollback()
        session.execute(update(Setting).where(Setting.name == REFRESHED_AT_SETTING).values(value="x"))
        session.commit()
        assert _vacuums(session) == vacuums + 2
