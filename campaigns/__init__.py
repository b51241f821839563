"""Campaigns: promotions, the campaign workflow, venue approvals and consent-based eligibility."""


def init_app(app) -> None:
    """Register this package's blueprint, navigation entry, dashboard panel and administration link."""
    from flask_babel import lazy_gettext as _l

    from campaigns import views
    from core.registry import NavEntry, registry

    app.register_blueprint(views.bp)
    views.install_template_globals(app)
    pilot = registry(app)
    pilot.add_navigation(NavEntry("campaigns.index", _l("Campaigns"), order=20,
                                  roles=("staff", "admin", "venue"), current=("campaigns.",)))
    pilot.add_dashboard_panel(views.dashboard_panel)
    pilot.add_admin_link("campaigns.erasure", _l("Erasure requests"))
    from campaigns.models import Campaign, Promotion

    # the audit log names campaigns and promotions (core.audit_words)
    pilot.add_audit_object("campaign", Campaign, Campaign.name)
    pilot.add_audit_object("promotion", Promotion, Promotion.name_fr)
