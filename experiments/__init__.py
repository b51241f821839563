"""Experiments: launch, assignment, contact lists, outcomes, statistics and lift reports."""


def init_app(app) -> None:
    """Register this package's blueprint, commands and jobs."""
    from experiments import views

    app.register_blueprint(views.bp)
