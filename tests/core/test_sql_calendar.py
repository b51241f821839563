"""core.sql's calendar parts, bucket lookup and bit union give the same answers on both engines,
the ones Python gives (the insight pages and the comparison group by them)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Integer, literal, select, union_all

from core.sql import day_number, day_of_week, hour_of, month_of, small_bucket
from core.sql_expressions import bit_union

MOMENTS = [
    dt.datetime(2024, 2, 29, 0, 0, 0),
    dt.datetime(2024, 3, 3, 23, 59, 59, 998000),  # (SQLite's julianday rounds to the millisecond)
    dt.datetime(2025, 12, 31, 13, 5, 7, 120000),
    dt.datetime(2026, 1, 1, 7, 30),
    dt.datetime(1999, 7, 4, 18, 0),
]
BUCKETS = ((0, 0), (1, 6), (7, 13), (14, 29), (30, None))
UNKNOWN = len(BUCKETS)


def _rows(name: str, type_, items):
    """A subquery of rows (i, value) with ``value`` bound as ``type_`` (as a column stores it)."""
    rows = [select(literal(i, Integer).label("i"), literal(x, type_).label(name)) for i, x in enumerate(items)]
    return union_all(*rows).subquery("v")


def test_calendar_parts_agree_with_python(session):
    v = _rows("at", DateTime(), MOMENTS)
    first = select(v.c.at).where(v.c.i == 0).scalar_subquery()
    rows = session.execute(
        select(
            v.c.i,
            day_of_week(session, v.c.at),
            hour_of(session, v.c.at),
            month_of(session, v.c.at),
            day_number(session, v.c.at) - day_number(session, first),
        ).order_by(v.c.i)
    ).all()
    expected = [
        (i, (m.weekday() + 1) % 7, m.hour, m.month, (m.date() - MOMENTS[0].date()).days) for i, m in enumerate(MOMENTS)
    ]
    assert [tuple(int(x) for x in row) for row in rows] == expected


def test_small_bucket_agrees_with_python(session):
    numbers = [None, -400, -2, -1, *range(0, 45), 100, 10_000]
    v = _rows("n", Integer(), numbers)
    rows = session.execute(select(v.c.i, small_bucket(session, v.c.n, BUCKETS, UNKNOWN)).order_by(v.c.i)).all()

    def bucket(n):
        if n is None or n < 0:
            return UNKNOWN
        return next(i for i, (_low, high) in enumerate(BUCKETS) if high is None or n <= high)

    assert [int(b) for _i, b in rows] == [bucket(n) for n in numbers]


def test_bit_union_is_the_or_of_single_bits(session):
    bits = [4, 1, 4, 0, 64, 1 << 40, 1]
    v = _rows("b", BigInteger(), bits)
    odd = (v.c.i % 2).label("odd")
    groups = session.execute(select(odd, bit_union(v.c.b)).group_by(odd).order_by(odd)).all()
    expected = {}
    for i, b in enumerate(bits):
        expected[i % 2] = expected.get(i % 2, 0) | b
    assert {int(k): int(m) for k, m in groups} == expected
