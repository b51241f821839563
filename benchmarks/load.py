"""Load test: simulated users against gunicorn on a scratch PostgreSQL database, with an import running.

    python -m benchmarks.load [--users 50] [--seconds 60] [--spectators 20000] [--json]
    python -m benchmarks.load --district URL --instance FOLDER [--users 50] [--seconds 60]

What it does, in order, every step bounded in time:

1. creates a scratch database on the PostgreSQL server (``PILOT_LOAD_PG``, default
   ``postgresql://postgres@127.0.0.1:5432``) and builds a demo district in it with
   ``pilot demo --no-serve --spectators N``; or, with ``--district``, uses a district already built
   (a 1M district takes most of an hour to build and publish): its database is neither built nor
   dropped, its secrets are read from its instance folder (``--instance``), and the run leaves in it
   what it adds (two campaigns, the load's logins, the imported export);
2. with the campaigns and experiments services: a campaign awaiting the venues' approvals (the one
   the simulated venue users answer) and a launched campaign whose report evaluators read;
3. starts gunicorn (4 workers) on 127.0.0.1 and a free port;
4. runs the simulated users (threads, each with its own cookie jar and connection): staff browse
   insights, export CSV tables and preview segments (JSON posts carrying the CSRF token scraped from
   the builder page); venue users read their approval request and answer it (every answer the
   client saw recorded is counted); evaluators read reports and their CSV. Meanwhile ``pilot
   import`` loads a generated export in a subprocess;
5. prints requests, errors (a status other than 2xx/3xx, or an exception) and p50/p95/p99 latency
   per kind of request, then checks that nothing was lost: every answer the clients saw succeed is
   in the audit log, the import's rows are all in the database, no 5xx;
6. stops gunicorn and drops the database, whatever happened.

Only loopback traffic. The exit status is 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.load_users import HOST, Setup, Stats, idle_latencies, log, simulate, summarise

PG_SERVER = os.environ.get("PILOT_LOAD_PG", "postgresql://postgres@127.0.0.1:5432")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# the demo district's build, its pooled pages' facts published included (40 minutes at 1 M spectators)
SETUP_TIMEOUT = 3600


# --- the scratch database and the server ---------------------------------------------------------


def create_database() -> tuple[str, str]:
    import psycopg

    name = f"pilot_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_SERVER + "/postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG_SERVER}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER + "/postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def district_env(url: str, instance: Path) -> dict:
    """The environment of a run against a district already built: its database, and the secrets its
    demo kept in its instance folder (its spectators' keys depend on the district secret)."""
    from core.config import load_config

    if not instance.is_dir():
        raise RuntimeError(f"{instance} is not a folder: give the instance folder the district was built with")
    config = load_config({"INSTANCE_PATH": str(instance), "DATABASE_URL": url})
    return dict(
        os.environ,
        DATABASE_URL=url,
        SECRET_KEY=config["SECRET_KEY"],
        DISTRICT_SECRET=config["DISTRICT_SECRET"],
        PILOT_INSTANCE=str(instance),
        PILOT_ENV="development",
    )


def count_spectators(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), connect_timeout=10) as conn:
        return conn.execute("SELECT count(*) FROM spectator").fetchone()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def pilot(*args: str) -> list[str]:
    """The ``pilot`` command run by this interpreter (whatever is first on PATH)."""
    return [
        sys.executable,
        "-c",
        "import sys; from core.cli import main; main(args=sys.argv[1:], prog_name='pilot')",
        *args,
    ]


