"""The authorisation matrix: every URL rule of the application, every role, the expected outcome.

``MATRIX`` is an explicit table endpoint → {role: expected}. A new route without an entry fails
:func:`test_every_route_is_in_the_matrix`, so whoever adds a page also says who may see it.

Expected outcomes: a status code (200, 302, 403, 404, 405), ``LOGIN`` (302 to the login page), or,
for a POST, ``ALLOWED``: the role may post there, and the post is not sent here so that nothing is
changed by this test (tests/test_bad_input.py posts to those endpoints as the right role).

The objects named in URLs are real (:func:`build_world`): three organisations with contacts, an
import batch, a segment, a promotion, a launched campaign with its experiment and contact lists, a
campaign awaiting approvals and a draft campaign. The venue user belongs to organisation A, the
owner of every per-organisation object the matrix names; other organisations' users are the
subject of tests/test_isolation.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from flask import url_for
from sqlalchemy import func, select

from campaigns import services as campaign_services
from campaigns.models import Approval, Campaign, ProviderApproval, Reminder
from core.importing import import_file
from core.models import Contact, ImportBatch, Organisation, User, UserToken, Venue
from core.scheduler import registered_jobs
from experiments import services as experiment_services
from experiments.models import ContactList, Experiment
from segments.profiles import refresh_profiles
from tests.campaigns.helpers import build_district, new_campaign
from tests.conftest import login

ROLES = ("anonymous", "staff", "venue", "evaluator", "admin")
LOGIN = "login"  # 302 to the login page
ALLOWED = "allowed"  # a POST this role may make: not sent by the matrix (nothing is changed here)

SECRET = "test-district-secret"  # the app fixture's DISTRICT_SECRET


def R(anonymous, staff, venue, evaluator, admin) -> dict:
    """Expectations in the order of :data:`ROLES`."""
    return dict(zip(ROLES, (anonymous, staff, venue, evaluator, admin)))


def everyone(expected) -> dict:
    return dict.fromkeys(ROLES, expected)


@dataclass
class Entry:
    """One endpoint: how to fill its URL from the world, and what each role gets."""

    params: Callable[["World"], dict] = lambda w: {}
    get: dict | None = None
    post: dict | None = None


# The usual shapes, to keep the table readable.
STAFF_PAGE = R(LOGIN, 200, 403, 403, 200)
STAFF_POST = R(LOGIN, ALLOWED, 403, 403, ALLOWED)
ADMIN_PAGE = R(LOGIN, 403, 403, 403, 200)
ADMIN_POST = R(LOGIN, 403, 403, 403, ALLOWED)
VENUE_PAGE = R(LOGIN, 403, 200, 403, 403)
VENUE_POST = R(LOGIN, 403, ALLOWED, 403, 403)
READERS_PAGE = R(LOGIN, 200, 200, 200, 200)
NO_GET = everyone(405)


def _campaign(name: str):
    return lambda w: {"campaign_id": getattr(w, name).id}


MATRIX: dict[str, Entry] = {
    # --- core ---
    "static": Entry(lambda w: {"filename": "css/app.css"}, get=everyone(200)),
    "main.healthz": Entry(get=everyone(200)),
    "main.dashboard": Entry(get=READERS_PAGE),
    "main.imports": Entry(get=R(LOGIN, 200, 200, 403, 200), post=R(LOGIN, ALLOWED, ALLOWED, 403, ALLOWED)),
    "main.import_batch": Entry(lambda w: {"batch_id": w.batch_a}, get=R(LOGIN, 200, 200, 403, 200)),
    # batch A set no row aside: nothing to download (who may download is tested in tests/core/test_importing.py)
    "main.import_rejects": Entry(lambda w: {"batch_id": w.batch_a}, get=R(LOGIN, 404, 404, 403, 404)),
    # a waiting upload is its uploader's only: a token nobody holds is not found (tests/core/test_import_onboarding.py)
    "imports.columns": Entry(
        lambda w: {"token": "t" * 32}, get=R(LOGIN, 404, 404, 403, 404), post=R(LOGIN, ALLOWED, ALLOWED, 403, ALLOWED)
    ),
    "imports.preview": Entry(lambda w: {"token": "t" * 32}, get=R(LOGIN, 404, 404, 403, 404)),
    "imports.confirm": Entry(lambda w: {"token": "t" * 32}, get=NO_GET, post=R(LOGIN, ALLOWED, ALLOWED, 403, ALLOWED)),
    "imports.cancel": Entry(lambda w: {"token": "t" * 32}, get=NO_GET, post=R(LOGIN, ALLOWED, ALLOWED, 403, ALLOWED)),
    "imports.template": Entry(get=R(LOGIN, 200, 200, 403, 200)),
    "imports.progress": Entry(lambda w: {"token": "t" * 32}, get=R(LOGIN, 404, 404, 403, 404)),
    "imports.status": Entry(lambda w: {"token": "t" * 32}, get=R(LOGIN, 404, 404, 403, 404)),
    "imports.quality": Entry(get=R(LOGIN, 200, 200, 403, 200)),
    "auth.login": Entry(get=R(200, 302, 302, 302, 302), post=R(ALLOWED, 302, 302, 302, 302)),
    "auth.logout": Entry(get=NO_GET, post=R(LOGIN, ALLOWED, ALLOWED, ALLOWED, ALLOWED)),
    "admin.organisations": Entry(get=ADMIN_PAGE, post=ADMIN_POST),
    "admin.users": Entry(get=ADMIN_PAGE, post=ADMIN_POST),
    "admin.user_access": Entry(lambda w: {"user_id": 1}, get=NO_GET, post=ADMIN_POST),
    "admin.user": Entry(lambda w: {"user_id": 1}, get=ADMIN_PAGE),
    "admin.organisation": Entry(lambda w: {"organisation_id": w.org_a.id}, get=ADMIN_PAGE, post=ADMIN_POST),
    "admin.organisation_venues": Entry(lambda w: {"organisation_id": w.org_a.id}, get=NO_GET, post=ADMIN_POST),
    "admin.venue": Entry(lambda w: {"venue_id": w.venue_a}, get=NO_GET, post=ADMIN_POST),
    "admin.user_role": Entry(lambda w: {"user_id": 1}, get=NO_GET, post=ADMIN_POST),
    "admin.user_link": Entry(lambda w: {"user_id": 1}, get=NO_GET, post=ADMIN_POST),
    "admin.user_deactivate": Entry(lambda w: {"user_id": 1}, get=ADMIN_PAGE, post=ADMIN_POST),
    # a one-time link: a secret that is not one is refused the same way whoever asks (410 Gone)
    "account.open_link": Entry(lambda w: {"token": "pas-un-lien"}, get=everyone(410)),
    "account.choose_password": Entry(get=everyone(410), post=everyone(ALLOWED)),
    "auth.change_password": Entry(get=READERS_PAGE, post=R(LOGIN, ALLOWED, ALLOWED, ALLOWED, ALLOWED)),
    "admin.audit_log": Entry(get=ADMIN_PAGE),
    "admin.audit_log_csv": Entry(get=ADMIN_PAGE),
    "jobs.index": Entry(get=ADMIN_PAGE),
    "questions.index": Entry(get=ADMIN_PAGE, post=ADMIN_POST),
    "jobs.run_now": Entry(lambda w: {"job_id": w.job_id}, get=NO_GET, post=ADMIN_POST),
    # --- segments and insights ---
    "segments.index": Entry(get=R(LOGIN, 200, 200, 403, 200)),
    "segments.new": Entry(get=STAFF_PAGE, post=STAFF_POST),
    "segments.edit": Entry(lambda w: {"segment_id": w.district.segment.id}, get=STAFF_PAGE, post=STAFF_POST),
    "segments.preview_json": Entry(get=NO_GET, post=STAFF_POST),
    "segments.insights": Entry(get=READERS_PAGE),
    "segments.insights_csv": Entry(lambda w: {"table": "lifecycle"}, get=READERS_PAGE),
    "segments.insights_discipline": Entry(lambda w: {"key": "theatre"}, get=READERS_PAGE),
    "segments.insights_discipline_csv": Entry(lambda w: {"key": "theatre", "table": "regions"}, get=READERS_PAGE),
    "segments.insights_organisation": Entry(lambda w: {"slug": w.org_a.slug}, get=READERS_PAGE),
    "segments.insights_organisation_csv": Entry(
        lambda w: {"slug": w.org_a.slug, "table": "channels"}, get=READERS_PAGE
    ),
    "segments.comparison": Entry(get=READERS_PAGE),
    "segments.comparison_organisation": Entry(lambda w: {"slug": w.org_a.slug}, get=READERS_PAGE),
    "segments.comparison_portrait": Entry(lambda w: {"slug": w.org_a.slug}, get=READERS_PAGE),
    "segments.comparison_csv": Entry(lambda w: {"slug": w.org_a.slug}, get=READERS_PAGE),
    "segments.insights_pick_organisation": Entry(lambda w: {"slug": w.org_a.slug}, get=R(LOGIN, 302, 302, 302, 302)),
    # --- campaigns ---
    "campaigns.index": Entry(get=R(LOGIN, 200, 200, 403, 200)),
    "campaigns.promotions": Entry(get=STAFF_PAGE),
    "campaigns.new_promotion": Entry(get=STAFF_PAGE, post=STAFF_POST),
    "campaigns.promotion": Entry(lambda w: {"promotion_id": w.district.promotion.id}, get=STAFF_PAGE),
    "campaigns.edit_promotion": Entry(
        lambda w: {"promotion_id": w.district.promotion.id}, get=STAFF_PAGE, post=STAFF_POST
    ),
    "campaigns.new_campaign": Entry(get=STAFF_PAGE, post=STAFF_POST),
    "campaigns.edit_campaign": Entry(_campaign("draft"), get=STAFF_PAGE, post=STAFF_POST),
    "campaigns.detail": Entry(_campaign("launched"), get=STAFF_PAGE),
    "campaigns.submit": Entry(_campaign("draft"), get=STAFF_PAGE, post=STAFF_POST),
    "campaigns.ready": Entry(_campaign("awaiting"), get=STAFF_PAGE, post=STAFF_POST),
    "campaigns.cancel": Entry(_campaign("awaiting"), get=STAFF_PAGE, post=STAFF_POST),
    "campaigns.approval": Entry(lambda w: {"approval_id": w.approval_a}, get=VENUE_PAGE),
    "campaigns.approval_contacts": Entry(lambda w: {"approval_id": w.approval_a}, get=VENUE_PAGE),
    "campaigns.decide": Entry(lambda w: {"approval_id": w.approval_a}, get=NO_GET, post=VENUE_POST),
    "campaigns.upload_exclusions": Entry(lambda w: {"approval_id": w.approval_a}, get=NO_GET, post=VENUE_POST),
    "campaigns.clear_exclusions": Entry(lambda w: {"approval_id": w.approval_a}, get=NO_GET, post=VENUE_POST),
    "campaigns.provider": Entry(lambda w: {"provider_id": w.provider_a}, get=VENUE_PAGE),
    "campaigns.decide_provider": Entry(lambda w: {"provider_id": w.provider_a}, get=NO_GET, post=VENUE_POST),
    "campaigns.requests_overview": Entry(get=STAFF_PAGE),
    "campaigns.campaign_requests": Entry(_campaign("awaiting"), get=STAFF_PAGE),
    # organisation A's pending request: staff may remind it; a venue never sees the staff follow-up
    "campaigns.remind": Entry(
        lambda w: {"kind": "approval", "request_id": w.approval_a}, get=STAFF_PAGE, post=STAFF_POST
    ),
    "campaigns.erasure": Entry(get=ADMIN_PAGE, post=ADMIN_POST),
    "campaigns.erasure_confirm": Entry(get=NO_GET, post=ADMIN_POST),
    # --- experiments and reports ---
    "experiments.index": Entry(get=READERS_PAGE),
    "experiments.campaign": Entry(_campaign("launched"), get=R(LOGIN, 302, 403, 302, 302)),
    "experiments.campaign_power": Entry(_campaign("awaiting"), get=R(LOGIN, 200, 403, 200, 200)),
    "experiments.launch": Entry(_campaign("draft"), get=STAFF_PAGE, post=STAFF_POST),
    "experiments.report": Entry(lambda w: {"experiment_id": w.experiment.id}, get=READERS_PAGE),
    "experiments.report_csv": Entry(lambda w: {"experiment_id": w.experiment.id}, get=READERS_PAGE),
    "experiments.report_json": Entry(lambda w: {"experiment_id": w.experiment.id}, get=READERS_PAGE),
    "experiments.refresh": Entry(lambda w: {"experiment_id": w.experiment.id}, get=NO_GET, post=STAFF_POST),
    "experiments.contacts_csv": Entry(lambda w: {"experiment_id": w.experiment.id}, get=VENUE_PAGE),
    # public: the recipient of a contact list's message follows their own signed link (no login)
    "experiments.unsubscribe": Entry(
        lambda w: {"token": _unsubscribe_token(w)}, get=everyone(200), post=everyone(ALLOWED)
    ),
}


def _unsubscribe_token(world) -> str:
    """The signed unsubscribe token of the experiment's first test-arm recipient (inside a request)."""
    from core.db import db_session
    from experiments import unsubscribe
    from experiments.models import Recipient

    recipient_id = db_session().scalar(
        select(Recipient.id)
        .where(Recipient.experiment_id == world.experiment.id, Recipient.arm != "control")
        .order_by(Recipient.id)
    )
    return unsubscribe.token_for(recipient_id)


