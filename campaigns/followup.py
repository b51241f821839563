"""Follow-up of approval requests: reminders (by the scheduler's job or a staff button) and the staff overview.

A request is a venue's contacting approval (:class:`Approval`) or a data-provider request
(:class:`ProviderApproval`). Every reminder is a :class:`Reminder` row and a notification on the
organisation's dashboard; a staff reminder is refused once the request is answered, closed, or was
reminded less than :data:`REMIND_AGAIN_AFTER` ago. Like :mod:`campaigns.services`, functions flush
and never commit. The overview shows organisations' statuses and answers, never a count of people.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Union

from flask_babel import gettext as _
from sqlalchemy import String, cast, func, literal, select, union_all
from sqlalchemy.orm import Session, selectinload

from campaigns.common import CampaignError, actor_id, actor_name, audit_as
from campaigns.models import APPROVAL_STATUSES, Approval, Campaign, ProviderApproval, Reminder
from core.jobs import notify
from core.localtime import local_time
from core.models import Organisation, User, utcnow

REMIND_AGAIN_AFTER = dt.timedelta(hours=1)
KINDS = ("approval", "provider")
Request = Union[Approval, ProviderApproval]


def kind_of(request: Request) -> str:
    """``approval`` for a contacting approval, ``provider`` for a data-provider request."""
    return "provider" if isinstance(request, ProviderApproval) else "approval"


def get_request(session: Session, kind: str, request_id: int) -> Request | None:
    """The request of that kind and id, or None."""
    if kind == "approval":
        return session.get(Approval, request_id)
    if kind == "provider":
        return session.get(ProviderApproval, request_id)
    return None


def request_link(request: Request) -> str:
    """The venue's page of the request (where it answers)."""
    if isinstance(request, ProviderApproval):
        return f"/campaigns/providers/{request.id}"
    return f"/campaigns/approvals/{request.id}"


def _request_column(kind: str):
    return Reminder.provider_approval_id if kind == "provider" else Reminder.approval_id


def reminders_of(session: Session, request: Request) -> list[Reminder]:
    """The request's reminders, oldest first."""
    column = _request_column(kind_of(request))
    return list(session.scalars(select(Reminder).where(column == request.id).order_by(Reminder.sent_at, Reminder.id)))


def reminder_summary(session: Session, kind: str, request_ids: list[int]) -> dict[int, tuple[int, dt.datetime]]:
    """request id → (how many reminders, when the last one was sent), for the requests reminded."""
    if not request_ids:
        return {}
    column = _request_column(kind)
    rows = session.execute(
        select(column, func.count(), func.max(Reminder.sent_at)).where(column.in_(request_ids)).group_by(column)
    ).all()
    return {request_id: (int(n), last) for request_id, n, last in rows}


def reminder_message(campaign: Campaign, kind: str, by_staff: bool) -> tuple[str, str]:
    """The reminder's words, (French, English), as the organisation's users read them."""
    deadline = local_time(campaign.approval_deadline)  # Montreal time, as every page shows it
    if kind == "provider":
        fr = (
            f"Rappel : la campagne « {campaign.name} » attend votre réponse comme fournisseur de données avant le "
            f"{deadline} (heure de Montréal). Sans réponse, elle comptera comme un refus."
        )
        en = (
            f"Reminder: the campaign “{campaign.name}” awaits your answer as data provider before {deadline} (Montreal time). "
            "Without an answer it counts as declined."
        )
    else:
        fr = (
            f"Rappel : la campagne « {campaign.name} » attend votre réponse avant le {deadline} (heure de Montréal). "
            "Sans réponse, elle comptera comme un refus."
        )
        en = (
            f"Reminder: the campaign “{campaign.name}” awaits your answer before {deadline} (Montreal time). "
            "Without an answer it counts as declined."
        )
    if by_staff:
        fr, en = f"L'équipe du Partenariat vous écrit. {fr}", f"From the Partnership's staff. {en}"
    return fr, en


def record_reminder(
    session: Session, request: Request, source: str, user=None, now: dt.datetime | None = None
) -> Reminder:
    """Write down a reminder that was sent (``source``: ``job`` or ``user``), with the audit event."""
    now = now or utcnow()
    kind = kind_of(request)
    reminder = Reminder(
        approval_id=request.id if kind == "approval" else None,
        provider_approval_id=request.id if kind == "provider" else None,
        sent_at=now,
        source=source,
        user_id=actor_id(user),
        actor=actor_name(user),
    )
    session.add(reminder)
    session.flush()
    audit_as(
        session,
        user,
        f"{kind}.remind",
        object_type="approval" if kind == "approval" else "provider_approval",
        object_id=request.id,
        organisation_id=request.organisation_id,
        campaign_id=request.campaign_id,
        source=source,
    )
    return reminder


def send_reminder(
    session: Session,
    request: Request,
    source: str,
    user=None,
    now: dt.datetime | None = None,
    dedupe_key: str | None = None,
) -> Reminder | None:
    """Notify the organisation (dashboard, and e-mail when configured) and record the reminder.

    :param dedupe_key: the job's once-only key (see :func:`core.jobs.notify`): when already used,
        nothing is sent and None is returned.
    """
    kind = kind_of(request)
    fr, en = reminder_message(request.campaign, kind, by_staff=source == "user")
    note = notify(
        session, request.organisation_id, f"{kind}.reminder", fr, en, link=request_link(request), dedupe_key=dedupe_key
    )
    if note is None:
        return None
    return record_reminder(session, request, source, user, now)


def remind_refusal(session: Session, request: Request, now: dt.datetime | None = None) -> str | None:
    """Why a staff member may not remind this request now, in words, or None when they may."""
    reminders = reminders_of(session, request)
    return _refusal(request, reminders[-1].sent_at if reminders else None, now or utcnow())


