"""Hardening: CSRF on every form, cookies, security headers, login throttling, password rules,
upload limits, CSV injection in every export, and error pages without a traceback."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import urlsplit

import pytest
from flask import url_for
from sqlalchemy import func, select

from campaigns.models import Approval, Campaign, Promotion
from core import create_app
from core.auth import LOCK_MINUTES, MAX_FAILED_LOGINS, PasswordError, check_password_rules
from core.cli import main as pilot
from core.csvexport import csv_response, safe_cell, safe_filename
from core.models import AuditEvent, Contact, ImportBatch, JobRun, LoginThrottle, Organisation, Transaction, User, utcnow
from segments.insight_builders import TABLES
from segments.models import Segment, SegmentVersion
from tests.conftest import PASSWORD, login
from tests.test_authorisation_matrix import (
    ALLOWED,
    MATRIX,
    ROLES,
    build_world,
    role_clients,
    url_of,
)

CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_INPUT.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def csrf_login(client, email: str, password: str = PASSWORD):
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})


def state(session) -> dict:
    """Everything a POST could change, counted."""
    session.expire_all()
    counts = {
        model.__name__: session.scalar(select(func.count()).select_from(model))
        for model in (
            AuditEvent,
            Contact,
            ImportBatch,
            JobRun,
            Organisation,
            Promotion,
            Segment,
            SegmentVersion,
            Transaction,
            User,
        )
    }
    counts["campaigns"] = sorted(session.execute(select(Campaign.id, Campaign.status)).all())
    counts["approvals"] = sorted(session.execute(select(Approval.id, Approval.status)).all())
    return counts


# --- CSRF ----------------------------------------------------------------------------------------

# A body each POST endpoint would accept from the right role if the token were not checked.
PLAUSIBLE = {
    "auth.login": lambda w, u: {"email": u["staff"].email, "password": PASSWORD},
    "campaigns.decide": lambda w, u: {"decision": "decline", "decline_reason": "timing"},
    "campaigns.submit": lambda w, u: {"confirm": "y"},
    "campaigns.ready": lambda w, u: {"confirm": "y"},
    "campaigns.cancel": lambda w, u: {"confirm": "y", "reason": "CSRF"},
    "campaigns.clear_exclusions": lambda w, u: {"clear": "1"},
    "campaigns.upload_exclusions": lambda w, u: {"kind": "email", "file": (io.BytesIO(b"a@b.example\n"), "l.csv")},
    "campaigns.erasure": lambda w, u: {"email": "personne0@xexemple.qc.ca"},
    "experiments.launch": lambda w, u: {"confirm": "y"},
    "admin.organisations": lambda w, u: {"slug": "csrf-org", "name": "CSRF", "kind": "venue"},
    "admin.users": lambda w, u: {"email": "csrf@example.org", "role": "admin", "organisation": ""},
    "segments.new": lambda w, u: {"name": "CSRF", "rule": '{"field": "shows", "op": ">=", "value": 1}'},
    "segments.edit": lambda w, u: {"name": "CSRF", "rule": '{"field": "shows", "op": ">=", "value": 2}'},
    "main.imports": lambda w, u: {
        "organisation": str(w.org_a.id),
        "kind": "sales",
        "skip_invalid": "1",
        "file": (io.BytesIO(b"Nom;Prenom\nx;y\n"), "e.csv"),
    },
}


def test_every_post_without_a_token_is_refused_and_changes_nothing(app, session, make_user, tmp_path):
    world = build_world(app, session, tmp_path)
    clients = role_clients(app, make_user, world)  # logged in while CSRF is still off (the fixture's default)
    users = {role: c.user for role, c in clients.items() if role != "anonymous"}
    app.config["WTF_CSRF_ENABLED"] = True
    before = state(session)
    tried = 0
    for endpoint, entry in MATRIX.items():
        if entry.post is None:
            continue
        url = url_of(app, endpoint, world)
        roles = [r for r in ROLES if entry.post[r] == ALLOWED] or ["anonymous"]
        for role in roles:
            make = PLAUSIBLE.get(endpoint, lambda w, u: {})
            response = clients[role].post(url, data=make(world, users), content_type=None)
            assert response.status_code == 400, (endpoint, role, response.status_code)
            body = response.get_data(as_text=True)
            assert "Traceback" not in body and "csrf" not in body.lower().replace("csrf_token", "")
            tried += 1
        # the JSON endpoint too
        if endpoint == "segments.preview_json":
            response = clients["staff"].post(url, json={"rule": {"field": "shows", "op": ">=", "value": 1}})
            assert response.status_code == 400
    assert tried >= 20
    assert state(session) == before
    # still logged in: the refused logout did not log anyone out
    assert clients["staff"].get("/").status_code == 200


def test_the_token_of_the_page_is_accepted(app, make_user, session):
    app.config["WTF_CSRF_ENABLED"] = True
    user = make_user("staff")
    client = app.test_client()
    assert client.post("/login", data={"email": user.email, "password": PASSWORD}).status_code == 400
    assert csrf_login(client, user.email).status_code == 302
    token = csrf_token(client, "/segments/new")
    response = client.post(
        "/segments/preview", json={"rule": {"field": "shows", "op": ">=", "value": 1}}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    response = client.post(
        "/segments/new",
        data={"name": "Avec jeton", "csrf_token": token, "rule": '{"field": "shows", "op": ">=", "value": 1}'},
    )
    assert response.status_code == 302
    # a token of another session is refused
    other = app.test_client()
    response = other.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 400
    assert session.scalar(select(func.count()).select_from(Segment)) == 1


# --- cookies ---------------------------------------------------------------------------------------


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    return cookies[-1]


def test_session_cookie_is_httponly_and_lax(app, make_user):
    user = make_user("staff")
    client = app.test_client()
    cookie = _session_cookie(login(client, user.email))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development over plain http on the loopback


def test_production_cookies_are_secure(monkeypatch, app, make_user):
    monkeypatch.setenv("PILOT_ENV", "production")
    prod = create_app(
        {
            key: app.config[key]
            for key in ("DATABASE_URL", "INSTANCE_PATH", "SECRET_KEY", "DISTRICT_SECRET", "INBOX_PATH")
        }
        | {"WTF_CSRF_ENABLED": False}
    )
    assert prod.config["SESSION_COOKIE_SECURE"] is True
    assert prod.config["REMEMBER_COOKIE_SECURE"] is True
    assert prod.config["SESSION_COOKIE_HTTPONLY"] is True and prod.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    user = make_user("staff")
    client = prod.test_client()
    response = client.post("/login", data={"email": user.email, "password": PASSWORD}, base_url="https://pilot.example")
    cookie = _session_cookie(response)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "max-age=" in client.get("/login", base_url="https://pilot.example").headers.get(
        "Strict-Transport-Security", ""
    )


# --- security headers ----------------------------------------------------------------------------

SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def check_headers(response, where: str) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d.strip())
    assert "unsafe-inline" not in directives.get("script-src", "x unsafe-inline"), (where, csp)
    assert "unsafe-eval" not in csp, where
    assert directives.get("frame-ancestors") == "'none'", (where, csp)
    assert directives.get("object-src") == "'none'", (where, csp)
    assert response.headers.get("X-Frame-Options") == "DENY", where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where


def check_no_inline_script(html: str, where: str) -> None:
    for attributes in SCRIPT_TAG.findall(html):
        assert "src=" in attributes or 'type="application/json"' in attributes, (where, attributes)
    assert not EVENT_HANDLER.search(html), (where, EVENT_HANDLER.search(html).group(0))
    assert "javascript:" not in html.lower(), where


def test_security_headers_on_every_page_for_every_role(app, session, make_user, tmp_path):
    world = build_world(app, session, tmp_path)
    clients = role_clients(app, make_user, world)
    checked = 0
    for endpoint in MATRIX:
        url = url_of(app, endpoint, world)
        for role in ROLES:
            response = clients[role].get(url)
            check_headers(response, f"{role} {url}")
            if response.mimetype == "text/html":
                check_no_inline_script(response.get_data(as_text=True), f"{role} {url}")
            if endpoint != "static":
                assert "no-store" in response.headers.get("Cache-Control", ""), url
            checked += 1
    for path in ("/no/such/page", "/static/../core/config.py", "/login?next=//evil.example"):
        check_headers(clients["staff"].get(path), path)
    assert checked > 200


def test_nonce_changes_on_every_response(client):
    first = client.get("/login").headers["Content-Security-Policy"]
    second = client.get("/login").headers["Content-Security-Policy"]
    assert re.search(r"'nonce-[\w-]{16,}'", first) and first != second


# --- login throttling and password rules -----------------------------------------------------------


def test_login_locks_after_repeated_failures_then_unlocks(app, make_user, session):
    user = make_user("staff")
    client = app.test_client()
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert "Courriel inconnu" in login(client, user.email, "wrong-password-1").get_data(as_text=True)
    # a success before the limit resets the count
    assert login(client, user.email).status_code == 302
    client = app.test_client()
    for _ in range(MAX_FAILED_LOGINS):
        login(client, user.email, "wrong-password-1")
    session.expire_all()
    locked = session.scalar(select(LoginThrottle).where(LoginThrottle.account == user.email))
    assert locked.locked_until is not None and locked.address == "127.0.0.1"
    minutes = (locked.locked_until - utcnow()).total_seconds() / 60
    assert LOCK_MINUTES - 1 < minutes <= LOCK_MINUTES
    response = login(client, user.email)  # the right password, refused while locked
    assert response.status_code == 200 and "Trop de tentatives" in response.get_data(as_text=True)
    # the lock ends by itself
    locked.locked_until = utcnow().replace(year=2000)
    session.commit()
    assert login(client, user.email).status_code == 302


def test_unknown_email_and_wrong_password_look_the_same(app, make_user):
    user = make_user("staff")
    client = app.test_client()
    unknown = login(client, "nobody@example.org", "wrong-password-1").get_data(as_text=True)
    wrong = login(client, user.email, "wrong-password-1").get_data(as_text=True)
    strip = lambda html: re.sub(r'name="csrf_token"[^>]*>|value="[^"]*"', "", html)  # noqa: E731
    assert strip(unknown) == strip(wrong)


def test_inactive_user_cannot_log_in(app, make_user, session):
    user = make_user("staff")
    session.get(User, user.id).active = False
    session.commit()
    assert login(app.test_client(), user.email).status_code == 200


@pytest.mark.parametrize(
    "password,ok",
    [
        ("short1", False),
        ("abcdefghijk", False),
        ("12345678901", False),
        ("          1", False),
        ("abcdefghi1", False),
        ("abcdefghij12", False),  # 12 characters at least
        # common passwords, alone or with digits and symbols around them, in any case
        ("q1w2e3r4t5y6", False),
        ("Password12345!", False),
        ("2024Qwertyuiop", False),
        ("ABCDEFGHIJ12", False),
        ("abcdefghi1zz", True),
        ("correct-horse-42", True),
        ("Éléphant-rose-9", True),
        ("Gazon-vert-2031", True),
    ],
)
def test_password_rules(password, ok):
    if ok:
        check_password_rules(password)
    else:
        with pytest.raises(PasswordError):
            check_password_rules(password)


def test_weak_passwords_are_refused_by_the_invitation_page_and_the_command_line(login_as, app, runner, session):
    """Administrators never set a password: the invitee chooses theirs through the one-time link,
    under the same rules as the command line's."""
    admin = login_as("admin")
    response = admin.post(
        "/admin/users", data={"email": "invite-faible@example.net", "role": "staff", "organisation": ""}
    )
    assert response.status_code == 302
    link = re.search(
        r'value="(http[^"]+/welcome/[^"]+)"', admin.get(response.headers["Location"]).get_data(as_text=True)
    )
    invitee = app.test_client()
    assert invitee.get(urlsplit(link.group(1)).path).status_code == 302
    for weak in ("court1", "sanschiffres", "1234567890123"):
        response = invitee.post("/account/new-password", data={"new": weak, "confirm": weak})
        assert response.status_code == 200 and "mot de passe" in response.get_data(as_text=True).lower()
    assert login(app.test_client(), "invite-faible@example.net", "court1").status_code == 200  # never set
    result = runner.invoke(
        pilot, ["users", "create", "weak@example.org", "--role", "staff", "--password-stdin"], input="court1\n"
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        session.scalar(
            select(func.count()).select_from(User).where(User.email.like("%example.org") & (User.role == "staff"))
        )
        == 0
    )


