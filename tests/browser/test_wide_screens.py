"""On an ordinary laptop screen (1,280 px), the top bar holds every role's navigation on one line."""

from __future__ import annotations

import os

import pytest

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser

LAPTOP_WIDTH = 1280
SHOTS = os.environ.get("PILOT_NAV_SHOTS")  # a folder: keep a picture of each top bar


@pytest.mark.parametrize("role", ["admin", "staff", "venue", "evaluator"])
def test_navigation_fits_on_one_line_at_1280_px(page, make_user, make_org, role):
    org = make_org("theatre-du-nouveau-monde", "Théâtre du Nouveau Monde") if role == "venue" else None
    user = make_user(role, org, email=f"coordonnatrice.billetterie.{role}@partenariat-quartier.example")
    page.set_viewport_size({"width": LAPTOP_WIDTH, "height": 800})
    log_in(page, user.email)
    for lang in ("fr", "en"):
        page.goto(f"/?lang={lang}")
        if SHOTS:
            page.locator("header.topbar").screenshot(path=f"{SHOTS}/topbar-{role}-{lang}.png")
        tops = page.eval_on_selector_all(
            "header.topbar nav li", "items => items.map(li => li.getBoundingClientRect().top)"
        )
        assert tops, "no navigation"
        assert max(tops) - min(tops) < 4, f"{role}/{lang}: the navigation wraps onto {len(set(tops))} lines"
        nav_end = page.eval_on_selector("header.topbar nav", "nav => nav.getBoundingClientRect().right")
        session_start = page.eval_on_selector(".session", "s => s.getBoundingClientRect().left")
        assert nav_end <= session_start, f"{role}/{lang}: the navigation runs under the session links"
        assert page.is_visible(".session a.who") and page.is_visible(".session button.link")
        bar = page.eval_on_selector("header.topbar", "bar => bar.getBoundingClientRect().height")
        assert bar <= 72, f"{role}/{lang}: the top bar is {bar} px high"
        assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP_WIDTH
