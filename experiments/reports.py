"""Lift reports and design-time power: plain, JSON-able dicts built from the database.

A report holds numbers and keys, never sentences: the pages translate it in the reader's
language (``experiments/views.py``), so a stored snapshot reads in French and in English alike.
Every count of people shown to anyone but its own organisation hides values under k (DESIGN.md
§10): hidden figures are ``None`` and the row says ``"hidden": true``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Float, case, cast, delete, func, select
from sqlalchemy.orm import Session

from campaigns.eligibility import eligible_count, eligible_select, figure_name
from campaigns.models import Campaign
from core.db import no_index
from core.models import Organisation, Spectator, Transaction, utcnow
from core.privacy import Cell, Release, SuppressedTable, is_small, strictest_k, suppress_table
from experiments import arm_pairs, offers, power, stats, summaries
from experiments.models import BINARY_METRICS, Experiment, Outcome, Recipient, ReportSnapshot
from experiments.outcomes import Scope, per_unit_metrics, period_rows, promotion_scope
from segments.models import SnapshotMember

REPORT_VERSION = 2  # 2: secondary suppression of the tables by organisation and by arm
LIFT_METRICS = ("conversion", "revenue", "tickets", "cross_sell")
WINSOR_PERCENTILE = 99.0
BALANCE_THRESHOLD = 0.001
SNAPSHOTS_KEPT = 120


def metric_kind(metric: str) -> str:
    return "binary" if metric in BINARY_METRICS else "continuous"


# --- the data -----------------------------------------------------------------------------------

@dataclass
class ExperimentData:
    """One entry per recipient (in no particular order): arm index, sending organisation, metrics."""

    arm: np.ndarray
    organisation: np.ndarray
    window: dict[str, np.ndarray]
    pre: dict[str, np.ndarray]
    first_day: np.ndarray  # days from launch to the first window purchase; NaN without one
    arm_names: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.arm.size)


def _epoch_seconds(session: Session, column):
    """SQL: a naive UTC timestamp as seconds since 1970 (a float), on either engine."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", column), Float)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _fetch_matrix(session: Session, columns, where) -> np.ndarray:
    """Rows of numeric ``columns`` as a float matrix, read in one round trip.

    The database joins every value into one comma-separated text (``string_agg`` on PostgreSQL,
    ``group_concat`` on SQLite) that numpy parses in C: half a million rows arrive in a fraction
    of the time a row-by-row fetch takes. Row order is not kept (no statistic needs it). Columns
    must not be NULL.
    """
    if session.get_bind().dialect.name == "postgresql":
        line = func.concat_ws(",", *columns)
        text_ = func.string_agg(line, ",")
    else:
        line = columns[0]
        for column in columns[1:]:
            line = line.op("||")(",").op("||")(column)
        text_ = func.group_concat(line, ",")
    joined = session.scalar(select(text_).select_from(Outcome).where(where))
    if not joined:
        return np.empty((0, len(columns)))
    return np.fromstring(joined, dtype=np.float64, sep=",").reshape(-1, len(columns))


def load_data(session: Session, experiment: Experiment) -> ExperimentData:
    """Every recipient of ``experiment`` with its outcomes, as arrays (revenue in dollars).

    Read sparse: the outcome rows (recipients with a purchase or a redemption), then the count of
    recipients per arm and organisation, the others being zeros on every metric. The order of
    recipients is by arm and organisation, which no statistic depends on.
    """
    names = experiment.arm_names
    arm_index = {name: i for i, name in enumerate(names)}
    groups = session.execute(select(Recipient.arm, Recipient.organisation_id, func.count())
                             .where(Recipient.experiment_id == experiment.id)
                             .group_by(Recipient.arm, Recipient.organisation_id)).all()
    o = Outcome
    arm_code = case(arm_index, value=o.arm, else_=-1)
    first = func.coalesce(_epoch_seconds(session, o.first_purchase_at), -1e18)
    columns = (arm_code, o.organisation_id, o.converted, o.revenue_cents, o.tickets, o.cross_sell, o.redeemed, first,
               o.pre_converted, o.pre_revenue_cents, o.pre_tickets, o.pre_cross_sell)
    matrix = _fetch_matrix(session, columns, o.experiment_id == experiment.id)
    seen: dict[tuple[int, int], int] = {}
    if matrix.size:
        keys, counts = np.unique(matrix[:, :2].astype(np.int64), axis=0, return_counts=True)
        seen = {(int(a), int(g)): int(c) for (a, g), c in zip(keys, counts)}
    zero_arm, zero_org, zero_n = [], [], []
    for arm, org, n in groups:
        missing = int(n) - seen.get((arm_index.get(arm, -1), int(org)), 0)
        if missing > 0:
            zero_arm.append(arm_index.get(arm, -1))
            zero_org.append(int(org))
            zero_n.append(missing)
    zeros = int(sum(zero_n))
    arm = np.concatenate([matrix[:, 0].astype(np.int64), np.repeat(np.array(zero_arm, dtype=np.int64), zero_n)])
    org = np.concatenate([matrix[:, 1].astype(np.int64), np.repeat(np.array(zero_org, dtype=np.int64), zero_n)])

    def column(i: int, scale: float = 1.0) -> np.ndarray:
        return np.concatenate([matrix[:, i] / scale, np.zeros(zeros)])

    window = {"conversion": column(2), "revenue": column(3, 100.0), "tickets": column(4), "cross_sell": column(5),
              "redemption": column(6)}
    pre = {"conversion": column(8), "revenue": column(9, 100.0), "tickets": column(10), "cross_sell": column(11)}
    launched = (experiment.launched_at - dt.datetime(1970, 1, 1)).total_seconds()
    first_day = np.where(matrix[:, 7] < -1e17, np.nan, (matrix[:, 7] - launched) / 86400.0)
    first_day = np.concatenate([first_day, np.full(zeros, np.nan)])
    return ExperimentData(arm, org, window, pre, first_day, list(names))