# --- uploads -------------------------------------------------------------------------------------


def test_too_large_upload_gets_a_friendly_413(app, login_as, make_org, session):
    org = make_org("salle-413")
    assert 0 < app.config["MAX_CONTENT_LENGTH"] <= 200 * 1024 * 1024  # the configured default: a limit
    app.config["MAX_CONTENT_LENGTH"] = 4096
    client = login_as("staff")
    response = client.post(
        "/imports",
        data={
            "organisation": str(org.id),
            "kind": "sales",
            "skip_invalid": "0",
            "file": (io.BytesIO(b"Nom;Prenom\n" + b"x;y\n" * 5000), "big.csv"),
        },
    )
    assert response.status_code == 413
    body = response.get_data(as_text=True)
    assert "trop volumineux" in body and "Traceback" not in body and "Request Entity" not in body
    assert "Mo" in body  # the limit is said
    check_headers(response, "413")
    assert session.scalar(select(func.count()).select_from(ImportBatch)) == 0


@pytest.mark.parametrize(
    "name,content",
    [
        ("export.docx", b"PK\x03\x04 not a csv"),  # an Excel workbook is read (tests/core/test_import_formats.py)
        ("export.exe", b"MZ\x90\x00"),
        ("export.csv.php", b"<?php echo 1; ?>"),
        ("export", b"Nom;Prenom\n"),
    ],
)
def test_non_csv_uploads_are_refused(login_as, make_org, session, name, content):
    org = make_org("salle-type")
    client = login_as("staff")
    response = client.post(
        "/imports",
        data={"organisation": str(org.id), "kind": "sales", "skip_invalid": "0", "file": (io.BytesIO(content), name)},
    )
    assert response.status_code == 200
    assert "Un fichier CSV" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(ImportBatch)) == 0


