"""Experiments: launch, assignment, contact lists, outcomes, statistics and lift reports."""


def init_app(app) -> None:
    """Register this package's blueprint, commands and jobs."""
    from experiments import views
    from experiments.analyze import analyze_command

    app.register_blueprint(views.bp)
    app.cli.add_command(analyze_command)
