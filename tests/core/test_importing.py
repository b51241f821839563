"""The importer (DESIGN.md §6): formats, idempotence, refusals, rejects, consents, unsubscribes, the upload page."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.cli import main
from core.identity import spectator_key
from core.importing import (
    ImportRefused,
    circumstance_key,
    import_file,
    parse_amount,
    parse_datetime,
    parse_duration,
    parse_time,
    plus_two_years,
)
from core.models import AuditEvent, Consent, Contact, ImportBatch, Show, Spectator, Transaction, Venue

SECRET = "test-district-secret"  # the app fixture's DISTRICT_SECRET

FR_HEADER = [
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
    "Heure du spectacle",
    "Titre du spectacle",
    "Salle",
    "Capacité de la salle",
    "Type de spectacle",
    "Catégorie d'achat",
    "Canal d'achat",
    "Abonné à l'infolettre",
    "Numéro de commande",
    "Identifiant client",
]
EN_HEADER = [
    "Last name",
    "First name",
    "Address",
    "Postal code",
    "Email",
    "Phone",
    "Amount",
    "Tickets",
    "Purchase circumstance",
    "Purchase date",
    "Show date",
    "Show title",
    "Venue",
    "Discipline",
    "Channel",
    "Newsletter",
    "Order ID",
]

# Hélène buys twice in one subscription order; Jean once, named by postal code only; one anonymous sale.
FR_ROWS = [
    [
        "Côté",
        "Hélène",
        "12, rue Émile-Duployé",
        "h2x 1y4",
        "Helene.Cote@Example.org",
        "514 555-1234",
        "12,50 $",
        "2",
        "Plein tarif",
        "15/03/2017",
        "2017-04-01",
        "20h00",
        "Les Misérables",
        "Théâtre Outremont",
        "1 200",
        "Théâtre",
        "Abonnement",
        "Internet",
        "oui",
        "A-100",
        "C1",
    ],
    [
        "Côté",
        "Hélène",
        "12, rue Émile-Duployé",
        "h2x 1y4",
        "Helene.Cote@Example.org",
        "514 555-1234",
        "1\u00a0234,50 $",
        "1",
        "Promotion",
        "2017-03-15 19:30",
        "2017-05-20",
        "20:00",
        "Danse à Montréal",
        "Théâtre Outremont",
        "",
        "Danse",
        "Abonnement",
        "Internet",
        "oui",
        "A-100",
        "C1",
    ],
    [
        "Tremblay",
        "Jean",
        "",
        "H3B 2K5",
        "",
        "",
        "8,00",
        "1",
        "Courtoisie",
        "2017-03-16",
        "2017-04-01",
        "20:00",
        "Les Misérables",
        "Théâtre Outremont",
        "",
        "Théâtre",
        "Achat unique",
        "Guichet",
        "non",
        "",
        "C2",
    ],
    [
        "",
        "",
        "",
        "",
        "",
        "",
        "25,00 $",
        "2",
        "Plein tarif",
        "2017-03-16",
        "2017-04-01",
        "20:00",
        "Les Misérables",
        "Théâtre Outremont",
        "",
        "Théâtre",
        "Achat unique",
        "Guichet",
        "",
        "",
        "",
    ],
]


def write_csv(path: Path, rows, header=FR_HEADER, delimiter=";", encoding="cp1252") -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def counts(session) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model))
        for model in (Transaction, Spectator, Contact, Consent, Show, Venue)
    }


def pilot(runner, *args):
    # The core commands live on the ``pilot`` group rather than on app.cli: invoke that group,
    # bound to the test app by the runner.
    return runner.invoke(main, args=[str(a) for a in args])


def fr_row(**changes) -> list[str]:
    row = dict(zip(FR_HEADER, FR_ROWS[0]))
    row.update(changes)
    return [row[h] for h in FR_HEADER]


# --- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,cents",
    [
        ("12,50 $", 1250),
        ("1 234,50", 123450),
        ("1\u00a0234,50 $", 123450),
        ("1\u202f234,50", 123450),
        ("$12.50", 1250),
        ("12.5", 1250),
        ("12", 1200),
        ("0", 0),
        ("1,234.50", 123450),
        ("1.234,50", 123450),
        ("1,234", 123400),
        ("12,5", 1250),
        ("CAD 7.05", 705),
        (".5", 50),
    ],
)
def test_amounts_become_integer_cents(text, cents):
    assert parse_amount(text) == cents


@pytest.mark.parametrize("text", ["", "abc", "12,345,6", "-5", "1.2.3", "$", "1e3", "12,5,0", "1 2,345"])
def test_bad_amounts_are_refused(text):
    assert parse_amount(text) is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2017-03-15", (dt.datetime(2017, 3, 15), False)),
        ("2017-03-15 19:30", (dt.datetime(2017, 3, 15, 19, 30), True)),
        ("2017-03-15T19:30:05", (dt.datetime(2017, 3, 15, 19, 30, 5), True)),
        ("15/03/2017", (dt.datetime(2017, 3, 15), False)),
        ("15/03/2017 19h30", (dt.datetime(2017, 3, 15, 19, 30), True)),
        ("2017/03/15", (dt.datetime(2017, 3, 15), False)),
        ("31/02/2017", None),
        ("2017-13-01", None),
        ("tomorrow", None),
        ("15/03/17", None),
        ("0001-01-01", None),
    ],
)
def test_dates(text, expected):
    assert parse_datetime(text) == expected


def test_times_durations_and_labels():
    assert parse_time("20h") == dt.time(20) and parse_time("7:30 PM") == dt.time(19, 30)
    assert parse_time("25:00") is None
    assert [parse_duration(t) for t in ("90", "90 min", "1h30", "2 h", "1:15", "long")] == [90, 90, 90, 120, 75, None]
    assert [
        circumstance_key(t)
        for t in (
            "Plein tarif",
            "Prix régulier",
            "Rabais étudiant",
            "PROMO",
            "Gratuit",
            "Billet de courtoisie",
            "Échange",
            "",
        )
    ] == ["regular", "regular", "promotion", "promotion", "complimentary", "complimentary", "other", "other"]
    assert plus_two_years(dt.datetime(2016, 2, 29, 20)) == dt.datetime(2018, 2, 28, 20)


# --- sales through the command line --------------------------------------------------------------


def test_french_export_imports_and_prints_json(runner, make_org, session, tmp_path):
    org = make_org("tnm")
    path = write_csv(tmp_path / "ventes.csv", FR_ROWS)  # Windows-1252, semicolons, decimal commas
    result = pilot(runner, "import", path, "--org", "tnm", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {k: summary[k] for k in ("rows", "imported", "duplicates", "rejected", "anonymous", "spectators_new")} == {
        "rows": 4,
        "imported": 3,
        "duplicates": 0,
        "rejected": 0,
        "anonymous": 1,
        "spectators_new": 2,
    }
    assert summary["errors"] == [] and summary["encoding"] == "cp1252" and summary["delimiter"] == ";"

    txs = session.scalars(select(Transaction).order_by(Transaction.purchased_at, Transaction.amount_cents)).all()
    assert [(t.amount_cents, t.tickets, t.circumstance, t.category, t.channel, t.order_id) for t in txs] == [
        (1250, 2, "regular", "subscription", "web", "A-100"),
        (123450, 1, "promotion", "subscription", "web", "A-100"),
        (800, 1, "complimentary", "single", "box_office", None),
    ]
    assert session.scalar(select(func.sum(Transaction.amount_cents))) == 125500
    helene = session.scalar(
        select(Spectator).where(Spectator.key == spectator_key(SECRET, "e:helene.cote@example.org"))
    )
    assert helene.fsa == "H2X" and txs[0].spectator_id == helene.id
    contact = session.scalar(select(Contact).where(Contact.spectator_id == helene.id))
    assert (
        contact.organisation_id,
        contact.last_name,
        contact.first_name,
        contact.postal_code,
        contact.email,
        contact.customer_id,
    ) == (org.id, "Côté", "Hélène", "H2X1Y4", "helene.cote@example.org", "C1")
    shows = {s.title: s for s in session.scalars(select(Show))}
    assert set(shows) == {"Les Misérables", "Danse à Montréal"}
    assert shows["Les Misérables"].starts_at == dt.datetime(2017, 4, 1, 20)
    assert (shows["Les Misérables"].discipline, shows["Danse à Montréal"].discipline) == ("theatre", "dance")
    venue = session.scalar(select(Venue))
    assert (venue.name, venue.capacity) == ("Théâtre Outremont", 1200)
    assert shows["Danse à Montréal"].venue_id == venue.id
    batch = session.scalar(select(ImportBatch))
    assert (batch.status, batch.filename, batch.rows, batch.imported, batch.anonymous) == (
        "done",
        "ventes.csv",
        4,
        3,
        1,
    )
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "import.sales"))
    assert event.details["imported"] == 3 and event.organisation_id == org.id and event.object_id == str(batch.id)


def test_importing_again_adds_nothing(runner, make_org, session, tmp_path):
    make_org("tnm")
    rows = FR_ROWS[:3] + [FR_ROWS[0]]  # an identical row within the file counts as a duplicate too
    path = write_csv(tmp_path / "ventes.csv", rows)
    first = json.loads(pilot(runner, "import", path, "--org", "tnm", "--json").output)
    assert (first["imported"], first["duplicates"]) == (3, 1)
    before = counts(session)
    second = pilot(runner, "import", path, "--org", "tnm", "--json")
    assert second.exit_code == 0
    summary = json.loads(second.output)
    assert (summary["rows"], summary["duplicates"], summary["imported"], summary["spectators_new"]) == (4, 4, 0, 0)
    session.expire_all()
    assert counts(session) == before


def test_one_bad_row_refuses_the_whole_file(runner, make_org, session, tmp_path):
    org = make_org("tnm")
    rows = [
        fr_row(Adresse="12 rue Émile\nApp. 3"),  # a quoted newline: this record spans lines 2 and 3
        FR_ROWS[2],
        fr_row(**{"Valeur de l'achat": "douze"}),  # line 5
        fr_row(**{"Date du spectacle": "2017-02-30", "Nombre de billets": "0"}),
    ]  # line 6, two errors
    path = write_csv(tmp_path / "ventes.csv", rows)
    before = counts(session)
    result = pilot(runner, "import", path, "--org", "tnm", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.output)
    assert summary["imported"] == 0 and summary["refused"] is True
    assert summary["rows"] == summary["imported"] + summary["duplicates"] + summary["rejected"] + summary["anonymous"]
    assert [(e["line"], e["column"]) for e in summary["errors"]] == [
        (5, "Valeur de l'achat"),
        (6, "Nombre de billets"),
        (6, "Date du spectacle"),
    ]
    assert "douze" not in summary["errors"][0]["reason"]  # line and column name it, never its value (issue 15)
    assert summary["errors_total"] == 3 and summary["invalid_rows"] == 2
    session.expire_all()
    assert counts(session) == before
    # the refusal itself is kept: a batch with its errors and an audit event
    batch = session.scalar(select(ImportBatch))
    assert (batch.status, batch.organisation_id, batch.imported, len(batch.errors)) == ("refused", org.id, 0, 3)
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "import.refused")).object_id == str(batch.id)


def test_a_late_bad_row_undoes_the_batches_already_written(db, make_org, session, tmp_path, monkeypatch):
    import core.importing.common
    import core.importing.validate

    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 2)
    org = make_org("tnm")
    rows = [fr_row(**{"Titre du spectacle": f"Show {i}"}) for i in range(5)] + [fr_row(**{"Date de l'achat": "?"})]
    with pytest.raises(ImportRefused) as refused:
        import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    assert refused.value.result.errors == [
        {"line": 7, "column": "Date de l'achat", "reason": refused.value.result.errors[0]["reason"]}
    ]
    with db.engine.connect() as other:  # written in the caller's open transaction, never committed
        assert other.scalar(select(func.count()).select_from(Transaction)) == 0
    session.rollback()
    assert counts(session) == dict.fromkeys(counts(session), 0)


def test_new_spectators_are_written_with_their_cell_key(db, make_org, session, tmp_path, monkeypatch):
    """The importer writes each new spectator's cell key with its row (no UPDATE of every new
    spectator afterwards): the keys are there before fill_cell_keys runs, and are core.privacy's."""
    import core.importing.pipeline
    from core.privacy import cell_key

    calls = []
    monkeypatch.setattr(core.importing.pipeline, "fill_cell_keys", lambda *args: calls.append(args) or 0)
    org = make_org("tnm")
    import_file(session, write_csv(tmp_path / "v.csv", FR_ROWS), org, secret=SECRET)
    assert calls, "the importer still calls fill_cell_keys for the spectators other paths create"
    spectators = session.execute(select(Spectator.key, Spectator.cell_key)).all()
    assert len(spectators) == 2
    assert all(key_of_cell == cell_key(SECRET, key) for key, key_of_cell in spectators)
    session.rollback()


