"""Scheduled jobs: the declaration API, the single-instance lock, the runner and `pilot scheduler run`.

How a package declares its jobs (DESIGN.md §11): its ``jobs.py`` holds a list ``JOBS`` of
:class:`JobSpec`; core gathers ``core.jobs.JOBS`` and ``<feature>.jobs.JOBS`` for every package in
``core.FEATURES`` that has a ``jobs`` module::

    # campaigns/jobs.py
    from flask_babel import lazy_gettext as _l
    from core.scheduler import JobSpec, daily, every

    def move_campaigns_through_dates(ctx):
        '''Apply approval deadlines, launches, ends of window and closings that are due.'''
        moved = 0
        for campaign in ctx.session.scalars(select(Campaign).where(...)):
            if apply_deadline(ctx.session, campaign, ctx.now):   # a service: flushes only
                moved += 1
        return {"moved": moved}          # shown on the admin job page; the runner commits

    JOBS = [
        JobSpec("campaigns.dates", move_campaigns_through_dates, every(minutes=15),
                _l("Move campaigns through their dates")),
        JobSpec("campaigns.reminders", remind_approvers, daily(hour=9), _l("Remind approvers")),
    ]

A job function takes one :class:`JobContext` (``ctx.session``, ``ctx.now``, ``ctx.app``,
``ctx.db``, ``ctx.log``) and returns ``None``, a short text or a JSON-able ``dict`` summary. The
runner opens ``ctx.session``, commits it once when the function returns and rolls it back when it
raises: the failure is logged with its error, recorded on the job's run, nothing of it is kept, and
the job runs again at its next time. A job that needs several units of work (one transaction per
imported file, say) opens its own sessions with ``ctx.db.session()`` and commits each one. Jobs must
be idempotent: a run may be repeated (an administrator's "run now", a missed run caught up).
The ``notify`` helper for reminders shown on dashboards (and e-mailed when ``SMTP_HOST`` is set) is
:func:`core.jobs.notify`.

Only one scheduler runs against a database: ``pilot scheduler run`` holds a lock for its whole life
(a PostgreSQL advisory lock on a dedicated connection; on SQLite an exclusive ``flock`` on a file
next to the database, released by the system whatever way the process ends) and a second one
refuses to start. Each job run also holds a per-job lock, so "run now" on the admin page never
overlaps the scheduler's own run of the same job. The scheduler never starts inside a web worker.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import utc_timestamp_to_datetime
from flask import Flask, has_request_context
from flask_babel import force_locale
from sqlalchemy import MetaData, delete, func, select, update
from sqlalchemy.orm import Session

from core.db import Database, get_db
from core.locks import DatabaseLock, acquire_lock, process_label
from core.models import JobRun, apscheduler_jobs, utcnow

log = logging.getLogger(__name__)

DEFAULT_TIMEZONE = "America/Toronto"  # Montreal's clock: "nightly" means a Montreal night
RUNS_KEPT_PER_JOB = 200
ERROR_MAX_CHARS = 20_000


# --- declaring jobs ------------------------------------------------------------------------------


def every(*, weeks: int = 0, days: int = 0, hours: int = 0, minutes: int = 0, seconds: int = 0) -> dict:
    """An interval schedule: ``every(minutes=5)``. A new interval job first runs when the scheduler starts."""
    values = {"weeks": weeks, "days": days, "hours": hours, "minutes": minutes, "seconds": seconds}
    values = {k: v for k, v in values.items() if v}
    if not values:
        raise ValueError("every() needs a positive interval")
    return {"trigger": "interval", **values}


def daily(*, hour: int = 3, minute: int = 0) -> dict:
    """A daily schedule at ``hour:minute`` on the scheduler's clock (``SCHEDULER_TIMEZONE``)."""
    return {"trigger": "cron", "hour": hour, "minute": minute}


