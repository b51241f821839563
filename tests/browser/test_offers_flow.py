"""Offers per arm in a real browser, in French and in English: staff plan an A/B/control campaign with
two promotions and see both offers; a venue downloads its list for Mailchimp; a recipient opens their
unsubscribe link and unsubscribes."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import select, update

from campaigns import services as campaign_services
from campaigns.models import Campaign
from core.models import Consent, Contact, Spectator, utcnow
from experiments import services
from experiments.models import Recipient
from tests.browser.conftest import log_in
from tests.campaigns.helpers import build_district, new_promotion

pytestmark = pytest.mark.browser

TEXT = {
    "fr": {
        "created": "Campagne créée en brouillon.",
        "offers": "Offres par groupe",
        "unsubscribe": "Me désabonner",
        "done": "Vous êtes désabonné.",
        "invalid": "Ce lien de désabonnement n’est pas valide.",
        "mailchimp": "Pour Mailchimp",
    },
    "en": {
        "created": "Campaign created as a draft.",
        "offers": "Offers by arm",
        "unsubscribe": "Unsubscribe me",
        "done": "You are unsubscribed.",
        "invalid": "This unsubscribe link is not valid.",
        "mailchimp": "For Mailchimp",
    },
}


def download(page, selector: str) -> bytes:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_two_offers_from_the_campaign_form_to_the_unsubscribe_link(page, session, make_user, lang):
    t = TEXT[lang]
    district = build_district(session, per_org=12, shared=3)
    alpha = district.orgs[0]
    two_for_one = new_promotion(
        session,
        [o.id for o in district.orgs],
        name_fr="Deux pour un",
        name_en="Two for one",
        message_fr="Un billet acheté, un billet offert.",
        message_en="Buy one, get one free.",
        offer_kind="two_for_one",
        offer_value=None,
        code_strategy="shared",
        shared_code="DEUX-POUR-UN",
    )
    # the recipients read in the test's language
    session.execute(update(Contact).values(language=lang))
    session.commit()
    staff = make_user("staff", email=f"offres-{lang}@quartier.example")
    venue = make_user("venue", alpha, email=f"liste-{lang}@{alpha.slug}.example")

    # staff: an A/B/control campaign, arm B with the two-for-one promotion
    page.goto(f"/login?lang={lang}")
    log_in(page, staff.email)
    page.goto("/campaigns/new")
    page.fill("#name", f"A/B {lang}")
    page.select_option("#objective", "cross_sell")
    page.select_option("#segment", str(district.segment.id))
    page.select_option("#promotion", str(district.promotion.id))
    page.fill("#control_share", "20")
    page.fill("#arm_a_share", "40")
    page.select_option("#arm_a_promotion", "0")
    page.fill("#arm_b_share", "40")
    page.select_option("#arm_b_promotion", str(two_for_one.id))
    page.fill("#window_days", "30")
    page.select_option("#primary_metric", "conversion")
    page.check("input[name=secondary_metrics][value=revenue]")
    page.fill("#approval_deadline", (utcnow() + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#planned_launch_at", (utcnow() + dt.timedelta(days=5)).strftime("%Y-%m-%dT%H:%M"))
    page.click("form button[type=submit].primary")
    assert t["created"] in page.inner_text("main")
    offers = page.inner_text("#arm-offers")
    assert t["offers"] in page.inner_text("main")
    rows = {line.split("\t")[0]: line for line in offers.splitlines()}
    arm_a = next(v for k, v in rows.items() if k.endswith(" A"))
    arm_b = next(v for k, v in rows.items() if k.endswith(" B"))
    assert district.promotion.name(lang) in arm_a and "20" in arm_a
    assert two_for_one.name(lang) in arm_b and "DEUX-POUR-UN" in arm_b
    page.click("header form button.link")
    page.wait_for_url("**/login")

    # the workflow up to the launch (tested elsewhere in the browser)
    session.expire_all()
    campaign = session.scalar(select(Campaign).where(Campaign.name == f"A/B {lang}"))
    campaign_services.update_campaign(
        session,
        campaign,
        planned_launch_at=district.now + dt.timedelta(days=3),
        approval_deadline=district.now + dt.timedelta(days=1),
    )
    campaign_services.submit_for_approval(session, campaign, snapshot=district.snapshot, now=district.now)
    for approval in campaign.approvals:
        campaign_services.decide_approval(session, approval, "approve", now=district.now)
    campaign_services.mark_ready(session, campaign, now=district.now)
    experiment = services.launch(session, campaign, now=district.now, seed=8)
    session.commit()

    # the venue downloads its list for Mailchimp: each person's code and message, and their own link
    log_in(page, venue.email)
    page.goto("/experiments/")
    data = download(page, f"a[href='/experiments/{experiment.id}/contacts.csv?format=mailchimp']")
    assert page.locator(f"text={t['mailchimp']}").count() >= 1
    lines = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert list(lines[0])[:3] == ["Email Address", "First Name", "Last Name"]
    test_arm = session.scalars(
        select(Recipient).where(
            Recipient.experiment_id == experiment.id, Recipient.organisation_id == alpha.id, Recipient.arm != "control"
        )
    ).all()
    assert len(lines) == len(test_arm) > 0
    assert {line["ARM"] for line in lines} == {"A", "B"}
    for line in lines:
        promotion = district.promotion if line["ARM"] == "A" else two_for_one
        assert line["MESSAGE"] == promotion.message(lang) and line["LANGUAGE"] == lang
        assert (line["PROMOCODE"] == "DEUX-POUR-UN") is (line["ARM"] == "B")
    page.click("header form button.link")
    page.wait_for_url("**/login")

    # a recipient opens their link (no login) and unsubscribes
    line = next(line for line in lines if line["ARM"] == "B")
    link = urlparse(line["UNSUBURL"])
    assert f"lang={lang}" in link.query
    page.goto(f"{link.path}?{link.query}")
    assert page.locator("html").get_attribute("lang") == lang
    assert alpha.name in page.inner_text("main") and line["Email Address"] not in page.content()
    page.click(f"text={t['unsubscribe']}")
    assert t["done"] in page.inner_text("main")
    session.expire_all()
    contact = session.scalar(
        select(Contact).where(Contact.organisation_id == alpha.id, Contact.email == line["Email Address"])
    )
    assert all(
        c.withdrawn_at is not None
        for c in session.scalars(select(Consent).where(Consent.contact_id == contact.id, Consent.channel == "email"))
    )
    assert session.get(Spectator, contact.spectator_id).opted_out_at is not None
    # the same link again: the same answer; an altered one: a clear page
    page.goto(f"{link.path}?{link.query}")
    page.click(f"text={t['unsubscribe']}")
    assert t["done"] in page.inner_text("main")
    page.goto(f"{link.path[:-3]}xyz?lang={lang}")
    assert t["invalid"] in page.inner_text("main")
