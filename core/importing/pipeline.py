"""The import service: read, map columns, validate, resolve identities, write; one path for web, CLI and inbox."""

from __future__ import annotations

import csv
from pathlib import Path

from flask import current_app, has_app_context

from core import sql
from core.importing import ahead, common
from core.importing.batches import arrow_batches, csv_batches, line_start
from core.importing.common import KINDS, _
from core.importing.mapping import saved_mapping
from core.importing.opening import open_export, refuse
from core.importing.reading import _Progress, _Rejects
from core.importing.result import ImportResult
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


def import_file(
    session,
    path,
    organisation: Organisation,
    *,
    kind: str = "sales",
    skip_invalid: bool = False,
    user=None,
    filename: str | None = None,
    progress=None,
    secret: str | None = None,
    rejects_path=None,
    actor: str | None = None,
    mapping: dict[str, str] | None = None,
) -> ImportResult:
    """Import one ticketing export of ``organisation`` into ``session`` (flushed, never committed).

    :param session: the caller's session; the caller commits on success and rolls back on
        :class:`ImportRefused`, then may call :func:`record_refused_import`.
    :param path: the export: a CSV file (encoding and delimiter detected, see
        :func:`open_export`) or a spreadsheet workbook (.xlsx, .xls, .ods: its first sheet).
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
    :param mapping: the organisation's own headers (canonical form) → field, ``""`` to ignore one;
        default the mapping saved for the organisation (:func:`saved_mapping`).
    :raises ImportRefused: the file is refused whole; its ``result`` lists the errors.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}")
    path = Path(path)
    secret = secret or current_app.config["DISTRICT_SECRET"]
    organisation_id = organisation.id
    result = ImportResult(kind=kind, filename=(filename or path.name)[:300])
    user_name, user_id = _actor(user, actor)
    if mapping is None:
        mapping = saved_mapping(session, organisation_id, kind)

    with open_export(path, kind, result, mapping) as export:
        reader, header, header_cells = export.reader, export.header, export.header_cells
        if result.errors_total:
            result.rows = _count_rows(reader)
            return _refuse(result)

        batch = ImportBatch(
            organisation_id=organisation_id,
            kind=kind,
            filename=result.filename,
            checksum=result.checksum,
            status="running",
            user_id=user_id,
        )
        session.add(batch)
        session.flush()
        result.batch_id = batch.id
        if kind == "sales":
            parser = _SalesParser(header, organisation_id, secret, result)
            writer = _SalesWriter(session, organisation_id, batch.id, result, secret)
        else:
            parser = _UnsubscribeParser(header, secret, utcnow())
            writer = _UnsubscribeWriter(session, organisation_id, result)
        rejects = None
        if skip_invalid:
            target = Path(rejects_path) if rejects_path else path.with_name(f"{path.stem}.rejects.csv")
            rejects = _Rejects(target, header_cells, export.delimiter, export.encoding)
        bar = _Progress(progress, export.size, label=result.filename)
        try:
            with sql.roomy_cache(session, SQLITE_CACHE_KIB):
                batches = _parsed_batches(export, parser, kind, organisation_id, secret)
                try:
                    fatal = _read_rows(batches, writer, result, rejects, skip_invalid, bar)
                finally:
                    batches.close()  # a reading process stops with the writer, even on an error
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
    audit(
        session,
        f"import.{kind}",
        actor=user_name,
        user_id=user_id,
        object_type="import_batch",
        object_id=batch.id,
        organisation_id=organisation_id,
        **_audit_counts(result),
    )
    # The new spectators' cell keys, and a new data epoch: every noisy pooled figure is redrawn, so
    # that whether a figure moved after this import says nothing of whom it held (core.privacy).
    fill_cell_keys(session, secret)
    advance_epoch(session)
    session.flush()
    return result


SQLITE_CACHE_KIB = 64 * 1024


def _read_rows(batches, writer, result: ImportResult, rejects, skip_invalid: bool, bar: _Progress) -> bool:
    """Write the good rows of every parsed batch (see :func:`_parsed_batches`); True when the file
    cannot be read to its end. A batch's cells go once it is parsed: only its bad records are kept
    (for their errors and the rejects), and what is written is the parsed columns."""
    for count, records, parsed, position, unreadable in batches:
        bad_records = {index: records[index] for index, _problems in parsed.bad} if parsed else {}
        records = None
        result.rows += count
        _take(bad_records, parsed, None if unreadable else writer, result, rejects, skip_invalid)
        if unreadable:  # the errors before it counted, nothing of its batch written
            line, message = unreadable
            result.add_error(line, "", _("The file could not be read as CSV: %(error)s", error=message))
            return True
        if position is not None:
            bar.update(position)
    return False


def _parsed_batches(export, parser, kind: str, organisation_id: int, secret: str):
    """Every batch of the export parsed: (record count, records by batch index, parsed or None when
    empty, position, unreadable). A large plain sales export is read and vouched for in a process of
    its own, a batch ahead (core.importing.ahead), its suspects settled here; any other, here."""
    offset = _vector_offset(export)
    reader = None
    if kind == "sales" and offset is not None and export.size >= ahead.AHEAD_BYTES and _read_ahead():
        reader = ahead.start(
            ahead.Plan(
                path=str(export.path),
                offset=offset,
                first_line=export.header_lines + 1,
                delimiter=export.delimiter,
                header=export.header,
                organisation_id=organisation_id,
                secret=secret,
                latest=parser.latest,
                batch_size=common.BATCH_SIZE,
            )
        )
    if reader is not None:
        try:
            for count, suspects, vouched, position, unreadable in reader:
                yield count, suspects, parser.settle(vouched, suspects) if vouched else None, position, unreadable
        finally:
            reader.close()
        return
    for records, position, unreadable in _record_batches(export, offset):
        count = len(records)
        yield count, records, parser.parse_batch(records) if count else None, position, unreadable


def _read_ahead() -> bool:
    """Whether a large export may be read in a process of its own (``IMPORT_READ_AHEAD``)."""
    return current_app.config.get("IMPORT_READ_AHEAD", True) if has_app_context() else True


def _vector_offset(export) -> int | None:
    """Where pyarrow starts reading the export's records (after the header), or None when it may not
    read this file (see core.importing.batches)."""
    if VECTOR_READ and export.plain and export.path is not None:
        return line_start(export.path, export.header_lines)
    return None


def _record_batches(export, offset: int | None):
    """The export's records in batches: pyarrow's when the file is plain UTF-8, else the csv module's."""
    if offset is not None:
        return arrow_batches(export.path, offset, export.header_lines + 1, len(export.header.fields), export.delimiter)
    return csv_batches(export.reader, export.raw)


