"""The data-quality page (issue 19.2): each field's fill rate by month, exact for the organisation, protected for others."""

from __future__ import annotations

import datetime as dt
import html

import pytest

from core.importing import import_file
from core.privacy import Release
from core.quality import fill_rates, to_add
from tests.core.test_importing import FR_HEADER, FR_ROWS, SECRET, write_csv


def _sales(n: int, month: str, with_email: int, with_phone: int, prefix: str) -> list[list[str]]:
    rows = []
    for i in range(n):
        row = dict(zip(FR_HEADER, FR_ROWS[0]))
        row.update(
            {
                "Nom": f"{prefix}{i}",
                "Prénom": "Marie",
                "Code postal": "H2X 1Y4",
                "Adresse courriel": f"{prefix}{i}@example.org" if i < with_email else "",
                "Téléphone": f"514 555-{i:04d}" if i < with_phone else "",
                "Adresse": "",
                "Date de l'achat": f"{month}-{1 + i % 27:02d}",
                "Canal d'achat": "Internet" if i % 2 else "",
                "Numéro de commande": f"{prefix}-{i}",
                "Identifiant client": "",
            }
        )
        rows.append([row[h] for h in FR_HEADER])
    return rows


def _months_ago(n: int) -> str:
    first = dt.date.today().replace(day=1)
    for _ in range(n):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    return first.strftime("%Y-%m")


@pytest.fixture
def venue_with_sales(make_org, session, tmp_path):
    org = make_org("salle")
    rows = _sales(160, _months_ago(3), with_email=120, with_phone=32, prefix="oct") + _sales(
        12, _months_ago(2), with_email=12, with_phone=0, prefix="nov"
    )
    import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    session.commit()
    return org


def test_fill_rates_are_exact_for_the_organisation(session, venue_with_sales):
    months = fill_rates(session, venue_with_sales.id)
    assert [m.month for m in months] == [_months_ago(2), _months_ago(3)]
    november, october = months
    assert (october.sales, november.sales) == (160, 12)
    assert october.cells["email"].rate == 120 / 160 and october.cells["phone"].rate == 32 / 160
    assert november.cells["email"].rate == 1.0 and november.cells["phone"].rate == 0.0
    assert october.cells["channel"].rate == 80 / 160 and october.cells["address"].rate == 0.0
    assert october.cells["last_name"].rate == 1.0 and october.cells["customer_id"].rate == 0.0
    assert to_add(months) == ["address", "phone", "customer_id"]


def test_others_read_protected_figures(app, session, venue_with_sales):
    with app.test_request_context():
        release = Release.current(session, organisation_ids=[venue_with_sales.id])
        months = fill_rates(session, venue_with_sales.id, release=release)
        again = fill_rates(session, venue_with_sales.id, release=release)
    november, october = months
    assert [m.sales for m in months] == [m.sales for m in again]  # the same figures however often asked
    # 12 sales is close to k = 10: a noisy figure under k is hidden, never shown exact
    assert november.sales is None or november.sales >= release.k
    assert october.sales is not None and abs(october.sales - 160) <= 6 * release.sigma
    # a big month's rates are shown, from noisy counts; a small month's are not
    assert abs(october.cells["email"].rate - 0.75) < 0.4 and october.cells["email"].filled >= release.k
    address = october.cells["address"]  # no sale has it: fewer than k, or a noisy small figure
    assert address.rate is None or address.filled <= 6 * release.sigma
    assert all(cell.rate is None for cell in november.cells.values())


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_the_page_for_the_venue_and_for_staff(login_as, session, venue_with_sales, make_org, lang):
    client = login_as("venue", venue_with_sales)
    client.get(f"/imports?lang={lang}")
    page = (
        html.unescape(client.get("/imports/quality").get_data(as_text=True)).replace("\u202f", " ").replace("\xa0", " ")
    )
    assert ("Qualité des données des exports" if lang == "fr" else "Data quality of the exports") in page
    assert ("75 %" if lang == "fr" else "75%") in page and ("20 %" if lang == "fr" else "20%") in page
    assert ("À ajouter aux exports" if lang == "fr" else "To add to the exports") in page
    assert "protected like every pooled figure" not in page and "protégés comme" not in page
    # a venue reads its own organisation only, whatever it asks
    other = make_org("autre")
    page = client.get(f"/imports/quality?organisation={other.id}").get_data(as_text=True)
    assert "Salle" in page and "Autre" not in page
    staff = login_as("staff")
    staff.get(f"/imports?lang={lang}")
    assert staff.get("/imports/quality").status_code == 200
    page = html.unescape(staff.get(f"/imports/quality?organisation={venue_with_sales.id}").get_data(as_text=True))
    assert ("protégés comme" if lang == "fr" else "protected like every pooled figure") in page
    assert staff.get("/imports/quality?organisation=999999").status_code == 404
    assert login_as("evaluator").get("/imports/quality").status_code == 403
