"""The approval funnel: each organisation's records at each stage of eligibility, protected for readers who do not own them.

The stages are those of :mod:`campaigns.eligibility` (segment, consent, approved, after
exclusions, eligible), counted in one statement; an organisation reads its own row exact, every
pooled figure goes through :mod:`core.privacy`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field, replace

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from campaigns.eligibility import APPROVED, CANDIDATE, CONSENT, NO_CONSENT, STAGES, launch_time, staged_pairs
from campaigns.models import Approval, Campaign
from core.models import Organisation, Spectator
from core.privacy import Cell, Release, is_small
from core.sql import without_jit
from segments.models import SnapshotMember

# --- the funnel ---------------------------------------------------------------------------------


@dataclass
class FunnelRow:
    """Counts of one organisation (or of the whole campaign) at each stage; None when hidden.

    ``masked`` names the hidden stages whose count is not small (k or more): they are hidden only so
    that a small figure cannot be worked out by subtraction, and are labelled "hidden", never "<k".
    """

    organisation_id: int | None
    organisation: str
    status: str | None
    segment: int | None = 0
    consent: int | None = 0
    approved: int | None = 0
    after_exclusions: int | None = 0
    eligible: int | None = 0
    # records with consent but no usable e-mail address: not counted "with consent" (they cannot
    # be written to), shown apart; None when hidden
    no_email: int | None = 0
    masked: set[str] = field(default_factory=set)
    # each stage's sum of cell keys: with its count, the fingerprint of the stage's set (core.privacy.Cell)
    keys: dict[str, int] = field(default_factory=dict)

    def cell(self, stage: str) -> Cell:
        return Cell(int(getattr(self, stage) or 0), int(self.keys.get(stage, 0)))

    def values(self) -> list[int | None]:
        return [getattr(self, s) for s in STAGES]

    def bound(self, stage: str) -> int | None:
        """The nearest shown count of an earlier stage: an upper bound of ``stage`` (stages are nested)."""
        earlier = [getattr(self, s) for s in STAGES[: STAGES.index(stage)]]
        return next((v for v in reversed(earlier) if v is not None), None)


@dataclass
class Funnel:
    """The campaign's funnel: segment → with consent → approved → after exclusions → eligible."""

    at: dt.datetime
    rows: list[FunnelRow]
    total: FunnelRow
    k: int | None = None  # set once suppressed
    hidden: bool = field(default=False)

    def row(self, organisation_id: int) -> FunnelRow | None:
        return next((r for r in self.rows if r.organisation_id == organisation_id), None)

    def suppressed(self, k: int) -> "Funnel":
        """The funnel as shown to anyone but a single owning organisation.

        The policy, the same for every row (the total included) and for every page that shows a
        funnel figure:

        - a count under ``k`` is hidden (primary suppression, shown as "<k");
        - walking the stages in order, a stage whose drop from the previous *shown* stage of the same
          row is under ``k`` is hidden (the stages are nested, so the drop counts people too). The
          earlier stage stays: the segment comes first and its size is published with the snapshot,
          so hiding the later one is the only way not to reveal the drop. Shown neighbours then
          always differ by 0 or at least ``k``, and hiding one more cell keeps it so;
        - the eligible counts add up to the total (one sender per spectator): when the total is
          hidden, the rows cannot all be shown, else their sum would give it back;
        - in every stage, when exactly one organisation's count is hidden, the smallest other shown
          one is hidden as well, so that no hidden count comes back by subtraction from the total.

        Cells hidden by the last three rules while their own count is not small are listed in each
        row's ``masked`` ("hidden", not "<k", which would falsely say the figure is small).
        """
        rows = [replace(r, masked=set()) for r in self.rows]
        total = replace(self.total, masked=set())
        for row in (*rows, total):
            _hide_small_drops(row, k)
        if (
            total.eligible is None
            and self.total.eligible
            and not any(r.eligible is None and raw.eligible for r, raw in zip(rows, self.rows))
        ):
            shown = [r for r in rows if r.eligible]
            if shown:
                min(shown, key=lambda r: r.eligible or 0).eligible = None  # shown: never None
        for stage in STAGES:
            while True:
                hidden = [r for r, raw in zip(rows, self.rows) if getattr(r, stage) is None and getattr(raw, stage)]
                if len(hidden) != 1:
                    break
                shown = [r for r in rows if getattr(r, stage)]
                if not shown:
                    setattr(total, stage, None)  # the lone hidden count would equal the total
                    break
                setattr(min(shown, key=lambda r: getattr(r, stage)), stage, None)
        for row, raw in zip((*rows, total), (*self.rows, self.total)):
            row.masked = _masked(row, raw, k)
        return Funnel(at=self.at, rows=rows, total=total, k=k, hidden=True)

    def protected(self, release: Release, name: str) -> "Funnel":
        """The funnel as shown to anyone but a single owning organisation, with noisy figures
        (:class:`core.privacy.Release`): every count is the noisy figure of its set of spectators
        under ``name`` and its stage (:func:`figure_name`: the same on every page that shows it),
        "fewer than k" when that is under k. A stage is a subset of the one
        before: once a stage is small, so are the later ones. "Approved" is the consent figure
        itself for an organisation that approved (the same set), 0 with the later stages otherwise. An organisation's
        segment count is also hidden ("all but fewer than k", ``masked``) when the noisy
        campaign total minus it is under k. The noise protects the differences between figures,
        so no secondary suppression is needed.
        """
        total = _protected_row(self.total, release, name, None)
        total.after_exclusions = total.eligible  # one set: a candidate has exactly one sender
        whole = release.noisy(f"{name}.segment", self.total.cell("segment"))
        rows = [_protected_row(r, release, name, whole) for r in self.rows]
        return Funnel(at=self.at, rows=rows, total=total, k=release.k, hidden=True)

    def total_eligible(self) -> tuple[int | None, int | None]:
        """``(exact, at_most)`` of the campaign's eligible spectators as this funnel shows them: the
        exact count when shown, else None and the nearest earlier shown stage of the total row (an
        upper bound that reveals nothing the funnel does not show; None when none is shown)."""
        if self.total.eligible is not None:
            return self.total.eligible, None
        return None, self.total.bound("eligible")


