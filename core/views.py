"""Core pages: the dashboard, organisations, users, imports and the audit log."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from sqlalchemy import distinct, func, select
from wtforms import EmailField, IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional, Regexp

from core import page_arg
from core import rejects as rejects_files
from core.auth import PasswordError, actor_name, create_user, end_sessions, login_required, roles_required
from core.cache import cache_seconds, max_id, remember
from core.csvexport import csv_stream_response
from core.db import db_session, get_db
from core.models import (
    ORGANISATION_KINDS,
    ROLES,
    AuditEvent,
    ImportBatch,
    Notification,
    Organisation,
    Setting,
    Show,
    Spectator,
    Transaction,
    User,
    audit,
)
from core.privacy import Cell, Figure, Release, figure_label, strictest_k, suppress, suppress_total
from core.registry import NavEntry, registry
from core.vocabulary import DISCIPLINE_LABELS

bp = Blueprint("main", __name__)
admin_bp = Blueprint("admin", __name__, url_prefix="/admin")

# Extension points filled by feature packages at start-up: callables returning
# (title, body_html_or_template_context) panels for the dashboard of the current user.

ROLE_LABELS = {"staff": _l("Partnership staff"), "venue": _l("Venue approver"),
               "evaluator": _l("Evaluator"), "admin": _l("Administrator")}
ORGANISATION_KIND_LABELS = {"venue": _l("Venue"), "company": _l("Company"), "festival": _l("Festival")}
IMPORT_STATUS_LABELS = {"running": _l("Running"), "done": _l("Done"), "refused": _l("Refused")}
IMPORT_KIND_LABELS = {"sales": _l("Ticket sales"), "unsubscribes": _l("Unsubscribes")}
# What the audit log shows for each action key; a key without a label is shown as it is. A feature
# package may add its own at start-up (``core.views.AUDIT_ACTION_LABELS.update(...)``).
AUDIT_ACTION_LABELS = {
    "login": _l("Logged in"),
    "login.locked": _l("Login locked after repeated failures"),
    "organisation.create": _l("Organisation created"),
    "user.create": _l("User created"),
    "user.deactivate": _l("User deactivated"),
    "user.reactivate": _l("User reactivated"),
    "user.grant_insights": _l("Evaluator granted the audience insights"),
    "user.withdraw_insights": _l("Evaluator's audience insights withdrawn"),
    "user.password_change": _l("Own password changed"),
    "job.run_now": _l("Scheduled job run by hand"),
    "demo.build": _l("Demo district built"),
    "import.sales": _l("Sales imported"),
    "import.unsubscribes": _l("Unsubscribes imported"),
    "import.refused": _l("Import refused"),
    "import.rejects_download": _l("Rejected rows downloaded"),
    "audit.export": _l("Audit log downloaded"),
    "import.rejects_purge": _l("Rejected rows deleted (retention period over)"),
    "segment.create": _l("Segment created"),
    "segment.version": _l("Segment rule changed"),
    "promotion.create": _l("Promotion created"),
    "promotion.update": _l("Promotion changed"),
    "campaign.create": _l("Campaign created"),
    "campaign.update": _l("Campaign changed"),
    "campaign.submit": _l("Campaign submitted for approval"),
    "campaign.ready": _l("Campaign ready to launch"),
    "campaign.cancel": _l("Campaign cancelled"),
    "campaign.launch": _l("Campaign launched"),
    "campaign.measure": _l("Campaign window ended: measuring"),
    "campaign.close": _l("Campaign closed"),
    "approval.approve": _l("Contacting approved"),
    "provider.approve": _l("Data provider approved"),
    "provider.decline": _l("Data provider declined"),
    "approval.decline": _l("Contacting declined"),
    "approval.expire": _l("Approval request expired"),
    "approval.exclusion_list": _l("Exclusion list uploaded"),
    "experiment.launch": _l("Experiment launched"),
    "contact_list.download": _l("Contact list downloaded"),
    "contact_list.refused": _l("Expired contact list refused"),
    "contact_list.purge": _l("Contact list purged"),
    "person.erase": _l("Person erased on request"),
    "person.search": _l("Erasure search (the address is never kept)"),
    "download": _l("File downloaded"),
}


def _raw_headline(session, organisation_id: int | None) -> tuple[int, int, int, int, dict[str, int]]:
    """Unsuppressed (spectators, order lines, tickets, revenue in cents, spectators by discipline)."""
    tx = select(
        func.count(distinct(Transaction.spectator_id)),
        func.count(Transaction.id),
        func.coalesce(func.sum(Transaction.tickets), 0),
        func.coalesce(func.sum(Transaction.amount_cents), 0),
    )
    # distinct (discipline, spectator) pairs first, then a plain count: PostgreSQL hashes the pairs
    # where COUNT(DISTINCT) per group sorts them, about twice as fast on the pooled data
    pairs = select(Show.discipline, Transaction.spectator_id).join(Show, Show.id == Transaction.show_id).distinct()
    if organisation_id is not None:
        tx = tx.where(Transaction.organisation_id == organisation_id)
        pairs = pairs.where(Transaction.organisation_id == organisation_id)
    pairs = pairs.subquery("pairs")
    spectators, transactions, tickets, revenue_cents = session.execute(tx).one()
    disciplines = dict(session.execute(select(pairs.c.discipline, func.count()).group_by(pairs.c.discipline)).all())
    return int(spectators), int(transactions), int(tickets), int(revenue_cents), disciplines


def headline_figures(session, organisation_id: int | None = None) -> dict:
    """The district's (or one organisation's) headline figures, small counts suppressed.

    The raw counts read the whole pooled transaction table, so they are kept in memory
    (``DASHBOARD_CACHE_SECONDS``, five minutes by default) under the table's highest id, which
    every import moves; suppression is applied on every call, so a change of k shows at once.
    """
    raw = remember("headline", (organisation_id, max_id(session, Transaction)),
                   lambda: _raw_headline(session, organisation_id), cache_seconds("DASHBOARD_CACHE_SECONDS", 300))
    spectators, transactions, tickets, revenue_cents, disciplines = raw
    k = strictest_k(session, [organisation_id]) if organisation_id is not None else strictest_k(session)
    shown = suppress(disciplines, k, total_shown=True)
    small = 0 < spectators < k
    return {
        "k": k,
        "organisations": session.scalar(select(func.count(Organisation.id))),
        "spectators": None if small else spectators,
        "transactions": None if small else transactions,
        "tickets": None if small else tickets,
        "revenue": None if small else revenue_cents / 100,
        "by_discipline": sorted(((d, n) for d, n in shown.items()), key=lambda t: -(t[1] or 0)),
        "by_discipline_total": suppress_total(sum(disciplines.values()), shown, k),
    }


# What one spectator is taken to add at most to the district's sums (order lines, tickets, revenue in
# dollars): their noise is σ times this bound, so that one person's purchases hide in it.
DISTRICT_SUM_BOUNDS = {"transactions": 10, "tickets": 20, "revenue": 1000.0}
PUBLISHED_SETTING = "published_district_figures"


def _district_cells(session) -> tuple[Cell, dict[str, Cell]]:
    """The exact fingerprints of the district: every spectator with a purchase, and those of each
    discipline (count and sum of cell keys, core.privacy)."""
    buyers = select(Transaction.spectator_id).distinct().subquery("buyers")
    count, keys = session.execute(
        select(func.count(), func.sum(Spectator.cell_key)).select_from(buyers)
        .join(Spectator, Spectator.id == buyers.c.spectator_id)).one()
    pairs = (select(Show.discipline, Transaction.spectator_id).join(Show, Show.id == Transaction.show_id)
             .distinct().subquery("pairs"))
    by_discipline = {d: Cell.of(n, k) for d, n, k in session.execute(
        select(pairs.c.discipline, func.count(), func.sum(Spectator.cell_key)).select_from(pairs)
        .join(Spectator, Spectator.id == pairs.c.spectator_id).group_by(pairs.c.discipline)).all()}
    return Cell.of(count, keys), by_discipline


def publish_district_figures(session, release: Release) -> dict:
    """The district's headline figures of ``release``'s epoch: every figure noisy (core.privacy),
    the spectators' counts thresholded on their noisy value, the sums (order lines, tickets,
    revenue) with noise of σ times :data:`DISTRICT_SUM_BOUNDS` and hidden with the spectators."""
    _spectators, transactions, tickets, revenue_cents, _disciplines = _raw_headline(session, None)
    everyone, by_discipline = _district_cells(session)
    size = release.figure("district.spectators", everyone)
    shown = size.status == "shown"
    disciplines = {d: release.figure(f"district.discipline.{d}", cell, whole=size.value if shown else None)
                   for d, cell in by_discipline.items()}
    return {
        "epoch": release.epoch, "k": release.k, "noisy": True,
        "spectators": size.value, "spectators_status": size.status,
        "transactions": _rounded(release.sum_figure("district.transactions", everyone, transactions,
                                                    DISTRICT_SUM_BOUNDS["transactions"], shown)),
        "tickets": _rounded(release.sum_figure("district.tickets", everyone, tickets, DISTRICT_SUM_BOUNDS["tickets"],
                                               shown)),
        "revenue": release.sum_figure("district.revenue", everyone, revenue_cents / 100, DISTRICT_SUM_BOUNDS["revenue"],
                                      shown),
        "by_discipline": sorted(([d, f.value, f.status] for d, f in disciplines.items()), key=lambda t: -(t[1] or 0)),
    }


def _rounded(value: float | None) -> int | None:
    return None if value is None else int(round(value))


def district_figures(session) -> dict:
    """The district's figures as published for the current data epoch and k: read from the
    ``published_district_figures`` setting, computed and stored by the first request of a new
    epoch (every import and profile refresh starts one). Within an epoch every reader sees the
    same figures; after a one-row import all of them are redrawn."""
    release = Release.current(session)
    setting = session.get(Setting, PUBLISHED_SETTING)
    published = None
    if setting is not None:
        try:
            published = json.loads(setting.value)
        except ValueError:
            published = None
    if not published or published.get("epoch") != release.epoch or published.get("k") != release.k:
        published = publish_district_figures(session, release)
        if setting is None:
            session.add(Setting(name=PUBLISHED_SETTING, value=json.dumps(published)))
        else:
            setting.value = json.dumps(published)
        session.commit()
    figures = dict(published)
    figures["texts"] = {"spectators": figure_label(Figure(figures["spectators"], figures["spectators_status"],
                                                          figures["k"]))}
    figures["by_discipline"] = [(d, n, figure_label(Figure(n, status, figures["k"])))
                                for d, n, status in published["by_discipline"]]
    return figures


@bp.route("/")
@login_required
def dashboard():
    session = db_session()
    own = None
    if current_user.role == "venue":
        own = headline_figures(session, current_user.organisation_id)
    district = district_figures(session)
    notifications = session.scalars(
        select(Notification)
        .where(Notification.read_at.is_(None))
        .where((Notification.organisation_id == current_user.organisation_id) | (Notification.role == current_user.role))
        .order_by(Notification.created_at.desc())
        .limit(10)
    ).all()
    panels = [panel for make in registry().dashboard_panels if (panel := make(session, current_user))]
    return render_template("dashboard.html", district=district, own=own, panels=panels,
                           notifications=notifications, labels=DISCIPLINE_LABELS)


@bp.route("/healthz")
def healthz():
    db_session().execute(select(1))
    return {"status": "ok"}


# --- organisations -----------------------------------------------------------------------------

class OrganisationForm(FlaskForm):
    slug = StringField(_l("Short name (slug)"), validators=[
        DataRequired(), Length(max=40),
        Regexp(r"^[a-z0-9][a-z0-9-]*$", message=_l("Lower-case letters, digits and dashes only."))])
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    kind = SelectField(_l("Kind"), choices=[(k, ORGANISATION_KIND_LABELS[k]) for k in ORGANISATION_KINDS])
    k_threshold = IntegerField(_l("Small-cell threshold k (optional, at least the district's)"),
                               validators=[Optional(), NumberRange(min=2, max=1000)])


@admin_bp.route("/organisations", methods=["GET", "POST"])
@roles_required("admin")
def organisations():
    session = db_session()
    form = OrganisationForm()
    if form.validate_on_submit():
        if session.scalar(select(Organisation).where(Organisation.slug == form.slug.data)):
            form.slug.errors.append(_("This short name is already taken."))
        else:
            org = Organisation(slug=form.slug.data, name=form.name.data, kind=form.kind.data,
                               k_threshold=form.k_threshold.data)
            session.add(org)
            session.flush()
            audit(session, "organisation.create", actor=actor_name(), user_id=current_user.id,
                  object_type="organisation", object_id=org.id, slug=org.slug)
            session.commit()
            flash(_("Organisation %(name)s created.", name=org.name), "success")
            return redirect(url_for("admin.organisations"))
    orgs = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    return render_template("admin/organisations.html", form=form, organisations=orgs)


# --- users -------------------------------------------------------------------------------------

class UserForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Email(), Length(max=320)])
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200)])
    role = SelectField(_l("Role"), choices=[(r, ROLE_LABELS[r]) for r in ROLES])
    organisation = SelectField(_l("Organisation (venue approvers only)"), choices=[], validate_choice=False)
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


@admin_bp.route("/users", methods=["GET", "POST"])
@roles_required("admin")
def users():
    session = db_session()
    orgs = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    form = UserForm()
    form.organisation.choices = [("", "—")] + [(str(o.id), o.name) for o in orgs]
    if form.validate_on_submit():
        org_id = int(form.organisation.data) if form.organisation.data else None
        if form.role.data == "venue" and org_id is None:
            form.organisation.errors = [_("A venue approver must belong to an organisation.")]
        else:
            try:
                user = create_user(session, form.email.data, form.password.data, form.role.data, org_id, form.name.data)
            except PasswordError as exc:
                form.password.errors = [str(exc)]
            except ValueError:
                form.email.errors = [_("A user with this e-mail already exists.")]
            else:
                audit(session, "user.create", actor=actor_name(), user_id=current_user.id,
                      object_type="user", object_id=user.id, role=user.role)
                session.commit()
                flash(_("User %(email)s created.", email=user.email), "success")
                return redirect(url_for("admin.users"))
    all_users = session.scalars(select(User).order_by(User.email)).all()
    return render_template("admin/users.html", form=form, users=all_users, role_labels=ROLE_LABELS,
                           access_form=UserAccessForm(formdata=None))


class UserAccessForm(FlaskForm):
    """One of the buttons of the users' table (the CSRF token and which change it asks for)."""

    action = SelectField(choices=[(a, a) for a in ("deactivate", "reactivate", "grant_insights", "withdraw_insights")])


