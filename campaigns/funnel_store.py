"""A campaign's funnel and its organisations' life-cycle mix, kept ready: counted by a job, read by pages.

The funnel (campaigns.funnel) reads every contact, consent and approval behind the campaign's
snapshot: seconds at a million spectators, which no page should pay at each reading (issue 18). It
is kept in the ``setting`` table with the campaign's state it counts (campaigns.funnel.figure_name:
the snapshot, the planned launch, every organisation's answer and exclusions) and the data epoch
(core.privacy: every import and profile refresh advances it):

* a page reads the kept funnel, even if the data or the campaign's state moved since (a decision,
  an exclusion list, a moved launch): the ``campaigns.funnels`` job counts it again within a minute,
  and until then the page says its counts are of an earlier state (:func:`kept_counts`). A page
  counts only when none was ever kept: at a million spectators a count takes seconds to minutes,
  and every reader after a decision counting it at once took the server down under load;
* a launched (or closed, or cancelled) campaign's funnel is counted once more after it leaves the
  approvals, then kept as it is: its recipients are drawn.

The privacy noise is added when a page shows a figure, keyed by the state the kept counts are of
(:func:`kept_counts`), so every reader sees the same figures for the same counts.
"""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.approvals import lifecycle_mix
from campaigns.funnel import Funnel, FunnelRow, figure_name, funnel
from campaigns.models import Campaign
from core.kept import read_kept, write_kept
from core.privacy import Cell, data_epoch

SETTING_PREFIX = "funnel:"
FROZEN = ("launched", "measuring", "closed", "cancelled")  # recipients drawn, or never will be


def _encode_row(row: FunnelRow) -> dict:
    return {
        "organisation_id": row.organisation_id,
        "organisation": row.organisation,
        "status": row.status,
        "segment": row.segment,
        "consent": row.consent,
        "approved": row.approved,
        "after_exclusions": row.after_exclusions,
        "eligible": row.eligible,
        "no_email": row.no_email,
        "keys": row.keys,
    }


def _decode_row(values: dict) -> FunnelRow:
    return FunnelRow(**values)


def _encode(raw: Funnel | None) -> dict | None:
    if raw is None:
        return None
    return {"at": raw.at.isoformat(), "rows": [_encode_row(r) for r in raw.rows], "total": _encode_row(raw.total)}


def _decode(values: dict | None) -> Funnel | None:
    if values is None:
        return None
    return Funnel(
        at=dt.datetime.fromisoformat(values["at"]),
        rows=[_decode_row(r) for r in values["rows"]],
        total=_decode_row(values["total"]),
    )


def _read(session: Session, campaign_id: int) -> dict | None:
    return read_kept(session, f"{SETTING_PREFIX}{campaign_id}")


def _write(session: Session, campaign_id: int, kept: dict) -> None:
    write_kept(session, f"{SETTING_PREFIX}{campaign_id}", kept)


def keep(session: Session, campaign: Campaign) -> dict:
    """Count the campaign's funnel now and keep it (the organisations' mixes are counted again when
    a page asks). Flushes; the caller commits."""
    state, epoch = figure_name(campaign), data_epoch(session)
    started = time.perf_counter()
    kept = {
        "state": state,
        "epoch": epoch,
        "status": campaign.status,
        "funnel": _encode(funnel(session, campaign)),
        "mix": {},
        "seconds": round(time.perf_counter() - started, 3),
    }
    _write(session, campaign.id, kept)
    return kept


def _current(session: Session, campaign: Campaign) -> dict:
    """The kept record, of the campaign's current state or an earlier one; a new count only when
    none was ever kept."""
    kept = _read(session, campaign.id)
    if kept is None:
        kept = keep(session, campaign)
    return kept


def kept_counts(session: Session, campaign: Campaign) -> tuple[Funnel | None, str, bool]:
    """(the campaign's raw funnel as kept, the name of the state it counts, whether that is the
    campaign's current state), from one reading of the kept record; the funnel is None without a
    snapshot.

    The name keys the figures' noise and the reader's question (core.privacy): the same counts are
    always shown with the same noise, whichever state the campaign has moved to meanwhile. Counts
    when none was kept (flushes; the caller commits)."""
    if campaign.snapshot_id is None:
        return None, figure_name(campaign), True
    kept = _current(session, campaign)
    return _decode(kept["funnel"]), kept["state"], kept["state"] == figure_name(campaign)


def kept_funnel(session: Session, campaign: Campaign) -> Funnel | None:
    """The campaign's raw funnel as kept (see :func:`kept_counts`); None without a snapshot."""
    return kept_counts(session, campaign)[0]


def answers_since(campaign: Campaign, raw: Funnel | None) -> tuple[dict[int, str], set[int]]:
    """(each organisation's answer now, the organisations whose answer changed since ``raw``, the
    kept funnel, was counted). An answer is not a count: pages show it as it is; the counts it
    decides (approved, after exclusions, eligible) are of the earlier answer until the job counts
    the new state."""
    answers = {a.organisation_id: a.status for a in campaign.approvals}
    if raw is None:
        return answers, set()
    return answers, {
        r.organisation_id
        for r in raw.rows
        if r.organisation_id is not None and r.organisation_id in answers and answers[r.organisation_id] != r.status
    }


def kept_lifecycle_mix(session: Session, campaign: Campaign, organisation_id: int) -> dict[str, Cell]:
    """The organisation's spectators in the snapshot by life-cycle stage (campaigns.approvals.lifecycle_mix),
    kept with the funnel and counted again with it."""
    if campaign.snapshot_id is None:
        return {}
    kept = _current(session, campaign)
    mix = kept["mix"].get(str(organisation_id))
    if mix is None:
        mix = {
            stage: [cell.count, cell.keysum]
            for stage, cell in lifecycle_mix(session, campaign, organisation_id).items()
        }
        kept["mix"][str(organisation_id)] = mix
        _write(session, campaign.id, kept)
    return {stage: Cell(count, keysum) for stage, (count, keysum) in mix.items()}


def refresh_funnels(session: Session, commit=None) -> dict:
    """Count again the kept funnels that the data moved under (a new epoch) of every campaign still
    in its approvals, and count once those of campaigns that left them; each in its own unit of
    work when ``commit`` is given. With a funnel, the life-cycle mix of every organisation asked
    (each venue's approval page shows its own: counted here rather than by the page's first reading,
    a second at a million spectators), and of any other a page asked for.

    :returns: ``{"counted": n, "seconds": s}``.
    """
    started, counted = time.perf_counter(), 0
    epoch = data_epoch(session)
    campaigns = session.scalars(select(Campaign).where(Campaign.snapshot_id.is_not(None)).order_by(Campaign.id))
    for campaign in campaigns.all():
        kept = _read(session, campaign.id)
        if kept is not None and kept.get("state") == figure_name(campaign):
            if kept.get("epoch") == epoch or (campaign.status in FROZEN and kept.get("status") in FROZEN):
                continue
        asked = set(kept["mix"]) if kept is not None else set()
        if campaign.status not in FROZEN:  # their approval pages are read now
            asked |= {str(a.organisation_id) for a in campaign.approvals}
        keep(session, campaign)
        for organisation_id in sorted(asked, key=int):
            kept_lifecycle_mix(session, campaign, int(organisation_id))
        counted += 1
        if commit is not None:
            commit()
    return {"counted": counted, "seconds": round(time.perf_counter() - started, 3)}
