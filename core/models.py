"""The pooled data of the district: organisations, shows, pseudonymous spectators, contacts, sales."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from flask import g, has_request_context
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base

DISCIPLINES = ("music", "theatre", "dance", "humour", "circus", "classical", "festival", "other")
CHANNELS = ("web", "box_office", "phone")
CATEGORIES = ("single", "subscription")
CIRCUMSTANCES = ("regular", "promotion", "complimentary", "other")
CONSENT_BASES = ("express", "implied_purchase", "implied_subscription", "none")
ROLES = ("staff", "venue", "evaluator", "admin")
ORGANISATION_KINDS = ("venue", "company", "festival")


def utcnow() -> dt.datetime:
    """Naive UTC now: every timestamp in the database is naive UTC, on both engines."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Organisation(Base):
    """A member of the district that pools its ticketing data."""

    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="venue")
    disciplines: Mapped[str] = mapped_column(String(200), default="")
    k_threshold: Mapped[Optional[int]] = mapped_column(Integer)
    # Who the contact lists' messages come from (the e-mail tools' sender name and address).
    sender_name: Mapped[Optional[str]] = mapped_column(String(200))
    sender_email: Mapped[Optional[str]] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    venues: Mapped[list["Venue"]] = relationship(back_populates="organisation")

    @property
    def discipline_list(self) -> list[str]:
        return [d for d in self.disciplines.split(",") if d]


class Venue(Base):
    """A hall where shows take place, with its seating capacity."""

    __tablename__ = "venue"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    capacity: Mapped[Optional[int]] = mapped_column(Integer)

    organisation: Mapped[Organisation] = relationship(back_populates="venues")


