"""Power before launch: the baseline of the campaign's segment in a comparable window (noisy where
the figures are pooled) and, from it, each arm's minimum detectable effect and the sizes a target
lift would need (experiments.power)."""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.eligibility import eligible_count, eligible_select
from campaigns.funnel import figure_name
from campaigns.models import Campaign
from core.models import Spectator, Transaction, utcnow
from core.privacy import Cell, Release, is_small, strictest_k
from core.sql import has_bit_or_aggregate
from experiments import power
from experiments.outcomes import per_unit_metrics, period_rows, promotion_scope
from experiments.report_data import LIFT_METRICS, metric_kind, shown_count
from segments.models import SnapshotMember

# --- power before launch ------------------------------------------------------------------------

# What one buyer is taken to add at most to the window's sums (cents, tickets): the bounds of the
# insights' sums (segments.insight_views.SUM_BOUNDS), so that a figure costs the same noise on both pages.
SUM_BOUNDS = {"money": 50_000, "tickets": 10}


def _cell(session: Session, spectator_id, source, where=None) -> Cell:
    """The fingerprint (core.privacy.Cell) of the spectators ``spectator_id`` of ``source``."""
    query = (select(func.count(), func.coalesce(func.sum(Spectator.cell_key), 0)).select_from(source)
             .join(Spectator, Spectator.id == spectator_id))
    if where is not None:
        query = query.where(where)
    return Cell.of(*session.execute(query).one())


def _protected_count(session: Session, release: Release, name: str, spectator_id, source, where=None,
                     threshold: bool = True) -> int:
    """The noisy figure ``name`` of the spectators ``spectator_id`` of ``source`` (``where`` them);
    0 when under k with ``threshold`` (the callers then say "too small"), the bare noisy value
    without."""
    cell = _cell(session, spectator_id, source, where)
    if not threshold:
        return release.noisy(name, cell)
    figure = release.figure(name, cell)
    return 0 if figure.value is None else figure.value


BASELINES = ("year_earlier", "before_launch", "last_days")


def _population(session: Session, campaign: Campaign):
    """(population SELECT with ``unit`` and ``spectator_id``, its source) for the power estimate."""
    if campaign.snapshot_id is not None:
        return (select(SnapshotMember.spectator_id.label("unit"), SnapshotMember.spectator_id.label("spectator_id"))
                .where(SnapshotMember.snapshot_id == campaign.snapshot_id)), "snapshot"
    segment = campaign.segment
    version = segment.current if segment is not None else None
    if version is None:
        return None, None
    from segments.preview import members_select

    members = members_select(session, version.rule).subquery("members")
    return select(members.c.spectator_id.label("unit"), members.c.spectator_id.label("spectator_id")), "segment"


def baseline_window(session: Session, campaign: Campaign, baseline: str | None, now: dt.datetime):
    """(kind, start, end) of the comparable window the history is read from.

    ``year_earlier``: the campaign's window one year before the planned launch; ``before_launch``:
    the ``window_days`` before the planned launch (ending today at the latest); ``last_days``: the
    last ``window_days`` days. Default: a year earlier when the data reach back that far, else
    the last days.
    """
    days = dt.timedelta(days=campaign.window_days)
    launch = campaign.planned_launch_at
    if baseline not in BASELINES:
        oldest = session.scalar(select(func.min(Transaction.purchased_at)))
        baseline = "year_earlier" if oldest is not None and oldest <= launch - dt.timedelta(days=365) else "last_days"
    if baseline == "year_earlier":
        start = launch - dt.timedelta(days=365)
        return baseline, start, start + days
    if baseline == "before_launch":
        end = min(launch, now)
        return baseline, end - days, end
    latest = session.scalar(select(func.max(Transaction.purchased_at)))
    end = min(now, latest + dt.timedelta(seconds=1)) if latest is not None else now
    return "last_days", end - days, end


