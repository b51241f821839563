"""Import onboarding (issue 19.2): the mapping screen, its saved mapping reused everywhere, the preview, the template."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.cli import main
from core.importing import ImportRefused, import_file
from core.importing.mapping import saved_mapping, suggest
from core.models import AuditEvent, ColumnMapping, Contact, ImportBatch, Notification, Transaction
from core.scheduler import run_job

SECRET = "test-district-secret"

# A venue's own export: its own French headers, semicolons, Windows-1252, decimal commas.
MESSY_HEADER = [
    "Nom du client",
    "Prénom",
    "Adr. postale",
    "CP",
    "Courriel du client",
    "Tél. maison",
    "Montant payé",
    "Qté",
    "Tarif",
    "Vendu le",
    "Représentation",
    "Spectacle",
    "Note interne",
]
# What the mapping screen should get for each (the "Prénom" column is the format's own name).
MESSY_FIELDS = {
    "Nom du client": "last_name",
    "Adr. postale": "address",
    "CP": "postal_code",
    "Courriel du client": "email",
    "Tél. maison": "phone",
    "Montant payé": "amount",
    "Qté": "tickets",
    "Tarif": "circumstance",
    "Vendu le": "purchased_at",
    "Représentation": "show_date",
    "Spectacle": "show_title",
    "Note interne": "",
}


def messy_export(path: Path, rows: int = 3, start: int = 0, today: dt.date | None = None) -> Path:
    """A messy export of ``rows`` buyers (``start`` makes them other people)."""
    today = today or dt.date.today()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(MESSY_HEADER)
    for i in range(start, start + rows):
        writer.writerow(
            [
                f"Côté{i}",
                "Hélène",
                f"{i}, rue de l’Église",
                "h2x 1y4",
                f"helene{i}@example.org",
                "514 555-1234",
                "1 234,50 $" if i == start else "45,00 $",
                "2",
                "Plein tarif",
                (today - dt.timedelta(days=3)).strftime("%d/%m/%Y"),
                f"{(today + dt.timedelta(days=9)).isoformat()} 20:00",
                "Les Belles-sœurs",
                "à rappeler",
            ]
        )
    path.write_bytes(buffer.getvalue().encode("cp1252"))
    return path


def upload(client, org, path: Path, action: str | None = None, kind: str = "sales", skip_invalid: str = "0"):
    data = {
        "organisation": str(org.id),
        "kind": kind,
        "skip_invalid": skip_invalid,
        "file": (io.BytesIO(path.read_bytes()), path.name),
    }
    if action:
        data["action"] = action
    return client.post("/imports", data=data, content_type="multipart/form-data")


def text(response) -> str:
    """The page's text, its no-break spaces (French amounts) read as spaces."""
    return html.unescape(response.get_data(as_text=True)).replace("\u202f", " ").replace("\xa0", " ")


def map_columns(client, url: str, fields: dict[str, str] = MESSY_FIELDS):
    page = text(client.get(url))
    form = {}
    for label, name in fields.items():
        position = MESSY_HEADER.index(label)
        assert f'name="column-{position}"' in page, label
        form[f"column-{position}"] = name
    return client.post(url, data=form)


