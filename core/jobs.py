"""Core's scheduled jobs (inbox folders, profile refreshes, rejects purge) and ``notify`` for every package's jobs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import smtplib
import stat
import time
from email.message import EmailMessage
from pathlib import Path

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import event, or_, select
from sqlalchemy.exc import SQLAlchemyError

from core.headline import publish_headlines
from core.models import ImportBatch, Notification, Organisation, User, utcnow
from core.registry import registry
from core.scheduler import JobContext, JobSpec, daily, every

log = logging.getLogger(__name__)

INBOX_ACTOR = "scheduler (inbox)"
# Sub-folders of an organisation's inbox: files dropped in ``unsubscribes/`` are unsubscribe lists.
INBOX_KINDS = (("sales", ""), ("unsubscribes", "unsubscribes"))
# Names a transfer in progress takes (or hidden files): never picked up.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", ".json")
DEFAULT_SETTLE_SECONDS = 60


# --- notifications ---------------------------------------------------------------------------------


def notify(
    session,
    organisation_id: int | None,
    kind: str,
    message_fr: str,
    message_en: str,
    link: str | None = None,
    dedupe_key: str | None = None,
    *,
    role: str | None = None,
    email: bool = True,
) -> Notification | None:
    """Show a message on the dashboards of an organisation's users (and/or of a role), once.

    Flushes, never commits. When ``SMTP_HOST`` is configured the message is also e-mailed to those
    users (in their language) after the caller's transaction commits, never if it rolls back.

    :param organisation_id: the organisation whose users see it (``None`` with ``role``: a role's).
    :param kind: a short dotted key (``"approval.reminder"``).
    :param message_fr: the message in French. :param message_en: the message in English.
    :param link: a path in the application (``/campaigns/3``) the message points to.
    :param dedupe_key: at most one notification ever carries this key: a reminder sent again by
        the next run of its job is not repeated (at most 120 characters).
    :param role: also (or instead) show it to every user with this role.
    :param email: ``False`` to keep it to the dashboard.
    :returns: the new notification, or ``None`` when ``dedupe_key`` was already used.
    """
    if (
        dedupe_key is not None
        and session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe_key)) is not None
    ):
        return None
    note = Notification(
        organisation_id=organisation_id,
        role=role,
        kind=kind,
        message_fr=message_fr,
        message_en=message_en,
        link=link,
        dedupe_key=dedupe_key,
    )
    session.add(note)
    session.flush()
    config = current_app.config
    if email and config.get("SMTP_HOST"):
        audience = []
        if organisation_id is not None:
            audience.append(User.organisation_id == organisation_id)
        if role is not None:
            audience.append(User.role == role)
        users = session.scalars(select(User).where(User.active.is_(True), or_(*audience))).all() if audience else []
        if users:
            _queue_mail(session, config, [(u.email, u.locale or "fr") for u in users], message_fr, message_en, link)
    return note


def _smtp_setting(config, name: str, default=None):
    return config.get(name) or os.environ.get(f"PILOT_{name}") or default


def _queue_mail(session, config, recipients, message_fr: str, message_en: str, link: str | None) -> None:
    settings = {
        "host": config["SMTP_HOST"],
        "port": int(_smtp_setting(config, "SMTP_PORT", 25)),
        "user": _smtp_setting(config, "SMTP_USER"),
        "password": _smtp_setting(config, "SMTP_PASSWORD"),
        "sender": _smtp_setting(config, "SMTP_FROM", "quartier-pilot@localhost"),
        "starttls": str(_smtp_setting(config, "SMTP_STARTTLS", "")).lower() in ("1", "true", "yes"),
        "base_url": (_smtp_setting(config, "PUBLIC_URL", "") or "").rstrip("/"),
    }
    outbox = session.info.get("pilot.outbox")
    if outbox is None:
        outbox = session.info["pilot.outbox"] = []
        event.listen(session, "after_commit", _send_outbox)
        event.listen(session, "after_rollback", lambda s: s.info.get("pilot.outbox", []).clear())
    for address, locale in recipients:
        text = message_en if locale == "en" else message_fr
        if link:
            text += "\n\n" + settings["base_url"] + link
        outbox.append((settings, address, text))


def _send_outbox(session) -> None:
    """After commit: send what ``notify`` queued; a mail server down is logged, never fatal."""
    outbox = session.info.get("pilot.outbox") or []
    pending, outbox[:] = list(outbox), []
    for settings, address, text in pending:
        message = EmailMessage()
        message["From"] = settings["sender"]
        message["To"] = address
        message["Subject"] = "[quartier-pilot] " + text.splitlines()[0][:120]
        message.set_content(text)
        try:
            with smtplib.SMTP(settings["host"], settings["port"], timeout=30) as smtp:
                if settings["starttls"]:
                    smtp.starttls()
                if settings["user"]:
                    smtp.login(settings["user"], settings["password"] or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException):
            log.exception("could not e-mail a notification to %s", address)


# --- the inbox folders -----------------------------------------------------------------------------


def inbox_folder(app, slug: str) -> Path:
    """Where an organisation drops its exports: ``<INBOX_PATH>/<slug>/``."""
    return Path(app.config["INBOX_PATH"]) / slug


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _outside(path: Path, folder: Path) -> str | None:
    """Why ``path`` (an entry of ``folder``) is not a file of ``folder`` itself, or None when it is.

    An inbox takes plain files only: a symbolic link (to another organisation's folder, to a file
    of the server) is never followed, nor a hard link to a file that lives elsewhere too, nor a
    device or a pipe; and the entry must resolve inside ``folder``."""
    try:
        if path.is_symlink():
            return "a symbolic link is never followed: drop the file itself"
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return "not a plain file"
    if info.st_nlink > 1:
        return "a hard link to a file kept elsewhere is not taken: drop a copy of the file"
    if path.resolve().parent != folder.resolve():
        return "outside the organisation's folder"
    return None


def _inbox_folder_ok(root: Path, folder: Path) -> bool:
    """``folder`` is a real directory inside the inbox root (itself no symbolic link): an
    organisation's folder (or its ``unsubscribes/``) made a link to elsewhere is not read."""
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
        return folder.resolve().is_relative_to(
            root.resolve()
        ) and folder.resolve() == root.resolve() / folder.relative_to(root)
    except (OSError, ValueError):
        return False


def _waiting_files(folder: Path, settle_seconds: float, refused: list | None = None) -> list[Path]:
    """Files ready in ``folder``: not hidden, not a transfer in progress, unchanged for a while.

    Entries that are not plain files of the folder (see :func:`_outside`) are never returned;
    they are appended to ``refused`` as (path, reason) when a list is given."""
    if not folder.is_dir():
        return []
    now = time.time()
    ready = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.lower().endswith(PARTIAL_SUFFIXES):
            continue
        if path.is_dir() and not path.is_symlink():
            continue  # done/, failed/, unsubscribes/
        reason = _outside(path, folder)
        if reason is not None:
            if refused is not None:
                refused.append((path, reason))
            continue
        try:
            if not path.is_file() or now - path.stat().st_mtime < settle_seconds:
                continue  # maybe still being copied: next run
        except FileNotFoundError:
            continue
        ready.append(path)
    return ready


def _refuse_entry(organisation_slug: str, path: Path, kind: str, reason: str) -> dict:
    """File an entry the inbox does not take into ``failed/`` (a link is moved as a link: what it
    points to is never opened), with a report saying why."""
    report = {
        "file": path.name,
        "kind": kind,
        "organisation": organisation_slug,
        "status": "refused",
        "at": utcnow().isoformat(timespec="seconds"),
        "message": f"not imported: {reason}",
    }
    log.warning("inbox of %s: %s refused (%s)", organisation_slug, path.name, reason)
    try:
        _file_away(path, "failed", report)
    except OSError:
        log.exception("inbox of %s: could not file %s away", organisation_slug, path.name)
    return report


def _file_away(path: Path, outcome: str, report: dict) -> Path:
    """Move ``path`` to ``done/`` or ``failed/`` beside it, its report (``.json``) next to it."""
    target_dir = path.parent / outcome
    target_dir.mkdir(exist_ok=True)
    stem = f"{utcnow():%Y%m%d-%H%M%S}_{path.name}"
    target, n = target_dir / stem, 1
    while target.exists() or target.with_name(target.name + ".json").exists():
        n += 1
        target = target_dir / f"{stem}.{n}"
    report = {**report, "moved_to": f"{outcome}/{target.name}"}
    report_path = target.with_name(target.name + ".json")
    tmp = report_path.with_name(report_path.name + ".tmp")
    tmp.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, report_path)
    os.replace(path, target)
    return target


