"""A venue's pages of its own requests: the approval page and its answer (approve, or decline with a
reason), exclusions, its contacts in the segment, and its answer as data provider.

Registered on the campaigns blueprint (endpoints ``campaigns.approval`` and so on). A venue
approver sees only its own organisation's requests: any other id is a 404.
"""

from __future__ import annotations

import csv
import io

from flask import abort, current_app, redirect, render_template, url_for
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from campaigns import offers, services
from campaigns.followup import reminders_of
from campaigns.forms import (
    LIFECYCLE_LABELS,
    ClearExclusionListForm,
    DecisionForm,
    ExclusionListForm,
    ProviderDecisionForm,
)
from campaigns.funnel import own_row
from campaigns.funnel_store import kept_counts, kept_lifecycle_mix
from campaigns.models import Approval, ProviderApproval
from campaigns.views import CONTACTS_PER_PAGE, _own_approval, bp
from core import page_arg
from core.auth import roles_required
from core.db import db_session
from core.errors import commit_or_refuse
from core.models import Contact, utcnow
from core.privacy import Cell, strictest_k
from core.questions import ask_question_once, current_release
from segments.models import SnapshotMember


def _refused(reason: str) -> str:
    return _("Refused: %(reason)s", reason=reason)


def _answer_recorded(answer) -> str:
    """A venue's answer, as it was recorded (an approval or a data-provider request)."""
    return (
        _("Your answer is recorded: approved.")
        if answer.status == "approved"
        else _("Your answer is recorded: declined.")
    )


def _approval_page(approval: Approval, decision_form=None, list_form=None, status: int = 200):
    session = db_session()
    campaign = approval.campaign
    # the raw funnel and mix as kept (campaigns.funnel_store), their noise keyed by the state they
    # count: each new state is a question (core.privacy.ask_once)
    raw, name, current = kept_counts(session, campaign)
    ask_question_once(session, "approval", {"approval": approval.id, "figures": name})
    k = strictest_k(session)
    release = current_release(session, k=k)
    # the venue's own stages are exact; what other organisations' data decide is noisy (core.privacy)
    row = own_row(raw, approval.organisation_id, k, release, name) if raw is not None else None
    # every stage, absent ones too: a stage left out would say "exactly 0"
    cells = {stage: Cell(0, 0) for stage in LIFECYCLE_LABELS} | kept_lifecycle_mix(
        session, campaign, approval.organisation_id
    )
    mix = {stage: cell.count for stage, cell in cells.items()}
    mix_total = sum(mix.values())  # its own spectators in the segment: exact
    figures = {
        stage: release.figure(f"{name}.lifecycle.{approval.organisation_id}.{stage}", cell, whole=mix_total)
        for stage, cell in cells.items()
    }
    mix_shown = {stage: figure.value for stage, figure in figures.items()}
    # "all but fewer than k": labelled "hidden" (not small, but what it leaves out is)
    mix_masked = {stage for stage, figure in figures.items() if figure.status == "all_but"}
    if decision_form is None:
        decision_form = DecisionForm(formdata=None)
        decision_form.decision.data = {"approved": "approve", "declined": "decline"}.get(approval.status)
        decision_form.exclude_subscribers.data = approval.exclude_subscribers
        decision_form.exclude_contacted.data = bool(approval.exclude_contacted_days)
        decision_form.contacted_days.data = approval.exclude_contacted_days or 30
        decision_form.decline_reason.data = approval.decline_reason or ""
        decision_form.decline_note.data = approval.decline_note or ""
    now = utcnow()
    is_open = campaign.status == "awaiting_approvals" and now < campaign.approval_deadline
    page = render_template(
        "campaigns/approval.html",
        approval=approval,
        campaign=campaign,
        promotion=campaign.promotion,
        arm_offers=list(offers.arm_promotions(session, campaign).items())
        if offers.has_several_offers(campaign)
        else [],
        row=row,
        k=k,
        mix=sorted(
            mix_shown.items(), key=lambda t: list(LIFECYCLE_LABELS).index(t[0]) if t[0] in LIFECYCLE_LABELS else 99
        ),
        mix_total=mix_total,
        mix_masked=mix_masked,
        mix_total_masked=False,
        decision_form=decision_form,
        list_form=list_form or ExclusionListForm(formdata=None),
        clear_form=ClearExclusionListForm(formdata=None),
        is_open=is_open,
        funnel_behind=raw is not None and not current,
        locale=str(get_locale()),
        reminders=reminders_of(session, approval),
    )
    session.commit()  # the question's audit event
    return page, status


@bp.route("/approvals/<int:approval_id>")
@roles_required("venue")
def approval(approval_id: int):
    return _approval_page(_own_approval(approval_id))


@bp.route("/approvals/<int:approval_id>/decision", methods=["POST"])
@roles_required("venue")
def decide(approval_id: int):
    session = db_session()
    item = _own_approval(approval_id)
    form = DecisionForm()
    if not form.validate_on_submit():
        return _approval_page(item, decision_form=form, status=400)
    commit_or_refuse(
        session,
        lambda: services.decide_approval(
            session,
            item,
            form.decision.data,
            current_user,
            exclude_subscribers=form.exclude_subscribers.data,
            exclude_contacted_days=form.contacted_days.data if form.exclude_contacted.data else None,
            decline_reason=form.decline_reason.data or None,
            decline_note=form.decline_note.data,
        ),
        _answer_recorded,
        _refused,
    )
    return redirect(url_for("campaigns.approval", approval_id=item.id))


