"""Experiments and reports: launch, power, contact lists, lift reports and their exports.

Staff and administrators launch, and match outcomes again on demand until the campaign is closed
(the final report is frozen then); evaluators (with staff and administrators) read and export the
reports; a venue user reads the reports of the experiments its organisation sends for, with the
per-organisation breakdown limited to its own row, and downloads its own contact list. Contact
lists are for venue users of their organisation only: anyone else gets a 404 (staff a 403).
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from campaigns.funnel import figure_name
from campaigns.models import Campaign
from core.auth import roles_required
from core.csvexport import csv_response
from core.db import db_session, get_db
from core.errors import commit_or_refuse
from core.models import Organisation, utcnow
from core.privacy import strictest_k
from core.questions import ask_question_once, current_release
from core.scheduler import describe_schedule, next_run_times, registered_jobs, scheduler_timezone
from experiments import (
    arm_pairs,
    charts,
    contact_exports,
    offers,
    outcomes,
    power_report,
    report_data,
    report_export,
    reports,
    services,
    unsubscribe,
)
from experiments.forms import LaunchForm, PostForm, PowerForm
from experiments.models import ContactList, Experiment, Recipient
from experiments.report_words import (
    BASELINE_LABELS,
    METRIC_NAMES,
    METRIC_TITLES,
    N_SOURCE_LABELS,
    TEST_NAMES,
    arm_label,
    arm_title,
    fmt_count,
    fmt_money,
    fmt_number,
    fmt_p,
    fmt_p_equals,
    fmt_percent,
    fmt_points,
    fmt_value,
    headline_sentences,
    level,
)
from experiments.services import ContactListExpired

bp = Blueprint("experiments", __name__, url_prefix="/experiments")

STAFF = ("staff", "admin")
READERS = ("staff", "admin", "evaluator", "venue")


# --- access -------------------------------------------------------------------------------------


def _get_experiment(experiment_id: int) -> Experiment:
    """The experiment, if the current user may read its report (a venue user: only when its
    organisation sends for it); anything else is a 404."""
    session = db_session()
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        abort(404)
    if current_user.role == "venue":
        sends = session.scalar(
            select(Recipient.id)
            .where(Recipient.experiment_id == experiment.id, Recipient.organisation_id == current_user.organisation_id)
            .limit(1)
        )
        if sends is None:
            abort(404)
    return experiment


def _get_campaign(campaign_id: int) -> Campaign:
    campaign = db_session().get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def is_closed(experiment: Experiment) -> bool:
    return experiment.campaign.status == "closed"


def current_report(session, experiment: Experiment) -> tuple[dict, bool]:
    """The latest stored report, and whether sales imported since wait to be matched into it.

    A page never matches outcomes: at a district's scale that takes longer than a page may (the
    ``experiments.after_imports`` job does it every minute, and staff may ask for it). Until then
    the last report is shown with a notice. Only an experiment without any stored report (launched
    by an older version) has one computed here. Once the campaign is closed, the final report frozen
    at close, never recomputed (but rebuilt once from the same outcomes when stored by an older
    version of the report)."""
    closed = is_closed(experiment)
    snapshot = (
        reports.latest_snapshot(session, experiment, kind="final") if closed else None
    ) or reports.latest_snapshot(session, experiment)
    if snapshot is None:
        outcomes.match_outcomes(session, experiment)
        snapshot = reports.refresh_report(session, experiment)
        session.commit()
    elif snapshot.data.get("version") != reports.REPORT_VERSION:
        # stored before the current suppression: rebuilt from the same matched outcomes (a closed
        # campaign's at its closing time, as it was frozen), so that no reader sees the old tables
        snapshot = reports.refresh_report(
            session, experiment, now=experiment.campaign.closed_at if closed else None, kind="final" if closed else None
        )
        session.commit()
    pending = not closed and outcomes.is_stale(session, experiment)
    return snapshot.data, pending


# --- pages --------------------------------------------------------------------------------------


@bp.route("/")
@roles_required(*READERS)
def index():
    session = db_session()
    now = utcnow()
    query = (
        select(Experiment, Campaign)
        .join(Campaign, Campaign.id == Experiment.campaign_id)
        .order_by(Experiment.launched_at.desc())
    )
    if current_user.role == "venue":
        sending = select(Recipient.experiment_id).where(Recipient.organisation_id == current_user.organisation_id)
        query = query.where(Experiment.id.in_(sending.distinct()))
    items = session.execute(query).all()
    lists = {}
    if current_user.role == "venue":
        lists = {
            c.experiment_id: c
            for c in session.scalars(
                select(ContactList).where(ContactList.organisation_id == current_user.organisation_id)
            )
        }
    ready = []
    if current_user.role in STAFF:
        ready = session.scalars(
            select(Campaign).where(Campaign.status == "ready").order_by(Campaign.planned_launch_at)
        ).all()
    return render_template(
        "experiments/index.html",
        items=items,
        lists=lists,
        ready=ready,
        now=now,
        is_expired=services.is_expired,
        k=strictest_k(session),
    )


@bp.route("/campaign/<int:campaign_id>")
@roles_required(*STAFF, "evaluator")
def campaign(campaign_id: int):
    """The campaign's experiment report once launched, its power estimate before."""
    item = _get_campaign(campaign_id)
    experiment = services.experiment_of(db_session(), item)
    if experiment is not None:
        return redirect(url_for("experiments.report", experiment_id=experiment.id))
    return redirect(url_for("experiments.campaign_power", campaign_id=item.id))


