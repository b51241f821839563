"""A campaign from launch to lift report in a real browser: staff launch it, a venue downloads its list,
later sales are imported, an evaluator reads the report in French and in English."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from sqlalchemy import func, select

from campaigns.services import make_arms
from core.importing import import_file
from core.scheduler import run_job
from experiments.models import Experiment, Outcome, Recipient
from tests.browser.conftest import log_in
from tests.campaigns.helpers import SECRET
from tests.experiments.test_reports import set_k
from tests.experiments.test_services import ready_campaign

pytestmark = pytest.mark.browser

HEADER = [
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
    "Code promo",
    "Numéro de commande",
]


def text_of(page, selector: str) -> str:
    """The visible text, no-break and narrow spaces as plain ones."""
    return page.inner_text(selector).replace("\u00a0", " ").replace("\u202f", " ")


def log_out(page) -> None:
    page.click("header button.link")
    page.wait_for_url("**/login")


def test_launch_download_import_and_read_the_report(page, session, make_user, app, tmp_path, monkeypatch):
    set_k(session, 3)
    district = ready_campaign(session, per_org=24, shared=4, arms=make_arms(50, [50]))
    session.commit()
    alpha, beta, gamma = district.orgs
    campaign = district.campaign
    staff = make_user("staff", email="equipe@quartier.example")
    venue = make_user("venue", alpha, email="approbation@alpha.example")
    evaluator = make_user("evaluator", email="evaluation@quartier.example")

    # staff: the campaign page links to the launch, which asks for a confirmation
    log_in(page, staff.email)
    page.goto(f"/campaigns/{campaign.id}")
    page.click("text=Lancer…")
    assert "Le lancement est irréversible" in page.inner_text("main")
    page.click("button.primary")
    assert "Cochez la case pour confirmer." in page.inner_text("main")
    page.check("#confirm")
    page.click("button.primary")
    assert "Campagne lancée" in page.inner_text("main")
    assert "Rapport de lift" in page.inner_text("h1")
    # launch day: no sale after the launch imported yet, an explanation instead of a table of zeros
    waiting = text_of(page, "section:has(#h-waiting)")
    assert "Aucune vente postérieure au lancement importée pour l'instant" in waiting
    assert "chaque minute" in waiting and "Importer un export de billetterie" in waiting
    assert "appariés pour la première fois" in text_of(page, "#matching-pending")  # by the job, not the launch
    assert page.locator("#h-metrics").count() == 0 and page.locator("#h-health").count() == 1
    assert page.locator("button", has_text="Apparier de nouveau les résultats").count() == 1  # staff may match again
    log_out(page)
    assert run_job(app, "experiments.after_imports", runner="cli").summary["refreshed"] == 1

    experiment = session.scalar(select(Experiment).where(Experiment.campaign_id == campaign.id))
    recipients = session.scalars(select(Recipient).where(Recipient.experiment_id == experiment.id)).all()
    alpha_test = {r.spectator_id: r for r in recipients if r.organisation_id == alpha.id and r.arm == "A"}
    assert alpha_test and any(r.arm == "control" for r in recipients)

    # Alpha's approver downloads Alpha's list: its test-arm recipients only
    log_in(page, venue.email)
    page.click("nav >> text=Rapports")
    with page.expect_download() as info:
        page.click("text=Télécharger la liste (CSV)")
    download = info.value
    assert download.suggested_filename.startswith(f"contacts-{experiment.id}-{alpha.slug}")
    with open(download.path(), encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    downloaded = {r["Courriel"] for r in rows}
    assert downloaded == {district.contacts[(0, s)].email for s in alpha_test}
    assert {r["Groupe"] for r in rows} == {"A"}
    assert {r["Code promotionnel"] for r in rows} == {r.code for r in alpha_test.values()}
    controls = {
        district.contacts[(0, r.spectator_id)].email
        for r in recipients
        if r.organisation_id == alpha.id and r.arm == "control"
    }
    assert not downloaded & controls
    assert {r["Langue"] for r in rows} == {"fr"} and {r["Message"] for r in rows} == {campaign.promotion.message_fr}
    log_out(page)

    # later sales arrive in Alpha's export: most of its test recipients buy, some with their code.
    # Outcomes count only sales that have happened by the report's "now": the launch is moved a day
    # back, as if the evaluator read the report the day after, so that these sales are in the past.
    a_day = dt.timedelta(days=1)
    experiment.launched_at -= a_day
    experiment.window_end -= a_day
    campaign.promotion.valid_from -= a_day
    session.commit()
    launch = experiment.launched_at
    # imported a day after the launch (the importer refuses sales dated after the day of the import)
    import core.importing.validate

    monkeypatch.setattr(core.importing.validate, "utcnow", lambda: launch + dt.timedelta(days=1))
    lines = []
    for i, spectator_id in enumerate(sorted(alpha_test)):
        contact = district.contacts[(0, spectator_id)]
        when = (launch + dt.timedelta(hours=2 + i)).strftime("%Y-%m-%d %H:%M")
        code = alpha_test[spectator_id].code if i % 2 == 0 else ""
        lines.append(
            [
                contact.last_name,
                contact.first_name,
                "",
                "H2X 1Y4",
                contact.email,
                "",
                "48,00 $",
                "2",
                "Promotion" if code else "Plein tarif",
                when,
                (launch + dt.timedelta(days=20)).strftime("%Y-%m-%d"),
                "Le Songe",
                "Danse",
                code,
                f"CMD-{i}",
            ]
        )
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(lines)
    export = tmp_path / "alpha-ventes.csv"
    export.write_text(buffer.getvalue(), encoding="utf-8")
    with app.test_request_context():
        result = import_file(session, export, alpha, secret=SECRET)
        session.commit()
    assert result.imported == len(lines)

    # the evaluator opens the report before the sales are matched: the last report, and a notice
    log_in(page, evaluator.email)
    page.click("nav >> text=Rapports")
    page.click("text=Rapport de lift")
    assert "Des ventes ont été importées depuis le calcul de ce rapport" in text_of(page, "#matching-pending")
    assert page.locator("#h-waiting").count() == 1
    # the scheduler's job matches them (every minute); the evaluator reads the report again
    assert run_job(app, "experiments.after_imports", runner="cli").summary["refreshed"] == 1
    page.reload()
    assert page.locator("#matching-pending").count() == 0
    main = text_of(page, "main")
    assert "Rapport de lift" in main and "Groupe test A" in main
    assert "Regard intermédiaire" in main and "p toujours valide" in main
    assert re.search(r"jour \d+ sur 30, p toujours valide (= \d,\d{3}|< 0,001)\.", main), main[:600]
    assert "= <" not in main and page.locator("#h-waiting").count() == 0
    # matching again is for staff: no button for an evaluator
    assert page.locator("text=Apparier de nouveau les résultats").count() == 0
    assert "Tous les indicateurs" in main and "Par organisme expéditeur" in main
    assert page.locator("svg#cumulative-conversion").count() == 1
    html = page.content()
    assert not [value for value in district.personal if value in html]
    session.expire_all()
    assert session.scalar(
        select(func.count()).select_from(Outcome).where(Outcome.experiment_id == experiment.id, Outcome.converted == 1)
    ) == len(lines)
    assert (
        session.scalar(
            select(func.count())
            .select_from(Outcome)
            .where(Outcome.experiment_id == experiment.id, Outcome.redeemed == 1)
        )
        == (len(lines) + 1) // 2
    )

    page.click("text=English")
    main = text_of(page, "main")
    assert "Lift report" in main and "Test arm A" in main and "Interim look" in main
    assert re.search(r"day \d+ of 30, always-valid p (= \d\.\d{3}|< 0\.001)\.", main), main[:600]
    assert "= <" not in main and page.locator("text=Match outcomes again").count() == 0
    assert "Every metric" in main and "Health checks" in main
    with page.expect_download() as info:
        page.click("text=Export CSV")
    assert info.value.suggested_filename == f"report-{experiment.id}.csv"
