"""Keeping the pooled pages' facts published: what a change makes stale, and the job that recomputes it.

The insight pages (district, each discipline, each organisation) and the comparison (each series,
every period: all purchases and each cultural season) read their raw facts from
``segments.insight_store.PooledSummary``; nothing computes them in a request once published.

What makes a row stale, and who says so:

* a profile refresh (``segments.profiles`` calls :func:`mark_after_refresh`, registered by
  ``segments.init_app``), for the spectators it refreshed: the organisations and disciplines they
  bought from and the district, for all purchases and the seasons from that of their earliest
  purchase imported since the refresh's cause (a purchase moves its own season and the later ones,
  through the life cycle; a spectator moves a season's figures only if they bought in the series
  that season, for the crossover too, which follows a series' spectators elsewhere), or from that
  of their first purchase there when something every season reads changed (a postal area learnt,
  an organisation's contact record, an erasure). A full refresh marks what the spectators changed
  since the previous full one enter (everything the first time);
* imports that no refresh followed (a web import): :func:`publish` marks the buyers of the batches
  newer than the last it saw the same way;
* the date: the facts of all purchases and of the current season are as of a day (life-cycle
  stages move with it); a past season's as of its last day, so they never go stale with the date.

:func:`publish` then recomputes the stale rows (organisations first, the district last), each in
its own unit of work when given a commit; the comparison's rows of several organisations (or
disciplines) due for one period are computed by one grouped statement (one pass over the district's
purchases instead of one per organisation), then stored one by one: an import never waits for the district's figures,
and the pages show the last published ones until the new ones are ready (issue 18). A mark that
comes while a row is computed leaves it stale for the next run. Known gap: a batch committed after
a later one was already seen (two imports at once, no refresh after either) waits for the nightly
full refresh.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import SelectBase

from core import sql
from core.models import DISCIPLINES, Contact, ImportBatch, Organisation, Setting, Spectator, utcnow
from core.privacy import data_epoch
from segments.comparison import Period, Season, Series, available_seasons, grouped_series_facts, series_facts
from segments.insight_store import ALL, COMPARISON, INSIGHTS, mark, rows_state, store_facts
from segments.insight_tables import S, Scope, T, discipline_choices
from segments.insights import InsightQuery
from segments.profiles import changed_since, erased_since

BATCH_SETTING = "pooled_summary_batch"  # the highest import batch whose buyers were marked
MARKED_SETTING = "pooled_summary_marked_at"  # when the last full profile refresh marked what had changed
GROUPED_FROM = 2  # due comparison rows of one period and family computed in one statement from this many


def _day(value) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else dt.date.fromisoformat(str(value)[:10])


def _disciplines(session: Session) -> list[str]:
    """Disciplines with shows, or that an organisation declares (the comparison offers those)."""
    found = set(discipline_choices(session))
    for declared in session.scalars(select(Organisation.disciplines)):
        found |= {d.strip() for d in (declared or "").split(",")}
    return [d for d in DISCIPLINES if d in found]


def expected_keys(session: Session, today: dt.date) -> dict[tuple[str, str, str], dt.date]:
    """Every row the pages may read → the date its facts should describe."""
    scopes = ["district"] + [f"discipline:{d}" for d in _disciplines(session)]
    scopes += [f"organisation:{i}" for i in session.scalars(select(Organisation.id).order_by(Organisation.id))]
    seasons = available_seasons(session, today)
    keys: dict[tuple[str, str, str], dt.date] = {}
    for scope in scopes:
        keys[(INSIGHTS, scope, ALL)] = today
        keys[(COMPARISON, scope, ALL)] = today
        for season in seasons:
            keys[(COMPARISON, scope, season.label)] = Period.make(season, today).as_of
    return keys


# --- marks -----------------------------------------------------------------------------------------


def _spectators_filter(session: Session, spectator_ids, column=T.c.spectator_id):
    """``column`` (a spectator id) among ``spectator_ids``: a list of ids, or a SELECT of them."""
    if isinstance(spectator_ids, SelectBase):
        return column.in_(spectator_ids)
    return sql.among(session, column, sorted({int(i) for i in spectator_ids}))


def _season_keys(first: dict[str, dt.date | None], today: dt.date) -> set[tuple[str, str, str]]:
    """The rows of each scope: all purchases, and each season from that of its date (if any) to today's."""
    keys = set()
    last = Season.of(today).start_year
    for scope, day in first.items():
        keys |= {(INSIGHTS, scope, ALL), (COMPARISON, scope, ALL)}
        if day is not None:
            keys |= {
                (COMPARISON, scope, Season(year).label)
                for year in range(Season.of(min(day, today)).start_year, last + 1)
            }
    return keys


