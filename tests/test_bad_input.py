"""Bad input, generated: every form, the rule preview endpoint and ``pilot analyze`` take random
strings, huge values, unicode and empty fields without a 500, a traceback or a partial write.

Each form is posted as a role allowed to use it, with every field either a plausible value or junk,
so that both the validation and the code behind it are reached. After every post the database must
be consistent: a refused post changed nothing, an accepted one wrote whole objects. The importer has
its own property tests (tests/core/test_importing.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import func, select

from campaigns.models import Approval, Campaign, Exclusion, Promotion, Reminder
from core.models import Contact, ImportBatch, Organisation, Spectator, Transaction, User, Venue
from experiments.analyze import analyze_command
from experiments.models import Experiment, Recipient
from segments.models import Segment, SegmentVersion
from tests.test_authorisation_matrix import (
    ALLOWED,
    IMPORT_HEADER,
    MATRIX,
    build_world,
    import_rows,
    role_clients,
)

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
EXAMPLES = 20

# --- junk ----------------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\x00",
    "\u202e",
    "null",
    "None",
    "NaN",
    "inf",
    "-1",
    "0",
    "1e309",
    "9" * 40,
    "-9" * 30,
    "' OR 1=1 --",
    '"; DROP TABLE contact; --',
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "%(x)s",
    "%s%n",
    "../../etc/passwd",
    "=cmd|' /C calc'!A0",
    "2026-02-30",
    "2026-13-01T25:61",
    "１２３",
    "🎭" * 50,
    "\r\n\r\n",
    "a" * 5000,
    "é" * 300,
]
huge = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(200, 20_000))
junk = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=60),
    huge,
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@dataclass
class Field:
    """A form field: what the right user would type, and what an attacker or a cat might."""

    plausible: st.SearchStrategy
    junk: st.SearchStrategy = junk


def field(*plausible, strategy: st.SearchStrategy | None = None) -> Field:
    return Field(strategy if strategy is not None else st.sampled_from(plausible) if plausible else junk)


def multi(*values) -> Field:
    """A multiple choice (checkboxes): a list of good choices, or a list of junk."""
    return Field(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True), st.lists(junk, max_size=4))


@st.composite
def form(draw, **fields: Field) -> dict:
    """A post that the right user would send, with none, one, some or all of its fields spoiled (a
    spoiled field is junk, or left out), so that both the refusals and the writes are reached."""
    names = list(fields)
    spoil = draw(st.sampled_from(["none", "none", "one", "one", "some", "all"]))
    if spoil == "one":
        bad = {draw(st.sampled_from(names))}
    elif spoil == "some":
        bad = set(draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True)))
    else:
        bad = set(names) if spoil == "all" else set()
    data = {}
    for name, spec in fields.items():
        if name in bad and draw(st.integers(0, 4)) == 0:
            continue  # left out of the post altogether
        data[name] = draw(spec.junk if name in bad else spec.plausible)
    return data


def maybe(strategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


upload = st.tuples(
    st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=500).map(str.encode),
        st.sampled_from([b"Nom;Pr\xe9nom\nA;B\n", b"\xff\xfe\x00\x00", b"", b"a@b.example\n" * 50]),
    ),
    st.sampled_from(["liste.csv", "liste.txt", "liste.CSV", "liste", "x.csv.exe", "é.csv"]),
)

# (url, status) → posts: the tests check that the fuzzing also reaches the accepting paths
OUTCOMES: Counter = Counter()

# --- the invariants ------------------------------------------------------------------------------


def counts(session) -> dict:
    session.expire_all()
    found = {
        m.__name__: session.scalar(select(func.count()).select_from(m))
        for m in (
            Approval,
            Campaign,
            Contact,
            Exclusion,
            Experiment,
            ImportBatch,
            Organisation,
            Promotion,
            Recipient,
            Reminder,
            Segment,
            SegmentVersion,
            Spectator,
            Transaction,
            User,
            Venue,
        )
    }
    found["organisation_details"] = sorted(
        session.execute(
            select(
                Organisation.id,
                Organisation.name,
                Organisation.kind,
                Organisation.disciplines,
                Organisation.k_threshold,
                Organisation.sender_name,
                Organisation.sender_email,
            )
        ).all()
    )
    found["venue_details"] = sorted(session.execute(select(Venue.id, Venue.name, Venue.capacity)).all())
    found["statuses"] = sorted(session.execute(select(Campaign.id, Campaign.status)).all())
    found["answers"] = sorted(session.execute(select(Approval.id, Approval.status)).all())
    return found


def check_consistent(session) -> None:
    """What a partial write would break."""
    session.expire_all()
    for segment in session.scalars(select(Segment)):
        assert segment.versions, f"segment {segment.id} without a rule version"
    for promotion in session.scalars(select(Promotion)):
        assert promotion.organisations, f"promotion {promotion.id} without organisations"
        assert promotion.valid_until >= promotion.valid_from
    for campaign in session.scalars(select(Campaign)):
        assert sum(int(a["share"]) for a in campaign.arms) == 100, campaign.arms
        if campaign.status in ("awaiting_approvals", "ready", "launched", "measuring", "closed"):
            assert campaign.snapshot_id is not None, (campaign.id, campaign.status)
    for batch in session.scalars(select(ImportBatch)):
        assert batch.rows == batch.imported + batch.duplicates + batch.rejected + batch.anonymous
    for user in session.scalars(select(User)):
        assert user.role != "venue" or user.organisation_id is not None


def accepted(path: str) -> int:
    """How many posts to ``path`` were accepted (redirected after a write) in this process."""
    return sum(n for (url, status), n in OUTCOMES.items() if url == path and status == 302)


def post_and_check(client, session, url: str, data=None, json_body=None, refused_keeps=True, **kwargs):
    before = counts(session)
    if json_body is not None:
        response = client.post(url, json=json_body, **kwargs)
    else:
        response = client.post(url, data=data, **kwargs)
    body = response.get_data(as_text=True)
    OUTCOMES[(url.split("?")[0], response.status_code)] += 1
    if currently_in_test_context():  # what came back, for --hypothesis-show-statistics
        event(f"{url.split('?')[0].rstrip('/').rsplit('/', 1)[-1]} -> {response.status_code}")
    assert response.status_code < 500, (url, data, body[:500])
    assert "Traceback" not in body
    if refused_keeps and response.status_code in (200, 400, 404, 413):
        after = counts(session)
        assert after == before, (url, data, {k: (before[k], after[k]) for k in before if before[k] != after[k]})
    check_consistent(session)
    return response


@pytest.fixture(autouse=True)
def _fresh_outcomes():
    OUTCOMES.clear()  # each test (and each engine) reaches the accepting paths on its own


@pytest.fixture
def world(app, session, tmp_path):
    return build_world(app, session, tmp_path, per_org=6, shared=2)


@pytest.fixture
def clients(app, make_user, world):
    return role_clients(app, make_user, world)


# --- the forms -----------------------------------------------------------------------------------


def test_every_post_endpoint_is_fuzzed_here():
    """A new POST endpoint gets a strategy here (the authorisation matrix lists them)."""
    posted = {e for e, entry in MATRIX.items() if entry.post and ALLOWED in entry.post.values()}
    assert posted <= set(FUZZED), f"POST endpoints without bad-input tests: {sorted(posted - set(FUZZED))}"


FUZZED = {
    "auth.login",
    "auth.logout",
    "admin.organisations",
    "admin.users",
    "main.imports",
    "jobs.run_now",
    "questions.index",
    "auth.change_password",
    "admin.user_access",
    "campaigns.decide_provider",
    "admin.user_role",
    "admin.user_link",
    "admin.user_deactivate",
    "account.choose_password",
    "admin.organisation",
    "admin.organisation_venues",
    "admin.venue",
    "segments.new",
    "segments.edit",
    "segments.preview_json",
    "campaigns.new_promotion",
    "campaigns.edit_promotion",
    "campaigns.new_campaign",
    "campaigns.edit_campaign",
    "campaigns.submit",
    "campaigns.ready",
    "campaigns.cancel",
    "campaigns.decide",
    "campaigns.upload_exclusions",
    "campaigns.clear_exclusions",
    "campaigns.erasure",
    "campaigns.erasure_confirm",
    "campaigns.remind",
    "experiments.launch",
    "experiments.refresh",
    "experiments.unsubscribe",
    "imports.columns",
    "imports.confirm",
    "imports.cancel",
}


def test_admin_and_login_forms(app, session, world, clients):
    admin = clients["admin"]

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            slug=field(strategy=st.from_regex(r"[a-z][a-z0-9-]{2,30}", fullmatch=True)),
            name=field("Salle Z"),
            kind=field("venue", "company", "festival"),
            k_threshold=field("", "10", "1000"),
        )
    )
    def organisations(data):
        post_and_check(admin, session, "/admin/organisations", data)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            email=field(strategy=st.integers(0, 10**9).map(lambda n: f"neuf{n}@example.org")),
            name=field("Nom"),
            role=field("staff", "venue", "evaluator", "admin"),
            organisation=field(str(world.org_a.id), ""),
        )
    )
    def users(data):
        post_and_check(admin, session, "/admin/users", data)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(email=field(clients["staff"].user.email, "x@example.org"), password=field("correct-horse-42")),
        st.sampled_from(["", "?next=/admin/users", "?next=//evil.example", "?next=%0d%0aSet-Cookie:x"]),
    )
    def logins(data, query):
        response = post_and_check(app.test_client(), session, "/login" + query, data)
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/") and not response.headers["Location"].startswith("//")

    @settings(max_examples=10, **SETTINGS)
    @given(st.text(max_size=80).filter(lambda s: "/" not in s and s not in (".", "..")))
    def run_unknown_job(job_id):
        post_and_check(admin, session, f"/admin/jobs/{job_id}/run" if job_id else "/admin/jobs/%20/run", {})

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(form(budget=field("1", "500", "1000", "1000000")))
    def budgets(data):
        post_and_check(admin, session, "/admin/questions/", data)

    organisations()
    users()
    logins()
    run_unknown_job()
    budgets()
    assert accepted("/admin/organisations") and accepted("/admin/users") and accepted("/login")
    assert accepted("/admin/questions/")


def test_account_forms(app, session, world, clients, make_user):
    """One's own password (as each role) and the administrator's access buttons, with junk."""
    target = make_user("evaluator")
    admin = clients["admin"]

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            current=field("correct-horse-42", "wrong-password-1"),
            new=field("Gazon-vert-2031", "Password12345!"),
            confirm=field("Gazon-vert-2031", "Password12345!"),
        ),
        st.sampled_from(["staff", "venue", "evaluator"]),
    )
    def passwords(data, role):
        response = post_and_check(clients[role], session, "/account/password", data)
        if response.status_code == 302:  # changed: back to the test's password, this session kept
            assert (
                clients[role]
                .post(
                    "/account/password",
                    data={"current": data["new"], "new": "correct-horse-42", "confirm": "correct-horse-42"},
                )
                .status_code
                == 302
            )

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(action=field("reactivate", "grant_insights", "withdraw_insights")),
        st.sampled_from([target.id, target.id, 0, 2**31 - 1]),
    )
    def access(data, user_id):
        post_and_check(admin, session, f"/admin/users/{user_id}/access", data)

    passwords()
    access()
    assert accepted("/account/password") and accepted(f"/admin/users/{target.id}/access")


def test_people_forms(app, session, world, clients, make_user):
    """The administrator's role, link and deactivation forms, and the invitee's password form, with junk."""
    from core import people

    target = make_user("staff")
    admin = clients["admin"]
    ids = st.sampled_from([target.id, target.id, target.id, 0, 2**31 - 1])

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(form(role=field("staff", "venue", "evaluator", "admin"), organisation=field(str(world.org_a.id), "")), ids)
    def roles(data, user_id):
        post_and_check(admin, session, f"/admin/users/{user_id}/role", data)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(form(confirm=field("yes")), ids)
    def deactivations(data, user_id):
        post_and_check(admin, session, f"/admin/users/{user_id}/deactivate", data)
        if user_id == target.id:  # back, for the next example
            admin.post(f"/admin/users/{user_id}/access", data={"action": "reactivate"})

    @settings(max_examples=10, **SETTINGS)
    @given(ids)
    def links(user_id):
        post_and_check(admin, session, f"/admin/users/{user_id}/link", {})

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            new=field("Gazon-vert-2031", "Password12345!", "court1"),
            confirm=field("Gazon-vert-2031", "Password12345!", "court1"),
        )
    )
    def choose(data):
        with app.app_context():
            raw = people.issue_link(session, session.get(User, target.id), "reset")
            session.commit()
        invitee = app.test_client()
        assert invitee.get(f"/welcome/{raw}").status_code == 302
        post_and_check(invitee, session, "/account/new-password", data)

    roles()
    deactivations()
    links()
    choose()
    assert accepted(f"/admin/users/{target.id}/role") and accepted(f"/admin/users/{target.id}/deactivate")
    assert accepted(f"/admin/users/{target.id}/link") and accepted("/account/new-password")


def test_organisation_forms(app, session, world, clients, make_org):
    """An organisation's details and its halls, with junk."""
    admin = clients["admin"]
    org = make_org("salle-floue", "Salle floue")
    orgs = st.sampled_from([org.id, org.id, world.org_a.id, 0, 2**31 - 1])

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            name=field("Salle floue", "Théâtre d'en face"),
            kind=field("venue", "company", "festival"),
            disciplines=multi("theatre", "dance", "music"),
            k_threshold=field("", "10", "1000"),
            sender_name=field("", "Billetterie"),
            sender_email=field("", "billets@example.org"),
        ),
        orgs,
    )
    def details(data, organisation_id):
        post_and_check(admin, session, f"/admin/organisations/{organisation_id}", data)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            name=field(strategy=st.integers(0, 10**6).map(lambda n: f"Salle {n}")),
            capacity=field("", "1", "250", "100000"),
        ),
        orgs,
    )
    def halls(data, organisation_id):
        post_and_check(admin, session, f"/admin/organisations/{organisation_id}/venues", data)

    def hall_ids():
        return sorted(session.scalars(select(Venue.id).where(Venue.organisation_id == org.id))) or [0]

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            action=field("update", "update", "delete"), name=field("Grande salle", "Studio"), capacity=field("", "80")
        ),
        st.integers(0, 3),
    )
    def changes(data, pick):
        ids = hall_ids() + [world.venue_a, 2**31 - 1]
        post_and_check(admin, session, f"/admin/venues/{ids[pick % len(ids)]}", data)

    details()
    halls()
    changes()
    assert accepted(f"/admin/organisations/{org.id}") and accepted(f"/admin/organisations/{org.id}/venues")
    assert any(url.startswith("/admin/venues/") and status == 302 for url, status in OUTCOMES)


