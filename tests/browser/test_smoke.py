"""Smoke test in a real browser: every role logs in and sees its dashboard in French and English."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("role", ["staff", "venue", "evaluator", "admin"])
def test_each_role_sees_its_dashboard_in_both_languages(page, make_user, make_org, role):
    org = make_org("salle-bleue", "Salle Bleue") if role == "venue" else None
    user = make_user(role, org)
    log_in(page, user.email)
    assert page.inner_text("h1") == "Tableau de bord"
    assert page.get_attribute("html", "lang") == "fr"
    if role == "venue":
        assert "Mon organisation" in page.inner_text("main")
    page.click("text=English")
    assert page.inner_text("h1") == "Dashboard"
    assert page.get_attribute("html", "lang") == "en"
    if role == "admin":
        page.click("text=Administration")
        assert page.inner_text("h1") == "Organisations"
    page.click("text=Log out")
    page.wait_for_url("**/login")
    assert "You are logged out." in page.inner_text("main")
