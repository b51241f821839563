"""The administration pages: organisations and the audit log (users: core.people_views)."""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import false, func, or_, select
from wtforms import EmailField, IntegerField, SelectField, SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional, Regexp

from core import audit_words, page_arg
from core.auth import actor_name, roles_required
from core.csvexport import csv_stream_response, spreadsheet_delimiter
from core.db import db_session, get_db
from core.localtime import local_time, to_utc
from core.models import DISCIPLINES, ORGANISATION_KINDS, AuditEvent, Organisation, Show, User, Venue, audit
from core.views import AUDIT_ACTION_LABELS, ORGANISATION_KIND_LABELS
from core.vocabulary import DISCIPLINE_LABELS

admin_bp = Blueprint("admin", __name__, url_prefix="/admin")

# --- organisations -----------------------------------------------------------------------------


class OrganisationForm(FlaskForm):
    slug = StringField(
        _l("Short name (slug)"),
        validators=[
            DataRequired(),
            Length(max=40),
            Regexp(r"^[a-z0-9][a-z0-9-]*$", message=_l("Lower-case letters, digits and dashes only.")),
        ],
    )
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    kind = SelectField(_l("Kind"), choices=[(k, ORGANISATION_KIND_LABELS[k]) for k in ORGANISATION_KINDS])
    k_threshold = IntegerField(
        _l("Small-cell threshold k (optional, at least the district's)"),
        validators=[Optional(), NumberRange(min=2, max=1000)],
    )


@admin_bp.route("/organisations", methods=["GET", "POST"])
@roles_required("admin")
def organisations():
    session = db_session()
    form = OrganisationForm()
    if form.validate_on_submit():
        if session.scalar(select(Organisation).where(Organisation.slug == form.slug.data)):
            form.slug.errors.append(_("This short name is already taken."))
        else:
            org = Organisation(
                slug=form.slug.data, name=form.name.data, kind=form.kind.data, k_threshold=form.k_threshold.data
            )
            session.add(org)
            session.flush()
            audit(
                session,
                "organisation.create",
                actor=actor_name(),
                user_id=current_user.id,
                object_type="organisation",
                object_id=org.id,
                slug=org.slug,
            )
            session.commit()
            flash(_("Organisation %(name)s created.", name=org.name), "success")
            return redirect(url_for("admin.organisations"))
    orgs = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    return render_template("admin/organisations.html", form=form, organisations=orgs)


class MultiCheckboxField(SelectMultipleField):
    """A multiple choice shown as checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class OrganisationEditForm(FlaskForm):
    """What an administrator edits of an organisation (its short name stays: addresses use it)."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    kind = SelectField(_l("Kind"), choices=[(k, ORGANISATION_KIND_LABELS[k]) for k in ORGANISATION_KINDS])
    disciplines = MultiCheckboxField(_l("Disciplines"), choices=[(d, DISCIPLINE_LABELS[d]) for d in DISCIPLINES])
    k_threshold = IntegerField(
        _l("Small-cell threshold k (optional, at least the district's)"),
        validators=[Optional(), NumberRange(min=2, max=1000)],
    )
    sender_name = StringField(
        _l("Sender name (for the contact lists' messages)"), validators=[Optional(), Length(max=200)]
    )
    sender_email = EmailField(_l("Sender e-mail"), validators=[Optional(), Email(), Length(max=320)])


class VenueForm(FlaskForm):
    """A hall of an organisation: its name and seating capacity."""

    name = StringField(_l("Hall name"), validators=[DataRequired(), Length(max=200)])
    capacity = IntegerField(_l("Seats (optional)"), validators=[Optional(), NumberRange(min=1, max=100_000)])


class VenueChangeForm(VenueForm):
    """A change to a hall, or its removal."""

    action = SelectField(choices=[("update", "update"), ("delete", "delete")])


def _organisation_or_404(session, organisation_id: int) -> Organisation:
    org = session.get(Organisation, organisation_id)
    if org is None:
        abort(404)
    return org


def _edited_values(form: OrganisationEditForm) -> dict:
    return {
        "name": form.name.data.strip(),
        "kind": form.kind.data,
        "disciplines": ",".join(d for d in DISCIPLINES if d in (form.disciplines.data or [])),
        "k_threshold": form.k_threshold.data,
        "sender_name": (form.sender_name.data or "").strip() or None,
        "sender_email": (form.sender_email.data or "").strip().lower() or None,
    }