def test_a_sale_dated_after_the_import_day_is_refused_naming_its_line(runner, make_org, session, tmp_path):
    make_org("tnm")
    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date().isoformat()
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    rows = [fr_row(), FR_ROWS[2], fr_row(**{"Date de l'achat": tomorrow}), fr_row(**{"Date de l'achat": today})]
    path = write_csv(tmp_path / "ventes.csv", rows)
    result = pilot(runner, "import", path, "--org", "tnm", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.output)
    assert summary["imported"] == 0
    assert [(e["line"], e["column"]) for e in summary["errors"]] == [(4, "Date de l'achat")]
    assert (
        "after the day of the import" in summary["errors"][0]["reason"]
        or "postérieure au jour de l'import" in summary["errors"][0]["reason"]
    )


def test_missing_required_column_refuses_the_file(runner, make_org, session, tmp_path):
    make_org("tnm")
    header = [h for h in FR_HEADER if h != "Date de l'achat"]
    rows = [[v for h, v in zip(FR_HEADER, row) if h != "Date de l'achat"] for row in FR_ROWS]
    result = pilot(runner, "import", write_csv(tmp_path / "x.csv", rows, header=header), "--org", "tnm", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.output)
    assert summary["errors"][0]["line"] == 1 and summary["errors"][0]["column"] == "Date de l'achat"
    assert summary["rows"] == summary["rejected"] == 4
    assert counts(session)["transaction"] == 0


