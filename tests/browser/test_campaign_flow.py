"""A campaign from draft to ready in a real browser: staff plan it, three venues answer, staff see the funnel."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from campaigns.models import Approval, Campaign
from core.models import utcnow
from tests.browser.conftest import fill_promotion_form, log_in
from tests.campaigns.helpers import build_district, new_purchase

pytestmark = pytest.mark.browser


def log_out(page) -> None:
    page.click("header button.link")
    page.wait_for_url("**/login")


def test_campaign_goes_from_draft_to_ready(page, session, make_user):
    district = build_district(session, per_org=14, shared=5, with_campaign=False)
    alpha, beta, gamma = district.orgs
    # two of Alpha's spectators are subscribers, whom Alpha will exclude
    for spectator in district.spectators[:2]:
        new_purchase(session, alpha, spectator, district.now - dt.timedelta(days=60), category="subscription")
    session.commit()
    staff = make_user("staff", email="equipe@quartier.example")
    venues = {org.slug: make_user("venue", org, email=f"approbation@{org.slug}.example") for org in district.orgs}
    today = utcnow().date()
    deadline = (utcnow() + dt.timedelta(days=6)).strftime("%Y-%m-%dT%H:%M")
    launch = (utcnow() + dt.timedelta(days=9)).strftime("%Y-%m-%dT%H:%M")

    # staff: the promotion
    log_in(page, staff.email)
    page.click("nav >> text=Campagnes")
    page.click("text=Nouvelle promotion")
    fill_promotion_form(
        page,
        district.orgs,
        valid_from=today,
        message_fr="Deux billets pour le prix d'un dans trois salles du Quartier.",
        message_en="Two tickets for one in three Quartier venues.",
    )
    page.click("text=Enregistrer la promotion")
    assert "Promotion créée." in page.inner_text("main")
    assert page.inner_text("h1") == "Printemps du Quartier"

    # staff: the campaign
    page.click("text=Campagnes >> nth=1")
    page.click("text=Nouvelle campagne")
    page.fill("#name", "Printemps croisé")
    page.select_option("#objective", "cross_sell")
    page.select_option("#segment", str(district.segment.id))
    page.fill("#control_share", "20")
    page.fill("#arm_a_share", "80")
    page.fill("#window_days", "30")
    page.select_option("#primary_metric", "conversion")
    page.check("input[name=secondary_metrics][value=revenue]")
    page.check("input[name=secondary_metrics][value=redemption]")
    page.fill("#approval_deadline", deadline)
    page.fill("#planned_launch_at", launch)
    page.click("text=Enregistrer la campagne")
    assert "Campagne créée en brouillon." in page.inner_text("main")
    page.click("text=Soumettre aux approbations")
    page.click("button.primary")  # without the confirmation box: refused, nothing happens
    assert "Cochez la case pour confirmer." in page.inner_text("main")
    page.check("#confirm")
    page.click("button.primary")
    assert "3 organisations sont invitées" in page.inner_text("main")
    assert "En attente d'approbations" in page.inner_text("h1")
    log_out(page)

    # Alpha approves, excluding its subscribers and spectators contacted in the last 30 days
    log_in(page, venues[alpha.slug].email)
    assert "Campagnes en attente de votre approbation" in page.inner_text("main")
    page.click("text=Printemps croisé")
    assert "Vos spectateurs dans cette campagne" in page.inner_text("main")
    page.check("input[name=decision][value=approve]")
    page.check("#exclude_subscribers")
    page.check("#exclude_contacted")
    page.fill("#contacted_days", "30")
    page.click("text=Envoyer ma réponse")
    assert "Votre réponse est enregistrée : approuvée." in page.inner_text("main")
    log_out(page)

    # Beta approves as is
    log_in(page, venues[beta.slug].email)
    page.click("text=Printemps croisé")
    page.check("input[name=decision][value=approve]")
    page.click("text=Envoyer ma réponse")
    assert "approuvée" in page.inner_text("main")
    log_out(page)

    # Gamma declines
    log_in(page, venues[gamma.slug].email)
    page.click("text=Printemps croisé")
    page.check("input[name=decision][value=decline]")
    page.select_option("#decline_reason", "timing")
    page.click("text=Envoyer ma réponse")
    assert "Votre réponse est enregistrée : refusée." in page.inner_text("main")
    log_out(page)

    # staff: every organisation answered, the campaign is ready; the funnel shows, no contact does
    log_in(page, staff.email)
    assert "Campagnes en approbation" in page.inner_text("main")
    page.click("text=Printemps croisé")
    page.click("text=Déclarer prête à lancer")
    page.check("#confirm")
    page.click("button.primary")
    assert "La campagne est prête à lancer." in page.inner_text("main")
    assert "Prête à lancer" in page.inner_text("h1")
    funnel = page.inner_text("table:has(caption:text('Spectateurs à chaque étape'))")
    assert "Salle Alpha" in funnel and "Festival Gamma" in funnel and "Refusée" in funnel
    html = page.content()
    assert not [value for value in district.personal if value in html]

    session.expire_all()
    campaign = session.scalar(select(Campaign).where(Campaign.name == "Printemps croisé"))
    assert campaign.status == "ready"
    answers = {
        a.organisation_id: (a.status, a.exclude_subscribers, a.exclude_contacted_days)
        for a in session.scalars(select(Approval).where(Approval.campaign_id == campaign.id))
    }
    assert answers == {
        alpha.id: ("approved", True, 30),
        beta.id: ("approved", False, None),
        gamma.id: ("declined", False, None),
    }
