"""CSV downloads that a spreadsheet opens safely: one cell neutraliser and one response builder.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some of them, a
tab or a carriage return) as a formula: a show title or a contact's name imported from a box
office export could then call out to the network or run a command on the reader's machine
(CSV injection, OWASP). Every CSV the application offers goes through :func:`safe_cell`.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence

from flask import Response

# What a spreadsheet may read as the start of a formula (OWASP's list, with the full-width forms
# that some spreadsheets fold to their ASCII equivalents).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# A plain number as text (a sign, digits, thousands separators, a decimal point or comma):
# harmless, and kept as it is so that "-12,50" stays a number in the spreadsheet.
_PLAIN_NUMBER = re.compile(r"[+-]?\d[\d \u00a0\u202f]*(?:[.,]\d+)?%?")


def safe_cell(value) -> str | int | float:
    """One CSV cell that no spreadsheet runs as a formula.

    Numbers stay numbers; ``None`` is an empty cell; dates are ISO 8601; text starting with one of
    :data:`FORMULA_STARTS` gets a leading apostrophe (spreadsheets show it as text and hide the
    apostrophe), unless it is a plain number written as text.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float, decimal.Decimal)):
        return value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(rows: Iterable[Sequence], header: Sequence | None = None, *, delimiter: str = ",") -> str:
    """The rows (and an optional header) as CSV text, every cell through :func:`safe_cell`,
    lines ending in CRLF as RFC 4180 says."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    if header is not None:
        writer.writerow([safe_cell(v) for v in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def spreadsheet_delimiter() -> str:
    """The separator a spreadsheet in the reader's language expects: ``;`` in French (whose
    decimal comma a ``,`` separator would split), ``,`` in English. Machine formats (the report's
    keyed CSV, the contact lists for e-mail tools, rejected rows to re-import) keep ``,``."""
    from flask_babel import get_locale

    return ";" if str(get_locale() or "fr") == "fr" else ","


_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, default: str = "export.csv") -> str:
    """A download name with nothing a header or a file system could misread (quotes, slashes, CR/LF)."""
    cleaned = _FILENAME_UNSAFE.sub("-", name or "").strip(".-")[:150]
    if not cleaned:
        return default
    return cleaned if cleaned.lower().endswith(".csv") else cleaned + ".csv"


def csv_response(
    rows: Iterable[Sequence], filename: str, *, header: Sequence | None = None, delimiter: str = ",", bom: bool = True
) -> Response:
    """A CSV download: UTF-8 (with a byte-order mark by default, so that spreadsheets read the
    accents right), every cell neutralised, served as an attachment named ``filename``.

    :param rows: the lines, each a sequence of cells (numbers, text, dates, ``None``).
    :param filename: the download's name (cleaned by :func:`safe_filename`).
    :param header: an optional first line.
    :param delimiter: ``","``, or ``";"`` for French spreadsheets that read decimal commas.
    :param bom: start with U+FEFF (Excel needs it to read UTF-8).
    """
    body = ("\ufeff" if bom else "") + csv_text(rows, header, delimiter=delimiter)
    return Response(
        body.encode("utf-8"),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{safe_filename(filename)}"'},
    )


def csv_stream_response(
    rows: Iterable[Sequence],
    filename: str,
    *,
    header: Sequence | None = None,
    delimiter: str = ",",
    bom: bool = True,
    chunk_rows: int = 1000,
) -> Response:
    """Like :func:`csv_response`, streamed ``chunk_rows`` lines at a time (a file of any length in
    constant memory), and never cached (``Cache-Control: no-store``): the lines may be personal.

    :param rows: the lines, each a sequence of cells; read lazily while the response is sent.
    """

    def generate() -> Iterator[bytes]:
        if bom:
            yield "\ufeff".encode("utf-8")
        if header is not None:
            yield csv_text((), header, delimiter=delimiter).encode("utf-8")
        lines = iter(rows)
        while chunk := list(itertools.islice(lines, chunk_rows)):
            yield csv_text(chunk, delimiter=delimiter).encode("utf-8")

    return Response(
        generate(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{safe_filename(filename)}"',
            "Cache-Control": "no-store",
        },
    )
