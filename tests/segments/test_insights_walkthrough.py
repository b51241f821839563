"""Findings of the user walkthrough of the insight pages: the share of a CSV's total row, the empty
state of a scope without purchases, labels that say what a share divides and what a chart counts."""

from __future__ import annotations

import csv
import io
import re

import pytest

from core.models import Organisation
from segments import insight_views  # noqa: F401  (the routes, before any app registers the blueprint)
from segments.insight_builders import TABLES
from tests.segments.test_insights import FSAS, build_district
from tests.test_authorisation_matrix import grant_insights

SVG = re.compile(r"<svg\b.*?</svg>", re.S)
EMPTY_STATE = 'class="card empty-state"'
IMPORT_LINK = 'href="/imports"'


@pytest.fixture
def district(db):
    return build_district(db)


def read_csv(response, delimiter: str) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    return list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig")), delimiter=delimiter))


def page_text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


# --- 1. the total row of a CSV export -------------------------------------------------------------


def test_csv_total_share_is_a_dash_or_a_hundred_never_a_hidden_mark(app, login_as, district):
    # A tiny σ: the noisy figures are the exact ones (the noise is tested in tests/core/test_privacy.py).
    app.config["PRIVACY_SIGMA"] = 1e-6
    client = login_as("staff")
    # Disciplines: a spectator counts in each discipline bought, so the shares add up to more than
    # 100 % and the total's share means nothing: a dash, as on the page, not "<15".
    rows = read_csv(client.get("/segments/insights/disciplines.csv?lang=en"), ",")
    assert rows[0] == ["Discipline", "Spectators", "Share of spectators (%)"]
    assert rows[-1] == ["Total", str(len(FSAS)), "—"]
    french = read_csv(client.get("/segments/insights/disciplines.csv?lang=fr"), ";")
    assert french[0][-1] == "Part des spectateurs (%)" and french[-1][-1] == "—"
    # A partition (life-cycle stages): the total is the whole, 100 %.
    lifecycle = read_csv(client.get("/segments/insights/lifecycle.csv?lang=en"), ",")
    assert lifecycle[-1][0] == "Total" and lifecycle[-1][-1] == "100.0"
    assert read_csv(client.get("/segments/insights/lifecycle.csv?lang=fr"), ";")[-1][-1] == "100,0"
    # A hidden row (three phone buyers) hides its counts as "<k"; its share, like the page's, is a
    # dash: "<15" in a percent column would read as "under 15 %".
    channels = read_csv(client.get("/segments/insights/channels.csv?lang=en"), ",")
    assert channels[0] == ["Channel", "Spectators", "Tickets", "Revenue ($)", "Share of tickets (%)"]
    phone = next(row for row in channels if row[0] == "Phone")
    assert phone == ["Phone", "<15", "<15", "<15", "—"]
    assert channels[-1][0] == "Total" and channels[-1][-1] == "100.0"
    # no share column anywhere, in any scope, says "<k"
    for url in ("/segments/insights", "/segments/insights/organisation/salle-b", "/segments/insights/discipline/music"):
        for name in TABLES:
            table = read_csv(client.get(f"{url}/{name}.csv?lang=en"), ",")
            shares = [i for i, heading in enumerate(table[0]) if heading.startswith("Share")]
            for row in table[1:]:
                for i in shares:
                    assert not row[i].startswith("<"), (url, name, row)


# --- 2. an empty scope ------------------------------------------------------------------------------


def assert_empty_state(page: str, heading: str, *, import_link: bool) -> None:
    assert EMPTY_STATE in page and heading in page
    assert (IMPORT_LINK in page) is import_link
    assert "<svg" not in page and "<table" not in page and ".csv" not in page  # no zeros, no empty charts


