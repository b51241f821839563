"""Segments: spectator profiles, the rule language, segment previews and audience insights."""


def init_app(app) -> None:
    """Register this package's blueprint, commands and jobs."""
    from segments import views

    app.register_blueprint(views.bp)
