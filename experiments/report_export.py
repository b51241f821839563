"""A lift report's tables as keyed CSV rows: one row per figure, a ``section`` column, keys not words."""

from __future__ import annotations

CSV_COLUMNS = (
    "section",
    "arm",
    "metric",
    "organisation",
    "n_control",
    "n_arm",
    "control_mean",
    "arm_mean",
    "abs_lift",
    "abs_ci_low",
    "abs_ci_high",
    "rel_lift",
    "rel_ci_low",
    "rel_ci_high",
    "test",
    "p_value",
    "p_adjusted",
    "cuped_abs_lift",
    "cuped_ci_low",
    "cuped_ci_high",
    "cuped_p_value",
    "cuped_theta",
    "stratified_test",
    "stratified_estimate",
    "stratified_ci_low",
    "stratified_ci_high",
    "stratified_p_value",
    "p_adjusted_arms",
)


def _pair_cells(prefix: str, pair) -> dict:
    low, high = (pair or [None, None])[:2]
    return {f"{prefix}_low": low, f"{prefix}_high": high}


def _estimate_cells(c: dict) -> dict:
    return {
        "control_mean": c.get("control_mean"),
        "arm_mean": c.get("arm_mean"),
        "abs_lift": c.get("abs_lift"),
        **_pair_cells("abs_ci", c.get("abs_ci")),
        "rel_lift": c.get("rel_lift"),
        **_pair_cells("rel_ci", c.get("rel_ci")),
        "test": c.get("test"),
        "p_value": c.get("p_value"),
    }


def report_csv_rows(report: dict) -> list[list]:
    """The report's tables as CSV rows: a header, then one row per figure with a ``section`` column
    (``metric``, ``metric_winsorised``, ``organisation``, ``redemption_uptake``); keys, not words."""
    rows: list[dict] = []
    for c in report.get("comparisons", []):
        cu = c.get("cuped") or {}
        st = c.get("stratified") or {}
        cmh = st.get("test") == "CMH"
        rows.append(
            {
                "section": "metric",
                "arm": c["arm"],
                "metric": c["metric"],
                "n_control": c.get("n_control"),
                "n_arm": c.get("n_arm"),
                **_estimate_cells(c),
                "p_adjusted": c.get("p_adjusted"),
                "cuped_abs_lift": cu.get("abs_lift"),
                **_pair_cells("cuped_ci", cu.get("abs_ci")),
                "cuped_p_value": cu.get("p_value"),
                "cuped_theta": cu.get("theta"),
                "stratified_test": st.get("test"),
                "stratified_estimate": st.get("odds_ratio") if cmh else st.get("abs_lift"),
                **_pair_cells("stratified_ci", st.get("odds_ratio_ci") if cmh else st.get("abs_ci")),
                "stratified_p_value": st.get("p_value"),
                "p_adjusted_arms": c.get("p_adjusted_arms"),
            }
        )
        if c.get("winsorised"):
            rows.append(
                {
                    "section": "metric_winsorised",
                    "arm": c["arm"],
                    "metric": c["metric"],
                    "n_control": c.get("n_control"),
                    "n_arm": c.get("n_arm"),
                    **_estimate_cells(c["winsorised"]),
                }
            )
    for e in report.get("organisations", []):
        for c in e["comparisons"]:
            rows.append(
                {
                    "section": "organisation",
                    "arm": c["arm"],
                    "metric": report.get("primary_metric"),
                    "organisation": e["slug"],
                    "n_control": e["n"].get("control"),
                    "n_arm": e["n"].get(c["arm"]),
                    **_estimate_cells(c),
                    "p_adjusted": c.get("p_bh"),
                }
            )
    for u in report.get("redemption", []):
        rows.append(
            {
                "section": "redemption_uptake",
                "arm": u["arm"],
                "metric": "redemption",
                "n_arm": u.get("n"),
                "arm_mean": u.get("rate"),
                **_pair_cells("abs_ci", u.get("ci")),
            }
        )
    return [list(CSV_COLUMNS)] + [[row.get(column) for column in CSV_COLUMNS] for row in rows]
