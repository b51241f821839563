"""In a real browser (issue 19.2): a venue's messy export through the mapping screen and the preview to
imported rows; the next upload, the inbox and an Excel workbook use the saved mapping without asking."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from core.models import ColumnMapping, ImportBatch, Transaction
from core.scheduler import run_job
from tests.browser.conftest import log_in
from tests.core.test_import_onboarding import MESSY_HEADER, messy_export
from tests.workbooks import write_xlsx

pytestmark = pytest.mark.browser

# The README's picture of the mapping screen, redrawn with PILOT_SCREENSHOTS=1 (otherwise kept aside).
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / ("docs/images" if os.environ.get("PILOT_SCREENSHOTS") else "test-artifacts") / "mapping.png"
WORDS = {
    "fr": {
        "mapping": "Associer les colonnes de votre fichier",
        "save": "Enregistrer et prévisualiser",
        "preview": "Aperçu de l'import",
        "confirm": "Importer ce fichier",
        "done": "Import terminé : 3 lignes importées.",
        "amount": "1 234,50 $",
        "separator": "point-virgule",
        "language": "Français",
    },
    "en": {
        "mapping": "Match the columns of your file",
        "save": "Save and preview",
        "preview": "Preview of the import",
        "confirm": "Import this file",
        "done": "Import finished: 3 rows imported.",
        "amount": "$1,234.50",
        "separator": "semicolon",
        "language": "English",
    },
}
# What the venue chooses where the suggestion is not right ("Représentation" is the show's date).
CHOICES = {"Représentation": "show_date", "Spectacle": "show_title", "Note interne": ""}


def main_text(page) -> str:
    return page.inner_text("main").replace("\u202f", " ").replace("\xa0", " ")


def count(db, org) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).where(Transaction.organisation_id == org.id))


def upload(page, path: Path, words: dict) -> None:
    page.goto("/imports")
    page.set_input_files("input[type=file]", str(path))
    page.click("form button.primary")


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_venue_maps_its_own_headers_once_then_imports_everywhere(app, db, page, make_user, make_org, tmp_path, lang):
    words = WORDS[lang]
    org = make_org("salle-bleue", "Salle Bleue")
    user = make_user("venue", org)
    log_in(page, user.email)
    if lang == "en":
        page.click("text=English")

    # 1. the messy export (semicolons, Windows-1252, the venue's own French headers): the mapping screen
    upload(page, messy_export(tmp_path / "export-billetterie.csv"), words)
    page.wait_for_url("**/columns")
    assert page.inner_text("h1") == words["mapping"]
    for label, field in CHOICES.items():
        page.select_option(f"select#column-{MESSY_HEADER.index(label)}", field)
    # the suggestions read the venue's words: the postal code and the amount are already chosen
    assert page.input_value(f"select#column-{MESSY_HEADER.index('CP')}") == "postal_code"
    assert page.input_value(f"select#column-{MESSY_HEADER.index('Montant payé')}") == "amount"
    if lang == "fr":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    else:  # on a phone, the table scrolls inside its card: the page is no wider than the screen
        page.set_viewport_size({"width": 390, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.set_viewport_size({"width": 1280, "height": 900})
    assert count(db, org) == 0
    page.click(f"button:text-is('{words['save']}')")

    # 2. the preview: the rows as they will be read, nothing written yet
    page.wait_for_url(lambda url: "/imports/pending/" in url and not url.endswith("/columns"))
    assert page.inner_text("h1") == words["preview"]
    text = main_text(page)
    assert "H2X1Y4" in text and words["amount"] in text and "Windows-1252" in text and words["separator"] in text
    assert f"{(dt.date.today() + dt.timedelta(days=9)).isoformat()} 20:00" in text
    assert count(db, org) == 0
    page.click(f"button:text-is('{words['confirm']}')")
    page.wait_for_url(re.compile(r".*/imports/\d+$"))
    assert words["done"] in main_text(page)
    assert count(db, org) == 3

    # 3. the next export with the same headers: imported without a question
    upload(page, messy_export(tmp_path / "export-2.csv", start=10), words)
    assert words["done"] in main_text(page)
    assert "/columns" not in page.url and count(db, org) == 6

    # 4. a file dropped in the organisation's inbox uses the saved mapping too
    app.config["INBOX_SETTLE_SECONDS"] = 0
    folder = Path(app.config["INBOX_PATH"]) / org.slug
    folder.mkdir(parents=True, exist_ok=True)
    dropped = messy_export(folder / "depot.csv", start=20)
    old = time.time() - 3600
    os.utime(dropped, (old, old))
    assert run_job(app, "inbox.import").summary["imported"] == 1
    assert count(db, org) == 9

    # 5. the same export saved from Excel imports too, its own headers mapped by the saved mapping
    rows = [MESSY_HEADER] + [
        [
            f"Roy{i}",
            "Jean",
            "1 rue Ontario",
            "H2L 2B7",
            f"jean{i}@example.org",
            5145550000 + i,
            45.5,
            2,
            "Promotion",
            dt.date.today() - dt.timedelta(days=2),
            dt.datetime.combine(dt.date.today() + dt.timedelta(days=9), dt.time(20)),
            "Les Belles-sœurs",
            "",
        ]
        for i in range(3)
    ]
    upload(page, write_xlsx(tmp_path / "export-excel.xlsx", rows), words)
    assert words["done"] in main_text(page)
    assert count(db, org) == 12

    # 6. the data-quality page: the share of the sales with each field, month by month
    page.goto("/imports/quality")
    assert "Salle Bleue" in page.inner_text("h1")
    assert "100" in page.inner_text("table.quality")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ColumnMapping)) == len(MESSY_HEADER) - 1  # "Prénom" is known


def test_a_long_import_shows_a_progress_bar_then_its_result(app, db, page, make_user, make_org, tmp_path):
    app.config["IMPORT_BACKGROUND_BYTES"] = 0  # every file counts as long here
    org = make_org("salle-bleue", "Salle Bleue")
    with db.session() as s:
        s.add_all(
            [
                ColumnMapping(organisation_id=org.id, kind="sales", header=header, label=label, field=field)
                for label, header, field in (
                    ("Nom du client", "nomduclient", "last_name"),
                    ("Adr. postale", "adrpostale", "address"),
                    ("CP", "cp", "postal_code"),
                    ("Courriel du client", "courrielduclient", "email"),
                    ("Tél. maison", "telmaison", "phone"),
                    ("Montant payé", "montantpaye", "amount"),
                    ("Qté", "qte", "tickets"),
                    ("Tarif", "tarif", "circumstance"),
                    ("Vendu le", "vendule", "purchased_at"),
                    ("Représentation", "representation", "show_date"),
                    ("Spectacle", "spectacle", "show_title"),
                    ("Note interne", "noteinterne", ""),
                )
            ]
        )
        s.commit()
    user = make_user("venue", org)
    log_in(page, user.email)
    page.goto("/imports")
    page.set_input_files("input[type=file]", str(messy_export(tmp_path / "long.csv", rows=300)))
    page.click("form button[value=preview]")
    page.click(f"button:text-is('{WORDS['fr']['confirm']}')")
    # the progress page polls the import's status, then shows its result
    page.wait_for_url(re.compile(r".*/imports/\d+$"))
    assert "Import terminé : 300 lignes importées." in main_text(page)
    assert count(db, org) == 300

    # the bar itself, on a status held still: it moves with the status, then the page goes to the result
    with db.session() as s:
        batch_id = s.scalar(select(ImportBatch.id))
    token = uuid.uuid4().hex
    folder = Path(app.instance_path) / "pending-imports" / token
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(
        json.dumps(
            {
                "organisation_id": org.id,
                "kind": "sales",
                "filename": "long.csv",
                "user_id": user.id,
                "created_at": "2026-12-05T21:00:00",
            }
        )
    )
    (folder / "status.json").write_text(json.dumps({"status": "running", "done": 50, "total": 200}))
    page.goto(f"/imports/pending/{token}/progress")
    assert page.inner_text("h1") == "Import en cours"
    assert page.get_attribute("progress", "value") == "50"
    (folder / "status.json").write_text(json.dumps({"status": "running", "done": 150, "total": 200}))
    expect(page.locator("#import-state")).to_contain_text("Lu : 75")
    expect(page.locator("#import-bar")).to_have_js_property("value", 150)
    (folder / "status.json").write_text(json.dumps({"status": "done", "batch_id": batch_id, "imported": 300}))
    page.wait_for_url(re.compile(rf".*/imports/{batch_id}$"))
