"""Experiment operations: launch (assignment, codes, contact history), contact lists, dates, purge.

Every function flushes and never commits: the view, command or job that calls it owns the
transaction. Refusals raise :class:`ExperimentError` with a sentence that can be shown as is.
Large writes are set-wise: ``COPY`` on PostgreSQL and the driver's ``executemany`` on SQLite for
the assignment, ``INSERT ... SELECT`` for everything derived from it; no ORM object per recipient.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from flask_babel import gettext as _
from sqlalchemy import and_, exists, func, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.common import SCHEDULER, actor_id, audit_as
from campaigns.eligibility import eligible_select, usable_email
from campaigns.models import Campaign, ContactHistory
from campaigns.offers import arm_promotions as campaign_arm_promotions
from campaigns.services import mark_closed, mark_launched, mark_measuring, status_label
from core import sql
from core.errors import Refused
from core.models import Consent, Contact, Spectator, audit, utcnow
from experiments import stats, summaries
from experiments.assignment import ASSIGNMENT_VERSION, Assignment, assign, unique_codes
from experiments.models import ContactList, Experiment, Recipient
from experiments.offers import arm_offers, frozen_arms
from experiments.outcomes import match_outcomes

DEFAULT_ALPHA = 0.05
DEFAULT_RETENTION_DAYS = 30
DEFAULT_CLOSE_AFTER_DAYS = 14


class ExperimentError(Refused):
    """A request the experiment rules refuse; ``reason`` is a sentence for the user."""


class ContactListExpired(ExperimentError):
    """The contact list's retention period is over: it can no longer be downloaded."""


def experiment_of(session: Session, campaign: Campaign) -> Experiment | None:
    """The campaign's experiment, or None before launch."""
    return session.scalar(select(Experiment).where(Experiment.campaign_id == campaign.id))


# --- writing many rows --------------------------------------------------------------------------


def bulk_insert(session: Session, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Insert plain database-ready tuples the fastest way the engine offers, inside the session's
    transaction (``core.sql.copy_rows``)."""
    sql.copy_rows(session, table, columns, rows)


# --- assignment ---------------------------------------------------------------------------------


def eligible_arrays(session: Session, campaign: Campaign, at: dt.datetime) -> tuple[np.ndarray, np.ndarray]:
    """(spectator ids, sending organisation ids) of the campaign's eligible recipients at ``at``, by
    spectator id.

    Read in one round trip as one comma-separated text (``string_agg`` on PostgreSQL,
    ``group_concat`` on SQLite) that numpy parses in C: half a million pairs arrive in a fraction
    of the time a row-by-row fetch takes.
    """
    empty = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    query = eligible_select(session, campaign, at)
    if query is None:
        return empty
    sub = query.subquery()
    joined = sql.joined_pairs(session, sub.c.spectator_id, sub.c.organisation_id)
    text_ = session.scalar(select(joined))
    if not text_:
        return empty
    pairs = np.fromstring(text_, dtype=np.int64, sep=",").reshape(-1, 2)
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    return np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])


def draw_assignment(
    spectators: np.ndarray,
    organisations: np.ndarray,
    arms: Sequence[dict],
    seed: int,
    version: int = ASSIGNMENT_VERSION,
) -> Assignment:
    """Randomise recipients into ``arms`` (``[{"name", "share"}]``) blocked by sending organisation.

    Pure and deterministic: the same seed, algorithm ``version`` and (spectator, organisation)
    pairs, in any order, give the same arms.
    """
    names = [a["name"] for a in arms]
    shares = [float(a["share"]) for a in arms]
    total = sum(shares)
    return assign(spectators, organisations, [s / total for s in shares], seed, names, version=version)


def stored_assignment(session: Session, experiment: Experiment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spectator ids, organisation ids, arm index) of the stored recipients, by spectator id."""
    names = experiment.arm_names
    rows = session.execute(
        select(Recipient.spectator_id, Recipient.organisation_id, Recipient.arm)
        .where(Recipient.experiment_id == experiment.id)
        .order_by(Recipient.spectator_id)
    ).all()
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int16)
    spectators, organisations, arm_names = zip(*rows)
    index = {name: i for i, name in enumerate(names)}
    return (
        np.array(spectators, dtype=np.int64),
        np.array(organisations, dtype=np.int64),
        np.array([index[a] for a in arm_names], dtype=np.int16),
    )


