"""Writing validated batches: identities resolved in sets, rows loaded through core.sql."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any, Iterator

from flask import has_app_context
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)

from core import sql
from core.importing.common import (
    BATCH_SIZE,
    SHOWS_KEPT,
    _consents,
    _contacts,
    _shows,
    _spectators,
    _transactions,
    _venues,
)
from core.importing.result import ImportResult
from core.importing.validate import _Cache, _SaleColumns, _Unsubscribe
from core.importing.values import plus_two_years
from core.models import (
    SALE_COLUMNS,
    Consent,
    Contact,
    Spectator,
    utcnow,
)
from core.privacy import cell_key

# --- writing batches -----------------------------------------------------------------------------


def _chunks(values: list, size: int = BATCH_SIZE) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _insert_ignoring_conflicts(session, table, rows: list[dict], conflict: list[str], returning=()):
    """INSERT ... ON CONFLICT DO NOTHING (both engines): concurrent imports may create the same row."""
    statement = sql.upsert_insert(session)(table).on_conflict_do_nothing(index_elements=conflict)
    if returning:
        statement = statement.returning(*returning)
        return session.execute(statement, rows).all()
    session.execute(statement, rows)
    return []


def _bulk_insert(session, table, columns: tuple[str, ...], rows: list[tuple], converted: bool = False) -> None:
    """Append ``rows`` (tuples in ``columns`` order) to ``table`` the way the engine loads fastest
    (``core.sql.copy_rows``); ``converted``: the datetimes are already in the engine's stored form."""
    stamps = () if converted else [i for i, c in enumerate(columns) if isinstance(table.c[c].type, DateTime)]
    sql.copy_rows(session, table, columns, rows, stamps)


# The staged consents of an import, one row per spectator, basis and staging, on the organisation's
# contacts (merged before them): keep the earliest given_at and the latest expires_at; leave
# withdrawn_at alone. (WHERE true: SQLite's upsert after a SELECT needs a WHERE.)
_CONSENT_UPSERT = (
    "INSERT INTO consent (contact_id, channel, basis, source, given_at, expires_at, withdrawn_at) "
    "SELECT c.id, s.channel, s.basis, min(s.source), min(s.given_at), max(s.expires_at), max(s.withdrawn_at) "
    "FROM import_consent_stage s JOIN contact c ON c.organisation_id = :organisation "
    "AND c.spectator_id = s.spectator_id WHERE true GROUP BY c.id, s.channel, s.basis "
    "ON CONFLICT (contact_id, channel, basis) DO UPDATE SET "
    "given_at = CASE WHEN (excluded.given_at < consent.given_at) THEN excluded.given_at ELSE consent.given_at END, "
    "expires_at = CASE WHEN (consent.expires_at IS NULL) THEN excluded.expires_at "
    "WHEN (excluded.expires_at > consent.expires_at) THEN excluded.expires_at ELSE consent.expires_at END "
    "WHERE excluded.given_at < consent.given_at OR excluded.expires_at IS NOT NULL "
    "AND (consent.expires_at IS NULL OR excluded.expires_at > consent.expires_at)"
)


class _Memo(dict):
    """What this import already knows the database holds, forgotten whenever it grows past ``limit``:
    repeat buyers close together in a file cost no query. It holds at most ``limit`` entries or one
    batch's, whichever is more, reached within the first batches: memory stays flat whatever the
    file size. (What must hold across the whole file, the rows already imported, is read from the
    database, where the previous batches are.)"""

    def __init__(self, limit: int = 1 << 13):
        super().__init__()
        self.limit = limit

    def put(self, key, value) -> None:
        if len(self) >= self.limit and key not in self:
            self.clear()
        self[key] = value

    def put_many(self, items: dict) -> None:
        if len(self) + len(items) > self.limit:
            self.clear()
        self.update(items)


