"""Every construct that differs between PostgreSQL and SQLite, in one place.

Features say what they need (load rows fast, plan without JIT, empty a table, join text, lock a
process) and this module does it the way the running engine does it best; nothing outside it (the
migrations and the benchmark's engine baselines aside) asks which engine runs.
``tests/test_house.py`` fails when another module tests the dialect.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Date,
    Float,
    Integer,
    String,
    Table,
    any_,
    case,
    cast,
    delete,
    event,
    exists,
    extract,
    func,
    insert,
    literal,
    text,
    type_coerce,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.copydata import csv_rows

LOG = logging.getLogger(__name__)
POSTGRESQL, SQLITE = "postgresql", "sqlite"
# Rows handed to SQLite's executemany at a time: the driver builds each batch in memory.
EXECUTEMANY_BATCH = 50_000


def engine_name(bind: Session | Connection | Engine) -> str:
    """The engine behind ``bind`` ("postgresql", "sqlite"): for messages and for this module."""
    if isinstance(bind, Session):
        bind = bind.get_bind()
    return bind.dialect.name


def _is_postgresql(bind) -> bool:
    return engine_name(bind) == POSTGRESQL


def _connection(bind: Session | Connection) -> Connection:
    return bind.connection() if isinstance(bind, Session) else bind


def _driver(connection: Connection) -> Any:
    """The DB-API connection under ``connection`` (psycopg's or sqlite3's), for what SQLAlchemy
    does not do: COPY, executemany of plain tuples, pragmas outside the transaction."""
    raw = connection.connection.driver_connection
    if raw is None:
        raise RuntimeError("the connection is closed")
    return raw


# --- what the engine can do ---------------------------------------------------------------------


def counts_bits_in_sql(bind) -> bool:
    """Whether counting the set bits of a mask per value is cheaper in SQL than in numpy (PostgreSQL
    filters an aggregate per bit at scan speed; SQLite pays a function call per row and bit)."""
    return _is_postgresql(bind)


def has_bit_or_aggregate(bind) -> bool:
    """Whether the engine ORs bit masks in an aggregate (``bit_or``: PostgreSQL), so that a history
    of organisations per spectator is one mask rather than a row per purchase (SQLite)."""
    return _is_postgresql(bind)


def keeps_insert_order(bind) -> bool:
    """Whether rows inserted in one order are stored in that order, so that an insert sorted by an
    index's key makes that index's range scans read few pages (a PostgreSQL heap does; SQLite
    stores rows in rowid order whatever the insert's)."""
    return _is_postgresql(bind)


def stores_text_datetimes(bind) -> bool:
    """Whether a DateTime column holds SQLAlchemy's text form (SQLite), so that rows written
    through the driver must carry ``YYYY-MM-DD HH:MM:SS.ffffff`` text instead of datetimes."""
    return engine_name(bind) == SQLITE


def stages_through_copy(bind) -> bool:
    """Whether many rows are best written by staging them in a temporary table with COPY and
    applying them in one statement (PostgreSQL, where each statement is a round trip), rather than
    by the driver's executemany in process (SQLite)."""
    return _is_postgresql(bind)


def temporary_table_suffix(bind) -> str:
    """What ends ``CREATE TEMPORARY TABLE`` so that the table goes with the transaction
    (PostgreSQL's ``ON COMMIT DROP``; SQLite's lasts for the connection, emptied before each use)."""
    return " ON COMMIT DROP" if _is_postgresql(bind) else ""


@contextlib.contextmanager
def roomy_cache(session: Session, kib: int):
    """On SQLite, a page cache of at least ``kib`` KiB for the duration (the default 2 MiB thrashes
    on the indexes of a large write), the connection's own setting restored after; nothing on
    PostgreSQL (its shared buffers are the server's). The pragmas go to the driver's connection:
    they are no part of the transaction, and restoring one never masks an error."""
    if _is_postgresql(session):
        yield
        return
    raw = _driver(session.connection())
    before = raw.execute("PRAGMA cache_size").fetchone()[0]
    page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    if (-before if before < 0 else before * page_size // 1024) >= kib:
        yield
        return
    raw.execute(f"PRAGMA cache_size = -{kib}")
    try:
        yield
    finally:
        try:
            raw.execute(f"PRAGMA cache_size = {int(before)}")
        except Exception:  # noqa: BLE001 - a closed connection takes its cache with it
            pass


def lock_mechanism(engine: Engine) -> str:
    """How a process holds a lock for its whole life on this database: ``"advisory"`` (a
    PostgreSQL advisory lock on a dedicated connection) or ``"file"`` (an exclusive flock on a file
    beside the SQLite database)."""
    name = engine_name(engine)
    if name == POSTGRESQL:
        return "advisory"
    if name == SQLITE:
        return "file"
    raise RuntimeError(f"no process lock for the {name} database engine")


# --- writing many rows --------------------------------------------------------------------------


def sqlite_stamp(moment) -> str | None:
    """A datetime in the text form SQLAlchemy stores on SQLite (None stays None)."""
    return None if moment is None else moment.isoformat(" ", "microseconds")


def copy_rows(
    bind: Session | Connection,
    table: Table | str,
    columns: Sequence[str],
    rows: Iterable[Sequence],
    stamps: Sequence[int] = (),
) -> None:
    """Append ``rows`` (tuples in ``columns`` order, database-ready) to ``table`` the fastest way the engine
    loads: ``COPY`` on PostgreSQL (of CSV that ``core.copydata`` formats in C++), the driver's
    ``executemany`` on SQLite, with the datetimes at positions ``stamps`` in its text form."""
    connection = _connection(bind)
    quote = connection.dialect.identifier_preparer.quote
    name = table.name if isinstance(table, Table) else table
    names = ", ".join(quote(c) for c in columns)
    raw = _driver(connection)
    if _is_postgresql(connection):
        data = csv_rows(rows := list(rows))
        form = "" if data is None else " (FORMAT csv)"
        with raw.cursor() as cursor, cursor.copy(f"COPY {quote(name)} ({names}) FROM STDIN{form}") as copy:
            copy.write(data or b"")
            for row in rows if data is None else ():
                copy.write_row(row)
        return
    statement = f"INSERT INTO {quote(name)} ({names}) VALUES ({', '.join('?' * len(columns))})"
    execute_many(connection, statement, rows, stamps)


def execute_many(
    bind: Session | Connection, statement: str, rows: Iterable[Sequence], stamps: Sequence[int] = ()
) -> None:
    """The driver's own ``executemany`` of ``statement`` (``?`` placeholders) in the current
    transaction: no per-row work in SQLAlchemy. ``stamps``: positions of datetimes."""
    connection = _connection(bind)
    if not _is_postgresql(connection):
        rows = _with_text_stamps(rows, stamps)
    else:
        statement = statement.replace("?", "%s")
    cursor = _driver(connection).cursor()
    try:
        batch: list = []
        for row in rows:
            batch.append(row)
            if len(batch) >= EXECUTEMANY_BATCH:
                cursor.executemany(statement, batch)
                batch = []
        if batch:
            cursor.executemany(statement, batch)
    finally:
        cursor.close()


def _with_text_stamps(rows: Iterable[Sequence], stamps: Sequence[int]) -> Iterable[Sequence]:
    if not stamps:
        return rows
    return ([sqlite_stamp(v) if i in stamps else v for i, v in enumerate(row)] for row in rows)


def last_given(bind, column: str, order: str) -> str:
    """SQL of an aggregate: the last non-null ``column`` of a group in ``order`` (an integer column,
    distinct within the group), NULL when every row's is null (text columns)."""
    if _is_postgresql(bind):
        return f"(array_agg({column} ORDER BY {order} DESC) FILTER (WHERE {column} IS NOT NULL))[1]"
    # max() skips the NULLs a NULL column makes of the concatenation; the fixed-width order compares first
    return f"substr(max(printf('%010d', {order}) || {column}), 11)"


def upsert_insert(bind):
    """The engine's ``insert`` construct, the one that knows ``ON CONFLICT``."""
    if _is_postgresql(bind):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def among(bind, column, values: Sequence) -> Any:
    """``column IN (values)`` with the whole list as one bound parameter (an array on PostgreSQL,
    a JSON list on SQLite): an expanded IN list costs a bind parameter per value."""
    import json

    from sqlalchemy import Text, any_, bindparam, literal_column, select

    if _is_postgresql(bind):
        from sqlalchemy.dialects.postgresql import ARRAY

        values = list(values)  # integers, or strings without commas (digests): one text the server splits
        joined = ",".join(map(str, values)) if set(map(type, values)) in ({int}, {str}) else ""
        if joined and joined.count(",") == len(values) - 1 and "" not in values:  # the driver dumps arrays slowly
            split = func.string_to_array(bindparam(None, joined, type_=Text), ",")
            return column == any_(cast(split, ARRAY(column.type)))
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(
        select(literal_column("value")).select_from(
            func.json_each(bindparam(None, json.dumps(list(values)), type_=Text))
        )
    )


def in_subquery(bind, column, subquery, key) -> Any:
    """``column`` is one of the values ``subquery`` selects (in its column ``key``).

    A correlated ``EXISTS`` on PostgreSQL, which plans it as a hash semi-join; an ``IN`` list on
    SQLite whose operand is an expression (``column + 0``), so that SQLite builds the list once
    instead of driving the column's index with it.
    """
    if _is_postgresql(bind):
        return exists(subquery.where(key == column))
    return (column + 0).in_(subquery)


def not_in_subquery(bind, column, subquery, key) -> Any:
    """``column`` is none of the values ``subquery`` selects (an anti-join; see :func:`in_subquery`)."""
    if _is_postgresql(bind):
        return ~exists(subquery.where(key == column))
    return (column + 0).not_in(subquery)


def in_values(bind, column, values: Sequence) -> Any:
    """``column IN (values)`` for a short list, written so that SQLite does not drive the column's
    index with it (``column + 0``, see :func:`in_subquery`)."""
    return column.in_(values) if _is_postgresql(bind) else (column + 0).in_(values)


def collected(bind, column) -> Any:
    """The group's values of an integer ``column`` as one value that :func:`in_collected` searches:
    an array on PostgreSQL, the text ``",3,5,"`` on SQLite."""
    if _is_postgresql(bind):
        return func.array_agg(column)
    return literal(",").concat(func.group_concat(column, ",")).concat(",")


def in_collected(bind, value, collection) -> Any:
    """``value`` is one of a :func:`collected` group's values."""
    if _is_postgresql(bind):
        return value == any_(collection)
    return func.instr(collection, literal(",").concat(cast(value, String)).concat(",")) > 0


def joined_pairs(bind, first, second):
    """One text ``"a,b,a,b,..."`` of two integer columns over all rows (``string_agg`` on
    PostgreSQL, ``group_concat`` on SQLite), which numpy parses in C."""
    if _is_postgresql(bind):
        return func.string_agg(func.concat_ws(",", first, second), ",")
    return func.group_concat(first.op("||")(",").op("||")(second), ",")


# --- session settings and maintenance ------------------------------------------------------------


def without_jit(session: Session) -> None:
    """Turn PostgreSQL's JIT off for the rest of the transaction (nothing on SQLite): on the short
    aggregate queries of previews and refreshes it spends seconds compiling to save nothing."""
    if _is_postgresql(session):
        # On the connection, not through the session: not an ORM execution.
        session.connection().exec_driver_sql("SET LOCAL jit = off")


def bulk_load_settings(connection: Connection) -> None:
    """Settings for a large load in this transaction: PostgreSQL builds indexes in memory rather
    than on disk; SQLite keeps a larger page cache (restored by :func:`end_bulk_load`) and opens
    the transaction now, so that indexes dropped for the load come back if it fails."""
    if _is_postgresql(connection):
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        return
    connection.info["pilot.cache_size"] = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql("PRAGMA cache_size=-262144")
    raw = _driver(connection)
    if not raw.in_transaction:
        raw.execute("BEGIN")


def end_bulk_load(connection: Connection) -> None:
    """Undo :func:`bulk_load_settings` where it outlives the transaction (SQLite's cache)."""
    previous = connection.info.pop("pilot.cache_size", None)
    if previous is not None:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(previous)}")


def tune_for_large_joins(session: Session) -> bool:
    """PostgreSQL: memory for the hash joins, parallel workers, no JIT, for this transaction only
    (``SET LOCAL``), as the launch and the outcome matching need; undone by
    :func:`untune_large_joins`. Returns whether anything was set (nothing on SQLite)."""
    if not _is_postgresql(session):
        return False
    for setting in ("work_mem = '256MB'", "jit = off", "parallel_setup_cost = 100", "parallel_tuple_cost = 0.01"):
        session.execute(text(f"SET LOCAL {setting}"))
    return True


def untune_large_joins(session: Session) -> None:
    """Back to the server's settings for the rest of the transaction (after :func:`tune_for_large_joins`)."""
    for name in ("work_mem", "jit", "parallel_setup_cost", "parallel_tuple_cost"):
        session.execute(text(f"SET LOCAL {name} TO DEFAULT"))


def insert_from_select(session: Session, table: Table, columns: Sequence[str], query: Any) -> None:
    """``INSERT INTO table (columns) SELECT ...``, set-wise.

    PostgreSQL runs the SELECT of an ``INSERT ... SELECT`` without parallel workers, but a
    ``CREATE TABLE ... AS`` with them: the rows go through a temporary table first, which halves
    the time of the outcome matching on two cores. SQLite inserts directly.
    """
    if not _is_postgresql(session):
        session.execute(insert(table).from_select(list(columns), query))
        return
    connection = session.connection()
    compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE xp_staging ON COMMIT DROP AS {compiled}", compiled.params)
    names = ", ".join(f'"{c}"' for c in columns)
    connection.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) SELECT * FROM xp_staging')
    connection.exec_driver_sql("DROP TABLE xp_staging")


