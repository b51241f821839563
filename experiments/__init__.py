"""Experiments: launch, assignment, contact lists, outcomes, statistics and lift reports."""


def init_app(app) -> None:
    """Register this package's blueprint, commands, navigation entry, dashboard panel and template helpers."""
    from flask_babel import lazy_gettext as _l

    from core.registry import NavEntry, registry
    from experiments import views
    from experiments.analyze import analyze_command

    app.register_blueprint(views.bp)
    app.cli.add_command(analyze_command)
    views.install_template_globals(app)
    pilot = registry(app)
    pilot.add_navigation(NavEntry("experiments.index", _l("Reports"), order=30, current=("experiments.",)))
    pilot.add_dashboard_panel(views.dashboard_panel)
    from experiments.services import unsubscribes_answering_campaigns

    pilot.add_campaign_answers(unsubscribes_answering_campaigns)


def build_demo(db, rng_seed: int = 2017, echo=print) -> dict | None:
    """Add a launched, measured campaign with a simulated effect to the demo district (``pilot demo``)."""
    from experiments.demo import build_demo as build

    return build(db, rng_seed=rng_seed, echo=echo)


def finish_demo(db, echo=print) -> None:
    """Demo step after every package's ``build_demo``: keep the power pages' default baselines, as
    the ``experiments.power`` job would within its first minute (with fresh planner statistics on
    the snapshots just written), so that no first reading of a power page counts them."""
    from experiments.power_report import refresh_windows

    with db.session() as session:
        done = refresh_windows(session, commit=session.commit)
    echo(f"Power baselines counted: {done['counted']} ({done['seconds']:.1f} s).")
