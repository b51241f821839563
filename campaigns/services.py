"""Campaign operations: promotions, the workflow up to "ready", venue approvals, exclusions, erasure.

Every function flushes and never commits: the view, command or job that calls it owns the
transaction. A workflow step whose conditions are not met raises :class:`TransitionRefused` with a
reason that can be shown as is; every step that happens is written to the audit log (who, when).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Iterable, Sequence

from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from campaigns import offers
from campaigns.eligibility import eligible_count
from campaigns.models import (
    CODE_STRATEGIES,
    METRICS,
    OBJECTIVES,
    OFFER_KINDS,
    PRIMARY_METRICS,
    TRANSITIONS,
    Approval,
    Campaign,
    Promotion,
    ProviderApproval,
)
from core.identity import identity_basis, normalise_email, spectator_key
from core.models import DISCIPLINES, Consent, Contact, Organisation, Show, Spectator, Venue, audit, utcnow
from core.scrub import Identities, scrub_files
from segments.models import Segment, SegmentSnapshot, SnapshotMember

MIN_CONTROL_SHARE = 10
MAX_WINDOW_DAYS = 365
# Unique codes: no 0/O, 1/I/L, 2/Z, 5/S, 8/B, so that a code read aloud or retyped is the code.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 10  # 25**10 ≈ 10**14: guessing one of 500,000 live codes takes ~2*10**8 tries
SHARED_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,38}[A-Z0-9]$")
SCHEDULER = "scheduler"
# An erased spectator's key: never an HMAC (those are 64 hex digits), so no identity finds it again.
ERASED_KEY_PREFIX = "erased:"


class CampaignError(ValueError):
    """A request the campaign rules refuse; ``reason`` is a sentence for the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TransitionRefused(CampaignError):
    """A workflow transition whose conditions are not met."""


def _actor(user) -> str:
    return getattr(user, "email", None) or SCHEDULER


def _user_id(user) -> int | None:
    return getattr(user, "id", None)


# --- codes --------------------------------------------------------------------------------------