def test_provider_form(session, world, clients):
    """A data provider's answer, with junk (organisation A's own request, and ids not its own)."""

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(
            decision=field("approve", "decline"),
            decline_reason=field("data_use", "other", ""),
            decline_note=field("Nos données restent chez nous.", ""),
        ),
        st.sampled_from([world.provider_a, world.provider_a, 0, 2**31 - 1]),
    )
    def provider(data, provider_id):
        post_and_check(clients["venue"], session, f"/campaigns/providers/{provider_id}/decision", data)

    provider()
    assert accepted(f"/campaigns/providers/{world.provider_a}/decision")


def test_segment_forms(session, world, clients):
    staff = clients["staff"]
    rules = [
        json.dumps(r)
        for r in (
            {"field": "shows", "op": ">=", "value": 1},
            {"all": [{"field": "discipline", "op": "any", "value": ["theatre"]}]},
            {"field": "shows", "op": ">=", "value": 10**20},
            {"any": []},
            {"not": {"not": {"not": None}}},
            {"field": "fsa", "op": "in", "value": ["H2X", "'; --"]},
        )
    ]

    @settings(max_examples=EXAMPLES * 2, **SETTINGS)
    @given(
        form(
            name=field("Segment"),
            description=field("Une description", ""),
            as_of=field("", "2026-01-01"),
            rule=field(*rules[:2]),
        ),
        st.booleans(),
    )
    def segments(data, edit):
        url = f"/segments/{world.district.segment.id}" if edit else "/segments/new"
        post_and_check(staff, session, url, data)

    segments()
    assert accepted("/segments/new") and accepted(f"/segments/{world.district.segment.id}")


