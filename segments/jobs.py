"""Scheduled jobs of the segments package: the nightly refresh of spectator profiles, and the
pooled pages' facts published after imports, refreshes and at the new day."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from core.scheduler import JobContext, JobSpec, daily, every
from segments.insight_publish import publish
from segments.profiles import refresh_changed


def refresh_profiles_nightly(ctx: JobContext) -> dict:
    """Refresh the spectator profiles for the new day (life-cycle stages move with the date)."""
    mode, rows = refresh_changed(ctx.session)
    return {"mode": mode, "rows": rows}


def keep_insights_ready(ctx: JobContext) -> dict:
    """Publish the insight and comparison facts that imports, refreshes or the new day made stale
    (``segments.insight_publish``), each committed as soon as it is ready, so that no visitor waits
    for a district-wide aggregate; a cheap check when nothing changed."""
    return publish(ctx.session, commit=ctx.session.commit)


JOBS = [
    JobSpec(
        "profiles.refresh",
        refresh_profiles_nightly,
        daily(hour=3, minute=30),
        _l("Refresh the spectator profiles for the new day"),
    ),
    JobSpec(
        "insights.warm",
        keep_insights_ready,
        every(minutes=5),
        _l("Keep the insights' pooled figures ready after imports and at the new day"),
    ),
]
