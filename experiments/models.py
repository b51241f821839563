"""Experiments: a launched campaign's randomised recipients, their outcomes, contact lists and reports."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.models import Campaign
from core.db import Base
from core.models import utcnow

BINARY_METRICS = ("conversion", "cross_sell", "redemption")
CONTINUOUS_METRICS = ("revenue", "tickets")
REPORT_KINDS = ("interim", "final", "manual")


class Experiment(Base):
    """The controlled experiment of one launched campaign: arms, seed, window, metrics, health.

    Frozen at launch: the arms and shares, the seed that drew the assignment, the window and the
    metrics are copied from the campaign and never change afterwards.
    """

    __tablename__ = "experiment"
    __table_args__ = (CheckConstraint("window_days > 0", name="window_days"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="RESTRICT"), unique=True)
    # The randomisation seed: the same seed and the same eligible recipients give the same arms.
    seed: Mapped[int] = mapped_column(BigInteger)
    # The version of the assignment algorithm that drew the arms (experiments.assignment:
    # 1 largest remainder, 2 randomised rounding): verification redraws with the same one.
    assignment_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # [{"name": "control", "share": 20}, {"name": "A", "share": 80}], as planned at launch.
    arms: Mapped[list] = mapped_column(JSON)
    strata: Mapped[str] = mapped_column(String(20), default="organisation")
    window_days: Mapped[int] = mapped_column(Integer)
    launched_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # launched_at + window_days: the attribution window is [launched_at, window_end).
    window_end: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    primary_metric: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[list] = mapped_column(JSON)
    alpha: Mapped[float] = mapped_column(Float, default=0.05)
    code_strategy: Mapped[str] = mapped_column(String(10))
    shared_code: Mapped[Optional[str]] = mapped_column(String(40))
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    # Sample-ratio check right after assignment: {"overall": {...}, "by_organisation": {id: {...}}}.
    srm: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # Pre-period baselines and the mSPRT mixing variances fixed at launch, per metric.
    design: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # Interim looks of the primary metric: [{"at", "arm", "estimate", "variance"}], one per day.
    interim_looks: Mapped[list] = mapped_column(JSON, default=list)
    outcomes_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # The highest transaction id seen by the last outcome matching: newer rows make it stale.
    outcomes_watermark: Mapped[Optional[int]] = mapped_column(BigInteger)
    # Unique codes used by someone other than their holder (counted for no one).
    leaked_redemptions: Mapped[int] = mapped_column(Integer, default=0)
    launched_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    campaign: Mapped[Campaign] = relationship()

    @property
    def arm_names(self) -> list[str]:
        return [a["name"] for a in self.arms]

    @property
    def test_arms(self) -> list[str]:
        return [a["name"] for a in self.arms if a["name"] != "control"]

    @property
    def shares(self) -> list[float]:
        total = sum(float(a["share"]) for a in self.arms)
        return [float(a["share"]) / total for a in self.arms]

    @property
    def pre_start(self) -> dt.datetime:
        """Start of the equal-length pre-period [launched_at − window_days, launched_at)."""
        return self.launched_at - dt.timedelta(days=self.window_days)


class Recipient(Base):
    """One randomised spectator of an experiment: sending organisation, arm and promotion code.

    No personal data here: the contact list joins the sending organisation's ``Contact`` at download.
    """

    __tablename__ = "recipient"
    __table_args__ = (UniqueConstraint("experiment_id", "spectator_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # No foreign keys: a launch writes 500,000 rows at once and a per-row check of each key (with
    # PostgreSQL's row lock on the referenced spectator) would multiply its time. The rows are
    # copied from the experiment, spectator and organisation tables, none of which ever loses a
    # row (experiments are kept; an erasure keeps the pseudonymous spectator).
    experiment_id: Mapped[int] = mapped_column(Integer)
    spectator_id: Mapped[int] = mapped_column(Integer)
    organisation_id: Mapped[int] = mapped_column(Integer)
    arm: Mapped[str] = mapped_column(String(20))
    # A unique code (test arms of a unique-code promotion) is unique across every experiment.
    code: Mapped[Optional[str]] = mapped_column(String(40), unique=True)


class Outcome(Base):
    """What one recipient did in the attribution window and in the equal-length pre-period.

    Sparse: only recipients with a purchase in either period (or a redemption) have a row; every
    other recipient counts as zero on every metric. Rewritten by ``experiments.outcomes``.
    """

    __tablename__ = "outcome"
    # A derived table, rewritten set-wise by every matching, one row per recipient by construction
    # (a GROUP BY). No primary-key or foreign-key constraint: a key rewritten in the transaction
    # that deleted it costs PostgreSQL a heap visit per row for the uniqueness check (five times
    # the time of the insert), and a foreign key a lookup per row. A plain index serves the reads.
    __table_args__ = (Index("ix_outcome_experiment_recipient", "experiment_id", "recipient_id"),)
    __mapper_args__ = {"primary_key": ["experiment_id", "recipient_id"]}

    experiment_id: Mapped[int] = mapped_column(Integer)
    recipient_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    arm: Mapped[str] = mapped_column(String(20))
    organisation_id: Mapped[int] = mapped_column(Integer)
    converted: Mapped[int] = mapped_column(Integer, default=0)
    revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    tickets: Mapped[int] = mapped_column(Integer, default=0)
    cross_sell: Mapped[int] = mapped_column(Integer, default=0)
    redeemed: Mapped[int] = mapped_column(Integer, default=0)
    first_purchase_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    pre_converted: Mapped[int] = mapped_column(Integer, default=0)
    pre_revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    pre_tickets: Mapped[int] = mapped_column(Integer, default=0)
    pre_cross_sell: Mapped[int] = mapped_column(Integer, default=0)


class ContactList(Base):
    """One organisation's contact list of an experiment: when it was downloaded and when it expires."""

    __tablename__ = "contact_list"
    __table_args__ = (UniqueConstraint("experiment_id", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"), index=True)
    recipients: Mapped[int] = mapped_column(Integer, default=0)  # test-arm recipients at launch
    first_downloaded_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    last_downloaded_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    # Launch + retention until the first download, then first download + retention.
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    purged_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)

    experiment: Mapped[Experiment] = relationship()


class ReportSnapshot(Base):
    """A computed lift report (the plain dict of ``experiments.reports.build_report``), kept as JSON."""

    __tablename__ = "report_snapshot"
    __table_args__ = (
        CheckConstraint("kind IN ('interim', 'final', 'manual')", name="kind"),
        Index("ix_report_snapshot_experiment_created", "experiment_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10), default="interim")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
