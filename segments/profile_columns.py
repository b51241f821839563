"""The profiles kept as columns: one array per profile column a rule reads, in the database, written by
every profile refresh in its transaction and read (through a per-process copy checked against its
version) by the previews and member lists of rules (``segments.column_scan``).

Only a refresh writes the profiles; a statement or a flush that writes them otherwise (a repair, a
test) drops the kept columns in its own transaction (listeners on every session, below), so that
rules read the profile table until the next refresh keeps the columns again."""

from __future__ import annotations

import datetime as dt
import io
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, cast

import numpy as np
from sqlalchemy import Select, delete, event, insert, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import SelectBase
from sqlalchemy.types import NullType

from segments.models import ProfileColumn, SpectatorProfile

P = SpectatorProfile.__table__
PC = ProfileColumn.__table__
PROFILES_TABLE = SpectatorProfile.__tablename__

# How each profile column is kept: "int64" and "int32" (never NULL), "float" (NULL as NaN), "day"
# (days since 1970-01-01, NULL as NULL_DAY), "flag" (1 or 0, NULL as NULL_CODE) and "text" (codes
# into the column's vocabulary, NULL as NULL_CODE). The spectator id comes first: rows are in its order.
KINDS: dict[str, str] = {
    "spectator_id": "int32",
    "organisation_mask": "int64",
    "organisation_mask_365": "int64",
    "organisation_mask_730": "int64",
    "spent_cents": "int64",
    "spent_cents_365": "int64",
    "spent_cents_730": "int64",
    "promo_share": "float",
    "shows": "int32",
    "orders": "int32",
    "tickets": "int32",
    "shows_548": "int32",
    "discipline_mask": "int32",
    "discipline_mask_365": "int32",
    "discipline_mask_730": "int32",
    "cell_key": "int32",
    "first_purchase_on": "day",
    "last_purchase_on": "day",
    "subscriber": "flag",
    "newsletter": "flag",
    "contactable": "flag",
    "lifecycle": "text",
    "fsa": "text",
    "main_channel": "text",
    "lead_days": "float",
}
NAMES = tuple(KINDS)
NULL_CODE = -1
NULL_DAY = int(np.iinfo(np.int32).min)
EPOCH_DAY = dt.date(1970, 1, 1)
READ_CHUNK = 100_000  # profile rows per fetch of a whole build
IDS_CHUNK = 2_000  # spectator ids per statement of an update


@dataclass(frozen=True)
class KeptColumn:
    """One kept column: ``kind`` (see KINDS), its ``values`` with rows in spectator order and, for
    a text column, the ``vocabulary`` its codes index."""

    kind: str
    values: np.ndarray
    vocabulary: tuple[str, ...] = ()

    def valid(self) -> np.ndarray:
        """Which rows hold a value (SQL's IS NOT NULL)."""
        if self.kind == "float":
            return ~np.isnan(self.values)
        if self.kind == "day":
            return self.values != NULL_DAY
        if self.kind in ("flag", "text"):
            return self.values != NULL_CODE
        return np.ones(len(self.values), dtype=bool)


def day_number(day: dt.date) -> int:
    """A date as days since 1970-01-01, the unit of the kept date columns."""
    return (day - EPOCH_DAY).days


# --- from profile rows to columns -----------------------------------------------------------------


def _to_values(kind: str, cells: Sequence, vocabulary: dict[str | None, int]) -> np.ndarray:
    """One column's cells (as the driver gives them) as its kept values."""
    if kind in ("int64", "int32"):
        return np.array(cells, dtype=kind)
    if kind == "float":
        return np.array(cells, dtype=np.float64)  # None → NaN
    if kind == "day":
        days = np.array(cells, dtype="datetime64[D]")  # None → NaT
        numbers = days.astype(np.int64)
        numbers[np.isnat(days)] = NULL_DAY
        return numbers.astype(np.int32)
    if kind == "flag":
        flags = np.array(cells, dtype=np.float64)  # True/False/None → 1/0/NaN
        return np.where(np.isnan(flags), NULL_CODE, flags).astype(np.int8)
    return np.array([vocabulary.setdefault(cell, len(vocabulary) - 1) for cell in cells], dtype=np.int32)


