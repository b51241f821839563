"""A `pilot bench` report (its JSON) printed for people: a plain-text table, or Markdown for the README."""

from __future__ import annotations

import json
from typing import cast

from benchmarks.harness import TARGETS

ENGINE_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


def page_met(page: dict) -> bool:
    """Whether one page's cold, warm median and warm 95th-percentile times are all within DESIGN.md §12's targets."""
    return (
        page["warm_ms_p50"] <= TARGETS["page_warm_ms_p50"]
        and page["warm_ms_p95"] <= TARGETS["page_warm_ms_p95"]
        and page["cold_ms"] <= TARGETS["page_cold_ms"]
    )


def text(report: dict) -> str:
    """The report as the plain-text table ``pilot bench`` prints without ``--json``."""
    lines = [
        f"pilot bench: {report['spectators']:,} spectators, "
        f"{report.get('transactions') or _first(report, 'demo', 'transactions') or 0:,} transactions, "
        f"{report['machine'].get('cpus')} cores, {report['date']}"
    ]
    for engine, figures in report["engines"].items():
        if "error" in figures:
            lines.append("")
            lines.append(f"{engine}: FAILED: {figures['error']} (figures measured before the failure are in --json)")
            continue
        imp, prof, asg, out = (
            figures.get("import"),
            figures.get("profile_refresh"),
            figures.get("assignment"),
            figures.get("outcomes_report"),
        )
        targets = report["targets"][engine]

        def mark(key):
            met = targets[key]["met"]
            return "ok" if met else ("MISS" if met is not None else "-")

        lines.append("")
        lines.append(f"{engine} (district built in {figures['demo_s']:.0f} s)")
        lines.append(f"  {'figure':<38} {'value':>14} {'baseline':>14} {'ratio':>8}  target")
        if imp:
            lines.append(
                f"  {'import rows/s':<38} {imp['rows_per_s']:>14,} {imp['baseline_rows_per_s']:>14,} "
                f"{imp['ratio']:>8.3f}  >= 0.5 {mark('import_ratio')}"
            )
            if "unindexed_rows_per_s" in imp:
                lines.append(
                    f"  {'  the same vs an unindexed text load':<38} {imp['rows_per_s']:>14,} "
                    f"{imp['unindexed_rows_per_s']:>14,} {imp['ratio_to_unindexed']:>8.3f}  (for scale)"
                )
            peaks = ", ".join(f"{int(r):,} rows {mb:.0f} MB" for r, mb in imp["peak_rss_mb"].items())
            at_10m = targets["import_peak_rss_mb_at_10m_rows"]["value"]
            if imp.get("peak_rss_mb_measured_10m_rows") is not None:
                assessed = f"10M rows {at_10m:.0f} MB (measured) "
            else:
                assessed = f"10M rows ~{at_10m:.0f} MB " if at_10m is not None else "10M rows: not assessed "
            lines.append(f"  {'import peak RSS':<38} {peaks}; " + assessed + mark("import_peak_rss_mb_at_10m_rows"))
        if prof:
            lines.append(
                f"  {'profile refresh incremental / full (s)':<38} {prof['incremental_s']:>14.2f} "
                f"{prof['full_s']:>14.2f} {prof['ratio']:>8.3f}  <= 0.1 {mark('profile_ratio')}"
            )
        pooled = figures.get("pooled_refresh")
        if pooled:
            label = f"pooled facts after {pooled['import_rows']:,} rows / all (s)"
            lines.append(
                f"  {label:<38} {pooled['incremental_s']:>14.2f} {pooled['full_s']:>14.2f} "
                f"{pooled['ratio'] if pooled['ratio'] is not None else float('nan'):>8.3f}  <= 0.1 {mark('pooled_ratio')}"
            )
        for name, rule in figures.get("rules", {}).items():
            label = f"rule {name} ({rule['members']:,}) ms"
            lines.append(
                f"  {label:<38} {rule['ms_p50']:>14.1f} {rule['duckdb_ms_p50']:>14.1f} "
                f"{rule['ratio']:>8.3f}  {mark(f'rule_{name}_ratio')}/{mark(f'rule_{name}_ms')}"
                f"{'' if rule['members_match'] else ' MEMBERS DIFFER FROM DUCKDB'}"
            )
        if asg:
            lines.append(
                f"  {'assignment ' + format(asg['recipients'], ',') + ' recipients (s)':<38} "
                f"{asg['seconds']:>14.2f} {'':>14} {'':>8}  <= 5 {mark('assignment_s')}"
            )
        if out:
            lines.append(
                f"  {'outcomes + report (s)':<38} {out['seconds']:>14.2f} {'':>14} {'':>8}  <= 10 "
                f"{mark('outcomes_report_s')}"
            )
        if figures.get("pages"):
            lines.append(f"  {'pages (ms)':<38} {'cold':>14} {'warm p50':>14} {'p95':>8}  <= 1000/150/300")
        for name, page in figures.get("pages", {}).items():
            lines.append(
                f"  {'  ' + name:<38} {page['cold_ms']:>14.0f} "
                f"{page['warm_ms_p50']:>14.0f} {page['warm_ms_p95']:>8.0f}  "
                f"{'ok' if page_met(page) else 'MISS'}{'' if page['status'] == 200 else ' HTTP ' + str(page['status'])}"
            )
    lines.append("")
    lines.append(f"checks: {json.dumps(report['checks'])}")
    return "\n".join(lines)


