"""Offer against offer: each pair of test arms compared directly (A − B), for the report and ``pilot analyze``.

The comparison of each offer with the control stays the report's ``comparisons`` (with Holm
across the arms, ``p_adjusted_arms``). Beside it, with two test arms or more, each pair of test
arms is compared on every declared metric with the report's own tests (DESIGN.md §8): two
proportions (pooled z-test, unpooled Wald interval; Fisher and Newcombe under 5 expected) for a
binary metric, Welch for a mean (raw revenue, as the report's headline reads it). The difference
is arm − versus (A − B); ``p_adjusted`` is Holm over the pairs of each metric (one pair: the raw
p-value). Rows are JSON-able dicts, the ``arm_pairs`` extension of the report and of the
``pilot analyze --json`` output (their other keys are unchanged).
"""

from __future__ import annotations

import itertools
from typing import Callable, Mapping, Sequence

import numpy as np
from sqlalchemy.orm import Session

from experiments import stats, summaries
from experiments.models import Experiment
from experiments.offers import arm_promotions
from experiments.outcomes import FALLBACK_TAU


def compare_pair(kind: str, y_arm: np.ndarray, y_versus: np.ndarray, alpha: float = 0.05) -> dict:
    """One metric, arm against versus: means, difference (arm − versus), interval, test and p-value."""
    summary = summaries.compare_summary(kind, y_versus, y_arm, alpha)
    return {
        "arm_mean": summary["arm_mean"],
        "versus_mean": summary["control_mean"],
        "abs_diff": summary["abs_lift"],
        "abs_ci": summary["abs_ci"],
        "rel_diff": summary["rel_lift"],
        "rel_ci": summary["rel_ci"],
        "rel_reason": summary["rel_reason"],
        "test": summary["test"],
        "statistic": summary["statistic"],
        "p_value": summary["p_value"],
        "p_adjusted": None,
    }


def compare_arm_pairs(
    test_arms: Sequence[str],
    metrics: Mapping[str, str],
    values: Callable[[str, str], np.ndarray],
    alpha: float = 0.05,
    hidden: Callable[[str, str, str], bool] | None = None,
) -> list[dict]:
    """Every pair of test arms (in their order: A−B, A−C, B−C) on every metric.

    :param metrics: ``{metric: "binary" | "continuous"}``.
    :param values: ``values(arm, metric)``, the metric's per-recipient values of an arm.
    :param hidden: ``hidden(arm, versus, metric)`` true when the pair must not be shown (small cells).
    """
    rows: list[dict] = []
    for arm, versus in itertools.combinations(list(test_arms), 2):
        for metric, kind in metrics.items():
            y_a, y_b = values(arm, metric), values(versus, metric)
            row = {
                "arm": arm,
                "versus": versus,
                "metric": metric,
                "type": kind,
                "n_arm": int(y_a.size),
                "n_versus": int(y_b.size),
            }
            if hidden is not None and hidden(arm, versus, metric):
                row.update({"hidden": True, "p_value": None})
            elif y_a.size < 2 or y_b.size < 2:
                row.update({"error": "too_few", "p_value": None})
            else:
                try:
                    row.update(compare_pair(kind, y_a, y_b, alpha))
                except (ValueError, ZeroDivisionError, FloatingPointError):
                    row.update({"error": "not_estimable", "p_value": None})
            rows.append(row)
    by_metric: dict[str, list[dict]] = {}
    for row in rows:
        by_metric.setdefault(str(row["metric"]), []).append(row)
    for family in by_metric.values():
        summaries.fill_holm(family)
    return rows


def offers_of(session: Session, experiment: Experiment) -> dict[str, dict]:
    """``{test arm: its promotion}`` as the report keeps it (id, names, offer, code rule)."""
    out = {}
    for arm, promotion in arm_promotions(session, experiment).items():
        if promotion is None:
            continue
        out[arm] = {
            "promotion_id": promotion.id,
            "name_fr": promotion.name_fr,
            "name_en": promotion.name_en,
            "offer_kind": promotion.offer_kind,
            "offer_value": promotion.offer_value,
            "code_strategy": promotion.code_strategy,
        }
    return out


