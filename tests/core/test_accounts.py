"""Accounts (issue 15, Build 4): the same hash work for unknown e-mails, failures counted per
(account, address) and per address, sessions that end at logout, password change and deactivation,
common passwords refused, and a page where every user changes their own password."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import core.auth
from core.auth import MAX_FAILED_LOGINS, MAX_FAILED_PER_ADDRESS
from core.models import AuditEvent, LoginThrottle, User
from tests.conftest import PASSWORD, login

NEW_PASSWORD = "Gazon-vert-2031"


def client_from(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.fixture
def hash_checks(monkeypatch):
    """Counts the password-hash verifications (werkzeug's, called through)."""
    calls = []
    real = core.auth.check_password_hash

    def counting(stored, password):
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(core.auth, "check_password_hash", counting)
    return calls


def test_an_unknown_email_costs_the_same_hash_verification_as_a_known_one(app, make_user, session, hash_checks):
    user = make_user("staff")
    client = app.test_client()
    login(client, "nobody@example.org", "wrong-password-1")
    login(client, user.email, "wrong-password-1")
    assert len(hash_checks) == 2
    # the unknown e-mail's hash is a real one, of the same method and cost as the stored one
    assert hash_checks[0].split("$")[0] == hash_checks[1].split("$")[0]
    # an inactive account and a locked address verify a hash too: no shortcut tells them apart
    session.get(User, user.id).active = False
    session.commit()
    login(client, user.email, PASSWORD)
    assert len(hash_checks) == 3


def test_an_account_is_never_locked_for_an_address_that_did_not_fail(app, make_user, session):
    user = make_user("staff")
    attacker = client_from(app, "203.0.113.7")
    for _ in range(MAX_FAILED_LOGINS + 2):
        login(attacker, user.email, "wrong-password-1")
    # the attacker's address is locked for this account, even with the right password
    response = login(attacker, user.email)
    assert response.status_code == 200 and "Trop de tentatives" in response.get_data(as_text=True)
    # the user, from their own address, logs in
    assert login(client_from(app, "198.51.100.20"), user.email).status_code == 302
    rows = session.scalars(select(LoginThrottle)).all()
    assert {r.address for r in rows} == {"203.0.113.7"}
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "login.locked")) is not None


def test_an_address_trying_many_accounts_is_locked_whatever_the_account(app, make_user, session):
    user = make_user("staff")
    sprayer = client_from(app, "203.0.113.9")
    for i in range(MAX_FAILED_PER_ADDRESS):
        login(sprayer, f"guess{i}@example.org", "wrong-password-1")  # never 5 on the same account
    response = login(sprayer, user.email)
    assert response.status_code == 200 and "Trop de tentatives" in response.get_data(as_text=True)
    assert login(client_from(app, "198.51.100.21"), user.email).status_code == 302


def test_unknown_and_known_emails_are_counted_alike(app, make_user, session):
    user = make_user("staff")
    client = client_from(app, "203.0.113.10")
    for _ in range(MAX_FAILED_LOGINS):
        login(client, user.email, "wrong-password-1")
        login(client, "nobody@example.org", "wrong-password-1")
    for email in (user.email, "nobody@example.org"):
        body = login(client, email, "wrong-password-1").get_data(as_text=True)
        assert "Trop de tentatives" in body, email


def test_logout_ends_the_session_even_for_a_copy_of_its_cookie(app, make_user):
    user = make_user("staff")
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    cookie = client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/").status_code == 200  # the copy works while the session lasts
    client.post("/logout")
    response = thief.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, make_user, session):
    user = make_user("evaluator")
    here, elsewhere = app.test_client(), app.test_client()
    assert login(here, user.email).status_code == 302 and login(elsewhere, user.email).status_code == 302
    page = here.get("/account/password?lang=en")
    assert page.status_code == 200 and "Change my password" in page.get_data(as_text=True)
    response = here.post("/account/password", data={"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert here.get("/").status_code == 200
    assert elsewhere.get("/").status_code == 302
    assert login(app.test_client(), user.email, PASSWORD).status_code == 200  # the old one is refused
    assert login(app.test_client(), user.email, NEW_PASSWORD).status_code == 302
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "user.password_change")) is not None


@pytest.mark.parametrize(
    "lang,current,new,confirm,message",
    [
        ("fr", "wrong-password-9", NEW_PASSWORD, NEW_PASSWORD, "pas votre mot de passe actuel"),
        ("en", "wrong-password-9", NEW_PASSWORD, NEW_PASSWORD, "not your current password"),
        ("fr", PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "diffèrent"),
        ("en", PASSWORD, "Password12345!", "Password12345!", "most common"),
        ("fr", PASSWORD, "Password12345!", "Password12345!", "plus courants"),
        ("en", PASSWORD, "short-1", "short-1", "at least 12"),
    ],
)
def test_the_password_page_explains_a_refusal(login_as, session, lang, current, new, confirm, message):
    client = login_as("staff")
    response = client.post(f"/account/password?lang={lang}", data={"current": current, "new": new, "confirm": confirm})
    assert response.status_code == 200 and message in response.get_data(as_text=True)
    session.expire_all()
    assert login(client.application.test_client(), client.user.email, PASSWORD).status_code == 302  # unchanged


def test_deactivating_a_user_ends_their_sessions(app, login_as, session):
    admin = login_as("admin")
    venue = login_as("venue")
    assert venue.get("/").status_code == 200
    assert "Désactiver" in admin.get(f"/admin/users/{venue.user.id}").get_data(as_text=True)
    # the deactivation asks for a confirmation first: without the box ticked, nothing happens
    assert admin.post(f"/admin/users/{venue.user.id}/deactivate", data={}).status_code == 200
    assert venue.get("/").status_code == 200
    assert admin.post(f"/admin/users/{venue.user.id}/deactivate", data={"confirm": "yes"}).status_code == 302
    assert venue.get("/").status_code == 302
    assert login(app.test_client(), venue.user.email).status_code == 200  # and cannot log in again
    admin.post(f"/admin/users/{venue.user.id}/access", data={"action": "reactivate"})
    assert login(app.test_client(), venue.user.email).status_code == 302
    # the session was ended, not only refused while inactive: reactivation does not bring it back
    assert venue.get("/").status_code == 302
    # an administrator cannot lock themself out
    admin.post(f"/admin/users/{admin.user.id}/deactivate", data={"confirm": "yes"})
    session.expire_all()
    assert session.get(User, admin.user.id).active
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_type == "user")).all()
    assert "user.deactivate" in actions and "user.reactivate" in actions


def test_only_evaluators_are_granted_the_insights(login_as, session):
    admin = login_as("admin")
    evaluator, staff = login_as("evaluator"), login_as("staff")
    admin.post(f"/admin/users/{evaluator.user.id}/access", data={"action": "grant_insights"})
    admin.post(f"/admin/users/{staff.user.id}/access", data={"action": "grant_insights"})
    session.expire_all()
    assert session.get(User, evaluator.user.id).insights_granted
    assert not session.get(User, staff.user.id).insights_granted