class Show(Base):
    """One performance (the seed's "fiche spectacle")."""

    __tablename__ = "show"
    __table_args__ = (
        UniqueConstraint("organisation_id", "natural_key"),
        Index("ix_show_discipline_starts", "discipline", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    venue_id: Mapped[Optional[int]] = mapped_column(ForeignKey("venue.id", ondelete="SET NULL"))
    # sha256 of (title, starts_at, venue): one row per performance whatever the export repeats.
    natural_key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    company: Mapped[Optional[str]] = mapped_column(String(200))
    discipline: Mapped[str] = mapped_column(String(20), default="other")
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime)
    duration_minutes: Mapped[Optional[int]] = mapped_column(Integer)


class Spectator(Base):
    """The pooled, pseudonymous person: a keyed hash, the FSA, nothing personal."""

    __tablename__ = "spectator"
    __table_args__ = (
        # The few spectators still without a cell key, found without a scan of the table.
        Index(
            "ix_spectator_no_cell_key",
            "id",
            postgresql_where=text("cell_key IS NULL"),
            sqlite_where=text("cell_key IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    fsa: Mapped[Optional[str]] = mapped_column(String(3), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # When an import learnt the FSA of a spectator created without one: the pooled facts that read it
    # move in every season (segments.insight_publish), where a new purchase moves only its own on.
    fsa_changed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # A district-wide unsubscribe (DESIGN.md §10): set by any organisation's unsubscribe import,
    # it excludes the spectator from every campaign whatever consent another organisation holds.
    opted_out_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # The secret cell key of the noisy pooled figures (core.privacy.cell_key): HMAC of the key with
    # the district secret, in [0, 2^31); filled at creation (core.privacy.fill_cell_keys).
    cell_key: Mapped[Optional[int]] = mapped_column(Integer)


class Contact(Base):
    """One organisation's personal record of a spectator (the seed's "fiche client")."""

    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("organisation_id", "spectator_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    spectator_id: Mapped[int] = mapped_column(ForeignKey("spectator.id", ondelete="CASCADE"), index=True)
    last_name: Mapped[Optional[str]] = mapped_column(String(200))
    first_name: Mapped[Optional[str]] = mapped_column(String(200))
    address: Mapped[Optional[str]] = mapped_column(String(400))
    postal_code: Mapped[Optional[str]] = mapped_column(String(10))
    email: Mapped[Optional[str]] = mapped_column(String(320))
    phone: Mapped[Optional[str]] = mapped_column(String(40))
    language: Mapped[Optional[str]] = mapped_column(String(5))
    customer_id: Mapped[Optional[str]] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    consents: Mapped[list["Consent"]] = relationship(back_populates="contact", cascade="all, delete-orphan")


class Consent(Base):
    """Permission to write to a contact on a channel, under Canada's anti-spam law."""

    __tablename__ = "consent"
    __table_args__ = (
        # leads with contact_id: it serves every lookup by contact (no index of its own to write)
        UniqueConstraint("contact_id", "channel", "basis"),
        CheckConstraint("basis IN ('express', 'implied_purchase', 'implied_subscription', 'none')", name="basis"),
        # the few withdrawn consents, for the launch's anti-join (an unsubscribe withdraws every
        # basis): read from this small index instead of a scan of every consent
        Index(
            "ix_consent_withdrawn",
            "contact_id",
            "channel",
            postgresql_where=text("withdrawn_at IS NOT NULL"),
            sqlite_where=text("withdrawn_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20), default="email")
    basis: Mapped[str] = mapped_column(String(30))
    source: Mapped[Optional[str]] = mapped_column(String(100))
    given_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # Implied consent lapses: purchase + 2 years, or last subscribed show + 2 years.
    expires_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    withdrawn_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)

    contact: Mapped[Contact] = relationship(back_populates="consents")

    def is_valid(self, at: dt.datetime) -> bool:
        """Valid at ``at``: given, not withdrawn, and (for implied consent) not expired."""
        if self.basis == "none" or self.given_at > at:
            return False
        if self.withdrawn_at is not None and self.withdrawn_at <= at:
            return False
        return self.expires_at is None or self.expires_at > at


class ImportBatch(Base):
    """One imported file: who, when, what came of it."""

    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="sales")
    filename: Mapped[str] = mapped_column(String(300))
    checksum: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="running")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    anonymous: Mapped[int] = mapped_column(Integer, default=0)
    spectators_new: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[Optional[list]] = mapped_column(JSON)
    summary: Mapped[Optional[dict]] = mapped_column(JSON)
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class ColumnMapping(Base):
    """An organisation's own name for a column of its exports: the field it holds, or ignored (``""``);
    chosen once on the mapping screen, used by every later upload, ``pilot import`` and the inbox."""

    __tablename__ = "column_mapping"
    __table_args__ = (UniqueConstraint("organisation_id", "kind", "header"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20), default="sales")
    header: Mapped[str] = mapped_column(String(200))  # canonical form (core.importing.columns.canonical_header)
    label: Mapped[str] = mapped_column(String(300))  # as the export writes it
    field: Mapped[str] = mapped_column(String(40), default="")
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Transaction(Base):
    """One order line (the seed's "fiche transaction"); money in integer cents."""

    __tablename__ = "transaction"
    __table_args__ = (
        UniqueConstraint("organisation_id", "external_id"),
        Index("ix_transaction_spectator_purchased", "spectator_id", "purchased_at"),
        Index("ix_transaction_purchased", "purchased_at"),
        Index("ix_transaction_promo_code", "promo_code"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    spectator_id: Mapped[int] = mapped_column(ForeignKey("spectator.id", ondelete="CASCADE"))
    show_id: Mapped[Optional[int]] = mapped_column(ForeignKey("show.id", ondelete="SET NULL"), index=True)
    batch_id: Mapped[Optional[int]] = mapped_column(ForeignKey("import_batch.id", ondelete="SET NULL"), index=True)
    purchased_at: Mapped[dt.datetime] = mapped_column(DateTime)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    tickets: Mapped[int] = mapped_column(Integer)
    circumstance: Mapped[str] = mapped_column(String(20), default="regular")
    category: Mapped[str] = mapped_column(String(20), default="single")
    channel: Mapped[Optional[str]] = mapped_column(String(20))
    promo_code: Mapped[Optional[str]] = mapped_column(String(60))
    order_id: Mapped[Optional[str]] = mapped_column(String(100))
    # Hash of the row's normalised content: re-importing the same rows adds nothing.
    external_id: Mapped[str] = mapped_column(String(64))


# A sale's columns as the bulk loaders write them (the demo, the experiments' demo, the benchmark),
# in that order; the id (when a loader chooses it) comes first and no loader writes the batch.
SALE_COLUMNS = (
    "organisation_id",
    "spectator_id",
    "show_id",
    "purchased_at",
    "amount_cents",
    "tickets",
    "circumstance",
    "category",
    "channel",
    "promo_code",
    "order_id",
    "external_id",
)


class User(UserMixin, Base):
    """A person who logs in: staff, a venue's approver, an evaluator or an administrator."""

    __tablename__ = "user"
    __table_args__ = (
        CheckConstraint("role IN ('staff', 'venue', 'evaluator', 'admin')", name="role"),
        CheckConstraint("role <> 'venue' OR organisation_id IS NOT NULL", name="venue_has_org"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[Optional[str]] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    organisation_id: Mapped[Optional[int]] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[Optional[str]] = mapped_column(String(5))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # Server-side session version: a login records it in the session cookie, and a session whose
    # version is no longer the user's is over. Logout, a password change and a deactivation bump it.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # An evaluator sees the reports only; an administrator may grant them the raw audience insights.
    insights_granted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)

    organisation: Mapped[Optional[Organisation]] = relationship()

    @property
    def is_active(self) -> bool:  # Flask-Login reads this
        return bool(self.active)


TOKEN_PURPOSES = ("invite", "reset")


class UserToken(Base):
    """A one-time link for a user: an invitation or a password reset. Only the SHA-256 of its secret
    is kept; it ends at its expiry or at its first use (core.people)."""

    __tablename__ = "user_token"
    __table_args__ = (CheckConstraint("purpose IN ('invite', 'reset')", name="purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))


class LoginThrottle(Base):
    """Failed logins counted per (account, address) and per address (``account`` empty): an address
    that keeps failing is slowed down, an account is only ever blocked for the address that failed."""

    __tablename__ = "login_throttle"
    __table_args__ = (UniqueConstraint("address", "account"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    # the lower-cased e-mail typed (known or not: both are counted alike), "" for the address's own count
    account: Mapped[str] = mapped_column(String(320), default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    locked_until: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


# The audit action of an erasure on request (campaigns.erasure): the profile refresh and the import
# quality page find the erasures in the audit log by it.
PERSON_ERASED = "person.erase"


class AuditEvent(Base):
    """An append-only record of something sensitive: who did what to which object, when."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_object", "object_type", "object_id"),
        # A user's questions of the day (core.privacy.questions_today): the budget reads it per question.
        Index("ix_audit_event_user_action_at", "user_id", "action", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320))
    # The actor's role when they acted (the log's sentences say "Alice (administrator)"), if known.
    actor_role: Mapped[Optional[str]] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(60), index=True)
    object_type: Mapped[Optional[str]] = mapped_column(String(60))
    object_id: Mapped[Optional[str]] = mapped_column(String(60))
    organisation_id: Mapped[Optional[int]] = mapped_column(ForeignKey("organisation.id", ondelete="SET NULL"))
    details: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)


class Setting(Base):
    """A named value an administrator can change (k threshold, retention...)."""

    __tablename__ = "setting"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Notification(Base):
    """A message shown on a user's or an organisation's dashboard (reminders, results)."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Optional[str]] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))
    message_fr: Mapped[str] = mapped_column(Text)
    message_en: Mapped[str] = mapped_column(Text)
    link: Mapped[Optional[str]] = mapped_column(String(300))
    dedupe_key: Mapped[Optional[str]] = mapped_column(String(120), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    read_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


def audit(
    session,
    action: str,
    *,
    actor: str,
    user_id: int | None = None,
    object_type: str | None = None,
    object_id: Any = None,
    organisation_id: int | None = None,
    actor_role: str | None = None,
    **details,
) -> AuditEvent:
    """Append an audit event to ``session`` (flushed by the caller's transaction, never alone). The
    actor's role is the logged-in user's when ``user_id`` is theirs, unless ``actor_role`` says it."""
    if actor_role is None and user_id is not None and has_request_context():
        from flask_login import current_user

        if getattr(current_user, "is_authenticated", False) and current_user.id == user_id:
            actor_role = current_user.role
    event = AuditEvent(
        actor=actor,
        actor_role=actor_role,
        user_id=user_id,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        organisation_id=organisation_id,
        details=details or None,
    )
    session.add(event)
    # A download whose view logged itself is not logged again (core._install_download_audit); a
    # question on pooled figures (core.privacy) logs what was asked, not that a file left: it does not count.
    if has_request_context() and object_type != "question":
        g.pilot_audited = True
    return event


class JobRun(Base):
    """One run of a scheduled job: when, how long, how it ended (the admin job page lists them)."""

    __tablename__ = "job_run"
    __table_args__ = (
        Index("ix_job_run_job_started", "job_id", "started_at"),
        CheckConstraint("status IN ('running', 'success', 'failed', 'skipped', 'interrupted')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(100))
    # Who started it: "scheduler" (its timetable), "web" (an administrator's "run now"), "cli".
    runner: Mapped[str] = mapped_column(String(20), default="scheduler")
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    duration_ms: Mapped[Optional[int]] = mapped_column(Integer)
    summary: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[Optional[str]] = mapped_column(Text)
    # "host:pid" of the process that ran it, so a run left "running" by a killed process is found.
    process: Mapped[Optional[str]] = mapped_column(String(200))
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))


# APScheduler's job store (SQLAlchemyJobStore) keeps the schedule in the application database.
# Declared here with APScheduler's own column types so that Alembic makes it, like every table,
# and `pilot db check` sees no drift; the store only checks that it exists.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
