"""The ``pilot`` command line (a contract: see DESIGN.md §5)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import select

from core.db import get_db
from core.models import Organisation, audit


def _create_app():
    from core import create_app

    return create_app()


class PilotGroup(FlaskGroup):
    """Flask's command group without the development commands a user of ``pilot`` never needs."""

    def list_commands(self, ctx):
        return [c for c in super().list_commands(ctx) if c not in {"run", "shell", "routes"}]


@click.group(
    cls=PilotGroup,
    create_app=_create_app,
    add_default_commands=True,
    add_version_option=False,
    load_dotenv=False,
    help="quartier-pilot: run the district's relational-marketing pilot.",
)
def main():
    pass


# --- db ----------------------------------------------------------------------------------------


@main.group("db")
def db_group():
    """Migrate the database and check it against the models."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision):
    """Apply the migrations to the database at DATABASE_URL."""
    from core.migrate import upgrade

    upgrade(get_db().engine, revision)
    click.echo(f"Database at {get_db().engine.url.render_as_string(hide_password=True)} is at {revision}.")


@db_group.command("check")
@with_appcontext
def db_check():
    """Report drift between the models and the migrations (exit 1 on drift)."""
    from core.migrate import drift

    problems = drift(get_db().engine)
    if problems:
        click.echo("Drift between models and migrations:", err=True)
        for line in problems:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    click.echo("No drift: the database matches the models.")


@db_group.command("revision")
@click.argument("message")
@with_appcontext
def db_revision(message):
    """Write a new migration from the difference between the models and the database (developers)."""
    from alembic import command

    from core.migrate import alembic_config, load_all_models

    load_all_models()
    config = alembic_config(get_db().engine)
    with get_db().engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


# --- organisations and users -------------------------------------------------------------------


@main.group("orgs")
def orgs_group():
    """Organisations of the district."""


@orgs_group.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--kind", type=click.Choice(["venue", "company", "festival"]), default="venue", show_default=True)
@click.option(
    "--k",
    "k_threshold",
    type=click.IntRange(min=2),
    default=None,
    help="A stricter small-cell threshold for this organisation.",
)
@with_appcontext
def orgs_create(slug, name, kind, k_threshold):
    """Register an organisation (an import needs its organisation to exist)."""
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", slug):
        raise click.ClickException("the slug takes lower-case letters, digits and dashes (at most 40)")
    with get_db().session() as session:
        if session.scalar(select(Organisation).where(Organisation.slug == slug)):
            raise click.ClickException(f"organisation {slug!r} already exists")
        org = Organisation(slug=slug, name=name, kind=kind, k_threshold=k_threshold)
        session.add(org)
        session.flush()
        audit(session, "organisation.create", actor="cli", object_type="organisation", object_id=org.id, slug=slug)
        session.commit()
    click.echo(f"Organisation {slug} created.")


@orgs_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def orgs_list(as_json):
    """List the organisations."""
    with get_db().session() as session:
        orgs = session.scalars(select(Organisation).order_by(Organisation.slug)).all()
        rows = [{"slug": o.slug, "name": o.name, "kind": o.kind, "k": o.k_threshold} for o in orgs]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            click.echo(f"{row['slug']:<24} {row['kind']:<9} {row['name']}")


@main.group("users")
def users_group():
    """Users and their roles."""


@users_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["staff", "venue", "evaluator", "admin"]), required=True)
@click.option("--org", "org_slug", help="The organisation of a venue user.")
@click.option("--name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def users_create(email, role, org_slug, name, password_stdin):
    """Create a user (the password is asked for, or read from standard input)."""
    from core.auth import PasswordError, create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with get_db().session() as session:
        org_id = None
        if org_slug:
            org = session.scalar(select(Organisation).where(Organisation.slug == org_slug))
            if org is None:
                raise click.ClickException(f"no organisation {org_slug!r}: create it with 'pilot orgs create'")
            org_id = org.id
        try:
            user = create_user(session, email, password, role, org_id, name)
        except (PasswordError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        audit(session, "user.create", actor="cli", object_type="user", object_id=user.id, role=role)
        session.commit()
    click.echo(f"User {email} ({role}) created.")


# --- import ------------------------------------------------------------------------------------


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org_slug", required=True, help="The organisation whose export this is.")
@click.option("--kind", type=click.Choice(["sales", "unsubscribes"]), default="sales", show_default=True)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the good rows; write the bad ones to a rejects file in the instance folder "
    "(kept for CONTACT_LIST_RETENTION_DAYS, downloadable from the import's page).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@with_appcontext
def import_command(file, org_slug, kind, skip_invalid, as_json):
    """Import one ticketing export (DESIGN.md §6): a CSV or an Excel workbook (.xlsx, .xls, .ods)."""
    from core.importing import ImportRefused, import_file, record_refused_import
    from core.rejects import new_rejects_path

    with get_db().session() as session:
        org = session.scalar(select(Organisation).where(Organisation.slug == org_slug))
        if org is None:
            raise click.ClickException(f"no organisation {org_slug!r}: create it with 'pilot orgs create'")
        progress = None if as_json or not sys.stderr.isatty() else "terminal"
        # The refused rows are personal data: kept where the application offers them to the
        # organisation and purges them after the retention period, never beside the export.
        rejects_path = new_rejects_path(current_app, org.slug) if skip_invalid else None
        try:
            result = import_file(
                session,
                file,
                org,
                kind=kind,
                skip_invalid=skip_invalid,
                progress=progress,
                filename=file.name,
                rejects_path=rejects_path,
            )
        except ImportRefused as exc:
            # Nothing of a refused file is kept but the trace that it was refused.
            session.rollback()
            record_refused_import(session, org, exc.result, filename=file.name)
            session.commit()
            _print_import(exc.result, as_json)
            sys.exit(1)
        except OSError as exc:
            session.rollback()
            raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
        session.commit()
        _print_import(result, as_json)


def _print_import(result, as_json: bool) -> None:
    summary = result.to_json()
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    if summary.get("refused"):
        click.echo("File refused: nothing was written.", err=True)
    click.echo(
        f"rows {summary['rows']}: imported {summary['imported']}, duplicates {summary['duplicates']}, "
        f"rejected {summary['rejected']}, anonymous {summary['anonymous']}, "
        f"new to this organisation {summary['spectators_new']}"
    )
    for error in summary["errors"]:
        click.echo(f"  line {error['line']}, column {error['column']}: {error['reason']}", err=True)
    if summary.get("errors_total", 0) > len(summary["errors"]):
        click.echo(f"  ... and {summary['errors_total'] - len(summary['errors'])} more", err=True)
    if summary.get("unknown_disciplines"):
        click.echo("Unknown show types, stored as 'other': " + ", ".join(summary["unknown_disciplines"]))
    if summary.get("rejects_file"):
        from core.rejects import retention_days

        click.echo(
            f"Rejected rows written to {summary['rejects_file']} (kept {retention_days(current_app)} days; "
            f"the organisation downloads them from the page of import {summary['batch_id']})"
        )


# --- demo --------------------------------------------------------------------------------------


@main.command("demo")
@click.option("--spectators", type=click.IntRange(min=100), default=50_000, show_default=True)
@click.option("--seed", type=int, default=2017, show_default=True)
@click.option("--no-serve", is_flag=True, help="Build the demo district and stop.")
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--fresh", is_flag=True, help="Empty every table first, then build the district anew.")
@click.option("--no-scheduler", is_flag=True, help="Serve without starting 'pilot scheduler run' beside the server.")
@with_appcontext
def demo_command(spectators, seed, no_serve, port, fresh, no_scheduler):
    """Build a demo district (migrating first), print the logins, then serve it with its scheduler."""
    from core.demo import build_demo
    from core.migrate import upgrade

    app = current_app._get_current_object()
    upgrade(get_db().engine)
    logins = build_demo(get_db(), spectators=spectators, seed=seed, echo=click.echo, fresh=fresh)
    click.echo("")
    click.echo("Demo logins (password for all: %s):" % logins["password"])
    for role, email in logins["users"]:
        click.echo(f"  {role:<10} {email}")
    if no_serve:
        click.echo(f"\nURL: http://127.0.0.1:{port}  (run 'pilot demo' without --no-serve to serve it)")
    else:
        # the jobs run in their own process, never inside a web worker (DESIGN.md §11): the demo
        # starts 'pilot scheduler run' as a child so its reminders, expiries and refreshes happen
        scheduler = None if no_scheduler else start_scheduler_child()
        click.echo(f"\nServing on http://127.0.0.1:{port}  (Ctrl+C to stop)")
        # Flask's app.run() does nothing when called from its own CLI: serve with werkzeug directly.
        from werkzeug.serving import run_simple

        try:
            run_simple("127.0.0.1", port, app, threaded=True, use_reloader=False, use_debugger=False)
        finally:
            stop_child(scheduler)


def start_scheduler_child():
    """Start ``pilot scheduler run`` as a child process with this process's environment (so the
    same database); its messages go to this terminal. Returns the process, or None if it could not
    start (the demo serves anyway and says so)."""
    import subprocess

    command = [sys.executable, "-m", "core.cli", "scheduler", "run"]
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        click.echo(
            f"The scheduler could not start ({exc}): jobs will not run; start 'pilot scheduler run' yourself.", err=True
        )
        return None
    click.echo(f"Scheduler started beside the server (process {child.pid}); 'pilot scheduler jobs' lists its jobs.")
    return child


def stop_child(child) -> None:
    """Ask a child process to stop, and kill it if it has not within five seconds."""
    import subprocess

    if child is None or child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# --- scheduler ---------------------------------------------------------------------------------


@main.group("scheduler")
def scheduler_group():
    """Scheduled jobs (DESIGN.md §11): one scheduler process per database."""


@scheduler_group.command("run")
@click.option("--once", is_flag=True, help="Run every due job one time, wait for them and exit (for cron and tests).")
@click.option("--job", "run_now", multiple=True, metavar="ID", help="Treat this job as due now (repeatable).")
@with_appcontext
def scheduler_run(once, run_now):
    """Run the scheduled jobs in this process (never inside a web worker); a second one refuses to start."""
    import logging

    from core.scheduler import SchedulerError, registered_jobs, run_scheduler

    app = current_app._get_current_object()
    unknown = sorted(set(run_now) - set(registered_jobs(app)))
    if unknown:
        raise click.BadParameter(f"no job {', '.join(unknown)} (see 'pilot scheduler jobs')", param_hint="--job")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        status = run_scheduler(app, once=once, run_now=tuple(run_now), echo=lambda m: click.echo(m, err=True))
    except SchedulerError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(status)


def _english(text) -> str:
    from flask_babel import force_locale

    with force_locale("en"):
        return str(text)


@scheduler_group.command("jobs")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as one JSON array.")
@with_appcontext
def scheduler_jobs(as_json):
    """List the declared jobs: schedule, next run, last run."""
    from core.models import JobRun
    from core.scheduler import next_run_times, registered_jobs

    specs = registered_jobs(current_app._get_current_object())
    upcoming = next_run_times(get_db())
    rows = []
    with get_db().session() as session:
        for spec in specs.values():
            last = session.scalar(select(JobRun).where(JobRun.job_id == spec.id).order_by(JobRun.id.desc()).limit(1))
            rows.append(
                {
                    "id": spec.id,
                    "schedule": {k: v for k, v in spec.trigger.items()},
                    "description": _english(spec.description),
                    "next_run": upcoming[spec.id].isoformat() + "Z" if upcoming.get(spec.id) else None,
                    "last_run": None
                    if last is None
                    else {
                        "started_at": last.started_at.isoformat() + "Z",
                        "status": last.status,
                        "duration_ms": last.duration_ms,
                        "runner": last.runner,
                    },
                }
            )
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        schedule = " ".join(f"{k}={v}" for k, v in row["schedule"].items())
        last = row["last_run"]
        click.echo(
            f"{row['id']:<24} {schedule:<32} next {row['next_run'] or '-':<22} "
            f"last {(last['status'] + ' ' + last['started_at']) if last else '-'}"
        )
        click.echo(f"{'':<24} {row['description']}")


if __name__ == "__main__":  # python -m core.cli, as the demo starts its scheduler
    main()