def test_skip_invalid_imports_the_good_rows_and_writes_rejects(app, runner, make_org, session, tmp_path):
    make_org("tnm")
    rows = [FR_ROWS[0], fr_row(**{"Valeur de l'achat": "douze", "Adresse courriel": "x@example.org"}), FR_ROWS[2]]
    path = write_csv(tmp_path / "ventes.csv", rows)
    result = pilot(runner, "import", path, "--org", "tnm", "--skip-invalid", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["imported"], summary["rejected"], summary["rows"]) == (2, 1, 3)
    # personal data: kept in the instance folder (offered to the organisation, then purged), not beside the export
    rejects = Path(summary["rejects_file"])
    assert rejects.parent == Path(app.instance_path) / "rejects" and rejects.name.startswith("tnm-")
    assert not (tmp_path / "ventes.rejects.csv").exists()
    with rejects.open(encoding="cp1252", newline="") as fh:
        table = list(csv.reader(fh, delimiter=";"))
    assert table[0] == FR_HEADER + ["reason"]
    assert len(table) == 2 and table[1][:-1] == rows[1]
    assert "Valeur de l'achat" in table[1][-1]
    assert counts(session)["transaction"] == 2


def test_human_summary_on_the_terminal(runner, make_org, tmp_path):
    make_org("tnm")
    result = pilot(runner, "import", write_csv(tmp_path / "v.csv", FR_ROWS), "--org", "tnm")
    assert result.exit_code == 0 and "rows 4: imported 3" in result.output
    assert pilot(runner, "import", tmp_path / "v.csv", "--org", "nobody").exit_code == 1


# --- sales through the service -------------------------------------------------------------------


def test_english_headers_commas_and_bom(app, make_org, session, tmp_path):
    org = make_org("osm")
    rows = [
        [
            "Smith",
            "Ann",
            "1 Main",
            "H2X 1Y4",
            "ann@example.org",
            "",
            "$12.50",
            "1",
            "Regular price",
            "2017-03-15 19:30",
            "2017-04-01 20:00",
            "Symphony No. 9",
            "Maison symphonique",
            "Classical music",
            "Web",
            "yes",
            "O-1",
        ],
        [
            "Smith",
            "Ann",
            "1 Main",
            "H2X 1Y4",
            "ann@example.org",
            "",
            "1,234.50",
            "2",
            "Promotion",
            "2017-03-16",
            "2017-04-02 20:00",
            "Tosca",
            "Maison symphonique",
            "Opera",
            "Phone",
            "no",
            "O-2",
        ],
        [
            "Roy",
            "Luc",
            "",
            "",
            "",
            "(514) 555-0000",
            "12.5",
            "1",
            "Complimentary",
            "2017-03-16",
            "2017-04-02 20:00",
            "Tosca",
            "Maison symphonique",
            "Opéra",
            "Box office",
            "",
            "",
        ],
    ]
    path = write_csv(tmp_path / "sales.csv", rows, header=EN_HEADER, delimiter=",", encoding="utf-8-sig")
    with app.app_context():
        result = import_file(session, path, org)
    session.commit()
    assert (result.rows, result.imported, result.encoding, result.delimiter) == (3, 3, "utf-8-sig", ",")
    txs = session.scalars(select(Transaction).order_by(Transaction.id)).all()
    assert [(t.amount_cents, t.channel, t.circumstance) for t in txs] == [
        (1250, "web", "regular"),
        (123450, "phone", "promotion"),
        (1250, "box_office", "complimentary"),
    ]
    assert {s.discipline for s in session.scalars(select(Show))} == {"classical"}
    luc = session.scalar(select(Contact).where(Contact.last_name == "Roy"))
    luc_key = spectator_key(SECRET, "p:ROY|LUC|5145550000")
    assert session.get(Spectator, luc.spectator_id).key == luc_key


def test_headers_match_whatever_case_accents_and_punctuation(app, make_org, session, tmp_path):
    org = make_org("tnm")
    header = [h.upper().replace("É", "E").replace("'", " ") for h in FR_HEADER]
    path = write_csv(tmp_path / "v.csv", FR_ROWS[:1], header=header, delimiter=",", encoding="utf-8")
    result = import_file(session, path, org, secret=SECRET)
    assert result.imported == 1


def test_anonymous_sales_are_counted_not_pooled(make_org, session, tmp_path):
    org = make_org("tnm")
    anonymous = [
        fr_row(**{"Adresse courriel": "", "Code postal": "", "Téléphone": ""}),  # a name alone
        fr_row(**{"Nom": "", "Prénom": "", "Adresse courriel": ""}),
    ]  # a postal code alone
    result = import_file(session, write_csv(tmp_path / "v.csv", anonymous + FR_ROWS[2:3]), org, secret=SECRET)
    assert (result.rows, result.anonymous, result.imported) == (3, 2, 1)
    assert counts(session)["spectator"] == 1 and counts(session)["transaction"] == 1


def test_unknown_discipline_is_reported(make_org, session, tmp_path):
    org = make_org("tnm")
    rows = [
        fr_row(**{"Type de spectacle": "Arts visuels"}),
        fr_row(**{"Type de spectacle": "Arts visuels", "Titre du spectacle": "Autre"}),
        fr_row(**{"Type de spectacle": "Cirque", "Titre du spectacle": "Cirque"}),
    ]
    result = import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    assert result.unknown_disciplines == ["Arts visuels"]
    assert result.to_json()["unknown_disciplines"] == ["Arts visuels"]
    assert {s.title: s.discipline for s in session.scalars(select(Show))} == {
        "Les Misérables": "other",
        "Autre": "other",
        "Cirque": "circus",
    }


