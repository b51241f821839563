"""Consent is judged at the actual launch (issue 15, Build 5), and the approval page says so."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from campaigns import services
from core.models import Consent, Contact
from experiments import services as experiment_services
from experiments.models import Recipient
from tests.campaigns.helpers import build_district
from tests.campaigns.test_services import staff, venue_user  # noqa: F401 (fixture)
from tests.conftest import login


def test_a_consent_that_lapses_after_the_planned_launch_leaves_the_person_out(app, session, staff):
    district = build_district(session, per_org=4, shared=0)
    campaign = district.campaign
    services.submit_for_approval(session, campaign, user=staff, snapshot=district.snapshot, now=district.now)
    for approval in campaign.approvals:
        services.decide_approval(
            session, approval, "approve", venue_user(session, approval.organisation), now=district.now
        )
    services.mark_ready(session, campaign, user=staff, now=district.now)
    # one person's consent expires a day after the planned launch; the launch happens two days after it
    lapsing = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    for consent in session.scalars(select(Consent).where(Consent.contact_id == lapsing.id)):
        consent.expires_at = campaign.planned_launch_at + dt.timedelta(days=1)
    session.flush()
    experiment = experiment_services.launch(
        session, campaign, now=campaign.planned_launch_at + dt.timedelta(days=2), seed=1
    )
    recipients = set(session.scalars(select(Recipient.spectator_id).where(Recipient.experiment_id == experiment.id)))
    assert lapsing.spectator_id not in recipients and len(recipients) == len(district.spectators) - 1


def test_the_approval_page_says_consent_is_judged_at_the_actual_launch(app, session, staff):
    district = build_district(session, per_org=4, shared=0)
    services.submit_for_approval(session, district.campaign, user=staff, snapshot=district.snapshot, now=district.now)
    org = district.orgs[0]
    approval = next(a for a in district.campaign.approvals if a.organisation_id == org.id)
    user = venue_user(session, org)
    session.commit()
    client = app.test_client()
    assert login(client, user.email, "correct-horse-42").status_code == 302
    for lang, words in (
        ("en", "judged again at the moment the campaign is actually launched"),
        ("fr", "jugé de nouveau au moment où la campagne est réellement lancée"),
    ):
        html = client.get(f"/campaigns/approvals/{approval.id}?lang={lang}").get_data(as_text=True)
        assert words in html, lang