def cron(**fields) -> dict:
    """Any APScheduler cron schedule: ``cron(day_of_week="mon", hour=8)``."""
    return {"trigger": "cron", **fields}


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job as a package declares it.

    :param id: a stable, unique, dotted name (``"campaigns.dates"``); the job store and the run
        history key on it, so renaming it starts a new history.
    :param func: ``func(ctx: JobContext) -> None | str | dict``, a module-level function.
    :param trigger: APScheduler trigger keyword arguments: ``every(...)``, ``daily(...)``,
        ``cron(...)`` or a dict such as ``{"trigger": "interval", "minutes": 5}``.
    :param description: what it does, for the admin page (a lazy gettext string).
    :param confirm: for a job that deletes something for good: what it deletes, in words (a lazy
        gettext string; ``%(days)s`` is replaced by ``CONTACT_LIST_RETENTION_DAYS``). The admin
        page's "run now" then asks for a confirmation that shows it.
    """

    id: str
    func: Callable[["JobContext"], Any]
    trigger: dict
    description: Any = ""
    confirm: Any = None

    def make_trigger(self, timezone: str):
        """The APScheduler trigger, on ``timezone`` unless the declaration names one."""
        kwargs = dict(self.trigger)
        kind = kwargs.pop("trigger", None)
        kwargs.setdefault("timezone", timezone)
        if kind == "interval":
            return IntervalTrigger(**kwargs)
        if kind == "cron":
            return CronTrigger(**kwargs)
        raise ValueError(f"job {self.id!r}: the trigger must be 'interval' or 'cron', not {kind!r}")

    def fingerprint(self, timezone: str) -> str:
        """Identifies the declared schedule: a stored job keeps its next run time while it is unchanged."""
        return json.dumps({"tz": timezone, **self.trigger}, sort_keys=True, default=str)


@dataclass
class JobContext:
    """What a job function receives.

    :ivar session: the job's session; the runner commits it once when the job returns, rolls it
        back when it raises.
    :ivar now: the run's time, naive UTC like every timestamp in the database.
    :ivar app: the application (an app context is pushed: ``current_app`` works, and gettext
        answers in the default language, French, even outside a request).
    :ivar db: the :class:`core.db.Database`, for jobs that commit several units of work.
    :ivar log: a logger named after the job.
    :ivar runner: ``"scheduler"``, ``"web"`` or ``"cli"``.
    """

    session: Session
    now: dt.datetime
    app: Flask
    db: Database
    log: logging.Logger
    job_id: str
    runner: str = "scheduler"


def gather_jobs() -> dict[str, JobSpec]:
    """Every declared job, by id: ``core.jobs.JOBS`` then each feature's ``jobs.JOBS``.

    A feature may take over a core job by declaring the same id (the core fallback for profile
    refreshes, say); two features declaring one id is an error.
    """
    import importlib

    from core import FEATURES

    specs: dict[str, JobSpec] = {}
    owners: dict[str, str] = {}
    for package in ("core", *FEATURES):
        try:
            module = importlib.import_module(f"{package}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name == f"{package}.jobs":
                continue
            raise
        for spec in getattr(module, "JOBS", ()):
            if not isinstance(spec, JobSpec):
                raise TypeError(f"{package}.jobs.JOBS holds {spec!r}, not a JobSpec")
            if spec.id in specs and owners[spec.id] != "core":
                raise ValueError(f"job id {spec.id!r} is declared by {owners[spec.id]} and {package}")
            spec.make_trigger(DEFAULT_TIMEZONE)  # refuse a bad schedule at start-up, not at run time
            specs[spec.id] = spec
            owners[spec.id] = package
    return specs


def registered_jobs(app: Flask) -> dict[str, JobSpec]:
    """The application's jobs (gathered once per application)."""
    if "pilot.jobs" not in app.extensions:
        app.extensions["pilot.jobs"] = gather_jobs()
    return app.extensions["pilot.jobs"]


def scheduler_timezone(app: Flask) -> str:
    return app.config.get("SCHEDULER_TIMEZONE") or DEFAULT_TIMEZONE


# --- running one job -----------------------------------------------------------------------------