# --- pieces of the report -----------------------------------------------------------------------

def _shown(value: int | None, k: int) -> int | None:
    return None if value is None or is_small(int(value), k) else int(value)


def _hidden_by(k: int, *counts: int) -> bool:
    return any(is_small(int(c), k) for c in counts)


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


def _look_variance(kind: str, y_c: np.ndarray, y_a: np.ndarray) -> float:
    if kind == "binary":
        p_c, p_a = float(y_c.mean()), float(y_a.mean())
        return p_c * (1 - p_c) / y_c.size + p_a * (1 - p_a) / y_a.size
    return float(y_c.var(ddof=1)) / y_c.size + float(y_a.var(ddof=1)) / y_a.size


def driving_estimate(row: dict) -> dict:
    """The estimate a verdict reads: the regression-adjusted (CUPED) one when the pre-period holds
    some history (``cuped.history``), the raw comparison otherwise (no history: nothing to adjust)."""
    cuped = row.get("cuped")
    if isinstance(cuped, dict) and cuped.get("history") and cuped.get("abs_ci") is not None:
        return cuped
    return row


def _interim_intervals(row: dict, kind: str, y_c, y_a, design: dict, alpha: float) -> None:
    """Before the planned end, replace the row's fixed-horizon intervals by always-valid ones
    (:func:`stats.confidence_sequence`, the mSPRT mixture's dual) and say so (``interval``).

    The difference uses the look variance (p(1 − p)/n per arm, or s²/n) and the metric's planned
    τ² (``design``: the squared pre-period MDE); the relative lift the same on ln(m_A/m_C) with
    τ²/m₀²; CUPED its Welch variance; the stratified estimates their normal standard errors.
    """
    tau2 = float(design.get("tau2") or 0.0) or None
    pre_mean = float(design.get("pre_mean") or 0.0)
    if tau2 is None:
        from experiments.outcomes import FALLBACK_TAU

        tau2 = FALLBACK_TAU.get(row["metric"], 1.0) ** 2
    t2_log = tau2 / pre_mean ** 2 if pre_mean > 0 else 0.01  # the same τ on the log scale, relative to m₀
    z = stats.normal_quantile(alpha)

    def cs(estimate, variance, t2):
        if estimate is None or variance is None or not variance > 0:
            return [None, None]
        return summaries.json_pair(stats.confidence_sequence(estimate, variance, t2, alpha))

    row["interval"] = "always_valid"
    row["abs_ci"] = cs(row.get("abs_lift"), _look_variance(kind, y_c, y_a), tau2)
    if row.get("rel_lift") is not None and row.get("rel_ci", [None])[0] is not None:
        low, high = row["rel_ci"]
        log_se = (math.log1p(high) - math.log1p(low)) / (2 * z)
        ci = cs(math.log1p(row["rel_lift"]), log_se ** 2, t2_log)
        row["rel_ci"] = [math.expm1(ci[0]), math.expm1(ci[1])] if ci[0] is not None else [None, None]
    cuped = row.get("cuped")
    if isinstance(cuped, dict) and cuped.get("se"):
        cuped["abs_ci"] = cs(cuped.get("abs_lift"), cuped["se"] ** 2, tau2)
    st = row.get("stratified")
    if isinstance(st, dict) and st.get("abs_ci", [None])[0] is not None and st.get("abs_lift") is not None:
        se = (st["abs_ci"][1] - st["abs_ci"][0]) / (2 * z)
        st["abs_ci"] = cs(st["abs_lift"], se * se, tau2)
    w = row.get("winsorised")
    if isinstance(w, dict) and w.get("abs_ci", [None])[0] is not None and w.get("abs_lift") is not None:
        se = (w["abs_ci"][1] - w["abs_ci"][0]) / (2 * z)
        w["abs_ci"] = cs(w["abs_lift"], se * se, tau2)
    if isinstance(st, dict) and st.get("odds_ratio_ci", [None])[0] and st.get("odds_ratio"):
        low, high = st["odds_ratio_ci"]
        se = (math.log(high) - math.log(low)) / (2 * z)
        ci = cs(math.log(st["odds_ratio"]), se * se, t2_log)
        st["odds_ratio_ci"] = [math.exp(ci[0]), math.exp(ci[1])] if ci[0] is not None else [None, None]


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


def _always_valid(experiment: Experiment, arm: str, current: dict | None) -> tuple[float | None, list[dict]]:
    """mSPRT p-value of the primary metric for ``arm`` over the stored looks and the current one."""
    looks = [dict(look) for look in (experiment.interim_looks or []) if look.get("arm") == arm]
    if current is not None:
        looks = [look for look in looks if look.get("day") != current["day"]] + [current]
    looks = [look for look in looks if look.get("variance") and look["variance"] > 0]
    looks.sort(key=lambda look: look["at"])
    if not looks:
        return None, []
    design = (experiment.design or {}).get("metrics", {}).get(experiment.primary_metric, {})
    tau2 = design.get("tau2") or 1e-4
    result = stats.msprt_p_values([look["estimate"] for look in looks], [look["variance"] for look in looks], tau2)
    for look, p in zip(looks, result.p_values):
        look["p_always_valid"] = p
    return result.p_values[-1], looks