def test_consents_are_derived(make_org, session, tmp_path):
    org = make_org("tnm")
    rows = [
        fr_row(**{"Date de l'achat": "2017-03-15 10:00", "Abonné à l'infolettre": "oui"}),  # subscription, show 04-01
        fr_row(
            **{
                "Date de l'achat": "2017-06-01",
                "Date du spectacle": "2017-11-30",
                "Abonné à l'infolettre": "non",
                "Titre du spectacle": "Dernier",
            }
        ),  # subscription, last show 11-30
        fr_row(
            **{
                "Date de l'achat": "2016-02-29",
                "Catégorie d'achat": "Achat unique",
                "Abonné à l'infolettre": "",
                "Titre du spectacle": "Premier",
            }
        ),
    ]
    import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    consents = {c.basis: c for c in session.scalars(select(Consent))}
    assert set(consents) == {"express", "implied_purchase", "implied_subscription"}
    assert all(c.channel == "email" and c.withdrawn_at is None for c in consents.values())
    assert (consents["express"].given_at, consents["express"].expires_at) == (dt.datetime(2017, 3, 15, 10), None)
    purchase = consents["implied_purchase"]
    assert (purchase.given_at, purchase.expires_at) == (dt.datetime(2016, 2, 29), dt.datetime(2019, 6, 1))
    subscription = consents["implied_subscription"]
    assert subscription.given_at == dt.datetime(2017, 3, 15, 10)
    assert subscription.expires_at == dt.datetime(2019, 11, 30, 20)
    # a later file extends implied consent and never shortens it
    later = [
        fr_row(
            **{
                "Date de l'achat": "2018-01-10",
                "Abonné à l'infolettre": "",
                "Titre du spectacle": "Suite",
                "Catégorie d'achat": "",
            }
        )
    ]
    import_file(session, write_csv(tmp_path / "w.csv", later), org, secret=SECRET)
    session.expire_all()
    consents = {c.basis: c for c in session.scalars(select(Consent))}
    assert consents["implied_purchase"].expires_at == dt.datetime(2020, 1, 10)
    assert consents["implied_purchase"].given_at == dt.datetime(2016, 2, 29)
    assert consents["implied_subscription"].expires_at == dt.datetime(2019, 11, 30, 20)


def test_an_order_may_span_rows_and_batches(make_org, session, tmp_path, monkeypatch):
    import core.importing.common
    import core.importing.validate

    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 2)
    org = make_org("tnm")
    rows = [fr_row(**{"Titre du spectacle": f"Show {i}", "Numéro de commande": "A-1"}) for i in range(5)]
    rows.append(rows[0])  # duplicate of a row in an earlier batch
    result = import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    assert (result.imported, result.duplicates, result.spectators_new) == (5, 1, 1)
    assert session.scalar(select(func.count(func.distinct(Transaction.order_id)))) == 1
    assert counts(session)["contact"] == 1 and counts(session)["consent"] == 3


# --- unsubscribes --------------------------------------------------------------------------------


def test_unsubscribes_apply_to_the_organisations_own_contacts(app, make_org, session, tmp_path):
    """A venue's unsubscribe list withdraws its own contacts' consent; it opts no one out of the
    district (that takes an unsubscribe answering a district campaign received through the venue:
    tests/experiments/test_services.py) and changes nothing for people it does not hold (issue 15)."""
    tnm, osm = make_org("tnm"), make_org("osm")
    import_file(session, write_csv(tmp_path / "v.csv", FR_ROWS), tnm, secret=SECRET)
    import_file(session, write_csv(tmp_path / "w.csv", FR_ROWS[:1]), osm, secret=SECRET)
    path = write_csv(
        tmp_path / "desabonnements.csv",
        [
            ["HELENE.COTE@example.org", "", "2017-05-01"],
            ["", "C2", ""],  # Jean, by customer ID
            ["nouveau@example.org", "", "2017-05-02"],  # not a contact of tnm: nothing to do
            ["", "C999", ""],  # nobody
            ["helene.cote@example.org", "", "2017-05-03"],
        ],
        header=["Courriel", "Identifiant client", "Date"],
    )
    with app.app_context():
        result = import_file(session, path, tnm, kind="unsubscribes", secret=SECRET)
    # an unsubscribe list makes no contact record: nobody is new to the organisation
    assert (result.rows, result.imported, result.duplicates, result.anonymous, result.spectators_new) == (5, 2, 1, 2, 0)
    helene_key = spectator_key(SECRET, "e:helene.cote@example.org")
    helene = session.scalar(select(Spectator).where(Spectator.key == helene_key))
    assert helene.opted_out_at is None  # no district campaign answered: not a district-wide opt-out
    by_org = {}
    for consent, contact in session.execute(
        select(Consent, Contact).join(Contact).where(Contact.spectator_id == helene.id)
    ):
        by_org.setdefault(contact.organisation_id, set()).add(consent.withdrawn_at)
    # this organisation's consents are withdrawn; the other's stay
    assert by_org[tnm.id] == {dt.datetime(2017, 5, 1)} and by_org[osm.id] == {None}
    jean = session.scalar(select(Contact).where(Contact.customer_id == "C2"))
    assert session.get(Spectator, jean.spectator_id).opted_out_at is None
    assert all(
        c.withdrawn_at is not None for c in session.scalars(select(Consent).where(Consent.contact_id == jean.id))
    )
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "import.unsubscribes")).details["imported"] == 2
    # an address tnm does not hold: no spectator made, nothing recorded against them anywhere
    assert (
        session.scalar(select(Spectator).where(Spectator.key == spectator_key(SECRET, "e:nouveau@example.org"))) is None
    )
    later = [fr_row(**{"Adresse courriel": "nouveau@example.org", "Nom": "Nouveau", "Date de l'achat": "2017-06-01"})]
    import_file(session, write_csv(tmp_path / "x.csv", later), osm, secret=SECRET)
    newcomer = session.scalar(select(Contact).where(Contact.email == "nouveau@example.org"))
    assert {c.withdrawn_at for c in session.scalars(select(Consent).where(Consent.contact_id == newcomer.id))} == {None}


def test_unsubscribes_need_an_email_or_customer_column(make_org, session, tmp_path):
    org = make_org("tnm")
    with pytest.raises(ImportRefused) as refused:
        import_file(
            session, write_csv(tmp_path / "u.csv", [["x"]], header=["Nom"]), org, kind="unsubscribes", secret=SECRET
        )
    assert refused.value.result.errors[0]["line"] == 1


def test_a_sales_export_is_never_taken_for_an_unsubscribe_list(make_org, session, tmp_path):
    org = make_org("tnm")
    with pytest.raises(ImportRefused) as refused:
        import_file(session, write_csv(tmp_path / "v.csv", FR_ROWS), org, kind="unsubscribes", secret=SECRET)
    assert refused.value.result.errors[0]["column"] == "Valeur de l'achat"
    session.rollback()
    assert session.scalar(select(func.count()).where(Spectator.opted_out_at.is_not(None))) == 0


# --- the upload page -----------------------------------------------------------------------------


def upload(client, org, content: bytes, skip_invalid="0", kind="sales"):
    return client.post(
        "/imports",
        data={
            "organisation": str(org.id),
            "kind": kind,
            "skip_invalid": skip_invalid,
            "file": (io.BytesIO(content), "ventes.csv"),
        },
        content_type="multipart/form-data",
    )


def test_a_venue_user_imports_for_its_own_organisation_only(login_as, make_org, session, tmp_path):
    own, other = make_org("tnm"), make_org("osm")
    client = login_as("venue", own)
    content = write_csv(tmp_path / "v.csv", FR_ROWS).read_bytes()
    assert client.get("/imports").status_code == 200
    response = upload(client, own, content)
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200 and "Résumé de l'import" in page
    assert session.scalar(select(func.count()).select_from(Transaction)) == 3
    assert upload(client, other, content).status_code == 404
    assert session.scalar(select(func.count()).where(Transaction.organisation_id == other.id)) == 0