def figure_name(campaign: Campaign) -> str:
    """The name that keys the noise of ``campaign``'s figures (stages and the like are appended):
    the question they answer, i.e. the campaign, its frozen snapshot, its planned launch and every
    organisation's answer and exclusions. Reading again gives the same figures; changing any of
    these asks a new question with fresh noise, as a reformulated segment preview does, so that
    two equal figures never say that two sets are equal (core.privacy: "Why the question keys
    the noise")."""
    state = [
        campaign.id,
        campaign.snapshot_id,
        campaign.planned_launch_at,
        sorted(
            (
                a.organisation_id,
                a.status,
                a.exclude_subscribers,
                a.exclude_contacted_days,
                a.exclusion_list_kind,
                a.exclusion_list_rows,
                a.exclusion_list_matched,
                a.decided_at,
            )
            for a in campaign.approvals
        ),
    ]
    digest = hashlib.sha256(json.dumps(state, default=str).encode("utf-8")).hexdigest()[:20]
    return f"campaign.{digest}"


def _protected_row(raw: FunnelRow, release: Release, name: str, whole: int | None) -> FunnelRow:
    row = replace(raw, masked=set(), keys={})
    small = declined = False
    for stage in STAGES:
        if stage == "approved" and raw.organisation_id is not None:
            # public: whether the organisation approved; its approved people are its consenting ones
            declined = raw.status != "approved"
        if declined or small:
            setattr(row, stage, 0 if declined else None)
            continue
        if stage == "approved" and raw.organisation_id is not None:
            setattr(row, stage, row.consent)
            continue
        figure = release.figure(f"{name}.{stage}", raw.cell(stage), whole=whole if stage == "segment" else None)
        setattr(row, stage, figure.value)
        small = figure.status == "small"
        if figure.status == "all_but":
            row.masked.add(stage)
    return row


def _masked(row: FunnelRow, raw: FunnelRow, k: int) -> set[str]:
    """The stages of ``row`` hidden although their raw count is not small."""
    return {s for s in STAGES if getattr(row, s) is None and (getattr(raw, s) or 0) >= k}


def _hide_small_drops(row: FunnelRow, k: int) -> None:
    last_shown = None
    for stage in STAGES:
        value = getattr(row, stage)
        hide = is_small(value, k) or (last_shown is not None and is_small(last_shown - value, k))
        if hide:
            setattr(row, stage, None)
        else:
            last_shown = value


