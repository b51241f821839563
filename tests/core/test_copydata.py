"""core.sql.copy_rows writes what it is given, on both engines: on PostgreSQL through the CSV that
core.copydata formats (strings quoted, empty strings kept apart from NULL), or, for rows it cannot
vouch for, through the driver's own formatting."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select

from core import sql
from core.copydata import csv_rows

TRICKY = [
    (1, 'a "quoted", comma', dt.datetime(2024, 2, 29, 23, 59, 59, 123456), None),
    (2, "", dt.datetime(1999, 1, 1), "line\nbreak\r\nand \\ backslash"),
    (3, None, None, "Côté « Œuvre » \t tab; semi"),
    (-(2**30), "NULL", dt.datetime(2100, 12, 31, 0, 0), "\\N"),
]


def _table(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("n", Integer),
        Column("s", String(100)),
        Column("at", DateTime),
        Column("t", String(100)),
    )


def test_rows_come_back_as_written(session):
    table = _table("copydata_probe")
    table.create(session.connection())
    rows = [tuple(row) for row in TRICKY]
    sql.copy_rows(session, table, ("n", "s", "at", "t"), rows, stamps=(2,))
    back = session.execute(select(table).order_by(table.c.n)).all()
    assert [tuple(row) for row in back] == sorted(rows)
    session.rollback()


def test_rows_of_mixed_kinds_keep_the_drivers_formatting(session):
    assert csv_rows([(1, "a"), ("b", 2)]) is None  # a column of two kinds
    assert csv_rows([(1,), (2,)]) is None  # one column: a NULL would be an empty line
    aware = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert csv_rows([(1, aware)]) is None
    table = _table("copydata_mixed")
    table.create(session.connection())
    rows = [(1, "7", None, "x"), (2, 8, None, "y")]  # an int for a string column: the driver's way
    sql.copy_rows(session, table, ("n", "s", "at", "t"), rows)
    assert session.execute(select(table.c.s).order_by(table.c.n)).scalars().all() == ["7", "8"]
    session.rollback()


def test_csv_quotes_every_string_and_leaves_null_bare():
    data = csv_rows([(1, "", None, 'say "hi"')])
    assert data == b'1,"",,"say ""hi"""\n'
