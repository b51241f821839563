"""The lift report's tables: return on investment per arm, the breakdown by organisation with its
secondary suppression, and the experiment's health checks."""

from __future__ import annotations

import math

import numpy as np

from core.table_suppression import SuppressedTable, suppress_table
from experiments import stats, summaries
from experiments.models import Experiment
from experiments.report_data import ExperimentData, hidden_by, metric_kind, shown_count


def arm_roi(
    arm: str, data: ExperimentData, mc, ma, redeemed: int, promotion, alpha: float, k: int, hide: bool = False
) -> dict:
    """Incremental revenue = lift in revenue per recipient × recipients of the arm; return =
    incremental revenue − discounts (redemptions × average discount) − contact costs."""
    n_c, n_a = int(mc.sum()), int(ma.sum())
    entry = {
        "arm": arm,
        "incremental_revenue": None,
        "incremental_ci": [None, None],
        "discount_cost": None,
        "contact_cost": None,
        "net": None,
        "net_ci": [None, None],
        "roi": None,
        "hidden": False,
    }
    if (
        hide
        or n_c < 2
        or n_a < 2
        or hidden_by(k, n_c, n_a, int(data.window["conversion"][mc].sum()), int(data.window["conversion"][ma].sum()))
    ):
        entry["hidden"] = True
        return entry
    welch = stats.welch_test(data.window["revenue"][mc], data.window["revenue"][ma], alpha)
    incremental = welch.diff * n_a
    entry["incremental_revenue"] = summaries.json_number(incremental)
    entry["incremental_ci"] = summaries.json_pair((welch.ci[0] * n_a, welch.ci[1] * n_a))
    contact = n_a * (promotion.cost_per_contact_cents if promotion else 0) / 100.0
    entry["contact_cost"] = contact
    if hidden_by(k, redeemed):
        entry["hidden_discount"] = True
        return entry
    discount = redeemed * (promotion.average_discount_cents if promotion else 0) / 100.0
    costs = discount + contact
    entry["discount_cost"] = discount
    entry["net"] = summaries.json_number(incremental - costs)
    entry["net_ci"] = summaries.json_pair((welch.ci[0] * n_a - costs, welch.ci[1] * n_a - costs))
    entry["roi"] = summaries.json_number((incremental - costs) / costs) if costs > 0 else None
    return entry


def suppressed_cells(data: ExperimentData, strata: np.ndarray, n_orgs: int, metric: str, k: int) -> SuppressedTable:
    """Recipients per sending organisation (rows) and arm (columns), published with the arm sizes
    and the number of recipients, through :func:`core.table_suppression.suppress_table`. A cell is hidden
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
            counts = [bought] + (
                [int(y[mask].sum()), n - int(y[mask].sum())] if metric_kind(metric) == "binary" else []
            )
            cells[j].append(n)
            primary[j].append(hidden_by(k, *counts))
    if not cells:
        return SuppressedTable([], None, [0] * len(data.arm_names), 0)
    return suppress_table(cells, k, primary=primary, column_totals=True, total=True)


def protect_left_out(stratified: dict | None, table: SuppressedTable, org_ids: list[int], columns) -> None:
    """A stratum is left out when an arm has no recipient, or one, there: naming an organisation
    whose count is hidden would say that count is 1, and the recipients left out would add up
    hidden cells. Such organisations are only counted (``left_out_hidden``) and ``left_out`` is hidden."""
    if not stratified or not stratified.get("left_out_strata"):
        return
    row_of = {str(o): j for j, o in enumerate(org_ids)}
    rows = [row_of.get(str(label)) for label in stratified["left_out_strata"]]
    named = [
        label
        for label, j in zip(stratified["left_out_strata"], rows)
        if j is not None and all(table.shown(j, c) for c in columns)
    ]
    stratified["left_out_hidden"] = len(rows) - len(named)
    stratified["left_out_strata"] = named
    if stratified["left_out_hidden"]:
        stratified["left_out"] = None


def organisation_breakdown(
    data: ExperimentData,
    strata: np.ndarray,
    org_ids: list[int],
    org_names: dict,
    metric: str,
    alpha: float,
    table: SuppressedTable,
    experiment: Experiment,
) -> list[dict]:
    """The primary metric per sending organisation and test arm; Benjamini-Hochberg over the
    organisations of each arm; a comparison is hidden when its control or arm cell is hidden
    (:func:`suppressed_cells`)."""
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
            row = {
                "arm": arm,
                "hidden": not (table.shown(j, control) and table.shown(j, i)),
                "p_value": None,
                "p_bh": None,
            }
            if n_c >= 2 and n_a >= 2:
                try:
                    summary = summaries.compare_summary(kind, y[mc], y[ma], alpha)
                except ValueError:
                    summary = None
                if summary is not None:
                    row.update({key: summary[key] for key in (*summaries.LIFT_KEYS, "test", "p_value")})
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


def health_checks(
    experiment: Experiment,
    org_names: dict,
    k: int,
    balance: list[dict],
    comparisons: list[dict],
    table: SuppressedTable,
    org_ids: list[int],
) -> dict:
    """Sample-ratio and balance checks; a count per organisation is hidden where the breakdown's
    cell is (the same recipients at launch: one suppression pattern for both tables)."""
    srm = experiment.srm or {}
    row_of = {org: j for j, org in enumerate(org_ids)}
    arm_of = {name: i for i, name in enumerate(experiment.arm_names)}
    by_org = []
    for org_id, check in sorted(
        (srm.get("by_organisation") or {}).items(), key=lambda t: org_names.get(int(t[0]), ("", ""))[1]
    ):
        j = row_of.get(int(org_id))
        counts = {
            a: None if j is None or a not in arm_of or not table.shown(j, arm_of[a]) else shown_count(v, k)
            for a, v in check.get("n", {}).items()
        }
        hidden = None in counts.values()
        slug, name = org_names.get(int(org_id), ("?", "?"))
        by_org.append(
            {
                "organisation_id": int(org_id),
                "slug": slug,
                "name": name,
                "n": counts,
                "p_value": None if hidden else check.get("p_value"),
                "flag": False if hidden else bool(check.get("flag")),
            }
        )
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
        "left_out": shown_count(left_out, k) if left_out else left_out,
        "left_out_hidden": unnamed,  # left out too, with counts hidden: not named
    }
