"""The power page's figures (experiments.power_report) against an independent computation from the
sales: the minimum detectable effect of the estimate the verdict will read, CUPED's when the period
before the baseline window holds some history, the raw comparison's without."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select

from campaigns import services as campaign_services
from core.kept import read_kept
from core.models import Setting, Transaction, utcnow
from core.privacy import advance_epoch
from core.scheduler import run_job
from experiments import power, power_report, services
from experiments.outcomes import promotion_scope
from tests.campaigns.helpers import new_purchase
from tests.experiments.test_reports import set_k
from tests.experiments.test_services import ready_campaign


def _district(session, history: bool):
    """A ready campaign whose members buy in its window a year before its planned launch (the
    baseline window) and, with ``history``, in the 30 days before that, regulars in both. Returns the
    district and the end of the baseline window."""
    set_k(session, 2)
    district = ready_campaign(session, per_org=60, shared=0, now=utcnow() - dt.timedelta(days=300))
    end = district.campaign.planned_launch_at - dt.timedelta(days=365) + dt.timedelta(days=30)
    rng = np.random.default_rng(61)
    for spectator in district.spectators:
        regular = rng.random() < 0.3
        p = 0.6 if regular else 0.05
        level = rng.lognormal(3.5, 0.5)
        for offset, happens in ((0, True), (30, history)):
            if happens and rng.random() < p:
                when = end - dt.timedelta(days=offset + 1 + int(rng.integers(0, 28)))
                new_purchase(
                    session,
                    district.orgs[int(rng.integers(0, 3))],
                    spectator,
                    when,
                    amount_cents=int(level * rng.lognormal(0, 0.2) * 100),
                    tickets=int(rng.integers(1, 4)),
                )
    session.flush()
    return district, end


def _per_spectator(session, district, start, end):
    """(revenue in dollars, tickets, bought) per member of the campaign's population, from the sales."""
    participating = {o.id for o in district.campaign.promotion.organisations}
    revenue = dict.fromkeys((s.id for s in district.spectators), 0.0)
    tickets = dict.fromkeys(revenue, 0.0)
    for t in session.scalars(
        select(Transaction).where(Transaction.purchased_at >= start, Transaction.purchased_at < end)
    ):
        if t.spectator_id in revenue and t.organisation_id in participating:
            revenue[t.spectator_id] += t.amount_cents / 100
            tickets[t.spectator_id] += t.tickets
    r, k = np.array(list(revenue.values())), np.array(list(tickets.values()))
    return r, k, (r > 0).astype(float)


def test_the_mde_is_cuped_s_when_the_period_before_holds_history(session):
    district, end = _district(session, history=True)
    got = power_report.power_report(session, district.campaign, baseline="year_earlier")
    assert got["error"] is None and got["baseline"]["kind"] == "year_earlier"
    window = _per_spectator(session, district, end - dt.timedelta(days=30), end)
    before = _per_spectator(session, district, end - dt.timedelta(days=60), end - dt.timedelta(days=30))
    (arm,) = got["arms"]
    n_c, n_a = arm["n_control"], arm["n_arm"]
    for metric, y, x in (
        ("revenue", window[0], before[0]),
        ("tickets", window[1], before[1]),
        ("conversion", window[2], before[2]),
    ):
        rho2 = float(np.corrcoef(y, x)[0, 1] ** 2)
        assert rho2 > 0.05, metric  # regulars buy in both periods
        stated = got["metrics"][metric]
        assert stated["history"] is True and stated["variance_reduction"] == pytest.approx(rho2, rel=1e-9)
        if metric == "conversion":
            expected = power.mde_binary(y.mean(), n_c, n_a, 0.05, 0.8, rho2=rho2)
            without = power.mde_binary(y.mean(), n_c, n_a, 0.05, 0.8)
        else:
            expected = power.mde_continuous(
                y.std(ddof=1), n_c, n_a, 0.05, 0.8, baseline_mean=y.mean(), buyers=True, rho2=rho2
            )
            without = power.mde_continuous(y.std(ddof=1), n_c, n_a, 0.05, 0.8, baseline_mean=y.mean(), buyers=True)
        mde = arm["mde"][metric]
        assert mde["estimator"] == "cuped"
        assert mde["absolute"] == pytest.approx(expected.absolute, rel=1e-6)
        assert mde["absolute"] < without.absolute  # the adjustment's smaller variance, not the raw one's
    # the size a 10 % lift on the primary metric (conversion) needs, for the same estimate
    rho2 = float(np.corrcoef(window[2], before[2])[0, 1] ** 2)
    shares = {a["name"]: a["share"] / 100 for a in district.campaign.arms}
    needed = power.sample_size_binary(
        window[2].mean(), 0.10, shares["control"], shares[arm["arm"]], 0.05, 0.8, relative=True, rho2=rho2
    )
    assert arm["needed"]["total"] == needed.total