def build_report(session: Session, experiment: Experiment, now: dt.datetime | None = None,
                 data: ExperimentData | None = None) -> dict:
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
    org_rows = session.execute(select(Organisation.id, Organisation.slug, Organisation.name)
                               .where(Organisation.id.in_(org_ids))).all() if org_ids else []
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
    table = _suppressed_cells(data, strata, len(org_ids), primary, k)
    shown_n = dict(zip(names, table.column_totals))

    report: dict = {
        "version": REPORT_VERSION,
        "experiment_id": experiment.id, "campaign_id": campaign.id, "campaign": campaign.name,
        "status": campaign.status, "computed_at": now.isoformat(timespec="seconds"),
        "launched_at": experiment.launched_at.isoformat(timespec="seconds"),
        "window_end": experiment.window_end.isoformat(timespec="seconds"),
        "pre_start": experiment.pre_start.isoformat(timespec="seconds"),
        "window_days": experiment.window_days, "days_elapsed": round(elapsed, 1), "interim": interim,
        "outcomes_at": experiment.outcomes_at.isoformat(timespec="seconds") if experiment.outcomes_at else None,
        "alpha": alpha, "k": k, "primary_metric": primary, "metrics": declared,
        "code_strategy": experiment.code_strategy, "control": "control",
        "arms": [{"name": a["name"], "share": a["share"], "n": shown_n[a["name"]]} for a in experiment.arms],
        "recipients": table.total,
    }
    # Until a sale after the launch is imported from a participating organisation every outcome is
    # a zero that means "not imported yet", not "did not buy": the pages say so instead of a table.
    scope = promotion_scope(session, experiment.campaign.promotion)
    sales_until = _sales_until(session, scope)
    report["sales_until"] = sales_until.isoformat(timespec="seconds") if sales_until else None
    report["sales_since_launch"] = sales_until is not None and sales_until >= experiment.launched_at
    silent = _silent_organisations(session, experiment, scope) if report["sales_since_launch"] else []
    report["organisations_without_sales_since_launch"] = [
        {"organisation": slug, "name": name}
        for slug, name in session.execute(select(Organisation.slug, Organisation.name)
                                          .where(Organisation.id.in_(silent)).order_by(Organisation.name))
    ] if silent else []
    report["design"] = _design(experiment, declared) if report["recipients"] is not None else None

    # revenue, winsorised once at the percentile of the buyers' revenue, arms pooled
    revenue = data.window["revenue"]
    winsor = stats.winsorize(revenue, WINSOR_PERCENTILE) if revenue.size else None
    report["winsorisation"] = {"percentile": WINSOR_PERCENTILE,
                               "cap": summaries.json_number(winsor.cap) if winsor else None,
                               "capped": _shown(winsor.n_capped, k) if winsor else None}

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
            row = {"arm": arm, "metric": metric, "type": kind, "n_control": shown_n[names[control]], "n_arm": shown_n[arm]}
            buyers_c = int(data.window["conversion"][mc].sum())
            buyers_a = int(data.window["conversion"][ma].sum())
            counts = [n_c, n_a, buyers_c, buyers_a]
            if kind == "binary":
                s_c, s_a = int(y[mc].sum()), int(y[ma].sum())
                counts += [s_c, s_a, n_c - s_c, n_a - s_a]
            if arm_hidden or _hidden_by(k, *counts):
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
                    _interim_intervals(row, row["type"], y[mc], y[ma], planned.get(row["metric"], {}), alpha)
        comparisons.extend(rows)

        # the interim look and the headline of the primary metric
        primary_row = next((r for r in rows if r["metric"] == primary), None)
        current = None
        if primary_row is not None and not primary_row.get("hidden") and not primary_row.get("error"):
            y = data.window[primary]
            variance = _look_variance(metric_kind(primary), y[mc], y[ma])
            current = {"at": now.isoformat(timespec="seconds"), "day": now.date().isoformat(), "arm": arm,
                       "estimate": primary_row["abs_lift"], "variance": variance}
        p_av, looks = _always_valid(experiment, arm, current if interim else None)
        if primary_row is not None:
            # the verdict waits for p_adjusted_arms, known once every arm is compared
            headline.append({
                "arm": arm, "metric": primary, "type": metric_kind(primary),
                "p_always_valid": p_av if interim else None, "looks": looks if interim else [],
                "_row": primary_row,
            })

        # redemption uptake: test arms only, never a lift
        redeemed = int(data.window["redemption"][ma].sum())
        uptake = {"arm": arm, "n": shown_n[arm], "redeemed": _shown(redeemed, k) if redeemed else 0}
        if n_a and shown_n[arm] is not None and not _hidden_by(k, n_a, redeemed):
            ci = stats.wilson_interval(redeemed, n_a, alpha)
            uptake.update({"rate": redeemed / n_a, "ci": [ci.low, ci.high]})
        else:
            uptake.update({"rate": None, "ci": [None, None], "hidden": shown_n[arm] is None or _hidden_by(k, n_a, redeemed)})
        redemption.append(uptake)

        # incremental revenue and return on the promotion (raw revenue)
        roi.append(_roi(arm, data, mc, ma, redeemed, arm_promos.get(arm) or promotion, alpha, k, arm_hidden))

        # ratio metrics marketers read: revenue and tickets per buyer (delta method)
        buyers = data.window["conversion"]
        entry = {"arm": arm, "hidden": _hidden_by(k, n_c, n_a, int(buyers[mc].sum()), int(buyers[ma].sum()))}
        for name, metric in (("revenue_per_buyer", "revenue"), ("tickets_per_buyer", "tickets")):
            y = data.window[metric]
            entry[name] = None if entry["hidden"] else summaries.ratio_summary(y[mc], buyers[mc], y[ma], buyers[ma], alpha)
        ratios.append(entry)

        # pre-period balance of the covariates
        for metric in LIFT_METRICS:
            x = data.pre[metric]
            entry = {"arm": arm, "metric": metric, "control_mean": None, "arm_mean": None, "p_value": None,
                     "flag": False}
            if n_c >= 2 and n_a >= 2 and not arm_hidden:
                try:
                    summary = summaries.compare_summary(metric_kind(metric), x[mc], x[ma], alpha)
                except ValueError:
                    summary = None
                if summary is not None:
                    entry.update({"control_mean": summary["control_mean"], "arm_mean": summary["arm_mean"],
                                  "p_value": summary["p_value"],
                                  "flag": summary["p_value"] is not None and summary["p_value"] < BALANCE_THRESHOLD})
            balance.append(entry)

    for row in comparisons:
        _protect_left_out(row.get("stratified"), table, org_ids, (control, names.index(row["arm"])))
    summaries.fill_holm_arms(comparisons)
    for entry in headline:
        row = entry.pop("_row")
        entry.update({key: row.get(key) for key in ("control_mean", "arm_mean", "abs_lift", "abs_ci", "rel_lift",
                                                    "rel_ci", "rel_reason", "p_value", "p_adjusted",
                                                    "p_adjusted_arms", "hidden", "error", "interval")})
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
    report["codes"] = {"leaked": _shown(leaked, k) if leaked else 0,
                       "control_redeemed": _shown(control_redeemed, k) if control_redeemed else 0}
    report["organisations"] = _breakdown(data, strata, org_ids, org_names, primary, alpha, table, experiment)
    report["health"] = _health(experiment, org_names, k, balance, comparisons, table, org_ids)
    report["cumulative"] = _cumulative(data, max(1, min(experiment.window_days, math.ceil(elapsed) or 1)), shown_n)
    report.update(arm_pairs.report_extension(session, experiment, data, declared, alpha, k, shown_n, metric_kind, is_small, interim))
    return report