def funnel(session: Session, campaign: Campaign, at: dt.datetime | None = None) -> Funnel | None:
    """Per-organisation counts at each stage of eligibility (raw: suppress before showing).

    One query. The total row counts distinct spectators (a spectator counts under every
    organisation that holds a record of them, but once in the total); its segment is the snapshot's
    size. None while the campaign has no snapshot.
    """
    if campaign.snapshot_id is None:
        return None
    at = launch_time(campaign, at)
    ranked = staged_pairs(session, campaign, at, approved_only=False)
    first = ranked.c.sender_rank == 1
    without_jit(session)

    def count_if(condition):
        return func.sum(case((condition, 1), else_=0))

    # beside each count the sum of its spectators' cell keys: the fingerprint of its set (core.privacy)
    key = func.coalesce(Spectator.cell_key, 0)

    def keys_if(condition):
        return func.sum(case((condition, key), else_=0))

    conditions = (
        ranked.c.stage >= NO_CONSENT,
        ranked.c.stage >= CONSENT,
        ranked.c.stage >= APPROVED,
        ranked.c.stage == CANDIDATE,
        and_(first, ranked.c.stage == CANDIDATE),
        # each spectator's first row carries its best stage: summed, they count people once
        and_(first, ranked.c.best >= CONSENT),
        and_(first, ranked.c.best >= APPROVED),
    )
    rows_ = session.execute(
        select(
            ranked.c.organisation_id,
            *[count_if(c) for c in conditions],
            func.sum(ranked.c.no_email),
            *[keys_if(c) for c in conditions],
        )
        .join(Spectator, Spectator.id == ranked.c.spectator_id)
        .group_by(ranked.c.organisation_id)
    ).all()
    counts = {r[0]: [int(v or 0) for v in r[1:9]] for r in rows_}
    key_sums = {r[0]: [int(v or 0) for v in r[9:]] for r in rows_}
    approvals = {
        a.organisation_id: a for a in session.scalars(select(Approval).where(Approval.campaign_id == campaign.id))
    }
    org_ids = set(counts) | set(approvals)
    names = (
        dict(session.execute(select(Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids))).all())
        if org_ids
        else {}
    )
    rows = []
    for org_id in sorted(org_ids, key=lambda o: (names.get(o, ""), o)):
        segment, consent, approved, after, eligible, _, _, no_email = counts.get(org_id, [0] * 8)
        rows.append(
            FunnelRow(
                organisation_id=org_id,
                organisation=names.get(org_id, "?"),
                status=approvals[org_id].status if org_id in approvals else None,
                segment=segment,
                consent=consent,
                approved=approved,
                after_exclusions=after,
                eligible=eligible,
                no_email=no_email,
                keys=dict(zip(STAGES, key_sums.get(org_id, [0] * 7))),
            )
        )
    snapshot_size, snapshot_keys = session.execute(
        select(func.count(), func.coalesce(func.sum(Spectator.cell_key), 0))
        .select_from(SnapshotMember)
        .join(Spectator, Spectator.id == SnapshotMember.spectator_id)
        .where(SnapshotMember.snapshot_id == campaign.snapshot_id)
    ).one()
    snapshot_size = int(snapshot_size or 0)
    eligible_total = sum(c[4] for c in counts.values())
    eligible_keys = sum(c[4] for c in key_sums.values())
    total = FunnelRow(
        organisation_id=None,
        organisation="",
        status=None,
        segment=snapshot_size,
        consent=sum(c[5] for c in counts.values()),
        approved=sum(c[6] for c in counts.values()),
        after_exclusions=eligible_total,  # a spectator with a candidate pair has exactly one sender
        eligible=eligible_total,
        keys={
            "segment": int(snapshot_keys or 0),
            "consent": sum(c[5] for c in key_sums.values()),
            "approved": sum(c[6] for c in key_sums.values()),
            "after_exclusions": eligible_keys,
            "eligible": eligible_keys,
        },
    )
    return Funnel(at=at, rows=rows, total=total)


def own_row(
    funnel_: Funnel, organisation_id: int, k: int, release: Release | None = None, name: str = ""
) -> FunnelRow | None:
    """One organisation's row as its own users see it: its own stages exact; the eligible count
    (which depends on other organisations' customers) the noisy figure of its set with a
    ``release`` under ``name`` (:func:`figure_name`, as on the campaign page), else hidden under
    ``k`` or when its drop is."""
    raw = funnel_.row(organisation_id)
    if raw is None:
        return None
    row = replace(raw, masked=set())
    if release is not None:
        row.eligible = _protected_row(raw, release, name, None).eligible  # as the staff's funnel shows it
        return row
    if is_small(row.eligible, k) or is_small((row.after_exclusions or 0) - (row.eligible or 0), k):
        row.eligible = None
    row.masked = _masked(row, raw, k)
    return row
