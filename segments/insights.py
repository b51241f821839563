"""Audience insights: who a scope's spectators are, where they come from, when and what they buy.

A scope is the district, one discipline or one organisation. Each table is an
:class:`InsightTable` whose figures are already suppressed (DESIGN.md §10): a cell is hidden when
fewer than ``k`` distinct spectators stand behind it, whatever the cell shows (spectators,
purchases, tickets or revenue), and further cells are hidden so that no hidden figure can be
recovered by subtraction from a total that is shown. ``k`` is the strictest threshold of the
organisations whose data the table reads: the scope's own, or all of them for the tables that
follow the scope's spectators to their purchases elsewhere (disciplines bought, crossover).

How it is computed, and why so: SQLite has no hash aggregation, so every GROUP BY over the
transactions sorts them all. The raw figures ("facts") therefore come from a few set-wise passes:
one per-spectator pass along the (spectator, purchase date) index that yields, per spectator, the
life-cycle aggregates and a bit mask per dimension (day, hour, month, lead time, purchase size,
channel × category × price); one GROUP BY for the purchases per day and hour; one for the tickets
and revenue per dimension; one for the disciplines. Distinct spectators per bucket are sums of mask
bits. Facts are raw, never shown: the tables are built from them with suppression at each request
(``segments.insight_builders``). The pages read them kept in the database per scope
(``segments.insight_store``), published after imports and profile refreshes
(``segments.insight_publish``).

Life-cycle stages follow DESIGN.md §7, computed from the scope's transactions as of a date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    case,
    distinct,
    exists,
    func,
    select,
)
from sqlalchemy.orm import Session

from core.identity import fsa_of
from core.models import (
    DISCIPLINES,
    Contact,
)
from core.privacy import (
    is_small,
    strictest_k,
)
from core.sql import day_number, day_of_week, hour_of, month_of, small_bucket
from core.sql_expressions import bit_union, mask_bit, one_shl, unindexed
from segments.insight_builders import InsightTables
from segments.insight_tables import (
    CATEGORY_KEYS,
    CHANNEL_KEYS,
    CIRCUMSTANCE_KEYS,
    FREQUENCY_BUCKETS,
    LEAD_BUCKETS,
    LEAD_UNKNOWN,
    LIFECYCLE_STAGES,
    PARTY_BUCKETS,
    SP,
    S,
    Scope,
    T,
    in_scope,
    scope_k,
)
from segments.lifecycle import LIFECYCLE_DAYS, window_start
from segments.profiles import lifecycle_case


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def index_of(column, keys: tuple):
    """Position of the column's value among ``keys``; the last position for anything else."""
    return case({key: i for i, key in enumerate(keys[:-1])}, value=column, else_=len(keys) - 1)


def _mix_bit(channel: int, category: int, circumstance: int) -> int:
    """The bit of a (channel, category, circumstance) in the 48-bit purchase-mix mask."""
    return (channel * len(CATEGORY_KEYS) + category) * len(CIRCUMSTANCE_KEYS) + circumstance


def _mix_mask(dimension: int, position: int) -> int:
    """Bits of the mix mask where the channel (0), category (1) or circumstance (2) is ``position``."""
    mask = 0
    for ch in range(len(CHANNEL_KEYS)):
        for ca in range(len(CATEGORY_KEYS)):
            for ci in range(len(CIRCUMSTANCE_KEYS)):
                if (ch, ca, ci)[dimension] == position:
                    mask |= 1 << _mix_bit(ch, ca, ci)
    return mask


def lead_bucket(bind):
    """The lead-time bucket of a purchase (joined with its show): LEAD_BUCKETS' position of the days
    from the purchase's date to the show's, LEAD_UNKNOWN when the show's date is unknown or past."""
    days = day_number(bind, S.c.starts_at) - day_number(bind, T.c.purchased_at)
    return small_bucket(bind, days, LEAD_BUCKETS, LEAD_UNKNOWN)


