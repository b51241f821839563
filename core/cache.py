"""A small in-process cache of figures that are slow to compute and keyed on what would change them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

from flask import current_app
from sqlalchemy import func, select

T = TypeVar("T")

# Beyond this many entries the expired ones go, then the oldest: a venue user per organisation and
# a few campaigns make a few dozen keys, so this only guards against a leak.
MAX_ENTRIES = 512
_lock = threading.Lock()


def cache_seconds(name: str, default: float) -> float:
    """How long ``name``'s entries live: ``config[name]``, else ``default`` (0, no cache, in tests, where
    databases are emptied between tests and ids come back, so a key could match another test's data)."""
    return float(current_app.config.get(name, 0 if current_app.testing else default))


def remember(namespace: str, key: Hashable, compute: Callable[[], T], seconds: float) -> T:
    """``compute()``, or its value from an earlier call with the same namespace and key made less than
    ``seconds`` ago in this process.

    The key should hold a fingerprint of the data the value is made from (a maximum id, the last
    audit event), so that a change shows at once; the lifetime only bounds how stale a value
    can get through changes the fingerprint misses. Values must not hold ORM objects (they would
    outlive their session). Each application has its own store.
    """
    if seconds <= 0:
        return compute()
    store: dict = current_app.extensions.setdefault("pilot_cache", {})
    full_key = (namespace, key)
    now = time.monotonic()
    hit = store.get(full_key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = compute()  # outside the lock: two requests may both compute, neither waits
    with _lock:
        if len(store) >= MAX_ENTRIES:
            for stale in [k for k, (expires, _v) in store.items() if expires <= now]:
                del store[stale]
            while len(store) >= MAX_ENTRIES:
                del store[next(iter(store))]
        store[full_key] = (now + seconds, value)
    return value


def clear(namespace: str | None = None) -> None:
    """Forget every entry (of one namespace)."""
    store: dict = current_app.extensions.get("pilot_cache", {})
    with _lock:
        for key in [k for k in store if namespace is None or k[0] == namespace]:
            del store[key]


def max_id(session, model) -> int | None:
    """The highest id of a table: one index look-up, and a fingerprint of an append-only table."""
    return session.scalar(select(func.max(model.id)))