# Spectators whose contacts and consents the sales writer keeps in memory before staging them (with
# the rest of a batch's): a file's buyers are merged once in memory, within this bound.
STAGE_KEEP = 1 << 16

_SPECTATOR_STAGE = Table(
    "import_spectator_stage",
    MetaData(),
    *(
        Column(c.name, c.type)
        for c in Spectator.__table__.c
        if c.name in ("key", "created_at", "fsa", "opted_out_at", "cell_key")
    ),
)


class _SpectatorLookup:
    """Finds spectators by key in one query per batch and creates the missing ones, each with its
    cell key (``core.privacy.cell_key``) when given the district ``secret``: written with the row,
    rather than by an UPDATE of every new spectator afterwards (``fill_cell_keys``)."""

    def __init__(self, session, result: ImportResult, memo: bool = True, secret: str | None = None):
        self.session, self.result, self.secret = session, result, secret
        self.known = _Memo() if memo else None
        self.created: set[str] = set()  # keys created by the last call

    def _select(self, keys: list[str], found: dict) -> None:
        for chunk in _chunks(keys):
            rows = self.session.execute(
                select(_spectators.c.key, _spectators.c.id, _spectators.c.fsa, _spectators.c.opted_out_at).where(
                    sql.among(self.session, _spectators.c.key, chunk)
                )
            ).all()  # fetched at once: a row at a time costs the driver a call each
            found.update((key, (id_, fsa, opted)) for key, id_, fsa, opted in rows)

    def _insert(self, rows: list[tuple]) -> dict[str, int]:
        """Insert new spectators (key, created_at, fsa, opted_out_at) whose keys the lookup missed;
        returns key → id of those this call created (on PostgreSQL, keys a concurrent import created
        meanwhile are skipped and left out).

        On SQLite the caller's transaction must already have written (the importer writes its batch
        first), so that it holds the database's write lock."""
        session = self.session
        secret = self.secret
        rows = [(*row, cell_key(secret, row[0]) if secret else None) for row in rows]
        if not sql.stages_through_copy(session):
            # This transaction holds SQLite's write lock: no other import can create a key between the
            # select that missed it and this insert, nor any spectator. So the new rows take the ids
            # after the largest, given here rather than read back by key (250,000 new spectators of a
            # 1 M district: 3.4 s of lookups less).
            if not session.connection().connection.driver_connection.in_transaction:
                raise RuntimeError("new spectators are numbered under SQLite's write lock: write first")
            first = (session.execute(select(func.max(_spectators.c.id))).scalar() or 0) + 1
            sql.execute_many(
                session,
                "INSERT INTO spectator (id, key, created_at, fsa, opted_out_at, cell_key) VALUES (?, ?, ?, ?, ?, ?)",
                [(first + number, *row) for number, row in enumerate(rows)],
                stamps=(2, 4),
            )
            return {row[0]: first + number for number, row in enumerate(rows)}
        # Staged by COPY, applied in one statement.
        connection = session.connection()
        connection.exec_driver_sql(
            "CREATE TEMPORARY TABLE IF NOT EXISTS import_spectator_stage (key varchar(64), created_at timestamp, "
            "fsa varchar(3), opted_out_at timestamp, cell_key integer)" + sql.temporary_table_suffix(session)
        )
        connection.exec_driver_sql("TRUNCATE import_spectator_stage")
        _bulk_insert(session, _SPECTATOR_STAGE, ("key", "created_at", "fsa", "opted_out_at", "cell_key"), rows)
        return dict(
            connection.exec_driver_sql(
                "INSERT INTO spectator (key, created_at, fsa, opted_out_at, cell_key) "
                "SELECT key, created_at, fsa, opted_out_at, cell_key FROM import_spectator_stage "
                "ON CONFLICT (key) DO NOTHING RETURNING key, id"
            ).all()
        )

    def resolve(self, wanted: dict[str, dict]) -> dict[str, tuple[int, str | None, Any]]:
        """``wanted``: key → values for a new spectator (fsa, opted_out_at).

        Returns key → (id, fsa, opted_out_at) for every wanted key, creating the missing spectators.
        """
        found: dict[str, tuple[int, str | None, Any]] = {}
        known = self.known
        if known:
            found.update((key, known[key]) for key in wanted if key in known)
        self._select([k for k in wanted if k not in found], found)
        missing = [k for k in wanted if k not in found]
        self.created = set()
        if missing:
            now = utcnow()
            inserted = self._insert([(k, now, wanted[k].get("fsa"), wanted[k].get("opted_out_at")) for k in missing])
            for key, id_ in inserted.items():
                found[key] = (id_, wanted[key].get("fsa"), wanted[key].get("opted_out_at"))
                self.created.add(key)
            raced = [k for k in missing if k not in found]
            if raced:  # created meanwhile by a concurrent import
                self._select(raced, found)
        # FSAs learnt for spectators known without one
        fill = {
            found[key][0]: values["fsa"] for key, values in wanted.items() if values.get("fsa") and not found[key][1]
        }
        if fill:
            now = utcnow()
            self.session.execute(
                update(_spectators)
                .where(_spectators.c.id == bindparam("b_id"))
                .values(fsa=bindparam("b_fsa"), fsa_changed_at=now),
                [{"b_id": k, "b_fsa": v} for k, v in fill.items()],
            )
            for key, values in wanted.items():
                if found[key][0] in fill:
                    found[key] = (found[key][0], values["fsa"], found[key][2])
        if known is not None:
            known.put_many(found)
        return found