# --- the world the URLs point into ------------------------------------------------------------

IMPORT_HEADER = [
    "Nom",
    "Prénom",
    "Adresse",
    "Code postal",
    "Adresse courriel",
    "Téléphone",
    "Valeur de l'achat",
    "Nombre de billets",
    "Circonstance de l'achat",
    "Date de l'achat",
    "Date du spectacle",
    "Heure du spectacle",
    "Titre du spectacle",
    "Salle",
    "Type de spectacle",
    "Canal d'achat",
    "Abonné à l'infolettre",
    "Numéro de commande",
]


def import_rows(count: int, start: dt.date, prefix: str = "Imp") -> list[list[str]]:
    """``count`` sales rows of distinct, recognisable people (their fields are greppable)."""
    rows = []
    for i in range(count):
        day = start + dt.timedelta(days=i % 60)
        rows.append(
            [
                f"{prefix}nom{i:03d}",
                f"{prefix}prenom{i:03d}",
                f"{200 + i} rue {prefix}cachee",
                "H3B 2K5",
                f"{prefix.lower()}{i:03d}@courriel-prive.example",
                f"438 555 {1000 + i:04d}",
                "42,50 $",
                "2",
                "Plein tarif",
                day.isoformat(),
                (day + dt.timedelta(days=20)).isoformat(),
                "20:00",
                "La pièce du quartier",
                "Salle principale",
                "Théâtre",
                "Internet",
                "oui",
                f"{prefix}-{i}",
            ]
        )
    return rows