def test_campaign_forms(session, world, clients):
    staff = clients["staff"]
    today = dt.date.today()
    org_ids = [str(o.id) for o in world.orgs]
    promotion = form(
        name_fr=field("Printemps"),
        name_en=field("Spring"),
        message_fr=field("Venez"),
        message_en=field("Come"),
        offer_kind=field("percent_off"),
        offer_value=field("20", "25", "100"),
        organisations=multi(*org_ids),
        disciplines=multi("theatre", "dance"),
        shows=Field(st.just([]), st.lists(junk, max_size=3)),
        valid_from=field(today.isoformat()),
        valid_until=field((today + dt.timedelta(days=30)).isoformat()),
        code_strategy=field("unique"),
        shared_code=field(""),
        average_discount=field("9.00", "0"),
        cost_per_contact=field("0.05", "0"),
    )
    deadline = (dt.datetime.utcnow() + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    launch = (dt.datetime.utcnow() + dt.timedelta(days=5)).strftime("%Y-%m-%dT%H:%M")
    campaign = form(
        name=field("Campagne"),
        objective=field("acquisition", "cross_sell", "upsell"),
        segment=field(str(world.district.segment.id)),
        promotion=field(str(world.district.promotion.id)),
        control_share=field("20"),
        arm_a_share=field("80", "40"),
        arm_b_share=field("", "40"),
        arm_a_promotion=field("0", str(world.district.promotion.id)),
        arm_b_promotion=field("0", str(world.district.promotion.id)),
        window_days=field("30", "365", "1"),
        primary_metric=field("conversion", "revenue"),
        secondary_metrics=multi("revenue", "tickets"),
        approval_deadline=field(deadline),
        planned_launch_at=field(launch),
    )

    @settings(max_examples=EXAMPLES * 2, **SETTINGS)
    @given(promotion, st.booleans())
    def promotions(data, edit):
        url = f"/campaigns/promotions/{world.district.promotion.id}/edit" if edit else "/campaigns/promotions/new"
        post_and_check(staff, session, url, data)

    @settings(max_examples=EXAMPLES * 2, **SETTINGS)
    @given(campaign, st.booleans())
    def campaigns(data, edit):
        url = f"/campaigns/{world.draft.id}/edit" if edit else "/campaigns/new"
        post_and_check(staff, session, url, data)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        st.sampled_from(["submit", "ready", "cancel"]),
        form(confirm=field("", "y"), reason=field("Parce que")),
        st.sampled_from(["draft", "awaiting", "launched"]),
    )
    def transitions(action, data, which):
        # a transition either happens whole or not at all; refusals come back as a redirect with a message
        post_and_check(staff, session, f"/campaigns/{getattr(world, which).id}/{action}", data, refused_keeps=False)

    promotions()
    campaigns()
    transitions()
    assert accepted("/campaigns/promotions/new") and accepted("/campaigns/new")


