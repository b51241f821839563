"""Erasure in files: an erased person's rows leave every file the application keeps (rejects, inbox copies, exports)."""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.identity import normalise_email, normalise_name, normalise_phone, normalise_postal_code, strip_accents

log = logging.getLogger(__name__)

# Files of the instance folder that are no one's rows: the database, its journals, the compiled
# translations, the secrets. Everything else (rejects, inbox copies and reports, stored exports, any
# file a later feature keeps) is read.
SKIPPED_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".mo", ".sha256", ".lock", ".pid")
ERASED = "[erased]"


@dataclass
class Identities:
    """What designates an erased person in a file: their e-mails, and (last, first, postal code or
    phone) for the records without an e-mail (as the importer keys them); normalised as it does."""

    emails: set[str] = field(default_factory=set)
    names: set[tuple[str, str, str]] = field(default_factory=set)  # (LAST, FIRST, postal code or phone digits)

    def add(self, email=None, last_name=None, first_name=None, postal_code=None, phone=None) -> None:
        email = normalise_email(email)
        if email:  # keyed by the e-mail: a namesake at the same address with another e-mail is someone else
            self.emails.add(email)
            return
        last, first = normalise_name(last_name), normalise_name(first_name)
        if last and first:
            for extra in (normalise_postal_code(postal_code), normalise_phone(phone)):
                if extra:
                    self.names.add((last, first, extra))

    def __bool__(self) -> bool:
        return bool(self.emails or self.names)

    def _mentioned(self, text: str) -> bool:
        lowered = text.lower()
        if any(email in lowered for email in self.emails):
            return True
        folded = strip_accents(text).upper()
        return any(last in re.sub(r"[^A-Z]", "", folded) for last, _f, _x in self.names) if self.names else False

    def row_matches(self, row: list[str]) -> bool:
        """A row designates the person: one of its cells is their e-mail, or it holds their last name,
        first name and postal code (or phone)."""
        if any(normalise_email(cell) in self.emails for cell in row if "@" in cell):
            return True
        if not self.names:
            return False
        names = {normalise_name(cell) for cell in row}
        extras = {normalise_postal_code(cell) for cell in row} | {normalise_phone(cell) for cell in row}
        return any(last in names and first in names and extra in extras for last, first, extra in self.names)


def _decode(data: bytes) -> tuple[str, str]:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def _delimiter(first_line: str) -> str:
    return max((";", ",", "\t", "|"), key=first_line.count)


def scrub_text(text: str, identities: Identities, is_json: bool = False) -> tuple[str, int, int]:
    """The text without the person's rows (a CSV's records designating them), how many rows went, and
    how many other mentions of their e-mail were replaced (a JSON report keeps its shape)."""
    removed = replaced = 0
    original = text
    if not is_json:
        newline = "\r\n" if "\r\n" in text else "\n"
        delimiter = _delimiter(text.split("\n", 1)[0])
        out = io.StringIO(newline="")
        writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
        try:
            for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
                if identities.row_matches(row):
                    removed += 1
                else:
                    writer.writerow(row)
            if removed:
                text = out.getvalue()
        except csv.Error:
            pass  # not a CSV after all: the replacement below still applies
    for email in identities.emails:  # whatever is left (a report, a free-text cell) loses the address
        text, n = re.subn(re.escape(email), ERASED, text, flags=re.IGNORECASE)
        replaced += n
    return (text if removed or replaced else original), removed, replaced


def scrub_file(path: Path, identities: Identities) -> int:
    """Rewrite ``path`` without the person (atomically, same encoding and mode); returns the rows
    removed, -1 when only a mention was replaced, 0 when the file does not mention them."""
    data = path.read_bytes()
    text, encoding = _decode(data)
    if not identities._mentioned(text):
        return 0
    cleaned, removed, replaced = scrub_text(text, identities, is_json=path.suffix == ".json")
    if not removed and not replaced:
        return 0
    tmp = path.with_name(f".{path.name}.scrub")
    prefix = "\ufeff" if data.startswith(b"\xef\xbb\xbf") else ""
    tmp.write_bytes((prefix + cleaned).encode("utf-8" if encoding == "utf-8-sig" else encoding, errors="replace"))
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    return removed or -1


def kept_files(app) -> list[Path]:
    """Every regular file under the instance folder and the inbox folders (no link followed)."""
    roots = {Path(app.instance_path), Path(app.config.get("INBOX_PATH") or Path(app.instance_path) / "inbox")}
    found: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs[:] = [d for d in dirs if d != "translations"]
            for name in files:
                path = Path(folder) / name
                if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES) or path.is_symlink() or not path.is_file():
                    continue
                found.add(path)
    return sorted(found)


def _pending_workbook_mentions(path: Path, identities: Identities) -> bool:
    """An upload waiting on its preview (core.import_views) that is a workbook naming the person:
    a workbook cannot be rewritten here, so the caller deletes it (its uploader uploads again)."""
    from core.importing.reading import is_workbook
    from core.importing.workbook import WorkbookError, workbook_to_csv

    if "pending-imports" not in path.parts or not is_workbook(path):
        return False
    try:
        copy = workbook_to_csv(path)
    except WorkbookError:
        return False
    try:
        text = copy.read_text(encoding="utf-8")
    finally:
        copy.unlink(missing_ok=True)
    if not identities._mentioned(text):
        return False
    _text, removed, replaced = scrub_text(text, identities)
    return bool(removed or replaced)


def scrub_files(app, identities: Identities) -> dict:
    """Remove an erased person from every kept file (see :func:`kept_files`). Returns
    ``{"files": n changed, "rows": n removed, "failed": n unreadable}``; never raises for one file."""
    summary = {"files": 0, "rows": 0, "failed": 0}
    if not identities:
        return summary
    for path in kept_files(app):
        try:
            if _pending_workbook_mentions(path, identities):
                path.unlink()
                summary["files"] += 1
                continue
            removed = scrub_file(path, identities)
        except OSError:
            log.exception("erasure: could not scrub %s", path)
            summary["failed"] += 1
            continue
        if removed:
            summary["files"] += 1
            summary["rows"] += max(removed, 0)
    return summary
