"""The dashboard's headline figures, kept ready: computed by a job after the data changes, read by pages.

The district's figures (and each organisation's own) count distinct spectators over every pooled
purchase: at a million spectators that is seconds of work, which no request should pay (issue 18).
:func:`publish_headlines` computes the exact facts of the district, and of each organisation, whose
imports moved since they were kept (:func:`imports_fingerprint`: an organisation's figures move
only with its own imports; an erasure keeps the purchases, unlinked) and stores them in the
``setting`` table; the dashboard reads them (:func:`kept_facts`) and adds the privacy noise of the
current data epoch when it shows them, so every reader of an epoch sees the same figures. Until the job has run after
an import, the page shows the last kept facts and says when they were computed. Facts that were
never kept (a new organisation, a new database) are computed by the first request that needs them.
"""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from core import sql
from core.kept import read_kept, write_kept
from core.models import ImportBatch, Organisation, Show, Spectator, Transaction, utcnow

DISTRICT = "district"
SETTING_PREFIX = "headline:"


def _setting_name(organisation_id: int | None) -> str:
    return SETTING_PREFIX + (DISTRICT if organisation_id is None else f"organisation:{organisation_id}")


def compute_facts(session: Session, organisation_id: int | None = None) -> dict:
    """The exact headline facts of the district (``organisation_id`` None) or of one organisation:
    spectators with a purchase, order lines, tickets, revenue in cents, and the spectators of each
    discipline; for the district also the spectators' cells (count and sum of cell keys,
    core.privacy's fingerprint of a set), overall and per discipline, which the noise is drawn from."""
    tx = select(
        func.count(distinct(Transaction.spectator_id)),
        func.count(Transaction.id),
        func.coalesce(func.sum(Transaction.tickets), 0),
        func.coalesce(func.sum(Transaction.amount_cents), 0),
    )
    # distinct (discipline, spectator) pairs first, then a plain count: PostgreSQL hashes the pairs
    # where COUNT(DISTINCT) per group sorts them, about twice as fast on the pooled data
    distinct_pairs = select(Show.discipline, Transaction.spectator_id).join(Show, Show.id == Transaction.show_id)
    if organisation_id is not None:
        tx = tx.where(Transaction.organisation_id == organisation_id)
        distinct_pairs = distinct_pairs.where(Transaction.organisation_id == organisation_id)
    pairs = distinct_pairs.distinct().subquery("pairs")
    spectators, transactions, tickets, revenue_cents = session.execute(tx).one()
    facts: dict = {
        "spectators": int(spectators),
        "transactions": int(transactions),
        "tickets": int(tickets),
        "revenue_cents": int(revenue_cents),
    }
    if organisation_id is not None:
        by_discipline = select(pairs.c.discipline, func.count()).group_by(pairs.c.discipline)
        facts["disciplines"] = {d: int(n) for d, n in session.execute(by_discipline).all()}
        return facts
    buyers = select(Transaction.spectator_id).distinct().subquery("buyers")
    count, keys = session.execute(
        select(func.count(), func.sum(Spectator.cell_key))
        .select_from(buyers)
        .join(Spectator, Spectator.id == buyers.c.spectator_id)
    ).one()
    facts["cell"] = [int(count), int(keys or 0)]
    facts["discipline_cells"] = {
        d: [int(n), int(k or 0)]
        for d, n, k in session.execute(
            select(pairs.c.discipline, func.count(), func.sum(Spectator.cell_key))
            .select_from(pairs)
            .join(Spectator, Spectator.id == pairs.c.spectator_id)
            .group_by(pairs.c.discipline)
        ).all()
    }
    facts["disciplines"] = {d: n for d, (n, _k) in facts["discipline_cells"].items()}
    return facts


def kept_facts(session: Session, organisation_id: int | None = None) -> dict | None:
    """The facts last kept for the district or an organisation (with their ``imports`` and
    ``computed_at``), or None when none were ever kept."""
    return read_kept(session, _setting_name(organisation_id))


def imports_fingerprint(session: Session, organisation_id: int | None = None) -> list[int]:
    """What the facts of the district (or an organisation) move with: how many imports are done and
    the latest one's id. The count catches an import that finishes after a later one did."""
    done = select(func.count(ImportBatch.id), func.coalesce(func.max(ImportBatch.id), 0)).where(
        ImportBatch.status == "done"
    )
    if organisation_id is not None:
        done = done.where(ImportBatch.organisation_id == organisation_id)
    count, latest = session.execute(done).one()
    return [int(count), int(latest)]


def keep_facts(session: Session, organisation_id: int | None = None) -> dict:
    """Compute and keep the facts of the district or an organisation, with the imports they count
    (their fingerprint, read before computing: an import committed meanwhile leaves them behind, for
    the next run). Flushes; the caller commits."""
    imports = imports_fingerprint(session, organisation_id)
    started = time.perf_counter()
    facts = compute_facts(session, organisation_id)
    facts.update(
        imports=imports,
        computed_at=utcnow().isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
    )
    write_kept(session, _setting_name(organisation_id), facts)
    return facts


def facts_for_page(session: Session, organisation_id: int | None = None) -> dict:
    """What a page shows: the kept facts, however old (the job brings them up to date);
    computed and kept now only when none were ever kept. Flushes; the caller commits."""
    facts = kept_facts(session, organisation_id)
    return facts if facts is not None else keep_facts(session, organisation_id)


def publish_headlines(session: Session, commit=None) -> dict:
    """Bring every kept headline up to date with the imports: the district's, then each
    organisation's whose imports moved, each in its own unit of work when ``commit`` is given. The
    joins over every purchase get the memory they need on PostgreSQL (core.sql.tune_for_large_joins).

    :returns: ``{"published": n, "seconds": s}``.
    """
    started = time.perf_counter()
    published = 0
    for organisation_id in [None, *session.scalars(select(Organisation.id).order_by(Organisation.id))]:
        kept = kept_facts(session, organisation_id)
        if kept is not None and kept.get("imports") == imports_fingerprint(session, organisation_id):
            continue
        tuned = sql.tune_for_large_joins(session)
        keep_facts(session, organisation_id)
        if tuned:
            sql.untune_large_joins(session)
        published += 1
        if commit is not None:
            commit()
    return {"published": published, "seconds": round(time.perf_counter() - started, 3)}


def computed_at(facts: dict) -> dt.datetime | None:
    """When the kept facts were computed (UTC), or None."""
    try:
        return dt.datetime.fromisoformat(facts["computed_at"])
    except (KeyError, TypeError, ValueError):
        return None