def test_venue_forms(session, world, clients):
    venue = clients["venue"]
    base = f"/campaigns/approvals/{world.approval_a}"

    @settings(max_examples=EXAMPLES * 2, **SETTINGS)
    @given(
        form(
            decision=field("approve", "decline"),
            exclude_subscribers=field("y", ""),
            exclude_contacted=field("y", ""),
            contacted_days=field("30", "365"),
            decline_reason=field("timing", "offer", "other", ""),
            decline_note=field("Pas cette saison.", ""),
        )
    )
    def decisions(data):
        post_and_check(venue, session, f"{base}/decision", data, refused_keeps=False)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(form(kind=field("email", "customer_id")), maybe(upload))
    def exclusions(data, file):
        if file is not None:
            data["file"] = (io.BytesIO(file[0]), file[1])
        post_and_check(
            venue, session, f"{base}/exclusions", data, refused_keeps=False, content_type="multipart/form-data"
        )

    decisions()
    exclusions()
    assert accepted(f"{base}/decision")
    post_and_check(venue, session, f"{base}/exclusions/clear", {"clear": "\x00" * 10}, refused_keeps=False)


def test_remind_form(session, world, clients):
    """Staff's "remind again" with junk: a reminder is sent whole or refused with a message, never twice
    within the hour, and junk kinds or ids are a 404."""
    staff = clients["staff"]
    requests = [
        ("approval", world.approval_a),
        ("approval", world.approval_a),
        ("provider", world.provider_a),
        ("approval", 0),
        ("provider", 2**31 - 1),
    ]

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(form(back=field("campaign", "requests")), st.sampled_from(requests))
    def remind(data, target):
        kind, request_id = target
        post_and_check(staff, session, f"/campaigns/requests/{kind}/{request_id}/remind", data, refused_keeps=False)

    remind()
    for junk_kind in ("nonsense", "%00", "approval.."):
        post_and_check(staff, session, f"/campaigns/requests/{junk_kind}/{world.approval_a}/remind", {"back": "x"})
    session.expire_all()
    sent = session.scalars(select(Reminder.approval_id).where(Reminder.approval_id.is_not(None))).all()
    assert sent == [world.approval_a]  # sent once: every later post fell within the hour


