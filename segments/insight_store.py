"""The pooled pages' facts kept in the database: one row per scope and period, published by a job, read by the pages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Optional

from sqlalchemy import Date, DateTime, Float, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from core import sql
from core.db import Base

INSIGHTS = "insights"  # the raw facts of an insight page (segments.insights.InsightQuery.compute_all)
COMPARISON = "comparison"  # the facts of one series of the comparison (segments.comparison.series_facts)
ALL = "all"  # the period of every purchase up to the row's date (else a season's label, "2024-2025")


class PooledSummary(Base):
    """The exact raw facts of one scope (``"district"``, ``"discipline:theatre"``, ``"organisation:12"``)
    for one period, as of ``as_of``: what the insight and comparison pages read instead of the
    transactions. Never shown as such: the pages suppress and add noise when they read them.

    ``wanted`` counts the changes that made the row stale since it was published (None: up to date);
    the publisher clears it only if no change came while it computed (``segments.insight_publish``).
    ``facts`` is None until the row is first published; a stale row keeps its last published facts,
    which the pages show meanwhile (issue 18: pooled pages show their last published epoch).
    """

    __tablename__ = "pooled_summary"
    __table_args__ = (UniqueConstraint("kind", "scope", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(80))
    period: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[Optional[dt.date]] = mapped_column(Date)
    epoch: Mapped[Optional[int]] = mapped_column(Integer)  # the data epoch (core.privacy) it was computed at
    facts: Mapped[Optional[str]] = mapped_column(Text)  # JSON
    wanted: Mapped[Optional[int]] = mapped_column(Integer)
    computed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    seconds: Mapped[Optional[float]] = mapped_column(Float)  # how long the computation took (its share, if grouped)


PS = PooledSummary.__table__


def scope_key(scope) -> str:
    """A scope's or series' name in the table (``segments.insight_tables.Scope``,
    ``segments.comparison.Series``): its kind, and its discipline or organisation id."""
    if scope.kind == "organisation":
        return f"organisation:{scope.organisation_id}"
    if scope.kind == "discipline":
        return f"discipline:{scope.key}"
    return "district"


def read_facts(session: Session, kind: str, scope: str, period: str = ALL) -> tuple[dict, dt.date] | None:
    """The last published facts of a scope and period and the date they describe (one indexed
    lookup), or None when none were ever published."""
    row = session.execute(
        select(PS.c.facts, PS.c.as_of).where(
            PS.c.kind == kind, PS.c.scope == scope, PS.c.period == period, PS.c.facts.is_not(None)
        )
    ).first()
    if row is None:
        return None
    return json.loads(row.facts), row.as_of


def mark(session: Session, keys) -> int:
    """Mark ``(kind, scope, period)`` rows stale (created when missing): the publisher recomputes
    them. One upsert for them all (concurrent imports may mark the same rows). Flushes."""
    rows = [{"kind": kind, "scope": scope, "period": period, "wanted": 1} for kind, scope, period in sorted(set(keys))]
    if rows:
        statement = sql.upsert_insert(session)(PS)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[PS.c.kind, PS.c.scope, PS.c.period], set_={"wanted": func.coalesce(PS.c.wanted, 0) + 1}
            ),
            rows,
        )
    session.flush()
    return len(rows)


def store_facts(
    session: Session,
    kind: str,
    scope: str,
    period: str,
    facts: dict,
    as_of: dt.date,
    epoch: int,
    seconds: float,
    seen: int | None,
    now: dt.datetime,
) -> None:
    """Publish a row's facts (created when missing); it stays stale if marked again since ``seen``
    (its ``wanted`` when the computation began). Flushes."""
    values = {
        "facts": json.dumps(facts, separators=(",", ":")),
        "as_of": as_of,
        "epoch": epoch,
        "computed_at": now,
        "seconds": round(seconds, 3),
    }
    insert = sql.upsert_insert(session)
    session.execute(
        insert(PS)
        .values(kind=kind, scope=scope, period=period, **values)
        .on_conflict_do_update(index_elements=[PS.c.kind, PS.c.scope, PS.c.period], set_=values)
    )
    where = [PS.c.kind == kind, PS.c.scope == scope, PS.c.period == period]
    where.append(PS.c.wanted.is_(None) if seen is None else PS.c.wanted == seen)
    session.execute(update(PooledSummary).where(*where).values(wanted=None))
    session.flush()


def rows_state(session: Session) -> dict[tuple[str, str, str], tuple[dt.date | None, int | None, bool]]:
    """Every row's key → (as_of, wanted, published)."""
    return {
        (kind, scope, period): (as_of, wanted, published)
        for kind, scope, period, as_of, wanted, published in session.execute(
            select(PS.c.kind, PS.c.scope, PS.c.period, PS.c.as_of, PS.c.wanted, PS.c.facts.is_not(None))
        )
    }