def _sales_until(session: Session, scope: Scope) -> dt.datetime | None:
    """The latest purchase imported from the promotion's participating organisations (None: none yet)."""
    if not scope.organisation_ids:
        return None
    # The purchase-date index read backwards to the first participating sale, rather than max()
    # over the organisations' sales: SQLite read every one of those (14 s at a million
    # spectators), kept off the organisation index here.
    return session.scalar(select(Transaction.purchased_at)
                          .where(no_index(Transaction.organisation_id).in_(scope.organisation_ids))
                          .order_by(Transaction.purchased_at.desc()).limit(1))


def _silent_organisations(session: Session, experiment: Experiment, scope: Scope) -> list[int]:
    """The participating organisations with no sale dated from the launch on imported.

    Either they sold nothing since (a festival out of season) or their sales are not imported yet:
    the data cannot tell, so the report names them. Missing sales are missing for test and control
    alike, so the lift is diluted rather than biased. The sales since the launch are read newest
    first through the purchase-date index and the reading stops once every organisation has been
    seen: usually within the last day of sales; to the launch only when one has none since.
    """
    unseen = set(scope.organisation_ids)
    newest_first = (select(Transaction.organisation_id).where(Transaction.purchased_at >= experiment.launched_at)
                    .order_by(Transaction.purchased_at.desc()).execution_options(yield_per=5_000))
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
    return {"alpha": design.get("alpha"), "power": design.get("power"),
            "metrics": {m: {"pre_mean": summaries.json_number(planned[m].get("pre_mean")),
                            "mde": summaries.json_number(planned[m].get("mde"))} for m in metrics if m in planned}}


def _roi(arm: str, data: ExperimentData, mc, ma, redeemed: int, promotion, alpha: float, k: int,
         hide: bool = False) -> dict:
    """Incremental revenue = lift in revenue per recipient × recipients of the arm; return =
    incremental revenue − discounts (redemptions × average discount) − contact costs."""
    n_c, n_a = int(mc.sum()), int(ma.sum())
    entry = {"arm": arm, "incremental_revenue": None, "incremental_ci": [None, None], "discount_cost": None,
             "contact_cost": None, "net": None, "net_ci": [None, None], "roi": None, "hidden": False}
    if hide or n_c < 2 or n_a < 2 or _hidden_by(k, n_c, n_a, int(data.window["conversion"][mc].sum()),
                                        int(data.window["conversion"][ma].sum())):
        entry["hidden"] = True
        return entry
    welch = stats.welch_test(data.window["revenue"][mc], data.window["revenue"][ma], alpha)
    incremental = welch.diff * n_a
    entry["incremental_revenue"] = summaries.json_number(incremental)
    entry["incremental_ci"] = summaries.json_pair((welch.ci[0] * n_a, welch.ci[1] * n_a))
    contact = n_a * (promotion.cost_per_contact_cents if promotion else 0) / 100.0
    entry["contact_cost"] = contact
    if _hidden_by(k, redeemed):
        entry["hidden_discount"] = True
        return entry
    discount = redeemed * (promotion.average_discount_cents if promotion else 0) / 100.0
    costs = discount + contact
    entry["discount_cost"] = discount
    entry["net"] = summaries.json_number(incremental - costs)
    entry["net_ci"] = summaries.json_pair((welch.ci[0] * n_a - costs, welch.ci[1] * n_a - costs))
    entry["roi"] = summaries.json_number((incremental - costs) / costs) if costs > 0 else None
    return entry


