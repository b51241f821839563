"""The campaigns pages: forms, the workflow by the web, venue isolation (404), no contact on a staff page."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import io
import re

import pytest
from sqlalchemy import select

from campaigns.models import Approval, Campaign, Exclusion, Promotion
from core.models import AuditEvent, Contact, Spectator, utcnow
from core.scheduler import run_job
from tests.campaigns.helpers import build_district


@pytest.fixture
def district(session):
    d = build_district(session, per_org=12, shared=4)
    session.commit()
    return d


@pytest.fixture
def clients(login_as, district):
    a, b, c = district.orgs
    return {
        "staff": login_as("staff"),
        "admin": login_as("admin"),
        "a": login_as("venue", a),
        "b": login_as("venue", b),
        "c": login_as("venue", c),
    }


def page(client, url, status=200, **kwargs):
    response = client.get(url, **kwargs)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:800])
    return response.get_data(as_text=True)


def post(client, url, data=None, status=302, **kwargs):
    response = client.post(url, data=data or {}, **kwargs)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:1500])
    return response


def no_personal_data(html: str, district) -> None:
    leaked = [value for value in district.personal if value in html]
    assert not leaked, f"contact fields on a staff page: {leaked[:5]}"


def refresh(session, obj):
    session.expire_all()
    return session.get(type(obj), obj.id)


def submit(clients, district):
    post(clients["staff"], f"/campaigns/{district.campaign.id}/submit", {"confirm": "y"})


def approval_of(session, district, org_index) -> Approval:
    session.expire_all()
    return session.scalar(
        select(Approval).where(
            Approval.campaign_id == district.campaign.id, Approval.organisation_id == district.orgs[org_index].id
        )
    )


def test_staff_creates_a_promotion_and_a_campaign(clients, district, session):
    staff = clients["staff"]
    today = utcnow().date()
    form = {
        "name_fr": "Deux pour un",
        "name_en": "Two for one",
        "message_fr": "Venez à deux",
        "message_en": "Come as two",
        "offer_kind": "percent_off",
        "offer_value": "150",
        "organisations": [str(district.orgs[0].id), str(district.orgs[1].id)],
        "disciplines": ["dance"],
        "valid_from": today.isoformat(),
        "valid_until": (today + dt.timedelta(days=60)).isoformat(),
        "code_strategy": "unique",
        "average_discount": "12.50",
        "cost_per_contact": "0.04",
    }
    html = post(staff, "/campaigns/promotions/new?lang=en", form, status=200).get_data(as_text=True)
    assert "A percentage off takes a whole number from 1 to 100." in html
    form["offer_value"] = "25"
    response = post(staff, "/campaigns/promotions/new", form)
    promotion = session.scalar(select(Promotion).where(Promotion.name_en == "Two for one"))
    assert response.headers["Location"].endswith(f"/campaigns/promotions/{promotion.id}")
    assert promotion.average_discount_cents == 1250 and promotion.cost_per_contact_cents == 4
    assert promotion.offer_value == 25 and promotion.discipline_list == ["dance"]
    assert "Deux pour un" in page(staff, f"/campaigns/promotions/{promotion.id}")

    deadline = (utcnow() + dt.timedelta(days=5)).strftime("%Y-%m-%dT%H:%M")
    launch = (utcnow() + dt.timedelta(days=9)).strftime("%Y-%m-%dT%H:%M")
    form = {
        "name": "Danse printemps",
        "objective": "cross_sell",
        "segment": str(district.segment.id),
        "promotion": str(promotion.id),
        "control_share": "5",
        "arm_a_share": "95",
        "window_days": "30",
        "primary_metric": "conversion",
        "secondary_metrics": ["revenue", "redemption"],
        "approval_deadline": deadline,
        "planned_launch_at": launch,
    }
    html = post(staff, "/campaigns/new?lang=en", form, status=200).get_data(as_text=True)
    assert "The control group takes 10% to 90% of the recipients." in html
    form.update(control_share="20", arm_a_share="70")
    html = post(staff, "/campaigns/new?lang=en", form, status=200).get_data(as_text=True)
    assert "must add up to 100%" in html
    form.update(arm_a_share="80", planned_launch_at=deadline)
    html = post(staff, "/campaigns/new?lang=en", form, status=200).get_data(as_text=True)
    assert "The planned launch must come after the approval deadline." in html
    form.update(planned_launch_at=launch)
    post(staff, "/campaigns/new", form)
    campaign = session.scalar(select(Campaign).where(Campaign.name == "Danse printemps"))
    assert campaign.status == "draft" and campaign.arms == [
        {"name": "control", "share": 20},
        {"name": "A", "share": 80},
    ]
    assert campaign.secondary_metrics == ["revenue", "redemption"]
    form.update(name="Danse printemps 2", arm_a_share="40", arm_b_share="40")
    post(staff, f"/campaigns/{campaign.id}/edit", form)
    assert [a["share"] for a in refresh(session, campaign).arms] == [20, 40, 40]
    assert "Danse printemps 2" in page(staff, "/campaigns/")


def test_from_draft_to_ready_on_the_web(clients, district, session):
    staff = clients["staff"]
    cid = district.campaign.id
    html = post(staff, f"/campaigns/{cid}/submit?lang=en", {}, status=200).get_data(as_text=True)
    assert "Tick the box to confirm." in html and refresh(session, district.campaign).status == "draft"
    submit(clients, district)
    assert refresh(session, district.campaign).status == "awaiting_approvals"
    # a venue sees the request on its dashboard and in its list
    assert "Campagne printemps" in page(clients["a"], "/")
    assert "Campagne printemps" in page(clients["a"], "/campaigns/")
    too_early = post(staff, f"/campaigns/{cid}/ready?lang=en", {"confirm": "y"}).headers["Location"]
    assert "3 organisations have not answered yet" in page(staff, too_early)
    a, b, c = (approval_of(session, district, i) for i in range(3))
    post(
        clients["a"],
        f"/campaigns/approvals/{a.id}/decision",
        {"decision": "approve", "exclude_subscribers": "y", "exclude_contacted": "y", "contacted_days": "45"},
    )
    csv_file = (io.BytesIO("Courriel\npersonne12@xexemple.qc.ca\nPERSONNE13@xexemple.qc.ca\n".encode()), "liste.csv")
    post(
        clients["b"],
        f"/campaigns/approvals/{b.id}/exclusions",
        {"kind": "email", "file": csv_file},
        content_type="multipart/form-data",
    )
    post(clients["b"], f"/campaigns/approvals/{b.id}/decision", {"decision": "approve"})
    post(clients["c"], f"/campaigns/approvals/{c.id}/decision", {"decision": "decline", "decline_reason": "timing"})
    a, b, c = (approval_of(session, district, i) for i in range(3))
    assert (a.status, a.exclude_subscribers, a.exclude_contacted_days) == ("approved", True, 45)
    assert (b.status, b.exclusion_list_rows, b.exclusion_list_matched) == ("approved", 2, 2)  # the header is no address
    assert c.status == "declined"
    assert "Campagne printemps" not in page(clients["a"], "/")  # answered: no longer pending
    post(staff, f"/campaigns/{cid}/ready", {"confirm": "y"})
    assert refresh(session, district.campaign).status == "ready"
    html = page(staff, f"/campaigns/{cid}?lang=en")
    assert "Eligibility funnel" in html and "Ready to launch" in html
    assert 'class="suppressed"' in html  # b lost 2 people to its list: that small drop is hidden
    no_personal_data(html, district)
    actions = set(session.scalars(select(AuditEvent.action)))
    assert {
        "campaign.submit",
        "approval.approve",
        "approval.decline",
        "approval.exclusion_list",
        "campaign.ready",
    } <= actions


def test_refusals_are_explained(clients, district, session):
    staff = clients["staff"]
    cid = district.campaign.id
    campaign = session.get(Campaign, cid)
    campaign.approval_deadline = utcnow() - dt.timedelta(hours=1)
    campaign.planned_launch_at = utcnow() + dt.timedelta(days=1)
    session.commit()
    location = post(staff, f"/campaigns/{cid}/submit?lang=en", {"confirm": "y"}).headers["Location"]
    assert "Submission refused: The approval deadline has already passed" in page(staff, location)
    html = post(staff, f"/campaigns/{cid}/cancel?lang=en", {"confirm": "y", "reason": ""}, status=200).get_data(
        as_text=True
    )
    assert "This field is required." in html
    post(staff, f"/campaigns/{cid}/cancel", {"confirm": "y", "reason": "Reportée à l'automne"})
    assert refresh(session, campaign).status == "cancelled"
    location = post(staff, f"/campaigns/{cid}/cancel?lang=en", {"confirm": "y", "reason": "encore"}).headers["Location"]
    assert "can no longer be cancelled" in page(staff, location)
    location = post(staff, f"/campaigns/{cid}/edit?lang=en", {}).headers["Location"]
    assert "Only a draft campaign can be changed." in page(staff, location)


def test_a_venue_cannot_reach_another_organisations_request(clients, district, session):
    submit(clients, district)
    b = approval_of(session, district, 1)
    venue_a = clients["a"]
    for url in (
        f"/campaigns/approvals/{b.id}",
        f"/campaigns/approvals/{b.id}/contacts",
        f"/campaigns/approvals/{b.id}/contacts?page=2",
        "/campaigns/approvals/999999",
    ):
        page(venue_a, url, status=404)
    for url, data in (
        (f"/campaigns/approvals/{b.id}/decision", {"decision": "decline"}),
        (f"/campaigns/approvals/{b.id}/exclusions", {"kind": "email"}),
        (f"/campaigns/approvals/{b.id}/exclusions/clear", {}),
    ):
        post(venue_a, url, data, status=404)
    assert approval_of(session, district, 1).status == "pending"
    html = page(venue_a, "/campaigns/")
    assert f"/campaigns/approvals/{b.id}" not in html
    # staff pages are not a venue's, and approval pages are not staff's
    cid = district.campaign.id
    for url in (
        f"/campaigns/{cid}",
        "/campaigns/promotions",
        "/campaigns/new",
        f"/campaigns/{cid}/submit",
        "/campaigns/admin/erasure",
    ):
        page(venue_a, url, status=403)
    for role in ("staff", "admin"):
        page(clients[role], f"/campaigns/approvals/{b.id}", status=403)
        page(clients[role], f"/campaigns/approvals/{b.id}/contacts", status=403)


def test_a_venue_sees_its_own_contacts_only(clients, district, session):
    submit(clients, district)
    a = approval_of(session, district, 0)
    html = page(clients["a"], f"/campaigns/approvals/{a.id}/contacts")
    own = session.scalars(select(Contact).where(Contact.organisation_id == district.orgs[0].id)).all()
    assert all(c.email in html and c.last_name in html for c in own)
    others = session.scalars(select(Contact).where(Contact.organisation_id != district.orgs[0].id)).all()
    assert not [c.last_name for c in others if c.last_name in html]
    html = page(clients["a"], f"/campaigns/approvals/{a.id}")
    assert "16" in html  # its spectators in the segment, exact for its own organisation
    assert not [c.last_name for c in others if c.last_name in html]


def test_staff_never_see_a_contact_field(clients, district, session):
    staff, admin = clients["staff"], clients["admin"]
    cid = district.campaign.id
    pid = district.promotion.id

    def staff_pages():
        urls = [
            "/",
            "/campaigns/",
            "/campaigns/promotions",
            f"/campaigns/promotions/{pid}",
            f"/campaigns/promotions/{pid}/edit",
            "/campaigns/new",
            f"/campaigns/{cid}",
            f"/campaigns/{cid}/submit",
            f"/campaigns/{cid}/ready",
            f"/campaigns/{cid}/cancel",
        ]
        if refresh(session, district.campaign).status == "draft":
            urls.append(f"/campaigns/{cid}/edit")
        for client in (staff, admin):
            for url in urls:
                for lang in ("fr", "en"):
                    no_personal_data(page(client, f"{url}?lang={lang}"), district)
        no_personal_data(page(admin, "/campaigns/admin/erasure"), district)

    staff_pages()
    submit(clients, district)
    staff_pages()
    a, b, c = (approval_of(session, district, i) for i in range(3))
    post(clients["a"], f"/campaigns/approvals/{a.id}/decision", {"decision": "approve", "exclude_subscribers": "y"})
    csv_file = (io.BytesIO(b"C1-12\nC1-13\nC1-14\n"), "ids.txt")
    post(
        clients["b"],
        f"/campaigns/approvals/{b.id}/exclusions",
        {"kind": "customer_id", "file": csv_file},
        content_type="multipart/form-data",
    )
    post(clients["b"], f"/campaigns/approvals/{b.id}/decision", {"decision": "approve"})
    staff_pages()
    post(clients["c"], f"/campaigns/approvals/{c.id}/decision", {"decision": "decline", "decline_reason": "timing"})
    post(staff, f"/campaigns/{cid}/ready", {"confirm": "y"})
    staff_pages()
    # the erasure page shows counts, never the address looked up
    email = district.contacts[(0, district.spectators[0].id)].email
    html = post(admin, "/campaigns/admin/erasure", {"email": email}, status=200).get_data(as_text=True)
    assert "1 contact" in html or "1 fiche" in html
    no_personal_data(html, district)


def test_erasure_page(clients, district, session):
    admin = clients["admin"]
    page(clients["staff"], "/campaigns/admin/erasure", status=403)
    assert "/campaigns/admin/erasure" in page(admin, "/admin/organisations")  # linked from the admin menu
    shared = district.spectators[-1]
    email = district.contacts[(0, shared.id)].email
    html = post(admin, "/campaigns/admin/erasure?lang=en", {"email": email.upper()}, status=200).get_data(as_text=True)
    assert "3 contact records at 3 organisations will be deleted." in html
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', html).group(1)
    location = post(admin, "/campaigns/admin/erasure/confirm?lang=en", {"token": token}).headers["Location"]
    assert "Tick the box to confirm the erasure." in page(admin, location)
    assert session.scalar(select(Contact.id).where(Contact.spectator_id == shared.id).limit(1)) is not None
    post(admin, "/campaigns/admin/erasure/confirm", {"token": token, "confirm": "y"})
    session.expire_all()
    assert session.scalar(select(Contact.id).where(Contact.spectator_id == shared.id).limit(1)) is None
    assert session.get(Spectator, shared.id).opted_out_at is not None
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "person.erase"))
    assert event.object_id == str(shared.id) and email not in str(event.details)
    post(admin, "/campaigns/admin/erasure/confirm", {"token": token + "x", "confirm": "y"})
    html = post(admin, "/campaigns/admin/erasure?lang=en", {"email": "personne@nulle.part"}, status=200).get_data(
        as_text=True
    )
    assert "nothing to erase" in html


def test_venue_approval_page_and_exclusion_list(clients, district, session):
    submit(clients, district)
    a = approval_of(session, district, 0)
    venue = clients["a"]
    html = page(venue, f"/campaigns/approvals/{a.id}?lang=en")
    assert "Quartier Spring" in html and "20% off" in html and "Life-cycle stages" in html
    html = post(
        venue,
        f"/campaigns/approvals/{a.id}/decision?lang=en",
        {"exclude_contacted": "y", "contacted_days": ""},
        status=400,
    ).get_data(as_text=True)
    assert "Choose approve or decline." in html
    csv_file = (io.BytesIO("C0-0;Dupont\nC0-1;Tremblay\nC9-9;Inconnu\n".encode("cp1252")), "ids.csv")
    location = post(
        venue,
        f"/campaigns/approvals/{a.id}/exclusions?lang=en",
        {"kind": "customer_id", "file": csv_file},
        content_type="multipart/form-data",
    ).headers["Location"]
    assert "3 lines read, 2 of your spectators excluded" in page(venue, location)
    assert len(session.scalars(select(Exclusion)).all()) == 2
    html = page(venue, f"/campaigns/approvals/{a.id}/contacts?lang=en")
    assert html.count(">yes<") == 2
    post(venue, f"/campaigns/approvals/{a.id}/exclusions/clear", {"clear": "1"})
    assert not session.scalars(select(Exclusion)).all()
    post(venue, f"/campaigns/approvals/{a.id}/decision", {"decision": "approve"})
    campaign = session.get(Campaign, district.campaign.id)
    campaign.approval_deadline = utcnow() - dt.timedelta(minutes=1)
    session.commit()
    html = page(venue, f"/campaigns/approvals/{a.id}?lang=en")
    assert "Answers are closed for this campaign." in html and 'name="decision"' not in html
    location = post(
        venue, f"/campaigns/approvals/{a.id}/decision?lang=en", {"decision": "decline", "decline_reason": "timing"}
    ).headers["Location"]
    assert "The approval deadline has passed" in page(venue, location)


def test_dashboard_panels(clients, district, session):
    assert "Campaigns in approval" not in page(clients["staff"], "/?lang=en")
    submit(clients, district)
    html = page(clients["staff"], "/?lang=en")
    assert "Campaigns in approval" in html and "Campagne printemps" in html
    assert "Campaigns awaiting your approval" in page(clients["b"], "/?lang=en")
    assert "Campaigns awaiting your approval" not in page(clients["admin"], "/?lang=en")
    a = approval_of(session, district, 0)
    post(clients["a"], f"/campaigns/approvals/{a.id}/decision", {"decision": "decline", "decline_reason": "timing"})
    assert "Campaigns awaiting your approval" not in page(clients["a"], "/?lang=en")


def test_marking_ready_early_lists_the_unanswered_and_counts_them_as_declined(clients, district, session):
    staff = clients["staff"]
    cid = district.campaign.id
    submit(clients, district)
    a, b, c = (approval_of(session, district, i) for i in range(3))
    post(clients["a"], f"/campaigns/approvals/{a.id}/decision", {"decision": "approve"})
    html = page(staff, f"/campaigns/{cid}/ready?lang=en")
    assert "2 organisations have not answered yet" in html and "they count as declined" in html
    listed = re.search(r'<div[^>]*id="unanswered".*?</div>', html, re.S).group(0)
    assert "Théâtre Beta" in listed and "Festival Gamma" in listed and "Salle Alpha" not in listed
    assert re.search(r'name="unanswered" type="hidden" value="2"', html)
    post(clients["b"], f"/campaigns/approvals/{b.id}/decision", {"decision": "approve"})
    html = page(staff, f"/campaigns/{cid}/ready?lang=fr")
    assert "1 organisation n'a pas encore répondu" in html.replace("&#39;", "'")
    assert "Festival Gamma" in html and "Théâtre Beta" not in html
    # without the box ticked nothing happens; with it, the one left counts as declined
    post(staff, f"/campaigns/{cid}/ready?lang=fr", {"unanswered": "1"}, status=200)
    assert refresh(session, district.campaign).status == "awaiting_approvals"
    location = post(staff, f"/campaigns/{cid}/ready?lang=fr", {"confirm": "y", "unanswered": "1"}).headers["Location"]
    assert "1 organisation qui n'avait pas répondu compte comme un refus" in page(staff, location).replace("&#39;", "'")
    assert refresh(session, district.campaign).status == "ready"
    assert approval_of(session, district, 2).status == "expired"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "campaign.ready"))
    assert event.details["unanswered_declined"] == 1 and event.details["before_deadline"] is True
    html = page(staff, f"/campaigns/{cid}?lang=en")
    assert "No answer (counted as declined)" in html
    assert "have not answered" not in page(staff, f"/campaigns/{cid}/ready?lang=en")  # nothing left to list


def _exclusions_and_a_decline(clients, district, session):
    """The funnel of test_eligibility: 40 in the segment and with consent, 28 approved, 25 eligible
    (b's list strikes 3 of its own people; c declines)."""
    submit(clients, district)
    a, b, c = (approval_of(session, district, i) for i in range(3))
    post(clients["a"], f"/campaigns/approvals/{a.id}/decision", {"decision": "approve"})
    emails = "\n".join(district.contacts[(1, s.id)].email for s in district.spectators[12:15])
    post(
        clients["b"],
        f"/campaigns/approvals/{b.id}/exclusions",
        {"kind": "email", "file": (io.BytesIO(emails.encode()), "liste.csv")},
        content_type="multipart/form-data",
    )
    post(clients["b"], f"/campaigns/approvals/{b.id}/decision", {"decision": "approve"})
    post(clients["c"], f"/campaigns/approvals/{c.id}/decision", {"decision": "decline", "decline_reason": "timing"})
    return b


def cells(html: str, part: str) -> list[str]:
    """The figures of the funnel's rows (``tbody``) or total (``tfoot``), tags stripped."""
    funnel = (
        html[html.index("Eligibility funnel") :] if "Eligibility funnel" in html else html[html.index("Entonnoir") :]
    )
    block = re.search(rf"<{part}>(.*?)</{part}>", funnel, re.S).group(1)
    return [
        html_lib.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
        for cell in re.findall(r'<td class="num">(.*?)</td>', block, re.S)
    ]


def test_funnel_shows_staff_noisy_figures_the_same_for_the_same_set(clients, district, session):
    """Staff own none of the funnel: each count is its set's noisy figure (core.privacy), never the
    exact count that differencing would use; the same question reads the same everywhere."""
    _exclusions_and_a_decline(clients, district, session)
    staff = clients["staff"]
    url = f"/campaigns/{district.campaign.id}?lang=en"
    html = page(staff, url)
    total = cells(html, "tfoot")
    rows = cells(html, "tbody")  # Festival Gamma, Salle Alpha, Théâtre Beta (by name), five stages each
    gamma, alpha, beta = rows[:5], rows[5:10], rows[10:]
    exact_total, exact_beta = ["40", "40", "28", "25", "25"], ["16", "16", "16", "13", "9"]
    assert total != exact_total and beta != exact_beta, "noisy figures, not the exact counts"
    again = page(staff, url)
    assert (cells(again, "tfoot"), cells(again, "tbody")) == (total, rows), "asking again gives the same figures"
    # the same set, the same figure: approved is consent's set for an approving organisation, the
    # total eligible is the total after exclusions (one sender each), the segment is the snapshot
    assert alpha[2] == alpha[1] and beta[2] == beta[1] and gamma[2:] == ["0", "0", "0"]
    assert total[3] == total[4]
    assert re.search(
        rf"as of [0-9-]+, {re.escape(total[0])} spectators", html_lib.unescape(re.sub(r"<[^>]+>", "", html))
    )
    # a small set is "fewer than k" whatever its noise: b's 9 eligible are under k = 10 (or noisy above)
    for figure in total + rows:
        assert figure in ("<k", "hidden") or int(figure.replace(",", "")) >= 10 or figure == "0"
    # the reader is told why a later step may read above an earlier one, in both languages
    assert "a step may therefore read a few people above the step before it" in html
    french = html_lib.unescape(page(staff, f"/campaigns/{district.campaign.id}?lang=fr"))
    assert "une étape peut donc afficher quelques personnes de plus que l'étape précédente" in french


def test_approval_page_shows_own_stages_exact_and_pooled_ones_noisy(clients, district, session):
    """A venue's own contacts, consent and exclusions are exact; who is sent through it (decided by
    other organisations' sales) and the life-cycle stages (from every organisation's sales) are
    noisy figures, the sender count the same as on the staff's funnel."""
    from campaigns import services as campaign_services
    from campaigns.funnel import funnel

    _exclusions_and_a_decline(clients, district, session)
    a = approval_of(session, district, 0)
    html = page(clients["a"], f"/campaigns/approvals/{a.id}?lang=en")
    figures = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html))
    raw = funnel(session, district.campaign).row(district.orgs[0].id)
    assert figures["In the segment"] == str(raw.segment) and figures["With consent at launch"] == str(raw.consent)
    assert figures["After your exclusions"] == str(raw.after_exclusions)
    sent = html_lib.unescape(re.sub(r"<[^>]+>", "", figures["Sent through you"])).strip()
    staff = cells(page(clients["staff"], f"/campaigns/{district.campaign.id}?lang=en"), "tbody")
    assert staff[5:10][4] == sent  # Salle Alpha's row on the staff's funnel: the same figure
    exact = {
        stage: cell.count
        for stage, cell in campaign_services.lifecycle_mix(session, district.campaign, district.orgs[0].id).items()
    }
    table = html[html.index("Life-cycle stages") :]
    shown = [
        html_lib.unescape(re.sub(r"<[^>]+>", "", v)).strip()
        for v in re.findall(r'<td class="num">(.*?)</td>', table.split("<tfoot>")[0], re.S)
    ]
    assert len(shown) >= len(exact) and sorted(shown) != sorted(str(v) for v in exact.values())
    assert all(v in ("<k", "hidden") or int(v.replace(",", "")) >= 10 for v in shown), "0 is small like 1"