def power_report(session: Session, campaign: Campaign, alpha: float = 0.05, target_power: float = 0.8,
                 target_lift: float = 0.10, baseline: str | None = None, now: dt.datetime | None = None,
                 release: Release | None = None) -> dict:
    """Design-time power of ``campaign`` (DESIGN.md §8): for each test arm against the control,
    the minimum detectable effect of every metric at the planned sizes and split, and the number
    of recipients needed to detect a relative lift of ``target_lift`` on the primary metric.

    Baselines (rate or mean and standard deviation) are the segment members' purchases at the
    promotion's organisations in a comparable window (:func:`baseline_window`), with the outcome
    definitions of ``experiments/outcomes.py``. Sizes are the eligible recipients once approvals
    are in, else the segment's size (an upper bound: consent and approvals only remove people).

    With a ``release`` (the web pages: their readers do not own the pooled data) every count is
    its set's noisy figure (:class:`core.privacy.Release`, named as on the campaign page:
    :func:`campaigns.funnel.figure_name`; "too small" under k): the population, the eligible total, the buyers, and the
    converting and cross-selling counts behind the rates; the minimum detectable effects and sizes
    are computed from those, so that none gives an exact count back.
    """
    now = now or utcnow()
    result: dict = {"alpha": alpha, "power": target_power, "target_lift": target_lift,
                    "primary_metric": campaign.primary_metric, "error": None}
    population, source = _population(session, campaign)
    if population is None:
        result["error"] = "no_segment"
        return result
    pop = population.subquery("population")
    population_size = session.scalar(select(func.count()).select_from(pop)) or 0
    k = strictest_k(session) if release is None else release.k
    name = figure_name(campaign)
    if release is not None:
        # the snapshot is the funnel's segment total: the same figure as on the campaign page
        population_size = _protected_count(session, release, f"{name}.{'segment' if source == 'snapshot' else source}",
                                           pop.c.spectator_id, pop)
    kind, start, end = baseline_window(session, campaign, baseline, now)
    result["baseline"] = {"kind": kind, "start": start.date().isoformat(),
                          "end": (end - dt.timedelta(seconds=1)).date().isoformat()}
    eligible = eligible_count(session, campaign) if campaign.status in ("awaiting_approvals", "ready") else 0
    eligible_hidden = False
    if release is not None and eligible:
        chosen = eligible_select(session, campaign).subquery("eligible")
        eligible = _protected_count(session, release, f"{name}.eligible", chosen.c.spectator_id, chosen)
        eligible_hidden = eligible == 0
    n_total, n_source = (eligible, "eligible") if eligible or eligible_hidden else (population_size, source)
    result.update({"population": shown_count(population_size, k), "n_total": shown_count(n_total, k), "n_source": n_source,
                   "k": k})
    if population_size == 0 or is_small(population_size, k) or is_small(n_total, k) or eligible_hidden:
        result["error"] = "too_small"
        return result
    scope = promotion_scope(session, campaign.promotion)
    if not scope.organisation_ids:
        result["error"] = "no_organisation"
        return result
    rows = period_rows(population, "spectator_id", start, start, end, scope,
                       masks=has_bit_or_aggregate(session.get_bind()))
    per = per_unit_metrics(rows).subquery("per_unit")
    agg = session.execute(select(
        func.count(), func.coalesce(func.sum(per.c.converted), 0), func.coalesce(func.sum(per.c.revenue_cents), 0),
        func.coalesce(func.sum(per.c.revenue_cents * per.c.revenue_cents), 0),
        func.coalesce(func.sum(per.c.tickets), 0), func.coalesce(func.sum(per.c.tickets * per.c.tickets), 0),
        func.coalesce(func.sum(per.c.cross_sell), 0))).one()
    buyers, converted, rev, rev2, tix, tix2, xs = (float(v or 0) for v in agg)
    n = float(population_size)
    if release is not None:
        window = f"{name}.power.{kind}.{start.date().isoformat()}.{end.date().isoformat()}"
        buyers = float(_protected_count(session, release, f"{window}.buyers", per.c.unit, per))
        # a noisy count can land on 0 or on n, where a rate of 0 % or 100 % has no variance and no
        # detectable effect: half a person from either end keeps the noisy rate inside (0, 1)
        converted = min(max(float(_protected_count(session, release, f"{window}.converted", per.c.unit, per,
                                                   per.c.converted == 1, threshold=False)), 0.5), n - 0.5)
        xs = min(max(float(_protected_count(session, release, f"{window}.cross_sell", per.c.unit, per,
                                            per.c.cross_sell == 1, threshold=False)), 0.5), n - 0.5)
        # The sums behind the revenue and tickets baselines: exact, a mean times the shown population
        # gave them back, and two campaigns one spectator apart that spectator's purchases. Noise of σ
        # times what one buyer is taken to add at most (the insights' bounds), the squares at that
        # bound squared: the standard deviations cost the most, and are rough for small segments.
        cell = _cell(session, per.c.unit, per)
        money, most_tickets = SUM_BOUNDS["money"], SUM_BOUNDS["tickets"]
        rev = release.sum_figure(f"{window}.revenue", cell, rev, money) or 0.0
        rev2 = release.sum_figure(f"{window}.revenue_squares", cell, rev2, money * money) or 0.0
        tix = release.sum_figure(f"{window}.tickets", cell, tix, most_tickets) or 0.0
        tix2 = release.sum_figure(f"{window}.tickets_squares", cell, tix2, most_tickets * most_tickets) or 0.0

    def moments(total: float, squares: float, scale: float = 1.0) -> tuple[float, float]:
        mean = total / scale / n
        var = max(0.0, (squares / scale / scale - n * mean * mean) / (n - 1)) if n > 1 else 0.0
        return mean, math.sqrt(var)

    baselines = {
        "conversion": (converted / n, math.sqrt(converted / n * (1 - converted / n))),
        "cross_sell": (xs / n, math.sqrt(xs / n * (1 - xs / n))),
        "revenue": moments(rev, rev2, 100.0),
        "tickets": moments(tix, tix2),
    }
    result["buyers"] = shown_count(int(buyers), k)
    if is_small(int(buyers), k) or (release is not None and buyers == 0):
        result["error"] = "too_few_buyers"
        return result
    result["metrics"] = {m: {"type": metric_kind(m), "mean": baselines[m][0], "sd": baselines[m][1]}
                         for m in LIFT_METRICS}
    shares = {a["name"]: float(a["share"]) / 100.0 for a in campaign.arms}
    share_c = shares.get("control", 0.0)
    arms = []
    for arm, share_a in shares.items():
        if arm == "control":
            continue
        n_c, n_a = int(n_total * share_c), int(n_total * share_a)
        entry = {"arm": arm, "n_control": n_c, "n_arm": n_a, "mde": {}, "needed": None}
        for metric in LIFT_METRICS:
            mean, sd = baselines[metric]
            mde = None
            try:
                if metric_kind(metric) == "binary":
                    if 0.0 < mean < 1.0 and n_c > 0 and n_a > 0:
                        mde = power.mde_binary(mean, n_c, n_a, alpha, target_power)
                elif sd > 0 and n_c > 0 and n_a > 0:
                    # revenue and tickets move through more buyers: the arm's variance grows with them
                    mde = power.mde_continuous(sd, n_c, n_a, alpha, target_power, baseline_mean=mean,
                                               buyers=mean > 0)
            except ValueError:
                mde = None
            entry["mde"][metric] = {"absolute": mde.absolute, "relative": mde.relative} if mde else None
        mean, sd = baselines[campaign.primary_metric]
        try:
            if metric_kind(campaign.primary_metric) == "binary":
                size = power.sample_size_binary(mean, target_lift, share_c, share_a, alpha, target_power, relative=True)
            else:
                size = power.sample_size_continuous(sd, target_lift * mean, share_c, share_a, alpha, target_power)
            entry["needed"] = {"total": size.total, "n_control": size.n_control, "n_arm": size.n_arm,
                               "enough": size.total <= n_total}
        except ValueError:
            entry["needed"] = None
        arms.append(entry)
    result["arms"] = arms
    return result

