"""The import's baseline: the engine's own bulk load of the rows an import wrote, into the same tables.

Issue 18 defines it: the same parsed rows, into the same tables, with the same indexes and
constraints, by PostgreSQL's ``COPY`` or SQLite's ``executemany``. The bench imports a file
(committed), then :func:`capture` reads back every row that import wrote (its batch, venues, shows,
new spectators, contacts, consents and transactions, ids included) into a scratch file,
:func:`remove` deletes them (not timed; PostgreSQL vacuums the tables so that the reload finds the
space the import found), and :func:`reload` loads them again in one transaction, committed and
timed: the database ends as the import left it, and both loads paid every index, unique check and
foreign key. The reload runs on pages the import warmed, so if anything it flatters the baseline.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

# In foreign-key order: each table's rows reference only tables before it (or rows already there).
TABLES = ("import_batch", "venue", "show", "spectator", "contact", "consent", "transaction")
CHUNK = 10_000  # rows per pickled chunk on SQLite, per executemany


@dataclass
class Marks:
    """The highest id of each table before the import: rows above it are the import's."""

    ids: dict[str, int] = field(default_factory=dict)


def marks(db) -> Marks:
    """The highest id of each of :data:`TABLES` now (0 when empty)."""
    with db.engine.connect() as connection:
        quote = connection.dialect.identifier_preparer.quote
        return Marks(
            {
                name: int(connection.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {quote(name)}").scalar())
                for name in TABLES
            }
        )


@dataclass
class Captured:
    """The rows an import wrote, table by table, in a scratch folder."""

    folder: Path
    columns: dict[str, list[str]]
    counts: dict[str, int]
    copies: bool  # the engine's bulk load is COPY (PostgreSQL), else the driver's executemany (SQLite)

    def path(self, table: str) -> Path:
        return self.folder / f"{table}.{'copy' if self.copies else 'pickle'}"


def _where(table: str, mark: Marks, batch_id: int) -> str:
    if table == "import_batch":
        return f"id = {int(batch_id)}"
    return f"id > {int(mark.ids[table])}"


def capture(db, mark: Marks, batch_id: int, folder: Path) -> Captured:
    """Every row the import of batch ``batch_id`` wrote (ids above ``mark``), into ``folder``:
    PostgreSQL's ``COPY ... TO`` text, or SQLite's stored values pickled in chunks."""
    from sqlalchemy import inspect

    from core import sql

    folder.mkdir(parents=True, exist_ok=True)
    copies = sql.stages_through_copy(db.engine)
    inspector = inspect(db.engine)
    columns = {name: [c["name"] for c in inspector.get_columns(name)] for name in TABLES}
    counts: dict[str, int] = {}
    captured = Captured(folder, columns, counts, copies)
    with db.engine.connect() as connection:
        quote = connection.dialect.identifier_preparer.quote
        raw = connection.connection.driver_connection
        for name in TABLES:
            names = ", ".join(quote(c) for c in columns[name])
            query = f"SELECT {names} FROM {quote(name)} WHERE {_where(name, mark, batch_id)} ORDER BY id"
            if copies:
                with raw.cursor() as cursor, captured.path(name).open("wb") as out:
                    with cursor.copy(f"COPY ({query}) TO STDOUT") as copy:
                        for data in copy:
                            out.write(data)
            else:
                cursor = raw.cursor()
                with captured.path(name).open("wb") as out:
                    cursor.execute(query)
                    while rows := cursor.fetchmany(CHUNK):
                        pickle.dump(rows, out, protocol=pickle.HIGHEST_PROTOCOL)
                cursor.close()
            counts[name] = int(
                connection.exec_driver_sql(
                    f"SELECT count(*) FROM {quote(name)} WHERE {_where(name, mark, batch_id)}"
                ).scalar()
            )
        connection.rollback()
    return captured


def remove(db, mark: Marks, batch_id: int) -> None:
    """Delete the captured rows (children first), committed; on PostgreSQL, VACUUM the tables so
    that the reload finds free space and clean indexes, as the import did."""
    from core import sql

    with db.engine.connect() as connection:
        quote = connection.dialect.identifier_preparer.quote
        for name in reversed(TABLES):
            connection.exec_driver_sql(f"DELETE FROM {quote(name)} WHERE {_where(name, mark, batch_id)}")
        connection.commit()
    sql.vacuum(db.engine, TABLES)  # MVCC: a DELETE leaves its rows dead in place until a VACUUM


def _chunks(path: Path):
    with path.open("rb") as handle:
        while True:
            try:
                yield pickle.load(handle)
            except EOFError:
                return


def reload(db, captured: Captured) -> float:
    """Load the captured rows back in one transaction, committed: the seconds it took."""
    with db.engine.connect() as connection:
        quote = connection.dialect.identifier_preparer.quote
        raw = connection.connection.driver_connection
        began = time.perf_counter()
        for name in TABLES:
            names = ", ".join(quote(c) for c in captured.columns[name])
            if captured.copies:
                with raw.cursor() as cursor, captured.path(name).open("rb") as handle:
                    with cursor.copy(f"COPY {quote(name)} ({names}) FROM STDIN") as copy:
                        while data := handle.read(1 << 20):
                            copy.write(data)
            else:
                marks_ = ", ".join("?" * len(captured.columns[name]))
                cursor = raw.cursor()
                statement = f"INSERT INTO {quote(name)} ({names}) VALUES ({marks_})"
                for rows in _chunks(captured.path(name)):
                    cursor.executemany(statement, rows)
                cursor.close()
        raw.commit()
        return time.perf_counter() - began


def discard(captured: Captured) -> None:
    """Remove the scratch files."""
    for name in TABLES:
        captured.path(name).unlink(missing_ok=True)