def verify_assignment(session: Session, experiment: Experiment) -> bool:
    """Redraw the assignment from the stored seed and recipients: True when it matches the stored
    arms (the assignment is reproducible and was not altered)."""
    spectators, organisations, arms = stored_assignment(session, experiment)
    if spectators.size == 0:
        return True
    redrawn = draw_assignment(
        spectators, organisations, experiment.arms, experiment.seed, version=experiment.assignment_version or 1
    )
    return bool(np.array_equal(redrawn.arms, arms))


def srm_checks(spectators_orgs: np.ndarray, arms: np.ndarray, names: Sequence[str], shares: Sequence[float]) -> dict:
    """Sample-ratio checks of arm sizes against planned shares, overall and per organisation."""
    k = len(names)
    overall = np.bincount(arms, minlength=k)
    result = {
        "n": {names[i]: int(overall[i]) for i in range(k)},
        "overall": summaries.srm_summary(stats.sample_ratio_mismatch(overall.tolist(), shares)),
        "by_organisation": {},
    }
    for org in np.unique(spectators_orgs):
        counts = np.bincount(arms[spectators_orgs == org], minlength=k)
        check = summaries.srm_summary(stats.sample_ratio_mismatch(counts.tolist(), shares))
        result["by_organisation"][str(int(org))] = {"n": {names[i]: int(counts[i]) for i in range(k)}, **check}
    return result


