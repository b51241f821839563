"""People in the web (issue 19, item 3): invitations and resets by one-time link (hashed at rest,
single use, expiring), role changes, deactivation that ends sessions; administrators never see or
set a password."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from core import people
from core.auth import PasswordError
from core.models import AuditEvent, User, UserToken, utcnow
from tests.conftest import PASSWORD, login

NEW_PASSWORD = "Gazon-vert-2031"


def shown_link(admin, location: str) -> str | None:
    """The one-time link the user's page shows (only right after it was made), as a path."""
    found = re.search(r'value="(http[^"]+/welcome/[^"]+)"', admin.get(location).get_data(as_text=True))
    return urlsplit(found.group(1)).path if found else None


def everything_stored(session) -> str:
    """Every stored link and audit event, as text: where a secret must never be."""
    rows = [[t.token_hash, t.purpose, str(t.expires_at)] for t in session.scalars(select(UserToken))]
    rows += [[e.actor, e.action, e.object_type, e.object_id, e.details] for e in session.scalars(select(AuditEvent))]
    return json.dumps(rows, default=str)


def test_a_link_is_kept_as_its_hash_only_and_works_once(app, session, make_user):
    user = make_user("staff")
    with app.app_context():
        raw = people.issue_link(session, session.get(User, user.id), "reset")
        session.commit()
        stored = session.scalar(select(UserToken).where(UserToken.user_id == user.id))
        assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
        assert raw not in everything_stored(session)
        assert len(raw) >= 40  # 256 random bits
        assert people.find_link(session, raw) is not None
        people.use_link(session, raw, password=NEW_PASSWORD)
        session.commit()
        assert people.find_link(session, raw) is None
        with pytest.raises(people.LinkError):
            people.use_link(session, raw, password="Autre-mot-2032")
        session.rollback()
    assert login(app.test_client(), user.email, NEW_PASSWORD).status_code == 302
    assert login(app.test_client(), user.email, "Autre-mot-2032").status_code == 200


def test_a_link_expires_and_a_newer_one_replaces_it(app, session, make_user):
    user = make_user("staff")
    with app.app_context():
        person = session.get(User, user.id)
        old = people.issue_link(session, person, "reset", now=utcnow() - dt.timedelta(hours=25))
        session.commit()
        assert people.find_link(session, old) is None  # a reset link lives 24 hours
        with pytest.raises(people.LinkError):
            people.use_link(session, old, password=NEW_PASSWORD)
        first = people.issue_link(session, person, "reset")
        second = people.issue_link(session, person, "reset")
        session.commit()
        assert people.find_link(session, first) is None and people.find_link(session, second) is not None
        app.config["RESET_LINK_HOURS"] = 1
        short = people.issue_link(session, person, "reset", now=utcnow() - dt.timedelta(minutes=61))
        assert people.find_link(session, short) is None
        # garbage never matches, nor an empty or absurd secret
        for junk in ("", "x", "a" * 5000, None):
            assert people.find_link(session, junk) is None
        assert people.find_link(session, digest="0" * 64) is None


def test_the_password_rules_hold_for_links(app, session, make_user):
    user = make_user("staff")
    with app.app_context():
        raw = people.issue_link(session, session.get(User, user.id), "reset")
        session.commit()
        for weak in ("court1", "Password12345!"):
            with pytest.raises(PasswordError):
                people.use_link(session, raw, password=weak)
            session.rollback()
        assert people.find_link(session, raw) is not None  # a refused password does not spend the link