# a sale's columns (core.models.SALE_COLUMNS) with the import batch it came in, after the show
_TRANSACTION_COLUMNS = (*SALE_COLUMNS[:3], "batch_id", *SALE_COLUMNS[3:])
_PERSONAL = ("last_name", "first_name", "address", "postal_code", "email", "phone", "customer_id")
_CONTACT_COLUMNS = ("organisation_id", "spectator_id", "updated_at", *_PERSONAL)
_CONTACT_STAGE_COLUMNS = ("spectator_id", "flush", *_PERSONAL)
# The contacts kept in memory (the fields of each buyer's latest sales), numbered by staging, staged
# (COPY on PostgreSQL), then merged into the organisation's contacts in one statement by finish().
_CONTACT_STAGE = Table(
    "import_contact_stage",
    MetaData(),
    Column("spectator_id", Integer),
    Column("flush", Integer),
    *(Column(c.name, c.type) for c in Contact.__table__.c if c.name in _PERSONAL),
)
_CONSENT_COLUMNS = ("spectator_id", "channel", "basis", "source", "given_at", "expires_at", "withdrawn_at")
# Each batch's consents are staged (COPY on PostgreSQL), then upserted in one statement by finish().
_CONSENT_STAGE = Table(
    "import_consent_stage",
    MetaData(),
    Column("spectator_id", Integer),
    *(Column(c.name, c.type) for c in Consent.__table__.c if c.name in _CONSENT_COLUMNS),
)


# A batch's transactions are written in the order of the (spectator, purchase date) index, so that its
# pages are visited in order rather than at random: a bare insert of 1 M rows of random order into a
# 1 M SQLite district took 48.7 s sorted per 20,000 against 72.5 (docs/performance.md, 2026-12-07).
_BY_SPECTATOR_AND_DATE = operator.itemgetter(1, 4)


