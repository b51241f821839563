"""The demo district: its shape, its spectators' behaviour, consents, determinism and the command."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter, defaultdict

from sqlalchemy import func, select

from core.cli import main
from core.demo import DEMO_PASSWORD, FSAS, SALES_END, build_demo, demo_logins
from core.identity import identity_basis, spectator_key
from core.models import (
    DISCIPLINES,
    Consent,
    Contact,
    Organisation,
    Show,
    Spectator,
    Transaction,
    User,
    Venue,
)
from core.scheduler import run_job
from tests.conftest import login

SMALL = 2_000


def _quiet(*_args, **_kwargs) -> None:
    pass


def _build(app, db, seed: int = 7, fresh: bool = False) -> dict:
    with app.app_context():
        return build_demo(db, spectators=SMALL, seed=seed, echo=_quiet, fresh=fresh)


def _plus_two_years(at: dt.datetime) -> dt.datetime:
    try:
        return at.replace(year=at.year + 2)
    except ValueError:  # 29 February
        return at.replace(year=at.year + 2, day=28)


def _fingerprint(db) -> tuple:
    """What must be identical for two builds with the same seed (ids aside)."""
    with db.session() as s:
        count, amount, tickets = s.execute(
            select(func.count(), func.sum(Transaction.amount_cents), func.sum(Transaction.tickets))
        ).one()
        keys = hashlib.sha256("\n".join(sorted(s.scalars(select(Spectator.key)))).encode()).hexdigest()
        rows = s.execute(
            select(
                Transaction.external_id,
                Spectator.key,
                Show.natural_key,
                Transaction.purchased_at,
                Transaction.amount_cents,
                Transaction.channel,
                Transaction.promo_code,
            )
            .join(Spectator, Spectator.id == Transaction.spectator_id)
            .join(Show, Show.id == Transaction.show_id)
        ).all()
        detail = hashlib.sha256("\n".join(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()
        consents = s.scalar(select(func.count()).select_from(Consent))
    return count, int(amount), int(tickets), keys, detail, consents


def test_demo_district_shape_and_behaviour(app, db):
    _build(app, db)
    with db.session() as s:
        orgs = s.scalars(select(Organisation)).all()
        assert 18 <= len(orgs) <= 22
        assert {o.kind for o in orgs} == {"venue", "company", "festival"}
        capacities = s.scalars(select(Venue.capacity)).all()
        assert capacities and all(200 <= c <= 3000 for c in capacities)
        assert set(s.scalars(select(Show.discipline).distinct())) == set(DISCIPLINES)
        first_show, last_show = s.execute(select(func.min(Show.starts_at), func.max(Show.starts_at))).one()
        assert first_show >= dt.datetime(2023, 9, 1) and last_show <= dt.datetime(2026, 12, 31, 23, 59)

        assert s.scalar(select(func.count()).select_from(Spectator)) == SMALL
        fsas = s.scalars(select(Spectator.fsa)).all()
        assert all(f in FSAS and re.fullmatch(r"[A-Z]\d[A-Z]", f) for f in fsas)
        # Central Montreal, the rest of the island, Laval and the South Shore are all there.
        regions = Counter(
            "laval"
            if f.startswith("H7")
            else "island"
            if f.startswith("H")
            else "south"
            if f.startswith(("J4", "J3Y", "J5R"))
            else "other"
            for f in fsas
        )
        assert regions["island"] > SMALL / 2 and regions["laval"] > 0 and regions["south"] > 0

        tx = s.execute(
            select(
                Transaction.spectator_id,
                Transaction.order_id,
                Transaction.tickets,
                Transaction.circumstance,
                Transaction.category,
                Transaction.channel,
                Transaction.promo_code,
                Transaction.amount_cents,
                Transaction.purchased_at,
                Show.starts_at,
                Show.discipline,
                Transaction.organisation_id,
                Show.organisation_id,
            ).join(Show, Show.id == Transaction.show_id)
        ).all()
    assert 5 * SMALL < len(tx) < 15 * SMALL
    assert all(t.organisation_id == t[-1] for t in tx)  # a show is sold by its own organisation

    # Most spectators come once; the top tenth buys most of the tickets.
    orders = defaultdict(set)
    tickets = Counter()
    disciplines = defaultdict(set)
    for t in tx:
        orders[t.spectator_id].add(t.order_id)
        tickets[t.spectator_id] += t.tickets
        disciplines[t.spectator_id].add(t.discipline)
    assert len(orders) == SMALL
    assert sum(1 for o in orders.values() if len(o) == 1) > SMALL / 2
    ranked = sorted(tickets.values(), reverse=True)
    assert sum(ranked[: SMALL // 10]) > 0.5 * sum(ranked)
    # Disciplines cross: many a repeat spectator has seen more than one.
    repeaters = [sid for sid, o in orders.items() if len(o) > 1]
    assert sum(1 for sid in repeaters if len(disciplines[sid]) > 1) > 0.3 * len(repeaters)

    assert {t.channel for t in tx} == {"web", "box_office", "phone"}
    assert {t.category for t in tx} == {"single", "subscription"}
    assert {t.circumstance for t in tx} >= {"regular", "promotion", "complimentary"}
    promo = [t for t in tx if t.circumstance == "promotion"]
    assert 0.08 < len(promo) / len(tx) < 0.25 and all(t.promo_code for t in promo)
    assert all(t.promo_code is None for t in tx if t.circumstance != "promotion")
    assert all(t.amount_cents == 0 for t in tx if t.circumstance == "complimentary")
    assert all(t.amount_cents > 0 for t in tx if t.circumstance != "complimentary")
    party = Counter(t.tickets for t in tx if t.category == "single" and t.circumstance != "other")
    assert party.most_common(1)[0][0] == 2 and set(party) <= {1, 2, 3, 4}
    # A subscription is several shows of one organisation bought at once.
    subs = defaultdict(set)
    for t in tx:
        if t.category == "subscription":
            subs[t.order_id].add((t.organisation_id, t.purchased_at))
    assert subs and all(len(v) == 1 for v in subs.values())
    assert Counter(t.order_id for t in tx if t.category == "subscription").most_common(1)[0][1] >= 3

    # Bought before the show, and before the end of the recorded sales; lead times of weeks.
    end = SALES_END.astype(dt.datetime)
    assert all(t.purchased_at <= t.starts_at and t.purchased_at < end for t in tx)
    leads = sorted((t.starts_at - t.purchased_at).days for t in tx if t.category == "single")
    assert 10 <= leads[len(leads) // 2] <= 40
    evening = sum(1 for t in tx if t.channel == "web" and 18 <= t.purchased_at.hour <= 23)
    night = sum(1 for t in tx if t.channel == "web" and 1 <= t.purchased_at.hour <= 5)
    assert evening > 5 * night


def test_contacts_match_keys_and_consents_follow_purchases(app, db):
    _build(app, db)
    secret = app.config["DISTRICT_SECRET"]
    with db.session() as s:
        contacts = s.execute(
            select(Contact, Spectator.key, Spectator.fsa).join(Spectator, Spectator.id == Contact.spectator_id)
        ).all()
        opted_out = dict(
            s.execute(select(Spectator.id, Spectator.opted_out_at).where(Spectator.opted_out_at.is_not(None))).all()
        )
        last_purchase = dict(
            ((o, sp), at)
            for o, sp, at in s.execute(
                select(
                    Transaction.organisation_id, Transaction.spectator_id, func.max(Transaction.purchased_at)
                ).group_by(Transaction.organisation_id, Transaction.spectator_id)
            )
        )
        last_subscribed_show = dict(
            ((o, sp), at)
            for o, sp, at in s.execute(
                select(Transaction.organisation_id, Transaction.spectator_id, func.max(Show.starts_at))
                .join(Show, Show.id == Transaction.show_id)
                .where(Transaction.category == "subscription")
                .group_by(Transaction.organisation_id, Transaction.spectator_id)
            )
        )
        consents = defaultdict(dict)
        for c in s.scalars(select(Consent)):
            consents[c.contact_id][c.basis] = c

    # One contact per organisation a spectator bought from, and only those.
    assert {(c.organisation_id, c.spectator_id) for c, _, _ in contacts} == set(last_purchase)
    languages = Counter()
    unsubscribed_via = Counter()
    for contact, key, fsa in contacts:
        # A later import of the same person finds the same spectator.
        basis = identity_basis(contact.email, contact.last_name, contact.first_name, contact.postal_code, contact.phone)
        assert spectator_key(secret, basis) == key
        assert re.fullmatch(r"[A-Z]\d[A-Z]\d[A-Z]\d", contact.postal_code) and contact.postal_code[:3] == fsa
        assert contact.email is None or re.fullmatch(r"[a-z-]+\.[a-z-]+\.\d+@example\.net", contact.email)
        assert contact.phone is None or re.fullmatch(r"(514|438|450|579|418|819|613|416) 555-01\d\d", contact.phone)
        languages[contact.language] += 1

        pair = (contact.organisation_id, contact.spectator_id)
        implied = consents[contact.id]["implied_purchase"]
        assert implied.expires_at == _plus_two_years(last_purchase[pair])
        assert implied.given_at <= last_purchase[pair]
        if pair in last_subscribed_show:
            sub = consents[contact.id]["implied_subscription"]
            assert sub.expires_at == _plus_two_years(last_subscribed_show[pair])
        else:
            assert "implied_subscription" not in consents[contact.id]
        express = consents[contact.id].get("express")
        assert express is None or express.expires_at is None
        withdrawn = {c.withdrawn_at for c in consents[contact.id].values()}
        assert all(c.channel == "email" for c in consents[contact.id].values())
        if withdrawn != {None}:
            # an unsubscribe withdraws all of this organisation's consents and opts the spectator out
            assert withdrawn == {opted_out[contact.spectator_id]}
            assert implied.given_at <= opted_out[contact.spectator_id] < SALES_END.astype(dt.datetime)
            unsubscribed_via[contact.spectator_id] += 1

    assert set(languages) == {"fr", "en"} and 0.6 < languages["fr"] / len(contacts) < 0.9
    express_share = sum(1 for c in consents.values() if "express" in c) / len(contacts)
    assert 0.25 < express_share < 0.45
    # A few opted out, each through exactly one organisation.
    assert 0 < len(opted_out) < 0.05 * SMALL
    assert set(unsubscribed_via) == set(opted_out) and set(unsubscribed_via.values()) == {1}


def test_same_seed_same_district_other_seed_other_district(app, db):
    _build(app, db, seed=7)
    first = _fingerprint(db)
    _build(app, db, seed=7, fresh=True)
    assert _fingerprint(db) == first
    _build(app, db, seed=8, fresh=True)
    other = _fingerprint(db)
    assert other[3] != first[3] and other[4] != first[4]


def test_existing_district_is_kept_and_fresh_rebuilds(app, db):
    logins = _build(app, db)
    with db.session() as s:
        counts = (
            s.scalar(select(func.count()).select_from(Transaction)),
            s.scalar(select(func.count()).select_from(User)),
        )
    again = _build(app, db, seed=99)
    assert again == logins
    with db.session() as s:
        assert (
            s.scalar(select(func.count()).select_from(Transaction)),
            s.scalar(select(func.count()).select_from(User)),
        ) == counts
        # ids continue after an explicit-id bulk load (PostgreSQL sequences were moved on)
        s.add(Organisation(slug="nouvelle-salle", name="Nouvelle salle"))
        s.commit()


def test_pilot_demo_command_prints_logins_that_work(app, db, runner):
    result = runner.invoke(main, ["demo", "--no-serve", "--spectators", str(SMALL), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert DEMO_PASSWORD in result.output and "http://127.0.0.1:5000" in result.output
    roles = set()
    for role, email, _slug in demo_logins():
        assert email in result.output
        roles.add(role)
        client = app.test_client()
        response = login(client, email, DEMO_PASSWORD)
        assert response.status_code == 302, (email, response.get_data(as_text=True)[:300])
    assert roles == {"admin", "staff", "evaluator", "venue"}
    # what the scheduler would count in its first minute is kept already: no first page counts it
    assert "Campaign funnels counted: " in result.output and "Power baselines counted: " in result.output
    for job in ("campaigns.funnels", "experiments.power"):
        run = run_job(app, job, runner="cli")
        assert run.status == "success" and run.summary["counted"] == 0, (job, run.summary)
    with db.session() as s:
        venue_users = s.scalars(select(User).where(User.role == "venue")).all()
        assert len({u.organisation_id for u in venue_users}) >= 3
        spectators = s.scalar(select(func.count()).select_from(Spectator))

    # Running it again keeps the district and the users as they are.
    result = runner.invoke(main, ["demo", "--no-serve", "--spectators", str(SMALL), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "already" in result.output and "admin@" in result.output
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Spectator)) == spectators
        assert s.scalar(select(func.count()).select_from(User)) == len(demo_logins())

    # --fresh rebuilds from nothing.
    result = runner.invoke(main, ["demo", "--no-serve", "--spectators", "500", "--fresh"])
    assert result.exit_code == 0, result.output
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Spectator)) == 500
        assert s.scalar(select(func.count()).select_from(User)) == len(demo_logins())


def test_pilot_demo_serves_with_its_scheduler_as_a_child_process(app, db, database_url, tmp_path):
    """'pilot demo' starts 'pilot scheduler run' beside the server (never inside a web worker) and
    stops it with the server: the scheduler's lock is held while the demo serves, free after."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from core.scheduler import scheduler_lock

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = dict(os.environ, DATABASE_URL=database_url, PILOT_INSTANCE=app.config["INSTANCE_PATH"])
    demo = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "demo", "--spectators", "100", "--seed", "5", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = scheduler_lock(app)
    try:
        deadline = time.monotonic() + 120
        while lock.holder() is None:
            assert demo.poll() is None, demo.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the demo's scheduler never took the lock"
            time.sleep(0.2)
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl+C
        output = demo.communicate(timeout=60)[0]
    assert "Scheduler started beside the server" in output, output[-3000:]
    deadline = time.monotonic() + 30
    while lock.holder() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lock.holder() is None, "the scheduler outlived the demo"