@bp.route("/campaign/<int:campaign_id>/power")
@roles_required(*STAFF, "evaluator")
def campaign_power(campaign_id: int):
    session = db_session()
    item = _get_campaign(campaign_id)
    form = PowerForm(request.args)
    if not form.validate():
        form = PowerForm(formdata=None)
    alpha = float(form.alpha.data or 0.05)
    power_ = float(form.power.data or 0.8)
    target = float(form.target.data or 10) / 100.0
    # the readers of this page do not own the pooled data: every count is a noisy figure (core.privacy)
    data = power_report.power_report(
        session,
        item,
        alpha=alpha,
        target_power=power_,
        target_lift=target,
        baseline=form.baseline.data or None,
        release=current_release(session, k=strictest_k(session)),
    )
    if data.get("error") != "no_segment":
        # its noise is keyed by the campaign's state and the window: each new one is a question
        ask_question_once(
            session, "power", {"campaign": item.id, "figures": figure_name(item), "baseline": data.get("baseline")}
        )
    page = render_template(
        "experiments/power.html",
        campaign=item,
        form=form,
        power=data,
        baseline_labels=BASELINE_LABELS,
        n_source_labels=N_SOURCE_LABELS,
        metric_titles=METRIC_TITLES,
        lift_metrics=report_data.LIFT_METRICS,
    )
    session.commit()  # the questions' audit events
    return page


@bp.route("/campaign/<int:campaign_id>/launch", methods=["GET", "POST"])
@roles_required(*STAFF)
def launch(campaign_id: int):
    session = db_session()
    item = _get_campaign(campaign_id)
    existing = services.experiment_of(session, item)
    if existing is not None:
        flash(_("This campaign is already launched."), "info")
        return redirect(url_for("experiments.report", experiment_id=existing.id))
    form = LaunchForm()
    if form.validate_on_submit():

        def launch_and_report() -> Experiment:
            experiment = services.launch(session, item, user=current_user)
            reports.refresh_report(session, experiment)
            return experiment

        done, experiment = commit_or_refuse(
            session,
            launch_and_report,
            lambda launched: _(
                "Campaign launched: %(n)s recipients assigned; the contact lists are ready for the organisations.",
                n=fmt_count(launched.recipients),
            ),
            lambda reason: _("Launch refused: %(reason)s", reason=reason),
        )
        if not done or experiment is None:
            return redirect(url_for("campaigns.detail", campaign_id=item.id))
        return redirect(url_for("experiments.report", experiment_id=experiment.id))
    return render_template(
        "experiments/launch.html", campaign=item, form=form, now=utcnow(), early=item.planned_launch_at > utcnow()
    )


@bp.route("/<int:experiment_id>")
@roles_required(*READERS)
def report(experiment_id: int):
    session = db_session()
    experiment = _get_experiment(experiment_id)
    stored, pending = current_report(session, experiment)
    data = reports.for_viewer(stored, current_user.role, current_user.organisation_id)
    own_list = None
    if current_user.role == "venue":
        own_list = services.contact_list_for(session, experiment.id, current_user.organisation_id)
    # no sale after the launch imported yet: every outcome is a zero that means "not imported"
    waiting = data.get("sales_since_launch") is False
    return render_template(
        "experiments/report.html",
        experiment=experiment,
        campaign=experiment.campaign,
        report=data,
        headline=[] if waiting else headline_sentences(data),
        charts=_charts(data),
        refresh_form=PostForm(),
        metric_titles=METRIC_TITLES,
        metric_names=METRIC_NAMES,
        test_names=TEST_NAMES,
        own_list=own_list,
        now=utcnow(),
        is_expired=services.is_expired,
        waiting=waiting,
        matching=_matching_schedule() if waiting or pending else None,
        pending=pending,
        several_arms=len(data.get("arms") or []) > 2,
        can_refresh=current_user.role in STAFF and not is_closed(experiment),
    )