class _SalesWriter:
    """Writes batches of parsed sales (:class:`_SaleColumns`): spectators, venues, shows, contacts, consents,
    transactions."""

    def __init__(self, session, organisation_id: int, batch_id: int, result: ImportResult, secret: str | None = None):
        self.session, self.organisation_id, self.batch_id, self.result = session, organisation_id, batch_id, result
        self.text_stamps = sql.stores_text_datetimes(session)
        self.copy_staging = sql.stages_through_copy(session)
        self.spectators = _SpectatorLookup(session, result, secret=secret)
        self.venues: dict[str, list] = {}  # casefolded name → [id, capacity]
        for id_, name, capacity in session.execute(
            select(_venues.c.id, _venues.c.name, _venues.c.capacity).where(_venues.c.organisation_id == organisation_id)
        ):
            self.venues[name.casefold()] = [id_, capacity]
        self.shows: dict[str, int] = {}  # natural key → id; shows are few next to rows (SHOWS_KEPT at most)
        self.staging = False  # contacts and consents staged in temporary tables, merged by finish()
        self.flushes = 0  # stagings so far (_flush): a later one's contact fields win
        # Kept across batches by spectator id, staged when past STAGE_KEEP spectators (_flush):
        self.people: dict[int, list] = {}  # the personal fields of the latest sale giving each
        self.purchase: dict[int, list] = {}  # [first purchase, latest purchase]
        self.express: dict[int, dt.datetime] = {}  # first purchase with the newsletter box ticked
        self.subscription: dict[int, list] = {}  # [first purchase, latest subscribed show]
        self.opted_out: dict[int, Any] = {}  # the spectator's district-wide opt-out
        self.later = _Cache(plus_two_years)
        self.stamp = _Cache(lambda moment: None if moment is None else moment.isoformat(" ", "microseconds"))

    def write(self, sales: "_SaleColumns") -> None:
        external_ids = sales.external_id
        count = len(external_ids)
        # external id → its first row (a later copy within the batch is a duplicate)
        first = dict(zip(reversed(external_ids), range(count - 1, -1, -1)))
        known: set[str] = set()
        for chunk in _chunks(list(first)):
            known.update(
                self.session.scalars(
                    select(_transactions.c.external_id).where(
                        _transactions.c.organisation_id == self.organisation_id,
                        sql.among(self.session, _transactions.c.external_id, chunk),
                    )
                ).all()
            )
        fresh = sorted(index for external_id, index in first.items() if external_id not in known)
        self.result.duplicates += count - len(fresh)
        if not fresh:
            return
        keys, fsas = sales.key, sales.fsa
        wanted: dict[str, dict] = {}
        for index in fresh:
            key, fsa = keys[index], fsas[index]
            entry = wanted.get(key)
            if entry is None:
                wanted[key] = {"fsa": fsa}
            elif fsa and not entry["fsa"]:
                entry["fsa"] = fsa
        spectators = self.spectators.resolve(wanted)
        spectator_of = [spectators[keys[index]][0] for index in fresh]
        shows = self._shows(sales, fresh)
        self._contacts(sales, fresh, spectator_of)
        self._consents(sales, fresh, spectator_of, spectators)
        if len(self.people) >= STAGE_KEEP:
            self._flush()
        organisation_id, batch_id = self.organisation_id, self.batch_id
        purchased = sales.purchased_at
        if self.text_stamps:  # DateTime in SQLAlchemy's storage format, each distinct moment once
            stamps = {moment: moment.isoformat(" ", "microseconds") for moment in set(purchased)}
            purchased = [stamps[moment] for moment in purchased]
        show_keys, amounts, tickets = sales.show_key, sales.amount, sales.tickets
        circumstances, categories, channels = sales.circumstance, sales.category, sales.channel
        promo_codes, order_ids = sales.promo_code, sales.order_id
        rows = sorted(
            (
                (
                    organisation_id,
                    spectator_id,
                    shows[show_keys[index]],
                    batch_id,
                    purchased[index],
                    amounts[index],
                    tickets[index],
                    circumstances[index],
                    categories[index],
                    channels[index],
                    promo_codes[index],
                    order_ids[index],
                    external_ids[index],
                )
                for index, spectator_id in zip(fresh, spectator_of)
            ),
            key=_BY_SPECTATOR_AND_DATE,
        )
        _bulk_insert(self.session, _transactions, _TRANSACTION_COLUMNS, rows, converted=True)
        self.result.imported += len(fresh)
        self.later.trim()
        self.stamp.trim()

    def _venue_id(self, sales: "_SaleColumns", index: int) -> int | None:
        venue, capacity = sales.venue[index], sales.capacity[index]
        if not venue:
            return None
        entry = self.venues.get(venue.casefold())
        if entry is None:
            id_ = self.session.execute(
                insert(_venues).returning(_venues.c.id),
                {"organisation_id": self.organisation_id, "name": venue, "capacity": capacity},
            ).scalar_one()
            entry = self.venues[venue.casefold()] = [id_, capacity]
        elif entry[1] is None and capacity:
            self.session.execute(update(_venues).where(_venues.c.id == entry[0]).values(capacity=capacity))
            entry[1] = capacity
        return entry[0]

    def _shows(self, sales: "_SaleColumns", fresh: list[int]) -> dict[str, int]:
        needed: dict[str, int] = {}
        if len(self.shows) > SHOWS_KEPT:  # an export of countless performances: forget those of past batches
            self.shows.clear()
        show_keys, capacities, venues, known = sales.show_key, sales.capacity, sales.venue, self.shows
        for index in fresh:
            show_key = show_keys[index]
            if show_key not in known:
                if show_key not in needed:
                    needed[show_key] = index
            elif capacities[index] and venues[index] and self.venues[venues[index].casefold()][1] is None:
                self._venue_id(sales, index)  # a capacity given on a later row of a known venue
        if needed:
            for chunk in _chunks(list(needed)):
                known.update(
                    self.session.execute(
                        select(_shows.c.natural_key, _shows.c.id).where(
                            _shows.c.organisation_id == self.organisation_id,
                            sql.among(self.session, _shows.c.natural_key, chunk),
                        )
                    ).all()
                )
            missing = [index for key, index in needed.items() if key not in known]
            if missing:
                rows = [
                    {
                        "organisation_id": self.organisation_id,
                        "venue_id": self._venue_id(sales, index),
                        "natural_key": show_keys[index],
                        "title": sales.title[index],
                        "company": sales.company[index],
                        "discipline": sales.discipline[index],
                        "starts_at": sales.starts_at[index],
                        "duration_minutes": sales.duration[index],
                    }
                    for index in missing
                ]
                known.update(
                    self.session.execute(insert(_shows).returning(_shows.c.natural_key, _shows.c.id), rows).all()
                )
        return known

    def _contacts(self, sales: "_SaleColumns", fresh: list[int], spectator_of: list[int]) -> None:
        """Keep, per spectator of the batch, the personal fields of its latest sale over those kept from
        earlier batches (an empty field never erases a known one): :meth:`_flush` stages them and
        :meth:`finish` merges them into the organisation's contacts in one statement, so that a
        buyer seen in many batches is written once, and no contact is read back."""
        latest: dict[int, int] = {}  # spectator id → index of its latest sale
        purchased = sales.purchased_at
        for index, spectator_id in zip(fresh, spectator_of):
            current = latest.get(spectator_id)
            if current is None or purchased[index] >= purchased[current]:
                latest[spectator_id] = index
        columns = [getattr(sales, name) for name in _PERSONAL]
        people = self.people
        for spectator_id, index in latest.items():
            fields = [column[index] for column in columns]
            kept = people.get(spectator_id)
            if kept is None:
                people[spectator_id] = fields
            else:
                for position, value in enumerate(fields):
                    if value is not None:
                        kept[position] = value

    def _consents(
        self,
        sales: "_SaleColumns",
        fresh: list[int],
        spectator_of: list[int],
        spectators: dict,
    ) -> None:
        """Derive e-mail consents (DESIGN.md §6): newsletter → express from the purchase date; a purchase →
        implied until purchase + 2 years; a subscription → implied until its last show + 2 years.

        The spans are kept per spectator across batches, staged by :meth:`_flush`; :meth:`finish`
        upserts them once for the whole import on the merged contacts (the database keeps the
        earliest given_at and the latest expires_at), so no consent is read back.
        """
        purchase, express, subscription = self.purchase, self.express, self.subscription
        opted_out = self.opted_out
        keys, purchased_at, newsletters = sales.key, sales.purchased_at, sales.newsletter
        categories, starts = sales.category, sales.starts_at
        for index, spectator_id in zip(fresh, spectator_of):
            purchased = purchased_at[index]
            span = purchase.get(spectator_id)
            if span is None:
                purchase[spectator_id] = [purchased, purchased]
                opted_out[spectator_id] = spectators[keys[index]][2]
            elif purchased < span[0]:
                span[0] = purchased
            elif purchased > span[1]:
                span[1] = purchased
            if newsletters[index]:
                first = express.get(spectator_id)
                if first is None or purchased < first:
                    express[spectator_id] = purchased
            if categories[index] == "subscription":
                until = starts[index]
                span = subscription.get(spectator_id)
                if span is None:
                    subscription[spectator_id] = [purchased, until]
                else:
                    if purchased < span[0]:
                        span[0] = purchased
                    if until > span[1]:
                        span[1] = until

    def _flush(self) -> None:
        """Stage the contacts and consents kept so far (numbered: a later flush's contact fields win)
        and forget them: what the import holds in memory stays under STAGE_KEEP spectators plus a
        batch's, whatever the file's size."""
        if not self.people:
            return
        if not self.staging:
            self._stage()
        self.flushes += 1
        number = self.flushes
        _bulk_insert(
            self.session,
            _CONTACT_STAGE,
            _CONTACT_STAGE_COLUMNS,
            [(spectator_id, number, *fields) for spectator_id, fields in self.people.items()],
        )
        # A spectator who unsubscribed district-wide stays unsubscribed, whatever they buy.
        source = f"import {self.batch_id}"
        later, opted_out = self.later.__getitem__, self.opted_out
        rows = [
            (spectator_id, "email", "implied_purchase", source, first, later(latest), opted_out[spectator_id])
            for spectator_id, (first, latest) in self.purchase.items()
        ]
        rows += [
            (spectator_id, "email", "express", source, first, None, opted_out[spectator_id])
            for spectator_id, first in self.express.items()
        ]
        rows += [
            (spectator_id, "email", "implied_subscription", source, first, later(latest), opted_out[spectator_id])
            for spectator_id, (first, latest) in self.subscription.items()
        ]
        if not self.copy_staging:
            stamp = self.stamp.__getitem__
            rows = [
                (spectator_id, channel, basis, source, stamp(first), stamp(expires), stamp(withdrawn))
                for spectator_id, channel, basis, source, first, expires, withdrawn in rows
            ]
        _bulk_insert(self.session, _CONSENT_STAGE, _CONSENT_COLUMNS, rows, converted=not self.copy_staging)
        for kept in (self.people, self.purchase, self.express, self.subscription, self.opted_out):
            kept.clear()
        self.later.trim()
        self.stamp.trim()

    def _stage(self) -> None:
        """Contacts and consents are staged batch after batch in temporary tables, then merged once by
        :meth:`finish`: each contact and consent written once, not once per batch it appears in."""
        connection = self.session.connection()
        suffix = sql.temporary_table_suffix(self.session)
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_CONTACT_STAGE.name} (spectator_id integer, flush integer, "
            "last_name varchar(200), first_name varchar(200), address varchar(400), postal_code varchar(10), "
            "email varchar(320), phone varchar(40), customer_id varchar(100))" + suffix
        )
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_CONSENT_STAGE.name} (spectator_id integer, "
            "channel varchar(20), basis varchar(30), source varchar(100), given_at timestamp, "
            "expires_at timestamp, withdrawn_at timestamp)" + suffix
        )
        connection.exec_driver_sql(f"DELETE FROM {_CONTACT_STAGE.name}")
        connection.exec_driver_sql(f"DELETE FROM {_CONSENT_STAGE.name}")
        self.staging = True

    def finish(self) -> None:
        """Merge the staged contacts into the organisation's (per field, the value of the latest batch
        that gave one; an empty field never erases a known one), then upsert the staged consents
        on them (the database keeps the earliest given_at and the latest expires_at)."""
        self._flush()
        if not self.staging:
            return
        session, stage = self.session, _CONTACT_STAGE.name
        # A temporary table is never analysed by autovacuum: without its size the planner may scan contact.
        sql.refresh_statistics(session.connection(), (stage, _CONSENT_STAGE.name))
        # "New spectators" are new to this organisation (a contact record it did not have), never new
        # to the district: whether a person bought elsewhere must not show in an import's result.
        self.result.spectators_new += session.execute(
            text(
                f"SELECT count(*) FROM (SELECT DISTINCT spectator_id FROM {stage}) s WHERE NOT EXISTS "
                "(SELECT 1 FROM contact c WHERE c.organisation_id = :organisation AND c.spectator_id = s.spectator_id)"
            ),
            {"organisation": self.organisation_id},
        ).scalar_one()
        merged = ", ".join(f"{sql.last_given(session, name, 'flush')} AS {name}" for name in _PERSONAL)
        changes = " OR ".join(
            f"excluded.{name} IS NOT NULL AND (contact.{name} IS NULL OR excluded.{name} <> contact.{name})"
            for name in _PERSONAL
        )
        session.execute(
            text(
                f"INSERT INTO contact (organisation_id, spectator_id, updated_at, {', '.join(_PERSONAL)}) "
                f"SELECT :organisation, spectator_id, :now, {', '.join(_PERSONAL)} FROM "
                f"(SELECT spectator_id, {merged} FROM {stage} GROUP BY spectator_id) s WHERE true "
                "ON CONFLICT (organisation_id, spectator_id) DO UPDATE SET updated_at = excluded.updated_at, "
                + ", ".join(f"{name} = coalesce(excluded.{name}, contact.{name})" for name in _PERSONAL)
                + f" WHERE {changes}"
            ).bindparams(bindparam("now", type_=DateTime)),
            {"organisation": self.organisation_id, "now": utcnow()},
        )
        session.execute(text(_CONSENT_UPSERT), {"organisation": self.organisation_id})
        connection = session.connection()
        connection.exec_driver_sql(f"DROP TABLE {stage}")
        connection.exec_driver_sql(f"DROP TABLE {_CONSENT_STAGE.name}")
        self.staging = False