def test_binary_content_named_csv_is_refused_cleanly(login_as, make_org, session):
    org = make_org("salle-binaire")
    client = login_as("staff")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    response = client.post(
        "/imports",
        data={
            "organisation": str(org.id),
            "kind": "sales",
            "skip_invalid": "0",
            "file": (io.BytesIO(png), "photo.csv"),
        },
    )
    assert response.status_code in (200, 400)
    assert "Traceback" not in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Transaction)) == 0
    assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_exclusion_list_must_be_csv(app, session, make_user, tmp_path):
    world = build_world(app, session, tmp_path)
    client = role_clients(app, make_user, world)["venue"]
    response = client.post(
        f"/campaigns/approvals/{world.approval_a}/exclusions",
        data={"kind": "email", "file": (io.BytesIO(b"PK\x03\x04"), "liste.xlsx")},
    )
    assert response.status_code == 400
    app.config["MAX_CONTENT_LENGTH"] = 2048
    response = client.post(
        f"/campaigns/approvals/{world.approval_a}/exclusions",
        data={"kind": "email", "file": (io.BytesIO(b"a@b.example\n" * 1000), "liste.csv")},
    )
    assert response.status_code == 413


# --- CSV injection -------------------------------------------------------------------------------

PAYLOADS = [
    '=HYPERLINK("http://evil.example","x")',
    "+SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
]
# OWASP's list: what every export must neutralise (core.csvexport also covers full-width forms).
OWASP_STARTS = ("=", "+", "-", "@", "\t", "\r")