@admin_bp.route("/users/<int:user_id>/access", methods=["POST"])
@roles_required("admin")
def user_access(user_id: int):
    """Deactivate a user (every session of theirs ends at once) or reactivate them; grant an
    evaluator the raw audience insights, or withdraw it (evaluators see reports only by default)."""
    session = db_session()
    user = session.get(User, user_id)
    if user is None:
        abort(404)
    form = UserAccessForm()
    if not form.validate_on_submit():
        flash(_("This change is not one the page offers."), "error")
        return redirect(url_for("admin.users"))
    action = form.action.data
    if action == "deactivate" and user.id == current_user.id:
        flash(_("You cannot deactivate your own account."), "error")
        return redirect(url_for("admin.users"))
    if action in ("grant_insights", "withdraw_insights") and user.role != "evaluator":
        flash(_("Only evaluators are granted the audience insights: the other roles see them already, or never."),
              "error")
        return redirect(url_for("admin.users"))
    if action == "deactivate":
        user.active = False
        end_sessions(session, user.id)  # the user's open sessions end at their next request
        message = _("%(email)s is deactivated: their sessions are closed.", email=user.email)
    elif action == "reactivate":
        user.active = True
        message = _("%(email)s can log in again.", email=user.email)
    else:
        user.insights_granted = action == "grant_insights"
        message = (_("%(email)s now sees the audience insights.", email=user.email) if user.insights_granted
                   else _("%(email)s sees the reports only.", email=user.email))
    audit(session, f"user.{action}", actor=actor_name(), user_id=current_user.id, object_type="user", object_id=user.id)
    session.commit()
    flash(message, "success")
    return redirect(url_for("admin.users"))


