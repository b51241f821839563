"""No membership oracle (issue 15, Build 2): an organisation's import results and its own insights
never depend on what other organisations hold."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

from click.testing import CliRunner  # noqa: F401 (the app's runner is used)

from core.cli import main
from core.importing import import_file
from core.models import DISCIPLINES, Organisation
from segments.insight_tables import Scope
from segments.insights import InsightQuery
from tests.core.test_importing import FR_HEADER, SECRET, fr_row, write_csv


def sale(email: str, order: str, **changes) -> list[str]:
    return fr_row(**{"Adresse courriel": email, "Numéro de commande": order, "Identifiant client": order, **changes})


def export_bytes(rows) -> bytes:
    buffer = io.StringIO(newline="")
    import csv

    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(FR_HEADER)
    writer.writerows(rows)
    return buffer.getvalue().encode("cp1252")


def _page_result(html: str) -> str:
    """The import summary of a page, batch numbers and links taken out."""
    summary = re.search(r'<dl class="figures">.*?</dl>', html, re.S).group(0)
    return re.sub(r"\d{3,}", "#", summary)


def test_an_upload_reads_the_same_whether_its_person_bought_elsewhere_or_not(
    app, make_org, login_as, session, tmp_path, runner
):
    a, b = make_org("salle-a"), make_org("salle-b")
    # organisation B holds "known"; nobody holds "stranger"
    with app.app_context():
        import_file(
            session,
            write_csv(tmp_path / "b.csv", [sale("known@prive.example", "B-1")]),
            session.get(Organisation, b.id),
            secret=SECRET,
        )
        session.commit()
    venue = login_as("venue", a)
    pages = {}
    for who in ("known", "stranger"):
        data = export_bytes([sale(f"{who}@prive.example", f"A-{who}")])
        response = venue.post(
            "/imports",
            data={
                "organisation": str(a.id),
                "kind": "sales",
                "skip_invalid": "0",
                "file": (io.BytesIO(data), "ventes.csv"),
            },
        )
        assert response.status_code == 200
        pages[who] = _page_result(response.get_data(as_text=True))
    assert pages["known"] == pages["stranger"]
    assert "Nouveaux pour cet organisme" in pages["known"]
    # the command line's JSON, the same way (another organisation, C, this time)
    make_org("salle-c")
    results = {}
    for who in ("known", "stranger"):
        path = write_csv(tmp_path / f"c-{who}.csv", [sale(f"{who}@prive.example", f"C-{who}")])
        out = runner.invoke(main, args=["import", str(path), "--org", "salle-c", "--json"])
        assert out.exit_code == 0, out.output
        summary = json.loads(out.output.strip().splitlines()[-1])
        results[who] = {
            k: v for k, v in summary.items() if k not in ("batch_id", "filename", "seconds", "rows_per_second")
        }
    assert results["known"] == results["stranger"] and results["known"]["spectators_new"] == 1


def test_an_organisation_insights_use_its_own_sales_and_contacts_only(app, make_org, session, tmp_path):
    a, b = make_org("salle-a"), make_org("salle-b")
    people = [f"p{i:02d}@prive.example" for i in range(14)]
    with app.app_context():
        # B sold them theatre and knows their postal code (H2X); A sold them dance, with no postal code
        import_file(
            session,
            write_csv(
                tmp_path / "b.csv",
                [
                    sale(email, f"B-{i}", **{"Type de spectacle": "Théâtre", "Code postal": "H2X 1Y4"})
                    for i, email in enumerate(people)
                ],
            ),
            session.get(Organisation, b.id),
            secret=SECRET,
        )
        import_file(
            session,
            write_csv(
                tmp_path / "a.csv",
                [
                    sale(
                        email,
                        f"A-{i}",
                        **{
                            "Type de spectacle": "Danse",
                            "Code postal": "",
                            "Titre du spectacle": "Autre",
                            "Date du spectacle": "2017-06-01",
                        },
                    )
                    for i, email in enumerate(people)
                ],
            ),
            session.get(Organisation, a.id),
            secret=SECRET,
        )
        session.commit()
        query = InsightQuery(session, Scope.organisation(session.get(Organisation, a.id)), as_of=dt.date(2017, 7, 1))
        disciplines = query._fact("disciplines")
        assert disciplines["single"][DISCIPLINES.index("theatre")] == 0
        assert disciplines["single"][DISCIPLINES.index("dance")] == len(people)
        fsas = {fsa for fsa, n in query._fact("fsa")}
        assert "H2X" not in fsas


def test_an_unsubscribe_list_reads_the_same_whether_its_person_is_known_or_opted_out_elsewhere(
    app, make_org, session, tmp_path
):
    a, b = make_org("salle-a"), make_org("salle-b")
    header = ["Courriel", "Identifiant client", "Date"]
    with app.app_context():
        org_a, org_b = session.get(Organisation, a.id), session.get(Organisation, b.id)
        import_file(session, write_csv(tmp_path / "b.csv", [sale("known@prive.example", "B-1")]), org_b, secret=SECRET)
        import_file(
            session,
            write_csv(tmp_path / "b-unsub.csv", [["known@prive.example", "", "2017-05-01"]], header=header),
            org_b,
            kind="unsubscribes",
            secret=SECRET,
        )
        session.commit()
        results = {}
        for who in ("known", "stranger"):
            path = write_csv(tmp_path / f"a-{who}.csv", [[f"{who}@prive.example", "", "2017-06-01"]], header=header)
            result = import_file(session, path, org_a, kind="unsubscribes", secret=SECRET)
            session.commit()
            results[who] = {k: v for k, v in result.to_json().items() if k not in ("batch_id", "filename")}
    assert results["known"] == results["stranger"]