def dangerous_cells(data: bytes) -> list[str]:
    """Cells a spreadsheet would run as a formula (plain numbers are fine)."""
    text = data.decode("utf-8-sig")
    delimiter = ";" if text.split("\r\n", 1)[0].count(";") > text.split("\r\n", 1)[0].count(",") else ","
    bad = []
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        for cell in row:
            if cell.startswith(OWASP_STARTS) and not re.fullmatch(
                r"[+-]?\d[\d\s]*(?:[.,]\d+)?(?:[eE][+-]?\d+)?%?", cell
            ):
                bad.append(cell)
    return bad


@pytest.mark.parametrize(
    "value,expected",
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@A1", "'@A1"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("＝1", "'＝1"),
        ("-12,50", "-12,50"),
        ("+33 1 23", "+33 1 23"),
        ("-0.5", "-0.5"),
        ("Alpha", "Alpha"),
        (-3, -3),
        (2.5, 2.5),
        (None, ""),
        ("", ""),
    ],
)
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected


def test_csv_response_neutralises_every_cell(app):
    with app.test_request_context():
        response = csv_response([PAYLOADS, [1, -2.5, None]], 'rap"port\r\n.csv', header=["=a", "b"], delimiter=";")
    assert (
        response.mimetype == "text/csv"
        and response.headers["Content-Disposition"] == 'attachment; filename="rap-port-.csv"'
    )
    assert response.data.startswith("\ufeff".encode())
    assert dangerous_cells(response.data) == []
    assert "'＝1" in csv_response([["＝1"]], "x.csv").get_data(as_text=True)
    assert safe_filename("../../etc/passwd") == "etc-passwd.csv"


