"""The administrator's page of scheduled jobs: schedules, last runs, and "run now"."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from core import id_arg
from core.auth import actor_name, roles_required
from core.db import db_session, get_db
from core.models import JobRun, audit
from core.registry import registry
from core.scheduler import describe_schedule, last_runs, next_run_times, registered_jobs, run_job, scheduler_lock

bp = Blueprint("jobs", __name__, url_prefix="/admin/jobs")

STATUS_LABELS = {
    "running": _l("running"),
    "success": _l("succeeded"),
    "failed": _l("failed"),
    "skipped": _l("skipped (already running)"),
    "interrupted": _l("interrupted"),
}
RUNNER_LABELS = {"scheduler": _l("schedule"), "web": _l("run now"), "cli": _l("command line")}

# Words for the keys the jobs put in their summaries; any other key is shown as it is.
SUMMARY_LABELS = {
    "imported": _l("imported"),
    "duplicate": _l("duplicates"),
    "refused": _l("refused"),
    "error": _l("errors"),
    "files": _l("files"),
    "profiles_refreshed": _l("profiles refreshed"),
    "purged": _l("purged"),
    "orphans": _l("orphan files deleted"),
    "mode": _l("mode"),
    "rows": _l("rows"),
    "refreshed": _l("refreshed"),
    "experiments": _l("experiments"),
    "moved": _l("moved"),
    "reminders": _l("reminders"),
    "message": _l("message"),
    "organisation": _l("organisation"),
    "file": _l("file"),
    "status": _l("status"),
    "batch_id": _l("import"),
    "experiment": _l("experiment"),
    "seconds": _l("seconds"),
    "converted": _l("converted"),
}
SUMMARY_ITEMS_SHOWN = 20


def _label(key) -> str:
    label = SUMMARY_LABELS.get(key)
    return str(label) if label is not None else str(key).replace("_", " ")


def _value_text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, dict):
        return ", ".join(f"{_label(k)}: {_value_text(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value) or "—"
    return str(value)


def readable_summary(summary) -> list[tuple[str, str | list[str]]]:
    """A run's summary as (label, text) pairs, in the current language; a list of records (the files
    an inbox run imported, say) becomes a list of texts, the first twenty of them and a count."""
    if not summary:
        return []
    if not isinstance(summary, dict):
        return [(_label("message"), str(summary))]
    items: list[tuple[str, str | list[str]]] = []
    for key, value in summary.items():
        if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
            texts = [_value_text(v) for v in value[:SUMMARY_ITEMS_SHOWN]]
            if len(value) > SUMMARY_ITEMS_SHOWN:
                texts.append(_("… and %(n)d more.", n=len(value) - SUMMARY_ITEMS_SHOWN))
            items.append((_label(key), texts or "—"))
        else:
            items.append((_label(key), _value_text(value)))
    return items


def confirmation_text(app, spec) -> str | None:
    """What a job deletes for good, in words (None: it deletes nothing and runs without asking)."""
    text = spec.confirm
    if text is None:
        return None
    from core.rejects import retention_days

    return str(text) % {"days": retention_days(app)}


@bp.route("/")
@roles_required("admin")
def index():
    app = current_app._get_current_object()
    session = db_session()
    specs = registered_jobs(app)
    shown = request.args.get("job")
    if shown is not None and shown not in specs:
        abort(404)
    runs = last_runs(session, specs, limit=5)
    if shown:
        runs[shown] = last_runs(session, [shown], limit=50)[shown]
    result = None
    if id_arg("run"):
        result = session.get(JobRun, id_arg("run"))
    try:
        holder = scheduler_lock(app).holder()
    except Exception:  # a status line is not worth an error page
        holder = None
    return render_template(
        "admin/jobs.html",
        specs=specs,
        runs=runs,
        shown=shown,
        result=result,
        holder=holder,
        upcoming=next_run_times(get_db()),
        schedules={i: describe_schedule(s.trigger) for i, s in specs.items()},
        status_labels=STATUS_LABELS,
        runner_labels=RUNNER_LABELS,
        confirmations={i: confirmation_text(app, s) for i, s in specs.items()},
    )


@bp.route("/<job_id>/run", methods=["POST"])
@roles_required("admin")
def run_now(job_id: str):
    """Run a job now. A job that deletes for good first shows what it deletes and runs only once
    the administrator ticks the confirmation (a page of its own: no script, the CSP has none)."""
    app = current_app._get_current_object()
    spec = registered_jobs(app).get(job_id)
    if spec is None:
        abort(404)
    warning = confirmation_text(app, spec)
    if warning is not None and request.form.get("confirm") != "yes":
        unticked = request.form.get("step") == "confirm"
        if unticked:
            flash(_("Tick the box to confirm, or go back: nothing was run."), "error")
        return render_template(
            "admin/job_confirm.html", spec=spec, warning=warning, schedule=describe_schedule(spec.trigger)
        )
    # The job opens its own session and commits it; this request's session only logs who asked.
    run = run_job(app, job_id, runner="web", user_id=current_user.id)
    session = db_session()
    audit(
        session,
        "job.run_now",
        actor=actor_name(),
        user_id=current_user.id,
        object_type="job",
        object_id=job_id,
        run_id=run.id,
        status=run.status,
        **({"confirmed": True} if warning else {}),
    )
    session.commit()
    if run.status == "success":
        flash(_("The job %(job)s ran successfully.", job=job_id), "success")
    elif run.status == "skipped":
        flash(_("The job %(job)s is already running: it was not started again.", job=job_id), "warning")
    else:
        flash(_("The job %(job)s failed; nothing of it was kept. The error is shown below.", job=job_id), "error")
    return redirect(url_for("jobs.index", job=job_id, run=run.id))


def init_app(app) -> None:
    """Register the page and its link in the administration menu."""
    app.register_blueprint(bp)
    app.jinja_env.globals.update(readable_summary=readable_summary)
    registry(app).add_admin_link("jobs.index", _l("Scheduled jobs"))