def start_gunicorn(env: dict, port: int, workers: int, log_path: Path) -> subprocess.Popen:
    if shutil.which("gunicorn") is None and subprocess.run([sys.executable, "-c", "import gunicorn"]).returncode:
        raise RuntimeError("gunicorn is missing: pip install -e '.[prod]'")
    handle = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--bind",
            f"{HOST}:{port}",
            "--timeout",
            "120",
            "--graceful-timeout",
            "10",
            "--error-logfile",
            "-",
            "wsgi:app",
        ],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({process.returncode}): {log_path.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def stop(process: subprocess.Popen | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the workers go with it
        process.wait(timeout=20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            log(f"could not stop {name} (pid {process.pid})")


# --- the district's campaigns --------------------------------------------------------------------

LOAD_LOGINS = 100  # staff and evaluator logins made for the simulated users (one each up to 250 users)


def prepare_campaigns(env: dict, tag: str) -> Setup:
    """A launched campaign (its report for the evaluators) and one awaiting the venues' answers; the
    load's logins carry ``tag`` (a district can take several runs)."""
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "SECRET_KEY", "DISTRICT_SECRET", "PILOT_INSTANCE")})
    from sqlalchemy import select

    from campaigns import promotions, services
    from campaigns.models import Approval, ProviderApproval
    from core import create_app
    from core.auth import hash_password
    from core.db import get_db
    from core.demo import DEMO_PASSWORD, demo_logins
    from core.models import Organisation, User, utcnow
    from experiments import reports
    from experiments import services as experiment_services
    from segments.insight_tables import discipline_choices
    from segments.models import Segment, SegmentVersion

    app = create_app()
    with app.app_context(), get_db(app).session() as session:
        logins = demo_logins()
        orgs = {o.slug: o for o in session.scalars(select(Organisation))}
        venues = {email: slug for role, email, slug in logins if role == "venue" and slug in orgs}
        slugs = sorted(set(venues.values()))
        now = utcnow()
        segment = Segment(name="Charge: clientèle des salles démo")
        session.add(segment)
        session.flush()
        session.add(
            SegmentVersion(
                segment_id=segment.id,
                number=1,
                rule={
                    "all": [
                        {"field": "organisation", "op": "any", "value": slugs},
                        {"field": "shows", "op": ">=", "value": 2},
                    ]
                },
            )
        )
        session.flush()
        promotion = promotions.create_promotion(
            session,
            name_fr="Printemps du Quartier",
            name_en="Quartier Spring",
            message_fr="20 % sur un spectacle",
            message_en="20% off a show",
            offer_kind="percent_off",
            offer_value=20,
            organisation_ids=[orgs[s].id for s in slugs],
            valid_from=now.date(),
            valid_until=now.date() + dt.timedelta(days=120),
            average_discount_cents=900,
            cost_per_contact_cents=5,
        )

        def campaign(name: str):
            return services.create_campaign(
                session,
                name=name,
                objective="cross_sell",
                segment_id=segment.id,
                promotion_id=promotion.id,
                arms=services.make_arms(20, [80]),
                approval_deadline=now + dt.timedelta(days=7),
                planned_launch_at=now + dt.timedelta(days=10),
                window_days=30,
                primary_metric="conversion",
                secondary_metrics=["revenue"],
            )

        measured = campaign("Charge: campagne mesurée")
        services.submit_for_approval(session, measured, now=now)
        for approval in measured.approvals:
            services.decide_approval(session, approval, "approve", now=now)
        # the rule names the venues: each approves as data provider too (campaigns.approvals)
        for provider in session.scalars(select(ProviderApproval).where(ProviderApproval.campaign_id == measured.id)):
            services.decide_provider(session, provider, "approve", now=now)
        services.mark_ready(session, measured, now=now)
        experiment = experiment_services.launch(session, measured, now=now - dt.timedelta(days=3), seed=2026)
        reports.refresh_report(session, experiment)
        awaiting = campaign("Charge: campagne en attente")
        services.submit_for_approval(session, awaiting, now=now)
        session.commit()
        approvals = {
            slug: session.scalar(
                select(Approval.id).where(
                    Approval.campaign_id == awaiting.id, Approval.organisation_id == orgs[slug].id
                )
            )
            for slug in slugs
        }
        import_org = next(s for s in sorted(orgs) if s not in slugs)
        # One login per simulated staff user and evaluator: each has its own daily budget of
        # questions on pooled figures (core.privacy), which the load exercises without tripping it.
        hashed = hash_password(DEMO_PASSWORD)
        own = {
            role: [f"load-{tag}-{role}-{n:03d}@example.net" for n in range(LOAD_LOGINS)]
            for role in ("staff", "evaluator")
        }
        for role, emails in own.items():
            # the evaluators read the audience insights too: granted, as an administrator would
            session.add_all(
                User(email=email, password_hash=hashed, role=role, insights_granted=role == "evaluator")
                for email in emails
            )
        session.commit()
        return Setup(
            password=DEMO_PASSWORD,
            staff=own["staff"],
            evaluators=own["evaluator"],
            venues={e: s for e, s in venues.items() if approvals.get(s)},
            approvals={s: a for s, a in approvals.items() if a},
            awaiting_campaign=awaiting.id,
            experiment=experiment.id,
            import_org=import_org,
            disciplines=discipline_choices(session)[:4] or ["theatre"],
        )


# --- the checks after the run ---------------------------------------------------------------------