VECTOR_READ = True  # False reads every file with the csv module (the tests compare both)


def _take(records: dict, parsed, writer, result: ImportResult, rejects, skip_invalid: bool = False) -> None:
    """One parsed batch, ``records`` its bad records by index: count and report them, write the good
    ones unless the file is going to be refused (or ``writer`` is None)."""
    if parsed is None:
        return
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
    refuse(result)


def _audit_counts(result: ImportResult) -> dict:
    return {
        "kind": result.kind,
        "filename": result.filename,
        "checksum": result.checksum,
        "rows": result.rows,
        "imported": result.imported,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "anonymous": result.anonymous,
        "spectators_new": result.spectators_new,
        "errors_total": result.errors_total,
    }


def record_refused_import(
    session,
    organisation: Organisation,
    result: ImportResult,
    user=None,
    filename: str | None = None,
    actor: str | None = None,
) -> ImportBatch:
    """Keep a trace of a refused file after the caller rolled back: an ImportBatch with status
    ``refused`` (its errors and counts) and an audit event. Flushes; the caller commits."""
    user_name, user_id = _actor(user, actor)
    batch = ImportBatch(
        organisation_id=organisation.id,
        kind=result.kind,
        filename=(filename or result.filename or "")[:300],
        checksum=result.checksum or "",
        status="refused",
        rows=result.rows,
        imported=0,
        duplicates=0,
        rejected=result.rejected,
        anonymous=0,
        spectators_new=0,
        errors=result.errors or None,
        user_id=user_id,
        finished_at=utcnow(),
    )
    session.add(batch)
    session.flush()
    result.batch_id = batch.id
    batch.summary = result.to_json()
    audit(
        session,
        "import.refused",
        actor=user_name,
        user_id=user_id,
        object_type="import_batch",
        object_id=batch.id,
        organisation_id=organisation.id,
        **_audit_counts(result),
    )
    session.flush()
    return batch
