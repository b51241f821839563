"""The pooled pages' kept facts (segments.insight_store, segments.insight_publish): after a sequence of
imports, an erasure, a refresh and a day passing with no import, every kept row equals a computation
from the raw rows; each change recomputes only what it moves; the pages read the kept rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

from sqlalchemy import insert, select

from core.importing import import_file
from core.models import Contact, Organisation, Spectator, Transaction
from segments.comparison import Period, Season, Series
from segments.insight_publish import _scope_of, due, expected_keys, publish
from segments.insight_store import ALL, COMPARISON, INSIGHTS, read_facts
from segments.insights import InsightQuery
from segments.profiles import refresh_after_import, refresh_changed
from tests.segments.district import AS_OF, DISTRICT_SECRET, small_district  # noqa: F401  (a fixture)
from tests.segments.test_comparison import raw_rows, reference

HEADER = [
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


def _export(path: Path, people: list[tuple[str, str, str]], day: dt.date, discipline: str, prefix: str) -> Path:
    """A sales export: each person (name, e-mail, postal code) buys two tickets on ``day`` and once
    more a week earlier, for a show of ``discipline`` a month later."""
    show = (day + dt.timedelta(days=30)).isoformat()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for n, (name, email, postal) in enumerate(people):
        for back, tickets in ((0, 2), (7, 1)):
            bought = (day - dt.timedelta(days=back)).isoformat() + " 19:30"
            writer.writerow(
                [
                    name,
                    "Test",
                    "",
                    postal,
                    email,
                    "",
                    "40.00",
                    str(tickets),
                    "Regular price",
                    bought,
                    show + " 20:00",
                    f"{discipline} {prefix}",
                    "Salle test",
                    discipline,
                    "Web",
                    "no",
                    f"{prefix}-{n}-{back}",
                ]
            )
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _import(session, tmp_path: Path, slug: str, people, day: dt.date, discipline: str, prefix: str) -> int:
    organisation = session.scalar(select(Organisation).where(Organisation.slug == slug))
    result = import_file(
        session,
        _export(tmp_path / f"{prefix}.csv", people, day, discipline, prefix),
        organisation,
        secret=DISTRICT_SECRET,
    )
    session.commit()
    return result.batch_id


def _stale_after_import(session, tmp_path: Path, slug: str, people, day: dt.date, discipline: str, prefix: str):
    """Import the sales, refresh the profiles of their buyers as the importer does, and return the
    kept rows now due."""
    batch = _import(session, tmp_path, slug, people, day, discipline, prefix)
    refresh_after_import(session, batch, as_of=AS_OF)
    session.commit()
    return set(due(session, AS_OF))


def _refreshed_and_published(session) -> set[str]:
    """Commit, refresh what changed since the last refresh, require that something is due, publish
    it, compare every kept row with the raw rows, and return the scopes that were due."""
    session.commit()
    mode, _rows = refresh_changed(session, as_of=AS_OF)
    session.commit()
    stale = due(session, AS_OF)
    assert mode == "incremental" and stale
    publish(session, AS_OF, commit=session.commit)
    assert_kept_facts_agree(session, AS_OF)
    return {scope for _kind, scope, _period in stale}


def _normalised(facts: dict) -> dict:
    """The facts through JSON (as kept), their lists of rows in one order (engines group in theirs)."""
    facts = json.loads(json.dumps(facts))
    for name in ("cells", "sums", "fsa"):
        if name in facts:
            facts[name] = sorted(facts[name], key=lambda row: json.dumps(row))
    return facts


def assert_kept_facts_agree(session, today: dt.date) -> int:
    """Every row the pages may read is published, as of the right date, and equals a computation
    from the raw rows: the comparison's series a plain-Python one (tests/segments/test_comparison.py),
    the insight pages' facts their SQL computed afresh, their life-cycle stages plain Python too."""
    assert due(session, today) == []
    raw = raw_rows(session)
    checked = 0
    for (kind, scope, period), as_of in expected_keys(session, today).items():
        kept = read_facts(session, kind, scope, period)
        assert kept is not None, (kind, scope, period)
        facts, kept_as_of = kept
        assert kept_as_of == as_of, (kind, scope, period)
        where = _scope_of(session, scope)
        series = Series(where.kind, where.key, where.organisation_id)
        if kind == INSIGHTS:
            assert _normalised(facts) == _normalised(InsightQuery(session, where, as_of).compute_all()), scope
            everything = reference(raw, series, Period(None, as_of))
            stages = {stage: cell[0] for stage, cell in everything["lifecycle"].items()}
            assert {s: n for s, n in facts["spectators"]["stages"].items() if n} == stages, scope
            assert facts["spectators"]["population"] == everything["population"], scope
        else:
            season = None if period == ALL else Season.parse(period)
            assert facts == reference(raw, series, Period.make(season, today)), (scope, period)
        checked += 1
    return checked