def _json_summary(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        value = {"message": str(value)}
    return json.loads(json.dumps(value, default=str))


def _record(db: Database, run_id: int | None = None, **values) -> int:
    """Write a run row in its own short transaction, so that it survives the job's rollback."""
    with db.session() as session:
        if run_id is None:
            run = JobRun(**values)
            session.add(run)
            session.flush()
            run_id = run.id
        else:
            session.execute(update(JobRun).where(JobRun.id == run_id).values(**values))
        session.commit()
    return run_id


def _prune_runs(db: Database, job_id: str) -> None:
    with db.session() as session:
        cutoff = session.scalar(
            select(JobRun.id)
            .where(JobRun.job_id == job_id)
            .order_by(JobRun.id.desc())
            .offset(RUNS_KEPT_PER_JOB)
            .limit(1)
        )
        if cutoff is not None:
            session.execute(delete(JobRun).where(JobRun.job_id == job_id, JobRun.id <= cutoff))
            session.commit()


def run_job(app: Flask, job_id: str, *, runner: str = "scheduler", user_id: int | None = None) -> JobRun:
    """Run one declared job now, in this thread, and record the run.

    The job gets its own session (never a request's), committed once at its end and rolled back if
    it raises; the error is logged and kept on the run. When the same job is already running
    (in the scheduler, or another administrator's "run now"), nothing runs and the run is recorded
    as ``skipped``.

    :param app: the application.
    :param job_id: a declared :class:`JobSpec` id.
    :param runner: ``"scheduler"``, ``"web"`` or ``"cli"``, recorded on the run.
    :param user_id: the administrator who asked, for "run now".
    :returns: the finished :class:`JobRun` (detached).
    :raises KeyError: no job has this id.
    """
    spec = registered_jobs(app)[job_id]
    db = get_db(app)
    process = process_label()
    with app.app_context():
        lock = acquire_lock(db, f"job-{job_id}", label=f"job {job_id}", instance_path=app.instance_path)
        if lock is None:
            now = utcnow()
            run_id = _record(
                db,
                job_id=job_id,
                runner=runner,
                status="skipped",
                started_at=now,
                finished_at=now,
                duration_ms=0,
                process=process,
                user_id=user_id,
                summary={"message": "already running elsewhere: this run was skipped"},
            )
            log.warning("job %s is already running elsewhere: skipped", job_id)
            return _load_run(db, run_id)
        try:
            started = utcnow()
            run_id = _record(
                db, job_id=job_id, runner=runner, status="running", started_at=started, process=process, user_id=user_id
            )
            clock = time.perf_counter()
            status, summary, error = "success", None, None
            job_log = logging.getLogger(f"pilot.jobs.{job_id}")
            try:
                # Jobs speak the district's default language (French), whoever asked: what they
                # write (reasons, messages) must not depend on who clicked "run now".
                with force_locale(app.config.get("BABEL_DEFAULT_LOCALE", "fr")), db.session() as session:
                    context = JobContext(
                        session=session, now=started, app=app, db=db, log=job_log, job_id=job_id, runner=runner
                    )
                    summary = _json_summary(spec.func(context))
                    session.commit()
            except Exception as exc:  # a job's failure is recorded, never the scheduler's end
                status = "failed"
                error = "".join(traceback.format_exception(exc))[-ERROR_MAX_CHARS:]
                job_log.error("job %s failed: %s", job_id, error)
            duration_ms = int((time.perf_counter() - clock) * 1000)
            _record(
                db, run_id, status=status, summary=summary, error=error, finished_at=utcnow(), duration_ms=duration_ms
            )
            if status == "success":
                job_log.info("job %s done in %d ms: %s", job_id, duration_ms, summary)
        finally:
            lock.release()
        _prune_runs(db, job_id)
        return _load_run(db, run_id)


def _load_run(db: Database, run_id: int) -> JobRun:
    with db.session() as session:
        run = session.get(JobRun, run_id)
        session.expunge(run)
        return run


# --- the scheduler process -----------------------------------------------------------------------


class SchedulerError(RuntimeError):
    """The scheduler cannot start (the message says why and what to do)."""


class SchedulerAlreadyRunning(SchedulerError):
    """Another scheduler holds the lock of this database."""


class _AppJobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy store on the application's engine; the table is made by Alembic."""

    def __init__(self, engine):
        # A private MetaData: the same table is declared on the application's (core.models).
        super().__init__(engine=engine, metadata=MetaData(), tablename=apscheduler_jobs.name)

    def shutdown(self):
        pass  # the engine is the application's: never dispose of it here


class _OnceScheduler(BlockingScheduler):
    """``--once``: one pass over the due jobs with APScheduler's own machinery, then stop."""

    def _main_loop(self):
        self._process_jobs()
        self.shutdown(wait=True)


@dataclass
class _Runtime:
    app: Flask
    lock: DatabaseLock
    scheduler: BlockingScheduler | None = None
    failed: list = field(default_factory=list)
    lost_lock: bool = False


_runtime: _Runtime | None = None


def scheduled_job(job_id: str, schedule: str | None = None) -> None:
    """What the job store calls (by reference): run the declared job ``job_id`` in this process.

    ``schedule`` is the fingerprint of the declaration the stored job was made from (unused here).
    """
    runtime = _runtime
    if runtime is None:
        log.error("job %s fired outside 'pilot scheduler run': ignored", job_id)
        return
    if not runtime.lock.alive():
        # Without the lock another scheduler may start: stop rather than risk running twice.
        log.error("the scheduler lost its database lock: stopping without running %s", job_id)
        runtime.lost_lock = True
        if runtime.scheduler is not None and runtime.scheduler.running:
            runtime.scheduler.shutdown(wait=False)
        return
    if job_id not in registered_jobs(runtime.app):
        log.error("job %s is no longer declared: ignored", job_id)
        return
    run = run_job(runtime.app, job_id, runner="scheduler")
    if run.status == "failed":
        runtime.failed.append(job_id)


def _mark_interrupted(db: Database) -> set[str]:
    """Runs a killed scheduler left "running" ended without their writes: mark them, and return
    their jobs, which run again as soon as the scheduler starts."""
    with db.session() as session:
        runs = session.scalars(select(JobRun).where(JobRun.status == "running", JobRun.runner == "scheduler")).all()
        for run in runs:
            run.status = "interrupted"
            run.finished_at = utcnow()
            run.error = "the scheduler stopped during this run: it ran again when the scheduler restarted"
        session.commit()
        return {run.job_id for run in runs}


def _stored_jobs(db: Database) -> dict[str, tuple[str | None, float | None]]:
    """What the job store holds: id -> (schedule fingerprint, next run timestamp)."""
    table = apscheduler_jobs
    stored = {}
    with db.engine.connect() as connection:
        for row in connection.execute(select(table.c.id, table.c.next_run_time, table.c.job_state)):
            try:
                fingerprint = pickle.loads(row.job_state).get("kwargs", {}).get("schedule")
            except Exception:  # written by other code: replace it
                fingerprint = None
            stored[row.id] = (fingerprint, row.next_run_time)
    return stored


def _synchronise(
    scheduler: BlockingScheduler, db: Database, specs: dict[str, JobSpec], timezone: str, run_now: tuple[str, ...] = ()
) -> None:
    """Put the declared jobs in the store. A job whose schedule is unchanged keeps its stored next
    run time, so a run missed while no scheduler ran is caught up (once: misfires coalesce);
    a job no longer declared leaves the store."""
    stored = _stored_jobs(db)
    gone = set(stored) - set(specs)
    if gone:
        with db.engine.begin() as connection:
            connection.execute(delete(apscheduler_jobs).where(apscheduler_jobs.c.id.in_(gone)))
    now = dt.datetime.now(dt.timezone.utc)
    for spec in specs.values():
        fingerprint = spec.fingerprint(timezone)
        trigger = spec.make_trigger(timezone)
        options: dict[str, Any] = {}
        previous = stored.get(spec.id)
        if spec.id in run_now:
            options["next_run_time"] = now
        elif previous and previous[0] == fingerprint and previous[1] is not None:
            options["next_run_time"] = utc_timestamp_to_datetime(previous[1])
        elif isinstance(trigger, IntervalTrigger):
            options["next_run_time"] = now  # a new (or rescheduled) periodic job starts at once
        scheduler.add_job(
            scheduled_job,
            trigger=trigger,
            args=[spec.id],
            kwargs={"schedule": fingerprint},
            id=spec.id,
            name=spec.id,
            replace_existing=True,
            **options,
        )


def scheduler_lock(app: Flask) -> DatabaseLock:
    """The (unacquired) lock that makes one scheduler per database."""
    return DatabaseLock(get_db(app), "scheduler", app.instance_path)


def run_scheduler(app: Flask, *, once: bool = False, run_now: tuple[str, ...] = (), echo=print) -> int:
    """``pilot scheduler run``: run the jobs in this process until stopped (or one pass with ``once``).

    :param once: run every due job one time, wait for them, and return.
    :param run_now: job ids to treat as due now.
    :returns: the exit status: 0, or 1 when a job failed in a ``once`` pass or the lock was lost.
    :raises SchedulerAlreadyRunning: another scheduler holds this database.
    :raises SchedulerError: the database is not migrated.
    """
    global _runtime
    if has_request_context():
        raise RuntimeError("the scheduler never runs inside a web worker")
    db = get_db(app)
    specs = registered_jobs(app)
    unknown = set(run_now) - set(specs)
    if unknown:
        raise KeyError(", ".join(sorted(unknown)))
    from core.migrate import current_revision, heads

    if current_revision(db.engine) not in heads():
        raise SchedulerError("the database is not at the latest migration: run 'pilot db upgrade' first")
    lock = scheduler_lock(app)
    if not lock.acquire("scheduler"):
        holder = lock.holder() or "another process"
        raise SchedulerAlreadyRunning(
            f"another scheduler is already running against this database ({holder}); "
            "only one may run: stop it first, or let it do the work"
        )
    timezone = scheduler_timezone(app)
    previous_handler = None
    try:
        interrupted = _mark_interrupted(db) & set(specs)
        if interrupted:
            log.warning(
                "runs of %s were interrupted when the previous scheduler stopped: running them again",
                ", ".join(sorted(interrupted)),
            )
        scheduler_class = _OnceScheduler if once else BlockingScheduler
        scheduler = scheduler_class(
            jobstores={"default": _AppJobStore(db.engine)},
            executors={"default": ThreadPoolExecutor(max_workers=int(app.config.get("SCHEDULER_WORKERS", 4)))},
            # A run missed while the process was down (or busy) runs once, however late.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone,
        )
        _synchronise(scheduler, db, specs, timezone, tuple(run_now) + tuple(interrupted))
        _runtime = _Runtime(app=app, lock=lock, scheduler=scheduler)
        if threading.current_thread() is threading.main_thread():

            def _stop(signum, _frame):
                raise KeyboardInterrupt  # handled below: finish running jobs, then stop

            previous_handler = signal.signal(signal.SIGTERM, _stop)
        echo(f"Scheduler {'pass' if once else 'started'} ({process_label()}), {len(specs)} job(s): " + ", ".join(specs))
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            echo("Stopping: waiting for running jobs to finish.")
            if scheduler.running:
                scheduler.shutdown(wait=True)
        if _runtime.lost_lock:
            echo("The scheduler lost its database lock and stopped.")
            return 1
        return 1 if once and _runtime.failed else 0
    finally:
        _runtime = None
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        lock.release()


# --- what the admin page and `pilot scheduler jobs` show -----------------------------------------


def next_run_times(db: Database) -> dict[str, dt.datetime | None]:
    """Next run of each stored job (naive UTC), as the scheduler last wrote it."""
    with db.engine.connect() as connection:
        rows = connection.execute(select(apscheduler_jobs.c.id, apscheduler_jobs.c.next_run_time)).all()
    return {
        row.id: (
            dt.datetime.fromtimestamp(row.next_run_time, dt.timezone.utc).replace(tzinfo=None)
            if row.next_run_time is not None
            else None
        )
        for row in rows
    }


def last_runs(session: Session, job_ids, limit: int = 5) -> dict[str, list[JobRun]]:
    """The latest ``limit`` runs of each job, newest first."""
    runs: dict[str, list[JobRun]] = {job_id: [] for job_id in job_ids}
    for job_id in runs:
        runs[job_id] = list(
            session.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.id.desc()).limit(limit))
        )
    return runs


