"""Venue follow-up (issue 19, item 5): a decline gives a reason, every reminder is recorded (the
scheduler's job and the staff's "remind again"), and staff follow every request without seeing a contact."""

from __future__ import annotations

import datetime as dt
from html import unescape

import pytest
from sqlalchemy import select

from campaigns import followup, services
from campaigns.models import Approval, ProviderApproval, Reminder
from campaigns.services import CampaignError
from core.models import AuditEvent, Notification, utcnow
from core.scheduler import run_job
from tests.campaigns.helpers import build_district
from tests.campaigns.test_services import staff, venue_user  # noqa: F401 (fixture)
from tests.conftest import login


@pytest.fixture
def ctx(app):
    """An application context, as in a request or a job: notifications read the app's settings,
    reasons are put in words (the page tests go without: each request brings its own)."""
    with app.app_context():
        yield


@pytest.fixture
def district(session):
    return build_district(session, per_org=4, shared=2)


@pytest.fixture
def submitted(session, district, staff):
    services.submit_for_approval(session, district.campaign, user=staff, snapshot=district.snapshot, now=district.now)
    return {a.organisation_id: a for a in district.campaign.approvals}


def events(session, action):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()


# --- decline with a reason ----------------------------------------------------------------------


def test_a_venue_declines_with_a_reason_kept_and_logged(ctx, session, district, submitted):
    a, b, _c = district.orgs
    approval = submitted[b.id]
    user = venue_user(session, b)
    with pytest.raises(CampaignError, match="raison|reason"):
        services.decide_approval(session, approval, "decline", user, now=district.now)
    with pytest.raises(CampaignError):
        services.decide_approval(session, approval, "decline", user, decline_reason="because", now=district.now)
    with pytest.raises(CampaignError):  # "other" needs the venue's own words
        services.decide_approval(
            session, approval, "decline", user, decline_reason="other", decline_note="  ", now=district.now
        )
    with pytest.raises(CampaignError):
        services.decide_approval(
            session, approval, "decline", user, decline_reason="other", decline_note="x" * 1001, now=district.now
        )
    assert approval.status == "pending" and not events(session, "approval.decline")
    services.decide_approval(
        session,
        approval,
        "decline",
        user,
        decline_reason="other",
        decline_note="Notre saison commence trop tard.",
        now=district.now,
    )
    assert (approval.status, approval.decline_reason, approval.decline_note) == (
        "declined",
        "other",
        "Notre saison commence trop tard.",
    )
    (event,) = events(session, "approval.decline")
    assert event.details["reason"] == "other" and event.details["note"] == "Notre saison commence trop tard."
    assert "Autre raison" in event.details["reason_fr"] and "Another reason" in event.details["reason_en"]
    # changing the answer to approve clears the reason
    services.decide_approval(session, approval, "approve", user, now=district.now)
    assert approval.decline_reason is None and approval.decline_note is None


def test_a_data_provider_declines_with_a_reason(ctx, session, district, submitted):
    a = district.orgs[0]
    provider = ProviderApproval(
        campaign_id=district.campaign.id, organisation_id=a.id, status="pending", requested_at=district.now
    )
    session.add(provider)
    session.flush()
    with pytest.raises(CampaignError):
        services.decide_provider(session, provider, "decline", venue_user(session, a), now=district.now)
    services.decide_provider(
        session, provider, "decline", venue_user(session, a), now=district.now, decline_reason="data_use"
    )
    assert provider.decline_reason == "data_use"
    assert events(session, "provider.decline")[-1].details["reason"] == "data_use"


# --- reminders ----------------------------------------------------------------------------------


