"""Logins, roles and the guards every view uses."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import string
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, Length

from core.db import db_session
from core.models import ROLES, LoginThrottle, User, audit, utcnow

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please log in to see this page.")
login_manager.login_message_category = "info"

# Failed logins: an (account, address) pair is locked after MAX_FAILED_LOGINS failures within
# LOCK_MINUTES, an address after MAX_FAILED_PER_ADDRESS failures whatever the accounts it tried.
# An account is never locked for an address that has not failed (no denial of service by a stranger).
MAX_FAILED_LOGINS = 5
MAX_FAILED_PER_ADDRESS = 50
LOCK_MINUTES = 15
MIN_PASSWORD_LENGTH = 12
# The session cookie's copy of the user's session version (see User.session_version).
SESSION_VERSION_KEY = "_pilot_sv"

COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")
_common_passwords: frozenset[str] | None = None
# A hash of a random password made like every stored one (same method, same cost): an unknown
# e-mail is checked against it, so a login takes the same time whether the e-mail is known or not.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(24))


class PasswordError(ValueError):
    """A password that does not meet the rules."""


def common_passwords() -> frozenset[str]:
    """The lower-cased common passwords of ``core/common_passwords.txt`` (read once)."""
    global _common_passwords
    if _common_passwords is None:
        lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
        _common_passwords = frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return _common_passwords


def is_common_password(password: str) -> bool:
    """The password, lower-cased, is a common one, or a common one with digits, symbols or spaces
    around it ("Password2024!", "123qwertyuiop")."""
    lowered = password.lower()
    core = lowered.strip(string.digits + string.punctuation + string.whitespace)
    common = common_passwords()
    return lowered in common or core in common


def check_password_rules(password: str) -> None:
    """At least 12 characters with a letter and a digit, and not a common password (see
    :func:`is_common_password`); raises :class:`PasswordError`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(_("The password must have at least %(n)d characters.", n=MIN_PASSWORD_LENGTH))
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        raise PasswordError(_("The password must contain at least one letter and one digit."))
    if is_common_password(password):
        raise PasswordError(_("This password is among the most common ones: choose another."))


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def create_user(
    session_,
    email: str,
    password: str,
    role: str,
    organisation_id: int | None = None,
    name: str | None = None,
    *,
    check_rules: bool = True,
) -> User:
    """Create a user (flushes); a venue user must be bound to an organisation."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if role == "venue" and organisation_id is None:
        raise ValueError("a venue user needs an organisation (--org)")
    if check_rules:
        check_password_rules(password)
    email = email.strip().lower()
    if session_.scalar(select(User).where(func.lower(User.email) == email)):
        raise ValueError(f"a user with e-mail {email} already exists")
    user = User(
        email=email,
        password_hash=hash_password(password),
        role=role,
        organisation_id=organisation_id if role == "venue" else None,
        name=name,
    )
    session_.add(user)
    session_.flush()
    return user


def end_sessions(session_, user_id: int) -> None:
    """End every session of a user (their cookies stop being accepted at the next request): the
    server-side session version moves on."""
    session_.execute(
        update(User).where(User.id == user_id).values(session_version=func.coalesce(User.session_version, 0) + 1),
        execution_options={"synchronize_session": False},
    )
    session_.expire_all()


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    try:
        user = db_session().get(User, int(user_id))
    except ValueError:
        return None
    # A session is over once its version is no longer the user's (logout, password change, deactivation).
    if user is None or session.get(SESSION_VERSION_KEY) != user.session_version:
        return None
    return user


def roles_required(*roles: str):
    """Guard a view: anonymous users go to the login page, other roles get 403."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        wrapped.allowed_roles = roles  # read by the authorisation-matrix test
        return wrapped

    return decorator


def login_required(view):
    """Any logged-in role."""
    return roles_required(*ROLES)(view)


def actor_name() -> str:
    """How the audit log names whoever acts in this request."""
    return current_user.email if current_user.is_authenticated else "anonymous"


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    # Only same-site paths: an open redirect after login is a phishing tool.
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


# --- failed logins ----------------------------------------------------------------------------------


def client_address() -> str:
    """The address a request comes from (behind a proxy, the WSGI server must set it right)."""
    return (request.remote_addr or "unknown")[:64]


def _throttle_row(session_, address: str, account: str) -> LoginThrottle | None:
    return session_.scalar(
        select(LoginThrottle).where(LoginThrottle.address == address, LoginThrottle.account == account)
    )


def login_blocked(session_, address: str, account: str, now: dt.datetime) -> bool:
    """This address is locked, or this (account, address) pair is."""
    rows = session_.scalars(
        select(LoginThrottle).where(LoginThrottle.address == address, LoginThrottle.account.in_((account, "")))
    ).all()
    return any(row.locked_until is not None and row.locked_until > now for row in rows)


