"""Logins, roles and the guards every view uses."""

from __future__ import annotations

import datetime as dt
import functools
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, Length

from core.db import db_session
from core.models import ROLES, User, audit, utcnow

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please log in to see this page.")
login_manager.login_message_category = "info"

MAX_FAILED_LOGINS = 5
LOCK_MINUTES = 15
MIN_PASSWORD_LENGTH = 10


class PasswordError(ValueError):
    """A password that does not meet the rules."""


def check_password_rules(password: str) -> None:
    """At least 10 characters with a letter and a digit; raises :class:`PasswordError`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(_("The password must have at least %(n)d characters.", n=MIN_PASSWORD_LENGTH))
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        raise PasswordError(_("The password must contain at least one letter and one digit."))


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def create_user(session_, email: str, password: str, role: str, organisation_id: int | None = None,
                name: str | None = None, *, check_rules: bool = True) -> User:
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
    user = User(email=email, password_hash=hash_password(password), role=role,
                organisation_id=organisation_id if role == "venue" else None, name=name)
    session_.add(user)
    session_.flush()
    return user


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    try:
        return db_session().get(User, int(user_id))
    except ValueError:
        return None


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
        now = utcnow()
        if user is not None and user.locked_until and user.locked_until > now:
            flash(_("Too many failed attempts: try again in a few minutes."), "error")
        elif user is None or not user.active or not check_password_hash(user.password_hash, form.password.data):
            if user is not None:
                user.failed_logins += 1
                if user.failed_logins >= MAX_FAILED_LOGINS:
                    user.locked_until = now + dt.timedelta(minutes=LOCK_MINUTES)
                    user.failed_logins = 0
                    audit(sess, "login.locked", actor=email, user_id=user.id, object_type="user", object_id=user.id)
                sess.commit()
            flash(_("Unknown e-mail or wrong password."), "error")
        else:
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now
            audit(sess, "login", actor=user.email, user_id=user.id, object_type="user", object_id=user.id)
            sess.commit()
            lang = session.get("lang")
            session.clear()  # no session fixation
            if lang:
                session["lang"] = lang
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("main.dashboard"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    lang = session.get("lang")
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


def init_app(app) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