def test_the_upload_page_lists_errors_in_french_and_keeps_rejects_private(login_as, make_org, session, tmp_path, app):
    org = make_org("tnm")
    client = login_as("venue", org)
    content = write_csv(tmp_path / "v.csv", [FR_ROWS[0], fr_row(**{"Nombre de billets": "deux"})]).read_bytes()
    page = html.unescape(upload(client, org, content).get_data(as_text=True))
    assert "Fichier refusé" in page and "Nombre de billets" in page and "nombre entier positif" in page
    assert session.scalar(select(func.count()).select_from(Transaction)) == 0
    assert session.scalar(select(ImportBatch.status)) == "refused"
    folder = Path(app.instance_path) / "rejects"
    before = set(folder.glob("*.rejects.csv"))
    page = html.unescape(upload(client, org, content, skip_invalid="1").get_data(as_text=True))
    assert "Lignes mises de côté à cause d'erreurs, non importées : 1." in page
    assert session.scalar(select(func.count()).select_from(Transaction)) == 1
    rejects = set(folder.glob("tnm-*.rejects.csv")) - before
    assert len(rejects) == 1 and str(rejects.pop()) not in page


# --- any input: a result or a clear refusal, never a crash or a partial write --------------------

_cells = st.one_of(
    st.sampled_from(
        FR_ROWS[0]
        + FR_ROWS[2]
        + [
            "",
            "0",
            "-3",
            "9" * 30,
            "31/02/2017",
            "x" * 400,
            "a@b",
            "\x00",
            "1\u202f000,5",
            "2017-03-15T25:00",
            '"',
            "\r\n",
        ]
    ),
    st.text(max_size=12),
)
_UNSUBSCRIBE_HEADER = ["Courriel", "Identifiant client", "Date"]
_UNSUBSCRIBE_ROWS = [["a@example.org", "", "2017-05-01"], ["", "C1", ""], ["B@Example.org", "C2", "15/05/2017"]]


@st.composite
def _exports(draw) -> bytes:
    """Mostly plausible exports with a few cells broken, in any delimiter and encoding."""
    header, base = draw(
        st.sampled_from(
            [
                (FR_HEADER, FR_ROWS),
                (EN_HEADER, [FR_ROWS[0][: len(EN_HEADER)]]),
                (_UNSUBSCRIBE_HEADER, _UNSUBSCRIBE_ROWS),
            ]
        )
    )
    if draw(st.integers(0, 9)) == 0:
        header = draw(st.lists(st.sampled_from(FR_HEADER + EN_HEADER + ["?", ""]), max_size=8))
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        if (
            header is not FR_HEADER
            and header is not EN_HEADER
            and header is not _UNSUBSCRIBE_HEADER
            or draw(st.integers(0, 5)) == 0
        ):
            rows.append(draw(st.lists(_cells, max_size=len(header) + 2)))
            continue
        row = list(draw(st.sampled_from(base)))
        for index in draw(st.sets(st.integers(0, len(row) - 1), max_size=2)):
            row[index] = draw(_cells)
        rows.append(row)
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\r\n", "\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding, "replace")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(_exports(), st.binary(max_size=300), _exports().map(lambda b: b[: len(b) // 2] + b"\xff\x00")),
    skip_invalid=st.booleans(),
    kind=st.sampled_from(["sales", "unsubscribes"]),
)
def test_any_input_gives_a_result_or_a_refusal(db, make_org, session, tmp_path, content, skip_invalid, kind):
    org = session.merge(_org(make_org))
    path = tmp_path / "any.csv"
    path.write_bytes(content)
    try:
        result = import_file(
            session,
            path,
            org,
            kind=kind,
            skip_invalid=skip_invalid,
            secret=SECRET,
            rejects_path=tmp_path / "rejects.csv",
        )
    except ImportRefused as refused:
        result = refused.result
        assert result.errors and result.imported == 0
        assert all(
            isinstance(e["line"], int)
            and e["line"] >= 1
            and isinstance(e["column"], str)
            and isinstance(e["reason"], str)
            and e["reason"]
            for e in result.errors
        )
    else:
        assert skip_invalid or result.rejected == 0
    assert result.rows == result.imported + result.duplicates + result.rejected + result.anonymous
    with db.engine.connect() as other:  # nothing was committed behind the caller's back
        assert other.scalar(select(func.count()).select_from(Transaction)) == 0
        assert other.scalar(select(func.count()).select_from(Spectator)) == 0
    session.rollback()
    assert counts(session)["transaction"] == 0


_ORG = {}


def _org(make_org):
    """One organisation for all the examples of the property test (hypothesis reuses the fixtures)."""
    if make_org not in _ORG:
        _ORG.clear()
        _ORG[make_org] = make_org("prop")
    return _ORG[make_org]


# --- the batch parser: column-wise fast path, row-by-row for what it cannot vouch for -------------


def _snapshot(session, org) -> dict:
    """What an import of ``org`` wrote, without ids."""
    txs = session.execute(
        select(
            Transaction.purchased_at,
            Transaction.amount_cents,
            Transaction.tickets,
            Transaction.circumstance,
            Transaction.category,
            Transaction.channel,
            Transaction.promo_code,
            Transaction.order_id,
            Show.title,
            Show.starts_at,
            Show.discipline,
            Spectator.key,
            Spectator.fsa,
        )
        .join(Show, Show.id == Transaction.show_id)
        .join(Spectator)
        .where(Transaction.organisation_id == org.id)
        .order_by(Transaction.id)
    ).all()
    contacts = session.execute(
        select(
            Spectator.key,
            Contact.last_name,
            Contact.first_name,
            Contact.address,
            Contact.postal_code,
            Contact.email,
            Contact.phone,
            Contact.customer_id,
        )
        .join(Spectator)
        .where(Contact.organisation_id == org.id)
    ).all()
    consents = session.execute(
        select(Spectator.key, Consent.basis, Consent.given_at, Consent.expires_at, Consent.withdrawn_at)
        .join(Contact, Contact.id == Consent.contact_id)
        .join(Spectator)
        .where(Contact.organisation_id == org.id)
    ).all()
    return {
        "transactions": [tuple(t) for t in txs],
        "contacts": sorted(tuple(c) for c in contacts),
        "consents": sorted(tuple(c) for c in consents),
    }


def _varied_rows() -> list[list[str]]:
    rows = [list(r) for r in FR_ROWS]
    for i in range(12):
        rows.append(
            fr_row(
                **{
                    "Adresse courriel": f"p{i % 5}@example.org",
                    "Valeur de l'achat": f"{i},5{i % 10} $",
                    "Date de l'achat": f"0{1 + i % 9}/03/2017" if i % 2 else f"2017-02-0{1 + i % 9} 1{i % 10}:30",
                    "Titre du spectacle": f"Titre  {i % 3}",
                    "Heure du spectacle": "" if i % 4 else "19h",
                    "Catégorie d'achat": ["Abonnement", "Achat unique", ""][i % 3],
                    "Abonné à l'infolettre": ["oui", "", "non"][i % 3],
                    "Adresse": "" if i % 2 else "1 rue X",
                    "Numéro de commande": f"O-{i // 2}",
                }
            )
        )
    return rows


def test_the_row_by_row_path_writes_what_the_fast_path_writes(make_org, session, tmp_path, monkeypatch):
    import core.importing.common
    import core.importing.validate

    fast, slow = make_org("fast"), make_org("slow")
    path = write_csv(tmp_path / "v.csv", _varied_rows())
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 4)
    first = import_file(session, path, fast, secret=SECRET)
    memo = core.importing.validate._SalesParser._memo

    def suspicious(self):  # the fast path vouches for nothing: every row goes through parse()
        caches = memo(self)
        caches["amount"] = core.importing.validate._Cache(lambda text: core.importing.validate._BAD)
        return caches

    monkeypatch.setattr(core.importing.validate._SalesParser, "_memo", suspicious)
    second = import_file(session, path, slow, secret=SECRET)
    assert (
        (first.rows, first.imported, first.anonymous, first.duplicates)
        == (second.rows, second.imported, second.anonymous, second.duplicates)
        == (16, 15, 1, 0)
    )
    assert _snapshot(session, fast) == _snapshot(session, slow)
    assert len(_snapshot(session, fast)["consents"]) > 5


def test_bad_rows_are_reported_in_order_across_batches(make_org, session, tmp_path, monkeypatch):
    import core.importing.common
    import core.importing.validate

    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 3)
    org = make_org("tnm")
    rows = [
        FR_ROWS[0],
        fr_row(**{"Valeur de l'achat": "douze", "Nombre de billets": "0"}),  # line 3: two errors
        FR_ROWS[3],  # anonymous
        [*FR_ROWS[2], "", " "],  # blank extra cells: fine
        FR_ROWS[2][:5],  # line 6: too few fields
        fr_row(**{"Nom": "x" * 201, "Date du spectacle": "31/02/2017"}),  # line 7: two errors
        fr_row(**{"Heure du spectacle": "25h", "Titre du spectacle": "Autre"}),  # line 8
        fr_row(**{"Titre du spectacle": "Encore", "Adresse courriel": "a@b.ca"}),  # valid
        fr_row(**{"Titre du spectacle": "Encore", "Adresse courriel": "a@@b"}),  # line 10: a malformed e-mail
    ]
    path = write_csv(tmp_path / "v.csv", rows)
    with pytest.raises(ImportRefused) as refused:
        import_file(session, path, org, secret=SECRET)
    result = refused.value.result
    assert [(e["line"], e["column"]) for e in result.errors] == [
        (3, "Valeur de l'achat"),
        (3, "Nombre de billets"),
        (6, ""),
        (7, "Nom"),
        (7, "Date du spectacle"),
        (8, "Heure du spectacle"),
        (10, "Adresse courriel"),
    ]
    assert (result.rows, result.invalid_rows, result.rejected, result.imported) == (9, 5, 9, 0)
    session.rollback()
    kept = import_file(session, path, org, secret=SECRET, skip_invalid=True, rejects_path=tmp_path / "r.csv")
    assert (kept.rows, kept.imported, kept.anonymous, kept.rejected, kept.duplicates) == (9, 3, 1, 5, 0)
    with open(tmp_path / "r.csv", encoding="cp1252", newline="") as fh:
        rejected = list(csv.reader(fh, delimiter=";"))
    assert [r[0] for r in rejected[1:]] == ["Côté", "Tremblay", "x" * 201, "Côté", "Côté"]
    assert rejected[1][-1].startswith("Valeur de l'achat: ")


