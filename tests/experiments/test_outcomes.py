"""Outcome matching: the window, participating organisations, codes used by their holder or by others,
cross-sell, the pre-period, and idempotence over re-imports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

import pytest
from sqlalchemy import select

from core.importing import import_file
from core.models import Show, Spectator, Transaction, utcnow
from experiments import outcomes, report_data, reports, services
from experiments.models import Outcome, Recipient
from tests.campaigns.helpers import SECRET, new_org, new_purchase, new_spectator
from tests.experiments.test_services import ready_campaign

HEADER = [
    "Nom",
    "Prénom",
    "Adresse",
    "Code postal",
    "Adresse courriel",
    "Téléphone",
    "Valeur de l'achat",
    "Nombre de billets",
    "Circonstance de l'achat",
    "Date de l'achat",
    "Date du spectacle",
    "Titre du spectacle",
    "Type de spectacle",
    "Code promo",
    "Numéro de commande",
]


def long_ago() -> dt.datetime:
    """A launch whose window (30 days) and promotion (90 days) are both over: every sale the tests
    date after it has happened (a sale dated after "now" never counts)."""
    return utcnow() - dt.timedelta(days=120)


@pytest.fixture
def launched(session):
    """A launched campaign (Alpha and Beta participate in the promotion, Gamma does not)."""
    district = ready_campaign(session, per_org=15, shared=3, now=long_ago())
    alpha, beta, gamma = district.orgs
    district.campaign.promotion.organisations = [alpha, beta]
    session.flush()
    experiment = services.launch(session, district.campaign, now=district.now, seed=42)
    session.commit()
    return district, experiment


def recipients_by_arm(session, experiment, arm, organisation_id=None):
    query = select(Recipient).where(Recipient.experiment_id == experiment.id, Recipient.arm == arm)
    if organisation_id is not None:
        query = query.where(Recipient.organisation_id == organisation_id)
    return session.scalars(query.order_by(Recipient.id)).all()


def outcome_of(session, recipient) -> Outcome | None:
    return session.get(Outcome, (recipient.experiment_id, recipient.id), populate_existing=True)


def buy(session, org, spectator_id, when, amount=4000, tickets=2, promo_code=None, show=None):
    tx = Transaction(
        organisation_id=org.id,
        spectator_id=spectator_id,
        purchased_at=when,
        amount_cents=amount,
        tickets=tickets,
        category="single",
        circumstance="regular",
        channel="web",
        promo_code=promo_code,
        show_id=show.id if show else None,
        external_id=uuid.uuid4().hex,
    )
    session.add(tx)
    session.flush()
    return tx


def test_window_participating_organisations_and_pre_period(session, launched):
    district, experiment = launched
    alpha, beta, gamma = district.orgs
    launch = experiment.launched_at
    inside, before, after, elsewhere, nothing = recipients_by_arm(session, experiment, "A", alpha.id)[:5]
    buy(session, alpha, inside.spectator_id, launch + dt.timedelta(days=2), amount=5000, tickets=2)
    buy(session, beta, inside.spectator_id, launch + dt.timedelta(days=3), amount=2500, tickets=1)
    buy(session, alpha, before.spectator_id, launch - dt.timedelta(days=3), amount=3000, tickets=1)
    buy(session, alpha, after.spectator_id, experiment.window_end, amount=9900)  # the window is half-open
    buy(session, gamma, elsewhere.spectator_id, launch + dt.timedelta(days=1), amount=7000)  # not participating
    summary = outcomes.match_outcomes(session, experiment)
    session.commit()

    got = outcome_of(session, inside)
    assert (got.converted, got.revenue_cents, got.tickets) == (1, 7500, 3)
    assert got.first_purchase_at == launch + dt.timedelta(days=2)
    assert got.cross_sell == 1  # Beta is new to an Alpha spectator
    got = outcome_of(session, before)
    assert (got.converted, got.pre_converted, got.pre_revenue_cents, got.pre_tickets) == (0, 1, 3000, 1)
    assert outcome_of(session, after) is None
    assert outcome_of(session, elsewhere) is None
    assert outcome_of(session, nothing) is None
    assert summary.converted == 1 and summary.redeemed == 0 and summary.leaked == 0
    assert not outcomes.is_stale(session, experiment)
    buy(session, alpha, nothing.spectator_id, launch + dt.timedelta(days=5))
    assert outcomes.is_stale(session, experiment)


def test_a_unique_code_counts_for_its_holder_only(session, launched):
    district, experiment = launched
    alpha, beta, gamma = district.orgs
    launch = experiment.launched_at
    holder, lender, other_holder = recipients_by_arm(session, experiment, "A", alpha.id)[:3]
    borrower = recipients_by_arm(session, experiment, "control", alpha.id)[0]
    stranger = new_spectator(session, "inconnu@exemple.qc.ca")
    # the holder uses its own code, in lower case with spaces, as box offices type it
    buy(session, beta, holder.spectator_id, launch + dt.timedelta(days=1), promo_code=f" {holder.code.lower()} ")
    # the lender's code is used by a control recipient and by someone outside the experiment
    buy(session, alpha, borrower.spectator_id, launch + dt.timedelta(days=2), promo_code=lender.code)
    buy(session, alpha, stranger.id, launch + dt.timedelta(days=2), promo_code=lender.code)
    # a code used at an organisation outside the promotion does not count
    buy(session, gamma, other_holder.spectator_id, launch + dt.timedelta(days=2), promo_code=other_holder.code)
    summary = outcomes.match_outcomes(session, experiment)

    assert outcome_of(session, holder).redeemed == 1
    assert outcome_of(session, lender) is None  # nobody counts the lent code
    assert outcome_of(session, borrower).redeemed == 0 and outcome_of(session, borrower).converted == 1
    assert outcome_of(session, other_holder) is None
    assert summary.redeemed == 1 and summary.leaked == 2
    assert experiment.leaked_redemptions == 2


def test_redemption_outside_the_validity_does_not_count(session, launched):
    district, experiment = launched
    alpha = district.orgs[0]
    promotion = district.campaign.promotion
    late, early = recipients_by_arm(session, experiment, "A", alpha.id)[:2]
    after_validity = dt.datetime.combine(promotion.valid_until, dt.time()) + dt.timedelta(days=1, hours=1)
    buy(session, alpha, late.spectator_id, after_validity, promo_code=late.code)
    # a redemption after the window but within the validity counts as a redemption (not a conversion)
    within = min(experiment.window_end + dt.timedelta(days=1), dt.datetime.combine(promotion.valid_until, dt.time(12)))
    buy(session, alpha, early.spectator_id, within, promo_code=early.code)
    outcomes.match_outcomes(session, experiment)
    got = outcome_of(session, late)
    assert got is None or got.redeemed == 0
    got = outcome_of(session, early)
    assert got.redeemed == 1 and got.converted == 0


def test_shared_code_and_control_contamination(session):
    district = ready_campaign(session, per_org=8, shared=0, now=long_ago())
    promotion = district.campaign.promotion
    promotion.code_strategy, promotion.shared_code = "shared", "QUARTIER"
    experiment = services.launch(session, district.campaign, now=district.now, seed=4)
    alpha = district.orgs[0]
    test = recipients_by_arm(session, experiment, "A", alpha.id)[0]
    control = recipients_by_arm(session, experiment, "control", alpha.id)[0]
    buy(session, alpha, test.spectator_id, experiment.launched_at + dt.timedelta(days=1), promo_code="quartier")
    buy(session, alpha, control.spectator_id, experiment.launched_at + dt.timedelta(days=1), promo_code="QUARTIER")
    # the shared code used before launch is some older promotion's
    buy(session, alpha, test.spectator_id, experiment.launched_at - dt.timedelta(days=1), promo_code="QUARTIER")
    summary = outcomes.match_outcomes(session, experiment)
    assert outcome_of(session, test).redeemed == 1 and outcome_of(session, control).redeemed == 1
    assert summary.redeemed == 2 and summary.leaked == 0


def test_cross_sell_in_a_target_discipline_new_to_the_recipient(session, launched):
    district, experiment = launched
    alpha = district.orgs[0]
    promotion = district.campaign.promotion
    promotion.disciplines = "dance"
    session.flush()
    dance = Show(
        organisation_id=alpha.id,
        natural_key=uuid.uuid4().hex,
        title="Danse",
        discipline="dance",
        starts_at=experiment.launched_at + dt.timedelta(days=20),
    )
    theatre = Show(
        organisation_id=alpha.id,
        natural_key=uuid.uuid4().hex,
        title="Pièce",
        discipline="theatre",
        starts_at=experiment.launched_at + dt.timedelta(days=20),
    )
    session.add_all([dance, theatre])
    session.flush()
    first_dance, again_dance, theatre_buyer = recipients_by_arm(session, experiment, "A", alpha.id)[:3]
    launch = experiment.launched_at
    buy(session, alpha, first_dance.spectator_id, launch + dt.timedelta(days=1), show=dance)
    buy(session, alpha, again_dance.spectator_id, launch - dt.timedelta(days=100), show=dance)
    buy(session, alpha, again_dance.spectator_id, launch + dt.timedelta(days=1), show=dance)
    buy(session, alpha, theatre_buyer.spectator_id, launch + dt.timedelta(days=1), show=theatre)
    outcomes.match_outcomes(session, experiment)
    assert outcome_of(session, first_dance).cross_sell == 1
    assert outcome_of(session, again_dance).cross_sell == 0  # dance at Alpha: nothing new
    assert outcome_of(session, theatre_buyer).cross_sell == 0
    assert outcome_of(session, theatre_buyer).converted == 1


def _export(path, rows):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _outcome_rows(session, experiment):
    return sorted(
        tuple(r)
        for r in session.execute(
            select(
                Outcome.recipient_id, Outcome.converted, Outcome.revenue_cents, Outcome.tickets, Outcome.redeemed
            ).where(Outcome.experiment_id == experiment.id)
        )
    )


def test_matching_after_imports_is_idempotent(session, launched, tmp_path, app, monkeypatch):
    district, experiment = launched
    alpha = district.orgs[0]
    launch = experiment.launched_at
    # the export is imported a week after the launch (the importer refuses sales dated after its day)
    import core.importing.validate

    monkeypatch.setattr(core.importing.validate, "utcnow", lambda: launch + dt.timedelta(days=7))
    test_recipients = recipients_by_arm(session, experiment, "A", alpha.id)[:3]
    rows = []
    for i, r in enumerate(test_recipients):
        contact = district.contacts[(0, r.spectator_id)]
        day = (launch + dt.timedelta(days=2 + i)).strftime("%Y-%m-%d %H:%M")
        rows.append(
            [
                contact.last_name,
                contact.first_name,
                "",
                "H2X 1Y4",
                contact.email,
                "",
                "45,00 $",
                "2",
                "Promotion",
                day,
                (launch + dt.timedelta(days=30)).strftime("%Y-%m-%d"),
                "Spectacle",
                "Théâtre",
                r.code if i == 0 else "",
                f"CMD-{i}",
            ]
        )
    path = _export(tmp_path / "alpha.csv", rows)
    with app.test_request_context():
        first = import_file(session, path, alpha, secret=SECRET)
        session.commit()
        assert first.imported == 3
        outcomes.match_outcomes(session, experiment)
        session.commit()
        before = _outcome_rows(session, experiment)
        again = import_file(session, path, alpha, secret=SECRET)
        session.commit()
        assert again.imported == 0 and again.duplicates == 3
        assert not outcomes.is_stale(session, experiment)
        outcomes.match_outcomes(session, experiment)
        outcomes.match_outcomes(session, experiment)
        session.commit()
    after = _outcome_rows(session, experiment)
    assert after == before
    by_recipient = {o[0]: o for o in after}
    assert [by_recipient[r.id][1:] for r in test_recipients] == [(1, 4500, 2, 1), (1, 4500, 2, 0), (1, 4500, 2, 0)]
    # the importer's spectators are the recipients' (same keyed e-mail)
    assert {session.get(Spectator, r.spectator_id).id for r in test_recipients} == {
        r.spectator_id for r in test_recipients
    }


def test_someone_outside_the_experiment_changes_nothing(session, launched):
    district, experiment = launched
    alpha = district.orgs[0]
    baseline = outcomes.match_outcomes(session, experiment)
    rows = _outcome_rows(session, experiment)
    outsider_org = new_org(session, "outsider")
    stranger = new_spectator(session, "personne-ailleurs@exemple.qc.ca")
    new_purchase(session, alpha, stranger, experiment.launched_at + dt.timedelta(days=1))
    new_purchase(session, outsider_org, stranger, experiment.launched_at + dt.timedelta(days=1))
    summary = outcomes.match_outcomes(session, experiment)
    assert summary.converted == 0 and summary.outcomes == baseline.outcomes
    assert _outcome_rows(session, experiment) == rows


def test_incremental_matching_equals_a_full_pass(session, launched):
    district, experiment = launched
    alpha, beta, _gamma = district.orgs
    launch = experiment.launched_at
    first, second, third = recipients_by_arm(session, experiment, "A", alpha.id)[:3]
    buy(session, alpha, first.spectator_id, launch + dt.timedelta(days=1), promo_code=first.code)
    summary = outcomes.match_outcomes(session, experiment)
    assert summary.mode == "full"
    assert outcomes.match_outcomes(session, experiment).mode == "unchanged"
    # a later import touches two recipients: one buys again, one redeems after the window
    buy(session, beta, second.spectator_id, launch + dt.timedelta(days=4), amount=1234)
    buy(session, alpha, first.spectator_id, launch + dt.timedelta(days=6), amount=999)
    promotion = district.campaign.promotion
    late = min(experiment.window_end + dt.timedelta(days=2), dt.datetime.combine(promotion.valid_until, dt.time(10)))
    buy(session, alpha, third.spectator_id, late, promo_code=third.code)
    incremental = outcomes.match_outcomes(session, experiment)
    assert incremental.mode == "incremental"
    after_incremental = _outcome_rows(session, experiment)
    full = outcomes.match_outcomes(session, experiment, full=True)
    assert full.mode == "full" and _outcome_rows(session, experiment) == after_incremental
    assert (incremental.converted, incremental.redeemed) == (full.converted, full.redeemed) == (2, 2)
    got = outcome_of(session, first)
    assert (got.revenue_cents, got.redeemed) == (4000 + 999, 1)
    got = outcome_of(session, third)
    assert (got.converted, got.redeemed) == (0, 1)


def _happened(session, experiment, now):
    """Per spectator, from the sales table itself: (revenue in cents, used a code) of the sales at
    participating organisations dated in the window and before ``now``."""
    participating = {o.id for o in experiment.campaign.promotion.organisations}
    end = min(experiment.window_end, now)
    got: dict[int, list[int]] = {}
    for t in session.scalars(select(Transaction).where(Transaction.purchased_at >= experiment.launched_at)):
        if t.organisation_id in participating and t.purchased_at < end:
            entry = got.setdefault(t.spectator_id, [0, 0])
            entry[0] += t.amount_cents
            entry[1] |= bool(t.promo_code)
    return {spectator: tuple(v) for spectator, v in got.items()}


def test_a_sale_dated_after_now_does_not_count_until_it_has_happened(session, tmp_path, app, monkeypatch):
    """A sale of later today imported this morning, and one put in the database with a future date:
    neither counts (window, revenue, redemption, the report's latest sale) until its date has passed,
    and the first look after that counts it, incrementally as in full."""
    launch = utcnow() - dt.timedelta(days=10)
    district = ready_campaign(session, per_org=15, shared=0, now=launch)
    district.campaign.promotion.organisations = district.orgs[:2]
    session.flush()
    experiment = services.launch(session, district.campaign, now=district.now, seed=8)
    session.commit()
    alpha = district.orgs[0]
    early, tonight, later = recipients_by_arm(session, experiment, "A", alpha.id)[:3]
    morning = dt.datetime.combine(launch.date() + dt.timedelta(days=3), dt.time(8))
    buy(session, alpha, early.spectator_id, launch + dt.timedelta(days=1), amount=3000)
    # imported at 08:00 with an evening show's sale of the same day: the importer takes it (its day)
    import core.importing.validate

    monkeypatch.setattr(core.importing.validate, "utcnow", lambda: morning)
    contact = district.contacts[(0, tonight.spectator_id)]
    evening = morning.replace(hour=20)
    path = _export(
        tmp_path / "ventes.csv",
        [
            [
                contact.last_name,
                contact.first_name,
                "",
                "H2X 1Y4",
                contact.email,
                "",
                "45,00 $",
                "2",
                "Promotion",
                evening.strftime("%Y-%m-%d %H:%M"),
                (evening + dt.timedelta(days=5)).strftime("%Y-%m-%d"),
                "Spectacle",
                "Théâtre",
                tonight.code,
                "CMD-1",
            ]
        ],
    )
    with app.test_request_context():
        assert import_file(session, path, alpha, secret=SECRET).imported == 1
    # and a sale with a code, dated in the window but days after the look (in the database as it is)
    buy(session, alpha, later.spectator_id, morning + dt.timedelta(days=2), amount=7000, promo_code=later.code)
    session.commit()

    first = outcomes.match_outcomes(session, experiment, now=morning)
    assert _outcome_rows(session, experiment) == sorted(
        (r.id, 1, v[0], 2, int(v[1]))
        for r in (early, tonight, later)
        if (v := _happened(session, experiment, morning).get(r.spectator_id))
    )
    assert outcome_of(session, tonight) is None and outcome_of(session, later) is None
    assert (first.converted, first.redeemed) == (1, 0)
    data = report_data.load_data(session, experiment)
    assert data.window["conversion"].sum() == 1 and data.window["revenue"].sum() == pytest.approx(30.0)
    report = reports.build_report(session, experiment, now=morning, data=data)
    assert report["sales_until"] == (launch + dt.timedelta(days=1)).isoformat(timespec="seconds")
    assert report["redemption"][0]["redeemed"] == 0

    # nothing was imported since, yet the two sales have happened by then: the look is stale
    assert not outcomes.is_stale(session, experiment, now=morning + dt.timedelta(hours=1))
    then = morning + dt.timedelta(days=3)
    assert outcomes.is_stale(session, experiment, now=then)
    incremental = outcomes.match_outcomes(session, experiment, now=then)
    assert incremental.mode == "incremental"
    expected = _happened(session, experiment, then)
    assert _outcome_rows(session, experiment) == sorted(
        (r.id, 1, expected[r.spectator_id][0], 2, int(expected[r.spectator_id][1])) for r in (early, tonight, later)
    )
    rows = _outcome_rows(session, experiment)
    full = outcomes.match_outcomes(session, experiment, now=then, full=True)
    assert _outcome_rows(session, experiment) == rows and (full.converted, full.redeemed) == (3, 2)
    # a look at an earlier time forgets what happened after it (a full pass)
    back = outcomes.match_outcomes(session, experiment, now=morning)
    assert back.mode == "full" and (back.converted, back.redeemed) == (1, 0)
