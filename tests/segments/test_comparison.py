"""The district comparison: its facts equal a plain-Python computation from the raw rows, the pooled
figures shown stay within core.privacy's noise bound, a venue sees its own organisation only, and the
page, portrait and CSV answer in French and English."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select, update

from core.charts import grouped_bar_chart
from core.models import DISCIPLINES, Contact, Organisation, Setting, Show, Spectator, Transaction
from segments import comparison_views  # noqa: F401  (the routes, before any app registers the blueprint)
from segments.comparison import (
    PRICE_BUCKETS,
    PRICE_UNKNOWN,
    Period,
    Season,
    Series,
    grouped_series_facts,
    series_facts,
)
from segments.insight_tables import CHANNEL_KEYS, LEAD_BUCKETS, PARTY_BUCKETS
from segments.lifecycle import LAPSE_DAYS, LIFECYCLE_DAYS, lifecycle_stage, window_start
from tests.segments.district import AS_OF, small_district  # noqa: F401  (a fixture)

SIGMA = 2.0  # the noise of the pooled figures in these tests (small, so that cells of a small district show)
BOUND = 5  # core.privacy: a count's noise is N(0, σ²), a sum's N(0, (bound·σ)²); 5σ is never exceeded in practice


# --- the reference: plain Python over the raw rows ---------------------------------------------------


def raw_rows(session) -> dict:
    """Every transaction (with its show's discipline and date), spectator FSA and contact postal code."""
    t, s = Transaction.__table__, Show.__table__
    rows = [
        dict(r._mapping)
        for r in session.execute(
            select(
                t.c.id,
                t.c.organisation_id,
                t.c.spectator_id,
                t.c.show_id,
                t.c.purchased_at,
                t.c.tickets,
                t.c.amount_cents,
                t.c.channel,
                t.c.category,
                t.c.order_id,
                s.c.discipline,
                s.c.starts_at,
            ).select_from(t.outerjoin(s, s.c.id == t.c.show_id))
        )
    ]
    fsa = dict(session.execute(select(Spectator.id, Spectator.fsa)).all())
    contacts = [
        tuple(r) for r in session.execute(select(Contact.organisation_id, Contact.spectator_id, Contact.postal_code))
    ]
    return {"transactions": rows, "fsa": fsa, "contacts": contacts}


def _bucket(value: int, buckets) -> int:
    for i, (_low, high) in enumerate(buckets):
        if high is None or value <= high:
            return i
    raise AssertionError(value)


def reference(raw: dict, series: Series, period: Period) -> dict:
    """The comparison's facts of one series, computed from the rows without SQL."""
    high = dt.datetime.combine(period.as_of + dt.timedelta(days=1), dt.time())
    low = period.low
    start_548 = window_start(period.as_of, LIFECYCLE_DAYS)
    start_1096 = window_start(period.as_of, LAPSE_DAYS)

    def in_series(r) -> bool:
        if series.kind == "organisation":
            return r["organisation_id"] == series.organisation_id
        if series.kind == "discipline":
            return r["discipline"] == series.key
        return True

    scope = [r for r in raw["transactions"] if r["purchased_at"] < high and in_series(r)]
    inside = [r for r in scope if low is None or r["purchased_at"] >= low]
    people = {r["spectator_id"] for r in inside}
    out: dict = {
        name: {}
        for name in (
            "lifecycle",
            "subscribers",
            "fsa",
            "dow",
            "month",
            "lead",
            "channel",
            "price",
            "orders",
            "crossover",
        )
    }

    def add(name, bucket, spectators, lines=0, tickets=0):
        out[name][str(bucket) if bucket is not None else ""] = [spectators, lines, tickets]

    history: dict = {}
    for r in scope:
        history.setdefault(r["spectator_id"], []).append(r)
    stages: dict = {}
    for sid in people:
        rows = history[sid]
        shows = {r["show_id"] for r in rows if r["show_id"] is not None and r["purchased_at"] >= start_548}
        stage = lifecycle_stage(
            len(shows),
            any(r["purchased_at"] < start_548 for r in rows),
            any(r["purchased_at"] >= start_1096 for r in rows),
        )
        stages[stage] = stages.get(stage, 0) + 1
    for stage, n in stages.items():
        add("lifecycle", stage, n)
    subscribers = {r["spectator_id"] for r in inside if r["category"] == "subscription"}
    for flag, group in (("1", subscribers), ("0", people - subscribers)):
        if group:
            add("subscribers", flag, len(group))
    homes: dict = {}
    for sid in people:
        if series.kind == "organisation":
            codes = [
                pc.upper()[:3]
                for org, spectator, pc in raw["contacts"]
                if org == series.organisation_id and spectator == sid and pc
            ]
            home = min(codes) if codes else None
        else:
            home = raw["fsa"][sid]
        homes[home] = homes.get(home, 0) + 1
    for home, n in homes.items():
        add("fsa", home, n)

    def lead(r):
        if r["starts_at"] is None:
            return len(LEAD_BUCKETS)
        days = (r["starts_at"].date() - r["purchased_at"].date()).days
        return len(LEAD_BUCKETS) if days < 0 else _bucket(days, LEAD_BUCKETS)

    def price(r):
        if r["tickets"] <= 0:
            return PRICE_UNKNOWN
        if r["amount_cents"] <= 0:
            return 0
        return next(
            i
            for i, (_lo, hi) in enumerate(PRICE_BUCKETS)
            if i and (hi is None or r["amount_cents"] <= r["tickets"] * hi)
        )

    keys = {
        "dow": lambda r: (r["purchased_at"].weekday() + 1) % 7,  # Sunday = 0
        "month": lambda r: r["purchased_at"].month,
        "lead": lead,
        "channel": lambda r: (
            CHANNEL_KEYS.index(r["channel"]) if r["channel"] in CHANNEL_KEYS[:-1] else len(CHANNEL_KEYS) - 1
        ),
        "price": price,
    }
    for name, key in keys.items():
        groups: dict = {}
        for r in inside:
            groups.setdefault(key(r), []).append(r)
        for bucket, rows in groups.items():
            add(name, bucket, len({r["spectator_id"] for r in rows}), len(rows), sum(r["tickets"] for r in rows))
    orders: dict = {}
    for r in inside:
        key = (r["organisation_id"], r["order_id"] if r["order_id"] is not None else f"#{r['id']}")
        orders.setdefault(key, []).append(r)
    by_size: dict = {}
    for rows in orders.values():
        tickets = sum(r["tickets"] for r in rows)
        by_size.setdefault(_bucket(tickets, PARTY_BUCKETS), []).append((min(r["spectator_id"] for r in rows), tickets))
    for bucket, found in by_size.items():
        add("orders", bucket, len({sid for sid, _t in found}), len(found), sum(t for _sid, t in found))
    # every organisation's sales of these spectators in the period, by discipline
    anywhere = [
        r
        for r in raw["transactions"]
        if r["spectator_id"] in people
        and r["purchased_at"] < high
        and (low is None or r["purchased_at"] >= low)
        and r["discipline"] is not None
    ]
    disciplines: dict = {}
    for r in anywhere:
        disciplines.setdefault(r["discipline"], set()).add(r["spectator_id"])
    for discipline, who in disciplines.items():
        add("crossover", discipline, len(who))
    out["population"] = len(people)
    return out


PERIODS = (
    Period(None, AS_OF),
    Period(Season(2023), AS_OF),
    Period(Season(2022), Season(2022).last_day),
    Period(Season(2018), Season(2018).last_day),
)


def _give_postal_codes(session) -> None:
    """Postal codes on some contact records (the organisation series reads its own), one lower-case,
    one that is not an FSA."""
    codes = ("h2x 1a1", "H3A 2B2", "J4K 3C3", "=1+ 4D4", None, "G1R 5E5")
    for n, contact_id in enumerate(session.scalars(select(Contact.id).order_by(Contact.id))):
        session.execute(update(Contact).where(Contact.id == contact_id).values(postal_code=codes[n % len(codes)]))
    session.commit()


@pytest.mark.parametrize("period", PERIODS, ids=lambda p: p.key)
def test_facts_equal_a_plain_computation_from_the_rows(session, small_district, period):  # noqa: F811
    _give_postal_codes(session)
    raw = raw_rows(session)
    organisations = session.scalars(select(Organisation).order_by(Organisation.id)).all()
    disciplines = sorted({r["discipline"] for r in raw["transactions"] if r["discipline"]})
    every = [Series.district()] + [Series.discipline(d) for d in disciplines]
    every += [Series.organisation(o) for o in organisations]
    populations = []
    for series in every:
        facts = series_facts(session, series, period)
        expected = reference(raw, series, period)
        assert facts == expected, (series, period)
        populations.append(facts["population"])
    # every organisation's and every discipline's series at once (what the publisher reads): the same
    # facts, a series nobody bought in during the period included
    for kind, items, series_of, key_of in (
        ("organisation", organisations, Series.organisation, lambda o: str(o.id)),
        ("discipline", list(DISCIPLINES), Series.discipline, str),
    ):
        grouped = grouped_series_facts(session, kind, period, [key_of(item) for item in items])
        assert len(grouped) == len(items)
        for item in items:
            assert grouped[key_of(item)] == reference(raw, series_of(item), period), (kind, item, period)
    if period.season == Season(2018):  # before the first sale: every series empty
        assert max(populations) == 0
    else:  # the test reads figures, not empty periods
        assert max(populations) > 10


def test_kept_facts_equal_a_plain_computation_from_the_rows(session, small_district):  # noqa: F811
    """The facts the pages read (published in the summary table by segments.insight_publish) equal
    the plain-Python computation too, for every series and every published period."""
    from segments.comparison import kept_series_facts
    from segments.insight_publish import publish
    from segments.insight_store import ALL, COMPARISON, read_facts, scope_key

    _give_postal_codes(session)
    assert publish(session, AS_OF, commit=session.commit)["left"] == 0
    raw = raw_rows(session)
    organisations = session.scalars(select(Organisation).order_by(Organisation.id)).all()
    disciplines = sorted({r["discipline"] for r in raw["transactions"] if r["discipline"]})
    every = [Series.district()] + [Series.discipline(d) for d in disciplines]
    every += [Series.organisation(o) for o in organisations]
    kept = 0
    for series in every:
        for period in PERIODS:
            label = period.season.label if period.season else ALL
            found = read_facts(session, COMPARISON, scope_key(series), label)
            if period.season != Season(2018):  # before the first sale: no season to publish
                assert found is not None and found[1] == period.as_of, (series, period)
                kept += 1
            assert kept_series_facts(session, series, period) == reference(raw, series, period), (series, period)
    assert kept == len(every) * 3


# --- the pages -------------------------------------------------------------------------------------


def _tables(html: str) -> dict[str, list[list[str]]]:
    """The comparison page's tables (key → rows of cell texts), read from its HTML."""
    out = {}
    for key, body in re.findall(
        r'<article class="card compare-card" id="t-([a-z_]+)".*?<tbody>(.*?)</tbody>', html, re.S
    ):
        rows = []
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
            cells = [
                re.sub(r"<[^>]+>", "", c).replace("\u202f", "").replace("\xa0", " ").replace(",", "").strip()
                for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
            ]
            rows.append(cells)
        out[key] = rows
    return out


def _figure(text: str) -> tuple[int | None, float | None]:
    """ "123 (45.6%)" → (123, 0.456); "<k" → (None, None)."""
    match = re.match(r"^(<k|[\d]+)(?:\s*\(([\d.]+)\s*%\))?$", text.replace("&lt;", "<"))
    assert match, text
    value = None if match.group(1) == "<k" else int(match.group(1))
    return value, (float(match.group(2)) / 100 if match.group(2) else None)


def _low_k(session, k: int = 3) -> None:
    session.add(Setting(name="k_threshold", value=str(k)))
    session.commit()


def test_own_series_is_exact_and_pooled_ones_stay_within_the_noise_bound(
    app,
    session,
    small_district,  # noqa: F811
    login_as,
):
    """A venue's own figures are the exact ones (or hidden under k); every pooled figure (the
    discipline, the district, the venue's crossover) is within 5σ of the exact one, σ·5 for tickets
    and purchases (core.privacy's bound of what one person adds to a sum, SUM_BOUNDS), or hidden."""
    from segments.insight_views import SUM_BOUNDS

    _low_k(session)
    app.config["PRIVACY_SIGMA"] = SIGMA
    organisation = session.scalar(select(Organisation).where(Organisation.slug == "theatre-nord"))
    venue = login_as("venue", organisation)
    html = venue.get("/segments/comparison/theatre-nord?season=2023-2024&lang=en").get_data(as_text=True)
    assert "Theatre Nord" in html
    period = Period.make(Season(2023))
    raw = raw_rows(session)
    from segments.comparison import main_discipline

    discipline = main_discipline(session, organisation)
    series = [Series.organisation(organisation), Series.discipline(discipline), Series.district()]
    expected = [reference(raw, s, period) for s in series]
    tables = _tables(html)
    assert set(tables) >= {
        "lifecycle",
        "subscribers",
        "regions",
        "lead_time",
        "weekday",
        "month",
        "channels",
        "prices",
        "order_size",
        "crossover",
    }
    stage_keys = {
        "New": "new",
        "Once before": "once_before",
        "Convertee": "convertee",
        "Active": "active",
        "Super active": "super_active",
        "Stale": "stale",
        "Lapsed": "lapsed",
    }
    week = {
        "Monday": "1",
        "Tuesday": "2",
        "Wednesday": "3",
        "Thursday": "4",
        "Friday": "5",
        "Saturday": "6",
        "Sunday": "0",
    }
    checked = {"exact": 0, "pooled": 0, "hidden": 0}
    for key, fact, index, lookup in (("lifecycle", "lifecycle", 0, stage_keys), ("weekday", "dow", 1, week)):
        for label, *cells in tables[key]:
            bucket = lookup[label]
            for column, (text, facts) in enumerate(zip(cells, expected)):
                value, _share = _figure(text)
                exact = facts[fact].get(bucket, [0, 0, 0])[index]
                if value is None:
                    checked["hidden"] += 1
                    continue
                if column == 0:
                    assert value == exact, (key, label)
                    checked["exact"] += 1
                else:
                    bound = BOUND * SIGMA * (1 if index == 0 else SUM_BOUNDS["purchases"])
                    assert abs(value - exact) <= bound, (key, label, column, value, exact)
                    checked["pooled"] += 1
    # crossover follows the venue's spectators to other organisations' sales: pooled even for the venue
    disciplines = {
        "Theatre": "theatre",
        "Dance": "dance",
        "Music": "music",
        "Humour": "humour",
        "Circus": "circus",
        "Classical music": "classical",
        "Festival": "festival",
        "Other": "other",
    }
    for label, *cells in tables["crossover"]:
        value, _share = _figure(cells[0])
        exact = expected[0]["crossover"].get(disciplines[label], [0])[0]
        if value is not None:
            assert abs(value - exact) <= BOUND * SIGMA
            checked["pooled"] += 1
    assert checked["exact"] >= 5 and checked["pooled"] >= 10, checked


def test_staff_sees_every_series_as_pooled_figures(app, session, small_district, login_as):  # noqa: F811
    _low_k(session)
    app.config["PRIVACY_SIGMA"] = SIGMA
    staff = login_as("staff")
    html = staff.get("/segments/comparison/theatre-nord?lang=en").get_data(as_text=True)
    assert "Every figure here is a pooled figure" in html
    organisation = session.scalar(select(Organisation).where(Organisation.slug == "theatre-nord"))
    expected = reference(raw_rows(session), Series.organisation(organisation), Period.make(None))
    stages = {
        "New": "new",
        "Once before": "once_before",
        "Convertee": "convertee",
        "Active": "active",
        "Super active": "super_active",
        "Stale": "stale",
        "Lapsed": "lapsed",
    }
    for label, own, *_rest in _tables(html)["lifecycle"]:
        value, _share = _figure(own)
        if value is not None:
            assert abs(value - expected["lifecycle"].get(stages[label], [0])[0]) <= BOUND * SIGMA
    # One noisy population per series: every table of spectators totals to the same figure (independent
    # draws of one count would average away their noise).
    totals = {}
    for key in ("lifecycle", "subscribers", "regions", "fsas"):
        foot = re.search(rf'id="t-{key}".*?<tfoot>(.*?)</tfoot>', html, re.S).group(1)
        totals[key] = [re.sub(r"<[^>]+>|\s|,", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", foot, re.S)]
    assert len({tuple(t) for t in totals.values()}) == 1, totals
    assert abs(int(totals["lifecycle"][0]) - expected["population"]) <= BOUND * SIGMA


def test_a_venue_sees_its_own_organisation_only(session, small_district, login_as):  # noqa: F811
    own = session.scalar(select(Organisation).where(Organisation.slug == "theatre-nord"))
    venue = login_as("venue", own)
    page = venue.get("/segments/comparison?lang=en").get_data(as_text=True)
    assert "Compare audiences · Theatre Nord" in page
    html = venue.get("/segments/comparison/theatre-nord?lang=en").get_data(as_text=True)
    assert "Danse Sud" not in html and "danse-sud" not in html  # no other organisation offered or named
    for url in (
        "/segments/comparison/danse-sud",
        "/segments/comparison/danse-sud/portrait",
        "/segments/comparison/danse-sud/comparison.csv",
        "/segments/comparison?slug=danse-sud",
    ):
        assert venue.get(url).status_code == 404, url
    staff = login_as("staff")
    assert staff.get("/segments/comparison/danse-sud?lang=en").status_code == 200
    assert "Danse Sud" in staff.get("/segments/comparison/theatre-nord?lang=en").get_data(as_text=True)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_page_portrait_and_csv_in_both_languages(session, small_district, login_as, lang):  # noqa: F811
    staff = login_as("staff")
    base = "/segments/comparison/danse-sud"
    html = staff.get(f"{base}?season=2023-2024&compare=2022-2023&lang={lang}").get_data(as_text=True)
    assert ("Comparer les publics" if lang == "fr" else "Compare audiences") in html
    assert html.count("<svg") >= 11 and "2022-2023" in html
    for svg in re.findall(r"<svg xmlns.*?</svg>", html, re.S):
        ET.fromstring(svg)  # well-formed
    portrait = staff.get(f"{base}/portrait?season=2023-2024&lang={lang}")
    assert portrait.status_code == 200
    assert ("Portrait des publics comparés" if lang == "fr" else "Audience portrait") in portrait.get_data(as_text=True)
    response = staff.get(f"{base}/comparison.csv?season=2023-2024&lang={lang}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text), delimiter=";" if lang == "fr" else ","))
    assert rows[0][:3] == (["Tableau", "Ligne", "Unité"] if lang == "fr" else ["Table", "Row", "Counted"])
    assert len(rows[0]) == 3 + 2 * 3 and len(rows) > 40


@pytest.mark.parametrize(
    "query",
    [
        "season=1999",
        "season=abc",
        "season=2023-2025",
        "compare=2022",
        "discipline=opera",
        "discipline=%3Cscript%3E",
        "season=" + "9" * 400,
    ],
)
def test_bad_filters_get_a_clear_400(session, small_district, login_as, query):  # noqa: F811
    staff = login_as("staff")
    response = staff.get(f"/segments/comparison/theatre-nord?{query}&lang=en")
    assert response.status_code == 400
    assert "choose" in response.get_data(as_text=True).lower()


def test_an_organisation_without_sales_shows_what_to_do(session, login_as, make_org):
    organisation = make_org("salle-vide")
    venue = login_as("venue", organisation)
    html = venue.get("/segments/comparison/salle-vide?lang=en").get_data(as_text=True)
    assert "No purchases from this organisation in this period" in html


def test_grouped_bars_are_well_formed_and_hatch_hidden_values():
    svg = grouped_bar_chart(
        ["A", "B <&>"],
        ["One", "Two", "Three"],
        [[0.5, None, 0.25], [0.1, 0.2, 0.3]],
        title="T",
        chart_id="g",
        value_labels=[["50%", "", "25%"], ["10%", "20%", "30%"]],
        hidden_note="hidden",
    )
    root = ET.fromstring(str(svg))
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "series-bar"]
    assert len(rects) == 5
    assert "url(#g-hatch)" in str(svg) and "B &lt;&amp;&gt;" in str(svg)
    widths = [float(r.get("width")) for r in rects]
    assert max(widths) == widths[0]  # 0.5 is the longest bar


def test_an_evaluator_reads_the_comparison_only_once_granted(app, session, small_district, login_as):  # noqa: F811
    from tests.test_authorisation_matrix import grant_insights

    evaluator = login_as("evaluator")
    for url in (
        "/segments/comparison",
        "/segments/comparison/theatre-nord",
        "/segments/comparison/theatre-nord/comparison.csv",
    ):
        assert evaluator.get(url).status_code == 403, url
    grant_insights(app, evaluator.user)
    assert evaluator.get("/segments/comparison/theatre-nord").status_code == 200
