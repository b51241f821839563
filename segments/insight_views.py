"""Audience insight pages (the district, a discipline, an organisation) and their CSV exports."""

from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from core.auth import roles_required
from core.charts import hbar_chart, heatmap, vbar_chart
from core.csvexport import csv_response
from core.db import db_session
from core.models import DISCIPLINES, Organisation
from core.vocabulary import DISCIPLINE_LABELS
from segments.insights import QUESTIONS, TABLES, InsightTable, Scope, build_insights, discipline_choices
from segments.views import bp

INSIGHT_ROLES = ("staff", "admin", "evaluator", "venue")
IMPORT_ROLES = ("staff", "venue", "admin")  # who may open the import page (core.views.imports)


# --- who may see which scope --------------------------------------------------------------------------

def _own_organisation_id() -> int | None:
    return current_user.organisation_id if current_user.role == "venue" else None


def _discipline_scope(session, key: str) -> Scope:
    if key not in DISCIPLINES:
        abort(404)
    own = _own_organisation_id()
    if own is not None and key not in discipline_choices(session, own):
        abort(404)  # a venue user sees its own disciplines only
    return Scope.discipline(key)


def _organisation(session, slug: str) -> Organisation:
    organisation = session.scalar(select(Organisation).where(Organisation.slug == slug))
    own = _own_organisation_id()
    if organisation is None or (own is not None and organisation.id != own):
        abort(404)  # another organisation's page does not exist for a venue user
    return organisation


def scope_url(scope: Scope, table: str | None = None) -> str:
    """The page of a scope, or the CSV export of one of its tables."""
    if scope.kind == "discipline":
        return url_for("segments.insights_discipline_csv" if table else "segments.insights_discipline",
                       key=scope.key, **({"table": table} if table else {}))
    if scope.kind == "organisation":
        return url_for("segments.insights_organisation_csv" if table else "segments.insights_organisation",
                       slug=scope.key, **({"table": table} if table else {}))
    return url_for("segments.insights_csv", table=table) if table else url_for("segments.insights")


def _switcher(session, scope: Scope) -> dict:
    """The scopes this user may open: the district, disciplines, organisations."""
    own = _own_organisation_id()
    if own is not None:
        organisations = session.scalars(select(Organisation).where(Organisation.id == own)).all()
    else:
        organisations = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    disciplines = discipline_choices(session, own)
    if scope.kind == "discipline" and scope.key not in disciplines:
        disciplines.append(scope.key)
    return {
        "district": url_for("segments.insights"),
        "disciplines": [(d, DISCIPLINE_LABELS[d], url_for("segments.insights_discipline", key=d)) for d in disciplines],
        "organisations": [(o.slug, o.name, url_for("segments.insights_organisation", slug=o.slug))
                          for o in organisations],
        "pick": own is None and len(organisations) > 1,
    }


# --- formatting for charts and CSV ---------------------------------------------------------------------

def _french() -> bool:
    return str(get_locale()) == "fr"


def format_count(value: int) -> str:
    """As the tables show counts: thousands apart by a narrow no-break space in French, a comma in
    English (templates/_macros.html, Babel's separators)."""
    return f"{value:,}".replace(",", "\u202f") if _french() else f"{value:,}"


def format_share(value: float) -> str:
    return f"{value * 100:.1f}\u00a0%".replace(".", ",") if _french() else f"{value * 100:.1f}%"


def chart_for(table: InsightTable) -> Markup:
    """The SVG of a table: bars for one-way tables, a heat map for matrices."""
    title = str(table.title)
    hidden_note = _("Hatched: hidden (fewer than %(k)d spectators, or would reveal such a figure)", k=table.k)
    hidden_label = f"<{table.k}"
    chart_id = f"chart-{table.key}"
    if table.chart == "heatmap":
        if table.margins:
            cells = [row[1:-1] for row in table.rows]
            cols = [str(c.label) for c in table.columns[1:-1]]
        else:
            cells = [row[1:] for row in table.rows]
            cols = [str(c.label) for c in table.columns[1:]]
        rows = [str(row[0]) for row in table.rows]
        if table.key == "day_hour":
            # the table runs hours down and days across; the chart days down and hours across
            cells = [list(line) for line in zip(*cells)] if cells else []
            rows, cols = cols, [label[:2] for label in rows]
        labels = [[format_count(v) if v is not None else hidden_label for v in line] for line in cells]
        desc = _("Heat map of %(unit)s: darker cells hold more. The figures are in the table.", unit=str(table.unit))
        return heatmap(rows, cols, cells, title=title, chart_id=chart_id, desc=desc, cell_labels=labels,
                       hidden_note=hidden_note, hidden_label=hidden_label, legend_low=_("fewer"),
                       legend_high=_("more"), rotate_columns=table.key == "crossover",
                       column_step=3 if table.key == "day_hour" else 1, cell=24 if table.key == "day_hour" else 30,
                       label_width=60 if table.key == "day_hour" else 120)
    at = table.index(table.measure)
    share_at = table.index("share") if table.share_of == table.measure else None
    labels = [str(label) for label in (table.chart_labels or [row[0] for row in table.rows])]
    values = [row[at] for row in table.rows]
    texts = []
    for row in table.rows:
        text = format_count(row[at]) if row[at] is not None else hidden_label
        if share_at is not None and row[share_at] is not None:
            text += f" ({format_share(row[share_at])})"
        texts.append(text)
    desc = _("Bar chart of %(unit)s. The figures are in the table.", unit=str(table.unit))
    if table.chart == "vbar":
        return vbar_chart(labels, values, title=title, chart_id=chart_id, desc=desc, value_labels=texts,
                          hidden_note=hidden_note, hidden_label=hidden_label,
                          axis_label=str(table.axis_label) if table.axis_label else "")
    return hbar_chart(labels, values, title=title, chart_id=chart_id, desc=desc, value_labels=texts,
                      hidden_note=hidden_note, hidden_label=hidden_label)