def test_without_history_the_mde_is_the_raw_comparison_s(session):
    district, end = _district(session, history=False)
    got = power_report.power_report(session, district.campaign, baseline="year_earlier")
    window = _per_spectator(session, district, end - dt.timedelta(days=30), end)
    (arm,) = got["arms"]
    assert (
        got["metrics"]["conversion"]["history"] is False and got["metrics"]["conversion"]["variance_reduction"] is None
    )
    mde = arm["mde"]["conversion"]
    assert mde["estimator"] == "raw"
    # the pooled z-test's MDE, checked against statsmodels in test_power.py
    assert mde["absolute"] == pytest.approx(
        power.mde_binary(window[2].mean(), arm["n_control"], arm["n_arm"]).absolute, rel=1e-6
    )


def test_the_baseline_is_kept_until_the_campaign_or_the_data_move_and_the_job_counts_it_again(app, session):
    district, end = _district(session, history=True)
    session.commit()
    campaign = district.campaign
    first = power_report.power_report(session, campaign, baseline="year_earlier")
    (name,) = session.scalars(select(Setting.name).where(Setting.name.startswith(f"power:{campaign.id}:"))).all()
    kept = read_kept(session, name)
    population, _source = power_report._population(session, campaign)
    scope = promotion_scope(session, campaign.promotion)
    start, stop = dt.datetime.fromisoformat(kept["start"]), dt.datetime.fromisoformat(kept["end"])
    assert (kept["sums"], kept["sets"]) == power_report.window_values(session, population, start, stop, scope)
    # a sale in the window and a new data epoch: the page reads the kept baseline until the job counts it
    new_purchase(session, district.orgs[0], district.spectators[0], end - dt.timedelta(days=2), amount_cents=99_900)
    advance_epoch(session)
    session.commit()
    assert power_report.power_report(session, campaign, baseline="year_earlier") == first
    run = run_job(app, "experiments.power", runner="cli")
    assert run.status == "success" and run.summary["counted"] == 1
    assert run_job(app, "experiments.power", runner="cli").summary["counted"] == 0
    again = power_report.power_report(session, campaign, baseline="year_earlier")
    assert again != first
    assert (read_kept(session, name)["sums"], read_kept(session, name)["sets"]) == power_report.window_values(
        session, population, start, stop, scope
    )


def _kept_windows(session, campaign) -> dict:
    """The power windows kept for ``campaign``, by name."""
    session.expire_all()
    names = session.scalars(select(Setting.name).where(Setting.name.startswith(f"power:{campaign.id}:"))).all()
    return {name: read_kept(session, name) for name in names}


def _counted_afresh(session, campaign, kept: dict):
    """The kept window's sums and sets counted again from the sales."""
    population, _source = power_report._population(session, campaign)
    start, stop = dt.datetime.fromisoformat(kept["start"]), dt.datetime.fromisoformat(kept["end"])
    return list(
        power_report.window_values(session, population, start, stop, promotion_scope(session, campaign.promotion))
    )


def test_a_launched_campaign_s_baseline_is_kept_by_the_job_before_any_page_asks(app, session):
    """Issue 18: the power page of a launched campaign reads its baseline kept; the job counts it
    (no page asked first) and counts it again once the data moved, and drops windows no baseline reaches."""
    district, end = _district(session, history=True)
    campaign = district.campaign
    services.launch(session, campaign, now=district.now, seed=7)
    session.add(Setting(name=f"power:{campaign.id}:0123456789abcdef", value="{}"))  # a window no baseline reaches
    session.commit()
    run = run_job(app, "experiments.power", runner="cli")
    assert run.status == "success" and run.summary["counted"] == 1 and run.summary["dropped"] == 1
    ((name, kept),) = _kept_windows(session, campaign).items()
    _kind, start, stop = power_report.baseline_window(session, campaign, None, utcnow())
    assert (kept["start"], kept["end"]) == (start.isoformat(), stop.isoformat())
    assert [kept["sums"], kept["sets"]] == _counted_afresh(session, campaign, kept)
    first = power_report.power_report(session, campaign)
    session.commit()
    assert first["error"] is None and _kept_windows(session, campaign) == {name: kept}  # read, not counted again
    assert run_job(app, "experiments.power", runner="cli").summary["counted"] == 0
    # a sale in the window and a new data epoch: the job brings the launched campaign's window up to date
    new_purchase(session, district.orgs[0], district.spectators[0], stop - dt.timedelta(days=2), amount_cents=99_900)
    advance_epoch(session)
    session.commit()
    assert run_job(app, "experiments.power", runner="cli").summary["counted"] == 1
    again = _kept_windows(session, campaign)[name]
    assert [again["sums"], again["sets"]] == _counted_afresh(session, campaign, again) != [kept["sums"], kept["sets"]]
    assert power_report.power_report(session, campaign) != first
    # once closed, its page is read for the record: an import no longer makes the job count it again
    campaign_services.mark_measuring(session, campaign)
    campaign_services.mark_closed(session, campaign)
    new_purchase(session, district.orgs[1], district.spectators[1], stop - dt.timedelta(days=3), amount_cents=50_000)
    advance_epoch(session)
    session.commit()
    assert run_job(app, "experiments.power", runner="cli").summary["counted"] == 0
    assert _kept_windows(session, campaign)[name] == again
