"""The per-user budget of questions on pooled figures: asking, refusing past the budget, the admin page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import IntegerField
from wtforms.validators import DataRequired, NumberRange

from core.auth import actor_name, roles_required
from core.db import db_session
from core.models import AuditEvent, User, audit
from core.privacy import (
    DEFAULT_DAILY_BUDGET,
    QUESTION_ACTION,
    BudgetExhausted,
    Release,
    ask,
    ask_once,
    daily_budget,
    day_start_utc,
    set_daily_budget,
)
from core.registry import registry

bp = Blueprint("questions", __name__, url_prefix="/admin/questions")

RECENT = 200  # questions listed on the admin page


def budget_enabled() -> bool:
    """Whether the per-user budget is on (config ``PRIVACY_BUDGET``, on unless set false)."""
    return bool(current_app.config.get("PRIVACY_BUDGET", True))


def current_budget(session) -> int | None:
    """Questions per user per day, or None when the budget is switched off."""
    if not budget_enabled():
        return None
    return daily_budget(session, int(current_app.config.get("PRIVACY_DAILY_BUDGET", DEFAULT_DAILY_BUDGET)))


def ask_question(session, kind: str, question) -> int | None:
    """Count one question of the logged-in user against their budget and audit it (the caller
    commits). Raises :class:`core.privacy.BudgetExhausted` past the budget, which the application
    turns into a clear message: HTTP 429, JSON for the JSON endpoints, a page otherwise.

    :returns: the questions left today (None without a budget)."""
    return ask(session, **_of_current_user(session, kind, question))


def ask_question_once(session, kind: str, question) -> int | None:
    """:func:`ask_question` for the figures of a state (a campaign's funnel, its power page): only
    the first reading of a state counts (core.privacy.ask_once); past the budget, a new state is
    refused like any question."""
    return ask_once(session, **_of_current_user(session, kind, question))


def _of_current_user(session, kind: str, question) -> dict[str, Any]:
    """A question of the logged-in user, with their budget and organisation (core.privacy.ask's terms)."""
    return {
        "user_id": current_user.id,
        "actor": actor_name(),
        "kind": kind,
        "question": question,
        "budget": current_budget(session),
        "organisation_id": current_user.organisation_id,
    }


def current_release(session, k: int | None = None, organisation_ids=None) -> Release:
    """The noisy view of this request (core.privacy.Release.current)."""
    return Release.current(session, k=k, organisation_ids=organisation_ids)


def budget_message(budget: int) -> str:
    return _(
        "You have asked your %(budget)s questions on pooled figures for today (the daily budget that "
        "protects the district's spectators). The budget starts again at midnight UTC; an "
        "administrator can raise it.",
        budget=budget,
    )


def _refused(error: BudgetExhausted):
    message = budget_message(error.budget)
    wants_json = (
        request.is_json or request.accept_mimetypes.best == "application/json" or request.path.endswith(".json")
    )
    if wants_json:
        return jsonify(error=message, code="budget_exhausted", budget=error.budget), 429
    return render_template("error.html", code=429, message=message), 429


class BudgetForm(FlaskForm):
    budget = IntegerField(
        _l("Questions per user per day"), validators=[DataRequired(), NumberRange(min=1, max=1_000_000)]
    )


@bp.route("/", methods=["GET", "POST"])
@roles_required("admin")
def index():
    """Who asked what on pooled figures, how much budget each user has left today, and the form
    that changes the daily budget."""
    session = db_session()
    form = BudgetForm()
    if form.validate_on_submit():
        set_daily_budget(session, form.budget.data)
        audit(session, "privacy.budget", actor=actor_name(), user_id=current_user.id, budget=form.budget.data)
        session.commit()
        flash(_("The daily budget is now %(budget)s questions per user.", budget=form.budget.data), "success")
        return redirect(url_for("questions.index"))
    budget = current_budget(session)
    if request.method == "GET":
        form.budget.data = daily_budget(
            session, int(current_app.config.get("PRIVACY_DAILY_BUDGET", DEFAULT_DAILY_BUDGET))
        )
    since = day_start_utc()
    asked = dict(
        session.execute(
            select(AuditEvent.user_id, func.count())
            .where(AuditEvent.action == QUESTION_ACTION, AuditEvent.at >= since)
            .group_by(AuditEvent.user_id)
        ).all()
    )
    users = session.scalars(select(User).where(User.role != "venue").order_by(User.email)).all()
    users += [u for u in session.scalars(select(User).where(User.role == "venue").order_by(User.email)).all()]
    rows = [
        {
            "user": u,
            "asked": asked.get(u.id, 0),
            "left": None if budget is None else max(budget - asked.get(u.id, 0), 0),
        }
        for u in users
    ]
    recent = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == QUESTION_ACTION)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(RECENT)
    ).all()
    return render_template("admin/questions.html", form=form, rows=rows, recent=recent, budget=budget, since=since), (
        400 if form.errors else 200
    )


def question_text(event: AuditEvent) -> str:
    """What an audited question asked, short enough for a table cell."""
    import json

    details = event.details or {}
    text = json.dumps(details.get("question"), ensure_ascii=False)
    return text if len(text) <= 300 else text[:297] + "…"


def init_app(app) -> None:
    """Register the admin page, its menu link and the 429 answer past a budget."""
    app.register_blueprint(bp)
    app.register_error_handler(BudgetExhausted, _refused)
    app.jinja_env.globals.update(question_text=question_text)
    registry(app).add_admin_link("questions.index", _l("Questions and budgets"))
    from core.views import AUDIT_ACTION_LABELS

    AUDIT_ACTION_LABELS.update(
        {QUESTION_ACTION: _l("Question on pooled figures"), "privacy.budget": _l("Daily question budget changed")}
    )