def test_suggestions_read_the_venues_own_words():
    assert [suggest(label, "sales") for label in MESSY_HEADER] == [
        "last_name",
        "first_name",
        "address",
        "postal_code",
        "email",
        "phone",
        "amount",
        "tickets",
        "circumstance",
        "purchased_at",
        "show_title",
        "show_title",
        "",
    ]
    # a field already taken is never suggested twice
    assert suggest("Spectacle", "sales", {"show_title"}) != "show_title"


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_messy_export_goes_through_the_mapping_and_the_preview(login_as, make_org, session, tmp_path, lang):
    org = make_org("salle")
    client = login_as("venue", org)
    client.get(f"/imports?lang={lang}")
    response = upload(client, org, messy_export(tmp_path / "export.csv"))
    # "Import" with headers nobody mapped and required columns missing: the mapping screen asks
    assert response.status_code == 302 and "/columns" in response.headers["Location"]
    columns_url = response.headers["Location"]
    page = text(client.get(columns_url))
    assert ("Associer les colonnes de votre fichier" if lang == "fr" else "Match the columns of your file") in page
    assert "Note interne" in page and "à rappeler" in page  # the first values help choose
    assert session.scalar(select(func.count()).select_from(Transaction)) == 0
    response = map_columns(client, columns_url)
    assert response.status_code == 302 and response.headers["Location"].endswith(columns_url.rsplit("/", 1)[0])
    assert saved_mapping(session, org.id, "sales")["cp"] == "postal_code"
    assert saved_mapping(session, org.id, "sales")["noteinterne"] == ""
    page = text(client.get(response.headers["Location"]))
    # the preview: normalised postal code, amount, dates; the detected reading; nothing written yet
    assert "H2X1Y4" in page and ("1 234,50 $" if lang == "fr" else "$1,234.50") in page
    assert (dt.date.today() - dt.timedelta(days=3)).isoformat() in page
    assert f"{(dt.date.today() + dt.timedelta(days=9)).isoformat()} 20:00" in page
    assert "Windows-1252" in page and ("point-virgule" if lang == "fr" else "semicolon") in page
    assert session.scalar(select(func.count()).select_from(Transaction)) == 0
    confirm_url = response.headers["Location"] + "/confirm"
    response = client.post(confirm_url)
    assert response.status_code == 302 and "/imports/" in response.headers["Location"]
    assert session.scalar(select(func.count()).select_from(Transaction)) == 3
    assert session.scalar(select(Contact.address).where(Contact.last_name == "Côté0")) == "0, rue de l’Église"
    audit = session.scalar(select(AuditEvent).where(AuditEvent.action == "import.mapping"))
    assert audit.organisation_id == org.id and audit.details["columns"]["CP"] == "postal_code"
    # the waiting upload is gone once imported
    assert client.post(confirm_url).status_code == 404


def test_a_second_upload_reuses_the_saved_mapping_without_asking(login_as, make_org, session, tmp_path):
    org = make_org("salle")
    client = login_as("venue", org)
    first = upload(client, org, messy_export(tmp_path / "a.csv"), action="preview")
    assert "/columns" in first.headers["Location"]
    map_columns(client, first.headers["Location"])
    # "Import": straight in
    response = upload(client, org, messy_export(tmp_path / "b.csv", start=10))
    assert response.status_code == 200 and "Import terminé : 3 lignes importées." in text(response)
    assert session.scalar(select(func.count()).select_from(Transaction)) == 3
    # "Check and preview first": straight to the preview, no question
    response = upload(client, org, messy_export(tmp_path / "c.csv", start=20), action="preview")
    assert response.status_code == 302 and "/columns" not in response.headers["Location"]
    page = text(client.get(response.headers["Location"]))
    assert "votre association enregistrée" in page and "Côté20" in page


def test_the_inbox_and_the_command_line_use_the_saved_mapping(app, db, login_as, make_org, session, tmp_path, runner):
    org = make_org("salle")
    client = login_as("venue", org)
    map_columns(client, upload(client, org, messy_export(tmp_path / "a.csv"), action="preview").headers["Location"])
    app.config["INBOX_SETTLE_SECONDS"] = 0
    folder = Path(app.config["INBOX_PATH"]) / "salle"
    folder.mkdir(parents=True)
    dropped = messy_export(folder / "ventes-avril.csv", start=30)
    old = time.time() - 3600
    os.utime(dropped, (old, old))
    run = run_job(app, "inbox.import")
    assert run.status == "success" and run.summary["imported"] == 1, run.summary
    with db.session() as s:
        assert s.scalar(select(func.count()).where(Transaction.organisation_id == org.id)) == 3
    # another organisation's inbox has no mapping: refused, and told how to map its columns
    make_org("autre")
    other = Path(app.config["INBOX_PATH"]) / "autre"
    other.mkdir(parents=True)
    dropped = messy_export(other / "ventes.csv", start=50)
    os.utime(dropped, (old, old))
    assert run_job(app, "inbox.import").summary["refused"] == 1
    with db.session() as s:
        note = s.scalar(select(Notification).where(Notification.kind == "inbox.refused"))
        assert "import this file once from the Imports page to match its columns" in note.message_en
        assert "importez ce fichier une fois depuis la page Imports" in note.message_fr
    result = runner.invoke(
        main, args=["import", str(messy_export(tmp_path / "cli.csv", start=40)), "--org", "salle", "--json"]
    )
    assert result.exit_code == 0, result.output
    with db.session() as s:
        assert s.scalar(select(func.count()).where(Transaction.organisation_id == org.id)) == 6


