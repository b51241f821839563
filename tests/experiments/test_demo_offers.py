"""The demo's A/B/control campaign (issue 19.4): two offers against one control, run end to end."""

from __future__ import annotations

from sqlalchemy import func, select

from campaigns.models import Campaign, Promotion
from core.demo import build_demo
from experiments import reports
from experiments.demo import DEMO_CAMPAIGN, READY_CAMPAIGN
from experiments.models import Experiment, Outcome, Recipient

SPECTATORS = 3_000


def _quiet(*_args, **_kwargs) -> None:
    pass


def test_the_demo_runs_an_ab_control_campaign_and_its_report_compares_both_offers(app, db, login_as):
    with app.app_context():
        build_demo(db, spectators=SPECTATORS, seed=2017, echo=_quiet)
    with db.session() as s:
        campaign = s.scalar(select(Campaign).where(Campaign.name == DEMO_CAMPAIGN))
        assert campaign.status == "closed"
        assert [a["name"] for a in campaign.arms] == ["control", "A", "B"]
        offer_b = s.get(Promotion, campaign.arms[2]["promotion_id"])
        assert offer_b.offer_kind == "two_for_one" and campaign.promotion.offer_kind == "percent_off"
        experiment = s.scalar(select(Experiment).where(Experiment.campaign_id == campaign.id))
        sizes = dict(
            s.execute(
                select(Recipient.arm, func.count())
                .where(Recipient.experiment_id == experiment.id)
                .group_by(Recipient.arm)
            ).all()
        )
        assert set(sizes) == {"control", "A", "B"} and min(sizes.values()) > 50
        # both offers' codes were handed out and redeemed
        assert (
            s.scalar(
                select(func.count())
                .select_from(Recipient)
                .where(Recipient.experiment_id == experiment.id, Recipient.arm == "B", Recipient.code.is_not(None))
            )
            == sizes["B"]
        )
        redeemed = dict(
            s.execute(
                select(Outcome.arm, func.sum(Outcome.redeemed))
                .where(Outcome.experiment_id == experiment.id)
                .group_by(Outcome.arm)
            ).all()
        )
        assert redeemed.get("A", 0) > 0 and redeemed.get("B", 0) > 0
        # the final report: each offer against the control (Holm across the arms), and A against B
        report = reports.latest_snapshot(s, experiment, "final").data
        assert report["offers"]["A"]["offer_kind"] == "percent_off"
        assert report["offers"]["B"]["name_en"] == "Cross-over spring, two for one"
        primary = [c for c in report["comparisons"] if c["metric"] == "conversion"]
        assert [c["arm"] for c in primary] == ["A", "B"]
        assert all(c["p_adjusted_arms"] is not None and c["p_adjusted_arms"] >= c["p_value"] for c in primary)
        pair = next(p for p in report["arm_pairs"] if p["metric"] == "conversion")
        assert (pair["arm"], pair["versus"]) == ("A", "B") and not pair.get("hidden")
        assert pair["abs_ci"][0] <= pair["abs_diff"] <= pair["abs_ci"][1] and 0 < pair["p_value"] <= 1
        experiment_id = experiment.id
        assert s.scalar(select(Campaign.status).where(Campaign.name == READY_CAMPAIGN)) == "ready"
    evaluator = login_as("evaluator")
    english = evaluator.get(f"/experiments/{experiment_id}?lang=en").data.decode()
    assert "Offer against offer" in english and "test arm A against test arm B" in english
    assert "Cross-over spring, two for one" in english
    french = evaluator.get(f"/experiments/{experiment_id}?lang=fr").data.decode()
    assert "Offre contre offre" in french and "Printemps croisé, deux pour un" in french