def write_import(path: Path, rows, header=IMPORT_HEADER) -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@dataclass
class World:
    district: object
    orgs: list[Organisation]
    launched: Campaign
    awaiting: Campaign
    draft: Campaign
    experiment: Experiment
    batch_a: int
    job_id: str
    approval_a: int  # organisation A's pending approval (the awaiting campaign)
    approvals: dict = field(default_factory=dict)  # approval id → organisation id (every campaign)
    batches: dict = field(default_factory=dict)  # import batch id → organisation id
    contact_lists: dict = field(default_factory=dict)  # experiment id → organisation ids with a list
    contacts: dict = field(default_factory=dict)  # organisation id → personal values of its contacts
    provider_a: int = 0  # organisation A's pending data-provider request (the awaiting campaign)
    venue_a: int = 0  # a hall of organisation A

    @property
    def org_a(self) -> Organisation:
        return self.orgs[0]

    @property
    def personal(self) -> set[str]:
        """Every personal value of every contact of the world."""
        return set().union(*self.contacts.values())

    def personal_not_of(self, organisation_id: int) -> set[str]:
        """Personal values that organisation ``organisation_id`` does not hold itself."""
        own = self.contacts.get(organisation_id, set())
        return {v for org, values in self.contacts.items() if org != organisation_id for v in values} - own