def vacuum(engine: Engine, tables: Sequence[str] = (), options: str = "") -> None:
    """On PostgreSQL, ``VACUUM`` ``tables`` (all of the database's when none) with ``options`` (e.g.
    ``"ANALYZE"``), on a connection of its own outside any transaction; SQLite needs none."""
    if not _is_postgresql(engine):
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        quote = connection.dialect.identifier_preparer.quote
        what = ", ".join(quote(name) for name in tables)
        connection.exec_driver_sql(
            " ".join(part for part in ("VACUUM", f"({options})" if options else "", what) if part)
        )


def refresh_statistics(connection: Connection, tables: Sequence[str] = ()) -> None:
    """Give PostgreSQL's planner fresh statistics after a bulk load (``ANALYZE``, of ``tables`` or
    all); SQLite plans without them."""
    if not _is_postgresql(connection):
        return
    if not tables:
        connection.exec_driver_sql("ANALYZE")
    for table in tables:
        connection.exec_driver_sql(f'ANALYZE "{table}"')


def reset_id_sequences(bind, tables: Sequence[str]) -> None:
    """After rows were written with explicit ids, move each table's id sequence past its largest
    id (PostgreSQL; SQLite's rowid follows the largest id by itself)."""
    if not _is_postgresql(bind):
        return
    connection = _connection(bind)
    for table in tables:
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                f'COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)'
            )
        )


