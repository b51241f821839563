"""The bench's harness: scale, targets, timers, scratch databases and the machine's description."""

from __future__ import annotations

import contextlib
import cProfile
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

SECRET = "pilot-bench-district-secret"
BENCH_ORG = "bench-import"
PROBE_ORG = "bench-probe"
RULE_RUNS = 5
ENGINE_ORDER = ("postgresql", "sqlite")

# DESIGN.md §12, on 2 cores at 1M spectators / 10M transactions.
TARGETS = {
    "import_ratio": 0.5,  # rows/s ≥ 0.5 × the engine's bulk load
    "peak_rss_mb_at_10m_rows": 500,  # memory flat in file size
    "profile_ratio": 0.1,  # incremental ≤ 0.1 × full
    "pooled_ratio": 0.1,  # the pooled pages' facts after a 10% import ≤ 0.1 × their full publication
    "rule_ratio": 0.5,  # ≤ 0.5 × DuckDB on the raw transactions, every rule
    "rule_ms": {"postgresql": 100, "sqlite": 200},
    "assignment_s": 5,  # 500k recipients
    "outcomes_report_s": 10,  # 500k recipients, 2M new transactions
    "page_warm_ms_p50": 150,  # every main page of each role
    "page_warm_ms_p95": 300,
    "page_cold_ms": 1000,  # the first request after an import
}


# --- scale --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big each measured step is for a district of ``spectators`` (the issue's numbers at 1M)."""

    spectators: int
    import_rows: int
    probe_rows: tuple[int, ...]  # the extra, rolled-back import measured beside the main one
    delta_spectators: int
    recipients: int
    new_transactions: int

    @classmethod
    def of(cls, spectators: int, memory_rows: int | None = None) -> "Scale":
        """The sizes for ``spectators``; ``memory_rows``: one more rolled-back import of that many
        lines, for its peak memory (``pilot bench --memory-rows``)."""
        import_rows = min(1_000_000, 2 * spectators)
        recipients = min(500_000, spectators // 2)
        probe_rows = max(1_000, import_rows // 10)
        return cls(
            spectators=spectators,
            import_rows=import_rows,
            probe_rows=tuple(sorted({probe_rows, memory_rows or probe_rows} - {import_rows})),
            delta_spectators=max(10, spectators // 100),
            recipients=recipients,
            new_transactions=4 * recipients,
        )


# --- small helpers ------------------------------------------------------------------------------


class Echo:
    """Progress lines on stderr, stamped with the time since the start of the run."""

    def __init__(self):
        self.began = time.perf_counter()
        self.engine = ""

    def __call__(self, message: str) -> None:
        prefix = f"[{time.perf_counter() - self.began:7.1f}s]" + (f" {self.engine}:" if self.engine else "")
        print(f"{prefix} {message}", file=sys.stderr, flush=True)


class Timer:
    def __enter__(self):
        self.began = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.began
        return False


@contextlib.contextmanager
def _profiled(engine: str, step: str):
    """cProfile of a step into ``$PILOT_BENCH_PROFILE/<engine>-<step>.prof`` when asked."""
    folder = os.environ.get("PILOT_BENCH_PROFILE")
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(str(Path(folder) / f"{engine}-{step}.prof"))


@contextlib.contextmanager
def _sigterm_unwinds():
    """SIGTERM raises SystemExit, so that ``finally`` blocks drop the scratch databases."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _plain_pg(server: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if server.startswith(prefix):
            return "postgresql://" + server[len(prefix) :]
    return server.rstrip("/")


def _sqlalchemy_pg(server: str) -> str:
    return "postgresql+psycopg://" + _plain_pg(server)[len("postgresql://") :]


@contextlib.contextmanager
def scratch_database(engine_name: str, pg_server: str, folder: Path, echo):
    """Yield the URL of an empty database of its own; dropped (or removed) at the end."""
    keep = os.environ.get("PILOT_BENCH_KEEP") == "1"
    if engine_name == "sqlite":
        path = folder / f"pilot_bench_{uuid.uuid4().hex[:10]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            if keep:
                kept = Path(tempfile.gettempdir()) / path.name
                for suffix in ("", "-wal", "-shm"):
                    if Path(f"{path}{suffix}").exists():
                        shutil.move(f"{path}{suffix}", f"{kept}{suffix}")
                echo(f"kept the SQLite database at {kept}")
        return
    import psycopg

    server = _plain_pg(pg_server)
    name = f"pilot_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(server + "/postgres", autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach PostgreSQL at {server}: {exc}".strip()) from None
    try:
        yield f"{_sqlalchemy_pg(pg_server)}/{name}"
    finally:
        if keep:
            echo(f"kept the PostgreSQL database {server}/{name}")
        else:
            with psycopg.connect(server + "/postgres", autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _machine(pg_server: str, engines) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None
            )
        with open("/proc/meminfo") as meminfo:
            info["memory_gb"] = round(int(meminfo.readline().split()[1]) / 1024 / 1024, 1)
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    commit = _commit()
    if commit:
        info["commit"] = commit
    try:
        import duckdb

        info["duckdb"] = duckdb.__version__
    except ImportError:
        pass
    if "postgresql" in engines:
        try:
            import psycopg

            with psycopg.connect(_plain_pg(pg_server) + "/postgres", connect_timeout=10) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
                info["postgresql_settings"] = {
                    name: conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in (
                        "shared_buffers",
                        "work_mem",
                        "maintenance_work_mem",
                        "effective_cache_size",
                        "max_parallel_workers_per_gather",
                        "jit",
                        "synchronous_commit",
                    )
                }
        except Exception as exc:  # the engine run reports the real error
            info["postgresql"] = f"unreachable: {exc}"
    return info


def _commit() -> str | None:
    """The code measured: the checkout's commit, marked when files differ from it (None outside git)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    if not commit:
        return None
    return f"{commit} with uncommitted changes" if changed else commit


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None