def _personal_values(session) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for c in session.scalars(select(Contact)):
        values = {c.last_name, c.first_name, c.address, c.postal_code, c.email, c.phone}
        found.setdefault(c.organisation_id, set()).update(v for v in values if v and len(v) >= 6)
    return found


def build_world(app, session, tmp_path: Path, per_org: int = 12, shared: int = 4) -> World:
    """The objects every URL of the matrix points into (committed)."""
    with app.app_context():
        district = build_district(session, per_org=per_org, shared=shared)
        org_a, org_b, org_c = district.orgs
        org_a.disciplines = "theatre"
        # addresses and postal codes, which the campaigns helpers leave empty
        for i, contact in enumerate(session.scalars(select(Contact).order_by(Contact.id))):
            contact.address = f"{1000 + i} avenue Secrete-{i:03d}"
            contact.postal_code = f"H2X{i % 10}Q{(i * 7) % 10}"
        session.flush()
        # an import of organisation A's own export: shows with a discipline, contacts, a batch
        result = import_file(
            session,
            write_import(tmp_path / "export-a.csv", import_rows(8, district.now.date() - dt.timedelta(days=90))),
            org_a,
            secret=SECRET,
            filename="export-a.csv",
        )
        refresh_profiles(session)
        # the launched campaign: everybody approves, ready, launch
        launched = district.campaign
        campaign_services.submit_for_approval(session, launched, snapshot=district.snapshot, now=district.now)
        for approval in launched.approvals:
            campaign_services.decide_approval(session, approval, "approve", now=district.now)
        campaign_services.mark_ready(session, launched, now=district.now)
        experiment = experiment_services.launch(session, launched, now=district.now, seed=1234)
        # a campaign awaiting approvals, and a draft
        awaiting = new_campaign(
            session, district.segment, district.promotion, now=district.now, name="Campagne en attente"
        )
        campaign_services.submit_for_approval(session, awaiting, snapshot=district.snapshot, now=district.now)
        # organisation A asked, as data provider, about the awaiting campaign (as if its rule named A)
        provider = ProviderApproval(
            campaign_id=awaiting.id, organisation_id=org_a.id, status="pending", requested_at=district.now
        )
        session.add(provider)
        draft = new_campaign(session, district.segment, district.promotion, now=district.now, name="Brouillon")
        session.commit()

        approvals = dict(session.execute(select(Approval.id, Approval.organisation_id)).all())
        approval_a = session.scalar(
            select(Approval.id).where(Approval.campaign_id == awaiting.id, Approval.organisation_id == org_a.id)
        )
        batches = dict(session.execute(select(ImportBatch.id, ImportBatch.organisation_id)).all())
        lists: dict[int, set[int]] = {}
        for experiment_id, organisation_id in session.execute(
            select(ContactList.experiment_id, ContactList.organisation_id)
        ):
            lists.setdefault(experiment_id, set()).add(organisation_id)
        return World(
            district=district,
            orgs=list(district.orgs),
            launched=launched,
            awaiting=awaiting,
            draft=draft,
            experiment=experiment,
            batch_a=result.batch_id,
            job_id=sorted(registered_jobs(app))[0],
            approval_a=approval_a,
            approvals=approvals,
            batches=batches,
            contact_lists=lists,
            contacts=_personal_values(session),
            provider_a=provider.id,
            venue_a=session.scalar(select(Venue.id).where(Venue.organisation_id == org_a.id)),
        )


