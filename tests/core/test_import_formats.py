"""The importer's read stage: encodings and delimiters detected, spreadsheet workbooks read (issue 19.2)."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.importing import ImportRefused, import_file
from core.importing.reading import _sniff_delimiter, detect_single_byte
from core.models import Contact, ImportBatch, Show, Transaction
from tests.core.test_importing import FR_HEADER, FR_ROWS, SECRET, pilot, write_csv
from tests.workbooks import write_xlsx

# A venue's names with the letters Windows-1252 has and Latin-1 lacks (’ « » œ) and those both have.
NAMES = [("Côté", "Hélène"), ("Lefèvre", "François"), ("Bélanger", "Zoë")]


def _rows_named(names=NAMES, title="L’Œuvre « au noir »"):
    rows = []
    for n, (last, first) in enumerate(names):
        row = dict(zip(FR_HEADER, FR_ROWS[0]))
        row.update(
            {
                "Nom": last,
                "Prénom": first,
                "Adresse courriel": f"p{n}@example.org",
                "Titre du spectacle": title,
                "Numéro de commande": f"N-{n}",
            }
        )
        rows.append([row[h] for h in FR_HEADER])
    return rows


def _names(session, org) -> set[tuple[str, str]]:
    return {
        (last, first)
        for last, first in session.execute(
            select(Contact.last_name, Contact.first_name).where(Contact.organisation_id == org.id)
        )
    }


@pytest.mark.parametrize(
    "encoding,delimiter,recorded,title",
    [
        ("utf-8", ",", "utf-8", "L’Œuvre « au noir »"),
        ("utf-8-sig", ";", "utf-8-sig", "L’Œuvre « au noir »"),
        ("cp1252", ";", "cp1252", "L’Œuvre « au noir »"),
        ("cp1252", "\t", "cp1252", "L’Œuvre « au noir »"),
        ("latin-1", ";", None, "Théâtre d'été"),  # the letters Latin-1 has read the same in Windows-1252
        ("mac_roman", ";", "mac_roman", "Théâtre d'été à l'Opéra"),  # Excel's "CSV (Macintosh)"
    ],
)
def test_encoding_and_delimiter_are_detected(make_org, session, tmp_path, encoding, delimiter, recorded, title):
    org = make_org("salle")
    path = write_csv(tmp_path / "v.csv", _rows_named(title=title), delimiter=delimiter, encoding=encoding)
    result = import_file(session, path, org, secret=SECRET)
    assert (result.imported, result.delimiter) == (3, delimiter)
    if recorded is not None:
        assert result.encoding == recorded
    else:
        assert result.encoding in ("latin-1", "cp1252")
    assert _names(session, org) == set(NAMES)
    assert session.scalar(select(Show.title).where(Show.title.like("%é%") | Show.title.like("%Œ%"))) == title


def test_latin1_bytes_that_windows_1252_does_not_define_read_as_latin1():
    # 0x81 is no character in Windows-1252: only Latin-1 reads it (as a control, never lost)
    assert detect_single_byte("Nom;Prénom\nCôté;Hélène\n".encode("cp1252") + b"x\x81y\n") == "latin-1"
    # 0x85 and 0x92 are "…" and "’" in Windows-1252
    assert detect_single_byte("Titre;Note\nL’été;« oui » …\n".encode("cp1252")) == "cp1252"


def test_delimiter_is_the_one_that_splits_the_lines_evenly():
    # the header alone has as many commas as semicolons; the rows tell
    lines = ["Nom;Prénom;Note, libre\n", "Côté;Hélène;a, b\n", "Roy;Jean;c, d\n"]
    assert _sniff_delimiter(lines) == ";"
    assert _sniff_delimiter(["Nom,Adresse,Code postal\n", '"Côté","12; rue A",H2X1Y4\n']) == ","
    assert _sniff_delimiter(["Nom\tPrénom\n", "a\tb\n"]) == "\t"
    assert _sniff_delimiter(["Nom\n"]) == ","


def _workbook_rows(today: dt.date) -> list[list]:
    """An export saved from Excel: dates as dates, amounts and phones as numbers."""
    header = [
        "Nom",
        "Prénom",
        "Adresse",
        "Code postal",
        "Adresse courriel",
        "Téléphone",
        "Valeur de l'achat",
        "Nombre de billets",
        "Circonstance de l'achat",
        "Date de l'achat",
        "Date du spectacle",
        "Titre du spectacle",
        "Type de spectacle",
    ]
    purchased = dt.datetime.combine(today - dt.timedelta(days=20), dt.time(19, 30))
    show = today + dt.timedelta(days=10)
    return [
        header,
        [
            "Côté",
            "Hélène",
            "12, rue Émile",
            "h2x 1y4",
            "helene@example.org",
            5145551234,
            45.5,
            2,
            "Plein tarif",
            purchased,
            dt.datetime.combine(show, dt.time(20)),
            "Les Belles-sœurs",
            "Théâtre",
        ],
        [
            "Roy",
            "Jean",
            "",
            "H3B 2K5",
            "",
            None,
            12,
            1,
            "Promotion",
            purchased.date(),
            show,
            "Les Belles-sœurs",
            "Théâtre",
        ],
    ]


def test_an_excel_workbook_imports_with_its_typed_cells(make_org, session, tmp_path):
    org = make_org("salle")
    today = dt.date.today()
    path = write_xlsx(tmp_path / "export.xlsx", _workbook_rows(today))
    result = import_file(session, path, org, secret=SECRET)
    assert (result.rows, result.imported, result.format) == (2, 2, "workbook")
    amounts = session.scalars(select(Transaction.amount_cents).order_by(Transaction.amount_cents)).all()
    assert amounts == [1200, 4550]
    assert session.scalar(select(func.min(Transaction.purchased_at))) == dt.datetime.combine(
        today - dt.timedelta(days=20), dt.time()
    )
    assert session.scalar(select(func.max(Transaction.purchased_at))) == dt.datetime.combine(
        today - dt.timedelta(days=20), dt.time(19, 30)
    )
    assert session.scalar(select(func.max(Show.starts_at))) == dt.datetime.combine(
        today + dt.timedelta(days=10), dt.time(20)
    )
    contact = session.scalar(select(Contact).where(Contact.last_name == "Côté"))
    assert (contact.phone, contact.postal_code) == ("5145551234", "H2X1Y4")
    # the same workbook again adds nothing
    assert import_file(session, path, org, secret=SECRET).duplicates == 2


def test_a_workbook_error_names_the_row_excel_shows_and_the_column(make_org, session, tmp_path):
    org = make_org("salle")
    rows = _workbook_rows(dt.date.today())
    rows.insert(2, [])  # an empty row 3: row 4 keeps its number
    rows[3][7] = 0  # no tickets
    path = write_xlsx(tmp_path / "export.xlsx", rows)
    with pytest.raises(ImportRefused) as refused:
        import_file(session, path, org, secret=SECRET)
    assert refused.value.result.errors == [
        {"line": 4, "column": "Nombre de billets", "reason": "The number of tickets must be a positive whole number."}
    ]


def test_a_damaged_workbook_is_refused_in_words(make_org, session, tmp_path, runner):
    make_org("salle")
    path = tmp_path / "export.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    result = pilot(runner, "import", path, "--org", "salle", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.output)
    assert summary["imported"] == 0 and summary["errors"][0]["line"] == 1
    assert summary["errors"][0]["reason"].startswith("The workbook could not be read")


def test_the_command_line_imports_a_workbook(make_org, session, tmp_path, runner):
    make_org("salle")
    path = write_xlsx(tmp_path / "export.xlsx", _workbook_rows(dt.date.today()))
    result = pilot(runner, "import", path, "--org", "salle", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["imported"] == 2


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_the_upload_page_takes_a_workbook(login_as, make_org, session, tmp_path, lang):
    org = make_org("salle")
    client = login_as("venue", org)
    client.get(f"/imports?lang={lang}")
    content = write_xlsx(tmp_path / "export.xlsx", _workbook_rows(dt.date.today())).read_bytes()
    response = client.post(
        "/imports",
        data={
            "organisation": str(org.id),
            "kind": "sales",
            "skip_invalid": "0",
            "file": (io.BytesIO(content), "Ventes mars.xlsx"),
        },
        content_type="multipart/form-data",
    )
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert ("Import terminé" if lang == "fr" else "Import finished") in page
    assert session.scalar(select(func.count()).select_from(Transaction)) == 2
    # a damaged one is refused in the user's language, its trace kept
    response = client.post(
        "/imports",
        data={
            "organisation": str(org.id),
            "kind": "sales",
            "skip_invalid": "0",
            "file": (io.BytesIO(b"PK\x03\x04 broken"), "autre.xlsx"),
        },
        content_type="multipart/form-data",
    )
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200 and "Traceback" not in page
    assert ("Le classeur n'a pas pu être lu" if lang == "fr" else "The workbook could not be read") in page
    assert session.scalar(select(ImportBatch.status).order_by(ImportBatch.id.desc()).limit(1)) == "refused"


def test_a_rejects_file_of_a_workbook_is_a_csv(make_org, session, tmp_path):
    org = make_org("salle")
    rows = _workbook_rows(dt.date.today())
    rows[2][7] = "beaucoup"
    path = write_xlsx(tmp_path / "export.xlsx", rows)
    result = import_file(session, path, org, secret=SECRET, skip_invalid=True, rejects_path=tmp_path / "r.csv")
    assert (result.imported, result.rejected) == (1, 1)
    with open(tmp_path / "r.csv", encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0][-1] == "reason" and table[1][0] == "Roy" and "Nombre de billets" in table[1][-1]


_cell = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(-(10**6), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dates(dt.date(1950, 1, 1), dt.date(2030, 12, 31)),
    st.datetimes(dt.datetime(1950, 1, 1), dt.datetime(2030, 12, 31)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_cell, max_size=15), max_size=6), header=st.booleans(), skip_invalid=st.booleans())
def test_any_workbook_gives_a_result_or_a_refusal(make_org, session, tmp_path, rows, header, skip_invalid):
    org = session.merge(_org(make_org))
    if header:
        rows = [_workbook_rows(dt.date.today())[0], *rows]
    path = write_xlsx(tmp_path / "any.xlsx", rows)
    try:
        result = import_file(
            session, path, org, secret=SECRET, skip_invalid=skip_invalid, rejects_path=tmp_path / "r.csv"
        )
    except ImportRefused as refused:
        result = refused.result
        assert result.errors and result.imported == 0
        assert all(e["line"] >= 1 and e["reason"] for e in result.errors)
    assert result.rows == result.imported + result.duplicates + result.rejected + result.anonymous
    session.rollback()


_ORG: dict = {}


def _org(make_org):
    """One organisation for all the examples (hypothesis reuses the fixtures)."""
    if make_org not in _ORG:
        _ORG.clear()
        _ORG[make_org] = make_org("prop-xlsx")
    return _ORG[make_org]
