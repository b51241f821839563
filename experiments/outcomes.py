"""Outcome matching: what each recipient bought in the attribution window and in the pre-period, set-wise in SQL.

Definitions (DESIGN.md §8), for an experiment launched at L with a window of W days:

- window ``[L, L + W)``; pre-period ``[L − W, L)`` (the covariate of CUPED);
- *conversion*: a purchase at one of the promotion's participating organisations;
- *revenue* and *tickets*: the sums of those purchases (money in integer cents);
- *cross-sell*: one of those purchases is at an organisation the recipient never bought from
  before the period began, or in a target discipline of the promotion (its disciplines, else
  those of its shows) the recipient never bought before the period began;
- *redemption*: the campaign's code used from launch to the end of the promotion's validity at a
  participating organisation. A unique code counts for its holder only: used by anybody else it
  counts for no one and is reported as a shared/leaked use. A shared code counts for whichever
  recipient used it (a control recipient using it is contamination, reported as such).

One ``INSERT ... SELECT ... GROUP BY`` computes every metric of both periods and the redemptions
(and one count the leaked codes): matching is idempotent, re-imports change nothing. Cross-sell
needs each recipient's history before each period: on PostgreSQL it is read once per recipient as
bit masks of organisations and disciplines (the per-purchase lookups became four hashes of the
whole transaction table); on SQLite each purchase looks its history up in the spectator index. It is
incremental: only the recipients whose spectators have transactions newer than the last pass are
recomputed (no one else's outcome can have changed), unless most of them are, when a full pass is
cheaper. Rows are sparse: a recipient with nothing in either period and no redemption has no
``Outcome`` row and counts as zero.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import (
    Select,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    union,
)
from sqlalchemy.orm import Session, aliased

from campaigns.models import Promotion
from core import sql
from core.models import Organisation, Show, Transaction, utcnow
from core.sql import has_bit_or_aggregate
from core.sql_expressions import bit_union, unindexed
from experiments import offers, power
from experiments.models import Experiment, Outcome, Recipient

OUTCOME_COLUMNS = (
    "experiment_id",
    "recipient_id",
    "arm",
    "organisation_id",
    "converted",
    "revenue_cents",
    "tickets",
    "cross_sell",
    "redeemed",
    "first_purchase_at",
    "pre_converted",
    "pre_revenue_cents",
    "pre_tickets",
    "pre_cross_sell",
)
# mSPRT mixing scale τ when the pre-period gives no variance to plan with (on the metric's scale).
FALLBACK_TAU = {"conversion": 0.01, "cross_sell": 0.01, "revenue": 1.0, "tickets": 0.1}


@dataclass(frozen=True)
class Scope:
    """Where a promotion's outcomes count: participating organisations and target disciplines."""

    organisation_ids: tuple[int, ...]
    disciplines: tuple[str, ...]


def promotion_scope(session: Session, promotion: Promotion | None) -> Scope:
    """The promotion's participating organisations and target disciplines (every organisation
    when there is no promotion yet; the disciplines of its shows when it names none)."""
    if promotion is None:
        return Scope(tuple(session.scalars(select(Organisation.id).order_by(Organisation.id))), ())
    disciplines = promotion.discipline_list or sorted({s.discipline for s in promotion.shows})
    return Scope(tuple(sorted(o.id for o in promotion.organisations)), tuple(disciplines))


def _is_new(purchase, show, before, scope: Scope):
    """SQL: the purchase is at an organisation, or in a target discipline, the spectator had never
    bought from before ``before``."""
    prior = aliased(Transaction)
    new_org = ~exists().where(
        prior.spectator_id == purchase.spectator_id,
        prior.organisation_id == purchase.organisation_id,
        prior.purchased_at < before,
    )
    if show is None or not scope.disciplines:
        return new_org
    prior_disc = aliased(Transaction)
    prior_show = aliased(Show)
    new_discipline = and_(
        show.discipline.in_(scope.disciplines),
        ~exists().where(
            prior_disc.spectator_id == purchase.spectator_id,
            prior_disc.purchased_at < before,
            prior_show.id == prior_disc.show_id,
            prior_show.discipline == show.discipline,
        ),
    )
    return or_(new_org, new_discipline)