def export_bytes(n: int) -> bytes:
    """A small valid export of new people (``n`` makes them new to the district)."""
    rows = import_rows(3, dt.date.today() - dt.timedelta(days=10), prefix=f"F{n}x")
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows([IMPORT_HEADER] + rows)
    return buffer.getvalue().encode("utf-8")


def test_imports_form(session, world, clients):
    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        st.sampled_from(["staff", "venue"]),
        form(organisation=field(str(world.org_a.id)), kind=field("sales"), skip_invalid=field("0", "1")),
        st.one_of(st.builds(lambda n: (export_bytes(n), "export.csv"), st.integers(0, 10**6)), upload),
    )
    def imports(role, data, file):
        data["file"] = (io.BytesIO(file[0]), file[1])
        before = counts(session)
        response = post_and_check(
            clients[role], session, "/imports", data, refused_keeps=False, content_type="multipart/form-data"
        )
        after = counts(session)
        if role == "venue" and data.get("organisation") not in (None, str(world.org_a.id)):
            # another organisation's id: never imported for it
            assert after["Transaction"] == before["Transaction"] and after["ImportBatch"] == before["ImportBatch"]
        if response.status_code != 200 or after["ImportBatch"] == before["ImportBatch"]:
            assert after["Transaction"] == before["Transaction"] and after["Contact"] == before["Contact"]

    before = counts(session)["Transaction"]
    imports()
    assert counts(session)["Transaction"] > before  # some exports went in whole


