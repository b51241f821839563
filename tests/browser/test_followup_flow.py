"""Venue follow-up in a real browser, in French and in English: a venue declines with a reason, staff
read it on the requests page and remind another venue again, which sees the reminder on its dashboard."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from campaigns import services
from campaigns.models import Approval, Reminder
from core.models import AuditEvent
from tests.browser.conftest import log_in
from tests.campaigns.helpers import build_district

pytestmark = pytest.mark.browser

WORDS = {
    "fr": {
        "panel": "Campagnes en attente de votre approbation",
        "send": "Envoyer ma réponse",
        "explain": "Expliquez en quelques mots pourquoi vous refusez.",
        "declined": "Votre réponse est enregistrée : refusée.",
        "your_reason": "Votre raison de refuser",
        "other": "Autre raison (précisez ci-dessous)",
        "requests": "Demandes d'approbation",
        "remind": "Relancer",
        "send_reminder": "Envoyer le rappel",
        "sent": "Rappel envoyé à Salle Alpha.",
        "wait": "Salle Alpha a reçu un rappel le",
        "reminded": "1 rappel, le dernier le",
        "note": "Notre saison affiche complet jusqu'en mars.",
    },
    "en": {
        "panel": "Campaigns awaiting your approval",
        "send": "Send my answer",
        "explain": "Explain in a few words why you decline.",
        "declined": "Your answer is recorded: declined.",
        "your_reason": "Your reason for declining",
        "other": "Another reason (explain below)",
        "requests": "Approval requests",
        "remind": "Remind again",
        "send_reminder": "Send the reminder",
        "sent": "Reminder sent to Salle Alpha.",
        "wait": "Salle Alpha was reminded at",
        "reminded": "Reminded 1 time, last on",
        "note": "Our season is sold out until March.",
    },
}


def sign_in(page, email: str, lang: str) -> None:
    log_in(page, email)
    page.goto(f"/?lang={lang}")  # the session keeps the language from here on


def log_out(page) -> None:
    page.click("header button.link")
    page.wait_for_url("**/login")


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_venue_declines_with_a_reason_and_staff_remind_another(page, session, make_user, lang):
    w = WORDS[lang]
    district = build_district(session, per_org=6, shared=2)
    alpha, _beta, gamma = district.orgs
    services.submit_for_approval(session, district.campaign, snapshot=district.snapshot, now=district.now)
    session.commit()
    staff = make_user("staff", email="suivi@quartier.example")
    venues = {org.slug: make_user("venue", org, email=f"reponse@{org.slug}.example") for org in district.orgs}

    # Gamma declines: "another reason" needs its own words
    sign_in(page, venues[gamma.slug].email, lang)
    assert w["panel"] in page.inner_text("main")
    page.click(f"main a:text('{district.campaign.name}')")
    page.check("input[name=decision][value=decline]")
    page.select_option("#decline_reason", "other")
    page.click(f"text={w['send']}")
    assert w["explain"] in page.inner_text("main")
    page.check("input[name=decision][value=decline]")
    page.select_option("#decline_reason", "other")
    page.fill("#decline_note", w["note"])
    page.click(f"text={w['send']}")
    main = page.inner_text("main")
    assert w["declined"] in main and w["your_reason"] in main and w["note"] in main
    log_out(page)

    # staff read the reason on the requests page and remind Alpha, which has not answered
    sign_in(page, staff.email, lang)
    page.goto("/campaigns/")
    page.click(f"nav.subnav >> text={w['requests']}")
    gamma_row = page.inner_text(f"tr[data-organisation='{gamma.slug}']")
    assert w["other"] in gamma_row and w["note"] in gamma_row
    page.click(f"tr[data-organisation='{alpha.slug}'][data-kind='approval'] >> text={w['remind']}")
    page.click(f"button:text('{w['send_reminder']}')")
    assert w["sent"] in page.inner_text("main")
    # within the hour, the button gives way to when it may be used again
    assert w["wait"] in page.inner_text(f"tr[data-organisation='{alpha.slug}'][data-kind='approval']")
    html = page.content()
    assert not [value for value in district.personal if value in html]  # statuses, never a contact
    log_out(page)

    # Alpha sees the reminder beside its pending request
    sign_in(page, venues[alpha.slug].email, lang)
    assert w["reminded"] in page.inner_text("main")

    session.expire_all()
    declined = session.scalar(select(Approval).where(Approval.organisation_id == gamma.id))
    assert (declined.status, declined.decline_reason, declined.decline_note) == ("declined", "other", w["note"])
    reminder = session.scalar(select(Reminder))
    alpha_request = session.scalar(select(Approval.id).where(Approval.organisation_id == alpha.id))
    assert (reminder.approval_id, reminder.source, reminder.user_id) == (alpha_request, "user", staff.id)
    logged = session.scalars(
        select(AuditEvent.action).where(AuditEvent.action.in_(("approval.decline", "approval.remind")))
    ).all()
    assert sorted(logged) == ["approval.decline", "approval.remind"]
