"""Scheduled jobs: each job run directly on a real database, the runner, the job store, the lock
that makes one scheduler per database (real `pilot scheduler run` processes), the admin page."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from core.config import PROJECT_ROOT
from core.jobs import notify
from core.locks import acquire_lock
from core.models import (
    AuditEvent,
    ImportBatch,
    JobRun,
    Notification,
    Setting,
    Spectator,
    Transaction,
    apscheduler_jobs,
    utcnow,
)
from core.scheduler import (
    JobSpec,
    SchedulerAlreadyRunning,
    every,
    gather_jobs,
    next_run_times,
    registered_jobs,
    run_job,
    run_scheduler,
    scheduler_lock,
)

HEADER = [
    "Nom",
    "Prénom",
    "Adresse",
    "Code postal",
    "Adresse courriel",
    "Téléphone",
    "Valeur de l'achat",
    "Nombre de billets",
    "Circonstance de l'achat",
    "Date de l'achat",
    "Date du spectacle",
    "Titre du spectacle",
    "Numéro de commande",
]


def sales_csv(path: Path, rows: int = 20, start: int = 0, bad_line: int | None = None) -> Path:
    """A sales export of ``rows`` buyers; ``bad_line`` (editor numbering) gets an unreadable amount."""
    lines = [";".join(HEADER)]
    for i in range(start, start + rows):
        amount = "abc" if bad_line is not None and len(lines) + 1 == bad_line else "25,00 $"
        lines.append(
            f"Tremblay{i};Marie;{i} rue Sainte-Catherine;H2X 1Y4;marie{i}@example.org;514-555-{i % 10000:04d};"
            f"{amount};2;Prix régulier;2026-03-{1 + i % 28:02d};2026-04-01 20:00;Spectacle {i % 3};C{i}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    old = time.time() - 3600  # settled: nobody is still writing it
    os.utime(path, (old, old))
    return path


def count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def reports(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


@pytest.fixture
def inbox(app, make_org):
    """Factory: ``inbox("salle-a")`` creates the organisation and returns its inbox folder."""
    app.config["INBOX_SETTLE_SECONDS"] = 0

    def make(slug: str) -> Path:
        make_org(slug)
        folder = Path(app.config["INBOX_PATH"]) / slug
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    return make


# --- declarations ----------------------------------------------------------------------------------


def test_core_jobs_are_gathered_with_valid_schedules():
    specs = gather_jobs()
    assert "inbox.import" in specs
    assert specs["inbox.import"].trigger == {"trigger": "interval", "minutes": 5}
    try:
        importlib.import_module("segments.profiles")
    except ModuleNotFoundError:
        assert "profiles.refresh" not in specs
    else:
        assert specs["profiles.refresh"].trigger["trigger"] == "cron"


def test_a_bad_schedule_is_refused():
    with pytest.raises(ValueError):
        JobSpec("x.bad", lambda ctx: None, {"trigger": "date"}).make_trigger("UTC")
    with pytest.raises(ValueError):
        every()


# --- the inbox -------------------------------------------------------------------------------------


def test_inbox_imports_a_file_once_and_files_it_in_done(app, db, inbox):
    folder = inbox("salle-a")
    sales_csv(folder / "ventes-mars.csv", rows=20)

    run = run_job(app, "inbox.import", runner="cli")
    assert run.status == "success", run.error
    assert run.summary["imported"] == 1
    with db.session() as s:
        batch = s.scalars(select(ImportBatch)).one()
        assert (batch.status, batch.imported, batch.filename) == ("done", 20, "ventes-mars.csv")
        assert s.scalar(select(func.count()).select_from(Transaction)) == 20
        audit = s.scalar(select(AuditEvent).where(AuditEvent.action == "import.sales"))
        assert audit.actor == "scheduler (inbox)"
        note = s.scalar(select(Notification).where(Notification.kind == "inbox.imported"))
        assert note.organisation_id == batch.organisation_id and "ventes-mars.csv" in note.message_fr
    assert not (folder / "ventes-mars.csv").exists()
    done = list((folder / "done").glob("*ventes-mars.csv"))
    assert len(done) == 1
    (report,) = reports(folder / "done")
    assert report["status"] == "imported" and report["summary"]["imported"] == 20
    assert report["batch_id"] == batch.id and report["moved_to"] == f"done/{done[0].name}"

    # Nothing new: the next run does nothing.
    assert run_job(app, "inbox.import").summary["files"] == []


def test_a_file_dropped_twice_imports_nothing_the_second_time(app, db, inbox):
    folder = inbox("salle-a")
    sales_csv(folder / "ventes.csv", rows=10)
    assert run_job(app, "inbox.import").status == "success"
    # The same bytes again, under another name.
    sales_csv(folder / "ventes-encore.csv", rows=10)
    run = run_job(app, "inbox.import")
    assert run.status == "success"
    assert run.summary["duplicate"] == 1 and run.summary["imported"] == 0
    assert count(db, ImportBatch) == 1
    assert count(db, Transaction) == 10
    assert not (folder / "ventes-encore.csv").exists()
    duplicate = [r for r in reports(folder / "done") if r["file"] == "ventes-encore.csv"]
    assert duplicate[0]["status"] == "duplicate"
    assert "duplicate file" in duplicate[0]["message"]


def test_a_refused_file_goes_to_failed_with_its_report_and_writes_nothing(app, db, inbox, make_user):
    folder = inbox("salle-a")
    sales_csv(folder / "ventes.csv", rows=30, bad_line=17)

    run = run_job(app, "inbox.import")
    assert run.status == "success"  # a refused file is an outcome, not a failure of the job
    assert run.summary["refused"] == 1
    assert count(db, Transaction) == 0
    assert count(db, Spectator) == 0
    with db.session() as s:
        batches = s.scalars(select(ImportBatch)).all()
        # Only the trace that the file was refused, as for a refused upload.
        assert [(b.status, b.imported) for b in batches] == [("refused", 0)]
        note = s.scalar(select(Notification).where(Notification.kind == "inbox.refused"))
        assert note is not None and note.link == f"/imports/{batches[0].id}"
    assert not (folder / "ventes.csv").exists()
    assert len(list((folder / "failed").glob("*ventes.csv"))) == 1
    (report,) = reports(folder / "failed")
    assert report["status"] == "refused"
    assert report["summary"]["errors"][0]["line"] == 17
    assert report["summary"]["imported"] == 0


def test_a_file_still_being_copied_waits(app, db, inbox):
    folder = inbox("salle-a")
    app.config["INBOX_SETTLE_SECONDS"] = 60
    path = sales_csv(folder / "ventes.csv", rows=5)
    os.utime(path)  # just written
    (folder / "ventes2.csv.part").write_text("half")
    assert run_job(app, "inbox.import").summary["files"] == []
    assert path.exists() and count(db, ImportBatch) == 0


def test_unsubscribe_lists_come_through_their_own_folder(app, db, inbox):
    folder = inbox("salle-a")
    sales_csv(folder / "ventes.csv", rows=5)
    assert run_job(app, "inbox.import").summary["imported"] == 1
    unsubscribes = folder / "unsubscribes" / "desabonnements.csv"
    unsubscribes.parent.mkdir()
    unsubscribes.write_text("Courriel;Date\nmarie2@example.org;2026-05-01\n", encoding="utf-8")
    run = run_job(app, "inbox.import")
    assert run.summary["imported"] == 1, run.summary
    with db.session() as s:
        kinds = sorted(s.scalars(select(ImportBatch.kind)))
    assert kinds == ["sales", "unsubscribes"]
    assert len(list((folder / "unsubscribes" / "done").glob("*desabonnements.csv"))) == 1


def test_inbox_import_refreshes_the_profiles(app, db, inbox):
    profiles = pytest.importorskip("segments.profiles")
    from segments.models import SpectatorProfile

    folder = inbox("salle-a")
    sales_csv(folder / "ventes.csv", rows=12)
    run = run_job(app, "inbox.import")
    assert run.summary.get("profiles_refreshed") is True
    assert count(db, SpectatorProfile) == 12
    assert profiles is not None


def test_nightly_profile_refresh_rebuilds_every_profile(app, db, inbox):
    pytest.importorskip("segments.profiles")
    from segments.models import SpectatorProfile

    folder = inbox("salle-a")
    sales_csv(folder / "ventes.csv", rows=8)
    assert run_job(app, "inbox.import").status == "success"
    with db.session() as s:
        s.execute(SpectatorProfile.__table__.delete())
        s.commit()
    run = run_job(app, "profiles.refresh")
    assert run.status == "success", run.error
    assert count(db, SpectatorProfile) == 8


# --- feature jobs ----------------------------------------------------------------------------------


def test_campaign_jobs_move_a_campaign_whose_approval_deadline_passed(app, db, make_org):
    """Every campaigns job, run directly, on a campaign whose approval deadline has passed."""
    campaign_jobs = [i for i, spec in registered_jobs(app).items() if spec.func.__module__.startswith("campaigns.")]
    assert "campaigns.deadlines" in campaign_jobs
    from campaigns.models import Approval, Campaign

    org = make_org("salle-a")
    now = utcnow()
    with db.session() as s:
        campaign = Campaign(
            name="Printemps",
            objective="retention",
            status="awaiting_approvals",
            arms=[{"name": "control", "share": 50}, {"name": "A", "share": 50}],
            approval_deadline=now - dt.timedelta(days=1),
            planned_launch_at=now + dt.timedelta(days=6),
            submitted_at=now - dt.timedelta(days=8),
        )
        s.add(campaign)
        s.flush()
        s.add(Approval(campaign_id=campaign.id, organisation_id=org.id, status="pending"))
        s.commit()
        campaign_id = campaign.id
    for job_id in campaign_jobs:
        run = run_job(app, job_id)
        assert run.status == "success", run.error
    with db.session() as s:
        # Nobody answered before the deadline: the approval expired and the campaign cannot go on.
        assert s.get(Campaign, campaign_id).status == "cancelled"
        assert s.scalar(select(Approval.status).where(Approval.campaign_id == campaign_id)) == "expired"
    for job_id in campaign_jobs:  # idempotent
        assert run_job(app, job_id).status == "success"


def test_approvers_are_reminded_once_before_the_deadline(app, db, make_org):
    from campaigns.models import Approval, Campaign
    from core.models import Notification

    org, other = make_org("salle-a"), make_org("salle-b")
    now = utcnow()
    with db.session() as s:
        campaign = Campaign(
            name="Automne",
            objective="retention",
            status="awaiting_approvals",
            arms=[{"name": "control", "share": 50}, {"name": "A", "share": 50}],
            approval_deadline=now + dt.timedelta(days=1),
            planned_launch_at=now + dt.timedelta(days=6),
        )
        s.add(campaign)
        s.flush()
        s.add_all(
            [
                Approval(campaign_id=campaign.id, organisation_id=org.id, status="pending"),
                Approval(campaign_id=campaign.id, organisation_id=other.id, status="approved"),
            ]
        )
        s.commit()
    assert run_job(app, "campaigns.reminders").status == "success"
    assert run_job(app, "campaigns.reminders").status == "success"
    with db.session() as s:
        notes = s.scalars(select(Notification).where(Notification.kind == "approval.reminder")).all()
        # Only the organisation that has not answered, and only once.
        assert [n.organisation_id for n in notes] == [org.id]
        assert "Automne" in notes[0].message_fr


# --- the runner ----------------------------------------------------------------------------------


def _writes_then_fails(ctx):
    ctx.session.add(Setting(name="half-done", value="1"))
    ctx.session.flush()
    raise RuntimeError("the outside service is down")


def _writes(ctx):
    setting = ctx.session.get(Setting, "done") or Setting(name="done", value="0")
    setting.value = str(int(setting.value) + 1)
    ctx.session.add(setting)
    return {"wrote": 1}


def test_a_failing_job_is_recorded_and_leaves_no_partial_writes(app, db):
    registered_jobs(app)["test.fails"] = JobSpec("test.fails", _writes_then_fails, every(minutes=1), "fails")
    run = run_job(app, "test.fails")
    assert run.status == "failed"
    assert "RuntimeError: the outside service is down" in run.error
    assert run.finished_at is not None and run.duration_ms is not None
    with db.session() as s:
        assert s.get(Setting, "half-done") is None


def test_a_job_commits_once_at_its_end(app, db):
    registered_jobs(app)["test.writes"] = JobSpec("test.writes", _writes, every(minutes=1), "writes")
    run = run_job(app, "test.writes")
    assert (run.status, run.summary) == ("success", {"wrote": 1})
    with db.session() as s:
        assert s.get(Setting, "done").value == "1"


def _speaks(ctx):
    from flask_babel import gettext

    return {"said": gettext("Scheduled jobs")}


def test_a_job_speaks_french_outside_any_request(app):
    registered_jobs(app)["test.speaks"] = JobSpec("test.speaks", _speaks, every(minutes=1), "speaks")
    run = run_job(app, "test.speaks")  # no request here, as in the scheduler's threads
    assert (run.status, run.summary) == ("success", {"said": "Tâches planifiées"}), run.error


def test_a_job_already_running_elsewhere_is_skipped(app, db):
    registered_jobs(app)["test.writes"] = JobSpec("test.writes", _writes, every(minutes=1), "writes")
    held = acquire_lock(db, "job-test.writes", instance_path=app.instance_path)
    assert held is not None
    try:
        run = run_job(app, "test.writes")
    finally:
        held.release()
    assert run.status == "skipped"
    with db.session() as s:
        assert s.get(Setting, "done") is None
    assert run_job(app, "test.writes").status == "success"


# --- the scheduler in this process ---------------------------------------------------------------


def _runs(db, job_id: str) -> list[JobRun]:
    with db.session() as s:
        return list(s.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.id)))


def test_once_runs_what_is_due_and_keeps_the_timetable(app, db, inbox):
    inbox("salle-a")
    assert run_scheduler(app, once=True, echo=lambda m: None) == 0
    assert len(_runs(db, "inbox.import")) == 1  # a new periodic job starts at once
    upcoming = next_run_times(db)
    assert set(upcoming) == set(registered_jobs(app))
    first_next = upcoming["inbox.import"]
    assert first_next > utcnow() + dt.timedelta(minutes=4)

    # A second pass right away: nothing is due, the stored next run time is kept.
    assert run_scheduler(app, once=True, echo=lambda m: None) == 0
    assert len(_runs(db, "inbox.import")) == 1
    assert next_run_times(db)["inbox.import"] == first_next

    # --job makes one due now.
    assert run_scheduler(app, once=True, run_now=("inbox.import",), echo=lambda m: None) == 0
    assert len(_runs(db, "inbox.import")) == 2


def test_missed_runs_are_coalesced_into_one(app, db):
    registered_jobs(app)["test.writes"] = JobSpec("test.writes", _writes, every(hours=1), "writes")
    assert run_scheduler(app, once=True, echo=lambda m: None) == 0
    assert len(_runs(db, "test.writes")) == 1
    # The scheduler was down for three days: 72 runs missed.
    three_days_ago = time.time() - 3 * 86400
    with db.engine.begin() as connection:
        connection.execute(
            update(apscheduler_jobs).where(apscheduler_jobs.c.id == "test.writes").values(next_run_time=three_days_ago)
        )
    assert run_scheduler(app, once=True, echo=lambda m: None) == 0
    assert len(_runs(db, "test.writes")) == 2
    assert next_run_times(db)["test.writes"] > utcnow()


def test_a_failed_job_runs_again_at_its_next_time(app, db):
    registered_jobs(app)["test.fails"] = JobSpec("test.fails", _writes_then_fails, every(hours=1), "fails")
    assert run_scheduler(app, once=True, echo=lambda m: None) == 1  # a failure makes --once exit 1
    assert [r.status for r in _runs(db, "test.fails")] == ["failed"]
    assert next_run_times(db)["test.fails"] > utcnow() + dt.timedelta(minutes=59)


def test_jobs_no_longer_declared_leave_the_store(app, db):
    registered_jobs(app)["test.writes"] = JobSpec("test.writes", _writes, every(hours=1), "writes")
    run_scheduler(app, once=True, echo=lambda m: None)
    del registered_jobs(app)["test.writes"]
    run_scheduler(app, once=True, echo=lambda m: None)
    assert "test.writes" not in next_run_times(db)


def test_an_unmigrated_database_is_refused(app, db, tmp_path):
    from core import create_app
    from core.scheduler import SchedulerError

    empty = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
            "INSTANCE_PATH": app.instance_path,
            "SECRET_KEY": "x",
            "DISTRICT_SECRET": "x",
        }
    )
    with pytest.raises(SchedulerError, match="pilot db upgrade"):
        run_scheduler(empty, once=True, echo=lambda m: None)


def test_a_second_scheduler_refuses_to_start(app, db):
    lock = scheduler_lock(app)
    assert lock.acquire("scheduler")
    try:
        with pytest.raises(SchedulerAlreadyRunning, match="another scheduler is already running"):
            run_scheduler(app, once=True, echo=lambda m: None)
        assert lock.holder() is not None
    finally:
        lock.release()
    assert scheduler_lock(app).holder() is None
    assert count(db, JobRun) == 0
    assert run_scheduler(app, once=True, echo=lambda m: None) == 0


@pytest.mark.engines("postgresql")  # a file lock on SQLite cannot be lost while its process lives
def test_a_lock_lost_with_its_connection_is_noticed(app, db, engine_name):
    from sqlalchemy import text

    lock = scheduler_lock(app)
    assert lock.acquire("scheduler") and lock.alive()
    try:
        with db.engine.connect() as connection:  # a server restart or a network cut, say
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'pilot scheduler%'"
                )
            )
        assert not lock.alive()
        assert scheduler_lock(app).holder() is None
    finally:
        lock.release()


def test_scheduler_commands(app, db, runner, inbox):
    from core.cli import main

    inbox("salle-a")
    result = runner.invoke(main, ["scheduler", "run", "--once"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["scheduler", "jobs", "--json"])
    assert result.exit_code == 0, result.output
    jobs = {job["id"]: job for job in json.loads(result.output)}
    assert jobs["inbox.import"]["last_run"]["status"] == "success"
    assert jobs["inbox.import"]["next_run"].endswith("Z")
    assert jobs["inbox.import"]["description"].startswith("Import the files")
    listing = runner.invoke(main, ["scheduler", "jobs"])
    assert "inbox.import" in listing.output and listing.exit_code == 0
    assert runner.invoke(main, ["scheduler", "run", "--once", "--job", "no.such"]).exit_code == 2


# --- notifications -------------------------------------------------------------------------------


class _SMTPSink(socketserver.ThreadingTCPServer):
    """A tiny SMTP server that keeps what it receives (the test's outside mail server)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.messages: list[str] = []
        super().__init__(("127.0.0.1", 0), _SMTPHandler)


class _SMTPHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"220 sink ready\r\n")
        data, lines = False, []
        while line := self.rfile.readline():
            if data:
                if line.rstrip(b"\r\n") == b".":
                    self.server.messages.append(b"".join(lines).decode("utf-8", "replace"))
                    data, lines = False, []
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp(app):
    server = _SMTPSink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=server.server_address[1], SMTP_FROM="pilot@example.org")
    yield server
    server.shutdown()
    server.server_close()


