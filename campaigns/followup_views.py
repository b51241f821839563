"""Staff follow-up of approval requests (per campaign and across campaigns, "remind again") and the
dashboard panels of pending requests.

Registered on the campaigns blueprint. Staff see each organisation's status, who answered and
when, a decline's reason and the reminders: never a contact, nor a count of anyone's spectators.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import contains_eager

from campaigns import services
from campaigns.approvals import DECLINE_REASON_LABELS
from campaigns.followup import (
    KINDS,
    REMIND_AGAIN_AFTER,
    get_request,
    remind_refusal,
    reminder_summary,
    reminders_of,
    request_lines,
    status_counts,
)
from campaigns.followup import remind as send_remind
from campaigns.forms import RemindForm
from campaigns.models import APPROVAL_STATUSES, Approval, Campaign, ProviderApproval
from campaigns.views import STAFF, _get_or_404, bp
from core import page_arg
from core.auth import roles_required
from core.db import db_session
from core.errors import commit_or_refuse
from core.models import utcnow

PER_PAGE = 100


def install_template_globals(app) -> None:
    """The decline reasons' labels, for every page that shows an answer."""
    app.jinja_env.globals.update(decline_reason_labels=DECLINE_REASON_LABELS)


def _filters() -> tuple[str | None, bool]:
    """The status filter (junk shows every status) and whether only campaigns awaiting approvals count."""
    status = request.args.get("status") or None
    return (status if status in APPROVAL_STATUSES else None), request.args.get("open", "1") != "0"


def _requests_page(campaign: Campaign | None):
    session = db_session()
    status, open_only = _filters()
    open_only = open_only and campaign is None  # one campaign's page shows its requests whatever its status
    page = page_arg()
    campaign_id = campaign.id if campaign is not None else None
    lines, total = request_lines(
        session, campaign_id=campaign_id, status=status, open_only=open_only, page=page, per_page=PER_PAGE
    )
    counts = status_counts(session, campaign_id=campaign_id, open_only=open_only)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template(
        "campaigns/requests.html",
        campaign=campaign,
        lines=lines,
        total=total,
        counts=counts,
        status=status,
        open_only=open_only,
        page=page,
        pages=pages,
        statuses=APPROVAL_STATUSES,
        remind_after_minutes=int(REMIND_AGAIN_AFTER.total_seconds() // 60),
    )


@bp.route("/requests")
@roles_required(*STAFF)
def requests_overview():
    """Every approval request across campaigns (those still awaiting approvals unless ``open=0``)."""
    return _requests_page(None)


@bp.route("/<int:campaign_id>/approvals")
@roles_required(*STAFF)
def campaign_requests(campaign_id: int):
    """One campaign's requests: who answered, who has not, when each was reminded."""
    return _requests_page(_get_or_404(Campaign, campaign_id))


@bp.route("/requests/<kind>/<int:request_id>/remind", methods=["GET", "POST"])
@roles_required(*STAFF)
def remind(kind: str, request_id: int):
    """Confirm, then send a reminder to an organisation that has not answered (logged); refused with
    the reason when it has answered, answers are closed or it was reminded within the hour."""
    session = db_session()
    item = get_request(session, kind, request_id) if kind in KINDS else None
    if item is None:
        abort(404)
    form = RemindForm()
    back = (
        url_for("campaigns.campaign_requests", campaign_id=item.campaign_id)
        if (form.back.data or request.args.get("back")) == "campaign"
        else url_for("campaigns.requests_overview")
    )
    if request.method == "POST":
        if not form.validate_on_submit():
            flash(_("The reminder was not sent: reload the page and try again."), "error")
            return redirect(back)
        commit_or_refuse(
            session,
            lambda: send_remind(session, item, current_user),
            lambda _sent: _("Reminder sent to %(organisation)s.", organisation=item.organisation.name),
            lambda reason: _("Not sent: %(reason)s", reason=reason),
        )
        return redirect(back)
    form.back.data = "campaign" if request.args.get("back") == "campaign" else "requests"
    return render_template(
        "campaigns/remind.html",
        item=item,
        kind=kind,
        campaign=item.campaign,
        form=form,
        reminders=reminders_of(session, item),
        refusal=remind_refusal(session, item),
        back=back,
    )


# --- dashboard ----------------------------------------------------------------------------------


def dashboard_panel(session, user) -> Markup | None:
    """Pending requests with their reminders (venue approvers) or campaigns awaiting approvals (staff)."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.role == "venue":
        now = utcnow()
        pending: list[tuple[str, Approval | ProviderApproval]] = []
        for kind, model in (("approval", Approval), ("provider", ProviderApproval)):
            pending += [
                (kind, r)
                for r in session.scalars(
                    select(model)
                    .join(Campaign, Campaign.id == model.campaign_id)
                    .where(
                        model.organisation_id == user.organisation_id,
                        model.status == "pending",
                        Campaign.status == "awaiting_approvals",
                        Campaign.approval_deadline > now,
                    )
                    .options(contains_eager(model.campaign))  # the panel shows each campaign: no query per row
                    .order_by(Campaign.approval_deadline, model.id)
                )
            ]
        if not pending:
            return None
        reminded = {kind: reminder_summary(session, kind, [r.id for k, r in pending if k == kind]) for kind in KINDS}
        rows = [(kind, r, *reminded[kind].get(r.id, (0, None))) for kind, r in pending]
        return Markup(render_template("campaigns/_panel_venue.html", rows=rows))
    if user.role in STAFF:
        waiting = session.scalars(
            select(Campaign)
            .where(Campaign.status.in_(("awaiting_approvals", "ready")))
            .order_by(Campaign.approval_deadline)
        ).all()
        if not waiting:
            return None
        answered = services.answered_counts(session, [c.id for c in waiting])
        return Markup(render_template("campaigns/_panel_staff.html", campaigns=waiting, answered=answered))
    return None
