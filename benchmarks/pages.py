"""The pages of `pilot bench`: every main page of each role, cold (first request after an import) and warm.

Each page is requested in process through Flask's test client by a logged-in user of its role, with
the application's privacy protection on (noise, budget and audit included), as a browser would:
the time is the whole request, from routing to the rendered body.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from pathlib import Path

import numpy as np

# After the cold one: the median and the 95th percentile of these are the warm figures. Twenty, so
# that the p95 (nearest rank: the 19th) is one and not the maximum, which one pause of the machine
# (a checkpoint, an autovacuum) decides; the maximum is kept beside it.
WARM_REQUESTS = 20
PASSWORD = "bench-pages-password-2026"
PREVIEW_RULE = {
    "all": [{"field": "discipline", "op": "any", "value": ["theatre"]}, {"field": "spent", "op": ">=", "value": 100}]
}


def new_preview_rule(request: int) -> dict:
    """The preview's body with a rule no request asked before (the spending floor moves a dollar at
    each): the first preview of a rule scans the profiles, a rule asked again in the same data
    epoch reads the breakdown its first preview kept (segments.preview)."""
    theatre, _spent = PREVIEW_RULE["all"]
    return {"rule": {"all": [theatre, {"field": "spent", "op": ">=", "value": 101 + request}]}}


def _users(db, campaign_id: int) -> dict:
    """One user per role (the venue user's organisation answered the campaign); their e-mails."""
    from sqlalchemy import select

    from campaigns.models import Approval
    from core.auth import create_user
    from core.models import Organisation

    with db.session() as session:
        approval = session.scalar(select(Approval).where(Approval.campaign_id == campaign_id).order_by(Approval.id))
        organisation = session.get(Organisation, approval.organisation_id)
        users, ids = {}, {}
        for role in ("staff", "admin", "evaluator", "venue"):
            email = f"bench-{role}@pages.example"
            ids[role] = create_user(
                session,
                email,
                PASSWORD,
                role,
                organisation.id if role == "venue" else None,
                name=f"Bench {role}",
                check_rules=False,
            ).id
            users[role] = email
        session.commit()
        return {
            "emails": users,
            "approval_id": approval.id,
            "organisation": organisation.slug,
            "organisation_id": organisation.id,
            "venue_user_id": ids["venue"],
        }


def _two_seasons() -> str:
    """The query string of the comparison of this cultural season with the one before (September to August)."""
    today = dt.date.today()
    this = today.year if today.month >= 9 else today.year - 1
    return f"season={this}-{this + 1}&compare={this - 1}-{this}"


def _unsubscribe_token(db, experiment_id: int, slug: str) -> str | None:
    """The signed unsubscribe token of one of the organisation's test-arm recipients (in an app context)."""
    from sqlalchemy import select

    from core.models import Organisation
    from experiments import unsubscribe
    from experiments.models import Recipient

    with db.session() as session:
        recipient_id = session.scalar(
            select(Recipient.id)
            .join(Organisation, Organisation.id == Recipient.organisation_id)
            .where(Recipient.experiment_id == experiment_id, Recipient.arm != "control", Organisation.slug == slug)
            .order_by(Recipient.id)
            .limit(1)
        )
    return unsubscribe.token_for(recipient_id) if recipient_id else None


def page_list(
    campaign_id: int,
    experiment_id: int,
    approval_id: int,
    organisation: str,
    organisation_id: int | None = None,
    venue_user_id: int | None = None,
    unsubscribe_token: str | None = None,
) -> dict[str, list]:
    """Each role's main pages: (name, method, path, JSON body or None, or a function of the request's
    number, 0 the cold one, that gives its body); with ``unsubscribe_token``,
    the public unsubscribe page of a contact list's link (timed as the venue user: it is the same page)."""
    report = f"/experiments/{experiment_id}"
    return {
        "staff": [
            ("dashboard", "GET", "/", None),
            ("segments", "GET", "/segments/", None),
            ("segment_preview", "POST", "/segments/preview", {"rule": PREVIEW_RULE}),
            ("segment_preview_new_rule", "POST", "/segments/preview", new_preview_rule),
            ("insights_district", "GET", "/segments/insights", None),
            ("insights_discipline", "GET", "/segments/insights/discipline/theatre", None),
            ("insights_organisation", "GET", f"/segments/insights/organisation/{organisation}", None),
            ("comparison", "GET", f"/segments/comparison/{organisation}", None),
            ("comparison_seasons", "GET", f"/segments/comparison/{organisation}?{_two_seasons()}", None),
            ("campaigns", "GET", "/campaigns/", None),
            ("campaign", "GET", f"/campaigns/{campaign_id}", None),
            ("campaign_requests", "GET", f"/campaigns/{campaign_id}/approvals", None),
            ("requests", "GET", "/campaigns/requests?open=0", None),
            ("decisions", "GET", f"/experiments/campaign/{campaign_id}", None),
            ("power", "GET", f"/experiments/campaign/{campaign_id}/power", None),
            ("imports", "GET", "/imports", None),
            *(
                [("import_quality", "GET", f"/imports/quality?organisation={organisation_id}", None)]
                if organisation_id
                else []
            ),
            ("report", "GET", report, None),
        ],
        "admin": [
            ("dashboard", "GET", "/", None),
            ("audit_log", "GET", "/admin/audit", None),
            ("audit_log_filtered", "GET", "/admin/audit?object=bench&actor=bench", None),
            ("users", "GET", "/admin/users", None),
            *([("user", "GET", f"/admin/users/{venue_user_id}", None)] if venue_user_id else []),
            ("organisations", "GET", "/admin/organisations", None),
            *([("organisation", "GET", f"/admin/organisations/{organisation_id}", None)] if organisation_id else []),
            ("jobs", "GET", "/admin/jobs/", None),
        ],
        "venue": [
            ("dashboard", "GET", "/", None),
            ("campaigns", "GET", "/campaigns/", None),
            ("approval", "GET", f"/campaigns/approvals/{approval_id}", None),
            ("insights_own", "GET", f"/segments/insights/organisation/{organisation}", None),
            ("comparison_own", "GET", f"/segments/comparison/{organisation}", None),
            ("imports", "GET", "/imports", None),
            ("import_quality_own", "GET", "/imports/quality", None),
            ("report", "GET", report, None),
            *(
                [("unsubscribe", "GET", f"/experiments/unsubscribe/{unsubscribe_token}", None)]
                if unsubscribe_token
                else []
            ),
        ],
        "evaluator": [
            ("dashboard", "GET", "/", None),
            ("reports", "GET", "/experiments/", None),
            ("report", "GET", report, None),
        ],
    }


def percentile(values: list[float], percent: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``percent`` % of ``values`` at or
    under it, i.e. the ⌈p·n/100⌉-th smallest (the 19th of 20 for p95; of 7 values, their maximum):
    numpy's ``inverted_cdf`` method."""
    return float(np.percentile(values, percent, method="inverted_cdf"))


def _request(client, method: str, path: str, body, number: int = 0) -> tuple[int, float]:
    if callable(body):
        body = body(number)
    began = time.perf_counter()
    # a page that moved on (the decisions page of a launched campaign leads to its report) is followed
    response = client.open(path, method=method, json=body, follow_redirects=True)
    response.get_data()  # the whole body rendered (streamed responses included)
    return response.status_code, time.perf_counter() - began


def pooled_import_rows(spectators: int) -> int:
    """The rows of the import that makes the pages cold and the pooled facts stale: a tenth of the
    district's spectators' worth (100,000 rows at 1M spectators, issue 18's figure), at least 400."""
    return max(400, spectators // 10)


def _import(db, folder: Path, slug: str, seed: int, rows: int) -> dict:
    """Import ``rows`` lines for ``slug`` bought in the last 30 days, by existing spectators of the
    district (three in four of the buyers) and new ones; {"rows", "spectators", "seconds"}."""
    from sqlalchemy import func, select

    from benchmarks.exportfile import new_buyers, write_sales_export
    from benchmarks.harness import SECRET
    from benchmarks.steps import existing_buyers
    from core.importing import import_file
    from core.models import Organisation, Transaction

    path = folder / "export-pages.csv"
    today = dt.date.today()
    known, _ids = existing_buyers(db, max(1, rows * 3 // 16), stride=7, offset=3)
    write_sales_export(
        path,
        rows,
        known + new_buyers(max(1, rows // 16), "p", seed),
        seed=seed,
        start=today - dt.timedelta(days=30),
        end=today - dt.timedelta(days=1),
        order_prefix="P",
    )
    began = time.perf_counter()
    with db.session() as session:
        organisation = session.scalar(select(Organisation).where(Organisation.slug == slug))
        result = import_file(session, path, organisation, secret=SECRET, filename=path.name)
        session.commit()
        spectators = session.scalar(
            select(func.count(func.distinct(Transaction.spectator_id))).where(Transaction.batch_id == result.batch_id)
        )
    path.unlink()
    return {"rows": result.imported, "spectators": int(spectators or 0), "seconds": time.perf_counter() - began}


def page_figures(
    app,
    db,
    campaign_id: int,
    experiment_id: int,
    folder: Path,
    seed: int,
    echo,
    spectators: int = 0,
    engine: str = "",
) -> tuple[dict, dict]:
    """Cold and warm times of every main page of each role, in milliseconds, with their status; and
    the pooled pages' publication, full and after the import (``pooled_refresh``).

    Cold: the first request of each page after an import of :func:`pooled_import_rows` lines (its
    profile refresh, and the publication of the pooled pages' facts it moved, both timed and printed
    apart), in a fresh client. Requests run outside any application context, each pushing its own, as
    in a server (an outer context would share Flask-Login's user between the clients). Warm:
    ``WARM_REQUESTS`` more: their median, 95th percentile (:func:`percentile`) and maximum.

    :returns: (pages, pooled_refresh): {"full_s", "incremental_s", "ratio", "rows", "import_rows",
        "import_spectators", "published", "republished"}.
    """
    from benchmarks.harness import BENCH_ORG, _profiled
    from campaigns.funnel_store import refresh_funnels
    from core.headline import publish_headlines
    from core.quality import keep_quality
    from experiments.power_report import refresh_windows
    from segments.insight_publish import publish
    from segments.profiles import refresh_changed

    # the work of the jobs that keep pages' figures (headline.publish, campaigns.funnels, experiments.power,
    # imports.quality)
    kept_figures = (publish_headlines, refresh_funnels, refresh_windows, keep_quality)
    with app.app_context():
        setup = _users(db, campaign_id)
        with db.session() as session:  # what the insights.warm job and those have done before the import
            first = publish(session, commit=session.commit)
            for job in kept_figures:
                job(session, commit=session.commit)
        echo(
            f"pages: published the pooled pages' facts of every scope and season ({first['published']} rows) "
            f"in {first['seconds']:.1f} s, the slowest {first['slowest'][0]} ({first['slowest'][1]:.1f} s)"
        )
        imported = _import(db, folder, BENCH_ORG, seed, pooled_import_rows(spectators))
        with db.session() as session:
            refresh_changed(session)
            session.commit()
            # The pooled pages show their last published figures until the job publishes what the import
            # moved; the cold pages below are timed once it has (its time is the job's, not a request's).
            after = publish(session, commit=session.commit)
            headlines, *_ = [job(session, commit=session.commit) for job in kept_figures]
        echo(
            f"pages: the import of {imported['rows']:,} rows ({imported['spectators']:,} spectators) moved "
            f"{after['published']} kept rows, published in {after['seconds']:.1f} s against {first['seconds']:.1f} s "
            f"for all of them (ratio {after['seconds'] / max(first['seconds'], 1e-9):.3f}; the insights.warm job's "
            f"work, before the cold requests); the dashboard's headline figures ({headlines['published']}) counted "
            f"again in {headlines['seconds']:.1f} s (the headline.publish job's)"
        )
        pooled = {
            "full_s": first["seconds"],
            "incremental_s": after["seconds"],
            "ratio": round(after["seconds"] / first["seconds"], 4) if first["seconds"] else None,
            "rows": first["published"],
            "republished": after["published"],
            "import_rows": imported["rows"],
            "import_spectators": imported["spectators"],
        }
        token = _unsubscribe_token(db, experiment_id, setup["organisation"])
    pages = page_list(
        campaign_id,
        experiment_id,
        setup["approval_id"],
        setup["organisation"],
        setup["organisation_id"],
        setup["venue_user_id"],
        token,
    )
    echo(f"pages: imported {imported['rows']:,} rows; timing {sum(len(p) for p in pages.values())} pages of 4 roles...")
    app.config["WTF_CSRF_ENABLED"] = False  # the test client posts the login form without a token
    figures: dict = {}
    for role, role_pages in pages.items():
        client = app.test_client()
        login = client.post("/login", data={"email": setup["emails"][role], "password": PASSWORD})
        if login.status_code not in (200, 302):
            raise RuntimeError(f"the {role} user could not log in ({login.status_code})")
        for name, method, path, body in role_pages:
            with _profiled(engine, f"page-{role}.{name}-cold"):  # engine: the profile file's prefix
                status, cold = _request(client, method, path, body)
            warm = []
            for number in range(1, WARM_REQUESTS + 1):
                status, seconds = _request(client, method, path, body, number)
                warm.append(seconds)
            figures[f"{role}.{name}"] = {
                "path": path,
                "status": status,
                "cold_ms": round(cold * 1000, 1),
                "warm_ms_p50": round(statistics.median(warm) * 1000, 1),
                "warm_ms_p95": round(percentile(warm, 95) * 1000, 1),
                "warm_ms_max": round(max(warm) * 1000, 1),
            }
            echo(
                f"pages: {role} {name}: {status}, cold {cold * 1000:.0f} ms, "
                f"warm {statistics.median(warm) * 1000:.0f} ms"
            )
    return figures, pooled
