"""Campaigns: promotions, the campaign workflow, venue approvals and consent-based eligibility."""


def init_app(app) -> None:
    """Register this package's blueprint, its dashboard panel and its administration link."""
    from flask_babel import lazy_gettext as _l

    from campaigns import views
    from core.views import dashboard_panels

    app.register_blueprint(views.bp)
    views.install_template_globals(app)
    if views.dashboard_panel not in dashboard_panels:
        dashboard_panels.append(views.dashboard_panel)
    links = app.jinja_env.globals.setdefault("admin_links", [])
    if not any(endpoint == "campaigns.erasure" for endpoint, _label in links):
        links.append(("campaigns.erasure", _l("Erasure requests")))
