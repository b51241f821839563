"""The pilot end to end in a real browser, once in French and once in English.

Staff log in, explore the insights, build a segment, create a promotion and a campaign; three
venues answer; staff launch; a venue downloads its contact list; later sales are imported; the
evaluator reads and exports the lift report. Every step that fails leaves a screenshot named after
it in test-artifacts/ (the ``page`` fixture adds one of the whole test).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from campaigns.models import Approval, Campaign
from core.models import utcnow
from experiments.models import Experiment, Recipient
from segments.profiles import refresh_profiles
from tests.browser.conftest import ARTIFACTS, fill_promotion_form, log_in
from tests.campaigns.helpers import build_district

pytestmark = pytest.mark.browser

TEXT = {
    "fr": {
        "insights": "Le Quartier",
        "segment_saved": "Segment",
        "promotion_created": "Promotion créée.",
        "campaign_created": "Campagne créée en brouillon.",
        "submitted": "organisations sont invitées",
        "approved": "approuvée",
        "declined": "refusée",
        "ready": "La campagne est prête à lancer.",
        "imported": "Import terminé",
    },
    "en": {
        "insights": "The district",
        "segment_saved": "Segment",
        "promotion_created": "Promotion created.",
        "campaign_created": "Campaign created as a draft.",
        "submitted": "organisations are asked",
        "approved": "approved",
        "declined": "declined",
        "ready": "The campaign is ready to launch.",
        "imported": "Import finished",
    },
}
SALES_HEADER = [
    "Nom",
    "Prénom",
    "Adresse",
    "Code postal",
    "Adresse courriel",
    "Téléphone",
    "Valeur de l'achat",
    "Nombre de billets",
    "Circonstance de l'achat",
    "Date de l'achat",
    "Date du spectacle",
    "Titre du spectacle",
    "Type de spectacle",
    "Numéro de commande",
]


class Journey:
    """Numbers the steps and keeps a screenshot of the one that fails."""

    def __init__(self, page, lang: str):
        self.page = page
        self.lang = lang
        self.number = 0

    @contextlib.contextmanager
    def step(self, name: str):
        self.number += 1
        try:
            yield
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            path = ARTIFACTS / f"journey-{self.lang}-{self.number:02d}-{name}.png"
            with contextlib.suppress(Exception):
                self.page.screenshot(path=str(path), full_page=True)
            raise


def log_out(page) -> None:
    page.click("header form button.link")
    page.wait_for_url("**/login")


def main_text(page) -> str:
    return page.inner_text("main")


def download(page, selector: str) -> bytes:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_the_pilot_end_to_end(page, session, make_user, lang, tmp_path):
    t = TEXT[lang]
    district = build_district(session, per_org=16, shared=5, with_campaign=False)
    alpha, beta, gamma = district.orgs
    refresh_profiles(session)
    session.commit()
    staff = make_user("staff", email=f"equipe-{lang}@quartier.example")
    evaluator = make_user("evaluator", email=f"evaluation-{lang}@quartier.example")
    venues = {
        org.slug: make_user("venue", org, email=f"approbation-{lang}@{org.slug}.example") for org in district.orgs
    }
    today = utcnow().date()
    deadline = (utcnow() + dt.timedelta(days=6)).strftime("%Y-%m-%dT%H:%M")
    launch = (utcnow() + dt.timedelta(days=9)).strftime("%Y-%m-%dT%H:%M")
    journey = Journey(page, lang)
    segment_name = "Public des trois salles" if lang == "fr" else "Audience of the three venues"

    def sign_in(email: str) -> None:
        page.goto(f"/login?lang={lang}")  # the language is kept in the session across log-ins
        log_in(page, email)
        expect(page.locator("html")).to_have_attribute("lang", lang)

    with journey.step("staff-log-in"):
        sign_in(staff.email)

    with journey.step("insights"):
        page.click("nav a[href='/segments/']")
        page.click("a[href='/segments/insights']")
        expect(page.locator("h1")).to_contain_text(t["insights"])
        expect(page.locator("svg").first).to_be_visible()
        data = download(page, "a[href$='.csv'] >> nth=0")
        assert data.startswith("\ufeff".encode()) and len(data.splitlines()) >= 2
        assert not [v for v in district.personal if v in page.content()]

    with journey.step("build-segment"):
        page.goto("/segments/new")
        first = page.locator(".rule-condition").nth(0)
        first.locator("[data-role=field]").select_option("organisation")
        for org in district.orgs:
            page.locator(".rule-condition").nth(0).get_by_label(org.name, exact=True).check()
        # every spectator of the district: the noisy size, or "all but fewer than k" when the noisy
        # complement is small (core.privacy); never an exact count that would reveal the complement
        expected = len(district.spectators)
        near = "|".join(str(n) for n in range(expected - 60, expected + 61))
        expect(page.locator("#preview-size")).to_have_text(
            re.compile(rf"^({near}|all but fewer than 10|tous sauf moins de 10)$")
        )
        page.fill("input[name=name]", segment_name)
        page.click("#segment-form button.primary")
        page.wait_for_url(re.compile(r".*/segments/\d+$"))
        expect(page.locator(".flash-success")).to_contain_text(segment_name)

    with journey.step("promotion"):
        page.click("nav a[href='/campaigns/']")
        page.click("a[href='/campaigns/promotions/new']")
        fill_promotion_form(page, district.orgs, valid_from=today)
        page.click("form button.primary")
        assert t["promotion_created"] in main_text(page)

    with journey.step("campaign"):
        page.goto("/campaigns/new")
        page.fill("#name", "Printemps croisé")
        page.select_option("#objective", "cross_sell")
        page.select_option("#segment", label=segment_name)
        page.fill("#control_share", "20")
        page.fill("#arm_a_share", "80")
        page.fill("#window_days", "30")
        page.select_option("#primary_metric", "conversion")
        page.check("input[name=secondary_metrics][value=revenue]")
        page.fill("#approval_deadline", deadline)
        page.fill("#planned_launch_at", launch)
        page.click("form button.primary")
        assert t["campaign_created"] in main_text(page)
        page.click("a[href$='/submit']")
        page.check("#confirm")
        page.click("form button.primary")
        assert t["submitted"] in main_text(page)
        log_out(page)

    for org, decision in ((alpha, "approve"), (beta, "approve"), (gamma, "decline")):
        with journey.step(f"venue-{org.slug}-answers"):
            sign_in(venues[org.slug].email)
            page.click("main a[href*='/campaigns/approvals/']")
            page.check(f"input[name=decision][value={decision}]")
            if decision == "decline":
                page.select_option("#decline_reason", "offer")
            page.click("form[action$='/decision'] button.primary")
            assert t["approved" if decision == "approve" else "declined"] in main_text(page)
            # the rule names every organisation: each one also lets the others receive a list drawn
            # with its data (a data provider's approval is asked apart from its contacting answer)
            page.goto("/campaigns/")
            page.click("main a[href*='/campaigns/providers/']")
            page.check("input[name=decision][value=approve]")
            page.click("form[action$='/decision'] button.primary")
            expect(page.locator(".flash-success")).to_be_visible()
            log_out(page)

    with journey.step("staff-launch"):
        sign_in(staff.email)
        campaign = session.scalar(select(Campaign).where(Campaign.name == "Printemps croisé"))
        page.goto(f"/campaigns/{campaign.id}")
        page.click("a[href$='/ready']")
        page.check("#confirm")
        page.click("form button.primary")
        assert t["ready"] in main_text(page)
        page.click("nav a[href='/experiments/']")
        page.click(f"a[href='/experiments/campaign/{campaign.id}/launch']")
        page.check("#confirm")
        page.click("form button.primary")
        # The launch (assignment, codes, lists, first matching) is the one long request of the journey.
        page.wait_for_url(re.compile(r".*/experiments/\d+$"), timeout=60_000)
        expect(page.locator(".flash-success")).to_be_visible()
        assert not [v for v in district.personal if v in page.content()]
        log_out(page)

    session.expire_all()
    experiment = session.scalar(select(Experiment).where(Experiment.campaign_id == campaign.id))
    assert experiment is not None
    statuses = {
        a.organisation_id: a.status
        for a in session.scalars(select(Approval).where(Approval.campaign_id == campaign.id))
    }
    assert statuses == {alpha.id: "approved", beta.id: "approved", gamma.id: "declined"}

    with journey.step("venue-downloads-its-list"):
        sign_in(venues[alpha.slug].email)
        page.click("nav a[href='/experiments/']")
        data = download(page, f"a[href='/experiments/{experiment.id}/contacts.csv']")
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        emails = {row[2] for row in rows[1:]}
        test_arm = session.scalars(
            select(Recipient).where(
                Recipient.experiment_id == experiment.id,
                Recipient.organisation_id == alpha.id,
                Recipient.arm != "control",
            )
        ).all()
        assert len(rows) - 1 == len(test_arm) > 0
        own = {c.email for (i, _s), c in district.contacts.items() if i == 0}
        assert emails <= own  # only Alpha's own people, only the test arm

    with journey.step("later-sales-imported"):
        buyers = sorted(emails)[:5]
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
        writer.writerow(SALES_HEADER)
        for n, email in enumerate(buyers):
            writer.writerow(
                [
                    "Acheteur",
                    f"Prenom{n}",
                    "",
                    "H2X 1Y4",
                    email,
                    "",
                    "45,00 $",
                    "2",
                    "Promotion",
                    today.isoformat(),
                    (today + dt.timedelta(days=10)).isoformat(),
                    "Le retour",
                    "Théâtre",
                    f"L-{lang}-{n}",
                ]
            )
        path = tmp_path / "ventes-apres.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        page.click("nav a[href='/imports']")
        page.set_input_files("input[type=file]", str(path))
        page.click("form button.primary")
        assert t["imported"] in main_text(page)
        log_out(page)

    with journey.step("evaluator-reads-and-exports"):
        sign_in(evaluator.email)
        page.click("nav a[href='/experiments/']")
        page.click(f"main a[href='/experiments/{experiment.id}']")
        page.wait_for_url(re.compile(rf".*/experiments/{experiment.id}$"))
        expect(page.locator("h1")).to_be_visible()
        assert not [v for v in district.personal if v in page.content()]
        data = download(page, f"a[href='/experiments/{experiment.id}/report.csv']")
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        assert rows[0][0] == "section" and any(r[0] == "metric" for r in rows[1:])
        assert not [v for v in district.personal if v in data.decode("utf-8-sig")]