def test_without_a_mapping_the_messy_export_is_refused_and_nothing_written(make_org, session, tmp_path):
    org = make_org("salle")
    with pytest.raises(ImportRefused) as refused:
        import_file(session, messy_export(tmp_path / "a.csv"), org, secret=SECRET)
    assert {e["column"] for e in refused.value.result.errors} >= {"Code postal", "Valeur de l'achat"}
    # another organisation's mapping is not this one's
    other = make_org("autre")
    session.add_all(
        [
            ColumnMapping(organisation_id=other.id, kind="sales", header=h.lower(), label=h, field=f)
            for h, f in (("CP", "postal_code"),)
        ]
    )
    session.commit()
    assert saved_mapping(session, org.id, "sales") == {}


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_the_mapping_screen_refuses_a_field_twice_and_missing_required_ones(
    login_as, make_org, session, tmp_path, lang
):
    org = make_org("salle")
    client = login_as("venue", org)
    client.get(f"/imports?lang={lang}")
    url = upload(client, org, messy_export(tmp_path / "a.csv"), action="preview").headers["Location"]
    twice = {**MESSY_FIELDS, "Note interne": "amount"}
    response = map_columns(client, url, twice)
    assert response.status_code == 400
    assert (
        "Valeur de l'achat est donné à plus d'une colonne"
        if lang == "fr"
        else "Amount is given to more than one column"
    ) in text(response)
    missing = {**MESSY_FIELDS, "CP": ""}
    response = map_columns(client, url, missing)
    assert response.status_code == 400
    assert (
        "Ces colonnes obligatoires manquent encore : Code postal"
        if lang == "fr"
        else "These required columns are still missing: Postal code"
    ) in text(response)
    response = map_columns(client, url, {**MESSY_FIELDS, "CP": "no-such-field"})
    assert response.status_code == 400
    assert session.scalar(select(func.count()).select_from(ColumnMapping)) == 0


def test_a_waiting_upload_is_its_uploaders_only(login_as, make_org, session, tmp_path):
    org = make_org("salle")
    client = login_as("venue", org)
    url = upload(client, org, messy_export(tmp_path / "a.csv"), action="preview").headers["Location"]
    colleague = login_as("venue", org)
    staff = login_as("staff")
    for other in (colleague, staff):
        assert other.get(url).status_code == 404
        assert other.post(url.rsplit("/", 1)[0] + "/confirm").status_code == 404
    assert client.get(url).status_code == 200
    assert client.post(url.rsplit("/", 1)[0] + "/cancel").status_code == 302
    assert client.get(url).status_code == 404
    assert session.scalar(select(func.count()).select_from(ImportBatch)) == 0


def test_a_preview_with_bad_rows_says_so_and_the_confirmation_refuses_the_file(login_as, make_org, session, tmp_path):
    org = make_org("salle")
    client = login_as("venue", org)
    url = upload(client, org, messy_export(tmp_path / "a.csv"), action="preview").headers["Location"]
    map_columns(client, url)
    path = messy_export(tmp_path / "b.csv")
    content = path.read_bytes().decode("cp1252").replace("45,00 $", "quarante").encode("cp1252")
    path.write_bytes(content)
    response = upload(client, org, path, action="preview")
    page = text(client.get(response.headers["Location"]))
    assert "Montant payé : Montant invalide" in page and "quarante" in page
    response = client.post(response.headers["Location"] + "/confirm")
    assert response.status_code == 302
    assert session.scalar(select(ImportBatch.status)) == "refused"
    assert session.scalar(select(func.count()).select_from(Transaction)) == 0


