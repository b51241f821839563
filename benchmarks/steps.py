"""The bench's measured steps on one engine: district, import, profiles, rules, assignment, outcomes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import import_baseline
from benchmarks.harness import (
    BENCH_ORG,
    PROBE_ORG,
    RULE_RUNS,
    SECRET,
    Scale,
    Timer,
    _ms,
    _p50,
    _profiled,
    _ratio,
)

# --- the district -------------------------------------------------------------------------------


def build_district(db, spectators: int, seed: int, echo) -> dict:
    """The demo district's pooled data only (no users, no feature demo steps), plus the bench's
    two organisations; returns counts and seconds."""
    from core import demo, sql
    from core.models import Organisation

    with Timer() as timer:
        totals = demo._load(db, spectators, seed, SECRET, lambda m: echo(f"demo: {m}"), time.perf_counter())
    with db.session() as session:
        session.add_all(
            [
                Organisation(slug=BENCH_ORG, name="Organisation du banc d'essai", kind="venue"),
                Organisation(slug=PROBE_ORG, name="Sonde mémoire du banc d'essai", kind="venue"),
            ]
        )
        session.commit()
    figures = {"seconds": round(timer.seconds, 2), **{k: int(v) for k, v in totals.items()}}
    if sql.stages_through_copy(db.engine):  # PostgreSQL: SQLite has nothing to vacuum
        # A district at rest has been vacuumed by autovacuum long since: its pages' hint bits set, its
        # visibility map written. Without this the import would run on tables never vacuumed since
        # their bulk load (and beside the autovacuum they call for), and its baseline on the tables
        # it vacuums before reloading them (benchmarks.import_baseline.remove): not the same tables.
        with Timer() as vacuum:
            sql.vacuum(db.engine, options="ANALYZE")
        figures["vacuum_s"] = round(vacuum.seconds, 2)
        echo(f"district vacuumed, as autovacuum keeps a district at rest ({vacuum.seconds:.1f} s, not timed)")
    return figures


def _analyze(db, *tables: str) -> None:
    from core import sql

    with db.engine.connect() as connection:
        sql.refresh_statistics(connection, tables)
        connection.commit()


def existing_buyers(db, count: int, stride: int = 1, offset: int = 0):
    """Up to ``count`` spectators of the district as an export would name them (their first contact
    with an e-mail), every ``stride``-th spectator id; returns (Buyers, spectator ids)."""
    from sqlalchemy import text

    from benchmarks.exportfile import Buyers

    rows = []
    with db.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.spectator_id, c.last_name, c.first_name, c.postal_code, c.email FROM contact c "
                "WHERE c.id IN (SELECT min(id) FROM contact WHERE email IS NOT NULL GROUP BY spectator_id) "
                "AND c.spectator_id % :stride = :offset ORDER BY c.spectator_id LIMIT :n"
            ),
            {"stride": stride, "offset": offset, "n": count},
        ).all()
    buyers = Buyers(
        [r[1] or "" for r in rows], [r[2] or "" for r in rows], [r[3] or "" for r in rows], [r[4] for r in rows]
    )
    return buyers, [r[0] for r in rows]


# --- import -------------------------------------------------------------------------------------

# The steps of each engine, in the order they run (pilot bench --step): each measures its figures
# on the district that the steps before it left.
STEPS = ("import", "profiles", "rules", "launch", "outcomes", "pages")
READ_PROFILES = frozenset({"rules", "launch", "outcomes", "pages"})  # steps that need the profiles refreshed
READ_LAUNCH = frozenset({"launch", "outcomes", "pages"})  # steps that need the campaign launched
STAGE_COLUMNS = 21
TEN_MILLION = 10_000_000  # the rows of the import's memory target (DESIGN.md §12)


def bulk_load_baseline(db, path: Path) -> tuple[int, float]:
    """The engine's own bulk load of ``path`` into one unindexed text table, for scale: (rows, seconds).
    (The import's baseline proper is :mod:`benchmarks.import_baseline`.)"""
    import csv

    columns = ", ".join(f"c{i} text" for i in range(STAGE_COLUMNS))
    with db.engine.connect() as connection:
        raw = connection.connection.driver_connection
        connection.exec_driver_sql("DROP TABLE IF EXISTS bench_stage")
        connection.exec_driver_sql(f"CREATE TABLE bench_stage ({columns})")
        connection.commit()
        if db.engine.dialect.name == "postgresql":
            with Timer() as timer:
                with raw.cursor() as cursor, path.open("rb") as handle:
                    with cursor.copy(
                        "COPY bench_stage FROM STDIN WITH (FORMAT csv, DELIMITER ';', HEADER true, ENCODING 'UTF8')"
                    ) as copy:
                        while chunk := handle.read(1 << 20):
                            copy.write(chunk)
                connection.commit()
        else:
            marks = ", ".join("?" * STAGE_COLUMNS)
            with Timer() as timer:
                with path.open(newline="", encoding="utf-8") as handle:
                    reader = csv.reader(handle, delimiter=";")
                    next(reader)
                    cursor = raw.cursor()
                    cursor.executemany(f"INSERT INTO bench_stage VALUES ({marks})", reader)
                    cursor.close()
                connection.commit()
        rows = connection.exec_driver_sql("SELECT count(*) FROM bench_stage").scalar()
        connection.exec_driver_sql("DROP TABLE bench_stage")
        connection.commit()
    return int(rows), timer.seconds


def timed_import(db, path: Path, slug: str, engine: str, step: str):
    """``import_file`` of ``path`` for organisation ``slug``, committed: (ImportResult, seconds)."""
    from sqlalchemy import select

    from core.importing import import_file
    from core.models import Organisation

    with db.session() as session:
        org = session.scalar(select(Organisation).where(Organisation.slug == slug))
        with Timer() as timer, _profiled(engine, step):
            result = import_file(session, path, org, secret=SECRET, filename=path.name)
            session.commit()
    return result, timer.seconds


def probe_import_memory(url: str, path: Path, slug: str, commit: bool = False) -> dict:
    """Run ``benchmarks.import_probe`` in a process of its own (the import, and its commit when
    ``commit``) and return what it printed: rows, seconds, peak resident memory."""
    env = dict(os.environ, PILOT_BENCH_SECRET=SECRET)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.import_probe", url, str(path), slug, *(["--commit"] if commit else [])],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the memory probe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_figures(db, url: str, scale: Scale, seed: int, folder: Path, engine: str, echo) -> dict:
    from benchmarks.exportfile import new_buyers, write_sales_export

    # a quarter as many buyers as lines: half of them already in the district, half new
    pool_size = max(10, scale.import_rows // 4)
    known, _ids = existing_buyers(db, pool_size // 2, stride=3, offset=1)
    buyers = known + new_buyers(pool_size - len(known), "m", seed)
    path = folder / "export-main.csv"
    with Timer() as writing:
        info = write_sales_export(
            path, scale.import_rows, buyers, seed=seed, start=dt.date(2024, 1, 1), end=dt.date(2026, 10, 31)
        )
    echo(
        f"import: wrote {info['rows']:,} lines ({info['bytes'] / 1e6:.0f} MB, {info['buyers']:,} buyers) "
        f"in {writing.seconds:.1f} s; loading it into an unindexed text table, for scale..."
    )
    unindexed_rows, unindexed_s = bulk_load_baseline(db, path)
    unindexed_rate = unindexed_rows / unindexed_s
    echo(
        f"import: unindexed load {unindexed_rows:,} rows in {unindexed_s:.2f} s ({unindexed_rate:,.0f} rows/s); "
        "importing (in a process of its own, for its peak memory)..."
    )
    before = import_baseline.marks(db)
    main = probe_import_memory(url, path, BENCH_ORG, commit=True)
    seconds = main["seconds"]
    rows_per_s = main["rows"] / seconds
    echo(
        f"import: {main['rows']:,} rows in {seconds:.2f} s ({rows_per_s:,.0f} rows/s); {main['imported']:,} "
        f"imported, {main['spectators_new']:,} new spectators; peak {main['peak_rss_mb']:.0f} MB; CPU "
        f"{main['client_cpu_s']:.1f} s here"
        + (f", {main['server_cpu_s']:.1f} s in the server" if main.get("server_cpu_s") is not None else "")
        + "; "
        "bulk-loading the rows it wrote into the same tables..."
    )
    captured = import_baseline.capture(db, before, main["batch_id"], folder / "import-baseline")
    try:
        import_baseline.remove(db, before, main["batch_id"])
        baseline_s = import_baseline.reload(db, captured)
    finally:
        import_baseline.discard(captured)
    baseline_rate = main["rows"] / baseline_s
    echo(
        f"import: baseline {sum(captured.counts.values()):,} rows of {len(captured.counts)} tables for "
        f"{main['rows']:,} lines in {baseline_s:.2f} s ({baseline_rate:,.0f} lines/s); ratio "
        f"{rows_per_s / baseline_rate:.3f} (to the unindexed load {rows_per_s / unindexed_rate:.3f})"
    )
    path.unlink()

    # More files (rolled back): two sizes show whether memory grows with the file; one of 10 M lines
    # (pilot bench --memory-rows) measures the target itself.
    probes = {main["rows"]: main}
    for size in scale.probe_rows:
        probe_path = folder / f"export-probe-{size}.csv"
        pool = max(10, size // 4)
        known, _ids = existing_buyers(db, pool // 2, stride=5, offset=2)
        write_sales_export(
            probe_path,
            size,
            known + new_buyers(pool - len(known), f"p{size}-", seed + 1),
            seed=seed + size,
            start=dt.date(2024, 1, 1),
            end=dt.date(2026, 10, 31),
            order_prefix="P",
        )
        probes[size] = probe_import_memory(url, probe_path, PROBE_ORG)
        probe_path.unlink()
        echo(
            f"import: memory probe {size:,} rows: peak {probes[size]['peak_rss_mb']:.0f} MB "
            f"(before the import {probes[size]['rss_before_mb']:.0f} MB), {probes[size]['seconds']:.1f} s"
        )
    sizes = sorted(probes)
    # the straight line through the two largest sizes below 10 M (the main import and the tenth of it
    # at least); a bounded curve lies under it
    below = [r for r in sizes if r < TEN_MILLION]
    (r1, p1), (r2, p2) = [(r, probes[r]["peak_rss_mb"]) for r in below[-2:]]
    slope = (p2 - p1) / (r2 - r1) if r2 != r1 else 0.0  # MB per row
    measured = [probes[r]["peak_rss_mb"] for r in sizes if r >= TEN_MILLION]
    return {
        "rows": main["rows"],
        "rows_per_s": round(rows_per_s),
        "baseline_rows_per_s": round(baseline_rate),
        "ratio": round(rows_per_s / baseline_rate, 4),
        "seconds": round(seconds, 2),
        "baseline_seconds": round(baseline_s, 2),
        "baseline": ("COPY FROM STDIN" if engine == "postgresql" else "sqlite3 executemany")
        + " of the rows the import wrote, into the same tables (same indexes, constraints, foreign keys), "
        "one transaction, committed",
        "baseline_rows_by_table": captured.counts,
        "unindexed_rows_per_s": round(unindexed_rate),
        "unindexed_seconds": round(unindexed_s, 2),
        "ratio_to_unindexed": round(rows_per_s / unindexed_rate, 4),
        "unindexed": "COPY FROM STDIN of the file into one unindexed text table"
        if engine == "postgresql"
        else "csv.reader + executemany of the file into one unindexed text table",
        "measured": "import_file + commit, in a process of its own (its startup not counted)",
        # Where the import's seconds went: the importer's own CPU, the PostgreSQL backend's (a server
        # on this machine), the rest waiting (I/O, or a core busy elsewhere).
        "client_cpu_s": main.get("client_cpu_s"),
        "server_cpu_s": main.get("server_cpu_s"),
        "imported": main["imported"],
        "duplicates": main["duplicates"],
        "spectators_new": main["spectators_new"],
        "file_mb": round(info["bytes"] / 1e6, 1),
        "peak_rss_mb": {str(r): probes[r]["peak_rss_mb"] for r in sizes},
        "rss_before_import_mb": {str(r): probes[r]["rss_before_mb"] for r in sizes},
        "probe_seconds": {str(r): probes[r]["seconds"] for r in sizes},
        "rss_mb_per_million_rows": round(slope * 1_000_000, 1),
        "peak_rss_mb_extrapolated_10m_rows": round(p2 + slope * (TEN_MILLION - r2), 1),
        # the peak of a probe of 10 M lines or more, when one ran: the target measured, not extrapolated
        "peak_rss_mb_measured_10m_rows": max(measured) if measured else None,
    }


# --- profiles -----------------------------------------------------------------------------------


def ready_profiles(db, echo) -> None:
    """The profiles that the rules, the launch and the pages read, when their own step is not
    measured (``pilot bench --step``): one full refresh, untimed."""
    from segments.profiles import refresh_profiles

    echo("profiles: full refresh (not measured)...")
    with db.session() as session:
        refresh_profiles(session)
        session.commit()
    _analyze(db)


def profile_figures(db, scale: Scale, seed: int, folder: Path, engine: str, echo) -> dict:
    from sqlalchemy import func, select

    from benchmarks.exportfile import write_sales_export
    from core.models import Transaction
    from segments.profiles import refresh_after_import, refresh_profiles

    echo("profiles: full refresh...")
    with db.session() as session, Timer() as full, _profiled(engine, "profiles-full"):
        written_full = refresh_profiles(session)
        session.commit()
    echo(f"profiles: full refresh wrote {written_full:,} rows in {full.seconds:.2f} s")
    with Timer() as analyze:
        _analyze(db)

    today = dt.date.today()
    buyers, ids = existing_buyers(
        db, scale.delta_spectators, stride=max(1, scale.spectators // scale.delta_spectators // 2), offset=0
    )
    path = folder / "export-delta.csv"
    write_sales_export(
        path,
        2 * len(buyers),
        buyers,
        seed=seed + 7,
        start=today - dt.timedelta(days=30),
        end=today - dt.timedelta(days=1),
        shows=40,
        order_prefix="D",
    )
    result, delta_import_s = timed_import(db, path, BENCH_ORG, engine, "import-delta")
    path.unlink()
    with db.session() as session:
        touched = session.scalar(
            select(func.count(func.distinct(Transaction.spectator_id))).where(Transaction.batch_id == result.batch_id)
        )
    echo(f"profiles: a {result.rows:,}-line import touched {touched:,} spectators; incremental refresh...")
    with db.session() as session, Timer() as incremental, _profiled(engine, "profiles-incremental"):
        written_incremental = refresh_after_import(session, result.batch_id)
        session.commit()
    echo(
        f"profiles: incremental refresh wrote {written_incremental:,} rows in {incremental.seconds:.2f} s "
        f"(ratio {incremental.seconds / full.seconds:.3f})"
    )
    return {
        "incremental_s": round(incremental.seconds, 3),
        "full_s": round(full.seconds, 3),
        "ratio": _ratio(incremental.seconds, full.seconds),
        "profiles": written_full,
        "spectators_touched": int(touched or 0),
        "incremental_rows": written_incremental,
        "delta_import_rows": result.rows,
        "delta_import_s": round(delta_import_s, 3),
        "analyze_s": round(analyze.seconds, 2) if engine == "postgresql" else None,
    }


# --- rules --------------------------------------------------------------------------------------


def rule_figures(db, folder: Path, engine: str, echo) -> tuple[dict, dict]:
    from sqlalchemy import func, select

    from benchmarks.duck import DuckBaseline
    from benchmarks.rules import RULES
    from core.models import Organisation, Transaction
    from segments.preview import members, preview
    from segments.profiles import profiles_as_of

    echo("rules: copying the raw tables into DuckDB...")
    duck = DuckBaseline(db.engine, folder)
    with db.session() as session:
        as_of = profiles_as_of(session)
        slugs = dict(session.execute(select(Organisation.slug, Organisation.id)).all())
        transactions = session.scalar(select(func.count()).select_from(Transaction))
    echo(f"rules: DuckDB holds {duck.transactions:,} transactions (loaded in {duck.load_seconds:.1f} s); as of {as_of}")
    figures = {}
    try:
        for bench_rule in RULES:
            name, rule = bench_rule.name, bench_rule.rule

            def app_run():
                with db.session() as session:
                    t0 = time.perf_counter()
                    found = members(session, rule, as_of)
                    t1 = time.perf_counter()
                    summary = preview(session, rule, as_of)
                    t2 = time.perf_counter()
                    session.rollback()
                return found, summary, t1 - t0, t2 - t1

            def duck_run():
                t0 = time.perf_counter()
                ids, counts = duck.evaluate(name, as_of)
                return ids, counts, time.perf_counter() - t0

            app_members, app_preview, _m, _p = app_run()  # warm-up, and the answer compared below
            duck_ids, duck_counts, _d = duck_run()
            digest = duck.members_digest()
            member_times, preview_times, duck_times = [], [], []
            for _ in range(RULE_RUNS):
                _found, _summary, m_s, p_s = app_run()
                member_times.append(m_s)
                preview_times.append(p_s)
            for _ in range(RULE_RUNS):
                duck_times.append(duck_run()[2])
            totals = [m + p for m, p in zip(member_times, preview_times)]
            app_ids = np.asarray(app_members, dtype=np.int64)
            members_match = bool(np.array_equal(app_ids, duck_ids))
            mismatched = []
            for entry in app_preview["by_organisation"]:
                expected = duck_counts.get(slugs.get(entry["organisation"]), 0)
                if entry["spectators"] is not None and entry["spectators"] != expected:
                    mismatched.append(
                        {"organisation": entry["organisation"], "app": entry["spectators"], "duckdb": expected}
                    )
            ms, duck_ms = _p50(totals) * 1000, _p50(duck_times) * 1000
            figures[name] = {
                "members": int(app_ids.size),
                "ms_p50": round(ms, 2),
                "duckdb_ms_p50": round(duck_ms, 2),
                "ratio": _ratio(ms, duck_ms),
                "members_ms_p50": _ms(_p50(member_times)),
                "preview_ms_p50": _ms(_p50(preview_times)),
                "runs_ms": [_ms(t) for t in totals],
                "duckdb_runs_ms": [_ms(t) for t in duck_times],
                "duckdb_members": int(duck_ids.size),
                "members_match": members_match,
                "counts_match": not mismatched,
                "members_digest": digest,
            }
            if not members_match:
                only_app = np.setdiff1d(app_ids, duck_ids)
                only_duck = np.setdiff1d(duck_ids, app_ids)
                figures[name]["mismatch"] = {
                    "only_app": int(only_app.size),
                    "only_duckdb": int(only_duck.size),
                    "examples_app": only_app[:5].tolist(),
                    "examples_duckdb": only_duck[:5].tolist(),
                }
            if mismatched:
                figures[name]["counts_mismatch"] = mismatched[:10]
            echo(
                f"rules: {name}: {app_ids.size:,} members, {ms:.1f} ms (members {_p50(member_times) * 1000:.1f} + "
                f"preview {_p50(preview_times) * 1000:.1f}) vs DuckDB {duck_ms:.1f} ms; "
                f"{'same members' if members_match else 'MEMBERS DIFFER'}"
                f"{'' if not mismatched else ', COUNTS DIFFER'}"
            )
    finally:
        duck.close()
    context = {
        "as_of": as_of.isoformat(),
        "transactions": int(transactions),
        "duckdb_load_s": round(duck.load_seconds, 2),
        "duckdb_version": duck.version,
    }
    return figures, context


# --- assignment and outcomes --------------------------------------------------------------------


def ready_campaign(db, recipients: int, now: dt.datetime) -> int:
    """A campaign ready to launch whose snapshot holds ``recipients`` contactable spectators, every
    organisation approving; returns its id. Not timed: the steps before the launch."""
    from sqlalchemy import Integer, func, insert, literal, select

    from campaigns import promotions
    from campaigns import services as campaign_services
    from core.models import Organisation
    from segments.models import (
        Segment,
        SegmentSnapshot,
        SegmentVersion,
        SnapshotMember,
        SpectatorProfile,
    )

    with db.session() as session:
        segment = Segment(name="Banc d'essai : joignables")
        session.add(segment)
        session.flush()
        version = SegmentVersion(
            segment_id=segment.id, number=1, rule={"field": "contactable", "op": "is", "value": True}
        )
        session.add(version)
        session.flush()
        snapshot = SegmentSnapshot(segment_version_id=version.id, as_of=now.date(), size=0)
        session.add(snapshot)
        session.flush()
        chosen = (
            select(SpectatorProfile.spectator_id)
            .where(SpectatorProfile.contactable.is_(True))
            .order_by(SpectatorProfile.spectator_id)
            .limit(recipients)
            .subquery()
        )
        session.execute(
            insert(SnapshotMember).from_select(
                ["snapshot_id", "spectator_id"], select(literal(snapshot.id, Integer), chosen.c.spectator_id)
            )
        )
        snapshot.size = session.scalar(
            select(func.count()).select_from(SnapshotMember).where(SnapshotMember.snapshot_id == snapshot.id)
        )
        org_ids = list(session.scalars(select(Organisation.id).where(Organisation.slug.not_in([BENCH_ORG, PROBE_ORG]))))
        promotion = promotions.create_promotion(
            session,
            name_fr="Banc d'essai",
            name_en="Benchmark",
            message_fr="20 % sur votre prochain spectacle",
            message_en="20% off your next show",
            offer_kind="percent_off",
            offer_value=20,
            organisation_ids=org_ids,
            disciplines=["theatre", "dance"],
            valid_from=now.date(),
            valid_until=now.date() + dt.timedelta(days=90),
            code_strategy="unique",
            average_discount_cents=900,
            cost_per_contact_cents=5,
        )
        campaign = campaign_services.create_campaign(
            session,
            name="Banc d'essai",
            objective="cross_sell",
            segment_id=segment.id,
            promotion_id=promotion.id,
            arms=campaign_services.make_arms(20, [80]),
            approval_deadline=now + dt.timedelta(hours=1),
            planned_launch_at=now + dt.timedelta(hours=2),
            window_days=30,
            primary_metric="conversion",
            secondary_metrics=["revenue", "tickets", "cross_sell", "redemption"],
        )
        approvals = campaign_services.submit_for_approval(session, campaign, snapshot=snapshot, now=now)
        for approval in approvals:
            campaign_services.decide_approval(session, approval, "approve", now=now)
        campaign_services.mark_ready(session, campaign, now=now)
        session.commit()
        return campaign.id


def assignment_figures(db, scale: Scale, seed: int, engine: str, echo) -> tuple[dict, int]:
    from campaigns.models import Campaign
    from core.models import utcnow
    from experiments import reports, services

    now = utcnow().replace(microsecond=0)
    echo(f"assignment: preparing a campaign of {scale.recipients:,} contactable spectators (not timed)...")
    with Timer() as preparing:
        campaign_id = ready_campaign(db, scale.recipients, now)
    echo(f"assignment: ready in {preparing.seconds:.1f} s; launching...")
    steps: dict = {}
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        launch_at = utcnow().replace(microsecond=0)
        with Timer() as timer, _profiled(engine, "launch"):
            experiment = services.launch(session, campaign, now=launch_at, seed=seed, timings=steps)
            session.commit()
        experiment_id, recipients = experiment.id, experiment.recipients
        # the first report, as the launch page stores it after the launch (experiments.views.launch);
        # without it the first reader of the report would build it
        with Timer() as reporting:
            reports.refresh_report(session, experiment)
            session.commit()
    echo(
        f"assignment: {recipients:,} recipients launched in {timer.seconds:.2f} s ({steps}); "
        f"the first report stored in {reporting.seconds:.1f} s (not timed)"
    )
    return {
        "recipients": int(recipients),
        "seconds": round(timer.seconds, 3),
        "steps_s": steps,
        "prepare_s": round(preparing.seconds, 2),
        "includes": "experiments.services.launch: eligibility, assignment, codes, recipients, contact history, "
        "lists and the sample-ratio check (steps_s: seconds per step)",
    }, experiment_id


def _stamps(seconds_since_epoch: np.ndarray, as_text: bool) -> list[str]:
    text = np.datetime_as_string(seconds_since_epoch.astype("datetime64[s]"), unit="s")
    text = np.char.replace(text, "T", " ")
    if as_text:  # SQLAlchemy's storage format on SQLite
        text = np.char.add(text, ".000000")
    return text.tolist()


def insert_new_transactions(db, experiment_id: int, count: int, seed: int) -> dict:
    """``count`` purchases in the experiment's window at participating organisations: half by
    recipients (a tenth of the test arm's using their code, a few codes used by someone else), half
    by anybody; bulk-inserted the engine's fastest way, not through the importer."""
    from sqlalchemy import select

    from core import sql
    from core.models import SALE_COLUMNS, Show, Spectator
    from experiments.models import Experiment, Recipient
    from experiments.services import bulk_insert

    rng = np.random.default_rng([seed, 31])
    with db.session() as session:
        experiment = session.get(Experiment, experiment_id)
        org_ids = [o.id for o in experiment.campaign.promotion.organisations]
        launched, window_days = experiment.launched_at, experiment.window_days
        rec = session.execute(
            select(Recipient.spectator_id, Recipient.code)
            .where(Recipient.experiment_id == experiment_id)
            .order_by(Recipient.spectator_id)
        ).all()
        everyone = np.fromiter(session.scalars(select(Spectator.id).order_by(Spectator.id)), dtype=np.int64)
        shows = session.execute(
            select(Show.id, Show.organisation_id).where(Show.organisation_id.in_(org_ids)).order_by(Show.id)
        ).all()
        as_text = sql.stores_text_datetimes(session)
        rec_spec = np.array([r[0] for r in rec], dtype=np.int64)
        rec_code = np.array([r[1] for r in rec], dtype=object)
        show_ids = np.array([s[0] for s in shows], dtype=np.int64)
        show_org = np.array([s[1] for s in shows], dtype=np.int64)
        by_recipient = rng.random(count) < 0.5
        which = rng.integers(0, len(rec_spec), size=count)
        buyer = np.where(by_recipient, rec_spec[which], everyone[rng.integers(0, len(everyone), size=count)])
        pick = rng.integers(0, len(show_ids), size=count)
        tickets = rng.integers(1, 5, size=count)
        amount = rng.integers(20, 120, size=count) * 100 * tickets
        promo_use = by_recipient & (rng.random(count) < 0.1)
        code = np.where(promo_use, rec_code[which], None)
        leaked = (~by_recipient) & (rng.random(count) < 0.001)
        code = np.where(leaked, rec_code[rng.integers(0, len(rec_code), size=count)], code)
        circumstance = np.where(code != None, "promotion", "regular")  # noqa: E711  (elementwise)
        epoch = int(launched.replace(tzinfo=dt.timezone.utc).timestamp())
        moments = epoch + rng.integers(0, window_days * 86_400, size=count)
        numbers = [f"{i:09d}" for i in range(count)]
        rows = zip(
            show_org[pick].tolist(),
            buyer.tolist(),
            show_ids[pick].tolist(),
            _stamps(moments, as_text),
            amount.tolist(),
            tickets.tolist(),
            circumstance.tolist(),
            ["single"] * count,
            ["web"] * count,
            code.tolist(),
            ["N" + n for n in numbers],
            ["bench-new-" + n for n in numbers],
        )
        with Timer() as timer:
            bulk_insert(
                session,
                "transaction",
                SALE_COLUMNS,
                rows,
            )
            session.commit()
    _analyze(db, "transaction")
    return {
        "rows": count,
        "insert_s": round(timer.seconds, 2),
        "by_recipients": int(by_recipient.sum()),
        "with_codes": int((code != None).sum()),  # noqa: E711 (an element-wise SQL/numpy comparison)
    }


def outcome_figures(db, experiment_id: int, scale: Scale, seed: int, engine: str, echo) -> dict:
    from experiments.models import Experiment
    from experiments.outcomes import match_outcomes
    from experiments.reports import refresh_report

    echo(f"outcomes: inserting {scale.new_transactions:,} new transactions in the window (not timed)...")
    inserted = insert_new_transactions(db, experiment_id, scale.new_transactions, seed)
    echo(f"outcomes: inserted in {inserted['insert_s']:.1f} s; matching and reporting...")
    with db.session() as session:
        experiment = session.get(Experiment, experiment_id)
        report_at = experiment.window_end + dt.timedelta(days=1)
        with Timer() as total, _profiled(engine, "outcomes"):
            with Timer() as matching:
                summary = match_outcomes(session, experiment, now=report_at)
            with Timer() as reporting:
                snapshot = refresh_report(session, experiment, now=report_at, kind="final")
            session.commit()
        recipients = experiment.recipients
        comparisons = len(snapshot.data.get("comparisons", []))
    echo(
        f"outcomes: matched {summary.outcomes:,} outcomes in {matching.seconds:.2f} s, report in "
        f"{reporting.seconds:.2f} s"
    )
    return {
        "recipients": int(recipients),
        "transactions": scale.new_transactions,
        "seconds": round(total.seconds, 3),
        "match_s": round(matching.seconds, 3),
        "report_s": round(reporting.seconds, 3),
        "outcomes": summary.outcomes,
        "converted": summary.converted,
        "redeemed": summary.redeemed,
        "leaked": summary.leaked,
        "report_comparisons": comparisons,
        "insert_s": inserted["insert_s"],
    }