class _UnsubscribeWriter:
    """Withdraws this organisation's e-mail consents and records the opt-out on the spectator, district-wide."""

    def __init__(self, session, organisation_id: int, result: ImportResult):
        self.session, self.organisation_id, self.result = session, organisation_id, result
        # No memo: an opt-out recorded by this very import must read as one on the next batch.
        self.spectators = _SpectatorLookup(session, result, memo=False)

    def finish(self) -> None:
        pass

    def write(self, rows: list[_Unsubscribe]) -> None:
        wanted: dict[str, dict] = {}
        for row in rows:
            if row.key:
                entry = wanted.setdefault(row.key, {"opted_out_at": row.at})
                entry["opted_out_at"] = min(entry["opted_out_at"], row.at)
        # Only this organisation's own contacts are touched (DESIGN.md §10): the unsubscribe withdraws
        # their e-mail consent here, and opts them out district-wide only when it answers a district
        # campaign they received through this organisation. An address it does not hold changes
        # nothing anywhere (no organisation opts strangers out of the district) and counts as anonymous.
        spectators: dict[str, tuple] = {}
        self.spectators._select(sorted(wanted), spectators)
        by_customer: dict[str, list[tuple[int, int]]] = {}
        customer_ids = sorted({row.customer_id for row in rows if row.customer_id})
        for chunk in _chunks(customer_ids):
            for customer_id, contact_id, spectator_id in self.session.execute(
                select(_contacts.c.customer_id, _contacts.c.id, _contacts.c.spectator_id).where(
                    _contacts.c.organisation_id == self.organisation_id,
                    sql.among(self.session, _contacts.c.customer_id, chunk),
                )
            ):
                by_customer.setdefault(customer_id, []).append((contact_id, spectator_id))
        spectator_ids = {found[0] for found in spectators.values()}
        spectator_ids.update(s for pairs in by_customer.values() for _c, s in pairs)
        contacts_of: dict[int, int] = {}
        for chunk in _chunks(sorted(spectator_ids)):
            contacts_of.update(
                self.session.execute(
                    select(_contacts.c.spectator_id, _contacts.c.id).where(
                        _contacts.c.organisation_id == self.organisation_id,
                        sql.among(self.session, _contacts.c.spectator_id, chunk),
                    )
                ).all()
            )
        # "Already unsubscribed" is judged from this organisation's own records only (its contact's
        # e-mail consent withdrawn): whether another organisation recorded an opt-out, or knows the
        # person at all, must not show in the result (issue 15: no membership oracle).
        spectator_of_contact = {c: s for s, c in contacts_of.items()}
        already: set[int] = set()
        for chunk in _chunks(sorted(spectator_of_contact)):
            already.update(
                spectator_of_contact[c]
                for c in self.session.scalars(
                    select(_consents.c.contact_id)
                    .where(
                        sql.among(self.session, _consents.c.contact_id, chunk),
                        _consents.c.channel == "email",
                        _consents.c.withdrawn_at.is_not(None),
                    )
                    .distinct()
                )
            )
        opt_out: dict[int, dt.datetime] = {}
        withdraw: dict[int, dt.datetime] = {}
        for row in rows:
            targets = set()
            if row.key and row.key in spectators:
                targets.add(spectators[row.key][0])
            for _contact_id, spectator_id in by_customer.get(row.customer_id, ()) if row.customer_id else ():
                targets.add(spectator_id)
            targets &= contacts_of.keys()
            if not targets:
                self.result.anonymous += 1
                continue
            fresh = False
            for spectator_id in targets:
                if spectator_id not in already and spectator_id not in opt_out:
                    fresh = True
                if spectator_id not in already:
                    opt_out[spectator_id] = min(opt_out.get(spectator_id, row.at), row.at)
                if spectator_id in contacts_of:
                    contact_id = contacts_of[spectator_id]
                    withdraw[contact_id] = min(withdraw.get(contact_id, row.at), row.at)
            if fresh:
                self.result.imported += 1
            else:
                self.result.duplicates += 1
        answered: set[int] = set()
        if opt_out and has_app_context():
            from core.registry import registry

            for hook in registry().campaign_answers:
                answered |= hook(self.session, self.organisation_id, opt_out)
        opt_out = {k: v for k, v in opt_out.items() if k in answered}
        if opt_out:
            self.session.execute(
                update(_spectators)
                .where(_spectators.c.id == bindparam("b_id"), _spectators.c.opted_out_at.is_(None))
                .values(opted_out_at=bindparam("b_at")),
                [{"b_id": k, "b_at": v} for k, v in opt_out.items()],
            )
        if withdraw:
            self.session.execute(
                update(_consents)
                .where(
                    _consents.c.contact_id == bindparam("b_id"),
                    _consents.c.channel == "email",
                    _consents.c.withdrawn_at.is_(None),
                )
                .values(withdrawn_at=bindparam("b_at")),
                [{"b_id": k, "b_at": v} for k, v in withdraw.items()],
            )
