"""Reading the file: encoding and delimiter, the refused rows set aside, the progress shown."""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import sys
from pathlib import Path

from core.importing.common import READ_CHUNK

# --- reading the file ----------------------------------------------------------------------------

# The single-byte encodings an export may come in, as charset-normalizer names them, and the name
# the importer records (a Python codec name). Mac Roman is what "CSV (Macintosh)" in Excel writes.
_SINGLE_BYTE = {"cp1252": "cp1252", "latin_1": "latin-1", "mac_roman": "mac_roman"}
_HIGH_LINE = re.compile(rb"[^\n]{0,200}[\x80-\xff][^\n]{0,200}")
SAMPLE_BYTES = 1 << 16  # lines with non-ASCII bytes handed to the detector: enough to tell, fast
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # .xlsx/.ods (a zip), .xls (OLE2)


def _inspect(path: Path) -> tuple[str, str, int, bool]:
    """One streaming pass: (encoding, sha256, size, has NUL bytes).

    ``utf-16`` with a UTF-16 byte-order mark; UTF-8 when every byte decodes as UTF-8 (``utf-8-sig``
    with its BOM); otherwise the lines holding non-ASCII bytes are handed to charset-normalizer,
    which chooses among Windows-1252, Latin-1 and Mac Roman (Windows-1252 when it cannot tell)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, size, has_nul, head = True, 0, False, b""
    sample: list[bytes] = []
    sampled = 0
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            if not head:
                head = chunk[:4]
            digest.update(chunk)
            size += len(chunk)
            has_nul = has_nul or b"\x00" in chunk
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            if sampled < SAMPLE_BYTES:
                for match in _HIGH_LINE.finditer(chunk):
                    sample.append(match.group())
                    sampled += len(match.group()) + 1
                    if sampled >= SAMPLE_BYTES:
                        break
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", digest.hexdigest(), size, True
    if utf8:
        return ("utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"), digest.hexdigest(), size, has_nul
    return detect_single_byte(b"\n".join(sample)), digest.hexdigest(), size, has_nul


def detect_single_byte(sample: bytes) -> str:
    """The single-byte encoding of ``sample`` (bytes that are not UTF-8), by charset-normalizer:
    ``cp1252``, ``latin-1`` or ``mac_roman``. When the detector finds none plausible, Windows-1252
    if it decodes the sample, else Latin-1 (which decodes every byte: nothing is lost)."""
    from charset_normalizer import from_bytes

    best = from_bytes(sample, cp_isolation=list(_SINGLE_BYTE), preemptive_behaviour=False).best()
    if best is not None:
        return _SINGLE_BYTE.get(best.encoding, "cp1252")
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def is_workbook(path: Path) -> bool:
    """The file is a spreadsheet workbook (.xlsx, .xls, .ods) by its first bytes, whatever its name."""
    with path.open("rb") as fh:
        return fh.read(4).startswith(WORKBOOK_MAGIC)


def _sniff_delimiter(lines: list[str]) -> str:
    """Semicolon, comma, tab or pipe: the one that splits the header into the most columns and the
    next lines into as many; quoted cells are read as CSV reads them. Comma when none splits it."""
    best, best_score = ",", (0, 0)
    for delimiter in (";", ",", "\t", "|"):
        rows: list[list[str]] = []
        try:
            for cells in csv.reader(lines, delimiter=delimiter):
                if any(c.strip() for c in cells):
                    rows.append(cells)
        except csv.Error:
            pass  # a quoted cell cut at the end of the sample: the rows before it still tell
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        agreeing = sum(1 for cells in rows[1:] if len(cells) == width)
        score = (agreeing, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def rejects_encoding(encoding: str | None) -> str:
    """The encoding a rejects file is written in: the export's own, UTF-8 for a UTF-16 export."""
    return "utf-8" if not encoding or encoding == "utf-16" else encoding


class _Rejects:
    """The refused rows with a ``reason`` column, opened on the first one (same delimiter and encoding)."""

    def __init__(self, path: Path, header: list[str], delimiter: str, encoding: str):
        self.path, self.header, self.delimiter = path, header, delimiter
        self.encoding = rejects_encoding(encoding)
        self.handle = None
        self.writer = None

    def write(self, cells: list[str], problems: list[tuple[str, str]]) -> None:
        if self.handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.path.open("w", encoding=self.encoding, errors="replace", newline="")
            self.writer = csv.writer(self.handle, delimiter=self.delimiter)
            self.writer.writerow([*self.header, "reason"])
        reason = "; ".join(f"{column}: {text}" if column else text for column, text in problems)
        self.writer.writerow([*cells, reason])

    def close(self, discard: bool = False) -> str | None:
        if self.handle is None:
            return None
        self.handle.close()
        if discard:
            self.path.unlink(missing_ok=True)
            return None
        return str(self.path)


class _Progress:
    """A progress bar over the bytes read (``"terminal"``), a callable ``(done, total)``, or nothing."""

    def __init__(self, progress, total: int, label: str):
        self.callback, self.bar = None, None
        if progress == "terminal":
            import click

            self.bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            self.bar.__enter__()
        elif callable(progress):
            self.callback = progress
        self.total, self.done = total, 0

    def update(self, done: int) -> None:
        if self.bar is not None and done > self.done:
            self.bar.update(done - self.done)
        elif self.callback is not None:
            self.callback(done, self.total)
        self.done = max(self.done, done)

    def close(self) -> None:
        self.update(self.total)
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
