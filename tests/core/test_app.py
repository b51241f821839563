"""The application shell: migrations, login, roles, languages, error pages."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db import get_db
from core.migrate import drift, heads
from core.models import AuditEvent
from tests.conftest import login


def test_single_migration_head():
    assert len(heads()) == 1


def test_migrated_database_has_no_drift(db):
    assert drift(db.engine) == []


def test_anonymous_is_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_shows_dashboard_in_french_then_english(login_as):
    client = login_as("staff")
    page = client.get("/").get_data(as_text=True)
    assert "Tableau de bord" in page and 'lang="fr"' in page
    page = client.get("/?lang=en").get_data(as_text=True)
    assert "Dashboard" in page and 'lang="en"' in page
    # the choice is remembered on the next page
    assert 'lang="en"' in client.get("/").get_data(as_text=True)


def test_wrong_password_is_refused_and_locks_after_five(app, make_user):
    user = make_user("staff")
    client = app.test_client()
    for _ in range(5):
        response = login(client, user.email, "wrong-password-1")
        assert response.status_code == 200
    # even the right password is refused while locked
    response = login(client, user.email)
    assert response.status_code == 200
    assert "Trop de tentatives" in response.get_data(as_text=True)
    with get_db(app).session() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "login.locked")) is not None


def test_login_refuses_offsite_next(app, make_user):
    user = make_user("staff")
    client = app.test_client()
    response = client.post("/login?next=//evil.example/x", data={"email": user.email, "password": "correct-horse-42"})
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("role,path,status", [
    ("evaluator", "/admin/users", 403),
    ("staff", "/admin/users", 403),
    ("venue", "/admin/organisations", 403),
    ("admin", "/admin/users", 200),
    ("evaluator", "/imports", 403),
])
def test_roles_guard_pages(login_as, role, path, status):
    assert login_as(role).get(path).status_code == status


def test_unknown_page_is_a_friendly_404(login_as):
    response = login_as("staff").get("/no/such/page")
    assert response.status_code == 404
    assert "Traceback" not in response.get_data(as_text=True)


def test_security_headers(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_admin_creates_organisation_and_user(login_as, app):
    client = login_as("admin")
    response = client.post("/admin/organisations", data={"slug": "salle-x", "name": "Salle X", "kind": "venue"})
    assert response.status_code == 302
    page = client.get("/admin/organisations").get_data(as_text=True)
    assert "Salle X" in page
    response = client.post("/admin/users", data={"email": "v@example.org", "role": "venue", "organisation": "",
                                                 "password": "abcdefghij1"})
    assert "doit appartenir" in response.get_data(as_text=True)  # venue approver needs an organisation


def test_the_language_switch_keeps_the_page_and_its_query(login_as):
    client = login_as("admin")
    page = client.get("/admin/audit?page=2&q=a%20b%26c").get_data(as_text=True)
    assert 'href="/admin/audit?page=2&amp;q=a+b%26c&amp;lang=en" lang="en"' in page
    page = client.get("/admin/audit?page=2&lang=en").get_data(as_text=True)
    assert 'lang="en"' in page and 'href="/admin/audit?page=2&amp;lang=fr" lang="fr"' in page  # one lang, replaced
    page = client.get("/admin/organisations").get_data(as_text=True)  # the choice is remembered
    assert 'href="/admin/organisations?lang=fr"' in page


@pytest.mark.parametrize("lang,labels", [("fr", ("Compagnie", "Festival", "Salle")),
                                         ("en", ("Company", "Festival", "Venue"))])
def test_organisation_kinds_are_shown_in_words(login_as, make_org, lang, labels):
    for slug, kind in (("cie", "company"), ("fest", "festival"), ("salle", "venue")):
        make_org(slug, kind=kind)
    page = login_as("admin").get(f"/admin/organisations?lang={lang}").get_data(as_text=True)
    for label in labels:
        assert f"<td>{label}</td>" in page
    for raw in ("company", "venue") if lang == "fr" else ("company", "festival", "venue"):
        assert f"<td>{raw}</td>" not in page


@pytest.mark.parametrize("lang,label", [("fr", "Organisation créée"), ("en", "Organisation created")])
def test_audit_actions_are_shown_in_words_with_the_key_as_fallback(login_as, session, lang, label):
    from core.models import audit

    client = login_as("admin")
    assert client.post("/admin/organisations", data={"slug": "salle-x", "name": "Salle X", "kind": "venue"}
                       ).status_code == 302
    audit(session, "plugin.unlabelled_thing", actor="test")
    session.commit()
    page = client.get(f"/admin/audit?lang={lang}").get_data(as_text=True)
    assert f'<span title="organisation.create">{label}</span>' in page
    assert ">organisation.create<" not in page
    assert "<code>plugin.unlabelled_thing</code>" in page  # no label yet: the key, as it is
