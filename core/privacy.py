"""Pooled figures that hide people: small-cell suppression and differencing-safe noisy figures.

Two layers (DESIGN.md §10):

- **Suppression** (:func:`suppress` and friends): exact counts under k hidden, and what subtraction
  would reveal. The database operator's command line and the exact experiment report use it alone
  (a report's two-way tables through :func:`core.table_suppression.suppress_table`).
- **Noisy figures** (:class:`Release`): every pooled figure shown in the web pages to someone who
  does not own the data. The method is the cell-key method of the Australian Bureau of Statistics'
  TableBuilder, with Gaussian noise calibrated and accounted in zero-concentrated differential
  privacy (zCDP) with OpenDP:

  * each spectator holds a secret **cell key**, an integer in [0, 2^31) derived as
    ``HMAC-SHA256(district secret, "cell-key:" + spectator.key)`` (:func:`cell_key`), stored in
    ``spectator.cell_key`` and copied into the profiles;
  * a figure over a set of spectators is read with its **fingerprint** :class:`Cell` ``(count,
    SUM(cell_key))``, computed in the same SQL as the count;
  * its noise is a Gaussian N(0, σ²) drawn from ``HMAC-SHA256(district secret, figure name | data
    epoch | count | key sum)``: the same figure name over the same set gives the same figure
    however often it is asked, so that asking again and averaging teaches nothing; two different
    sets get independent noise. For a segment preview the figure name holds the question (the
    rule in canonical JSON and its date, ``segments.query.question_key``): see "Why the question
    keys the noise" below;
  * the **data epoch** (:func:`data_epoch`) advances at every import and profile refresh, so that
    every figure is redrawn then and "did the figure move after my one-row upload" teaches nothing;
  * thresholds are decided on the noisy figure, never the exact one: a noisy size under k is
    "fewer than k", a noisy complement under k is "all but fewer than k", 0 is a small figure like
    any other (:meth:`Release.figure`);
  * one person moves every figure of a response (size, the complement, each organisation's count,
    one life-cycle stage, contactable): the accounting (:func:`preview_rho`, :func:`epsilon_for`)
    uses that L2 sensitivity, and a per-user daily budget of questions (:func:`ask`) bounds the
    composition, every question written to the audit log.

Why the question keys the noise. Noise that is a function of the set alone (the same figure for
every rule with the same members) is an equality oracle: ``{"not": single ∧ A}`` and ``{"not":
single}`` are the same set exactly when the singled-out person has A, and so are ``(single ∧ A) ∨
T`` and ``T`` for a padding set T; equal figures then say so with certainty, whatever σ (the attack
suite, tests/test_attacks.py, measured 0.78 and 0.80 balanced accuracy with set-only noise at σ =
14). With the question in the seed, a reformulation is a fresh Gaussian release, independent of
the others: the differences of the attack are N(0 or 1, 2σ²) and only averaging helps, which the
zCDP accounting counts (each distinct question is one Gaussian mechanism; asking the same one
again is free) and the daily budget bounds. Fixed figures that no user writes (the dashboard's
district figures, insights) are keyed by their name, the epoch and their set.

How other code protects a figure::

    release = Release.current(session)             # secret, epoch, k and σ of this request
    fig = release.figure("insights.district.lifecycle.new", Cell(n, keysum), whole=release.noisy("universe", whole))
    fig.value        # the noisy count, or None when hidden
    fig.label()      # "1 234", "fewer than 10" or "all but fewer than 10" (FR/EN)
    fig.as_json()    # {"value", "suppressed", "status", "text"}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Hashable, Iterable, Mapping, Sequence

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from core.models import AuditEvent, Organisation, Setting, Spectator, audit, utcnow

DEFAULT_K = 10


def district_k(session: Session, default: int = DEFAULT_K) -> int:
    """The district-wide threshold (admin setting ``k_threshold``, else the configured default)."""
    value = session.scalar(select(Setting.value).where(Setting.name == "k_threshold"))
    try:
        return max(int(value), 2) if value is not None else default
    except ValueError:
        return default


def strictest_k(session: Session, organisation_ids: Iterable[int] | None = None, default: int = DEFAULT_K) -> int:
    """The k that applies to a view over ``organisation_ids`` (all organisations when None).

    A view across several organisations uses the strictest of their thresholds and the district's.
    """
    base = district_k(session, default)
    query = select(func.max(Organisation.k_threshold))
    if organisation_ids is not None:
        ids = list(organisation_ids)
        if not ids:
            return base
        query = query.where(Organisation.id.in_(ids))
    highest = session.scalar(query)
    return max(base, highest or 0)


def is_small(count: int | None, k: int) -> bool:
    """A count that must not be shown: 1 to k-1 people (zero reveals nobody)."""
    return count is not None and 0 < count < k


def suppress(counts: Mapping[Hashable, int], k: int, total_shown: bool = True) -> dict[Hashable, int | None]:
    """Hide every count under ``k``; when a total is shown, also hide enough others that no
    hidden count can be recovered by subtraction (the smallest visible non-zero part).

    Returns a new mapping where hidden counts are ``None``.
    """
    result: dict[Hashable, int | None] = {key: (None if is_small(v, k) else v) for key, v in counts.items()}
    hidden = [key for key, v in result.items() if v is None]
    if total_shown and len(hidden) == 1:
        visible = sorted(((v, key) for key, v in result.items() if v), key=lambda t: t[0])
        if visible:
            result[visible[0][1]] = None
        # With nothing else visible the lone hidden cell equals the total: the caller hides the total.
    return result


def suppress_total(total: int | None, parts: Mapping[Hashable, int | None], k: int) -> int | None:
    """The total to show beside suppressed ``parts``: hidden when small, or when it would
    reveal a hidden part (every other part visible)."""
    if total is None or is_small(total, k):
        return None
    hidden = [v for v in parts.values() if v is None]
    if len(hidden) == 1:
        return None
    return total


def suppress_matrix(matrix: Sequence[Sequence[int]], k: int) -> list[list[int | None]]:
    """Suppress a two-way table whose row and column totals are shown.

    Primary suppression hides cells under k; complementary suppression repeats until no row or
    column has exactly one hidden cell, hiding the smallest visible non-zero cell of that line.
    """
    grid: list[list[int | None]] = [[None if is_small(v, k) else v for v in row] for row in matrix]
    changed = True
    while changed:
        changed = False
        lines = [[(r, c) for c in range(len(grid[r]))] for r in range(len(grid))]
        if grid:
            lines += [[(r, c) for r in range(len(grid))] for c in range(len(grid[0]))]
        for line in lines:
            hidden = [pos for pos in line if grid[pos[0]][pos[1]] is None and matrix[pos[0]][pos[1]]]
            if len(hidden) == 1:
                visible = [(grid[r][c], (r, c)) for r, c in line if grid[r][c]]
                if visible:
                    _, (r, c) = min(visible)
                    grid[r][c] = None
                    changed = True
    return grid


def share(part: int | None, whole: int | None) -> float | None:
    """``part / whole`` or None when either is hidden or the whole is zero."""
    if part is None or not whole:
        return None
    return part / whole


# --- noisy figures: cell keys, the data epoch, the release ----------------------------------------

CELL_KEY_LIMIT = 1 << 31
# σ of the Gaussian noise on a count (one person moves it by 1). Chosen so that the attack suite
# (tests/test_attacks.py: trackers averaged over 50 padding sets) stays under 0.65 balanced accuracy,
# while the median relative error of a preview of 1,000 spectators stays at most 1 % (0.674 σ = 9.4
# people, 10 once the figure is a whole number; σ = 16 would make it 11).
DEFAULT_SIGMA = 14.0
# δ of the (ε, δ) statement derived from the zCDP accounting.
DEFAULT_DELTA = 1e-6
DEFAULT_DAILY_BUDGET = 1000
EPOCH_SETTING = "data_epoch"
BUDGET_SETTING = "privacy_daily_budget"
QUESTION_ACTION = "privacy.question"


def cell_key(secret: str | bytes, spectator_key: str) -> int:
    """A spectator's secret cell key in [0, 2^31): ``HMAC-SHA256(secret, "cell-key:" + key)``,
    its first four bytes as a big-endian integer, top bit cleared."""
    raw = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(raw, b"cell-key:" + spectator_key.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & (CELL_KEY_LIMIT - 1)


def instance_secret() -> str | None:
    """The application's district secret when there is an application context, else None."""
    from flask import current_app, has_app_context

    return current_app.config.get("DISTRICT_SECRET") if has_app_context() else None