def test_power_page_sizes_come_from_the_protected_eligible_count(app, clients, district, session, login_as):
    b = _exclusions_and_a_decline(clients, district, session)
    staff = clients["staff"]
    cid = district.campaign.id
    run_job(app, "campaigns.funnels", runner="cli")  # the funnel of the answers, as within a minute

    def sizes():
        html = page(staff, f"/experiments/campaign/{cid}/power?lang=en")
        planned = re.search(r"Planned sizes: (.*?)\.</p>", html, re.S)
        return re.search(r"Sizes</th><td>(.*?)</td>", html, re.S).group(1), planned.group(1) if planned else None

    def funnel_eligible():
        return cells(page(staff, f"/campaigns/{cid}?lang=en"), "tfoot")[4]

    for _round in range(2):
        size, planned = sizes()
        shown = funnel_eligible()
        if shown in ("<k", "hidden"):
            assert "hidden" in size
            continue
        # the power page reads the same noisy figure as the funnel, never the exact eligible count
        assert size.startswith(f"{shown} ·")
        n = int(shown)
        assert planned is None or planned == f"{int(n * 0.8)} in the test arm, {int(n * 0.2)} in the control group"
        # without b's list nobody is excluded: 28 eligible, another set, another figure
        post(clients["b"], f"/campaigns/approvals/{b.id}/exclusions/clear", {"clear": "1"})
        run_job(app, "campaigns.funnels", runner="cli")