@dataclass(frozen=True)
class CodeRule:
    """How a purchase redeems the campaign's code: during ``[start, end)``, with the recipient's own
    unique code (``shared`` None) or with the shared code."""

    start: dt.datetime
    end: dt.datetime
    shared: str | None = None


# Cross-sell reads each unit's history through bit masks of at most this many organisations and
# disciplines (one bit each, in a signed 64-bit integer); beyond, one lookup per purchase.
MASK_BITS = 62


def _bit_of(column, values: Sequence):
    """SQL: the bit of ``column``'s value among ``values`` (1, 2, 4, ...), 0 when not among them."""
    return case({value: 1 << i for i, value in enumerate(values)}, value=column, else_=0)


def _history_masks(population: Select, spectator_column: str, start: dt.datetime, split: dt.datetime, scope: Scope):
    """Per spectator of the population, bit masks of the participating organisations and target
    disciplines bought before ``start`` (``org_start``, ``disc_start``) and before ``split``
    (``org_split``, ``disc_split``).

    One pass over the population's history, grouped per spectator, instead of a lookup of the
    history per purchase and test: PostgreSQL ran those as four hashes of the whole transaction
    table, SQLite as four index searches per purchase.
    """
    pop = population.subquery("hpop")
    h = aliased(Transaction, name="ht")
    org_bit = _bit_of(h.organisation_id, scope.organisation_ids)
    columns = [
        pop.c[spectator_column].label("spectator_id"),
        bit_union(case((h.purchased_at < start, org_bit), else_=0)).label("org_start"),
        bit_union(org_bit).label("org_split"),
    ]
    query = select().select_from(pop).join(h, h.spectator_id == pop.c[spectator_column])
    if scope.disciplines:
        hs = aliased(Show, name="hs")
        disc_bit = _bit_of(hs.discipline, scope.disciplines)
        columns += [
            bit_union(case((h.purchased_at < start, disc_bit), else_=0)).label("disc_start"),
            bit_union(disc_bit).label("disc_split"),
        ]
        query = query.outerjoin(hs, hs.id == h.show_id)
    else:
        # only the organisations' bits are read: the rest of the history is not
        query = query.where(h.organisation_id.in_(scope.organisation_ids))
    # grouped by the population's column: SQLite then aggregates in the order it reads the rows
    return (
        query.add_columns(*columns).where(h.purchased_at < split).group_by(pop.c[spectator_column]).subquery("history")
    )


def _has_bit(mask, bit):
    return (func.coalesce(mask, 0).op("&")(bit)) != 0


