"""Rejects files: the refused rows of an import that skipped them, kept a while for their organisation, then purged.

A rejects file holds the rows as the export had them (names, e-mails, addresses) with a ``reason``
column. It is personal data (DESIGN.md §10): it lives in ``<instance>/rejects/`` only, is offered
for download to the organisation's own users (and to whoever made the import, who had the file
already), each download is logged, and it is deleted ``CONTACT_LIST_RETENTION_DAYS`` after the
import, like the contact lists.
"""

from __future__ import annotations

import csv
import datetime as dt
import secrets
from pathlib import Path
from typing import Iterator

from sqlalchemy import select

from core.models import ImportBatch, audit, utcnow

FOLDER = "rejects"
DEFAULT_RETENTION_DAYS = 30
PURGE_ACTOR = "scheduler (rejects purge)"


def rejects_folder(app) -> Path:
    """``<instance>/rejects/``: the only place the application keeps rejects files."""
    return Path(app.instance_path) / FOLDER


def new_rejects_path(app, slug: str) -> Path:
    """A fresh, unguessable file name for an import of organisation ``slug``."""
    return rejects_folder(app) / f"{slug}-{secrets.token_hex(8)}.rejects.csv"


def retention_days(app) -> int:
    """How long a rejects file is kept: the contact lists' retention period."""
    return int(app.config.get("CONTACT_LIST_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))


def expires_at(app, batch: ImportBatch) -> dt.datetime:
    """When the batch's rejects file stops being offered (and is purged by the next run of the job)."""
    return (batch.finished_at or batch.created_at) + dt.timedelta(days=retention_days(app))


def purged_at(batch: ImportBatch) -> str | None:
    """When the batch's rejects file was purged (ISO text), if it was."""
    return (batch.summary or {}).get("rejects_purged_at")


def rejects_file(app, batch: ImportBatch, now: dt.datetime | None = None) -> Path | None:
    """The batch's rejects file while it is kept: recorded, inside the rejects folder, present, and
    within the retention period; None otherwise (never kept, purged, expired, or written elsewhere)."""
    name = (batch.summary or {}).get("rejects_file")
    if not name or batch.status != "done":
        return None
    if (now or utcnow()) >= expires_at(app, batch):
        return None
    path = Path(name)
    try:
        path = path.resolve(strict=True)
        folder = rejects_folder(app).resolve(strict=True)
    except OSError:
        return None
    if path.parent != folder or not path.is_file():
        return None
    return path


def may_download(user, batch: ImportBatch) -> bool:
    """The organisation's own users, and whoever made the import (staff importing for a venue had
    the file in hand). Other staff, administrators and other organisations never: rejects hold names
    and e-mails, and pooled roles never see them (DESIGN.md §1, §10)."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.role == "venue" and user.organisation_id == batch.organisation_id:
        return True
    return batch.user_id is not None and batch.user_id == user.id and user.role in ("staff", "admin", "venue")


def read_rows(path: Path, batch: ImportBatch) -> Iterator[list[str]]:
    """The rows of a rejects file, header first, read in the encoding and delimiter it was written in."""
    from core.importing import rejects_encoding

    summary = batch.summary or {}
    delimiter = summary.get("delimiter") or ","
    with path.open(encoding=rejects_encoding(summary.get("encoding")), errors="replace", newline="") as fh:
        yield from csv.reader(fh, delimiter=delimiter)


def record_download(session, batch: ImportBatch, user, actor: str) -> None:
    """Log one download of a batch's rejects file (flushes with the caller's transaction)."""
    audit(
        session,
        "import.rejects_download",
        actor=actor,
        user_id=getattr(user, "id", None),
        object_type="import_batch",
        object_id=batch.id,
        organisation_id=batch.organisation_id,
        rows=batch.rejected,
        filename=batch.filename,
    )


def purge_rejects(session, app, now: dt.datetime | None = None) -> dict:
    """Delete the rejects files past their retention period (flushes; idempotent).

    Each batch whose file is due gets ``rejects_file`` cleared and ``rejects_purged_at`` set in its
    summary, and an ``import.rejects_purge`` audit event; a file left in the folder by an import that
    was never committed is deleted once as old as the retention period (one audit event for them all).

    :param session: the caller's session (a job's).
    :param app: the application (its instance folder and ``CONTACT_LIST_RETENTION_DAYS``).
    :param now: the purge's time (naive UTC).
    :returns: ``{"purged": batches, "orphans": files}``.
    """
    now = now or utcnow()
    days = retention_days(app)
    cutoff = now - dt.timedelta(days=days)
    purged = 0
    due = session.scalars(
        select(ImportBatch)
        .where(ImportBatch.rejected > 0, ImportBatch.status == "done", ImportBatch.created_at <= cutoff)
        .order_by(ImportBatch.id)
    )
    for batch in due:
        summary = batch.summary or {}
        name = summary.get("rejects_file")
        if not name or expires_at(app, batch) > now:
            continue
        path = Path(name)
        if path.parent.resolve() != rejects_folder(app).resolve():
            continue  # written elsewhere by an older version (beside a command-line export): not ours to delete
        path.unlink(missing_ok=True)
        # a new dict: the JSON column sees a replaced value, never an edited one
        batch.summary = {**summary, "rejects_file": None, "rejects_purged_at": now.isoformat(timespec="seconds")}
        audit(
            session,
            "import.rejects_purge",
            actor=PURGE_ACTOR,
            object_type="import_batch",
            object_id=batch.id,
            organisation_id=batch.organisation_id,
            rows=batch.rejected,
            retention_days=days,
        )
        purged += 1
    orphans = 0
    folder = rejects_folder(app)
    if folder.is_dir():
        oldest = (now - dt.timedelta(days=days)).replace(tzinfo=dt.timezone.utc).timestamp()
        for path in folder.glob("*.rejects.csv"):
            try:
                if path.is_file() and path.stat().st_mtime <= oldest:
                    path.unlink()
                    orphans += 1
            except FileNotFoundError:
                continue
    if orphans:
        audit(
            session,
            "import.rejects_purge",
            actor=PURGE_ACTOR,
            object_type="rejects_folder",
            files=orphans,
            retention_days=days,
        )
    session.flush()
    return {"purged": purged, "orphans": orphans}
