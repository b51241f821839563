"""The administration pages: organisations and the audit log (users: core.people_views)."""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, Regexp

from core import page_arg
from core.auth import actor_name, roles_required
from core.csvexport import csv_stream_response
from core.db import db_session, get_db
from core.models import ORGANISATION_KINDS, AuditEvent, Organisation, audit
from core.views import AUDIT_ACTION_LABELS, ORGANISATION_KIND_LABELS

admin_bp = Blueprint("admin", __name__, url_prefix="/admin")

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


def init_app(app) -> None:
    """Register the administration pages (core.people_views adds the users' pages to the same blueprint)."""
    from core import people_views

    app.register_blueprint(admin_bp)
    people_views.init_app(app)