def fill_cell_keys(session: Session, secret: str | bytes, chunk: int = 20_000) -> int:
    """Give every spectator without a cell key its key (:func:`cell_key`); flushes, never commits.

    Called by the importer after it creates spectators, by the demo and by a profile refresh, so
    that whatever path created a spectator its key is there before its first figure.
    :returns: how many spectators were given a key.
    """
    sp = Spectator.__table__
    done = 0
    while True:
        rows = session.execute(select(sp.c.id, sp.c.key).where(sp.c.cell_key.is_(None)).limit(chunk)).all()
        if not rows:
            return done
        session.execute(
            update(sp).where(sp.c.id == bindparam("b_id")).values(cell_key=bindparam("b_cell")),
            [{"b_id": id_, "b_cell": cell_key(secret, key)} for id_, key in rows],
        )
        done += len(rows)


def data_epoch(session: Session) -> int:
    """The data epoch: a counter that every import and profile refresh advances (0 before any)."""
    value = session.scalar(select(Setting.value).where(Setting.name == EPOCH_SETTING))
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def advance_epoch(session: Session) -> int:
    """Advance the data epoch by one, atomically (concurrent imports each advance it); flushes.

    :returns: the new epoch.
    """
    session.flush()
    setting = session.get(Setting, EPOCH_SETTING, with_for_update=True)  # SQLite: no FOR UPDATE, one writer anyway
    if setting is None:
        session.add(Setting(name=EPOCH_SETTING, value="1"))
        session.flush()
        return 1
    try:
        current = int(setting.value)
    except ValueError:
        current = 0
    setting.value = str(current + 1)
    session.flush()
    return current + 1