def verify(env: dict, setup: Setup, stats: Stats, import_summary: dict | None) -> dict:
    from sqlalchemy import create_engine, text

    url = env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    checks = {}
    with engine.connect() as conn:
        ids = [str(a) for a in setup.approvals.values()]
        recorded = dict(
            conn.execute(
                text(
                    "SELECT object_id, count(*) FROM audit_event WHERE action IN ('approval.approve', 'approval.decline') "
                    "AND object_type = 'approval' AND object_id = ANY(:ids) GROUP BY object_id"
                ),
                {"ids": ids},
            ).all()
        )
        seen = {str(k): v for k, v in stats.decisions_seen.items()}
        lost = {a: seen[a] - recorded.get(a, 0) for a in seen if seen[a] > recorded.get(a, 0)}
        statuses = dict(
            conn.execute(
                text("SELECT id, status FROM approval WHERE id = ANY(:ids)"), {"ids": [int(i) for i in ids]}
            ).all()
        )
        checks["approvals"] = {
            "answers_seen_by_clients": sum(seen.values()),
            "answers_in_audit_log": sum(recorded.values()),
            "answers_refused_seen": stats.decisions_refused,
            "lost": lost,
            "final_statuses": sorted(set(statuses.values())),
            "ok": not lost and all(statuses[int(a)] in ("approved", "declined") for a in seen),
        }
        if import_summary is not None and import_summary.get("batch_id"):
            batch_id = import_summary["batch_id"]
            row = conn.execute(
                text("SELECT rows, imported, duplicates, rejected, anonymous, status FROM import_batch WHERE id = :id"),
                {"id": batch_id},
            ).one()
            in_db = conn.execute(
                text('SELECT count(*) FROM "transaction" WHERE batch_id = :id'), {"id": batch_id}
            ).scalar()
            checks["import"] = {
                "rows": row.rows,
                "imported": row.imported,
                "transactions_in_db": in_db,
                "status": row.status,
                # the run's rows are new by construction: an import that wrote none proves nothing
                "ok": 0 < in_db == row.imported == import_summary.get("imported")
                and row.rows == row.imported + row.duplicates + row.rejected + row.anonymous,
            }
        else:
            checks["import"] = {"ok": False, "summary": import_summary}
    engine.dispose()
    server_errors = sum(v for k, v in stats.statuses.items() if k >= 500)
    checks["no_5xx"] = {"count": server_errors, "ok": server_errors == 0}
    return checks