def launch(
    session: Session,
    campaign: Campaign,
    user=None,
    now: dt.datetime | None = None,
    seed: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    timings: dict | None = None,
    code_generator=None,
) -> Experiment:
    """Ready → launched: randomise the eligible recipients and freeze the experiment (flushes).

    Eligibility is judged at ``now`` (consent at launch, DESIGN.md §10). Recipients are randomised
    into the campaign's arms, blocked by sending organisation, from ``seed`` (a fresh random seed
    when None), which is stored: redrawing from it gives the same arms. Test-arm recipients get
    the promotion's code (a unique code each, or the shared code) and a ``ContactHistory`` row;
    the control arm gets neither and is never exported. A sample-ratio check runs right after the
    assignment; the campaign becomes ``launched`` and both steps go to the audit log. Outcomes
    (with the pre-period covariates and the design of the interim looks) are matched afterwards,
    by ``experiments.outcomes.match_outcomes``.

    :param now: the launch moment, naive UTC (default: now). The attribution window starts here.
    :param seed: the randomisation seed (tests and demos pass one; None draws 62 random bits).
    :param alpha: the significance level of the report's tests and intervals.
    :param timings: when given, filled with the seconds each step took (the benchmark reads it).
    :param code_generator: ``f(count, taken) -> codes`` (default: unguessable random codes from
        ``experiments.assignment.unique_codes``; the demo passes a seeded one to be reproducible).
    :raises ExperimentError: not ready, already launched, promotion not valid at launch, nobody eligible.
    """
    now = (now or utcnow()).replace(microsecond=0)
    if campaign.status != "ready":
        raise ExperimentError(
            _(
                "Only a campaign ready to launch can be launched; this one is %(status)s.",
                status=status_label(campaign.status),
            )
        )
    if experiment_of(session, campaign) is not None:
        raise ExperimentError(_("This campaign was already launched: its assignment is frozen."))
    promotion = campaign.promotion
    if promotion is None:
        raise ExperimentError(_("The campaign has no promotion."))
    for item in [promotion, *(p for p in campaign_arm_promotions(session, campaign).values() if p is not None)]:
        if now.date() > item.valid_until:
            raise ExperimentError(
                _("The promotion ended on %(day)s: it can no longer be launched.", day=item.valid_until.isoformat())
            )
    if not 0.0 < alpha < 1.0:
        raise ExperimentError(_("The significance level must be between 0 and 1."))
    clock = _Clock(timings)
    tuned = sql.tune_for_large_joins(session)  # PostgreSQL: room for the hash joins of eligibility and of the inserts
    # The snapshot was bulk-written, maybe moments ago: without its statistics PostgreSQL plans
    # eligibility for a few hundred members and probes indexes once per record (8.4 s instead of
    # 5.0 s for 100,000 members on 2 busy cores; the ANALYZE takes 0.15 s).
    sql.refresh_statistics(session.connection(), ["snapshot_member"])
    spectators, organisations = eligible_arrays(session, campaign, now)
    clock.lap("eligibility")
    if spectators.size == 0:
        if tuned:
            sql.untune_large_joins(session)
        raise ExperimentError(_("Nobody is eligible at launch (consent, approvals and exclusions leave no one)."))
    arms = frozen_arms(session, campaign)  # with each test arm's promotion and code rule
    seed = int(seed) if seed is not None else secrets.randbits(62)
    experiment = Experiment(
        campaign_id=campaign.id,
        seed=seed,
        assignment_version=ASSIGNMENT_VERSION,
        arms=arms,
        strata="organisation",
        window_days=campaign.window_days,
        launched_at=now,
        window_end=now + dt.timedelta(days=campaign.window_days),
        primary_metric=campaign.primary_metric,
        metrics=list(campaign.metrics),
        alpha=alpha,
        code_strategy=promotion.code_strategy,
        shared_code=promotion.shared_code if promotion.code_strategy == "shared" else None,
        recipients=int(spectators.size),
        interim_looks=[],
        leaked_redemptions=0,
        launched_by_id=actor_id(user),
        created_at=now,
    )
    session.add(experiment)
    session.flush()

    drawn = draw_assignment(spectators, organisations, arms, seed, ASSIGNMENT_VERSION)
    names = list(drawn.arm_names)
    is_test = drawn.arms != names.index("control")
    unique_arms = [
        names.index(a["name"])
        for a in arms
        if a["name"] != "control" and a.get("code_strategy", promotion.code_strategy) == "unique"
    ]
    coded = np.isin(drawn.arms, unique_arms)
    clock.lap("assignment")
    _write_recipients(session, experiment, drawn, coded, (code_generator or unique_codes) if unique_arms else None)
    clock.lap("recipients_written")

    # set-wise from the rows just written; ``contact_history`` has no foreign keys to check per row
    # (a COPY of the same rows from memory was no faster on PostgreSQL and 3x slower on SQLite)
    session.execute(
        insert(ContactHistory).from_select(
            ["spectator_id", "campaign_id", "organisation_id", "contacted_at"],
            select(Recipient.spectator_id, literal(campaign.id), Recipient.organisation_id, literal(now)).where(
                Recipient.experiment_id == experiment.id, Recipient.arm != "control"
            ),
        )
    )
    clock.lap("contact_history")
    sql.refresh_statistics(session.connection(), ["recipient"])  # the outcome matching joins it next
    sending, per_sender = np.unique(organisations[is_test], return_counts=True)
    expires_at = now + dt.timedelta(days=_retention_days())
    if sending.size:
        session.execute(
            insert(ContactList),
            [
                {
                    "experiment_id": experiment.id,
                    "organisation_id": int(org),
                    "recipients": int(count),
                    "downloads": 0,
                    "expires_at": expires_at,
                }
                for org, count in zip(sending.tolist(), per_sender.tolist())
            ],
        )
    experiment.srm = srm_checks(drawn.strata.astype(np.int64), drawn.arms, names, experiment.shares)
    session.flush()
    clock.lap("lists_and_checks")
    if tuned:
        sql.untune_large_joins(session)
    mark_launched(session, campaign, user=user, now=now)
    audit_as(
        session,
        user,
        "experiment.launch",
        object_type="experiment",
        object_id=experiment.id,
        campaign_id=campaign.id,
        seed=str(seed),
        recipients=int(spectators.size),
        arms=experiment.srm["n"],
        srm_flag=experiment.srm["overall"]["flag"],
        srm_p=experiment.srm["overall"]["p_value"],
        code_strategy=experiment.code_strategy,
    )
    session.flush()
    return experiment


