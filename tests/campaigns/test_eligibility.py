"""Eligibility: consent at launch, approvals, exclusions, one sender per spectator; the funnel and its suppression."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns import services
from campaigns.eligibility import (
    SUBSCRIBER_LOOKBACK_DAYS,
    consented_contacts,
    eligible_count,
    eligible_recipients,
    eligible_select,
)
from campaigns.funnel import Funnel, FunnelRow, funnel, own_row
from campaigns.models import ContactHistory, Exclusion
from core.models import Contact, Spectator, Transaction, utcnow
from segments.models import SnapshotMember
from tests.campaigns.helpers import (
    SECRET,
    build_district,
    new_campaign,
    new_contact,
    new_org,
    new_promotion,
    new_purchase,
    new_segment,
    new_spectator,
)

NOW = dt.datetime(2031, 3, 2, 15, 0)
LAUNCH = NOW + dt.timedelta(days=10)
DAY = dt.timedelta(days=1)

# Consent situations, relative to the launch: (basis, given, expires, withdrawn), in days.
CONSENTS = {
    "express": ("express", -100, None, None),
    "express_later": ("express", 5, None, None),  # given after launch
    "express_withdrawn": ("express", -100, None, -3),
    "express_withdrawn_after_launch": ("express", -100, None, 2),  # an unsubscribe counts whenever it came
    "implied": ("implied_purchase", -300, 400, None),
    "implied_expired": ("implied_purchase", -800, -70, None),
    "implied_expires_at_launch": ("implied_subscription", -700, 0, None),
    "implied_withdrawn": ("implied_purchase", -30, 600, -1),
    "none": ("none", -10, None, None),
}


def at(days):
    return None if days is None else LAUNCH + dt.timedelta(days=days)


pair_strategy = st.fixed_dictionaries(
    {
        "contact": st.sampled_from([True, True, True, False]),
        # valid situations weigh more, so that most examples have recipients to check
        "consents": st.lists(
            st.sampled_from(sorted(CONSENTS) + ["express", "implied"] * 3),
            min_size=1,
            max_size=2,
            unique_by=lambda k: CONSENTS[k][0],
        ),
        "purchases": st.lists(st.tuples(st.integers(1, 900), st.sampled_from(["single", "subscription"])), max_size=2),
    }
)

world_strategy = st.integers(1, 3).flatmap(
    lambda n_orgs: st.integers(2, 8).flatmap(
        lambda n_spec: st.fixed_dictionaries(
            {
                "n_orgs": st.just(n_orgs),
                "pairs": st.lists(
                    st.lists(pair_strategy, min_size=n_orgs, max_size=n_orgs), min_size=n_spec, max_size=n_spec
                ),
                "members": st.lists(st.sampled_from([True, True, True, False]), min_size=n_spec, max_size=n_spec),
                "opted_out": st.lists(st.sampled_from([False] * 7 + [True]), min_size=n_spec, max_size=n_spec),
                "contacted_days_ago": st.lists(
                    st.one_of(st.none(), st.none(), st.integers(1, 90)), min_size=n_spec, max_size=n_spec
                ),
                # at least one approval: a campaign nobody approved has no recipient, trivially
                "answers": st.lists(
                    st.sampled_from(["approve", "approve", "decline", None]), min_size=n_orgs, max_size=n_orgs
                ).filter(lambda answers: "approve" in answers),
                "exclude_subscribers": st.lists(st.booleans(), min_size=n_orgs, max_size=n_orgs),
                "exclude_contacted": st.lists(
                    st.one_of(st.none(), st.integers(1, 60)), min_size=n_orgs, max_size=n_orgs
                ),
                "listed": st.lists(
                    st.lists(st.sampled_from([False, False, False, True]), min_size=n_spec, max_size=n_spec),
                    min_size=n_orgs,
                    max_size=n_orgs,
                ),
            }
        )
    )
)

counter = itertools.count()


def build_world(session, world):
    """Insert the generated world; returns (campaign, model) where model mirrors it in plain Python."""
    tag = next(counter)
    orgs = [new_org(session, f"w{tag}-o{i}") for i in range(world["n_orgs"])]
    spectators = []
    for s_index, pairs in enumerate(world["pairs"]):
        email = f"w{tag}-s{s_index}@exemple.ca"
        spectator = new_spectator(session, email)
        if world["opted_out"][s_index]:
            spectator.opted_out_at = NOW - DAY
        spectators.append(spectator)
        for o_index, pair in enumerate(pairs):
            for days, category in pair["purchases"]:
                new_purchase(session, orgs[o_index], spectator, LAUNCH - dt.timedelta(days=days), category)
            if pair["contact"]:
                consents = []
                for name in pair["consents"]:
                    basis, given, expires, withdrawn = CONSENTS[name]
                    consents.append(
                        {
                            "basis": basis,
                            "given_at": at(given),
                            "expires_at": at(expires),
                            "withdrawn_at": at(withdrawn),
                        }
                    )
                # some records hold no usable address: missing, blank, or not an address
                unusable = {0: None, 1: "  ", 2: "pas-une-adresse"}.get((s_index + 2 * o_index) % 7)
                new_contact(
                    session,
                    orgs[o_index],
                    spectator,
                    email=unusable if (s_index + 2 * o_index) % 7 < 3 else email,
                    customer_id=f"c{s_index}",
                    consents=consents,
                )
        if world["contacted_days_ago"][s_index] is not None:
            session.add(
                ContactHistory(
                    spectator_id=spectator.id,
                    organisation_id=orgs[0].id,
                    contacted_at=LAUNCH - dt.timedelta(days=world["contacted_days_ago"][s_index]),
                )
            )
    session.flush()
    members = [s.id for s, m in zip(spectators, world["members"]) if m]
    segment, snapshot = new_segment(session, members, as_of=NOW.date())
    promotion = new_promotion(
        session, [o.id for o in orgs], valid_from=NOW.date(), valid_until=LAUNCH.date() + 30 * DAY
    )
    campaign = new_campaign(
        session, segment, promotion, now=NOW, approval_deadline=NOW + 5 * DAY, planned_launch_at=LAUNCH
    )
    try:
        services.submit_for_approval(session, campaign, snapshot=snapshot, now=NOW)
    except services.TransitionRefused:
        return campaign, orgs, spectators
    approvals = {a.organisation_id: a for a in campaign.approvals}
    for o_index, org in enumerate(orgs):
        approval = approvals.get(org.id)
        if approval is None:
            continue
        listed = [f"w{tag}-s{i}@exemple.ca" for i, flag in enumerate(world["listed"][o_index]) if flag]
        if listed:
            services.set_exclusion_list(session, approval, listed + ["autre@exemple.ca"], "email", SECRET, now=NOW)
        answer = world["answers"][o_index]
        if answer:
            services.decide_approval(
                session,
                approval,
                answer,
                None,
                now=NOW,
                exclude_subscribers=world["exclude_subscribers"][o_index],
                exclude_contacted_days=world["exclude_contacted"][o_index],
            )
    return campaign, orgs, spectators


def expected_recipients(session, campaign):
    """The rule of campaigns.eligibility, spelled out one spectator at a time (the oracle)."""
    if campaign.snapshot_id is None:
        return []
    members = set(
        session.scalars(select(SnapshotMember.spectator_id).where(SnapshotMember.snapshot_id == campaign.snapshot_id))
    )
    result = []
    for spectator_id in sorted(members):
        spectator = session.get(Spectator, spectator_id)
        if spectator.opted_out_at is not None:
            continue
        options = []
        for approval in campaign.approvals:
            if approval.status != "approved":
                continue
            contact = session.scalar(
                select(Contact).where(
                    Contact.organisation_id == approval.organisation_id, Contact.spectator_id == spectator_id
                )
            )
            if contact is None:
                continue
            address = (contact.email or "").strip()
            if "@" not in address[1:-1]:  # no usable e-mail address at this organisation
                continue
            emails = [c for c in contact.consents if c.channel == "email"]
            if not any(c.is_valid(LAUNCH) for c in emails) or any(c.withdrawn_at for c in emails):
                continue
            txs = session.scalars(
                select(Transaction).where(
                    Transaction.organisation_id == approval.organisation_id, Transaction.spectator_id == spectator_id
                )
            ).all()
            if approval.exclude_subscribers and any(
                t.category == "subscription" and LAUNCH - SUBSCRIBER_LOOKBACK_DAYS * DAY < t.purchased_at <= LAUNCH
                for t in txs
            ):
                continue
            if approval.exclude_contacted_days and any(
                h.contacted_at > LAUNCH - approval.exclude_contacted_days * DAY
                for h in session.scalars(select(ContactHistory).where(ContactHistory.spectator_id == spectator_id))
            ):
                continue
            if session.get(Exclusion, (approval.id, spectator_id)):
                continue
            last = max((t.purchased_at for t in txs), default=None)
            options.append((last is None, -(last.timestamp() if last else 0), approval.organisation_id))
        if options:
            result.append((spectator_id, min(options)[2]))
    return result


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=world_strategy)
def test_property_eligible_recipients_follow_every_rule(session, world):
    try:
        campaign, orgs, spectators = build_world(session, world)
        recipients = eligible_recipients(session, campaign)
        event("some recipients" if recipients else "no recipient")
        event(
            "some organisation approved" if any(a.status == "approved" for a in campaign.approvals) else "no approval"
        )
        # at most once per campaign
        assert len({s for s, _o in recipients}) == len(recipients)
        approvals = {a.organisation_id: a for a in campaign.approvals}
        for spectator_id, org_id in recipients:
            approval = approvals[org_id]
            assert approval.status == "approved"  # never through a declining or silent organisation
            contact = session.scalar(
                select(Contact).where(Contact.organisation_id == org_id, Contact.spectator_id == spectator_id)
            )
            assert contact is not None and any(c.is_valid(LAUNCH) for c in contact.consents)  # valid consent
            assert not session.get(Exclusion, (approval.id, spectator_id))  # not on the uploaded list
            assert session.get(Spectator, spectator_id).opted_out_at is None
            if approval.exclude_subscribers:
                assert not session.scalar(
                    select(Transaction.id)
                    .where(
                        Transaction.spectator_id == spectator_id,
                        Transaction.organisation_id == org_id,
                        Transaction.category == "subscription",
                        Transaction.purchased_at > LAUNCH - SUBSCRIBER_LOOKBACK_DAYS * DAY,
                    )
                    .limit(1)
                )
            if approval.exclude_contacted_days:
                assert not session.scalar(
                    select(ContactHistory.id)
                    .where(
                        ContactHistory.spectator_id == spectator_id,
                        ContactHistory.contacted_at > LAUNCH - approval.exclude_contacted_days * DAY,
                    )
                    .limit(1)
                )
        # and exactly the recipients the rule, applied one spectator at a time, gives (sender rule included)
        assert recipients == expected_recipients(session, campaign)
        # the funnel agrees with the list
        f = funnel(session, campaign)
        if f is not None:
            assert f.total.eligible == len(recipients) == eligible_count(session, campaign)
            for row in f.rows:
                assert row.segment >= row.consent >= row.approved >= row.after_exclusions >= row.eligible
                assert row.eligible == sum(1 for _s, o in recipients if o == row.organisation_id)
                # the contacts page's consent test agrees with the funnel's
                assert row.consent == session.scalar(
                    select(func.count()).select_from(
                        consented_contacts(campaign.snapshot_id, LAUNCH, row.organisation_id).subquery()
                    )
                )
    finally:
        session.rollback()


@pytest.fixture
def district(session):
    return build_district(session, per_org=12, shared=4)


def approve_all(session, district, **options):
    services.submit_for_approval(session, district.campaign, snapshot=district.snapshot, now=district.now)
    for approval in district.campaign.approvals:
        services.decide_approval(session, approval, "approve", None, now=district.now, **options)
    return {a.organisation_id: a for a in district.campaign.approvals}


def test_shared_spectators_go_through_their_most_recent_purchase(session, district):
    approve_all(session, district)
    recipients = dict(eligible_recipients(session, district.campaign))
    assert len(recipients) == 3 * 12 + 4
    shared = district.spectators[-4:]
    for spectator in shared:
        # build_district: the first organisation has the most recent purchase of a shared spectator
        assert recipients[spectator.id] == district.orgs[0].id
    new_purchase(session, district.orgs[2], shared[0], district.now - dt.timedelta(hours=1))
    assert dict(eligible_recipients(session, district.campaign))[shared[0].id] == district.orgs[2].id


def test_unsubscribe_after_approval_removes_the_spectator(session, district):
    """The unsubscribe import sets Consent.withdrawn_at (and the district-wide opt-out); either is enough."""
    approve_all(session, district)
    before = dict(eligible_recipients(session, district.campaign))
    own = district.spectators[0]
    shared = district.spectators[-1]
    contact = district.contacts[(0, own.id)]
    for consent in contact.consents:
        consent.withdrawn_at = utcnow()
    # a shared spectator unsubscribing from the organisation that would send: another one takes over
    for consent in district.contacts[(0, shared.id)].consents:
        consent.withdrawn_at = utcnow()
    session.flush()
    after = dict(eligible_recipients(session, district.campaign))
    assert own.id in before and own.id not in after
    assert before[shared.id] == district.orgs[0].id and after[shared.id] == district.orgs[1].id
    shared_spectator = session.get(Spectator, shared.id)
    shared_spectator.opted_out_at = utcnow()
    session.flush()
    assert shared.id not in dict(eligible_recipients(session, district.campaign))


def test_unsubscribe_import_removes_the_spectator(app, db, session):
    importing = pytest.importorskip("core.importing", reason="the importer is not there yet")
    district = build_district(session, per_org=12, shared=4)
    approve_all(session, district)
    session.commit()
    own = district.spectators[0]
    email = district.contacts[(0, own.id)].email
    assert own.id in dict(eligible_recipients(session, district.campaign))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "desabonnements.csv"
        path.write_text(f"Courriel\n{email}\n", encoding="utf-8")
        with app.app_context():
            importing.import_file(session, str(path), district.orgs[0], kind="unsubscribes")
        session.commit()
    session.expire_all()
    assert own.id not in dict(eligible_recipients(session, session.merge(district.campaign)))


def test_consent_is_judged_at_the_planned_launch(session, district):
    approvals = approve_all(session, district)
    spectator = district.spectators[1]
    consent = district.contacts[(0, spectator.id)].consents[0]
    consent.basis = "implied_purchase"
    consent.expires_at = district.campaign.planned_launch_at - dt.timedelta(minutes=1)  # lapses just before launch
    session.flush()
    assert spectator.id not in dict(eligible_recipients(session, district.campaign))
    assert spectator.id in dict(eligible_recipients(session, district.campaign, at=district.now))
    assert approvals


def test_exclusions_of_one_organisation_bind_its_own_sending_only(session, district):
    approvals = approve_all(session, district)
    a, b, _c = district.orgs
    shared = district.spectators[-1]
    own_b = district.spectators[12]
    services.set_exclusion_list(
        session, approvals[a.id], [district.contacts[(0, shared.id)].email], "email", SECRET, now=district.now
    )
    services.set_exclusion_list(
        session,
        approvals[b.id],
        [district.contacts[(1, own_b.id)].customer_id],
        "customer_id",
        SECRET,
        now=district.now,
    )
    recipients = dict(eligible_recipients(session, district.campaign))
    assert recipients[shared.id] == b.id  # struck by a, still reachable through b
    assert own_b.id not in recipients


def test_subscriber_and_contact_pressure_exclusions(session, district):
    a = district.orgs[0]
    subscriber = district.spectators[2]
    contacted = district.spectators[3]
    old_subscriber = district.spectators[4]
    new_purchase(session, a, subscriber, district.now - dt.timedelta(days=100), category="subscription")
    new_purchase(
        session,
        a,
        old_subscriber,
        district.now - dt.timedelta(days=SUBSCRIBER_LOOKBACK_DAYS + 30),
        category="subscription",
    )
    session.add(
        ContactHistory(
            spectator_id=contacted.id,
            organisation_id=a.id,
            contacted_at=district.campaign.planned_launch_at - dt.timedelta(days=20),
        )
    )
    session.flush()
    approvals = approve_all(session, district)
    recipients = dict(eligible_recipients(session, district.campaign))
    assert {subscriber.id, contacted.id, old_subscriber.id} <= set(recipients)
    services.decide_approval(
        session, approvals[a.id], "approve", None, now=district.now, exclude_subscribers=True, exclude_contacted_days=30
    )
    recipients = dict(eligible_recipients(session, district.campaign))
    assert subscriber.id not in recipients and contacted.id not in recipients and old_subscriber.id in recipients
    services.decide_approval(session, approvals[a.id], "approve", None, now=district.now, exclude_contacted_days=10)
    assert contacted.id in dict(eligible_recipients(session, district.campaign))
    # the campaign's own contacts (written at launch) never exclude its recipients
    session.add(
        ContactHistory(
            spectator_id=subscriber.id,
            organisation_id=a.id,
            campaign_id=district.campaign.id,
            contacted_at=district.campaign.planned_launch_at - dt.timedelta(days=1),
        )
    )
    session.flush()
    assert subscriber.id in dict(eligible_recipients(session, district.campaign))


def test_eligible_select_feeds_an_insert(session, district):
    approve_all(session, district)
    query = eligible_select(session, district.campaign)
    rows = session.execute(query).all()
    assert len(rows) == eligible_count(session, district.campaign) == 40


def test_funnel_counts_and_suppression(session, district):
    approvals = approve_all(session, district)
    a, b, c = district.orgs
    services.decide_approval(session, approvals[c.id], "decline", None, now=district.now)
    services.set_exclusion_list(
        session,
        approvals[b.id],
        [district.contacts[(1, s.id)].email for s in district.spectators[12:15]],
        "email",
        SECRET,
        now=district.now,
    )
    f = funnel(session, district.campaign)
    rows = {r.organisation_id: r for r in f.rows}
    assert (
        rows[a.id].segment,
        rows[a.id].consent,
        rows[a.id].approved,
        rows[a.id].after_exclusions,
        rows[a.id].eligible,
    ) == (16, 16, 16, 16, 16)
    assert (rows[b.id].after_exclusions, rows[b.id].eligible) == (13, 9)  # shared ones go through a
    assert (rows[c.id].approved, rows[c.id].eligible) == (0, 0) and rows[c.id].status == "declined"
    assert (f.total.segment, f.total.consent, f.total.approved, f.total.after_exclusions, f.total.eligible) == (
        40,
        40,
        28,
        25,
        25,
    )
    shown = f.suppressed(10)
    rows_shown = {r.organisation_id: r for r in shown.rows}
    # b: 16 → 13 after exclusions drops 3 people, which would reveal the small count: hidden
    assert rows_shown[b.id].after_exclusions is None and rows_shown[b.id].eligible is None
    # then the only hidden eligible count would come back from the total by subtraction
    assert (
        shown.total.eligible is None
        or sum(1 for r in shown.rows if r.eligible is None and (f.row(r.organisation_id).eligible)) != 1
    )
    own = own_row(f, b.id, 10)
    assert own.after_exclusions == 13 and own.eligible is None


def test_suppression_hides_small_cells_and_their_complement():
    rows = [
        FunnelRow(1, "A", "approved", 50, 40, 40, 40, 40),
        FunnelRow(2, "B", "approved", 30, 25, 25, 25, 4),
        FunnelRow(3, "C", "declined", 20, 20, 0, 0, 0),
    ]
    f = Funnel(at=NOW, rows=rows, total=FunnelRow(None, "", None, 90, 80, 60, 60, 44))
    shown = f.suppressed(10)
    b = shown.rows[1]
    assert b.eligible is None  # 4 < k
    assert shown.rows[0].eligible is None  # complementary: else 44 - 40 = 4
    assert shown.rows[2].eligible == 0 and shown.total.eligible == 44
    assert shown.rows[0].segment == 50 and shown.rows[2].approved == 0
    drop = Funnel(
        at=NOW,
        rows=[FunnelRow(1, "A", "approved", 50, 47, 47, 47, 47)],
        total=FunnelRow(None, "", None, 50, 47, 47, 47, 47),
    )
    assert drop.suppressed(10).rows[0].consent is None  # 50 - 47 = 3 people without consent
    assert drop.suppressed(10).rows[0].eligible is None


def test_no_snapshot_no_funnel(session, district):
    assert funnel(session, district.campaign) is None
    assert eligible_recipients(session, district.campaign) == []


def test_cells_hidden_only_to_protect_a_small_drop_are_masked_not_small():
    """The walkthrough's case: 4,551 approved, 4,545 after exclusions. The 4,545 is hidden (else the
    6 people excluded show by subtraction), but it is not a small count: it must be labelled "hidden",
    never "<k"."""
    rows = [
        FunnelRow(1, "A", "approved", 3000, 2900, 2900, 2897, 2897),
        FunnelRow(2, "B", "approved", 2000, 1700, 1651, 1648, 1644),
        FunnelRow(3, "C", "approved", 30, 8, 8, 8, 4),
    ]
    total = FunnelRow(None, "", None, 5000, 4600, 4551, 4545, 4545)
    shown = Funnel(at=NOW, rows=rows, total=total).suppressed(10)
    assert shown.total.approved == 4551
    assert shown.total.after_exclusions is None and shown.total.eligible is None
    assert {"after_exclusions", "eligible"} <= shown.total.masked
    assert shown.total_eligible() == (None, 4551)  # what another page may show: the funnel's bound
    c = shown.rows[2]
    assert c.consent is None and c.eligible is None  # 8 and 4: primary suppression, truly small
    assert not c.masked & {"consent", "approved", "after_exclusions", "eligible"}
    # the raw funnel (cached between pages) is left as it was
    assert total.eligible == 4545 and not total.masked and not rows[0].masked


def test_a_hidden_eligible_total_does_not_come_back_as_the_sum_of_the_rows():
    """Eligible counts add up to the total (one sender per spectator). Here every organisation's own
    drops are large, but the campaign's is small (160 approved, 154 eligible): showing both rows'
    eligible counts would give the hidden 154 back, and with it the 6 people excluded."""
    rows = [FunnelRow(1, "A", "approved", 100, 100, 100, 90, 74), FunnelRow(2, "B", "approved", 100, 100, 100, 100, 80)]
    total = FunnelRow(None, "", None, 170, 165, 160, 154, 154)
    shown = Funnel(at=NOW, rows=rows, total=total).suppressed(10)
    assert shown.total.eligible is None and shown.total.approved == 160
    visible = [r.eligible for r in shown.rows if r.eligible is not None]
    assert len(visible) < len(shown.rows), "every row's eligible count shown: their sum is the hidden total"
    assert all("eligible" in r.masked for r in shown.rows if r.eligible is None)


def test_own_row_marks_an_eligible_count_hidden_for_its_drop(session, district):
    approvals = approve_all(session, district)
    b = district.orgs[1]
    services.set_exclusion_list(
        session,
        approvals[b.id],
        [district.contacts[(1, s.id)].email for s in district.spectators[12:15]],
        "email",
        SECRET,
        now=district.now,
    )
    f = funnel(session, district.campaign)
    raw = f.row(b.id)
    own = own_row(f, b.id, 3)  # 13 after its exclusions, 9 sent through it: a drop of 4 under k = 5...
    assert own.eligible == raw.eligible == 9 and not own.masked
    own = own_row(f, b.id, 5)  # ...hides the 9, which is not small itself
    assert own.eligible is None and own.masked == {"eligible"}
    own = own_row(f, b.id, 10)  # 9 < 10: truly small
    assert own.eligible is None and not own.masked


def test_purchases_after_the_launch_do_not_change_the_sender(session, district):
    """The sender is the approving organisation with the most recent purchase *by the launch*: an
    export imported later, with purchases after that moment, must not change who would have sent."""
    approve_all(session, district)
    shared = district.spectators[-1]
    a, _b, c = district.orgs
    launch = district.campaign.planned_launch_at
    assert dict(eligible_recipients(session, district.campaign))[shared.id] == a.id
    new_purchase(session, c, shared, launch + dt.timedelta(hours=1))
    assert dict(eligible_recipients(session, district.campaign))[shared.id] == a.id
    # judged at an earlier moment, a purchase between that moment and the planned launch does not count either
    moment = district.now
    new_purchase(session, c, shared, moment + dt.timedelta(days=1))
    assert dict(eligible_recipients(session, district.campaign, at=moment))[shared.id] == a.id
    assert dict(eligible_recipients(session, district.campaign))[shared.id] == c.id  # before the launch: it counts
    # the funnel follows the same rule
    f = funnel(session, district.campaign, at=moment)
    assert f.row(a.id).eligible == 16 and f.row(c.id).eligible == 12


def test_sender_ties_purchases_at_excluded_organisations_and_no_purchase(session, district):
    """The sender is looked up among the spectator's candidate organisations only: equal purchase
    moments go to the lowest organisation id, a more recent purchase where the spectator is excluded
    does not count, and a spectator without any purchase at a candidate goes to the lowest id."""
    a, b, c = district.orgs
    shared = district.spectators[-4:]
    moment = district.now - dt.timedelta(hours=1)
    # the same moment at b and c, more recent than the purchase at a
    new_purchase(session, c, shared[0], moment)
    new_purchase(session, b, shared[0], moment)
    # the most recent purchase is a subscription at a, which excludes its subscribers
    new_purchase(session, a, shared[1], moment, "subscription")
    # known to b and c, bought at a only (a subscription)
    outsider = new_spectator(session, "dehors@exemple.qc.ca")
    for org in (c, b):
        new_contact(
            session,
            org,
            outsider,
            email="dehors@exemple.qc.ca",
            consents=[{"basis": "express", "given_at": district.now - dt.timedelta(days=400)}],
        )
    new_purchase(session, a, outsider, moment, "subscription")
    session.add(SnapshotMember(snapshot_id=district.snapshot.id, spectator_id=outsider.id))
    session.flush()
    approvals = approve_all(session, district)
    services.decide_approval(session, approvals[a.id], "approve", None, now=district.now, exclude_subscribers=True)
    recipients = dict(eligible_recipients(session, district.campaign))
    assert recipients[shared[0].id] == min(b.id, c.id)
    assert recipients[shared[1].id] == b.id  # build_district: b's purchase is more recent than c's
    assert recipients[outsider.id] == min(b.id, c.id)
    assert recipients[shared[2].id] == recipients[shared[3].id] == a.id
    # the funnel ranks every pair by stage and last purchase: the same senders
    f = funnel(session, district.campaign)
    for org in (a, b, c):
        assert f.row(org.id).eligible == sum(1 for o in recipients.values() if o == org.id)
    assert f.total.eligible == len(recipients) == eligible_count(session, district.campaign)


def test_a_contact_without_a_usable_email_is_not_eligible_and_counted_apart(session, district):
    approve_all(session, district)
    own = district.orgs[1]
    spectator = district.spectators[13]
    before = dict(eligible_recipients(session, district.campaign))
    assert before[spectator.id] == own.id
    contact = district.contacts[(1, spectator.id)]
    for address in (None, "", "   ", "sans-arobase"):
        contact.email = address
        session.flush()
        assert spectator.id not in dict(eligible_recipients(session, district.campaign))
        row = funnel(session, district.campaign).row(own.id)
        assert row.no_email == 1
        raw_consent = row.consent
    contact.email = "retour@exemple.ca"
    session.flush()
    row = funnel(session, district.campaign).row(own.id)
    assert row.no_email == 0 and row.consent == raw_consent + 1
    assert dict(eligible_recipients(session, district.campaign))[spectator.id] == own.id