def test_notify_shows_once_and_mails_after_commit(app, db, make_org, make_user, smtp):
    org = make_org("salle-a")
    user = make_user("venue", org, email="approb@example.org")
    with app.app_context(), db.session() as s:
        note = notify(
            s,
            org.id,
            "approval.reminder",
            "Rappel : approuvez la campagne.",
            "Reminder: approve the campaign.",
            link="/campaigns/1",
            dedupe_key="reminder:1",
        )
        assert note is not None
        assert smtp.messages == []  # nothing leaves before the commit
        s.commit()
        assert notify(s, org.id, "approval.reminder", "x", "y", dedupe_key="reminder:1") is None
        s.commit()
    assert len(smtp.messages) == 1
    assert "To: approb@example.org" in smtp.messages[0]
    assert "Rappel" in smtp.messages[0] and "/campaigns/1" in smtp.messages[0]
    assert count(db, Notification) == 1
    assert user.email == "approb@example.org"


def test_notify_rolled_back_sends_nothing(app, db, make_org, make_user, smtp):
    org = make_org("salle-a")
    make_user("venue", org)
    with app.app_context(), db.session() as s:
        notify(s, org.id, "approval.reminder", "Rappel", "Reminder", dedupe_key="reminder:2")
        s.rollback()
        s.commit()
    assert smtp.messages == []
    assert count(db, Notification) == 0