def start_import(
    env: dict, setup: Setup, folder: Path, rows: int, seed: int, tag: str
) -> tuple[subprocess.Popen, Path]:
    """``pilot import`` of a generated export of recent sales (dated within the launched experiment's
    window), its buyers and orders named after the run's ``tag``: a district that takes several runs
    gets new rows each time (the same rows again would be skipped as already imported, and the check
    that none was lost would count nothing)."""
    from benchmarks.exportfile import new_buyers, write_sales_export

    path = folder / "load-export.csv"
    today = dt.date.today()
    write_sales_export(
        path,
        rows,
        new_buyers(max(rows // 4, 1), f"load{tag}", seed),
        seed=seed,
        start=today - dt.timedelta(days=2),
        end=today,
        order_prefix=f"L{tag}-",
    )
    out = (folder / "import.out").open("w")
    process = subprocess.Popen(
        pilot("import", str(path), "--org", setup.import_org, "--json"),
        env=env,
        cwd=PROJECT_ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, folder / "import.out"


def read_import(process: subprocess.Popen, out: Path, timeout: float) -> dict | None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process, "pilot import")
        return {"error": "timeout"}
    text_out = out.read_text()
    start = text_out.find("{")
    try:
        summary = json.loads(text_out[start : text_out.rfind("}") + 1]) if start >= 0 else None
    except json.JSONDecodeError:
        summary = None
    if summary is None:
        return {"error": f"exit {process.returncode}", "output": text_out[-1500:]}
    summary["exit_status"] = process.returncode
    return summary


# --- the command ----------------------------------------------------------------------------------


def print_table(result: dict) -> None:
    load = result["load"]
    print(
        f"\n{load['requests']} requests in {result['run']['elapsed_s']} s ({load['requests_per_s']}/s), "
        f"{load['errors']} errors; users {result['run']['users']}; statuses {load['statuses']}"
    )
    idle = result.get("idle_p50_ms") or {}
    print(f"{'kind':<18}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'idle p50':>10}")
    for kind, k in load["kinds"].items():
        print(
            f"{kind:<18}{k['requests']:>10}{k['errors']:>8}{k['p50_ms']:>10}{k['p95_ms']:>10}{k['p99_ms']:>10}"
            f"{idle.get(kind, ''):>10}"
        )
    imp = result.get("import") or {}
    if "rows" in imp:
        print(
            f"\nimport during the run: {imp['rows']} rows, {imp['imported']} imported in {imp.get('seconds', '?')} s "
            f"(exit {imp.get('exit_status')})"
        )
    print("\nchecks:")
    for name, check in result["checks"].items():
        detail = {k: v for k, v in check.items() if k != "ok"}
        print(f"  {'PASS' if check['ok'] else 'FAIL'}  {name}: {detail}")
    if result.get("server_log_errors"):
        print(f"  server log: {result['server_log_errors']} unhandled errors (see above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--spectators", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--import-rows", type=int, default=20_000)
    parser.add_argument("--think", type=float, default=0.2, help="longest pause between a user's requests (s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--district", help="PostgreSQL URL of a district already built (not dropped)")
    parser.add_argument("--instance", help="with --district: the instance folder holding its secrets")
    args = parser.parse_args(argv)
    if bool(args.district) != bool(args.instance):
        parser.error("--district and --instance go together")
    if not (1 <= args.users <= 500 and 1 <= args.seconds <= 1800):
        parser.error("--users takes 1 to 500 and --seconds 1 to 1800")

    folder = Path(tempfile.mkdtemp(prefix="pilot-load-"))
    db_name = server = importer = None
    result: dict = {"users": args.users, "seconds": args.seconds, "spectators": args.spectators}
    status = 1
    try:
        began = time.perf_counter()
        if args.district:
            env = district_env(args.district, Path(args.instance))
            result["spectators"] = count_spectators(env["DATABASE_URL"])
            log(f"the district at {args.district}: {result['spectators']:,} spectators")
        else:
            db_name, url = create_database()
            env = dict(
                os.environ,
                DATABASE_URL=url,
                SECRET_KEY=secrets.token_hex(32),
                DISTRICT_SECRET=secrets.token_hex(32),
                PILOT_INSTANCE=str(folder / "instance"),
                PILOT_ENV="development",
            )
            log(f"scratch database {db_name}; demo district of {args.spectators:,} spectators...")
            run(pilot("demo", "--no-serve", "--spectators", str(args.spectators)), env, SETUP_TIMEOUT)
        tag = uuid.uuid4().hex[:6]
        setup = prepare_campaigns(env, tag)
        result["setup_s"] = round(time.perf_counter() - began, 1)
        log(f"district ready in {result['setup_s']} s; {len(setup.approvals)} venue approvals open")
        port = free_port()
        server_log = folder / "gunicorn.log"
        server = start_gunicorn(env, port, args.workers, server_log)
        log(
            f"gunicorn ({args.workers} workers) on {HOST}:{port}; {args.users} users for {args.seconds:g} s "
            f"with an import of {args.import_rows:,} rows"
        )
        result["idle_p50_ms"] = idle_latencies(port, setup)
        stats = Stats()
        import_began = time.perf_counter()
        importer, import_out = start_import(env, setup, folder, args.import_rows, args.seed, tag)
        result["run"] = simulate(port, setup, args.users, args.seconds, args.think, args.seed, stats)
        result["load"] = summarise(stats, result["run"]["elapsed_s"])
        summary = read_import(importer, import_out, timeout=600)
        if summary is not None and "rows" in summary:
            summary["seconds"] = round(time.perf_counter() - import_began, 1)
        result["import"] = summary
        result["checks"] = verify(env, setup, stats, summary)
        result["checks"]["logins"] = {
            "failures": result["run"]["login_failures"],
            "ok": not result["run"]["login_failures"],
        }
        log_text = server_log.read_text(errors="replace")
        result["server_log_errors"] = log_text.count("unhandled error")
        if result["server_log_errors"]:
            first = log_text.find("unhandled error")
            log(log_text[first : first + 3000])
        status = 0 if all(c["ok"] for c in result["checks"].values()) else 1
    except Exception as exc:  # a setup failure is reported, and cleaned up after, like a failed check
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(result["error"])
    finally:
        stop(importer, "pilot import")
        stop(server, "gunicorn")
        if db_name:
            try:
                drop_database(db_name)
            except Exception as exc:  # noqa: BLE001 - say it, the database can be dropped by hand
                log(f"could not drop {db_name}: {exc}")
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    elif "load" in result:
        print_table(result)
    return status


if __name__ == "__main__":
    sys.exit(main())