@admin_bp.route("/organisations/<int:organisation_id>", methods=["GET", "POST"])
@roles_required("admin")
def organisation(organisation_id: int):
    """One organisation: its name, kind, disciplines, k, sender details and halls."""
    session = db_session()
    org = _organisation_or_404(session, organisation_id)
    form = OrganisationEditForm(obj=None if request.method == "POST" else org)
    if request.method == "GET":
        form.disciplines.data = org.discipline_list
    if form.validate_on_submit():
        values = _edited_values(form)
        changed = [key for key, value in values.items() if getattr(org, key) != value]
        if changed:
            for key in changed:
                setattr(org, key, values[key])
            audit(
                session,
                "organisation.update",
                actor=actor_name(),
                user_id=current_user.id,
                object_type="organisation",
                object_id=org.id,
                organisation_id=org.id,
                fields=changed,
            )
            session.commit()
            flash(_("%(name)s is saved.", name=org.name), "success")
        else:
            flash(_("Nothing changed."), "info")
        return redirect(url_for("admin.organisation", organisation_id=org.id))
    venues = session.scalars(select(Venue).where(Venue.organisation_id == org.id).order_by(Venue.name)).all()
    shows = dict(
        session.execute(
            select(Show.venue_id, func.count()).where(Show.organisation_id == org.id).group_by(Show.venue_id)
        ).all()
    )
    return render_template(
        "admin/organisation.html",
        org=org,
        form=form,
        venues=venues,
        shows=shows,
        venue_form=VenueForm(formdata=None),
        change_form=FlaskForm(formdata=None),
    )


@admin_bp.route("/organisations/<int:organisation_id>/venues", methods=["POST"])
@roles_required("admin")
def organisation_venues(organisation_id: int):
    """Add a hall to an organisation."""
    session = db_session()
    org = _organisation_or_404(session, organisation_id)
    form = VenueForm()
    if not form.validate_on_submit():
        flash(_("Give the hall a name (and, if you wish, a number of seats from 1 to 100,000)."), "error")
    elif session.scalar(
        select(Venue.id).where(
            Venue.organisation_id == org.id, func.lower(Venue.name) == form.name.data.strip().lower()
        )
    ):
        flash(_("%(org)s already has a hall of this name.", org=org.name), "error")
    else:
        venue = Venue(organisation_id=org.id, name=form.name.data.strip(), capacity=form.capacity.data)
        session.add(venue)
        session.flush()
        audit(
            session,
            "venue.create",
            actor=actor_name(),
            user_id=current_user.id,
            object_type="venue",
            object_id=venue.id,
            organisation_id=org.id,
            name=venue.name,
            organisation=org.name,
            capacity=venue.capacity,
        )
        session.commit()
        flash(_("Hall %(name)s added.", name=venue.name), "success")
    return redirect(url_for("admin.organisation", organisation_id=org.id) + "#venues")


@admin_bp.route("/venues/<int:venue_id>", methods=["POST"])
@roles_required("admin")
def venue(venue_id: int):
    """Rename a hall or change its seats; or remove it, if no show took place there."""
    session = db_session()
    hall = session.get(Venue, venue_id)
    if hall is None:
        abort(404)
    org = _organisation_or_404(session, hall.organisation_id)
    back = url_for("admin.organisation", organisation_id=org.id) + "#venues"
    form = VenueChangeForm()
    if form.action.data == "delete" and form.is_submitted() and FlaskForm().validate_on_submit():
        if session.scalar(select(Show.id).where(Show.venue_id == hall.id).limit(1)) is not None:
            flash(_("Shows took place in %(name)s: it stays (rename it if needed).", name=hall.name), "error")
            return redirect(back)
        audit(
            session,
            "venue.delete",
            actor=actor_name(),
            user_id=current_user.id,
            object_type="venue",
            object_id=hall.id,
            organisation_id=org.id,
            name=hall.name,
            organisation=org.name,
        )
        name = hall.name
        session.delete(hall)
        session.commit()
        flash(_("Hall %(name)s removed.", name=name), "success")
        return redirect(back)
    if not form.validate_on_submit():
        flash(_("Give the hall a name (and, if you wish, a number of seats from 1 to 100,000)."), "error")
        return redirect(back)
    name = form.name.data.strip()
    if session.scalar(
        select(Venue.id).where(
            Venue.organisation_id == org.id, Venue.id != hall.id, func.lower(Venue.name) == name.lower()
        )
    ):
        flash(_("%(org)s already has a hall of this name.", org=org.name), "error")
        return redirect(back)
    if (hall.name, hall.capacity) != (name, form.capacity.data):
        audit(
            session,
            "venue.update",
            actor=actor_name(),
            user_id=current_user.id,
            object_type="venue",
            object_id=hall.id,
            organisation_id=org.id,
            name=name,
            name_before=hall.name,
            organisation=org.name,
            capacity=form.capacity.data,
        )
        hall.name, hall.capacity = name, form.capacity.data
        session.commit()
        flash(_("Hall %(name)s saved.", name=name), "success")
    return redirect(back)


AUDIT_PAGE_SIZE = 100


def _audit_filters(args) -> dict:
    """The audit log's filters from the query string: action, actor (part of their e-mail or name),
    object (part of its name or e-mail, or its type and id), and a period of days in Montreal time
    (both ends included); malformed dates are ignored, not an error."""

    def day(name):
        try:
            return dt.date.fromisoformat(args.get(name, ""))
        except ValueError:
            return None

    def text(name):
        return args.get(name, "").strip()[:200]

    return {
        "action": text("action"),
        "actor": text("actor"),
        "object": text("object"),
        "object_type": text("object_type"),
        "object_id": text("object_id"),
        "since": day("since"),
        "until": day("until"),
    }


