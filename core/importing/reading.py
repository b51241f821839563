"""Reading the file: encoding and delimiter, the refused rows set aside, the progress shown."""

from __future__ import annotations

import codecs
import csv
import hashlib
import sys
from pathlib import Path

from core.importing.common import READ_CHUNK

# --- reading the file ----------------------------------------------------------------------------

def _inspect(path: Path) -> tuple[str, str, int, bool]:
    """One streaming pass: (encoding, sha256, size, has NUL bytes). UTF-8 when the bytes decode as
    UTF-8 (``utf-8-sig`` with a BOM, ``utf-16`` with a UTF-16 BOM), Windows-1252 otherwise."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, size, has_nul, head = True, 0, False, b""
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
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", digest.hexdigest(), size, True
    if utf8:
        return ("utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"), digest.hexdigest(), size, has_nul
    return "cp1252", digest.hexdigest(), size, has_nul


def _sniff_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


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


