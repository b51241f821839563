"""Exclusive locks between processes on one database: the scheduler's "one per database", and jobs'.

PostgreSQL holds a session-level advisory lock on a dedicated connection; SQLite an ``flock`` on a
file beside the database (:func:`core.sql.lock_mechanism` says which).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import zlib
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from core.db import Database, make_engine
from core.models import utcnow
from core.sql import lock_mechanism

log = logging.getLogger(__name__)
# The first key of every advisory lock the application takes ("QPLT"), the second names the lock.
ADVISORY_CLASS = 0x51504C54


def process_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DatabaseLock:
    """An exclusive, non-blocking lock named ``name`` on one database, held until :meth:`release`.

    PostgreSQL: a session-level advisory lock on a dedicated connection (outside the application's
    pool), freed by the server when that connection ends, however the process ends. SQLite: an
    exclusive ``flock`` on ``<database>.<name>.lock`` next to the database file, freed by the
    system when the process ends; the file holds who has it.
    """

    def __init__(self, db: Database, name: str, instance_path: str | None = None):
        self.db, self.name = db, name
        self._connection: Connection | None = None
        self._engine: Engine | None = None
        self._fd: int | None = None
        self._guard = threading.Lock()
        self.mechanism = lock_mechanism(db.engine)
        if self.mechanism == "file":
            database = db.engine.url.database
            if database and database != ":memory:":
                base = Path(database).resolve()
            else:
                base = Path(instance_path or ".") / "memory.db"
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            self.path = base.with_name(f"{base.name}.{safe}.lock")
        else:
            self.key = (ADVISORY_CLASS, zlib.crc32(name.encode()) & 0x7FFFFFFF)

    # acquiring ----------------------------------------------------------------------------------

    def acquire(self, label: str = "") -> bool:
        """Take the lock if free; False when another process (or connection) holds it."""
        info = {
            "name": self.name,
            "label": label,
            "process": process_label(),
            "since": utcnow().isoformat(timespec="seconds"),
        }
        if self.mechanism == "file":
            return self._acquire_file(info)
        return self._acquire_advisory(info)

    def _acquire_file(self, info: dict) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def _acquire_advisory(self, info: dict) -> bool:
        self._engine = make_engine(self.db.url, poolclass=NullPool)
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            # Shown in pg_stat_activity, so that a refused second process can say who holds it.
            connection.execute(
                text("SELECT set_config('application_name', :v, false)"),
                {"v": f"pilot {info['label'] or self.name} {info['process']} since {info['since']}"[:63]},
            )
            got = connection.scalar(text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": self.key[0], "b": self.key[1]})
        except BaseException:
            connection.close()
            self._engine.dispose()
            raise
        if not got:
            connection.close()
            self._engine.dispose()
            self._engine = None
            return False
        self._connection = connection
        return True

    # while held ---------------------------------------------------------------------------------

    def alive(self) -> bool:
        """Still held? (A PostgreSQL lock dies with its connection: a server restart, a network cut.)"""
        if self.mechanism == "file":
            return self._fd is not None
        if self._connection is None:
            return False
        with self._guard:
            try:
                return bool(
                    self._connection.scalar(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                            "AND classid::bigint = :a AND objid::bigint = :b AND objsubid = 2 AND granted"
                        ),
                        {"a": self.key[0], "b": self.key[1]},
                    )
                )
            except Exception:
                log.exception("the lock connection for %s failed", self.name)
                return False

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        if self._connection is not None:
            with self._guard:
                try:
                    self._connection.execute(
                        text("SELECT pg_advisory_unlock(:a, :b)"), {"a": self.key[0], "b": self.key[1]}
                    )
                except Exception:
                    pass  # closing the connection frees it anyway
                finally:
                    self._connection.close()
                    self._connection = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # from the outside ---------------------------------------------------------------------------

    def holder(self) -> str | None:
        """Who holds the lock (a short description), or None when it is free. Takes nothing."""
        if self.mechanism == "file":
            # Read what the holder wrote rather than probe with flock: a probe could make a
            # scheduler starting at that very moment believe another one runs.
            try:
                info = json.loads(self.path.read_text() or "null")
            except (OSError, ValueError):
                return None
            if not isinstance(info, dict):
                return None  # released: the holder empties the file
            host, _, pid = str(info.get("process", "")).rpartition(":")
            if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                return None  # killed: the system freed its lock, the file still names it
            return f"{info.get('label') or self.name} {info.get('process')} since {info.get('since')} UTC"
        with self.db.engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) AND l.classid::bigint = :a AND l.objid::bigint = :b "
                    "AND l.objsubid = 2 AND l.granted"
                ),
                {"a": self.key[0], "b": self.key[1]},
            ).first()
        if row is None:
            return None
        return f"{row.application_name or 'a connection'} (server pid {row.pid})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(db: Database, name: str, label: str = "", instance_path: str | None = None) -> DatabaseLock | None:
    """Take the lock ``name`` on ``db``; None when someone else holds it."""
    lock = DatabaseLock(db, name, instance_path)
    return lock if lock.acquire(label) else None
