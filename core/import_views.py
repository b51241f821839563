"""Import onboarding pages: the upload, the column-mapping screen, the preview and the template (issue 19.2)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from core import rejects as rejects_files
from core.auth import actor_name, roles_required
from core.csvexport import csv_response, spreadsheet_delimiter
from core.db import db_session
from core.models import Organisation, utcnow

bp = Blueprint("imports", __name__, url_prefix="/imports")

IMPORT_ROLES = ("staff", "venue", "admin")
PENDING_HOURS = 24  # an upload waiting on its mapping or preview is deleted after this
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")

CHANNEL_LABELS = {"web": _l("Web"), "box_office": _l("Box office"), "phone": _l("Phone")}
CATEGORY_LABELS = {"single": _l("Single tickets"), "subscription": _l("Subscription")}
CIRCUMSTANCE_LABELS = {
    "regular": _l("Regular price"),
    "promotion": _l("Promotion"),
    "complimentary": _l("Complimentary"),
    "other": _l("Other"),
}
ENCODING_LABELS = {
    "utf-8": "UTF-8",
    "utf-8-sig": _l("UTF-8 with BOM"),
    "utf-16": "UTF-16",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1 (ISO 8859-1)",
    "mac_roman": "Mac Roman",
}
DELIMITER_LABELS = {";": _l("semicolon"), ",": _l("comma"), "\t": _l("tab"), "|": _l("vertical bar")}
HOW_LABELS = {
    "known": _l("recognised"),
    "saved": _l("your saved mapping"),
    "ignored": _l("ignored (your choice)"),
    "unknown": _l("not mapped yet"),
}


class ConfirmForm(FlaskForm):
    """A form with nothing but its CSRF token (the mapping's selects are read from the request)."""


# --- pending uploads -------------------------------------------------------------------------------


def _pending_root() -> Path:
    return Path(current_app.instance_path) / "pending-imports"


def purge_pending(now: dt.datetime | None = None) -> int:
    """Delete the uploads left waiting longer than PENDING_HOURS (they hold personal data)."""
    root = _pending_root()
    if not root.is_dir():
        return 0
    limit = (now or utcnow()) - dt.timedelta(hours=PENDING_HOURS)
    removed = 0
    for folder in root.iterdir():
        try:
            created = dt.datetime.fromisoformat(json.loads((folder / "meta.json").read_text())["created_at"])
        except (OSError, ValueError, KeyError):
            created = dt.datetime.min
        if created < limit:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def save_pending(path: str, *, organisation: Organisation, kind: str, skip_invalid: bool, filename: str) -> str:
    """Keep an uploaded export (moved from ``path``) for the current user while they map its columns
    and look at its preview; returns its token."""
    purge_pending()
    token = secrets.token_urlsafe(24)
    folder = _pending_root() / token
    folder.mkdir(parents=True, mode=0o700)
    shutil.move(path, folder / "export")
    meta = {
        "organisation_id": organisation.id,
        "kind": kind,
        "skip_invalid": skip_invalid,
        "filename": filename,
        "user_id": current_user.id,
        "created_at": utcnow().isoformat(),
    }
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return token


def own_pending_folder(token: str) -> tuple[Path, dict]:
    """The current user's own pending folder and its meta (``meta.json``); 404 for a malformed
    token, a missing or unreadable folder, or someone else's upload."""
    if not _TOKEN.fullmatch(token):
        abort(404)
    folder = _pending_root() / token
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        abort(404)
    if meta.get("user_id") != current_user.id:
        abort(404)
    return folder, meta


def _load_pending(token: str) -> tuple[dict, Path, Organisation]:
    """The current user's own pending upload and its organisation; 404 for anything else."""
    folder, meta = own_pending_folder(token)
    if not (folder / "export").is_file():
        abort(404)
    organisation = db_session().get(Organisation, meta["organisation_id"])
    if organisation is None or (current_user.role == "venue" and organisation.id != current_user.organisation_id):
        abort(404)
    return meta, folder / "export", organisation


def _drop_pending(token: str) -> None:
    shutil.rmtree(_pending_root() / token, ignore_errors=True)


def _import_and_commit(session, path, organisation: Organisation, kind: str, skip_invalid: bool, filename: str):
    """Import ``path`` for ``organisation`` as the current user and commit. A refused file writes
    nothing: the import is rolled back and the refusal recorded (a batch that says why) and
    committed. Returns ``(result, refusal)``: the import's result, and the refusal's batch or None."""
    from core.importing import ImportRefused, import_file, record_refused_import

    # Refused rows hold personal data: kept in the instance folder, offered to the organisation
    # only (core.rejects), purged after the retention period.
    rejects_path = rejects_files.new_rejects_path(current_app, organisation.slug) if skip_invalid else None
    try:
        result = import_file(
            session,
            path,
            organisation,
            kind=kind,
            skip_invalid=skip_invalid,
            user=current_user,
            filename=filename,
            rejects_path=rejects_path,
        )
    except ImportRefused as exc:
        session.rollback()
        batch = record_refused_import(session, organisation, exc.result, user=current_user, filename=filename)
        session.commit()
        return exc.result, batch
    session.commit()
    return result, None


# --- the upload (main.imports) -------------------------------------------------------------------


def header_state(path: str, organisation: Organisation, kind: str) -> tuple[list[str], list[str]]:
    """(headers nobody mapped yet, required fields without a column) of an upload, with the
    organisation's saved mapping; both empty when the file cannot be read (the import says why)."""
    from core.importing import ImportRefused
    from core.importing.mapping import saved_mapping
    from core.importing.preview import preview_file

    try:
        preview = preview_file(
            Path(path),
            organisation.id,
            kind,
            saved_mapping(db_session(), organisation.id, kind),
            current_app.config["DISTRICT_SECRET"],
            rows=0,
        )
    except ImportRefused:
        return [], []
    # A binary file read as text (an image named .csv) has no header to map: the import refuses it.
    if len(preview.columns) < 2 or not all(
        label.isprintable() and "\ufffd" not in label and len(label) <= 200 for label in preview.unknown
    ):
        return [], preview.missing
    return preview.unknown, preview.missing


def imports_page():
    """The upload page: "Check and preview" keeps the file for the mapping screen and the preview;
    "Import now" imports at once, unless the file has unmapped headers and lacks a required column,
    in which case the mapping screen asks first."""
    from core.views import ImportForm, _import_organisations, _visible_batches

    session = db_session()
    orgs = _import_organisations(session)
    form = ImportForm()
    form.organisation.choices = [(str(o.id), o.name) for o in orgs]
    if current_user.role != "venue":
        form.organisation.choices.insert(0, ("", _("Choose an organisation…")))
    result = None
    if form.validate_on_submit():
        org = next((o for o in orgs if str(o.id) == form.organisation.data), None)
        if org is None:
            abort(404)
        upload = form.file.data
        filename = os.path.basename(upload.filename or "upload.csv")[:300]
        skip_invalid = form.skip_invalid.data == "1"
        kind = form.kind.data
        fd, path = tempfile.mkstemp(suffix=Path(filename).suffix.lower()[:8] or ".csv")
        try:
            with os.fdopen(fd, "wb") as out:
                upload.save(out)
            preview_first = request.form.get("action") == "preview"
            unknown, missing = header_state(path, org, kind)
            if preview_first or (unknown and missing):
                token = save_pending(path, organisation=org, kind=kind, skip_invalid=skip_invalid, filename=filename)
                return redirect(url_for("imports.columns" if unknown else "imports.preview", token=token))
            result, refusal = _import_and_commit(session, path, org, kind, skip_invalid, filename)
            if refusal is None:
                flash(_("Import finished: %(n)d rows imported.", n=result.imported), "success")
        finally:
            if os.path.exists(path):
                os.unlink(path)
    batches = session.scalars(_visible_batches(session).limit(50)).all()
    return render_template(
        "imports.html",
        form=form,
        result=result,
        batches=batches,
        organisations={o.id: o for o in session.scalars(select(Organisation))},
    )


# --- the mapping screen ----------------------------------------------------------------------------


def field_label(kind: str, name: str) -> str:
    """A field named as the import format's own header in the page's language (``Code postal``)."""
    from core.importing.mapping import columns_of

    french, english = columns_of(kind)[name]
    return (french if str(get_locale()) == "fr" else english)[0]


def _field_choices(kind: str) -> list[tuple[str, str]]:
    from core.importing.mapping import columns_of, required_fields

    required = required_fields(kind)
    choices = [("", _("Ignore this column"))]
    for name in columns_of(kind):
        label = field_label(kind, name)
        choices.append((name, _("%(field)s (required)", field=label) if name in required else label))
    return choices


@bp.route("/pending/<token>/columns", methods=["GET", "POST"])
@roles_required(*IMPORT_ROLES)
def columns(token: str):
    """Map each header the import format does not know to one of its fields, or ignore it; the
    choices are saved for the organisation and used by its later uploads and its inbox."""
    from core.importing import ImportRefused
    from core.importing.mapping import required_fields, save_mapping, saved_mapping, suggest
    from core.importing.preview import preview_file

    meta, path, organisation = _load_pending(token)
    kind = meta["kind"]
    session = db_session()
    mapping = saved_mapping(session, organisation.id, kind)
    try:
        preview = preview_file(path, organisation.id, kind, mapping, current_app.config["DISTRICT_SECRET"], rows=5)
    except ImportRefused:
        return redirect(url_for("imports.preview", token=token))
    known = {c.field for c in preview.columns if c.how == "known" and c.field}
    asked = [c for c in preview.columns if c.how != "known"]
    if not asked:
        return redirect(url_for("imports.preview", token=token))
    choices = _field_choices(kind)
    allowed = {value for value, _label in choices}
    form = ConfirmForm()
    errors: list[str] = []
    chosen: dict[int, str] = {}
    for column in asked:
        if column.how in ("saved", "ignored"):
            chosen[column.position] = column.field or ""
        else:
            chosen[column.position] = suggest(column.label, kind, known | set(chosen.values()))
    if request.method == "POST":
        if not form.validate():
            errors.append(_("The form has expired: please try again."))
        for column in asked:
            value = request.form.get(f"column-{column.position}", "")
            chosen[column.position] = value if value in allowed else ""
            if value not in allowed:
                errors.append(_("Choose a field or “Ignore this column” for %(column)s.", column=column.label))
        picked = [value for value in chosen.values() if value]
        for name in sorted(set(picked)):
            if picked.count(name) > 1 or name in known:
                errors.append(
                    _("%(field)s is given to more than one column: choose one.", field=field_label(kind, name))
                )
        still_missing = [name for name in required_fields(kind) if name not in known and name not in picked]
        if still_missing and not errors:
            errors.append(
                _(
                    "These required columns are still missing: %(fields)s. Map a column of your file "
                    "to each, or add them to your export (see the template).",
                    fields=", ".join(field_label(kind, name) for name in still_missing),
                )
            )
        if not errors:
            save_mapping(
                session,
                organisation.id,
                kind,
                {c.label: chosen[c.position] for c in asked},
                user_id=current_user.id,
                actor=actor_name(),
            )
            session.commit()
            flash(
                _(
                    "Column mapping saved for %(organisation)s: later files with these headers will use it.",
                    organisation=organisation.name,
                ),
                "success",
            )
            return redirect(url_for("imports.preview", token=token))
    return render_template(
        "imports/columns.html",
        token=token,
        meta=meta,
        organisation=organisation,
        asked=asked,
        chosen=chosen,
        choices=choices,
        preview=preview,
        form=form,
        errors=errors,
        known=[c for c in preview.columns if c.how == "known"],
        field_label=field_label,
        how_labels=HOW_LABELS,
    ), (400 if errors else 200)


# --- the preview and its confirmation ---------------------------------------------------------------


@bp.route("/pending/<token>")
@roles_required(*IMPORT_ROLES)
def preview(token: str):
    """The export's first rows as they will be read, nothing written yet, with a button to import."""
    from core.importing import ImportRefused
    from core.importing.mapping import saved_mapping
    from core.importing.preview import preview_file

    meta, path, organisation = _load_pending(token)
    kind = meta["kind"]
    mapping = saved_mapping(db_session(), organisation.id, kind)
    refused = None
    result = None
    try:
        result = preview_file(path, organisation.id, kind, mapping, current_app.config["DISTRICT_SECRET"])
    except ImportRefused as exc:
        refused = exc.result
    if result is not None and result.unknown:
        return redirect(url_for("imports.columns", token=token))
    return render_template(
        "imports/preview.html",
        token=token,
        meta=meta,
        organisation=organisation,
        preview=result,
        refused=refused,
        form=ConfirmForm(),
        field_label=field_label,
        how_labels=HOW_LABELS,
        encoding_labels=ENCODING_LABELS,
        delimiter_labels=DELIMITER_LABELS,
        channel_labels=CHANNEL_LABELS,
        category_labels=CATEGORY_LABELS,
        circumstance_labels=CIRCUMSTANCE_LABELS,
    )


@bp.route("/pending/<token>/confirm", methods=["POST"])
@roles_required(*IMPORT_ROLES)
def confirm(token: str):
    """Import the previewed file with the organisation's saved mapping; the upload is then deleted."""
    meta, path, organisation = _load_pending(token)
    if not ConfirmForm().validate():
        flash(_("The form has expired: please try again."), "error")
        return redirect(url_for("imports.preview", token=token))
    from core.import_progress import runs_in_background, start_background_import

    if runs_in_background(path):  # a long import: its page shows a progress bar
        start_background_import(token, meta, str(get_locale()))
        return redirect(url_for("imports.progress", token=token))
    session = db_session()
    skip_invalid = bool(meta.get("skip_invalid"))
    result, refusal = _import_and_commit(session, path, organisation, meta["kind"], skip_invalid, meta["filename"])
    _drop_pending(token)
    if refusal is not None:
        flash(_("File refused: nothing was written"), "error")
        return redirect(url_for("main.import_batch", batch_id=refusal.id))
    flash(_("Import finished: %(n)d rows imported.", n=result.imported), "success")
    return redirect(url_for("main.import_batch", batch_id=result.batch_id))


@bp.route("/pending/<token>/cancel", methods=["POST"])
@roles_required(*IMPORT_ROLES)
def cancel(token: str):
    """Drop a waiting upload: nothing of it is kept."""
    _load_pending(token)
    if ConfirmForm().validate():
        _drop_pending(token)
        flash(_("The file was not imported and has been deleted."), "success")
    return redirect(url_for("main.imports"))


# --- the template ------------------------------------------------------------------------------------


@bp.route("/template.csv")
@roles_required(*IMPORT_ROLES)
def template():
    """An empty export with every column of the format: the twelve essential ones first, then the
    analyst's optional ones; French headers and semicolons (``?lang=fr``) or English and commas."""
    from core.importing.columns import SALES_COLUMNS, SALES_REQUIRED

    language = request.args.get("lang") or str(get_locale())
    language = language if language in ("fr", "en") else "fr"
    names = [*SALES_REQUIRED, *(name for name in SALES_COLUMNS if name not in SALES_REQUIRED)]
    header = [SALES_COLUMNS[name][0 if language == "fr" else 1][0] for name in names]
    filename = "modele-import-ventes.csv" if language == "fr" else "sales-import-template.csv"
    return csv_response([], filename, header=header, delimiter=spreadsheet_delimiter())


# --- data quality ------------------------------------------------------------------------------------


@bp.route("/quality")
@roles_required(*IMPORT_ROLES)
def quality():
    """How often each field is filled in an organisation's sales, month by month, and what its
    exports should add. A venue sees its own, exact; staff and administrators choose any
    organisation and read protected figures (core.privacy)."""
    from core.importing.columns import SALES_COLUMNS
    from core.privacy import Release
    from core.quality import ALWAYS, FIELDS, kept_fill_rates, to_add
    from core.views import _import_organisations

    session = db_session()
    organisations = _import_organisations(session)
    chosen = request.args.get("organisation", type=int)
    if current_user.role == "venue":
        organisation = organisations[0] if organisations else None
    else:
        organisation = next((o for o in organisations if o.id == chosen), None)
        if chosen is not None and organisation is None:
            abort(404)
    months, weak, exact = [], [], True
    if organisation is not None:
        exact = current_user.role == "venue" and organisation.id == current_user.organisation_id
        release = None if exact else Release.current(session, organisation_ids=[organisation.id])
        # the month facts kept ready (the imports.quality job), the noise of the current epoch added now
        months = kept_fill_rates(session, organisation.id, release=release)
        weak = to_add(months)

    def label(name: str) -> str:
        return field_label("sales", name) if name in SALES_COLUMNS else name

    page = render_template(
        "imports/quality.html",
        organisations=organisations,
        organisation=organisation,
        months=months,
        weak=weak,
        exact=exact,
        fields=list(FIELDS),
        field_label=label,
        weak_labels=[label(n) for n in weak],
        always_labels=[label(n) for n in ALWAYS],
    )
    session.commit()  # the month facts this request counted and kept, if it did
    return page


def init_app(app) -> None:
    """Register the onboarding pages (and the progress page of a long import)."""
    import core.import_progress  # noqa: F401  (its routes join this blueprint)

    app.register_blueprint(bp)
