"""Campaigns: promotions, campaigns and their workflow, venue approvals, erasure requests.

Staff and administrators see campaigns and pooled counts (suppressed under k), never a contact;
a venue approver sees only its own organisation's requests and contacts: any other id is a 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_login import current_user
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import contains_eager

from campaigns import erasure as erasures
from campaigns import offers, services
from campaigns import promotions as promotion_ops
from campaigns.common import CampaignError
from campaigns.forms import (
    APPROVAL_LABELS,
    LIFECYCLE_LABELS,
    METRIC_LABELS,
    OBJECTIVE_LABELS,
    OFFER_LABELS,
    STATUS_LABELS,
    CampaignForm,
    CancelForm,
    ConfirmForm,
    ErasureConfirmForm,
    ErasureFindForm,
    PromotionForm,
    ReadyForm,
    from_cents,
    to_cents,
)
from campaigns.funnel import Funnel, figure_name
from campaigns.funnel_store import answers_since, kept_counts
from campaigns.models import Approval, Campaign, Promotion, ProviderApproval
from core.auth import roles_required
from core.db import db_session
from core.errors import commit_or_refuse
from core.localtime import to_local, to_utc
from core.models import DISCIPLINES, Organisation, Show, audit, utcnow
from core.privacy import strictest_k, suppress
from core.questions import ask_question_once, current_release
from core.views import DISCIPLINE_LABELS
from segments.models import Segment, SegmentSnapshot

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")

STAFF = ("staff", "admin")
MAX_SHOW_CHOICES = 500
CONTACTS_PER_PAGE = 100


def install_template_globals(app) -> None:
    """Labels as Jinja globals rather than a context processor, so that imported macros see them."""
    app.jinja_env.globals.update(
        offer_labels=OFFER_LABELS,
        objective_labels=OBJECTIVE_LABELS,
        metric_labels=METRIC_LABELS,
        campaign_status_labels=STATUS_LABELS,
        approval_labels=APPROVAL_LABELS,
        lifecycle_labels=LIFECYCLE_LABELS,
        campaign_eligible_shown=eligible_shown,
    )


def eligible_shown(campaign: Campaign) -> dict:
    """The campaign's eligible total as its funnel shows it to staff (for the power page):
    ``{"exact": int | None, "at_most": int | None}``.

    ``exact`` is the count when the suppressed funnel shows it; otherwise None, and ``at_most`` is
    the nearest earlier figure the funnel shows (an upper bound that tells nothing the campaign
    page does not). Any other page must show the eligible total only this way: showing it exactly
    where the funnel hides it would reveal the small drop the funnel hides.
    """
    session = db_session()
    name, raw = ask_funnel(session, campaign)
    if raw is None or name is None:
        return {"exact": None, "at_most": None}
    release = current_release(session, k=_campaign_k(session, campaign))
    exact, at_most = raw.protected(release, name).total_eligible()
    return {"exact": exact, "at_most": at_most}


def ask_funnel(session, campaign: Campaign) -> tuple[str | None, Funnel | None]:
    """Count the campaign's kept funnel as one question of the reader's budget, once per state it
    counts: its noise is keyed by that state (campaigns.funnel_store.kept_counts), so each new state
    (a moved launch, a changed answer) is a fresh draw over the same sets (core.privacy.ask_once).

    :returns: (the name that keys the figures' noise, the raw funnel as kept); (None, None) when the
    campaign has no funnel yet."""
    if campaign.snapshot_id is None:
        return None, None  # no funnel, no figures
    raw, name, _current = kept_counts(session, campaign)
    ask_question_once(session, "campaign", {"campaign": campaign.id, "figures": name})
    return name, raw


def _get_or_404(model, object_id):
    obj = db_session().get(model, object_id)
    if obj is None:
        abort(404)
    return obj


def _own_approval(approval_id: int) -> Approval:
    """The current venue user's organisation's approval; anything else is a 404, not a 403, so that
    ids of other organisations' requests reveal nothing."""
    approval = db_session().scalar(
        select(Approval).where(Approval.id == approval_id, Approval.organisation_id == current_user.organisation_id)
    )
    if approval is None:
        abort(404)
    return approval


# --- lists --------------------------------------------------------------------------------------


@bp.route("/")
@roles_required("staff", "admin", "venue")
def index():
    session = db_session()
    if current_user.role == "venue":
        approvals = session.scalars(
            select(Approval)
            .join(Campaign)
            .where(Approval.organisation_id == current_user.organisation_id)
            .options(contains_eager(Approval.campaign))  # each row shows its campaign: no query per row
            .order_by(Campaign.approval_deadline.desc(), Approval.id.desc())
        ).all()
        providers = session.scalars(
            select(ProviderApproval)
            .join(Campaign)
            .where(ProviderApproval.organisation_id == current_user.organisation_id)
            .options(contains_eager(ProviderApproval.campaign))
            .order_by(Campaign.approval_deadline.desc(), ProviderApproval.id.desc())
        ).all()
        return render_template("campaigns/venue_index.html", approvals=approvals, providers=providers, now=utcnow())
    campaigns = session.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
    answered = services.answered_counts(session, [c.id for c in campaigns])
    return render_template("campaigns/index.html", campaigns=campaigns, answered=answered)


# --- promotions ---------------------------------------------------------------------------------


@bp.route("/promotions")
@roles_required(*STAFF)
def promotions():
    items = db_session().scalars(select(Promotion).order_by(Promotion.id.desc())).all()
    return render_template("campaigns/promotions.html", promotions=items)


def _promotion_form(session, promotion: Promotion | None = None) -> PromotionForm:
    form = PromotionForm(obj=None)
    orgs = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    form.organisations.choices = [(o.id, o.name) for o in orgs]
    form.disciplines.choices = [(d, DISCIPLINE_LABELS[d]) for d in DISCIPLINES]
    shows = session.scalars(
        select(Show).where(Show.starts_at >= utcnow()).order_by(Show.starts_at).limit(MAX_SHOW_CHOICES)
    ).all()
    if promotion is not None:
        shows = list({s.id: s for s in [*shows, *promotion.shows]}.values())
    form.shows.choices = [(s.id, f"{s.title} · {s.starts_at:%Y-%m-%d %H:%M}") for s in shows]
    if promotion is not None and request.method == "GET":
        form.name_fr.data, form.name_en.data = promotion.name_fr, promotion.name_en
        form.message_fr.data, form.message_en.data = promotion.message_fr, promotion.message_en
        form.offer_kind.data = promotion.offer_kind
        if promotion.offer_kind == "amount_off":
            form.offer_value.data = from_cents(promotion.offer_value)
        else:
            form.offer_value.data = promotion.offer_value
        form.organisations.data = [o.id for o in promotion.organisations]
        form.disciplines.data = promotion.discipline_list
        form.shows.data = [s.id for s in promotion.shows]
        form.valid_from.data, form.valid_until.data = promotion.valid_from, promotion.valid_until
        form.code_strategy.data, form.shared_code.data = promotion.code_strategy, promotion.shared_code
        form.average_discount.data = from_cents(promotion.average_discount_cents)
        form.cost_per_contact.data = from_cents(promotion.cost_per_contact_cents)
    return form


def _promotion_fields(form: PromotionForm) -> dict:
    value = form.offer_value.data
    kind = form.offer_kind.data
    return {
        "name_fr": form.name_fr.data.strip(),
        "name_en": form.name_en.data.strip(),
        "message_fr": form.message_fr.data.strip(),
        "message_en": form.message_en.data.strip(),
        "offer_kind": kind,
        "offer_value": (int(value) if kind == "percent_off" else to_cents(value)) if value is not None else None,
        "organisation_ids": form.organisations.data,
        "show_ids": form.shows.data or [],
        "disciplines": form.disciplines.data or [],
        "valid_from": form.valid_from.data,
        "valid_until": form.valid_until.data,
        "code_strategy": form.code_strategy.data,
        "shared_code": form.shared_code.data or None,
        "average_discount_cents": to_cents(form.average_discount.data),
        "cost_per_contact_cents": to_cents(form.cost_per_contact.data),
    }


@bp.route("/promotions/new", methods=["GET", "POST"])
@roles_required(*STAFF)
def new_promotion():
    session = db_session()
    form = _promotion_form(session)
    if form.validate_on_submit():
        done, promotion = commit_or_refuse(
            session,
            lambda: promotion_ops.create_promotion(session, user=current_user, **_promotion_fields(form)),
            _("Promotion created."),
        )
        if done and promotion is not None:
            return redirect(url_for("campaigns.promotion", promotion_id=promotion.id))
    return render_template("campaigns/promotion_form.html", form=form, promotion=None)


@bp.route("/promotions/<int:promotion_id>")
@roles_required(*STAFF)
def promotion(promotion_id: int):
    item = _get_or_404(Promotion, promotion_id)
    used_by = (
        db_session()
        .scalars(select(Campaign).where(Campaign.promotion_id == item.id).order_by(Campaign.id.desc()))
        .all()
    )
    return render_template("campaigns/promotion.html", promotion=item, used_by=used_by)


@bp.route("/promotions/<int:promotion_id>/edit", methods=["GET", "POST"])
@roles_required(*STAFF)
def edit_promotion(promotion_id: int):
    session = db_session()
    item = _get_or_404(Promotion, promotion_id)
    form = _promotion_form(session, item)
    if form.validate_on_submit():
        done, _saved = commit_or_refuse(
            session,
            lambda: promotion_ops.update_promotion(session, item, user=current_user, **_promotion_fields(form)),
            _("Promotion saved."),
        )
        if done:
            return redirect(url_for("campaigns.promotion", promotion_id=item.id))
    return render_template("campaigns/promotion_form.html", form=form, promotion=item)


# --- campaigns ----------------------------------------------------------------------------------


def _campaign_form(session, campaign: Campaign | None = None) -> CampaignForm:
    form = CampaignForm()
    segments = session.scalars(select(Segment).where(Segment.archived.is_(False)).order_by(Segment.name)).all()
    form.segment.choices = [(s.id, s.name) for s in segments if s.versions]
    locale = str(get_locale())
    form.promotion.choices = [
        (p.id, p.name(locale)) for p in session.scalars(select(Promotion).order_by(Promotion.id.desc()))
    ]
    same = [(0, _("Same as the campaign's promotion"))]
    form.arm_a_promotion.choices = form.arm_b_promotion.choices = same + list(form.promotion.choices)
    if campaign is not None and request.method == "GET":
        form.name.data, form.objective.data = campaign.name, campaign.objective
        form.segment.data, form.promotion.data = campaign.segment_id, campaign.promotion_id
        tests = [a for a in campaign.arms if a["name"] != "control"]
        form.control_share.data = campaign.control_share
        form.arm_a_share.data = tests[0]["share"] if tests else None
        form.arm_b_share.data = tests[1]["share"] if len(tests) > 1 else None
        form.arm_a_promotion.data = int(tests[0].get("promotion_id") or 0) if tests else 0
        form.arm_b_promotion.data = int(tests[1].get("promotion_id") or 0) if len(tests) > 1 else 0
        form.window_days.data = campaign.window_days
        form.primary_metric.data = campaign.primary_metric
        form.secondary_metrics.data = campaign.secondary_metrics
        form.approval_deadline.data = to_local(campaign.approval_deadline)  # typed in Montreal time
        form.planned_launch_at.data = to_local(campaign.planned_launch_at)
    return form


def _campaign_fields(form: CampaignForm) -> dict:
    return {
        "name": form.name.data.strip(),
        "objective": form.objective.data,
        "segment_id": form.segment.data,
        "promotion_id": form.promotion.data,
        "arms": services.make_arms(form.control_share.data, form.test_shares(), form.test_promotions()),
        "window_days": form.window_days.data,
        "primary_metric": form.primary_metric.data,
        "secondary_metrics": form.secondary_metrics.data or [],
        "approval_deadline": to_utc(form.approval_deadline.data),
        "planned_launch_at": to_utc(form.planned_launch_at.data),
    }


@bp.route("/new", methods=["GET", "POST"])
@roles_required(*STAFF)
def new_campaign():
    session = db_session()
    form = _campaign_form(session)
    if not form.segment.choices or not form.promotion.choices:
        flash(_("A campaign needs a segment with a rule and a promotion: create them first."), "warning")
    if form.validate_on_submit():
        done, campaign = commit_or_refuse(
            session,
            lambda: services.create_campaign(session, user=current_user, **_campaign_fields(form)),
            _("Campaign created as a draft."),
        )
        if done and campaign is not None:
            return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    return render_template("campaigns/campaign_form.html", form=form, campaign=None)


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
@roles_required(*STAFF)
def edit_campaign(campaign_id: int):
    session = db_session()
    campaign = _get_or_404(Campaign, campaign_id)
    if campaign.status != "draft":
        flash(_("Only a draft campaign can be changed."), "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    form = _campaign_form(session, campaign)
    if form.validate_on_submit():
        done, _saved = commit_or_refuse(
            session,
            lambda: services.update_campaign(session, campaign, user=current_user, **_campaign_fields(form)),
            _("Campaign saved."),
        )
        if done:
            return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    return render_template("campaigns/campaign_form.html", form=form, campaign=campaign)


def _campaign_k(session, campaign: Campaign) -> int:
    org_ids = [a.organisation_id for a in campaign.approvals]
    return strictest_k(session, org_ids or None)


@bp.route("/<int:campaign_id>")
@roles_required(*STAFF)
def detail(campaign_id: int):
    session = db_session()
    campaign = _get_or_404(Campaign, campaign_id)
    k = _campaign_k(session, campaign)
    name, raw = ask_funnel(session, campaign)
    # staff own none of it: every count is the noisy figure of its set (core.privacy), a question
    shown = raw.protected(current_release(session, k=k), name) if raw is not None and name is not None else None
    # Exclusion-list matches are counts of people: hidden under k like every pooled count.
    list_matches = suppress({a.id: a.exclusion_list_matched for a in campaign.approvals}, k, total_shown=False)
    snapshot = session.get(SegmentSnapshot, campaign.snapshot_id) if campaign.snapshot_id else None
    answers, recounting = answers_since(campaign, raw)  # the counts of a changed answer: "being counted"
    page = render_template(
        "campaigns/campaign.html",
        answers=answers,
        recounting=recounting,
        campaign=campaign,
        funnel=shown,
        k=k,
        snapshot=snapshot,
        snapshot_size=shown.total.segment if shown is not None else None,
        list_matches=list_matches,
        funnel_behind=name is not None and name != figure_name(campaign),  # the job counts it within a minute
        now=utcnow(),
        locale=str(get_locale()),
        arm_offers=offers.arm_promotions(session, campaign),
    )
    session.commit()  # the question's audit event
    return page


def _transition_page(campaign: Campaign, action: str, form, title: str, explanation: str):
    return render_template(
        "campaigns/confirm.html", campaign=campaign, form=form, action=action, title=title, explanation=explanation
    )


def _workflow_step(session, campaign: Campaign, step, success, refused=None):
    """Run one step of the campaign workflow in the request's transaction, flash how it went and go
    back to the campaign. ``success`` makes the message from the step's result, ``refused`` the
    error message from the refusal's reason (messages are made after the step, in the request's
    language)."""
    commit_or_refuse(session, step, success, refused or (lambda reason: _("Refused: %(reason)s", reason=reason)))
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


@bp.route("/<int:campaign_id>/submit", methods=["GET", "POST"])
@roles_required(*STAFF)
def submit(campaign_id: int):
    session = db_session()
    campaign = _get_or_404(Campaign, campaign_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        return _workflow_step(
            session,
            campaign,
            lambda: services.submit_for_approval(session, campaign, user=current_user),
            lambda approvals: ngettext(
                "Campaign submitted: %(num)d organisation is asked for its approval.",
                "Campaign submitted: %(num)d organisations are asked for their approval.",
                len(approvals),
            ),
            refused=lambda reason: _("Submission refused: %(reason)s", reason=reason),
        )
    return _transition_page(
        campaign,
        "submit",
        form,
        _("Submit for approvals"),
        _(
            "The segment is frozen as of today, and every organisation with spectators in it is asked to approve "
            "the campaign by the deadline. The plan can no longer be changed."
        ),
    )


@bp.route("/<int:campaign_id>/ready", methods=["GET", "POST"])
@roles_required(*STAFF)
def ready(campaign_id: int):
    """Mark ready. Before the deadline, organisations that have not answered count as declined
    (DESIGN.md: non-response counts as declined): the confirm page names them, the form carries how
    many were shown, and the step refuses if more are pending than the user confirmed."""
    session = db_session()
    campaign = _get_or_404(Campaign, campaign_id)
    unanswered = (
        services.unanswered_organisations(session, campaign)
        if campaign.status == "awaiting_approvals" and utcnow() < campaign.approval_deadline
        else []
    )
    form = ReadyForm()
    if form.validate_on_submit():
        confirmed = int(form.unanswered.data) if (form.unanswered.data or "").isdigit() else 0

        def success(_eligible):
            if confirmed:
                return ngettext(
                    "The campaign is ready to launch; %(num)d organisation that had not answered counts as declined.",
                    "The campaign is ready to launch; %(num)d organisations that had not answered count as declined.",
                    confirmed,
                )
            return _("The campaign is ready to launch.")

        return _workflow_step(
            session,
            campaign,
            lambda: services.mark_ready(session, campaign, user=current_user, unanswered_confirmed=confirmed),
            success,
        )
    form.unanswered.data = str(len(unanswered))
    explanation = _(
        "Approvals close: requests still unanswered count as declined, and the eligible recipients are "
        "those of the approving organisations."
    )
    return render_template(
        "campaigns/confirm.html",
        campaign=campaign,
        form=form,
        action="ready",
        title=_("Mark ready to launch"),
        explanation=explanation,
        unanswered=unanswered,
    )


@bp.route("/<int:campaign_id>/cancel", methods=["GET", "POST"])
@roles_required(*STAFF)
def cancel(campaign_id: int):
    session = db_session()
    campaign = _get_or_404(Campaign, campaign_id)
    form = CancelForm()
    if form.validate_on_submit():
        return _workflow_step(
            session,
            campaign,
            lambda: services.cancel(session, campaign, user=current_user, reason=form.reason.data),
            lambda _result: _("The campaign is cancelled."),
        )
    return _transition_page(
        campaign, "cancel", form, _("Cancel the campaign"), _("A cancelled campaign cannot be resumed.")
    )


# --- erasure ------------------------------------------------------------------------------------

ERASURE_TOKEN_MAX_AGE = 15 * 60


def _erasure_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="campaigns.erasure")


@bp.route("/admin/erasure", methods=["GET", "POST"])
@roles_required("admin")
def erasure():
    session = db_session()
    form = ErasureFindForm()
    found = confirm_form = None
    if form.is_submitted() and request.method == "POST":
        # Every search is logged (who, when, whether someone was found; never the address), and an
        # address that finds no one gets the same words whatever the reason (malformed, never known,
        # already erased): the page is no oracle of who was in the district.
        found = erasures.ErasureResult([], 0, 0)
        if form.validate():
            try:
                found = erasures.find_person(session, form.email.data, current_app.config["DISTRICT_SECRET"])
            except CampaignError:
                pass
        audit(
            session,
            "person.search",
            actor=current_user.email,
            user_id=current_user.id,
            object_type="spectator",
            found=len(found.spectator_ids),
        )
        session.commit()
        if found.spectator_ids:
            token = _erasure_serializer().dumps(found.spectator_ids)
            confirm_form = ErasureConfirmForm(formdata=None, token=token)
        form = ErasureFindForm(formdata=None)  # the page shows counts, never the address
    return render_template("campaigns/erasure.html", form=form, found=found, confirm_form=confirm_form)


@bp.route("/admin/erasure/confirm", methods=["POST"])
@roles_required("admin")
def erasure_confirm():
    session = db_session()
    form = ErasureConfirmForm()
    if not form.validate_on_submit():
        flash(_("Tick the box to confirm the erasure."), "error")
        return redirect(url_for("campaigns.erasure"))
    try:
        spectator_ids = _erasure_serializer().loads(form.token.data, max_age=ERASURE_TOKEN_MAX_AGE)
    except BadData:
        flash(_("This confirmation expired: search for the person again."), "error")
        return redirect(url_for("campaigns.erasure"))
    if not spectator_ids or not all(isinstance(i, int) for i in spectator_ids):
        abort(400)
    result = erasures.erase_spectators(session, spectator_ids, user=current_user, app=current_app._get_current_object())
    session.commit()
    if result.files and result.files.get("failed"):
        flash(
            ngettext(
                "%(num)d file of the instance folder could not be cleaned of the person: see the server log.",
                "%(num)d files of the instance folder could not be cleaned of the person: see the server log.",
                result.files["failed"],
            ),
            "error",
        )
    flash(
        _(
            "Erased: %(contacts)s deleted at %(orgs)s; the person is opted out of every campaign.",
            contacts=ngettext("%(num)d contact record", "%(num)d contact records", result.contacts),
            orgs=ngettext("%(num)d organisation", "%(num)d organisations", result.organisations),
        ),
        "success",
    )
    return redirect(url_for("campaigns.erasure"))
