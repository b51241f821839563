"""Offers per arm (issue 19.4): a promotion per test arm, its codes and messages in the contact lists
of the e-mail tools, unsubscribe links, and the report comparing each offer with the control and A with B."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from urllib.parse import urlparse

import numpy as np
import pytest
from sqlalchemy import select
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from campaigns import offers as campaign_offers
from campaigns import promotions
from campaigns import services as campaign_services
from campaigns.models import Campaign
from campaigns.services import CampaignError, make_arms
from core.models import AuditEvent, Consent, Contact, Spectator
from experiments import arm_pairs, outcomes, reports, services, unsubscribe
from experiments.analyze import analyze_file
from experiments.models import Outcome, Recipient
from tests.campaigns.helpers import build_district, new_promotion
from tests.experiments.test_reports import add_sale, set_k

TWO_FOR_ONE = dict(
    name_fr="Deux pour un",
    name_en="Two for one",
    message_fr="Un billet acheté, un billet offert",
    message_en="Buy one ticket, get one free",
    offer_kind="two_for_one",
    offer_value=None,
    code_strategy="shared",
    shared_code="DEUX-POUR-UN",
    average_discount_cents=4000,
)


def ab_campaign(session, per_org: int = 20, shared: int = 4, shares=(20, 40, 40)):
    """A district whose campaign tests arm A (the campaign's 20 % off, unique codes) and arm B (two
    for one, one shared code) against a control, approved and ready to launch."""
    district = build_district(session, per_org=per_org, shared=shared)
    campaign = district.campaign
    two_for_one = new_promotion(session, [o.id for o in district.orgs], **TWO_FOR_ONE)
    campaign_services.update_campaign(
        session, campaign, arms=make_arms(shares[0], list(shares[1:]), [None, two_for_one.id])
    )
    campaign_services.submit_for_approval(session, campaign, snapshot=district.snapshot, now=district.now)
    for approval in campaign.approvals:
        campaign_services.decide_approval(session, approval, "approve", now=district.now)
    campaign_services.mark_ready(session, campaign, now=district.now)
    session.flush()
    return district, two_for_one


# --- the campaign ----------------------------------------------------------------------------------


def test_arms_carry_their_own_promotion(session):
    district = build_district(session, per_org=5, shared=1)
    campaign = district.campaign
    other = new_promotion(session, [o.id for o in district.orgs], **TWO_FOR_ONE)
    arms = make_arms(20, [40, 40], [None, other.id])
    assert arms == [
        {"name": "control", "share": 20},
        {"name": "A", "share": 40},
        {"name": "B", "share": 40, "promotion_id": other.id},
    ]
    campaign_services.update_campaign(session, campaign, arms=arms)
    found = campaign_offers.arm_promotions(session, campaign)
    assert found == {"A": district.promotion, "B": other}
    assert campaign_offers.has_several_offers(campaign)
    # an unknown promotion, or an offer for the control group, is refused
    with pytest.raises(CampaignError, match="does not exist"):
        campaign_services.update_campaign(session, campaign, arms=make_arms(20, [40, 40], [None, other.id + 999]))
    with pytest.raises(CampaignError, match="control group receives no offer"):
        campaign_services.update_campaign(
            session,
            campaign,
            arms=[{"name": "control", "share": 20, "promotion_id": other.id}, {"name": "A", "share": 80}],
        )


def test_an_arms_promotion_is_frozen_once_submitted_and_checked_at_submission(session):
    district = build_district(session, per_org=5, shared=1)
    campaign = district.campaign
    expired = new_promotion(
        session,
        [o.id for o in district.orgs],
        **{
            **TWO_FOR_ONE,
            "valid_from": district.now.date() - dt.timedelta(days=60),
            "valid_until": district.now.date() - dt.timedelta(days=30),
        },
    )
    campaign_services.update_campaign(session, campaign, arms=make_arms(20, [40, 40], [None, expired.id]))
    with pytest.raises(campaign_services.TransitionRefused, match="must fall within it"):
        campaign_services.submit_for_approval(session, campaign, snapshot=district.snapshot, now=district.now)
    good = new_promotion(session, [o.id for o in district.orgs], **TWO_FOR_ONE)
    campaign_services.update_campaign(session, campaign, arms=make_arms(20, [40, 40], [None, good.id]))
    campaign_services.submit_for_approval(session, campaign, snapshot=district.snapshot, now=district.now)
    with pytest.raises(CampaignError, match="already submitted"):
        promotions.update_promotion(session, good, message_fr="Autre chose")


def test_campaign_form_chooses_a_promotion_per_arm_and_the_page_shows_each_offer(session, login_as):
    district = build_district(session, per_org=5, shared=1)
    other = new_promotion(session, [o.id for o in district.orgs], **TWO_FOR_ONE)
    session.commit()
    staff = login_as("staff")
    page = staff.get("/campaigns/new?lang=en")
    assert b"Offer of arm A" in page.data and b"Same as the campaign&#39;s promotion" in page.data
    response = staff.post(
        "/campaigns/new?lang=en",
        data={
            "name": "A/B",
            "objective": "cross_sell",
            "segment": district.segment.id,
            "promotion": district.promotion.id,
            "control_share": 20,
            "arm_a_share": 40,
            "arm_a_promotion": 0,
            "arm_b_share": 40,
            "arm_b_promotion": other.id,
            "window_days": 30,
            "primary_metric": "conversion",
            "approval_deadline": "2030-01-01T10:00",
            "planned_launch_at": "2030-01-05T10:00",
        },
    )
    assert response.status_code == 302, response.data[-2000:]
    campaign = session.scalar(select(Campaign).where(Campaign.name == "A/B"))
    assert campaign.arms[2] == {"name": "B", "share": 40, "promotion_id": other.id}
    assert "promotion_id" not in campaign.arms[1]
    html = staff.get(f"/campaigns/{campaign.id}?lang=en").data.decode()
    table = html[html.index('id="arm-offers"') :]
    assert "Quartier Spring" in table[: table.index('data-arm="B"')] and "20% off" in table
    assert "Two for one" in table[table.index('data-arm="B"') :] and "DEUX-POUR-UN" in table
    french = staff.get(f"/campaigns/{campaign.id}?lang=fr").data.decode()
    assert "Offres par groupe" in french and "Deux pour un" in french
    # an unknown promotion in the form is a clear error, nothing written
    bad = staff.post(
        f"/campaigns/{campaign.id}/edit?lang=en",
        data={
            "name": "A/B",
            "objective": "cross_sell",
            "segment": district.segment.id,
            "promotion": district.promotion.id,
            "control_share": 20,
            "arm_a_share": 40,
            "arm_a_promotion": 999999,
            "arm_b_share": 40,
            "window_days": 30,
            "primary_metric": "conversion",
            "approval_deadline": "2030-01-01T10:00",
            "planned_launch_at": "2030-01-05T10:00",
        },
    )
    assert bad.status_code == 200 and b"Not a valid choice" in bad.data
    session.refresh(campaign)
    assert campaign.arms[2].get("promotion_id") == other.id


# --- launch, codes, contact lists -------------------------------------------------------------


@pytest.fixture
def launched(session):
    district, two_for_one = ab_campaign(session)
    experiment = services.launch(session, district.campaign, now=district.now, seed=5)
    session.commit()
    return district, two_for_one, experiment


def test_each_arm_gets_its_own_codes(session, launched):
    district, two_for_one, experiment = launched
    assert experiment.arms[1] == {
        "name": "A",
        "share": 40,
        "promotion_id": district.promotion.id,
        "code_strategy": "unique",
        "shared_code": None,
    }
    assert experiment.arms[2] == {
        "name": "B",
        "share": 40,
        "promotion_id": two_for_one.id,
        "code_strategy": "shared",
        "shared_code": "DEUX-POUR-UN",
    }
    recipients = session.scalars(select(Recipient).where(Recipient.experiment_id == experiment.id)).all()
    by_arm = {arm: [r for r in recipients if r.arm == arm] for arm in ("control", "A", "B")}
    assert all(by_arm.values())
    assert all(r.code for r in by_arm["A"]) and len({r.code for r in by_arm["A"]}) == len(by_arm["A"])
    assert all(r.code is None for r in by_arm["B"] + by_arm["control"])
    alpha = district.orgs[0]
    rows = services.contact_rows(session, experiment, alpha.id)
    assert {r.arm for r in rows} == {"A", "B"}
    assert {r.code for r in rows if r.arm == "B"} == {"DEUX-POUR-UN"}
    assert all(re.fullmatch(r"[A-Z0-9]{10}", r.code) for r in rows if r.arm == "A")


def test_redemptions_count_each_arms_own_code(session, launched):
    district, _two_for_one, experiment = launched
    recipients = session.scalars(
        select(Recipient).where(Recipient.experiment_id == experiment.id).order_by(Recipient.id)
    ).all()
    a = next(r for r in recipients if r.arm == "A")
    b = next(r for r in recipients if r.arm == "B")
    b_with_a_code = [r for r in recipients if r.arm == "B"][1]
    control = next(r for r in recipients if r.arm == "control")
    when = experiment.launched_at + dt.timedelta(days=2)
    add_sale(session, a, when, 5000, a.code)
    add_sale(session, b, when, 5000, "deux-pour-un ")
    add_sale(session, b_with_a_code, when, 5000, a.code)  # someone else's unique code: counts for no one
    add_sale(session, control, when, 5000, "DEUX-POUR-UN")  # contamination, reported as such
    session.flush()
    summary = outcomes.match_outcomes(session, experiment, now=when + dt.timedelta(days=1))
    redeemed = dict(
        session.execute(
            select(Outcome.recipient_id, Outcome.redeemed).where(Outcome.experiment_id == experiment.id)
        ).all()
    )
    assert redeemed[a.id] == 1 and redeemed[b.id] == 1 and redeemed[b_with_a_code.id] == 0
    assert redeemed[control.id] == 1
    assert summary.leaked == 1


def _csv(response, bom: bool) -> list[list[str]]:
    raw = response.data.decode("utf-8")
    assert raw.startswith("\ufeff") is bom
    return list(csv.reader(io.StringIO(raw.lstrip("\ufeff"))))


def test_venue_downloads_the_e_mail_tools_formats(session, launched, login_as, app):
    district, two_for_one, experiment = launched
    alpha = district.orgs[0]
    venue = login_as("venue", alpha)
    rows = services.contact_rows(session, experiment, alpha.id)

    mailchimp = venue.get(f"/experiments/{experiment.id}/contacts.csv?format=mailchimp&lang=fr")
    assert mailchimp.status_code == 200 and mailchimp.mimetype == "text/csv"
    assert "-mailchimp.csv" in mailchimp.headers["Content-Disposition"]
    lines = _csv(mailchimp, bom=False)
    assert lines[0] == [
        "Email Address",
        "First Name",
        "Last Name",
        "LANGUAGE",
        "PROMOCODE",
        "OFFER",
        "MESSAGE",
        "VALIDFROM",
        "VALIDUNTIL",
        "ARM",
        "UNSUBURL",
    ]  # English whatever the reader's language
    body = [dict(zip(lines[0], line)) for line in lines[1:]]
    assert len(body) == len(rows)
    by_email = {r.email: r for r in rows}
    for line in body:
        row = by_email[line["Email Address"]]
        assert line["ARM"] == row.arm and line["PROMOCODE"] == row.code
        promotion = district.promotion if row.arm == "A" else two_for_one
        assert line["MESSAGE"] == promotion.message(row.language) and line["OFFER"] == promotion.name(row.language)
        assert line["VALIDUNTIL"] == promotion.valid_until.isoformat()
        assert line["UNSUBURL"].startswith("http://localhost/experiments/unsubscribe/")
    assert {line["PROMOCODE"] for line in body if line["ARM"] == "B"} == {"DEUX-POUR-UN"}
    # every recipient's link is their own
    assert len({line["UNSUBURL"] for line in body}) == len(body)

    cyber = _csv(venue.get(f"/experiments/{experiment.id}/contacts.csv?format=cyberimpact"), bom=False)
    assert cyber[0] == [
        "email",
        "firstname",
        "lastname",
        "language",
        "promo_code",
        "offer",
        "message",
        "valid_from",
        "valid_until",
        "arm",
        "unsubscribe_url",
    ]
    assert len(cyber) - 1 == len(rows)
    assert {line[3] for line in cyber[1:]} == {f"{r.language}_ca" for r in rows}

    generic = _csv(venue.get(f"/experiments/{experiment.id}/contacts.csv?lang=en"), bom=True)
    assert generic[0][-1] == "Unsubscribe link" and generic[0][2] == "E-mail"
    assert {line[4] for line in generic[1:]} == {"A", "B"}

    unknown = venue.get(f"/experiments/{experiment.id}/contacts.csv?format=outlook&lang=en", follow_redirects=True)
    assert unknown.status_code == 200 and b"Unknown list format" in unknown.data
    downloads = session.scalars(select(AuditEvent).where(AuditEvent.action == "contact_list.download")).all()
    assert len(downloads) == 3


# --- unsubscribe links ---------------------------------------------------------------------------


def _token_of(app, recipient_id: int) -> str:
    with app.test_request_context():
        return unsubscribe.token_for(recipient_id)


def test_an_unsubscribe_link_records_the_opt_out_once(session, launched, app, client):
    district, _two_for_one, experiment = launched
    alpha = district.orgs[0]
    recipient = session.scalar(
        select(Recipient)
        .where(Recipient.experiment_id == experiment.id, Recipient.organisation_id == alpha.id, Recipient.arm == "B")
        .order_by(Recipient.id)
    )
    token = _token_of(app, recipient.id)
    url = f"/experiments/unsubscribe/{token}"
    page = client.get(url + "?lang=fr")
    assert page.status_code == 200 and "Me désabonner".encode() in page.data and alpha.name.encode() in page.data
    # opening the page changes nothing (mail filters open links)
    contact = session.scalar(
        select(Contact).where(Contact.organisation_id == alpha.id, Contact.spectator_id == recipient.spectator_id)
    )
    assert session.scalar(select(Spectator.opted_out_at).where(Spectator.id == recipient.spectator_id)) is None
    assert b'method="post"' in page.data  # CSRF is off in the tests (tests/test_hardening.py checks it)
    done = client.post(url + "?lang=en")
    assert done.status_code == 200 and b"You are unsubscribed." in done.data
    session.expire_all()
    consents = session.scalars(
        select(Consent).where(Consent.contact_id == contact.id, Consent.channel == "email")
    ).all()
    assert consents and all(c.withdrawn_at is not None for c in consents)
    first_at = session.scalar(select(Spectator.opted_out_at).where(Spectator.id == recipient.spectator_id))
    assert first_at is not None
    # the person leaves the venue's list
    assert recipient.id not in {r.recipient_id for r in services.contact_rows(session, experiment, alpha.id)}
    # again: the same page, nothing changes
    again = client.post(url + "?lang=fr")
    assert again.status_code == 200 and "Vous êtes désabonné".encode() in again.data
    session.expire_all()
    assert session.scalar(select(Spectator.opted_out_at).where(Spectator.id == recipient.spectator_id)) == first_at
    audits = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "unsubscribe.link").order_by(AuditEvent.id)
    ).all()
    assert [a.details["already"] for a in audits] == [False, True]
    assert audits[0].organisation_id == alpha.id
    # no personal data on the public page
    assert contact.email not in done.data.decode() and contact.email not in page.data.decode()


def test_bad_unsubscribe_links_get_a_clear_page(session, launched, app, client):
    district, _two_for_one, experiment = launched
    control = session.scalar(
        select(Recipient).where(Recipient.experiment_id == experiment.id, Recipient.arm == "control")
    )
    good = _token_of(app, control.id + 1)
    for token in (
        "nonsense",
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        _token_of(app, control.id),
        _token_of(app, 10**9),
        "x" * 500,
        "%00",
    ):
        for lang, words in (
            ("en", b"This unsubscribe link is not valid."),
            ("fr", "Ce lien de désabonnement n’est pas valide.".encode()),
        ):
            response = client.get(f"/experiments/unsubscribe/{token}?lang={lang}")
            assert response.status_code == 404 and words in response.data, (token, lang)
            assert client.post(f"/experiments/unsubscribe/{token}?lang={lang}").status_code in (400, 404)
    assert session.scalar(select(Spectator.id).where(Spectator.opted_out_at.is_not(None))) is None


# --- the report: each offer against the control, and A against B -------------------------------------


@pytest.fixture
def measured(session):
    set_k(session, 2)
    district, two_for_one = ab_campaign(session, per_org=60, shared=6, shares=(30, 35, 35))
    experiment = services.launch(session, district.campaign, now=district.now, seed=11)
    rng = np.random.default_rng(3)
    rates = {"control": 0.12, "A": 0.35, "B": 0.22}
    for r in session.scalars(select(Recipient).where(Recipient.experiment_id == experiment.id).order_by(Recipient.id)):
        if rng.random() < rates[r.arm]:
            code = r.code if r.arm == "A" else ("DEUX-POUR-UN" if r.arm == "B" else None)
            add_sale(
                session,
                r,
                experiment.launched_at + dt.timedelta(hours=int(rng.integers(1, 600))),
                int(rng.normal(6000, 2500)),
                code if rng.random() < 0.5 else None,
            )
    # matched once the window is over (a sale dated after "now" would not count yet)
    outcomes.match_outcomes(session, experiment, now=experiment.window_end)
    session.commit()
    return district, experiment


def _arm_values(session, experiment, arm: str, metric: str) -> np.ndarray:
    n = len(
        session.scalars(
            select(Recipient.id).where(Recipient.experiment_id == experiment.id, Recipient.arm == arm)
        ).all()
    )
    column = {"conversion": Outcome.converted, "revenue": Outcome.revenue_cents}[metric]
    values = [
        float(v)
        for v in session.scalars(select(column).where(Outcome.experiment_id == experiment.id, Outcome.arm == arm))
    ]
    values += [0.0] * (n - len(values))
    out = np.array(values)
    return out / 100.0 if metric == "revenue" else out


def test_report_compares_each_offer_with_control_and_a_with_b_as_statsmodels(session, measured):
    district, experiment = measured
    report = reports.build_report(session, experiment, now=experiment.window_end + dt.timedelta(days=1))
    # each offer against the control, Holm across the two arms
    primary = [c for c in report["comparisons"] if c["metric"] == "conversion"]
    assert [c["arm"] for c in primary] == ["A", "B"]
    ps = sorted(c["p_value"] for c in primary)
    assert min(c["p_adjusted_arms"] for c in primary) == pytest.approx(min(1.0, 2 * ps[0]))
    assert report["offers"]["B"]["name_en"] == "Two for one" and report["offers"]["A"]["offer_kind"] == "percent_off"
    # A against B
    pairs = {(p["arm"], p["versus"], p["metric"]): p for p in report["arm_pairs"]}
    assert set(pairs) == {("A", "B", "conversion"), ("A", "B", "revenue")}
    conv = pairs[("A", "B", "conversion")]
    y_a, y_b = (_arm_values(session, experiment, arm, "conversion") for arm in ("A", "B"))
    count = np.array([y_a.sum(), y_b.sum()])
    nobs = np.array([y_a.size, y_b.size])
    assert conv["test"] == "z-test"
    assert conv["abs_diff"] == pytest.approx(y_a.mean() - y_b.mean(), abs=1e-12)
    z, p = proportions_ztest(count, nobs)  # pooled standard error
    assert conv["statistic"] == pytest.approx(z, rel=1e-9) and conv["p_value"] == pytest.approx(p, rel=1e-9)
    score = sm_proportion.test_proportions_2indep(
        count[0], nobs[0], count[1], nobs[1], method="score", correction=False
    )
    assert conv["p_value"] == pytest.approx(score.pvalue, rel=1e-6)
    low, high = confint_proportions_2indep(count[0], nobs[0], count[1], nobs[1], method="wald", compare="diff")
    assert conv["abs_ci"] == pytest.approx([low, high], rel=1e-9)
    assert conv["p_adjusted"] == conv["p_value"]  # one pair
    # revenue: Welch, as the report reads it
    rev = pairs[("A", "B", "revenue")]
    r_a, r_b = (_arm_values(session, experiment, arm, "revenue") for arm in ("A", "B"))
    t, p_t, df = ttest_ind(r_a, r_b, usevar="unequal")
    assert rev["test"] == "welch" and rev["statistic"] == pytest.approx(t, rel=1e-9)
    assert rev["p_value"] == pytest.approx(p_t, rel=1e-9)
    ci = CompareMeans(DescrStatsW(r_a), DescrStatsW(r_b)).tconfint_diff(usevar="unequal")
    assert rev["abs_ci"] == pytest.approx(list(ci), rel=1e-9)


def test_report_page_shows_offer_against_offer_in_both_languages(session, measured, login_as):
    district, experiment = measured
    # the report stored at the end of the window (the sales are dated after the real "now")
    reports.refresh_report(session, experiment, now=experiment.window_end)
    session.commit()
    evaluator = login_as("evaluator")
    english = evaluator.get(f"/experiments/{experiment.id}?lang=en").data.decode()
    assert "Offer against offer" in english and "test arm A against test arm B" in english
    assert "p (Holm across arms)" in english and "Two for one" in english
    french = evaluator.get(f"/experiments/{experiment.id}?lang=fr").data.decode()
    assert "Offre contre offre" in french and "Deux pour un" in french
    # the report's keyed CSV holds the pairs too
    lines = list(
        csv.DictReader(io.StringIO(evaluator.get(f"/experiments/{experiment.id}/report.csv").data.decode("utf-8-sig")))
    )
    pairs = [line for line in lines if line["section"] == "arm_pair"]
    assert {(line["arm"], line["metric"]) for line in pairs} == {("A-B", "conversion"), ("A-B", "revenue")}


def test_pairs_hide_small_cells(session, measured):
    _district, experiment = measured
    set_k(session, 10**6)
    report = reports.build_report(session, experiment, now=experiment.window_end + dt.timedelta(days=1))
    assert report["arm_pairs"] and all(p.get("hidden") and p["p_value"] is None for p in report["arm_pairs"])
    assert all(p["n_arm"] is None for p in report["arm_pairs"])


# --- pilot analyze ------------------------------------------------------------------------------


def _write(path, rows) -> str:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arm", "bought", "spend"])
        writer.writerows(rows)
    return str(path)


def test_analyze_json_adds_arm_pairs_and_keeps_its_keys(tmp_path):
    rng = np.random.default_rng(9)
    rows = []
    for arm, rate in (("control", 0.1), ("A", 0.2), ("B", 0.15)):
        for _ in range(800):
            bought = int(rng.random() < rate)
            rows.append((arm, bought, round(bought * rng.gamma(2.0, 30.0), 2)))
    path = _write(tmp_path / "ab.csv", rows)
    two = analyze_file(
        _write(tmp_path / "a.csv", [r for r in rows if r[0] != "B"]),
        "arm",
        "control",
        ["bought:binary", "spend:continuous"],
    )
    three = analyze_file(path, "arm", "control", ["bought:binary", "spend:continuous"])
    assert "arm_pairs" not in two and set(three) - set(two) == {"arm_pairs"}
    assert set(three["comparisons"][0]) == set(two["comparisons"][0])
    (binary, continuous) = three["arm_pairs"]
    a = np.array([r[1] for r in rows if r[0] == "A"], dtype=float)
    b = np.array([r[1] for r in rows if r[0] == "B"], dtype=float)
    z, p = proportions_ztest([a.sum(), b.sum()], [a.size, b.size])
    assert binary["arm"] == "A" and binary["versus"] == "B" and binary["p_value"] == pytest.approx(p, rel=1e-9)
    sa = np.array([r[2] for r in rows if r[0] == "A"])
    sb = np.array([r[2] for r in rows if r[0] == "B"])
    assert continuous["p_value"] == pytest.approx(ttest_ind(sa, sb, usevar="unequal")[1], rel=1e-9)
    from experiments.analyze import format_report

    text = format_report(three)
    assert "Offer against offer" in text and "A vs B, bought:" in text
    # Holm over the three pairs of each metric when there are three test arms
    rows4 = rows + [("C", int(rng.random() < 0.3), 1.0) for _ in range(800)]
    four = analyze_file(_write(tmp_path / "abc.csv", rows4), "arm", "control", ["bought:binary"])
    pairs = four["arm_pairs"]
    assert [(p["arm"], p["versus"]) for p in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    smallest = min(pairs, key=lambda p: p["p_value"])
    assert smallest["p_adjusted"] == pytest.approx(min(1.0, 3 * smallest["p_value"]))


def test_compare_arm_pairs_reports_too_few(tmp_path):
    rows = arm_pairs.compare_arm_pairs(
        ["A", "B"], {"m": "binary"}, lambda arm, metric: np.array([1.0]) if arm == "A" else np.array([0.0, 1.0])
    )
    assert rows[0]["error"] == "too_few" and rows[0]["p_value"] is None


def test_links_point_at_the_public_url_when_set(app, session, launched):
    _district, _two, experiment = launched
    app.config["PUBLIC_URL"] = "https://pilote.example.org/"
    recipient_id = session.scalar(
        select(Recipient.id).where(Recipient.experiment_id == experiment.id, Recipient.arm == "A")
    )
    with app.test_request_context():
        link = unsubscribe.link_for(recipient_id, "en")
        parsed = urlparse(link)
        assert parsed.netloc == "pilote.example.org" and parsed.query == "lang=en"
        assert unsubscribe.recipient_of(parsed.path.rsplit("/", 1)[1]) == recipient_id


def test_venues_see_each_offer_they_are_asked_to_send(session, login_as):
    district, two_for_one = ab_campaign(session, per_org=5, shared=1)
    session.commit()
    alpha = district.orgs[0]
    approval = next(a for a in district.campaign.approvals if a.organisation_id == alpha.id)
    html = login_as("venue", alpha).get(f"/campaigns/approvals/{approval.id}?lang=en").data.decode()
    assert "Quartier Spring (test arm A)" in html and "Two for one (test arm B)" in html
    assert "Buy one ticket, get one free" in html and "DEUX-POUR-UN" in html


def test_pairs_are_always_valid_before_the_end_and_the_headline_reads_them_after(session, measured, app):
    from experiments import report_words

    _district, experiment = measured
    final = reports.build_report(session, experiment, now=experiment.window_end + dt.timedelta(days=1))
    interim = reports.build_report(session, experiment, now=experiment.launched_at + dt.timedelta(days=5))
    assert interim["interim"] and not final["interim"]
    for early, late in zip(interim["arm_pairs"], final["arm_pairs"]):
        assert early["interval"] == "always_valid" and "interval" not in late
        assert early["abs_diff"] == late["abs_diff"]
        # the confidence sequence is wider than the fixed-horizon interval, its p-value larger
        assert early["abs_ci"][0] < late["abs_ci"][0] and early["abs_ci"][1] > late["abs_ci"][1]
        assert early["p_value"] >= late["p_value"]
    with app.test_request_context("/?lang=en"):
        from flask import session as flask_session

        flask_session["lang"] = "en"
        sentences = report_words.headline_sentences(final)
        assert any(s.startswith("Test arm A against test arm B: conversion") for s in sentences)
        pair = next(p for p in final["arm_pairs"] if p["metric"] == "conversion")
        expected = (
            "first offer did better"
            if pair["p_adjusted"] < 0.05 and pair["abs_diff"] > 0
            else "do not tell the two offers apart"
            if pair["p_adjusted"] >= 0.05
            else "second offer"
        )
        assert any(expected in s for s in sentences)
        assert not [s for s in report_words.headline_sentences(interim) if "against test arm B" in s]