AUDIT_PAGE_SIZE = 100


def _audit_filters(args) -> dict:
    """The audit log's filters from the query string: action, actor (part of it), object type and
    id, and a period of days (UTC, both ends included); malformed dates are ignored, not an error."""
    def day(name):
        try:
            return dt.date.fromisoformat(args.get(name, ""))
        except ValueError:
            return None

    return {"action": args.get("action", "").strip(), "actor": args.get("actor", "").strip(),
            "object_type": args.get("object_type", "").strip(), "object_id": args.get("object_id", "").strip(),
            "since": day("since"), "until": day("until")}


def _audit_query(filters: dict):
    """The audit events that ``filters`` select, newest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if filters["action"]:
        query = query.where(AuditEvent.action == filters["action"])
    if filters["actor"]:
        query = query.where(func.lower(AuditEvent.actor).contains(filters["actor"].lower(), autoescape=True))
    if filters["object_type"]:
        query = query.where(AuditEvent.object_type == filters["object_type"])
    if filters["object_id"]:
        query = query.where(AuditEvent.object_id == filters["object_id"])
    if filters["since"]:
        query = query.where(AuditEvent.at >= dt.datetime.combine(filters["since"], dt.time()))
    if filters["until"]:
        query = query.where(AuditEvent.at < dt.datetime.combine(filters["until"] + dt.timedelta(days=1), dt.time()))
    return query


def audit_value(value) -> str:
    """One value of an audit event's details in words: yes/no, "—" for nothing, lists and
    mappings as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def audit_details_text(details) -> str:
    """An audit event's details as one readable line (``key: value; …``), for the CSV export."""
    if not details:
        return ""
    if not isinstance(details, dict):
        return json.dumps(details, ensure_ascii=False)
    return "; ".join(f"{key}: {audit_value(value)}" for key, value in details.items())


