"""Data providers (issue 15, Build 2): a rule that names an organisation needs its approval as data
provider before any other organisation receives a list drawn with it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from campaigns import services
from campaigns.models import ProviderApproval
from campaigns.services import TransitionRefused
from segments.models import SegmentVersion
from tests.campaigns.helpers import build_district
from tests.campaigns.test_services import staff, venue_user  # noqa: F401 (fixture)
from tests.conftest import login


@pytest.fixture
def district(session):
    district = build_district(session, per_org=4, shared=2)
    a = district.orgs[0]
    # the segment: people who bought at organisation A (a fact about A's sales)
    version = session.scalar(select(SegmentVersion).where(SegmentVersion.segment_id == district.segment.id))
    version.rule = {"field": "organisation", "op": "any", "value": [a.slug]}
    session.flush()
    return district


def submit(session, district, staff):
    services.submit_for_approval(session, district.campaign, user=staff, snapshot=district.snapshot, now=district.now)
    approvals = {x.organisation_id: x for x in district.campaign.approvals}
    for org in district.orgs:
        services.decide_approval(session, approvals[org.id], "approve", venue_user(session, org), now=district.now)
    return session.scalars(select(ProviderApproval).where(ProviderApproval.campaign_id == district.campaign.id)).all()


def test_a_named_organisation_must_approve_before_others_receive_a_list(session, district, staff):
    a = district.orgs[0]
    (provider,) = submit(session, district, staff)
    assert provider.organisation_id == a.id and provider.status == "pending"
    with pytest.raises(TransitionRefused, match=a.name):
        services.mark_ready(session, district.campaign, user=staff, now=district.now)
    with pytest.raises(TransitionRefused):  # another organisation cannot answer for A
        services.decide_provider(session, provider, "approve", venue_user(session, district.orgs[1]), now=district.now)
    services.decide_provider(
        session, provider, "decline", venue_user(session, a), now=district.now, decline_reason="data_use"
    )
    with pytest.raises(TransitionRefused, match=a.name):
        services.mark_ready(session, district.campaign, user=staff, now=district.now)
    services.decide_provider(session, provider, "approve", venue_user(session, a), now=district.now)
    assert services.mark_ready(session, district.campaign, user=staff, now=district.now) > 0


def test_the_deadline_without_the_provider_cancels_unless_only_the_provider_sends(session, district, staff):
    (provider,) = submit(session, district, staff)
    assert services.apply_deadline(session, district.campaign, now=district.campaign.approval_deadline) == "cancelled"
    assert provider.status == "expired"


def test_a_provider_alone_needs_no_one_else(session, district, staff):
    a, b, c = district.orgs
    services.submit_for_approval(session, district.campaign, user=staff, snapshot=district.snapshot, now=district.now)
    approvals = {x.organisation_id: x for x in district.campaign.approvals}
    services.decide_approval(session, approvals[a.id], "approve", venue_user(session, a), now=district.now)
    for org in (b, c):
        services.decide_approval(
            session, approvals[org.id], "decline", venue_user(session, org), now=district.now, decline_reason="offer"
        )
    # A sends to its own people: its own data, no one else learns anything
    assert services.mark_ready(session, district.campaign, user=staff, now=district.now) > 0


def test_the_provider_page_shows_only_its_own_people_and_says_what_a_list_reveals(app, session, district, staff):
    a, b, _c = district.orgs
    (provider,) = submit(session, district, staff)
    session.commit()
    client = app.test_client()
    assert login(client, venue_user(session, a).email, "correct-horse-42").status_code == 302
    session.commit()
    assert f"/campaigns/providers/{provider.id}" in client.get("/campaigns/").get_data(as_text=True)
    html = client.get(f"/campaigns/providers/{provider.id}?lang=en").get_data(as_text=True)
    assert "these people of its own bought from you" in html
    own = [c for (i, _s), c in district.contacts.items() if i == 0]
    assert f"<dd>{len(own)}</dd>" in html
    for (_i, _s), contact in district.contacts.items():  # no one's details, A's own neither
        assert contact.email not in html and contact.last_name not in html
    assert client.post(f"/campaigns/providers/{provider.id}/decision", data={"decision": "approve"}).status_code == 302
    session.expire_all()
    assert session.get(ProviderApproval, provider.id).status == "approved"
    other = app.test_client()
    assert login(other, venue_user(session, b).email, "correct-horse-42").status_code == 302
    session.commit()
    assert other.get(f"/campaigns/providers/{provider.id}").status_code == 404
    assert other.post(f"/campaigns/providers/{provider.id}/decision", data={"decision": "decline"}).status_code == 404