def _csv_cell(value, kind: str, k: int) -> str | int:
    """One figure as a spreadsheet reads it (labels go as they are: core.csvexport neutralises them)."""
    if kind == "label":
        return str(value)
    if kind == "share" and value is None:
        # As on the page: a share that is hidden with its row, or meaningless (the total of
        # overlapping rows), is a dash; "<k" in a percent column would read as "under k %".
        return "—"
    if value is None:
        return f"<{k}"
    if kind == "money":
        text = f"{value / 100:.2f}"
        return text.replace(".", ",") if _french() else text
    if kind == "share":
        text = f"{value * 100:.1f}"
        return text.replace(".", ",") if _french() else text
    return int(value)


def table_rows(table: InsightTable) -> tuple[list, list[list]]:
    """(header, rows) of a table as its CSV export writes them: units in the headers, hidden counts
    ``<k`` (with k's value), hidden or meaningless shares (the total's, when rows overlap) a dash,
    decimal commas in French, the total row last."""
    header = []
    for column in table.columns:
        label = str(column.label)
        if column.kind == "money":
            label += " ($)"
        elif column.kind == "share":
            label += " (%)"
        header.append(label)
    rows = [[_csv_cell(v, c.kind, table.k) for v, c in zip(row, table.columns)]
            for row in table.rows + ([table.total] if table.total else [])]
    return header, rows


# --- pages ---------------------------------------------------------------------------------------------

def _cache_seconds() -> float:
    """How long the raw figures of a page are kept (a day; never in tests unless configured)."""
    return current_app.config.get("INSIGHTS_CACHE_SECONDS", 0 if current_app.testing else 86400)


def _cache_dir() -> Path:
    return Path(current_app.instance_path) / "cache" / "insights"


def _build(session, scope: Scope) -> dict:
    return build_insights(session, scope, cache_seconds=_cache_seconds(), cache_dir=_cache_dir())


def _heading(session, scope: Scope) -> str:
    if scope.kind == "discipline":
        return str(DISCIPLINE_LABELS[scope.key])
    if scope.kind == "organisation":
        return session.get(Organisation, scope.organisation_id).name
    return _("The district")


def _page(session, scope: Scope):
    data = _build(session, scope)
    # An empty scope shows what to do next rather than tables of zeros and empty charts.
    items = [] if data["empty"] else [
        {"table": data["tables"][name], "chart": chart_for(data["tables"][name]), "csv_url": scope_url(scope, name)}
        for name in TABLES]
    return render_template(
        "segments/insights.html", scope=scope, heading=_heading(session, scope), data=data, items=items,
        questions=QUESTIONS, switcher=_switcher(session, scope),
        can_import=current_user.role in IMPORT_ROLES and "main.imports" in current_app.view_functions,
    )


def _csv(session, scope: Scope, table: str):
    if table not in TABLES:
        abort(404)
    data = _build(session, scope)
    name = "-".join(filter(None, ["insights", scope.kind, scope.key, table, data["as_of"].isoformat()]))
    header, rows = table_rows(data["tables"][table])
    # French spreadsheets read decimal commas only with ";" between cells
    return csv_response(rows, f"{name}.csv", header=header, delimiter=";" if _french() else ",")


@bp.route("/insights")
@roles_required(*INSIGHT_ROLES)
def insights():
    return _page(db_session(), Scope.district())


@bp.route("/insights/discipline/<key>")
@roles_required(*INSIGHT_ROLES)
def insights_discipline(key: str):
    session = db_session()
    return _page(session, _discipline_scope(session, key))


@bp.route("/insights/organisation/<slug>")
@roles_required(*INSIGHT_ROLES)
def insights_organisation(slug: str):
    session = db_session()
    return _page(session, Scope.organisation(_organisation(session, slug)))


@bp.route("/insights/organisation")
@roles_required(*INSIGHT_ROLES)
def insights_pick_organisation():
    """Target of the organisation picker (a GET form): on to the organisation's clean URL."""
    slug = request.args.get("slug", "")
    _organisation(db_session(), slug)
    return redirect(url_for("segments.insights_organisation", slug=slug))


@bp.route("/insights/<table>.csv")
@roles_required(*INSIGHT_ROLES)
def insights_csv(table: str):
    return _csv(db_session(), Scope.district(), table)


@bp.route("/insights/discipline/<key>/<table>.csv")
@roles_required(*INSIGHT_ROLES)
def insights_discipline_csv(key: str, table: str):
    session = db_session()
    return _csv(session, _discipline_scope(session, key), table)


@bp.route("/insights/organisation/<slug>/<table>.csv")
@roles_required(*INSIGHT_ROLES)
def insights_organisation_csv(slug: str, table: str):
    session = db_session()
    return _csv(session, Scope.organisation(_organisation(session, slug)), table)
