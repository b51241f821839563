"""Scheduled jobs of the campaigns package: approval deadlines, reminders to approvers, the kept funnels."""

from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from campaigns.followup import send_reminder
from campaigns.funnel_store import refresh_funnels
from campaigns.models import Approval, Campaign, ProviderApproval
from campaigns.services import apply_deadline
from core.scheduler import JobSpec, every

# Approvers are reminded this long before the deadline (and once only per campaign).
REMINDER_BEFORE = dt.timedelta(days=2)


def move_campaigns_past_deadline(ctx) -> dict:
    """Campaigns whose approval deadline has passed: pending answers expire (declined), then ready or cancelled.

    The same rule as the staff's button (``campaigns.services.apply_deadline``); idempotent.
    """
    moved: dict[str, int] = {}
    due = ctx.session.scalars(
        select(Campaign).where(Campaign.status == "awaiting_approvals", Campaign.approval_deadline <= ctx.now)
    ).all()
    for campaign in due:
        status = apply_deadline(ctx.session, campaign, now=ctx.now)
        if status:
            moved[status] = moved.get(status, 0) + 1
    return {"moved": moved}


def count_funnels(ctx) -> dict:
    """Bring the kept approval funnels up to date with the data (campaigns.funnel_store)."""
    return refresh_funnels(ctx.session, commit=ctx.session.commit)


def remind_approvers(ctx) -> dict:
    """Remind organisations that have not answered a request (contacting or as data provider) whose
    deadline is near, once each; every reminder is recorded (``campaigns.followup``)."""
    sent = 0
    for model, key in ((Approval, "approval-reminder"), (ProviderApproval, "provider-reminder")):
        pending = ctx.session.scalars(
            select(model)
            .join(Campaign, Campaign.id == model.campaign_id)
            .where(
                Campaign.status == "awaiting_approvals",
                model.status == "pending",
                Campaign.approval_deadline > ctx.now,
                Campaign.approval_deadline <= ctx.now + REMINDER_BEFORE,
            )
            .order_by(model.id)
        ).all()
        for request in pending:
            made = send_reminder(ctx.session, request, "job", now=ctx.now, dedupe_key=f"{key}-{request.id}")
            sent += made is not None
    return {"reminders": sent}


JOBS = [
    JobSpec(
        "campaigns.deadlines",
        move_campaigns_past_deadline,
        every(minutes=15),
        _l("Move campaigns whose approval deadline has passed"),
    ),
    JobSpec("campaigns.reminders", remind_approvers, every(hours=1), _l("Remind approvers before the deadline")),
    JobSpec(
        "campaigns.funnels",
        count_funnels,
        every(minutes=1),
        _l("Count the campaigns' approval funnels again after the data changed"),
    ),
]
