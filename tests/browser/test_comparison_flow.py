"""The district comparison in a real browser, in French and English: choose an organisation, filter a
season, compare two seasons, print the one-page portrait and download the CSV; a venue sees its own."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core.models import Organisation, Setting
from tests.browser.conftest import log_in
from tests.segments.district import small_district  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def district(app, db, small_district):  # noqa: F811
    """The small test district, its pooled figures shown (k = 2, little noise)."""
    with db.session() as session:
        session.add(Setting(name="k_threshold", value="2"))
        session.commit()
    app.config["PRIVACY_SIGMA"] = 1.0
    return small_district


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", data))


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_staff_compares_an_organisation_across_seasons(page, make_user, district, lang):
    words = {
        "fr": {
            "nav": "Comparer",
            "title": "Comparer les publics",
            "submit": "Comparer",
            "district": "Le Quartier",
            "portrait": "Portrait d'une page à imprimer",
            "portrait_title": "Portrait des publics comparés",
            "csv": "Télécharger la comparaison (CSV)",
            "back": "Retour à la comparaison",
            "header": "Tableau",
            "who": "Qui sont-ils ?",
            "season": "Saison 2023-2024",
            "bad": "n'est pas une saison",
            "none": "Aucune vente n'est enregistrée pour la saison 2001-2002",
        },
        "en": {
            "nav": "Compare",
            "title": "Compare audiences",
            "submit": "Compare",
            "district": "The district",
            "portrait": "One-page portrait to print",
            "portrait_title": "Audience portrait",
            "csv": "Download the comparison (CSV)",
            "back": "Back to the comparison",
            "header": "Table",
            "who": "Who are they?",
            "season": "Season 2023-2024",
            "bad": "is not a season",
            "none": "There are no sales on record for the season 2001-2002",
        },
    }[lang]
    staff = make_user("staff")
    log_in(page, staff.email)
    if lang == "en":
        page.click("text=English")
    page.click(f"nav >> text={words['nav']}")
    assert page.inner_text("h1").startswith(words["title"])
    # choose an organisation, a season, then a second season
    page.select_option("#c-organisation", "danse-sud")
    page.select_option("#c-season", "2023-2024")
    page.click(f"form.compare-filters button >> text={words['submit']}")
    page.wait_for_url(re.compile(r".*/segments/comparison/danse-sud\?.*season=2023-2024.*"))
    assert page.inner_text("h1") == f"{words['title']} · Danse Sud"
    assert page.input_value("#c-season") == "2023-2024"
    main = page.inner_text("main")
    assert words["who"] in main and words["district"] in main
    assert page.locator("article.compare-card svg.chart").count() == 11
    assert page.locator("#compare-lifecycle rect.series-bar").count() > 3
    page.select_option("#c-compare", "2022-2023")
    page.click(f"form.compare-filters button >> text={words['submit']}")
    page.wait_for_url(re.compile(r".*compare=2022-2023.*"))
    header = page.locator("#t-lifecycle table thead th")
    assert header.count() == 1 + 6  # three series, two seasons each
    assert "Danse Sud 2022-2023" in page.inner_text("#t-lifecycle thead")
    # the portrait of two seasons, then of one: one printed page each
    page.click(f"text={words['portrait']}")
    page.wait_for_load_state("load")
    assert page.locator("#h-lifecycle + .table-scroll thead th").count() == 1 + 3  # share and its change
    page.emulate_media(media="print")
    assert pdf_pages(page.pdf(format="Letter")) == 1
    page.emulate_media(media="screen")
    page.click(f"text={words['back']}")
    page.select_option("#c-compare", "")
    page.click(f"form.compare-filters button >> text={words['submit']}")
    page.wait_for_url(re.compile(r".*/segments/comparison/danse-sud\?(?!.*compare=2022).*"))
    page.click(f"text={words['portrait']}")
    page.wait_for_load_state("load")  # the print style sheet applies once the page's CSS has loaded
    assert page.inner_text("h1") == f"{words['portrait_title']} · Danse Sud"
    assert words["season"] in page.inner_text("main")
    page.emulate_media(media="print")
    expect(page.locator("header.topbar")).to_be_hidden()
    assert pdf_pages(page.pdf(format="Letter")) == 1
    page.emulate_media(media="screen")
    page.click(f"text={words['back']}")
    # the CSV of what the page shows
    with page.expect_download() as download:
        page.click(f"text={words['csv']}")
    path = download.value.path()
    assert download.value.suggested_filename.startswith("comparison-danse-sud-")
    text = open(path, encoding="utf-8-sig").read()
    rows = list(csv.reader(io.StringIO(text), delimiter=";" if lang == "fr" else ","))
    assert rows[0][0] == words["header"] and "Danse Sud" in rows[0]
    assert len(rows) > 40
    # a season that does not exist, typed in the address bar: a clear message, not a crash
    page.goto("/segments/comparison/danse-sud?season=2001")
    assert words["none"] in page.inner_text("main")
    page.goto("/segments/comparison/danse-sud?season=soon")
    assert words["bad"] in page.inner_text("main")


def test_a_venue_compares_its_own_organisation_only(page, make_user, db, district):
    with db.session() as session:
        own = session.scalar(select(Organisation).where(Organisation.slug == "theatre-nord"))
    venue = make_user("venue", own)
    log_in(page, venue.email)
    page.click("nav >> text=Comparer")
    assert page.inner_text("h1") == "Comparer les publics · Theatre Nord"
    assert page.locator("#c-organisation").count() == 0  # nothing to choose: its own organisation
    assert "Les chiffres de votre organisation sont exacts" in page.inner_text("main")
    assert "Danse Sud" not in page.content()
    page.goto("/segments/comparison/danse-sud")
    assert "404" in page.inner_text("h1")