def keys_of_spectators(
    session: Session, spectator_ids, today: dt.date, since: dt.datetime | None = None
) -> set[tuple[str, str, str]]:
    """The rows whose facts the purchases of these spectators (a list of ids or a SELECT of them)
    enter: their organisations', their disciplines' and the district's, for all purchases and each
    season from that of their first purchase in the scope to today's.

    With ``since`` (what made them due changed after it), a season before the spectator's earliest
    purchase imported since (in a batch created after it) stays as it is: a purchase moves its own
    season's facts and the later ones' (the life cycle as of a season's end), never an earlier one.
    Except where something else of theirs changed since, which every season of a scope reads: a
    district-wide opt-out (an erasure: the organisations' contact records go), the postal area
    learnt for the district's and the disciplines' rows, a contact record of the organisation
    (its postal code) for that organisation's.
    """
    if not isinstance(spectator_ids, SelectBase) and not spectator_ids:
        return set()
    if since is None:
        first: dict[str, dt.date | None] = {}
        rows = session.execute(
            select(T.c.organisation_id, S.c.discipline, func.min(T.c.purchased_at))
            .select_from(T.outerjoin(S, S.c.id == T.c.show_id))
            .where(_spectators_filter(session, spectator_ids))
            .group_by(T.c.organisation_id, S.c.discipline)
        )
        for organisation_id, discipline, earliest in rows:
            day = _day(earliest)
            for scope in _scopes(organisation_id, discipline):
                first[scope] = _earlier(first.get(scope), day)
        return _season_keys(first, today)
    return _season_keys(_narrowed_firsts(session, spectator_ids, since), today)


def _scopes(organisation_id: int, discipline: str | None) -> list[str]:
    """The scopes a purchase at this organisation, of a show of this discipline, enters."""
    scopes = ["district", f"organisation:{organisation_id}"]
    return scopes + [f"discipline:{discipline}"] if discipline else scopes


def _narrowed_firsts(session: Session, spectator_ids, since: dt.datetime) -> dict[str, dt.date | None]:
    """Scope → the earliest date whose season the spectators' changes since ``since`` move (None: only
    the facts of all purchases); see :func:`keys_of_spectators`."""
    new_batches = select(ImportBatch.id).where(ImportBatch.created_at >= since)
    imported = func.min(case((T.c.batch_id.in_(new_batches), T.c.purchased_at)))
    rows = session.execute(
        select(T.c.spectator_id, T.c.organisation_id, S.c.discipline, func.min(T.c.purchased_at), imported)
        .select_from(T.outerjoin(S, S.c.id == T.c.show_id))
        .where(_spectators_filter(session, spectator_ids))
        .group_by(T.c.spectator_id, T.c.organisation_id, S.c.discipline)
    ).all()
    sp, k = Spectator.__table__, Contact.__table__
    whole: set[int] = set()  # opted out or erased since: every season of every scope
    area: set[int] = set()  # postal area learnt since: every season of the district's and disciplines'
    gone = or_(sp.c.opted_out_at >= since, sp.c.id.in_(erased_since(since)))
    learnt = sp.c.fsa_changed_at >= since
    for spectator_id, opted_out, located in session.execute(
        select(sp.c.id, gone, learnt).where(_spectators_filter(session, spectator_ids, sp.c.id), or_(gone, learnt))
    ):
        if opted_out:
            whole.add(spectator_id)
        if located:
            area.add(spectator_id)
    contacts = {
        (spectator_id, organisation_id)
        for spectator_id, organisation_id in session.execute(
            select(k.c.spectator_id, k.c.organisation_id).where(
                _spectators_filter(session, spectator_ids, k.c.spectator_id), k.c.updated_at >= since
            )
        )
    }
    earliest_new: dict[int, dt.date] = {}
    for spectator_id, _organisation_id, _discipline, _first, new in rows:
        if new is not None:
            day = _day(new)
            earliest_new[spectator_id] = min(earliest_new.get(spectator_id, day), day)
    first: dict[str, dt.date | None] = {}
    for spectator_id, organisation_id, discipline, earliest, _new in rows:
        day = _day(earliest)
        for scope in _scopes(organisation_id, discipline):
            if scope.startswith("organisation:"):
                every_season = (spectator_id, organisation_id) in contacts
            else:
                every_season = spectator_id in area
            if every_season or spectator_id in whole:
                moved: dt.date | None = day
            elif spectator_id in earliest_new:
                moved = max(day, earliest_new[spectator_id])
            else:
                moved = None
            first[scope] = _earlier(first.get(scope), moved)
    return first