# --- e-mails and postal codes (DESIGN.md §6): refused with their line, column and reason ---------

EMAIL_REASON = "Not a valid e-mail address: expected one @ and a domain, such as name@example.ca."
POSTAL_REASON = (
    "Not a postal code: expected a Canadian code such as H2X 1Y4, or a foreign one such as 10001, 75001 or SW1A 1AA."
)


@pytest.mark.parametrize(
    "email",
    [
        "x@@example",
        "x@@example.org",
        "x@example",
        "jean.@example.org",
        "a..b@example.org",
        "x@exa_mple.org",
        "x@-example.org",
        "x@example.c",
    ],
)
def test_a_malformed_email_refuses_the_file_with_its_line_and_column(make_org, session, tmp_path, email):
    org = make_org("tnm")
    rows = [FR_ROWS[0], fr_row(**{"Adresse courriel": email}), FR_ROWS[2]]
    with pytest.raises(ImportRefused) as refused:
        import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    session.rollback()
    assert refused.value.result.errors == [{"line": 3, "column": "Adresse courriel", "reason": EMAIL_REASON}]
    assert counts(session)["transaction"] == 0


@pytest.mark.parametrize("code", ["ZZZ 999", "H2X 1Y4Z", "12", "ABCDEFG", "H2X-1Y4-5", "Z"])
def test_a_malformed_postal_code_refuses_the_file_with_its_line_and_column(make_org, session, tmp_path, code):
    org = make_org("tnm")
    rows = [FR_ROWS[0], FR_ROWS[2], fr_row(**{"Code postal": code, "Adresse courriel": "autre@example.org"})]
    with pytest.raises(ImportRefused) as refused:
        import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    session.rollback()
    assert refused.value.result.errors == [{"line": 4, "column": "Code postal", "reason": POSTAL_REASON}]
    assert counts(session)["transaction"] == 0


def test_canadian_partial_and_foreign_postal_codes_are_kept(make_org, session, tmp_path):
    """Festival audiences come from elsewhere too: a foreign code is kept as it is (normalised), with no FSA."""
    org = make_org("tnm")
    codes = {
        "h2x 1y4": ("H2X1Y4", "H2X"),
        "H3B": ("H3B", "H3B"),
        "10001": ("10001", None),
        "90210-1234": ("902101234", None),
        "SW1A 1AA": ("SW1A1AA", None),
        "75001": ("75001", None),
        "1012 AB": ("1012AB", None),
        "D02 X285": ("D02X285", None),
        "F-75001": ("F75001", None),
        "VLT 1117": ("VLT1117", None),
        "C1425DKC": ("C1425DKC", None),
    }
    rows = [
        fr_row(**{"Code postal": code, "Adresse courriel": f"visiteur{i}@example.org"}) for i, code in enumerate(codes)
    ]
    result = import_file(session, write_csv(tmp_path / "v.csv", rows), org, secret=SECRET)
    assert (result.imported, result.rejected) == (len(codes), 0)
    stored = dict(session.execute(select(Contact.email, Contact.postal_code)).all())
    fsas = dict(session.execute(select(Contact.email, Spectator.fsa).join(Spectator)).all())
    for i, (normalised, fsa) in enumerate(codes.values()):
        assert (stored[f"visiteur{i}@example.org"], fsas[f"visiteur{i}@example.org"]) == (normalised, fsa)