def _id(session, slug: str) -> int:
    return session.scalar(select(Organisation.id).where(Organisation.slug == slug))


def test_kept_facts_follow_imports_an_erasure_a_refresh_and_the_date(session, small_district, tmp_path):  # noqa: F811
    from campaigns.erasure import erase_person, erase_spectators

    first = publish(session, AS_OF, commit=session.commit)
    assert first["published"] == len(expected_keys(session, AS_OF)) and first["left"] == 0
    assert assert_kept_facts_agree(session, AS_OF) > 50
    assert publish(session, AS_OF)["published"] == 0  # nothing changed: nothing recomputed

    # 1. New spectators buy theatre at one organisation in June 2024: only that organisation, theatre
    # and the district move, for all purchases and the 2023-2024 season.
    people = [(f"Nouveau{n}", f"nouveau{n}@example.org", f"H2X {n}A{n}" if n != 2 else "") for n in range(6)]
    batch = _import(session, tmp_path, "theatre-nord", people, dt.date(2024, 6, 20), "Theatre", "i1")
    refresh_after_import(session, batch, as_of=AS_OF)
    session.commit()
    moved = {"district", f"organisation:{_id(session, 'theatre-nord')}", "discipline:theatre"}
    assert set(due(session, AS_OF)) == {
        (kind, scope, period)
        for scope in moved
        for kind, period in ((INSIGHTS, ALL), (COMPARISON, ALL), (COMPARISON, "2023-2024"))
    }
    touched = {scope for _kind, scope, _period in due(session, AS_OF)}  # the scopes changes moved so far
    assert publish(session, AS_OF, commit=session.commit)["published"] == 9
    assert_kept_facts_agree(session, AS_OF)

    # 2. Three of them also buy dance elsewhere, back in 2022 (an old export): the seasons since move too.
    batch = _import(session, tmp_path, "danse-sud", people[:3], dt.date(2022, 11, 5), "Dance", "i2")
    refresh_after_import(session, batch, as_of=AS_OF)
    session.commit()
    periods = {period for _kind, _scope, period in due(session, AS_OF)}
    assert periods == {ALL, "2022-2023", "2023-2024"}
    assert f"organisation:{_id(session, 'festival-est')}" not in {scope for _k, scope, _p in due(session, AS_OF)}
    touched |= {scope for _kind, scope, _period in due(session, AS_OF)}
    publish(session, AS_OF, commit=session.commit)
    assert_kept_facts_agree(session, AS_OF)
    organisations = {slug: f"organisation:{_id(session, slug)}" for slug in ("theatre-nord", "danse-sud")}
    theirs = {"district", "discipline:theatre", "discipline:dance", *organisations.values()}

    # 2b. Two of them buy theatre again this season, their details unchanged: their purchases since
    # 2022 are as they were, so the 2022-2023 season stays as it is (only its facts could say otherwise).
    stale = _stale_after_import(session, tmp_path, "theatre-nord", people[:2], dt.date(2024, 6, 25), "Theatre", "i2b")
    assert stale == {
        (kind, scope, period)
        for scope in theirs
        for kind, period in ((INSIGHTS, ALL), (COMPARISON, ALL), (COMPARISON, "2023-2024"))
    }
    publish(session, AS_OF, commit=session.commit)
    assert_kept_facts_agree(session, AS_OF)

    # 2c. The one who never gave a postal code gives one: the district's and the disciplines' rows read
    # it in every season they hold them in; dance's organisation reads its own contact records, unchanged.
    located = [(people[2][0], people[2][1], "H2X 2B2")]
    stale = _stale_after_import(session, tmp_path, "theatre-nord", located, dt.date(2024, 6, 26), "Theatre", "i2c")
    assert {(COMPARISON, "district", "2022-2023"), (COMPARISON, "discipline:dance", "2022-2023")} <= stale
    assert (COMPARISON, organisations["danse-sud"], "2022-2023") not in stale
    publish(session, AS_OF, commit=session.commit)
    assert_kept_facts_agree(session, AS_OF)

    # 2d. One of them moves and tells the dance company: its rows read its contact record in every
    # season; the district keeps the area it knew (an import fills an unknown area, never replaces one).
    moved = [(people[0][0], people[0][1], "H3A 1B1")]
    stale = _stale_after_import(session, tmp_path, "danse-sud", moved, dt.date(2024, 6, 27), "Dance", "i2d")
    assert (COMPARISON, organisations["danse-sud"], "2022-2023") in stale
    assert not {(COMPARISON, "district", "2022-2023"), (COMPARISON, "discipline:dance", "2022-2023")} & stale
    touched |= {scope for _kind, scope, _period in stale}
    publish(session, AS_OF, commit=session.commit)
    assert_kept_facts_agree(session, AS_OF)

    # 3. One of them is erased on request (their contact records and postal codes go; their pooled
    # purchases stay): the next refresh finds them (opted out since) and marks what they entered.
    assert erase_person(session, "nouveau1@example.org", DISTRICT_SECRET).spectator_ids
    touched |= _refreshed_and_published(session)

    # 3b. Someone who had opted out long ago is erased: their opt-out's date stays as it was, yet their
    # contact records (and the postal codes their organisations' rows read) go, so the refresh must
    # still find them.
    long_gone = session.scalar(
        select(Spectator.id)
        .where(
            Spectator.opted_out_at.is_not(None),
            Spectator.id.in_(select(Contact.spectator_id)),
            # not a festival-goer: step 4 checks that the festival's rows are never marked
            Spectator.id.not_in(
                select(Transaction.spectator_id).where(Transaction.organisation_id == _id(session, "festival-est"))
            ),
        )
        .order_by(Spectator.id)
    )
    assert long_gone is not None
    erase_spectators(session, [long_gone])
    touched |= _refreshed_and_published(session)

    # 4. A full refresh marks what the spectators changed since the last full one (the fixture's) enter:
    # the imported and the erased ones, never an organisation none of them bought from.
    refresh_changed(session, as_of=AS_OF, full=True)
    session.commit()
    again = due(session, AS_OF)
    assert again and {scope for _kind, scope, _period in again} == touched
    assert f"organisation:{_id(session, 'festival-est')}" not in {scope for _kind, scope, _period in again}
    publish(session, AS_OF, commit=session.commit)
    assert_kept_facts_agree(session, AS_OF)

    # 5. A day passes with no import: the facts as of a day move (life-cycle stages), a past
    # season's stay as they are.
    tomorrow = AS_OF + dt.timedelta(days=1)
    dated = {key for key in expected_keys(session, tomorrow) if key[2] in (ALL, "2023-2024")}
    assert set(due(session, tomorrow)) == dated
    publish(session, tomorrow, commit=session.commit)
    assert_kept_facts_agree(session, tomorrow)