def always_valid(row: dict, y_arm: np.ndarray, y_versus: np.ndarray, tau2: float, alpha: float) -> None:
    """Before the planned end, replace a pair's fixed-horizon interval and p-value by always-valid
    ones (``interval: "always_valid"``), as the report does for each arm against the control: the
    mSPRT normal mixture's confidence sequence and 1/Λ at this look, with the look variance
    (p(1 − p)/n per arm, or s²/n) and the metric's planned τ². 1/Λ at any single look is itself an
    always-valid p-value (the running minimum over looks only makes it smaller)."""
    if row.get("p_value") is None:
        return
    kind = row["type"]
    if kind == "binary":
        p_a, p_b = float(y_arm.mean()), float(y_versus.mean())
        variance = p_a * (1 - p_a) / y_arm.size + p_b * (1 - p_b) / y_versus.size
    else:
        variance = float(y_arm.var(ddof=1)) / y_arm.size + float(y_versus.var(ddof=1)) / y_versus.size
    row["interval"] = "always_valid"
    row["rel_ci"] = [None, None]
    if not variance > 0 or row.get("abs_diff") is None:
        row.update(abs_ci=[None, None], p_value=1.0)
        return
    row["abs_ci"] = summaries.json_pair(stats.confidence_sequence(row["abs_diff"], variance, tau2, alpha))
    row["p_value"] = summaries.json_number(stats.msprt_p_values([row["abs_diff"]], [variance], tau2).p_values[0])


def report_extension(
    session: Session,
    experiment: Experiment,
    data,
    declared: Sequence[str],
    alpha: float,
    k: int,
    shown_n: Mapping[str, int | None],
    metric_kind: Callable[[str], str],
    is_small: Callable[[int, int], bool],
    interim: bool = False,
) -> dict:
    """The report's ``offers`` (each test arm's promotion) and ``arm_pairs`` (offer against offer).

    A pair is hidden, like the report's comparisons, when an arm's size is hidden or any of its
    counts (recipients, buyers, and for a binary metric successes and failures) is under ``k``.
    While the window is open (``interim``) its interval and p-value are always-valid
    (:func:`always_valid`); fixed-horizon figures appear only at the end.
    """
    names = list(data.arm_names)
    test_arms = [a for a in names if a != "control"]
    masks = {a: data.arm == names.index(a) for a in names}
    buyers = data.window["conversion"] if data.size else np.zeros(0)

    def values(arm: str, metric: str) -> np.ndarray:
        return data.window[metric][masks[arm]]

    def hidden(arm: str, versus: str, metric: str) -> bool:
        if shown_n.get(arm) is None or shown_n.get(versus) is None:
            return True
        counts = [
            int(masks[arm].sum()),
            int(masks[versus].sum()),
            int(buyers[masks[arm]].sum()),
            int(buyers[masks[versus]].sum()),
        ]
        if metric_kind(metric) == "binary":
            for a in (arm, versus):
                s = int(values(a, metric).sum())
                counts += [s, int(masks[a].sum()) - s]
        return any(is_small(c, k) for c in counts)

    pairs = (
        compare_arm_pairs(test_arms, {m: metric_kind(m) for m in declared}, values, alpha, hidden)
        if len(test_arms) > 1 and data.size
        else []
    )
    if interim and pairs:
        planned = (experiment.design or {}).get("metrics", {})
        for row in pairs:
            tau2 = float(planned.get(row["metric"], {}).get("tau2") or 0.0) or FALLBACK_TAU.get(row["metric"], 1.0) ** 2
            always_valid(row, values(row["arm"], row["metric"]), values(row["versus"], row["metric"]), tau2, alpha)
        by_metric: dict[str, list[dict]] = {}
        for row in pairs:
            by_metric.setdefault(str(row["metric"]), []).append(row)
        for family in by_metric.values():
            summaries.fill_holm(family)
    for row in pairs:  # the sizes as the report shows them (protected)
        row["n_arm"], row["n_versus"] = shown_n.get(row["arm"]), shown_n.get(row["versus"])
    return {"offers": offers_of(session, experiment), "arm_pairs": pairs}


def csv_rows(report: dict, columns: Sequence[str]) -> list[list]:
    """The pairs as rows of the report's keyed CSV (``experiments.report_export.CSV_COLUMNS``): section
    ``arm_pair``, ``arm`` ``"A-B"``, the second arm's figures in the control columns."""
    rows = []
    for c in report.get("arm_pairs") or []:
        low, high = (c.get("abs_ci") or [None, None])[:2]
        rel_low, rel_high = (c.get("rel_ci") or [None, None])[:2]
        row = {
            "section": "arm_pair",
            "arm": f"{c['arm']}-{c['versus']}",
            "metric": c["metric"],
            "n_control": c.get("n_versus"),
            "n_arm": c.get("n_arm"),
            "control_mean": c.get("versus_mean"),
            "arm_mean": c.get("arm_mean"),
            "abs_lift": c.get("abs_diff"),
            "abs_ci_low": low,
            "abs_ci_high": high,
            "rel_lift": c.get("rel_diff"),
            "rel_ci_low": rel_low,
            "rel_ci_high": rel_high,
            "test": c.get("test"),
            "p_value": c.get("p_value"),
            "p_adjusted": c.get("p_adjusted"),
        }
        rows.append([row.get(column) for column in columns])
    return rows