def test_the_command_line_reports_bad_emails_and_postal_codes(runner, make_org, session, tmp_path):
    make_org("tnm")
    rows = [
        FR_ROWS[0],
        fr_row(**{"Adresse courriel": "x@@example"}),
        fr_row(**{"Code postal": "ZZZ 999", "Adresse courriel": "y@example.org"}),
    ]
    result = pilot(runner, "import", write_csv(tmp_path / "v.csv", rows), "--org", "tnm", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.output)
    assert summary["errors"] == [
        {"line": 3, "column": "Adresse courriel", "reason": EMAIL_REASON},
        {"line": 4, "column": "Code postal", "reason": POSTAL_REASON},
    ]
    assert (summary["imported"], summary["invalid_rows"]) == (0, 2)


def test_an_unsubscribe_list_with_a_malformed_email_is_refused(make_org, session, tmp_path):
    org = make_org("tnm")
    path = write_csv(
        tmp_path / "desabo.csv", [["a@example.org", ""], ["x@@example", "2017-05-01"]], header=["Courriel", "Date"]
    )
    with pytest.raises(ImportRefused) as refused:
        import_file(session, path, org, kind="unsubscribes", secret=SECRET)
    session.rollback()
    assert refused.value.result.errors == [{"line": 3, "column": "Courriel", "reason": EMAIL_REASON}]


@pytest.mark.parametrize(
    "lang,email_reason,postal_reason",
    [
        (
            "fr",
            "Adresse courriel invalide : il faut un seul @ et un domaine",
            "Code postal invalide : il faut un code canadien comme H2X 1Y4",
        ),
        (
            "en",
            "Not a valid e-mail address: expected one @ and a domain",
            "Not a postal code: expected a Canadian code",
        ),
    ],
)
def test_the_upload_page_gives_the_reasons_in_the_users_language(
    login_as, make_org, session, tmp_path, lang, email_reason, postal_reason
):
    org = make_org("tnm")
    client = login_as("venue", org)
    client.get(f"/imports?lang={lang}")
    rows = [
        FR_ROWS[0],
        fr_row(**{"Adresse courriel": "x@@example"}),
        fr_row(**{"Code postal": "ZZZ 999", "Adresse courriel": "y@example.org"}),
    ]
    page = html.unescape(upload(client, org, write_csv(tmp_path / "v.csv", rows).read_bytes()).get_data(as_text=True))
    assert f'<td class="num">3</td><td>Adresse courriel</td><td>{email_reason}' in page
    assert f'<td class="num">4</td><td>Code postal</td><td>{postal_reason}' in page
    assert session.scalar(select(func.count()).select_from(Transaction)) == 0


# --- a refused file: what to do next, the first errors and the count of the rest ------------------


@pytest.mark.parametrize(
    "lang,expected",
    [
        (
            "fr",
            "Rien n'a été importé : 105 lignes comportent des erreurs. Corrigez-les et importez le fichier de "
            "nouveau, ou importez seulement les lignes valides (ignorer les lignes invalides).",
        ),
        (
            "en",
            "Nothing was imported: 105 lines have errors. Fix them and import the file again, or import the valid "
            "lines only (skip invalid).",
        ),
    ],
)
def test_a_refused_file_says_plainly_what_to_do(login_as, make_org, session, tmp_path, lang, expected):
    org = make_org("tnm")
    client = login_as("venue", org)
    client.get(f"/imports?lang={lang}")
    rows = [FR_ROWS[0]] + [
        fr_row(**{"Nombre de billets": "deux", "Adresse courriel": f"p{i}@example.org"}) for i in range(105)
    ]
    page = html.unescape(upload(client, org, write_csv(tmp_path / "v.csv", rows).read_bytes()).get_data(as_text=True))
    assert expected in page
    # the first 100 errors with their line, column and reason, then how many more
    assert page.count("<td>Nombre de billets</td>") == 100
    assert '<td class="num">3</td>' in page and '<td class="num">102</td>' in page
    assert '<td class="num">103</td>' not in page
    assert ("Erreurs non listées ici : 5." if lang == "fr" else "Errors not listed here: 5.") in page
    # the page of the refused batch says the same
    batch_id = session.scalar(select(ImportBatch.id).where(ImportBatch.status == "refused"))
    page = html.unescape(client.get(f"/imports/{batch_id}").get_data(as_text=True))
    rest = "Erreurs non listées ici : 5." if lang == "fr" else "Errors not listed here: 5."
    assert expected in page and rest in page
    assert ("Refusé" if lang == "fr" else "Refused") in page


def test_a_single_bad_line_and_a_bad_header_are_worded_for_what_they_are(login_as, make_org, tmp_path):
    org = make_org("tnm")
    client = login_as("venue", org)
    client.get("/imports?lang=en")
    page = html.unescape(
        upload(
            client, org, write_csv(tmp_path / "v.csv", [fr_row(**{"Nombre de billets": "0"})]).read_bytes()
        ).get_data(as_text=True)
    )
    assert "Nothing was imported: 1 line has errors. Fix it and import the file again" in page
    header = [h for h in FR_HEADER if h != "Date de l'achat"]
    rows = [[v for h, v in zip(FR_HEADER, FR_ROWS[0]) if h != "Date de l'achat"]]
    page = html.unescape(
        upload(client, org, write_csv(tmp_path / "v.csv", rows, header=header).read_bytes()).get_data(as_text=True)
    )
    assert "Nothing was imported: the file itself has a problem, shown below." in page
    assert "<td>Date de l'achat</td><td>This required column is missing." in page


# --- the organisation to import for ----------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_must_choose_the_organisation_of_an_import(login_as, make_org, session, tmp_path, role):
    make_org("aaa-premiere")
    org = make_org("tnm")
    client = login_as(role)
    page = client.get("/imports?lang=en").get_data(as_text=True)
    select_html = page[page.index('<select id="organisation"') :]
    select_html = select_html[: select_html.index("</select>")]
    assert "required" in select_html
    # the first option, chosen by default, is no organisation at all
    assert select_html.index("<option") == select_html.index('<option value="">Choose an organisation…</option>')
    assert " selected" not in select_html and f'value="{org.id}"' in select_html
    content = write_csv(tmp_path / "v.csv", FR_ROWS).read_bytes()
    response = client.post(
        "/imports",
        data={"organisation": "", "kind": "sales", "skip_invalid": "0", "file": (io.BytesIO(content), "ventes.csv")},
    )
    assert response.status_code == 200
    assert "Choose the organisation whose export this is." in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(ImportBatch)) == 0
    assert upload(client, org, content).status_code == 200
    assert session.scalar(select(ImportBatch.organisation_id)) == org.id