def _earlier(one: dt.date | None, other: dt.date | None) -> dt.date | None:
    """The earlier of two dates, either of which may be None (no date)."""
    return other if one is None else one if other is None else min(one, other)


def mark_after_refresh(session: Session, spectator_ids, as_of: dt.date, since: dt.datetime | None = None) -> int:
    """Hook of the profile refresh (``segments.profiles.add_after_refresh``): mark stale what the
    refreshed spectators' purchases enter (with ``since``, the moment after which what made them due
    changed: only the seasons those changes move, :func:`keys_of_spectators`). Flushes.

    A full refresh (the new day, or asked for) marks what the spectators changed since the last full
    refresh enter (imports, erasures, consents: ``segments.profiles.changed_since``), everything the
    first time: the facts as of a day are due at the new day anyway, and a past season's move only
    with its spectators (at district scale, recomputing every past season each night would take hours).
    """
    if spectator_ids is not None:
        return mark(session, keys_of_spectators(session, spectator_ids, as_of, since))
    now = utcnow()
    setting = session.get(Setting, MARKED_SETTING)
    if setting is None:
        session.add(Setting(name=MARKED_SETTING, value=now.isoformat()))
        return mark(session, expected_keys(session, as_of))
    marked_at = dt.datetime.fromisoformat(setting.value)
    setting.value = now.isoformat()
    return mark(session, keys_of_spectators(session, changed_since(marked_at), as_of, marked_at))


def _mark_new_batches(session: Session, today: dt.date) -> int:
    """Mark what the buyers of the batches imported since the last run enter (imports that no
    profile refresh followed); the first run marks nothing (everything is due then anyway)."""
    latest = session.scalar(select(func.max(ImportBatch.id))) or 0
    setting = session.get(Setting, BATCH_SETTING)
    if setting is not None and int(setting.value or 0) >= latest:
        return 0
    marked = 0
    if setting is not None:
        seen = int(setting.value or 0)
        since = session.scalar(select(func.min(ImportBatch.created_at)).where(ImportBatch.id > seen))
        buyers = select(T.c.spectator_id).where(T.c.batch_id > seen).distinct()
        marked = mark(session, keys_of_spectators(session, buyers, today, since))
        setting.value = str(latest)
    else:
        session.add(Setting(name=BATCH_SETTING, value=str(latest)))
    session.flush()
    return marked


# --- publication -----------------------------------------------------------------------------------


def due(session: Session, today: dt.date) -> list[tuple[str, str, str]]:
    """The rows to (re)compute: never published, marked stale, or of another date than they should
    be; the organisations first and the district last, all purchases before the seasons."""
    state = rows_state(session)
    out = []
    for key, as_of in expected_keys(session, today).items():
        found = state.get(key)
        if found is None or not found[2] or found[1] is not None or found[0] != as_of:
            out.append(key)
    order = {"organisation": 0, "discipline": 1, "district": 2}
    return sorted(out, key=lambda k: (k[2] != ALL, order[k[1].split(":")[0]], k[0], k[1], k[2]))


