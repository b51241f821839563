"""A venue's unsubscribe opts out district-wide only when it answers a district campaign the person
received through that venue (issue 15, Build 5)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from core.importing import import_file
from core.models import Spectator
from experiments import services
from experiments.models import Recipient
from tests.experiments.test_services import ready_campaign


def test_only_an_unsubscribe_answering_a_campaign_received_through_the_venue_is_district_wide(app, session, tmp_path):
    district = ready_campaign(session, per_org=12, shared=0)
    alpha, beta = district.orgs[0], district.orgs[1]
    experiment = services.launch(session, district.campaign, now=district.now, seed=7)
    sent = dict(
        session.execute(
            select(Recipient.spectator_id, Recipient.arm).where(
                Recipient.experiment_id == experiment.id, Recipient.organisation_id == alpha.id
            )
        ).all()
    )
    received = next(s for s, arm in sent.items() if arm != "control")
    control = next(s for s, arm in sent.items() if arm == "control")
    via_beta = next(
        s
        for s in session.scalars(
            select(Recipient.spectator_id).where(
                Recipient.experiment_id == experiment.id,
                Recipient.organisation_id == beta.id,
                Recipient.arm != "control",
            )
        )
    )
    email = {s: c.email for (i, s), c in district.contacts.items()}
    after = (district.now + dt.timedelta(days=2)).date().isoformat()
    before = (district.now - dt.timedelta(days=2)).date().isoformat()
    path = Path(tmp_path) / "desabonnements.csv"
    path.write_text(
        "Courriel;Date\n" + "".join(f"{email[s]};{day}\n" for s, day in ((received, after), (control, after))),
        encoding="utf-8",
    )
    early = Path(tmp_path) / "avant.csv"
    early.write_text(f"Courriel;Date\n{email[via_beta]};{before}\n", encoding="utf-8")
    with app.app_context():
        import_file(session, path, alpha, kind="unsubscribes", filename="desabonnements.csv")
        # beta's recipient, unsubscribing at beta before the campaign: not an answer to it
        import_file(session, early, beta, kind="unsubscribes", filename="avant.csv")
    session.flush()
    session.expire_all()
    assert session.get(Spectator, received).opted_out_at is not None  # answered the campaign sent through alpha
    assert session.get(Spectator, control).opted_out_at is None  # the control group received nothing
    assert session.get(Spectator, via_beta).opted_out_at is None  # before the launch: consent at beta only