@admin_bp.route("/audit")
@roles_required("admin")
def audit_log():
    """The audit log, newest first, filtered by action, actor, object and period; 100 per page."""
    session = db_session()
    page = page_arg()
    filters = _audit_filters(request.args)
    events = session.scalars(_audit_query(filters).limit(AUDIT_PAGE_SIZE + 1)
                             .offset((page - 1) * AUDIT_PAGE_SIZE)).all()
    more = len(events) > AUDIT_PAGE_SIZE
    actions = sorted(set(session.scalars(select(AuditEvent.action).distinct()))
                     | ({filters["action"]} if filters["action"] else set()))
    object_types = sorted(t for t in session.scalars(select(AuditEvent.object_type).distinct()) if t)
    return render_template("admin/audit.html", events=events[:AUDIT_PAGE_SIZE], page=page, more=more,
                           filters=filters, actions=actions, object_types=object_types,
                           filtered=any(filters.values()), action_labels=AUDIT_ACTION_LABELS, audit_value=audit_value,
                           query_args={k: v for k, v in request.args.items() if k not in ("page", "lang")})


@admin_bp.route("/audit.csv")
@roles_required("admin")
def audit_log_csv():
    """The filtered audit log as CSV (every matching event, streamed); the download is itself logged."""
    session = db_session()
    filters = _audit_filters(request.args)
    chosen = {key: (value.isoformat() if isinstance(value, dt.date) else value)
              for key, value in filters.items() if value}
    audit(session, "audit.export", actor=actor_name(), user_id=current_user.id,
          **({"filters": chosen} if chosen else {}))
    session.commit()
    database = get_db()

    def rows():
        # Read while the response is sent, after the request's own session is closed: a session of
        # its own, and the request context kept for the action labels' language.
        with database.Session() as reading:
            for e in reading.scalars(_audit_query(filters).execution_options(yield_per=1000)):
                yield (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action,
                       str(AUDIT_ACTION_LABELS.get(e.action, "")), e.object_type, e.object_id,
                       audit_details_text(e.details))

    return csv_stream_response(stream_with_context(rows()), "audit-log.csv", header=(
        _("When (UTC)"), _("Who"), _("Action"), _("Action (in words)"), _("Object type"), _("Object id"),
        _("Details")))