def test_a_venue_user_imports_for_its_fixed_organisation(login_as, make_org):
    make_org("aaa-premiere")
    org = make_org("tnm")
    client = login_as("venue", org)
    page = client.get("/imports?lang=en").get_data(as_text=True)
    select_html = page[page.index('<select id="organisation"') :]
    select_html = select_html[: select_html.index("</select>")]
    assert select_html.count("<option") == 1 and f'value="{org.id}"' in select_html
    assert "Choose an organisation" not in select_html


# --- the rejected rows: downloaded by their organisation, logged, purged -------------------------

PAYLOAD = '=HYPERLINK("http://evil.example","x")'


def _import_skipping(client, org, tmp_path, session) -> ImportBatch:
    rows = [
        FR_ROWS[0],
        fr_row(**{"Nombre de billets": "deux", "Nom": PAYLOAD, "Adresse courriel": "rejet@example.org"}),
    ]
    response = upload(client, org, write_csv(tmp_path / "v.csv", rows).read_bytes(), skip_invalid="1")
    assert response.status_code == 200
    batch = session.scalar(select(ImportBatch).order_by(ImportBatch.id.desc()).limit(1))
    assert batch.status == "done" and batch.rejected == 1
    return batch


def test_the_organisation_downloads_its_rejected_rows_and_each_download_is_logged(
    app, login_as, make_user, make_org, session, tmp_path
):
    from tests.test_hardening import dangerous_cells

    org = make_org("tnm")
    uploader = login_as("venue", org)
    uploader.get("/imports?lang=en")
    batch = _import_skipping(uploader, org, tmp_path, session)
    link = f"/imports/{batch.id}/rejects.csv"
    result_page = upload(
        uploader,
        org,
        write_csv(tmp_path / "w.csv", [FR_ROWS[2], fr_row(**{"Nombre de billets": "0"})]).read_bytes(),
        skip_invalid="1",
    ).get_data(as_text=True)
    assert "/rejects.csv" in result_page  # the summary after the upload links to the download
    page = html.unescape(uploader.get(f"/imports/{batch.id}").get_data(as_text=True))
    assert link in page and "Download the rows set aside (1), with their reasons (CSV)" in page
    colleague = login_as("venue", org)
    for client in (uploader, colleague):
        response = client.get(link)
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Disposition"] == 'attachment; filename="ventes-rejects.csv"'
        table = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"), newline=""), delimiter=";"))
        assert table[0] == FR_HEADER + ["reason"]
        assert len(table) == 2 and table[1][0] == "'" + PAYLOAD  # neutralised for spreadsheets
        assert table[1][4] == "rejet@example.org" and "Nombre de billets" in table[1][-1]
        assert dangerous_cells(response.data) == []
    downloads = session.scalars(select(AuditEvent).where(AuditEvent.action == "import.rejects_download")).all()
    assert [(e.user_id, e.organisation_id, e.object_id) for e in downloads] == [
        (uploader.user.id, org.id, str(batch.id)),
        (colleague.user.id, org.id, str(batch.id)),
    ]


def test_rejected_rows_are_a_404_for_everyone_but_the_organisation(app, login_as, make_org, session, tmp_path):
    org, other = make_org("tnm"), make_org("osm")
    batch = _import_skipping(login_as("venue", org), org, tmp_path, session)
    link = f"/imports/{batch.id}/rejects.csv"
    outsider = login_as("venue", other)
    assert outsider.get(f"/imports/{batch.id}").status_code == 404
    assert outsider.get(link).status_code == 404
    for role in ("staff", "admin"):  # pooled roles see the batch, never the people in it
        client = login_as(role)
        page = html.unescape(client.get(f"/imports/{batch.id}?lang=en").get_data(as_text=True))
        assert link not in page and "for the organisation's own users" in page
        assert client.get(link).status_code == 404
    assert login_as("evaluator").get(link).status_code == 403
    anonymous = app.test_client().get(link)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert session.scalar(select(func.count()).where(AuditEvent.action == "import.rejects_download")) == 0
    # staff importing for a venue had the file in hand: they get their own import's rejected rows back
    staff = login_as("staff")
    own = _import_skipping(staff, org, tmp_path, session)
    assert staff.get(f"/imports/{own.id}/rejects.csv").status_code == 200
    assert staff.get(link).status_code == 404


def test_rejected_rows_are_purged_after_the_retention_period(app, db, login_as, make_org, session, tmp_path):
    import os

    from core.models import utcnow
    from core.rejects import rejects_folder
    from core.scheduler import registered_jobs, run_job

    assert "imports.purge_rejects" in registered_jobs(app)
    org = make_org("tnm")
    client = login_as("venue", org)
    client.get("/imports?lang=en")
    old = _import_skipping(client, org, tmp_path, session)
    recent = _import_skipping(client, org, tmp_path, session)
    old_file, recent_file = Path(old.summary["rejects_file"]), Path(recent.summary["rejects_file"])
    assert old_file.exists() and recent_file.exists()
    # the first import was made 31 days ago (retention: 30 days)
    days_ago = utcnow() - dt.timedelta(days=31)
    old.created_at = old.finished_at = days_ago
    session.commit()
    old_time = days_ago.replace(tzinfo=dt.timezone.utc).timestamp()
    os.utime(old_file, (old_time, old_time))
    # files no batch points to (an import that never committed): an old one and a fresh one
    stale, fresh = rejects_folder(app) / "tnm-stale.rejects.csv", rejects_folder(app) / "tnm-fresh.rejects.csv"
    stale.write_text("Nom;reason\r\nX;y\r\n")
    fresh.write_text("Nom;reason\r\nX;y\r\n")
    stale_time = (dt.datetime.now() - dt.timedelta(days=40)).timestamp()
    os.utime(stale, (stale_time, stale_time))
    # past its retention period, it is no longer offered, even before the purge runs
    assert client.get(f"/imports/{old.id}/rejects.csv").status_code == 404
    assert client.get(f"/imports/{recent.id}/rejects.csv").status_code == 200

    run = run_job(app, "imports.purge_rejects", runner="cli")
    assert run.status == "success", run.error
    assert run.summary == {"purged": 1, "orphans": 1}
    assert not old_file.exists() and not stale.exists()
    assert recent_file.exists() and fresh.exists()
    session.expire_all()
    old, recent = session.get(ImportBatch, old.id), session.get(ImportBatch, recent.id)
    assert old.summary["rejects_file"] is None and old.summary["rejects_purged_at"]
    assert recent.summary["rejects_file"] == str(recent_file)
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "import.rejects_purge").order_by(AuditEvent.id)
    ).all()
    assert [(e.object_type, e.object_id, e.organisation_id) for e in events] == [
        ("import_batch", str(old.id), org.id),
        ("rejects_folder", None, None),
    ]
    page = html.unescape(client.get(f"/imports/{old.id}").get_data(as_text=True))
    assert "The rows set aside were deleted on" in page and f"/imports/{old.id}/rejects.csv" not in page
    # idempotent: nothing more to do
    assert run_job(app, "imports.purge_rejects", runner="cli").summary == {"purged": 0, "orphans": 0}
    fresh.unlink()
