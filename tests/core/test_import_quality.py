"""The data-quality page (issue 19.2): each field's fill rate by month, exact for the organisation, protected for others."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from sqlalchemy import select

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


# --- kept ready (issue 18): the month facts kept by the job or a first reader, read by the page ------


def reference_facts(session, organisation_id: int) -> list:
    """The month facts counted in Python from the raw rows (the reference for core.quality.month_facts)."""
    from sqlalchemy import and_, select

    from core.models import Contact, Spectator, Transaction
    from core.quality import FIELDS, MONTHS, _first_month

    start = _first_month(dt.date.today(), MONTHS)
    rows = session.execute(
        select(Transaction, Spectator.cell_key, Contact)
        .join(Spectator, Spectator.id == Transaction.spectator_id)
        .outerjoin(
            Contact,
            and_(
                Contact.organisation_id == Transaction.organisation_id, Contact.spectator_id == Transaction.spectator_id
            ),
        )
        .where(Transaction.organisation_id == organisation_id)
    ).all()
    by_month: dict = {}
    for sale, key, contact in rows:
        month = sale.purchased_at.strftime("%Y-%m")
        if month < start:
            continue
        has = {
            "circumstance": sale.circumstance != "other",
            "channel": sale.channel is not None,
            "order_id": sale.order_id is not None,
        }
        for name in ("last_name", "first_name", "address", "postal_code", "email", "phone", "customer_id"):
            has[name] = contact is not None and getattr(contact, name) is not None
        entry = by_month.setdefault(month, [month, 0, 0, [0] * len(FIELDS), [0] * len(FIELDS)])
        entry[1] += 1
        entry[2] += key or 0
        for i, name in enumerate(FIELDS):
            if has[name]:
                entry[3][i] += 1
                entry[4][i] += key or 0
    return sorted(by_month.values(), reverse=True)


def kept_months(session, organisation_id: int) -> list | None:
    from core.kept import read_kept
    from core.quality import SETTING_PREFIX

    session.expire_all()
    kept = read_kept(session, f"{SETTING_PREFIX}{organisation_id}")
    return None if kept is None else kept["months"]


def test_the_job_keeps_what_a_fresh_count_gives_and_counts_again_what_moved(
    app, session, venue_with_sales, make_org, tmp_path
):
    from campaigns.erasure import erase_spectators
    from core.models import Contact
    from core.scheduler import run_job

    other = make_org("autre")
    import_file(
        session, write_csv(tmp_path / "o.csv", _sales(30, _months_ago(1), 10, 5, prefix="aut")), other, secret=SECRET
    )
    session.commit()
    run = run_job(app, "imports.quality", runner="cli")
    assert run.status == "success" and run.summary["counted"] >= 2  # every organisation, in one statement
    for org in (venue_with_sales, other):
        assert kept_months(session, org.id) == reference_facts(session, org.id)
    assert run_job(app, "imports.quality", runner="cli").summary["counted"] == 0  # nothing moved
    # an import moves its organisation's facts only: more sales, and buyers whose records gain a field
    before = kept_months(session, venue_with_sales.id)
    rows = _sales(40, _months_ago(1), with_email=40, with_phone=40, prefix="oct")  # 8 buyers give a phone now
    import_file(session, write_csv(tmp_path / "v2.csv", rows), venue_with_sales, secret=SECRET)
    session.commit()
    after = reference_facts(session, venue_with_sales.id)
    assert after[0][1] == 40 and after[-1][3] != before[-1][3]  # a new month, and October's phones
    assert kept_months(session, venue_with_sales.id) == before
    assert run_job(app, "imports.quality", runner="cli").summary["counted"] == 1
    assert kept_months(session, venue_with_sales.id) == reference_facts(session, venue_with_sales.id)
    # an erasure deletes the buyers' records (their sales stay, without the buyer's fields): every
    # organisation's facts are counted again
    erased = session.scalars(select(Contact.spectator_id).where(Contact.organisation_id == venue_with_sales.id)).all()
    erase_spectators(session, erased[:25])
    session.commit()
    assert run_job(app, "imports.quality", runner="cli").summary["counted"] >= 2
    for org in (venue_with_sales, other):
        assert kept_months(session, org.id) == reference_facts(session, org.id)


def test_the_page_reads_the_kept_facts_and_shows_an_import_at_once(
    app, login_as, session, venue_with_sales, tmp_path, monkeypatch
):
    import core.quality
    from core.scheduler import run_job

    assert run_job(app, "imports.quality", runner="cli").status == "success"
    with app.test_request_context():
        release = Release.current(session, organisation_ids=[venue_with_sales.id])
        fresh = fill_rates(session, venue_with_sales.id, release=release)
    counted = []
    original = core.quality.month_facts
    monkeypatch.setattr(core.quality, "month_facts", lambda *a, **k: counted.append(a) or original(*a, **k))
    venue = login_as("venue", venue_with_sales)
    page = html.unescape(venue.get("/imports/quality?lang=en").get_data(as_text=True))
    assert "75%" in page and "20%" in page and counted == []  # read from what the job kept
    shown = login_as("staff").get(f"/imports/quality?organisation={venue_with_sales.id}&lang=en").get_data(as_text=True)
    # the same protected figures as counted afresh (the noise drawn at reading, keyed by the epoch)
    october = next(m for m in fresh if m.month == _months_ago(3))
    assert f'<th scope="row">{october.month}</th><td class="num">{october.sales}</td>' in shown
    assert counted == []
    # the venue imports again: its next page counts its moved facts at once, and keeps them
    rows = _sales(20, _months_ago(1), with_email=20, with_phone=20, prefix="dec")
    import_file(session, write_csv(tmp_path / "v3.csv", rows), venue_with_sales, secret=SECRET)
    session.commit()
    page = html.unescape(venue.get("/imports/quality?lang=en").get_data(as_text=True))
    assert f">{_months_ago(1)}<" in page and len(counted) == 1
    assert kept_months(session, venue_with_sales.id) == reference_facts(session, venue_with_sales.id)
    venue.get("/imports/quality?lang=en")
    assert len(counted) == 1
