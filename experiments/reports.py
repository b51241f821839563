"""Lift reports: plain, JSON-able dicts built from the database.

A report holds numbers and keys, never sentences: the pages translate it in the reader's
language (``experiments/report_words.py``), so a stored snapshot reads in French and in English alike.
Every count of people shown to anyone but its own organisation hides values under k (DESIGN.md
§10): hidden figures are ``None`` and the row says ``"hidden": true``.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.models import Organisation, Transaction, utcnow
from core.privacy import is_small, strictest_k
from core.sql_expressions import unindexed
from experiments import arm_pairs, offers, stats, summaries
from experiments.interim import always_valid, interim_intervals, interim_tables, look_variance
from experiments.models import Experiment, ReportSnapshot
from experiments.outcomes import Scope, promotion_scope
from experiments.report_data import (
    LIFT_METRICS,
    ExperimentData,
    hidden_by,
    load_data,
    metric_kind,
    shown_count,
)
from experiments.report_tables import arm_roi, health_checks, organisation_breakdown, protect_left_out, suppressed_cells

REPORT_VERSION = 2  # 2: secondary suppression of the tables by organisation and by arm
WINSOR_PERCENTILE = 99.0
BALANCE_THRESHOLD = 0.001
SNAPSHOTS_KEPT = 120


# --- pieces of the report -----------------------------------------------------------------------


def _comparison(kind: str, y_c, y_a, x_c, x_a, s_c, s_a, labels, alpha: float) -> dict:
    """Raw, CUPED and stratified estimates of one metric; ``error`` instead when not estimable."""
    if y_c.size < 2 or y_a.size < 2:
        return {"error": "too_few"}
    try:
        row = summaries.compare_summary(kind, y_c, y_a, alpha)
        row["cuped"] = summaries.cuped_summary(y_c, x_c, y_a, x_a, alpha)
        row["stratified"] = summaries.stratified_summary(kind, y_c, s_c, y_a, s_a, labels, alpha)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return {"error": "not_estimable"}
    return row


def driving_estimate(row: dict) -> dict:
    """The estimate a verdict reads: the regression-adjusted (CUPED) one when the pre-period holds
    some history (``cuped.history``), the raw comparison otherwise (no history: nothing to adjust)."""
    cuped = row.get("cuped")
    if isinstance(cuped, dict) and cuped.get("history") and cuped.get("abs_ci") is not None:
        return cuped
    return row


def _verdict(row: dict, interim: bool, p_always_valid: float | None, alpha: float) -> str:
    """``increase``/``decrease`` when the data show an effect; ``none`` when the interval holds 0 or
    the p-value is not below α (final), ``none_yet`` when the always-valid p-value is not below α
    (interim).

    The estimate read is :func:`driving_estimate` (CUPED when there is history), its test
    ``p_adjusted_arms`` (Holm across the arms' comparisons with the control, so that several arms
    keep the family-wise error at α). A final verdict needs both the interval and
    the test: near the limit they can disagree (the
    unpooled interval can exclude 0 while the pooled z-test's p is above α, with arms of unequal
    sizes), and a report must not claim more than the more cautious of the two.
    """
    if row.get("error") or row.get("hidden"):
        return "unknown"
    row = driving_estimate(row)
    lift = row.get("abs_lift")
    if interim:
        if p_always_valid is None or p_always_valid >= alpha or lift is None:
            return "none_yet"
        return "increase" if lift > 0 else "decrease"
    low, high = row.get("abs_ci") or (None, None)
    if low is None or high is None:
        return "unknown"
    # several arms: Holm across the arms' comparisons with the control (p_adjusted_arms)
    p_value = row.get("p_adjusted_arms") if row.get("p_adjusted_arms") is not None else row.get("p_value")
    if low <= 0 <= high or (p_value is not None and p_value >= alpha):
        return "none"
    return "increase" if low > 0 else "decrease"


def _cumulative(data: ExperimentData, days: int, shown_n: dict) -> dict:
    """Share of each arm's recipients who bought by the end of each day of the window (none for an
    arm whose size is hidden)."""
    series = {}
    edges = np.arange(1, days + 1, dtype=float)
    for i, name in enumerate(data.arm_names):
        mask = data.arm == i
        n = int(mask.sum())
        if n == 0 or shown_n.get(name) is None:
            series[name] = None
            continue
        first = data.first_day[mask]
        first = np.sort(first[~np.isnan(first)])
        counts = np.searchsorted(first, edges, side="left")
        series[name] = [float(c) / n for c in counts]
    return {"days": list(range(1, days + 1)), "series": series}


def build_report(
    session: Session, experiment: Experiment, now: dt.datetime | None = None, data: ExperimentData | None = None
) -> dict:
    """The lift report of ``experiment`` as a plain dict (read-only: nothing is written).

    Holds, for every test arm against the control: each declared metric's raw comparison
    (two proportions or Welch, relative lift) with raw and Holm-adjusted p-values, its CUPED
    estimate (pre-period covariate) and its stratified estimate (CMH or post-stratified, by sending
    organisation); revenue also winsorised at the 99th percentile of the non-zero values; redemption uptake of the test
    arms (never a lift); incremental revenue and return on the promotion; the per-organisation
    breakdown of the primary metric with Benjamini-Hochberg p-values, small counts hidden; health
    checks (sample ratio overall and per organisation, pre-period balance, leaked and contaminating
    code uses); cumulative conversion by arm; while the window is open, always-valid (mSPRT)
    p-values of the primary metric; the latest sale imported from the participating organisations
    (``sales_since_launch`` false: no outcome can have been matched yet) and the sensitivity
    planned at the first matching (``design``). See the module docstring for suppression.
    """
    now = now or utcnow()
    campaign = experiment.campaign
    promotion = campaign.promotion
    data = data if data is not None else load_data(session, experiment)
    names = data.arm_names
    control = names.index("control")
    alpha = float(experiment.alpha or 0.05)
    org_ids = sorted({int(o) for o in np.unique(data.organisation)}) if data.size else []
    k = strictest_k(session, org_ids or None)
    org_rows = (
        session.execute(
            select(Organisation.id, Organisation.slug, Organisation.name).where(Organisation.id.in_(org_ids))
        ).all()
        if org_ids
        else []
    )
    org_names = {r.id: (r.slug, r.name) for r in org_rows}
    labels = [str(o) for o in org_ids]
    code_of_org = {o: i for i, o in enumerate(org_ids)}
    strata = np.empty(0, dtype=np.int64)
    if data.size:
        lookup = np.zeros(max(org_ids) + 1, dtype=np.int64)
        for o, i in code_of_org.items():
            lookup[o] = i
        strata = lookup[data.organisation]

    interim = now < experiment.window_end
    elapsed = max(0.0, min(float(experiment.window_days), (now - experiment.launched_at).total_seconds() / 86400.0))
    declared = [m for m in experiment.metrics if m in LIFT_METRICS]
    primary = experiment.primary_metric
    masks = [data.arm == i for i in range(len(names))]
    table = suppressed_cells(data, strata, len(org_ids), primary, k)
    shown_n = dict(zip(names, table.column_totals))

    report: dict = {
        "version": REPORT_VERSION,
        "experiment_id": experiment.id,
        "campaign_id": campaign.id,
        "campaign": campaign.name,
        "status": campaign.status,
        "computed_at": now.isoformat(timespec="seconds"),
        "launched_at": experiment.launched_at.isoformat(timespec="seconds"),
        "window_end": experiment.window_end.isoformat(timespec="seconds"),
        "pre_start": experiment.pre_start.isoformat(timespec="seconds"),
        "window_days": experiment.window_days,
        "days_elapsed": round(elapsed, 1),
        "interim": interim,
        "outcomes_at": experiment.outcomes_at.isoformat(timespec="seconds") if experiment.outcomes_at else None,
        "alpha": alpha,
        "k": k,
        "primary_metric": primary,
        "metrics": declared,
        "code_strategy": experiment.code_strategy,
        "control": "control",
        "arms": [{"name": a["name"], "share": a["share"], "n": shown_n[a["name"]]} for a in experiment.arms],
        "recipients": table.total,
    }
    # Until a sale after the launch is imported from a participating organisation every outcome is
    # a zero that means "not imported yet", not "did not buy": the pages say so instead of a table.
    scope = promotion_scope(session, experiment.campaign.promotion)
    sales_until = _sales_until(session, scope, now)
    report["sales_until"] = sales_until.isoformat(timespec="seconds") if sales_until else None
    report["sales_since_launch"] = sales_until is not None and sales_until >= experiment.launched_at
    silent = _silent_organisations(session, experiment, scope, now) if report["sales_since_launch"] else []
    report["organisations_without_sales_since_launch"] = (
        [
            {"organisation": slug, "name": name}
            for slug, name in session.execute(
                select(Organisation.slug, Organisation.name)
                .where(Organisation.id.in_(silent))
                .order_by(Organisation.name)
            )
        ]
        if silent
        else []
    )
    report["design"] = _design(experiment, declared) if report["recipients"] is not None else None

    # revenue, winsorised once at the percentile of the buyers' revenue, arms pooled
    revenue = data.window["revenue"]
    winsor = stats.winsorize(revenue, WINSOR_PERCENTILE) if revenue.size else None
    report["winsorisation"] = {
        "percentile": WINSOR_PERCENTILE,
        "cap": summaries.json_number(winsor.cap) if winsor else None,
        "capped": shown_count(winsor.n_capped, k) if winsor else None,
    }

    comparisons, headline, roi, redemption, balance, ratios = [], [], [], [], [], []
    arm_promos = offers.arm_promotions(session, experiment)  # each arm's costs (experiments.arm_pairs)
    for i, arm in enumerate(names):
        if i == control:
            continue
        mc, ma = masks[control], masks[i]
        n_c, n_a = int(mc.sum()), int(ma.sum())
        arm_hidden = shown_n[names[control]] is None or shown_n[arm] is None
        rows = []
        for metric in declared:
            kind = metric_kind(metric)
            y, x = data.window[metric], data.pre[metric]
            row = {
                "arm": arm,
                "metric": metric,
                "type": kind,
                "n_control": shown_n[names[control]],
                "n_arm": shown_n[arm],
            }
            buyers_c = int(data.window["conversion"][mc].sum())
            buyers_a = int(data.window["conversion"][ma].sum())
            counts = [n_c, n_a, buyers_c, buyers_a]
            if kind == "binary":
                s_c, s_a = int(y[mc].sum()), int(y[ma].sum())
                counts += [s_c, s_a, n_c - s_c, n_a - s_a]
            if arm_hidden or hidden_by(k, *counts):
                row.update({"hidden": True, "p_value": None})
            else:
                row.update(_comparison(kind, y[mc], y[ma], x[mc], x[ma], strata[mc], strata[ma], labels, alpha))
                if metric == "revenue" and winsor is not None and "error" not in row:
                    w = winsor.values
                    try:
                        row["winsorised"] = summaries.compare_summary("continuous", w[mc], w[ma], alpha)
                    except ValueError:
                        row["winsorised"] = None
            rows.append(row)
        summaries.fill_holm(rows)
        if interim:  # before the planned end: always-valid intervals only
            planned = (experiment.design or {}).get("metrics", {})
            for row in rows:
                if not row.get("hidden") and not row.get("error"):
                    y = data.window[row["metric"]]
                    interim_intervals(row, row["type"], y[mc], y[ma], planned.get(row["metric"], {}), alpha)
        comparisons.extend(rows)

        # the interim look and the headline of the primary metric
        primary_row = next((r for r in rows if r["metric"] == primary), None)
        current = None
        if primary_row is not None and not primary_row.get("hidden") and not primary_row.get("error"):
            y = data.window[primary]
            variance = look_variance(metric_kind(primary), y[mc], y[ma])
            current = {
                "at": now.isoformat(timespec="seconds"),
                "day": now.date().isoformat(),
                "arm": arm,
                "estimate": primary_row["abs_lift"],
                "variance": variance,
            }
        p_av, looks = always_valid(experiment, arm, current if interim else None)
        if primary_row is not None:
            # the verdict waits for p_adjusted_arms, known once every arm is compared
            headline.append(
                {
                    "arm": arm,
                    "metric": primary,
                    "type": metric_kind(primary),
                    "p_always_valid": p_av if interim else None,
                    "looks": looks if interim else [],
                    "_row": primary_row,
                }
            )

        # redemption uptake: test arms only, never a lift
        redeemed = int(data.window["redemption"][ma].sum())
        uptake = {"arm": arm, "n": shown_n[arm], "redeemed": shown_count(redeemed, k) if redeemed else 0}
        if n_a and shown_n[arm] is not None and not hidden_by(k, n_a, redeemed):
            ci = stats.wilson_interval(redeemed, n_a, alpha)
            uptake.update({"rate": redeemed / n_a, "ci": [ci.low, ci.high]})
        else:
            uptake.update(
                {"rate": None, "ci": [None, None], "hidden": shown_n[arm] is None or hidden_by(k, n_a, redeemed)}
            )
        redemption.append(uptake)

        # incremental revenue and return on the promotion (raw revenue)
        roi.append(arm_roi(arm, data, mc, ma, redeemed, arm_promos.get(arm) or promotion, alpha, k, arm_hidden))

        # ratio metrics marketers read: revenue and tickets per buyer (delta method)
        buyers = data.window["conversion"]
        entry = {"arm": arm, "hidden": hidden_by(k, n_c, n_a, int(buyers[mc].sum()), int(buyers[ma].sum()))}
        for name, metric in (("revenue_per_buyer", "revenue"), ("tickets_per_buyer", "tickets")):
            y = data.window[metric]
            entry[name] = (
                None if entry["hidden"] else summaries.ratio_summary(y[mc], buyers[mc], y[ma], buyers[ma], alpha)
            )
        ratios.append(entry)

        # pre-period balance of the covariates
        for metric in LIFT_METRICS:
            x = data.pre[metric]
            entry = {
                "arm": arm,
                "metric": metric,
                "control_mean": None,
                "arm_mean": None,
                "p_value": None,
                "flag": False,
            }
            if n_c >= 2 and n_a >= 2 and not arm_hidden:
                try:
                    summary = summaries.compare_summary(metric_kind(metric), x[mc], x[ma], alpha)
                except ValueError:
                    summary = None
                if summary is not None:
                    entry.update(
                        {
                            "control_mean": summary["control_mean"],
                            "arm_mean": summary["arm_mean"],
                            "p_value": summary["p_value"],
                            "flag": summary["p_value"] is not None and summary["p_value"] < BALANCE_THRESHOLD,
                        }
                    )
            balance.append(entry)

    for row in comparisons:
        protect_left_out(row.get("stratified"), table, org_ids, (control, names.index(row["arm"])))
    summaries.fill_holm_arms(comparisons)
    for entry in headline:
        row = entry.pop("_row")
        entry.update(
            {
                key: row.get(key)
                for key in (
                    *summaries.LIFT_KEYS,
                    "rel_reason",
                    "p_value",
                    "p_adjusted",
                    "p_adjusted_arms",
                    "hidden",
                    "error",
                    "interval",
                )
            }
        )
        # the estimate the verdict reads is the one shown: CUPED when the pre-period has history
        driving = driving_estimate(row)
        cuped = row.get("cuped") if isinstance(row.get("cuped"), dict) else None
        entry["estimator"] = "cuped" if driving is not row else "raw"
        entry["history"] = None if cuped is None else bool(cuped.get("history"))
        if driving is not row:
            entry.update({key: driving.get(key) for key in ("abs_lift", "abs_ci", "p_value", "p_adjusted_arms")})
            entry["raw_abs_lift"] = row.get("abs_lift")
        entry["verdict"] = _verdict(row, interim, entry["p_always_valid"], alpha)
    report["comparisons"] = comparisons
    report["headline"] = headline
    report["redemption"] = redemption
    report["roi"] = roi
    report["ratios"] = ratios
    control_redeemed = int(data.window["redemption"][masks[control]].sum()) if data.size else 0
    leaked = int(experiment.leaked_redemptions or 0)
    report["codes"] = {
        "leaked": shown_count(leaked, k) if leaked else 0,
        "control_redeemed": shown_count(control_redeemed, k) if control_redeemed else 0,
    }
    report["organisations"] = organisation_breakdown(
        data, strata, org_ids, org_names, primary, alpha, table, experiment
    )
    if interim:  # before the planned end, the other tables' intervals are always-valid too
        interim_tables(report, data, strata, org_ids, experiment, alpha)
    report["health"] = health_checks(experiment, org_names, k, balance, comparisons, table, org_ids)
    report["cumulative"] = _cumulative(data, max(1, min(experiment.window_days, math.ceil(elapsed) or 1)), shown_n)
    report.update(
        arm_pairs.report_extension(
            session, experiment, data, declared, alpha, k, shown_n, metric_kind, is_small, interim
        )
    )
    return report


def _sales_until(session: Session, scope: Scope, now: dt.datetime) -> dt.datetime | None:
    """The latest purchase imported from the promotion's participating organisations, up to ``now``
    (a sale dated later has not happened: it says nothing of what was imported; None: none yet)."""
    if not scope.organisation_ids:
        return None
    # The purchase-date index read backwards to the first participating sale, rather than max()
    # over the organisations' sales: SQLite read every one of those (14 s at a million
    # spectators), kept off the organisation index here.
    return session.scalar(
        select(Transaction.purchased_at)
        .where(unindexed(Transaction.organisation_id).in_(scope.organisation_ids), Transaction.purchased_at <= now)
        .order_by(Transaction.purchased_at.desc())
        .limit(1)
    )


def _silent_organisations(session: Session, experiment: Experiment, scope: Scope, now: dt.datetime) -> list[int]:
    """The participating organisations with no sale dated from the launch to ``now`` imported.

    Either they sold nothing since (a festival out of season) or their sales are not imported yet:
    the data cannot tell, so the report names them. Missing sales are missing for test and control
    alike, so the lift is diluted rather than biased. The sales since the launch are read newest
    first through the purchase-date index and the reading stops once every organisation has been
    seen: usually within the last day of sales; to the launch only when one has none since.
    """
    unseen = set(scope.organisation_ids)
    newest_first = (
        select(Transaction.organisation_id)
        .where(Transaction.purchased_at >= experiment.launched_at, Transaction.purchased_at <= now)
        .order_by(Transaction.purchased_at.desc())
        .execution_options(yield_per=5_000)
    )
    for org_id in session.scalars(newest_first):
        unseen.discard(org_id)
        if not unseen:
            break
    return sorted(unseen)


def _design(experiment: Experiment, metrics: list[str]) -> dict | None:
    """The sensitivity planned from the pre-period at the first matching (``experiment.design``):
    the pre-launch level and the minimum detectable difference of each declared metric."""
    design = experiment.design or {}
    planned = design.get("metrics") or {}
    if not planned:
        return None
    return {
        "alpha": design.get("alpha"),
        "power": design.get("power"),
        "metrics": {
            m: {
                "pre_mean": summaries.json_number(planned[m].get("pre_mean")),
                "mde": summaries.json_number(planned[m].get("mde")),
            }
            for m in metrics
            if m in planned
        },
    }


# --- snapshots ----------------------------------------------------------------------------------


def refresh_report(
    session: Session, experiment: Experiment, now: dt.datetime | None = None, kind: str | None = None
) -> ReportSnapshot:
    """Build the report and store it as a :class:`ReportSnapshot` (flushes).

    While the window is open the look of the primary metric is appended to the experiment's
    interim looks (one per day: a second refresh the same day replaces it), so that the
    always-valid p-values run over every look taken. Keeps the latest ``SNAPSHOTS_KEPT``.

    :param kind: ``interim``, ``final`` or ``manual`` (default: interim while the window is open,
        final after).
    """
    now = now or utcnow()
    report = build_report(session, experiment, now)
    if report["interim"]:
        looks = [dict(look) for look in (experiment.interim_looks or [])]
        for entry in report["headline"]:
            current = next((look for look in entry.get("looks", []) if look.get("day") == now.date().isoformat()), None)
            if current is None:
                continue
            looks = [
                look for look in looks if not (look.get("arm") == entry["arm"] and look.get("day") == current["day"])
            ]
            looks.append({key: current[key] for key in ("at", "day", "arm", "estimate", "variance")})
        experiment.interim_looks = sorted(looks, key=lambda look: (look["at"], look["arm"]))
    snapshot = ReportSnapshot(
        experiment_id=experiment.id,
        kind=kind or ("interim" if report["interim"] else "final"),
        created_at=now,
        data=report,
    )
    session.add(snapshot)
    session.flush()
    old = (
        select(ReportSnapshot.id)
        .where(ReportSnapshot.experiment_id == experiment.id)
        .order_by(ReportSnapshot.created_at.desc(), ReportSnapshot.id.desc())
        .offset(SNAPSHOTS_KEPT)
    )
    stale = list(session.scalars(old))
    if stale:
        session.execute(delete(ReportSnapshot).where(ReportSnapshot.id.in_(stale)))
    return snapshot


def latest_snapshot(session: Session, experiment: Experiment, kind: str | None = None) -> ReportSnapshot | None:
    """The latest stored report (of ``kind`` when given: ``final`` is the one frozen at close)."""
    query = select(ReportSnapshot).where(ReportSnapshot.experiment_id == experiment.id)
    if kind is not None:
        query = query.where(ReportSnapshot.kind == kind)
    return session.scalar(query.order_by(ReportSnapshot.created_at.desc(), ReportSnapshot.id.desc()).limit(1))


def for_viewer(report: dict, role: str, organisation_id: int | None) -> dict:
    """The report as a user of ``role`` may see it: a venue user sees its own organisation's
    breakdown row only (and its own sample-ratio row)."""
    if role != "venue":
        return report
    shown = dict(report)
    shown["organisations"] = [e for e in report.get("organisations", []) if e["organisation_id"] == organisation_id]
    health = dict(report.get("health") or {})
    health["srm_by_organisation"] = [
        e for e in health.get("srm_by_organisation", []) if e["organisation_id"] == organisation_id
    ]
    shown["health"] = health
    return shown
