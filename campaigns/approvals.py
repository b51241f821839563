"""Venue answers to campaign requests: approve or decline (with a reason), exclusions, data providers.

Like :mod:`campaigns.services` (whose helpers it uses), every function flushes and never commits,
and every answer is written to the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.orm import Session

from campaigns.common import CampaignError, TransitionRefused, actor_id, audit_as, in_chunks
from campaigns.eligibility import consented_contacts, launch_time
from campaigns.models import DECLINE_REASONS, Approval, Campaign, Exclusion, ProviderApproval
from campaigns.services import status_label
from core.identity import identity_basis, normalise_email, spectator_key
from core.models import Contact, Organisation, Spectator, utcnow
from core.privacy import Cell
from segments.models import SnapshotMember, SpectatorProfile

MAX_NOTE = 1000
DECLINE_REASON_LABELS = {
    "contact_pressure": _l("Our spectators have been asked too often lately"),
    "offer": _l("The offer does not suit our audience"),
    "timing": _l("The timing does not suit us (season, programme)"),
    "policy": _l("Our communication or consent policy does not allow it"),
    "data_use": _l("We do not want our data used this way"),
    "other": _l("Another reason (explain below)"),
}
# The audit log's sentences of the answers and reminders (core.audit_words): the English one names
# the reason's English words, its French translation the French ones (both are in the event).
AUDIT_SENTENCES = {
    "approval.decline": _l("%(actor)s declined %(object)s (campaign #%(campaign_id)s): %(reason_en)s"),
    "provider.decline": _l("%(actor)s declined %(object)s (campaign #%(campaign_id)s): %(reason_en)s"),
    "approval.remind": _l("%(actor)s reminded %(object)s (campaign #%(campaign_id)s)"),
    "provider.remind": _l("%(actor)s reminded %(object)s (campaign #%(campaign_id)s)"),
}


def _check_open(request: Approval | ProviderApproval, user, now: dt.datetime) -> Campaign:
    """The request's campaign, when the request still takes answers from this user."""
    campaign = request.campaign
    if user is not None and getattr(user, "role", None) == "venue" and user.organisation_id != request.organisation_id:
        raise TransitionRefused(_("This request belongs to another organisation."))
    if campaign.status != "awaiting_approvals":
        raise TransitionRefused(
            _("This campaign no longer takes answers (it is %(status)s).", status=status_label(campaign.status))
        )
    if now >= campaign.approval_deadline:
        raise TransitionRefused(_("The approval deadline has passed: answers are closed."))
    return campaign


def check_decline_reason(
    decision: str, reason: str | None, note: str | None, required: bool = True
) -> tuple[str | None, str | None]:
    """The reason and note to keep with an answer: none for an approval; for a decline, one of
    :data:`DECLINE_REASONS` and the venue's words (required for ``other``, at most
    :data:`MAX_NOTE` characters).

    :param required: a person's decline must give a reason; code answering without a user (the
        demo, test data) may leave it out.
    :raises CampaignError: a decline without a known reason, or ``other`` without words.
    """
    if decision != "decline":
        return None, None
    note = (note or "").strip() or None
    if reason is None and note is None and not required:
        return None, None
    if reason not in DECLINE_REASONS:
        raise CampaignError(_("Choose the reason why you decline."))
    if reason == "other" and not note:
        raise CampaignError(_("Explain in a few words why you decline."))
    if note is not None and len(note) > MAX_NOTE:
        raise CampaignError(_("The explanation takes at most %(n)d characters.", n=MAX_NOTE))
    return reason, note


def decide_approval(
    session: Session,
    approval: Approval,
    decision: str,
    user=None,
    *,
    exclude_subscribers: bool = False,
    exclude_contacted_days: int | None = None,
    decline_reason: str | None = None,
    decline_note: str | None = None,
    now: dt.datetime | None = None,
) -> Approval:
    """A venue's answer: ``approve`` (with optional exclusions) or ``decline`` (with a reason); it
    may change its answer until the deadline. The reason is shown to staff and written to the audit log.

    :param exclude_subscribers: strike the organisation's subscribers.
    :param exclude_contacted_days: strike spectators contacted by any campaign in that many days.
    :param decline_reason: one of :data:`DECLINE_REASONS`, required when a user declines.
    :param decline_note: the venue's own words (required for ``other``).
    """
    now = now or utcnow()
    campaign = _check_open(approval, user, now)
    if decision not in ("approve", "decline"):
        raise CampaignError(_("Answer approve or decline."))
    if exclude_contacted_days is not None and not 1 <= exclude_contacted_days <= 3650:
        raise CampaignError(_("The contact-pressure window takes 1 to 3650 days."))
    reason, note = check_decline_reason(decision, decline_reason, decline_note, required=user is not None)
    approval.status = "approved" if decision == "approve" else "declined"
    approval.decided_at = now
    approval.decided_by_id = actor_id(user)
    approval.exclude_subscribers = bool(exclude_subscribers) if decision == "approve" else False
    approval.exclude_contacted_days = exclude_contacted_days if decision == "approve" else None
    approval.decline_reason, approval.decline_note = reason, note
    session.flush()
    audit_as(
        session,
        user,
        f"approval.{decision}",
        object_type="approval",
        object_id=approval.id,
        organisation_id=approval.organisation_id,
        campaign_id=campaign.id,
        exclude_subscribers=approval.exclude_subscribers,
        exclude_contacted_days=approval.exclude_contacted_days,
        excluded_by_list=approval.exclusion_list_matched,
        **_reason_details(reason, note),
    )
    return approval


