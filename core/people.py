"""People: invitations and password resets by one-time link, roles, deactivation (the services of the admin pages)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from flask import current_app, has_app_context
from flask_babel import gettext as _
from sqlalchemy import delete, exists, func, select, update

from core.auth import check_password_rules, end_sessions, hash_password
from core.models import ROLES, Organisation, User, UserToken, audit, utcnow

# How long a one-time link stays valid (configurable: INVITE_LINK_HOURS, RESET_LINK_HOURS).
INVITE_LINK_HOURS = 7 * 24
RESET_LINK_HOURS = 24


class LinkError(ValueError):
    """A one-time link that cannot be used (unknown, expired, used already, or its user deactivated)."""


class PeopleError(ValueError):
    """A change the rules refuse (the message says which, in the user's language)."""


def token_digest(raw: str) -> str:
    """What is kept of a link's secret: its SHA-256 (the secret has 256 random bits, so no salt is needed)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def link_lifetime(purpose: str) -> dt.timedelta:
    """How long a link of ``purpose`` ("invite" or "reset") stays valid."""
    key, default = (
        ("INVITE_LINK_HOURS", INVITE_LINK_HOURS) if purpose == "invite" else ("RESET_LINK_HOURS", RESET_LINK_HOURS)
    )
    hours = current_app.config.get(key, default) if has_app_context() else default
    return dt.timedelta(hours=float(hours))


def issue_link(
    session, user: User, purpose: str, *, created_by: int | None = None, now: dt.datetime | None = None
) -> str:
    """Make a one-time link secret for ``user`` and return it (it is shown once, and kept nowhere but
    as its digest). Earlier unused links of the user end: only the newest one works. Flushes."""
    if purpose not in ("invite", "reset"):
        raise ValueError(f"unknown link purpose {purpose!r}")
    now = now or utcnow()
    session.execute(delete(UserToken).where(UserToken.user_id == user.id, UserToken.used_at.is_(None)))
    raw = secrets.token_urlsafe(32)
    session.add(
        UserToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=token_digest(raw),
            created_at=now,
            expires_at=now + link_lifetime(purpose),
            created_by_id=created_by,
        )
    )
    session.flush()
    return raw


def find_link(
    session, raw: str | None = None, *, digest: str | None = None, now: dt.datetime | None = None
) -> UserToken | None:
    """The valid link whose secret is ``raw`` (or whose digest is ``digest``): known, unused,
    unexpired, its user active; else None."""
    if raw is not None:
        digest = token_digest(raw) if 0 < len(raw) <= 200 else None
    if not isinstance(digest, str) or len(digest) != 64:
        return None
    token = session.scalar(select(UserToken).where(UserToken.token_hash == digest))
    if token is None or token.used_at is not None or token.expires_at <= (now or utcnow()):
        return None
    user = session.get(User, token.user_id)
    return token if user is not None and user.active else None


def use_link(
    session, raw: str | None = None, *, password: str, digest: str | None = None, now: dt.datetime | None = None
) -> User:
    """Set the password of the link's user (the usual rules, :func:`core.auth.check_password_rules`)
    and spend the link: a second use, even a concurrent one, fails. Every session of the user ends.
    Raises :class:`LinkError` or :class:`core.auth.PasswordError`; the caller commits."""
    now = now or utcnow()
    token = find_link(session, raw, digest=digest, now=now)
    if token is None:
        raise LinkError("link not valid")
    check_password_rules(password)
    spent = session.execute(
        update(UserToken).where(UserToken.id == token.id, UserToken.used_at.is_(None)).values(used_at=now),
        execution_options={"synchronize_session": False},
    )
    if spent.rowcount != 1:
        raise LinkError("link used already")
    user = session.get(User, token.user_id)
    user.password_hash = hash_password(password)
    action = "user.invitation_accepted" if token.purpose == "invite" else "user.password_reset"
    audit(
        session, action, actor=user.email, user_id=user.id, object_type="user", object_id=user.id, actor_role=user.role
    )
    session.flush()
    end_sessions(session, user.id)
    return session.get(User, token.user_id)


def _audit_user(session, action: str, user: User, actor: User, **details) -> None:
    """Log ``action`` on the account ``user``, done by ``actor`` (an administrator or a staff member)."""
    audit(session, action, actor=actor.email, user_id=actor.id, object_type="user", object_id=user.id, **details)


def pending_invitation(session, user_id: int) -> bool:
    """The user was invited and has not yet chosen a password (whether the link is still valid or not)."""
    invited = exists().where(UserToken.user_id == user_id, UserToken.purpose == "invite")
    accepted = exists().where(
        UserToken.user_id == user_id, UserToken.purpose == "invite", UserToken.used_at.is_not(None)
    )
    return bool(session.scalar(select(invited & ~accepted)))


def open_link(session, user_id: int, *, now: dt.datetime | None = None) -> UserToken | None:
    """The user's link still waiting to be used (its expiry is shown to the administrator), or None."""
    return session.scalar(
        select(UserToken).where(
            UserToken.user_id == user_id, UserToken.used_at.is_(None), UserToken.expires_at > (now or utcnow())
        )
    )


def _organisation_for(session, role: str, organisation_id: int | None) -> Organisation | None:
    """The organisation a user of ``role`` belongs to: required for venue approvers, none for the others."""
    if role not in ROLES:
        raise PeopleError(_("This role does not exist."))
    if role != "venue":
        return None
    organisation = session.get(Organisation, organisation_id) if organisation_id else None
    if organisation is None:
        raise PeopleError(_("A venue approver must belong to an organisation."))
    return organisation


def invite_user(
    session, email: str, role: str, organisation_id: int | None, name: str | None, *, actor: User
) -> tuple[User, str]:
    """Create an invited user (no password anyone knows) and their invitation link; returns the user
    and the link's secret. Logged as ``user.invite``. Raises :class:`PeopleError`. Flushes."""
    organisation = _organisation_for(session, role, organisation_id)
    email = email.strip().lower()
    if session.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
        raise PeopleError(_("A user with this e-mail already exists."))
    user = User(
        email=email,
        name=(name or "").strip() or None,
        role=role,
        organisation_id=organisation.id if organisation else None,
        # a password nobody knows: the invitee chooses theirs through the link
        password_hash=hash_password(secrets.token_urlsafe(32)),
    )
    session.add(user)
    session.flush()
    raw = issue_link(session, user, "invite", created_by=actor.id)
    _audit_user(
        session,
        "user.invite",
        user,
        actor,
        organisation_id=user.organisation_id,
        email=user.email,
        role=role,
        organisation=organisation.name if organisation else None,
    )
    return user, raw


def reset_link(session, user: User, *, actor: User) -> str:
    """A new one-time link for ``user``: an invitation again if they never accepted theirs, else a
    password reset. The password stays as it is until the link is used. Logged. Flushes."""
    if not user.active:
        raise PeopleError(_("Reactivate this user first."))
    purpose = "invite" if pending_invitation(session, user.id) else "reset"
    raw = issue_link(session, user, purpose, created_by=actor.id)
    _audit_user(
        session,
        "user.invite_again" if purpose == "invite" else "user.reset_link",
        user,
        actor,
        email=user.email,
    )
    return raw


def change_role(session, user: User, role: str, organisation_id: int | None, *, actor: User) -> bool:
    """Give ``user`` another role or organisation; returns whether anything changed. An administrator
    never changes their own role (so that the last one cannot lock everyone out). Logged."""
    organisation = _organisation_for(session, role, organisation_id)
    new_org = organisation.id if organisation else None
    if user.role == role and user.organisation_id == new_org:
        return False
    if user.id == actor.id:
        raise PeopleError(_("You cannot change your own role."))
    before = session.get(Organisation, user.organisation_id) if user.organisation_id else None
    _audit_user(
        session,
        "user.role_change",
        user,
        actor,
        organisation_id=new_org,
        email=user.email,
        role_before=user.role,
        role=role,
        organisation_before=before.name if before else None,
        organisation=organisation.name if organisation else None,
    )
    user.role, user.organisation_id = role, new_org
    if role != "evaluator":
        user.insights_granted = False
    session.flush()
    return True


def deactivate(session, user: User, *, actor: User) -> None:
    """Deactivate ``user``: they cannot log in, every session of theirs ends at its next request and
    their unused links stop working. Never one's own account. Logged."""
    if user.id == actor.id:
        raise PeopleError(_("You cannot deactivate your own account."))
    user.active = False
    session.execute(delete(UserToken).where(UserToken.user_id == user.id, UserToken.used_at.is_(None)))
    _audit_user(
        session,
        "user.deactivate",
        user,
        actor,
        email=user.email,
    )
    session.flush()
    end_sessions(session, user.id)


def reactivate(session, user: User, *, actor: User) -> None:
    """Let ``user`` log in again (with their password; a reset link gives them a new one). Logged."""
    user.active = True
    _audit_user(
        session,
        "user.reactivate",
        user,
        actor,
        email=user.email,
    )
    session.flush()
