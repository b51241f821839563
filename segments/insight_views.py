"""Audience insight pages (the district, a discipline, an organisation) and their CSV exports."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from core import numbers
from core.auth import roles_required
from core.charts import hbar_chart, heatmap, vbar_chart
from core.csvexport import csv_response, spreadsheet_delimiter
from core.db import db_session
from core.models import DISCIPLINES, Organisation
from core.privacy import Cell, Release
from core.questions import ask_question, current_release
from core.vocabulary import DISCIPLINE_LABELS
from segments.insight_builders import TABLES
from segments.insight_store import INSIGHTS, read_facts, scope_key
from segments.insight_tables import QUESTIONS, InsightTable, Scope, discipline_choices
from segments.insights import InsightQuery, build_insights
from segments.views import bp

INSIGHT_ROLES = ("staff", "admin", "evaluator", "venue")
IMPORT_ROLES = ("staff", "venue", "admin")  # who may open the import page (core.views.imports)


# --- who may see which scope --------------------------------------------------------------------------


def evaluator_granted(user) -> bool:
    """An evaluator reads the experiment reports; the raw audience insights only once an
    administrator granted them (``User.insights_granted``, on the users' page)."""
    return user.role != "evaluator" or bool(getattr(user, "insights_granted", False))


@bp.before_request
def _insights_grant():
    if (
        (request.endpoint or "").startswith("segments.insights")
        and current_user.is_authenticated
        and not evaluator_granted(current_user)
    ):
        abort(403)


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
        return url_for(
            "segments.insights_discipline_csv" if table else "segments.insights_discipline",
            key=scope.key,
            **({"table": table} if table else {}),
        )
    if scope.kind == "organisation":
        return url_for(
            "segments.insights_organisation_csv" if table else "segments.insights_organisation",
            slug=scope.key,
            **({"table": table} if table else {}),
        )
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
        "organisations": [
            (o.slug, o.name, url_for("segments.insights_organisation", slug=o.slug)) for o in organisations
        ],
        "pick": own is None and len(organisations) > 1,
    }


# --- formatting for charts and CSV ---------------------------------------------------------------------


def format_count(value: int) -> str:
    """As the tables show counts (core.numbers: Babel's separators)."""
    return numbers.count(value)


def format_share(value: float) -> str:
    return numbers.percent(value, 1)


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
        return heatmap(
            rows,
            cols,
            cells,
            title=title,
            chart_id=chart_id,
            desc=desc,
            cell_labels=labels,
            hidden_note=hidden_note,
            hidden_label=hidden_label,
            legend_low=_("fewer"),
            legend_high=_("more"),
            rotate_columns=table.key == "crossover",
            column_step=3 if table.key == "day_hour" else 1,
            cell=24 if table.key == "day_hour" else 30,
            label_width=60 if table.key == "day_hour" else 120,
        )
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
    words: dict[str, Any] = {
        "title": title,
        "chart_id": chart_id,
        "desc": desc,
        "value_labels": texts,
        "hidden_note": hidden_note,
        "hidden_label": hidden_label,
    }
    if table.chart == "vbar":
        return vbar_chart(labels, values, axis_label=str(table.axis_label) if table.axis_label else "", **words)
    return hbar_chart(labels, values, **words)


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
        return numbers.plain(value / 100, 2)
    if kind == "share":
        return numbers.plain(value * 100, 1)
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
    rows = [
        [_csv_cell(v, c.kind, table.k) for v, c in zip(row, table.columns)]
        for row in table.rows + ([table.total] if table.total else [])
    ]
    return header, rows


# --- pages ---------------------------------------------------------------------------------------------


def kept_facts(session, scope: Scope) -> tuple[dict, dt.date | None]:
    """The scope's raw facts as last published (``segments.insight_store``) and their date; computed
    from the transactions, as of today, only when none were ever published for the scope."""
    kept = read_facts(session, INSIGHTS, scope_key(scope))
    if kept is not None:
        return kept
    return InsightQuery(session, scope).compute_all(), None


# What one spectator is taken to add at most to a cell's sums: their noise is σ times this bound.
SUM_BOUNDS = {"purchases": 5, "tickets": 10, "money": 50_000}  # money in cents
# Tables that follow a venue's spectators to other organisations' purchases: pooled figures even on
# the venue's own page.
POOLED_ON_OWN_PAGE = ("disciplines", "crossover")


