"""Builders of small districts for the campaigns tests (direct inserts: no importer needed)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from campaigns import promotions, services
from campaigns.models import Campaign, Promotion
from core.identity import identity_basis, spectator_key
from core.models import Consent, Contact, Organisation, Spectator, Transaction, utcnow
from segments.models import Segment, SegmentSnapshot, SegmentVersion, SnapshotMember

SECRET = "test-district-secret"  # the app fixture's DISTRICT_SECRET


def new_org(session, slug: str | None = None, name: str | None = None, k: int | None = None) -> Organisation:
    slug = slug or f"org-{uuid.uuid4().hex[:8]}"
    org = Organisation(slug=slug, name=name or slug.replace("-", " ").title(), kind="venue", k_threshold=k)
    session.add(org)
    session.flush()
    return org


def new_spectator(session, email: str | None = None) -> Spectator:
    basis = identity_basis(email, None, None, None, None) if email else f"x:{uuid.uuid4().hex}"
    spectator = Spectator(key=spectator_key(SECRET, basis), fsa="H2X")
    session.add(spectator)
    session.flush()
    return spectator


def new_contact(
    session,
    org: Organisation,
    spectator: Spectator,
    *,
    email: str | None = None,
    last_name: str | None = None,
    first_name: str | None = None,
    phone: str | None = None,
    customer_id: str | None = None,
    consents: list[dict] | None = None,
) -> Contact:
    """A contact with its consents, e.g. ``consents=[{"basis": "express", "given_at": ...}]``."""
    contact = Contact(
        organisation_id=org.id,
        spectator_id=spectator.id,
        email=email,
        last_name=last_name,
        first_name=first_name,
        phone=phone,
        customer_id=customer_id,
        language="fr",
    )
    session.add(contact)
    session.flush()
    for c in consents or []:
        session.add(
            Consent(
                contact_id=contact.id,
                channel=c.get("channel", "email"),
                basis=c["basis"],
                source="test",
                given_at=c["given_at"],
                expires_at=c.get("expires_at"),
                withdrawn_at=c.get("withdrawn_at"),
            )
        )
    session.flush()
    return contact


def new_purchase(
    session,
    org: Organisation,
    spectator: Spectator,
    when: dt.datetime,
    category: str = "single",
    amount_cents: int = 4500,
    tickets: int = 2,
) -> Transaction:
    tx = Transaction(
        organisation_id=org.id,
        spectator_id=spectator.id,
        purchased_at=when,
        amount_cents=amount_cents,
        tickets=tickets,
        category=category,
        circumstance="regular",
        channel="web",
        external_id=uuid.uuid4().hex,
    )
    session.add(tx)
    session.flush()
    return tx


def new_segment(
    session, spectator_ids, name: str = "Segment de test", as_of: dt.date | None = None, rule: dict | None = None
) -> tuple[Segment, SegmentSnapshot]:
    """A segment with one version and a snapshot of ``spectator_ids`` as of ``as_of`` (default today)."""
    segment = Segment(name=name)
    session.add(segment)
    session.flush()
    version = SegmentVersion(segment_id=segment.id, number=1, rule=rule or {"field": "shows", "op": ">=", "value": 1})
    session.add(version)
    session.flush()
    ids = sorted(set(spectator_ids))
    snapshot = SegmentSnapshot(segment_version_id=version.id, as_of=as_of or utcnow().date(), size=len(ids))
    session.add(snapshot)
    session.flush()
    if ids:
        session.execute(
            SnapshotMember.__table__.insert(), [{"snapshot_id": snapshot.id, "spectator_id": s} for s in ids]
        )
    session.expire(segment)
    return segment, snapshot


def new_promotion(session, org_ids, **overrides) -> Promotion:
    today = utcnow().date()
    fields = dict(
        name_fr="Printemps du Quartier",
        name_en="Quartier Spring",
        message_fr="20 % sur votre prochain spectacle",
        message_en="20% off your next show",
        offer_kind="percent_off",
        offer_value=20,
        organisation_ids=list(org_ids),
        valid_from=today,
        valid_until=today + dt.timedelta(days=90),
        average_discount_cents=900,
        cost_per_contact_cents=5,
    )
    fields.update(overrides)
    return promotions.create_promotion(session, **fields)


def new_campaign(
    session, segment: Segment, promotion: Promotion, *, now: dt.datetime | None = None, **overrides
) -> Campaign:
    now = now or utcnow()
    fields = dict(
        name="Campagne printemps",
        objective="cross_sell",
        segment_id=segment.id,
        promotion_id=promotion.id,
        arms=services.make_arms(20, [80]),
        approval_deadline=now + dt.timedelta(days=7),
        planned_launch_at=now + dt.timedelta(days=10),
        window_days=30,
        primary_metric="conversion",
        secondary_metrics=["revenue", "redemption"],
    )
    fields.update(overrides)
    return services.create_campaign(session, **fields)


@dataclass
class District:
    orgs: list[Organisation]
    spectators: list[Spectator]
    segment: Segment
    snapshot: SegmentSnapshot
    promotion: Promotion | None
    campaign: Campaign | None
    now: dt.datetime
    # Every personal value of the test data: none may ever appear on a staff page.
    personal: list[str] = field(default_factory=list)
    # (organisation index, spectator) → contact
    contacts: dict = field(default_factory=dict)


def build_district(
    session,
    per_org: int = 20,
    shared: int = 6,
    org_names=("Salle Alpha", "Théâtre Beta", "Festival Gamma"),
    slug_prefix: str = "",
    now: dt.datetime | None = None,
    with_campaign: bool = True,
) -> District:
    """Organisations with ``per_org`` own spectators each plus ``shared`` spectators known to all of
    them, everybody with express e-mail consent and a purchase, all in one segment snapshot of
    today, and (``with_campaign``) a promotion and a draft campaign."""
    now = now or utcnow()
    orgs = [new_org(session, f"{slug_prefix}{name.split()[-1].lower()}", name) for name in org_names]
    spectators: list[Spectator] = []
    personal: list[str] = []
    contacts = {}

    def add(spectator_index: int, org_index: int, spectator: Spectator, email: str, days_ago: int):
        org = orgs[org_index]
        last = f"Nomfamille{org_index}x{spectator_index}"
        first = f"Prenom{org_index}x{spectator_index}"
        phone = f"514-555-{org_index}{spectator_index:03d}"
        contact = new_contact(
            session,
            org,
            spectator,
            email=email,
            last_name=last,
            first_name=first,
            phone=phone,
            customer_id=f"C{org_index}-{spectator_index}",
            consents=[{"basis": "express", "given_at": now - dt.timedelta(days=400)}],
        )
        contacts[(org_index, spectator.id)] = contact
        personal.extend([email, last, first, phone])
        new_purchase(session, org, spectator, now - dt.timedelta(days=days_ago))

    n = 0
    for org_index in range(len(orgs)):
        for _ in range(per_org):
            email = f"personne{n}@{slug_prefix or 'x'}exemple.qc.ca"
            spectator = new_spectator(session, email)
            spectators.append(spectator)
            add(n, org_index, spectator, email, days_ago=30 + n % 50)
            n += 1
    for _ in range(shared):
        email = f"personne{n}@{slug_prefix or 'x'}exemple.qc.ca"
        spectator = new_spectator(session, email)
        spectators.append(spectator)
        for org_index in range(len(orgs)):
            add(n, org_index, spectator, email, days_ago=10 + org_index * 3 + n % 5)
        n += 1
    # the rule picks the same people as the snapshot made here: a submission takes its own. It names
    # no organisation (one that did would need each named organisation's approval as data provider,
    # tested in tests/campaigns/test_providers.py)
    segment, snapshot = new_segment(
        session, [s.id for s in spectators], rule={"field": "orders", "op": ">=", "value": 1}
    )
    promotion = campaign = None
    if with_campaign:
        promotion = new_promotion(session, [o.id for o in orgs])
        campaign = new_campaign(session, segment, promotion, now=now)
    return District(orgs, spectators, segment, snapshot, promotion, campaign, now, personal, contacts)