def test_an_import_no_refresh_followed_is_published_by_the_job(
    app,
    session,
    small_district,
    tmp_path,  # noqa: F811
    login_as,
):
    """A web import refreshes no profile: the job finds its batch and publishes what it moved; the
    pages show the last published figures meanwhile (issue 18), never computed in the request."""
    from core.scheduler import run_job

    app.config["PRIVACY_SIGMA"] = 1e-6  # the exact figures, through the noisy path
    run = run_job(app, "insights.warm")
    assert run.status == "success", run.error
    assert run.summary["published"] == len(expected_keys(session, dt.date.today()))
    client = login_as("staff")

    def district_total() -> int:
        text = client.get("/segments/insights/lifecycle.csv?lang=en").get_data(as_text=True).lstrip("\ufeff")
        return int(list(csv.reader(io.StringIO(text)))[-1][1])

    before = district_total()
    # figures the job has not seen (no batch, no refresh) stay out of the page until it publishes again
    person = Spectator(key="unseen", fsa="H2X")
    session.add(person)
    session.flush()
    session.execute(
        insert(Transaction),
        [
            {
                "organisation_id": _id(session, "theatre-nord"),
                "spectator_id": person.id,
                "show_id": None,
                "purchased_at": dt.datetime.combine(dt.date.today(), dt.time(9)),
                "amount_cents": 100,
                "tickets": 1,
                "circumstance": "regular",
                "category": "single",
                "channel": "web",
                "order_id": None,
                "external_id": "unseen",
            }
        ],
    )
    session.commit()
    assert district_total() == before
    people = [(f"Web{n}", f"web{n}@example.org", "H3A 1B1") for n in range(4)]
    _import(session, tmp_path, "danse-sud", people, dt.date.today() - dt.timedelta(days=2), "Dance", "web")
    assert district_total() == before
    run = run_job(app, "insights.warm")
    assert run.status == "success" and 0 < run.summary["published"] < len(expected_keys(session, dt.date.today()))
    assert district_total() == before + 1 + 4


