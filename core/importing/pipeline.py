"""The import service: read, map columns, validate, resolve identities, write; one path for web, CLI and inbox."""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path
from typing import Iterable

from flask import current_app

from core import sql
from core.importing import common
from core.importing.columns import (
    _SALES_HEADERS,
    _SALES_ONLY,
    _UNSUBSCRIBE_HEADERS,
    SALES_COLUMNS,
    SALES_REQUIRED,
    UNSUBSCRIBE_COLUMNS,
    _column_label,
    _match_header,
    canonical_header,
)
from core.importing.common import KINDS, _
from core.importing.reading import _inspect, _Progress, _Rejects, _sniff_delimiter
from core.importing.result import ImportRefused, ImportResult
from core.importing.validate import _SalesParser, _UnsubscribeParser
from core.importing.write import _SalesWriter, _UnsubscribeWriter
from core.models import (
    ImportBatch,
    Organisation,
    audit,
    utcnow,
)
from core.privacy import advance_epoch, fill_cell_keys

# --- the service ---------------------------------------------------------------------------------

def _actor(user, actor: str | None) -> tuple[str, int | None]:
    if user is not None and getattr(user, "is_authenticated", True):
        return actor or user.email, user.id
    return actor or "cli", None


def import_file(session, path, organisation: Organisation, *, kind: str = "sales", skip_invalid: bool = False,
                user=None, filename: str | None = None, progress=None, secret: str | None = None,
                rejects_path=None, actor: str | None = None) -> ImportResult:
    """Import one ticketing export of ``organisation`` into ``session`` (flushed, never committed).

    :param session: the caller's session; the caller commits on success and rolls back on
        :class:`ImportRefused`, then may call :func:`record_refused_import`.
    :param path: the CSV file (UTF-8, UTF-8 with BOM or Windows-1252; comma or semicolon).
    :param organisation: whose export this is.
    :param kind: ``"sales"`` (DESIGN.md §6) or ``"unsubscribes"`` (an e-mail and/or customer ID
        column, an optional date).
    :param skip_invalid: import the good rows and write the bad ones, with a ``reason`` column, to
        ``rejects_path`` (default ``<name>.rejects.csv`` next to the file); otherwise any bad row
        refuses the whole file.
    :param user: who imports (``None`` on the command line); ``actor`` overrides the audit name.
    :param filename: the name to record (an upload's original name); default the file's name.
    :param progress: ``"terminal"`` for a progress bar on stderr, or a callable ``(bytes_done, total)``.
    :param secret: the district secret keying spectators; default ``DISTRICT_SECRET``.
    :raises ImportRefused: the file is refused whole; its ``result`` lists the errors.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}")
    path = Path(path)
    secret = secret or current_app.config["DISTRICT_SECRET"]
    organisation_id = organisation.id
    result = ImportResult(kind=kind, filename=(filename or path.name)[:300])
    encoding, result.checksum, size, has_nul = _inspect(path)
    result.encoding = encoding
    user_name, user_id = _actor(user, actor)

    with path.open("rb") as raw:
        # UTF-8 was checked by _inspect; the other encodings never stop an import on an odd byte.
        text = io.TextIOWrapper(raw, encoding=encoding, errors="strict" if encoding.startswith("utf-8") else "replace",
                                newline="")
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
            return _refuse(result)
        hint = re.fullmatch(r'"?sep=([;,\t|])"?\s*', first, re.IGNORECASE)
        delimiter = hint.group(1) if hint else _sniff_delimiter(first)
        result.delimiter = delimiter
        reader = csv.reader(itertools.chain(prefix, lines), delimiter=delimiter)
        columns, lookup = (SALES_COLUMNS, _SALES_HEADERS) if kind == "sales" else (UNSUBSCRIBE_COLUMNS,
                                                                                  _UNSUBSCRIBE_HEADERS)
        try:
            header_cells = None
            while header_cells is None:
                cells = next(reader)
                if hint is not None and reader.line_num == len(prefix):
                    hint = None  # the "sep=;" line itself
                    continue
                if any(c.strip() for c in cells):
                    header_cells = cells
        except StopIteration:
            result.add_error(1, "", _("The file is empty."))
            return _refuse(result)
        except csv.Error as exc:
            result.add_error(reader.line_num or 1, "",
                             _("The file could not be read as CSV: %(error)s", error=str(exc)))
            return _refuse(result)
        header = _match_header(header_cells, columns, lookup, reader.line_num, result)
        if kind == "sales":
            for name in SALES_REQUIRED:
                if name not in header.index:
                    result.add_error(header.line, _column_label(columns, name, header.language),
                                     _("This required column is missing."))
        else:
            if "email" not in header.index and "customer_id" not in header.index:
                result.add_error(header.line, _column_label(columns, "email", header.language),
                                 _("The file needs an e-mail column or a customer ID column."))
            # A sales export sent as an unsubscribe list would opt its every buyer out, district-wide.
            for cell in header_cells:
                if _SALES_HEADERS.get(canonical_header(cell), ("",))[0] in _SALES_ONLY:
                    result.add_error(header.line, cell.strip(),
                                     _("An unsubscribe list has no such column: is this a sales export?"))
                    break
        if result.errors_total:
            result.rows = _count_rows(reader)
            return _refuse(result)

        batch = ImportBatch(organisation_id=organisation_id, kind=kind, filename=result.filename,
                            checksum=result.checksum, status="running", user_id=user_id)
        session.add(batch)
        session.flush()
        result.batch_id = batch.id
        if kind == "sales":
            parser = _SalesParser(header, organisation_id, secret, result)
            writer = _SalesWriter(session, organisation_id, batch.id, result)
        else:
            parser = _UnsubscribeParser(header, secret, utcnow())
            writer = _UnsubscribeWriter(session, organisation_id, result)
        rejects = None
        if skip_invalid:
            target = Path(rejects_path) if rejects_path else path.with_name(f"{path.stem}.rejects.csv")
            rejects = _Rejects(target, header_cells, delimiter, encoding)
        bar = _Progress(progress, size, label=result.filename)
        try:
            with sql.roomy_cache(session, SQLITE_CACHE_KIB):
                fatal = _read_rows(reader, parser, writer, result, rejects, skip_invalid, bar, raw)
                if not (fatal or (result.invalid_rows and not skip_invalid)):
                    writer.finish()
        finally:
            bar.close()
            if rejects is not None:
                result.rejects_file = rejects.close()
    if fatal or (result.invalid_rows and not skip_invalid):
        if result.rejects_file:
            Path(result.rejects_file).unlink(missing_ok=True)
            result.rejects_file = None
        return _refuse(result)

    result.rejected = result.invalid_rows
    batch.status = "done"
    batch.rows, batch.imported, batch.duplicates = result.rows, result.imported, result.duplicates
    batch.rejected, batch.anonymous, batch.spectators_new = result.rejected, result.anonymous, result.spectators_new
    batch.errors = result.errors or None
    batch.summary = result.to_json()
    batch.finished_at = utcnow()
    audit(session, f"import.{kind}", actor=user_name, user_id=user_id, object_type="import_batch",
          object_id=batch.id, organisation_id=organisation_id, **_audit_counts(result))
    # The new spectators' cell keys, and a new data epoch: every noisy pooled figure is redrawn, so
    # that whether a figure moved after this import says nothing of whom it held (core.privacy).
    fill_cell_keys(session, secret)
    advance_epoch(session)
    session.flush()
    return result


SQLITE_CACHE_KIB = 64 * 1024


def _read_rows(reader, parser, writer, result: ImportResult, rejects, skip_invalid: bool, bar: _Progress,
               raw) -> bool:
    """Parse every record, writing good ones in batches; True when the file cannot be read to its end."""
    records: list[tuple[list[str], int]] = []
    append = records.append
    previous = reader.line_num
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not cells or not (cells[0].strip() or "".join(cells).strip()):
                continue
            append((cells, line))
            if len(records) >= common.BATCH_SIZE:  # read at call time: the tests shrink it
                result.rows += len(records)
                _take(records, parser, writer, result, rejects, skip_invalid)
                records.clear()
                bar.update(raw.tell())
    except csv.Error as exc:
        result.rows += len(records)
        _take(records, parser, None, result, rejects)  # the errors before it, nothing written
        result.add_error(previous + 1, "", _("The file could not be read as CSV: %(error)s", error=str(exc)))
        return True
    result.rows += len(records)
    _take(records, parser, writer, result, rejects, skip_invalid)
    return False


def _take(records: list, parser, writer, result: ImportResult, rejects, skip_invalid: bool = False) -> None:
    """Parse one batch of records: count and report the bad ones, write the good ones unless the file
    is going to be refused (or ``writer`` is None)."""
    if not records:
        return
    parsed = parser.parse_batch(records)
    for index, problems in parsed.bad:
        cells, line = records[index]
        result.invalid_rows += 1
        for column, reason in problems:
            result.add_error(line, column, reason)
        if rejects is not None:
            rejects.write(cells, problems)
    result.anonymous += parsed.anonymous
    if writer is not None and len(parsed.good) and not (result.invalid_rows and not skip_invalid):
        writer.write(parsed.good)


def _count_rows(reader) -> int:
    count = 0
    try:
        for cells in reader:
            if cells and "".join(cells).strip():
                count += 1
    except csv.Error:
        pass
    return count


def _refuse(result: ImportResult):
    """Every row counts as rejected: nothing of a refused file is written."""
    result.refused = True
    result.imported = result.duplicates = result.anonymous = result.spectators_new = 0
    result.rejected = result.rows
    result.batch_id = None
    raise ImportRefused(result)


def _audit_counts(result: ImportResult) -> dict:
    return {"kind": result.kind, "filename": result.filename, "checksum": result.checksum, "rows": result.rows,
            "imported": result.imported, "duplicates": result.duplicates, "rejected": result.rejected,
            "anonymous": result.anonymous, "spectators_new": result.spectators_new,
            "errors_total": result.errors_total}


def record_refused_import(session, organisation: Organisation, result: ImportResult, user=None,
                          filename: str | None = None, actor: str | None = None) -> ImportBatch:
    """Keep a trace of a refused file after the caller rolled back: an ImportBatch with status
    ``refused`` (its errors and counts) and an audit event. Flushes; the caller commits."""
    user_name, user_id = _actor(user, actor)
    batch = ImportBatch(organisation_id=organisation.id, kind=result.kind,
                        filename=(filename or result.filename or "")[:300], checksum=result.checksum or "",
                        status="refused", rows=result.rows, imported=0, duplicates=0, rejected=result.rejected,
                        anonymous=0, spectators_new=0, errors=result.errors or None, user_id=user_id,
                        finished_at=utcnow())
    session.add(batch)
    session.flush()
    result.batch_id = batch.id
    batch.summary = result.to_json()
    audit(session, "import.refused", actor=user_name, user_id=user_id, object_type="import_batch",
          object_id=batch.id, organisation_id=organisation.id, **_audit_counts(result))
    session.flush()
    return batch
