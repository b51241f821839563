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


@pytest.mark.parametrize(
    "role,path,status",
    [
        ("evaluator", "/admin/users", 403),
        ("staff", "/admin/users", 403),
        ("venue", "/admin/organisations", 403),
        ("admin", "/admin/users", 200),
        ("evaluator", "/imports", 403),
    ],
)
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
    response = client.post("/admin/users", data={"email": "v@example.org", "role": "venue", "organisation": ""})
    assert "doit appartenir" in response.get_data(as_text=True)  # venue approver needs an organisation


def test_the_language_switch_keeps_the_page_and_its_query(login_as):
    client = login_as("admin")
    page = client.get("/admin/audit?page=2&q=a%20b%26c").get_data(as_text=True)
    assert 'href="/admin/audit?page=2&amp;q=a+b%26c&amp;lang=en" lang="en"' in page
    page = client.get("/admin/audit?page=2&lang=en").get_data(as_text=True)
    assert 'lang="en"' in page and 'href="/admin/audit?page=2&amp;lang=fr" lang="fr"' in page  # one lang, replaced
    page = client.get("/admin/organisations").get_data(as_text=True)  # the choice is remembered
    assert 'href="/admin/organisations?lang=fr"' in page


@pytest.mark.parametrize(
    "lang,labels", [("fr", ("Compagnie", "Festival", "Salle")), ("en", ("Company", "Festival", "Venue"))]
)
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
    assert (
        client.post("/admin/organisations", data={"slug": "salle-x", "name": "Salle X", "kind": "venue"}).status_code
        == 302
    )
    audit(session, "plugin.unlabelled_thing", actor="test")
    session.commit()
    page = client.get(f"/admin/audit?lang={lang}").get_data(as_text=True)
    assert f'<span title="organisation.create">{label}</span>' in page
    assert ">organisation.create<" not in page
    assert "<code>plugin.unlabelled_thing</code>" in page  # no label yet: the key, as it is


def _audit_rows(session, *events):
    """Add audit events given as (action, actor, object_type, object_id, at, details)."""
    import datetime as dt

    from core.models import audit

    for action, actor, object_type, object_id, day, details in events:
        event = audit(session, action, actor=actor, object_type=object_type, object_id=object_id, **details)
        event.at = dt.datetime.fromisoformat(day)
    session.commit()


def test_audit_log_filters_by_action_actor_object_and_period(login_as, session):
    _audit_rows(
        session,
        ("campaign.launch", "Marie Tremblay <marie@x.org>", "campaign", 7, "2026-10-01 10:00", {"recipients": 4545}),
        ("campaign.launch", "Paul <paul@x.org>", "campaign", 8, "2026-10-03 23:59", {}),
        ("segment.create", "Marie Tremblay <marie@x.org>", "segment", 3, "2026-10-05 09:00", {}),
        ("campaign.cancel", "100%_sure <odd@x.org>", "campaign", 9, "2026-10-06 09:00", {}),
    )
    client = login_as("admin")

    def shown(query):
        page = client.get(f"/admin/audit?lang=en&{query}").get_data(as_text=True)
        return {
            object_id for object_id in ("campaign #7", "campaign #8", "segment #3", "campaign #9") if object_id in page
        }

    assert shown("") == {"campaign #7", "campaign #8", "segment #3", "campaign #9"}
    assert shown("action=campaign.launch") == {"campaign #7", "campaign #8"}
    assert shown("actor=MARIE") == {"campaign #7", "segment #3"}
    assert shown("actor=0%25_") == {"campaign #9"}  # % and _ are matched as themselves, not as wildcards
    assert shown("object_type=campaign&object_id=8") == {"campaign #8"}
    # days in Montreal time, the last one included: 2026-10-03 23:59 UTC is 19:59 on the 3rd there
    assert shown("since=2026-10-02&until=2026-10-03") == {"campaign #8"}
    assert shown("since=2026-10-04&until=2026-10-04") == set()
    assert shown("since=not-a-date") == {"campaign #7", "campaign #8", "segment #3", "campaign #9"}
    assert "No event matches these filters." in client.get("/admin/audit?lang=en&actor=nobody").get_data(as_text=True)


def test_audit_log_shows_details_as_key_value_lines_and_pages_keep_filters(login_as, session):
    _audit_rows(
        session,
        *[("segment.create", "staff@x.org", "segment", n, "2026-10-01 10:00", {"name": f"S{n}"}) for n in range(105)],
    )
    client = login_as("admin")
    page = client.get("/admin/audit?lang=en&action=segment.create").get_data(as_text=True)
    assert "<dt>name</dt><dd>S104</dd>" in page and '{"name"' not in page
    assert 'href="/admin/audit?page=2&amp;action=segment.create"' in page
    older = client.get("/admin/audit?lang=en&action=segment.create&page=2").get_data(as_text=True)
    assert "<dd>S4</dd>" in older and "<dd>S5</dd>" not in older and "Older" not in older
    _audit_rows(
        session,
        (
            "campaign.ready",
            "staff@x.org",
            "campaign",
            1,
            "2026-10-02 10:00",
            {"before_deadline": False, "unanswered": None, "organisations": [3, 4]},
        ),
    )
    page = client.get("/admin/audit?lang=fr&action=campaign.ready").get_data(as_text=True)
    assert (
        "<dt>before_deadline</dt><dd>non</dd><dt>unanswered</dt><dd>—</dd><dt>organisations</dt><dd>[3, 4]</dd>"
    ) in page


def test_audit_log_csv_follows_the_filters_and_is_itself_logged(login_as, session):
    import csv
    import io

    _audit_rows(
        session,
        ("campaign.launch", "marie@x.org", "campaign", 7, "2026-10-01 10:00", {"recipients": 4545, "arms": [1, 2]}),
        ("segment.create", "=cmd()@x.org", "segment", 3, "2026-10-05 09:00", {}),
    )
    client = login_as("admin")
    response = client.get("/admin/audit.csv?lang=en&action=campaign.launch")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:3] == ["When (Montreal time)", "Who", "Action"]
    assert rows[1:] == [
        [
            "2026-10-01 06:00:00",
            "marie@x.org",
            "campaign.launch",
            "Campaign launched",
            "campaign",
            "7",
            "recipients: 4545; arms: [1, 2]",
            "marie@x.org: Campaign launched (campaign #7)",
        ]
    ]
    everything = client.get("/admin/audit.csv?lang=fr").get_data(as_text=True)
    assert "'=cmd()@x.org" in everything  # no formula reaches a spreadsheet
    assert everything.lstrip("\ufeff").startswith("Quand (heure de Montréal);Qui;")  # a French spreadsheet's separator
    session.expire_all()
    exports = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit.export").order_by(AuditEvent.id)
    ).all()
    assert [e.details for e in exports] == [{"filters": {"action": "campaign.launch"}}, None]


@pytest.mark.parametrize("role", ["staff", "evaluator", "venue"])
def test_audit_log_and_its_csv_are_for_administrators_only(login_as, role):
    client = login_as(role)
    assert client.get("/admin/audit").status_code == 403
    assert client.get("/admin/audit.csv").status_code == 403
