"""Real-browser fixtures: the app served on a local port, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("PILOT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine has no outside network: keep Chromium from trying.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is required for the browser tests at {CHROMIUM} (apt-get install -y chromium)", pytrace=False
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def live_server(app):
    """Serve ``app`` on 127.0.0.1 in a thread; yields the base URL."""
    app.config["WTF_CSRF_ENABLED"] = True  # the real thing in the browser
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def page(browser, live_server, request):
    """A fresh browser page; on failure a screenshot is kept under test-artifacts/."""
    context = browser.new_context(base_url=live_server, locale="fr-CA")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def log_in(page, email: str, password: str = "correct-horse-42") -> None:
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def fill_promotion_form(
    page,
    orgs,
    *,
    valid_from: dt.date,
    message_fr: str = "Deux billets pour le prix d'un.",
    message_en: str = "Two tickets for one.",
) -> None:
    """Fill the new-promotion form with the "Printemps du Quartier" two-for-one offer at ``orgs``,
    valid 60 days from ``valid_from`` (the caller submits it)."""
    page.fill("#name_fr", "Printemps du Quartier")
    page.fill("#name_en", "Quartier Spring")
    page.fill("#message_fr", message_fr)
    page.fill("#message_en", message_en)
    page.select_option("#offer_kind", "two_for_one")
    for org in orgs:
        page.check(f"input[name=organisations][value='{org.id}']")
    page.fill("#valid_from", valid_from.isoformat())
    page.fill("#valid_until", (valid_from + dt.timedelta(days=60)).isoformat())
    page.fill("#average_discount", "32.50")
    page.fill("#cost_per_contact", "0.05")
