"""The attacker of issue 15 on the campaign pages: their noise is keyed by the campaign's state, so
each new state (a moved launch, a changed answer) is a fresh draw over the same sets, which
averaging over state changes would defeat: each such reading is a question of the reader's budget,
in the audit log, and reading a state again is free (the same figures)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from campaigns.models import Approval
from core.models import AuditEvent, utcnow
from core.privacy import QUESTION_ACTION, set_daily_budget
from core.scheduler import run_job
from tests.campaigns.helpers import build_district


@pytest.fixture
def district(session):
    d = build_district(session, per_org=12, shared=4)
    session.commit()
    return d


def questions(session, user, kind: str) -> int:
    session.expire_all()
    return session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == QUESTION_ACTION, AuditEvent.user_id == user.id, AuditEvent.object_id == kind)
    )


def read(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:800])
    return response.get_data(as_text=True)


def move_launch(session, campaign, hours: int = 1) -> None:
    """A staff edit of the planned launch (done in the database here: what counts is the new state)."""
    session.expire_all()
    campaign = session.merge(campaign)
    campaign.planned_launch_at = campaign.planned_launch_at + dt.timedelta(hours=hours)
    session.commit()


def count_new_state(app) -> None:
    """The ``campaigns.funnels`` job, as within a minute of a change: pages read the kept funnel,
    so a new state is a new question only once its counts are kept (campaigns.funnel_store)."""
    assert run_job(app, "campaigns.funnels", runner="cli").status == "success"


def test_each_new_state_of_a_campaign_is_a_question_and_reading_it_again_is_free(app, session, login_as, district):
    staff = login_as("staff")
    cid = district.campaign.id
    assert staff.post(f"/campaigns/{cid}/submit", data={"confirm": "y"}).status_code == 302
    read(staff, f"/campaigns/{cid}?lang=en")
    read(staff, f"/campaigns/{cid}?lang=en")
    assert questions(session, staff.user, "campaign") == 1
    move_launch(session, district.campaign)
    read(staff, f"/campaigns/{cid}?lang=en")  # the kept counts of the earlier state: no new question
    assert questions(session, staff.user, "campaign") == 1
    count_new_state(app)
    read(staff, f"/campaigns/{cid}?lang=en")
    assert questions(session, staff.user, "campaign") == 2
    # the power page: its own figures per window, and the funnel's eligible total (the same state)
    read(staff, f"/experiments/campaign/{cid}/power?lang=en")
    read(staff, f"/experiments/campaign/{cid}/power?lang=en")
    assert questions(session, staff.user, "power") == 1 and questions(session, staff.user, "campaign") == 2
    read(staff, f"/experiments/campaign/{cid}/power?lang=en&baseline=before_launch")
    assert questions(session, staff.user, "power") == 2
    evaluator = login_as("evaluator")
    read(evaluator, f"/experiments/campaign/{cid}/power?lang=en")
    assert questions(session, evaluator.user, "power") == 1

    # a venue's approval page: its noisy figures follow the campaign's state too
    org = district.orgs[0]
    venue = login_as("venue", org)
    approval = session.scalar(select(Approval).where(Approval.campaign_id == cid, Approval.organisation_id == org.id))
    read(venue, f"/campaigns/approvals/{approval.id}?lang=en")
    read(venue, f"/campaigns/approvals/{approval.id}?lang=en")
    assert questions(session, venue.user, "approval") == 1
    decided = venue.post(
        f"/campaigns/approvals/{approval.id}/decision", data={"decision": "approve", "exclude_subscribers": "y"}
    )
    assert decided.status_code == 302, decided.get_data(as_text=True)[:800]
    count_new_state(app)
    read(venue, f"/campaigns/approvals/{approval.id}?lang=en")
    assert questions(session, venue.user, "approval") == 2
    # the venue's answer is a new state for the staff's funnel as well
    read(staff, f"/campaigns/{cid}?lang=en")
    assert questions(session, staff.user, "campaign") == 3


def test_past_the_budget_a_new_campaign_state_is_refused_with_a_clear_message(app, session, login_as, district):
    staff = login_as("staff")
    cid = district.campaign.id
    assert staff.post(f"/campaigns/{cid}/submit", data={"confirm": "y"}).status_code == 302
    read(staff, f"/campaigns/{cid}?lang=en")
    set_daily_budget(session, 1)
    session.commit()
    read(staff, f"/campaigns/{cid}?lang=en")  # the same state: free
    move_launch(session, district.campaign)
    count_new_state(app)
    refused = read(staff, f"/campaigns/{cid}?lang=en", status=429)
    assert "1 questions on pooled figures for today" in refused and "midnight UTC" in refused
    assert "budget quotidien" in read(staff, f"/campaigns/{cid}?lang=fr", status=429)
    assert "midnight UTC" in read(staff, f"/experiments/campaign/{cid}/power?lang=en", status=429)
    assert questions(session, staff.user, "campaign") == 1


def test_an_attacker_averaging_the_funnel_over_state_changes_is_stopped(app, session, login_as, district):
    """Moving the launch and reading the funnel again, 60 times, to average its noise away: with
    the budget on the attacker gets the budget's worth of states, then the 429 message."""
    staff = login_as("staff")
    cid = district.campaign.id
    assert staff.post(f"/campaigns/{cid}/submit", data={"confirm": "y"}).status_code == 302
    set_daily_budget(session, 20)
    session.commit()
    answered = 0
    for _ in range(60):
        response = staff.get(f"/campaigns/{cid}?lang=en")
        if response.status_code == 429:
            break
        assert response.status_code == 200
        answered += 1
        move_launch(session, district.campaign)
        count_new_state(app)
    assert answered == 20 and "20 questions" in response.get_data(as_text=True)


def test_the_power_page_gives_back_no_exact_sum_of_purchases(app, session):
    """The power page shows each metric's mean per recipient and the population it divides by:
    their product was the exact sum of the segment's revenue (or tickets) in the window, and two
    campaigns one spectator apart gave that spectator's purchases. The sums are noisy now; the
    operator's report (no release) stays exact."""
    from core.privacy import Release, fill_cell_keys
    from experiments import power_report
    from tests.experiments.test_reports import set_k
    from tests.experiments.test_services import ready_campaign
    from tests.experiments.test_views import give_baseline_buyers

    ready = ready_campaign(session, per_org=20, shared=4, now=utcnow() - dt.timedelta(days=5))
    set_k(session, 2)
    give_baseline_buyers(session, ready)
    fill_cell_keys(session, app.config["DISTRICT_SECRET"])
    session.commit()
    exact = power_report.power_report(session, ready.campaign)
    with app.app_context():
        release = Release.current(session, k=2)
    shown = power_report.power_report(session, ready.campaign, release=release)
    assert shown == power_report.power_report(session, ready.campaign, release=release)  # read again: the same
    assert exact["metrics"] and shown["metrics"], (exact.get("error"), shown.get("error"))
    money, tickets = power_report.SUM_BOUNDS["money"] / 100, power_report.SUM_BOUNDS["tickets"]
    for metric, bound in (("revenue", money), ("tickets", tickets)):
        exact_sum = exact["metrics"][metric]["mean"] * exact["population"]
        read = shown["metrics"][metric]["mean"] * shown["population"]  # what a reader multiplies out
        assert abs(read - exact_sum) > 0.5, (metric, read, exact_sum)
        assert abs(read - exact_sum) < 5 * release.sigma * bound + 1  # noise of the stated scale