def test_an_empty_district_says_so_and_offers_the_import_page(login_as, make_org):
    staff = login_as("staff")
    assert_empty_state(page_text(staff.get("/segments/insights?lang=en")), "No ticketing data yet", import_link=True)
    page = page_text(staff.get("/segments/insights?lang=fr"))
    assert_empty_state(page, "Pas encore de données de billetterie", import_link=True)
    assert "Importer un fichier" in page
    # a discipline nobody bought: the same, in its words
    assert_empty_state(
        page_text(staff.get("/segments/insights/discipline/dance?lang=en")),
        "No purchases of this discipline yet",
        import_link=True,
    )
    # evaluators do not import: the state without the link
    evaluator = login_as("evaluator")
    grant_insights(evaluator.application, evaluator.user)
    page = page_text(evaluator.get("/segments/insights?lang=en"))
    assert_empty_state(page, "No ticketing data yet", import_link=False)
    assert "once the organisations have imported" in page
    # the import page the link opens is one the venue user may use
    venue = login_as("venue", make_org("salle-vide"))
    page = page_text(venue.get("/segments/insights/organisation/salle-vide?lang=en"))
    assert_empty_state(page, "No ticketing data for this organisation yet", import_link=True)
    assert venue.get("/imports").status_code == 200


def test_an_organisation_without_purchases_in_a_busy_district(login_as, district, make_org):
    venue = login_as("venue", make_org("salle-d", name="Salle D"))
    page = page_text(venue.get("/segments/insights/organisation/salle-d?lang=fr"))
    assert_empty_state(page, "Pas encore de données de billetterie pour cet organisme", import_link=True)
    assert "Salle D" in page  # the heading and the switcher stay
    # the district itself has data: its page shows the tables, not the empty state
    page = page_text(venue.get("/segments/insights?lang=fr"))
    assert EMPTY_STATE not in page and len(SVG.findall(page)) == len(TABLES)


# --- 5. what a share divides, what a chart counts, the long day-by-hour table ------------------------


def test_labels_say_what_shares_divide_and_charts_count(login_as, district, session):
    client = login_as("venue", session.get(Organisation, district["salle-a"]))
    page = page_text(client.get("/segments/insights/organisation/salle-a?lang=en"))
    for text in (
        "Share of spectators",
        "Share of purchases",
        "Share of tickets",
        "Bought before the performance",
        "Bars: spectators, with their share in brackets.",
        "Bars: tickets, with their share in brackets.",
        "Cells: purchases; the darker, the more.",
        "Show the figures (24 rows)",
    ):
        assert text in page, text
    assert ">Share<" not in page  # no share column without what it is a share of
    # the 24 × 7 table of purchases is folded under its heat map, its figures one click away
    day_hour = page[page.index('id="t-day_hour"') : page.index('id="t-seasonality"')]
    assert day_hour.index("<svg") < day_hour.index("<details>") < day_hour.index("<table")
    assert day_hour.index("</table>") < day_hour.index("</details>")
    # the other tables stay open
    assert page.count("<details>") == 1
    french = page_text(client.get("/segments/insights/organisation/salle-a?lang=fr"))
    for text in (
        "Part des spectateurs",
        "Part des achats",
        "Part des billets",
        "Acheté avant la représentation",
        "Barres : billets, avec leur part entre parenthèses.",
        "Afficher les chiffres (24 lignes)",
    ):
        assert text in french, text


def test_chart_figures_follow_the_language_of_the_page(login_as, district):
    client = login_as("staff")
    # 150 spectators in the district: their count is on the life-cycle total, in each language's form
    english = page_text(client.get("/segments/insights?lang=en"))
    french = page_text(client.get("/segments/insights?lang=fr"))
    lifecycle_en = SVG.findall(english)[0]
    lifecycle_fr = SVG.findall(french)[0]
    assert re.search(r">\d+ \(\d+\.\d%\)<", lifecycle_en), lifecycle_en[:400]
    assert re.search(r">\d+ \(\d+,\d\u00a0%\)<", lifecycle_fr), lifecycle_fr[:400]
    # thousands: a comma in English, a narrow no-break space in French (as the tables)
    with client.application.test_request_context("/?lang=en"):
        assert insight_views.format_count(12345) == "12,345"
    with client.application.test_request_context("/?lang=fr"):
        assert insight_views.format_count(12345) == "12\u202f345"
