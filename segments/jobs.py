"""Scheduled jobs of the segments package: the nightly refresh of spectator profiles."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from core.scheduler import JobContext, JobSpec, daily
from segments.profiles import refresh_changed


def refresh_profiles_nightly(ctx: JobContext) -> dict:
    """Refresh the spectator profiles for the new day (life-cycle stages move with the date)."""
    mode, rows = refresh_changed(ctx.session)
    return {"mode": mode, "rows": rows}


JOBS = [JobSpec("profiles.refresh", refresh_profiles_nightly, daily(hour=3, minute=30),
                _l("Refresh the spectator profiles for the new day"))]