# --- imports -----------------------------------------------------------------------------------

class ImportForm(FlaskForm):
    # Staff and administrators import for any organisation: no organisation is chosen for them, so
    # that a file never lands in the first one of the list by mistake.
    organisation = SelectField(_l("Organisation"), choices=[], validate_choice=False,
                               validators=[DataRequired(message=_l("Choose the organisation whose export this is."))])
    kind = SelectField(_l("Kind of file"), choices=list(IMPORT_KIND_LABELS.items()))
    file = FileField(_l("CSV export"), validators=[
        FileRequired(), FileAllowed(["csv", "txt"], _l("A CSV file (.csv or .txt) is expected."))])
    skip_invalid = SelectField(_l("Rows with errors"), choices=[
        ("0", _l("Refuse the whole file")),
        ("1", _l("Import the valid lines only, set the others aside (skip invalid)"))])


def _import_organisations(session):
    """The organisations the current user may import for: its own, or all for staff and admins."""
    query = select(Organisation).order_by(Organisation.name)
    if current_user.role == "venue":
        query = query.where(Organisation.id == current_user.organisation_id)
    return session.scalars(query).all()


def _visible_batches(session):
    query = select(ImportBatch).order_by(ImportBatch.id.desc())
    if current_user.role == "venue":
        query = query.where(ImportBatch.organisation_id == current_user.organisation_id)
    return query


