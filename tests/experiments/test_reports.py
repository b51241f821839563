"""Lift reports: the same numbers as `pilot analyze`, Holm and Benjamini-Hochberg, suppression, ROI,
redemption as uptake, interim always-valid looks, snapshots and exports."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid

import numpy as np
import pytest
from sqlalchemy import select
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from campaigns.services import make_arms
from core.models import Organisation, Setting, Transaction, utcnow
from experiments import outcomes, report_data, report_export, reports, services, stats, summaries
from experiments.models import Recipient, ReportSnapshot
from tests.experiments.test_services import ready_campaign


def set_k(session, k: int) -> None:
    session.merge(Setting(name="k_threshold", value=str(k)))
    session.flush()


def simulate(
    session, experiment, rates: dict[str, float], seed: int = 1, redeem_share: float = 0.5, days: float | None = None
) -> None:
    """Purchases in the window (and some in the pre-period) with a conversion rate per arm."""
    rng = np.random.default_rng(seed)
    recipients = session.scalars(
        select(Recipient).where(Recipient.experiment_id == experiment.id).order_by(Recipient.id)
    ).all()
    span = (days if days is not None else experiment.window_days) * 86400
    for r in recipients:
        if rng.random() < 0.3:  # the pre-period covariate, the same for every arm
            add_sale(
                session,
                r,
                experiment.launched_at - dt.timedelta(seconds=int(rng.integers(1, 20 * 86400))),
                int(rng.normal(5000, 1500)),
            )
        if rng.random() < rates[r.arm]:
            code = r.code if r.code and rng.random() < redeem_share else None
            add_sale(
                session,
                r,
                experiment.launched_at + dt.timedelta(seconds=int(rng.integers(0, span))),
                int(rng.normal(6000, 2000)) + (40000 if rng.random() < 0.02 else 0),
                code,
            )
    session.flush()


def add_sale(session, recipient, when, amount, code=None):
    session.add(
        Transaction(
            organisation_id=recipient.organisation_id,
            spectator_id=recipient.spectator_id,
            purchased_at=when,
            amount_cents=max(amount, 500),
            tickets=2,
            category="single",
            circumstance="regular",
            channel="web",
            promo_code=code,
            external_id=uuid.uuid4().hex,
        )
    )


def long_ago() -> dt.datetime:
    """A launch whose 30-day window is over: the sales the tests date in it have happened (a sale
    dated after "now" never counts)."""
    return utcnow() - dt.timedelta(days=45)


@pytest.fixture
def measured(session):
    """A launched campaign with a strong effect, its window over, outcomes matched."""
    set_k(session, 2)
    district = ready_campaign(session, per_org=40, shared=6, arms=make_arms(50, [50]), now=long_ago())
    experiment = services.launch(session, district.campaign, now=district.now, seed=17)
    simulate(session, experiment, {"control": 0.15, "A": 0.45}, seed=2)
    outcomes.match_outcomes(session, experiment)
    session.commit()
    return district, experiment


def after_window(experiment):
    return experiment.window_end + dt.timedelta(days=1)


def _independent_outcomes(session, experiment):
    """Per recipient, from the sales table itself (not through outcomes.py nor load_data): arm,
    bought in the window, revenue in dollars in the window."""
    recipients = session.scalars(select(Recipient).where(Recipient.experiment_id == experiment.id)).all()
    sales = session.scalars(
        select(Transaction).where(
            Transaction.purchased_at >= experiment.launched_at, Transaction.purchased_at < experiment.window_end
        )
    ).all()
    participating = {o.id for o in experiment.campaign.promotion.organisations}
    spent: dict[int, float] = {}
    for t in sales:
        if t.organisation_id in participating:
            spent[t.spectator_id] = spent.get(t.spectator_id, 0.0) + t.amount_cents / 100
    arm = np.array([r.arm for r in recipients])
    revenue = np.array([spent.get(r.spectator_id, 0.0) for r in recipients])
    return arm, (revenue > 0).astype(float), revenue


def test_report_agrees_with_an_independent_computation_from_the_sales(session, measured):
    district, experiment = measured
    report = reports.build_report(session, experiment, now=after_window(experiment))
    arm, bought, revenue = _independent_outcomes(session, experiment)
    c, a = arm == "control", arm == "A"
    conversion = next(x for x in report["comparisons"] if x["metric"] == "conversion")
    z, p = proportions_ztest([bought[a].sum(), bought[c].sum()], [a.sum(), c.sum()])
    low, high = confint_proportions_2indep(bought[a].sum(), a.sum(), bought[c].sum(), c.sum(), method="wald")
    assert conversion["statistic"] == pytest.approx(z, rel=1e-9) and conversion["p_value"] == pytest.approx(p, rel=1e-9)
    assert conversion["abs_ci"] == pytest.approx([low, high], rel=1e-9)
    rel_low, rel_high = confint_proportions_2indep(
        bought[a].sum(), a.sum(), bought[c].sum(), c.sum(), compare="ratio", method="log"
    )
    assert conversion["rel_ci"] == pytest.approx([rel_low - 1, rel_high - 1], rel=1e-9)
    rev = next(x for x in report["comparisons"] if x["metric"] == "revenue")
    t, p, _ = ttest_ind(revenue[a], revenue[c], usevar="unequal")
    assert rev["statistic"] == pytest.approx(t, rel=1e-9) and rev["p_value"] == pytest.approx(p, rel=1e-9)
    assert rev["abs_lift"] == pytest.approx(revenue[a].mean() - revenue[c].mean(), rel=1e-9)
    assert report["recipients"] == arm.size == experiment.recipients
    # Holm over the campaign's declared lift metrics (redemption is never a lift)
    rows = [x for x in report["comparisons"] if x["arm"] == "A"]
    assert [x["metric"] for x in rows] == ["conversion", "revenue"]
    assert [x["p_adjusted"] for x in rows] == pytest.approx(
        list(multipletests([x["p_value"] for x in rows], method="holm")[1])
    )
    assert all("cuped" in x and "stratified" in x for x in rows)
    # return on the promotion, from the same independent figures
    roi = report["roi"][0]
    n_a = int(a.sum())
    promotion = district.campaign.promotion
    welch = CompareMeans(DescrStatsW(revenue[a]), DescrStatsW(revenue[c]))
    incremental = (revenue[a].mean() - revenue[c].mean()) * n_a
    assert roi["incremental_revenue"] == pytest.approx(incremental, rel=1e-9)
    assert roi["incremental_ci"] == pytest.approx([v * n_a for v in welch.tconfint_diff(usevar="unequal")], rel=1e-9)
    redeemed = len(
        {
            r.id
            for r in session.scalars(
                select(Recipient).where(Recipient.experiment_id == experiment.id, Recipient.arm == "A")
            ).all()
            if r.code
            and session.scalar(
                select(Transaction.id)
                .where(
                    Transaction.promo_code == r.code,
                    Transaction.purchased_at >= experiment.launched_at,
                    Transaction.purchased_at < experiment.window_end,
                )
                .limit(1)
            )
        }
    )
    costs = redeemed * promotion.average_discount_cents / 100 + n_a * promotion.cost_per_contact_cents / 100
    assert roi["net"] == pytest.approx(incremental - costs, rel=1e-9)
    assert roi["roi"] == pytest.approx((incremental - costs) / costs, rel=1e-9)
    # revenue and tickets per buyer (every simulated sale holds 2 tickets)
    ratio = report["ratios"][0]
    assert ratio["revenue_per_buyer"]["arm_ratio"] == pytest.approx(revenue[a].sum() / bought[a].sum(), rel=1e-9)
    assert ratio["tickets_per_buyer"]["control_ratio"] >= 2.0


def test_headline_reports_a_detected_increase_and_uptake_without_lift(session, measured):
    district, experiment = measured
    report = reports.build_report(session, experiment, now=after_window(experiment))
    assert not report["interim"]
    (headline,) = report["headline"]
    assert headline["metric"] == "conversion" and headline["verdict"] == "increase"
    assert headline["abs_ci"][0] > 0 and headline["rel_lift"] > 0
    assert [u["arm"] for u in report["redemption"]] == ["A"]
    uptake = report["redemption"][0]
    assert 0 < uptake["rate"] < 1 and uptake["ci"][0] < uptake["rate"] < uptake["ci"][1]
    assert not any(c["metric"] == "redemption" for c in report["comparisons"])
    # revenue winsorised at the 99th percentile of the buyers (non-zero values), arms pooled
    data = report_data.load_data(session, experiment)
    revenue_all = data.window["revenue"]
    assert report["winsorisation"]["cap"] == pytest.approx(np.percentile(revenue_all[revenue_all > 0], 99))
    revenue = next(c for c in report["comparisons"] if c["metric"] == "revenue")
    assert revenue["winsorised"]["abs_lift"] <= revenue["abs_lift"] + 1e-9
    # return on the promotion
    roi = report["roi"][0]
    n_arm = next(a["n"] for a in report["arms"] if a["name"] == "A")
    promotion = district.campaign.promotion
    assert roi["contact_cost"] == pytest.approx(n_arm * promotion.cost_per_contact_cents / 100)
    # (the figures themselves: test_report_agrees_with_an_independent_computation_from_the_sales)


def test_no_detectable_effect_when_the_interval_contains_zero(session):
    set_k(session, 2)
    district = ready_campaign(session, per_org=30, shared=0, now=long_ago())
    experiment = services.launch(session, district.campaign, now=district.now, seed=3)
    simulate(session, experiment, {"control": 0.2, "A": 0.2}, seed=8)
    outcomes.match_outcomes(session, experiment)
    report = reports.build_report(session, experiment, now=after_window(experiment))
    (headline,) = report["headline"]
    low, high = headline["abs_ci"]
    assert low <= 0 <= high and headline["verdict"] == "none"


def test_no_effect_claimed_when_the_interval_and_the_test_disagree():
    # 10/200 against 167/2000: the unpooled Wald interval excludes 0, the pooled z-test's p is 0.097
    y_c = np.r_[np.ones(10), np.zeros(190)]
    y_a = np.r_[np.ones(167), np.zeros(1833)]
    row = summaries.compare_summary("binary", y_c, y_a, 0.05)
    low, high = row["abs_ci"]
    assert low > 0 and row["p_value"] > 0.05
    assert reports._verdict(row, interim=False, p_always_valid=None, alpha=0.05) == "none"
    # the same arms with a clear effect: both agree, the verdict says so
    y_a = np.r_[np.ones(300), np.zeros(1700)]
    row = summaries.compare_summary("binary", y_c, y_a, 0.05)
    assert reports._verdict(row, interim=False, p_always_valid=None, alpha=0.05) == "increase"


def test_the_report_says_whether_any_sale_after_the_launch_was_imported(session):
    set_k(session, 2)
    district = ready_campaign(session, per_org=20, shared=0)
    experiment = services.launch(session, district.campaign, now=district.now, seed=4)
    outcomes.match_outcomes(session, experiment)
    soon = experiment.launched_at + dt.timedelta(hours=1)
    before = reports.build_report(session, experiment, now=soon)
    assert before["sales_since_launch"] is False
    assert before["sales_until"] is not None and before["sales_until"] < before["launched_at"]
    # the sensitivity planned at the first matching travels with the report
    assert before["design"]["power"] == experiment.design["power"]
    assert before["design"]["metrics"]["conversion"]["mde"] == experiment.design["metrics"]["conversion"]["mde"]
    # a sale at an organisation outside the promotion does not count; one at a participating one does
    outsider = Organisation(slug="hors-promotion", name="Hors promotion", kind="venue")
    session.add(outsider)
    session.flush()
    recipient = session.scalar(select(Recipient).where(Recipient.experiment_id == experiment.id).limit(1))
    session.add(
        Transaction(
            organisation_id=outsider.id,
            spectator_id=recipient.spectator_id,
            purchased_at=soon,
            amount_cents=1000,
            tickets=1,
            external_id="ailleurs",
        )
    )
    session.flush()
    assert reports.build_report(session, experiment, now=soon)["sales_since_launch"] is False
    add_sale(session, recipient, experiment.launched_at + dt.timedelta(minutes=5), 3000)
    session.flush()
    after = reports.build_report(session, experiment, now=soon)
    assert after["sales_since_launch"] is True and after["sales_until"] >= after["launched_at"]
    # the latest participating sale, not the outsider's later one
    assert after["sales_until"] == (experiment.launched_at + dt.timedelta(minutes=5)).isoformat(timespec="seconds")
    # the participating organisations that imported nothing since the launch are named, the outsider is not
    participating = {o.id: o for o in experiment.campaign.promotion.organisations}
    assert len(participating) > 1
    named = {o["organisation"] for o in after["organisations_without_sales_since_launch"]}
    assert named == {o.slug for i, o in participating.items() if i != recipient.organisation_id}
    for org_id in participating:
        someone = session.scalar(
            select(Recipient)
            .where(Recipient.experiment_id == experiment.id, Recipient.organisation_id == org_id)
            .limit(1)
        )
        add_sale(session, someone, experiment.launched_at + dt.timedelta(minutes=1), 2000)
    session.flush()
    assert reports.build_report(session, experiment, now=soon)["organisations_without_sales_since_launch"] == []


def test_breakdown_by_organisation_with_benjamini_hochberg_and_suppression(session, measured):
    district, experiment = measured
    report = reports.build_report(session, experiment, now=after_window(experiment))
    orgs = report["organisations"]
    assert sorted(o["organisation_id"] for o in orgs) == sorted(o.id for o in district.orgs)
    p = [o["comparisons"][0]["p_value"] for o in orgs]
    assert [o["comparisons"][0]["p_bh"] for o in orgs] == pytest.approx(stats.benjamini_hochberg(p))
    # with a k of 25, the small cells hide (about 21 per arm and organisation)
    set_k(session, 25)
    hidden = reports.build_report(session, experiment, now=after_window(experiment))
    assert hidden["k"] == 25
    for org in hidden["organisations"]:
        row = org["comparisons"][0]
        assert row["hidden"] and row["abs_lift"] is None and row["p_value"] is None
        assert org["n"]["control"] is None or org["n"]["control"] >= 25
    assert all(
        s["p_value"] is None or all(v is None or v >= 25 for v in s["n"].values())
        for s in hidden["health"]["srm_by_organisation"]
    )
    assert hidden["arms"][0]["n"] >= 25  # the arms as a whole are large enough to show
    # a venue user sees its own organisation's row only
    own = reports.for_viewer(report, "venue", district.orgs[1].id)
    assert [o["organisation_id"] for o in own["organisations"]] == [district.orgs[1].id]
    assert [s["organisation_id"] for s in own["health"]["srm_by_organisation"]] == [district.orgs[1].id]
    assert reports.for_viewer(report, "evaluator", None) is report


def test_health_checks(session, measured):
    district, experiment = measured
    report = reports.build_report(session, experiment, now=after_window(experiment))
    health = report["health"]
    assert health["srm"]["flag"] is False and health["srm"]["p_value"] > 0.001
    assert {s["organisation_id"] for s in health["srm_by_organisation"]} == {o.id for o in district.orgs}
    balance = {(b["metric"], b["arm"]): b for b in health["balance"]}
    assert set(balance) == {(m, "A") for m in report_data.LIFT_METRICS}
    assert not balance[("conversion", "A")]["flag"]
    cumulative = report["cumulative"]
    assert len(cumulative["days"]) == experiment.window_days
    series = cumulative["series"]
    assert series["A"][-1] > series["control"][-1] and all(np.diff(series["A"]) >= 0)


def test_interim_looks_are_always_valid_and_recorded_once_a_day(session):
    set_k(session, 2)
    # launched at 09:00 UTC, so that "two hours later" is the same day whenever the test runs
    nine = dt.datetime.combine(utcnow().date() - dt.timedelta(days=1), dt.time(9))
    district = ready_campaign(session, per_org=40, shared=0, arms=make_arms(50, [50]), now=nine)
    experiment = services.launch(session, district.campaign, now=district.now, seed=5)
    simulate(session, experiment, {"control": 0.1, "A": 0.4}, days=10)
    day_10 = experiment.launched_at + dt.timedelta(days=10)
    outcomes.match_outcomes(session, experiment, now=day_10)
    snapshot = reports.refresh_report(session, experiment, now=day_10)
    assert snapshot.kind == "interim" and snapshot.data["interim"]
    (headline,) = snapshot.data["headline"]
    assert headline["p_always_valid"] is not None and headline["p_always_valid"] >= headline["p_value"]
    # the verdict follows the always-valid p-value, recomputed here from the mixture's likelihood ratio
    look = experiment.interim_looks[0]
    tau2 = experiment.design["metrics"]["conversion"]["tau2"]
    v, d = look["variance"], look["estimate"]
    likelihood_ratio = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
    assert headline["p_always_valid"] == pytest.approx(min(1.0, 1 / likelihood_ratio), rel=1e-9)
    assert headline["verdict"] == ("increase" if 1 / likelihood_ratio < 0.05 else "none_yet")
    # before the planned end every interval is always-valid, wider than the fixed-horizon one
    for row in snapshot.data["comparisons"]:
        assert row["interval"] == "always_valid"
    conversion = next(r for r in snapshot.data["comparisons"] if r["metric"] == "conversion")
    half = math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) + 2 * math.log(1 / 0.05)))
    assert conversion["abs_ci"] == pytest.approx([d - half, d + half], rel=1e-9)
    assert half > 1.96 * math.sqrt(v)
    # and so is every other interval of the page: the return on the promotion (n_A times revenue's
    # confidence sequence), the ratios and the breakdown by organisation, each wider than the
    # fixed-horizon one of the same outcomes
    fixed = reports.build_report(session, experiment, now=after_window(experiment))
    data = report_data.load_data(session, experiment)
    revenue, a = data.window["revenue"], data.arm == data.arm_names.index("A")
    c = data.arm == data.arm_names.index("control")
    v = revenue[c].var(ddof=1) / c.sum() + revenue[a].var(ddof=1) / a.sum()
    tau2 = experiment.design["metrics"]["revenue"]["tau2"]
    d = revenue[a].mean() - revenue[c].mean()
    half = math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) + 2 * math.log(1 / 0.05)))
    (roi,) = snapshot.data["roi"]
    assert roi["interval"] == "always_valid"
    assert roi["incremental_ci"] == pytest.approx([(d - half) * a.sum(), (d + half) * a.sum()], rel=1e-9)
    for early, late in (
        (roi["incremental_ci"], fixed["roi"][0]["incremental_ci"]),
        (snapshot.data["ratios"][0]["revenue_per_buyer"]["ci"], fixed["ratios"][0]["revenue_per_buyer"]["ci"]),
        *[
            (e["comparisons"][0]["abs_ci"], f["comparisons"][0]["abs_ci"])
            for e, f in zip(snapshot.data["organisations"], fixed["organisations"])
            if (e["comparisons"][0]["abs_ci"] or [None])[0] is not None
        ],
    ):
        assert early[0] < late[0] and early[1] > late[1]
    assert snapshot.data["ratios"][0]["revenue_per_buyer"]["interval"] == "always_valid"
    shown = [
        e["comparisons"][0]
        for e in snapshot.data["organisations"]
        if (e["comparisons"][0]["abs_ci"] or [None])[0] is not None
    ]
    assert shown and all(row["interval"] == "always_valid" for row in shown)
    assert "interval" not in fixed["roi"][0] and "interval" not in fixed["ratios"][0]["revenue_per_buyer"]
    reports.refresh_report(session, experiment, now=day_10 + dt.timedelta(hours=2))
    assert len(experiment.interim_looks) == 1  # the same day: replaced
    later = reports.refresh_report(session, experiment, now=day_10 + dt.timedelta(days=1))
    assert len(experiment.interim_looks) == 2
    looks = later.data["headline"][0]["looks"]
    assert [look["p_always_valid"] for look in looks] == sorted(
        (look["p_always_valid"] for look in looks), reverse=True
    )
    tau2 = experiment.design["metrics"]["conversion"]["tau2"]
    expected = stats.msprt_p_values([look["estimate"] for look in looks], [look["variance"] for look in looks], tau2)
    assert later.data["headline"][0]["p_always_valid"] == pytest.approx(expected.p_values[-1])
    final = reports.refresh_report(session, experiment, now=after_window(experiment))
    assert final.kind == "final" and final.data["headline"][0]["p_always_valid"] is None
    assert all("interval" not in row for row in final.data["comparisons"])


def test_snapshots_exports_and_json(session, measured):
    district, experiment = measured
    snapshot = reports.refresh_report(session, experiment, now=after_window(experiment))
    session.commit()
    assert reports.latest_snapshot(session, experiment).id == snapshot.id
    stored = session.get(ReportSnapshot, snapshot.id)
    json.dumps(stored.data, allow_nan=False)
    rows = report_export.report_csv_rows(stored.data)
    assert rows[0][0] == "section" and {r[0] for r in rows[1:]} >= {"metric", "organisation", "redemption_uptake"}
    assert all(len(r) == len(rows[0]) for r in rows)


def test_load_data_counts_recipients_without_outcomes_as_zeros(session, measured):
    district, experiment = measured
    data = report_data.load_data(session, experiment)
    assert data.size == experiment.recipients
    assert int((data.arm == 0).sum()) == experiment.srm["n"]["control"]
    for org in district.orgs:
        assert int((data.organisation == org.id).sum()) == sum(
            experiment.srm["by_organisation"][str(org.id)]["n"].values()
        )
    assert np.isnan(data.first_day[data.window["conversion"] == 0]).all()
    assert (data.first_day[data.window["conversion"] == 1] >= 0).all()
    assert (data.first_day[data.window["conversion"] == 1] < experiment.window_days).all()


def test_several_arms_verdicts_use_holm_across_arms():
    rng = np.random.default_rng(4)
    y_c = (rng.random(4000) < 0.10).astype(float)
    arms = [(rng.random(4000) < p).astype(float) for p in (0.10, 0.10, 0.116)]
    rows = [
        {"arm": f"A{i}", "metric": "conversion", **summaries.compare_summary("binary", y_c, y_a, 0.05)}
        for i, y_a in enumerate(arms)
    ]
    summaries.fill_holm_arms(rows)
    raw = [r["p_value"] for r in rows]
    assert [r["p_adjusted_arms"] for r in rows] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    for r in rows:
        significant = r["p_adjusted_arms"] < 0.05 and not (r["abs_ci"][0] <= 0 <= r["abs_ci"][1])
        assert (reports._verdict(r, interim=False, p_always_valid=None, alpha=0.05) != "none") == significant
    # a raw p under α that Holm lifts above it: no claimed effect
    row = dict(rows[2], p_value=0.03, p_adjusted_arms=0.09, abs_ci=[0.001, 0.03])
    assert reports._verdict(row, interim=False, p_always_valid=None, alpha=0.05) == "none"


def test_the_regression_adjusted_estimate_drives_the_verdict_when_there_is_history():
    rng = np.random.default_rng(8)
    x_c, x_a = rng.gamma(2, 50, 3000), rng.gamma(2, 50, 3000)
    y_c = 0.8 * x_c + rng.normal(0, 10, 3000)
    y_a = 0.8 * x_a + 1.0 + rng.normal(0, 10, 3000)
    row = {"metric": "revenue", **summaries.compare_summary("continuous", y_c, y_a)}
    row["cuped"] = summaries.cuped_summary(y_c, x_c, y_a, x_a)
    summaries.fill_holm_arms([row])
    assert row["abs_ci"][0] < 0 < row["abs_ci"][1]  # the raw estimate cannot tell
    t, p, _ = ttest_ind(
        y_a - row["cuped"]["theta"] * (x_a - np.r_[x_c, x_a].mean()),
        y_c - row["cuped"]["theta"] * (x_c - np.r_[x_c, x_a].mean()),
        usevar="unequal",
    )
    assert row["cuped"]["p_value"] == pytest.approx(p, rel=1e-9) and p < 0.05
    assert reports.driving_estimate(row) is row["cuped"]
    assert reports._verdict(row, interim=False, p_always_valid=None, alpha=0.05) == "increase"
    # no history (sales imported only after the launch): said so, and the raw estimate stands
    flat = {"metric": "revenue", **summaries.compare_summary("continuous", y_c, y_a)}
    flat["cuped"] = summaries.cuped_summary(y_c, np.zeros(3000), y_a, np.zeros(3000))
    assert flat["cuped"]["history"] is False and flat["cuped"]["variance_reduction"] is None
    assert reports.driving_estimate(flat) is flat
    assert reports._verdict(flat, interim=False, p_always_valid=None, alpha=0.05) == "none"
