"""The insights' raw facts kept while the data stay the same: in memory and as files of the instance
folder that every web worker and the scheduler share, keyed by the data's fingerprint."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from core.models import (
    ImportBatch,
    Organisation,
)
from segments.insight_tables import SP, S, Scope, T

# --- the whole page, with its facts cached while the data stay the same ---------------------------------

_memory: dict[str, tuple[float, dict]] = {}
_memory_lock = threading.Lock()
MEMORY_ENTRIES = 64
FACTS_VERSION = 1  # bump when the facts' shape changes, so that old cache files are ignored


def data_fingerprint(session: Session) -> list:
    """Changes whenever the pooled data the insights read change; every part is an index lookup.

    New imports move the largest batch, transaction and spectator ids; a rebuilt district (same
    ids, other people) moves the smallest and largest spectator keys.
    """
    return [
        session.scalar(select(func.count(Organisation.id))),
        session.scalar(select(func.max(ImportBatch.id))),
        session.scalar(select(func.max(T.c.id))),
        session.scalar(select(func.max(S.c.id))),
        session.scalar(select(func.max(SP.c.id))),
        session.scalar(select(func.min(SP.c.key))),
        session.scalar(select(func.max(SP.c.key))),
    ]


def cache_key(session: Session, scope: Scope, as_of: dt.date) -> str:
    parts = [FACTS_VERSION, str(session.get_bind().engine.url), scope.kind, scope.key, scope.organisation_id,
             as_of.isoformat(), data_fingerprint(session)]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def read_cached(key: str, cache_dir: Path | None, ttl: float) -> dict | None:
    now = time.time()
    with _memory_lock:
        hit = _memory.get(key)
        if hit and hit[0] > now:
            return hit[1]
    if cache_dir is None:
        return None
    path = cache_dir / f"{key}.json"
    try:
        if path.stat().st_mtime + ttl < now:
            return None
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    with _memory_lock:
        _memory[key] = (now + ttl, facts)
    return facts


def write_cached(key: str, facts: dict, cache_dir: Path | None, ttl: float) -> None:
    now = time.time()
    with _memory_lock:
        if len(_memory) >= MEMORY_ENTRIES:
            for stale in sorted(_memory, key=lambda k_: _memory[k_][0])[: len(_memory) - MEMORY_ENTRIES + 1]:
                del _memory[stale]
        _memory[key] = (now + ttl, facts)
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(facts))
        tmp.replace(cache_dir / f"{key}.json")  # atomic: a reader never sees half a file
        for old in cache_dir.glob("*.json"):  # files of past days and data go after a while
            if old.stat().st_mtime + max(ttl, 86400) < now:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # the cache is an optimisation only


def insights_cache(app) -> tuple[Path, float]:
    """Where the raw facts are kept as files (shared by every web worker and the scheduler) and for
    how long: ``INSIGHTS_CACHE_SECONDS``, a day by default, none in tests unless configured."""
    seconds = float(app.config.get("INSIGHTS_CACHE_SECONDS", 0 if app.testing else 86400))
    return Path(app.instance_path) / "cache" / "insights", seconds


