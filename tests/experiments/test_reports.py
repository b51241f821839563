"""Lift reports: the same numbers as `pilot analyze`, Holm and Benjamini-Hochberg, suppression, ROI,
redemption as uptake, interim always-valid looks, snapshots and exports."""

from __future__ import annotations

import csv
import datetime as dt
import json
import uuid

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests
from sqlalchemy import select

from campaigns.services import make_arms
from core.models import Organisation, Setting, Transaction
from experiments import outcomes, reports, services, stats
from experiments.analyze import analyze_file
from experiments.models import Recipient, ReportSnapshot
from tests.experiments.test_services import ready_campaign


def set_k(session, k: int) -> None:
    session.merge(Setting(name="k_threshold", value=str(k)))
    session.flush()


def simulate(session, experiment, rates: dict[str, float], seed: int = 1, redeem_share: float = 0.5,
             days: float | None = None) -> None:
    """Purchases in the window (and some in the pre-period) with a conversion rate per arm."""
    rng = np.random.default_rng(seed)
    recipients = session.scalars(select(Recipient).where(Recipient.experiment_id == experiment.id)
                                 .order_by(Recipient.id)).all()
    span = (days if days is not None else experiment.window_days) * 86400
    for r in recipients:
        if rng.random() < 0.3:  # the pre-period covariate, the same for every arm
            add_sale(session, r, experiment.launched_at - dt.timedelta(seconds=int(rng.integers(1, 20 * 86400))),
                     int(rng.normal(5000, 1500)))
        if rng.random() < rates[r.arm]:
            code = r.code if r.code and rng.random() < redeem_share else None
            add_sale(session, r, experiment.launched_at + dt.timedelta(seconds=int(rng.integers(0, span))),
                     int(rng.normal(6000, 2000)) + (40000 if rng.random() < 0.02 else 0), code)
    session.flush()


def add_sale(session, recipient, when, amount, code=None):
    session.add(Transaction(organisation_id=recipient.organisation_id, spectator_id=recipient.spectator_id,
                            purchased_at=when, amount_cents=max(amount, 500), tickets=2, category="single",
                            circumstance="regular", channel="web", promo_code=code, external_id=uuid.uuid4().hex))


@pytest.fixture
def measured(session):
    """A launched campaign with a strong effect, its window over, outcomes matched."""
    set_k(session, 2)
    district = ready_campaign(session, per_org=40, shared=6, arms=make_arms(50, [50]))
    experiment = services.launch(session, district.campaign, now=district.now, seed=17)
    simulate(session, experiment, {"control": 0.15, "A": 0.45}, seed=2)
    outcomes.match_outcomes(session, experiment)
    session.commit()
    return district, experiment


def after_window(experiment):
    return experiment.window_end + dt.timedelta(days=1)


def test_report_matches_pilot_analyze_on_the_same_recipients(session, measured, tmp_path):
    district, experiment = measured
    report = reports.build_report(session, experiment, now=after_window(experiment))
    data = reports.load_data(session, experiment)
    path = tmp_path / "recipients.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arm", "org", "conversion", "revenue", "pre_conversion"])
        for i in range(data.size):
            writer.writerow([data.arm_names[data.arm[i]], int(data.organisation[i]), data.window["conversion"][i],
                             repr(float(data.window["revenue"][i])), data.pre["conversion"][i]])
    shares = {a["name"]: a["share"] / 100 for a in experiment.arms}
    for metric, kind in (("conversion", "binary"), ("revenue", "continuous")):
        expected = analyze_file(path, "arm", "control", [f"{metric}:{kind}"], strata="org", shares=shares)
        got = next(c for c in report["comparisons"] if c["metric"] == metric)
        want = expected["comparisons"][0]
        for key in ("control_mean", "arm_mean", "abs_lift", "rel_lift", "p_value", "statistic"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), key
        assert got["abs_ci"] == pytest.approx(want["abs_ci"], rel=1e-9)
        assert got["stratified"]["p_value"] == pytest.approx(want["stratified"]["p_value"], rel=1e-9)
    assert report["recipients"] == data.size == experiment.recipients
    # Holm over the campaign's declared lift metrics (redemption is never a lift)
    rows = [c for c in report["comparisons"] if c["arm"] == "A"]
    assert [c["metric"] for c in rows] == ["conversion", "revenue"]
    assert [c["p_adjusted"] for c in rows] == pytest.approx(stats.holm([c["p_value"] for c in rows]))
    assert all("cuped" in c and "stratified" in c for c in rows)
    assert report["arms"][0]["n"] + report["arms"][1]["n"] == experiment.recipients


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
    data = reports.load_data(session, experiment)
    revenue_all = data.window["revenue"]
    assert report["winsorisation"]["cap"] == pytest.approx(np.percentile(revenue_all[revenue_all > 0], 99))
    revenue = next(c for c in report["comparisons"] if c["metric"] == "revenue")
    assert revenue["winsorised"]["abs_lift"] <= revenue["abs_lift"] + 1e-9
    # return on the promotion
    roi = report["roi"][0]
    n_arm = next(a["n"] for a in report["arms"] if a["name"] == "A")
    promotion = district.campaign.promotion
    assert roi["incremental_revenue"] == pytest.approx(revenue["abs_lift"] * n_arm)
    assert roi["contact_cost"] == pytest.approx(n_arm * promotion.cost_per_contact_cents / 100)
    assert roi["discount_cost"] == pytest.approx(uptake["redeemed"] * promotion.average_discount_cents / 100)
    assert roi["net"] == pytest.approx(roi["incremental_revenue"] - roi["discount_cost"] - roi["contact_cost"])


