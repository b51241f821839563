"""The figures kept ready for pages: the dashboard's headline (core.headline), the campaigns' funnels (campaigns.funnel_store)."""

from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import func, select

import campaigns.approvals
import campaigns.funnel
import campaigns.funnel_store
import core.headline
from campaigns.models import Approval, Campaign
from core.cache import clear, remember
from core.models import Organisation, Show, Spectator, Transaction, utcnow
from core.privacy import fill_cell_keys
from core.scheduler import run_job
from tests.campaigns.helpers import build_district, new_purchase, new_spectator
from tests.test_attacks import _upload_one_row


def counting(monkeypatch, module, name: str) -> list:
    """Wrap ``module.name`` so that each call is recorded; returns the list of calls."""
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_remember_keeps_values_per_key_and_lifetime():
    app = Flask(__name__)
    with app.app_context():
        made = []

        def make(value):
            made.append(value)
            return value

        assert remember("n", 1, lambda: make("a"), 60) == "a"
        assert remember("n", 1, lambda: make("b"), 60) == "a"  # a hit
        assert remember("n", 2, lambda: make("c"), 60) == "c"  # another key
        assert remember("n", 3, lambda: make("d"), 0) == "d" and remember("n", 3, lambda: make("e"), 0) == "e"
        clear("n")
        assert remember("n", 1, lambda: make("f"), 60) == "f"
        assert made == ["a", "c", "d", "e", "f"]


def spectators_shown(html: str) -> int:
    figures = re.search(r"<dt>Spectators</dt><dd>([^<]+)</dd>", html).group(1)
    return int(re.sub(r"\D", "", figures))


def test_dashboard_figures_are_kept_and_brought_up_to_date_by_the_job(app, session, login_as, monkeypatch):
    # A tiny σ: the noisy figures are the exact ones (the noise is tested in tests/core/test_privacy.py).
    app.config["PRIVACY_SIGMA"] = 1e-6
    district = build_district(session, per_org=12, shared=4, with_campaign=False)
    session.commit()
    calls = counting(monkeypatch, core.headline, "compute_facts")
    staff = login_as("staff")
    first = staff.get("/?lang=en").get_data(as_text=True)
    assert spectators_shown(first) == 40 and "Counted on" in first
    assert staff.get("/?lang=en").status_code == 200 and login_as("admin").get("/").status_code == 200
    assert len(calls) == 1  # never kept: the first page computed and kept them; every page after reads them
    organisations = session.scalar(select(func.count(Organisation.id)))
    assert run_job(app, "headline.publish", runner="cli").summary["published"] == organisations  # each one's own
    # an import (of a new person): the pages show the kept facts, with the new epoch's noise, until the
    # job counts again (the district's and the importing organisation's only); no request counts
    _upload_one_row(staff, district.orgs[0].id, "nouvelle@exemple.qc.ca", 1)
    assert spectators_shown(staff.get("/?lang=en").get_data(as_text=True)) == 40
    assert len(calls) == 1 + organisations
    run = run_job(app, "headline.publish", runner="cli")
    assert run.status == "success" and run.summary["published"] == 2
    assert spectators_shown(staff.get("/?lang=en").get_data(as_text=True)) == 41
    assert run_job(app, "headline.publish", runner="cli").summary["published"] == 0  # nothing moved since
    # the venue reads its own exact figures, kept by the same job
    venue = login_as("venue", district.orgs[0])
    own = re.search(
        r"My organisation</h2>.*?<dt>Spectators</dt><dd>([^<]+)</dd>",
        venue.get("/?lang=en").get_data(as_text=True),
        re.S,
    )
    assert (
        int(re.sub(r"\D", "", own.group(1))) == core.headline.compute_facts(session, district.orgs[0].id)["spectators"]
    )


