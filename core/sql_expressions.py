"""The column expressions that each engine writes its own way (SQLAlchemy ``@compiles`` constructs).

With :mod:`core.sql` (what depends on the running engine at run time: bulk writes, session
settings, engine-specific functions), the one home of what differs between PostgreSQL and SQLite;
``tests/test_house.py`` fails when another module tests the dialect or compiles for one.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import BigInteger, Date, Integer, cast, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

# --- marking, masks, prefixes and arrays ------------------------------------


class unindexed(FunctionElement):
    """A column that SQLite must not look up through an index (``+column``); the column elsewhere.

    "Bought up to today" matches nearly every row; without statistics SQLite would still read
    them through the purchase-date index, one table lookup each, 2-3 times slower than a scan."""

    name = "unindexed"
    inherit_cache = True

    def __init__(self, column):
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element, compiler, **kw):
    return "+" + compiler.process(element.clauses, **kw)


class bit_union(FunctionElement):
    """The OR of bit masks over a group, as a 64-bit integer: ``bit_or`` on PostgreSQL; elsewhere
    (SQLite has no such aggregate) the sum of the distinct values, which is the same OR when each
    value is a single bit or 0. NULL for no row.

    ``bit_or`` spares PostgreSQL the sort of every group's input that a DISTINCT aggregate costs.
    """

    type = BigInteger()
    name = "bit_union"
    inherit_cache = True


@compiles(bit_union)
def _bit_union_default(element, compiler, **kw):
    return "sum(DISTINCT %s)" % compiler.process(element.clauses, **kw)


@compiles(bit_union, "postgresql")
def _bit_union_postgresql(element, compiler, **kw):
    return "bit_or(%s)" % compiler.process(element.clauses, **kw)


def mask_bit(column, i: int):
    """0 or 1: bit ``i`` of an integer mask."""
    return column.op(">>")(literal(i, Integer)).op("&")(1)  # PostgreSQL shifts by an integer only


def one_shl(exponent):
    """``1 << exponent`` as a 64-bit integer on both engines (NULL stays NULL)."""
    return cast(literal(1), BigInteger).op("<<")(exponent)


class prefix_match(FunctionElement):
    """Whether a text starts with a prefix: clauses (text, prefix, length of prefix, successor of
    prefix, the LIKE pattern of the prefix with its wildcards escaped). ``substr`` in general; on
    SQLite the range [prefix, successor), which is the same test under its bytewise BINARY
    collation and spares a function call per row; on PostgreSQL a LIKE, which its FSA index
    serves."""

    type = NullType()  # a Boolean would be compared with 1 on SQLite
    name = "prefix_match"
    inherit_cache = True


@compiles(prefix_match, "postgresql")
def prefix_match_postgresql(element, compiler, **kw):
    """``LIKE 'prefix%'``, which PostgreSQL answers through the FSA index (``varchar_pattern_ops``)
    whatever the database's collation."""
    column, _prefix, _length, _successor, pattern = (compiler.process(c, **kw) for c in element.clauses)
    return "(%s LIKE %s)" % (column, pattern)


@compiles(prefix_match)
def prefix_match_default(element, compiler, **kw):
    column, prefix, length, _successor, _pattern = (compiler.process(c, **kw) for c in element.clauses)
    return "(substr(%s, 1, %s) = %s)" % (column, length, prefix)


@compiles(prefix_match, "sqlite")
def prefix_match_sqlite(element, compiler, **kw):
    column, prefix, _length, successor, _pattern = (compiler.process(c, **kw) for c in element.clauses)
    return "(%s >= %s AND %s < %s)" % (column, prefix, column, successor)


class every_value(FunctionElement):
    """The integer values of a column over a group, as one value: on PostgreSQL the binary form
    of their ``array_agg`` (``array_send``, a bytea), ``group_concat`` (text, comma-separated)
    elsewhere; NULL for no row. Read it with :func:`integers`."""

    name = "every_value"
    inherit_cache = True


@compiles(every_value)
def _every_value_default(element, compiler, **kw):
    return "group_concat(%s)" % compiler.process(element.clauses, **kw)


@compiles(every_value, "postgresql")
def _every_value_postgresql(element, compiler, **kw):
    # The binary form, which numpy reads as it is: the array's text form costs psycopg a parse and
    # a Python int per member (30 ms of a 180,000-member rule at 1M spectators).
    return "array_send(array_agg(%s))" % compiler.process(element.clauses, **kw)


# array_send's element type (its oid) → the element's big-endian dtype.
_SENT_ELEMENT = {21: ">i2", 23: ">i4", 20: ">i8"}


def integers(value) -> np.ndarray:
    """The int64 array of an ``every_value`` result (the bytes of an ``array_send`` of a
    one-dimensional array of integers without NULL, a comma-separated text, a list or None)."""
    if value is None or len(value) == 0:
        return np.zeros(0, dtype=np.int64)
    if isinstance(value, str):
        return np.fromstring(value, dtype=np.int64, sep=",")
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Header: dimensions, NULL flag, element oid, then (length, lower bound) per dimension;
        # then each element as (its byte length, its value).
        dimensions, _has_null, oid = np.frombuffer(value, dtype=">i4", count=3)
        if dimensions == 0:
            return np.zeros(0, dtype=np.int64)
        element = np.dtype([("length", ">i4"), ("value", _SENT_ELEMENT[int(oid)])])
        return np.frombuffer(value, dtype=element, offset=12 + 8 * int(dimensions))["value"].astype(np.int64)
    return np.asarray(value, dtype=np.int64)


# --- dates


class day_of(FunctionElement):
    """The calendar date of a timestamp: ``date(x)`` on SQLite, ``CAST(x AS DATE)`` elsewhere."""

    type = Date()
    name = "day_of"
    inherit_cache = True


@compiles(day_of)
def _day_of_default(element, compiler, **kw):
    return "CAST(%s AS DATE)" % compiler.process(element.clauses, **kw)


@compiles(day_of, "sqlite")
def _day_of_sqlite(element, compiler, **kw):
    return "date(%s)" % compiler.process(element.clauses, **kw)


class days_between(FunctionElement):
    """Whole days from the date of the second timestamp to the date of the first."""

    type = Integer()
    name = "days_between"
    inherit_cache = True


@compiles(days_between)
def _days_between_default(element, compiler, **kw):
    later, earlier = list(element.clauses)
    return "(CAST(%s AS DATE) - CAST(%s AS DATE))" % (compiler.process(later, **kw), compiler.process(earlier, **kw))


@compiles(days_between, "sqlite")
def _days_between_sqlite(element, compiler, **kw):
    later, earlier = list(element.clauses)
    return "CAST(julianday(date(%s)) - julianday(date(%s)) AS INTEGER)" % (
        compiler.process(later, **kw),
        compiler.process(earlier, **kw),
    )