def empty_tables(connection: Connection, tables: Sequence[Table]) -> None:
    """Delete every row of ``tables`` (children first): ``TRUNCATE ... RESTART IDENTITY`` on
    PostgreSQL, ``DELETE`` on SQLite."""
    if _is_postgresql(connection):
        names = ", ".join(f'"{t.name}"' for t in tables)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        return
    for table in tables:
        connection.execute(delete(table))


def empty_table_for_rebuild(session: Session, table: Table, lock_timeout: str = "2s") -> None:
    """Delete every row of ``table`` before a rebuild in the session's transaction.

    On PostgreSQL, ``TRUNCATE`` when the table's lock comes within ``lock_timeout``: a ``DELETE``
    leaves every old row dead in place and the rebuilt rows after them, so that until a ``VACUUM
    FULL`` each scan reads twice the pages. ``TRUNCATE`` holds the table until the caller commits
    (readers wait for the new rows rather than read the old ones); when a reader holds the table
    past that wait, ``DELETE``, which waits for no reader. SQLite's ``DELETE`` drops the pages.
    """
    if not _is_postgresql(session):
        session.execute(delete(table))
        return
    previous = session.connection().exec_driver_sql("SELECT current_setting('lock_timeout')").scalar()
    try:
        with session.begin_nested():
            # The savepoint begins on the session's connection when the session hands it out.
            connection = session.connection()
            connection.exec_driver_sql("SELECT set_config('lock_timeout', %(value)s, true)", {"value": lock_timeout})
            connection.exec_driver_sql(f'TRUNCATE "{table.name}"')
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        session.execute(delete(table))  # the savepoint's rollback undid the lock timeout
        return
    session.connection().exec_driver_sql("SELECT set_config('lock_timeout', %(value)s, true)", {"value": previous})


