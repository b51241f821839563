"""Always-valid inference of a lift report before its planned end: confidence sequences, mSPRT p-values."""

from __future__ import annotations

import math

import numpy as np

from experiments import stats, summaries
from experiments.models import Experiment
from experiments.outcomes import FALLBACK_TAU
from experiments.report_data import ExperimentData, metric_kind


def look_variance(kind: str, y_c: np.ndarray, y_a: np.ndarray) -> float:
    """Variance of the difference of the arms' means at a look: p_C(1 − p_C)/n_C + p_A(1 − p_A)/n_A
    for a binary metric, s_C²/n_C + s_A²/n_A otherwise."""
    if kind == "binary":
        p_c, p_a = float(y_c.mean()), float(y_a.mean())
        return p_c * (1 - p_c) / y_c.size + p_a * (1 - p_a) / y_a.size
    return float(y_c.var(ddof=1)) / y_c.size + float(y_a.var(ddof=1)) / y_a.size


def interim_intervals(row: dict, kind: str, y_c, y_a, design: dict, alpha: float) -> None:
    """Before the planned end, replace the row's fixed-horizon intervals by always-valid ones
    (:func:`stats.confidence_sequence`, the mSPRT mixture's dual) and say so (``interval``).

    The difference uses the look variance (p(1 − p)/n per arm, or s²/n) and the metric's planned
    τ² (``design``: the squared pre-period MDE); the relative lift the same on ln(m_A/m_C) with
    τ²/m₀²; CUPED its Welch variance; the stratified estimates their normal standard errors.
    """
    tau2 = float(design.get("tau2") or 0.0) or None
    pre_mean = float(design.get("pre_mean") or 0.0)
    if tau2 is None:
        tau2 = FALLBACK_TAU.get(row["metric"], 1.0) ** 2
    t2_log = tau2 / pre_mean**2 if pre_mean > 0 else 0.01  # the same τ on the log scale, relative to m₀
    z = stats.normal_quantile(alpha)

    def cs(estimate, variance, t2):
        if estimate is None or variance is None or not variance > 0:
            return [None, None]
        return summaries.json_pair(stats.confidence_sequence(estimate, variance, t2, alpha))

    row["interval"] = "always_valid"
    row["abs_ci"] = cs(row.get("abs_lift"), look_variance(kind, y_c, y_a), tau2)
    if row.get("rel_lift") is not None and row.get("rel_ci", [None])[0] is not None:
        low, high = row["rel_ci"]
        log_se = (math.log1p(high) - math.log1p(low)) / (2 * z)
        ci = cs(math.log1p(row["rel_lift"]), log_se**2, t2_log)
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


def interim_tables(
    report: dict, data: ExperimentData, strata: np.ndarray, org_ids: list[int], experiment: Experiment, alpha: float
) -> None:
    """Before the planned end, the intervals of the organisation breakdown, the return on the
    promotion and the ratio metrics become confidence sequences as well (``interval``
    "always_valid"): the breakdown's as the metric's (:func:`interim_intervals`); the incremental
    revenue and net return as n_A times revenue's; the ratios' on their delta-method variance with
    τ = a tenth of the pre-period's level per buyer (any τ fixed before the window keeps them valid)."""
    planned = (experiment.design or {}).get("metrics", {})
    names = data.arm_names
    control = names.index("control")
    primary = experiment.primary_metric
    y = data.window[primary]
    for entry in report["organisations"]:
        in_org = strata == org_ids.index(entry["organisation_id"])
        for row in entry["comparisons"]:
            if row.get("abs_lift") is None:  # hidden or not estimable
                continue
            mc, ma = in_org & (data.arm == control), in_org & (data.arm == names.index(row["arm"]))
            work = dict(row, metric=primary)
            interim_intervals(work, metric_kind(primary), y[mc], y[ma], planned.get(primary, {}), alpha)
            row.update({key: work[key] for key in ("abs_ci", "rel_ci", "interval")})
    revenue_tau2 = float(planned.get("revenue", {}).get("tau2") or 0.0) or 1.0
    conversion = float(planned.get("conversion", {}).get("pre_mean") or 0.0)
    for roi in report["roi"]:
        if roi.get("incremental_revenue") is None:
            continue
        mc, ma = data.arm == control, data.arm == names.index(roi["arm"])
        n_a = int(ma.sum())
        y = data.window["revenue"]
        low, high = stats.confidence_sequence(
            roi["incremental_revenue"] / n_a, look_variance("continuous", y[mc], y[ma]), revenue_tau2, alpha
        )
        roi["incremental_ci"] = summaries.json_pair((low * n_a, high * n_a))
        if roi.get("net") is not None:
            costs = roi["incremental_revenue"] - roi["net"]
            roi["net_ci"] = summaries.json_pair((low * n_a - costs, high * n_a - costs))
        roi["interval"] = "always_valid"
    z = stats.normal_quantile(alpha)
    for entry in report["ratios"]:
        for name, metric in (("revenue_per_buyer", "revenue"), ("tickets_per_buyer", "tickets")):
            ratio = entry.get(name)
            if not ratio or ratio.get("diff") is None or ratio["ci"][0] is None:
                continue
            pre_level = float(planned.get(metric, {}).get("pre_mean") or 0.0)
            tau = 0.1 * pre_level / conversion if pre_level > 0 and conversion > 0 else FALLBACK_TAU[metric]
            se = (ratio["ci"][1] - ratio["ci"][0]) / (2 * z)
            if se > 0:
                ratio["ci"] = summaries.json_pair(stats.confidence_sequence(ratio["diff"], se * se, tau * tau, alpha))
                ratio["interval"] = "always_valid"


def always_valid(experiment: Experiment, arm: str, current: dict | None) -> tuple[float | None, list[dict]]:
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
