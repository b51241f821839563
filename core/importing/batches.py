"""Reading the records of an export in batches: column by column with pyarrow's CSV reader when the
file is plain, else (and from the first line it cannot vouch for) row by row with the csv module.

Both give the validator the same thing: each batch's records, each with its cells and its line in
the file. pyarrow reads a plain UTF-8 export in C++, a batch at a time, and hands over whole
columns; it is trusted only where it provably reads what the csv module reads, a block of lines at
a time: every record on one line of its own (as many records as lines, no carriage return but
before a line feed), every record as wide as the header. The first block that is not is read, with
the rest of the file, by the csv module, from the block's first line: the same records and the
same line numbers as if the csv module had read the whole file (``tests/core/test_import_batches.py``
compares the two on messy files).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.importing import common

# (records, bytes read so far or None, None | (line, reason) when the file cannot be read further)
Batch = tuple[Any, int | None, tuple[int, str] | None]
BLOCK_BYTES = 1 << 22  # bytes read at a time while looking for a batch's lines
PLAIN_ENCODINGS = ("utf-8", "utf-8-sig")


class ColumnRecords:
    """A batch read column by column: ``columns[j][i]`` is cell j of record i, whose line is ``lines[i]``.
    Indexing or iterating gives (cells, line), as a batch of the csv module's records does."""

    __slots__ = ("columns", "lines")

    def __init__(self, columns: list[list[str]], lines: list[int]):
        self.columns, self.lines = columns, lines

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> tuple[list[str], int]:
        return [column[index] for column in self.columns], self.lines[index]

    def __iter__(self) -> Iterator[tuple[list[str], int]]:
        return zip(map(list, zip(*self.columns)), self.lines)


def is_blank(cells) -> bool:
    """A record the importer skips: no cell, or only blank ones."""
    return not cells or not (cells[0].strip() or "".join(cells).strip())


def csv_batches(reader, raw, first_line: int = 1) -> Iterator[Batch]:
    """The csv module's records in batches of ``common.BATCH_SIZE``; ``first_line``: the line the
    reader starts at (its own count starts at 0)."""
    records: list[tuple[list[str], int]] = []
    append = records.append
    base = first_line - 1
    previous = base + reader.line_num
    try:
        for cells in reader:
            line, previous = previous + 1, base + reader.line_num
            if is_blank(cells):
                continue
            append((cells, line))
            if len(records) >= common.BATCH_SIZE:  # read at call time: the tests shrink it
                # (A reader that has met the file's end lets go of it, which then closes: no position.)
                yield records, None if raw.closed else raw.tell(), None
                records = []
                append = records.append
    except csv.Error as exc:
        yield records, None, (previous + 1, str(exc))
        return
    if records:
        yield records, None, None


def line_start(path: Path, lines: int) -> int | None:
    """The byte offset of line ``lines + 1`` (after the header), None when a line before it ends
    with a bare carriage return (the csv module counts it as a line end; this count would not)."""
    offset, seen = 0, 0
    with path.open("rb") as handle:
        while seen < lines:
            block = handle.read(1 << 16)
            if not block:
                return None
            position = 0
            while seen < lines:
                found = block.find(b"\n", position)
                if found < 0:
                    break
                seen += 1
                position = found + 1
            head = block[:position] if seen == lines else block
            if head.count(b"\r") != head.count(b"\r\n"):
                return None
            offset += position if seen == lines else len(block)
    return offset


def arrow_batches(path: Path, offset: int, first_line: int, width: int, delimiter: str) -> Iterator[Batch]:
    """The records from byte ``offset`` (line ``first_line``) on, read by pyarrow a batch of lines at
    a time while each batch is plain, then by the csv module (see the module's documentation)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    names = [f"c{j}" for j in range(width)]
    parse_options_of = lambda handler: pacsv.ParseOptions(  # noqa: E731 - the handler is per block
        delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=handler
    )
    read_options = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=BLOCK_BYTES)
    convert_options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    pool = pa.system_memory_pool()  # malloc's: what a block took goes back (mimalloc's pool keeps it)
    line = first_line
    with path.open("rb") as handle:
        handle.seek(offset)
        carry = b""
        while True:
            wanted = common.BATCH_SIZE
            chunk, carry, lines, ended = _take_lines(handle, carry, wanted)
            if not chunk:
                return
            odd: list[object] = []

            def handler(row, odd=odd):
                odd.append(row)
                return "skip"

            table = None
            if chunk.count(b"\r") == chunk.count(b"\r\n"):
                try:
                    table = pacsv.read_csv(
                        pa.py_buffer(chunk),
                        read_options=read_options,
                        parse_options=parse_options_of(handler),
                        convert_options=convert_options,
                        memory_pool=pool,
                    )
                except pa.ArrowInvalid:
                    table = None
            if table is None or odd or table.num_rows != lines or _too_long(table, pc):
                handle.seek(offset)
                yield from _csv_from(handle, line, delimiter)
                return
            columns = [table.column(j).to_pylist() for j in range(width)]
            del table
            numbers = list(range(line, line + lines))
            first = list(map(str.strip, columns[0]))  # a blank record starts with a blank cell
            blank = [i for i, cell in enumerate(first) if not cell] if "" in first else []
            blank = [i for i in blank if is_blank([column[i] for column in columns])]
            if blank:
                keep = sorted(set(range(lines)) - set(blank))
                columns = [[column[i] for i in keep] for column in columns]
                numbers = [numbers[i] for i in keep]
            offset += len(chunk)
            line += lines
            if numbers:
                yield ColumnRecords(columns, numbers), None if ended else handle.tell() - len(carry), None
            if ended:
                return


def _too_long(table, pc) -> bool:
    """A cell longer than the csv module reads (it refuses the file there): that module decides."""
    limit = csv.field_size_limit()
    return any((pc.max(pc.utf8_length(column)).as_py() or 0) > limit for column in table.columns)


def _take_lines(handle, carry: bytes, wanted: int) -> tuple[bytes, bytes, int, bool]:
    """The next ``wanted`` lines (fewer at the end of the file) from ``carry`` and ``handle``: (their
    bytes, what was read past them, their count, whether the file ended)."""
    data = carry
    position, found = 0, 0
    while True:
        while found < wanted:
            end = data.find(b"\n", position)
            if end < 0:
                break
            found += 1
            position = end + 1
        if found == wanted:
            return data[:position], data[position:], found, False
        block = handle.read(BLOCK_BYTES)
        if not block:
            if position < len(data):  # a last line without its line feed
                return data, b"", found + 1, True
            return data, b"", found, True
        data += block


def _csv_from(handle, first_line: int, delimiter: str) -> Iterator[Batch]:
    """The csv module's batches from the handle's position on (a line start) of a UTF-8 file."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="strict", newline="")
    try:
        yield from csv_batches(csv.reader(text, delimiter=delimiter), handle, first_line)
    finally:
        text.detach()