def test_import_mapping_and_preview_forms(session, world, clients, tmp_path):
    from core.importing.mapping import columns_of
    from tests.core.test_import_onboarding import MESSY_HEADER, messy_export

    fields = ["", *columns_of("sales")]
    for n, role in enumerate(("venue", "staff")):
        client = clients[role]
        path = messy_export(tmp_path / f"m{n}.csv", start=100 * n + 1000)
        response = client.post(
            "/imports",
            data={
                "organisation": str(world.org_a.id),
                "kind": "sales",
                "skip_invalid": "0",
                "action": "preview",
                "file": (io.BytesIO(path.read_bytes()), path.name),
            },
            content_type="multipart/form-data",
        )
        assert response.status_code == 302
        base = response.headers["Location"].removesuffix("/columns")

        @settings(max_examples=EXAMPLES, **SETTINGS)
        @given(form(**{f"column-{i}": field(*fields) for i in range(len(MESSY_HEADER))}))
        def mapping(data):
            post_and_check(client, session, f"{base}/columns", data)

        mapping()
        for action in ("confirm", "cancel"):
            post_and_check(
                client, session, f"{base}/{action}", {"confirm": "\x00" * 10, "x": "🎭" * 50}, refused_keeps=False
            )
        assert client.get(base).status_code == 404  # confirmed or cancelled: gone


def test_erasure_launch_refresh_and_logout(app, session, world, clients):
    admin = clients["admin"]

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        form(email=field("personne1@xexemple.qc.ca", "personne"), confirm=field("y", "")),
        form(token=field("", "eyJhIjoxfQ.x.y", "[1,2,3]"), confirm=field("y")),
    )
    def erasure(find, confirm):
        post_and_check(admin, session, "/campaigns/admin/erasure", find)
        # a forged or junk token never erases anybody
        before = counts(session)
        post_and_check(admin, session, "/campaigns/admin/erasure/confirm", confirm, refused_keeps=False)
        assert counts(session)["Contact"] == before["Contact"]

    @settings(max_examples=10, **SETTINGS)
    @given(form(confirm=field("", "y")), st.sampled_from(["draft", "awaiting", "launched"]))
    def launches(data, which):
        post_and_check(
            clients["staff"],
            session,
            f"/experiments/campaign/{getattr(world, which).id}/launch",
            data,
            refused_keeps=False,
        )

    erasure()
    launches()
    for role in ("staff", "evaluator"):
        post_and_check(
            clients[role], session, f"/experiments/{world.experiment.id}/refresh", {"x": "\x00"}, refused_keeps=False
        )
    post_and_check(clients["admin"], session, "/logout", {"junk": "🎭" * 100}, refused_keeps=False)


def test_unsubscribe_links_take_any_token(app, session, world):
    """The public unsubscribe page: a junk, forged or altered token is a clear 404 page (GET and
    POST), never a 500; nobody is unsubscribed but by their own valid token."""
    from experiments import unsubscribe

    anonymous = app.test_client()
    recipient = session.scalar(
        select(Recipient)
        .where(Recipient.experiment_id == world.experiment.id, Recipient.arm != "control")
        .order_by(Recipient.id)
    )
    with app.test_request_context():
        good = unsubscribe.token_for(recipient.id)
    token = st.one_of(
        junk.filter(lambda t: t.strip("/") and "/" not in t and "?" not in t and "#" not in t),
        st.builds(
            lambda cut, tail: good[:cut] + tail, st.integers(0, len(good)), st.text(alphabet="ABCxyz019-_.", max_size=4)
        ).filter(lambda t: t != good),
    )

    @settings(max_examples=EXAMPLES * 2, **SETTINGS)
    @given(token, st.booleans())
    def attempts(value, post):
        from urllib.parse import quote

        url = f"/experiments/unsubscribe/{quote(value, safe='')}"
        response = anonymous.post(url, data={"x": value}) if post else anonymous.get(url)
        body = response.get_data(as_text=True)
        assert response.status_code < 500 and "Traceback" not in body, (value, body[:300])
        assert response.status_code in (400, 404), value
        assert opted_out() == before, value  # no junk token unsubscribed anybody

    def opted_out() -> int:
        session.expire_all()
        return session.scalar(select(func.count()).select_from(Spectator).where(Spectator.opted_out_at.is_not(None)))

    before = opted_out()
    attempts()
    assert anonymous.post(f"/experiments/unsubscribe/{good}").status_code == 200
    session.expire_all()
    assert session.get(Spectator, recipient.spectator_id).opted_out_at is not None


