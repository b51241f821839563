"""The main navigation: every entry opens for the role that sees it, and the current section is marked."""

from __future__ import annotations

import re

import pytest

from tests.test_authorisation_matrix import grant_insights

NAV = re.compile(r'<nav aria-label="[^"]*">\s*<ul>(.*?)</ul>', re.S)
LINK = re.compile(r'<a href="([^"]+)"\s*(aria-current="page")?>([^<]+)</a>')


def nav_links(html: str) -> list[tuple[str, bool, str]]:
    """(href, marked current, label) of the main navigation's entries."""
    return [(href, bool(current), label) for href, current, label in LINK.findall(NAV.search(html).group(1))]


EXPECTED = {
    "staff": ["/", "/segments/", "/segments/comparison", "/campaigns/", "/experiments/", "/imports"],
    "venue": ["/", "/segments/", "/segments/comparison", "/campaigns/", "/experiments/", "/imports"],
    "evaluator": ["/", "/experiments/"],  # reports only, until an administrator grants the insights
    "evaluator+insights": ["/", "/segments/insights", "/segments/comparison", "/experiments/"],
    "admin": [
        "/",
        "/segments/",
        "/segments/comparison",
        "/campaigns/",
        "/experiments/",
        "/imports",
        "/admin/organisations",
    ],
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_every_entry_opens_for_its_role(login_as, role):
    client = login_as(role.split("+")[0])
    if role.endswith("+insights"):
        grant_insights(client.application, client.user)
    links = nav_links(client.get("/?lang=en").get_data(as_text=True))
    assert [href for href, _current, _label in links] == EXPECTED[role]
    for href, _current, label in links:
        response = client.get(href)
        assert response.status_code == 200, (role, label, href, response.status_code)


def current(client, url: str) -> list[str]:
    return [href for href, is_current, _label in nav_links(client.get(url).get_data(as_text=True)) if is_current]


def test_current_section_is_marked(login_as):
    admin = login_as("admin")
    for url in ("/admin/organisations", "/admin/users", "/admin/audit", "/admin/jobs/", "/campaigns/admin/erasure"):
        assert current(admin, url) == ["/admin/organisations"], url
    assert current(admin, "/campaigns/") == ["/campaigns/"]
    assert current(admin, "/segments/insights") == ["/segments/"]
    assert current(admin, "/segments/comparison") == ["/segments/comparison"]  # its own entry, not Segments
    assert current(admin, "/") == ["/"]
    evaluator = login_as("evaluator")
    grant_insights(evaluator.application, evaluator.user)
    assert current(evaluator, "/segments/insights") == ["/segments/insights"]
    assert current(evaluator, "/experiments/") == ["/experiments/"]