def test_pages_read_the_kept_facts(app, session, small_district, login_as):  # noqa: F811
    """What the pages show comes from the kept rows: a row changed in the table shows on the page."""
    from segments.insight_store import PooledSummary

    app.config["PRIVACY_SIGMA"] = 1e-6
    today = dt.date.today()
    publish(session, today, commit=session.commit)
    row = session.scalar(select(PooledSummary).where(PooledSummary.kind == INSIGHTS, PooledSummary.scope == "district"))
    facts = json.loads(row.facts)
    facts["spectators"]["population"] += 1000
    facts["spectators"]["stages"]["lapsed"] += 1000
    row.facts = json.dumps(facts)
    session.commit()
    client = login_as("staff")
    text = client.get("/segments/insights/lifecycle.csv?lang=en").get_data(as_text=True).lstrip("\ufeff")
    total = int(list(csv.reader(io.StringIO(text)))[-1][1])
    assert total == InsightQuery(session, _scope_of(session, "district"), today).population() + 1000


def test_a_fresh_demo_publishes_its_pooled_summaries(app, db):
    """`pilot demo` leaves every pooled page's facts published and current (none due), computed once
    the whole district is built (the demo experiment's simulated sales included), so that its first
    insight and comparison pages read them rather than aggregating the district in the request."""
    from core.demo import build_demo
    from segments.comparison import series_facts

    lines: list[str] = []
    with app.app_context():
        build_demo(db, spectators=1_000, seed=5, echo=lines.append)
    assert any(line.startswith("Pooled summaries: ") for line in lines), lines
    today = dt.date.today()
    with db.session() as session:
        assert due(session, today) == []
        keys = expected_keys(session, today)
        assert len(keys) > 50 and all(read_facts(session, *key) is not None for key in keys)
        district = _scope_of(session, "district")
        kept, as_of = read_facts(session, INSIGHTS, "district", ALL)
        assert as_of == today
        assert _normalised(kept) == _normalised(InsightQuery(session, district, today).compute_all())
        for scope in ("district", f"organisation:{session.scalar(select(Organisation.id).order_by(Organisation.id))}"):
            where = _scope_of(session, scope)
            series = Series(where.kind, where.key, where.organisation_id)
            assert read_facts(session, COMPARISON, scope, ALL)[0] == series_facts(session, series, Period(None, today))