# --- the rule preview endpoint -------------------------------------------------------------------

FIELDS = [
    "organisation",
    "discipline",
    "venue",
    "shows",
    "orders",
    "tickets",
    "spent",
    "days_since_last",
    "days_since_first",
    "lifecycle",
    "subscriber",
    "newsletter",
    "contactable",
    "channel",
    "promo_share",
    "lead_days",
    "fsa",
    "nope",
    "",
]
OPS = ["any", "all", "none", "=", "!=", ">", ">=", "<", "<=", "between", "in", "not_in", "is", "starts_with", "~"]
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["theatre", "H2X", "new", "web", "2026-01-01"]),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
leaf = st.fixed_dictionaries(
    {"field": st.sampled_from(FIELDS), "op": st.sampled_from(OPS), "value": json_value},
    optional={"within_days": json_scalar},
)
rule = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"all": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"not": inner}),
    ),
    max_leaves=6,
)


def test_preview_endpoint_answers_json_for_any_rule(session, world, clients):
    staff = clients["staff"]

    valid = st.sampled_from(
        [
            {"field": "shows", "op": ">=", "value": 1},
            {
                "all": [
                    {"field": "organisation", "op": "any", "value": [o.slug for o in world.orgs]},
                    {"field": "lifecycle", "op": "not_in", "value": ["lapsed"]},
                ]
            },
            {
                "any": [
                    {"field": "fsa", "op": "starts_with", "value": ["H2"]},
                    {"field": "spent", "op": "between", "value": [0, 10**6]},
                ]
            },
            {"not": {"field": "tickets", "op": "<", "value": 2, "within_days": 365}},
        ]
    )

    @settings(max_examples=EXAMPLES * 4, **SETTINGS)
    @given(
        st.one_of(valid, rule, json_value, rule.map(json.dumps), valid.map(json.dumps)),
        st.one_of(st.none(), st.sampled_from(["2026-01-01", "", "2026-02-30", "demain", "1900-01-01"]), json_scalar),
    )
    def previews(body, as_of):
        payload = {"rule": body} if as_of is None else {"rule": body, "as_of": as_of}
        response = post_and_check(staff, session, "/segments/preview", json_body=payload)
        assert response.status_code in (200, 400), response.status_code
        data = response.get_json()
        assert isinstance(data, dict)
        if response.status_code == 400:
            assert data.get("error")
        else:
            assert "size" in data and "by_organisation" in data

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        st.one_of(json_value.map(json.dumps), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))),
        st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
    )
    def raw_bodies(body, content_type):
        response = staff.post("/segments/preview", data=body, content_type=content_type)
        assert response.status_code in (200, 400) and response.is_json

    previews()
    raw_bodies()
    assert OUTCOMES[("/segments/preview", 200)] and OUTCOMES[("/segments/preview", 400)]


@pytest.mark.parametrize("as_of", ["9999-12-31", "0001-01-01"])
def test_preview_at_the_edges_of_the_calendar_is_a_400(clients, as_of):
    response = clients["staff"].post(
        "/segments/preview", json={"rule": {"field": "shows", "op": ">=", "value": 1}, "as_of": as_of}
    )
    assert response.status_code == 400, response.status_code
    assert response.get_json()["path"] == "/as_of" and as_of in response.get_json()["error"]


# --- the comparison's filters (GET) --------------------------------------------------------------


