"""Launch: blocked randomisation from a stored seed, codes, contact history, contact lists, dates."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import func, select, update

from campaigns import promotions
from campaigns import services as campaign_services
from campaigns.models import ContactHistory
from core.models import AuditEvent, Consent, Spectator
from experiments import services
from experiments.assignment import CODE_ALPHABET, unique_codes
from experiments.models import ContactList, Experiment, Recipient, ReportSnapshot
from experiments.outcomes import match_outcomes
from experiments.services import ContactListExpired, ExperimentError
from tests.campaigns.helpers import build_district


def ready_campaign(
    session, per_org: int = 20, shared: int = 6, now: dt.datetime | None = None, arms=None, **district_kwargs
):
    """A district whose campaign every organisation approved and that is ready to launch."""
    district = build_district(session, per_org=per_org, shared=shared, now=now, **district_kwargs)
    campaign = district.campaign
    if arms is not None:
        campaign_services.update_campaign(session, campaign, arms=arms)
    if now is not None:  # a district in the past: its promotion runs from then
        promotions.update_promotion(
            session, campaign.promotion, valid_from=now.date(), valid_until=now.date() + dt.timedelta(days=90)
        )
    campaign_services.submit_for_approval(session, campaign, snapshot=district.snapshot, now=district.now)
    for approval in campaign.approvals:
        campaign_services.decide_approval(session, approval, "approve", now=district.now)
    campaign_services.mark_ready(session, campaign, now=district.now)
    session.flush()
    return district


def events(session, action):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_launch_assigns_every_eligible_recipient_once_blocked_by_organisation(session):
    district = ready_campaign(session, per_org=30, shared=6)
    campaign = district.campaign
    experiment = services.launch(session, campaign, now=district.now, seed=20260401)
    session.commit()

    recipients = session.scalars(select(Recipient).where(Recipient.experiment_id == experiment.id)).all()
    assert len(recipients) == experiment.recipients == 3 * 30 + 6
    assert len({r.spectator_id for r in recipients}) == len(recipients)
    # shares 20/80 within one recipient in every organisation (the block)
    by_org = Counter((r.organisation_id, r.arm) for r in recipients)
    for org in district.orgs:
        n = by_org[(org.id, "control")] + by_org[(org.id, "A")]
        assert abs(by_org[(org.id, "control")] - 0.2 * n) < 1
    # unique codes for the test arm only, from the unambiguous alphabet
    test_codes = [r.code for r in recipients if r.arm == "A"]
    assert all(r.code is None for r in recipients if r.arm == "control")
    assert len(set(test_codes)) == len(test_codes) and all(set(c) <= set(CODE_ALPHABET) for c in test_codes)
    # contact history for the test arm only, dated at launch
    history = session.scalars(select(ContactHistory).where(ContactHistory.campaign_id == campaign.id)).all()
    assert {h.spectator_id for h in history} == {r.spectator_id for r in recipients if r.arm == "A"}
    assert {h.contacted_at for h in history} == {district.now.replace(microsecond=0)}
    # one contact list per organisation with test recipients
    lists = {c.organisation_id: c.recipients for c in session.scalars(select(ContactList))}
    assert lists == {org.id: by_org[(org.id, "A")] for org in district.orgs}
    # the campaign is launched, the sample ratio checked, both steps audited
    assert campaign.status == "launched" and campaign.launched_at == experiment.launched_at
    assert experiment.srm["n"] == {"control": sum(1 for r in recipients if r.arm == "control"), "A": len(test_codes)}
    assert experiment.srm["overall"]["flag"] is False
    assert set(experiment.srm["by_organisation"]) == {str(o.id) for o in district.orgs}
    launch_event = events(session, "experiment.launch")[0]
    assert launch_event.details["seed"] == "20260401" and launch_event.details["recipients"] == len(recipients)
    assert events(session, "campaign.launch")[0].details["to"] == "launched"
    # the interim looks' design is fixed by the first matching, from the pre-period only
    assert experiment.design is None and experiment.outcomes_at is None
    match_outcomes(session, experiment)
    assert experiment.design["metrics"]["conversion"]["tau2"] > 0
    assert experiment.design["n_control"] == experiment.srm["n"]["control"]


def test_assignment_is_reproducible_from_the_stored_seed(session):
    district = ready_campaign(session, per_org=25, shared=4)
    experiment = services.launch(session, district.campaign, now=district.now, seed=7)
    session.commit()
    assert services.verify_assignment(session, experiment)
    spectators, organisations, arms = services.stored_assignment(session, experiment)
    # the same eligible pairs in another order, the same seed: the same arms
    order = np.random.default_rng(3).permutation(spectators.size)
    redrawn = services.draw_assignment(spectators[order], organisations[order], experiment.arms, 7)
    assert np.array_equal(redrawn.arms, arms[order])
    # re-running eligibility at the launch moment gives the pairs that were assigned
    again_s, again_o = services.eligible_arrays(session, district.campaign, experiment.launched_at)
    assert sorted(zip(again_s.tolist(), again_o.tolist())) == sorted(zip(spectators.tolist(), organisations.tolist()))
    # another seed, another draw
    other = services.draw_assignment(spectators, organisations, experiment.arms, 8)
    assert not np.array_equal(other.arms, arms)
    # tampering with a stored arm is detected
    recipient = session.scalar(
        select(Recipient).where(Recipient.experiment_id == experiment.id, Recipient.arm == "control")
    )
    recipient.arm = "A"
    session.flush()
    assert not services.verify_assignment(session, experiment)


def test_an_experiment_is_verified_with_the_algorithm_version_that_drew_it(session):
    from experiments.assignment import ASSIGNMENT_VERSION

    district = ready_campaign(session, per_org=25, shared=4)
    experiment = services.launch(session, district.campaign, now=district.now, seed=7)
    session.commit()
    assert experiment.assignment_version == ASSIGNMENT_VERSION == 2
    assert services.verify_assignment(session, experiment)
    # an experiment drawn before randomised rounding (version 1, largest remainder): its stored
    # arms are redrawn with version 1, not with today's algorithm
    spectators, organisations, _ = services.stored_assignment(session, experiment)
    old = services.draw_assignment(spectators, organisations, experiment.arms, 7, version=1)
    new = services.draw_assignment(spectators, organisations, experiment.arms, 7, version=2)
    assert not np.array_equal(old.arms, new.arms)
    names = experiment.arm_names
    for spectator, arm in zip(spectators.tolist(), old.arms.tolist()):
        session.execute(
            update(Recipient)
            .where(Recipient.experiment_id == experiment.id, Recipient.spectator_id == spectator)
            .values(arm=names[arm])
        )
    experiment.assignment_version = 1
    session.flush()
    assert services.verify_assignment(session, experiment)
    experiment.assignment_version = 2
    assert not services.verify_assignment(session, experiment)


def test_codes_follow_the_spectators_and_history_is_stored_as_queried(session):
    district = ready_campaign(session, per_org=30, shared=6)
    experiment = services.launch(session, district.campaign, now=district.now, seed=11)
    session.commit()
    rows = session.execute(
        select(Recipient.spectator_id, Recipient.code)
        .where(Recipient.experiment_id == experiment.id, Recipient.code.is_not(None))
        .order_by(Recipient.spectator_id)
    ).all()
    # handed out in sorted order along the spectator ids (the unique index is written in key order)
    assert [r.code for r in rows] == sorted(r.code for r in rows) and len(rows) == experiment.srm["n"]["A"]
    # the launch moment is stored the way a query binds it (SQLite compares the stored text)
    stamped = (
        select(func.count())
        .select_from(ContactHistory)
        .where(ContactHistory.contacted_at == district.now.replace(microsecond=0))
    )
    assert session.scalar(stamped) == len(rows)


def test_a_code_already_stored_is_drawn_again(session):
    district = ready_campaign(session, per_org=20, shared=4)
    session.add(Recipient(experiment_id=0, spectator_id=0, organisation_id=0, arm="A", code="CLASHCODE1"))
    session.flush()
    calls = []

    def generator(count, taken):
        calls.append(set(taken))
        fresh = unique_codes(count, taken | {"CLASHCODE1"})
        return fresh if taken else ["CLASHCODE1", *fresh[1:]]

    experiment = services.launch(session, district.campaign, now=district.now, seed=5, code_generator=generator)
    session.commit()
    codes = list(
        session.scalars(
            select(Recipient.code).where(Recipient.experiment_id == experiment.id, Recipient.code.is_not(None))
        )
    )
    # the clash rolled back to the savepoint; the second draw avoided the stored code
    assert calls == [set(), {"CLASHCODE1"}]
    assert len(codes) == experiment.srm["n"]["A"] and "CLASHCODE1" not in codes
    assert (
        session.scalar(select(func.count()).select_from(Recipient).where(Recipient.experiment_id == experiment.id))
        == experiment.recipients
    )


def test_launch_is_frozen_and_refused_unless_ready(session):
    district = ready_campaign(session, per_org=5, shared=1)
    campaign = district.campaign
    services.launch(session, campaign, now=district.now, seed=1)
    with pytest.raises(ExperimentError):
        services.launch(session, campaign, now=district.now, seed=1)
    assert session.scalar(select(func.count()).select_from(Experiment)) == 1

    draft = build_district(session, per_org=3, shared=0, slug_prefix="b-")
    with pytest.raises(ExperimentError, match="ready"):
        services.launch(session, draft.campaign, now=draft.now)


def test_three_arms_keep_planned_shares_per_organisation(session):
    district = ready_campaign(session, per_org=40, shared=0, arms=campaign_services.make_arms(20, [40, 40]))
    experiment = services.launch(session, district.campaign, now=district.now, seed=99)
    counts = Counter(
        session.execute(
            select(Recipient.organisation_id, Recipient.arm).where(Recipient.experiment_id == experiment.id)
        ).all()
    )
    for org in district.orgs:
        assert counts[(org.id, "control")] == 8
        assert counts[(org.id, "A")] == 16 and counts[(org.id, "B")] == 16
    assert experiment.srm["overall"]["p_value"] == pytest.approx(1.0)


def test_shared_code_goes_to_every_test_recipient(session):
    district = ready_campaign(session, per_org=6, shared=0)
    promotion = district.campaign.promotion
    promotion.code_strategy, promotion.shared_code = "shared", "QUARTIER-25"
    experiment = services.launch(session, district.campaign, now=district.now, seed=5)
    assert session.scalar(select(func.count()).select_from(Recipient).where(Recipient.code.is_not(None))) == 0
    rows = services.contact_rows(session, experiment, district.orgs[0].id)
    assert rows and {r.code for r in rows} == {"QUARTIER-25"} and {r.arm for r in rows} == {"A"}


def test_contact_rows_leave_out_control_other_organisations_and_unsubscribes(session):
    district = ready_campaign(session, per_org=12, shared=0)
    alpha = district.orgs[0]
    experiment = services.launch(session, district.campaign, now=district.now, seed=11)
    test_ids = list(
        session.scalars(
            select(Recipient.spectator_id)
            .where(
                Recipient.experiment_id == experiment.id, Recipient.organisation_id == alpha.id, Recipient.arm == "A"
            )
            .order_by(Recipient.spectator_id)
        )
    )
    rows = services.contact_rows(session, experiment, alpha.id)
    assert len(rows) == len(test_ids)
    emails = {r.email for r in rows}
    own_emails = {district.contacts[(0, s)].email for s in test_ids}
    assert emails == own_emails
    # after launch: one withdraws consent at Alpha, one opts out district-wide
    withdrawn, opted = test_ids[0], test_ids[1]
    consent = session.scalar(select(Consent).where(Consent.contact_id == district.contacts[(0, withdrawn)].id))
    consent.withdrawn_at = district.now + dt.timedelta(days=1)
    session.get(Spectator, opted).opted_out_at = district.now + dt.timedelta(days=1)
    session.flush()
    rows = services.contact_rows(session, experiment, alpha.id)
    assert len(rows) == len(test_ids) - 2
    assert district.contacts[(0, withdrawn)].email not in {r.email for r in rows}
    assert {r.language for r in rows} == {"fr"}
    # an address made unusable after the launch (a later import blanked it): no line without one
    blanked = test_ids[2]
    for address in (None, "", "  ", "sans-arobase"):
        district.contacts[(0, blanked)].email = address
        session.flush()
        rows = services.contact_rows(session, experiment, alpha.id)
        assert len(rows) == len(test_ids) - 3 and all(r.email and "@" in r.email for r in rows)


def test_every_recipient_can_be_written_to_by_its_sender(session):
    """Eligibility requires a usable e-mail address at the sending organisation: whoever has none
    there is no recipient (counted apart on the approval page, campaigns/test_eligibility.py)."""
    district = ready_campaign(session, per_org=12, shared=3)
    unreachable = district.spectators[5]
    for (_org, spectator_id), contact in district.contacts.items():
        if spectator_id == unreachable.id:
            contact.email = "  "
    session.flush()
    experiment = services.launch(session, district.campaign, now=district.now, seed=13)
    senders = dict(
        session.execute(
            select(Recipient.spectator_id, Recipient.organisation_id).where(Recipient.experiment_id == experiment.id)
        ).all()
    )
    assert unreachable.id not in senders and len(senders) == len(district.spectators) - 1
    index = {org.id: i for i, org in enumerate(district.orgs)}
    for spectator_id, org_id in senders.items():
        email = district.contacts[(index[org_id], spectator_id)].email
        assert email and "@" in email.strip()[1:-1]


def test_downloads_are_logged_and_lists_expire(session, app):
    app.config["CONTACT_LIST_RETENTION_DAYS"] = 10
    district = ready_campaign(session, per_org=8, shared=0)
    now = district.now.replace(microsecond=0)
    with app.test_request_context():
        experiment = services.launch(session, district.campaign, now=now, seed=3)
        item = services.contact_list_for(session, experiment.id, district.orgs[0].id)
        assert item.expires_at == now + dt.timedelta(days=10)
        # the first download, on day 4, restarts the retention period
        services.record_download(session, item, rows=6, now=now + dt.timedelta(days=4))
        assert item.expires_at == now + dt.timedelta(days=14) and item.downloads == 1
        services.record_download(session, item, rows=6, now=now + dt.timedelta(days=13))
        assert item.downloads == 2
        with pytest.raises(ContactListExpired, match="expir"):
            services.record_download(session, item, rows=6, now=now + dt.timedelta(days=14))
        assert [e.details["rows"] for e in events(session, "contact_list.download")] == [6, 6]
        assert len(events(session, "contact_list.refused")) == 1
        # a list never downloaded expires 10 days after launch; the purge closes both
        other = services.contact_list_for(session, experiment.id, district.orgs[1].id)
        assert services.purge_contact_lists(session, now + dt.timedelta(days=9)) == 0
        assert services.purge_contact_lists(session, now + dt.timedelta(days=15)) == 3
        assert other.purged_at is not None and services.is_expired(other, now)


def test_dates_move_the_campaign_to_measuring_then_closed(session):
    district = ready_campaign(session, per_org=6, shared=0)
    campaign = district.campaign
    experiment = services.launch(session, campaign, now=district.now, seed=2)
    assert services.advance(session, experiment, experiment.window_end - dt.timedelta(hours=1)) is None
    assert services.advance(session, experiment, experiment.window_end) == "measuring"
    assert campaign.status == "measuring"
    assert services.advance(session, experiment, experiment.window_end + dt.timedelta(days=1)) is None
    closing = experiment.window_end + dt.timedelta(days=services.DEFAULT_CLOSE_AFTER_DAYS)
    assert services.advance(session, experiment, closing) == "closed"
    assert campaign.status == "closed" and campaign.closed_at == closing
    # the final report is stored at close, with the closed status
    (final,) = session.scalars(select(ReportSnapshot).where(ReportSnapshot.experiment_id == experiment.id)).all()
    assert final.kind == "final" and final.data["status"] == "closed" and final.created_at == closing
    assert services.advance(session, experiment, closing + dt.timedelta(days=1)) is None


def test_scheduled_jobs_close_refresh_and_purge(app, session):
    from core.models import Transaction, utcnow
    from core.scheduler import registered_jobs, run_job
    from experiments.models import ReportSnapshot

    assert {"experiments.refresh", "experiments.after_imports", "experiments.dates", "experiments.purge_lists"} <= set(
        registered_jobs(app)
    )
    past = utcnow().replace(microsecond=0) - dt.timedelta(days=60)
    old = ready_campaign(session, per_org=6, shared=0, now=past)
    old_experiment = services.launch(session, old.campaign, now=past, seed=1)
    current = ready_campaign(session, per_org=6, shared=0, slug_prefix="r-")
    current_experiment = services.launch(session, current.campaign, now=current.now, seed=2)
    session.commit()

    def run(job_id):
        result = run_job(app, job_id, runner="cli")
        assert result.status == "success", result.error
        session.expire_all()
        return result.summary

    # the old campaign's window ended 30 days ago: measuring, then closed with a final report
    assert run("experiments.dates") == {"moved": {str(old.campaign.id): "closed"}}
    assert session.get(type(old.campaign), old.campaign.id).status == "closed"
    snapshots = session.scalars(select(ReportSnapshot).where(ReportSnapshot.experiment_id == old_experiment.id)).all()
    assert [(s.kind, s.data["status"]) for s in snapshots] == [("final", "closed")]
    assert run("experiments.dates") == {"moved": {}}
    # nightly refresh of what still runs; after an import, the quick job catches up
    assert run("experiments.refresh")["refreshed"] == 1
    assert run("experiments.after_imports")["refreshed"] == 0
    recipient = session.scalar(select(Recipient).where(Recipient.experiment_id == current_experiment.id))
    session.add(
        Transaction(
            organisation_id=recipient.organisation_id,
            spectator_id=recipient.spectator_id,
            purchased_at=current_experiment.launched_at + dt.timedelta(hours=1),
            amount_cents=1000,
            tickets=1,
            external_id="job-test",
        )
    )
    session.commit()
    assert run("experiments.after_imports")["refreshed"] == 1
    assert (
        session.scalar(
            select(func.count())
            .select_from(ReportSnapshot)
            .where(ReportSnapshot.experiment_id == current_experiment.id)
        )
        == 2
    )
    # the old lists expired 30 days after launch; the current ones stay
    assert run("experiments.purge_lists") == {"purged": 3}
    purged = dict(
        session.execute(
            select(ContactList.experiment_id, func.count())
            .where(ContactList.purged_at.is_not(None))
            .group_by(ContactList.experiment_id)
        ).all()
    )
    assert purged == {old_experiment.id: 3}
