"""The users' pages: invitations, roles, deactivation and one-time links (admins), and choosing one's password from a link."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional

from core import people
from core.admin_views import admin_bp
from core.auth import MIN_PASSWORD_LENGTH, PasswordError, actor_name, roles_required
from core.db import db_session
from core.models import ROLES, Organisation, User, UserToken, audit, utcnow
from core.views import ROLE_LABELS

account_bp = Blueprint("account", __name__)

# The session key of the link being used (its digest only: the secret itself is in no cookie or log),
# and of the link just made, shown once to the administrator on the next page.
LINK_SESSION_KEY = "_pilot_link"
NEW_LINK_SESSION_KEY = "_pilot_new_link"


def _organisation_choices(session_) -> list[tuple[str, str]]:
    orgs = session_.scalars(select(Organisation).order_by(Organisation.name)).all()
    return [("", "—")] + [(str(o.id), o.name) for o in orgs]


def _organisation_id(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 10 else None


class InviteForm(FlaskForm):
    """Who to invite, as what."""

    email = EmailField(_l("E-mail"), validators=[DataRequired(), Email(), Length(max=320)])
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200)])
    role = SelectField(_l("Role"), choices=[(r, ROLE_LABELS[r]) for r in ROLES])
    organisation = SelectField(_l("Organisation (venue approvers only)"), choices=[], validate_choice=False)


class RoleForm(FlaskForm):
    """A user's role and organisation."""

    role = SelectField(_l("Role"), choices=[(r, ROLE_LABELS[r]) for r in ROLES])
    organisation = SelectField(_l("Organisation (venue approvers only)"), choices=[], validate_choice=False)


class ButtonForm(FlaskForm):
    """A button that only needs its CSRF token."""


def link_url(raw: str) -> str:
    """The absolute address of a one-time link (``PUBLIC_URL`` when set, else the address the
    request came to, as the contact lists' unsubscribe links)."""
    base = (current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    path = url_for("account.open_link", token=raw)
    return base + path if base else url_for("account.open_link", token=raw, _external=True)


def _show_link_once(user: User, raw: str, purpose: str) -> None:
    """Keep the new link for the next page (the user's), which shows it once and forgets it."""
    session[NEW_LINK_SESSION_KEY] = {"user_id": user.id, "purpose": purpose, "url": link_url(raw)}


def _user_or_404(session_, user_id: int) -> User:
    user = session_.get(User, user_id)
    if user is None:
        abort(404)
    return user


@admin_bp.route("/users", methods=["GET", "POST"])
@roles_required("admin")
def users():
    """Every user, and the invitation form: the invitee gets a one-time link to choose their password."""
    session_ = db_session()
    form = InviteForm()
    form.organisation.choices = _organisation_choices(session_)
    if form.validate_on_submit():
        try:
            user, raw = people.invite_user(
                session_,
                form.email.data,
                form.role.data,
                _organisation_id(form.organisation.data),
                form.name.data,
                actor=current_user,
            )
        except people.PeopleError as exc:
            session_.rollback()
            target = form.organisation if form.role.data == "venue" and "organisation" in str(exc) else form.email
            target.errors = [str(exc)]
        else:
            session_.commit()
            _show_link_once(user, raw, "invite")
            flash(_("%(email)s is invited: pass the link below on to them.", email=user.email), "success")
            return redirect(url_for("admin.user", user_id=user.id))
    all_users = session_.scalars(select(User).order_by(User.email)).all()
    # invited, and no invitation of theirs used yet
    pending = set(
        session_.scalars(
            select(UserToken.user_id)
            .where(UserToken.purpose == "invite")
            .group_by(UserToken.user_id)
            .having(func.count(UserToken.used_at) == 0)
        )
    )
    return render_template("admin/users.html", form=form, users=all_users, pending=pending)


@admin_bp.route("/users/<int:user_id>")
@roles_required("admin")
def user(user_id: int):
    """One user: role and organisation, access, one-time link, and their history in the audit log."""
    session_ = db_session()
    person = _user_or_404(session_, user_id)
    new_link = session.get(NEW_LINK_SESSION_KEY)
    if new_link and new_link.get("user_id") == person.id:
        session.pop(NEW_LINK_SESSION_KEY)  # shown this once, never again
    else:
        new_link = None
    role_form = RoleForm(formdata=None, role=person.role, organisation=str(person.organisation_id or ""))
    role_form.organisation.choices = _organisation_choices(session_)
    return render_template(
        "admin/user.html",
        person=person,
        role_form=role_form,
        button=ButtonForm(formdata=None),
        new_link=new_link,
        open_link=people.open_link(session_, person.id),
        pending=people.pending_invitation(session_, person.id),
    )


@admin_bp.route("/users/<int:user_id>/role", methods=["POST"])
@roles_required("admin")
def user_role(user_id: int):
    """Change a user's role or organisation (the change holds from their next page on)."""
    session_ = db_session()
    person = _user_or_404(session_, user_id)
    form = RoleForm()
    form.organisation.choices = _organisation_choices(session_)
    if not form.validate_on_submit():
        flash(_("Choose one of the roles offered."), "error")
        return redirect(url_for("admin.user", user_id=person.id))
    try:
        changed = people.change_role(
            session_, person, form.role.data, _organisation_id(form.organisation.data), actor=current_user
        )
    except people.PeopleError as exc:
        session_.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.user", user_id=user_id))
    session_.commit()
    if changed:
        flash(_("%(email)s is now %(role)s.", email=person.email, role=ROLE_LABELS[person.role]), "success")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("admin.user", user_id=person.id))


