"""The demo's experiment: an A/B/control campaign launched 60 days before the data end, with a simulated effect.

``pilot demo`` calls :func:`build_demo` once the district is loaded. It goes through the real
workflow (segment snapshot, two promotions, a campaign whose arm A offers 25 % off and arm B two
tickets for one, approvals, launch with a fixed seed), then adds the sales each offer "caused":
extra purchases and code redemptions for the test arms only (A more than B), a few codes passed on
to friends, and lets the dates move the campaign to closed, so that a newcomer opens a complete
lift report at once, each offer against the control and A against B. A second campaign is left
ready to launch.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Callable

import numpy as np
from sqlalchemy import func, select, update

from campaigns import promotions
from campaigns import services as campaign_services
from campaigns.models import Campaign
from core import sql
from core.demo import DEMO_DOMAIN
from core.importing import plus_two_years
from core.models import SALE_COLUMNS, Consent, Contact, Organisation, Show, Transaction, User, utcnow
from experiments import outcomes, services
from experiments.assignment import CODE_ALPHABET, CODE_LENGTH
from experiments.models import Experiment, Recipient
from segments.models import Segment, SegmentVersion

DEMO_CAMPAIGN = "Printemps croisé du Quartier"
READY_CAMPAIGN = "Découvertes de l'hiver"
# The demo's ticketing data end on 1 November 2026 (core.demo.SALES_END).
DATA_END = dt.datetime(2026, 11, 1)
LAUNCH_DAYS_BEFORE_END = 60
WINDOW_DAYS = 30
PARTNERS = (
    "salle-ferland",
    "theatre-du-faubourg",
    "festival-lumieres",
    "orchestre-de-la-place",
    "danse-mouvante",
    "ballet-saint-urbain",
    "studio-des-ecluses",
)
DECLINES = ("studio-des-ecluses",)
RULE = {
    "all": [
        {"field": "discipline", "op": "any", "value": ["music", "classical"], "within_days": 730},
        {"field": "discipline", "op": "none", "value": ["dance"]},
    ]
}
# The simulated effect of each offer: extra buyers (percentage points of conversion), and the
# share of its extra buyers who use their code. Arm A (25 % off) does better than arm B (two for one).
EXTRA_CONVERSION = {"A": 0.07, "B": 0.025}
CODE_USE = 0.55
# Arms: control, A (25 % off), B (two for one), as whole percents.
SHARES = (20, 40, 40)
LEAKED_CODES = 12


def _quiet(_line: str) -> None:
    pass


def build_demo(db, rng_seed: int = 2017, echo: Callable[[str], None] = print) -> dict | None:
    """Build the demo experiment in ``db`` (idempotent: nothing happens when it exists).

    :param db: the :class:`core.db.Database` holding the demo district.
    :param rng_seed: the demo's seed: the same seed gives the same experiment and effect.
    :param echo: where progress lines go.
    :returns: ``{"campaign_id", "experiment_id", "recipients"}``, or None when skipped.
    """
    echo = echo or _quiet
    with db.session() as session:
        if session.scalar(select(Campaign.id).where(Campaign.name == DEMO_CAMPAIGN)) is not None:
            echo("The demo experiment already exists.")
            return None
        orgs = {o.slug: o for o in session.scalars(select(Organisation).where(Organisation.slug.in_(PARTNERS)))}
        if len(orgs) < 3:
            echo("Demo experiment skipped: the demo organisations are missing.")
            return None
        staff = session.scalar(select(User).where(User.role == "staff").order_by(User.id))
        launch = DATA_END - dt.timedelta(days=LAUNCH_DAYS_BEFORE_END)
        result = _launched_campaign(session, orgs, staff, launch, rng_seed, echo)
        session.commit()
        if result is None:
            return None
        experiment = session.get(Experiment, result["experiment_id"])
        added = _simulated_sales(session, experiment, orgs, rng_seed)
        session.commit()
        summary = outcomes.match_outcomes(session, experiment, now=DATA_END, full=True)
        now = utcnow()
        services.advance(
            session,
            experiment,
            now=max(now, experiment.window_end + dt.timedelta(days=services.DEFAULT_CLOSE_AFTER_DAYS)),
        )
        session.commit()
        echo(
            f"Demo experiment: '{DEMO_CAMPAIGN}' launched {launch:%Y-%m-%d} to {result['recipients']:,} recipients, "
            f"{added:,} simulated sales, {summary.converted:,} buyers, {summary.redeemed:,} redemptions "
            f"({summary.seconds:.1f} s to match)."
        )
        try:
            _ready_campaign(session, orgs, staff, result["segment_version_id"], rng_seed)
            session.commit()
        except campaign_services.CampaignError as exc:
            session.rollback()
            echo(f"No second demo campaign: {exc.reason}")
        return result


def _launched_campaign(session, orgs: dict, staff, launch: dt.datetime, seed: int, echo) -> dict | None:
    from segments.snapshots import take_snapshot

    segment = Segment(
        name="Mélomanes sans danse",
        created_by_id=getattr(staff, "id", None),
        description="Spectateurs de musique ou de classique des deux dernières années qui n'ont jamais vu de danse.",
        created_at=launch - dt.timedelta(days=20),
    )
    session.add(segment)
    session.flush()
    version = SegmentVersion(
        segment_id=segment.id,
        number=1,
        rule=RULE,
        created_by_id=getattr(staff, "id", None),
        created_at=launch - dt.timedelta(days=20),
    )
    session.add(version)
    session.flush()
    snapshot = take_snapshot(session, version, (launch - dt.timedelta(days=14)).date(), user=staff)
    if not snapshot.size:
        echo("Demo experiment skipped: the demo segment is empty.")
        return None
    submitted = launch - dt.timedelta(days=14)
    promotion = promotions.create_promotion(
        session,
        name_fr="Printemps croisé",
        name_en="Cross-over spring",
        message_fr="Découvrez la danse au Quartier : 25 % sur un spectacle de danse ou de théâtre avec votre code.",
        message_en="Discover dance in the Quartier: 25% off a dance or theatre show with your code.",
        offer_kind="percent_off",
        offer_value=25,
        organisation_ids=[o.id for o in orgs.values()],
        disciplines=["dance", "theatre"],
        valid_from=(launch - dt.timedelta(days=1)).date(),
        valid_until=(launch + dt.timedelta(days=45)).date(),
        code_strategy="unique",
        average_discount_cents=1400,
        cost_per_contact_cents=4,
        user=staff,
    )
    two_for_one = promotions.create_promotion(
        session,
        name_fr="Printemps croisé, deux pour un",
        name_en="Cross-over spring, two for one",
        message_fr="Découvrez la danse au Quartier : deux billets pour le prix d'un sur un spectacle de danse ou de "
        "théâtre avec votre code.",
        message_en="Discover dance in the Quartier: two tickets for the price of one for a dance or theatre show "
        "with your code.",
        offer_kind="two_for_one",
        organisation_ids=[o.id for o in orgs.values()],
        disciplines=["dance", "theatre"],
        valid_from=(launch - dt.timedelta(days=1)).date(),
        valid_until=(launch + dt.timedelta(days=45)).date(),
        code_strategy="unique",
        average_discount_cents=4200,
        cost_per_contact_cents=4,
        user=staff,
    )
    campaign = campaign_services.create_campaign(
        session,
        name=DEMO_CAMPAIGN,
        objective="cross_sell",
        segment_id=segment.id,
        promotion_id=promotion.id,
        arms=campaign_services.make_arms(SHARES[0], list(SHARES[1:]), [None, two_for_one.id]),
        approval_deadline=launch - dt.timedelta(days=3),
        planned_launch_at=launch,
        window_days=WINDOW_DAYS,
        primary_metric="conversion",
        secondary_metrics=["revenue", "tickets", "cross_sell", "redemption"],
        user=staff,
    )
    campaign_services.submit_for_approval(session, campaign, user=staff, now=submitted, snapshot=snapshot)
    for approval in campaign.approvals:
        slug = approval.organisation.slug
        decision = "decline" if slug in DECLINES or slug not in orgs else "approve"
        campaign_services.decide_approval(
            session,
            approval,
            decision,
            user=_approver(session, approval),
            now=submitted + dt.timedelta(days=3),
            exclude_contacted_days=90 if decision == "approve" else None,
            decline_reason="contact_pressure" if decision == "decline" else None,
        )
    campaign_services.mark_ready(session, campaign, user=staff, now=launch - dt.timedelta(days=2))
    experiment = services.launch(
        session, campaign, user=staff, now=launch, seed=seed, code_generator=_seeded_codes(seed)
    )
    return {
        "campaign_id": campaign.id,
        "experiment_id": experiment.id,
        "recipients": experiment.recipients,
        "segment_version_id": version.id,
    }


def _approver(session, approval):
    """Who answers a demo request: the organisation's demo venue login when it has one, otherwise
    a stand-in named after the organisation, so the audit log never credits a venue's decision to
    the scheduler."""
    slug = approval.organisation.slug
    user = session.scalar(select(User).where(User.email == f"venue-{slug}@{DEMO_DOMAIN}"))
    return user or SimpleNamespace(
        email=f"demo-venue:{slug}", id=None, role="venue", organisation_id=approval.organisation_id
    )


def _seeded_codes(seed: int):
    """A reproducible code generator for the demo (the same seed, the same codes): never for real
    campaigns, whose codes must be unguessable."""
    rng = np.random.default_rng([seed, 1717])
    alphabet = np.array(list(CODE_ALPHABET))

    def generate(count: int, taken=frozenset()) -> list[str]:
        codes: list[str] = []
        seen = set(taken)
        while len(codes) < count:
            for row in alphabet[rng.integers(0, len(alphabet), size=(count - len(codes), CODE_LENGTH))]:
                code = "".join(row)
                if code not in seen:
                    seen.add(code)
                    codes.append(code)
        return codes

    return generate


def _simulated_sales(session, experiment: Experiment, orgs: dict, seed: int) -> int:
    """Extra purchases and code redemptions for the test arms (the effect of each offer the report
    should find), and a few codes passed on to friends. Like an import, every sale is at an
    organisation that knows the buyer, before the show, and extends the buyer's implied consent there."""
    rng = np.random.default_rng([seed, 4242])
    launch, end = experiment.launched_at, experiment.window_end
    org_ids = sorted(o.id for o in orgs.values())
    shows: dict[int, list[tuple[dt.datetime, int, str]]] = {}
    for show_id, org_id, starts_at, discipline in session.execute(
        select(Show.id, Show.organisation_id, Show.starts_at, Show.discipline)
        .where(Show.organisation_id.in_(org_ids), Show.starts_at > launch, Show.starts_at < end + dt.timedelta(days=45))
        .order_by(Show.starts_at, Show.id)
    ):
        shows.setdefault(org_id, []).append((starts_at, show_id, discipline))
    rows = []

    def sale(org_id: int, spectator_id: int, code: str | None, arm: str = "A") -> None:
        when = launch + dt.timedelta(
            days=int(rng.integers(experiment.window_days)),
            hours=int(rng.integers(18, 23)),
            minutes=int(rng.integers(60)),
        )
        later = [s for s in shows.get(org_id, []) if when < s[0] <= when + dt.timedelta(days=45)]
        wanted = [s for s in later if s[2] in ("dance", "theatre")] or later
        if not wanted or when >= DATA_END:
            return
        _starts, show_id, _discipline = wanted[int(rng.integers(len(wanted)))]
        tickets = int(rng.choice([1, 2, 2, 2, 3, 4]))
        amount = max(1500, int(rng.normal(4800, 900))) * tickets
        if code and arm == "B":  # two for one: at least two tickets, one of them free
            tickets = max(tickets, 2)
            amount = int(amount * (tickets - 1) / tickets)
        elif code:
            amount = int(amount * 0.75)
        number = len(rows) + 1
        rows.append(
            (
                org_id,
                spectator_id,
                show_id,
                when,
                amount,
                tickets,
                "promotion" if code else "regular",
                "single",
                "web",
                code,
                f"XP-{experiment.id}-{number:07d}",
                f"demo-xp-{experiment.id}-{number:07d}",
            )
        )

    arm_recipients = session.execute(
        select(Recipient.spectator_id, Recipient.organisation_id, Recipient.code, Recipient.arm)
        .where(Recipient.experiment_id == experiment.id, Recipient.arm != "control")
        .order_by(Recipient.id)
    ).all()
    draws = rng.random(len(arm_recipients))
    uses_code = rng.random(len(arm_recipients)) < CODE_USE
    for (spectator_id, org_id, code, arm), draw, coded in zip(arm_recipients, draws, uses_code):
        if draw < EXTRA_CONVERSION.get(arm, 0.0):
            sale(org_id, spectator_id, code if coded else None, arm)
    recipients = [(spectator_id, org_id, code) for spectator_id, org_id, code, _arm in arm_recipients]
    # A few codes passed on to friends outside the campaign: counted for no one.
    in_experiment = select(Recipient.spectator_id).where(Recipient.experiment_id == experiment.id)
    friends = session.execute(
        select(Contact.organisation_id, Contact.spectator_id)
        .where(Contact.organisation_id.in_(org_ids), Contact.spectator_id.not_in(in_experiment))
        .order_by(Contact.id)
        .limit(LEAKED_CODES)
    ).all()
    lent = [code for _s, _o, code in recipients[:: max(1, len(recipients) // 50)] if code]
    for (org_id, friend), code in zip(friends, lent):
        sale(org_id, friend, code)
    if not rows:
        return 0
    start_id = (session.scalar(select(func.max(Transaction.id))) or 0) + 1
    services.bulk_insert(
        session,
        "transaction",
        ("id", *SALE_COLUMNS),
        [(start_id + i, *row) for i, row in enumerate(rows)],
    )
    sql.reset_id_sequences(session, ["transaction"])
    _extend_implied_consents(session, {(r[0], r[1]) for r in rows})
    return len(rows)


def _extend_implied_consents(session, pairs: set[tuple[int, int]]) -> None:
    """A purchase gives implied consent until two years after it (DESIGN.md §6), as an import would."""
    spectators = sorted({spectator for _org, spectator in pairs})
    last = {}
    for lo in range(0, len(spectators), 500):
        chunk = spectators[lo : lo + 500]
        for org_id, spectator_id, at in session.execute(
            select(Transaction.organisation_id, Transaction.spectator_id, func.max(Transaction.purchased_at))
            .where(Transaction.spectator_id.in_(chunk))
            .group_by(Transaction.organisation_id, Transaction.spectator_id)
        ):
            if (org_id, spectator_id) in pairs:
                last[(org_id, spectator_id)] = at
        for contact_id, org_id, spectator_id in session.execute(
            select(Contact.id, Contact.organisation_id, Contact.spectator_id).where(Contact.spectator_id.in_(chunk))
        ):
            if (org_id, spectator_id) in last:
                session.execute(
                    update(Consent)
                    .where(
                        Consent.contact_id == contact_id,
                        Consent.basis == "implied_purchase",
                        Consent.expires_at < plus_two_years(last[(org_id, spectator_id)]),
                    )
                    .values(expires_at=plus_two_years(last[(org_id, spectator_id)])),
                    execution_options={"synchronize_session": False},
                )


def _ready_campaign(session, orgs: dict, staff, version_id: int, seed: int) -> None:
    """A second campaign, approved and ready, for a newcomer to launch (and download its lists)."""
    from segments.snapshots import take_snapshot

    now = utcnow().replace(microsecond=0)
    version = session.get(SegmentVersion, version_id)
    snapshot = take_snapshot(session, version, DATA_END.date(), user=staff)
    promotion = promotions.create_promotion(
        session,
        name_fr="Découvertes de l'hiver",
        name_en="Winter discoveries",
        message_fr="Un deuxième billet offert pour un spectacle de danse cet hiver.",
        message_en="A second ticket free for a dance show this winter.",
        offer_kind="two_for_one",
        organisation_ids=[o.id for o in orgs.values()],
        disciplines=["dance"],
        valid_from=now.date(),
        valid_until=(now + dt.timedelta(days=75)).date(),
        code_strategy="shared",
        shared_code="HIVER-DANSE",
        average_discount_cents=4500,
        cost_per_contact_cents=4,
        user=staff,
    )
    campaign = campaign_services.create_campaign(
        session,
        name=READY_CAMPAIGN,
        objective="cross_sell",
        segment_id=version.segment_id,
        promotion_id=promotion.id,
        arms=campaign_services.make_arms(30, [70]),
        approval_deadline=now + dt.timedelta(hours=1),
        planned_launch_at=now + dt.timedelta(days=1),
        window_days=30,
        primary_metric="cross_sell",
        secondary_metrics=["conversion", "revenue", "redemption"],
        user=staff,
    )
    campaign_services.submit_for_approval(session, campaign, user=staff, now=now, snapshot=snapshot)
    for approval in campaign.approvals:
        decision = "approve" if approval.organisation.slug in orgs else "decline"
        campaign_services.decide_approval(
            session,
            approval,
            decision,
            user=_approver(session, approval),
            now=now,
            decline_reason="timing" if decision == "decline" else None,
        )
    campaign_services.mark_ready(session, campaign, user=staff, now=now)