def set_exclusion_list(
    session: Session,
    approval: Approval,
    values: Iterable[str],
    kind: str,
    secret: str,
    user=None,
    now: dt.datetime | None = None,
) -> tuple[int, int]:
    """Replace the approval's uploaded exclusion list (flushes).

    Values are matched against the organisation's own contacts only (e-mail: the contact's
    e-mail or the spectator key of the normalised address; customer ID: the contact's); only the
    matched spectator ids are kept, never the uploaded values.

    :param kind: ``email`` or ``customer_id``.
    :param secret: the district secret (spectator keys).
    :returns: (distinct values read, spectators matched).
    """
    now = now or utcnow()
    _check_open(approval, user, now)
    if kind not in ("email", "customer_id"):
        raise CampaignError(_("Upload a list of e-mails or of customer IDs."))
    if kind == "email":
        cleaned = {e for v in values if (e := normalise_email(v))}
    else:
        cleaned = {v.strip() for v in values if v and v.strip()}
    org_id = approval.organisation_id
    matched: set[int] = set()
    for chunk in in_chunks(sorted(cleaned)):
        if kind == "email":
            # an e-mail always makes a basis: the ``or e`` is never used, and keeps the type a str
            keys = [spectator_key(secret, identity_basis(e, None, None, None, None) or e) for e in chunk]
            by_key = select(Spectator.id).where(Spectator.key.in_(keys))
            condition: ColumnElement[bool] = func.lower(func.trim(Contact.email)).in_(chunk) | Contact.spectator_id.in_(
                by_key
            )
        else:
            condition = Contact.customer_id.in_(chunk)
        matched.update(
            session.scalars(select(Contact.spectator_id).where(Contact.organisation_id == org_id, condition))
        )
    session.execute(delete(Exclusion).where(Exclusion.approval_id == approval.id))
    if matched:
        session.execute(insert(Exclusion), [{"approval_id": approval.id, "spectator_id": s} for s in sorted(matched)])
    _record_exclusion_list(session, approval, user, kind, len(cleaned), len(matched))
    return len(cleaned), len(matched)


def _record_exclusion_list(
    session: Session, approval: Approval, user, kind: str | None, rows: int, matched: int
) -> None:
    """Set the approval's exclusion-list figures and audit them (kind None: the list was removed). Flushes."""
    approval.exclusion_list_kind = kind
    approval.exclusion_list_rows = rows
    approval.exclusion_list_matched = matched
    session.flush()
    details = {"kind": kind} if kind is not None else {}
    audit_as(
        session,
        user,
        "approval.exclusion_list",
        object_type="approval",
        object_id=approval.id,
        organisation_id=approval.organisation_id,
        campaign_id=approval.campaign_id,
        **details,
        rows=rows,
        matched=matched,
    )


def clear_exclusion_list(session: Session, approval: Approval, user=None, now: dt.datetime | None = None) -> None:
    """Remove the approval's uploaded exclusion list (flushes)."""
    _check_open(approval, user, now or utcnow())
    session.execute(delete(Exclusion).where(Exclusion.approval_id == approval.id))
    _record_exclusion_list(session, approval, user, None, 0, 0)


def lifecycle_mix(session: Session, campaign: Campaign, organisation_id: int) -> dict[str, Cell]:
    """Life-cycle stage → the organisation's spectators in the campaign's snapshot at that stage, as
    a :class:`core.privacy.Cell` (their count and the sum of their cell keys). The stage comes from
    every organisation's sales: shown to the organisation, each is a noisy figure."""
    if campaign.snapshot_id is None:
        return {}
    stage = func.coalesce(SpectatorProfile.lifecycle, "unknown")
    rows = session.execute(
        select(stage, func.count(), func.coalesce(func.sum(Spectator.cell_key), 0))
        .select_from(Contact)
        .join(
            SnapshotMember,
            (SnapshotMember.spectator_id == Contact.spectator_id)
            & (SnapshotMember.snapshot_id == campaign.snapshot_id),
        )
        .join(Spectator, Spectator.id == Contact.spectator_id)
        .outerjoin(SpectatorProfile, SpectatorProfile.spectator_id == Contact.spectator_id)
        .where(Contact.organisation_id == organisation_id)
        .group_by(stage)
    ).all()
    return {name: Cell.of(count, keys) for name, count, keys in rows}