def grant_insights(app, user) -> None:
    """What an administrator's "grant the insights" does (tests/core/test_accounts.py tests the button)."""
    from core.db import get_db

    with get_db(app).session() as s:
        s.get(User, user.id).insights_granted = True
        s.commit()
    user.insights_granted = True


def role_clients(app, make_user, world: World) -> dict:
    """One logged-in test client per role (the venue user of organisation A) and an anonymous one."""
    clients = {"anonymous": app.test_client()}
    for role in ROLES[1:]:
        user = make_user(
            role, world.org_a if role == "venue" else None, email=f"{role}-{uuid.uuid4().hex[:6]}@matrix.example"
        )
        if role == "evaluator":  # granted the audience insights, so that their pages are exercised
            grant_insights(app, user)
        client = app.test_client()
        assert login(client, user.email).status_code == 302
        client.user = user
        clients[role] = client
    return clients


def url_of(app, endpoint: str, world: World) -> str:
    with app.test_request_context():
        return url_for(endpoint, **MATRIX[endpoint].params(world))


def outcome_matches(response, expected) -> bool:
    if expected == LOGIN:
        return response.status_code == 302 and response.headers.get("Location", "").split("?")[0].endswith("/login")
    return response.status_code == expected


def describe(response) -> str:
    where = response.headers.get("Location")
    return f"{response.status_code}" + (f" → {where}" if where else "")


# --- the tests ----------------------------------------------------------------------------------