# --- Markdown ------------------------------------------------------------------------------------


def _n(value, digits: int = 0) -> str:
    """A number with thousands separators (the README's style), or a dash when not measured."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _verdict(targets: dict, key: str) -> str:
    met = targets.get(key, {}).get("met")
    return "" if met is None else (" ✓" if met else " ✗")


def _figure_cells(engine: str, figures: dict, targets: dict) -> dict[str, str]:
    """One engine's cell for each row of the figures table, keyed by the row's label; a figure the
    run did not measure has no cell."""
    cells: dict[str, str] = {}
    if "demo_s" in figures:
        vacuum = (figures.get("demo") or {}).get("vacuum_s")
        cells["district built"] = f"{_n(figures['demo_s'])} s" + (f" (then vacuumed, {vacuum:.0f} s)" if vacuum else "")
    imp = figures.get("import")
    if imp:
        cells["import"] = (
            f"{_n(imp['rows_per_s'])} rows/s vs {_n(imp['baseline_rows_per_s'])} ({imp['seconds']:.1f} s vs "
            f"{imp['baseline_seconds']:.1f} s): **{imp['ratio']:.3f}**{_verdict(targets, 'import_ratio')}"
        )
        # client_cpu_s: the importing process's and its reading process's (core.importing.ahead)
        cpu = [f"importer and its reader {imp['client_cpu_s']:.1f} s"] if imp.get("client_cpu_s") is not None else []
        if imp.get("server_cpu_s") is not None:
            cpu.append(f"server {imp['server_cpu_s']:.1f} s")
        if cpu:
            cells["import"] += f" (CPU: {', '.join(cpu)})"
        if "ratio_to_unindexed" in imp:
            cells["import, against a load into one unindexed text table (for scale)"] = (
                f"{_n(imp['unindexed_rows_per_s'])} rows/s: {imp['ratio_to_unindexed']:.3f}"
            )
        peaks = ", ".join(f"{_n(int(rows))} rows {mb:.0f} MB" for rows, mb in imp["peak_rss_mb"].items())
        at_10m = targets.get("import_peak_rss_mb_at_10m_rows", {})
        how = "measured" if imp.get("peak_rss_mb_measured_10m_rows") is not None else "extrapolated"
        assessed = "not assessed" if at_10m.get("value") is None else f"{how} {_n(at_10m['value'])} MB"
        cells["import peak memory"] = (
            f"{peaks}; at 10 M rows: {assessed}{_verdict(targets, 'import_peak_rss_mb_at_10m_rows')}"
        )
    prof = figures.get("profile_refresh")
    if prof:
        cells["profile refresh"] = (
            f"{prof['incremental_s']:.1f} s vs {prof['full_s']:.1f} s: **{prof['ratio']:.3f}**"
            f"{_verdict(targets, 'profile_ratio')}"
        )
    pooled = figures.get("pooled_refresh")
    if pooled:
        ratio = "—" if pooled["ratio"] is None else f"{pooled['ratio']:.3f}"
        cells["pooled facts"] = (
            f"{pooled['incremental_s']:,.1f} s vs {pooled['full_s']:,.1f} s: **{ratio}**{_verdict(targets, 'pooled_ratio')}"
        )
    for name, rule in (figures.get("rules") or {}).items():
        agree = "" if rule["members_match"] and rule["counts_match"] else " (**differs from DuckDB**)"
        cells[f"rule {name}"] = (
            f"{rule['ms_p50']:,.1f} vs {rule['duckdb_ms_p50']:,.1f} ms: **{rule['ratio']:.3f}**"
            f"{_verdict(targets, f'rule_{name}_ratio')}{agree}"
        )
    asg = figures.get("assignment")
    if asg:
        parts = ", ".join(f"{step} {seconds:.1f}" for step, seconds in (asg.get("steps_s") or {}).items())
        cells["launch"] = (
            f"{_n(asg['recipients'])} recipients in **{asg['seconds']:.1f} s**{_verdict(targets, 'assignment_s')}"
            + (f" ({parts})" if parts else "")
        )
    out = figures.get("outcomes_report")
    if out:
        cells["outcome matching + report"] = (
            f"{out['match_s']:.1f} + {out['report_s']:.1f} s = **{out['seconds']:.1f} s**"
            f"{_verdict(targets, 'outcomes_report_s')}"
        )
    pages = figures.get("pages")
    if pages:
        met = targets.get("pages_met", {})
        cells["pages within target"] = f"**{met.get('value')} of {len(pages)}**{_verdict(targets, 'pages_met')}"
    return cells


def _figure_rows(report: dict) -> list[tuple[str, str]]:
    """(label, target) of each row of the figures table, in the README's order."""
    rules = {}
    for figures in report["engines"].values():
        rules.update(dict.fromkeys(figures.get("rules") or {}))
    rule_ms = cast(dict, TARGETS["rule_ms"])
    limits = " / ".join(
        f"median ≤ {rule_ms[engine]} ms on {ENGINE_NAMES.get(engine, engine)}" for engine in report["engines"]
    )
    rows = [
        ("district built", "—"),
        ("import", f"≥ {TARGETS['import_ratio']} × the engine's bulk load"),
        ("import, against a load into one unindexed text table (for scale)", "—"),
        ("import peak memory", f"≤ {TARGETS['peak_rss_mb_at_10m_rows']} MB at 10 M rows"),
        ("profile refresh", f"≤ {TARGETS['profile_ratio']} × the full refresh"),
        ("pooled facts", f"≤ {TARGETS['pooled_ratio']} × all of them"),
    ]
    rows += [(f"rule {name}", f"≤ {TARGETS['rule_ratio']} × DuckDB; {limits}") for name in rules]
    rows += [
        ("launch", f"≤ {TARGETS['assignment_s']} s"),
        ("outcome matching + report", f"≤ {TARGETS['outcomes_report_s']} s"),
        ("pages within target", "all"),
    ]
    return rows


