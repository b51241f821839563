"""Campaigns: promotions, campaigns, venue approvals, exclusions and the contact history."""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base
from core.models import Organisation, Show, utcnow
from segments.models import Segment, SegmentSnapshot

OFFER_KINDS = ("percent_off", "amount_off", "two_for_one", "upgrade", "presale")
CODE_STRATEGIES = ("unique", "shared")
OBJECTIVES = ("acquisition", "cross_sell", "upsell", "retention", "win_back")
# DESIGN.md §8; ``redemption`` is uptake of the test arms, never a lift, so never primary.
METRICS = ("conversion", "revenue", "tickets", "cross_sell", "redemption")
PRIMARY_METRICS = ("conversion", "revenue", "tickets", "cross_sell")

CAMPAIGN_STATUSES = ("draft", "awaiting_approvals", "ready", "launched", "measuring", "closed", "cancelled")
# The workflow (a contract with the scheduler and the experiments package): from → allowed targets.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("awaiting_approvals", "cancelled"),
    "awaiting_approvals": ("ready", "cancelled"),
    "ready": ("launched", "cancelled"),
    "launched": ("measuring",),
    "measuring": ("closed",),
    "closed": (),
    "cancelled": (),
}
# ``expired``: no answer by the deadline, which counts as declined.
APPROVAL_STATUSES = ("pending", "approved", "declined", "expired")
# Why a venue declines a request (labels in ``campaigns.followup``); ``other`` needs its own words.
DECLINE_REASONS = ("contact_pressure", "offer", "timing", "policy", "data_use", "other")
# Who sent a reminder: the scheduler's job, or a staff member's "remind again" button.
REMINDER_SOURCES = ("job", "user")

promotion_organisation = Table(
    "promotion_organisation",
    Base.metadata,
    Column("promotion_id", ForeignKey("promotion.id", ondelete="CASCADE"), primary_key=True),
    Column("organisation_id", ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True),
)