def test_numbers_and_percentages_follow_the_language(app, clients, district, session):
    from flask import render_template_string

    macro = (
        '{% from "_macros.html" import count, percent %}'
        "{{ count(4545) }}|{{ count(1234567) }}|{{ percent(0.2, 0) }}|{{ percent(0.205) }}"
    )
    with app.test_request_context("/?lang=en"):
        assert render_template_string(macro) == "4,545|1,234,567|20%|20.5%"
    with app.test_request_context("/?lang=fr"):
        assert render_template_string(macro) == "4\u202f545|1\u202f234\u202f567|20\u00a0%|20,5\u00a0%"
    staff = clients["staff"]
    arms = re.search(r"Arms</th><td>(.*?)</td>", page(staff, f"/campaigns/{district.campaign.id}?lang=en")).group(1)
    assert arms == "control 20% · test A 80%"
    arms = re.search(r"Groupes</th><td>(.*?)</td>", page(staff, f"/campaigns/{district.campaign.id}?lang=fr"))
    assert arms is None or "20\u00a0%" in arms.group(1)
    submit(clients, district)
    a = approval_of(session, district, 0)
    html = page(clients["a"], f"/campaigns/approvals/{a.id}?lang=en")
    assert "20% of the recipients receive nothing" in html and "20% off" in html
    html = page(clients["a"], f"/campaigns/approvals/{a.id}?lang=fr")
    assert "20\u00a0% des destinataires ne reçoivent rien" in html and "20\u00a0% de rabais" in html