_LABELS = {
    "import": "import of {rows} rows into the district",
    "profile refresh": "profile refresh, {touched} spectators touched vs all",
    "pooled facts": "pooled pages' facts after importing {pooled_rows} rows vs all",
}


def markdown(report: dict) -> str:
    """The report as Markdown: a line on the run, one table of every figure with its target (a
    column per engine; ✓ met, ✗ missed), then every page's cold, warm median and warm p95 times."""
    engines = list(report["engines"])
    machine = report.get("machine", {})
    transactions = report.get("transactions") or _first(report, "demo", "transactions")
    about = [
        f"{report['spectators']:,} spectators",
        f"{transactions:,} transactions" if transactions else None,
        f"{machine.get('cpus')} cores" + (f" ({machine['cpu']})" if machine.get("cpu") else ""),
        f"{machine['memory_gb']} GB" if machine.get("memory_gb") else None,
        f"PostgreSQL {machine['postgresql']}" if "postgresql" in machine else None,
        f"SQLite {machine['sqlite']}" if "sqlite" in engines and machine.get("sqlite") else None,
        f"DuckDB {machine['duckdb']}" if machine.get("duckdb") else None,
        _commit_words(machine.get("commit")),
        f"{report['seconds'] / 60:.0f} minutes in all" if report.get("seconds") else None,
        f"load average {machine['load_average_at_start'][0]} at the start"
        if machine.get("load_average_at_start")
        else None,
        f"{machine['load_average_at_end'][0]} at the end" if machine.get("load_average_at_end") else None,
    ]
    lines = [f"`pilot bench`, {report['date']}: " + "; ".join(part for part in about if part) + "."]
    if report.get("partial"):
        lines.append("")
        lines.append("**Partial report**: the run had not ended when this was written.")
    cells = {
        engine: _figure_cells(engine, figures, report.get("targets", {}).get(engine, {}))
        for engine, figures in report["engines"].items()
    }
    names = {
        "rows": _first(report, "import", "rows"),
        "touched": _first(report, "profile_refresh", "spectators_touched"),
        "pooled_rows": _first(report, "pooled_refresh", "import_rows"),
    }
    lines += ["", "| figure | target | " + " | ".join(ENGINE_NAMES.get(e, e) for e in engines) + " |"]
    lines.append("|---|---|" + "---|" * len(engines))
    for label, target in _figure_rows(report):
        row = [cells[engine].get(label) for engine in engines]
        if not any(row):
            continue
        shown = _LABELS.get(label, label).format(**{k: _n(v) for k, v in names.items()})
        lines.append(f"| {shown} | {target} | " + " | ".join(cell or "—" for cell in row) + " |")
    for engine, figures in report["engines"].items():
        if "error" in figures:
            lines += ["", f"{ENGINE_NAMES.get(engine, engine)} **failed**: {figures['error']}"]
    paged = [e for e in engines if report["engines"][e].get("pages")]
    if paged:
        lines += [
            "",
            f"Pages, ms: cold, warm median, warm p95 (nearest rank; targets {TARGETS['page_cold_ms']:,} / "
            f"{TARGETS['page_warm_ms_p50']} / {TARGETS['page_warm_ms_p95']}; a time over its target in bold):",
            "",
            "| page | " + " | ".join(ENGINE_NAMES.get(e, e) for e in paged) + " |",
            "|---|" + "---|" * len(paged),
        ]
        names_of_pages: dict[str, None] = {}
        for engine in paged:
            names_of_pages.update(dict.fromkeys(report["engines"][engine]["pages"]))
        for name in names_of_pages:
            times = []
            for engine in paged:
                page = report["engines"][engine]["pages"].get(name)
                times.append("—" if page is None else _page_cell(page))
            lines.append(f"| {name} | " + " | ".join(times) + " |")
    checks = report.get("checks", {})
    if checks.get("members_match_duckdb"):
        agree = all(checks["members_match_duckdb"].values()) and all(checks.get("counts_match_duckdb", {}).values())
        across = checks.get("members_match_across_engines")
        lines += [
            "",
            "Every rule's members and per-organisation counts "
            + ("are the same as DuckDB's" if agree else "**differ from DuckDB's** (see the JSON's `checks`)")
            + (
                "."
                if across is None
                else (", and the same on both engines." if all(across.values()) else "; **the engines differ**.")
            ),
        ]
    return "\n".join(lines)


def _commit_words(commit: str | None) -> str | None:
    """The words for the commit measured: its hash as code, then what follows it (uncommitted changes)."""
    if not commit:
        return None
    sha, _, rest = commit.partition(" ")
    return f"commit `{sha}`" + (f" {rest}" if rest else "")


def _first(report: dict, figure: str, key: str):
    """``key`` of ``figure`` in the first engine that measured it (the engines run the same scale)."""
    for figures in report["engines"].values():
        if figures.get(figure) and figures[figure].get(key) is not None:
            return figures[figure][key]
    return None


def _page_cell(page: dict) -> str:
    times = [
        (page["cold_ms"], TARGETS["page_cold_ms"]),
        (page["warm_ms_p50"], TARGETS["page_warm_ms_p50"]),
        (page["warm_ms_p95"], TARGETS["page_warm_ms_p95"]),
    ]
    cell = ", ".join(f"**{ms:,.0f}**" if ms > limit else f"{ms:,.0f}" for ms, limit in times)
    return cell if page["status"] == 200 else f"{cell} (HTTP {page['status']})"