@dataclass(frozen=True)
class Cell:
    """The fingerprint of a set of spectators: how many, and the sum of their cell keys.

    Two rules with the same members have the same cell; two different sets almost never do.
    """

    count: int
    keysum: int = 0

    @classmethod
    def of(cls, count, keysum) -> "Cell":
        """From a SQL row's (COUNT, SUM(cell_key)); SUM is NULL over no row."""
        return cls(int(count or 0), int(keysum or 0))


@dataclass(frozen=True)
class Figure:
    """A protected figure: ``status`` "shown" (``value`` is the noisy figure), "small" (fewer than
    k) or "all_but" (all but fewer than k); ``value`` is None unless shown."""

    value: int | None
    status: str
    k: int

    @property
    def suppressed(self) -> bool:
        return self.status != "shown"

    def label(self) -> str:
        """The figure as people read it, in the request's language."""
        return figure_label(self)

    def as_json(self) -> dict:
        return {"value": self.value, "suppressed": self.suppressed, "status": self.status, "text": self.label()}


def figure_label(figure: Figure) -> str:
    """ "1 234", "fewer than 10" or "all but fewer than 10", in French or English (gettext)."""
    from flask_babel import format_decimal
    from flask_babel import gettext as _

    if figure.status == "small":
        return _("fewer than %(k)s", k=figure.k)
    if figure.status == "all_but":
        return _("all but fewer than %(k)s", k=figure.k)
    try:
        return format_decimal(figure.value)
    except (RuntimeError, KeyError):  # outside a request
        return str(figure.value)


