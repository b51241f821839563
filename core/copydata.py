"""Rows as the CSV text a bulk load reads, formatted by pyarrow in C++ rather than value by value.

``core.sql.copy_rows`` hands PostgreSQL's ``COPY ... WITH (FORMAT csv)`` what :func:`csv_rows`
returns: every string quoted (so that an empty string stays one), NULL as an unquoted empty field,
datetimes in ISO form. Half a million rows of an import cost the driver's own row formatting
seconds of Python; here, a transposition and one pass in C++.
"""

from __future__ import annotations

import io
from collections.abc import Sequence


def csv_rows(rows: Sequence[Sequence]) -> bytes | None:
    """``rows`` (tuples of ints, floats, strings, bools, naive datetimes or dates, None) as CSV
    lines without a header; None when a column mixes kinds that one pyarrow type cannot hold (the
    caller formats those rows itself)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = list(zip(*rows))
    if len(columns) < 2:
        return None  # a line of one NULL would be an empty line
    try:
        arrays = [pa.array(column, from_pandas=False) for column in columns]
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    if not all(map(_plain, (array.type for array in arrays))):
        return None
    table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
    out = io.BytesIO()
    pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return out.getvalue()


def _plain(kind) -> bool:
    """A type whose CSV text PostgreSQL reads back as the value (an aware datetime is not: its
    offset is the driver's business)."""
    from pyarrow import types

    if types.is_timestamp(kind):
        return kind.tz is None
    return any(
        test(kind)
        for test in (
            types.is_null,
            types.is_integer,
            types.is_floating,
            types.is_boolean,
            types.is_string,
            types.is_date,
        )
    )
