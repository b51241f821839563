"""The life-cycle stage has one definition: profiles, the rule evaluator and insights agree."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import insert, select

from core.models import Organisation, Setting, Show, Spectator, Transaction
from segments import insights
from segments.insight_tables import Scope
from segments.models import SpectatorProfile
from segments.profiles import refresh_profiles
from segments.rules import Purchase, SpectatorFacts, stage_of

AS_OF = dt.date(2025, 6, 30)
# Each history: (days before AS_OF, index of the show or None when the export named no show).
HISTORIES = {
    "only an unknown show, recently": [(10, None)],
    "unknown shows beside two known": [(3, 0), (4, 1), (5, None), (6, None)],
    "one known show and an unknown one": [(2, 0), (9, None)],
    "an unknown show long ago only": [(800, None)],
    "unknown recently, known long ago": [(12, None), (900, 2)],
    "three known": [(1, 0), (2, 1), (3, 2)],
    "one known, with earlier history": [(5, 0), (700, 1)],
    "nothing for four years": [(1500, 0)],
}


def test_every_view_gives_each_spectator_the_same_stage(session):
    session.add(Setting(name="k_threshold", value="2"))
    org = Organisation(slug="o", name="O")
    session.add(org)
    session.flush()
    shows = [
        Show(
            organisation_id=org.id,
            natural_key=f"s{i}",
            title=f"S{i}",
            discipline="theatre",
            starts_at=dt.datetime(2025, 7, 1, 20),
        )
        for i in range(3)
    ]
    session.add_all(shows)
    session.flush()
    reference: dict[int, str] = {}
    external = 0
    for name, history in HISTORIES.items():
        for copy in range(2):  # two of each, so that no insight cell falls under k = 2
            person = Spectator(key=f"{name}-{copy}", fsa="H2X")
            session.add(person)
            session.flush()
            purchases, rows = [], []
            for days, show in history:
                at = dt.datetime.combine(AS_OF - dt.timedelta(days=days), dt.time(14, 30))
                show_id = shows[show].id if show is not None else None
                external += 1
                rows.append(
                    {
                        "organisation_id": org.id,
                        "spectator_id": person.id,
                        "show_id": show_id,
                        "purchased_at": at,
                        "amount_cents": 1000,
                        "tickets": 1,
                        "circumstance": "regular",
                        "category": "single",
                        "channel": "web",
                        "order_id": None,
                        "external_id": f"e{external}",
                    }
                )
                purchases.append(Purchase(purchased_at=at.date(), organisation="o", show_id=show_id))
            session.execute(insert(Transaction), rows)
            reference[person.id] = stage_of(SpectatorFacts(as_of=AS_OF, purchases=tuple(purchases)))
    session.commit()

    refresh_profiles(session, as_of=AS_OF)
    session.commit()
    profiled = dict(session.execute(select(SpectatorProfile.spectator_id, SpectatorProfile.lifecycle)).all())
    assert profiled == reference

    table = insights.InsightQuery(session, Scope.district(), as_of=AS_OF).lifecycle()
    shown = {key: row[1] for key, row in zip(table.row_keys, table.rows) if row[1]}
    assert shown == dict(Counter(reference.values()))
    # the cases that split the views before: unknown shows alone are no performance
    assert reference[min(reference)] == "stale"
