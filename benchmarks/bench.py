"""`pilot bench`: every figure of DESIGN.md §12, measured in one run on PostgreSQL and on SQLite.

For each engine: a scratch database (PostgreSQL: ``pilot_bench_<random>`` on the server, dropped at
the end even on error or SIGTERM; SQLite: a temporary file), migrated, filled with the demo district
(``core.demo``'s pooled-data loader only), then:

- import: an export of ``min(1,000,000, 2 × spectators)`` lines for a bench organisation through
  ``core.importing.import_file`` (committed, in a process of its own), against the engine's own
  bulk load of the rows that import wrote into the same tables, with the same indexes, constraints
  and foreign keys (PostgreSQL ``COPY FROM``; SQLite ``executemany``; ``benchmarks.import_baseline``),
  and, for scale, against a load of the file into one unindexed text table; the peak resident
  memory of that import and of one a tenth of its size (rolled back), each in a process of its own;
- profile refresh: a full rebuild, then an import touching 1% of the spectators and the
  incremental refresh of what it touched (``refresh_after_import``);
- rules: the five standard rules (``benchmarks.rules``), the median of five runs of members plus
  preview (per-organisation counts), against DuckDB running the same rules on the raw transactions
  copied into it; members and counts are compared with DuckDB's;
- assignment: a campaign of ``min(500,000, spectators / 2)`` eligible recipients launched
  (``experiments.services.launch``: eligibility, assignment, codes, inserts);
- outcomes and report: ``4 × recipients`` new transactions (2,000,000 at 1M spectators) bulk-inserted
  in the window, then outcome matching and the full report (``refresh_report``).

Progress goes to stderr; ``--json`` prints exactly one JSON object on stdout; ``--out FILE`` keeps
the same report in FILE, rewritten after every step (``"partial": true`` until the end), so that a
run stopped before its end still leaves what it measured. Developer switches
(environment): ``PILOT_BENCH_KEEP=1`` keeps the scratch databases for a post-mortem (their URLs
are printed); ``PILOT_BENCH_PROFILE=DIR`` writes cProfile files of the timed steps, and of each
page's cold request, to DIR.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path

import click

from benchmarks.harness import (
    ENGINE_ORDER,
    RULE_RUNS,
    SECRET,
    TARGETS,
    Echo,
    Scale,
    Timer,
    _machine,
    _p50,
    _sigterm_unwinds,
    scratch_database,
)
from benchmarks.render import markdown, page_met, text
from benchmarks.steps import (
    READ_LAUNCH,
    READ_PROFILES,
    STEPS,
    assignment_figures,
    build_district,
    import_figures,
    outcome_figures,
    profile_figures,
    ready_profiles,
    rule_figures,
)

# --- one engine ---------------------------------------------------------------------------------


def bench_engine(
    engine: str,
    scale: Scale,
    pg_server: str,
    seed: int,
    folder: Path,
    echo,
    out: dict | None = None,
    measured: Callable[[], None] = lambda: None,
    steps: Collection[str] = STEPS,
) -> dict:
    """Every figure of one engine, in a scratch database of its own, filled into ``out`` step by
    step (so that what was measured before a failure is still reported), ``measured`` called after
    each step. ``steps``: the steps measured (:data:`STEPS`); what a later one needs and was not
    asked for is done untimed (the profiles, the launch)."""
    from core import create_app
    from core.db import get_db
    from core.migrate import upgrade

    echo.engine = engine
    out = {} if out is None else out
    with scratch_database(engine, pg_server, folder, echo) as url:
        app = create_app(
            {
                "DATABASE_URL": url,
                "INSTANCE_PATH": str(folder / f"instance-{engine}"),
                "SECRET_KEY": "pilot-bench",
                "DISTRICT_SECRET": SECRET,
            }
        )
        db = get_db(app)
        try:
            with app.app_context():
                with Timer() as migrating:
                    upgrade(db.engine)
                echo(
                    f"migrated in {migrating.seconds:.1f} s; building the district of {scale.spectators:,} "
                    "spectators..."
                )
                out["demo"] = build_district(db, scale.spectators, seed, echo)
                out["demo_s"] = out["demo"]["seconds"]
                echo(f"district: {out['demo']['transactions']:,} transactions in {out['demo_s']:.1f} s")
                measured()
                if "import" in steps:
                    out["import"] = import_figures(db, url, scale, seed, folder, engine, echo)
                    measured()
                if "profiles" in steps:
                    out["profile_refresh"] = profile_figures(db, scale, seed, folder, engine, echo)
                    measured()
                elif READ_PROFILES.intersection(steps):
                    ready_profiles(db, echo)
                if "rules" in steps:
                    out["rules"], out["rules_context"] = rule_figures(db, folder, engine, echo)
                    measured()
                if READ_LAUNCH.intersection(steps):
                    assignment, experiment_id = assignment_figures(db, scale, seed, engine, echo)
                    if "launch" in steps:
                        out["assignment"] = assignment
                        measured()
                if "outcomes" in steps:
                    out["outcomes_report"] = outcome_figures(db, experiment_id, scale, seed, engine, echo)
                    measured()
            if "pages" in steps:
                # outside the app context: each request must push its own (Flask-Login keeps its user on g)
                out["pages"], out["pooled_refresh"] = _pages(
                    app, db, experiment_id, folder, seed, echo, scale.spectators, engine
                )
                measured()
        finally:
            db.engine.dispose()
    echo.engine = ""
    return out


def _pages(
    app, db, experiment_id: int, folder: Path, seed: int, echo, spectators: int, engine: str
) -> tuple[dict, dict]:
    from benchmarks.pages import page_figures
    from experiments.models import Experiment

    with db.session() as session:
        campaign_id = session.get(Experiment, experiment_id).campaign_id
    return page_figures(app, db, campaign_id, experiment_id, folder, seed, echo, spectators, engine)


# --- targets, output ----------------------------------------------------------------------------


def assess(engine: str, figures: dict) -> dict:
    """Each §12 target of an engine: value, target and whether it is met."""

    def entry(value, target, met):
        return {"value": value, "target": target, "met": bool(met) if value is not None else None}

    limit_ms = TARGETS["rule_ms"][engine]
    out = {}
    if "import" in figures:
        imp = figures["import"]
        out["import_ratio"] = entry(
            imp["ratio"], f">= {TARGETS['import_ratio']}", imp["ratio"] >= TARGETS["import_ratio"]
        )
        limit = TARGETS["peak_rss_mb_at_10m_rows"]
        value = imp.get("peak_rss_mb_measured_10m_rows")
        if value is not None:  # a probe of 10 M lines ran (--memory-rows)
            how = "measured: a rolled-back import of 10M rows or more"
        else:
            # Below 100k rows the importer's bounded caches are still filling: a straight line through
            # two such probes says nothing about 10M rows, so the target is not assessed there.
            steady = min(int(r) for r in imp["peak_rss_mb"]) >= 100_000
            value = imp["peak_rss_mb_extrapolated_10m_rows"] if steady else None
            how = "extrapolated from probes of 100k rows or more; measure it with --memory-rows 10000000"
        out["import_peak_rss_mb_at_10m_rows"] = entry(
            value, f"<= {limit} ({how})", value is not None and value <= limit
        )
    if "profile_refresh" in figures:
        prof = figures["profile_refresh"]
        out["profile_ratio"] = entry(
            prof["ratio"],
            f"<= {TARGETS['profile_ratio']}",
            prof["ratio"] is not None and prof["ratio"] <= TARGETS["profile_ratio"],
        )
    if "pooled_refresh" in figures:
        pooled = figures["pooled_refresh"]
        out["pooled_ratio"] = entry(
            pooled["ratio"],
            f"<= {TARGETS['pooled_ratio']}",
            pooled["ratio"] is not None and pooled["ratio"] <= TARGETS["pooled_ratio"],
        )
    if "assignment" in figures:
        out["assignment_s"] = entry(
            figures["assignment"]["seconds"],
            f"<= {TARGETS['assignment_s']}",
            figures["assignment"]["seconds"] <= TARGETS["assignment_s"],
        )
    if "outcomes_report" in figures:
        out["outcomes_report_s"] = entry(
            figures["outcomes_report"]["seconds"],
            f"<= {TARGETS['outcomes_report_s']}",
            figures["outcomes_report"]["seconds"] <= TARGETS["outcomes_report_s"],
        )
    pages = figures.get("pages") or {}
    if pages:
        worst = {
            key: max(pages.items(), key=lambda item: item[1][key]) for key in ("warm_ms_p50", "warm_ms_p95", "cold_ms")
        }
        for key, target in (
            ("warm_ms_p50", "page_warm_ms_p50"),
            ("warm_ms_p95", "page_warm_ms_p95"),
            ("cold_ms", "page_cold_ms"),
        ):
            name, page = worst[key]
            out[f"pages_worst_{key}"] = entry(
                page[key], f"<= {TARGETS[target]} (worst: {name})", page[key] <= TARGETS[target]
            )
        met = [name for name, page in pages.items() if page_met(page)]
        out["pages_met"] = entry(len(met), f"= {len(pages)} pages", len(met) == len(pages))
    rules = figures.get("rules") or {}
    if not rules:
        return out
    for name, rule in rules.items():
        out[f"rule_{name}_ratio"] = entry(
            rule["ratio"],
            f"<= {TARGETS['rule_ratio']}",
            rule["ratio"] is not None and rule["ratio"] <= TARGETS["rule_ratio"],
        )
        out[f"rule_{name}_ms"] = entry(rule["ms_p50"], f"<= {limit_ms}", rule["ms_p50"] <= limit_ms)
    medians = [r["ms_p50"] for r in rules.values()]
    out["rules_median_ms"] = entry(round(_p50(medians), 2), f"<= {limit_ms}", _p50(medians) <= limit_ms)
    return out


def collect(
    spectators: int,
    engines,
    pg_server: str,
    seed: int,
    echo=None,
    out: Path | None = None,
    memory_rows: int | None = None,
    steps: Collection[str] = STEPS,
) -> dict:
    """Run the benchmark and return the figures as one dict (the JSON of ``pilot bench --json``).

    :param out: a file where the report measured so far is written after every step of each engine
        (``"partial": true`` until the end, when the whole report is written there too): a run
        stopped or killed still leaves its figures.
    :param steps: the steps measured (``pilot bench --step``), each engine's district built first.
    """
    from benchmarks.duck import require_duckdb

    require_duckdb()
    echo = echo or Echo()
    engines = [e for e in ENGINE_ORDER if e in set(engines)]
    scale = Scale.of(spectators, memory_rows)
    started = dt.datetime.now(dt.timezone.utc)
    report: dict = {
        "spectators": spectators,
        "transactions": None,
        "seed": seed,
        "date": started.isoformat(timespec="seconds"),
        "machine": _machine(pg_server, engines),
        "scale": {
            "import_rows": scale.import_rows,
            "probe_rows": list(scale.probe_rows),
            "delta_spectators": scale.delta_spectators,
            "recipients": scale.recipients,
            "new_transactions": scale.new_transactions,
            "rule_runs": RULE_RUNS,
        },
        "steps": [step for step in STEPS if step in set(steps)],
        "engines": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="pilot-bench-"))

    def measured() -> None:
        if out is not None:
            _write(out, {**report, "partial": True, "seconds": round(time.perf_counter() - echo.began, 1)})

    try:
        with _sigterm_unwinds():
            for engine in engines:
                figures = report["engines"][engine] = {}
                try:
                    bench_engine(engine, scale, pg_server, seed, folder, echo, figures, measured, report["steps"])
                except Exception as exc:  # report what was measured, and what failed
                    import traceback

                    echo.engine = ""
                    echo(f"{engine}: FAILED: {exc!r}")
                    figures["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    figures["traceback"] = traceback.format_exc()[-4000:]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    first = next((f for f in report["engines"].values() if "demo" in f), None)
    if first:
        report["transactions"] = first["demo"]["transactions"]
    report["targets"] = {engine: assess(engine, figures) for engine, figures in report["engines"].items()}
    report["checks"] = checks(report)
    report["seconds"] = round(time.perf_counter() - echo.began, 1)
    try:
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if spectators < 1_000_000:
        report["notes"] = [
            "DESIGN.md §12's targets are set at 1M spectators / 10M transactions; "
            f"this run has {spectators:,} spectators, so its timings say little about them."
        ]
    if out is not None:
        _write(out, report)
    return report


def _write(path: Path, report: dict) -> None:
    """Replace ``path`` with the report, whole or not at all (written aside, then renamed)."""
    aside = path.with_name(path.name + ".part")
    aside.write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    os.replace(aside, path)


def checks(report: dict) -> dict:
    """Correctness checks of the run: the application's members equal DuckDB's on every engine,
    and the engines agree with each other (compared by pseudonymous keys)."""
    engines = {e: f for e, f in report["engines"].items() if f.get("rules")}
    out = {
        "members_match_duckdb": {e: all(r["members_match"] for r in f["rules"].values()) for e, f in engines.items()},
        "counts_match_duckdb": {e: all(r["counts_match"] for r in f["rules"].values()) for e, f in engines.items()},
        "failed": sorted(e for e, f in report["engines"].items() if "error" in f),
    }
    if len(engines) > 1:
        names = next(iter(engines.values()))["rules"].keys()
        out["members_match_across_engines"] = {
            name: len({f["rules"][name]["members_digest"] for f in engines.values()}) == 1 for name in names
        }
    return out


def run_bench(
    spectators: int,
    engines,
    pg_server: str,
    seed: int,
    as_json: bool,
    out: Path | None = None,
    memory_rows: int | None = None,
    steps: Collection[str] = STEPS,
    as_markdown: bool = False,
) -> dict:
    """The ``pilot bench`` command: measure, then print a table (Markdown with ``as_markdown``) or
    (``as_json``) one JSON object; with ``out``, the report so far is also kept in that file after
    every step (:func:`collect`)."""
    try:
        report = collect(spectators, engines, pg_server, seed, out=out, memory_rows=memory_rows, steps=steps)
    except RuntimeError as exc:
        if "pip install" in str(exc):
            raise click.ClickException(str(exc)) from None
        raise
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo(markdown(report) if as_markdown else text(report))
    if report["checks"]["failed"]:
        sys.exit(1)
    return report


def render_report(path: Path, as_markdown: bool) -> None:
    """``pilot bench --render FILE``: print a report kept by ``--json`` or ``--out`` (whole or
    partial) as the plain-text table, or as Markdown for the README, without measuring anything."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: not a pilot bench report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("engines"), dict):
        raise click.ClickException(f'{path}: not a pilot bench report (no "engines")')
    if "targets" not in report:  # a partial report (--out) is written before the targets are assessed
        report["targets"] = {engine: assess(engine, figures) for engine, figures in report["engines"].items()}
    report.setdefault("checks", checks(report))
    click.echo(markdown(report) if as_markdown else text(report))
