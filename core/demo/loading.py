"""Bulk loading of the generated demo district (COPY or executemany through ``core.sql``)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from sqlalchemy import insert, text

from core import sql
from core.demo.catalogue import Catalogue, build_catalogue
from core.demo.district import (
    CHANNELS,
    CHUNK_SPECTATORS,
    CIRCUMSTANCE,
    DAY,
    EPOCH,
    ORGANISATIONS,
    WRITE_BATCH,
)
from core.demo.people import _keys, generate_chunk
from core.models import DISCIPLINES, SALE_COLUMNS, AuditEvent, utcnow
from core.privacy import cell_key

# --- bulk loading ----------------------------------------------------------------------------


_DAY_TEXT: dict[str, np.ndarray] = {}
_TIME_TEXT = (
    np.array([f"{h:02d}:{m:02d}:{x:02d}" for h in range(24) for m in range(60) for x in range(60)], dtype="S8")
    .view(np.uint8)
    .reshape(-1, 8)
)
_FIRST_DAY = np.datetime64("2015-01-01")
_LAST_DAY = np.datetime64("2035-12-31")


def _timestamps(seconds: np.ndarray) -> list:
    """Timestamp text with microseconds, as SQLAlchemy stores it on SQLite and PostgreSQL's COPY
    reads it; -1 → NULL.

    Built from two small tables of day and time-of-day text: far faster than formatting each value.
    """
    n = len(seconds)
    if n == 0:
        return []
    width = 27
    if not _DAY_TEXT:
        days = np.arange(_FIRST_DAY, _LAST_DAY + 1)
        _DAY_TEXT["day"] = np.array([f"{d} " for d in days.astype(str)], dtype="S11").view(np.uint8).reshape(-1, 11)
    clipped = np.maximum(seconds, 0)
    day_index = clipped // DAY + int((EPOCH.astype("datetime64[D]") - _FIRST_DAY).astype(np.int64))
    buf = np.empty((n, width), np.uint8)
    buf[:, :11] = _DAY_TEXT["day"][day_index]
    buf[:, 11:19] = _TIME_TEXT[clipped % DAY]
    buf[:, 19:26] = np.frombuffer(b".000000", np.uint8)
    buf[:, -1] = ord("\n")
    values = buf.tobytes().decode("ascii").split("\n")
    values.pop()
    if np.any(seconds < 0):
        for i in np.flatnonzero(seconds < 0).tolist():
            values[i] = None
    return values


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> list[str]:
    """``prefix`` followed by each number zero-padded to ``width`` digits, built in one pass."""
    n = len(numbers)
    if n == 0:
        return []
    head = len(prefix)
    buf = np.empty((n, head + width + 1), np.uint8)
    buf[:, :head] = np.frombuffer(prefix.encode("ascii"), np.uint8)
    rest = numbers.astype(np.int64)
    for k in range(width):
        buf[:, head + width - 1 - k] = 48 + rest % 10
        rest = rest // 10
    buf[:, -1] = ord("\n")
    values = buf.tobytes().decode("ascii").split("\n")
    values.pop()
    return values


class _Loader:
    """Writes rows with explicit ids through the driver (``core.sql.copy_rows``)."""

    def __init__(self, connection):
        self.connection = connection

    def write(self, table: str, columns: list[str], n: int, make: Callable[[slice], list[list]]) -> None:
        """Write ``n`` rows; ``make(slice)`` returns the column lists of that slice of rows."""
        for lo in range(0, n, WRITE_BATCH):
            values = make(slice(lo, min(lo + WRITE_BATCH, n)))
            sql.copy_rows(self.connection, table, columns, zip(*values))

    def defer_constraints(self, tables: list[str]) -> list[str]:
        """Drop the secondary indexes of the empty ``tables`` for the load (on PostgreSQL also their
        foreign keys and unique constraints) and return the statements that restore them.

        Foreign-key triggers fire row by row and cut COPY to a fraction of its speed, and an index
        on a column loaded in random order (purchase time) spills SQLite's cache at every insert;
        building each index and validating each constraint once at the end is several times faster.
        """
        drops, restores = [], []
        for table in tables:
            if self.connection.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{table}")')).scalar():
                continue
            dropping, restoring = sql.droppable_indexes(self.connection, table)
            drops += dropping
            restores += restoring
        for statement in drops:
            self.connection.exec_driver_sql(statement)
        return restores

    def restore_constraints(self, statements: list[str]) -> None:
        for statement in statements:
            self.connection.exec_driver_sql(statement)

    def next_id(self, table: str) -> int:
        return int(self.connection.execute(text(f'SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"')).scalar())

    def reset_sequences(self, tables: list[str]) -> None:
        sql.reset_id_sequences(self.connection, tables)


def _load(db, spectators: int, seed: int, secret: str, echo, began: float) -> dict:
    cat = build_catalogue(seed)
    now = utcnow().replace(microsecond=0)
    now_s = int((np.datetime64(now, "s") - EPOCH).astype(np.int64))
    totals = {"shows": len(cat.show_start), "spectators": 0, "transactions": 0, "contacts": 0, "consents": 0}
    with db.engine.begin() as connection:
        loader = _Loader(connection)
        sql.bulk_load_settings(connection)
        tables = ["organisation", "venue", "show", "spectator", "transaction", "contact", "consent"]
        ids = {t: loader.next_id(t) for t in tables}
        restores = loader.defer_constraints(["spectator", "transaction", "contact", "consent"])
        n_orgs = len(ORGANISATIONS)
        org_ids = np.arange(n_orgs) + ids["organisation"]
        stamp = _timestamps(np.array([now_s]))[0]
        loader.write(
            "organisation",
            ["id", "slug", "name", "kind", "disciplines", "k_threshold", "created_at"],
            n_orgs,
            lambda sl: [
                org_ids[sl].tolist(),
                [o.slug for o in ORGANISATIONS[sl]],
                [o.name for o in ORGANISATIONS[sl]],
                [o.kind for o in ORGANISATIONS[sl]],
                [",".join(d for d, _ in o.programme) for o in ORGANISATIONS[sl]],
                [None] * len(ORGANISATIONS[sl]),
                [stamp] * len(ORGANISATIONS[sl]),
            ],
        )
        venue_ids = np.arange(len(cat.venue_name)) + ids["venue"]
        loader.write(
            "venue",
            ["id", "organisation_id", "name", "capacity"],
            len(venue_ids),
            lambda sl: [
                venue_ids[sl].tolist(),
                org_ids[cat.venue_org[sl]].tolist(),
                cat.venue_name[sl],
                cat.venue_capacity[sl].tolist(),
            ],
        )
        show_ids = np.arange(len(cat.show_start)) + ids["show"]
        disc = np.array(DISCIPLINES, dtype=object)
        loader.write(
            "show",
            [
                "id",
                "organisation_id",
                "venue_id",
                "natural_key",
                "title",
                "company",
                "discipline",
                "starts_at",
                "duration_minutes",
            ],
            len(show_ids),
            lambda sl: [
                show_ids[sl].tolist(),
                org_ids[cat.show_org[sl]].tolist(),
                venue_ids[cat.show_venue[sl]].tolist(),
                cat.show_key[sl],
                cat.show_title[sl],
                cat.show_company[sl],
                disc[cat.show_disc[sl]].tolist(),
                _timestamps(cat.show_start[sl]),
                cat.show_duration[sl].tolist(),
            ],
        )
        echo(f"{n_orgs} organisations, {len(venue_ids)} halls, {len(show_ids):,} shows.")

        seen_name_keys: set = set()
        for chunk, lo in enumerate(range(0, spectators, CHUNK_SPECTATORS)):
            n = min(CHUNK_SPECTATORS, spectators - lo)
            data = generate_chunk(cat, seed, chunk, n, lo + 1)
            _write_chunk(loader, data, cat, ids, org_ids, show_ids, secret, seen_name_keys, stamp)
            totals["spectators"] += n
            totals["transactions"] += len(data["tx"]["spec"])
            totals["contacts"] += len(data["contacts"]["spec"])
            totals["consents"] += len(data["consents"]["contact"])
            echo(
                f"  {totals['spectators']:,}/{spectators:,} spectators, {totals['transactions']:,} transactions, "
                f"{totals['contacts']:,} contacts ({time.perf_counter() - began:.1f} s)"
            )
        if restores:
            echo("Building indexes and checking constraints...")
            loader.restore_constraints(restores)
        loader.reset_sequences(tables)
        # fresh statistics, so that the first queries on the district are planned well
        sql.refresh_statistics(connection, tables)
        connection.execute(
            insert(AuditEvent).values(
                at=now,
                actor="cli",
                action="demo.build",
                object_type="district",
                details={"seed": seed, "spectators": spectators, "transactions": totals["transactions"]},
            )
        )
        sql.end_bulk_load(connection)
    return totals


def _write_chunk(
    loader: _Loader,
    data: dict,
    cat: Catalogue,
    ids: dict,
    org_ids: np.ndarray,
    show_ids: np.ndarray,
    secret: str,
    seen_name_keys: set,
    stamp: str,
) -> None:
    people, tx, contacts, consents = data["people"], data["tx"], data["contacts"], data["consents"]
    n = len(people["first"])
    keys = _keys(people, secret, seen_name_keys, data["first_number"])
    spec_ids = np.arange(n) + ids["spectator"]
    cell_keys = [cell_key(secret, key) for key in keys]  # the noisy figures' keys (core.privacy)
    loader.write(
        "spectator",
        ["id", "key", "fsa", "created_at", "opted_out_at", "cell_key"],
        n,
        lambda sl: [
            spec_ids[sl].tolist(),
            keys[sl],
            people["fsa"][sl],
            [stamp] * len(keys[sl]),
            _timestamps(data["opted_out_at"][sl]),
            cell_keys[sl],
        ],
    )

    n_tx = len(tx["spec"])
    tx_ids = np.arange(n_tx) + ids["transaction"]
    order_numbers = tx["order"] + ids["transaction"]
    channels = CHANNELS
    loader.write(
        "transaction",
        ["id", *SALE_COLUMNS],
        n_tx,
        lambda sl: [
            tx_ids[sl].tolist(),
            org_ids[tx["org"][sl]].tolist(),
            spec_ids[tx["spec"][sl]].tolist(),
            show_ids[tx["show"][sl]].tolist(),
            _timestamps(tx["purchased"][sl]),
            tx["amount"][sl].tolist(),
            tx["tickets"][sl].tolist(),
            CIRCUMSTANCE[tx["circumstance"][sl]].tolist(),
            np.where(tx["subscription"][sl], "subscription", "single").tolist(),
            channels[tx["channel"][sl]].tolist(),
            tx["promo"][sl].tolist(),
            _numbered("C", order_numbers[sl], 10),
            _numbered("demo-", tx_ids[sl], 10),
        ],
    )

    n_contacts = len(contacts["spec"])
    contact_ids = np.arange(n_contacts) + ids["contact"]
    who = contacts["spec"]

    def contact_columns(sl):
        people_idx = who[sl].tolist()
        return [
            contact_ids[sl].tolist(),
            org_ids[contacts["org"][sl]].tolist(),
            spec_ids[who[sl]].tolist(),
            [people["last"][i] for i in people_idx],
            [people["first"][i] for i in people_idx],
            [people["address"][i] for i in people_idx],
            [people["postal"][i] for i in people_idx],
            [people["email"][i] for i in people_idx],
            [people["phone"][i] for i in people_idx],
            [people["language"][i] for i in people_idx],
            _numbered("", contact_ids[sl], 8),
            [stamp] * len(people_idx),
        ]

    loader.write(
        "contact",
        [
            "id",
            "organisation_id",
            "spectator_id",
            "last_name",
            "first_name",
            "address",
            "postal_code",
            "email",
            "phone",
            "language",
            "customer_id",
            "updated_at",
        ],
        n_contacts,
        contact_columns,
    )

    n_consents = len(consents["contact"])
    consent_ids = np.arange(n_consents) + ids["consent"]
    bases = np.array(["express", "implied_purchase", "implied_subscription"], dtype=object)
    loader.write(
        "consent",
        ["id", "contact_id", "channel", "basis", "source", "given_at", "expires_at", "withdrawn_at"],
        n_consents,
        lambda sl: [
            consent_ids[sl].tolist(),
            contact_ids[consents["contact"][sl]].tolist(),
            ["email"] * len(consent_ids[sl]),
            bases[consents["basis"][sl]].tolist(),
            ["demo"] * len(consent_ids[sl]),
            _timestamps(consents["given"][sl]),
            _timestamps(consents["expires"][sl]),
            _timestamps(consents["withdrawn"][sl]),
        ],
    )
    for table, count in (("spectator", n), ("transaction", n_tx), ("contact", n_contacts), ("consent", n_consents)):
        ids[table] += count