def import_inbox_file(ctx: JobContext, organisation_id: int, path: Path, kind: str = "sales") -> dict:
    """Import one dropped file exactly once, in its own transaction, then file it away.

    - Its checksum matches a committed import of the organisation: nothing is imported, the file
      goes to ``done/`` with a "duplicate file" report.
    - It imports: committed, then moved to ``done/`` (only after the commit: a process killed
      before leaves the file in place and nothing of it in the database, so it imports whole at
      the next run; killed between commit and move, the next run files it as a duplicate).
    - It is refused (bad rows, unreadable): nothing is written but the trace of the refusal
      (an ``ImportBatch`` with status ``refused``, its audit event and a notification to the
      organisation); the file goes to ``failed/`` with its report.
    Database errors propagate: the file stays for the next run.

    :returns: the report written next to the file.
    """
    from core.importing import ImportRefused, import_file, record_refused_import

    checksum = _checksum(path)
    report = {"file": path.name, "kind": kind, "checksum": checksum, "at": utcnow().isoformat(timespec="seconds")}
    with ctx.db.session() as session:
        organisation = session.get(Organisation, organisation_id)
        report["organisation"] = organisation.slug
        previous = session.scalar(
            select(ImportBatch)
            .where(
                ImportBatch.organisation_id == organisation_id,
                ImportBatch.checksum == checksum,
                ImportBatch.status == "done",
            )
            .order_by(ImportBatch.id)
            .limit(1)
        )
        if previous is not None:
            report.update(
                status="duplicate",
                batch_id=previous.id,
                message=f"duplicate file: already imported as batch {previous.id} "
                f"({previous.filename}, {previous.created_at:%Y-%m-%d %H:%M} UTC); nothing imported",
            )
            session.rollback()
            _file_away(path, "done", report)
            return report
        try:
            result = import_file(session, path, organisation, kind=kind, filename=path.name, actor=INBOX_ACTOR)
        except ImportRefused as exc:
            session.rollback()
            batch = record_refused_import(session, organisation, exc.result, filename=path.name, actor=INBOX_ACTOR)
            # Columns named the organisation's own way: one upload on the Imports page maps them, and
            # the inbox then uses that mapping (core.importing.mapping).
            from core.importing.common import _ as importer_message

            missing = importer_message("This required column is missing.")  # as the importer worded it
            unmatched = any(e["reason"] == missing for e in exc.result.errors)
            notify(
                session,
                organisation_id,
                "inbox.refused",
                f"Le fichier « {path.name} » déposé dans la boîte de dépôt a été refusé : rien n'a été importé."
                + (
                    " Des colonnes obligatoires n'ont pas été reconnues : importez ce fichier une fois depuis la "
                    "page Imports pour associer ses colonnes ; les fichiers suivants de la boîte de dépôt "
                    "utiliseront cette association."
                    if unmatched
                    else ""
                ),
                f"The file “{path.name}” dropped in the inbox was refused: nothing was imported."
                + (
                    " Required columns were not recognised: import this file once from the Imports page to "
                    "match its columns; the inbox's later files will use that mapping."
                    if unmatched
                    else ""
                ),
                link=f"/imports/{batch.id}",
                dedupe_key=f"inbox:{batch.id}",
            )
            session.commit()
            report.update(
                status="refused",
                batch_id=batch.id,
                summary=exc.result.to_json(),
                message="file refused: nothing imported",
            )
            _file_away(path, "failed", report)
            return report
        except SQLAlchemyError:
            raise
        except FileNotFoundError:
            session.rollback()
            report.update(status="vanished", message="the file disappeared before it was imported")
            return report
        except Exception as exc:  # a file the importer cannot read at all
            session.rollback()
            ctx.log.exception("inbox file %s of %s could not be imported", path.name, report["organisation"])
            report.update(status="error", message=f"{type(exc).__name__}: {exc}")
            _file_away(path, "failed", report)
            return report
        notify(
            session,
            organisation_id,
            "inbox.imported",
            f"Le fichier « {path.name} » déposé dans la boîte de dépôt a été importé : "
            + (f"{result.imported} ligne ajoutée." if result.imported <= 1 else f"{result.imported} lignes ajoutées."),
            f"The file “{path.name}” dropped in the inbox was imported: "
            + ("1 row added." if result.imported == 1 else f"{result.imported} rows added."),
            link=f"/imports/{result.batch_id}",
            dedupe_key=f"inbox:{result.batch_id}",
            email=False,
        )
        session.commit()
    report.update(status="imported", batch_id=result.batch_id, summary=result.to_json(), message="imported")
    _file_away(path, "done", report)
    return report