def record_failure(session_, address: str, account: str, now: dt.datetime) -> bool:
    """Count a failed login for (account, address) and for the address; lock either at its limit
    (failures within LOCK_MINUTES). Returns whether a lock was set. Flushes."""
    locked = False
    window = dt.timedelta(minutes=LOCK_MINUTES)
    for key, limit in ((account, MAX_FAILED_LOGINS), ("", MAX_FAILED_PER_ADDRESS)):
        row = _throttle_row(session_, address, key)
        if row is None:
            try:
                with session_.begin_nested():
                    row = LoginThrottle(address=address, account=key, failures=0, first_failure_at=now)
                    session_.add(row)
            except IntegrityError:  # a concurrent first failure made it
                row = _throttle_row(session_, address, key)
        if row.first_failure_at < now - window:
            row.failures, row.first_failure_at = 0, now
        row.failures += 1
        if row.failures >= limit:
            row.locked_until, row.failures, row.first_failure_at = now + window, 0, now
            locked = True
    session_.flush()
    return locked


def verify_password(user: User | None, password: str) -> bool:
    """The password is the user's; an unknown user (None) is checked against a dummy hash of the same
    cost, so that the answer takes the same time and says nothing of whether the e-mail exists."""
    ok = check_password_hash(user.password_hash if user is not None else _DUMMY_HASH, password)
    return ok and user is not None


class LoginForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Email(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        sess = db_session()
        email = form.email.data.strip().lower()
        user = sess.scalar(select(User).where(func.lower(User.email) == email))
        now, address = utcnow(), client_address()
        password_ok = verify_password(user, form.password.data)  # always, even when locked: same time
        if login_blocked(sess, address, email, now):
            flash(_("Too many failed attempts: try again in a few minutes."), "error")
        elif not password_ok or not user.active:
            if record_failure(sess, address, email, now):
                audit(
                    sess,
                    "login.locked",
                    actor=email,
                    user_id=user.id if user else None,
                    object_type="user",
                    object_id=user.id if user else None,
                    address=address,
                )
            sess.commit()
            flash(_("Unknown e-mail or wrong password."), "error")
        else:
            sess.execute(delete(LoginThrottle).where(LoginThrottle.address == address, LoginThrottle.account == email))
            user.last_login_at = now
            audit(
                sess,
                "login",
                actor=user.email,
                user_id=user.id,
                object_type="user",
                object_id=user.id,
                actor_role=user.role,
            )
            sess.commit()
            lang = session.get("lang")
            session.clear()  # no session fixation
            if lang:
                session["lang"] = lang
            login_user(user)
            session[SESSION_VERSION_KEY] = user.session_version
            return redirect(_safe_next(request.args.get("next")) or url_for("main.dashboard"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    lang = session.get("lang")
    if current_user.is_authenticated:
        sess = db_session()
        end_sessions(sess, current_user.id)  # a copy of the cookie is worth nothing after logout
        sess.commit()
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


# --- one's own password -------------------------------------------------------------------------------


class PasswordChangeForm(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=200)])
    new = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField(_l("New password, again"), validators=[DataRequired(), Length(max=200)])


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Every user changes their own password: the current one first; every other session ends."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        sess = db_session()
        user = sess.get(User, current_user.id)
        now, address = utcnow(), client_address()
        current_ok = verify_password(user, form.current.data)
        if login_blocked(sess, address, user.email, now):
            form.current.errors = [_("Too many failed attempts: try again in a few minutes.")]
        elif not current_ok:
            record_failure(sess, address, user.email, now)
            sess.commit()
            form.current.errors = [_("This is not your current password.")]
        elif form.new.data != form.confirm.data:
            form.confirm.errors = [_("The two new passwords differ.")]
        else:
            try:
                check_password_rules(form.new.data)
            except PasswordError as exc:
                form.new.errors = [str(exc)]
            else:
                user.password_hash = hash_password(form.new.data)
                audit(
                    sess,
                    "user.password_change",
                    actor=user.email,
                    user_id=user.id,
                    object_type="user",
                    object_id=user.id,
                )
                sess.flush()
                end_sessions(sess, user.id)  # every other session of this user ends here
                sess.commit()
                session[SESSION_VERSION_KEY] = sess.get(User, user.id).session_version  # this one goes on
                flash(_("Your password is changed; your other sessions are closed."), "success")
                return redirect(url_for("main.dashboard"))
    return render_template("auth/password.html", form=form, min_length=MIN_PASSWORD_LENGTH)


def init_app(app) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