def test_no_detectable_effect_when_the_interval_contains_zero(session):
    set_k(session, 2)
    district = ready_campaign(session, per_org=30, shared=0)
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
    row = stats.compare_summary("binary", y_c, y_a, 0.05)
    low, high = row["abs_ci"]
    assert low > 0 and row["p_value"] > 0.05
    assert reports._verdict(row, interim=False, p_always_valid=None, alpha=0.05) == "none"
    # the same arms with a clear effect: both agree, the verdict says so
    y_a = np.r_[np.ones(300), np.zeros(1700)]
    row = stats.compare_summary("binary", y_c, y_a, 0.05)
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
    session.add(Transaction(organisation_id=outsider.id, spectator_id=recipient.spectator_id, purchased_at=soon,
                            amount_cents=1000, tickets=1, external_id="ailleurs"))
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
        someone = session.scalar(select(Recipient).where(Recipient.experiment_id == experiment.id,
                                                         Recipient.organisation_id == org_id).limit(1))
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
    assert all(s["p_value"] is None or all(v is None or v >= 25 for v in s["n"].values())
               for s in hidden["health"]["srm_by_organisation"])
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
    assert set(balance) == {(m, "A") for m in reports.LIFT_METRICS}
    assert not balance[("conversion", "A")]["flag"]
    cumulative = report["cumulative"]
    assert len(cumulative["days"]) == experiment.window_days
    series = cumulative["series"]
    assert series["A"][-1] > series["control"][-1] and all(np.diff(series["A"]) >= 0)


def test_interim_looks_are_always_valid_and_recorded_once_a_day(session):
    set_k(session, 2)
    district = ready_campaign(session, per_org=40, shared=0, arms=make_arms(50, [50]))
    experiment = services.launch(session, district.campaign, now=district.now, seed=5)
    simulate(session, experiment, {"control": 0.1, "A": 0.4}, days=10)
    outcomes.match_outcomes(session, experiment)
    day_10 = experiment.launched_at + dt.timedelta(days=10)
    snapshot = reports.refresh_report(session, experiment, now=day_10)
    assert snapshot.kind == "interim" and snapshot.data["interim"]
    (headline,) = snapshot.data["headline"]
    assert headline["p_always_valid"] is not None and headline["p_always_valid"] >= headline["p_value"]
    assert headline["verdict"] in ("increase", "none_yet")
    reports.refresh_report(session, experiment, now=day_10 + dt.timedelta(hours=2))
    assert len(experiment.interim_looks) == 1  # the same day: replaced
    later = reports.refresh_report(session, experiment, now=day_10 + dt.timedelta(days=1))
    assert len(experiment.interim_looks) == 2
    looks = later.data["headline"][0]["looks"]
    assert [look["p_always_valid"] for look in looks] == sorted((look["p_always_valid"] for look in looks),
                                                                 reverse=True)
    tau2 = experiment.design["metrics"]["conversion"]["tau2"]
    expected = stats.msprt_p_values([look["estimate"] for look in looks], [look["variance"] for look in looks], tau2)
    assert later.data["headline"][0]["p_always_valid"] == pytest.approx(expected.p_values[-1])
    final = reports.refresh_report(session, experiment, now=after_window(experiment))
    assert final.kind == "final" and final.data["headline"][0]["p_always_valid"] is None


def test_snapshots_exports_and_json(session, measured):
    district, experiment = measured
    snapshot = reports.refresh_report(session, experiment, now=after_window(experiment))
    session.commit()
    assert reports.latest_snapshot(session, experiment).id == snapshot.id
    stored = session.get(ReportSnapshot, snapshot.id)
    json.dumps(stored.data, allow_nan=False)
    rows = reports.report_csv_rows(stored.data)
    assert rows[0][0] == "section" and {r[0] for r in rows[1:]} >= {"metric", "organisation", "redemption_uptake"}
    assert all(len(r) == len(rows[0]) for r in rows)


def test_load_data_counts_recipients_without_outcomes_as_zeros(session, measured):
    district, experiment = measured
    data = reports.load_data(session, experiment)
    assert data.size == experiment.recipients
    assert int((data.arm == 0).sum()) == experiment.srm["n"]["control"]
    for org in district.orgs:
        assert int((data.organisation == org.id).sum()) == sum(experiment.srm["by_organisation"][str(org.id)]["n"].values())
    assert np.isnan(data.first_day[data.window["conversion"] == 0]).all()
    assert (data.first_day[data.window["conversion"] == 1] >= 0).all()
    assert (data.first_day[data.window["conversion"] == 1] < experiment.window_days).all()


def test_several_arms_verdicts_use_holm_across_arms():
    rng = np.random.default_rng(4)
    y_c = (rng.random(4000) < 0.10).astype(float)
    arms = [(rng.random(4000) < p).astype(float) for p in (0.10, 0.10, 0.116)]
    rows = [{"arm": f"A{i}", "metric": "conversion", **stats.compare_summary("binary", y_c, y_a, 0.05)}
            for i, y_a in enumerate(arms)]
    stats.fill_holm_arms(rows)
    raw = [r["p_value"] for r in rows]
    assert [r["p_adjusted_arms"] for r in rows] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    for r in rows:
        significant = r["p_adjusted_arms"] < 0.05 and not (r["abs_ci"][0] <= 0 <= r["abs_ci"][1])
        assert (reports._verdict(r, interim=False, p_always_valid=None, alpha=0.05) != "none") == significant
    # a raw p under α that Holm lifts above it: no claimed effect
    row = dict(rows[2], p_value=0.03, p_adjusted_arms=0.09, abs_ci=[0.001, 0.03])
    assert reports._verdict(row, interim=False, p_always_valid=None, alpha=0.05) == "none"