def test_comparison_filters_answer_a_page_or_a_clear_error(session, world, clients):
    """Any season, second season, discipline or organisation in the query string: the page, a 400 in
    words, or a 404 for an organisation that is not the user's to see; never a 500, nothing written but
    the audited question."""
    seen: Counter = Counter()

    valid = st.sampled_from([world.org_a.slug, world.org_a.slug] + [o.slug for o in world.orgs])

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(
        role=st.sampled_from(["staff", "venue"]),
        slug=st.one_of(valid, valid, valid, junk),
        season=st.one_of(st.sampled_from(["", "all", "2024-2025", "2025", "2026-2027"]), junk),
        compare=st.one_of(st.sampled_from(["", "2024", "2025-2026"]), junk),
        discipline=st.one_of(st.sampled_from(["", "theatre", "music", "dance"]), junk),
        page=st.sampled_from(["", "/portrait", "/comparison.csv"]),
    )
    def filters(role, slug, season, compare, discipline, page):
        before = counts(session)
        query = {"season": season, "compare": compare, "discipline": discipline}
        if page:  # the organisation's own URLs
            url = f"/segments/comparison/{quote(slug, safe='')}{page}"
        else:  # the organisation picker
            url, query = "/segments/comparison", {**query, "slug": slug}
        response = clients[role].get(url, query_string=query, follow_redirects=True)
        body = response.get_data(as_text=True)
        assert response.status_code in (200, 400, 404), (slug, season, compare, discipline, response.status_code)
        assert "Traceback" not in body
        if response.status_code == 400:
            assert "<h1>" in body and ("choose" in body.lower() or "choisissez" in body.lower())
        assert counts(session) == before
        seen[response.status_code] += 1

    filters()
    assert seen[200] and seen[400] and seen[404], seen


# --- pilot analyze -------------------------------------------------------------------------------

cell = st.one_of(
    st.sampled_from(["0", "1", "2.5", "-1", "", "nan", "inf", "1e400", "oui", "A", "control", "B"]), st.text(max_size=6)
)


@st.composite
def analyze_inputs(draw):
    columns = draw(st.lists(st.sampled_from(["arm", "buy", "spend", "pre", "org", "x", ""]), min_size=0, max_size=5))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(columns) + 1), max_size=30))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    text = "\n".join(delimiter.join(r) for r in [columns] + rows)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        data = draw(st.binary(max_size=200))
    options = ["--arm", draw(st.sampled_from(["arm", "buy", "missing"])), "--control", draw(cell)]
    for metric in draw(
        st.lists(
            st.sampled_from(["buy", "buy:binary", "spend:continuous", "spend:weird", ":binary", "arm", "pre"]),
            min_size=1,
            max_size=3,
        )
    ):
        options += ["--metric", metric]
    if draw(st.booleans()):
        options += ["--covariate", draw(st.sampled_from(["pre", "arm", "nope"]))]
    if draw(st.booleans()):
        options += ["--strata", draw(st.sampled_from(["org", "arm", "nope"]))]
    if draw(st.booleans()):
        options += ["--share", draw(st.sampled_from(["control=0.5", "A=2", "x", "B=nan"]))]
    if draw(st.booleans()):
        options += ["--alpha", draw(st.sampled_from(["0.05", "0", "1.5", "abc"]))]
    return data, options + (["--json"] if draw(st.booleans()) else [])


def test_analyze_gives_a_result_or_a_clear_error(tmp_path):
    runner = CliRunner()
    path = tmp_path / "experiment.csv"

    @settings(max_examples=EXAMPLES * 5, **SETTINGS)
    @given(analyze_inputs())
    def analyse(case):
        data, options = case
        path.write_bytes(data)
        result = runner.invoke(analyze_command, [str(path), *options])
        assert result.exit_code in (0, 1, 2), (result.exit_code, result.output[-500:])
        assert result.exception is None or isinstance(result.exception, SystemExit), (options, repr(result.exception))
        assert "Traceback" not in result.output
        if result.exit_code == 0 and "--json" in options:
            json.loads(result.output)

    analyse()


def test_analyze_on_a_real_file_succeeds(tmp_path):
    lines = ["arm,buy,spend,pre,org"]
    for i in range(400):
        arm = ("control", "A")[i % 2]
        lines.append(f"{arm},{int(i % 7 == 0 or (arm == 'A' and i % 5 == 0))},{(i % 13) * 1.5:.2f},{i % 3},o{i % 4}")
    path = tmp_path / "real.csv"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        analyze_command,
        [
            str(path),
            "--arm",
            "arm",
            "--control",
            "control",
            "--metric",
            "buy:binary",
            "--metric",
            "spend:continuous",
            "--covariate",
            "pre",
            "--strata",
            "org",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n"] == {"control": 200, "A": 200}