def _protect_table(
    table: InsightTable, release: Release, prefix: str, population: int | None, total_prefix: str | None = None
) -> InsightTable:
    """The table as the web shows it: every figure noisy (core.privacy), each row's spectators
    thresholded on their noisy value (and against the noisy population, the complement), the
    row's sums hidden with them, shares recomputed from the noisy figures. A row of postal areas
    whose figure is hidden goes (its name alone would say that someone lives there).

    ``total_prefix`` names the total row's figures (default ``prefix + ".total"``): tables of the
    same population that share it show one and the same noisy total, never independent draws of
    it that averaging would sharpen."""
    columns = table.columns
    people = next((i for i, c in enumerate(columns) if c.kind == "spectators"), None)
    share = next((i for i, c in enumerate(columns) if c.kind == "share"), None)

    def protect(row: list, key: str) -> list:
        out = list(row)
        shown = True
        base = (total_prefix or f"{prefix}.total") if key == "total" else f"{prefix}.{key}"
        if people is not None and row[people] is not None:
            whole = None if key == "total" else population  # the total is the whole itself
            figure = release.figure(f"{base}.spectators", Cell(int(row[people])), whole=whole)
            out[people] = figure.value
            shown = figure.value is not None
        for i, column in enumerate(columns):
            if column.kind not in SUM_BOUNDS or row[i] is None:
                continue
            cell = Cell(int(row[i]))
            if people is None:  # a matrix of one measure: thresholded on its own noisy value
                value = release.noisy(f"{base}.{column.key}", cell, scale=SUM_BOUNDS[column.kind])
                out[i] = value if value >= release.k else None
            else:
                value = release.sum_figure(f"{base}.{column.key}", cell, float(row[i]), SUM_BOUNDS[column.kind], shown)
                out[i] = None if value is None else int(round(value))
        return out

    keys = table.row_keys or [str(n) for n in range(len(table.rows))]
    rows = [protect(row, str(key)) for row, key in zip(table.rows, keys)]
    total = protect(table.total, "total") if table.total else table.total
    if table.key == "fsas" and people is not None:
        kept = [(row, key) for row, key in zip(rows, keys) if row[people] is not None]
        rows, keys = [row for row, _key in kept], [key for _row, key in kept]
    if share is not None and table.share_of:
        source = table.index(table.share_of)
        whole = total[source] if total and total[source] is not None else sum(r[source] or 0 for r in rows)
        for row in rows:
            row[share] = None if row[source] is None or not whole else min(row[source] / whole, 1.0)
    return replace(
        table, rows=rows, total=total, k=release.k, row_keys=list(keys) if table.row_keys else [], summary={}
    )


def _protect(data: dict, release: Release, scope: Scope, only=None) -> dict:
    """Every table of ``data`` (exact, from ``build_insights(raw=True)``) protected, or only those
    named in ``only``; the population too."""
    prefix = f"insights:{scope.kind}:{scope.key or ''}:{data['as_of'].isoformat()}"
    population = release.figure(f"{prefix}.population", Cell(int(data["population"] or 0)))
    whole = release.noisy(f"{prefix}.population", Cell(int(data["population"] or 0)))
    tables = {
        name: (_protect_table(table, release, f"{prefix}.{name}", whole) if only is None or name in only else table)
        for name, table in data["tables"].items()
    }
    return {**data, "tables": tables, "population": population.value, "noisy": True}


def _build(session, scope: Scope) -> dict:
    """The scope's tables as this user may see them: a venue's own organisation exact (small
    cells suppressed) but for the tables that follow its spectators elsewhere; everything else
    through the noisy figures of core.privacy. Each build is a question of the user's budget."""
    facts, as_of = kept_facts(session, scope)
    own = scope.kind == "organisation" and scope.organisation_id == _own_organisation_id()
    raw = build_insights(session, scope, as_of, facts=facts, raw=True)
    release = current_release(session, k=raw["k"])
    if own:
        exact = build_insights(session, scope, as_of, facts=facts)
        pooled = _protect(raw, current_release(session, k=raw["k_district"]), scope, only=POOLED_ON_OWN_PAGE)
        return {
            **exact,
            "tables": {
                name: pooled["tables"][name] if name in POOLED_ON_OWN_PAGE else table
                for name, table in exact["tables"].items()
            },
        }
    return _protect(raw, release, scope)


def _ask(session, scope: Scope, table: str | None = None) -> None:
    """One question of the user's budget (refused past it with a clear 429), audited."""
    ask_question(
        session,
        "insights" if table is None else "insights.csv",
        {"scope": scope.kind, "key": scope.key, "table": table},
    )
    session.commit()


def _heading(session, scope: Scope) -> str:
    if scope.kind == "discipline":
        return str(DISCIPLINE_LABELS[scope.key])
    if scope.kind == "organisation":
        return session.get(Organisation, scope.organisation_id).name
    return _("The district")


def _page(session, scope: Scope):
    _ask(session, scope)
    data = _build(session, scope)
    # An empty scope shows what to do next rather than tables of zeros and empty charts.
    items = (
        []
        if data["empty"]
        else [
            {"table": data["tables"][name], "chart": chart_for(data["tables"][name]), "csv_url": scope_url(scope, name)}
            for name in TABLES
        ]
    )
    return render_template(
        "segments/insights.html",
        scope=scope,
        heading=_heading(session, scope),
        data=data,
        items=items,
        questions=QUESTIONS,
        switcher=_switcher(session, scope),
        can_import=current_user.role in IMPORT_ROLES and "main.imports" in current_app.view_functions,
    )


def _csv(session, scope: Scope, table: str):
    if table not in TABLES:
        abort(404)
    _ask(session, scope, table)
    data = _build(session, scope)
    name = "-".join(filter(None, ["insights", scope.kind, scope.key, table, data["as_of"].isoformat()]))
    header, rows = table_rows(data["tables"][table])
    # French spreadsheets read decimal commas only with ";" between cells
    return csv_response(rows, f"{name}.csv", header=header, delimiter=spreadsheet_delimiter())


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
