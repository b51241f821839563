"""People in a real browser, in French and English: an administrator invites a venue approver, who
opens the one-time link, chooses a password and logs in; the administrator changes their role and
deactivates them after a confirmation (their session ends); the audit log, filtered, tells it in words."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from core.models import User
from tests.browser.conftest import CHROMIUM, log_in

pytestmark = pytest.mark.browser

PASSWORD = "Lilas-du-parc-2047"

WORDS = {
    "fr": {
        "invite": "Inviter",
        "welcome": "Bienvenue",
        "save": "Enregistrer mon mot de passe",
        "set": "Votre mot de passe est enregistré",
        "change": "Changer le rôle",
        "now": "a maintenant le rôle",
        "deactivate": "Désactiver…",
        "confirm": "Désactiver",
        "done": "est désactivé",
        "filter": "Filtrer",
        "invited": "Alice (administrateur) a invité bob@example.org comme approbateur (diffuseur) de Théâtre X",
        "role": "Alice (administrateur) a fait de bob@example.org un membre de l'équipe du Partenariat "
        "(auparavant approbateur (diffuseur))",
        "deactivated": "Alice (administrateur) a désactivé bob@example.org",
        "accepted": "Bob (approbateur (diffuseur)) a accepté son invitation et choisi un mot de passe",
    },
    "en": {
        "invite": "Invite",
        "welcome": "Welcome",
        "save": "Save my password",
        "set": "Your password is set",
        "change": "Change the role",
        "now": "is now",
        "deactivate": "Deactivate…",
        "confirm": "Deactivate",
        "done": "is deactivated",
        "filter": "Filter",
        "invited": "Alice (administrator) invited bob@example.org as venue approver of Théâtre X",
        "role": "Alice (administrator) made bob@example.org partnership staff (was venue approver)",
        "deactivated": "Alice (administrator) deactivated bob@example.org",
        "accepted": "Bob (venue approver) accepted their invitation and chose a password",
    },
}


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_invite_choose_password_change_role_deactivate_and_read_the_log(
    page, browser, live_server, db, make_user, make_org, lang
):
    words = WORDS[lang]
    org = make_org("theatre-x", "Théâtre X")
    admin = make_user("admin", email="alice@example.org")
    with db.session() as s:
        s.get(User, admin.id).name = "Alice"
        s.commit()
    log_in(page, admin.email)
    page.goto(f"/admin/users?lang={lang}")

    # the administrator invites Bob as the venue approver of Théâtre X: no password field anywhere
    assert page.locator("input[type=password]").count() == 0
    page.fill("#email", "bob@example.org")
    page.fill("#name", "Bob")
    page.select_option("#role", "venue")
    page.select_option("#organisation", str(org.id))
    page.click(f"button:has-text('{words['invite']}')")
    page.wait_for_url(re.compile(r"/admin/users/\d+$"))
    link = page.input_value("#one-time-link")
    assert re.match(rf"{re.escape(live_server)}/welcome/[A-Za-z0-9_-]{{40,}}$", link)
    page.reload()
    assert page.locator("#one-time-link").count() == 0  # shown once
    user_page = page.url

    # Bob, in a browser of his own, opens the link, chooses his password and logs in
    context = browser.new_context(base_url=live_server, locale="fr-CA")
    try:
        bob = context.new_page()
        bob.goto(link)
        bob.wait_for_url("**/account/new-password")
        if lang == "en":
            bob.goto("/account/new-password?lang=en")
        assert words["welcome"] in bob.inner_text("main") and "bob@example.org" in bob.inner_text("main")
        bob.fill("#new", PASSWORD)
        bob.fill("#confirm", PASSWORD)
        bob.click(f"button:has-text('{words['save']}')")
        bob.wait_for_url("**/login")
        assert words["set"] in bob.inner_text("main")
        log_in(bob, "bob@example.org", PASSWORD)
        assert bob.url.rstrip("/") == live_server

        # the administrator makes Bob partnership staff, then deactivates him after a confirmation
        page.goto(user_page)
        page.select_option("#role", "staff")
        page.click(f"button:has-text('{words['change']}')")
        assert words["now"] in page.inner_text("main")
        page.click(f"text={words['deactivate']}")
        page.wait_for_url("**/deactivate")
        page.click(f"button:has-text('{words['confirm']}')")  # the box is not ticked: the browser stops it
        assert page.url.endswith("/deactivate")
        page.check("input[name=confirm]")
        page.click(f"button:has-text('{words['confirm']}')")
        page.wait_for_url(re.compile(r"/admin/users/\d+$"))
        assert words["done"] in page.inner_text("main")

        # Bob's session is over at his next page
        bob.goto("/")
        bob.wait_for_url("**/login**")
    finally:
        context.close()
    with db.session() as s:
        bob_user = s.scalar(select(User).where(User.email == "bob@example.org"))
        assert (bob_user.role, bob_user.organisation_id, bob_user.active) == ("staff", None, False)

    # the audit log, filtered on Bob, tells the story in words
    page.goto(f"/admin/audit?lang={lang}")
    page.fill("#audit-object", "bob")
    page.click(f"button:has-text('{words['filter']}')")
    page.wait_for_url("**object=bob**")
    table = page.inner_text("table.data")
    for key in ("invited", "accepted", "role", "deactivated"):
        assert words[key] in table, (key, table)
    assert link.rsplit("/", 1)[1] not in page.content()
    assert CHROMIUM  # the browser fixture used Debian's Chromium
