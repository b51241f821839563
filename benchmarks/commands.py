"""`pilot bench`: the benchmark's command, registered by ``init_app``."""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.steps import STEPS


@click.command("bench")
@click.option("--spectators", type=click.IntRange(min=1000), default=1_000_000, show_default=True)
@click.option(
    "--engine",
    "engines",
    type=click.Choice(["postgresql", "sqlite"]),
    multiple=True,
    help="Engines to measure (default: both).",
)
@click.option(
    "--database",
    "pg_server",
    default="postgresql://postgres@127.0.0.1:5432",
    show_default=True,
    help="PostgreSQL server; the benchmark makes and drops its own database there.",
)
@click.option("--seed", type=int, default=2017, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also keep the JSON report in this file, rewritten after every step: a stopped run keeps what it measured.",
)
@click.option(
    "--memory-rows",
    type=click.IntRange(min=1000),
    help="Also import a file of this many lines (rolled back) for its peak memory: 10000000 measures "
    "the 10 M-row target instead of extrapolating it (about 25 minutes more per engine).",
)
@click.option(
    "--step",
    "steps",
    type=click.Choice(STEPS),
    multiple=True,
    help="Measure only this step (repeatable; default: every step). The district is built first; the "
    "profiles and the launch that later steps need are done untimed when not asked for.",
)
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the figures as Markdown tables (the README's).")
@click.option(
    "--render",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Measure nothing: print the report kept in this file (by --json or --out) as a table, or with "
    "--markdown as Markdown.",
)
def bench_command(spectators, engines, pg_server, seed, as_json, out, memory_rows, steps, as_markdown, render):
    """The performance benchmark of DESIGN.md §12, against each engine's own baselines."""
    from benchmarks.bench import render_report, run_bench

    if render is not None:
        render_report(render, as_markdown)
        return
    run_bench(
        spectators=spectators,
        engines=engines or ("postgresql", "sqlite"),
        pg_server=pg_server,
        seed=seed,
        as_json=as_json,
        out=out,
        memory_rows=memory_rows,
        as_markdown=as_markdown,
        **({"steps": steps} if steps else {}),
    )


def init_app(app) -> None:
    """Add ``pilot bench`` to the application's command line."""
    app.cli.add_command(bench_command)
