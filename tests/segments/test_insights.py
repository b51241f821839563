"""Audience insights: suppressed tables for the district, a discipline and an organisation; the
pages in French and English, who may open which, CSV exports and well-formed SVG charts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import re
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import insert

from core.charts import hbar_chart, heatmap, vbar_chart
from core.models import Organisation, Setting, Show, Spectator, Transaction
from segments import (
    insight_views,  # noqa: F401  (the routes, before any app registers the blueprint)
)
from segments.insight_builders import TABLES
from segments.insight_store import INSIGHTS, read_facts, scope_key
from segments.insight_tables import Column, Scope, matrix_with_margins, one_way
from segments.insights import InsightQuery, build_insights

TODAY = dt.date.today()
COUNT_KINDS = ("spectators", "purchases", "tickets")
# FSAs of the test district: some areas with fewer than k spectators, one that looks like a formula.
FSAS = (
    ["H2X"] * 40
    + ["H3A"] * 25
    + ["J4K"] * 20
    + ["H7N"] * 12
    + ["=1+"] * 16
    + ["K1A"] * 5
    + ["M5V"] * 3
    + ["G1R"] * 4
    + ["902"] * 2
    + [None] * 8
    + ["H1A", "H2B", "H4C", "H8T", "H9W"] * 3
)


def build_district(db, today: dt.date = TODAY, seed: int = 7) -> dict:
    """A small district: three organisations (one with k = 15), five disciplines, ~150 spectators,
    deliberately small groups (phone buyers, complimentary tickets, Ontario, subscribers)."""
    rnd = random.Random(seed)
    with db.session() as s:
        orgs = {
            "salle-a": Organisation(slug="salle-a", name="Salle A", disciplines="theatre"),
            "salle-b": Organisation(slug="salle-b", name="Salle B", disciplines="music,dance"),
            "festival-c": Organisation(
                slug="festival-c", name="Festival C", kind="festival", k_threshold=15, disciplines="festival"
            ),
        }
        s.add_all(orgs.values())
        s.flush()
        plan = {
            "salle-a": ["theatre"] * 4 + ["humour"],
            "salle-b": ["music"] * 3 + ["dance"] * 2,
            "festival-c": ["festival", "festival", "music"],
        }
        shows = {}
        for slug, disciplines in plan.items():
            shows[slug] = []
            for i, discipline in enumerate(disciplines):
                show = Show(
                    organisation_id=orgs[slug].id,
                    natural_key=f"{slug}-{i}",
                    title=f"Spectacle {slug} {i}",
                    discipline=discipline,
                    starts_at=dt.datetime(2020, 1, 1, 20),
                )
                s.add(show)
                shows[slug].append(show)
        s.flush()
        people = [Spectator(key=f"key-{i:04d}", fsa=fsa) for i, fsa in enumerate(FSAS)]
        s.add_all(people)
        s.flush()
        rows, line = [], 0
        for n, person in enumerate(people):
            home = ("salle-a", "salle-b", "festival-c")[n % 3]
            purchases = rnd.choice([1, 1, 1, 2, 2, 3, 4, 6, 12])
            for p in range(purchases):
                slug = home if rnd.random() < 0.75 else rnd.choice(list(orgs))
                org = orgs[slug]
                day = today - dt.timedelta(days=rnd.randint(0, 1400))
                at = dt.datetime.combine(day, dt.time(rnd.choice([10, 12, 13, 19, 20, 21]), rnd.randint(0, 59)))
                order = None if p % 4 == 3 else f"O-{n}-{p}"
                lines = 2 if rnd.random() < 0.3 else 1
                for _ in range(lines):
                    show = rnd.choice(shows[slug])
                    line += 1
                    rows.append(
                        {
                            "organisation_id": org.id,
                            "spectator_id": person.id,
                            "show_id": show.id,
                            "purchased_at": at,
                            "amount_cents": rnd.choice([2500, 3900, 5450]),
                            "tickets": rnd.choice([1, 2, 2, 2, 3, 4, 6]),
                            "circumstance": "complimentary"
                            if n in (5, 6)
                            else rnd.choice(["regular"] * 4 + ["promotion"]),
                            "category": "subscription" if n % 12 == 0 else "single",
                            "channel": "phone" if n in (1, 2, 3) else rnd.choice(["web", "web", "box_office"]),
                            "order_id": order,
                            "external_id": f"x{line}",
                        }
                    )
        s.execute(insert(Transaction), rows)
        s.commit()
        return {slug: org.id for slug, org in orgs.items()}


# --- what every table must satisfy -------------------------------------------------------------------


def assert_suppressed(table) -> None:
    """No visible count in 1..k-1; no line with exactly one hidden figure beside a shown total."""
    k = table.k
    lines = table.rows + ([table.total] if table.total else [])
    counts = [i for i, c in enumerate(table.columns) if c.kind in COUNT_KINDS]
    for line in lines:
        for i in counts:
            assert line[i] is None or line[i] == 0 or line[i] >= k, (table.key, line, k)
    measures = [i for i, c in enumerate(table.columns) if c.kind in (*COUNT_KINDS, "money")]
    if table.margins:
        grid = [row[1:] for row in table.rows] + [table.total[1:]]
        for line in grid + [list(col) for col in zip(*grid)]:
            assert sum(v is None for v in line) != 1, (table.key, line)
    elif table.total:
        for i in measures:
            if table.total[i] is not None:
                assert sum(row[i] is None for row in table.rows) != 1, (table.key, i, table.rows)
    for row in table.rows if not table.matrix else []:
        # a hidden count hides the whole row (its tickets and revenue with it)
        if any(row[i] is None for i in counts):
            assert all(row[i] is None for i in measures), (table.key, row)


def assert_complements_hidden(query: InsightQuery, table) -> None:
    """Overlapping tables: a shown row never leaves a small "everyone else" beside the total."""
    if table.key == "disciplines":
        total = table.total[table.index("spectators")]
        for row in table.rows:
            if total is not None and row[1] is not None:
                assert not 0 < total - row[1] < table.k, row
    if table.key == "crossover":
        size = len(table.rows)
        population = query.disciplines().total[1]
        for a in range(size):
            for b in range(size):
                cell, diagonal, other = table.rows[a][b + 1], table.rows[a][a + 1], table.rows[b][b + 1]
                if a != b and cell is not None and diagonal is not None:
                    assert not 0 < diagonal - cell < table.k, (a, b)
                if a != b and None not in (cell, diagonal, other, population):
                    assert not 0 < population - diagonal - other + cell < table.k, (a, b)


@pytest.fixture
def district(db):
    return build_district(db)


def all_scopes(session, ids):
    scopes = [Scope.district()]
    scopes += [Scope.discipline(d) for d in ("theatre", "music", "dance", "festival", "humour")]
    scopes += [Scope.organisation(session.get(Organisation, i)) for i in ids.values()]
    return scopes


def test_every_table_of_every_scope_is_suppressed(session, district):
    hidden = shown = 0
    for scope in all_scopes(session, district):
        query = InsightQuery(session, scope)
        for name in TABLES:
            table = getattr(query, name)()
            assert_suppressed(table)
            assert_complements_hidden(query, table)
            cells = [v for line in table.rows + [table.total or []] for v in line[1:]]
            hidden += sum(v is None for v in cells)
            shown += sum(v is not None and v != 0 for v in cells)
    # the small district has both: the checks above are not vacuous
    assert hidden > 100 and shown > 100


def test_k_is_the_strictest_of_the_organisations_in_scope(session, district):
    festival = session.get(Organisation, district["festival-c"])
    salle_a = session.get(Organisation, district["salle-a"])
    assert InsightQuery(session, Scope.district()).lifecycle().k == 15
    assert InsightQuery(session, Scope.organisation(festival)).lifecycle().k == 15
    assert InsightQuery(session, Scope.organisation(salle_a)).lifecycle().k == 10
    # theatre is sold by salle-a only; music by salle-b and festival-c
    assert InsightQuery(session, Scope.discipline("theatre")).lifecycle().k == 10
    assert InsightQuery(session, Scope.discipline("music")).lifecycle().k == 15
    # an organisation's disciplines and crossover read its own sales only (issue 15): its own k
    assert InsightQuery(session, Scope.organisation(salle_a)).disciplines().k == 10
    assert InsightQuery(session, Scope.organisation(salle_a)).crossover().k == 10


def test_small_groups_are_hidden_and_totals_add_up(session, district):
    channels = InsightQuery(session, Scope.district()).channels()
    phone = channels.rows[channels.row_keys.index("phone")]
    assert phone[1] is None and phone[channels.index("tickets")] is None  # three phone buyers
    regions = InsightQuery(session, Scope.district()).regions()
    ontario = regions.rows[regions.row_keys.index("ontario")]
    assert ontario[1] is None  # five spectators from Ontario
    # partitions: the shown parts never exceed the shown total
    lifecycle = InsightQuery(session, Scope.district()).lifecycle()
    assert lifecycle.total[1] == len(FSAS)
    assert sum(row[1] or 0 for row in lifecycle.rows) <= lifecycle.total[1]
    frequency = InsightQuery(session, Scope.district()).frequency()
    assert frequency.total[1] == len(FSAS)
    tickets = InsightQuery(session, Scope.district()).seasonality()
    with_lead = InsightQuery(session, Scope.district()).lead_time()
    at = tickets.index("tickets")
    assert tickets.total[at] == with_lead.total[with_lead.index("tickets")]


def test_formula_fsa_is_listed_as_is(session, district):
    fsas = InsightQuery(session, Scope.district()).fsas()
    labels = [row[0] for row in fsas.rows]
    assert "=1+" in labels and "H2X" == labels[0]


# --- exact figures, with k = 2 -----------------------------------------------------------------------

AS_OF = dt.date(2025, 6, 30)


def _history(session, org_id, show_ids, spectator_id, days_ago, external, at_time=dt.time(14, 30)):
    """One purchase per entry of ``days_ago`` (the show of the same index)."""
    rows = []
    for i, days in enumerate(days_ago):
        rows.append(
            {
                "organisation_id": org_id,
                "spectator_id": spectator_id,
                "show_id": show_ids[i % len(show_ids)],
                "purchased_at": dt.datetime.combine(AS_OF - dt.timedelta(days=days), at_time),
                "amount_cents": 1000,
                "tickets": 2,
                "circumstance": "regular",
                "category": "single",
                "channel": "web",
                "order_id": None,
                "external_id": f"{external}-{i}",
            }
        )
    session.execute(insert(Transaction), rows)


def test_lifecycle_stages_on_exact_data(session):
    session.add(Setting(name="k_threshold", value="2"))
    org = Organisation(slug="o", name="O")
    session.add(org)
    session.flush()
    shows = [
        Show(
            organisation_id=org.id,
            natural_key=f"s{i}",
            title=f"S{i}",
            discipline="theatre",
            starts_at=dt.datetime(2025, 7, 1, 20),
        )
        for i in range(12)
    ]
    session.add_all(shows)
    session.flush()
    ids = [s.id for s in shows]
    histories = {
        "new": [[10], [547]],  # 547 days ago is the first day of the 548-day window
        "once_before": [[10, 700], [10, 20]],  # one show with earlier history; two shows
        "convertee": [[1, 2, 3], [5, 6, 7]],
        "active": [[1, 2, 3, 4, 5], list(range(1, 11))],
        "super_active": [list(range(1, 12)), list(range(1, 13))],
        "stale": [[548], [1095]],  # just outside 548 days; the last day of the 1,096
        "lapsed": [[1096], [2000]],
    }
    n = 0
    for people in histories.values():
        for days in people:
            n += 1
            person = Spectator(key=f"p{n}", fsa="H2X")
            session.add(person)
            session.flush()
            # the same show bought twice counts once
            _history(session, org.id, ids, person.id, days, f"e{n}")
    # a spectator buying the same performance twice within the window is still new
    person = Spectator(key="twice", fsa="H2X")
    session.add(person)
    session.flush()
    _history(session, org.id, [ids[0]], person.id, [3, 4], "twice")
    session.commit()
    table = InsightQuery(session, Scope.district(), AS_OF).lifecycle()
    assert table.k == 2
    shown = dict(zip(table.row_keys, (row[1] for row in table.rows)))
    assert shown == {
        "new": 3,
        "once_before": 2,
        "convertee": 2,
        "active": 2,
        "super_active": 2,
        "stale": 2,
        "lapsed": 2,
    }
    assert table.total[1] == 15
    frequency = dict(zip(range(6), (row[1] for row in InsightQuery(session, Scope.district(), AS_OF).frequency().rows)))
    # purchases ever: one (new x2, stale x2, lapsed x2); two (once_before x2 and "twice")
    assert frequency[0] == 6 and frequency[1] == 3


def test_when_tables_on_exact_data(session):
    session.add(Setting(name="k_threshold", value="2"))
    org = Organisation(slug="o", name="O")
    session.add(org)
    session.flush()
    show = Show(
        organisation_id=org.id, natural_key="s", title="S", discipline="dance", starts_at=dt.datetime(2025, 3, 20, 20)
    )
    session.add(show)
    session.flush()
    for n in range(3):
        person = Spectator(key=f"w{n}", fsa="H7N")
        session.add(person)
        session.flush()
        # Wednesday 5 March 2025, 14:30: 15 days before the show
        session.execute(
            insert(Transaction),
            [
                {
                    "organisation_id": org.id,
                    "spectator_id": person.id,
                    "show_id": show.id,
                    "purchased_at": dt.datetime(2025, 3, 5, 14, 30),
                    "amount_cents": 2000,
                    "tickets": 2,
                    "circumstance": "promotion",
                    "category": "subscription",
                    "channel": "box_office",
                    "order_id": "same" if n < 2 else None,
                    "external_id": f"w{n}",
                }
            ],
        )
    session.commit()
    scope = Scope.discipline("dance")
    day_hour = InsightQuery(session, scope, AS_OF).day_hour()
    wednesday = 1 + 2  # columns: label, Monday, Tuesday, Wednesday...
    # three purchases (order lines), whatever their order numbers
    assert day_hour.rows[14][wednesday] == 3 and day_hour.rows[14][-1] == 3 and day_hour.total[-1] == 3
    assert sum(v for row in day_hour.rows for v in row[1:-1]) == 3
    lead = InsightQuery(session, scope, AS_OF).lead_time()
    assert dict(zip(lead.row_keys, (row[lead.index("tickets")] for row in lead.rows)))[3] == 6  # 14-29 days
    season = InsightQuery(session, scope, AS_OF).seasonality()
    assert season.rows[2][season.index("tickets")] == 6  # March
    categories = InsightQuery(session, scope, AS_OF).categories()
    assert categories.rows[categories.row_keys.index("subscription")][1] == 3
    regions = InsightQuery(session, scope, AS_OF).regions()
    assert regions.rows[regions.row_keys.index("laval")][1] == 3
    assert regions.summary["outside_share"] == 1.0
    party = InsightQuery(session, scope, AS_OF).party_size()
    assert party.rows[1][party.index("purchases")] == 3  # three purchases of two tickets


# --- the suppression helpers alone --------------------------------------------------------------------


def test_one_way_hides_a_complement_for_overlapping_rows():
    items = [("a", "A", 95, {}), ("b", "B", 40, {}), ("c", "C", 30, {})]
    table = one_way("t", "what", "T", Column("label", "L", "label"), items, population=100, k=10, overlapping=True)
    # 100 - 95 = 5 people did not buy A: A is hidden, then B or C so that A is not alone
    assert table.rows[0][1] is None
    assert sum(row[1] is None for row in table.rows) == 2
    assert_suppressed(table)


def test_matrix_margins_never_leave_one_hidden():
    spectators = [[12, 3, 20], [15, 11, 30]]
    values = [[14, 3, 25], [16, 12, 33]]
    table = matrix_with_margins(
        "m",
        "when",
        "M",
        ["r1", "r2"],
        ["a", "b", "c"],
        spectators,
        [30, 50],
        [25, 13, 45],
        70,
        values,
        10,
        corner_label="x",
    )
    assert table.rows[0][2] is None
    assert_suppressed(table)


# --- charts -----------------------------------------------------------------------------------------

NASTY = ['<script>alert("x")</script>', "R&D \"quoted\" 'single'", "=1+2", "é" * 80]


@pytest.mark.parametrize("make", [hbar_chart, vbar_chart])
def test_bar_charts_are_well_formed_and_accessible(make):
    svg = make(
        NASTY,
        [10, None, 0, 2000],
        title="Titre <b>&",
        chart_id="c 1",
        desc="Desc & more",
        hidden_note="Hatched: hidden <k",
    )
    root = ET.fromstring(str(svg))
    assert root.get("role") == "img" and root.get("aria-label") == "Titre <b>&"
    assert root.find("{http://www.w3.org/2000/svg}title").text == "Titre <b>&"
    assert "<script>" not in str(svg)
    assert 'fill="url(#c-1-hatch)"' in str(svg)  # the hidden value is hatched
    ET.fromstring(str(make([], [], title="Empty", chart_id="e")))


def test_bars_stay_inside_the_plot():
    svg = ET.fromstring(str(vbar_chart(list("abc"), [12068, 9000, None], title="T", chart_id="v")))
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]
    assert len(bars) == 2 and all(float(r.get("y")) >= 0 for r in bars)


def test_heatmap_is_well_formed():
    svg = heatmap(
        ["a<", "b"],
        ["x&", "y", "z"],
        [[1, None, 0], [5, 6, None]],
        title="H",
        chart_id="h",
        hidden_note="n",
        legend_low="less",
        legend_high="more",
        rotate_columns=True,
    )
    root = ET.fromstring(str(svg))
    assert root.get("role") == "img"
    ET.fromstring(str(heatmap([], [], [], title="Empty", chart_id="e")))


# --- pages -------------------------------------------------------------------------------------------

SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def assert_page(response, *texts):
    assert response.status_code == 200, response.status_code
    page = response.get_data(as_text=True)
    for text in texts:
        assert text in page, text
    charts = SVG.findall(page)
    assert len(charts) == len(TABLES)
    for chart in charts:
        ET.fromstring(chart)
    assert " style=" not in page and "<script" not in page  # the CSP allows neither
    return page


def test_pages_render_in_french_and_english(login_as, district):
    client = login_as("staff")
    page = assert_page(client.get("/segments/insights"), "Qui sont-ils", "Le Quartier", "cycle de vie")
    assert "&lt;15" in page  # hidden cells, with the district's k
    assert_page(
        client.get("/segments/insights?lang=en"),
        "Who are they?",
        "Where do they come from?",
        "When do they buy?",
        "What do they buy?",
    )
    assert_page(client.get("/segments/insights/discipline/theatre?lang=en"), "Theatre")
    assert_page(client.get("/segments/insights/discipline/theatre?lang=fr"), "Théâtre")
    assert_page(client.get("/segments/insights/organisation/festival-c?lang=en"), "Festival C")
    assert_page(client.get("/segments/insights/organisation/salle-a?lang=fr"), "Salle A")
    assert client.get("/segments/insights/discipline/opera").status_code == 404
    assert client.get("/segments/insights/organisation/nobody").status_code == 404
    picked = client.get("/segments/insights/organisation?slug=salle-b")
    assert picked.status_code == 302 and picked.headers["Location"].endswith("/segments/insights/organisation/salle-b")


def test_pages_render_on_an_empty_district(login_as):
    """Nothing imported yet: an empty state, not tables of zeros (tests/segments/test_insights_walkthrough.py)."""
    client = login_as("staff")
    for url, text in (
        ("/segments/insights?lang=en", "No ticketing data yet"),
        ("/segments/insights/discipline/circus?lang=fr", "Cirque"),
    ):
        response = client.get(url)
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert text in page and 'class="card empty-state"' in page
        assert "<svg" not in page and "<table" not in page


def test_venue_user_sees_its_own_organisation_its_disciplines_and_the_district(login_as, district, session):
    client = login_as("venue", session.get(Organisation, district["salle-a"]))
    assert_page(client.get("/segments/insights/organisation/salle-a"), "Salle A")
    assert_page(client.get("/segments/insights"), "Le Quartier")
    assert_page(client.get("/segments/insights/discipline/theatre"), "Théâtre")
    assert_page(client.get("/segments/insights/discipline/humour"), "Humour")  # its shows' discipline
    assert client.get("/segments/insights/organisation/festival-c").status_code == 404
    assert client.get("/segments/insights/organisation/festival-c/lifecycle.csv").status_code == 404
    assert client.get("/segments/insights/organisation?slug=festival-c").status_code == 404
    assert client.get("/segments/insights/discipline/music").status_code == 404
    page = client.get("/segments/insights").get_data(as_text=True)
    assert "festival-c" not in page  # the switcher offers only what it may open


def test_evaluator_may_read_insights_and_anonymous_may_not(app, login_as, district):
    evaluator = login_as("evaluator")
    # evaluators see reports, not raw insights, until an administrator grants them (issue 15, Build 5)
    for path in ("/segments/insights", "/segments/insights/organisation/salle-b", "/segments/insights/lifecycle.csv"):
        assert evaluator.get(path).status_code == 403, path
    assert "/segments/insights" not in evaluator.get("/").get_data(as_text=True)  # nor in the navigation
    admin = login_as("admin")
    assert admin.post(f"/admin/users/{evaluator.user.id}/access", data={"action": "grant_insights"}).status_code == 302
    assert evaluator.get("/segments/insights/organisation/salle-b").status_code == 200
    assert "/segments/insights" in evaluator.get("/").get_data(as_text=True)
    admin.post(f"/admin/users/{evaluator.user.id}/access", data={"action": "withdraw_insights"})
    assert evaluator.get("/segments/insights").status_code == 403
    response = app.test_client().get("/segments/insights")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def _read_csv(response, delimiter):
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data()
    assert body.startswith("\ufeff".encode("utf-8"))
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=delimiter))


def test_csv_exports_neutralise_formulas_and_hide_small_cells(app, login_as, district):
    # A tiny σ: the noisy figures are the exact ones (the noise: tests/core/test_privacy.py, tests/test_attacks.py).
    app.config["PRIVACY_SIGMA"] = 1e-6
    client = login_as("staff")
    rows = _read_csv(client.get("/segments/insights/fsas.csv?lang=en"), ",")
    assert rows[0][:2] == ["FSA", "Spectators"]
    labels = [row[0] for row in rows[1:]]
    assert "'=1+" in labels and "=1+" not in labels
    assert rows[-1][0] == "Total" and rows[-1][1] == str(len(FSAS))
    channels = _read_csv(client.get("/segments/insights/channels.csv?lang=fr"), ";")  # French: semicolons
    assert channels[0][0] == "Canal"
    phone = next(row for row in channels if row[0] == "Téléphone")
    assert phone[1:4] == ["<15", "<15", "<15"]
    for row in channels[1:]:
        for cell in row[1:]:
            assert not re.fullmatch(r"[1-9]|1[0-4]", cell), row
    for name in TABLES:
        assert client.get(f"/segments/insights/organisation/salle-a/{name}.csv").status_code == 200
        assert client.get(f"/segments/insights/discipline/music/{name}.csv").status_code == 200
    assert client.get("/segments/insights/nothing.csv").status_code == 404


def test_page_and_csv_agree_and_read_the_published_facts(app, login_as, district, session):
    """Before any publication the page computes its facts; once the job published them it reads them,
    and new data show there once published again (a profile refresh of the spectators they move marks
    what they enter)."""
    from core.scheduler import run_job
    from segments.profiles import refresh_profiles

    app.config["PRIVACY_SIGMA"] = 1e-6  # the exact figures, through the noisy path
    client = login_as("staff")
    assert client.get("/segments/insights?lang=en").status_code == 200
    rows = _read_csv(client.get("/segments/insights/lifecycle.csv?lang=en"), ",")
    assert rows[-1][1] == str(len(FSAS))
    run = run_job(app, "insights.warm")
    assert run.status == "success", run.error
    assert run.summary["published"] >= 1 + 5 + 3 and run.summary["left"] == 0
    person = Spectator(key="late", fsa="H2X")
    session.add(person)
    session.flush()
    session.execute(
        insert(Transaction),
        [
            {
                "organisation_id": district["salle-a"],
                "spectator_id": person.id,
                "show_id": None,
                "purchased_at": dt.datetime.combine(TODAY, dt.time(9)),
                "amount_cents": 100,
                "tickets": 1,
                "circumstance": "regular",
                "category": "single",
                "channel": "web",
                "order_id": None,
                "external_id": "late",
            }
        ],
    )
    session.commit()
    rows = _read_csv(client.get("/segments/insights/lifecycle.csv?lang=en"), ",")
    assert rows[-1][1] == str(len(FSAS))  # the last published figures
    refresh_profiles(session, [person.id])  # its profile refreshed: what it bought in is marked stale
    session.commit()
    assert run_job(app, "insights.warm").summary["left"] == 0
    rows = _read_csv(client.get("/segments/insights/lifecycle.csv?lang=en"), ",")
    assert rows[-1][1] == str(len(FSAS) + 1)
    salle_b = Scope.organisation(session.get(Organisation, district["salle-b"]))
    kept = build_insights(session, salle_b, facts=read_facts(session, INSIGHTS, scope_key(salle_b))[0])
    fresh = build_insights(session, salle_b)
    for name in TABLES:
        assert [list(map(str, r)) for r in kept["tables"][name].rows] == [
            list(map(str, r)) for r in fresh["tables"][name].rows
        ], name