# --- the admin page --------------------------------------------------------------------------------


def test_admin_sees_jobs_and_runs_one_now(app, db, login_as, inbox):
    folder = inbox("salle-a")
    sales_csv(folder / "ventes.csv", rows=5)
    client = login_as("admin")
    page = client.get("/admin/jobs/?lang=en").get_data(as_text=True)
    assert "inbox.import" in page and "every 5 minutes" in page and "Never run yet." in page
    assert 'href="/admin/jobs/"' in page  # in the administration menu

    response = client.post("/admin/jobs/inbox.import/run")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    # the summary reads as words, not as JSON
    assert "Result of the run" in page and "succeeded" in page and "<li>imported: 1</li>" in page
    assert '"imported"' not in page and "salle-a, file: ventes.csv, status: imported" in page
    assert count(db, ImportBatch) == 1
    (run,) = _runs(db, "inbox.import")
    assert run.runner == "web" and run.user_id == client.user.id
    with db.session() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "job.run_now")).object_id == "inbox.import"


def test_admin_sees_a_failure_with_its_error(app, db, login_as):
    registered_jobs(app)["test.fails"] = JobSpec("test.fails", _writes_then_fails, every(hours=1), "fails")
    client = login_as("admin")
    response = client.post("/admin/jobs/test.fails/run", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "RuntimeError: the outside service is down" in page


@pytest.mark.parametrize("role", ["staff", "venue", "evaluator"])
def test_only_admins_see_or_run_jobs(login_as, db, role):
    client = login_as(role)
    assert client.get("/admin/jobs/").status_code == 403
    assert client.post("/admin/jobs/inbox.import/run").status_code == 403
    assert count(db, JobRun) == 0


def test_run_now_needs_the_csrf_token(database_url, instance_path, tmp_path, make_user):
    import re

    from core import create_app

    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(instance_path),
            "SECRET_KEY": "test-secret",
            "DISTRICT_SECRET": "x",
            "INBOX_PATH": str(tmp_path / "inbox"),
        }
    )
    user = make_user("admin")
    client = app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login_page).group(1)
    client.post("/login", data={"email": user.email, "password": "correct-horse-42", "csrf_token": token})
    assert client.get("/admin/jobs/").status_code == 200  # logged in
    assert client.post("/admin/jobs/inbox.import/run").status_code == 400


