"""In a real browser: staff build a cross-sell segment (theatre, never dance), see its live size, save it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from segments.models import Segment
from segments.preview import members
from tests.browser.conftest import log_in
from tests.segments.district import small_district  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

CROSS_SELL = {
    "all": [
        {"field": "discipline", "op": "any", "value": ["theatre"]},
        {"field": "discipline", "op": "none", "value": ["dance"]},
    ]
}


def test_staff_build_a_cross_sell_segment_and_save_it(app, page, make_user, db, small_district):
    # A tiny σ: the live preview shows the exact size (its noise is tested in tests/core/test_privacy.py).
    app.config["PRIVACY_SIGMA"] = 1e-6
    with db.session() as session:
        expected = len(members(session, CROSS_SELL))
    assert expected >= 10  # shown, not hidden under k
    user = make_user("staff")
    log_in(page, user.email)
    page.click("nav a[href='/segments/']")
    page.click("text=Nouveau segment")
    expect(page.locator("h1")).to_have_text("Nouveau segment")

    conditions = page.locator(".rule-condition")
    expect(conditions).to_have_count(1)
    conditions.nth(0).locator("[data-role=field]").select_option("discipline")
    first = page.locator(".rule-condition").nth(0)
    expect(first.locator("[data-role=op]")).to_have_value("any")
    first.get_by_label("Théâtre", exact=True).check()

    page.click("[data-role=add-condition]")
    second = page.locator(".rule-condition").nth(1)
    second.locator("[data-role=field]").select_option("discipline")
    second = page.locator(".rule-condition").nth(1)
    second.locator("[data-role=op]").select_option("none")
    second.get_by_label("Danse", exact=True).check()

    size = f"{expected:,}".replace(",", "\u202f")
    expect(page.locator("#preview-size")).to_have_text(re.compile(rf"^{expected}$|^{size}$"))
    expect(page.locator("#preview-organisations tbody tr").first).to_be_visible()
    expect(page.locator("#preview-lifecycle tbody tr")).to_have_count(7)

    page.fill("input[name=name]", "Théâtre sans danse")
    page.click("button:has-text('Enregistrer le segment')")
    page.wait_for_url(re.compile(r".*/segments/\d+$"))
    expect(page.locator(".flash-success")).to_contain_text("Théâtre sans danse")

    with db.session() as session:
        segment = session.scalar(select(Segment))
        assert segment.name == "Théâtre sans danse"
        assert [v.rule for v in segment.versions] == [CROSS_SELL]
