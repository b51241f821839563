"""The district's clock: times are stored in UTC and shown, and typed, in America/Montreal."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

DISTRICT_TIME_ZONE = ZoneInfo("America/Montreal")


def to_local(value: dt.datetime) -> dt.datetime:
    """A stored time (naive UTC, or aware) as a naive wall-clock time in Montreal."""
    aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return aware.astimezone(DISTRICT_TIME_ZONE).replace(tzinfo=None)


def to_utc(value: dt.datetime) -> dt.datetime:
    """A wall-clock time typed in Montreal (naive) as the naive UTC time that is stored. In the
    hour repeated when daylight saving time ends, the first (daylight) occurrence is taken."""
    aware = value.replace(tzinfo=DISTRICT_TIME_ZONE) if value.tzinfo is None else value
    return aware.astimezone(dt.timezone.utc).replace(tzinfo=None)


def local_time(value: dt.datetime | None, seconds: bool = False) -> str:
    """``2026-12-05 14:30`` in Montreal (with ``:ss`` when ``seconds``); "—" for no time."""
    if value is None:
        return "—"
    return to_local(value).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def local_day(value: dt.date | dt.datetime | None) -> str:
    """The day of a stored time in Montreal (a plain date is shown as it is); "—" for none."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        value = to_local(value)
    return value.strftime("%Y-%m-%d")


def local_iso(value: str | None, day: bool = False) -> str:
    """An ISO time string of a stored report (UTC) shown as ``local_time``, or as ``local_day`` when
    ``day``; "—" for none."""
    if not value:
        return "—"
    moment = dt.datetime.fromisoformat(value)
    return local_day(moment) if day else local_time(moment)


def init_app(app) -> None:
    app.jinja_env.filters.update(local_time=local_time, local_day=local_day, local_iso=local_iso)
