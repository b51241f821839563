"""The administrator's page of scheduled jobs: schedules, last runs, and "run now"."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from core.auth import actor_name, roles_required
from core.db import db_session, get_db
from core.models import JobRun, audit
from core.scheduler import describe_schedule, last_runs, next_run_times, registered_jobs, run_job, scheduler_lock

bp = Blueprint("jobs", __name__, url_prefix="/admin/jobs")

STATUS_LABELS = {"running": _l("running"), "success": _l("succeeded"), "failed": _l("failed"),
                 "skipped": _l("skipped (already running)"), "interrupted": _l("interrupted")}
RUNNER_LABELS = {"scheduler": _l("schedule"), "web": _l("run now"), "cli": _l("command line")}


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
    if request.args.get("run", type=int):
        result = session.get(JobRun, request.args.get("run", type=int))
    try:
        holder = scheduler_lock(app).holder()
    except Exception:  # a status line is not worth an error page
        holder = None
    return render_template(
        "admin/jobs.html", specs=specs, runs=runs, shown=shown, result=result, holder=holder,
        upcoming=next_run_times(get_db()), schedules={i: describe_schedule(s.trigger) for i, s in specs.items()},
        status_labels=STATUS_LABELS, runner_labels=RUNNER_LABELS,
    )


@bp.route("/<job_id>/run", methods=["POST"])
@roles_required("admin")
def run_now(job_id: str):
    app = current_app._get_current_object()
    if job_id not in registered_jobs(app):
        abort(404)
    # The job opens its own session and commits it; this request's session only logs who asked.
    run = run_job(app, job_id, runner="web", user_id=current_user.id)
    session = db_session()
    audit(session, "job.run_now", actor=actor_name(), user_id=current_user.id, object_type="job",
          object_id=job_id, run_id=run.id, status=run.status)
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
    app.jinja_env.globals.setdefault("admin_links", []).append(("jobs.index", _l("Scheduled jobs")))
