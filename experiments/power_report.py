"""Power before launch: the baseline of the campaign's segment in a comparable window (noisy where
the figures are pooled) and, from it, each arm's minimum detectable effect and the sizes a target
lift would need (experiments.power)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time

from sqlalchemy import case, delete, func, literal, select
from sqlalchemy.orm import Session

from campaigns.eligibility import eligible_count, eligible_select
from campaigns.funnel import Funnel, figure_name
from campaigns.funnel_store import kept_counts
from campaigns.models import Campaign
from core import sql
from core.kept import read_kept, write_kept
from core.models import Setting, Spectator, Transaction, utcnow
from core.privacy import Cell, Release, data_epoch, is_small, strictest_k
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
    query = (
        select(func.count(), func.coalesce(func.sum(Spectator.cell_key), 0))
        .select_from(source)
        .join(Spectator, Spectator.id == spectator_id)
    )
    if where is not None:
        query = query.where(where)
    return Cell.of(*session.execute(query).one())


def _protected_count(
    session: Session, release: Release, name: str, spectator_id, source, where=None, threshold: bool = True
) -> int:
    """The noisy figure ``name`` of the spectators ``spectator_id`` of ``source`` (``where`` them);
    0 when under k with ``threshold`` (the callers then say "too small"), the bare noisy value
    without."""
    return _noisy_count(release, name, _cell(session, spectator_id, source, where), threshold)


def _noisy_count(release: Release, name: str, cell: Cell, threshold: bool = True) -> int:
    """The noisy figure ``name`` of the set ``cell``: 0 when under k with ``threshold``, the bare
    noisy value without."""
    if not threshold:
        return release.noisy(name, cell)
    figure = release.figure(name, cell)
    return 0 if figure.value is None else figure.value


BASELINES = ("year_earlier", "before_launch", "last_days")


def _population(session: Session, campaign: Campaign):
    """(population SELECT with ``unit`` and ``spectator_id``, its source) for the power estimate."""
    if campaign.snapshot_id is not None:
        return (
            select(SnapshotMember.spectator_id.label("unit"), SnapshotMember.spectator_id.label("spectator_id")).where(
                SnapshotMember.snapshot_id == campaign.snapshot_id
            )
        ), "snapshot"
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


WINDOW_METRICS = ("conversion", "cross_sell", "revenue", "tickets")
# the sets behind the page's noisy figures: who bought in the window, before it and in both
WINDOW_SETS = ("converted", "converted.before", "converted.both", "cross_sell", "cross_sell.before", "cross_sell.both")


def window_values(session: Session, population, start, end, scope) -> tuple[list[float], list[int]]:
    """The segment's metrics in the window and, as the experiment's covariate, the same length
    before it (CUPED's history), in one pass over the segment's purchases in both periods:

    * for each metric of :data:`WINDOW_METRICS`, Σy, Σy², Σx, Σx², Σxy over the segment (y in the
      window, x before it; revenue in cents);
    * for each set of :data:`WINDOW_SETS`, its count and sum of cell keys (core.privacy.Cell), which
      key the noise of the figures shown to readers who do not own the data.
    """
    rows = period_rows(
        population,
        "spectator_id",
        start - (end - start),
        start,
        end,
        scope,
        masks=has_bit_or_aggregate(session.get_bind()),
    )
    per = per_unit_metrics(rows).subquery("per_unit")
    columns = {
        "conversion": (per.c.converted, per.c.pre_converted),
        "cross_sell": (per.c.cross_sell, per.c.pre_cross_sell),
        "revenue": (per.c.revenue_cents, per.c.pre_revenue_cents),
        "tickets": (per.c.tickets, per.c.pre_tickets),
    }
    sums = [
        func.coalesce(func.sum(e), 0)
        for m in WINDOW_METRICS
        for y, x in [columns[m]]
        for e in (y, y * y, x, x * x, x * y)
    ]
    sets = {
        "converted": per.c.converted == 1,
        "converted.before": per.c.pre_converted == 1,
        "converted.both": (per.c.converted == 1) & (per.c.pre_converted == 1),
        "cross_sell": per.c.cross_sell == 1,
        "cross_sell.before": per.c.pre_cross_sell == 1,
        "cross_sell.both": (per.c.cross_sell == 1) & (per.c.pre_cross_sell == 1),
    }
    key = func.coalesce(Spectator.cell_key, 0)
    fingerprints = [func.sum(case((sets[s], value), else_=0)) for s in WINDOW_SETS for value in (literal(1), key)]
    values = session.execute(
        select(*sums, *fingerprints).select_from(per).join(Spectator, Spectator.id == per.c.unit)
    ).one()
    return [float(v or 0) for v in values[: len(sums)]], [int(v or 0) for v in values[len(sums) :]]


def _window_name(campaign: Campaign, start: dt.datetime, end: dt.datetime) -> str:
    """The kept window's name (a setting's name holds 60 characters: the window's dates as a digest)."""
    window = hashlib.sha256(f"{start.isoformat()}/{end.isoformat()}".encode()).hexdigest()[:16]
    return f"power:{campaign.id}:{window}"


def _window_state(campaign: Campaign, scope) -> str:
    """What the window's values depend on besides the data: the campaign's state (its snapshot,
    launch and answers), the segment's rule while there is no snapshot, the promotion's organisations."""
    version = campaign.segment.current if campaign.snapshot_id is None and campaign.segment is not None else None
    organisations = ",".join(str(o) for o in sorted(scope.organisation_ids))
    return f"{figure_name(campaign)}:{version.id if version is not None else ''}:{organisations}"


def kept_window(
    session: Session, campaign: Campaign, population, start, end, scope, recount: bool = False
) -> tuple[list[float], list[int]]:
    """:func:`window_values`, kept (core.kept) with the campaign's state (campaigns.funnel.figure_name,
    the segment's rule, the promotion's organisations) and the data epoch: read while the state
    holds, counted and kept when it moved (or none was kept); the ``experiments.power`` job
    (:func:`refresh_windows`) counts again, within a minute, those that the data moved under, and
    the default one of every campaign before any page asks."""
    name = _window_name(campaign, start, end)
    kept = read_kept(session, name)
    state, epoch = _window_state(campaign, scope), data_epoch(session)
    if kept is not None and kept["state"] == state and not recount:
        return kept["sums"], kept["sets"]
    sums, sets = window_values(session, population, start, end, scope)
    write_kept(
        session,
        name,
        {
            "state": state,
            "epoch": epoch,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "sums": sums,
            "sets": sets,
        },
    )
    return sums, sets


def refresh_windows(session: Session, commit=None, now: dt.datetime | None = None) -> dict:
    """Keep the power pages' baselines of every campaign but the cancelled ones (a launched
    campaign's page is still opened): count the default window (:func:`baseline_window` without a
    choice) when none is kept, count again every kept window whose campaign's state changed or whose
    data moved (a new epoch; not for closed campaigns, so that imports do not make the job count
    every past campaign again), and drop those that no baseline reaches any more (a window of the last
    days before the latest import); each campaign in its own unit of work when ``commit`` is given.

    The launch changes none of the window's state (campaigns.funnel.figure_name): the window the job
    kept while the campaign was ready is the launched campaign's, so the launch itself counts nothing.

    :returns: ``{"counted": n, "dropped": n, "seconds": s}``.
    """
    started, now = time.perf_counter(), now or utcnow()
    counted = dropped = 0
    campaigns = session.scalars(select(Campaign).where(Campaign.status != "cancelled").order_by(Campaign.id)).all()
    for campaign in campaigns:
        done = keep_windows(session, campaign, now)
        counted, dropped = counted + done["counted"], dropped + done["dropped"]
        if commit is not None:
            commit()
    return {"counted": counted, "dropped": dropped, "seconds": round(time.perf_counter() - started, 3)}


def keep_windows(session: Session, campaign: Campaign, now: dt.datetime | None = None) -> dict:
    """Bring ``campaign``'s kept power windows up to date (:func:`refresh_windows`, for one campaign).
    Flushes.

    :returns: ``{"counted": n, "dropped": n}``.
    """
    now = now or utcnow()
    prefix = f"power:{campaign.id}:"
    kept_names = session.scalars(select(Setting.name).where(Setting.name.startswith(prefix, autoescape=True))).all()
    population, _source = _population(session, campaign)
    scope = promotion_scope(session, campaign.promotion) if campaign.promotion is not None else None
    if population is None or scope is None or not scope.organisation_ids:
        return {"counted": 0, "dropped": 0}
    reached = {}
    for baseline in (None, *BASELINES):  # the default first: kept whether or not a page asked for it
        _kind, start, end = baseline_window(session, campaign, baseline, now)
        reached.setdefault(_window_name(campaign, start, end), (start, end, baseline is None))
    obsolete = [name for name in kept_names if name not in reached]
    if obsolete:
        session.execute(delete(Setting).where(Setting.name.in_(obsolete)))
    state, epoch, counted, closed = _window_state(campaign, scope), data_epoch(session), 0, campaign.status == "closed"
    for name, (start, end, default) in reached.items():
        kept = read_kept(session, name) if name in kept_names else None
        # a closed campaign's page is read for the record: its window is counted once, not after every import
        up_to_date = kept is not None and kept.get("state") == state and (kept.get("epoch") == epoch or closed)
        if up_to_date or (kept is None and not default):  # a chosen baseline is kept once a page asked for it
            continue
        if not counted:
            # a snapshot bulk-written moments ago has no statistics yet: PostgreSQL then plans one
            # member and loops over every member's history (more than 6 minutes at 100,000 spectators)
            sql.refresh_statistics(session.connection(), ["snapshot_member"])
        kept_window(session, campaign, population, start, end, scope, recount=True)
        counted += 1
    return {"counted": counted, "dropped": len(obsolete)}


def _eligible(
    session: Session, campaign: Campaign, release: Release | None, name: str, kept: Funnel | None
) -> tuple[int, bool]:
    """(the eligible recipients, whether their noisy figure is under k) of a campaign in its
    approvals or ready (0 otherwise): the eligible set of its funnel as kept at approval time and
    brought up to date by the ``campaigns.funnels`` job (campaigns.funnel_store), the campaign page's
    own figure, not counted over every candidate in the request. ``kept`` is that funnel
    (campaigns.funnel_store.kept_counts) and ``name`` keys its noise."""
    if campaign.status not in ("awaiting_approvals", "ready"):
        return 0, False
    if kept is None:  # no snapshot: counted from the segment
        cell = None
        exact = eligible_count(session, campaign)
    else:
        cell = kept.total.cell("eligible")
        exact = cell.count
    if release is None or not exact:
        return exact, False
    if cell is None:
        chosen = eligible_select(session, campaign).subquery("eligible")
        noisy = _protected_count(session, release, f"{name}.eligible", chosen.c.spectator_id, chosen)
    else:
        noisy = _noisy_count(release, f"{name}.eligible", cell)
    return noisy, noisy == 0


def power_report(
    session: Session,
    campaign: Campaign,
    alpha: float = 0.05,
    target_power: float = 0.8,
    target_lift: float = 0.10,
    baseline: str | None = None,
    now: dt.datetime | None = None,
    release: Release | None = None,
) -> dict:
    """Design-time power of ``campaign`` (DESIGN.md §8): for each test arm against the control,
    the minimum detectable effect of every metric at the planned sizes and split, and the number
    of recipients needed to detect a relative lift of ``target_lift`` on the primary metric.

    Baselines (rate or mean and standard deviation) are the segment members' purchases at the
    promotion's organisations in a comparable window (:func:`baseline_window`), with the outcome
    definitions of ``experiments/outcomes.py``. Each MDE is that of the estimate the verdict will
    read: CUPED's (``estimator`` "cuped") when the same length before the window holds some
    history, with the variance reduction ρ² = corr(Y, X)² of the window's metric Y and the one
    before X (``variance_reduction``), the raw comparison (``estimator`` "raw") without history. Sizes are the eligible recipients once approvals
    are in, else the segment's size (an upper bound: consent and approvals only remove people).

    With a ``release`` (the web pages: their readers do not own the pooled data) every count is
    its set's noisy figure (:class:`core.privacy.Release`, named as on the campaign page:
    :func:`campaigns.funnel.figure_name`; "too small" under k): the population, the eligible total, the buyers, and the
    converting and cross-selling counts behind the rates; the minimum detectable effects and sizes
    are computed from those, so that none gives an exact count back.
    """
    now = now or utcnow()
    result: dict = {
        "alpha": alpha,
        "power": target_power,
        "target_lift": target_lift,
        "primary_metric": campaign.primary_metric,
        "error": None,
    }
    population, source = _population(session, campaign)
    if population is None:
        result["error"] = "no_segment"
        return result
    pop = population.subquery("population")
    k = strictest_k(session) if release is None else release.k
    name = figure_name(campaign)
    # one reading of the kept funnel (none without a snapshot): the population, the eligible total and
    # the name keying their noise (the state the kept counts are of, as on the campaign page)
    kept, kept_name, _current = kept_counts(session, campaign)
    if kept is not None:
        # the snapshot is the funnel's segment total, kept with it: the same figure as on the campaign
        # page, with its noise (keyed by the state the kept counts are of), not a count of its members
        segment = kept.total.cell("segment")
        population_size = segment.count
        if release is not None:
            population_size = _noisy_count(release, f"{kept_name}.segment", segment)
    else:
        population_size = session.scalar(select(func.count()).select_from(pop)) or 0
        if release is not None:
            population_size = _protected_count(session, release, f"{name}.{source}", pop.c.spectator_id, pop)
    kind, start, end = baseline_window(session, campaign, baseline, now)
    result["baseline"] = {
        "kind": kind,
        "start": start.date().isoformat(),
        "end": (end - dt.timedelta(seconds=1)).date().isoformat(),
    }
    eligible, eligible_hidden = _eligible(session, campaign, release, kept_name, kept)
    n_total, n_source = (eligible, "eligible") if eligible or eligible_hidden else (population_size, source)
    result.update(
        {
            "population": shown_count(population_size, k),
            "n_total": shown_count(n_total, k),
            "n_source": n_source,
            "k": k,
        }
    )
    if population_size == 0 or is_small(population_size, k) or is_small(n_total, k) or eligible_hidden:
        result["error"] = "too_small"
        return result
    scope = promotion_scope(session, campaign.promotion)
    if not scope.organisation_ids:
        result["error"] = "no_organisation"
        return result
    sums, found = kept_window(session, campaign, population, start, end, scope)
    raw = {m: sums[5 * i : 5 * i + 5] for i, m in enumerate(WINDOW_METRICS)}  # Σy, Σy², Σx, Σx², Σxy
    n = float(population_size)
    buyers = raw["conversion"][0]
    if release is not None:
        cell = {figure: Cell.of(found[2 * i], found[2 * i + 1]) for i, figure in enumerate(WINDOW_SETS)}
        window = f"{name}.power.{kind}.{start.date().isoformat()}.{end.date().isoformat()}"
        buyers = float(_noisy_count(release, f"{window}.buyers", cell["converted"]))
        for metric, label in (("conversion", "converted"), ("cross_sell", "cross_sell")):
            # a noisy count can land on 0 or on n, where a rate of 0 % or 100 % has no variance and
            # no detectable effect: half a person from either end keeps the noisy rate inside (0, 1)
            counts = [
                min(
                    max(float(_noisy_count(release, f"{window}.{figure}", cell[figure], threshold=False)), 0.5), n - 0.5
                )
                for figure in (label, f"{label}.before", f"{label}.both")
            ]
            raw[metric] = [counts[0], counts[0], counts[1], counts[1], min(counts[2], counts[0], counts[1])]
        # The sums behind the revenue and tickets baselines: exact, a mean times the shown population
        # gave them back, and two campaigns one spectator apart that spectator's purchases. Noise of σ
        # times what one buyer is taken to add at most (the insights' bounds), the squares and the
        # products of the two periods at that bound squared: the standard deviations and ρ² cost the
        # most, and are rough for small segments. Each sum over the spectators it can come from.
        y_cell, x_cell, xy_cell = cell["converted"], cell["converted.before"], cell["converted.both"]
        for metric, bound in (("revenue", SUM_BOUNDS["money"]), ("tickets", SUM_BOUNDS["tickets"])):
            sy, syy, sx, sxx, sxy = raw[metric]
            raw[metric] = [
                release.sum_figure(f"{window}.{metric}{suffix}", cell_, value, most) or 0.0
                for suffix, cell_, value, most in (
                    ("", y_cell, sy, bound),
                    ("_squares", y_cell, syy, bound * bound),
                    (".before", x_cell, sx, bound),
                    (".before_squares", x_cell, sxx, bound * bound),
                    (".both_products", xy_cell, sxy, bound * bound),
                )
            ]
    scales = {"revenue": 100.0}
    baselines: dict[str, tuple[float, float]] = {}
    rho2: dict[str, float | None] = {}
    for metric, (sy, syy, sx, sxx, sxy) in raw.items():
        c = scales.get(metric, 1.0)
        mean = sy / c / n
        var_y = max(0.0, syy / c / c - n * mean * mean)
        var_x = max(0.0, sxx / c / c - sx * sx / c / c / n)
        baselines[metric] = (mean, math.sqrt(var_y / (n - 1)) if n > 1 else 0.0)
        # the verdict reads CUPED's estimate when the period before holds some history (X not
        # constant), whose variance is (1 − ρ²) times the raw one; None: no history, the raw estimate
        cov = sxy / c / c - sx * sy / c / c / n
        rho2[metric] = None if var_x <= 0 else (min(0.99, cov * cov / (var_x * var_y)) if var_y > 0 else 0.0)
    result["buyers"] = shown_count(int(buyers), k)
    if is_small(int(buyers), k) or (release is not None and buyers == 0):
        result["error"] = "too_few_buyers"
        return result
    result["metrics"] = {
        m: {
            "type": metric_kind(m),
            "mean": baselines[m][0],
            "sd": baselines[m][1],
            "history": rho2[m] is not None,
            "variance_reduction": rho2[m],
        }
        for m in LIFT_METRICS
    }
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
                        mde = power.mde_binary(mean, n_c, n_a, alpha, target_power, rho2=rho2[metric])
                elif sd > 0 and n_c > 0 and n_a > 0:
                    # revenue and tickets move through more buyers: the arm's variance grows with them
                    mde = power.mde_continuous(
                        sd, n_c, n_a, alpha, target_power, baseline_mean=mean, buyers=mean > 0, rho2=rho2[metric] or 0.0
                    )
            except ValueError:
                mde = None
            entry["mde"][metric] = (
                {
                    "absolute": mde.absolute,
                    "relative": mde.relative,
                    "estimator": "raw" if rho2[metric] is None else "cuped",
                }
                if mde
                else None
            )
        primary = campaign.primary_metric
        mean, sd = baselines[primary]
        try:
            if metric_kind(primary) == "binary":
                size = power.sample_size_binary(
                    mean, target_lift, share_c, share_a, alpha, target_power, relative=True, rho2=rho2[primary]
                )
            else:
                size = power.sample_size_continuous(
                    sd,
                    target_lift * mean,
                    share_c,
                    share_a,
                    alpha,
                    target_power,
                    baseline_mean=mean,
                    buyers=mean > 0,
                    rho2=rho2[primary] or 0.0,
                )
            entry["needed"] = {
                "total": size.total,
                "n_control": size.n_control,
                "n_arm": size.n_arm,
                "enough": size.total <= n_total,
            }
        except ValueError:
            entry["needed"] = None
        arms.append(entry)
    result["arms"] = arms
    return result
