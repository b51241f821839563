"""Holes closed for issue 15 (Build 5) and issue 18 (Build 6): the error page after a failed
statement, identifiers out of range, downloads in the audit log, the inbox's links, and import
errors that never repeat a cell's value."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from flask_login import login_required
from sqlalchemy import func, select, text

from core import create_app
from core.models import AuditEvent, ImportBatch, Organisation, Transaction
from core.scheduler import run_job
from tests.conftest import login
from tests.core.test_scheduler import HEADER, inbox, sales_csv  # noqa: F401 (fixture)


def _fresh_app(app):
    return create_app(
        {
            key: app.config[key]
            for key in ("DATABASE_URL", "INSTANCE_PATH", "SECRET_KEY", "DISTRICT_SECRET", "INBOX_PATH")
        }
        | {"TESTING": True, "WTF_CSRF_ENABLED": False}
    )


# --- issue 18, Build 6: a failed query never takes the error page down ------------------------------


def test_the_error_page_survives_a_failed_statement(app, make_org, make_user):
    """On PostgreSQL a failed statement aborts the transaction: without a rollback, the error page's
    header (the venue user's organisation, loaded lazily) fails too and the user gets nothing."""
    boom_app = _fresh_app(app)

    @boom_app.route("/test-only/failed-query")
    @login_required
    def failed_query():
        from core.db import db_session

        db_session().execute(text("SELECT * FROM no_such_table_at_all"))
        return "unreachable"

    org = make_org("salle-erreur")
    user = make_user("venue", org)
    client = boom_app.test_client()
    assert login(client, user.email).status_code == 302
    response = client.get("/test-only/failed-query?lang=en")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong on our side" in body
    assert org.name in body  # the page is the full one, header included: its query ran after the rollback


# --- issue 15, Build 5: identifiers out of range are a 404 -------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/imports/99999999999999999999",
        "/imports/9223372036854775808/rejects.csv",
        "/imports/2147483648",
        "/campaigns/99999999999999999999",
        "/approvals/99999999999999999999/contacts",
        "/reports/99999999999999999999/report.csv",
    ],
)
def test_identifiers_out_of_range_are_a_404(login_as, path):
    for role in ("staff", "venue"):
        response = login_as(role).get(path)
        assert response.status_code in (404, 403), (role, path, response.status_code)
        assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("query", ["page=99999999999999999999", "page=-99999999999999999999", "page=abc"])
def test_page_numbers_out_of_range_are_clamped(login_as, query):
    assert login_as("admin").get(f"/admin/audit?{query}").status_code == 200
    assert login_as("admin").get("/admin/jobs/?run=99999999999999999999").status_code == 200


# --- every download is audited --------------------------------------------------------------------------


def test_every_download_is_in_the_audit_log(app, login_as, session):
    staff = login_as("staff")
    response = staff.get("/segments/insights/lifecycle.csv")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "download"))
    assert event is not None and event.user_id == staff.user.id
    assert event.details["path"].startswith("/segments/insights/lifecycle.csv")
    # a download that logs itself (the audit log's) is logged once, not twice
    admin = login_as("admin")
    assert admin.get("/admin/audit.csv").status_code == 200
    session.expire_all()
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.user_id == admin.user.id)).all()
    assert actions.count("audit.export") == 1 and "download" not in actions


# --- the inbox takes plain files of the organisation's own folder only ---------------------------------


def test_inbox_refuses_symbolic_links_and_hard_links(app, db, inbox, tmp_path):
    folder_a, folder_b = inbox("salle-a"), inbox("salle-b")
    secret = sales_csv(tmp_path / "elsewhere" / "autre.csv", rows=5)
    other = sales_csv(folder_b / "ventes-b.csv", rows=5)
    os.symlink(secret, folder_a / "lien.csv")
    os.symlink(other, folder_a / "lien-vers-b.csv")
    os.link(secret, folder_a / "dur.csv")
    sales_csv(folder_a / "vrai.csv", rows=3, start=100)

    run = run_job(app, "inbox.import")
    assert run.status == "success", run.error
    statuses = {(f["organisation"], f["file"]): f["status"] for f in run.summary["files"]}
    assert statuses[("salle-a", "lien.csv")] == "refused"
    assert statuses[("salle-a", "lien-vers-b.csv")] == "refused"
    assert statuses[("salle-a", "dur.csv")] == "refused"
    assert statuses[("salle-a", "vrai.csv")] == "imported"
    with db.session() as s:
        batches = s.scalars(select(ImportBatch)).all()
        by_org = {(b.organisation_id, b.filename) for b in batches}
        assert len(batches) == 2 and all(name in ("vrai.csv", "ventes-b.csv") for _, name in by_org)
        assert s.scalar(select(func.count()).select_from(Transaction)) == 3 + 5
    assert secret.exists() and not (folder_a / "lien.csv").is_symlink()
    assert all(p.is_symlink() for p in (folder_a / "failed").glob("*lien*.csv"))


def test_inbox_does_not_read_an_organisation_folder_that_is_a_link(app, db, inbox, make_org):
    folder_b = inbox("salle-b")
    make_org("salle-a")  # read before salle-b: its folder, a link to b's, would take b's files
    os.symlink(folder_b, Path(app.config["INBOX_PATH"]) / "salle-a")
    sales_csv(folder_b / "ventes-b.csv", rows=4)
    run = run_job(app, "inbox.import")
    assert run.status == "success", run.error
    with db.session() as s:
        batches = s.scalars(select(ImportBatch)).all()
        assert [(s.get(Organisation, b.organisation_id).slug, b.filename) for b in batches] == [
            ("salle-b", "ventes-b.csv")
        ]
        assert s.scalar(select(func.count()).select_from(Transaction)) == 4


# --- import errors name line and column, never the cell's value -----------------------------------------


def test_import_errors_never_repeat_a_cell_value(app, login_as, make_org, session):
    org = make_org("salle-valeurs")
    venue = login_as("venue", org)
    header = ";".join(HEADER)
    rows = [
        "Roy;Ana;1 rue X;H2X 1Y4;ana@example.org;514-555-0000;SECRET-AMOUNT-777;SECRET-TICKETS-888;"
        "Prix régulier;SECRET-DATE-999;SECRET-SHOW-DATE;Titre;C1"
    ]
    data = (header + "\n" + "\n".join(rows) + "\n").encode()
    response = venue.post(
        "/imports",
        data={
            "organisation": str(org.id),
            "kind": "sales",
            "skip_invalid": "0",
            "file": (io.BytesIO(data), "ventes.csv"),
        },
    )
    assert response.status_code == 200
    batch = session.scalar(select(ImportBatch))
    assert batch.status == "refused" and batch.errors
    staff_page = login_as("staff").get(f"/imports/{batch.id}").get_data(as_text=True)
    for page in (response.get_data(as_text=True), staff_page):
        assert "SECRET-" not in page
    assert "SECRET-" not in repr(batch.errors)
    assert all(e["line"] == 2 and e["column"] for e in batch.errors)