@dataclass
class ContactLine:
    """One of the organisation's own contacts in the segment, for its approver's eyes only."""

    contact: Contact
    consent_valid: bool
    excluded: bool


def approval_contacts(
    session: Session, approval: Approval, page: int = 1, per_page: int = 100
) -> tuple[list[ContactLine], int]:
    """The organisation's own contacts in the campaign's snapshot, a page at a time, with whether each
    holds valid consent at launch and is struck by the uploaded list. Returns (lines, total)."""
    campaign = approval.campaign
    if campaign.snapshot_id is None:
        return [], 0
    at = launch_time(campaign)
    base = (
        select(Contact)
        .join(
            SnapshotMember,
            (SnapshotMember.spectator_id == Contact.spectator_id)
            & (SnapshotMember.snapshot_id == campaign.snapshot_id),
        )
        .where(Contact.organisation_id == approval.organisation_id)
    )
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    contacts = session.scalars(
        base.order_by(Contact.last_name, Contact.first_name, Contact.id)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    ).all()
    ids = [c.id for c in contacts]
    consented = consented_contacts(campaign.snapshot_id, at, approval.organisation_id).subquery()
    valid = (
        set(session.scalars(select(consented.c.contact_id).where(consented.c.contact_id.in_(ids)))) if ids else set()
    )
    excluded = (
        set(
            session.scalars(
                select(Exclusion.spectator_id).where(
                    Exclusion.approval_id == approval.id, Exclusion.spectator_id.in_([c.spectator_id for c in contacts])
                )
            )
        )
        if ids
        else set()
    )
    return [ContactLine(c, c.id in valid, c.spectator_id in excluded) for c in contacts], total


def answered_counts(session: Session, campaign_ids: Sequence[int]) -> dict[int, Counter]:
    """campaign id → Counter of its approval statuses."""
    result: dict[int, Counter] = {cid: Counter() for cid in campaign_ids}
    if campaign_ids:
        for cid, status, n in session.execute(
            select(Approval.campaign_id, Approval.status, func.count())
            .where(Approval.campaign_id.in_(campaign_ids))
            .group_by(Approval.campaign_id, Approval.status)
        ):
            result[cid][status] = n
    return result


def decide_provider(
    session: Session,
    provider: ProviderApproval,
    decision: str,
    user=None,
    now: dt.datetime | None = None,
    *,
    decline_reason: str | None = None,
    decline_note: str | None = None,
) -> ProviderApproval:
    """A named organisation's answer as data provider (``approve`` or ``decline`` with a reason, as
    :func:`decide_approval`), open like the contacting approvals until the deadline; logged."""
    now = now or utcnow()
    campaign = _check_open(provider, user, now)
    if decision not in ("approve", "decline"):
        raise CampaignError(_("Answer approve or decline."))
    reason, note = check_decline_reason(decision, decline_reason, decline_note, required=user is not None)
    provider.status = "approved" if decision == "approve" else "declined"
    provider.decided_at = now
    provider.decided_by_id = actor_id(user)
    provider.decline_reason, provider.decline_note = reason, note
    session.flush()
    audit_as(
        session,
        user,
        f"provider.{decision}",
        object_type="provider_approval",
        object_id=provider.id,
        organisation_id=provider.organisation_id,
        campaign_id=campaign.id,
        **_reason_details(reason, note),
    )
    return provider


def _reason_details(reason: str | None, note: str | None) -> dict:
    """A decline's reason for the audit log: its key and its words in French and in English (the
    log's sentence takes the reader's language: see :data:`AUDIT_SENTENCES`)."""
    if reason is None:
        return {}
    label = DECLINE_REASON_LABELS[reason]
    with force_locale("fr"):
        fr = str(label)
    with force_locale("en"):
        en = str(label)
    return {"reason": reason, "reason_fr": fr, "reason_en": en, "note": note}


def unanswered_organisations(session: Session, campaign: Campaign) -> list[str]:
    """Names of the organisations whose approval request is still pending, by name."""
    return list(
        session.scalars(
            select(Organisation.name)
            .join(Approval, Approval.organisation_id == Organisation.id)
            .where(Approval.campaign_id == campaign.id, Approval.status == "pending")
            .order_by(Organisation.name, Organisation.id)
        )
    )