def _suppressed_cells(data: ExperimentData, strata: np.ndarray, n_orgs: int, metric: str, k: int) -> SuppressedTable:
    """Recipients per sending organisation (rows) and arm (columns), published with the arm sizes
    and the number of recipients, through :func:`core.privacy.suppress_table`. A cell is hidden
    first when its recipients, buyers or (binary primary metric) converted or not converted count
    is under k; then secondary suppression hides what the arm totals would reveal. A hidden cell
    hides its count, its rates and every comparison that uses it, on the page, CSV, JSON and print."""
    y, buyers = data.window[metric], data.window["conversion"]
    cells, primary = [], []
    for j in range(n_orgs):
        cells.append([]), primary.append([])
        for i in range(len(data.arm_names)):
            mask = (strata == j) & (data.arm == i)
            n, bought = int(mask.sum()), int(buyers[mask].sum())
            counts = [bought] + ([int(y[mask].sum()), n - int(y[mask].sum())] if metric_kind(metric) == "binary" else [])
            cells[j].append(n)
            primary[j].append(_hidden_by(k, *counts))
    if not cells:
        return SuppressedTable([], None, [0] * len(data.arm_names), 0)
    return suppress_table(cells, k, primary=primary, column_totals=True, total=True)


def _protect_left_out(stratified: dict | None, table: SuppressedTable, org_ids: list[int], columns) -> None:
    """A stratum is left out when an arm has no recipient, or one, there: naming an organisation
    whose count is hidden would say that count is 1, and the recipients left out would add up
    hidden cells. Such organisations are only counted (``left_out_hidden``) and ``left_out`` is hidden."""
    if not stratified or not stratified.get("left_out_strata"):
        return
    row_of = {str(o): j for j, o in enumerate(org_ids)}
    rows = [row_of.get(str(label)) for label in stratified["left_out_strata"]]
    named = [label for label, j in zip(stratified["left_out_strata"], rows)
             if j is not None and all(table.shown(j, c) for c in columns)]
    stratified["left_out_hidden"] = len(rows) - len(named)
    stratified["left_out_strata"] = named
    if stratified["left_out_hidden"]:
        stratified["left_out"] = None


def _breakdown(data: ExperimentData, strata: np.ndarray, org_ids: list[int], org_names: dict, metric: str,
               alpha: float, table: SuppressedTable, experiment: Experiment) -> list[dict]:
    """The primary metric per sending organisation and test arm; Benjamini-Hochberg over the
    organisations of each arm; a comparison is hidden when its control or arm cell is hidden
    (:func:`_suppressed_cells`)."""
    names = data.arm_names
    control = names.index("control")
    kind = metric_kind(metric)
    y = data.window[metric]
    out = []
    for j, org_id in enumerate(org_ids):
        in_org = strata == j
        slug, name = org_names.get(org_id, ("?", "?"))
        entry = {"organisation_id": org_id, "slug": slug, "name": name, "n": {}, "comparisons": []}
        mc = in_org & (data.arm == control)
        n_c = int(mc.sum())
        for i, arm in enumerate(names):
            entry["n"][arm] = table.cells[j][i]
        for i, arm in enumerate(names):
            if i == control:
                continue
            ma = in_org & (data.arm == i)
            n_a = int(ma.sum())
            row = {"arm": arm, "hidden": not (table.shown(j, control) and table.shown(j, i)), "p_value": None,
                   "p_bh": None}
            if n_c >= 2 and n_a >= 2:
                try:
                    summary = summaries.compare_summary(kind, y[mc], y[ma], alpha)
                except ValueError:
                    summary = None
                if summary is not None:
                    row.update({key: summary[key] for key in ("control_mean", "arm_mean", "abs_lift", "abs_ci",
                                                              "rel_lift", "rel_ci", "test", "p_value")})
            else:
                row["error"] = "too_few"
            entry["comparisons"].append(row)
        out.append(entry)
    # BH over every organisation of an arm (hidden ones count in the family, their values stay hidden)
    for arm in names:
        if arm == "control":
            continue
        rows = [c for e in out for c in e["comparisons"] if c["arm"] == arm]
        adjusted = stats.benjamini_hochberg([math.nan if r["p_value"] is None else r["p_value"] for r in rows])
        for r, p in zip(rows, adjusted):
            r["p_bh"] = summaries.json_number(p)
    for e in out:
        for r in e["comparisons"]:
            if r["hidden"]:
                for key in ("control_mean", "arm_mean", "abs_lift", "abs_ci", "rel_lift", "rel_ci", "p_value", "p_bh"):
                    r[key] = None
    out.sort(key=lambda e: e["name"])
    return out


