"""Campaign operations: the campaign, its arms and its workflow up to "ready" (approvals in campaigns.approvals).

Every function flushes and never commits: the view, command or job that calls it owns the
transaction. A workflow step whose conditions are not met raises :class:`TransitionRefused` with a
reason that can be shown as is; every step that happens is written to the audit log (who, when).
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from campaigns import offers
from campaigns.common import CampaignError, TransitionRefused, actor_id, audit_as
from campaigns.eligibility import eligible_count
from campaigns.models import (
    METRICS,
    OBJECTIVES,
    PRIMARY_METRICS,
    TRANSITIONS,
    Approval,
    Campaign,
    Promotion,
    ProviderApproval,
)
from core.models import Contact, Organisation, Venue, utcnow
from segments.models import Segment, SegmentSnapshot, SnapshotMember

MIN_CONTROL_SHARE = 10
MAX_WINDOW_DAYS = 365


# --- campaigns ----------------------------------------------------------------------------------


def make_arms(control_share: int, test_shares: Sequence[int], promotion_ids: Sequence[int | None] = ()) -> list[dict]:
    """Arms as stored: ``control`` then ``A``, ``B``... with whole-percent shares; a test arm gets
    ``promotion_id`` when ``promotion_ids`` names one at its position (``campaigns.offers``)."""
    arms = [{"name": "control", "share": int(control_share)}]
    chosen = [(s, promotion_ids[i] if i < len(promotion_ids) else None) for i, s in enumerate(test_shares)]
    for i, (share, promotion_id) in enumerate((s, p) for s, p in chosen if s):
        arms.append(
            {
                "name": chr(ord("A") + i),
                "share": int(share),
                **({"promotion_id": int(promotion_id)} if promotion_id else {}),
            }
        )
    return arms


def check_arms(arms: Sequence[dict]) -> None:
    """Refuse arms without a control of at least 10%, without a test arm, or not summing to 100%."""
    names = [a.get("name") for a in arms]
    if len(set(names)) != len(names):
        raise CampaignError(_("Each arm needs its own name."))
    control = [a for a in arms if a.get("name") == "control"]
    tests = [a for a in arms if a.get("name") != "control"]
    if not control or int(control[0]["share"]) < MIN_CONTROL_SHARE:
        raise CampaignError(
            _("The control group must receive at least %(n)d%% of the recipients.", n=MIN_CONTROL_SHARE)
        )
    if not tests:
        raise CampaignError(_("Plan at least one test arm beside the control group."))
    if any(int(a["share"]) <= 0 for a in arms):
        raise CampaignError(_("Every arm needs a share greater than zero."))
    if any(a.get("promotion_id") for a in control):
        raise CampaignError(_("The control group receives no offer."))
    total = sum(int(a["share"]) for a in arms)
    if total != 100:
        raise CampaignError(_("The shares of the arms add up to %(total)d%%, not 100%%.", total=total))


def _check_campaign(campaign: Campaign) -> None:
    if not (campaign.name or "").strip():
        raise CampaignError(_("The campaign needs a name."))
    if campaign.objective not in OBJECTIVES:
        raise CampaignError(_("Unknown objective: %(name)s.", name=campaign.objective))
    check_arms(campaign.arms or [])
    if not 1 <= (campaign.window_days or 0) <= MAX_WINDOW_DAYS:
        raise CampaignError(_("The attribution window takes 1 to %(n)d days.", n=MAX_WINDOW_DAYS))
    if campaign.primary_metric not in PRIMARY_METRICS:
        raise CampaignError(
            _(
                "The primary metric must be conversion, revenue, tickets or cross-sell "
                "(redemption is reported as uptake, never as a lift)."
            )
        )
    unknown = set(campaign.secondary_metrics or ()) - set(METRICS)
    if unknown:
        raise CampaignError(_("Unknown metric: %(names)s.", names=", ".join(sorted(unknown))))
    if campaign.approval_deadline is None or campaign.planned_launch_at is None:
        raise CampaignError(_("Set the approval deadline and the planned launch."))
    if campaign.planned_launch_at <= campaign.approval_deadline:
        raise CampaignError(_("The planned launch must come after the approval deadline."))


def _check_arm_promotions(session: Session, campaign: Campaign) -> None:
    if offers.unknown_promotions(session, campaign.arms or []):
        raise CampaignError(_("An arm names a promotion that does not exist."))


CAMPAIGN_FIELDS = (
    "name",
    "objective",
    "segment_id",
    "promotion_id",
    "arms",
    "window_days",
    "primary_metric",
    "secondary_metrics",
    "approval_deadline",
    "planned_launch_at",
)


def create_campaign(
    session: Session,
    *,
    name: str,
    objective: str,
    segment_id: int | None,
    promotion_id: int | None,
    arms: list[dict],
    approval_deadline: dt.datetime,
    planned_launch_at: dt.datetime,
    window_days: int = 30,
    primary_metric: str = "conversion",
    secondary_metrics: Sequence[str] = (),
    user=None,
) -> Campaign:
    """Create a draft campaign (flushes).

    :param arms: ``make_arms(control_share, [test shares])``; control at least 10%, sum 100%.
    :param approval_deadline: naive UTC; non-response by then counts as declined.
    :param planned_launch_at: naive UTC, after the deadline; consent is judged at this moment.
    :raises CampaignError: when the plan breaks a rule.
    """
    params = dict(locals())
    campaign = Campaign(status="draft", created_by_id=actor_id(user), channel="email")
    for name_ in CAMPAIGN_FIELDS:
        value = params[name_]
        setattr(campaign, name_, list(value) if name_ == "secondary_metrics" else value)
    campaign.secondary_metrics = [m for m in campaign.secondary_metrics if m != primary_metric]
    _check_campaign(campaign)
    _check_arm_promotions(session, campaign)
    session.add(campaign)
    session.flush()
    audit_as(
        session,
        user,
        "campaign.create",
        object_type="campaign",
        object_id=campaign.id,
    )
    return campaign


def update_campaign(session: Session, campaign: Campaign, user=None, **fields) -> Campaign:
    """Change a draft campaign's plan (flushes); refused once it is submitted."""
    if campaign.status != "draft":
        raise TransitionRefused(
            _("Only a draft campaign can be changed; this one is %(status)s.", status=status_label(campaign.status))
        )
    unknown = set(fields) - set(CAMPAIGN_FIELDS)
    if unknown:
        raise TypeError(f"unknown campaign fields: {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.secondary_metrics = [m for m in campaign.secondary_metrics or [] if m != campaign.primary_metric]
    _check_campaign(campaign)
    _check_arm_promotions(session, campaign)
    session.flush()
    audit_as(
        session,
        user,
        "campaign.update",
        object_type="campaign",
        object_id=campaign.id,
        fields=sorted(fields),
    )
    return campaign


def status_label(status: str) -> str:
    labels = {
        "draft": _("draft"),
        "awaiting_approvals": _("awaiting approvals"),
        "ready": _("ready to launch"),
        "launched": _("launched"),
        "measuring": _("measuring"),
        "closed": _("closed"),
        "cancelled": _("cancelled"),
    }
    return labels.get(status, status)


def _move(session: Session, campaign: Campaign, to: str, user, action: str, **details) -> None:
    """Change the status if the workflow allows it, and write who and when to the audit log."""
    before = campaign.status
    if to not in TRANSITIONS.get(before, ()):
        raise TransitionRefused(
            _(
                "A campaign that is %(before)s cannot become %(after)s.",
                before=status_label(before),
                after=status_label(to),
            )
        )
    campaign.status = to
    session.flush()
    audit_as(
        session,
        user,
        f"campaign.{action}",
        object_type="campaign",
        object_id=campaign.id,
        **{"from": before, "to": to},
        **details,
    )


def _segment_snapshot(session: Session, campaign: Campaign, user, now: dt.datetime) -> SegmentSnapshot:
    """Freeze the segment: a snapshot of its current version's members as of today, taken now."""
    segment = session.get(Segment, campaign.segment_id) if campaign.segment_id else None
    if segment is None:
        raise TransitionRefused(_("Choose a segment before submitting the campaign."))
    version = segment.current
    if version is None:
        raise TransitionRefused(_("The segment %(name)s has no rule yet.", name=segment.name))
    from segments.snapshots import take_snapshot

    return take_snapshot(session, version, now.date(), user=user)


def _snapshot_organisations(session: Session, snapshot_id: int) -> list[tuple[int, int]]:
    """(organisation_id, spectators) of every organisation holding a record of a snapshot member."""
    return list(
        session.execute(
            select(Contact.organisation_id, func.count())
            .join(
                SnapshotMember,
                (SnapshotMember.spectator_id == Contact.spectator_id) & (SnapshotMember.snapshot_id == snapshot_id),
            )
            .group_by(Contact.organisation_id)
            .order_by(Contact.organisation_id)
        ).all()
    )


def submit_for_approval(
    session: Session,
    campaign: Campaign,
    user=None,
    now: dt.datetime | None = None,
    snapshot: SegmentSnapshot | None = None,
) -> list[Approval]:
    """Draft → awaiting approvals: freeze the segment and ask every organisation with spectators in it.

    :param snapshot: the frozen list to use (default: the segment's snapshot of today, taken if needed).
    :returns: the approval requests, one per organisation with spectators in the snapshot.
    :raises TransitionRefused: not a draft, a plan that breaks a rule, a deadline already past, a
        promotion not valid at launch, or nobody in the snapshot.
    """
    now = now or utcnow()
    if "awaiting_approvals" not in TRANSITIONS.get(campaign.status, ()):
        raise TransitionRefused(
            _("Only a draft campaign can be submitted; this one is %(status)s.", status=status_label(campaign.status))
        )
    try:
        _check_campaign(campaign)
    except CampaignError as exc:
        raise TransitionRefused(exc.reason) from None
    promotion = session.get(Promotion, campaign.promotion_id) if campaign.promotion_id else None
    if promotion is None:
        raise TransitionRefused(_("Choose a promotion before submitting the campaign."))
    if campaign.approval_deadline <= now:
        raise TransitionRefused(_("The approval deadline has already passed: move it later."))
    launch_day = campaign.planned_launch_at.date()
    for item in {
        promotion.id: promotion,
        **{p.id: p for p in offers.arm_promotions(session, campaign).values() if p is not None},
    }.values():
        if not item.valid_from <= launch_day <= item.valid_until:
            raise TransitionRefused(
                _(
                    "The promotion is valid from %(start)s to %(end)s: the planned launch "
                    "(%(launch)s) must fall within it.",
                    start=item.valid_from.isoformat(),
                    end=item.valid_until.isoformat(),
                    launch=launch_day.isoformat(),
                )
            )
    if snapshot is None:
        snapshot = _segment_snapshot(session, campaign, user, now)
    elif snapshot.version is None or snapshot.version.segment_id != campaign.segment_id:
        raise TransitionRefused(_("This snapshot belongs to another segment."))
    organisations = _snapshot_organisations(session, snapshot.id)
    if not organisations:
        raise TransitionRefused(_("Nobody in the segment is known to an organisation: there is no one to ask."))
    campaign.snapshot_id = snapshot.id
    campaign.submitted_at = now
    approvals = [
        Approval(
            campaign_id=campaign.id, organisation_id=org_id, segment_count=count, status="pending", requested_at=now
        )
        for org_id, count in organisations
    ]
    session.add_all(approvals)
    providers = named_organisations(session, snapshot.version.rule if snapshot.version else None)
    session.add_all(
        ProviderApproval(campaign_id=campaign.id, organisation_id=org_id, status="pending", requested_at=now)
        for org_id in providers
    )
    _move(
        session,
        campaign,
        "awaiting_approvals",
        user,
        "submit",
        snapshot_id=snapshot.id,
        organisations=len(approvals),
        segment_size=snapshot.size,
        data_providers=len(providers),
    )
    return approvals


# --- data providers -----------------------------------------------------------------------------


def named_organisations(session: Session, rule) -> list[int]:
    """The organisations a rule names, by their slug or through one of their venues (by name or id),
    anywhere in the rule (under a "not" too: "did not buy at X" is a fact about X's sales as well)."""
    from segments.rules import RuleError, iter_conditions, parse_rule

    if not rule:
        return []
    try:
        conditions = list(iter_conditions(parse_rule(rule)))
    except RuleError:
        return []
    slugs = {v for c in conditions if c.field == "organisation" for v in c.value}
    venues = {v for c in conditions if c.field == "venue" for v in c.value}
    ids = set()
    if slugs:
        ids.update(session.scalars(select(Organisation.id).where(Organisation.slug.in_(sorted(slugs)))))
    if venues:
        numbers = [int(v) for v in venues if v.isdigit() and len(v) < 10]
        ids.update(
            session.scalars(
                select(Venue.organisation_id).where(or_(Venue.name.in_(sorted(venues)), Venue.id.in_(numbers)))
            )
        )
    return sorted(ids)


def provider_blockers(session: Session, campaign: Campaign) -> list[str]:
    """Names of the organisations the rule names that have not approved as data provider while
    another organisation approved receiving a list drawn with it (a provider's own list needs no
    one's approval but its own)."""
    providers = session.scalars(select(ProviderApproval).where(ProviderApproval.campaign_id == campaign.id)).all()
    approved = set(
        session.scalars(
            select(Approval.organisation_id).where(Approval.campaign_id == campaign.id, Approval.status == "approved")
        )
    )
    return sorted(p.organisation.name for p in providers if p.status != "approved" and approved - {p.organisation_id})


def _expire_pending(session: Session, campaign: Campaign, user=None, before_deadline: bool = False) -> int:
    """Mark every approval still pending as expired (no answer counts as declined).

    :param before_deadline: staff closed the approvals early (logged with each expiry).
    """
    pending = session.scalars(
        select(Approval).where(Approval.campaign_id == campaign.id, Approval.status == "pending")
    ).all()
    for approval in pending:
        approval.status = "expired"
        audit_as(
            session,
            user,
            "approval.expire",
            object_type="approval",
            object_id=approval.id,
            organisation_id=approval.organisation_id,
            campaign_id=campaign.id,
            before_deadline=before_deadline,
        )
    for provider in session.scalars(
        select(ProviderApproval).where(
            ProviderApproval.campaign_id == campaign.id, ProviderApproval.status == "pending"
        )
    ):
        provider.status = "expired"  # no answer from a data provider counts as declined too
    session.flush()
    return len(pending)


def mark_ready(
    session: Session, campaign: Campaign, user=None, now: dt.datetime | None = None, unanswered_confirmed: int = 0
) -> int:
    """Awaiting approvals → ready, once at least one approval leaves eligible recipients.

    Non-response counts as declined: organisations still pending become ``expired``. Before the
    deadline that happens only when the user confirmed it for at least as many organisations as are
    still pending (``unanswered_confirmed``, the number the confirm page listed); the audit log
    records how many were closed and that it was before the deadline.

    :returns: the number of eligible recipients.
    """
    now = now or utcnow()
    if "ready" not in TRANSITIONS.get(campaign.status, ()):
        raise TransitionRefused(
            _(
                "Only a campaign awaiting approvals can be made ready; this one is %(status)s.",
                status=status_label(campaign.status),
            )
        )
    pending = (
        session.scalar(
            select(func.count())
            .select_from(Approval)
            .where(Approval.campaign_id == campaign.id, Approval.status == "pending")
        )
        or 0
    )
    early = bool(pending) and now < campaign.approval_deadline
    if early and pending > unanswered_confirmed:
        raise TransitionRefused(
            ngettext(
                "%(num)d organisation has not answered yet: confirm that it counts as declined, or wait for its "
                "answer or for the deadline.",
                "%(num)d organisations have not answered yet: confirm that they count as declined, or wait for "
                "their answers or for the deadline.",
                pending,
            )
        )
    if pending:
        _expire_pending(session, campaign, user, before_deadline=early)
    approved = (
        session.scalar(
            select(func.count())
            .select_from(Approval)
            .where(Approval.campaign_id == campaign.id, Approval.status == "approved")
        )
        or 0
    )
    if not approved:
        raise TransitionRefused(_("No organisation approved this campaign: it cannot be launched."))
    blockers = provider_blockers(session, campaign)
    if blockers:
        raise TransitionRefused(
            _(
                "Not approved as data provider: %(names)s. The rule names them and other "
                "organisations would receive a list drawn with their data: the campaign cannot be "
                "launched until they approve.",
                names=", ".join(blockers),
            )
        )
    eligible = eligible_count(session, campaign)
    if not eligible:
        raise TransitionRefused(
            _(
                "No spectator is eligible (consent at launch, approvals and exclusions leave "
                "nobody): the campaign cannot be launched."
            )
        )
    campaign.ready_at = now
    _move(
        session, campaign, "ready", user, "ready", eligible=eligible, unanswered_declined=pending, before_deadline=early
    )
    return eligible


def apply_deadline(session: Session, campaign: Campaign, now: dt.datetime | None = None, user=None) -> str | None:
    """What the scheduler does once the approval deadline has passed (idempotent).

    Pending approvals expire (counted as declined); the campaign becomes ready when at least one
    approval leaves eligible recipients, and is cancelled otherwise.

    :returns: the new status, or None when there was nothing to do.
    """
    now = now or utcnow()
    if campaign.status != "awaiting_approvals" or now < campaign.approval_deadline:
        return None
    _expire_pending(session, campaign, user)
    try:
        mark_ready(session, campaign, user=user, now=now)
    except TransitionRefused as exc:
        cancel(session, campaign, user=user, reason=exc.reason, now=now)
    return campaign.status


def cancel(session: Session, campaign: Campaign, user=None, reason: str = "", now: dt.datetime | None = None) -> None:
    """Draft, awaiting approvals or ready → cancelled (irreversible), with a reason."""
    now = now or utcnow()
    reason = (reason or "").strip()
    if not reason:
        raise TransitionRefused(_("Give a reason for cancelling the campaign."))
    if "cancelled" not in TRANSITIONS.get(campaign.status, ()):
        raise TransitionRefused(
            _("A campaign that is %(status)s can no longer be cancelled.", status=status_label(campaign.status))
        )
    campaign.cancelled_at = now
    campaign.cancel_reason = reason
    _move(session, campaign, "cancelled", user, "cancel", reason=reason)


def mark_launched(session: Session, campaign: Campaign, user=None, now: dt.datetime | None = None) -> None:
    """Ready → launched (called by the experiments package once recipients are assigned)."""
    now = now or utcnow()
    _move(session, campaign, "launched", user, "launch")
    campaign.launched_at = now


def mark_measuring(session: Session, campaign: Campaign, user=None, now: dt.datetime | None = None) -> None:
    """Launched → measuring (the sending is over; outcomes accrue during the attribution window)."""
    _move(session, campaign, "measuring", user, "measure")


def mark_closed(session: Session, campaign: Campaign, user=None, now: dt.datetime | None = None) -> None:
    """Measuring → closed (the window is over and the report is final)."""
    now = now or utcnow()
    if campaign.launched_at and now < campaign.launched_at + dt.timedelta(days=campaign.window_days):
        raise TransitionRefused(_("The attribution window is not over yet."))
    _move(session, campaign, "closed", user, "close")
    campaign.closed_at = now


# The venue's answers live in campaigns.approvals, which builds on this module: imported last, and
# named here too so that ``services.decide_approval`` and the like keep working.
from campaigns.approvals import (  # noqa: E402
    ContactLine,
    answered_counts,
    approval_contacts,
    clear_exclusion_list,
    decide_approval,
    decide_provider,
    lifecycle_mix,
    set_exclusion_list,
    unanswered_organisations,
)

__all__ = [
    "ContactLine",
    "answered_counts",
    "approval_contacts",
    "clear_exclusion_list",
    "decide_approval",
    "decide_provider",
    "lifecycle_mix",
    "set_exclusion_list",
    "unanswered_organisations",
]