# --- data providers -----------------------------------------------------------------------------


def _own_provider(provider_id: int) -> ProviderApproval:
    """The current venue user's organisation's data-provider request; anything else is a 404."""
    provider = db_session().scalar(
        select(ProviderApproval).where(
            ProviderApproval.id == provider_id, ProviderApproval.organisation_id == current_user.organisation_id
        )
    )
    if provider is None:
        abort(404)
    return provider


def _provider_page(provider: ProviderApproval, form: ProviderDecisionForm | None = None, status: int = 200):
    """What approving as data provider means, in words, with the organisation's own people only."""
    session = db_session()
    campaign = provider.campaign
    own = 0
    if campaign.snapshot_id is not None:
        own = (
            session.scalar(
                select(func.count())
                .select_from(Contact)
                .join(
                    SnapshotMember,
                    (SnapshotMember.spectator_id == Contact.spectator_id)
                    & (SnapshotMember.snapshot_id == campaign.snapshot_id),
                )
                .where(Contact.organisation_id == provider.organisation_id)
            )
            or 0
        )
    if form is None:
        form = ProviderDecisionForm(formdata=None)
        form.decision.data = {"approved": "approve", "declined": "decline"}.get(provider.status)
        form.decline_reason.data = provider.decline_reason or ""
        form.decline_note.data = provider.decline_note or ""
    is_open = campaign.status == "awaiting_approvals" and utcnow() < campaign.approval_deadline
    return render_template(
        "campaigns/provider.html",
        provider=provider,
        campaign=campaign,
        own=own,
        form=form,
        is_open=is_open,
        reminders=reminders_of(session, provider),
    ), status


@bp.route("/providers/<int:provider_id>")
@roles_required("venue")
def provider(provider_id: int):
    return _provider_page(_own_provider(provider_id))


@bp.route("/providers/<int:provider_id>/decision", methods=["POST"])
@roles_required("venue")
def decide_provider(provider_id: int):
    session = db_session()
    item = _own_provider(provider_id)
    form = ProviderDecisionForm()
    if not form.validate_on_submit():
        return _provider_page(item, form=form, status=400)
    commit_or_refuse(
        session,
        lambda: services.decide_provider(
            session,
            item,
            form.decision.data,
            current_user,
            decline_reason=form.decline_reason.data or None,
            decline_note=form.decline_note.data,
        ),
        _answer_recorded,
        _refused,
    )
    return redirect(url_for("campaigns.provider", provider_id=item.id))


def read_list(data: bytes) -> list[str]:
    """Values of an uploaded list: one per line, or the first column of a CSV (comma or semicolon)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    return [row[0].strip() for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row and row[0].strip()]


@bp.route("/approvals/<int:approval_id>/exclusions", methods=["POST"])
@roles_required("venue")
def upload_exclusions(approval_id: int):
    session = db_session()
    item = _own_approval(approval_id)
    form = ExclusionListForm()
    if not form.validate_on_submit():
        return _approval_page(item, list_form=form, status=400)
    values = read_list(form.file.data.read())

    def saved(counts: tuple[int, int]) -> str:
        rows, matched = counts
        return _(
            "Exclusion list saved: %(lines)s, %(excluded)s.",
            lines=ngettext("%(num)d line read", "%(num)d lines read", rows),
            excluded=ngettext("%(num)d of your spectators excluded", "%(num)d of your spectators excluded", matched),
        )

    commit_or_refuse(
        session,
        lambda: services.set_exclusion_list(
            session, item, values, form.kind.data, current_app.config["DISTRICT_SECRET"], user=current_user
        ),
        saved,
        _refused,
    )
    return redirect(url_for("campaigns.approval", approval_id=item.id))


@bp.route("/approvals/<int:approval_id>/exclusions/clear", methods=["POST"])
@roles_required("venue")
def clear_exclusions(approval_id: int):
    session = db_session()
    item = _own_approval(approval_id)
    if ClearExclusionListForm().validate_on_submit():
        commit_or_refuse(
            session,
            lambda: services.clear_exclusion_list(session, item, user=current_user),
            _("Exclusion list removed."),
            _refused,
        )
    return redirect(url_for("campaigns.approval", approval_id=item.id))


@bp.route("/approvals/<int:approval_id>/contacts")
@roles_required("venue")
def approval_contacts(approval_id: int):
    item = _own_approval(approval_id)
    page = page_arg()
    lines, total = services.approval_contacts(db_session(), item, page=page, per_page=CONTACTS_PER_PAGE)
    pages = max((total + CONTACTS_PER_PAGE - 1) // CONTACTS_PER_PAGE, 1)
    return render_template(
        "campaigns/approval_contacts.html",
        approval=item,
        campaign=item.campaign,
        lines=lines,
        total=total,
        page=page,
        pages=pages,
    )
