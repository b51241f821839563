"""The statistics of experiments.stats as JSON-able summaries, shared by `pilot analyze` and the lift
reports: each comparison, its adjustment across metrics and arms, with NaN as null."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from experiments.stats import (
    SampleRatioResult,
    cochran_mantel_haenszel,
    cuped,
    estimable_strata,
    holm,
    normal_quantile,
    post_stratified_diff,
    relative_lift,
    two_proportions,
    two_sided_normal_p,
    welch_test,
)


def json_number(value) -> float | None:
    """A JSON-safe float: NaN and infinities (an undefined ratio, say) become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def json_pair(values) -> list:
    """An interval as a JSON list of two :func:`json_number`."""
    return [json_number(values[0]), json_number(values[1])]


def srm_summary(result: SampleRatioResult) -> dict:
    """``{"chi2", "p_value", "flag"}`` of a sample-ratio check."""
    return {"chi2": json_number(result.chi2), "p_value": json_number(result.p_value), "flag": bool(result.flag)}


# The figures of a comparison of two arms that every table of a report shows (compare_summary's keys).
LIFT_KEYS = ("control_mean", "arm_mean", "abs_lift", "abs_ci", "rel_lift", "rel_ci")


def compare_summary(kind: str, y_control: np.ndarray, y_arm: np.ndarray, alpha: float = 0.05) -> dict:
    """The unadjusted comparison of one metric, arm versus control, as a JSON-able dict (DESIGN.md §9).

    ``kind`` ``"binary"``: :func:`two_proportions` on the 0/1 values; ``"continuous"``:
    :func:`welch_test`. Both with the log-ratio :func:`relative_lift` (s² = p(1 − p) for a
    binary metric, the sample variance otherwise); ``rel_reason`` says why the relative lift is
    null when it is not estimable (None otherwise). ``p_adjusted`` and ``p_adjusted_arms`` are left
    None for the caller (:func:`fill_holm`, :func:`fill_holm_arms`).
    """
    y_c = np.asarray(y_control, dtype=float)
    y_a = np.asarray(y_arm, dtype=float)
    if kind == "binary":
        result = two_proportions(int(y_c.sum()), y_c.size, int(y_a.sum()), y_a.size, alpha)
        p_c, p_a = result.control_rate, result.arm_rate
        rel = relative_lift(p_c, p_c * (1 - p_c), y_c.size, p_a, p_a * (1 - p_a), y_a.size, alpha, binary=True)
        control_mean, arm_mean = p_c, p_a
    else:
        result = welch_test(y_c, y_a, alpha)
        rel = relative_lift(
            result.control_mean, result.control_var, y_c.size, result.arm_mean, result.arm_var, y_a.size, alpha
        )
        control_mean, arm_mean = result.control_mean, result.arm_mean
    out = {
        "control_mean": json_number(control_mean),
        "arm_mean": json_number(arm_mean),
        "abs_lift": json_number(result.diff),
        "abs_ci": json_pair(result.ci),
        "rel_lift": json_number(rel.lift),
        "rel_ci": json_pair(rel.ci),
        "rel_reason": rel.reason,
        "test": result.test,
        "statistic": json_number(result.statistic),
        "p_value": json_number(result.p_value),
        "p_adjusted": None,
        "p_adjusted_arms": None,
    }
    if kind == "continuous":
        out["df"] = json_number(result.df)
    return out


def cuped_summary(y_control, x_control, y_arm, x_arm, alpha: float = 0.05) -> dict:
    """:func:`cuped` as a JSON-able dict: θ, the adjusted lift, interval, p-value and variance reduction.

    ``history`` is False when the covariate is the same for everyone (typically 0: no purchase
    imported before the launch): there is nothing to adjust on, θ and the variance reduction are
    then None rather than a misleading 0 %, and the estimate equals the raw one.
    """
    x_c, x_a = np.asarray(x_control, dtype=float), np.asarray(x_arm, dtype=float)
    history = bool(x_c.size + x_a.size) and float(np.ptp(np.concatenate([x_c, x_a]))) > 0
    adjusted = cuped(y_control, x_c, y_arm, x_a, alpha)
    a = adjusted.adjusted
    return {
        "theta": json_number(adjusted.theta) if history else None,
        "abs_lift": json_number(a.diff),
        "abs_ci": json_pair(a.ci),
        "p_value": json_number(a.p_value),
        "variance_reduction": json_number(adjusted.variance_reduction) if history else None,
        "statistic": json_number(a.statistic),
        "df": json_number(a.df),
        "se": json_number(a.se),
        "history": history,
    }


# --- ratio metrics ---------------------------------------------------------------------------------


