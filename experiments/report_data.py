"""The data of a lift report: one row per recipient (arm, organisation, metrics), read in one round
trip, and the small-count rules every table of the report applies."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.privacy import is_small
from core.sql import epoch_seconds, joined_numbers
from experiments.models import BINARY_METRICS, Experiment, Outcome, Recipient

LIFT_METRICS = ("conversion", "revenue", "tickets", "cross_sell")


def metric_kind(metric: str) -> str:
    return "binary" if metric in BINARY_METRICS else "continuous"


# --- the data -----------------------------------------------------------------------------------


@dataclass
class ExperimentData:
    """One entry per recipient (in no particular order): arm index, sending organisation, metrics."""

    arm: np.ndarray
    organisation: np.ndarray
    window: dict[str, np.ndarray]
    pre: dict[str, np.ndarray]
    first_day: np.ndarray  # days from launch to the first window purchase; NaN without one
    arm_names: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.arm.size)


def _fetch_matrix(session: Session, columns, where) -> np.ndarray:
    """Rows of numeric ``columns`` as a float matrix, read in one round trip.

    The database joins every value into one text (``core.sql.joined_numbers``) that numpy parses in
    C. Row order is not kept (no statistic needs it). Columns must not be NULL.
    """
    text_ = joined_numbers(session.get_bind(), columns)
    joined = session.scalar(select(text_).select_from(Outcome).where(where))
    if not joined:
        return np.empty((0, len(columns)))
    return np.fromstring(joined, dtype=np.float64, sep=",").reshape(-1, len(columns))


def load_data(session: Session, experiment: Experiment) -> ExperimentData:
    """Every recipient of ``experiment`` with its outcomes, as arrays (revenue in dollars).

    Read sparse: the outcome rows (recipients with a purchase or a redemption), then the count of
    recipients per arm and organisation, the others being zeros on every metric. The order of
    recipients is by arm and organisation, which no statistic depends on.
    """
    names = experiment.arm_names
    arm_index = {name: i for i, name in enumerate(names)}
    groups = session.execute(
        select(Recipient.arm, Recipient.organisation_id, func.count())
        .where(Recipient.experiment_id == experiment.id)
        .group_by(Recipient.arm, Recipient.organisation_id)
    ).all()
    o = Outcome
    arm_code = case(arm_index, value=o.arm, else_=-1)
    first = func.coalesce(epoch_seconds(session, o.first_purchase_at), -1e18)
    columns = (
        arm_code,
        o.organisation_id,
        o.converted,
        o.revenue_cents,
        o.tickets,
        o.cross_sell,
        o.redeemed,
        first,
        o.pre_converted,
        o.pre_revenue_cents,
        o.pre_tickets,
        o.pre_cross_sell,
    )
    matrix = _fetch_matrix(session, columns, o.experiment_id == experiment.id)
    seen: dict[tuple[int, int], int] = {}
    if matrix.size:
        keys, counts = np.unique(matrix[:, :2].astype(np.int64), axis=0, return_counts=True)
        seen = {(int(a), int(g)): int(c) for (a, g), c in zip(keys, counts)}
    zero_arm, zero_org, zero_n = [], [], []
    for arm, org, n in groups:
        missing = int(n) - seen.get((arm_index.get(arm, -1), int(org)), 0)
        if missing > 0:
            zero_arm.append(arm_index.get(arm, -1))
            zero_org.append(int(org))
            zero_n.append(missing)
    zeros = int(sum(zero_n))
    arms = np.concatenate([matrix[:, 0].astype(np.int64), np.repeat(np.array(zero_arm, dtype=np.int64), zero_n)])
    orgs = np.concatenate([matrix[:, 1].astype(np.int64), np.repeat(np.array(zero_org, dtype=np.int64), zero_n)])

    def column(i: int, scale: float = 1.0) -> np.ndarray:
        return np.concatenate([matrix[:, i] / scale, np.zeros(zeros)])

    window = {
        "conversion": column(2),
        "revenue": column(3, 100.0),
        "tickets": column(4),
        "cross_sell": column(5),
        "redemption": column(6),
    }
    pre = {"conversion": column(8), "revenue": column(9, 100.0), "tickets": column(10), "cross_sell": column(11)}
    launched = (experiment.launched_at - dt.datetime(1970, 1, 1)).total_seconds()
    first_day = np.where(matrix[:, 7] < -1e17, np.nan, (matrix[:, 7] - launched) / 86400.0)
    first_day = np.concatenate([first_day, np.full(zeros, np.nan)])
    return ExperimentData(arms, orgs, window, pre, first_day, list(names))


def shown_count(value: int | None, k: int) -> int | None:
    return None if value is None or is_small(int(value), k) else int(value)


def hidden_by(k: int, *counts: int) -> bool:
    return any(is_small(int(c), k) for c in counts)