def run_counts(session: Session) -> dict[str, int]:
    return dict(session.execute(select(JobRun.job_id, func.count(JobRun.id)).group_by(JobRun.job_id)).all())


def describe_schedule(trigger: dict) -> str:
    """The schedule in words, in the current language."""
    from flask_babel import gettext as _

    kind = trigger.get("trigger")
    if kind == "interval":
        seconds = int(
            dt.timedelta(
                **{k: trigger.get(k, 0) for k in ("weeks", "days", "hours", "minutes", "seconds")}
            ).total_seconds()
        )
        units = (
            (604800, lambda n: _("every week") if n == 1 else _("every %(num)d weeks", num=n)),
            (86400, lambda n: _("every day") if n == 1 else _("every %(num)d days", num=n)),
            (3600, lambda n: _("every hour") if n == 1 else _("every %(num)d hours", num=n)),
            (60, lambda n: _("every minute") if n == 1 else _("every %(num)d minutes", num=n)),
            (1, lambda n: _("every second") if n == 1 else _("every %(num)d seconds", num=n)),
        )
        for size, words in units:  # in the largest unit the interval is a whole number of
            if seconds and seconds % size == 0:
                return words(seconds // size)
    if kind == "cron":
        fields = {k: v for k, v in trigger.items() if k not in ("trigger", "timezone")}
        if set(fields) <= {"hour", "minute"} and str(fields.get("hour", "")).isdigit():
            clock = "%02d:%02d" % (int(fields["hour"]), int(fields.get("minute", 0)))
            return _("every day at %(time)s", time=clock)
        return "cron " + " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
    return str(trigger)
