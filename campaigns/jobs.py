"""Scheduled jobs of the campaigns package: approval deadlines and reminders to approvers."""

from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from campaigns.models import Approval, Campaign
from campaigns.services import apply_deadline
from core.jobs import notify
from core.localtime import local_time
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


def remind_approvers(ctx) -> dict:
    """Remind organisations that have not answered a request whose deadline is near (once each)."""
    pending = ctx.session.execute(
        select(Approval, Campaign)
        .join(Campaign, Campaign.id == Approval.campaign_id)
        .where(Campaign.status == "awaiting_approvals", Approval.status == "pending",
               Campaign.approval_deadline > ctx.now, Campaign.approval_deadline <= ctx.now + REMINDER_BEFORE)
    ).all()
    sent = 0
    for approval, campaign in pending:
        deadline = local_time(campaign.approval_deadline)  # Montreal time, as every page shows it
        made = notify(
            ctx.session, approval.organisation_id, "approval.reminder",
            f"Rappel : la campagne « {campaign.name} » attend votre réponse avant le {deadline} (heure de Montréal). "
            "Sans réponse, elle comptera comme un refus.",
            f"Reminder: the campaign “{campaign.name}” awaits your answer before {deadline} (Montreal time). "
            "Without an answer it counts as declined.",
            link=f"/campaigns/approvals/{approval.id}",
            dedupe_key=f"approval-reminder-{approval.id}",
        )
        sent += made is not None
    return {"reminders": sent}


JOBS = [
    JobSpec("campaigns.deadlines", move_campaigns_past_deadline, every(minutes=15),
            _l("Move campaigns whose approval deadline has passed")),
    JobSpec("campaigns.reminders", remind_approvers, every(hours=1),
            _l("Remind approvers before the deadline")),
]
