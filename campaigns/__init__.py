"""Campaigns: promotions, the campaign workflow, venue approvals and consent-based eligibility."""

# services first: it names the venue answers of campaigns.approvals, which builds on it, so any
# import order (``import campaigns.approvals`` alone too) finds both modules whole.
from campaigns import services as services  # noqa: E402,F401  isort: skip


def init_app(app) -> None:
    """Register this package's blueprint, navigation entry, dashboard panel and administration link."""
    from flask_babel import lazy_gettext as _l

    import campaigns.approval_views  # noqa: F401  (adds the venue's request pages to views.bp)
    from campaigns import followup_views, views  # followup_views adds the staff follow-up pages to views.bp
    from campaigns.approvals import AUDIT_SENTENCES
    from core.audit_words import SENTENCES
    from core.registry import NavEntry, registry
    from core.views import AUDIT_ACTION_LABELS

    app.register_blueprint(views.bp)
    views.install_template_globals(app)
    followup_views.install_template_globals(app)
    AUDIT_ACTION_LABELS.update(
        {"approval.remind": _l("Approval request reminded"), "provider.remind": _l("Data-provider request reminded")}
    )
    SENTENCES.update(AUDIT_SENTENCES)
    pilot = registry(app)
    pilot.add_navigation(
        NavEntry(
            "campaigns.index", _l("Campaigns"), order=20, roles=("staff", "admin", "venue"), current=("campaigns.",)
        )
    )
    pilot.add_dashboard_panel(followup_views.dashboard_panel)
    pilot.add_admin_link("campaigns.erasure", _l("Erasure requests"))
    from campaigns.models import Campaign, Promotion

    # the audit log names campaigns and promotions (core.audit_words)
    pilot.add_audit_object("campaign", Campaign, Campaign.name)
    pilot.add_audit_object("promotion", Promotion, Promotion.name_fr)


def finish_demo(db, echo=print) -> None:
    """Demo step after every package's ``build_demo``: count the campaigns' funnels and each asked
    organisation's life-cycle mix, as the ``campaigns.funnels`` job would within its first minute,
    so that the fresh demo's campaign and approval pages read them rather than count them."""
    from campaigns.funnel_store import refresh_funnels

    with db.session() as session:
        done = refresh_funnels(session, commit=session.commit)
    echo(f"Campaign funnels counted: {done['counted']} ({done['seconds']:.1f} s).")