def _refusal(request: Request, last: dt.datetime | None, now: dt.datetime) -> str | None:
    campaign = request.campaign
    if request.status != "pending":
        return _(
            "%(organisation)s has already answered: there is nothing to remind.", organisation=request.organisation.name
        )
    if campaign.status != "awaiting_approvals" or now >= campaign.approval_deadline:
        return _("This campaign no longer takes answers: there is nothing to remind.")
    if last is not None and now - last < REMIND_AGAIN_AFTER:
        return _(
            "%(organisation)s was reminded at %(when)s: you may remind it again from %(next)s.",
            organisation=request.organisation.name,
            when=local_time(last),
            next=local_time(last + REMIND_AGAIN_AFTER)[-5:],
        )
    return None


def remind(session: Session, request: Request, user, now: dt.datetime | None = None) -> Reminder:
    """A staff member's "remind again": refused (:class:`CampaignError` with the reason in words)
    when :func:`remind_refusal` says so; otherwise sent, recorded and logged."""
    now = now or utcnow()
    refusal = remind_refusal(session, request, now)
    if refusal is not None:
        raise CampaignError(refusal)
    reminder = send_reminder(session, request, "user", user, now)
    assert reminder is not None  # no dedupe key: always sent
    return reminder


# --- the staff overview -------------------------------------------------------------------------


@dataclass
class RequestLine:
    """One request as staff follow it: statuses and who answered, never a count of people."""

    kind: str
    request: Request
    campaign: Campaign
    organisation: Organisation
    answered_by: str | None
    reminders: int
    last_reminded_at: dt.datetime | None
    refusal: str | None  # why "remind again" is refused now, or None

    @property
    def status(self) -> str:
        return self.request.status


def _requests_query(campaign_id: int | None, status: str | None, open_only: bool):
    """(kind, id) of the requests of both kinds, ordered for the list."""
    parts = []
    for kind, model in (("approval", Approval), ("provider", ProviderApproval)):
        query = (
            select(
                cast(literal(kind), String(10)).label("kind"),
                model.id.label("id"),
                model.campaign_id.label("campaign_id"),
                Organisation.name.label("organisation"),
            )
            .join(Organisation, Organisation.id == model.organisation_id)
            .join(Campaign, Campaign.id == model.campaign_id)
        )
        if campaign_id is not None:
            query = query.where(model.campaign_id == campaign_id)
        if status is not None:
            query = query.where(model.status == status)
        if open_only:
            query = query.where(Campaign.status == "awaiting_approvals")
        parts.append(query)
    return union_all(*parts).subquery("requests")


def request_lines(
    session: Session,
    *,
    campaign_id: int | None = None,
    status: str | None = None,
    open_only: bool = False,
    page: int = 1,
    per_page: int = 100,
    now: dt.datetime | None = None,
) -> tuple[list[RequestLine], int]:
    """The requests (both kinds) of one campaign or of all, newest campaign first then by
    organisation, filtered by ``status`` (one of APPROVAL_STATUSES) and to campaigns still awaiting
    approvals (``open_only``); a page at a time. Returns (lines, total)."""
    now = now or utcnow()
    if status is not None and status not in APPROVAL_STATUSES:
        raise CampaignError(_("Unknown status: %(name)s.", name=status))
    requests = _requests_query(campaign_id, status, open_only)
    total = session.scalar(select(func.count()).select_from(requests)) or 0
    keys = session.execute(
        select(requests.c.kind, requests.c.id)
        .order_by(requests.c.campaign_id.desc(), requests.c.organisation, requests.c.kind, requests.c.id)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    ).all()
    ids = {kind: [i for k, i in keys if k == kind] for kind in KINDS}
    found: dict[tuple[str, int], Request] = {}
    # each line shows its campaign and organisation: loaded with the page, not one query per line
    if ids["approval"]:
        found.update(
            {
                ("approval", r.id): r
                for r in session.scalars(
                    select(Approval)
                    .where(Approval.id.in_(ids["approval"]))
                    .options(selectinload(Approval.campaign), selectinload(Approval.organisation))
                )
            }
        )
    if ids["provider"]:
        found.update(
            {
                ("provider", r.id): r
                for r in session.scalars(
                    select(ProviderApproval)
                    .where(ProviderApproval.id.in_(ids["provider"]))
                    .options(selectinload(ProviderApproval.campaign), selectinload(ProviderApproval.organisation))
                )
            }
        )
    deciders = {r.decided_by_id for r in found.values() if r.decided_by_id}
    emails = dict(session.execute(select(User.id, User.email).where(User.id.in_(deciders))).all()) if deciders else {}
    summary = {kind: reminder_summary(session, kind, ids[kind]) for kind in KINDS}
    lines = []
    for kind, request_id in keys:
        request = found[(kind, request_id)]
        n, last = summary[kind].get(request_id, (0, None))
        refusal = _refusal(request, last, now) if request.status == "pending" else None
        lines.append(
            RequestLine(
                kind,
                request,
                request.campaign,
                request.organisation,
                emails.get(request.decided_by_id) if request.decided_by_id else None,
                n,
                last,
                refusal,
            )
        )
    return lines, total


def status_counts(session: Session, campaign_id: int | None = None, open_only: bool = False) -> Counter:
    """Requests per status (both kinds): counts of organisations' answers, not of people."""
    requests = _requests_query(campaign_id, None, open_only)
    counts: Counter = Counter()
    for kind, model in (("approval", Approval), ("provider", ProviderApproval)):
        for status, n in session.execute(
            select(model.status, func.count())
            .join(requests, (requests.c.id == model.id) & (requests.c.kind == kind))
            .group_by(model.status)
        ):
            counts[status] += n
    return counts