class InsightQuery(InsightTables):
    """The insight tables of one scope as of one date.

    The raw figures (``facts``) are computed lazily, each group by one query, and shared between
    the tables; the tables are built from them with suppression.
    """

    def __init__(self, session: Session, scope: Scope, as_of: dt.date | None = None, facts: dict | None = None):
        self.session = session
        self.scope = scope
        self.as_of = as_of or dt.date.today()
        self.high = _day_start(self.as_of + dt.timedelta(days=1))
        self.k = scope_k(session, scope)
        # Tables that follow a discipline's spectators to all their purchases read every organisation
        # (an organisation's read its own sales only).
        self.k_district = strictest_k(session) if scope.kind == "discipline" else self.k
        self.facts: dict[str, Any] = dict(facts or {})

    # -- SQL pieces --

    def _in_scope(self, table=T):
        """The scope's purchases up to ``as_of``, on ``table`` (the transactions or an alias)."""
        return in_scope(self.scope, self.high, table)

    def _party_bucket(self, column):
        return case(
            *[(column <= high, i) for i, (_low, high) in enumerate(PARTY_BUCKETS) if high is not None],
            else_=len(PARTY_BUCKETS) - 1,
        )

    def _discipline_bit(self):
        return case({d: 1 << i for i, d in enumerate(DISCIPLINES)}, value=S.c.discipline, else_=0)

    def _mix_index(self):
        channel = index_of(T.c.channel, CHANNEL_KEYS)
        category = index_of(T.c.category, CATEGORY_KEYS)
        circumstance = index_of(T.c.circumstance, CIRCUMSTANCE_KEYS)
        return (channel * len(CATEGORY_KEYS) + category) * len(CIRCUMSTANCE_KEYS) + circumstance

    def _discipline_sums(self, mask) -> list:
        """Sums over spectators of: each discipline's bit, then each pair of disciplines' bits."""
        n = len(DISCIPLINES)
        sums = [func.sum(mask_bit(mask, i)) for i in range(n)]
        sums += [func.sum(mask_bit(mask, i).op("&")(mask_bit(mask, j))) for i in range(n) for j in range(i + 1, n)]
        return sums

    @staticmethod
    def _discipline_facts(values: list[int]) -> dict:
        n = len(DISCIPLINES)
        single = [int(v or 0) for v in values[:n]]
        pairs = [[0] * n for _ in range(n)]
        rest = iter(values[n:])
        for i in range(n):
            pairs[i][i] = single[i]
            for j in range(i + 1, n):
                pairs[i][j] = pairs[j][i] = int(next(rest) or 0)
        return {"single": single, "pairs": pairs}

    # -- the facts --

    def compute_all(self) -> dict:
        """Every fact of the scope (what the summary table keeps, segments.insight_store)."""
        for name in ("spectators", "cells", "sums", "fsa", "disciplines"):
            self._fact(name)
        return self.facts

    def _compute_spectators(self) -> None:
        """One pass per spectator: life-cycle stage, frequency and the masks of what, when, how."""
        in_548 = T.c.purchased_at >= window_start(self.as_of, LIFECYCLE_DAYS)
        masks = {
            "dow": day_of_week(self.session, T.c.purchased_at),
            "hour": hour_of(self.session, T.c.purchased_at),
            "month": month_of(self.session, T.c.purchased_at) - 1,
            "lead": lead_bucket(self.session),
            "party": self._party_bucket(T.c.tickets),
            "mix": self._mix_index(),
        }
        masks = {name: bit_union(one_shl(bit)) for name, bit in masks.items()}
        with_disciplines = self.scope.kind == "district"
        if with_disciplines:  # the district's spectators' purchases are these same rows
            masks["disciplines"] = bit_union(self._discipline_bit())
        per_spectator = (
            select(
                func.count(distinct(case((in_548, T.c.show_id)))).label("shows_548"),
                func.min(T.c.purchased_at).label("first_at"),
                func.max(T.c.purchased_at).label("last_at"),
                func.count().label("purchases"),
                *[expr.label(name) for name, expr in masks.items()],
            )
            .select_from(T.outerjoin(S, S.c.id == T.c.show_id))
            .where(self._in_scope())
            .group_by(T.c.spectator_id)
            .subquery()
        )
        p = per_spectator.c
        # DESIGN.md §7, the one definition that profiles and the rule evaluator also use.
        stage = lifecycle_case(p.shows_548, p.first_at, p.last_at, self.as_of)
        frequency = case(
            *[(p.purchases <= high, i) for i, (_low, high) in enumerate(FREQUENCY_BUCKETS) if high],
            else_=len(FREQUENCY_BUCKETS) - 1,
        )
        # Group by plain columns of a subquery: PostgreSQL never compares two copies of a
        # parametrised expression.
        labelled = select(stage.label("stage"), frequency.label("frequency"), *[p[name] for name in masks]).subquery()
        q = labelled.c
        sizes = {"dow": 7, "hour": 24, "month": 12, "lead": len(LEAD_BUCKETS) + 1, "party": len(PARTY_BUCKETS)}
        sums = [func.sum(mask_bit(q[name], i)) for name, size in sizes.items() for i in range(size)]
        dimensions = (CHANNEL_KEYS, CATEGORY_KEYS, CIRCUMSTANCE_KEYS)
        sums += [
            func.sum(case((q.mix.op("&")(_mix_mask(d, pos)) != 0, 1), else_=0))
            for d, keys in enumerate(dimensions)
            for pos in range(len(keys))
        ]
        if with_disciplines:
            sums += self._discipline_sums(q.disciplines)
        rows = self.session.execute(
            select(q.stage, q.frequency, func.count(), *sums).group_by(q.stage, q.frequency)
        ).all()
        stages = dict.fromkeys(LIFECYCLE_STAGES, 0)
        frequencies = [0] * len(FREQUENCY_BUCKETS)
        totals = [0] * len(sums)
        for stage_key, bucket, n, *values in rows:
            stages[stage_key] += n
            frequencies[int(bucket)] += n
            totals = [a + int(b or 0) for a, b in zip(totals, values)]
        bits, at = {}, 0
        for name, size in sizes.items():
            bits[name] = totals[at : at + size]
            at += size
        for name, keys in zip(("channel", "category", "circumstance"), dimensions):
            bits[name] = totals[at : at + len(keys)]
            at += len(keys)
        self.facts["spectators"] = {
            "population": sum(stages.values()),
            "stages": stages,
            "frequency": frequencies,
            "bits": bits,
        }
        if with_disciplines:
            self.facts["disciplines"] = {"population": sum(stages.values()), **self._discipline_facts(totals[at:])}

    def _compute_cells(self) -> None:
        """Purchases and distinct spectators per day of week and hour of purchase."""
        inner = (
            select(
                day_of_week(self.session, T.c.purchased_at).label("dow"),
                hour_of(self.session, T.c.purchased_at).label("hour"),
                T.c.spectator_id.label("sid"),
            )
            .where(self._in_scope())
            .subquery()
        )
        rows = self.session.execute(
            select(inner.c.dow, inner.c.hour, func.count(), func.count(distinct(inner.c.sid))).group_by(
                inner.c.dow, inner.c.hour
            )
        ).all()
        self.facts["cells"] = [
            [int(d), int(h), n, people] for d, h, n, people in rows if d is not None and h is not None
        ]

    def _compute_sums(self) -> None:
        """Purchases, tickets and revenue per channel, category, price, size, month and lead time.

        One GROUP BY on one integer code of the six: SQLite sorts every row for a GROUP BY, and
        sorting one integer costs half of sorting six columns.
        """
        sizes = (len(PARTY_BUCKETS), 13, len(LEAD_BUCKETS) + 1)  # month 0 = unknown
        code = (
            (self._mix_index() * sizes[0] + self._party_bucket(T.c.tickets)) * sizes[1]
            + func.coalesce(month_of(self.session, T.c.purchased_at), 0)
        ) * sizes[2] + lead_bucket(self.session)
        inner = (
            select(code.label("code"), T.c.tickets.label("tickets"), T.c.amount_cents.label("cents"))
            .select_from(T.outerjoin(S, S.c.id == T.c.show_id))
            .where(self._in_scope())
            .subquery()
        )
        rows = self.session.execute(
            select(
                inner.c.code,
                func.count(),
                func.coalesce(func.sum(inner.c.tickets), 0),
                func.coalesce(func.sum(inner.c.cents), 0),
            ).group_by(inner.c.code)
        ).all()
        facts = []
        for value, n, tickets, cents in rows:
            value = int(value)
            value, lead = divmod(value, sizes[2])
            value, month = divmod(value, sizes[1])
            mix, party = divmod(value, sizes[0])
            channel, rest = divmod(mix, len(CATEGORY_KEYS) * len(CIRCUMSTANCE_KEYS))
            category, circumstance = divmod(rest, len(CIRCUMSTANCE_KEYS))
            facts.append([channel, category, circumstance, party, month, lead, n, int(tickets), int(cents)])
        self.facts["sums"] = facts

    def _compute_fsa(self) -> None:
        """Spectators of the scope per FSA. An organisation's are read from its own contact records'
        postal codes: the pooled spectator's FSA may have been learnt from another organisation's
        sale, which the organisation must not learn from its own page (DESIGN.md §10)."""
        scoped = T.alias("scoped")
        if self.scope.kind == "organisation":
            buyers = select(scoped.c.spectator_id).where(self._in_scope(scoped))
            prefix = func.upper(func.substr(Contact.postal_code, 1, 3))
            counts: dict = {}
            for head, n in self.session.execute(
                select(prefix, func.count())
                .where(Contact.organisation_id == self.scope.organisation_id, Contact.spectator_id.in_(buyers))
                .group_by(prefix)
            ):
                fsa = fsa_of(head)
                counts[fsa] = counts.get(fsa, 0) + n
            self.facts["fsa"] = [[fsa, n] for fsa, n in counts.items()]
            return
        if self.scope.kind == "district":  # nearly everyone: probe each spectator's purchases
            bought = exists().where(scoped.c.spectator_id == SP.c.id, self._in_scope(scoped))
        else:  # a part of the district: collect its buyers once
            bought = SP.c.id.in_(select(scoped.c.spectator_id).where(self._in_scope(scoped)))
        rows = self.session.execute(select(SP.c.fsa, func.count()).where(bought).group_by(SP.c.fsa)).all()
        self.facts["fsa"] = [[fsa, n] for fsa, n in rows]

    def _compute_disciplines(self) -> None:
        """What the scope's spectators bought anywhere in the district, by discipline and pair; for an
        organisation, what they bought from it only (its own sales: never a figure drawn from another
        organisation's transactions, DESIGN.md §10)."""
        if self.scope.kind == "district":
            self._compute_spectators()
            return
        scoped = T.alias("scoped")
        population = select(scoped.c.spectator_id).where(self._in_scope(scoped))
        bought = [unindexed(T.c.purchased_at) < self.high, T.c.spectator_id.in_(population)]
        if self.scope.kind == "organisation":
            bought.append(T.c.organisation_id == self.scope.organisation_id)
        per_spectator = (
            select(bit_union(self._discipline_bit()).label("mask"))
            .select_from(T.join(S, S.c.id == T.c.show_id))
            .where(*bought)
            .group_by(T.c.spectator_id)
            .subquery()
        )
        values = self.session.execute(select(*self._discipline_sums(per_spectator.c.mask))).one()
        self.facts["disciplines"] = {"population": self.population(), **self._discipline_facts(list(values))}


def build_insights(
    session: Session, scope: Scope, as_of: dt.date | None = None, *, facts: dict | None = None, raw: bool = False
) -> dict:
    """Every table of a scope's page: {"k", "k_district", "as_of", "population", "empty", "tables"}.

    ``empty`` is true when nobody bought anything in the scope up to ``as_of`` (zero reveals nobody).

    :param facts: the scope's raw facts as of ``as_of`` when they were kept (the pages read them from
        ``segments.insight_store``); computed from the transactions when None. Suppression with the
        current k runs at every call.
    :param raw: exact tables with nothing suppressed (k = 1), for the web layer, which shows them
        only through the noisy figures of core.privacy (``segments.insight_views``).
    """
    query = InsightQuery(session, scope, as_of, facts=facts)
    population = query.population()
    k, k_district = query.k, query.k_district
    if raw:
        query.k = query.k_district = 1  # is_small(n, 1) never holds: nothing hidden
    return {
        "k": k,
        "k_district": k_district,
        "as_of": query.as_of,
        "population": population if raw else (None if is_small(population, k) else population),
        "empty": population == 0,
        "tables": query.tables(),
    }