def test_the_job_records_its_reminders_and_skips_answered_requests(app, db, session, district, submitted):
    a, b, c = district.orgs
    campaign = district.campaign
    services.decide_approval(session, submitted[a.id], "approve", venue_user(session, a), now=district.now)
    services.decide_approval(
        session, submitted[b.id], "decline", venue_user(session, b), decline_reason="timing", now=district.now
    )
    provider = ProviderApproval(
        campaign_id=campaign.id, organisation_id=a.id, status="pending", requested_at=district.now
    )
    session.add(provider)
    campaign.approval_deadline = utcnow() + dt.timedelta(days=1)  # the deadline is near: the job reminds
    session.commit()
    assert run_job(app, "campaigns.reminders").status == "success"
    assert run_job(app, "campaigns.reminders").status == "success"  # once each, however often it runs
    with db.session() as s:
        reminders = s.scalars(select(Reminder).order_by(Reminder.id)).all()
        assert [(r.approval_id, r.provider_approval_id, r.source, r.user_id, r.actor) for r in reminders] == [
            (submitted[c.id].id, None, "job", None, "scheduler"),
            (None, provider.id, "job", None, "scheduler"),
        ]
        notes = s.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(n.organisation_id, n.kind, n.link) for n in notes] == [
            (c.id, "approval.reminder", f"/campaigns/approvals/{submitted[c.id].id}"),
            (a.id, "provider.reminder", f"/campaigns/providers/{provider.id}"),
        ]
        logged = s.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(("approval.remind", "provider.remind")))
        ).all()
        assert sorted((e.action, e.details["source"]) for e in logged) == [
            ("approval.remind", "job"),
            ("provider.remind", "job"),
        ]


def test_staff_remind_again_is_recorded_and_refused_within_the_hour(ctx, session, district, submitted, staff):
    a, b, _c = district.orgs
    approval = submitted[a.id]
    now = district.now + dt.timedelta(hours=2)
    first = followup.remind(session, approval, staff, now=now)
    assert (first.approval_id, first.source, first.user_id, first.actor) == (approval.id, "user", staff.id, staff.email)
    (note,) = session.scalars(select(Notification).where(Notification.organisation_id == a.id)).all()
    assert note.message_fr.startswith("L'équipe du Partenariat") and district.campaign.name in note.message_en
    with pytest.raises(CampaignError, match="rappel|remind"):  # within the hour
        followup.remind(session, approval, staff, now=now + dt.timedelta(minutes=59))
    followup.remind(session, approval, staff, now=now + dt.timedelta(minutes=61))
    assert [r.sent_at for r in followup.reminders_of(session, approval)] == [now, now + dt.timedelta(minutes=61)]
    assert [e.details["source"] for e in events(session, "approval.remind")] == ["user", "user"]
    # an answered request is never reminded
    services.decide_approval(session, submitted[b.id], "approve", venue_user(session, b), now=district.now)
    with pytest.raises(CampaignError, match=b.name):
        followup.remind(session, submitted[b.id], staff, now=now)
    assert not followup.reminders_of(session, submitted[b.id])
    # nor one whose answers are closed
    with pytest.raises(CampaignError):
        followup.remind(session, approval, staff, now=district.campaign.approval_deadline)


def test_request_lines_show_answers_reasons_and_reminders(ctx, session, district, submitted, staff):
    a, b, c = district.orgs
    user_b = venue_user(session, b)
    services.decide_approval(session, submitted[b.id], "decline", user_b, decline_reason="offer", now=district.now)
    followup.remind(session, submitted[c.id], staff, now=district.now)
    lines, total = followup.request_lines(session, campaign_id=district.campaign.id, now=district.now)
    assert total == 3
    by_org = {line.organisation.id: line for line in lines}
    assert by_org[b.id].status == "declined" and by_org[b.id].answered_by == user_b.email
    assert by_org[c.id].reminders == 1 and by_org[c.id].refusal is not None  # reminded a moment ago
    assert by_org[a.id].reminders == 0 and by_org[a.id].refusal is None
    declined, n = followup.request_lines(session, status="declined", now=district.now)
    assert n == 1 and declined[0].organisation.id == b.id
    assert followup.status_counts(session, district.campaign.id) == {"pending": 2, "declined": 1}
    with pytest.raises(CampaignError):
        followup.request_lines(session, status="nonsense")


# --- the pages ----------------------------------------------------------------------------------


def _client(app, user):
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


