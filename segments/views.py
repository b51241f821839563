"""Segments and insights: the pages of the segments package (the list of segments and the builder)."""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import DateField, HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from core.auth import actor_name, roles_required
from core.db import db_session
from core.models import DISCIPLINES, Organisation, Venue, audit
from core.questions import ask_question, current_release
from core.vocabulary import DISCIPLINE_LABELS
from segments.insight_tables import STAGE_LABELS
from segments.models import Segment, SegmentVersion
from segments.preview import protected_preview
from segments.profiles import profiles_as_of
from segments.query import as_node
from segments.rules import CHANNELS, FIELDS, LIFECYCLE_STAGES, RuleError, check_as_of

bp = Blueprint("segments", __name__, url_prefix="/segments")

BUILDER_ROLES = ("staff", "admin")

FIELD_LABELS = {
    "organisation": _l("Organisations bought from"),
    "discipline": _l("Disciplines bought"),
    "venue": _l("Halls attended"),
    "shows": _l("Shows bought"),
    "orders": _l("Orders"),
    "tickets": _l("Tickets"),
    "spent": _l("Amount spent ($)"),
    "days_since_last": _l("Days since the last purchase"),
    "days_since_first": _l("Days since the first purchase"),
    "lifecycle": _l("Life-cycle stage"),
    "subscriber": _l("Subscriber"),
    "newsletter": _l("Newsletter subscriber"),
    "contactable": _l("Contactable by e-mail"),
    "channel": _l("Main purchase channel"),
    "promo_share": _l("Share of orders on promotion (0 to 1)"),
    "lead_days": _l("Median days between purchase and show"),
    "fsa": _l("Postal area (FSA)"),
}
OP_LABELS = {
    "any": _l("at least one of"),
    "all": _l("all of"),
    "none": _l("none of"),
    "=": "=",
    "!=": "≠",
    ">": ">",
    ">=": "≥",
    "<": "<",
    "<=": "≤",
    "between": _l("between"),
    "in": _l("is one of"),
    "not_in": _l("is none of"),
    "is": _l("is"),
    "starts_with": _l("starts with"),
}
CHANNEL_LABELS = {"web": _l("Web"), "box_office": _l("Box office"), "phone": _l("Phone")}

# Starting points for the classic cases of the seed's training material.
TEMPLATES = {
    "cross_sell": {
        "label": _l("Cross-sell: theatre-goers who never tried dance"),
        "name": _l("Theatre-goers who never tried dance"),
        "rule": {
            "all": [
                {"field": "discipline", "op": "any", "value": ["theatre"]},
                {"field": "discipline", "op": "none", "value": ["dance"]},
            ]
        },
    },
    "upsell": {
        "label": _l("Upsell: single-ticket buyers with three shows or more in 18 months"),
        "name": _l("Single-ticket buyers ready for a subscription"),
        "rule": {
            "all": [
                {"field": "subscriber", "op": "is", "value": False},
                {"field": "shows", "op": ">=", "value": 3, "within_days": 548},
            ]
        },
    },
    "win_back": {
        "label": _l("Win-back: lapsed loyal spectators"),
        "name": _l("Lapsed loyal spectators"),
        "rule": {
            "all": [
                {"field": "lifecycle", "op": "in", "value": ["stale", "lapsed"]},
                {"field": "shows", "op": ">=", "value": 4},
            ]
        },
    },
    "first_timers": {
        "label": _l("Bring back first-timers"),
        "name": _l("First-timers to bring back"),
        "rule": {
            "all": [
                {"field": "lifecycle", "op": "in", "value": ["new"]},
                {"field": "contactable", "op": "is", "value": True},
            ]
        },
    },
}
EMPTY_RULE = {"all": [{"field": "shows", "op": ">=", "value": 1}]}