class Release:
    """The noisy view of the pooled data for one data epoch, one secret, one k and one σ.

    :param secret: the district secret (never shown; keys the noise).
    :param epoch: the data epoch (:func:`data_epoch`).
    :param k: the threshold under which a noisy figure is "fewer than k".
    :param sigma: σ of the Gaussian noise of a count.
    """

    def __init__(self, secret: str | bytes, epoch: int, k: int, sigma: float = DEFAULT_SIGMA):
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.epoch, self.k, self.sigma = int(epoch), int(k), float(sigma)

    @classmethod
    def current(
        cls, session: Session, k: int | None = None, organisation_ids: Iterable[int] | None = None
    ) -> "Release":
        """The release of this request: the application's secret and σ (``PRIVACY_SIGMA``), the
        current epoch, and k (given, else the strictest of ``organisation_ids``, else the district's)."""
        from flask import current_app

        config = current_app.config
        if k is None:
            k = strictest_k(session, organisation_ids, default=config.get("K_THRESHOLD", DEFAULT_K))
        return cls(config["DISTRICT_SECRET"], data_epoch(session), k, float(config.get("PRIVACY_SIGMA", DEFAULT_SIGMA)))

    def standard_normal(self, name: str, cell: Cell) -> float:
        """A N(0, 1) draw that is a function of (secret, name, epoch, fingerprint) only:
        the inverse normal CDF of 56 bits of ``HMAC-SHA256(secret, name|epoch|count|keysum)``."""
        message = f"{name}|{self.epoch}|{cell.count}|{cell.keysum}".encode("utf-8")
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        u = (int.from_bytes(digest[:7], "big") + 0.5) / (1 << 56)
        return NormalDist().inv_cdf(u)

    def noisy(self, name: str, cell: Cell, scale: float = 1.0) -> int:
        """The figure ``cell.count`` plus its consistent noise N(0, (scale·σ)²), rounded, no
        threshold (for a whole the caller does not show, or a sum whose one person's share is
        bounded by ``scale``)."""
        return int(round(cell.count + scale * self.sigma * self.standard_normal(name, cell)))

    def figure(self, name: str, cell: Cell, whole: int | None = None) -> Figure:
        """The protected count of a set: its noisy value, or "fewer than k" when the noisy value
        is under k, or "all but fewer than k" when ``whole`` (the noisy figure of the set it is
        part of, from :meth:`noisy` or a shown figure) minus it is under k."""
        value = self.noisy(name, cell)
        if value < self.k:
            return Figure(None, "small", self.k)
        if whole is not None and whole - value < self.k:
            return Figure(None, "all_but", self.k)
        return Figure(value, "shown", self.k)

    def sum_figure(self, name: str, cell: Cell, total: float, bound: float, shown: bool = True) -> float | None:
        """A sum over the spectators of ``cell`` (tickets, revenue) with noise N(0, (bound·σ)²),
        ``bound`` being what one person is taken to contribute at most; None when not ``shown``
        (the count of its spectators is hidden)."""
        if not shown:
            return None
        value = total + bound * self.sigma * self.standard_normal(name + "#sum", cell)
        return max(round(value, 2), 0.0)


# --- accounting (zCDP, with OpenDP) ----------------------------------------------------------------


def preview_sensitivity(organisations: int) -> float:
    """The L2 sensitivity of one segment preview: adding or removing one person moves the size,
    the complement (the universe), each organisation's count they bought from (all of them at
    worst), one life-cycle stage and the contactable count by 1: ``sqrt(4 + organisations)``."""
    return math.sqrt(4 + max(int(organisations), 0))


def _gaussian(sigma: float):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float), scale=float(sigma)
    )


def preview_rho(sigma: float, organisations: int) -> float:
    """ρ (zCDP) of one preview: OpenDP's Gaussian mechanism mapped at the preview's L2
    sensitivity, ``ρ = Δ² / (2σ²)``."""
    return float(_gaussian(sigma).map(preview_sensitivity(organisations)))


def epsilon_for(rho: float, delta: float = DEFAULT_DELTA) -> float:
    """ε at ``delta`` of a ρ-zCDP release, by OpenDP's conversion (about ``ρ + 2·sqrt(ρ·ln(1/δ))``).

    A Gaussian of σ = 1 mapped at sensitivity ``sqrt(2ρ)`` is ρ-zCDP; its conversion gives ε."""
    import opendp.prelude as dp

    if rho <= 0:
        return 0.0
    measurement = dp.c.make_zCDP_to_approxDP(_gaussian(1.0))
    return float(measurement.map(math.sqrt(2 * rho)).epsilon(delta))


def daily_accounting(sigma: float, organisations: int, questions: int, delta: float = DEFAULT_DELTA) -> dict:
    """What one user's day of ``questions`` previews costs at most: ρ per preview, ρ per day
    (zCDP composes by addition) and ε at δ. Asking the same set again costs nothing (same noise),
    so this is an upper bound."""
    rho = preview_rho(sigma, organisations)
    return {
        "sigma": sigma,
        "organisations": organisations,
        "sensitivity": preview_sensitivity(organisations),
        "rho_per_preview": rho,
        "questions": questions,
        "rho_per_day": rho * questions,
        "delta": delta,
        "epsilon_per_preview": epsilon_for(rho, delta),
        "epsilon_per_day": epsilon_for(rho * questions, delta),
    }


