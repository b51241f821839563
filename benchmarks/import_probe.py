"""Peak memory of one import, measured in a process of its own (run by ``benchmarks.bench``).

``python -m benchmarks.import_probe URL FILE ORG_SLUG [--commit]`` imports FILE for the organisation
ORG_SLUG into the database at URL, commits it (``--commit``: the seconds then include the commit)
or rolls it back (the probe leaves nothing behind), and prints one JSON object: rows, seconds, the
resident memory before the import and the process's peak (VmHWM), and where the time went: this
process's CPU seconds and, on a PostgreSQL server of the same machine, its backend's (read from
/proc; None elsewhere), the rest being waits. A large file is read in a child process
(``core.importing.ahead``): its CPU seconds and peak memory are reported apart and counted in the
totals (the peak as the sum of both processes' peaks, an upper bound on what they held at once).
With ``PILOT_BENCH_PROFILE=DIR`` a cProfile of the import is written to DIR.
The district secret comes from the environment (``PILOT_BENCH_SECRET``), never from the command line.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds of process ``pid`` (this one by default), None when unreadable."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> tuple[float, float]:
    """CPU seconds and peak resident MB of this process's ended children (the import's reader)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _backend_pid(session) -> int | None:
    """The PostgreSQL backend serving ``session`` when the server runs on this machine, else None."""
    from sqlalchemy import text

    from core import sql

    if not sql.stages_through_copy(session):
        return None  # SQLite runs in this process: its work is in this process's CPU seconds
    host = session.get_bind().url.host or "localhost"
    if host not in ("localhost", "127.0.0.1", "::1"):
        return None
    pid = int(session.execute(text("SELECT pg_backend_pid()")).scalar())
    return pid if _cpu_seconds(pid) is not None else None


def main(argv: list[str]) -> int:
    commit = "--commit" in argv
    url, path, slug = [a for a in argv if a != "--commit"]
    from sqlalchemy import select

    from core import create_app
    from core.db import get_db
    from core.importing import import_file
    from core.models import Organisation

    secret = os.environ["PILOT_BENCH_SECRET"]
    with tempfile.TemporaryDirectory(prefix="pilot-probe-") as instance:
        app = create_app(
            {"DATABASE_URL": url, "INSTANCE_PATH": instance, "SECRET_KEY": "bench", "DISTRICT_SECRET": secret}
        )
        with app.app_context():
            db = get_db(app)
            with db.session() as session:
                org = session.scalar(select(Organisation).where(Organisation.slug == slug))
                before = _status_mb("VmRSS")
                backend = _backend_pid(session)
                server_began, cpu_began = _cpu_seconds(backend) if backend else None, _cpu_seconds()
                profiler = None
                if os.environ.get("PILOT_BENCH_PROFILE"):
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                began = time.perf_counter()
                result = import_file(session, path, org, secret=secret, filename=os.path.basename(path))
                if commit:
                    session.commit()
                else:
                    session.flush()
                seconds = time.perf_counter() - began
                cpu = _cpu_seconds() - cpu_began
                server = _cpu_seconds(backend) - server_began if backend and server_began is not None else None
                if profiler is not None:
                    profiler.disable()
                    folder = os.environ["PILOT_BENCH_PROFILE"]
                    os.makedirs(folder, exist_ok=True)
                    profiler.dump_stats(os.path.join(folder, f"import-{result.rows}-{os.getpid()}.prof"))
                if not commit:
                    session.rollback()
            db.engine.dispose()
    reader_cpu, reader_peak = _children()
    peak = _status_mb("VmHWM")
    print(
        json.dumps(
            {
                "rows": result.rows,
                "imported": result.imported,
                "duplicates": result.duplicates,
                "spectators_new": result.spectators_new,
                "batch_id": result.batch_id if commit else None,
                "seconds": round(seconds, 4),
                "client_cpu_s": round(cpu + reader_cpu, 3),
                "reader_cpu_s": round(reader_cpu, 3),
                "server_cpu_s": round(server, 3) if server is not None else None,
                "rss_before_mb": round(before, 1),
                "peak_rss_mb": round(peak + reader_peak, 1),
                "reader_peak_rss_mb": round(reader_peak, 1),
                "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