# French and English for every refusal of segments.rules (its messages are English only).
RULE_MESSAGES = {
    "invalid_json": _l("the rule is not valid JSON (%(reason)s)"),
    "too_long": _l("the rule is too long (%(length)s characters, at most %(limit)s)"),
    "not_a_node": _l("expected a group or a condition, got %(value)s"),
    "unknown_node": _l("expected a group or a condition, got keys %(keys)s"),
    "ambiguous_node": _l("a node is either one group or one condition, got keys %(keys)s"),
    "unknown_key": _l("unknown key %(key)s (expected: %(expected)s)"),
    "missing_key": _l("the condition has no '%(key)s'"),
    "group_not_a_list": _l("group '%(group)s' takes a list of groups and conditions"),
    "empty_group": _l("a group is empty: give it at least one condition"),
    "too_deep": _l("the rule is nested too deeply (at most %(limit)s levels)"),
    "too_many_nodes": _l("the rule has too many groups and conditions (at most %(limit)s)"),
    "unknown_field": _l("unknown field %(field)s"),
    "unknown_operator": _l("operator %(op)s is not valid for field '%(field)s'"),
    "within_days_not_allowed": _l("a window in days is not allowed for field '%(field)s'"),
    "invalid_within_days": _l("the window of field '%(field)s' must be a whole number of days from 1 to %(limit)s"),
    "expected_list": _l("field '%(field)s' takes a list of values"),
    "empty_list": _l("field '%(field)s' needs at least one value"),
    "too_many_values": _l("field '%(field)s' takes at most %(limit)s values"),
    "invalid_text": _l("value %(value)s of field '%(field)s' is not valid text"),
    "unknown_value": _l("unknown value %(value)s for field '%(field)s'"),
    "invalid_slug": _l("value %(value)s is not an organisation's short name"),
    "invalid_fsa": _l("value %(value)s is not an FSA (letter, digit, letter, like H2X)"),
    "invalid_fsa_prefix": _l("value %(value)s is not the start of an FSA (like H, H2 or H2X)"),
    "expected_boolean": _l("field '%(field)s' takes yes or no"),
    "expected_number": _l("field '%(field)s' takes a number, got %(value)s"),
    "expected_integer": _l("field '%(field)s' takes a whole number, got %(value)s"),
    "out_of_range": _l("value %(value)s of field '%(field)s' is out of range (%(low)s to %(high)s)"),
    "too_precise": _l("amount %(value)s has more than two decimals"),
    "expected_range": _l("'between' of field '%(field)s' takes a low and a high value"),
    "as_of_out_of_range": _l("the date %(value)s is out of range (%(low)s to %(high)s)"),
    "reversed_range": _l("the range of field '%(field)s' is reversed: %(low)s is above %(high)s"),
}


def rule_error_message(error: RuleError) -> str:
    """A refused rule, said in the user's language, with where it is."""
    template = RULE_MESSAGES.get(error.code)
    params = {key: str(value) for key, value in error.params.items()}
    try:
        text = str(template) % params if template is not None else None
    except (KeyError, TypeError, ValueError):  # a message of rules.py this table does not know yet
        text = None
    if text is None:
        return error.message
    place = place_in_words(error.path)
    return _("%(place)s: %(problem)s", place=place, problem=text) if place else text[:1].upper() + text[1:]


def place_in_words(path: str) -> str:
    """Where a refusal is, numbered as the builder lists the conditions (a JSON pointer is for the
    API, not for people): ``/all/2/any/0/value`` is "Condition 3 › condition 1"; "" at the top."""
    parts = [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]
    if parts[:1] == ["as_of"]:
        return str(_("Preview date"))
    steps = [int(index) + 1 for group, index in zip(parts, parts[1:]) if group in ("all", "any") and index.isdigit()]
    if not steps:
        return ""
    first, *inner = steps
    return " › ".join([str(_("Condition %(n)s", n=first)), *(str(_("condition %(n)s", n=n)) for n in inner)])


class SegmentForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=2000)])
    as_of = DateField(_l("Preview as of"), validators=[Optional()])
    rule = HiddenField(_l("Rule"), validators=[DataRequired()])

    def validate_rule(self, field) -> None:
        try:
            self.parsed_rule = as_node(field.data)
        except RuleError as error:
            field.errors.append(rule_error_message(error))


