"""A long import confirmed on the web runs beside the request; its page shows a progress bar polling its status."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from flask import abort, current_app, flash, jsonify, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from core import rejects as rejects_files
from core.auth import roles_required
from core.db import get_db
from core.import_views import IMPORT_ROLES, _pending_root, bp, own_pending_folder
from core.models import Organisation, User

log = logging.getLogger(__name__)

BACKGROUND_BYTES = 2 << 20  # files from this size (IMPORT_BACKGROUND_BYTES) import in the background
STATUS_EVERY = 0.5  # seconds between two writes of the status


def _write_status(folder: Path, status: dict) -> None:
    tmp = folder / "status.json.tmp"
    tmp.write_text(json.dumps(status), encoding="utf-8")
    os.replace(tmp, folder / "status.json")


def read_status(folder: Path) -> dict | None:
    """The status of a background import (``queued``, ``running`` with ``done``/``total`` bytes,
    ``done``, ``refused`` or ``error``, with its ``batch_id``), or None when none was started."""
    try:
        return json.loads((folder / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def runs_in_background(path: Path) -> bool:
    """Whether the export at ``path`` is big enough to import beside the request."""
    return path.stat().st_size >= int(current_app.config.get("IMPORT_BACKGROUND_BYTES", BACKGROUND_BYTES))


def start_background_import(token: str, meta: dict, locale: str) -> bool:
    """Start importing the pending upload ``token`` in a thread of its own (its own session, committed
    once); False when it was started already (a second click)."""
    folder = _pending_root() / token
    try:
        with (folder / "started").open("x"):
            pass
    except FileExistsError:
        return False
    _write_status(folder, {"status": "queued", "done": 0, "total": (folder / "export").stat().st_size})
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=_run, args=(app, folder, meta, current_user.id, locale), name=f"import-{token[:8]}", daemon=True
    )
    thread.start()
    return True


def _run(app, folder: Path, meta: dict, user_id: int, locale: str) -> None:
    """The import of a pending upload, in the user's language; its status written as it goes."""
    from core.importing import ImportRefused, import_file, record_refused_import

    status: dict = {"status": "error"}
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= STATUS_EVERY:
            last[0] = now
            _write_status(folder, {"status": "running", "done": done, "total": total})

    try:
        with app.test_request_context(f"/?lang={locale}"), get_db(app).session() as session:
            organisation = session.get(Organisation, meta["organisation_id"])
            user = session.get(User, user_id)
            if organisation is None:
                raise LookupError("the organisation was deleted before its import ran")
            skip_invalid = bool(meta.get("skip_invalid"))
            rejects_path = rejects_files.new_rejects_path(app, organisation.slug) if skip_invalid else None
            try:
                result = import_file(
                    session,
                    folder / "export",
                    organisation,
                    kind=meta["kind"],
                    skip_invalid=skip_invalid,
                    user=user,
                    filename=meta["filename"],
                    rejects_path=rejects_path,
                    progress=progress,
                )
            except ImportRefused as exc:
                session.rollback()
                batch = record_refused_import(session, organisation, exc.result, user=user, filename=meta["filename"])
                session.commit()
                status = {"status": "refused", "batch_id": batch.id}
            else:
                session.commit()
                status = {"status": "done", "batch_id": result.batch_id, "imported": result.imported}
    except Exception:  # the page says so; the log has the details
        log.exception("background import of %s failed", meta.get("filename"))
    finally:
        (folder / "export").unlink(missing_ok=True)
        _write_status(folder, status)


def _own_folder(token: str) -> Path:
    """The current user's own pending folder (the export may be gone once imported); 404 otherwise."""
    folder, _meta = own_pending_folder(token)
    if read_status(folder) is None:
        abort(404)
    return folder


@bp.route("/pending/<token>/progress")
@roles_required(*IMPORT_ROLES)
def progress(token: str):
    """The progress bar of a background import; its result page once it is over."""
    folder = _own_folder(token)
    status = read_status(folder) or {}
    if status.get("status") == "done":
        flash(_("Import finished: %(n)d rows imported.", n=status.get("imported", 0)), "success")
        return redirect(url_for("main.import_batch", batch_id=status["batch_id"]))
    if status.get("status") == "refused":
        flash(_("File refused: nothing was written"), "error")
        return redirect(url_for("main.import_batch", batch_id=status["batch_id"]))
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return render_template("imports/progress.html", token=token, meta=meta, status=status)


@bp.route("/pending/<token>/status.json")
@roles_required(*IMPORT_ROLES)
def status(token: str):
    """The status of a background import, for its page to poll: ``status``, ``done``, ``total``
    (bytes read and to read) and, once over, where to go."""
    folder = _own_folder(token)
    found = read_status(folder) or {}
    body = {"status": found.get("status"), "done": found.get("done"), "total": found.get("total")}
    if found.get("status") in ("done", "refused"):
        body["next"] = url_for("imports.progress", token=token)
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response