def _scope_of(session: Session, key: str) -> Scope:
    kind, _sep, value = key.partition(":")
    if kind == "organisation":
        organisation = session.get(Organisation, int(value))
        if organisation is None:
            raise LookupError(key)
        return Scope.organisation(organisation)
    return Scope.discipline(value) if kind == "discipline" else Scope.district()


def compute(session: Session, kind: str, scope: str, period: str, today: dt.date) -> tuple[dict, dt.date]:
    """The exact facts of one row, computed from the transactions, and the date they describe."""
    where = _scope_of(session, scope)
    if kind == INSIGHTS:
        return InsightQuery(session, where, today).compute_all(), today
    series = Series(where.kind, where.key, where.organisation_id)
    season = None if period == ALL else Season.parse(period)
    span = Period.make(season, today)
    return series_facts(session, series, span), span.as_of


def _grouped(todo: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], list[tuple[str, str, str]]]:
    """The due comparison rows of several organisations (or disciplines) of one period, by their first:
    each such group is computed in one statement (``segments.comparison.grouped_series_facts``)."""
    groups: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for key in todo:
        kind, scope, period = key
        family = scope.partition(":")[0]
        if kind == COMPARISON and family in ("organisation", "discipline"):
            groups.setdefault((family, period), []).append(key)
    return {rows[0]: rows for rows in groups.values() if len(rows) >= GROUPED_FROM}


def _compute_group(session: Session, rows: list[tuple[str, str, str]], today: dt.date) -> tuple[dict, dt.date]:
    """The facts of a group of :func:`_grouped` (key → facts) and the date they describe; the rows of
    organisations that went meanwhile are left out."""
    family, period = rows[0][1].partition(":")[0], rows[0][2]
    keys = {scope.partition(":")[2]: (kind, scope, period) for kind, scope, period in rows}
    if family == "organisation":
        existing = {str(i) for i in session.scalars(select(Organisation.id))}
        keys = {value: key for value, key in keys.items() if value in existing}
    span = Period.make(None if period == ALL else Season.parse(period), today)
    facts = grouped_series_facts(session, family, span, list(keys))
    return {key: facts[value] for value, key in keys.items()}, span.as_of


def publish(
    session: Session, today: dt.date | None = None, commit: Callable[[], None] | None = None, limit: int | None = None
) -> dict:
    """Mark the buyers of new batches, then recompute every due row (at most ``limit``), each
    followed by ``commit`` when given (each row is published as soon as it is ready).

    :returns: {"published": rows, "seconds": total, "slowest": [key, seconds], "left": rows still due}.
    """
    today = today or dt.date.today()
    began = time.perf_counter()
    _mark_new_batches(session, today)
    if commit:
        commit()
    work = due(session, today)
    todo = work if limit is None else work[:limit]
    state = rows_state(session)
    slowest: tuple[str, float] = ("", 0.0)
    groups = _grouped(todo)
    done: set[tuple[str, str, str]] = set()
    for key in todo:
        if key in done:
            continue
        started = time.perf_counter()
        if key in groups:  # several rows in one statement, each stored with its share of the time
            computed, as_of = _compute_group(session, groups[key], today)
            done |= set(groups[key])
        else:
            try:
                facts, as_of = compute(session, *key, today)
            except LookupError:  # the organisation went meanwhile
                continue
            computed = {key: facts}
        seconds = time.perf_counter() - started
        for (kind, scope, period), facts in computed.items():
            seen = state.get((kind, scope, period), (None, None, False))[1]
            share = seconds / len(computed)
            store_facts(session, kind, scope, period, facts, as_of, data_epoch(session), share, seen, utcnow())
            if commit:
                commit()
        label = f"{key[0]}/{key[1]}/{key[2]}" + (f" and {len(computed) - 1} more" if len(computed) > 1 else "")
        if seconds > slowest[1]:
            slowest = (label, round(seconds, 3))
    return {
        "published": len(todo),
        "seconds": round(time.perf_counter() - began, 3),
        "slowest": list(slowest),
        "left": len(work) - len(todo),
    }
