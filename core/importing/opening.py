"""Opening an export: a workbook or a CSV in its detected encoding and delimiter, up to its header."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from core.importing.batches import PLAIN_ENCODINGS
from core.importing.columns import (
    _SALES_HEADERS,
    _SALES_ONLY,
    _UNSUBSCRIBE_HEADERS,
    SALES_COLUMNS,
    SALES_REQUIRED,
    UNSUBSCRIBE_COLUMNS,
    _column_label,
    _Header,
    _match_header,
    canonical_header,
)
from core.importing.common import READ_CHUNK, _
from core.importing.reading import _inspect, _sniff_delimiter, is_workbook
from core.importing.result import ImportRefused, ImportResult
from core.importing.workbook import WorkbookError, workbook_to_csv

SNIFF_LINES = 20  # lines after the header that help tell the delimiter


@dataclass
class Export:
    """An export opened up to its header: the CSV reader goes on from the first data row."""

    reader: object  # csv.reader over the rest of the file
    raw: IO[bytes]  # the bytes being read (its position drives the progress bar)
    header_cells: list[str]
    header: _Header
    delimiter: str
    encoding: str
    size: int  # bytes of what is read (the workbook's CSV copy)
    missing: list[str]  # required fields without a column
    path: Path | None = None  # the file read (the workbook's CSV copy)
    header_lines: int = 0  # the lines up to the header's end: the records start on the next one
    plain: bool = False  # UTF-8 without NUL bytes: pyarrow may read it (core.importing.batches)


def refuse(result: ImportResult):
    """Refuse the file whole: every row counts as rejected, nothing of it is written."""
    result.refused = True
    result.imported = result.duplicates = result.anonymous = result.spectators_new = 0
    result.rejected = result.rows
    result.batch_id = None
    raise ImportRefused(result)


def _checksum(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@contextlib.contextmanager
def open_export(path: Path, kind: str, result: ImportResult, mapping: dict[str, str] | None = None) -> Iterator[Export]:
    """Open the export at ``path`` up to its header, for the pipeline and the preview alike.

    A workbook (.xlsx, .xls, .ods, told by its first bytes) is read with python-calamine, its first
    sheet with data becoming a CSV whose line N is the sheet's row N. A CSV's encoding is detected
    (UTF-8 with or without BOM, UTF-16 with BOM, else charset-normalizer among Windows-1252, Latin-1
    and Mac Roman) and its delimiter too (``sep=;`` first line, else semicolon, comma, tab or pipe,
    whichever splits the first lines evenly). Header problems are added to ``result`` (a duplicate
    column, a missing required one); the caller refuses the file when ``result.errors_total``.

    :param mapping: the organisation's own headers (canonical form) → field, ``""`` to ignore.
    :raises ImportRefused: the file is empty, not CSV, or a workbook that cannot be read.
    """
    path = Path(path)
    copy: Path | None = None
    if is_workbook(path):
        result.checksum, _size = _checksum(path)
        result.format = "workbook"
        try:
            copy = workbook_to_csv(path)
        except WorkbookError as exc:
            result.add_error(1, "", _("The workbook could not be read: %(error)s", error=str(exc)))
            refuse(result)
        assert copy is not None
        encoding, _digest, size, has_nul = "utf-8", "", copy.stat().st_size, False
    else:
        encoding, result.checksum, size, has_nul = _inspect(path)
    result.encoding = encoding
    try:
        with (copy or path).open("rb") as raw:
            export = _open_text(raw, kind, result, mapping or {}, encoding, size, has_nul)
            export.path = copy or path
            yield export
    finally:
        if copy is not None:
            copy.unlink(missing_ok=True)


def _open_text(
    raw: IO[bytes], kind: str, result: ImportResult, mapping: dict[str, str], encoding: str, size: int, has_nul: bool
) -> Export:
    # UTF-8 was checked by _inspect; the other encodings never stop an import on an odd byte.
    text = io.TextIOWrapper(
        raw, encoding=encoding, errors="strict" if encoding.startswith("utf-8") else "replace", newline=""
    )
    lines: Iterable[str] = text
    if has_nul:  # NUL is no character for PostgreSQL; it is never meaningful in an export
        lines = (line.replace("\x00", "") for line in text)
    lines = iter(lines)
    prefix: list[str] = []
    first = None
    for line in lines:
        prefix.append(line)
        if line.strip():
            first = line
            break
    if first is None:
        result.add_error(1, "", _("The file is empty."))
        refuse(result)
    assert first is not None
    hint = re.fullmatch(r'"?sep=([;,\t|])"?\s*', first, re.IGNORECASE)
    if hint:
        delimiter = hint.group(1)
    else:
        start = len(prefix) - 1
        prefix.extend(itertools.islice(lines, SNIFF_LINES))
        delimiter = _sniff_delimiter(prefix[start:])
    result.delimiter = delimiter
    reader = csv.reader(itertools.chain(prefix, lines), delimiter=delimiter)
    columns, lookup = (
        (SALES_COLUMNS, _SALES_HEADERS) if kind == "sales" else (UNSUBSCRIBE_COLUMNS, _UNSUBSCRIBE_HEADERS)
    )
    hint_line = len(prefix) if hint else None
    header_cells: list[str] | None = None
    try:
        while header_cells is None:
            cells = next(reader)
            if hint_line is not None and reader.line_num == hint_line:
                hint_line = None  # the "sep=;" line itself
                continue
            if any(c.strip() for c in cells):
                header_cells = cells
    except StopIteration:
        result.add_error(1, "", _("The file is empty."))
        refuse(result)
    except csv.Error as exc:
        result.add_error(reader.line_num or 1, "", _("The file could not be read as CSV: %(error)s", error=str(exc)))
        refuse(result)
    assert header_cells is not None
    header = _match_header(header_cells, columns, lookup, reader.line_num, result, mapping)
    missing: list[str] = []
    if kind == "sales":
        missing = [name for name in SALES_REQUIRED if name not in header.index]
        for name in missing:
            result.add_error(
                header.line, _column_label(columns, name, header.language), _("This required column is missing.")
            )
    else:
        if "email" not in header.index and "customer_id" not in header.index:
            missing = ["email"]
            result.add_error(
                header.line,
                _column_label(columns, "email", header.language),
                _("The file needs an e-mail column or a customer ID column."),
            )
        # A sales export sent as an unsubscribe list would opt its every buyer out, district-wide.
        for cell in header_cells:
            if _SALES_HEADERS.get(canonical_header(cell), ("",))[0] in _SALES_ONLY:
                result.add_error(
                    header.line, cell.strip(), _("An unsubscribe list has no such column: is this a sales export?")
                )
                break
    return Export(
        reader=reader,
        raw=raw,
        header_cells=header_cells,
        header=header,
        delimiter=delimiter,
        encoding=encoding,
        size=size,
        missing=missing,
        header_lines=reader.line_num,
        plain=encoding in PLAIN_ENCODINGS and not has_nul,
    )
