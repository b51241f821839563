"""The campaign workflow: promotions, plans, transitions and their refusals, approvals, the deadline."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from campaigns import erasure, promotions, services
from campaigns.common import CampaignError, TransitionRefused
from campaigns.eligibility import eligible_recipients
from campaigns.models import TRANSITIONS, Exclusion
from core.models import AuditEvent, User
from tests.campaigns.helpers import SECRET, build_district, new_campaign, new_promotion, new_segment


@pytest.fixture
def district(session):
    return build_district(session, per_org=4, shared=2)


@pytest.fixture
def staff(session):
    from core.auth import create_user

    return create_user(session, "staff@example.org", "correct-horse-42", "staff")


def venue_user(session, org):
    from core.auth import create_user

    existing = session.scalar(select(User).where(User.email == f"v-{org.slug}@example.org"))
    return existing or create_user(session, f"v-{org.slug}@example.org", "correct-horse-42", "venue", org.id)


def events(session, action):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()


@pytest.mark.parametrize(
    "overrides,reason",
    [
        ({"offer_kind": "percent_off", "offer_value": 150}, "percentage"),
        ({"offer_kind": "amount_off", "offer_value": None}, "amount"),
        ({"valid_until": dt.date(2000, 1, 1)}, "end"),
        ({"organisation_ids": []}, "organisation"),
        ({"code_strategy": "shared", "shared_code": "a b"}, "shared code"),
        ({"disciplines": ["opera-rock"]}, "discipline"),
    ],
)
def test_promotion_rules(session, district, overrides, reason):
    with pytest.raises(CampaignError) as exc:
        new_promotion(session, [o.id for o in district.orgs], **overrides)
    assert reason in exc.value.reason.lower()


def test_promotion_with_shared_code_and_costs(session, district):
    promo = new_promotion(
        session,
        [district.orgs[0].id],
        code_strategy="shared",
        shared_code="quartier-25",
        offer_kind="two_for_one",
        offer_value=5,
        disciplines=["dance", "theatre"],
    )
    assert promo.shared_code == "QUARTIER-25" and promo.offer_value is None
    assert promo.discipline_list == ["dance", "theatre"] and promo.cost_per_contact_cents == 5
    promotions.update_promotion(session, promo, name_en="Spring two-for-one")
    assert promo.name("en") == "Spring two-for-one" and promo.name("fr") == "Printemps du Quartier"


@pytest.mark.parametrize(
    "arms,reason",
    [
        (services.make_arms(5, [95]), "10"),
        (services.make_arms(20, [70]), "90"),
        ([{"name": "control", "share": 100}], "test arm"),
        ([{"name": "A", "share": 50}, {"name": "B", "share": 50}], "control"),
    ],
)
def test_campaign_arms_need_a_control_of_ten_percent(session, district, arms, reason):
    with pytest.raises(CampaignError) as exc:
        new_campaign(session, district.segment, district.promotion, arms=arms)
    assert reason in exc.value.reason


def test_campaign_plan_rules(session, district):
    with pytest.raises(CampaignError, match="redemption"):
        new_campaign(session, district.segment, district.promotion, primary_metric="redemption")
    with pytest.raises(CampaignError, match="after the approval deadline"):
        new_campaign(
            session, district.segment, district.promotion, planned_launch_at=district.now + dt.timedelta(days=1)
        )
    campaign = new_campaign(
        session,
        district.segment,
        district.promotion,
        arms=services.make_arms(10, [45, 45]),
        secondary_metrics=["conversion", "tickets"],
    )
    assert [a["share"] for a in campaign.arms] == [10, 45, 45] and campaign.control_share == 10
    assert campaign.secondary_metrics == ["tickets"]  # the primary is not repeated
    assert campaign.metrics == ["conversion", "tickets"]


def test_every_state_is_in_the_workflow():
    assert set(TRANSITIONS) == {"draft", "awaiting_approvals", "ready", "launched", "measuring", "closed", "cancelled"}
    assert TRANSITIONS["closed"] == () and TRANSITIONS["cancelled"] == ()
    for targets in TRANSITIONS.values():
        assert set(targets) <= set(TRANSITIONS)


def test_submit_freezes_the_snapshot_and_asks_each_organisation(session, district, staff):
    campaign = district.campaign
    approvals = services.submit_for_approval(session, campaign, user=staff, snapshot=district.snapshot)
    assert campaign.status == "awaiting_approvals" and campaign.snapshot_id == district.snapshot.id
    assert sorted(a.organisation_id for a in approvals) == sorted(o.id for o in district.orgs)
    assert {a.segment_count for a in approvals} == {4 + 2}
    event = events(session, "campaign.submit")[-1]
    assert event.actor == staff.email and event.user_id == staff.id and event.at is not None
    assert event.details["from"] == "draft" and event.details["to"] == "awaiting_approvals"
    with pytest.raises(TransitionRefused, match="Only a draft"):
        services.submit_for_approval(session, campaign, user=staff, snapshot=district.snapshot)
    with pytest.raises(TransitionRefused, match="Only a draft"):
        services.update_campaign(session, campaign, user=staff, name="Autre")


def test_submit_takes_a_fresh_snapshot_of_the_current_version(session, district, staff):
    approvals = services.submit_for_approval(session, district.campaign, user=staff, now=district.now)
    snapshot = district.campaign.snapshot
    assert snapshot.id != district.snapshot.id and snapshot.as_of == district.now.date()
    assert snapshot.size == district.snapshot.size == 3 * 4 + 2 and snapshot.created_by_id == staff.id
    assert len(approvals) == 3


def test_submit_refusals_say_why(session, district, staff):
    campaign = district.campaign
    with pytest.raises(TransitionRefused, match="deadline has already passed"):
        services.submit_for_approval(
            session,
            campaign,
            user=staff,
            snapshot=district.snapshot,
            now=campaign.approval_deadline + dt.timedelta(hours=1),
        )
    late = new_promotion(
        session,
        [district.orgs[0].id],
        valid_from=district.now.date() + dt.timedelta(days=30),
        valid_until=district.now.date() + dt.timedelta(days=40),
    )
    services.update_campaign(session, campaign, promotion_id=late.id)
    with pytest.raises(TransitionRefused, match="must fall within it"):
        services.submit_for_approval(session, campaign, user=staff, snapshot=district.snapshot)
    services.update_campaign(session, campaign, promotion_id=district.promotion.id)
    empty_segment, empty_snapshot = new_segment(session, [], name="Vide")
    services.update_campaign(session, campaign, segment_id=empty_segment.id)
    with pytest.raises(TransitionRefused, match="no one to ask"):
        services.submit_for_approval(session, campaign, user=staff, snapshot=empty_snapshot)
    with pytest.raises(TransitionRefused, match="another segment"):
        services.submit_for_approval(session, campaign, user=staff, snapshot=district.snapshot)
    assert campaign.status == "draft" and not events(session, "campaign.submit")


def submitted(session, district, staff):
    services.submit_for_approval(session, district.campaign, user=staff, snapshot=district.snapshot, now=district.now)
    return {a.organisation_id: a for a in district.campaign.approvals}


def test_mark_ready_waits_for_every_answer_before_the_deadline(session, district, staff):
    approvals = submitted(session, district, staff)
    a, b, c = district.orgs
    services.decide_approval(session, approvals[a.id], "approve", venue_user(session, a), now=district.now)
    with pytest.raises(TransitionRefused, match="2 organisation"):
        services.mark_ready(session, district.campaign, user=staff, now=district.now)
    services.decide_approval(
        session, approvals[b.id], "decline", venue_user(session, b), now=district.now, decline_reason="timing"
    )
    services.decide_approval(
        session,
        approvals[c.id],
        "approve",
        venue_user(session, c),
        exclude_subscribers=True,
        exclude_contacted_days=30,
        now=district.now,
    )
    eligible = services.mark_ready(session, district.campaign, user=staff, now=district.now)
    assert district.campaign.status == "ready" and eligible == len(eligible_recipients(session, district.campaign))
    assert {e.action for e in session.scalars(select(AuditEvent))} >= {
        "approval.approve",
        "approval.decline",
        "campaign.ready",
    }
    approve = events(session, "approval.approve")[-1]
    assert approve.organisation_id == c.id and approve.details["exclude_contacted_days"] == 30
    with pytest.raises(TransitionRefused, match="no longer takes answers"):
        services.decide_approval(session, approvals[b.id], "approve", venue_user(session, b), now=district.now)


def test_mark_ready_early_counts_the_unanswered_as_declined_once_confirmed(session, district, staff):
    """Non-response counts as declined: staff may close the approvals before the deadline, once they
    confirmed it for as many organisations as are still pending; the audit log says so."""
    approvals = submitted(session, district, staff)
    a, b, c = district.orgs
    services.decide_approval(session, approvals[a.id], "approve", venue_user(session, a), now=district.now)
    assert services.unanswered_organisations(session, district.campaign) == sorted([b.name, c.name])
    for confirmed in (0, 1):  # fewer than are pending: refused, nothing changes
        with pytest.raises(TransitionRefused, match="2 organisation"):
            services.mark_ready(
                session, district.campaign, user=staff, now=district.now, unanswered_confirmed=confirmed
            )
        assert {x.status for x in (approvals[b.id], approvals[c.id])} == {"pending"}
    eligible = services.mark_ready(session, district.campaign, user=staff, now=district.now, unanswered_confirmed=2)
    assert district.campaign.status == "ready" and eligible == len(eligible_recipients(session, district.campaign))
    assert (approvals[b.id].status, approvals[c.id].status) == ("expired", "expired")
    assert services.unanswered_organisations(session, district.campaign) == []
    ready = events(session, "campaign.ready")[-1]
    assert ready.actor == staff.email
    assert ready.details["unanswered_declined"] == 2 and ready.details["before_deadline"] is True
    expired = events(session, "approval.expire")
    assert {e.organisation_id for e in expired} == {b.id, c.id}
    assert all(e.details["before_deadline"] is True for e in expired)
    # only a's spectators (its own and the shared ones) are eligible: b and c count as declined
    senders = {org for _s, org in eligible_recipients(session, district.campaign)}
    assert senders == {a.id}
    with pytest.raises(TransitionRefused, match="no longer takes answers"):
        services.decide_approval(session, approvals[b.id], "approve", venue_user(session, b), now=district.now)


def test_mark_ready_after_the_deadline_needs_no_confirmation(session, district, staff):
    approvals = submitted(session, district, staff)
    a = district.orgs[0]
    services.decide_approval(session, approvals[a.id], "approve", venue_user(session, a), now=district.now)
    services.mark_ready(session, district.campaign, user=staff, now=district.campaign.approval_deadline)
    ready = events(session, "campaign.ready")[-1]
    assert ready.details["unanswered_declined"] == 2 and ready.details["before_deadline"] is False


def test_mark_ready_refuses_when_nobody_approved(session, district, staff):
    approvals = submitted(session, district, staff)
    for org in district.orgs:
        services.decide_approval(session, approvals[org.id], "decline", None, now=district.now)
    with pytest.raises(TransitionRefused, match="No organisation approved"):
        services.mark_ready(session, district.campaign, user=staff, now=district.now)
    assert district.campaign.status == "awaiting_approvals"


def test_a_venue_cannot_answer_for_another_organisation(session, district, staff):
    approvals = submitted(session, district, staff)
    a, b, _c = district.orgs
    with pytest.raises(TransitionRefused, match="another organisation"):
        services.decide_approval(session, approvals[b.id], "approve", venue_user(session, a), now=district.now)
    assert approvals[b.id].status == "pending"


def test_answers_close_at_the_deadline(session, district, staff):
    approvals = submitted(session, district, staff)
    org = district.orgs[0]
    with pytest.raises(TransitionRefused, match="deadline has passed"):
        services.decide_approval(session, approvals[org.id], "approve", None, now=district.campaign.approval_deadline)


def test_deadline_makes_ready_when_an_approval_has_recipients(session, district, staff):
    approvals = submitted(session, district, staff)
    org = district.orgs[0]
    services.decide_approval(session, approvals[org.id], "approve", None, now=district.now)
    assert services.apply_deadline(session, district.campaign, now=district.now) is None  # not yet
    after = district.campaign.approval_deadline + dt.timedelta(minutes=1)
    assert services.apply_deadline(session, district.campaign, now=after) == "ready"
    statuses = {a.organisation_id: a.status for a in district.campaign.approvals}
    assert statuses[org.id] == "approved" and set(statuses.values()) == {"approved", "expired"}
    assert len(events(session, "approval.expire")) == 2
    assert events(session, "campaign.ready")[-1].actor == "scheduler"
    assert services.apply_deadline(session, district.campaign, now=after) is None  # idempotent


def test_deadline_cancels_without_an_approval_with_recipients(session, district, staff):
    approvals = submitted(session, district, staff)
    org = district.orgs[0]
    services.decide_approval(session, approvals[org.id], "approve", None, now=district.now)
    # everybody of that organisation withdraws consent: the approval leaves nobody
    for (org_index, _spectator_id), contact in district.contacts.items():
        if district.orgs[org_index].id == org.id:
            for consent in contact.consents:
                consent.withdrawn_at = district.now
    session.flush()
    after = district.campaign.approval_deadline + dt.timedelta(minutes=1)
    assert services.apply_deadline(session, district.campaign, now=after) == "cancelled"
    assert "No spectator is eligible" in district.campaign.cancel_reason
    assert events(session, "campaign.cancel")[-1].details["to"] == "cancelled"


def test_cancel_needs_a_reason_and_is_final(session, district, staff):
    campaign = district.campaign
    with pytest.raises(TransitionRefused, match="reason"):
        services.cancel(session, campaign, user=staff, reason="  ")
    services.cancel(session, campaign, user=staff, reason="Budget coupé")
    assert campaign.status == "cancelled" and campaign.cancel_reason == "Budget coupé"
    with pytest.raises(TransitionRefused, match="no longer be cancelled"):
        services.cancel(session, campaign, user=staff, reason="encore")
    with pytest.raises(TransitionRefused, match="cannot become"):
        services.mark_launched(session, campaign, user=staff)


def test_later_states_follow_the_workflow(session, district, staff):
    approvals = submitted(session, district, staff)
    for approval in approvals.values():
        services.decide_approval(session, approval, "approve", None, now=district.now)
    with pytest.raises(TransitionRefused, match="cannot become"):
        services.mark_measuring(session, district.campaign, user=staff)
    services.mark_ready(session, district.campaign, user=staff, now=district.now)
    launched = district.campaign.planned_launch_at
    services.mark_launched(session, district.campaign, user=staff, now=launched)
    with pytest.raises(TransitionRefused, match="no longer be cancelled"):
        services.cancel(session, district.campaign, user=staff, reason="trop tard")
    services.mark_measuring(session, district.campaign, user=staff)
    with pytest.raises(TransitionRefused, match="window is not over"):
        services.mark_closed(session, district.campaign, user=staff, now=launched + dt.timedelta(days=3))
    services.mark_closed(session, district.campaign, user=staff, now=launched + dt.timedelta(days=31))
    assert district.campaign.status == "closed"
    assert [
        e.action
        for e in session.scalars(select(AuditEvent).where(AuditEvent.object_type == "campaign").order_by(AuditEvent.id))
    ][-4:] == ["campaign.ready", "campaign.launch", "campaign.measure", "campaign.close"]


def test_exclusion_list_keeps_matches_only(session, district, staff):
    approvals = submitted(session, district, staff)
    org = district.orgs[0]
    own = [c for (i, _s), c in district.contacts.items() if i == 0]
    other = [c for (i, _s), c in district.contacts.items() if i == 1 and (0, c.spectator_id) not in district.contacts]
    values = [own[0].email.upper() + " ", own[1].email, other[0].email, "inconnu@example.org", "pas-un-courriel", ""]
    rows, matched = services.set_exclusion_list(session, approvals[org.id], values, "email", SECRET, now=district.now)
    assert (rows, matched) == (4, 2)  # the other organisation's spectator is not ours to exclude
    assert set(session.scalars(select(Exclusion.spectator_id))) == {own[0].spectator_id, own[1].spectator_id}
    event = events(session, "approval.exclusion_list")[-1]
    assert own[0].email not in str(event.details) and event.details["matched"] == 2
    rows, matched = services.set_exclusion_list(
        session, approvals[org.id], [own[2].customer_id], "customer_id", SECRET, now=district.now
    )
    assert (rows, matched) == (1, 1)  # a new list replaces the old one
    assert set(session.scalars(select(Exclusion.spectator_id))) == {own[2].spectator_id}
    services.clear_exclusion_list(session, approvals[org.id], now=district.now)
    assert not session.scalars(select(Exclusion)).all() and approvals[org.id].exclusion_list_rows == 0


def test_erasure_deletes_contacts_keeps_transactions_and_logs_the_id_only(session, district, staff):
    from core.models import Consent, Contact, Spectator, Transaction

    shared = district.spectators[-1]  # known to every organisation
    email = next(c.email for (i, s), c in district.contacts.items() if s == shared.id)
    before_tx = session.scalar(select(Transaction.id).where(Transaction.spectator_id == shared.id).limit(1))
    found = erasure.find_person(session, "  " + email.upper(), SECRET)
    assert found.spectator_ids == [shared.id] and found.contacts == 3 and found.organisations == 3
    erasure.erase_person(session, email, SECRET, user=staff, now=district.now)
    assert not session.scalars(select(Contact).where(Contact.spectator_id == shared.id)).all()
    assert not session.scalars(select(Consent).join(Contact).where(Contact.spectator_id == shared.id)).all()
    assert session.scalar(select(Transaction.id).where(Transaction.id == before_tx)) is not None
    assert session.get(Spectator, shared.id).opted_out_at is not None
    event = events(session, "person.erase")[-1]
    assert event.object_id == str(shared.id) and email not in str(event.details) and email not in event.actor
    with pytest.raises(CampaignError):
        erasure.find_person(session, "pas un courriel", SECRET)
    assert erasure.erase_person(session, "personne@nulle.part", SECRET, user=staff).spectator_ids == []


def test_users_table_untouched_by_erasure(session, district, staff):
    erasure.erase_person(session, staff.email, SECRET, user=staff)
    assert session.get(User, staff.id) is not None