def _health(experiment: Experiment, org_names: dict, k: int, balance: list[dict], comparisons: list[dict],
            table: SuppressedTable, org_ids: list[int]) -> dict:
    """Sample-ratio and balance checks; a count per organisation is hidden where the breakdown's
    cell is (the same recipients at launch: one suppression pattern for both tables)."""
    srm = experiment.srm or {}
    row_of = {org: j for j, org in enumerate(org_ids)}
    arm_of = {name: i for i, name in enumerate(experiment.arm_names)}
    by_org = []
    for org_id, check in sorted((srm.get("by_organisation") or {}).items(), key=lambda t: org_names.get(int(t[0]),
                                                                                                           ("", ""))[1]):
        j = row_of.get(int(org_id))
        counts = {a: None if j is None or a not in arm_of or not table.shown(j, arm_of[a]) else _shown(v, k)
                  for a, v in check.get("n", {}).items()}
        hidden = None in counts.values()
        slug, name = org_names.get(int(org_id), ("?", "?"))
        by_org.append({"organisation_id": int(org_id), "slug": slug, "name": name, "n": counts,
                       "p_value": None if hidden else check.get("p_value"),
                       "flag": False if hidden else bool(check.get("flag"))})
    left = sorted({label for c in comparisons for label in (c.get("stratified") or {}).get("left_out_strata", [])})
    left_counts = [(c.get("stratified") or {}).get("left_out", 0) for c in comparisons]
    left_out = None if None in left_counts else max(left_counts or [0])
    unnamed = max([(c.get("stratified") or {}).get("left_out_hidden", 0) for c in comparisons] or [0])
    return {
        "srm": srm.get("overall"),
        "srm_by_organisation": by_org,
        "balance": balance,
        # organisations where an arm has too few recipients: left out of the stratified estimates
        "left_out_strata": [org_names.get(int(label), ("?", label))[1] for label in left],
        "left_out": _shown(left_out, k) if left_out else left_out,
        "left_out_hidden": unnamed,  # left out too, with counts hidden: not named
    }


# --- snapshots ----------------------------------------------------------------------------------

def refresh_report(session: Session, experiment: Experiment, now: dt.datetime | None = None,
                   kind: str | None = None) -> ReportSnapshot:
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
            current = next((look for look in entry.get("looks", []) if look.get("day") == now.date().isoformat()),
                           None)
            if current is None:
                continue
            looks = [look for look in looks if not (look.get("arm") == entry["arm"] and look.get("day") == current["day"])]
            looks.append({key: current[key] for key in ("at", "day", "arm", "estimate", "variance")})
        experiment.interim_looks = sorted(looks, key=lambda look: (look["at"], look["arm"]))
    snapshot = ReportSnapshot(experiment_id=experiment.id, kind=kind or ("interim" if report["interim"] else "final"),
                              created_at=now, data=report)
    session.add(snapshot)
    session.flush()
    old = select(ReportSnapshot.id).where(ReportSnapshot.experiment_id == experiment.id) \
        .order_by(ReportSnapshot.created_at.desc(), ReportSnapshot.id.desc()).offset(SNAPSHOTS_KEPT)
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
    health["srm_by_organisation"] = [e for e in health.get("srm_by_organisation", [])
                                     if e["organisation_id"] == organisation_id]
    shown["health"] = health
    return shown


CSV_COLUMNS = ("section", "arm", "metric", "organisation", "n_control", "n_arm", "control_mean", "arm_mean",
               "abs_lift", "abs_ci_low", "abs_ci_high", "rel_lift", "rel_ci_low", "rel_ci_high", "test", "p_value",
               "p_adjusted", "cuped_abs_lift", "cuped_ci_low", "cuped_ci_high", "cuped_p_value", "cuped_theta",
               "stratified_test", "stratified_estimate", "stratified_ci_low", "stratified_ci_high",
               "stratified_p_value", "p_adjusted_arms")


def _pair_cells(prefix: str, pair) -> dict:
    low, high = (pair or [None, None])[:2]
    return {f"{prefix}_low": low, f"{prefix}_high": high}


def _estimate_cells(c: dict) -> dict:
    return {"control_mean": c.get("control_mean"), "arm_mean": c.get("arm_mean"), "abs_lift": c.get("abs_lift"),
            **_pair_cells("abs_ci", c.get("abs_ci")), "rel_lift": c.get("rel_lift"),
            **_pair_cells("rel_ci", c.get("rel_ci")), "test": c.get("test"), "p_value": c.get("p_value")}


def report_csv_rows(report: dict) -> list[list]:
    """The report's tables as CSV rows: a header, then one row per figure with a ``section`` column
    (``metric``, ``metric_winsorised``, ``organisation``, ``redemption_uptake``); keys, not words."""
    rows: list[dict] = []
    for c in report.get("comparisons", []):
        cu = c.get("cuped") or {}
        st = c.get("stratified") or {}
        cmh = st.get("test") == "CMH"
        rows.append({"section": "metric", "arm": c["arm"], "metric": c["metric"], "n_control": c.get("n_control"),
                     "n_arm": c.get("n_arm"), **_estimate_cells(c), "p_adjusted": c.get("p_adjusted"),
                     "cuped_abs_lift": cu.get("abs_lift"), **_pair_cells("cuped_ci", cu.get("abs_ci")),
                     "cuped_p_value": cu.get("p_value"), "cuped_theta": cu.get("theta"),
                     "stratified_test": st.get("test"),
                     "stratified_estimate": st.get("odds_ratio") if cmh else st.get("abs_lift"),
                     **_pair_cells("stratified_ci", st.get("odds_ratio_ci") if cmh else st.get("abs_ci")),
                     "stratified_p_value": st.get("p_value"), "p_adjusted_arms": c.get("p_adjusted_arms")})
        if c.get("winsorised"):
            rows.append({"section": "metric_winsorised", "arm": c["arm"], "metric": c["metric"],
                         "n_control": c.get("n_control"), "n_arm": c.get("n_arm"), **_estimate_cells(c["winsorised"])})
    for e in report.get("organisations", []):
        for c in e["comparisons"]:
            rows.append({"section": "organisation", "arm": c["arm"], "metric": report.get("primary_metric"),
                         "organisation": e["slug"], "n_control": e["n"].get("control"), "n_arm": e["n"].get(c["arm"]),
                         **_estimate_cells(c), "p_adjusted": c.get("p_bh")})
    for u in report.get("redemption", []):
        rows.append({"section": "redemption_uptake", "arm": u["arm"], "metric": "redemption", "n_arm": u.get("n"),
                     "arm_mean": u.get("rate"), **_pair_cells("abs_ci", u.get("ci"))})
    return [list(CSV_COLUMNS)] + [[row.get(column) for column in CSV_COLUMNS] for row in rows]