def _builder_config(session) -> dict:
    """What the builder's script needs: the fields, their labels and choices, the preview URL."""
    organisations = session.execute(select(Organisation.slug, Organisation.name).order_by(Organisation.name)).all()
    venues = session.scalars(select(Venue.name).distinct().order_by(Venue.name)).all()
    choices = {
        "organisation": [[slug, name] for slug, name in organisations],
        "discipline": [[d, str(DISCIPLINE_LABELS.get(d, d))] for d in DISCIPLINES],
        "venue": [[name, name] for name in venues],
        "lifecycle": [[s, str(STAGE_LABELS[s])] for s in LIFECYCLE_STAGES],
        "channel": [[c, str(CHANNEL_LABELS[c])] for c in CHANNELS],
    }
    fields = [
        {
            "name": spec.name,
            "kind": spec.kind,
            "ops": list(spec.ops),
            "within_days": spec.within_days,
            "integer": spec.integer,
            "minimum": spec.minimum,
            "maximum": spec.maximum,
            "label": str(FIELD_LABELS.get(spec.name, spec.name)),
            "choices": choices.get(spec.name),
        }
        for spec in FIELDS.values()
    ]
    return {
        "fields": fields,
        "ops": {op: str(label) for op, label in OP_LABELS.items()},
        "preview_url": url_for("segments.preview_json"),
        "stages": {s: str(label) for s, label in STAGE_LABELS.items()},
        "text": {
            "all": _("all of these hold"),
            "any": _("at least one holds"),
            "not": _("not"),
            "add_condition": _("Add a condition"),
            "add_group": _("Add a group"),
            "remove": _("Remove"),
            "yes": _("yes"),
            "no": _("no"),
            "within": _("only purchases of the last … days (optional)"),
            "days": _("days"),
            "and": _("and"),
            "fsa_help": _("FSAs separated by commas, e.g. H2X, H3A"),
            "choose": _("Choose at least one value."),
            "updating": _("Updating…"),
            "hidden": _("hidden (fewer than %(k)s)"),
            "error": _("The preview failed; try again."),
            "group": _("Group"),
            "condition": _("Condition"),
        },
    }


def _pretty(rule: dict) -> str:
    return json.dumps(rule, ensure_ascii=False)


def _holds_conditions(value) -> bool:
    """Whether a part of a rule holds groups or conditions (objects) rather than plain values."""
    if isinstance(value, dict):
        return any(_holds_conditions(v) or isinstance(v, dict) for v in value.values())
    if isinstance(value, list):
        return any(isinstance(v, dict) for v in value)
    return False


def _layout(value, level: int) -> str:
    if not _holds_conditions(value):  # a condition, or a list of values: one line
        return json.dumps(value, ensure_ascii=False)
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict):
        lines = [f"{inner}{json.dumps(key, ensure_ascii=False)}: {_layout(v, level + 1)}" for key, v in value.items()]
        return "{\n" + ",\n".join(lines) + "\n" + pad + "}"
    return "[\n" + ",\n".join(inner + _layout(v, level + 1) for v in value) + "\n" + pad + "]"


def rule_text(rule) -> str:
    """A rule (a dict, or the JSON text of the form) as people read it: still JSON, one condition a
    line, groups indented, accents and signs such as >= as they are. Jinja escapes it once where it
    is shown (not ``tojson``, whose \\u003e escapes are for scripts, not for reading); text that is
    not JSON is shown as it is. static/js/segment-builder.js lays rules out the same way."""
    if isinstance(rule, str):
        try:
            rule = json.loads(rule)
        except ValueError:
            return rule
    return _layout(rule, 0)


@bp.route("/")
@roles_required("staff", "admin", "venue")
def index():
    session = db_session()
    segments = session.scalars(
        select(Segment).where(Segment.archived.is_(False)).order_by(Segment.created_at.desc(), Segment.id.desc())
    ).all()
    return render_template(
        "segments/index.html",
        segments=segments,
        templates=TEMPLATES,
        can_build=current_user.role in BUILDER_ROLES,
        profile_date=profiles_as_of(session),
        has_insights="segments.insights" in current_app.view_functions,
    )


def _render_builder(session, form: SegmentForm, segment: Segment | None, status: int = 200):
    return render_template(
        "segments/builder.html",
        form=form,
        segment=segment,
        config=_builder_config(session),
        profile_date=profiles_as_of(session),
        templates=TEMPLATES,
        rule_text=rule_text,
    ), status