def _matching_schedule() -> dict:
    """When the scheduled jobs match outcomes again: their schedules in words, the scheduler's
    clock, and the next nightly run when a scheduler has stored one (naive UTC)."""
    app = current_app._get_current_object()
    specs = registered_jobs(app)
    try:
        upcoming = next_run_times(get_db())
    except SQLAlchemyError:  # no job store yet: the schedules alone
        upcoming = {}
    after_imports, nightly = specs.get("experiments.after_imports"), specs.get("experiments.refresh")
    return {
        "after_imports": describe_schedule(after_imports.trigger) if after_imports else None,
        "nightly": describe_schedule(nightly.trigger) if nightly else None,
        "timezone": scheduler_timezone(app),
        "next_nightly": upcoming.get("experiments.refresh"),
    }


def _charts(report: dict) -> dict:
    cumulative = report.get("cumulative") or {}
    days = cumulative.get("days") or []
    series = [(arm_title(a["name"]), (cumulative.get("series") or {}).get(a["name"])) for a in report["arms"]]
    out = {
        "cumulative": charts.line_chart(
            days,
            series,
            title=_("Cumulative conversion by arm over the window"),
            chart_id="cumulative-conversion",
            desc=_("Share of each arm's recipients who bought at a participating organisation, by day since launch."),
            x_label=_("days since launch"),
            percent_label=lambda v: fmt_percent(v, 1),
            hidden_label=_("hidden"),
        )
    }
    metric = report.get("primary_metric")
    forests = []
    for arm in [a["name"] for a in report["arms"] if a["name"] != "control"]:
        rows = []
        for org in report.get("organisations", []):
            row = next((c for c in org["comparisons"] if c["arm"] == arm), None)
            if row is None:
                continue
            rows.append((org["name"], row.get("abs_lift"), *(row.get("abs_ci") or [None, None])))
        if rows:
            label = (
                (lambda v: fmt_points(v))
                if metric in ("conversion", "cross_sell")
                else (lambda v: fmt_value(metric, v, signed=True))
            )
            forests.append(
                (
                    arm,
                    charts.forest_chart(
                        rows,
                        title=_(
                            "Difference in %(metric)s per organisation, %(arm)s against control",
                            metric=METRIC_NAMES.get(metric, metric),
                            arm=arm_label(arm),
                        ),
                        chart_id=f"forest-{arm}",
                        value_label=label,
                        desc=_(
                            "Each organisation's difference with its %(level)s%% confidence interval; hatched rows are "
                            "hidden (fewer than k people) or not estimable.",
                            level=level(report["alpha"]),
                        ),
                        hidden_note=_("hidden: fewer than k people, or too few to estimate"),
                    ),
                )
            )
    out["forests"] = forests
    return out


@bp.route("/<int:experiment_id>/refresh", methods=["POST"])
@roles_required(*STAFF)
def refresh(experiment_id: int):
    """Match the outcomes again and store a report now (staff): refused once the campaign is
    closed, whose final report stays as it was frozen at close."""
    session = db_session()
    experiment = _get_experiment(experiment_id)
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    if is_closed(experiment):
        flash(_("This campaign is closed: its final report was frozen at closing and is not recomputed."), "error")
        return redirect(url_for("experiments.report", experiment_id=experiment.id))
    outcomes.match_outcomes(session, experiment)
    reports.refresh_report(session, experiment, kind="manual")
    session.commit()
    flash(_("Outcomes matched again and report refreshed."), "success")
    return redirect(url_for("experiments.report", experiment_id=experiment.id))


@bp.route("/<int:experiment_id>/report.json")
@roles_required(*READERS)
def report_json(experiment_id: int):
    session = db_session()
    experiment = _get_experiment(experiment_id)
    stored, pending = current_report(session, experiment)
    # whether sales imported since are still to be matched into it: a script then knows to come back
    data = {**reports.for_viewer(stored, current_user.role, current_user.organisation_id), "outcomes_pending": pending}
    body = json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False, default=str)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="report-{experiment.id}.json"'},
    )


