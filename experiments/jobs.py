"""Scheduled jobs of the experiments (DESIGN.md §11): outcomes and reports, power baselines, dates, contact-list purge."""

from __future__ import annotations

from pathlib import Path

from flask_babel import lazy_gettext as _l

from core.scheduler import JobContext, JobSpec, daily, every
from experiments import outcomes, power_report, reports, services


def count_power_windows(ctx: JobContext) -> dict:
    """Bring the kept baselines of the power pages of every campaign but the cancelled ones up to date."""
    return power_report.refresh_windows(ctx.session, commit=ctx.session.commit)


def refresh_running(ctx: JobContext) -> dict:
    """Nightly: match every running experiment's outcomes in full and store a fresh report (and the
    day's interim look while the window is open)."""
    done = []
    for experiment in services.running_experiments(ctx.session):
        summary = outcomes.match_outcomes(ctx.session, experiment, now=ctx.now, full=True)
        reports.refresh_report(ctx.session, experiment, now=ctx.now)
        done.append({"experiment": experiment.id, "converted": summary.converted, "seconds": summary.seconds})
    return {"refreshed": len(done), "experiments": done}


def refresh_after_imports(ctx: JobContext) -> dict:
    """Every minute: experiments with transactions newer than their last matching (an import came
    in) are matched incrementally and their report refreshed. Pages show the last report until then
    (they never match outcomes themselves), so this runs as often as the kept funnels are counted."""
    done = []
    for experiment in services.running_experiments(ctx.session):
        if not outcomes.is_stale(ctx.session, experiment):
            continue
        summary = outcomes.match_outcomes(ctx.session, experiment, now=ctx.now)
        reports.refresh_report(ctx.session, experiment, now=ctx.now)
        done.append({"experiment": experiment.id, "mode": summary.mode, "seconds": summary.seconds})
    return {"refreshed": len(done), "experiments": done}


def move_through_dates(ctx: JobContext) -> dict:
    """End of the window: launched → measuring; ``EXPERIMENT_CLOSE_AFTER_DAYS`` later (default 14,
    for late exports): a final matching and report, then closed."""
    close_after = int(ctx.app.config.get("EXPERIMENT_CLOSE_AFTER_DAYS", services.DEFAULT_CLOSE_AFTER_DAYS))
    moved = {}
    for experiment in services.running_experiments(ctx.session):
        status = services.advance(ctx.session, experiment, now=ctx.now, close_after_days=close_after)
        if status:
            moved[str(experiment.campaign_id)] = status
    return {"moved": moved}


def purge_contact_lists(ctx: JobContext) -> dict:
    """Close the contact lists past their retention period and delete any stored copy."""
    folder = Path(ctx.app.instance_path) / "contact-lists"
    return {"purged": services.purge_contact_lists(ctx.session, ctx.now, folder if folder.exists() else None)}


JOBS = [
    JobSpec(
        "experiments.refresh",
        refresh_running,
        daily(hour=4, minute=15),
        _l("Match outcomes and refresh the reports of running experiments"),
    ),
    JobSpec(
        "experiments.after_imports",
        refresh_after_imports,
        every(minutes=1),
        _l("Match the outcomes of new imports to running experiments"),
    ),
    JobSpec(
        "experiments.power",
        count_power_windows,
        every(minutes=1),
        _l("Count the power pages' baselines again after the data changed"),
    ),
    JobSpec(
        "experiments.dates", move_through_dates, every(hours=1), _l("Move launched campaigns to measuring, then closed")
    ),
    JobSpec(
        "experiments.purge_lists",
        purge_contact_lists,
        daily(hour=2, minute=30),
        _l("Purge contact lists past their retention period"),
        confirm=_l(
            "This closes for good every contact list past its retention period (%(days)s days after its "
            "first download, or after the launch when it was never downloaded) and deletes any stored "
            "copy: the organisations can no longer download those lists."
        ),
    ),
]
