"""Erasure that is complete (issue 15, Build 3): files, tombstoned key, a search that says the same
whatever the reason and is always logged."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

from sqlalchemy import func, select

from core.importing import import_file
from core.models import AuditEvent, Contact, Organisation, Spectator, Transaction
from core.scheduler import run_job
from tests.core.test_scheduler import HEADER

PERSON = "Erasable.Person@Courriel-Prive.example"
OTHER = "keep.me@courriel-prive.example"


def export(rows: list[tuple[str, str, str]]) -> str:
    """A sales export: (e-mail, amount, order number) per row."""
    lines = [";".join(HEADER)]
    for i, (email, amount, order) in enumerate(rows):
        lines.append(
            f"Lenom{i};Leprenom{i};{i} rue Cachee;H2X 1Y4;{email};514-555-{i:04d};{amount};2;Prix régulier;"
            f"2026-03-{1 + i:02d};2026-04-01 20:00;Spectacle;{order}"
        )
    return "\n".join(lines) + "\n"


def files_holding(roots, needle: str) -> list[Path]:
    found = []
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                if not path.is_symlink() and needle.lower().encode() in path.read_bytes().lower():
                    found.append(path)
    return found


def test_an_erased_person_leaves_every_file_and_comes_back_unlinked(app, make_org, login_as, session, tmp_path):
    app.config["INBOX_SETTLE_SECONDS"] = 0
    org = make_org("salle-efface")
    venue = login_as("venue", org)
    admin = login_as("admin")
    inbox = Path(app.config["INBOX_PATH"]) / org.slug
    inbox.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    # 1. an inbox file imported (its copy goes to done/), one refused (its copy goes to failed/)
    (inbox / "ventes.csv").write_text(export([(PERSON, "25,00 $", "A1"), (OTHER, "30,00 $", "A2")]), encoding="utf-8")
    (inbox / "refus.csv").write_text(export([(PERSON, "douze", "B1")]), encoding="utf-8")
    for name in ("ventes.csv", "refus.csv"):
        os.utime(inbox / name, (old, old))
    assert run_job(app, "inbox.import").status == "success"
    # 2. an upload whose invalid row was set aside in a rejects file
    response = venue.post(
        "/imports",
        data={
            "organisation": str(org.id),
            "kind": "sales",
            "skip_invalid": "1",
            "file": (
                io.BytesIO(export([(OTHER, "31,00 $", "C1"), (PERSON, "treize", "C2")]).encode()),
                "avec-erreurs.csv",
            ),
        },
    )
    assert response.status_code == 200
    roots = [Path(app.instance_path), Path(app.config["INBOX_PATH"])]
    assert len(files_holding(roots, PERSON)) >= 3  # done copy, failed copy, rejects file
    erased_id = session.scalar(select(Contact.spectator_id).where(func.lower(Contact.email) == PERSON.lower()))
    history = session.scalar(select(func.count()).select_from(Transaction).where(Transaction.spectator_id == erased_id))
    assert history == 1

    # 3. erase
    html = admin.post("/campaigns/admin/erasure?lang=en", data={"email": PERSON}).get_data(as_text=True)
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', html).group(1)
    assert admin.post("/campaigns/admin/erasure/confirm", data={"token": token, "confirm": "y"}).status_code == 302

    assert files_holding(roots, PERSON) == []
    assert files_holding(roots, OTHER)  # the other people's rows stay
    session.expire_all()
    assert not session.get(Spectator, erased_id).key.isalnum()  # tombstoned

    # 4. the same e-mail imported again starts a new spectator, with none of the erased history
    path = tmp_path / "retour.csv"
    path.write_text(export([(PERSON, "40,00 $", "D1")]), encoding="utf-8")
    with app.app_context():
        import_file(session, path, session.get(Organisation, org.id), kind="sales", filename="retour.csv", actor="test")
    session.commit()
    new_id = session.scalar(select(Contact.spectator_id).where(func.lower(Contact.email) == PERSON.lower()))
    assert new_id is not None and new_id != erased_id
    assert session.scalar(select(func.count()).select_from(Transaction).where(Transaction.spectator_id == new_id)) == 1
    assert (
        session.scalar(select(func.count()).select_from(Transaction).where(Transaction.spectator_id == erased_id))
        == history
    )  # pooled, pseudonymous


def test_the_erasure_search_says_the_same_whatever_the_reason_and_is_always_logged(
    app, make_org, login_as, session, tmp_path
):
    org = make_org("salle-recherche")
    path = tmp_path / "ventes.csv"
    path.write_text(export([(PERSON, "25,00 $", "A1")]), encoding="utf-8")
    with app.app_context():
        import_file(session, path, session.get(Organisation, org.id), kind="sales", filename="ventes.csv", actor="test")
    session.commit()
    admin = login_as("admin")
    answers = {}
    for reason, email in (
        ("malformed", "pas-un-courriel"),
        ("unknown", "personne@nulle.part"),
        ("spaces", "   "),
        ("too long", "x" * 400 + "@example.org"),
    ):
        html = admin.post("/campaigns/admin/erasure?lang=en", data={"email": email}).get_data(as_text=True)
        answers[reason] = re.search(r'aria-live="polite">(.*?)</section>', html, re.S).group(1)
    html = admin.post("/campaigns/admin/erasure?lang=en", data={"email": PERSON}).get_data(as_text=True)
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', html).group(1)
    admin.post("/campaigns/admin/erasure/confirm", data={"token": token, "confirm": "y"})
    html = admin.post("/campaigns/admin/erasure?lang=en", data={"email": PERSON}).get_data(as_text=True)
    answers["already erased"] = re.search(r'aria-live="polite">(.*?)</section>', html, re.S).group(1)
    assert len(set(answers.values())) == 1, answers
    assert "No one found" in answers["unknown"]
    searches = session.scalars(select(AuditEvent).where(AuditEvent.action == "person.search")).all()
    assert len(searches) == 6
    assert [e.details["found"] for e in searches].count(0) == 5
    assert all(PERSON.lower() not in str(e.details).lower() for e in searches)