def ratio_summary(num_control, den_control, num_arm, den_arm, alpha: float = 0.05) -> dict:
    """A ratio metric (revenue per buyer, tickets per order) compared between arms, delta method.

    Per arm, with per-recipient numerator Y and denominator X (n recipients): R = ΣY/ΣX and
    var(R) ≈ (s²_Y − 2R·s_XY + R²·s²_X)/(n·x̄²) (sample moments, divisor n − 1); the difference
    R_A − R_C has variance var(R_A) + var(R_C), interval d ± z_{1-α/2}·se, z = d/se,
    p = 2·Φ(−|z|). Null fields with ``reason`` ``no_denominator`` when an arm's ΣX is 0 or it has
    fewer than two recipients with a non-zero denominator.
    """

    def one(y, x):
        y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
        if y.size < 2 or x.sum() == 0 or np.count_nonzero(x) < 2:
            return None
        r = y.sum() / x.sum()
        cov = np.cov(np.vstack([y, x]), ddof=1)
        var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (y.size * x.mean() ** 2)
        return float(r), float(max(0.0, var)), int(x.sum())

    c, a = one(num_control, den_control), one(num_arm, den_arm)
    out = {
        "control_ratio": None,
        "arm_ratio": None,
        "diff": None,
        "ci": [None, None],
        "p_value": None,
        "denominator_control": None,
        "denominator_arm": None,
        "reason": None,
    }
    if c is None or a is None:
        out["reason"] = "no_denominator"
        return out
    d = a[0] - c[0]
    se = math.sqrt(a[1] + c[1])
    z = normal_quantile(alpha)
    out.update(
        {
            "control_ratio": json_number(c[0]),
            "arm_ratio": json_number(a[0]),
            "diff": json_number(d),
            "ci": json_pair((d - z * se, d + z * se)),
            "p_value": json_number(two_sided_normal_p(d / se) if se > 0 else (1.0 if d == 0 else 0.0)),
            "denominator_control": c[2],
            "denominator_arm": a[2],
        }
    )
    return out


def stratified_summary(
    kind: str, y_control, strata_control, y_arm, strata_arm, labels: Sequence, alpha: float = 0.05
) -> dict:
    """CMH (binary) or the post-stratified difference (continuous) as a JSON-able dict.

    ``strata_control`` and ``strata_arm`` are integer codes indexing ``labels``. A stratum where an
    arm has no recipient (CMH) or fewer than two (post-stratified) is left out, the weights
    renormalised over the others (:func:`estimable_strata`); strata are never merged.
    ``strata`` counts the strata used, ``left_out_strata`` lists the labels left out and
    ``left_out`` the recipients (both arms) they hold. With no stratum left the estimate is null.
    """
    y_c = np.asarray(y_control, dtype=float)
    y_a = np.asarray(y_arm, dtype=float)
    s_c = np.asarray(strata_control, dtype=np.int64)
    s_a = np.asarray(strata_arm, dtype=np.int64)
    k = len(labels)
    n_c = np.bincount(s_c, minlength=k)
    n_a = np.bincount(s_a, minlength=k)
    present = (n_c + n_a) > 0
    usable = present & estimable_strata(np.stack([n_c, n_a], axis=1), 1 if kind == "binary" else 2)
    left = present & ~usable
    keep_c, keep_a = usable[s_c], usable[s_a]
    m = int(usable.sum())
    if kind == "binary":
        out = {"test": "CMH", "statistic": None, "p_value": None, "odds_ratio": None, "odds_ratio_ci": [None, None]}
        if m:
            idx = np.flatnonzero(usable)
            succ_c = np.bincount(s_c, weights=y_c, minlength=k)[idx]
            succ_a = np.bincount(s_a, weights=y_a, minlength=k)[idx]
            tables = [(succ_a[j], n_a[i] - succ_a[j], succ_c[j], n_c[i] - succ_c[j]) for j, i in enumerate(idx)]
            result = cochran_mantel_haenszel(tables, alpha)
            out.update(
                {
                    "statistic": json_number(result.statistic),
                    "p_value": json_number(result.p_value),
                    "odds_ratio": json_number(result.odds_ratio),
                    "odds_ratio_ci": json_pair(result.ci),
                }
            )
    else:
        out = {"test": "post-stratified", "statistic": None, "p_value": None, "abs_lift": None, "abs_ci": [None, None]}
        if m:
            result = post_stratified_diff(y_c[keep_c], s_c[keep_c], y_a[keep_a], s_a[keep_a], alpha)
            out.update(
                {
                    "statistic": json_number(result.statistic),
                    "p_value": json_number(result.p_value),
                    "abs_lift": json_number(result.diff),
                    "abs_ci": json_pair(result.ci),
                }
            )
    out["strata"] = m
    out["left_out_strata"] = [labels[i] for i in np.flatnonzero(left)]
    out["left_out"] = int(n_c[left].sum() + n_a[left].sum())
    return out


def fill_holm(rows: list[dict], field: str = "p_adjusted", source: str = "p_value") -> None:
    """Set ``field`` of each row to Holm's adjustment over the rows' ``source`` p-values (None stays
    None and does not count in the family). Called once per arm over its metrics for ``p_adjusted``."""
    adjusted = holm([math.nan if r.get(source) is None else r[source] for r in rows])
    for row, p in zip(rows, adjusted):
        row[field] = json_number(p)


def fill_holm_arms(rows: list[dict]) -> None:
    """``p_adjusted_arms``: for each metric, Holm across the arms' comparisons with the control.

    ``rows`` are the comparisons of every arm (dicts with ``metric`` and ``p_value``); rows of one
    metric form one family of m = number of test arms, p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎).
    A nested ``cuped`` dict gets its own ``p_adjusted_arms`` over the arms' CUPED p-values. With a
    single test arm the adjusted value equals the raw one.
    """
    by_metric: dict = {}
    for row in rows:
        by_metric.setdefault(row.get("metric"), []).append(row)
    for family in by_metric.values():
        fill_holm(family, "p_adjusted_arms")
        nested = [r["cuped"] for r in family if isinstance(r.get("cuped"), dict)]
        if nested:
            fill_holm(nested, "p_adjusted_arms")
