"""The district comparison pages: an organisation beside its discipline and the district, its portrait and CSV."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from core import numbers
from core.auth import roles_required
from core.charts import SERIES_COLOURS, SERIES_TINTS, grouped_bar_chart
from core.csvexport import csv_response, spreadsheet_delimiter
from core.db import db_session
from core.models import Organisation
from core.privacy import Cell, strictest_k
from core.questions import ask_question, current_release
from core.vocabulary import DISCIPLINE_LABELS
from segments.comparison import (
    DIMENSIONS,
    POOLED_DIMENSIONS,
    QUESTIONS,
    Period,
    Season,
    Series,
    available_seasons,
    comparison_disciplines,
    kept_series_facts,
    main_discipline,
    series_table,
    top_fsas,
)
from segments.insight_tables import InsightTable, Scope, scope_k
from segments.insight_views import (
    INSIGHT_ROLES,
    _csv_cell,
    _organisation,
    _own_organisation_id,
    _protect_table,
    evaluator_granted,
    format_count,
    format_share,
)
from segments.views import bp


class BadRequest(Exception):
    """A filter of the comparison that cannot be read (shown as a 400 page in the user's language)."""


@bp.before_request
def _comparison_grant():
    if (
        (request.endpoint or "").startswith("segments.comparison")
        and current_user.is_authenticated
        and not evaluator_granted(current_user)
    ):
        abort(403)


@bp.errorhandler(BadRequest)
def _bad_request(error: BadRequest):
    return render_template("error.html", code=400, message=str(error)), 400


# --- what the user asked -----------------------------------------------------------------------------


@dataclass
class Choice:
    """The comparison asked for: an organisation, a discipline, a season (or all) and maybe a second one."""

    organisation: Organisation
    discipline: str | None
    season: Season | None
    compare: Season | None
    disciplines: list[str] = field(default_factory=list)
    seasons: list[Season] = field(default_factory=list)

    def args(self, **changes) -> dict:
        """The query string of this choice (with ``changes``), for links."""
        values = {
            "discipline": self.discipline,
            "season": self.season.label if self.season else None,
            "compare": self.compare.label if self.compare else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value}

    @property
    def periods(self) -> list[Period]:
        """The periods shown: the season (or all), then the compared one."""
        periods = [Period.make(self.season)]
        if self.compare is not None:
            periods.append(Period.make(self.compare))
        return periods


def _season_arg(name: str, seasons: list[Season]) -> Season | None:
    text = request.args.get(name, "").strip()
    if not text or text == "all":
        return None
    try:
        season = Season.parse(text)
    except ValueError:
        raise BadRequest(
            _(
                "“%(value)s” is not a season: choose one in the list (a season runs from 1 September "
                "to 31 August, such as 2024-2025).",
                value=text[:40],
            )
        ) from None
    if season not in seasons:
        raise BadRequest(
            _("There are no sales on record for the season %(season)s: choose one in the list.", season=season.label)
        )
    return season


def _choice(session, slug: str) -> Choice:
    organisation = _organisation(session, slug)
    disciplines = comparison_disciplines(session, organisation)
    discipline = request.args.get("discipline", "").strip() or main_discipline(session, organisation)
    if discipline is not None and discipline not in disciplines:
        raise BadRequest(
            _(
                "This organisation cannot be compared with “%(value)s”: choose one of its disciplines in the list.",
                value=discipline[:40],
            )
        )
    seasons = available_seasons(session)
    season = _season_arg("season", seasons)
    compare = _season_arg("compare", seasons)
    if compare is not None and season is None:
        raise BadRequest(_("Choose a season first, then the season to compare it with."))
    if compare == season:
        compare = None
    return Choice(organisation, discipline, season, compare, disciplines, seasons)


# --- the comparison, protected -------------------------------------------------------------------


def _series_name(series: Series, organisation: Organisation) -> str:
    if series.kind == "organisation":
        return organisation.name
    if series.kind == "discipline":
        return _("%(discipline)s (discipline)", discipline=DISCIPLINE_LABELS[series.key or ""])
    return _("The district")


@dataclass
class Column:
    """One series of one period, as a column of the tables and a bar of the charts."""

    series: Series
    period: Period
    name: str
    colour: str
    exact: bool  # the organisation's own figures for its own users (else noisy pooled figures)
    label: str = ""  # the series' name without its season
    population: int | None = None


def _measure(table: InsightTable) -> int:
    """The column a dimension's figures come from: its measure if any, else its spectators."""
    return table.index(table.share_of) if table.share_of else table.index("spectators")


def build_comparison(session, choice: Choice) -> dict:
    """Every dimension of the comparison as this user may see it, with each column's figures.

    The organisation's own series is exact (small cells suppressed) for the organisation's own users;
    every other figure, and every figure that reads other organisations' sales (crossover), is a noisy
    pooled figure of core.privacy (``segments.insight_views._protect_table``, as the insight pages).
    """
    organisation = choice.organisation
    own = _own_organisation_id() == organisation.id
    series = [Series.organisation(organisation)]
    if choice.discipline:
        series.append(Series.discipline(choice.discipline))
    series.append(Series.district())
    k_district = strictest_k(session)
    ks = {
        "organisation": strictest_k(session, [organisation.id]),
        "district": k_district,
        "discipline": scope_k(session, Scope.discipline(choice.discipline)) if choice.discipline else k_district,
    }
    periods = choice.periods
    columns, facts = [], []
    for s_index, one in enumerate(series):
        for p_index, period in enumerate(periods):
            label = name = _series_name(one, organisation)
            if len(periods) > 1:
                name = f"{name} {period.season.label if period.season else ''}".strip()
            earlier = len(periods) > 1 and p_index == 1
            colour = (SERIES_TINTS if earlier else SERIES_COLOURS)[s_index % len(SERIES_COLOURS)]
            columns.append(Column(one, period, name, colour, own and one.kind == "organisation", label))
            facts.append(kept_series_facts(session, one, period))
    fsas = top_fsas(facts[0], ks["organisation"])
    releases: dict = {}

    def release_for(k: int):
        if k not in releases:
            releases[k] = current_release(session, k=k)
        return releases[k]

    for column, fact in zip(columns, facts):
        prefix = f"comparison:{column.series.kind}:{column.series.key or ''}:{column.period.key}"
        if column.exact:
            k = ks["organisation"]
            column.population = None if 0 < fact["population"] < k else fact["population"]
        else:
            # the same figure as every table's total of spectators (one draw, never averaged)
            shown = release_for(ks[column.series.kind]).figure(f"{prefix}.total.spectators", Cell(fact["population"]))
            column.population = shown.value
    dimensions = []
    for key, question, title, _counts, note in DIMENSIONS:
        tables = []
        for column, fact in zip(columns, facts):
            k = k_district if key in POOLED_DIMENSIONS else ks[column.series.kind]
            if column.exact and key not in POOLED_DIMENSIONS:
                tables.append(series_table(fact, key, fsas, k=k))
                continue
            release = release_for(k)
            prefix = f"comparison:{column.series.kind}:{column.series.key or ''}:{column.period.key}"
            whole = release.noisy(f"{prefix}.population", Cell(int(fact["population"])))
            tables.append(
                _protect_table(
                    series_table(fact, key, fsas), release, f"{prefix}.{key}", whole, total_prefix=f"{prefix}.total"
                )
            )
        dimensions.append(_combine(key, question, title, note, tables, columns))
    return {
        "columns": columns,
        "dimensions": dimensions,
        "k": ks,
        "k_district": k_district,
        "own": own,
        "empty": all(not fact["population"] for fact in facts[: len(periods)]),
        "fsas": fsas,
    }


def _combine(key: str, question: str, title, note, tables: list[InsightTable], columns: list[Column]) -> dict:
    """One dimension: its rows (every column's figure and share), totals and grouped-bar chart."""
    first = tables[0]
    keys: list = []
    labels: dict = {}
    for table in tables:
        for row_key, row in zip(table.row_keys, table.rows):
            if row_key not in labels:
                keys.append(row_key)
                labels[row_key] = row[0]
    if key != "fsas":  # the usual order of the buckets, whatever a column hid
        order = {row_key: i for i, row_key in enumerate(_bucket_order(tables))}
        keys.sort(key=lambda k: order.get(k, len(order)))
    rows = []
    for row_key in keys:
        cells = []
        for table in tables:
            found = dict(zip(table.row_keys, table.rows)).get(row_key)
            if found is None:
                cells.append((None, None))
            else:
                cells.append((found[_measure(table)], found[table.index("share")]))
        rows.append({"key": row_key, "label": labels[row_key], "cells": cells})
    totals = [
        (table.total[_measure(table)], table.total[table.index("share")]) if table.total else (None, None)
        for table in tables
    ]
    measure = first.columns[_measure(first)].label
    return {
        "key": key,
        "question": question,
        "title": title,
        "note": note,
        "unit": first.unit,
        "measure": measure,
        "rows": rows,
        "totals": totals,
        "k": [t.k for t in tables],
        "chart": _chart(key, title, first.unit, rows, columns),
    }


def _bucket_order(tables: list[InsightTable]) -> list:
    longest = max(tables, key=lambda t: len(t.row_keys))
    return list(longest.row_keys)


def _chart(key: str, title, unit, rows: list[dict], columns: list[Column]) -> Markup:
    shares = [[share for _value, share in row["cells"]] for row in rows]
    texts = [["" if share is None else format_share(share) for share in line] for line in shares]
    # A hidden figure and a share that cannot be shown (a hidden total) read the same: hatched.
    return grouped_bar_chart(
        [str(row["label"]) for row in rows],
        [c.name for c in columns],
        shares,
        title=str(title),
        chart_id=f"compare-{key}",
        value_labels=texts,
        colours=[c.colour for c in columns],
        desc=_("Bar chart of the share of %(unit)s in each series. The figures are in the table.", unit=str(unit)),
        hidden_note=_("Hatched: hidden (too few spectators, or would reveal such a figure)"),
        hidden_label="<k",
    )


# --- pages ------------------------------------------------------------------------------------------


def _ask(session, choice: Choice, what: str) -> None:
    ask_question(
        session,
        what,
        {
            "organisation": choice.organisation.slug,
            "discipline": choice.discipline,
            "season": choice.season.label if choice.season else None,
            "compare": choice.compare.label if choice.compare else None,
        },
    )
    session.commit()


def _organisations(session) -> list[Organisation]:
    own = _own_organisation_id()
    query = select(Organisation).order_by(Organisation.name)
    if own is not None:
        query = query.where(Organisation.id == own)
    return list(session.scalars(query))


def _render(session, choice: Choice, template: str):
    data = build_comparison(session, choice)
    return render_template(
        template,
        choice=choice,
        data=data,
        questions=QUESTIONS,
        change_points=change_points,
        organisations=_organisations(session),
        discipline_labels=DISCIPLINE_LABELS,
        page_args=choice.args(),
        pick=_own_organisation_id() is None,
    )


@bp.route("/comparison")
@roles_required(*INSIGHT_ROLES)
def comparison():
    """The comparison of a venue's own organisation, or of the first one for staff; with ``slug`` (the
    organisation picker, a GET form) on to that organisation's page, the other filters kept."""
    session = db_session()
    slug = request.args.get("slug")
    if slug:
        organisation = _organisation(session, slug)
        args = {key: request.args[key] for key in ("season", "compare") if request.args.get(key)}
        if request.args.get("discipline") in comparison_disciplines(session, organisation):
            args["discipline"] = request.args["discipline"]
        return redirect(url_for("segments.comparison_organisation", slug=slug, **args))
    organisations = _organisations(session)
    if not organisations:
        return render_template("segments/comparison_none.html")
    return _page(session, organisations[0].slug)


def _page(session, slug: str):
    choice = _choice(session, slug)
    _ask(session, choice, "comparison")
    return _render(session, choice, "segments/comparison.html")


@bp.route("/comparison/<slug>")
@roles_required(*INSIGHT_ROLES)
def comparison_organisation(slug: str):
    return _page(db_session(), slug)


@bp.route("/comparison/<slug>/portrait")
@roles_required(*INSIGHT_ROLES)
def comparison_portrait(slug: str):
    """The comparison on one printable portrait page: every table's shares, no charts."""
    session = db_session()
    choice = _choice(session, slug)
    _ask(session, choice, "comparison")
    return _render(session, choice, "segments/comparison_portrait.html")


CSV_SHARE = _l("share (%)")


def comparison_rows(data: dict) -> tuple[list, list[list]]:
    """(header, rows) of the comparison's CSV: one line per row of every table, each column's figure
    and share; hidden figures ``<k``, hidden shares a dash, decimal commas in French."""
    columns = data["columns"]
    header: list = [_("Table"), _("Row"), _("Counted")]
    for column in columns:
        header += [column.name, f"{column.name} {CSV_SHARE}"]
    rows = []
    for dimension in data["dimensions"]:
        for row in dimension["rows"] + [{"label": _("Total"), "cells": dimension["totals"]}]:
            line: list = [str(dimension["title"]), str(row["label"]), str(dimension["unit"])]
            for (value, share), k in zip(row["cells"], dimension["k"]):
                line += [_csv_cell(value, "tickets", k), _csv_cell(share, "share", k)]
            rows.append(line)
    return header, rows


@bp.route("/comparison/<slug>/comparison.csv")
@roles_required(*INSIGHT_ROLES)
def comparison_csv(slug: str):
    session = db_session()
    choice = _choice(session, slug)
    _ask(session, choice, "comparison.csv")
    data = build_comparison(session, choice)
    header, rows = comparison_rows(data)
    name = "-".join(
        filter(
            None,
            [
                "comparison",
                choice.organisation.slug,
                choice.discipline,
                choice.season.label if choice.season else "all",
                choice.compare.label if choice.compare else None,
            ],
        )
    )
    return csv_response(rows, f"{name}.csv", header=header, delimiter=spreadsheet_delimiter())


def change_points(share, before) -> str:
    """The change of a share since the compared season, in percentage points ("+3.1", "−0.4"), or a
    dash when either share is hidden."""
    if share is None or before is None:
        return "—"
    return numbers.decimal((share - before) * 100, 1, signed=True)


def format_cell(value, share) -> str:
    """A table cell's text: the figure and its share."""
    figure = "<k" if value is None else format_count(value)
    return figure if share is None else f"{figure} ({format_share(share)})"