def test_invitation_end_to_end_in_the_web(app, login_as, session):
    """The administrator invites; the link is shown once; the invitee chooses a password and logs in;
    the link is spent; the audit log says it all, without the secret."""
    admin = login_as("admin")
    response = admin.post(
        "/admin/users", data={"email": "Bob@Example.org", "name": "Bob", "role": "staff", "organisation": ""}
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    path = shown_link(admin, location)
    assert path and path.startswith("/welcome/")
    assert shown_link(admin, location) is None  # shown once only
    bob = session.scalar(select(User).where(User.email == "bob@example.org"))
    assert bob.role == "staff" and bob.active
    assert "Invité, sans mot de passe" in admin.get("/admin/users").get_data(as_text=True)
    assert login(app.test_client(), "bob@example.org", PASSWORD).status_code == 200  # no usable password yet

    invitee = app.test_client()
    response = invitee.get(path)
    assert response.status_code == 302 and response.headers["Location"] == "/account/new-password"
    page = invitee.get("/account/new-password").get_data(as_text=True)
    assert "bob@example.org" in page and "Bienvenue" in page
    response = invitee.post("/account/new-password", data={"new": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
    assert response.status_code == 200 and "diffèrent" in response.get_data(as_text=True)
    response = invitee.post("/account/new-password", data={"new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert login(app.test_client(), "bob@example.org", NEW_PASSWORD).status_code == 302
    # spent: the same link, in any browser, no longer works
    assert app.test_client().get(path).status_code == 410
    assert invitee.get("/account/new-password").status_code == 410
    session.expire_all()
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert "user.invite" in actions and "user.invitation_accepted" in actions
    assert path.rsplit("/", 1)[1] not in everything_stored(session)
    assert "Actif" in admin.get(location).get_data(as_text=True)


def test_a_reset_link_ends_every_session_when_used(app, login_as, session):
    admin = login_as("admin")
    staff = login_as("staff")
    response = admin.post(f"/admin/users/{staff.user.id}/link", data={})
    assert response.status_code == 302
    path = shown_link(admin, response.headers["Location"])
    assert path
    # the password works until the link is used: nobody is locked out by a reset they did not ask for
    assert login(app.test_client(), staff.user.email, PASSWORD).status_code == 302
    assert staff.get("/").status_code == 200
    browser = app.test_client()
    browser.get(path)
    assert browser.post("/account/new-password", data={"new": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    assert staff.get("/").status_code == 302  # the old session is over
    assert login(app.test_client(), staff.user.email, PASSWORD).status_code == 200
    assert login(app.test_client(), staff.user.email, NEW_PASSWORD).status_code == 302
    session.expire_all()
    assert "user.reset_link" in session.scalars(select(AuditEvent.action)).all()


def test_deactivation_ends_sessions_and_links(app, login_as, session):
    admin = login_as("admin")
    venue = login_as("venue")
    with app.app_context():
        raw = people.issue_link(session, session.get(User, venue.user.id), "reset")
        session.commit()
    page = admin.get(f"/admin/users/{venue.user.id}/deactivate").get_data(as_text=True)
    assert "déconnecté" in page and 'name="confirm"' in page
    assert admin.post(f"/admin/users/{venue.user.id}/deactivate", data={"confirm": "yes"}).status_code == 302
    assert venue.get("/").status_code == 302
    assert app.test_client().get(f"/welcome/{raw}").status_code == 410
    response = admin.post(f"/admin/users/{venue.user.id}/link", data={})  # no link for a deactivated user
    assert response.status_code == 302 and shown_link(admin, response.headers["Location"]) is None
    admin.post(f"/admin/users/{venue.user.id}/access", data={"action": "reactivate", "back": "user"})
    assert login(app.test_client(), venue.user.email).status_code == 302


def test_roles_and_organisations_change(app, login_as, make_org, session):
    admin = login_as("admin")
    org = make_org("salle-verte", "Salle Verte")
    evaluator = login_as("evaluator")
    admin.post(f"/admin/users/{evaluator.user.id}/access", data={"action": "grant_insights"})
    # a venue approver needs an organisation
    admin.post(f"/admin/users/{evaluator.user.id}/role", data={"role": "venue", "organisation": ""})
    session.expire_all()
    assert session.get(User, evaluator.user.id).role == "evaluator"
    assert (
        admin.post(
            f"/admin/users/{evaluator.user.id}/role", data={"role": "venue", "organisation": str(org.id)}
        ).status_code
        == 302
    )
    session.expire_all()
    changed = session.get(User, evaluator.user.id)
    assert (changed.role, changed.organisation_id, changed.insights_granted) == ("venue", org.id, False)
    assert evaluator.get("/campaigns/").status_code == 200  # their next page already sees the new role
    # back to staff: no organisation kept
    admin.post(f"/admin/users/{evaluator.user.id}/role", data={"role": "staff", "organisation": str(org.id)})
    session.expire_all()
    assert session.get(User, evaluator.user.id).organisation_id is None
    # nobody changes their own role
    admin.post(f"/admin/users/{admin.user.id}/role", data={"role": "staff", "organisation": ""})
    session.expire_all()
    assert session.get(User, admin.user.id).role == "admin"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "user.role_change").order_by(AuditEvent.id))
    assert event.details["role_before"] == "evaluator" and event.details["organisation"] == "Salle Verte"


def test_an_invited_user_gets_a_new_invitation_not_a_reset(app, login_as, session):
    admin = login_as("admin")
    response = admin.post("/admin/users", data={"email": "lent@example.org", "role": "evaluator", "organisation": ""})
    first = shown_link(admin, response.headers["Location"])
    user_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    response = admin.post(f"/admin/users/{user_id}/link", data={})
    second = shown_link(admin, response.headers["Location"])
    assert first != second and app.test_client().get(first).status_code == 410
    browser = app.test_client()
    browser.get(second)
    assert "Bienvenue" in browser.get("/account/new-password").get_data(as_text=True)
    session.expire_all()
    assert "user.invite_again" in session.scalars(select(AuditEvent.action)).all()


@pytest.mark.parametrize("role", ["staff", "venue", "evaluator"])
def test_non_admins_cannot_invite_or_change_anyone(login_as, session, make_user, role):
    client = login_as(role)
    target = make_user("staff")
    assert client.post("/admin/users", data={"email": "x@example.org", "role": "admin"}).status_code == 403
    assert client.post(f"/admin/users/{target.id}/role", data={"role": "admin"}).status_code == 403
    assert client.post(f"/admin/users/{target.id}/link", data={}).status_code == 403
    assert client.post(f"/admin/users/{target.id}/deactivate", data={"confirm": "yes"}).status_code == 403
    session.expire_all()
    assert session.get(User, target.id).role == "staff" and session.get(User, target.id).active
    assert session.scalar(select(UserToken.id)) is None


def test_links_use_the_public_address_when_set(app, login_as):
    app.config["PUBLIC_URL"] = "https://pilote.example.org/"
    admin = login_as("admin")
    response = admin.post("/admin/users", data={"email": "publique@example.org", "role": "staff", "organisation": ""})
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert re.search(r'value="https://pilote\.example\.org/welcome/[A-Za-z0-9_-]{40,}"', page)


def test_two_uses_at_once_spend_the_link_once(app, db, make_user):
    """Two browsers post the same link at the same moment: the second, which read the link before the
    first spent it, is refused by the spending update itself."""
    user = make_user("staff")
    with app.app_context():
        with db.session() as s:
            raw = people.issue_link(s, s.get(User, user.id), "reset")
            s.commit()
        with db.session() as first, db.session() as second:
            read = people.find_link(first, raw)  # the first browser read it (and holds it, as its request does)
            assert read is not None and read.used_at is None
            people.use_link(second, raw, password=NEW_PASSWORD)
            second.commit()
            with pytest.raises(people.LinkError):
                people.use_link(first, raw, password="Autre-mot-2032")
            first.rollback()
    assert login(app.test_client(), user.email, NEW_PASSWORD).status_code == 302