promotion_show = Table(
    "promotion_show",
    Base.metadata,
    Column("promotion_id", ForeignKey("promotion.id", ondelete="CASCADE"), primary_key=True),
    Column("show_id", ForeignKey("show.id", ondelete="CASCADE"), primary_key=True),
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Promotion(Base):
    """A shared district offer carried by campaigns: what, where, when, with which codes, at what cost."""

    __tablename__ = "promotion"
    __table_args__ = (
        CheckConstraint(_in("offer_kind", OFFER_KINDS), name="offer_kind"),
        CheckConstraint(_in("code_strategy", CODE_STRATEGIES), name="code_strategy"),
        CheckConstraint("valid_until >= valid_from", name="validity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name_fr: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    message_fr: Mapped[str] = mapped_column(Text)
    message_en: Mapped[str] = mapped_column(Text)
    offer_kind: Mapped[str] = mapped_column(String(20))
    # percent_off: whole percent (1-100); amount_off: cents; other kinds: none.
    offer_value: Mapped[Optional[int]] = mapped_column(Integer)
    # Comma-separated discipline keys (DESIGN.md §6); empty with shows = those shows only.
    disciplines: Mapped[str] = mapped_column(String(200), default="")
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    code_strategy: Mapped[str] = mapped_column(String(10), default="unique")
    shared_code: Mapped[Optional[str]] = mapped_column(String(40))
    # Cost assumptions of the ROI report, in cents.
    average_discount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_per_contact_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    organisations: Mapped[list[Organisation]] = relationship(
        secondary=promotion_organisation, order_by=Organisation.name
    )
    shows: Mapped[list[Show]] = relationship(secondary=promotion_show, order_by=Show.starts_at)

    @property
    def discipline_list(self) -> list[str]:
        return [d for d in self.disciplines.split(",") if d]

    def name(self, locale: str) -> str:
        return self.name_en if str(locale) == "en" else self.name_fr

    def message(self, locale: str) -> str:
        return self.message_en if str(locale) == "en" else self.message_fr


class Campaign(Base):
    """A joint campaign: a segment frozen at submission, a promotion, planned arms, dates and metrics."""

    __tablename__ = "campaign"
    __table_args__ = (
        CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
        CheckConstraint(_in("objective", OBJECTIVES), name="objective"),
        CheckConstraint("window_days > 0", name="window_days"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    objective: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    channel: Mapped[str] = mapped_column(String(20), default="email")
    segment_id: Mapped[Optional[int]] = mapped_column(ForeignKey("segment.id", ondelete="RESTRICT"), index=True)
    snapshot_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("segment_snapshot.id", ondelete="RESTRICT"), index=True
    )
    promotion_id: Mapped[Optional[int]] = mapped_column(ForeignKey("promotion.id", ondelete="RESTRICT"), index=True)
    # [{"name": "control", "share": 20}, {"name": "A", "share": 80}]: whole percents summing to 100.
    arms: Mapped[list] = mapped_column(JSON)
    window_days: Mapped[int] = mapped_column(Integer, default=30)
    primary_metric: Mapped[str] = mapped_column(String(20), default="conversion")
    secondary_metrics: Mapped[list] = mapped_column(JSON, default=list)
    approval_deadline: Mapped[dt.datetime] = mapped_column(DateTime)
    planned_launch_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    submitted_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    ready_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    launched_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    closed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    cancelled_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    cancel_reason: Mapped[Optional[str]] = mapped_column(Text)

    promotion: Mapped[Optional["Promotion"]] = relationship()
    segment: Mapped[Optional[Segment]] = relationship()
    snapshot: Mapped[Optional[SegmentSnapshot]] = relationship()
    approvals: Mapped[list["Approval"]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="Approval.id"
    )

    @property
    def control_share(self) -> int:
        return sum(int(a["share"]) for a in self.arms or [] if a["name"] == "control")

    @property
    def metrics(self) -> list[str]:
        return [self.primary_metric, *[m for m in self.secondary_metrics or [] if m != self.primary_metric]]


class Approval(Base):
    """One organisation's answer to a campaign's request to contact its spectators, with its exclusions."""

    __tablename__ = "approval"
    __table_args__ = (
        UniqueConstraint("campaign_id", "organisation_id"),
        CheckConstraint(_in("status", APPROVAL_STATUSES), name="status"),
        CheckConstraint("exclude_contacted_days IS NULL OR exclude_contacted_days > 0", name="contacted_days"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # The organisation's spectators in the snapshot when the request was made.
    segment_count: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    decided_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    exclude_subscribers: Mapped[bool] = mapped_column(Boolean, default=False)
    exclude_contacted_days: Mapped[Optional[int]] = mapped_column(Integer)
    # The uploaded exclusion list: how many lines, how many matched one of the organisation's spectators.
    exclusion_list_kind: Mapped[Optional[str]] = mapped_column(String(20))
    exclusion_list_rows: Mapped[int] = mapped_column(Integer, default=0)
    exclusion_list_matched: Mapped[int] = mapped_column(Integer, default=0)
    # When declined: one of DECLINE_REASONS and the venue's own words (required for ``other``).
    decline_reason: Mapped[Optional[str]] = mapped_column(String(20))
    decline_note: Mapped[Optional[str]] = mapped_column(Text)

    campaign: Mapped[Campaign] = relationship(back_populates="approvals")
    organisation: Mapped[Organisation] = relationship()

    @property
    def has_exclusions(self) -> bool:
        return bool(self.exclude_subscribers or self.exclude_contacted_days or self.exclusion_list_matched)


class ProviderApproval(Base):
    """A named organisation's answer, as data provider, to a campaign whose rule names it (or one of
    its venues): until it approves, no other organisation receives a list drawn with that rule, since
    receiving one tells the receiver which of its own people bought (or not) from the provider."""

    __tablename__ = "provider_approval"
    __table_args__ = (
        UniqueConstraint("campaign_id", "organisation_id"),
        CheckConstraint(_in("status", APPROVAL_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    decided_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    decline_reason: Mapped[Optional[str]] = mapped_column(String(20))
    decline_note: Mapped[Optional[str]] = mapped_column(Text)

    campaign: Mapped[Campaign] = relationship()
    organisation: Mapped[Organisation] = relationship()


class Reminder(Base):
    """One reminder of an unanswered request (a contacting approval or a data-provider request), sent
    by the scheduler's job or by a staff member's button: when, by whom."""

    __tablename__ = "approval_reminder"
    __table_args__ = (
        CheckConstraint("(approval_id IS NULL) <> (provider_approval_id IS NULL)", name="one_request"),
        CheckConstraint(_in("source", REMINDER_SOURCES), name="source"),
        Index("ix_approval_reminder_approval_sent", "approval_id", "sent_at"),
        Index("ix_approval_reminder_provider_sent", "provider_approval_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    approval_id: Mapped[Optional[int]] = mapped_column(ForeignKey("approval.id", ondelete="CASCADE"))
    provider_approval_id: Mapped[Optional[int]] = mapped_column(ForeignKey("provider_approval.id", ondelete="CASCADE"))
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(10))
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    # The sender as the audit log names it (a user's e-mail, or "scheduler"), kept if the user goes.
    actor: Mapped[str] = mapped_column(String(320))


class Exclusion(Base):
    """A spectator an organisation struck from its approval by an uploaded list (matched, never the raw list)."""

    __tablename__ = "exclusion"

    approval_id: Mapped[int] = mapped_column(ForeignKey("approval.id", ondelete="CASCADE"), primary_key=True)
    spectator_id: Mapped[int] = mapped_column(
        ForeignKey("spectator.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ContactHistory(Base):
    """A spectator contacted by a campaign through an organisation (filled at launch by experiments).

    Read by the contact-pressure exclusion: "contacted by any campaign in the last N days".
    """

    __tablename__ = "contact_history"
    __table_args__ = (Index("ix_contact_history_spectator_contacted", "spectator_id", "contacted_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # No foreign keys (like ``experiments.models.Recipient``): a launch writes 400,000 rows at once
    # and PostgreSQL's per-row check of three keys took most of that write. The rows are copied
    # from the experiment's recipients; spectators, campaigns and organisations are never deleted
    # (an erasure keeps the pseudonymous spectator), so the keys had nothing to cascade.
    spectator_id: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[Optional[int]] = mapped_column(Integer)  # never searched by: not indexed
    organisation_id: Mapped[Optional[int]] = mapped_column(Integer)
    contacted_at: Mapped[dt.datetime] = mapped_column(DateTime)