def reference_facts(session, organisation_id=None) -> dict:
    """The headline facts counted in Python from the rows (the reference for core.headline)."""
    rows = session.execute(
        select(
            Transaction.spectator_id, Transaction.tickets, Transaction.amount_cents, Show.discipline, Spectator.cell_key
        )
        .outerjoin(Show, Show.id == Transaction.show_id)
        .outerjoin(Spectator, Spectator.id == Transaction.spectator_id)
        .where(True if organisation_id is None else Transaction.organisation_id == organisation_id)
    ).all()
    keys = {r.spectator_id: r.cell_key for r in rows if r.spectator_id is not None}
    by_discipline: dict[str, set] = {}
    for r in rows:
        if r.discipline is not None and r.spectator_id is not None:
            by_discipline.setdefault(r.discipline, set()).add(r.spectator_id)
    facts = {
        "spectators": len(keys),
        "transactions": len(rows),
        "tickets": sum(r.tickets or 0 for r in rows),
        "revenue_cents": sum(r.amount_cents or 0 for r in rows),
        "disciplines": {d: len(people) for d, people in by_discipline.items()},
    }
    if organisation_id is None:
        facts["cell"] = [len(keys), sum(keys.values())]
        facts["discipline_cells"] = {d: [len(p), sum(keys[i] for i in p)] for d, p in by_discipline.items()}
    return facts


def test_kept_headline_facts_equal_a_count_of_the_raw_rows(app, session):
    district = build_district(session, per_org=12, shared=4, with_campaign=False)
    for i, organisation in enumerate(district.orgs):
        show = Show(
            organisation_id=organisation.id,
            natural_key=f"show-{i}",
            title=f"Spectacle {i}",
            discipline=("theatre", "music")[i % 2],
            starts_at=utcnow(),
        )
        session.add(show)
        session.flush()
        for n in range(3):
            spectator = new_spectator(session, f"s{i}-{n}@exemple.qc.ca")
            new_purchase(session, organisation, spectator, utcnow()).show_id = show.id
        new_purchase(session, organisation, district.spectators[-1], utcnow()).show_id = show.id
    fill_cell_keys(session, app.config["DISTRICT_SECRET"])
    session.commit()
    for organisation_id in (None, district.orgs[0].id, district.orgs[1].id):
        kept = core.headline.keep_facts(session, organisation_id)
        assert {k: v for k, v in kept.items() if k not in ("imports", "computed_at", "seconds")} == reference_facts(
            session, organisation_id
        )
    assert (
        core.headline.compute_facts(session)["spectators"] > 40 and core.headline.compute_facts(session)["disciplines"]
    )


def funnel_row(page: str, heading: str) -> list[str]:
    """The cells after ``heading`` in the campaign page's funnel table, their tags stripped."""
    table = page[page.index("<caption>Spectators at each step") :]
    row = re.search(r"<th scope=\"row\">" + re.escape(heading) + r"</th>(.*?)</tr>", table, re.S)
    assert row is not None, heading
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


