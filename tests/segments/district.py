"""A small hand-made district for the segment tests, and the reference facts of its spectators.

About fifty spectators across three organisations (plus one whose id does not fit a bit mask),
with purchases spread over five years, orders of several lines, promotions, subscriptions,
show-less rows, channels, consents of every kind and district-wide opt-outs; some purchases fall
exactly on the edges of the windows the tests use.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from sqlalchemy import insert, select

from core.models import Consent, Contact, Organisation, Show, Spectator, Transaction, Venue
from core.privacy import fill_cell_keys
from segments.rules import Purchase, SpectatorFacts

AS_OF = dt.date(2024, 6, 30)  # the profiles' date
PAST = dt.date(2023, 9, 15)  # a date in the past
WINDOWS = (90, 365)  # within_days the tests use
ORGS = (("theatre-nord", 1), ("danse-sud", 2), ("festival-est", 3), ("grand-ensemble", 70))
DISTRICT_SECRET = "test-district-secret"  # the test app's, keying the cell keys
FSAS = ("H2X", "H2J", "H3A", "J4K", "G1R", None)


@dataclass
class District:
    """Ids and raw rows of the built district, kept to compute the reference facts."""

    spectators: list[int] = field(default_factory=list)
    fsa: dict[int, str | None] = field(default_factory=dict)
    opted_out: dict[int, dt.datetime | None] = field(default_factory=dict)
    purchases: dict[int, list[Purchase]] = field(default_factory=dict)
    consents: dict[int, list[dict]] = field(default_factory=dict)
    venue_names: list[str] = field(default_factory=list)

    def universe(self, as_of: dt.date) -> list[int]:
        """Spectators who bought something on or before ``as_of`` (those a rule can select)."""
        return [s for s in self.spectators if any(p.purchased_at <= as_of for p in self.purchases[s])]

    def facts(self, spectator: int, as_of: dt.date, consents_on: dt.date) -> SpectatorFacts:
        at = dt.datetime.combine(consents_on + dt.timedelta(days=1), dt.time())
        valid = [
            c
            for c in self.consents[spectator]
            if c["channel"] == "email"
            and c["basis"] != "none"
            and c["given_at"] <= at
            and (c["withdrawn_at"] is None or c["withdrawn_at"] > at)
            and (c["expires_at"] is None or c["expires_at"] > at)
        ]
        opted = self.opted_out[spectator]
        return SpectatorFacts(
            as_of=as_of,
            purchases=tuple(self.purchases[spectator]),
            fsa=self.fsa[spectator],
            newsletter=any(c["basis"] == "express" for c in valid),
            contactable=bool(valid) and (opted is None or opted > at),
        )


def build_district(session, seed: int = 7, spectators: int = 52) -> District:
    """Insert the district with plain SQLAlchemy inserts and commit it."""
    rng = random.Random(seed)
    district = District()
    org_ids = {}
    for slug, wanted_id in ORGS:
        org = Organisation(id=wanted_id, slug=slug, name=slug.replace("-", " ").title(), kind="venue")
        session.add(org)
        session.flush()
        org_ids[slug] = org.id
    venues = []  # (id, org slug, name)
    for slug, names in (
        ("theatre-nord", ("Grande salle", "Studio")),
        ("danse-sud", ("Grande salle",)),
        ("festival-est", ("Esplanade", "Chapiteau")),
        ("grand-ensemble", ("Maison",)),
    ):
        for name in names:
            venue = Venue(organisation_id=org_ids[slug], name=name, capacity=500)
            session.add(venue)
            session.flush()
            venues.append((venue.id, slug, name))
    district.venue_names = sorted({v[2] for v in venues})
    disciplines_of = {
        "theatre-nord": ("theatre", "theatre", "humour", "music"),
        "danse-sud": ("dance", "dance", "theatre", "classical"),
        "festival-est": ("festival", "circus", "music", "other"),
        "grand-ensemble": ("classical", "music"),
    }
    shows = []  # (id, org slug, discipline, starts_at, venue name or None)
    start = dt.datetime(2019, 9, 1, 20, 0)
    for n in range(48):
        venue_id, slug, venue_name = rng.choice(venues)
        if n % 13 == 5:
            venue_id, venue_name = None, None
        starts = start + dt.timedelta(days=rng.randrange(0, 1850), hours=rng.choice((0, -5, 1)))
        discipline = rng.choice(disciplines_of[slug])
        show = Show(
            organisation_id=org_ids[slug],
            venue_id=venue_id,
            natural_key=f"show-{n}",
            title=f"Show {n}",
            discipline=discipline,
            starts_at=starts,
        )
        session.add(show)
        session.flush()
        shows.append((show.id, slug, discipline, starts, venue_name))

    spectator_rows = []
    for n in range(spectators):
        fsa = FSAS[n % len(FSAS)]
        opted = None
        if n % 11 == 3:
            opted = dt.datetime(2022, 1, 10, 9, 0)
        elif n % 11 == 7:
            opted = dt.datetime(2024, 5, 2, 12, 0)
        spectator_rows.append({"key": f"spectator-{n:03d}", "fsa": fsa, "opted_out_at": opted})
    session.execute(insert(Spectator), spectator_rows)
    fill_cell_keys(session, DISTRICT_SECRET)
    ids = list(session.scalars(select(Spectator.id).order_by(Spectator.id)))
    district.spectators = ids

    transactions = []
    consent_specs = []  # (spectator, org slug, basis, channel, given, expires, withdrawn)
    external = 0
    boundary_days = [AS_OF - dt.timedelta(days=d) for d in (0, 89, 90, 364, 365, 547, 548, 1095, 1096)]
    boundary_days += [PAST - dt.timedelta(days=d) for d in (0, 89, 90, 364, 365, 547, 548)]
    for index, spectator in enumerate(ids):
        district.fsa[spectator] = spectator_rows[index]["fsa"]
        district.opted_out[spectator] = spectator_rows[index]["opted_out_at"]
        district.purchases[spectator] = []
        district.consents[spectator] = []
        profile = index % 9
        if profile == 0 and index % 2:
            count = 0  # never bought: outside every segment
        elif profile == 1:
            count = rng.randint(15, 22)  # super active
        else:
            count = rng.randint(1, 9)
        # Some spectators only arrive after the past date; some only buy long ago.
        earliest = dt.datetime(2020, 1, 1) if index % 7 else dt.datetime(2023, 10, 1)
        latest = dt.datetime(2024, 7, 20) if index % 5 else dt.datetime(2021, 6, 1)
        order_number = 0
        for _ in range(count):
            if rng.random() < 0.15:
                day = rng.choice(boundary_days)
                purchased = dt.datetime.combine(day, rng.choice((dt.time(0, 0), dt.time(23, 59, 59), dt.time(12, 0))))
            else:
                span = max(int((latest - earliest).total_seconds()), 1)
                purchased = earliest + dt.timedelta(seconds=rng.randrange(span))
            show = rng.choice(shows)
            show_id, slug, discipline, starts, venue_name = show
            if rng.random() < 0.07:
                show_id, discipline, starts, venue_name = None, None, None, None
                slug = rng.choice([o for o, _ in ORGS])
            lines = 1 if rng.random() < 0.6 else rng.randint(2, 3)
            # Order numbers repeat across organisations ("1001" at two of them is two orders).
            order_id = None if rng.random() < 0.35 else str(1000 + order_number % 4)
            order_number += 1
            channel = rng.choice(("web", "web", "box_office", "phone", None))
            category = "subscription" if rng.random() < 0.12 else "single"
            for line in range(lines):
                line_show = show_id
                line_starts, line_discipline, line_venue = starts, discipline, venue_name
                if line and show_id is not None and rng.random() < 0.5:
                    other = rng.choice([s for s in shows if s[1] == slug])
                    line_show, _, line_discipline, line_starts, line_venue = other
                circumstance = rng.choice(("regular", "regular", "promotion", "complimentary"))
                tickets = rng.randint(1, 4)
                amount = rng.choice((0, 1999, 2500, 4550, 8000, 12050))
                external += 1
                transactions.append(
                    {
                        "organisation_id": org_ids[slug],
                        "spectator_id": spectator,
                        "show_id": line_show,
                        "purchased_at": purchased,
                        "amount_cents": amount,
                        "tickets": tickets,
                        "circumstance": circumstance,
                        "category": category,
                        "channel": channel,
                        "order_id": order_id,
                        "external_id": f"x{external}",
                    }
                )
                district.purchases[spectator].append(
                    Purchase(
                        purchased_at=purchased,
                        organisation=slug,
                        discipline=line_discipline,
                        venue=line_venue,
                        show_id=line_show,
                        order_id=order_id,
                        tickets=tickets,
                        amount_cents=amount,
                        promo=circumstance == "promotion",
                        channel=channel,
                        category=category,
                        show_date=line_starts,
                    )
                )
            if rng.random() < 0.5:
                consent_specs.append(
                    (spectator, slug, "implied_purchase", "email", purchased, purchased + dt.timedelta(days=730), None)
                )
        if count and rng.random() < 0.45:
            slug = rng.choice([o for o, _ in ORGS])
            given = dt.datetime(2021, 3, 1) + dt.timedelta(days=rng.randrange(1400))
            withdrawn = given + dt.timedelta(days=rng.randrange(30, 600)) if rng.random() < 0.3 else None
            consent_specs.append((spectator, slug, "express", "email", given, None, withdrawn))
        if count and rng.random() < 0.2:
            consent_specs.append(
                (spectator, rng.choice([o for o, _ in ORGS]), "none", "email", dt.datetime(2022, 1, 1), None, None)
            )
        if count and rng.random() < 0.2:
            consent_specs.append(
                (spectator, rng.choice([o for o, _ in ORGS]), "express", "sms", dt.datetime(2022, 1, 1), None, None)
            )
    session.execute(insert(Transaction), transactions)

    contacts: dict[tuple[int, str], int] = {}
    seen: set[tuple] = set()
    for spectator, slug, basis, channel, given, expires, withdrawn in consent_specs:
        if (spectator, slug) not in contacts:
            contact = Contact(organisation_id=org_ids[slug], spectator_id=spectator, email=f"p{spectator}@example.org")
            session.add(contact)
            session.flush()
            contacts[(spectator, slug)] = contact.id
        unique = (contacts[(spectator, slug)], channel, basis)
        if unique in seen:
            continue
        seen.add(unique)
        session.add(
            Consent(
                contact_id=contacts[(spectator, slug)],
                channel=channel,
                basis=basis,
                given_at=given,
                expires_at=expires,
                withdrawn_at=withdrawn,
            )
        )
        district.consents[spectator].append(
            {"channel": channel, "basis": basis, "given_at": given, "expires_at": expires, "withdrawn_at": withdrawn}
        )
    session.commit()
    return district


import pytest  # noqa: E402  (fixtures for the test modules that import them)


@pytest.fixture
def small_district(app, db):
    """The district in the test database, profiles refreshed as of AS_OF (function scope)."""
    from segments.profiles import refresh_profiles

    with db.session() as session:
        built = build_district(session)
        refresh_profiles(session, as_of=AS_OF)
        session.commit()
    return built


@pytest.fixture(scope="session")
def district_databases(tmp_path_factory, instance_path):
    """Per engine, a database of its own holding the district with profiles as of AS_OF, built once
    for the whole run (read-only tests only: other tests empty the shared database after each)."""
    from core import create_app
    from core.db import get_db, make_engine
    from core.migrate import load_all_models, upgrade
    from segments.profiles import refresh_profiles
    from tests.conftest import _create_pg_database

    made: dict = {}

    def get(engine_name: str):
        if engine_name not in made:
            load_all_models()
            if engine_name == "sqlite":
                url, drop = f"sqlite:///{tmp_path_factory.mktemp('district') / 'district.db'}", None
            else:
                url, drop = _create_pg_database()
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            app = create_app(
                {
                    "TESTING": True,
                    "DATABASE_URL": url,
                    "INSTANCE_PATH": str(instance_path),
                    "SECRET_KEY": "test-secret",
                    "DISTRICT_SECRET": "test-district-secret",
                    "INBOX_PATH": str(tmp_path_factory.mktemp("inbox")),
                }
            )
            db = get_db(app)
            with db.session() as session:
                built = build_district(session)
                refresh_profiles(session, as_of=AS_OF)
                session.commit()
            made[engine_name] = (db, built, drop)
        db, built, _ = made[engine_name]
        return db, built

    yield get
    for db, _, drop in made.values():
        db.engine.dispose()
        if drop:
            drop()


@pytest.fixture
def shared_district(engine_name, district_databases):
    """(db, district) of the read-only district database of this engine."""
    return district_databases(engine_name)