def period_rows(
    population: Select,
    spectator_column: str,
    start: dt.datetime,
    split: dt.datetime,
    end: dt.datetime,
    scope: Scope,
    extra_columns: Sequence[str] = (),
    codes: CodeRule | None = None,
    masks: bool = True,
) -> Select:
    """Per-purchase rows of the population's purchases at participating organisations: ``unit``
    (the population's key column), ``purchased_at``, ``amount_cents``, ``tickets``, ``w`` (1 in the
    window ``[split, end)``), ``pre`` (1 in the pre-period ``[start, split)``), ``xsw`` and ``xsp``
    (1 for a cross-sell purchase of the window, of the pre-period, each judged against the history
    before its own period began) and ``redeem`` (1 for a use of the campaign's code).

    :param population: a SELECT with a ``unit`` column, the spectator id column named
        ``spectator_column`` (and ``code`` for unique codes, and any ``extra_columns``), one row per
        spectator.
    :param codes: the redemption rule; purchases after the window are read for it only.
    :param masks: judge cross-sell against per-spectator history masks (:func:`_history_masks`;
        PostgreSQL: half the time of the matching) rather than with a lookup per purchase (SQLite,
        whose index searches stop at the first earlier purchase: a quarter faster than the masks).
    """
    pop = population.subquery("pop")
    t = aliased(Transaction, name="t")
    s = aliased(Show, name="s") if scope.disciplines else None
    in_window = and_(t.purchased_at >= split, t.purchased_at < end)
    in_pre = t.purchased_at < split
    history = None
    if masks and len(scope.organisation_ids) <= MASK_BITS and len(scope.disciplines) <= MASK_BITS:
        history = _history_masks(population, spectator_column, start, split, scope)
        org_bit = _bit_of(t.organisation_id, scope.organisation_ids)

        def is_new(period: str):
            new_org = ~_has_bit(history.c[f"org_{period}"], org_bit)
            if s is None:
                return new_org
            disc_bit = _bit_of(s.discipline, scope.disciplines)
            return or_(new_org, and_(disc_bit != 0, ~_has_bit(history.c[f"disc_{period}"], disc_bit)))

        window_new = case((in_window, case((is_new("split"), 1), else_=0)), else_=0)
        pre_new = case((in_pre, case((is_new("start"), 1), else_=0)), else_=0)
    else:
        window_new = case((in_window, case((_is_new(t, s, split, scope), 1), else_=0)), else_=0)
        pre_new = case((in_pre, case((_is_new(t, s, start, scope), 1), else_=0)), else_=0)
    when = and_(t.purchased_at >= start, t.purchased_at < end)
    redeem = literal(0)
    if codes is not None:
        matches = _normalised_code(t.promo_code) == (codes.shared.upper() if codes.shared else pop.c.code)
        coded = and_(t.promo_code.is_not(None), t.purchased_at >= codes.start, t.purchased_at < codes.end)
        redeem = case((and_(coded, matches), 1), else_=0)
        if codes.end > end:
            # One range per spectator (an index range on SQLite, not two): after the window, only
            # purchases with a code are read.
            when = and_(
                t.purchased_at >= start,
                t.purchased_at < codes.end,
                or_(t.purchased_at < end, t.promo_code.is_not(None)),
            )
    query = (
        select(
            pop.c.unit.label("unit"),
            *[pop.c[c] for c in extra_columns],
            pop.c[spectator_column].label("spectator_id"),
            t.purchased_at.label("purchased_at"),
            t.amount_cents.label("amount_cents"),
            t.tickets.label("tickets"),
            case((in_window, 1), else_=0).label("w"),
            case((in_pre, 1), else_=0).label("pre"),
            window_new.label("xsw"),
            pre_new.label("xsp"),
            redeem.label("redeem"),
        )
        .select_from(pop)
        .join(t, t.spectator_id == pop.c[spectator_column])
    )
    if s is not None:
        query = query.outerjoin(s, s.id == t.show_id)
    if history is not None:
        query = query.outerjoin(history, history.c.spectator_id == pop.c[spectator_column])
    return query.where(t.organisation_id.in_(scope.organisation_ids), when)


def per_unit_metrics(rows: Select, extra_columns: Sequence[str] = (), group_column: str = "unit") -> Select:
    """Aggregate :func:`period_rows` to one row per unit with something to count.

    Grouped by ``group_column`` alone (one value per unit; the unit and the extra columns are
    carried with ``max``): grouped by the column the population is read in the order of, SQLite
    aggregates as the rows come instead of sorting them first.
    """
    sub = rows.subquery("purchases")
    w, pre = sub.c.w, sub.c.pre
    keys = [func.max(sub.c.unit).label("unit"), *[func.max(sub.c[c]).label(c) for c in extra_columns]]
    return (
        select(
            *keys,
            func.max(w).label("converted"),
            func.sum(w * sub.c.amount_cents).label("revenue_cents"),
            func.sum(w * sub.c.tickets).label("tickets"),
            func.max(sub.c.xsw).label("cross_sell"),
            func.max(sub.c.redeem).label("redeemed"),
            func.min(case((w == 1, sub.c.purchased_at), else_=None)).label("first_purchase_at"),
            func.max(pre).label("pre_converted"),
            func.sum(pre * sub.c.amount_cents).label("pre_revenue_cents"),
            func.sum(pre * sub.c.tickets).label("pre_tickets"),
            func.max(sub.c.xsp).label("pre_cross_sell"),
        )
        .group_by(sub.c[group_column])
        .having(func.max(w) + func.max(pre) + func.max(sub.c.redeem) > 0)
    )


