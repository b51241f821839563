"""Segment snapshots: a version's members frozen on a date, copied set-wise from the compiled rule."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, func, insert, literal, select
from sqlalchemy.orm import Session

from segments.models import SegmentSnapshot, SegmentVersion, SnapshotMember
from segments.preview import members_select


def take_snapshot(session: Session, version: SegmentVersion, as_of: dt.date, user=None) -> SegmentSnapshot:
    """Freeze the members of ``version`` on ``as_of`` (one INSERT ... SELECT of the compiled rule).

    :param session: the caller's session; this flushes and never commits.
    :param version: the segment version whose rule is evaluated.
    :param as_of: the date the rule is evaluated on (the profiles answer it when they describe
        that date; otherwise the transactions do).
    :param user: who takes it (a ``User`` or None for a job).
    :returns: the flushed snapshot, its ``size`` set.
    """
    snapshot = SegmentSnapshot(
        segment_version_id=version.id, as_of=as_of, size=0, created_by_id=getattr(user, "id", None)
    )
    session.add(snapshot)
    session.flush()
    ids = members_select(session, version.rule, as_of).subquery("members")
    rows = select(literal(snapshot.id, Integer).label("snapshot_id"), ids.c.spectator_id)
    session.execute(insert(SnapshotMember).from_select(["snapshot_id", "spectator_id"], rows))
    snapshot.size = session.scalar(
        select(func.count()).select_from(SnapshotMember).where(SnapshotMember.snapshot_id == snapshot.id)
    )
    session.flush()
    return snapshot
