"""Campaigns: promotions, the campaign workflow, venue approvals and consent-based eligibility."""


def init_app(app) -> None:
    """Register this package's blueprint, commands and jobs."""
    from campaigns import views

    app.register_blueprint(views.bp)