@bp.route("/<int:experiment_id>/report.csv")
@roles_required(*READERS)
def report_csv(experiment_id: int):
    session = db_session()
    experiment = _get_experiment(experiment_id)
    data = reports.for_viewer(current_report(session, experiment)[0], current_user.role, current_user.organisation_id)
    rows = report_export.report_csv_rows(data) + arm_pairs.csv_rows(data, report_export.CSV_COLUMNS)
    return csv_response(rows, f"report-{experiment.id}.csv")


# --- contact lists ------------------------------------------------------------------------------


@bp.route("/<int:experiment_id>/contacts.csv")
@roles_required("venue")
def contacts_csv(experiment_id: int):
    """The venue's own test-arm recipients, for its own e-mail tool (the control arm is never
    exported): ``?format=generic`` (default), ``mailchimp`` or ``cyberimpact``
    (``experiments.contact_exports``), each line with its arm's code and message and its own
    unsubscribe link."""
    session = db_session()
    experiment = session.get(Experiment, experiment_id)
    item = services.contact_list_for(session, experiment_id, current_user.organisation_id) if experiment else None
    if item is None:
        abort(404)
    fmt = request.args.get("format", "generic")
    if fmt not in contact_exports.FORMATS:
        flash(_("Unknown list format: choose the generic CSV, Mailchimp or Cyberimpact."), "error")
        return redirect(url_for("experiments.index"))
    rows = services.contact_rows(session, experiment, current_user.organisation_id)
    try:
        services.record_download(session, item, len(rows), user=current_user)
    except ContactListExpired as exc:
        session.commit()  # the refused attempt stays in the audit log
        flash(exc.reason, "error")
        return redirect(url_for("experiments.index"))
    session.commit()
    link = unsubscribe.link_maker()
    export = contact_exports.build(
        fmt, rows, offers.arm_promotions(session, experiment), lambda row: link(row.recipient_id, row.language)
    )
    org = session.get(Organisation, current_user.organisation_id)
    return csv_response(
        export.lines,
        f"contacts-{experiment.id}-{org.slug}-{utcnow():%Y%m%d}{export.suffix}.csv",
        header=export.header,
        bom=export.bom,
    )


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"], endpoint="unsubscribe")
def unsubscribe_page(token: str):
    """The public page of a recipient's unsubscribe link: a confirmation, then the opt-out
    (``experiments.unsubscribe``). A bad token gets a page saying so, never an error."""
    session = db_session()
    found = unsubscribe.find(session, token) if len(token) <= 200 else None
    if found is None:
        return render_template("experiments/unsubscribe.html", state="invalid", form=None), 404
    form = PostForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            flash(_("The page had expired: press the button again."), "error")
        else:
            done = unsubscribe.record(session, token)
            session.commit()
            return render_template(
                "experiments/unsubscribe.html",
                state="done",
                form=None,
                organisation=done.organisation if done else found[1].name,
            )
    return render_template("experiments/unsubscribe.html", state="confirm", form=form, organisation=found[1].name)


# --- the dashboard and the campaign page --------------------------------------------------------


def dashboard_panel(session, user) -> Markup | None:
    """Contact lists waiting for a venue; the latest reports for staff and evaluators."""
    if not getattr(user, "is_authenticated", False):
        return None
    now = utcnow()
    if user.role == "venue":
        lists = session.execute(
            select(ContactList, Campaign)
            .join(Experiment, Experiment.id == ContactList.experiment_id)
            .join(Campaign, Campaign.id == Experiment.campaign_id)
            .where(
                ContactList.organisation_id == user.organisation_id,
                ContactList.purged_at.is_(None),
                ContactList.expires_at > now,
            )
            .order_by(ContactList.expires_at)
        ).all()
        if not lists:
            return None
        return Markup(render_template("experiments/_panel.html", lists=lists, experiments=[]))
    experiments = session.execute(
        select(Experiment, Campaign)
        .join(Campaign, Campaign.id == Experiment.campaign_id)
        .where(Campaign.status.in_(("launched", "measuring", "closed")))
        .order_by(Experiment.launched_at.desc())
        .limit(5)
    ).all()
    if not experiments:
        return None
    return Markup(render_template("experiments/_panel.html", lists=[], experiments=experiments))


def install_template_globals(app) -> None:
    app.jinja_env.globals.update(
        xp_arm_label=arm_label,
        xp_arm_title=arm_title,
        xp_fmt_percent=fmt_percent,
        xp_fmt_value=fmt_value,
        xp_fmt_p=fmt_p,
        xp_fmt_p_equals=fmt_p_equals,
        xp_fmt_money=fmt_money,
        xp_fmt_count=fmt_count,
        xp_fmt_number=fmt_number,
        xp_fmt_points=fmt_points,
        xp_level=level,
    )