def vacuum_after_commit(session: Session, table: Table) -> None:
    """On PostgreSQL, ``VACUUM (ANALYZE)`` ``table`` once the session commits (nothing when it
    rolls back, nothing on SQLite): the rewritten pages become all-visible, so scans skip each
    row's visibility test and index-only scans stay index-only; the planner sees the new rows."""
    if not _is_postgresql(session):
        return
    key = f"pilot.vacuum.{table.name}"
    session.info[key] = table.name
    if not session.info.get(key + ".watched"):
        session.info[key + ".watched"] = True
        event.listen(session, "after_commit", lambda s: _vacuum_if_asked(s, key))
        event.listen(session, "after_rollback", lambda s: s.info.pop(key, None))


def _vacuum_if_asked(session: Session, key: str) -> None:
    name = session.info.pop(key, None)
    if name is None:
        return
    # VACUUM runs outside a transaction: on a connection of its own, the session's being done.
    try:
        engine = session.get_bind()
        engine = engine.engine if isinstance(engine, Connection) else engine
        with engine.connect() as connection:
            # SKIP_LOCKED: a transaction holding the table (another rebuild) is never waited for.
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                f'VACUUM (ANALYZE, SKIP_LOCKED) "{name}"'
            )
    except DBAPIError:
        # The work is committed: a failed vacuum only leaves the next scans slower.
        LOG.warning("could not vacuum %s after a rebuild", name, exc_info=True)


