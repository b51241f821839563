"""Segments: derived spectator profiles, saved segments with versioned rules, frozen snapshots."""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base
from core.models import utcnow


class SpectatorProfile(Base):
    """One derived row per spectator with what the segment rules need, valid as of ``as_of``.

    Sets (organisations, disciplines) are bit masks: bit ``organisation.id`` and bit
    ``DISCIPLINES.index(key)``, so that "any / all / none" is one integer test per row. The usual
    windows of a rule ("in the last year / two years", ``segments.profiles.WINDOW_COLUMNS``) have
    columns of their own (``*_365``, ``*_730``, ``shows_548``), so that such a condition reads the
    row instead of the transactions.

    Column order is for the scans of the rule previews: fixed-width columns that are never NULL
    come first, sized so that none needs padding, then the texts and the nullable ones.
    PostgreSQL finds a column at a fixed offset only up to the first text or NULL of a row and
    walks the row from there (the last columns of the former order cost a scan twice the first).
    """

    __tablename__ = "spectator_profile"
    __table_args__ = (
        Index("ix_spectator_profile_last", "last_purchase_on"),
        Index("ix_spectator_profile_lifecycle", "lifecycle"),
        # A rule on a region: "fsa starts with H2" or "fsa in (...)". It holds what such a rule's
        # preview reads besides (organisation sets, the breakdown's life cycle and reach), so that
        # SQLite answers it from the index alone. varchar_pattern_ops: PostgreSQL reads it for a
        # LIKE 'H2%' in any collation (and for "in"); a full refresh writes the rows in FSA order
        # there, so that the few pages of a region are read (segments.profiles). It includes the
        # spectator id there (SQLite's rowid is in every index), so that PostgreSQL answers such a
        # rule from the index alone once a refresh has been vacuumed (segments.profiles).
        Index(
            "ix_spectator_profile_fsa",
            "fsa",
            "organisation_mask",
            "lifecycle",
            "contactable",
            "cell_key",
            postgresql_ops={"fsa": "varchar_pattern_ops"},
            postgresql_include=["spectator_id"],
        ),
    )

    spectator_id: Mapped[int] = mapped_column(ForeignKey("spectator.id", ondelete="CASCADE"), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    organisation_mask: Mapped[int] = mapped_column(BigInteger, default=0)
    organisation_mask_365: Mapped[int] = mapped_column(BigInteger, default=0)
    organisation_mask_730: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_cents_365: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_cents_730: Mapped[int] = mapped_column(BigInteger, default=0)
    promo_share: Mapped[float] = mapped_column(Float, default=0.0)
    shows: Mapped[int] = mapped_column(Integer, default=0)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    tickets: Mapped[int] = mapped_column(Integer, default=0)
    shows_548: Mapped[int] = mapped_column(Integer, default=0)
    discipline_mask: Mapped[int] = mapped_column(Integer, default=0)
    discipline_mask_365: Mapped[int] = mapped_column(Integer, default=0)
    discipline_mask_730: Mapped[int] = mapped_column(Integer, default=0)
    # The spectator's cell key (core.privacy), summed beside every count of a preview: the set's
    # fingerprint that keys its noise.
    cell_key: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Nullable in the schema, never NULL on a row: every profile has a purchase.
    first_purchase_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    last_purchase_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    subscriber: Mapped[bool] = mapped_column(Boolean, default=False)
    newsletter: Mapped[bool] = mapped_column(Boolean, default=False)
    contactable: Mapped[bool] = mapped_column(Boolean, default=False)
    lifecycle: Mapped[str] = mapped_column(String(20))
    fsa: Mapped[Optional[str]] = mapped_column(String(3))
    main_channel: Mapped[Optional[str]] = mapped_column(String(20))
    lead_days: Mapped[Optional[float]] = mapped_column(Float)
    tickets_per_order: Mapped[Optional[float]] = mapped_column(Float)


class ProfileColumn(Base):
    """One field of every spectator profile as one array (``segments.profile_columns``), rows in
    spectator order: a new rule's preview reads the few arrays it needs instead of scanning the
    27-column profile table. Written by every profile refresh in its transaction, all columns of one
    refresh sharing a ``version``.
    """

    __tablename__ = "profile_column"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    as_of: Mapped[dt.date] = mapped_column(Date)
    rows: Mapped[int] = mapped_column(Integer)
    # the texts the codes of a text column stand for (code i is vocabulary[i]; -1 is NULL)
    vocabulary: Mapped[Optional[list]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Segment(Base):
    """A named target segment; its rule changes by versions."""

    __tablename__ = "segment"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[Optional[str]] = mapped_column(Text)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)

    versions: Mapped[list["SegmentVersion"]] = relationship(
        back_populates="segment", order_by="SegmentVersion.number", cascade="all, delete-orphan"
    )

    @property
    def current(self) -> "SegmentVersion | None":
        return self.versions[-1] if self.versions else None


class SegmentVersion(Base):
    """One version of a segment's rule (the JSON of DESIGN.md §7)."""

    __tablename__ = "segment_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segment.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    rule: Mapped[dict] = mapped_column(JSON)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    segment: Mapped[Segment] = relationship(back_populates="versions")


class SegmentSnapshot(Base):
    """A frozen member list of a segment version, as of a date (taken when a campaign uses it)."""

    __tablename__ = "segment_snapshot"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_version_id: Mapped[int] = mapped_column(ForeignKey("segment_version.id", ondelete="RESTRICT"), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    size: Mapped[int] = mapped_column(Integer)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    version: Mapped[SegmentVersion] = relationship()


class SnapshotMember(Base):
    """One spectator of a frozen snapshot."""

    __tablename__ = "snapshot_member"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("segment_snapshot.id", ondelete="CASCADE"), primary_key=True)
    spectator_id: Mapped[int] = mapped_column(
        ForeignKey("spectator.id", ondelete="CASCADE"), primary_key=True, index=True
    )


# The pooled pages' kept facts (segments.insight_store), with the package's other tables in the metadata.
from segments.insight_store import PooledSummary  # noqa: E402,F401
