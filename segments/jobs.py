"""Scheduled jobs of the segments package: the nightly refresh of spectator profiles, and the
insights' pooled facts kept ready for the first visitor."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from core.scheduler import JobContext, JobSpec, daily, every
from segments.insight_cache import insights_cache
from segments.insights import warm_insights
from segments.profiles import refresh_changed


def refresh_profiles_nightly(ctx: JobContext) -> dict:
    """Refresh the spectator profiles for the new day (life-cycle stages move with the date)."""
    mode, rows = refresh_changed(ctx.session)
    return {"mode": mode, "rows": rows}


def keep_insights_ready(ctx: JobContext) -> dict:
    """Compute the insights' raw facts of the district, every discipline and every organisation
    when the data or the day changed since they were kept (a cheap check otherwise: the cache is
    keyed by the data's fingerprint), so that no visitor waits for a district-wide aggregate."""
    cache_dir, seconds = insights_cache(ctx.app)
    if seconds <= 0:  # the cache is switched off (tests): nothing would be kept
        return {"scopes": 0}
    return {"scopes": warm_insights(ctx.session, cache_dir, seconds)}


JOBS = [
    JobSpec("profiles.refresh", refresh_profiles_nightly, daily(hour=3, minute=30),
            _l("Refresh the spectator profiles for the new day")),
    JobSpec("insights.warm", keep_insights_ready, every(minutes=10),
            _l("Keep the insights' pooled figures ready after imports and at the new day")),
]
