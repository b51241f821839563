"""Figures kept ready for pages: a JSON value per name in the ``setting`` table, written by jobs or a first reader."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import Setting


def read_kept(session: Session, name: str) -> dict | None:
    """The value kept under ``name``, or None when none was kept (or it cannot be read)."""
    value = session.scalar(select(Setting.value).where(Setting.name == name))
    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        return None


def write_kept(session: Session, name: str, value: dict) -> None:
    """Keep ``value`` under ``name`` (replacing what was kept). Flushes; the caller commits."""
    setting = session.get(Setting, name)
    if setting is None:
        session.add(Setting(name=name, value=json.dumps(value, separators=(",", ":"))))
    else:
        setting.value = json.dumps(value, separators=(",", ":"))
    session.flush()


def keep_first(session: Session, name: str, value: dict) -> None:
    """Keep ``value`` under ``name`` in a savepoint, for figures a page counts and keeps for the
    next reader: when another request kept one first (two readers counting at once), theirs stays,
    the same figure. Flushes; the caller commits."""
    try:
        with session.begin_nested():
            write_kept(session, name, value)
    except IntegrityError:
        pass