def _validity(promotion: Promotion | None, launched_at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[from, until) of code redemptions: launch (or the validity's first day, if later) to the end
    of the validity's last day."""
    if promotion is None:
        return launched_at, launched_at
    start = max(launched_at, dt.datetime.combine(promotion.valid_from, dt.time()))
    end = dt.datetime.combine(promotion.valid_until, dt.time()) + dt.timedelta(days=1)
    return start, end


def _normalised_code(column):
    return func.upper(func.trim(column))


def code_rule(
    experiment: Experiment,
    promotion: Promotion | None,
    arm_promotions: Sequence[Promotion | None] = (),
    now: dt.datetime | None = None,
) -> CodeRule | None:
    """The experiment's redemption rule, or None when no code can be redeemed.

    With test arms carrying their own promotions (``arm_promotions``), codes count from the
    earliest validity to the end of the latest; when the arms' code rules differ, each recipient
    redeems their own arm's code (``experiments.offers.recipient_code``: ``shared`` is None).
    With ``now``, uses dated after it do not count (they have not happened).
    """
    start, end = _validity(promotion, experiment.launched_at)
    if any(p is not None for p in arm_promotions):
        start, end = offers.redemption_period([promotion, *arm_promotions], experiment.launched_at)
    if now is not None:
        end = min(end, now)
    if end <= start:
        return None
    if offers.mixed_codes(experiment):
        return CodeRule(start, end)
    if experiment.code_strategy == "shared":
        return CodeRule(start, end, experiment.shared_code) if experiment.shared_code else None
    return CodeRule(start, end)


def leaked_uses(
    session: Session, experiment: Experiment, scope: Scope, promotion: Promotion | None, now: dt.datetime | None = None
) -> int:
    """Purchases at participating organisations, during the validity (and before ``now``), that used
    one of the experiment's unique codes without being its holder (they count for no one)."""
    rule = code_rule(experiment, promotion, list(offers.arm_promotions(session, experiment).values()), now)
    if not offers.any_unique_codes(experiment) or rule is None or not scope.organisation_ids:
        return 0
    r = aliased(Recipient, name="r")
    t = aliased(Transaction, name="t")
    # EXISTS rather than a join: both engines then read the purchases with a code and look each
    # code up (SQLite would otherwise loop over the recipients).
    someone_elses = exists().where(
        r.code == _normalised_code(t.promo_code), r.experiment_id == experiment.id, r.spectator_id != t.spectator_id
    )
    # Only the (few) purchases with a code are read, through the promo-code index: ``> ''`` is an
    # index range on both engines (IS NOT NULL is not, on SQLite), and SQLite, which plans without
    # statistics, is kept off the organisation and date indexes that would read every sale.
    query = (
        select(func.count(t.id))
        .select_from(t)
        .where(
            t.promo_code > "",
            unindexed(t.organisation_id).in_(scope.organisation_ids),
            unindexed(t.purchased_at) >= rule.start,
            unindexed(t.purchased_at) < rule.end,
            someone_elses,
        )
    )
    return session.scalar(query) or 0


@dataclass
class MatchSummary:
    """What a matching pass found."""

    mode: str  # "full", "incremental" or "unchanged"
    outcomes: int  # recipients with an outcome row
    converted: int
    redeemed: int
    leaked: int
    watermark: int | None
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def match_outcomes(
    session: Session, experiment: Experiment, now: dt.datetime | None = None, full: bool = False
) -> MatchSummary:
    """Match the transactions to the recipients of ``experiment`` (flushes, never commits).

    Incremental by default: only the recipients whose spectators have transactions newer than the
    last pass (``outcomes_watermark``, the highest transaction id then) are recomputed; ``full``, a
    first pass, or new transactions outnumbering a quarter of the recipients recompute everyone.
    Either way the rows are replaced set-wise, so matching again, or importing the same rows again,
    changes nothing. Leaked codes are recounted as a whole (they can involve anyone).

    Only what has happened counts: a sale dated after ``now`` (a sale of later today imported this
    morning, or one put in the database with a future date) counts neither in the window nor as a
    redemption, whatever the window says; it counts at the first pass after its date (the sales
    dated since the last pass are recomputed, see :func:`_became_due`).

    :param now: when the matching happens (stored as ``outcomes_at``): the end of what counts.
    :param full: recompute every recipient (the nightly job does, catching anything missed).
    :returns: counts of the pass and how long it took.
    """
    began = time.perf_counter()
    now = now or utcnow()
    promotion = experiment.campaign.promotion
    scope = promotion_scope(session, promotion)
    tuned = sql.tune_for_large_joins(session)
    latest = session.scalar(select(func.max(Transaction.id)))
    previous = experiment.outcomes_watermark
    previous_at = experiment.outcomes_at
    # a pass at an earlier "now" than the last one must forget what happened in between: in full
    incremental = not full and previous is not None and previous_at is not None and now >= previous_at
    new_rows = 0
    if incremental:
        # the new sales, and those dated in the future at the last pass that have happened since
        # (two index ranges: an OR of both would read the whole table)
        fresh = Transaction.id > previous
        late = and_(Transaction.id <= previous, _became_due(previous_at, now))
        new_rows = sum(
            session.scalar(select(func.count()).select_from(Transaction).where(w)) or 0 for w in (fresh, late)
        )
        incremental = new_rows * 4 < (experiment.recipients or 0)
    mode = "incremental" if incremental else "full"
    if incremental and not new_rows:
        mode = "unchanged"
    else:
        code = offers.recipient_code(experiment) if offers.mixed_codes(experiment) else Recipient.code
        recipients = select(
            Recipient.id.label("unit"),
            Recipient.spectator_id.label("spectator_id"),
            Recipient.arm.label("arm"),
            Recipient.organisation_id.label("organisation_id"),
            code.label("code"),
        ).where(Recipient.experiment_id == experiment.id)
        if incremental:
            touched = union(select(Transaction.spectator_id).where(fresh), select(Transaction.spectator_id).where(late))
            recipients = recipients.where(Recipient.spectator_id.in_(touched))
            session.execute(
                delete(Outcome).where(
                    Outcome.experiment_id == experiment.id,
                    Outcome.recipient_id.in_(select(recipients.subquery().c.unit)),
                )
            )
        else:
            session.execute(delete(Outcome).where(Outcome.experiment_id == experiment.id))
        if scope.organisation_ids:
            extra = ("arm", "organisation_id")
            # the window ends at "now" while it is open: a sale dated later has not happened
            end = max(experiment.launched_at, min(experiment.window_end, now))
            rows = period_rows(
                recipients,
                "spectator_id",
                experiment.pre_start,
                experiment.launched_at,
                end,
                scope,
                extra,
                code_rule(experiment, promotion, list(offers.arm_promotions(session, experiment).values()), now),
                masks=has_bit_or_aggregate(session.get_bind()),
            )
            metrics = per_unit_metrics(rows, extra, group_column="spectator_id").subquery("metrics")
            sql.insert_from_select(
                session,
                Outcome.__table__,
                OUTCOME_COLUMNS,
                select(
                    literal(experiment.id),
                    metrics.c.unit,
                    metrics.c.arm,
                    metrics.c.organisation_id,
                    metrics.c.converted,
                    metrics.c.revenue_cents,
                    metrics.c.tickets,
                    metrics.c.cross_sell,
                    metrics.c.redeemed,
                    metrics.c.first_purchase_at,
                    metrics.c.pre_converted,
                    metrics.c.pre_revenue_cents,
                    metrics.c.pre_tickets,
                    metrics.c.pre_cross_sell,
                ),
            )
    leaked = leaked_uses(session, experiment, scope, promotion, now)
    experiment.leaked_redemptions = leaked
    experiment.outcomes_at = now
    experiment.outcomes_watermark = latest
    if experiment.design is None:
        experiment.design = design_from_pre_period(session, experiment)
    session.flush()
    outcomes, converted, redeemed = session.execute(
        select(
            func.count(), func.coalesce(func.sum(Outcome.converted), 0), func.coalesce(func.sum(Outcome.redeemed), 0)
        ).where(Outcome.experiment_id == experiment.id)
    ).one()
    if tuned:
        sql.untune_large_joins(session)
    return MatchSummary(
        mode, int(outcomes), int(converted), int(redeemed), int(leaked), latest, round(time.perf_counter() - began, 3)
    )


def design_from_pre_period(session: Session, experiment: Experiment, target_power: float = 0.8) -> dict:
    """Pre-period baselines of every metric and its planned minimum detectable effect at the
    experiment's sizes (control against its smallest test arm), from the outcome rows. The squared
    MDE is the mixing variance τ² of the interim always-valid p-values: fixed from pre-launch data
    only, before any outcome of the window is looked at."""
    sizes = dict(
        session.execute(
            select(Recipient.arm, func.count()).where(Recipient.experiment_id == experiment.id).group_by(Recipient.arm)
        ).all()
    )
    n = sum(sizes.values())
    n_control = sizes.get("control", 0)
    n_arm = min((v for k, v in sizes.items() if k != "control"), default=0)
    o = Outcome
    sums = session.execute(
        select(
            func.coalesce(func.sum(o.pre_converted), 0),
            func.coalesce(func.sum(o.pre_cross_sell), 0),
            func.coalesce(func.sum(o.pre_revenue_cents), 0),
            func.coalesce(func.sum(o.pre_revenue_cents * o.pre_revenue_cents), 0),
            func.coalesce(func.sum(o.pre_tickets), 0),
            func.coalesce(func.sum(o.pre_tickets * o.pre_tickets), 0),
        ).where(o.experiment_id == experiment.id)
    ).one()
    conv, xs, rev, rev2, tix, tix2 = (float(v) for v in sums)

    def moments(total: float, squares: float, scale: float = 1.0) -> tuple[float, float]:
        if n < 2:
            return 0.0, 0.0
        mean = total / scale / n
        return mean, math.sqrt(max(0.0, (squares / scale / scale - n * mean * mean) / (n - 1)))

    baselines = {
        "conversion": (conv / n if n else 0.0, None),
        "cross_sell": (xs / n if n else 0.0, None),
        "revenue": moments(rev, rev2, 100.0),
        "tickets": moments(tix, tix2),
    }
    alpha = float(experiment.alpha or 0.05)
    design = {"alpha": alpha, "power": target_power, "n_control": n_control, "n_smallest_arm": n_arm, "metrics": {}}
    for metric, (mean, sd) in baselines.items():
        mde = None
        if n_control > 0 and n_arm > 0:
            try:
                if sd is None:
                    sd = math.sqrt(mean * (1 - mean))
                    if 0.0 < mean < 1.0:
                        mde = power.mde_binary(mean, n_control, n_arm, alpha, target_power).absolute
                elif sd > 0:
                    mde = power.mde_continuous(sd, n_control, n_arm, alpha, target_power).absolute
            except ValueError:
                mde = None
        tau = mde if mde else FALLBACK_TAU[metric]
        design["metrics"][metric] = {"pre_mean": mean, "pre_sd": sd or 0.0, "mde": mde, "tau2": tau * tau}
    return design


def _became_due(previous_at: dt.datetime | None, now: dt.datetime):
    """SQL: the sale is dated from the last pass (``previous_at``) to ``now``. Such a sale already
    in the database at the last pass was dated in its future and left out then; it counts now.
    (Without future-dated sales these are the newly imported sales, already recomputed.)"""
    if previous_at is None:
        return literal(False)
    return and_(Transaction.purchased_at >= previous_at, Transaction.purchased_at < now)


def is_stale(session: Session, experiment: Experiment, now: dt.datetime | None = None) -> bool:
    """True when transactions arrived since the last matching (or it never ran), or when a sale
    dated after the last matching, left out then as not yet happened, is now in the past."""
    if experiment.outcomes_at is None:
        return True
    latest = session.scalar(select(func.max(Transaction.id)))
    if (latest or 0) > (experiment.outcomes_watermark or 0):
        return True
    now = now or utcnow()
    if now <= experiment.outcomes_at:
        return False
    return session.scalar(select(Transaction.id).where(_became_due(experiment.outcomes_at, now)).limit(1)) is not None