def _read_rows(session: Session, where=None) -> dict[str, KeptColumn]:
    """The columns of the profile rows ``where`` selects (all of them without it), in spectator order."""
    # The driver's own values (a date as SQLite's text, a flag as its integer): numpy converts them
    # in C, where the columns' types would build a Python object per cell (a whole build of the demo
    # district's million profiles on SQLite: 11.3 s against 13.0 s).
    query = select(*(type_coerce(P.c[name], NullType()).label(name) for name in NAMES)).order_by(P.c.spectator_id)
    if where is not None:
        query = query.where(where)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in NAMES}
    vocabularies: dict[str, dict[str | None, int]] = {name: {None: NULL_CODE} for name in NAMES}
    for rows in session.execute(query.execution_options(yield_per=READ_CHUNK)).partitions():
        for name, cells in zip(NAMES, zip(*rows)):
            parts[name].append(_to_values(KINDS[name], cells, vocabularies[name]))
    columns = {}
    for name in NAMES:
        kind = KINDS[name]
        values = np.concatenate(parts[name]) if parts[name] else np.zeros(0, dtype=_dtype(kind))
        words = tuple(word for word in vocabularies[name] if word is not None) if kind == "text" else ()
        columns[name] = KeptColumn(kind, values, words)
    return columns


def _dtype(kind: str) -> np.dtype:
    return np.dtype({"float": np.float64, "day": np.int32, "flag": np.int8, "text": np.int32}.get(kind, kind))


def _recode(column: KeptColumn, vocabulary: tuple[str, ...]) -> np.ndarray:
    """A text column's codes in another vocabulary that holds every word of its own."""
    position = {word: i for i, word in enumerate(vocabulary)}
    mapping = np.array([position[word] for word in column.vocabulary] + [NULL_CODE], dtype=np.int32)
    return mapping[column.values]  # NULL_CODE (-1) indexes the mapping's last entry, NULL_CODE


def _merged(
    kept: dict[str, KeptColumn], fresh: list[dict[str, KeptColumn]], changed: np.ndarray
) -> dict[str, KeptColumn]:
    """The kept columns with the rows of the ``changed`` spectators replaced by the ``fresh`` ones
    (read in parts; a changed spectator without a fresh row has lost their profile), in spectator order."""
    keep = ~np.isin(kept["spectator_id"].values, changed)
    ids = np.concatenate([kept["spectator_id"].values[keep], *(part["spectator_id"].values for part in fresh)])
    order = np.argsort(ids, kind="stable")
    merged = {}
    for name in NAMES:
        old = kept[name]
        vocabulary = old.vocabulary
        if old.kind == "text":
            known = set(vocabulary)
            for part in fresh:
                vocabulary += tuple(word for word in part[name].vocabulary if word not in known)
                known.update(part[name].vocabulary)
        values = [
            old.values[keep],
            *(_recode(part[name], vocabulary) if old.kind == "text" else part[name].values for part in fresh),
        ]
        merged[name] = KeptColumn(old.kind, np.concatenate(values)[order], vocabulary)
    return merged


# --- storage ----------------------------------------------------------------------------------------