def test_unknown_job_is_404(login_as):
    client = login_as("admin")
    assert client.post("/admin/jobs/no.such/run").status_code == 404
    assert client.get("/admin/jobs/?job=no.such").status_code == 404


# --- real scheduler processes --------------------------------------------------------------------


def _pilot() -> list[str]:
    found = shutil.which("pilot")
    return [found] if found else [sys.executable, "-c", "from core.cli import main; main()"]


def _start(database_url: str, instance: Path, *args: str, **env) -> subprocess.Popen:
    environment = dict(os.environ)
    environment.update(DATABASE_URL=database_url, PILOT_INSTANCE=str(instance), **env)
    return subprocess.Popen(
        [*_pilot(), "scheduler", "run", *args],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, timeout: float = 60, what: str = "condition", process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the scheduler exited ({process.returncode}) while waiting for {what}:\n{err[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _stop(process: subprocess.Popen) -> tuple[int, str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def test_two_scheduler_processes_on_one_database_the_second_refuses(app, db, database_url, tmp_path, make_org):
    make_org("salle-a")
    instance = tmp_path / "instance"
    folder = instance / "inbox" / "salle-a"
    sales_csv(folder / "ventes.csv", rows=10)

    first = _start(database_url, instance)
    try:
        _wait_for(
            lambda: list((folder / "done").glob("*ventes.csv")), what="the first scheduler's import", process=first
        )
        _wait_for(
            lambda: [r.status for r in _runs(db, "inbox.import")] == ["success"], what="the run's record", process=first
        )
        second = _start(database_url, instance)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        assert "another scheduler is already running against this database" in err
        assert "Traceback" not in err
        once = _start(database_url, instance, "--once", "--job", "inbox.import")
        _, err = once.communicate(timeout=60)
        assert once.returncode == 1 and "already running" in err
        assert first.poll() is None  # the first one carries on
    finally:
        code, _, err = _stop(first)
    assert code == 0, err
    # Each job ran once, in the first process only.
    assert len(_runs(db, "inbox.import")) == 1
    assert count(db, ImportBatch) == 1
    with db.session() as s:
        assert s.scalar(select(JobRun.process).where(JobRun.job_id == "inbox.import")).endswith(f":{first.pid}")
    # Stopped, it frees the database for the next one.
    assert scheduler_lock(app).holder() is None


@pytest.mark.engines("postgresql")  # the pause is a lock held by the test: a PostgreSQL table lock
def test_killed_in_the_middle_of_an_import_then_imported_whole_on_the_next_start(
    app, db, database_url, tmp_path, make_org
):
    import psycopg

    make_org("salle-a")
    instance = tmp_path / "instance"
    folder = instance / "inbox" / "salle-a"
    rows = 12_000  # more than one write batch: rows are written before the import reaches its end
    sales_csv(folder / "ventes.csv", rows=rows)

    # The test holds the notifications' table: the import writes every row, then waits on the
    # notification it adds just before its commit, and is killed there. No switch in the code.
    holder = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
    holder.execute("LOCK TABLE notification IN SHARE ROW EXCLUSIVE MODE")
    scheduler = _start(database_url, instance)
    try:

        def import_waits_on_the_lock():
            # the backend waiting on the notifications has written sales in its transaction
            return (
                holder.execute(
                    "SELECT count(*) FROM pg_locks waiting JOIN pg_locks written ON written.pid = waiting.pid "
                    "WHERE NOT waiting.granted AND waiting.relation = 'notification'::regclass "
                    "AND written.granted AND written.relation = '\"transaction\"'::regclass "
                    "AND written.mode = 'RowExclusiveLock'"
                ).fetchone()[0]
                > 0
            )

        _wait_for(import_waits_on_the_lock, what="the import to wait before its commit", process=scheduler)
        assert count(db, Transaction) == 0  # written in the import's transaction, not committed
        scheduler.send_signal(signal.SIGKILL)
        scheduler.communicate(timeout=30)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
        holder.rollback()
        holder.close()
    assert scheduler.returncode == -signal.SIGKILL

    # Nothing half-imported, the file still waits in the inbox.
    assert count(db, ImportBatch) == 0
    assert count(db, Transaction) == 0
    assert count(db, Spectator) == 0
    assert (folder / "ventes.csv").exists()
    assert [r.status for r in _runs(db, "inbox.import")] == ["running"]
    _wait_for(lambda: scheduler_lock(app).holder() is None, timeout=30, what="the killed process's lock to go")

    again = _start(database_url, instance, "--once")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    with db.session() as s:
        batch = s.scalars(select(ImportBatch)).one()
        assert (batch.status, batch.imported) == ("done", rows)
        assert s.scalar(select(func.count()).select_from(Transaction)) == rows
    assert not (folder / "ventes.csv").exists()
    assert [r["status"] for r in reports(folder / "done")] == ["imported"]
    assert [r.status for r in _runs(db, "inbox.import")] == ["interrupted", "success"]


# --- jobs that delete for good ask first -----------------------------------------------------------


def test_a_job_that_deletes_asks_for_a_confirmation_first(app, db, login_as):
    client = login_as("admin")
    page = client.get("/admin/jobs/?lang=en").get_data(as_text=True)
    section = page[page.index('id="job-imports.purge_rejects"') :]
    section = section[: section.index("</section>")]
    assert "Deletes for good" in section and "Run now…" in section and "30 days" in section
    url = "/admin/jobs/imports.purge_rejects/run"
    # the button leads to a page that says what will be deleted, with a box to tick
    page = client.post(url).get_data(as_text=True)
    assert "deletes, for good, the files of rejected rows" in page and "(30 days)" in page
    assert 'type="checkbox" name="confirm" value="yes" required' in page and "<script" not in page
    assert count(db, JobRun) == 0
    # sent without ticking the box: nothing runs
    response = client.post(url, data={"step": "confirm"})
    assert response.status_code == 200 and "Tick the box to confirm" in response.get_data(as_text=True)
    assert count(db, JobRun) == 0
    # ticked: it runs, and the audit log says it was confirmed
    response = client.post(url, data={"step": "confirm", "confirm": "yes"})
    assert response.status_code == 302
    (run,) = _runs(db, "imports.purge_rejects")
    assert run.status == "success" and run.runner == "web"
    with db.session() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "job.run_now"))
        assert event.object_id == "imports.purge_rejects" and event.details["confirmed"] is True


def test_the_contact_list_purge_asks_too_and_other_jobs_do_not(app, db, login_as, inbox):
    specs = registered_jobs(app)
    client = login_as("admin")
    if "experiments.purge_lists" in specs:
        page = client.post("/admin/jobs/experiments.purge_lists/run?lang=en").get_data(as_text=True)
        assert "closes for good every contact list past its retention period" in page
        assert count(db, JobRun) == 0
    inbox("salle-a")
    assert client.post("/admin/jobs/inbox.import/run").status_code == 302  # nothing deleted: no question
    assert len(_runs(db, "inbox.import")) == 1
