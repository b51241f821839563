"""Core pages: the dashboard and imports (the administration pages are in core.admin_views)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from sqlalchemy import func, select
from wtforms import SelectField
from wtforms.validators import DataRequired

from core import rejects as rejects_files
from core.auth import actor_name, login_required, roles_required
from core.csvexport import csv_stream_response
from core.db import db_session
from core.headline import computed_at, facts_for_page
from core.models import (
    ImportBatch,
    Notification,
    Organisation,
)
from core.privacy import (
    BudgetExhausted,
    Cell,
    Release,
    figure_label,
    strictest_k,
    suppress,
    suppress_total,
)
from core.questions import ask_question_once, budget_message
from core.registry import NavEntry, registry
from core.vocabulary import DISCIPLINE_LABELS

bp = Blueprint("main", __name__)

# Extension points filled by feature packages at start-up: callables returning
# (title, body_html_or_template_context) panels for the dashboard of the current user.

ROLE_LABELS = {
    "staff": _l("Partnership staff"),
    "venue": _l("Venue approver"),
    "evaluator": _l("Evaluator"),
    "admin": _l("Administrator"),
}
ORGANISATION_KIND_LABELS = {"venue": _l("Venue"), "company": _l("Company"), "festival": _l("Festival")}
IMPORT_STATUS_LABELS = {"running": _l("Running"), "done": _l("Done"), "refused": _l("Refused")}
IMPORT_KIND_LABELS = {"sales": _l("Ticket sales"), "unsubscribes": _l("Unsubscribes")}
# What the audit log shows for each action key; a key without a label is shown as it is. A feature
# package may add its own at start-up (``core.views.AUDIT_ACTION_LABELS.update(...)``).
AUDIT_ACTION_LABELS = {
    "login": _l("Logged in"),
    "login.locked": _l("Login locked after repeated failures"),
    "organisation.create": _l("Organisation created"),
    "user.create": _l("User created"),
    "user.deactivate": _l("User deactivated"),
    "user.reactivate": _l("User reactivated"),
    "user.invite": _l("User invited"),
    "user.invite_again": _l("New invitation link made"),
    "user.reset_link": _l("Password reset link made"),
    "user.invitation_accepted": _l("Invitation accepted, password chosen"),
    "user.password_reset": _l("Password chosen with a reset link"),
    "user.role_change": _l("Role or organisation changed"),
    "organisation.update": _l("Organisation changed"),
    "venue.create": _l("Hall added"),
    "venue.update": _l("Hall changed"),
    "venue.delete": _l("Hall removed"),
    "user.grant_insights": _l("Evaluator granted the audience insights"),
    "user.withdraw_insights": _l("Evaluator's audience insights withdrawn"),
    "user.password_change": _l("Own password changed"),
    "job.run_now": _l("Scheduled job run by hand"),
    "demo.build": _l("Demo district built"),
    "import.sales": _l("Sales imported"),
    "import.unsubscribes": _l("Unsubscribes imported"),
    "import.refused": _l("Import refused"),
    "import.rejects_download": _l("Rejected rows downloaded"),
    "audit.export": _l("Audit log downloaded"),
    "import.rejects_purge": _l("Rejected rows deleted (retention period over)"),
    "segment.create": _l("Segment created"),
    "segment.version": _l("Segment rule changed"),
    "promotion.create": _l("Promotion created"),
    "promotion.update": _l("Promotion changed"),
    "campaign.create": _l("Campaign created"),
    "campaign.update": _l("Campaign changed"),
    "campaign.submit": _l("Campaign submitted for approval"),
    "campaign.ready": _l("Campaign ready to launch"),
    "campaign.cancel": _l("Campaign cancelled"),
    "campaign.launch": _l("Campaign launched"),
    "campaign.measure": _l("Campaign window ended: measuring"),
    "campaign.close": _l("Campaign closed"),
    "approval.approve": _l("Contacting approved"),
    "provider.approve": _l("Data provider approved"),
    "provider.decline": _l("Data provider declined"),
    "approval.decline": _l("Contacting declined"),
    "approval.expire": _l("Approval request expired"),
    "approval.exclusion_list": _l("Exclusion list uploaded"),
    "experiment.launch": _l("Experiment launched"),
    "contact_list.download": _l("Contact list downloaded"),
    "contact_list.refused": _l("Expired contact list refused"),
    "contact_list.purge": _l("Contact list purged"),
    "person.erase": _l("Person erased on request"),
    "person.search": _l("Erasure search (the address is never kept)"),
    "download": _l("File downloaded"),
}


def headline_figures(session, organisation_id: int | None = None) -> dict:
    """An organisation's own headline figures (or the district's, exact), small counts suppressed.

    Read from the kept facts (core.headline; the ``headline.publish`` job keeps them up to date
    after imports); suppression is applied on every call, so a change of k shows at once.
    """
    facts = facts_for_page(session, organisation_id)
    spectators, disciplines = facts["spectators"], facts["disciplines"]
    k = strictest_k(session, [organisation_id]) if organisation_id is not None else strictest_k(session)
    shown = suppress(disciplines, k, total_shown=True)
    small = 0 < spectators < k
    return {
        "k": k,
        "organisations": session.scalar(select(func.count(Organisation.id))),
        "spectators": None if small else spectators,
        "transactions": None if small else facts["transactions"],
        "tickets": None if small else facts["tickets"],
        "revenue": None if small else facts["revenue_cents"] / 100,
        "by_discipline": sorted(((d, n) for d, n in shown.items()), key=lambda t: -(t[1] or 0)),
        "by_discipline_total": suppress_total(sum(disciplines.values()), shown, k),
        "computed_at": computed_at(facts),
    }


# What one spectator is taken to add at most to the district's sums (order lines, tickets, revenue in
# dollars): their noise is σ times this bound, so that one person's purchases hide in it.
DISTRICT_SUM_BOUNDS = {"transactions": 10, "tickets": 20, "revenue": 1000.0}


def district_figures(session) -> dict:
    """The district's headline figures: the kept exact facts (core.headline) with the noise of the
    current data epoch (core.privacy), so that every reader of an epoch sees the same figures and a
    new epoch draws them all again. The spectators' counts are thresholded on their noisy value; the
    sums (order lines, tickets, revenue) get noise of σ times :data:`DISTRICT_SUM_BOUNDS` and are
    hidden with the spectators."""
    release = Release.current(session)
    facts = facts_for_page(session)
    everyone = Cell.of(*facts["cell"])
    size = release.figure("district.spectators", everyone)
    shown = size.status == "shown"
    disciplines = {
        d: release.figure(f"district.discipline.{d}", Cell.of(*cell), whole=size.value if shown else None)
        for d, cell in facts["discipline_cells"].items()
    }

    def noisy_sum(name: str, total: float) -> float | None:
        return release.sum_figure(f"district.{name}", everyone, total, DISTRICT_SUM_BOUNDS[name], shown)

    revenue = noisy_sum("revenue", facts["revenue_cents"] / 100)
    transactions, tickets = noisy_sum("transactions", facts["transactions"]), noisy_sum("tickets", facts["tickets"])
    return {
        "epoch": release.epoch,
        "k": release.k,
        "noisy": True,
        "spectators": size.value,
        "spectators_status": size.status,
        "transactions": None if transactions is None else int(round(transactions)),
        "tickets": None if tickets is None else int(round(tickets)),
        "revenue": revenue,
        "texts": {"spectators": figure_label(size)},
        "by_discipline": sorted(
            ((d, f.value, figure_label(f)) for d, f in disciplines.items()), key=lambda t: -(t[1] or 0)
        ),
        "computed_at": computed_at(facts),
    }


@bp.route("/")
@login_required
def dashboard():
    session = db_session()
    own = None
    if current_user.role == "venue":
        own = headline_figures(session, current_user.organisation_id)
    district, refused = district_figures(session), None
    try:
        # Each epoch's figures are a fresh draw over the same sets, and an import starts an epoch:
        # reading a new epoch is a question (core.privacy.ask_once), so that forcing epochs with
        # imports to average the noise away is bounded by the budget; the same epoch again is free.
        ask_question_once(session, "dashboard", {"epoch": district["epoch"], "k": district["k"]})
        session.commit()
    except BudgetExhausted as error:
        session.rollback()
        district, refused = None, budget_message(error.budget)
    notifications = session.scalars(
        select(Notification)
        .where(Notification.read_at.is_(None))
        .where(
            (Notification.organisation_id == current_user.organisation_id) | (Notification.role == current_user.role)
        )
        .order_by(Notification.created_at.desc())
        .limit(10)
    ).all()
    panels = [panel for make in registry().dashboard_panels if (panel := make(session, current_user))]
    return render_template(
        "dashboard.html",
        district=district,
        district_refused=refused,
        own=own,
        panels=panels,
        notifications=notifications,
        labels=DISCIPLINE_LABELS,
    )


@bp.route("/healthz")
def healthz():
    db_session().execute(select(1))
    return {"status": "ok"}


# --- imports -----------------------------------------------------------------------------------


class ImportForm(FlaskForm):
    # Staff and administrators import for any organisation: no organisation is chosen for them, so
    # that a file never lands in the first one of the list by mistake.
    organisation = SelectField(
        _l("Organisation"),
        choices=[],
        validate_choice=False,
        validators=[DataRequired(message=_l("Choose the organisation whose export this is."))],
    )
    kind = SelectField(_l("Kind of file"), choices=list(IMPORT_KIND_LABELS.items()))
    file = FileField(
        _l("Export (CSV or Excel workbook)"),
        validators=[
            FileRequired(),
            FileAllowed(
                ["csv", "txt", "xlsx", "xls", "ods"],
                _l("A CSV file (.csv or .txt) or an Excel workbook (.xlsx) is expected."),
            ),
        ],
    )
    skip_invalid = SelectField(
        _l("Rows with errors"),
        choices=[
            ("0", _l("Refuse the whole file")),
            ("1", _l("Import the valid lines only, set the others aside (skip invalid)")),
        ],
    )


def _import_organisations(session):
    """The organisations the current user may import for: its own, or all for staff and admins."""
    query = select(Organisation).order_by(Organisation.name)
    if current_user.role == "venue":
        query = query.where(Organisation.id == current_user.organisation_id)
    return session.scalars(query).all()


def _visible_batches(session):
    query = select(ImportBatch).order_by(ImportBatch.id.desc())
    if current_user.role == "venue":
        query = query.where(ImportBatch.organisation_id == current_user.organisation_id)
    return query


@bp.route("/imports", methods=["GET", "POST"])
@roles_required("staff", "venue", "admin")
def imports():
    from core.import_views import imports_page

    return imports_page()


@bp.route("/imports/<int:batch_id>")
@roles_required("staff", "venue", "admin")
def import_batch(batch_id: int):
    session = db_session()
    batch = session.scalar(_visible_batches(session).where(ImportBatch.id == batch_id))
    if batch is None:
        abort(404)
    app = current_app._get_current_object()
    rejects = None
    if batch.status == "done" and batch.rejected:
        rejects = {
            "available": rejects_files.rejects_file(app, batch) is not None,
            "allowed": rejects_files.may_download(current_user, batch),
            "expires_at": rejects_files.expires_at(app, batch),
            "purged_at": rejects_files.purged_at(batch),
            "days": rejects_files.retention_days(app),
        }
    return render_template(
        "import_batch.html", batch=batch, rejects=rejects, organisation=session.get(Organisation, batch.organisation_id)
    )


@bp.route("/imports/<int:batch_id>/rejects.csv")
@roles_required("staff", "venue", "admin")
def import_rejects(batch_id: int):
    """The rows an import set aside, with their reasons: for the organisation's own users (and
    whoever made the import), while the retention period lasts; every download is logged."""
    session = db_session()
    batch = session.scalar(_visible_batches(session).where(ImportBatch.id == batch_id))
    if batch is None or not rejects_files.may_download(current_user, batch):
        abort(404)
    path = rejects_files.rejects_file(current_app, batch)
    if path is None:
        abort(404)
    rejects_files.record_download(session, batch, current_user, actor_name())
    session.commit()
    delimiter = (batch.summary or {}).get("delimiter") or ","
    return csv_stream_response(
        rejects_files.read_rows(path, batch),
        f"{Path(batch.filename).stem}-rejects.csv",
        delimiter=delimiter if delimiter in (",", ";") else ",",
    )


def init_app(app) -> None:
    app.register_blueprint(bp)
    pilot = registry(app)
    pilot.add_navigation(NavEntry("main.dashboard", _l("Dashboard"), order=0))
    pilot.add_navigation(
        NavEntry(
            "main.imports",
            _l("Imports"),
            order=80,
            roles=("staff", "admin", "venue"),
            current=("main.import", "imports."),
        )
    )
    pilot.add_navigation(
        NavEntry("admin.organisations", _l("Administration"), order=90, roles=("admin",), administration=True)
    )

    from flask_babel import get_locale

    # Globals rather than a context processor, so that imported macros see them too.
    app.jinja_env.globals.update(
        navigation=lambda user: registry(app).navigation_for(user),
        admin_links=registry(app).admin_links,
        role_labels=ROLE_LABELS,
        discipline_labels=DISCIPLINE_LABELS,
        get_locale=get_locale,
        organisation_kind_labels=ORGANISATION_KIND_LABELS,
        import_status_labels=IMPORT_STATUS_LABELS,
        import_kind_labels=IMPORT_KIND_LABELS,
    )