def generate_code(length: int = CODE_LENGTH) -> str:
    """One unguessable promotion code from :data:`CODE_ALPHABET` (cryptographic randomness)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def generate_codes(count: int, length: int = CODE_LENGTH, taken: Iterable[str] = ()) -> list[str]:
    """``count`` distinct codes, none of them in ``taken`` (one per recipient at launch)."""
    seen = set(taken)
    codes: list[str] = []
    while len(codes) < count:
        code = generate_code(length)
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


# --- promotions ---------------------------------------------------------------------------------

def _check_promotion(fields: dict) -> None:
    kind = fields["offer_kind"]
    if kind not in OFFER_KINDS:
        raise CampaignError(_("Unknown kind of offer: %(kind)s.", kind=kind))
    value = fields.get("offer_value")
    if kind == "percent_off" and not (value and 1 <= value <= 100):
        raise CampaignError(_("A percentage off needs a value between 1 and 100."))
    if kind == "amount_off" and not (value and value > 0):
        raise CampaignError(_("An amount off needs an amount greater than zero."))
    if fields["valid_until"] < fields["valid_from"]:
        raise CampaignError(_("The promotion must end on or after the day it starts."))
    if not fields.get("organisation_ids"):
        raise CampaignError(_("Choose at least one participating organisation."))
    unknown = set(fields.get("disciplines") or ()) - set(DISCIPLINES)
    if unknown:
        raise CampaignError(_("Unknown discipline: %(names)s.", names=", ".join(sorted(unknown))))
    strategy = fields.get("code_strategy", "unique")
    if strategy not in CODE_STRATEGIES:
        raise CampaignError(_("Unknown code strategy: %(name)s.", name=strategy))
    if strategy == "shared" and not SHARED_CODE.match(fields.get("shared_code") or ""):
        raise CampaignError(_("A shared code takes 4 to 40 capital letters, digits or dashes."))
    for name in ("average_discount_cents", "cost_per_contact_cents"):
        if (fields.get(name) or 0) < 0:
            raise CampaignError(_("Costs cannot be negative."))


def _apply_promotion(session: Session, promotion: Promotion, fields: dict) -> None:
    fields = dict(fields)
    if fields.get("code_strategy") == "shared" and fields.get("shared_code"):
        fields["shared_code"] = fields["shared_code"].strip().upper()
    _check_promotion(fields)
    org_ids = list(fields.pop("organisation_ids"))
    show_ids = list(fields.pop("show_ids", None) or ())
    fields["disciplines"] = ",".join(fields.pop("disciplines", None) or ())
    if fields.get("code_strategy") != "shared":
        fields["shared_code"] = None
    if fields["offer_kind"] not in ("percent_off", "amount_off"):
        fields["offer_value"] = None
    for name, value in fields.items():
        setattr(promotion, name, value)
    promotion.organisations = list(session.scalars(select(Organisation).where(Organisation.id.in_(org_ids))))
    if len(promotion.organisations) != len(set(org_ids)):
        raise CampaignError(_("One of the chosen organisations does not exist."))
    promotion.shows = list(session.scalars(select(Show).where(Show.id.in_(show_ids)))) if show_ids else []


def create_promotion(session: Session, *, name_fr: str, name_en: str, message_fr: str, message_en: str,
                     offer_kind: str, offer_value: int | None = None, organisation_ids: Sequence[int],
                     show_ids: Sequence[int] = (), disciplines: Sequence[str] = (), valid_from: dt.date,
                     valid_until: dt.date, code_strategy: str = "unique", shared_code: str | None = None,
                     average_discount_cents: int = 0, cost_per_contact_cents: int = 0, user=None) -> Promotion:
    """Create a promotion (flushes).

    :param offer_value: whole percent for ``percent_off``, cents for ``amount_off``, else ignored.
    :param code_strategy: ``unique`` (one unguessable code per recipient, made at launch) or
        ``shared`` (``shared_code`` for everyone).
    :param average_discount_cents: the discount a redemption costs on average (for the ROI report).
    :param cost_per_contact_cents: what sending to one recipient costs.
    :raises CampaignError: when a field breaks the rules.
    """
    params = dict(locals())
    fields = {k: v for k, v in params.items() if k not in ("session", "user")}
    promotion = Promotion(created_by_id=_user_id(user))
    _apply_promotion(session, promotion, fields)
    session.add(promotion)
    session.flush()
    audit(session, "promotion.create", actor=_actor(user), user_id=_user_id(user), object_type="promotion",
          object_id=promotion.id)
    return promotion


def update_promotion(session: Session, promotion: Promotion, user=None, **fields) -> Promotion:
    """Change a promotion while every campaign using it is still a draft (flushes)."""
    if offers.campaigns_using(session, promotion.id):
        raise CampaignError(_("This promotion is used by a campaign already submitted: create a new promotion instead."))
    current = {
        "name_fr": promotion.name_fr, "name_en": promotion.name_en, "message_fr": promotion.message_fr,
        "message_en": promotion.message_en, "offer_kind": promotion.offer_kind, "offer_value": promotion.offer_value,
        "organisation_ids": [o.id for o in promotion.organisations], "show_ids": [s.id for s in promotion.shows],
        "disciplines": promotion.discipline_list, "valid_from": promotion.valid_from,
        "valid_until": promotion.valid_until, "code_strategy": promotion.code_strategy,
        "shared_code": promotion.shared_code, "average_discount_cents": promotion.average_discount_cents,
        "cost_per_contact_cents": promotion.cost_per_contact_cents,
    }
    unknown = set(fields) - set(current)
    if unknown:
        raise TypeError(f"unknown promotion fields: {', '.join(sorted(unknown))}")
    current.update(fields)
    _apply_promotion(session, promotion, current)
    session.flush()
    audit(session, "promotion.update", actor=_actor(user), user_id=_user_id(user), object_type="promotion",
          object_id=promotion.id)
    return promotion


# --- campaigns ----------------------------------------------------------------------------------

def make_arms(control_share: int, test_shares: Sequence[int],
              promotion_ids: Sequence[int | None] = ()) -> list[dict]:
    """Arms as stored: ``control`` then ``A``, ``B``... with whole-percent shares; a test arm gets
    ``promotion_id`` when ``promotion_ids`` names one at its position (``campaigns.offers``)."""
    arms = [{"name": "control", "share": int(control_share)}]
    chosen = [(s, promotion_ids[i] if i < len(promotion_ids) else None) for i, s in enumerate(test_shares)]
    for i, (share, promotion_id) in enumerate((s, p) for s, p in chosen if s):
        arms.append({"name": chr(ord("A") + i), "share": int(share),
                     **({"promotion_id": int(promotion_id)} if promotion_id else {})})
    return arms


def check_arms(arms: Sequence[dict]) -> None:
    """Refuse arms without a control of at least 10%, without a test arm, or not summing to 100%."""
    names = [a.get("name") for a in arms]
    if len(set(names)) != len(names):
        raise CampaignError(_("Each arm needs its own name."))
    control = [a for a in arms if a.get("name") == "control"]
    tests = [a for a in arms if a.get("name") != "control"]
    if not control or int(control[0]["share"]) < MIN_CONTROL_SHARE:
        raise CampaignError(_("The control group must receive at least %(n)d%% of the recipients.", n=MIN_CONTROL_SHARE))
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
        raise CampaignError(_("The primary metric must be conversion, revenue, tickets or cross-sell "
                              "(redemption is reported as uptake, never as a lift)."))
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


CAMPAIGN_FIELDS = ("name", "objective", "segment_id", "promotion_id", "arms", "window_days", "primary_metric",
                   "secondary_metrics", "approval_deadline", "planned_launch_at")


def create_campaign(session: Session, *, name: str, objective: str, segment_id: int | None,
                    promotion_id: int | None, arms: list[dict], approval_deadline: dt.datetime,
                    planned_launch_at: dt.datetime, window_days: int = 30, primary_metric: str = "conversion",
                    secondary_metrics: Sequence[str] = (), user=None) -> Campaign:
    """Create a draft campaign (flushes).

    :param arms: ``make_arms(control_share, [test shares])``; control at least 10%, sum 100%.
    :param approval_deadline: naive UTC; non-response by then counts as declined.
    :param planned_launch_at: naive UTC, after the deadline; consent is judged at this moment.
    :raises CampaignError: when the plan breaks a rule.
    """
    params = dict(locals())
    campaign = Campaign(status="draft", created_by_id=_user_id(user), channel="email")
    for name_ in CAMPAIGN_FIELDS:
        value = params[name_]
        setattr(campaign, name_, list(value) if name_ == "secondary_metrics" else value)
    campaign.secondary_metrics = [m for m in campaign.secondary_metrics if m != primary_metric]
    _check_campaign(campaign)
    _check_arm_promotions(session, campaign)
    session.add(campaign)
    session.flush()
    audit(session, "campaign.create", actor=_actor(user), user_id=_user_id(user), object_type="campaign",
          object_id=campaign.id)
    return campaign


def update_campaign(session: Session, campaign: Campaign, user=None, **fields) -> Campaign:
    """Change a draft campaign's plan (flushes); refused once it is submitted."""
    if campaign.status != "draft":
        raise TransitionRefused(_("Only a draft campaign can be changed; this one is %(status)s.",
                                  status=status_label(campaign.status)))
    unknown = set(fields) - set(CAMPAIGN_FIELDS)
    if unknown:
        raise TypeError(f"unknown campaign fields: {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.secondary_metrics = [m for m in campaign.secondary_metrics or [] if m != campaign.primary_metric]
    _check_campaign(campaign)
    _check_arm_promotions(session, campaign)
    session.flush()
    audit(session, "campaign.update", actor=_actor(user), user_id=_user_id(user), object_type="campaign",
          object_id=campaign.id, fields=sorted(fields))
    return campaign


def status_label(status: str) -> str:
    labels = {
        "draft": _("draft"), "awaiting_approvals": _("awaiting approvals"), "ready": _("ready to launch"),
        "launched": _("launched"), "measuring": _("measuring"), "closed": _("closed"), "cancelled": _("cancelled"),
    }
    return labels.get(status, status)


def _move(session: Session, campaign: Campaign, to: str, user, action: str, **details) -> None:
    """Change the status if the workflow allows it, and write who and when to the audit log."""
    before = campaign.status
    if to not in TRANSITIONS.get(before, ()):
        raise TransitionRefused(_("A campaign that is %(before)s cannot become %(after)s.",
                                  before=status_label(before), after=status_label(to)))
    campaign.status = to
    session.flush()
    audit(session, f"campaign.{action}", actor=_actor(user), user_id=_user_id(user), object_type="campaign",
          object_id=campaign.id, **{"from": before, "to": to}, **details)


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
    return list(session.execute(
        select(Contact.organisation_id, func.count())
        .join(SnapshotMember, (SnapshotMember.spectator_id == Contact.spectator_id)
              & (SnapshotMember.snapshot_id == snapshot_id))
        .group_by(Contact.organisation_id)
        .order_by(Contact.organisation_id)
    ).all())


def submit_for_approval(session: Session, campaign: Campaign, user=None, now: dt.datetime | None = None,
                        snapshot: SegmentSnapshot | None = None) -> list[Approval]:
    """Draft → awaiting approvals: freeze the segment and ask every organisation with spectators in it.

    :param snapshot: the frozen list to use (default: the segment's snapshot of today, taken if needed).
    :returns: the approval requests, one per organisation with spectators in the snapshot.
    :raises TransitionRefused: not a draft, a plan that breaks a rule, a deadline already past, a
        promotion not valid at launch, or nobody in the snapshot.
    """
    now = now or utcnow()
    if "awaiting_approvals" not in TRANSITIONS.get(campaign.status, ()):
        raise TransitionRefused(_("Only a draft campaign can be submitted; this one is %(status)s.",
                                  status=status_label(campaign.status)))
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
    for item in {promotion.id: promotion, **{p.id: p for p in offers.arm_promotions(session, campaign).values()
                                             if p is not None}}.values():
        if not item.valid_from <= launch_day <= item.valid_until:
            raise TransitionRefused(_("The promotion is valid from %(start)s to %(end)s: the planned launch "
                                      "(%(launch)s) must fall within it.", start=item.valid_from.isoformat(),
                                      end=item.valid_until.isoformat(), launch=launch_day.isoformat()))
    if snapshot is None:
        snapshot = _segment_snapshot(session, campaign, user, now)
    elif snapshot.version is None or snapshot.version.segment_id != campaign.segment_id:
        raise TransitionRefused(_("This snapshot belongs to another segment."))
    organisations = _snapshot_organisations(session, snapshot.id)
    if not organisations:
        raise TransitionRefused(_("Nobody in the segment is known to an organisation: there is no one to ask."))
    campaign.snapshot_id = snapshot.id
    campaign.submitted_at = now
    approvals = [Approval(campaign_id=campaign.id, organisation_id=org_id, segment_count=count, status="pending",
                          requested_at=now) for org_id, count in organisations]
    session.add_all(approvals)
    providers = named_organisations(session, snapshot.version.rule if snapshot.version else None)
    session.add_all(ProviderApproval(campaign_id=campaign.id, organisation_id=org_id, status="pending",
                                     requested_at=now) for org_id in providers)
    _move(session, campaign, "awaiting_approvals", user, "submit", snapshot_id=snapshot.id,
          organisations=len(approvals), segment_size=snapshot.size, data_providers=len(providers))
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
        ids.update(session.scalars(select(Venue.organisation_id).where(
            or_(Venue.name.in_(sorted(venues)), Venue.id.in_(numbers)))))
    return sorted(ids)


def provider_blockers(session: Session, campaign: Campaign) -> list[str]:
    """Names of the organisations the rule names that have not approved as data provider while
    another organisation approved receiving a list drawn with it (a provider's own list needs no
    one's approval but its own)."""
    providers = session.scalars(select(ProviderApproval).where(ProviderApproval.campaign_id == campaign.id)).all()
    approved = set(session.scalars(select(Approval.organisation_id).where(
        Approval.campaign_id == campaign.id, Approval.status == "approved")))
    return sorted(p.organisation.name for p in providers
                  if p.status != "approved" and approved - {p.organisation_id})


def _expire_pending(session: Session, campaign: Campaign, user=None, before_deadline: bool = False) -> int:
    """Mark every approval still pending as expired (no answer counts as declined).

    :param before_deadline: staff closed the approvals early (logged with each expiry).
    """
    pending = session.scalars(select(Approval).where(Approval.campaign_id == campaign.id,
                                                     Approval.status == "pending")).all()
    for approval in pending:
        approval.status = "expired"
        audit(session, "approval.expire", actor=_actor(user), user_id=_user_id(user), object_type="approval",
              object_id=approval.id, organisation_id=approval.organisation_id, campaign_id=campaign.id,
              before_deadline=before_deadline)
    for provider in session.scalars(select(ProviderApproval).where(ProviderApproval.campaign_id == campaign.id,
                                                                   ProviderApproval.status == "pending")):
        provider.status = "expired"  # no answer from a data provider counts as declined too
    session.flush()
    return len(pending)


def mark_ready(session: Session, campaign: Campaign, user=None, now: dt.datetime | None = None,
               unanswered_confirmed: int = 0) -> int:
    """Awaiting approvals → ready, once at least one approval leaves eligible recipients.

    Non-response counts as declined: organisations still pending become ``expired``. Before the
    deadline that happens only when the user confirmed it for at least as many organisations as are
    still pending (``unanswered_confirmed``, the number the confirm page listed); the audit log
    records how many were closed and that it was before the deadline.

    :returns: the number of eligible recipients.
    """
    now = now or utcnow()
    if "ready" not in TRANSITIONS.get(campaign.status, ()):
        raise TransitionRefused(_("Only a campaign awaiting approvals can be made ready; this one is %(status)s.",
                                  status=status_label(campaign.status)))
    pending = session.scalar(select(func.count()).select_from(Approval)
                             .where(Approval.campaign_id == campaign.id, Approval.status == "pending")) or 0
    early = bool(pending) and now < campaign.approval_deadline
    if early and pending > unanswered_confirmed:
        raise TransitionRefused(ngettext(
            "%(num)d organisation has not answered yet: confirm that it counts as declined, or wait for its "
            "answer or for the deadline.",
            "%(num)d organisations have not answered yet: confirm that they count as declined, or wait for "
            "their answers or for the deadline.", pending))
    if pending:
        _expire_pending(session, campaign, user, before_deadline=early)
    approved = session.scalar(select(func.count()).select_from(Approval)
                              .where(Approval.campaign_id == campaign.id, Approval.status == "approved")) or 0
    if not approved:
        raise TransitionRefused(_("No organisation approved this campaign: it cannot be launched."))
    blockers = provider_blockers(session, campaign)
    if blockers:
        raise TransitionRefused(_("Not approved as data provider: %(names)s. The rule names them and other "
                                  "organisations would receive a list drawn with their data: the campaign cannot be "
                                  "launched until they approve.", names=", ".join(blockers)))
    eligible = eligible_count(session, campaign)
    if not eligible:
        raise TransitionRefused(_("No spectator is eligible (consent at launch, approvals and exclusions leave "
                                  "nobody): the campaign cannot be launched."))
    campaign.ready_at = now
    _move(session, campaign, "ready", user, "ready", eligible=eligible, unanswered_declined=pending,
          before_deadline=early)
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
        raise TransitionRefused(_("A campaign that is %(status)s can no longer be cancelled.",
                                  status=status_label(campaign.status)))
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


# --- helpers ------------------------------------------------------------------------------------

def _chunks(values: list, size: int = 500):
    for i in range(0, len(values), size):
        yield values[i:i + size]


# --- erasure ------------------------------------------------------------------------------------

@dataclass
class ErasureResult:
    """What an erasure found or did: counts only, never the person's details (``files``: what left
    the kept files, see :func:`core.scrub.scrub_files`)."""

    spectator_ids: list[int]
    contacts: int
    organisations: int
    files: dict | None = None


def find_person(session: Session, email: str, secret: str) -> ErasureResult:
    """The spectators an e-mail designates (by spectator key and by any contact's e-mail), with how
    many contact records at how many organisations hold them."""
    normalised = normalise_email(email)
    if normalised is None:
        raise CampaignError(_("This is not an e-mail address."))
    key = spectator_key(secret, identity_basis(normalised, None, None, None, None))
    by_key = select(Spectator.id).where(Spectator.key == key)
    by_email = select(Contact.spectator_id).where(func.lower(func.trim(Contact.email)) == normalised)
    ids = sorted(set(session.scalars(by_key)) | set(session.scalars(by_email)))
    contacts, organisations = 0, 0
    if ids:
        contacts, organisations = session.execute(
            select(func.count(Contact.id), func.count(func.distinct(Contact.organisation_id)))
            .where(Contact.spectator_id.in_(ids))
        ).one()
    return ErasureResult(ids, contacts, organisations)


def erase_spectators(session: Session, spectator_ids: Sequence[int], user=None,
                     now: dt.datetime | None = None, app=None) -> ErasureResult:
    """Erasure on request: delete every organisation's contact record of the spectators (consents go
    with them), keep the pooled transactions under the pseudonymous spectator, record a district-wide
    opt-out, tombstone the identity key (a later import of the same e-mail starts a new spectator
    that nothing links to this history), and write one audit event per spectator (its id only, never
    a personal detail). With ``app``, the person's rows also leave every file the instance keeps
    (rejects, inbox copies and reports, stored exports: :func:`core.scrub.scrub_files`)."""
    now = now or utcnow()
    ids = sorted(set(spectator_ids))
    contacts, organisations = 0, 0
    identities = Identities()
    if ids:
        contacts, organisations = session.execute(
            select(func.count(Contact.id), func.count(func.distinct(Contact.organisation_id)))
            .where(Contact.spectator_id.in_(ids))
        ).one()
        for chunk in _chunks(ids):
            for row in session.execute(select(Contact.email, Contact.last_name, Contact.first_name,
                                              Contact.postal_code, Contact.phone)
                                       .where(Contact.spectator_id.in_(chunk))):
                identities.add(*row)
    for chunk in _chunks(ids):
        contact_ids = select(Contact.id).where(Contact.spectator_id.in_(chunk))
        session.execute(delete(Consent).where(Consent.contact_id.in_(contact_ids)),
                        execution_options={"synchronize_session": False})
        session.execute(delete(Contact).where(Contact.spectator_id.in_(chunk)),
                        execution_options={"synchronize_session": False})
        if hasattr(Spectator, "opted_out_at"):
            session.execute(update(Spectator).where(Spectator.id.in_(chunk), Spectator.opted_out_at.is_(None))
                            .values(opted_out_at=now), execution_options={"synchronize_session": False})
    for spectator_id in ids:  # a random key no identity hashes to: the history stays, unlinkable
        session.execute(update(Spectator).where(Spectator.id == spectator_id)
                        .values(key=ERASED_KEY_PREFIX + secrets.token_hex(24)),
                        execution_options={"synchronize_session": False})
    session.expire_all()
    for spectator_id in ids:
        audit(session, "person.erase", actor=_actor(user), user_id=_user_id(user), object_type="spectator",
              object_id=spectator_id, contacts_deleted=contacts, organisations=organisations)
    session.flush()
    files = scrub_files(app, identities) if app is not None and ids else None
    return ErasureResult(ids, contacts, organisations, files)


def erase_person(session: Session, email: str, secret: str, user=None, now: dt.datetime | None = None,
                 app=None) -> ErasureResult:
    """Find the person an e-mail designates and erase them (see :func:`erase_spectators`); when nobody
    matches, the request is still logged, without the e-mail."""
    found = find_person(session, email, secret)
    if not found.spectator_ids:
        audit(session, "person.erase", actor=_actor(user), user_id=_user_id(user), object_type="spectator",
              found=False)
        session.flush()
        return found
    return erase_spectators(session, found.spectator_ids, user=user, now=now, app=app)


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

__all__ = ["ContactLine", "answered_counts", "approval_contacts", "clear_exclusion_list", "decide_approval",
           "decide_provider", "lifecycle_mix", "set_exclusion_list", "unanswered_organisations"]