def _after_import(ctx: JobContext, batch_id: int) -> bool | None:
    """Run the hooks the features registered for a committed batch (the segments package refreshes
    the profiles it touched), in their own transaction; None when no feature registered one.

    A failure here keeps the import (the nightly refresh catches up) and is logged.
    """
    hooks = registry(ctx.app).after_import
    if not hooks:
        return None
    try:
        with ctx.db.session() as session:
            for hook in hooks:
                hook(session, batch_id)
            session.commit()
        return True
    except SQLAlchemyError:
        ctx.log.exception("the work after import batch %s failed", batch_id)
        return False


def import_inboxes(ctx: JobContext) -> dict:
    """Import the files dropped in each organisation's inbox folder (``<INBOX_PATH>/<slug>/``,
    unsubscribe lists in ``<slug>/unsubscribes/``), each in its own transaction, exactly once.

    A file is picked up once unchanged for ``INBOX_SETTLE_SECONDS`` (default 60), so that one still
    being copied is left for the next run. Each organisation's folder is created if missing.
    """
    settle = float(ctx.app.config.get("INBOX_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS))
    organisations = [(o.id, o.slug) for o in ctx.session.scalars(select(Organisation).order_by(Organisation.slug))]
    ctx.session.rollback()  # each file has its own transaction
    counts = {"imported": 0, "duplicate": 0, "refused": 0, "error": 0}
    files, refreshed = [], []
    root = Path(ctx.app.config["INBOX_PATH"])
    for organisation_id, slug in organisations:
        folder = inbox_folder(ctx.app, slug)
        if not folder.is_symlink():
            folder.mkdir(parents=True, exist_ok=True)
        for kind, sub in INBOX_KINDS:
            where = folder / sub if sub else folder
            if where.exists() or where.is_symlink():
                if not _inbox_folder_ok(root, where):
                    ctx.log.warning("inbox folder %s is a link or lies outside the inbox: not read", where)
                    counts["refused"] += 1
                    files.append(
                        {
                            "organisation": slug,
                            "file": str(where.relative_to(root)),
                            "status": "refused",
                            "batch_id": None,
                        }
                    )
                    continue
            refused_entries: list = []
            waiting = _waiting_files(where, settle, refused_entries)
            for path, reason in refused_entries:
                _refuse_entry(slug, path, kind, reason)
                counts["refused"] += 1
                files.append({"organisation": slug, "file": path.name, "status": "refused", "batch_id": None})
            for path in waiting:
                report = import_inbox_file(ctx, organisation_id, path, kind)
                counts[report["status"]] = counts.get(report["status"], 0) + 1
                files.append(
                    {
                        "organisation": slug,
                        "file": path.name,
                        "status": report["status"],
                        "batch_id": report.get("batch_id"),
                    }
                )
                if report["status"] == "imported":
                    refreshed.append(_after_import(ctx, report["batch_id"]))
    summary = {**counts, "files": files[:100]}
    if refreshed and refreshed[0] is not None:
        summary["profiles_refreshed"] = all(refreshed)
    return summary


# --- rejects files ---------------------------------------------------------------------------------


def purge_import_rejects(ctx: JobContext) -> dict:
    """Delete the rejected rows that imports set aside, once ``CONTACT_LIST_RETENTION_DAYS`` have
    passed since the import (they hold names and e-mails); each deletion is logged."""
    from core.rejects import purge_rejects

    return purge_rejects(ctx.session, ctx.app, ctx.now)


def publish_headline_figures(ctx: JobContext) -> dict:
    """Bring the dashboard's kept headline figures up to the current data epoch (core.headline)."""
    return publish_headlines(ctx.session, commit=ctx.session.commit)


def keep_quality_figures(ctx: JobContext) -> dict:
    """Count again the import quality pages' month facts of the organisations whose data moved (core.quality)."""
    from core.quality import keep_quality

    return keep_quality(ctx.session, commit=ctx.session.commit)


def _declared() -> list[JobSpec]:
    jobs = [
        JobSpec(
            "inbox.import",
            import_inboxes,
            every(minutes=5),
            _l("Import the files dropped in the organisations' inbox folders"),
        ),
        JobSpec(
            "headline.publish",
            publish_headline_figures,
            every(minutes=1),
            _l("Count the dashboard's headline figures again after the data changed"),
        ),
        JobSpec(
            "imports.quality",
            keep_quality_figures,
            every(minutes=1),
            _l("Count the import quality pages' figures again after the data changed"),
        ),
        JobSpec(
            "imports.purge_rejects",
            purge_import_rejects,
            daily(hour=2, minute=45),
            _l("Delete the rejected rows of imports past their retention period"),
            confirm=_l(
                "This deletes, for good, the files of rejected rows of every import older than "
                "the retention period (%(days)s days): the organisations can no longer download "
                "them. The imported data itself is kept."
            ),
        ),
    ]
    return jobs


JOBS = _declared()
