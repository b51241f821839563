"""Experiments: launch, assignment, contact lists, outcomes, statistics and lift reports."""


def init_app(app) -> None:
    """Register this package's blueprint, commands, dashboard panel and template helpers."""
    from core.views import dashboard_panels
    from experiments import views
    from experiments.analyze import analyze_command

    app.register_blueprint(views.bp)
    app.cli.add_command(analyze_command)
    views.install_template_globals(app)
    if views.dashboard_panel not in dashboard_panels:
        dashboard_panels.append(views.dashboard_panel)


def build_demo(db, rng_seed: int = 2017, echo=print) -> dict | None:
    """Add a launched, measured campaign with a simulated effect to the demo district (``pilot demo``)."""
    from experiments.demo import build_demo as build

    return build(db, rng_seed=rng_seed, echo=echo)
