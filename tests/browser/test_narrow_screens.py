"""On a phone-sized screen, no page is wider than the screen: wide tables scroll inside their card."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser

PHONE_WIDTH = 390


def test_admin_pages_fit_a_phone_screen(page, make_user, make_org):
    org = make_org("salle-au-nom-long", "Salle au nom particulièrement long pour un écran étroit")
    for n in range(3):
        make_user("venue", org, email=f"responsable-de-la-billetterie-{n}@salle-au-nom-long.example")
    admin = make_user("admin")
    page.set_viewport_size({"width": PHONE_WIDTH, "height": 800})
    log_in(page, admin.email)
    for url in ("/admin/organisations", "/admin/users", "/admin/audit", "/admin/jobs", "/imports"):
        page.goto(url)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE_WIDTH, f"{url} is {width} px wide on a {PHONE_WIDTH} px screen"