def test_every_csv_export_neutralises_formulas(app, session, make_user, tmp_path):
    world = build_world(app, session, tmp_path)
    # organisation A's contacts and the promotion carry formulas, as an export or a hurried staff member might
    contacts = session.scalars(select(Contact).where(Contact.organisation_id == world.org_a.id)).all()
    for i, contact in enumerate(contacts):
        contact.last_name = PAYLOADS[i % len(PAYLOADS)]
        contact.first_name = PAYLOADS[(i + 1) % len(PAYLOADS)]
        contact.email = f"@{i}-{contact.email}"
    promotion = session.get(Promotion, world.district.promotion.id)
    promotion.name_fr = promotion.name_en = '=HYPERLINK("http://evil.example")'
    promotion.message_fr = promotion.message_en = "@SUM(A1:A9)"
    session.get(Organisation, world.orgs[1].id).name = "=cmd|' /C calc'!A0"
    session.commit()
    clients = role_clients(app, make_user, world)
    urls = []
    with app.test_request_context():
        for table in TABLES:
            urls += [
                url_for("segments.insights_csv", table=table),
                url_for("segments.insights_discipline_csv", key="theatre", table=table),
                url_for("segments.insights_organisation_csv", slug=world.org_a.slug, table=table),
            ]
        urls += [url_for("experiments.report_csv", experiment_id=world.experiment.id)]
    exported = 0
    for client_role in ("staff", "venue"):
        for url in urls:
            for lang in ("fr", "en"):
                response = clients[client_role].get(f"{url}?lang={lang}")
                assert response.status_code == 200, (url, response.status_code)
                assert response.mimetype == "text/csv"
                assert dangerous_cells(response.data) == [], url
                exported += 1
    response = clients["venue"].get(url_of(app, "experiments.contacts_csv", world))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    body = response.data.decode("utf-8-sig")
    assert "'=HYPERLINK" in body and "'@SUM" in body  # the payloads are there, neutralised
    assert dangerous_cells(response.data) == []
    assert exported >= 80


# --- error pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("testing", [True, False])
def test_unexpected_error_page_has_no_traceback(app, caplog, testing):
    boom_app = create_app(
        {
            key: app.config[key]
            for key in ("DATABASE_URL", "INSTANCE_PATH", "SECRET_KEY", "DISTRICT_SECRET", "INBOX_PATH")
        }
        | {"TESTING": testing}
    )

    @boom_app.route("/test-only/boom")
    def boom():
        raise RuntimeError("secret-detail: password=hunter2")

    response = boom_app.test_client().get("/test-only/boom?lang=en")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    for leaked in ("Traceback", "secret-detail", "hunter2", "RuntimeError", 'File "', "werkzeug"):
        assert leaked not in body, leaked
    assert "Something went wrong on our side" in body
    check_headers(response, "500")
    assert any("secret-detail" in (r.exc_text or "") for r in caplog.records)  # logged, not shown


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("get", "/no/such/page", 404),
        ("get", "/logout", 405),
        ("get", "/imports/999999", 404),
        ("post", "/segments/preview", 403),
    ],
)
def test_http_error_pages_are_friendly(login_as, method, path, status):
    response = getattr(login_as("venue"), method)(path)
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and f"Erreur {status}" in body
