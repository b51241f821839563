"""Segments: spectator profiles, the rule language, segment previews and audience insights."""


def init_app(app) -> None:
    """Register this package's blueprint, commands, navigation entries, after-import and after-refresh hooks."""
    from flask_babel import lazy_gettext as _l

    from core.registry import NavEntry, registry
    from segments import (
        commands,
        comparison_views,  # noqa: F401
        insight_views,  # noqa: F401
        views,
    )
    from segments.insight_publish import mark_after_refresh
    from segments.profiles import add_after_refresh, refresh_after_import

    app.register_blueprint(views.bp)
    commands.init_app(app)
    pilot = registry(app)
    pilot.add_navigation(
        NavEntry(
            "segments.index",
            _l("Segments & insights"),
            order=10,
            roles=("staff", "admin", "venue"),
            current=("segments.",),
        )
    )
    # evaluators granted the insights (by an administrator) read them, never the segment list
    pilot.add_navigation(
        NavEntry(
            "segments.insights",
            _l("Audience insights"),
            order=11,
            roles=("evaluator",),
            current=("segments.insights",),
            shown=lambda user: bool(getattr(user, "insights_granted", False)),
        )
    )
    # the district comparison (segments.comparison_views), for evaluators once granted the insights
    pilot.add_navigation(
        NavEntry(
            "segments.comparison",
            _l("Compare"),
            order=12,
            current=("segments.comparison",),
            shown=lambda user: (
                getattr(user, "role", None) != "evaluator" or bool(getattr(user, "insights_granted", False))
            ),
        )
    )
    pilot.add_after_import(refresh_after_import)
    add_after_refresh(mark_after_refresh)  # every profile refresh marks the pooled pages' facts it moves
    from segments.models import Segment

    pilot.add_audit_object("segment", Segment, Segment.name)  # the audit log names segments (core.audit_words)


def build_demo(db, rng_seed: int = 0, echo=print) -> None:
    """Demo step (called by ``core.demo.build_demo``): compute the spectator profiles for today, so
    that previews and snapshots of the demo district read them."""
    import time

    from core import sql
    from segments.profiles import refresh_profiles

    began = time.perf_counter()
    with db.session() as session:
        rows = refresh_profiles(session)
        session.commit()
    # A bulk load leaves the planner without statistics; the rule compiler's plans need them.
    with db.engine.connect() as connection:
        sql.refresh_statistics(connection)
        connection.commit()
    echo(f"Spectator profiles: {rows:,} rows ({time.perf_counter() - began:.1f} s).")


def finish_demo(db, echo=print) -> None:
    """Last demo step (called by ``core.demo.build_demo`` after every package's ``build_demo``, so that
    the demo experiment's simulated sales count): publish the pooled pages' facts of every scope and
    season, as the insights.warm job would, so that the fresh demo's insight and comparison pages read
    them rather than computing district-wide aggregates in their first request."""
    from segments.insight_publish import publish

    with db.session() as session:
        done = publish(session, commit=session.commit)
    slowest, seconds = done["slowest"]
    echo(
        f"Pooled summaries: {done['published']:,} rows published ({done['seconds']:.1f} s; the slowest "
        f"{slowest}, {seconds:.1f} s)."
    )