def droppable_indexes(connection: Connection, table: str) -> tuple[list[str], list[str]]:
    """(statements that drop, statements that restore) the secondary indexes of ``table``, and on
    PostgreSQL its foreign keys and unique constraints, read from the database's own catalogue so
    that the restored schema is exactly what the migrations made. SQLite can drop only named
    indexes (its UNIQUE constraints and foreign keys are part of the table)."""
    drops: list[str] = []
    restores: list[str] = []
    if not _is_postgresql(connection):
        for name, definition in connection.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                "AND sql IS NOT NULL ORDER BY name"
            ),
            {"t": table},
        ):
            drops.append(f'DROP INDEX "{name}"')
            restores.append(definition)
        return drops, restores
    constraints = connection.execute(
        text(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('f', 'u') ORDER BY contype DESC, conname"
        ),
        {"t": f'"{table}"'},
    ).all()
    indexes = connection.execute(
        text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = CAST(:t AS regclass) AND NOT x.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) ORDER BY i.relname"
        ),
        {"t": f'"{table}"'},
    ).all()
    for name, _kind, _definition in constraints:
        drops.append(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for name, definition in indexes:
        drops.append(f'DROP INDEX "{name}"')
        restores.append(definition)
    # unique constraints before the foreign keys that may lean on them
    for name, _kind, definition in sorted(constraints, key=lambda c: c[1] != "u"):
        restores.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    return drops, restores


def epoch_seconds(session: Session, column):
    """SQL: a naive UTC timestamp as seconds since 1970 (a float), on either engine."""
    if _is_postgresql(session):
        return cast(func.extract("epoch", column), Float)
    return (func.julianday(column) - 2440587.5) * 86400.0


def joined_numbers(bind, columns: Sequence[Any]) -> Any:
    """An aggregate of every row's numeric ``columns`` as one comma-separated text (``string_agg``
    of ``concat_ws`` on PostgreSQL, ``group_concat`` of ``||`` elsewhere), for numpy to parse in C:
    half a million rows arrive in a fraction of a row-by-row fetch. Columns must not be NULL."""
    if _is_postgresql(bind):
        return func.string_agg(func.concat_ws(",", *columns), ",")
    line = columns[0]
    for column in columns[1:]:
        line = line.op("||")(",").op("||")(column)
    return func.group_concat(line, ",")


# --- calendar parts of a timestamp column --------------------------------------------------------
# SQLAlchemy stores a DateTime on SQLite as the text "YYYY-MM-DD HH:MM:SS.ffffff": its parts are
# cheaper cut from the text than computed by strftime, and a day is counted by julianday.


def day_number(bind, column) -> Any:
    """Whole days since an epoch of the date of a timestamp ``column``: the Julian day number on
    SQLite, days since 1970-01-01 on PostgreSQL. The epochs differ: compare two day numbers (their
    difference is whole days between the dates), never a day number with a constant. (SQLite's
    julianday rounds to the millisecond: a moment in the last half-millisecond of a day counts there
    as the next day.)"""
    if engine_name(bind) == SQLITE:
        return cast(func.julianday(column) + 0.5, Integer)
    return type_coerce(cast(column, Date) - literal(dt.date(1970, 1, 1), Date), Integer)


def day_of_week(bind, column) -> Any:
    """The day of the week of a timestamp ``column``, Sunday = 0."""
    if engine_name(bind) == SQLITE:
        # Julian day number + 1, modulo 7, is the day of week from Sunday (cheaper than strftime).
        return (day_number(bind, column) + 1) % 7
    return cast(extract("dow", column), Integer)


def hour_of(bind, column) -> Any:
    """The hour (0 to 23) of a timestamp ``column``."""
    if engine_name(bind) == SQLITE:
        return cast(func.substr(column, 12, 2), Integer)  # characters 12-13 of the stored text
    return cast(extract("hour", column), Integer)


def month_of(bind, column) -> Any:
    """The month (1 to 12) of a timestamp ``column``."""
    if engine_name(bind) == SQLITE:
        return cast(func.substr(column, 6, 2), Integer)  # characters 6-7 of the stored text
    return cast(extract("month", column), Integer)


def small_bucket(bind, value, buckets: Sequence[tuple[int, int | None]], unknown: int) -> Any:
    """The position among ``buckets`` of a small integer ``value`` (days, tickets), ``unknown``
    for NULL or a negative value.

    ``buckets`` are ``(low, high)`` bounds in order, ``high`` inclusive, the last one open (``high``
    None). On PostgreSQL a searched CASE. On SQLite a searched CASE would compute ``value`` once per
    WHEN; a lookup text of one digit per value, from -1 to one past the last bound, computes it once
    (so positions and ``unknown`` are single digits).
    """
    if engine_name(bind) != SQLITE:
        whens = [(value.is_(None), unknown), (value < 0, unknown)]
        whens += [(value <= high, i) for i, (_low, high) in enumerate(buckets) if high is not None]
        return case(*whens, else_=len(buckets) - 1)
    if len(buckets) > 10 or not 0 <= unknown <= 9:
        raise ValueError("a lookup text holds single-digit positions only")
    top = max(high for _low, high in buckets if high is not None) + 1  # in the open bucket
    digits = [next(i for i, (_low, high) in enumerate(buckets) if high is None or v <= high) for v in range(top + 1)]
    lookup = str(unknown) + "".join(map(str, digits))
    clamped = func.min(func.max(value, -1), top)
    return func.coalesce(func.unicode(func.substr(literal(lookup), clamped + 2, 1)) - 48, unknown)