def _write_recipients(
    session: Session, experiment: Experiment, drawn: Assignment, is_test: np.ndarray, code_generator
) -> None:
    """Insert the experiment's recipients, in the order of ``drawn`` (by spectator id), with a unique
    code each where ``is_test`` (the test arms whose promotion has unique codes) when
    ``code_generator`` is given (``f(count, taken) -> codes``).

    The codes are handed out in their sorted order along the spectator ids: the set of codes is
    exactly as random (guessing a valid one is as hopeless), and both unique indexes of ``recipient``
    ((experiment, spectator) and code) are then written in key order, each leaf page once, instead of
    the code index being hit at random (the COPY of 500,000 rows on PostgreSQL: 2.3-2.6 s instead of
    3.2-4.0 s on busy cores). Uniqueness across experiments is left to that index: a clash is so
    unlikely (400,000 codes among 28**10) that reading every stored code first, as before, cost more
    than the rare retry, which rolls back to a savepoint and draws again avoiding the stored codes.
    """
    count = int(is_test.sum())
    names = list(drawn.arm_names)
    # the rows go through the driver's own connection: its exceptions are not wrapped by SQLAlchemy
    clashes = (IntegrityError, session.get_bind().dialect.loaded_dbapi.IntegrityError)
    taken: set[str] | None = None
    while True:
        codes = sorted(code_generator(count, taken or set())) if code_generator is not None and count else []
        try:
            with session.begin_nested():
                _insert_recipients(session, experiment.id, drawn, names, is_test, codes)
            return
        except clashes:
            if not codes or taken is not None:  # not a code clash, or one the stored codes did not explain
                raise
            taken = set(session.scalars(select(Recipient.code).where(Recipient.code.is_not(None))))


def _insert_recipients(
    session: Session,
    experiment_id: int,
    drawn: Assignment,
    names: Sequence[str],
    is_test: np.ndarray,
    codes: Sequence[str],
) -> None:
    """One row per drawn unit; ``codes`` go, in order, to the test-arm units."""
    spectators, organisations = drawn.units.tolist(), drawn.strata.astype(np.int64).tolist()
    arm_of = drawn.arms.tolist()
    code_of: list[str | None] = [None] * len(spectators)
    if codes:
        for position, code in zip(np.flatnonzero(is_test).tolist(), codes):
            code_of[position] = code
    bulk_insert(
        session,
        "recipient",
        ("experiment_id", "spectator_id", "organisation_id", "arm", "code"),
        zip([experiment_id] * len(spectators), spectators, organisations, [names[a] for a in arm_of], code_of),
    )


class _Clock:
    """Seconds per step into an optional dict."""

    def __init__(self, into: dict | None):
        import time

        self.into, self._time = into, time.perf_counter
        self.last = self._time()

    def lap(self, name: str) -> None:
        now = self._time()
        if self.into is not None:
            self.into[name] = round(now - self.last, 3)
        self.last = now


# --- contact lists ------------------------------------------------------------------------------