# --- the per-user budget of questions ---------------------------------------------------------------


class BudgetExhausted(Exception):
    """The user has asked their daily budget of questions."""

    def __init__(self, budget: int):
        super().__init__(f"daily budget of {budget} questions used")
        self.budget = budget


def daily_budget(session: Session, default: int = DEFAULT_DAILY_BUDGET) -> int:
    """Questions per user per day (admin setting ``privacy_daily_budget``, else ``default``)."""
    value = session.scalar(select(Setting.value).where(Setting.name == BUDGET_SETTING))
    try:
        return max(int(value), 0) if value is not None else default
    except ValueError:
        return default


def set_daily_budget(session: Session, budget: int) -> None:
    """Store the daily budget of questions per user (flushes)."""
    setting = session.get(Setting, BUDGET_SETTING)
    if setting is None:
        session.add(Setting(name=BUDGET_SETTING, value=str(int(budget))))
    else:
        setting.value = str(int(budget))
    session.flush()


def day_start_utc(now: dt.datetime | None = None) -> dt.datetime:
    """Midnight UTC (naive) of the day of ``now``: the budget runs per UTC day."""
    now = now or utcnow()
    return dt.datetime.combine(now.date(), dt.time())


def questions_today(session: Session, user_id: int, now: dt.datetime | None = None) -> int:
    """How many questions ``user_id`` asked since midnight UTC (audit events ``privacy.question``)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                and_(
                    AuditEvent.user_id == user_id,
                    AuditEvent.action == QUESTION_ACTION,
                    AuditEvent.at >= day_start_utc(now),
                )
            )
        )
        or 0
    )


def ask(
    session: Session,
    *,
    user_id: int,
    actor: str,
    kind: str,
    question: Any,
    budget: int | None,
    organisation_id: int | None = None,
) -> int | None:
    """Count one question against the user's daily budget and write it to the audit log.

    :param kind: what was asked ("preview", "insights", "comparison", "download"...).
    :param question: what the question was (the rule, the scope), kept in the audit event.
    :param budget: questions per day, or None when the budget is switched off (still audited).
    :raises BudgetExhausted: when the user has already asked ``budget`` questions today (nothing
        is written then).
    :returns: the questions left today after this one (None without a budget).
    """
    asked = questions_today(session, user_id) if budget is not None else 0
    if budget is not None and asked >= budget:
        raise BudgetExhausted(budget)
    audit(
        session,
        QUESTION_ACTION,
        actor=actor,
        user_id=user_id,
        object_type="question",
        object_id=kind,
        organisation_id=organisation_id,
        kind=kind,
        question=question,
    )
    session.flush()
    return None if budget is None else budget - asked - 1


def asked_today(session: Session, user_id: int, kind: str, question: Any, now: dt.datetime | None = None) -> bool:
    """Whether ``user_id`` already asked ``question`` (of ``kind``) since midnight UTC."""
    wanted = json.dumps(json.loads(json.dumps(question, default=str)), sort_keys=True)
    details = session.scalars(
        select(AuditEvent.details).where(
            AuditEvent.user_id == user_id,
            AuditEvent.action == QUESTION_ACTION,
            AuditEvent.object_id == kind,
            AuditEvent.at >= day_start_utc(now),
        )
    ).all()
    return any(json.dumps((d or {}).get("question"), sort_keys=True) == wanted for d in details)


def ask_once(
    session: Session,
    *,
    user_id: int,
    actor: str,
    kind: str,
    question: Any,
    budget: int | None,
    organisation_id: int | None = None,
) -> int | None:
    """:func:`ask` for figures a page shows for a state (a campaign's funnel, keyed by its state):
    reading a state again is free (the same figures), each new state is a fresh draw over the
    same sets and so a question, which bounds averaging over state changes like reformulated
    previews. Raises :class:`BudgetExhausted` for a new question past the budget."""
    if asked_today(session, user_id, kind, question):
        return None if budget is None else max(budget - questions_today(session, user_id), 0)
    return ask(
        session,
        user_id=user_id,
        actor=actor,
        kind=kind,
        question=question,
        budget=budget,
        organisation_id=organisation_id,
    )