def test_the_funnel_is_kept_until_the_campaign_changes_and_the_job_counts_it_after_the_data(
    app, session, login_as, monkeypatch
):
    district = build_district(session, per_org=12, shared=4)
    session.commit()
    staff = login_as("staff")
    assert staff.post(f"/campaigns/{district.campaign.id}/submit", data={"confirm": "y"}).status_code == 302
    venue = login_as("venue", district.orgs[0])
    approval = session.scalar(select(Approval).where(Approval.organisation_id == district.orgs[0].id))
    calls = counting(monkeypatch, campaigns.funnel_store, "funnel")
    url = f"/campaigns/approvals/{approval.id}?lang=en"
    assert venue.get(url).status_code == 200 and venue.get(url).status_code == 200
    assert staff.get(f"/campaigns/{district.campaign.id}").status_code == 200
    assert len(calls) <= 1  # kept by the submission's page or the first reading, read by every page after
    counted = len(calls)
    before = venue.get(url).get_data(as_text=True)
    assert 'id="funnel-behind"' not in before
    # a decision changes the campaign's state: no page counts it (at a million spectators every reader
    # would), each says its counts are of the state before, with the same figures, until the job counts
    assert venue.post(f"/campaigns/approvals/{approval.id}/decision", data={"decision": "approve"}).status_code == 302
    html = venue.get(url).get_data(as_text=True)
    assert len(calls) == counted and 'id="funnel-behind"' in html
    assert re.search(r"<dt>Sent through you</dt><dd>(.*?)</dd>", html).group(1) == "being counted"
    staff_page = staff.get(f"/campaigns/{district.campaign.id}?lang=en").get_data(as_text=True)
    assert len(calls) == counted and 'id="funnel-behind"' in staff_page
    # the staff's table says the answer as it is now, and "being counted" where the counts depend on it
    row = funnel_row(staff_page, district.orgs[0].name)
    assert "Approved" in row[0] and row[3:] == ["being counted"] * 3, row
    assert funnel_row(staff_page, "Campaign (distinct spectators)")[3:] == ["being counted"] * 3
    assert "being counted" not in funnel_row(staff_page, district.orgs[1].name)
    figures = re.compile(r"<dt>In the segment</dt><dd>(.*?)</dd>")
    assert figures.search(html).group(1) == figures.search(before).group(1)  # same counts, same noise
    run = run_job(app, "campaigns.funnels", runner="cli")
    assert run.status == "success" and run.summary["counted"] == 1 and len(calls) == counted + 1
    html = venue.get(url).get_data(as_text=True)
    assert 'id="funnel-behind"' not in html
    staff_page = staff.get(f"/campaigns/{district.campaign.id}?lang=en").get_data(as_text=True)
    assert "being counted" not in staff_page and "Approved" in funnel_row(staff_page, district.orgs[0].name)[0]
    assert re.search(r"<dt>Sent through you</dt><dd>(.*?)</dd>", html).group(1) not in ("—", "being counted")
    # an import moves the data: the pages read the kept funnel until the job counts it again
    _upload_one_row(staff, district.orgs[1].id, "autre@exemple.qc.ca", 2)
    assert venue.get(url).status_code == 200 and len(calls) == counted + 1
    run = run_job(app, "campaigns.funnels", runner="cli")
    assert run.status == "success" and run.summary["counted"] == 1 and len(calls) == counted + 2
    assert run_job(app, "campaigns.funnels", runner="cli").summary["counted"] == 0
    # what the job kept is what a count now gives
    session.expire_all()  # the approvals as the requests left them
    campaign = session.get(Campaign, district.campaign.id)
    assert campaigns.funnel_store.kept_funnel(session, campaign) == campaigns.funnel.funnel(session, campaign)
    assert campaigns.funnel_store.kept_lifecycle_mix(
        session, campaign, district.orgs[0].id
    ) == campaigns.approvals.lifecycle_mix(session, campaign, district.orgs[0].id)


def test_the_funnels_job_counts_every_asked_organisations_life_cycle_mix(app, session, login_as, monkeypatch):
    """Each venue's approval page shows its own spectators by life-cycle stage: the job counts the
    mix of every organisation asked with the funnel, so that no first reading of the page counts it."""
    district = build_district(session, per_org=12, shared=4)
    session.commit()
    staff = login_as("staff")
    assert staff.post(f"/campaigns/{district.campaign.id}/submit", data={"confirm": "y"}).status_code == 302
    run = run_job(app, "campaigns.funnels", runner="cli")
    assert run.status == "success"
    calls = counting(monkeypatch, campaigns.funnel_store, "lifecycle_mix")
    session.expire_all()
    campaign = session.get(Campaign, district.campaign.id)
    for approval in campaign.approvals:
        venue = login_as("venue", session.get(Organisation, approval.organisation_id))
        assert venue.get(f"/campaigns/approvals/{approval.id}?lang=en").status_code == 200
        kept = campaigns.funnel_store.kept_lifecycle_mix(session, campaign, approval.organisation_id)
        assert kept == campaigns.approvals.lifecycle_mix(session, campaign, approval.organisation_id)
    assert calls == [] and len(campaign.approvals) == len(district.orgs)
