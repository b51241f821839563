"""The DuckDB baseline: the raw pooled tables copied into an in-memory DuckDB, the rules run there.

DuckDB is a ``bench`` extra (``pip install -e '.[bench]'``), never a runtime dependency: it is
imported here only. No extension is installed (no network): the tables travel as CSV files, written
by PostgreSQL's ``COPY ... TO STDOUT`` or by Python's csv module reading SQLite.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from pathlib import Path

import numpy as np

from benchmarks.rules import duckdb_counts_sql, duckdb_sql

# name: (the SELECT on the application's database, DuckDB column types)
TABLES = {
    "tx": (
        "SELECT id, organisation_id, spectator_id, show_id, purchased_at, amount_cents, tickets, circumstance, "
        'category, order_id FROM "transaction"',
        {
            "id": "BIGINT",
            "organisation_id": "INTEGER",
            "spectator_id": "INTEGER",
            "show_id": "INTEGER",
            "purchased_at": "TIMESTAMP",
            "amount_cents": "BIGINT",
            "tickets": "INTEGER",
            "circumstance": "VARCHAR",
            "category": "VARCHAR",
            "order_id": "VARCHAR",
        },
    ),
    "shows": ('SELECT id, discipline FROM "show"', {"id": "INTEGER", "discipline": "VARCHAR"}),
    "spectators": ("SELECT id, key, fsa FROM spectator", {"id": "INTEGER", "key": "VARCHAR", "fsa": "VARCHAR"}),
    "orgs": ("SELECT id, slug FROM organisation", {"id": "INTEGER", "slug": "VARCHAR"}),
}


def require_duckdb():
    """The duckdb module, or a clear error telling how to install the extra."""
    try:
        import duckdb
    except ImportError:
        raise RuntimeError(
            "the benchmark compares against DuckDB, which is not installed: pip install -e '.[bench]'"
        ) from None
    return duckdb


def _export_postgresql(engine, select: str, path: Path) -> None:
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor, path.open("wb") as out:
            with cursor.copy(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)") as copy:
                for data in copy:
                    out.write(data)


def _export_sqlite(engine, select: str, path: Path) -> None:
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        cursor = raw.cursor()
        cursor.execute(select)
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            while rows := cursor.fetchmany(200_000):
                writer.writerows(rows)
        cursor.close()


class DuckBaseline:
    """An in-memory DuckDB holding a copy of one application database's raw tables."""

    def __init__(self, engine, folder: Path, threads: int = 2, memory_limit: str = "6GB"):
        duckdb = require_duckdb()
        self.version = duckdb.__version__
        self.con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
        began = time.perf_counter()
        export = _export_postgresql if engine.dialect.name == "postgresql" else _export_sqlite
        for name, (select, columns) in TABLES.items():
            path = folder / f"duck-{name}.csv"
            export(engine, select, path)
            types = ", ".join(f"'{c}': '{t}'" for c, t in columns.items())
            self.con.execute(
                f"CREATE TABLE {name} AS SELECT * FROM read_csv('{path}', header = false, "
                f"columns = {{{types}}}, auto_detect = false, quote = '\"', escape = '\"')"
            )
            path.unlink()
        self.load_seconds = time.perf_counter() - began
        self.org_ids = dict((slug, id_) for id_, slug in self.con.execute("SELECT id, slug FROM orgs").fetchall())
        self.transactions = self.con.execute("SELECT count(*) FROM tx").fetchone()[0]

    def evaluate(self, name: str, as_of: dt.date) -> tuple[np.ndarray, dict[int, int]]:
        """Members (sorted ids) of rule ``name`` and their count per organisation bought from."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE m AS {duckdb_sql(name, as_of, self.org_ids)}")
        ids = self.con.execute("SELECT spectator_id FROM m ORDER BY spectator_id").fetchnumpy()["spectator_id"]
        counts = dict(self.con.execute(duckdb_counts_sql(as_of)).fetchall())
        return np.asarray(ids, dtype=np.int64), {int(k): int(v) for k, v in counts.items()}

    def members_digest(self) -> str:
        """md5 of the sorted pseudonymous keys of the last evaluated members (table ``m``): comparable
        across engines whatever ids each engine gave its spectators."""
        return self.con.execute(
            "SELECT md5(coalesce(string_agg(key, ',' ORDER BY key), '')) FROM spectators "
            "WHERE id IN (SELECT spectator_id FROM m)"
        ).fetchone()[0]

    def close(self) -> None:
        self.con.close()