@admin_bp.route("/users/<int:user_id>/link", methods=["POST"])
@roles_required("admin")
def user_link(user_id: int):
    """A new one-time link for the user (an invitation again, or a password reset); it is shown once."""
    session_ = db_session()
    person = _user_or_404(session_, user_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        pending = people.pending_invitation(session_, person.id)
        raw = people.reset_link(session_, person, actor=current_user)
    except people.PeopleError as exc:
        session_.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.user", user_id=user_id))
    session_.commit()
    _show_link_once(person, raw, "invite" if pending else "reset")
    return redirect(url_for("admin.user", user_id=person.id))


@admin_bp.route("/users/<int:user_id>/deactivate", methods=["GET", "POST"])
@roles_required("admin")
def user_deactivate(user_id: int):
    """Deactivate a user, after a confirmation: they are logged out everywhere at once."""
    session_ = db_session()
    person = _user_or_404(session_, user_id)
    if request.method == "POST":
        if not ButtonForm().validate_on_submit() or request.form.get("confirm") != "yes":
            flash(_("Tick the box to confirm the deactivation."), "error")
        elif not person.active:
            flash(_("%(email)s is deactivated already.", email=person.email), "info")
            return redirect(url_for("admin.user", user_id=person.id))
        else:
            try:
                people.deactivate(session_, person, actor=current_user)
            except people.PeopleError as exc:
                session_.rollback()
                flash(str(exc), "error")
                return redirect(url_for("admin.user", user_id=user_id))
            session_.commit()
            flash(_("%(email)s is deactivated: their sessions are closed.", email=person.email), "success")
            return redirect(url_for("admin.user", user_id=user_id))
    return render_template("admin/user_deactivate.html", person=person, button=ButtonForm(formdata=None))


class UserAccessForm(FlaskForm):
    """One of the access buttons (the CSRF token and which change it asks for)."""

    action = SelectField(choices=[(a, a) for a in ("reactivate", "grant_insights", "withdraw_insights")])


@admin_bp.route("/users/<int:user_id>/access", methods=["POST"])
@roles_required("admin")
def user_access(user_id: int):
    """Reactivate a user; grant an evaluator the raw audience insights, or withdraw them (evaluators
    see reports only by default). Deactivation asks for a confirmation first (:func:`user_deactivate`)."""
    session_ = db_session()
    person = _user_or_404(session_, user_id)
    form = UserAccessForm()
    back = request.form.get("back") == "user"
    target = url_for("admin.user", user_id=person.id) if back else url_for("admin.users")
    if not form.validate_on_submit():
        flash(_("This change is not one the page offers."), "error")
        return redirect(target)
    action = form.action.data
    if action in ("grant_insights", "withdraw_insights") and person.role != "evaluator":
        flash(
            _("Only evaluators are granted the audience insights: the other roles see them already, or never."), "error"
        )
        return redirect(target)
    if action == "reactivate":
        people.reactivate(session_, person, actor=current_user)
        message = _("%(email)s can log in again.", email=person.email)
    else:
        person.insights_granted = action == "grant_insights"
        message = (
            _("%(email)s now sees the audience insights.", email=person.email)
            if person.insights_granted
            else _("%(email)s sees the reports only.", email=person.email)
        )
        audit(
            session_,
            f"user.{action}",
            actor=actor_name(),
            user_id=current_user.id,
            object_type="user",
            object_id=person.id,
            email=person.email,
        )
    session_.commit()
    flash(message, "success")
    return redirect(target)


# --- the invitee's side ------------------------------------------------------------------------


class ChoosePasswordForm(FlaskForm):
    """The password chosen through a one-time link, twice."""

    new = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField(_l("New password, again"), validators=[DataRequired(), Length(max=200)])


def _link_invalid():
    return render_template("auth/link_invalid.html"), 410


@account_bp.route("/welcome/<token>")
def open_link(token: str):
    """Open a one-time link: its digest is kept in the session and the browser goes on to a page
    without the secret in its address (nothing of it in the history, a referrer or a log after this)."""
    found = people.find_link(db_session(), token)
    if found is None:
        return _link_invalid()
    if current_user.is_authenticated:  # somebody else's session in this browser ends here
        logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    session[LINK_SESSION_KEY] = found.token_hash
    return redirect(url_for("account.choose_password"))


@account_bp.route("/account/new-password", methods=["GET", "POST"])
def choose_password():
    """Choose one's password with the link just opened (an invitation or a reset); then log in."""
    session_ = db_session()
    token = people.find_link(session_, digest=session.get(LINK_SESSION_KEY))
    if token is None:
        session.pop(LINK_SESSION_KEY, None)
        return _link_invalid()
    person = session_.get(User, token.user_id)
    form = ChoosePasswordForm()
    if form.validate_on_submit():
        if form.new.data != form.confirm.data:
            form.confirm.errors = [_("The two new passwords differ.")]
        else:
            try:
                people.use_link(session_, digest=token.token_hash, password=form.new.data, now=utcnow())
            except PasswordError as exc:
                session_.rollback()
                form.new.errors = [str(exc)]
            except people.LinkError:
                session_.rollback()
                session.pop(LINK_SESSION_KEY, None)
                return _link_invalid()
            else:
                session_.commit()
                session.pop(LINK_SESSION_KEY, None)
                flash(_("Your password is set: log in with your e-mail and this password."), "success")
                return redirect(url_for("auth.login"))
    return render_template(
        "auth/choose_password.html", form=form, person=person, purpose=token.purpose, min_length=MIN_PASSWORD_LENGTH
    )


def init_app(app) -> None:
    """Register the invitee's pages (the admin pages are on core.admin_views' blueprint)."""
    app.register_blueprint(account_bp)