@pytest.mark.parametrize(
    "lang,delimiter,first,optional", [("fr", ";", "Nom", "Heure du spectacle"), ("en", ",", "Last name", "Show time")]
)
def test_the_template_has_the_essential_fields_then_the_optional_ones(login_as, lang, delimiter, first, optional):
    response = login_as("venue").get(f"/imports/template.csv?lang={lang}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    body = response.data.decode("utf-8")
    assert body.startswith("\ufeff")
    header = next(csv.reader(io.StringIO(body[1:]), delimiter=delimiter))
    assert header[0] == first and len(header) == 24 and header.index(optional) >= 12
    # a template filled in imports as it is
    assert len(set(header)) == 24


def test_an_erasure_reaches_the_uploads_waiting_on_their_preview(app, login_as, make_org, tmp_path):
    from core.scrub import Identities, scrub_files
    from tests.workbooks import write_xlsx

    org = make_org("salle")
    client = login_as("venue", org)
    csv_url = upload(client, org, messy_export(tmp_path / "a.csv"), action="preview").headers["Location"]
    rows = [
        list(MESSY_HEADER),
        [
            "Côté0",
            "Hélène",
            "1 rue A",
            "H2X 1Y4",
            "helene0@example.org",
            "",
            12,
            1,
            "",
            dt.date.today(),
            dt.date.today(),
            "Spectacle",
            "",
        ],
    ]
    xlsx_url = upload(client, org, write_xlsx(tmp_path / "b.xlsx", rows), action="preview").headers["Location"]
    identities = Identities()
    identities.add(email="helene0@example.org")
    assert scrub_files(app, identities)["files"] >= 2
    assert "helene0@example.org" not in text(client.get(csv_url))  # the CSV loses the person's row
    assert "helene1@example.org" in text(client.get(csv_url))
    assert client.get(xlsx_url).status_code == 404  # a workbook cannot be rewritten: it is deleted


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_long_import_runs_beside_the_request_with_a_progress_page(app, db, login_as, make_org, tmp_path, lang):
    from core.import_progress import read_status
    from core.importing import common

    app.config["IMPORT_BACKGROUND_BYTES"] = 0  # every file counts as long here
    org = make_org("salle")
    client = login_as("venue", org)
    client.get(f"/imports?lang={lang}")
    common_batch, common.BATCH_SIZE = common.BATCH_SIZE, 50  # several batches: the status moves
    try:
        url = upload(client, org, messy_export(tmp_path / "a.csv"), action="preview").headers["Location"]
        map_columns(client, url)
        response = upload(client, org, messy_export(tmp_path / "b.csv", rows=400, start=100), action="preview")
        base = response.headers["Location"]
        response = client.post(base + "/confirm")
        assert response.status_code == 302 and response.headers["Location"].endswith("/progress")
        assert client.post(base + "/confirm").status_code in (302, 404)  # a second click starts nothing
        folder = Path(app.instance_path) / "pending-imports" / base.rsplit("/", 1)[1]
        for _ in range(200):
            status = read_status(folder)
            if status and status["status"] not in ("queued", "running"):
                break
            response = client.get(base + "/progress")
            if response.status_code == 302:  # it finished between the status read and the page
                assert read_status(folder)["status"] not in ("queued", "running")
                continue
            page = text(response)
            assert "<progress" in page or "Import" in page
            time.sleep(0.05)
    finally:
        common.BATCH_SIZE = common_batch
    assert status["status"] == "done", status
    body = client.get(base + "/status.json").get_json()
    assert body["status"] == "done" and body["next"].endswith("/progress")
    response = client.get(base + "/progress")
    assert response.status_code == 302 and "/imports/" in response.headers["Location"]
    page = text(client.get(response.headers["Location"]))
    assert ("Import terminé : 400 lignes importées." if lang == "fr" else "Import finished: 400 rows imported.") in page
    with db.session() as s:
        assert s.scalar(select(func.count()).where(Transaction.organisation_id == org.id)) == 400
    # another user reads nothing of it
    assert login_as("venue", org).get(base + "/status.json").status_code == 404


def test_an_unsubscribe_list_with_its_own_headers_is_mapped_too(login_as, make_org, session, tmp_path):
    org = make_org("salle")
    client = login_as("venue", org)
    map_columns(client, upload(client, org, messy_export(tmp_path / "a.csv"), action="preview").headers["Location"])
    client.post(
        upload(client, org, messy_export(tmp_path / "a.csv"), action="preview")
        .headers["Location"]
        .removesuffix("/columns")
        + "/confirm"
    )
    path = tmp_path / "desabonnements.csv"
    path.write_text("Courriel du client;Désabonné depuis\nhelene0@example.org;2026-01-02\n", encoding="utf-8")
    response = upload(client, org, path, kind="unsubscribes")
    assert response.status_code == 302 and response.headers["Location"].endswith("/columns")
    page = text(client.get(response.headers["Location"]))
    assert '<option value="email" selected>' in page  # suggested from its words
    response = client.post(response.headers["Location"], data={"column-0": "email", "column-1": ""})
    assert response.status_code == 302
    page = text(client.get(response.headers["Location"]))
    assert "helene0@example.org" in page
    response = client.post(response.headers["Location"] + "/confirm")
    assert response.status_code == 302
    assert session.scalar(select(ImportBatch.status).where(ImportBatch.kind == "unsubscribes")) == "done"
    assert saved_mapping(session, org.id, "unsubscribes") == {"courrielduclient": "email", "desabonnedepuis": ""}