def test_staff_see_the_reason_and_remind_again_from_the_pages(app, session, district, submitted, staff):
    a, b, c = district.orgs
    user_b = venue_user(session, b)
    session.commit()
    venue_b = _client(app, user_b)
    response = venue_b.post(
        f"/campaigns/approvals/{submitted[b.id].id}/decision",
        data={"decision": "decline", "decline_reason": "other", "decline_note": ""},
    )
    assert response.status_code == 400 and "Expliquez en quelques mots" in response.get_data(as_text=True)
    response = venue_b.post(
        f"/campaigns/approvals/{submitted[b.id].id}/decision",
        data={"decision": "decline", "decline_reason": "other", "decline_note": "Notre saison commence en novembre."},
    )
    assert response.status_code == 302
    staff_client = _client(app, staff)
    campaign_id = district.campaign.id
    html = staff_client.get(f"/campaigns/{campaign_id}?lang=en").get_data(as_text=True)
    assert "Notre saison commence en novembre." in html and "Another reason (explain below)" in html
    html = staff_client.get(f"/campaigns/{campaign_id}/approvals?lang=fr").get_data(as_text=True)
    assert "Notre saison commence en novembre." in html and "Relancer" in html
    for personal in district.personal:  # statuses, never a contact
        assert personal not in html
    # remind C: the confirmation page, then the post
    url = f"/campaigns/requests/approval/{submitted[c.id].id}/remind"
    assert "Envoyer le rappel" in staff_client.get(url + "?back=campaign").get_data(as_text=True)
    response = staff_client.post(url, data={"back": "campaign"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/campaigns/{campaign_id}/approvals")
    assert "Rappel envoyé à" in staff_client.get(response.headers["Location"]).get_data(as_text=True)
    response = staff_client.post(url, data={"back": "campaign"}, follow_redirects=True)
    assert "Non envoyé" in response.get_data(as_text=True)  # within the hour
    response = staff_client.post(f"/campaigns/requests/approval/{submitted[b.id].id}/remind", follow_redirects=True)
    assert "a déjà répondu" in response.get_data(as_text=True)
    session.expire_all()
    assert [r.approval_id for r in session.scalars(select(Reminder))] == [submitted[c.id].id]
    assert len(events(session, "approval.remind")) == 1
    assert "/campaigns/requests" in staff_client.get("/").get_data(as_text=True)  # from the dashboard
    # the overview across campaigns, filtered
    html = staff_client.get("/campaigns/requests?status=declined").get_data(as_text=True)
    assert b.name in html and c.name not in html.split('id="requests"')[1]
    assert staff_client.get("/campaigns/requests?status=junk&page=abc").status_code == 200
    assert staff_client.get("/campaigns/requests/nonsense/1/remind").status_code == 404
    assert staff_client.get("/campaigns/requests/provider/999999/remind").status_code == 404


def test_the_venue_dashboard_shows_its_pending_request_with_its_reminders(app, session, district, submitted, staff):
    a, b, _c = district.orgs
    with app.app_context():
        followup.remind(session, submitted[a.id], staff, now=utcnow())
    user_a = venue_user(session, a)
    session.commit()
    venue_a = _client(app, user_a)
    html = venue_a.get("/?lang=en").get_data(as_text=True)
    assert "Reminded 1 time, last on" in html
    html = venue_a.get(f"/campaigns/approvals/{submitted[a.id].id}?lang=en").get_data(as_text=True)
    assert "You were reminded 1 time to answer" in html
    # a venue never sees the staff follow-up, nor another organisation's request
    assert venue_a.get(f"/campaigns/{district.campaign.id}/approvals").status_code == 403
    assert venue_a.get("/campaigns/requests").status_code == 403
    assert venue_a.get(f"/campaigns/requests/approval/{submitted[b.id].id}/remind").status_code == 403
    assert venue_a.get(f"/campaigns/approvals/{submitted[b.id].id}").status_code == 404
    session.expire_all()
    assert session.scalar(select(Approval.status).where(Approval.id == submitted[b.id].id)) == "pending"


def test_the_audit_log_says_why_a_venue_declined_and_who_reminded(app, session, district, submitted, staff, make_user):
    a, b, _c = district.orgs
    with app.app_context():
        services.decide_approval(
            session, submitted[b.id], "decline", venue_user(session, b), decline_reason="policy", now=district.now
        )
        followup.remind(session, submitted[a.id], staff, now=utcnow())
    session.commit()
    admin = _client(app, make_user("admin", email="admin@suivi.example"))
    html = unescape(admin.get("/admin/audit?lang=fr").get_data(as_text=True))
    assert "a refusé la demande d'approbation" in html
    assert "Notre politique de communication ou de consentement ne le permet pas" in html
    assert f"a relancé la demande d'approbation #{submitted[a.id].id}" in html
    html = unescape(admin.get("/admin/audit?lang=en").get_data(as_text=True))
    assert "declined approval request" in html and "Our communication or consent policy does not allow it" in html
    assert f"reminded approval request #{submitted[a.id].id}" in html
