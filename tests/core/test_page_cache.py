"""The in-memory cache of the dashboard's headline figures and of the campaign funnel: hits, and changes shown at once."""

from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import select

import campaigns.views
import core.views
from campaigns.models import Approval
from core.cache import clear, remember
from core.models import utcnow
from core.privacy import advance_epoch
from tests.campaigns.helpers import build_district, new_purchase, new_spectator


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


def test_dashboard_district_figures_are_published_once_per_data_epoch(app, session, login_as, monkeypatch):
    # A tiny σ: the published figures are the exact ones (the noise is tested in tests/core/test_privacy.py).
    app.config["PRIVACY_SIGMA"] = 1e-6
    district = build_district(session, per_org=12, shared=4, with_campaign=False)
    session.commit()
    calls = counting(monkeypatch, core.views, "_raw_headline")
    staff = login_as("staff")
    first = staff.get("/?lang=en").get_data(as_text=True)
    assert spectators_shown(first) == 40
    assert staff.get("/?lang=en").status_code == 200 and login_as("admin").get("/").status_code == 200
    assert len(calls) == 1  # published once for the epoch, read by every page after
    # a purchase written outside an import starts no epoch: the published figures stay
    new_purchase(session, district.orgs[0], new_spectator(session, "nouvelle@exemple.qc.ca"), utcnow())
    session.commit()
    assert spectators_shown(staff.get("/?lang=en").get_data(as_text=True)) == 40
    # a new epoch (an import or a profile refresh starts one) publishes them again
    advance_epoch(session)
    session.commit()
    assert spectators_shown(staff.get("/?lang=en").get_data(as_text=True)) == 41
    assert len(calls) == 2


def test_approval_page_funnel_is_cached_until_something_is_audited(app, session, login_as, monkeypatch):
    app.config["CAMPAIGN_CACHE_SECONDS"] = 300
    district = build_district(session, per_org=12, shared=4)
    session.commit()
    staff = login_as("staff")
    assert staff.post(f"/campaigns/{district.campaign.id}/submit", data={"confirm": "y"}).status_code == 302
    venue = login_as("venue", district.orgs[0])
    approval = session.scalar(select(Approval).where(Approval.organisation_id == district.orgs[0].id))
    calls = counting(monkeypatch, campaigns.views, "funnel")
    url = f"/campaigns/approvals/{approval.id}?lang=en"
    assert venue.get(url).status_code == 200 and venue.get(url).status_code == 200
    assert len(calls) == 1
    # a decision is audited: the page after it computes the funnel again and shows the approved counts
    assert venue.post(f"/campaigns/approvals/{approval.id}/decision", data={"decision": "approve"}).status_code == 302
    html = venue.get(url).get_data(as_text=True)
    assert len(calls) == 2
    sent = re.search(r"<dt>Sent through you</dt><dd>(.*?)</dd>", html).group(1)
    assert sent != "—"