def _endpoint_methods(app) -> dict[str, set[str]]:
    methods: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        methods.setdefault(rule.endpoint, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return methods


def test_every_route_is_in_the_matrix(app):
    methods = _endpoint_methods(app)
    missing = sorted(set(methods) - set(MATRIX))
    assert not missing, f"routes without an entry in the authorisation matrix: {missing}"
    stale = sorted(set(MATRIX) - set(methods))
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"
    for endpoint, verbs in methods.items():
        entry = MATRIX[endpoint]
        assert entry.get is not None, f"{endpoint}: no GET expectations"
        if "POST" in verbs:
            assert entry.post is not None, f"{endpoint} takes POST: say who may post"
        for table in (entry.get, entry.post):
            if table is not None:
                assert set(table) == set(ROLES), f"{endpoint}: every role needs an expectation"
        if "GET" not in verbs:
            assert set(entry.get.values()) == {405}, f"{endpoint} is POST-only: GET is 405 for everyone"


def test_matrix_agrees_with_the_guards(app):
    """Where a view is guarded by roles_required, a role outside it never expects a page, and a role
    inside it never expects a 403 (404 may still hide what is not its own)."""
    for endpoint, entry in MATRIX.items():
        allowed = getattr(app.view_functions[endpoint], "allowed_roles", None)
        if allowed is None:
            continue
        for table in (entry.get, entry.post):
            if table is None or set(table.values()) == {405}:
                continue
            assert table["anonymous"] == LOGIN, f"{endpoint}: a guarded view sends anonymous users to log in"
            for role in ROLES[1:]:
                if role in allowed:
                    assert table[role] != 403, f"{endpoint}: {role} is allowed by the guard but expects 403"
                else:
                    assert table[role] in (403, 404), (
                        f"{endpoint}: {role} is refused by the guard, expects {table[role]}"
                    )


def test_every_role_gets_what_the_matrix_says(app, session, make_user, tmp_path):
    world = build_world(app, session, tmp_path)
    clients = role_clients(app, make_user, world)
    mismatches = []
    for endpoint, entry in MATRIX.items():
        url = url_of(app, endpoint, world)
        for role in ROLES:
            expected = entry.get[role]
            response = clients[role].get(url)
            if not outcome_matches(response, expected):
                mismatches.append(f"GET  {url:60} {role:10} expected {expected}, got {describe(response)}")
            if entry.post is None:
                continue
            expected = entry.post[role]
            if expected == ALLOWED:
                continue
            response = clients[role].post(url, data={})
            if not outcome_matches(response, expected):
                mismatches.append(f"POST {url:60} {role:10} expected {expected}, got {describe(response)}")
    assert not mismatches, "authorisation matrix mismatches:\n" + "\n".join(mismatches)


def test_denied_posts_change_nothing(app, session, make_user, tmp_path):
    """Posting real-looking forms as a role without the right leaves the objects as they were."""
    world = build_world(app, session, tmp_path)
    clients = role_clients(app, make_user, world)
    before = _state(session)
    forms = {
        "campaigns.decide": {"decision": "decline", "decline_reason": "timing"},
        "campaigns.remind": {"back": "campaign"},
        "campaigns.submit": {"confirm": "y"},
        "campaigns.cancel": {"confirm": "y", "reason": "no"},
        "campaigns.ready": {"confirm": "y"},
        "experiments.launch": {"confirm": "y"},
        "admin.organisations": {"slug": "intrus", "name": "Intrus", "kind": "venue"},
        "questions.index": {"budget": "1"},
        "admin.users": {"email": "intrus@example.org", "role": "admin", "organisation": ""},
        "admin.user_role": {"role": "admin", "organisation": ""},
        "admin.user_deactivate": {"confirm": "yes"},
        "admin.user_link": {},
        "admin.organisation": {"name": "Intrus", "kind": "festival", "sender_email": "intrus@example.org"},
        "admin.organisation_venues": {"name": "Salle intruse", "capacity": "10"},
        "admin.venue": {"action": "delete"},
    }
    for endpoint, data in forms.items():
        url = url_of(app, endpoint, world)
        for role, expected in MATRIX[endpoint].post.items():
            if expected in (ALLOWED, 405):
                continue
            response = clients[role].post(url, data=data)
            assert outcome_matches(response, expected), (endpoint, role, describe(response))
    assert _state(session) == before


def _state(session) -> dict:
    session.expire_all()
    return {
        "campaigns": sorted(session.execute(select(Campaign.id, Campaign.status)).all()),
        "approvals": sorted(session.execute(select(Approval.id, Approval.status)).all()),
        "reminders": sorted(session.scalars(select(Reminder.id))),
        "organisations": sorted(
            session.execute(select(Organisation.slug, Organisation.name, Organisation.kind, Organisation.sender_email))
        ),
        "venues": sorted(session.execute(select(Venue.id, Venue.name, Venue.capacity))),
        "experiments": sorted(session.scalars(select(Experiment.id))),
        "users": sorted(session.execute(select(User.email, User.role, User.active, User.session_version))),
        "links": session.scalar(select(func.count()).select_from(UserToken)),
    }