def _dumped(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def _loaded(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _write(session: Session, columns: dict[str, KeptColumn], as_of: dt.date) -> None:
    """Replace the kept columns by ``columns`` under a new version, in one statement."""
    version = uuid.uuid4().hex
    rows = len(columns["spectator_id"].values)
    forget(session)
    session.execute(
        insert(ProfileColumn),
        [
            {
                "name": name,
                "version": version,
                "as_of": as_of,
                "rows": rows,
                "vocabulary": list(column.vocabulary) if column.kind == "text" else None,
                "data": _dumped(column.values),
            }
            for name, column in columns.items()
        ],
    )
    _remember(version, columns)


def forget(session: Session) -> None:
    """Drop the kept columns (rules read the profile table until the next refresh keeps them)."""
    # on the session's connection: also called while the session flushes (below), where an ORM
    # statement would flush again
    session.connection().execute(delete(ProfileColumn))


# --- writes of the profiles that are not a refresh ------------------------------------------------

_REFRESHING = "segments.profile_columns.refreshing"


@contextmanager
def refreshing(session: Session) -> Iterator[None]:
    """Mark the profile writes inside as a refresh's, which keeps the columns itself."""
    session.info[_REFRESHING] = session.info.get(_REFRESHING, 0) + 1
    try:
        yield
    finally:
        session.info[_REFRESHING] -= 1


def _writes_profiles(statement) -> bool:
    table = getattr(statement, "table", None)  # an INSERT, UPDATE or DELETE's target (ORM: a copy of P)
    return getattr(table, "name", None) == PROFILES_TABLE


def _on_statement(state) -> None:
    if not state.is_select and not state.session.info.get(_REFRESHING) and _writes_profiles(state.statement):
        forget(state.session)


def _on_flush(session: Session, *_args) -> None:
    if session.info.get(_REFRESHING):
        return
    if any(isinstance(row, SpectatorProfile) for row in (*session.new, *session.dirty, *session.deleted)):
        forget(session)


# Every session of the process, whichever created it: a direct write of the profiles must not leave
# the kept columns describing rows that no longer are.
if not event.contains(Session, "do_orm_execute", _on_statement):
    event.listen(Session, "do_orm_execute", _on_statement)
    event.listen(Session, "before_flush", _on_flush)


def _ids_of(session: Session, spectator_ids) -> np.ndarray:
    if isinstance(spectator_ids, SelectBase):
        spectator_ids = session.execute(cast(Select, spectator_ids)).scalars()
    return np.unique(np.fromiter((int(i) for i in spectator_ids), dtype=np.int64))


def keep_after_refresh(session: Session, spectator_ids, as_of: dt.date) -> None:
    """Bring the kept columns up to the profiles a refresh has just written (in its transaction):
    all of them after a full refresh (``spectator_ids`` None) or when none are kept for ``as_of``;
    otherwise only the rows of ``spectator_ids`` (a list or a SELECT of ids) are read again."""
    kept = None if spectator_ids is None else kept_columns(session, NAMES, as_of)
    if kept is None:
        _write(session, _read_rows(session), as_of)
        return
    changed = _ids_of(session, spectator_ids)
    if not len(changed):  # nothing refreshed: the kept columns stand
        return
    # the refreshed rows, read by chunks of ids as in order, and merged into the kept ones at once
    fresh_parts = [
        _read_rows(session, P.c.spectator_id.in_(changed[start : start + IDS_CHUNK].tolist()))
        for start in range(0, len(changed), IDS_CHUNK)
    ]
    _write(session, _merged(kept, fresh_parts, changed), as_of)


# --- reading ----------------------------------------------------------------------------------------

# This process's copy of the last version it read: its version and {name: KeptColumn}.
_copy: dict = {"version": None, "columns": {}}
_copy_lock = threading.Lock()


def _remember(version: str, columns: dict[str, KeptColumn]) -> None:
    """Keep ``columns`` (just written under ``version``) as this process's copy: a rollback leaves
    the database on another version, which the next read finds and reads instead."""
    with _copy_lock:
        _copy.update(version=version, columns=dict(columns))


def kept_columns(session: Session, names: Iterable[str], as_of: dt.date) -> dict[str, KeptColumn] | None:
    """The kept columns ``names`` of the profiles of ``as_of``, or None when they are not kept (no
    refresh has kept them yet, or they describe another date).

    The process keeps a copy of the last version it read: each call reads the kept versions (a
    few bytes) and only the arrays it lacks.
    """
    wanted = list(dict.fromkeys(["spectator_id", *names]))
    stamps = {
        name: (version, rows)
        for name, version, rows in session.execute(
            select(PC.c.name, PC.c.version, PC.c.rows).where(PC.c.as_of == as_of)
        ).all()
    }
    versions = {stamps.get(name) for name in wanted}
    if len(versions) != 1 or None in versions:
        return None
    version, length = stamps["spectator_id"]
    with _copy_lock:
        have = dict(_copy["columns"]) if _copy["version"] == version else {}
    missing = [name for name in wanted if name not in have]
    if missing:
        rows = session.execute(
            select(PC.c.name, PC.c.version, PC.c.vocabulary, PC.c.data).where(PC.c.name.in_(missing))
        ).all()
        if len(rows) != len(missing):  # dropped since the versions were read: the table answers
            return None
        for name, row_version, vocabulary, data in rows:
            values = _loaded(data)
            if row_version != version or len(values) != length:  # rewritten since: the table answers
                return None
            have[name] = KeptColumn(KINDS[name], values, tuple(vocabulary or ()))
        with _copy_lock:
            if _copy["version"] != version:
                _copy.update(version=version, columns={})
            _copy["columns"].update({name: have[name] for name in missing})
    return {name: have[name] for name in wanted}
