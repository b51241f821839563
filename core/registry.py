"""What the feature packages register with core: navigation, admin links, dashboard panels, hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app, request

EVERY_ROLE = ("staff", "admin", "venue", "evaluator")


@dataclass(frozen=True)
class NavEntry:
    """One link of the main navigation.

    :param endpoint: the Flask endpoint the link opens.
    :param label: its (lazy) translated label.
    :param order: position in the bar, lowest first (core's dashboard is 0, its imports 80).
    :param roles: the roles whose pages admit it (tests/test_authorisation_matrix.py).
    :param current: prefixes of endpoints (``"segments."``) under which the link is marked current;
        the endpoint itself when empty. No link but the administration's is current on an
        administration page (a path under ``/admin``, wherever its blueprint lives).
    :param administration: the link of the administration pages.
    :param shown: a further test on the user (a grant such as the evaluators' insights).
    """

    endpoint: str
    label: object
    order: int
    roles: tuple[str, ...] = EVERY_ROLE
    current: tuple[str, ...] = ()
    shown: Callable[[object], bool] | None = None
    administration: bool = False

    def visible_to(self, user) -> bool:
        return user.role in self.roles and (self.shown is None or bool(self.shown(user)))

    def is_current(self, endpoint: str, path: str) -> bool:
        return self.match(endpoint, path) > 0

    def match(self, endpoint: str, path: str) -> int:
        """How closely this entry claims the page: the length of its longest prefix that the endpoint
        starts with (0: not its page), so that a section's own entry wins over its package's."""
        if path.startswith("/admin") or "/admin/" in path:
            return 1 if self.administration else 0
        if self.current:
            return max((len(prefix) for prefix in self.current if endpoint.startswith(prefix)), default=0)
        return len(endpoint) if endpoint == self.endpoint else 0


@dataclass
class Registry:
    """The application's registrations (``app.extensions["pilot"]``), filled by each package's
    ``init_app``: core never names a feature package, the features name core."""

    navigation: list[NavEntry] = field(default_factory=list)
    admin_links: list[tuple[str, object]] = field(default_factory=list)
    dashboard_panels: list[Callable] = field(default_factory=list)
    after_import: list[Callable] = field(default_factory=list)
    campaign_answers: list[Callable] = field(default_factory=list)
    audit_objects: dict[str, tuple] = field(default_factory=dict)

    def add_navigation(self, entry: NavEntry) -> None:
        if all(e.endpoint != entry.endpoint for e in self.navigation):
            self.navigation.append(entry)
            self.navigation.sort(key=lambda e: e.order)

    def add_admin_link(self, endpoint: str, label) -> None:
        if all(e != endpoint for e, _label in self.admin_links):
            self.admin_links.append((endpoint, label))

    def add_dashboard_panel(self, make: Callable) -> None:
        """``make(session, user)`` returns a panel dict for the dashboard, or None."""
        if make not in self.dashboard_panels:
            self.dashboard_panels.append(make)

    def add_after_import(self, hook: Callable) -> None:
        """``hook(session, batch_id)`` runs after an inbox import is committed, in its own
        transaction (the segments package refreshes the profiles the batch touched)."""
        if hook not in self.after_import:
            self.after_import.append(hook)

    def add_campaign_answers(self, hook: Callable) -> None:
        """``hook(session, organisation_id, {spectator_id: unsubscribed_at})`` returns the spectators
        whose unsubscribe answers a district campaign they received through that organisation (sent
        before the unsubscribe): only those opt out district-wide (the experiments package knows)."""
        if hook not in self.campaign_answers:
            self.campaign_answers.append(hook)

    def add_audit_object(self, object_type: str, model, name_column) -> None:
        """The audit log's objects of ``object_type`` are rows of ``model`` (by id) named by
        ``name_column``: the log names them in its sentences and finds them by words (core.audit_words)."""
        self.audit_objects.setdefault(object_type, (model, name_column))

    def navigation_for(self, user) -> list[tuple[NavEntry, bool]]:
        """The entries ``user`` sees, each with whether it is the current page's."""
        endpoint = request.endpoint or ""
        entries = [entry for entry in self.navigation if entry.visible_to(user)]
        matches = [entry.match(endpoint, request.path) for entry in entries]
        best = max(matches, default=0)
        # one entry is current: the one whose prefix is the longest (Compare rather than Segments)
        return [(entry, bool(best) and match == best) for entry, match in zip(entries, matches)]


def registry(app: Flask | None = None) -> Registry:
    """The registry of ``app`` (the current application by default), made on first use."""
    app = app or current_app
    return app.extensions.setdefault("pilot", Registry())