# --- power before launch ------------------------------------------------------------------------

def _protected_count(session: Session, release: Release, name: str, spectator_id, source, where=None,
                     threshold: bool = True) -> int:
    """The noisy figure ``name`` of the spectators ``spectator_id`` of ``source`` (``where`` them);
    0 when under k with ``threshold`` (the callers then say "too small"), the bare noisy value
    without."""
    query = (select(func.count(), func.coalesce(func.sum(Spectator.cell_key), 0)).select_from(source)
             .join(Spectator, Spectator.id == spectator_id))
    if where is not None:
        query = query.where(where)
    cell = Cell.of(*session.execute(query).one())
    if not threshold:
        return release.noisy(name, cell)
    figure = release.figure(name, cell)
    return 0 if figure.value is None else figure.value


BASELINES = ("year_earlier", "before_launch", "last_days")


def _population(session: Session, campaign: Campaign):
    """(population SELECT with ``unit`` and ``spectator_id``, its source) for the power estimate."""
    if campaign.snapshot_id is not None:
        return (select(SnapshotMember.spectator_id.label("unit"), SnapshotMember.spectator_id.label("spectator_id"))
                .where(SnapshotMember.snapshot_id == campaign.snapshot_id)), "snapshot"
    segment = campaign.segment
    version = segment.current if segment is not None else None
    if version is None:
        return None, None
    from segments.preview import members_select

    members = members_select(session, version.rule).subquery("members")
    return select(members.c.spectator_id.label("unit"), members.c.spectator_id.label("spectator_id")), "segment"


def baseline_window(session: Session, campaign: Campaign, baseline: str | None, now: dt.datetime):
    """(kind, start, end) of the comparable window the history is read from.

    ``year_earlier``: the campaign's window one year before the planned launch; ``before_launch``:
    the ``window_days`` before the planned launch (ending today at the latest); ``last_days``: the
    last ``window_days`` days. Default: a year earlier when the data reach back that far, else
    the last days.
    """
    days = dt.timedelta(days=campaign.window_days)
    launch = campaign.planned_launch_at
    if baseline not in BASELINES:
        oldest = session.scalar(select(func.min(Transaction.purchased_at)))
        baseline = "year_earlier" if oldest is not None and oldest <= launch - dt.timedelta(days=365) else "last_days"
    if baseline == "year_earlier":
        start = launch - dt.timedelta(days=365)
        return baseline, start, start + days
    if baseline == "before_launch":
        end = min(launch, now)
        return baseline, end - days, end
    latest = session.scalar(select(func.max(Transaction.purchased_at)))
    end = min(now, latest + dt.timedelta(seconds=1)) if latest is not None else now
    return "last_days", end - days, end