@bp.route("/new", methods=["GET", "POST"])
@roles_required(*BUILDER_ROLES)
def new():
    session = db_session()
    form = SegmentForm()
    if request.method == "GET":
        chosen = TEMPLATES.get(request.args.get("template", ""))
        form.rule.data = _pretty(chosen["rule"] if chosen else EMPTY_RULE)
        if chosen:
            form.name.data = str(chosen["name"])
        form.as_of.data = profiles_as_of(session)
    if form.validate_on_submit():
        segment = Segment(
            name=form.name.data.strip(), description=form.description.data or None, created_by_id=current_user.id
        )
        session.add(segment)
        session.flush()
        version = SegmentVersion(
            segment_id=segment.id, number=1, rule=form.parsed_rule.to_json(), created_by_id=current_user.id
        )
        session.add(version)
        session.flush()
        audit(
            session,
            "segment.create",
            actor=actor_name(),
            user_id=current_user.id,
            object_type="segment",
            object_id=segment.id,
            version=1,
        )
        session.commit()
        flash(_("Segment %(name)s saved.", name=segment.name), "success")
        return redirect(url_for("segments.edit", segment_id=segment.id))
    return _render_builder(session, form, None, 400 if form.errors else 200)


@bp.route("/<int:segment_id>", methods=["GET", "POST"])
@roles_required(*BUILDER_ROLES)
def edit(segment_id: int):
    session = db_session()
    segment = session.get(Segment, segment_id)
    if segment is None or segment.archived:
        abort(404)
    form = SegmentForm(obj=None if request.method == "POST" else segment)
    current = segment.current
    if request.method == "GET":
        form.rule.data = _pretty(current.rule if current else EMPTY_RULE)
        form.as_of.data = profiles_as_of(session)
    if form.validate_on_submit():
        segment.name = form.name.data.strip()
        segment.description = form.description.data or None
        rule = form.parsed_rule.to_json()
        if current is None or as_node(current.rule) != form.parsed_rule:
            number = (current.number if current else 0) + 1
            session.add(SegmentVersion(segment_id=segment.id, number=number, rule=rule, created_by_id=current_user.id))
            audit(
                session,
                "segment.version",
                actor=actor_name(),
                user_id=current_user.id,
                object_type="segment",
                object_id=segment.id,
                version=number,
            )
            message = _("Segment %(name)s saved as version %(n)d.", name=segment.name, n=number)
        else:
            message = _("Segment %(name)s saved; the rule did not change.", name=segment.name)
        session.commit()
        flash(message, "success")
        return redirect(url_for("segments.edit", segment_id=segment.id))
    return _render_builder(session, form, segment, 400 if form.errors else 200)


@bp.route("/preview", methods=["POST"])
@roles_required(*BUILDER_ROLES)
def preview_json():
    """The live preview of the builder: ``{"rule": RULE, "as_of": "YYYY-MM-DD" | null}`` in,
    the preview of ``segments.query.preview`` out (400 with ``error`` and ``path`` for a bad rule)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or "rule" not in data:
        return jsonify(error=_("Send a JSON object with a rule."), path=""), 400
    as_of = None
    if data.get("as_of"):
        try:
            as_of = dt.date.fromisoformat(str(data["as_of"]))
        except ValueError:
            return jsonify(error=_("The date must be given as YYYY-MM-DD."), path="/as_of"), 400
    session = db_session()
    try:
        node = as_node(data["rule"])
        if as_of is not None:
            check_as_of(as_of)
    except RuleError as error:
        return jsonify(error=rule_error_message(error), path=error.path, code=error.code), 400
    # A question on the pooled data: counted against the user's daily budget (429 past it) and
    # audited; its figures are noisy and thresholded (core.privacy), never the exact counts.
    left = ask_question(session, "preview", {"rule": node.to_json(), "as_of": as_of.isoformat() if as_of else None})
    try:
        result = protected_preview(session, node, current_release(session), as_of)
    except RuleError as error:
        session.rollback()
        return jsonify(error=rule_error_message(error), path=error.path, code=error.code), 400
    session.commit()
    result["questions_left"] = left
    return jsonify(result)