def test_exclusion_list_counts_agree_in_number(clients, district, session):
    submit(clients, district)
    a = approval_of(session, district, 0)
    venue = clients["a"]
    url = f"/campaigns/approvals/{a.id}"

    def upload(ids):
        data = {"kind": "customer_id", "file": (io.BytesIO("\n".join(ids).encode()), "ids.txt")}
        location = post(venue, f"{url}/exclusions?lang=fr", data, content_type="multipart/form-data").headers[
            "Location"
        ]
        return page(venue, location).replace("&#39;", "'")

    html = upload(["C0-0"])
    assert "Liste d'exclusion enregistrée : 1 ligne lue, 1 de vos spectateurs exclu." in html
    assert "Liste actuelle : 1 ligne, 1 de vos spectateurs exclu." in html
    html = upload(["C0-0", "C0-1"])
    assert "Liste d'exclusion enregistrée : 2 lignes lues, 2 de vos spectateurs exclus." in html
    assert "Liste actuelle : 2 lignes, 2 de vos spectateurs exclus." in html
    location = post(
        venue,
        f"{url}/exclusions?lang=en",
        {"kind": "customer_id", "file": (io.BytesIO(b"C0-0"), "i.txt")},
        content_type="multipart/form-data",
    ).headers["Location"]
    assert "Exclusion list saved: 1 line read, 1 of your spectators excluded." in page(venue, location)