def power_report(session: Session, campaign: Campaign, alpha: float = 0.05, target_power: float = 0.8,
                 target_lift: float = 0.10, baseline: str | None = None, now: dt.datetime | None = None,
                 release: Release | None = None) -> dict:
    """Design-time power of ``campaign`` (DESIGN.md §8): for each test arm against the control,
    the minimum detectable effect of every metric at the planned sizes and split, and the number
    of recipients needed to detect a relative lift of ``target_lift`` on the primary metric.

    Baselines (rate or mean and standard deviation) are the segment members' purchases at the
    promotion's organisations in a comparable window (:func:`baseline_window`), with the outcome
    definitions of ``experiments/outcomes.py``. Sizes are the eligible recipients once approvals
    are in, else the segment's size (an upper bound: consent and approvals only remove people).

    With a ``release`` (the web pages: their readers do not own the pooled data) every count is
    its set's noisy figure (:class:`core.privacy.Release`, named as on the campaign page:
    :func:`campaigns.eligibility.figure_name`; "too small" under k): the population, the eligible total, the buyers, and the
    converting and cross-selling counts behind the rates; the minimum detectable effects and sizes
    are computed from those, so that none gives an exact count back.
    """
    now = now or utcnow()
    result: dict = {"alpha": alpha, "power": target_power, "target_lift": target_lift,
                    "primary_metric": campaign.primary_metric, "error": None}
    population, source = _population(session, campaign)
    if population is None:
        result["error"] = "no_segment"
        return result
    pop = population.subquery("population")
    population_size = session.scalar(select(func.count()).select_from(pop)) or 0
    k = strictest_k(session) if release is None else release.k
    name = figure_name(campaign)
    if release is not None:
        # the snapshot is the funnel's segment total: the same figure as on the campaign page
        population_size = _protected_count(session, release, f"{name}.{'segment' if source == 'snapshot' else source}",
                                           pop.c.spectator_id, pop)
    kind, start, end = baseline_window(session, campaign, baseline, now)
    result["baseline"] = {"kind": kind, "start": start.date().isoformat(),
                          "end": (end - dt.timedelta(seconds=1)).date().isoformat()}
    eligible = eligible_count(session, campaign) if campaign.status in ("awaiting_approvals", "ready") else 0
    eligible_hidden = False
    if release is not None and eligible:
        chosen = eligible_select(session, campaign).subquery("eligible")
        eligible = _protected_count(session, release, f"{name}.eligible", chosen.c.spectator_id, chosen)
        eligible_hidden = eligible == 0
    n_total, n_source = (eligible, "eligible") if eligible or eligible_hidden else (population_size, source)
    result.update({"population": _shown(population_size, k), "n_total": _shown(n_total, k), "n_source": n_source,
                   "k": k})
    if population_size == 0 or is_small(population_size, k) or is_small(n_total, k) or eligible_hidden:
        result["error"] = "too_small"
        return result
    scope = promotion_scope(session, campaign.promotion)
    if not scope.organisation_ids:
        result["error"] = "no_organisation"
        return result
    rows = period_rows(population, "spectator_id", start, start, end, scope,
                       masks=session.get_bind().dialect.name == "postgresql")
    per = per_unit_metrics(rows).subquery("per_unit")
    agg = session.execute(select(
        func.count(), func.coalesce(func.sum(per.c.converted), 0), func.coalesce(func.sum(per.c.revenue_cents), 0),
        func.coalesce(func.sum(per.c.revenue_cents * per.c.revenue_cents), 0),
        func.coalesce(func.sum(per.c.tickets), 0), func.coalesce(func.sum(per.c.tickets * per.c.tickets), 0),
        func.coalesce(func.sum(per.c.cross_sell), 0))).one()
    buyers, converted, rev, rev2, tix, tix2, xs = (float(v or 0) for v in agg)
    n = float(population_size)
    if release is not None:
        window = f"{name}.power.{kind}.{start.date().isoformat()}.{end.date().isoformat()}"
        buyers = float(_protected_count(session, release, f"{window}.buyers", per.c.unit, per))
        # a noisy count can land on 0 or on n, where a rate of 0 % or 100 % has no variance and no
        # detectable effect: half a person from either end keeps the noisy rate inside (0, 1)
        converted = min(max(float(_protected_count(session, release, f"{window}.converted", per.c.unit, per,
                                                   per.c.converted == 1, threshold=False)), 0.5), n - 0.5)
        xs = min(max(float(_protected_count(session, release, f"{window}.cross_sell", per.c.unit, per,
                                            per.c.cross_sell == 1, threshold=False)), 0.5), n - 0.5)

    def moments(total: float, squares: float, scale: float = 1.0) -> tuple[float, float]:
        mean = total / scale / n
        var = max(0.0, (squares / scale / scale - n * mean * mean) / (n - 1)) if n > 1 else 0.0
        return mean, math.sqrt(var)

    baselines = {
        "conversion": (converted / n, math.sqrt(converted / n * (1 - converted / n))),
        "cross_sell": (xs / n, math.sqrt(xs / n * (1 - xs / n))),
        "revenue": moments(rev, rev2, 100.0),
        "tickets": moments(tix, tix2),
    }
    result["buyers"] = _shown(int(buyers), k)
    if is_small(int(buyers), k) or (release is not None and buyers == 0):
        result["error"] = "too_few_buyers"
        return result
    result["metrics"] = {m: {"type": metric_kind(m), "mean": baselines[m][0], "sd": baselines[m][1]}
                         for m in LIFT_METRICS}
    shares = {a["name"]: float(a["share"]) / 100.0 for a in campaign.arms}
    share_c = shares.get("control", 0.0)
    arms = []
    for arm, share_a in shares.items():
        if arm == "control":
            continue
        n_c, n_a = int(n_total * share_c), int(n_total * share_a)
        entry = {"arm": arm, "n_control": n_c, "n_arm": n_a, "mde": {}, "needed": None}
        for metric in LIFT_METRICS:
            mean, sd = baselines[metric]
            mde = None
            try:
                if metric_kind(metric) == "binary":
                    if 0.0 < mean < 1.0 and n_c > 0 and n_a > 0:
                        mde = power.mde_binary(mean, n_c, n_a, alpha, target_power)
                elif sd > 0 and n_c > 0 and n_a > 0:
                    # revenue and tickets move through more buyers: the arm's variance grows with them
                    mde = power.mde_continuous(sd, n_c, n_a, alpha, target_power, baseline_mean=mean,
                                               buyers=mean > 0)
            except ValueError:
                mde = None
            entry["mde"][metric] = {"absolute": mde.absolute, "relative": mde.relative} if mde else None
        mean, sd = baselines[campaign.primary_metric]
        try:
            if metric_kind(campaign.primary_metric) == "binary":
                size = power.sample_size_binary(mean, target_lift, share_c, share_a, alpha, target_power, relative=True)
            else:
                size = power.sample_size_continuous(sd, target_lift * mean, share_c, share_a, alpha, target_power)
            entry["needed"] = {"total": size.total, "n_control": size.n_control, "n_arm": size.n_arm,
                               "enough": size.total <= n_total}
        except ValueError:
            entry["needed"] = None
        arms.append(entry)
    result["arms"] = arms
    return result