@bp.route("/imports", methods=["GET", "POST"])
@roles_required("staff", "venue", "admin")
def imports():
    from core.importing import ImportRefused, import_file, record_refused_import

    session = db_session()
    orgs = _import_organisations(session)
    form = ImportForm()
    form.organisation.choices = [(str(o.id), o.name) for o in orgs]
    if current_user.role != "venue":
        form.organisation.choices.insert(0, ("", _("Choose an organisation…")))
    result = None
    if form.validate_on_submit():
        org = next((o for o in orgs if str(o.id) == form.organisation.data), None)
        if org is None:
            abort(404)
        upload = form.file.data
        filename = os.path.basename(upload.filename or "upload.csv")
        skip_invalid = form.skip_invalid.data == "1"
        # Refused rows hold personal data: kept in the instance folder, offered to the organisation
        # only (core.rejects), purged after the retention period.
        rejects_path = rejects_files.new_rejects_path(current_app, org.slug) if skip_invalid else None
        fd, path = tempfile.mkstemp(suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as out:
                upload.save(out)
            try:
                result = import_file(session, path, org, kind=form.kind.data, skip_invalid=skip_invalid,
                                     user=current_user, filename=filename, rejects_path=rejects_path)
            except ImportRefused as exc:
                session.rollback()
                result = exc.result
                record_refused_import(session, org, result, user=current_user, filename=filename)
                session.commit()
            else:
                session.commit()
                flash(_("Import finished: %(n)d rows imported.", n=result.imported), "success")
        finally:
            os.unlink(path)
    batches = session.scalars(_visible_batches(session).limit(50)).all()
    return render_template("imports.html", form=form, result=result, batches=batches,
                           organisations={o.id: o for o in session.scalars(select(Organisation))})


@bp.route("/imports/<int:batch_id>")
@roles_required("staff", "venue", "admin")
def import_batch(batch_id: int):
    session = db_session()
    batch = session.scalar(_visible_batches(session).where(ImportBatch.id == batch_id))
    if batch is None:
        abort(404)
    app = current_app._get_current_object()
    rejects = None
    if batch.status == "done" and batch.rejected:
        rejects = {
            "available": rejects_files.rejects_file(app, batch) is not None,
            "allowed": rejects_files.may_download(current_user, batch),
            "expires_at": rejects_files.expires_at(app, batch),
            "purged_at": rejects_files.purged_at(batch),
            "days": rejects_files.retention_days(app),
        }
    return render_template("import_batch.html", batch=batch, rejects=rejects,
                           organisation=session.get(Organisation, batch.organisation_id))


@bp.route("/imports/<int:batch_id>/rejects.csv")
@roles_required("staff", "venue", "admin")
def import_rejects(batch_id: int):
    """The rows an import set aside, with their reasons: for the organisation's own users (and
    whoever made the import), while the retention period lasts; every download is logged."""
    session = db_session()
    batch = session.scalar(_visible_batches(session).where(ImportBatch.id == batch_id))
    if batch is None or not rejects_files.may_download(current_user, batch):
        abort(404)
    path = rejects_files.rejects_file(current_app, batch)
    if path is None:
        abort(404)
    rejects_files.record_download(session, batch, current_user, actor_name())
    session.commit()
    delimiter = (batch.summary or {}).get("delimiter") or ","
    return csv_stream_response(rejects_files.read_rows(path, batch), f"{Path(batch.filename).stem}-rejects.csv",
                               delimiter=delimiter if delimiter in (",", ";") else ",")


def init_app(app) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    pilot = registry(app)
    pilot.add_navigation(NavEntry("main.dashboard", _l("Dashboard"), order=0))
    pilot.add_navigation(NavEntry("main.imports", _l("Imports"), order=80, roles=("staff", "admin", "venue"),
                                  current=("main.import",)))
    pilot.add_navigation(NavEntry("admin.organisations", _l("Administration"), order=90, roles=("admin",),
                                  administration=True))

    from flask_babel import get_locale

    # Globals rather than a context processor, so that imported macros see them too.
    app.jinja_env.globals.update(navigation=lambda user: registry(app).navigation_for(user),
                                 admin_links=registry(app).admin_links, role_labels=ROLE_LABELS, discipline_labels=DISCIPLINE_LABELS, get_locale=get_locale,
                                 organisation_kind_labels=ORGANISATION_KIND_LABELS,
                                 import_status_labels=IMPORT_STATUS_LABELS, import_kind_labels=IMPORT_KIND_LABELS)