def _retention_days() -> int:
    try:
        from flask import current_app

        return int(current_app.config.get("CONTACT_LIST_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))
    except RuntimeError:  # outside an application (a pure script)
        return DEFAULT_RETENTION_DAYS


def contact_list_for(session: Session, experiment_id: int, organisation_id: int) -> ContactList | None:
    """The organisation's contact list of an experiment (None: it has no test-arm recipient)."""
    return session.scalar(
        select(ContactList).where(
            ContactList.experiment_id == experiment_id, ContactList.organisation_id == organisation_id
        )
    )


def is_expired(contact_list: ContactList, now: dt.datetime) -> bool:
    return contact_list.purged_at is not None or now >= contact_list.expires_at


@dataclass
class ContactRow:
    """One line of a contact list (the organisation's own record of a test-arm recipient)."""

    last_name: str | None
    first_name: str | None
    email: str | None
    language: str
    arm: str
    code: str | None
    recipient_id: int = 0  # keys the recipient's unsubscribe link (experiments.contact_exports)


def contact_rows(session: Session, experiment: Experiment, organisation_id: int) -> list[ContactRow]:
    """The organisation's test-arm recipients with its own contact details, sorted by name.

    Left out: the control arm (never exported), and whoever unsubscribed since launch: a withdrawn
    e-mail consent at that organisation, or a district-wide opt-out (``Spectator.opted_out_at``).
    A recipient whose contact record was erased, or whose address is no longer usable, has no line
    either: a contact list never holds a row without an e-mail address.
    """
    withdrawn = exists().where(
        Consent.contact_id == Contact.id, Consent.channel == "email", Consent.withdrawn_at.is_not(None)
    )
    rows = session.execute(
        select(
            Contact.last_name,
            Contact.first_name,
            Contact.email,
            Contact.language,
            Recipient.arm,
            Recipient.code,
            Recipient.id,
        )
        .select_from(Recipient)
        .join(
            Contact,
            and_(Contact.spectator_id == Recipient.spectator_id, Contact.organisation_id == Recipient.organisation_id),
        )
        .join(Spectator, Spectator.id == Recipient.spectator_id)
        .where(
            Recipient.experiment_id == experiment.id,
            Recipient.organisation_id == organisation_id,
            Recipient.arm != "control",
            Spectator.opted_out_at.is_(None),
            ~withdrawn,
            usable_email(Contact.email),
        )
        .order_by(Contact.last_name, Contact.first_name, Recipient.id)
    ).all()
    shared = {arm: offer.shared_code for arm, offer in arm_offers(experiment).items()}
    return [
        ContactRow(r.last_name, r.first_name, r.email, _language(r.language), r.arm, r.code or shared.get(r.arm), r.id)
        for r in rows
    ]


def _language(value: str | None) -> str:
    """``fr`` or ``en`` (French when unknown: the district's default)."""
    code = (value or "").strip()[:2].lower()
    return code if code in ("fr", "en") else "fr"


def record_download(
    session: Session, contact_list: ContactList, rows: int, user=None, now: dt.datetime | None = None
) -> ContactList:
    """Log one download of a contact list (flushes); refuses an expired one.

    The first download restarts the retention period: the list expires
    ``CONTACT_LIST_RETENTION_DAYS`` after it (before any download, after the launch).

    :raises ContactListExpired: the retention period is over.
    """
    now = now or utcnow()
    if is_expired(contact_list, now):
        _audit_list(session, user, "contact_list.refused", contact_list, expired_at=contact_list.expires_at.isoformat())
        session.flush()
        raise ContactListExpired(
            _(
                "This contact list expired on %(day)s (lists are kept %(n)d days): it can no longer be downloaded.",
                day=contact_list.expires_at.strftime("%Y-%m-%d"),
                n=_retention_days(),
            )
        )
    if contact_list.first_downloaded_at is None:
        contact_list.first_downloaded_at = now
        contact_list.expires_at = now + dt.timedelta(days=_retention_days())
    contact_list.last_downloaded_at = now
    contact_list.downloads = (contact_list.downloads or 0) + 1
    _audit_list(session, user, "contact_list.download", contact_list, rows=rows)
    session.flush()
    return contact_list


def _audit_list(session: Session, user, action: str, contact_list: ContactList, **details) -> None:
    audit_as(
        session,
        user,
        action,
        object_type="contact_list",
        object_id=contact_list.id,
        organisation_id=contact_list.organisation_id,
        experiment_id=contact_list.experiment_id,
        **details,
    )


def purge_contact_lists(session: Session, now: dt.datetime | None = None, folder: Path | None = None) -> int:
    """Close every contact list past its retention period (flushes) and delete any stored copy.

    Lists are generated at download and never written to disk by the application; ``folder``
    (``<instance>/contact-lists``) is swept anyway, so that a copy left there by an operator or an
    older version does not outlive the retention period. Returns the number of lists closed.
    """
    now = now or utcnow()
    due = session.scalars(
        select(ContactList).where(ContactList.purged_at.is_(None), ContactList.expires_at <= now)
    ).all()
    for item in due:
        item.purged_at = now
        audit(
            session,
            "contact_list.purge",
            actor=SCHEDULER,
            object_type="contact_list",
            object_id=item.id,
            organisation_id=item.organisation_id,
            experiment_id=item.experiment_id,
        )
        if folder is not None:
            for path in Path(folder).glob(f"experiment-{item.experiment_id}-org-{item.organisation_id}*"):
                path.unlink(missing_ok=True)
    session.flush()
    return len(due)


# --- dates --------------------------------------------------------------------------------------


def advance(
    session: Session,
    experiment: Experiment,
    now: dt.datetime | None = None,
    close_after_days: int = DEFAULT_CLOSE_AFTER_DAYS,
    user=None,
) -> str | None:
    """Move the campaign through its dates (idempotent; flushes).

    End of the window: launched → measuring (late exports still come in). ``close_after_days``
    after the end of the window: the outcomes are matched a last time, the campaign is closed and
    the final report snapshot is stored, with the closed status; it is never recomputed after.

    :returns: the new status, or None when nothing was due.
    """
    from experiments.reports import refresh_report

    now = now or utcnow()
    campaign = experiment.campaign
    moved = None
    if campaign.status == "launched" and now >= experiment.window_end:
        mark_measuring(session, campaign, user=user, now=now)
        moved = "measuring"
    if campaign.status == "measuring" and now >= experiment.window_end + dt.timedelta(days=close_after_days):
        match_outcomes(session, experiment, now)
        mark_closed(session, campaign, user=user, now=now)
        refresh_report(session, experiment, now=now, kind="final")
        moved = "closed"
    return moved


def running_experiments(session: Session) -> list[Experiment]:
    """Experiments whose campaign is launched or measuring."""
    return list(
        session.scalars(
            select(Experiment)
            .join(Campaign, Campaign.id == Experiment.campaign_id)
            .where(Campaign.status.in_(("launched", "measuring")))
            .order_by(Experiment.id)
        )
    )


__all__ = [
    "ContactListExpired",
    "ExperimentError",
    "advance",
    "bulk_insert",
    "contact_rows",
    "contact_list_for",
    "draw_assignment",
    "eligible_arrays",
    "experiment_of",
    "is_expired",
    "launch",
    "purge_contact_lists",
    "record_download",
    "running_experiments",
    "srm_checks",
    "stored_assignment",
    "verify_assignment",
]


def unsubscribes_answering_campaigns(session: Session, organisation_id: int, unsubscribed: dict) -> set[int]:
    """The spectators of ``unsubscribed`` ({spectator id: when}) who received, through
    ``organisation_id``, a district campaign launched before they unsubscribed (a test arm: the control
    group received nothing). Their unsubscribe answers it, so it applies district-wide (DESIGN.md §10)."""
    answered: set[int] = set()
    ids = sorted(unsubscribed)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for spectator_id, launched_at in session.execute(
            select(Recipient.spectator_id, func.min(Experiment.launched_at))
            .join(Experiment, Experiment.id == Recipient.experiment_id)
            .where(
                Recipient.organisation_id == organisation_id,
                Recipient.arm != "control",
                Recipient.spectator_id.in_(chunk),
            )
            .group_by(Recipient.spectator_id)
        ):
            if launched_at is not None and launched_at <= unsubscribed[spectator_id]:
                answered.add(spectator_id)
    return answered