def _matching_objects(session, words: str) -> list:
    """Conditions on the audit events whose object's name (or e-mail) contains ``words``, as the
    objects are named today (core.audit_words.objects_matching)."""
    return [
        (AuditEvent.object_type == kind) & AuditEvent.object_id.in_([str(i) for i in ids])
        for kind, ids in audit_words.objects_matching(session, words).items()
    ]


def _audit_query(session, filters: dict):
    """The audit events that ``filters`` select, newest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if filters["action"]:
        query = query.where(AuditEvent.action == filters["action"])
    if filters["actor"]:
        lowered = filters["actor"].lower()
        named = select(User.id).where(func.lower(func.coalesce(User.name, "")).contains(lowered, autoescape=True))
        query = query.where(
            func.lower(AuditEvent.actor).contains(lowered, autoescape=True)
            | AuditEvent.user_id.in_(named.scalar_subquery())
        )
    if filters["object"]:
        conditions = _matching_objects(session, filters["object"])
        query = query.where(or_(*conditions) if conditions else false())
    if filters["object_type"]:
        query = query.where(AuditEvent.object_type == filters["object_type"])
    if filters["object_id"]:
        query = query.where(AuditEvent.object_id == filters["object_id"])
    if filters["since"]:
        query = query.where(AuditEvent.at >= to_utc(dt.datetime.combine(filters["since"], dt.time())))
    if filters["until"]:
        query = query.where(
            AuditEvent.at < to_utc(dt.datetime.combine(filters["until"] + dt.timedelta(days=1), dt.time()))
        )
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
    """The audit log, newest first, each event in words ("Alice (administrator) invited …"), filtered
    by action, actor, object and period; 100 per page."""
    session = db_session()
    page = page_arg()
    filters = _audit_filters(request.args)
    events = session.scalars(
        _audit_query(session, filters).limit(AUDIT_PAGE_SIZE + 1).offset((page - 1) * AUDIT_PAGE_SIZE)
    ).all()
    more = len(events) > AUDIT_PAGE_SIZE
    events = events[:AUDIT_PAGE_SIZE]
    actions = sorted(
        set(session.scalars(select(AuditEvent.action).distinct()))
        | ({filters["action"]} if filters["action"] else set())
    )
    object_types = sorted(t for t in session.scalars(select(AuditEvent.object_type).distinct()) if t)
    return render_template(
        "admin/audit.html",
        events=events,
        page=page,
        more=more,
        sentences=audit_words.describe(session, events, AUDIT_ACTION_LABELS),
        filters=filters,
        actions=actions,
        object_types=object_types,
        filtered=any(filters.values()),
        action_labels=AUDIT_ACTION_LABELS,
        audit_value=audit_value,
        object_kinds=audit_words.OBJECT_KINDS,
        query_args={k: v for k, v in request.args.items() if k not in ("page", "lang")},
    )


@admin_bp.route("/audit.csv")
@roles_required("admin")
def audit_log_csv():
    """The filtered audit log as CSV (every matching event, streamed); the download is itself logged."""
    session = db_session()
    filters = _audit_filters(request.args)
    chosen = {
        key: (value.isoformat() if isinstance(value, dt.date) else value) for key, value in filters.items() if value
    }
    audit(
        session, "audit.export", actor=actor_name(), user_id=current_user.id, **({"filters": chosen} if chosen else {})
    )
    session.commit()
    database = get_db()

    def rows():
        # Read while the response is sent, after the request's own session is closed: a session of
        # its own, and the request context kept for the labels' language; sentences a chunk at a time.
        with database.Session() as reading:
            for chunk in reading.scalars(_audit_query(reading, filters).execution_options(yield_per=500)).partitions(
                500
            ):
                sentences = audit_words.describe(reading, list(chunk), AUDIT_ACTION_LABELS)
                for e in chunk:
                    yield (
                        local_time(e.at, seconds=True),
                        e.actor,
                        e.action,
                        str(AUDIT_ACTION_LABELS.get(e.action, "")),
                        e.object_type,
                        e.object_id,
                        audit_details_text(e.details),
                        sentences[e.id],
                    )

    return csv_stream_response(
        stream_with_context(rows()),
        "audit-log.csv",
        delimiter=spreadsheet_delimiter(),
        header=(
            _("When (Montreal time)"),
            _("Who"),
            _("Action"),
            _("Action (in words)"),
            _("Object type"),
            _("Object id"),
            _("Details"),
            _("What happened"),
        ),
    )


def init_app(app) -> None:
    """Register the administration pages (core.people_views adds the users' pages to the same blueprint)."""
    from core import people_views

    app.register_blueprint(admin_bp)
    people_views.init_app(app)
