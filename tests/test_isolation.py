"""Isolation between organisations, and no contact field ever reaching staff or evaluators.

Every object that belongs to an organisation (approvals and the contacts they list, contact lists,
import batches, an organisation's insight pages, reports of experiments it does not send for) is a
404 for the users of any other organisation, whatever identifier they try. Contacts have no page of
their own: they are reached only through an approval's contact page and a contact list, both
covered here. Then every GET endpoint of the authorisation matrix (and every CSV table of every
insight scope) is read as staff, evaluator and administrator, and as another organisation's venue
user, and no body may hold a personal value it should not.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid

import pytest
from flask import url_for
from sqlalchemy import select

from campaigns.models import Approval, Exclusion
from core.importing import import_file
from core.models import AuditEvent, Contact, ImportBatch, Organisation
from segments.insight_builders import TABLES
from tests.conftest import login
from tests.test_authorisation_matrix import (
    MATRIX,
    SECRET,
    _personal_values,
    build_world,
    grant_insights,
    import_rows,
    url_of,
    write_import,
)


@pytest.fixture
def world(app, session, tmp_path):
    world = build_world(app, session, tmp_path)
    with app.app_context():
        # organisation B imports too, so that there is an import batch of its own to find
        org_b = session.get(Organisation, world.orgs[1].id)
        import_file(
            session,
            write_import(
                tmp_path / "export-b.csv", import_rows(3, world.district.now.date() - dt.timedelta(days=40), "Bee")
            ),
            org_b,
            secret=SECRET,
            filename="export-b.csv",
        )
        # organisation D belongs to the district and to nothing else
        outsider = Organisation(slug="dehors", name="Dehors", kind="venue")
        session.add(outsider)
        session.commit()
        world.batches = dict(session.execute(select(ImportBatch.id, ImportBatch.organisation_id)).all())
        world.contacts = _personal_values(session)
        world.outsider = outsider
    return world


def venue_client(app, make_user, org):
    user = make_user("venue", org, email=f"venue-{uuid.uuid4().hex[:6]}@isolation.example")
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    client.user = user
    return client


def leaks(body: str, forbidden: set[str]) -> list[str]:
    return sorted(v for v in forbidden if v in body)


def _ids(mapping: dict) -> range:
    return range(1, max(mapping, default=0) + 6)


def test_approvals_are_a_404_for_other_organisations(app, make_user, world, session):
    org_b = world.orgs[1]
    clients = {"b": venue_client(app, make_user, org_b), "outsider": venue_client(app, make_user, world.outsider)}
    before = sorted(session.execute(select(Approval.id, Approval.status, Approval.exclude_subscribers)).all())
    for name, client in clients.items():
        own_org = client.user.organisation_id
        for approval_id in _ids(world.approvals):
            own = world.approvals.get(approval_id) == own_org
            for path in (f"/campaigns/approvals/{approval_id}", f"/campaigns/approvals/{approval_id}/contacts"):
                response = client.get(path)
                assert response.status_code == (200 if own else 404), (name, path, response.status_code)
                if own:
                    found = leaks(response.get_data(as_text=True), world.personal_not_of(own_org))
                    assert not found, f"{path} shows other organisations' contacts: {found[:5]}"
            if own:
                continue
            for path, data in (
                (f"/campaigns/approvals/{approval_id}/decision", {"decision": "decline"}),
                (f"/campaigns/approvals/{approval_id}/exclusions", {"kind": "email"}),
                (f"/campaigns/approvals/{approval_id}/exclusions/clear", {"clear": "1"}),
            ):
                response = client.post(path, data=data)
                assert response.status_code == 404, (name, path, response.status_code)
    session.expire_all()
    assert sorted(session.execute(select(Approval.id, Approval.status, Approval.exclude_subscribers)).all()) == before
    assert session.scalar(select(Exclusion.approval_id).limit(1)) is None


def test_import_batches_are_a_404_for_other_organisations(app, make_user, world):
    for org in (world.orgs[1], world.outsider):
        client = venue_client(app, make_user, org)
        for batch_id in _ids(world.batches):
            own = world.batches.get(batch_id) == org.id
            response = client.get(f"/imports/{batch_id}")
            assert response.status_code == (200 if own else 404), (org.slug, batch_id, response.status_code)
        # the list of imports shows its own batches only
        html = client.get("/imports").get_data(as_text=True)
        assert "export-a.csv" not in html
        assert ("export-b.csv" in html) == (org.id == world.orgs[1].id)


def test_contact_lists_and_reports_are_a_404_for_other_organisations(app, make_user, world, session):
    experiments = world.contact_lists
    for org in (world.orgs[1], world.outsider):
        client = venue_client(app, make_user, org)
        for experiment_id in _ids(experiments):
            own_list = org.id in experiments.get(experiment_id, set())
            response = client.get(f"/experiments/{experiment_id}/contacts.csv")
            assert response.status_code == (200 if own_list else 404), (org.slug, experiment_id, response.status_code)
            if own_list:
                body = response.get_data(as_text=True)
                assert not leaks(body, world.personal_not_of(org.id)), (
                    "a contact list holds other organisations' people"
                )
                assert any(v in body for v in world.contacts[org.id]), "the list holds the organisation's own people"
            for path in (f"/experiments/{experiment_id}/report.csv", f"/experiments/{experiment_id}/report.json"):
                response = client.get(path)
                assert response.status_code == (200 if own_list else 404), (org.slug, path, response.status_code)
    # every download attempt by the right organisation is audited, none by the others
    downloads = session.scalars(select(AuditEvent).where(AuditEvent.action == "contact_list.download")).all()
    assert {e.organisation_id for e in downloads} == {world.orgs[1].id}


def test_insights_of_another_organisation_are_a_404(app, make_user, world):
    client = venue_client(app, make_user, world.orgs[1])
    for org in world.orgs + [world.outsider]:
        own = org.id == world.orgs[1].id
        for path in (
            f"/segments/insights/organisation/{org.slug}",
            f"/segments/insights/organisation/{org.slug}/lifecycle.csv",
            f"/segments/insights/organisation?slug={org.slug}",
        ):
            status = client.get(path).status_code
            assert status == ((302 if "?" in path else 200) if own else 404), (path, status)
    # a discipline organisation C neither sells nor declares (A and B sell theatre)
    other = venue_client(app, make_user, world.orgs[2])
    assert other.get("/segments/insights/discipline/theatre").status_code == 404
    assert other.get("/segments/insights/discipline/theatre/regions.csv").status_code == 404
    assert client.get("/segments/insights/organisation/no-such-org").status_code == 404


def test_the_comparison_of_another_organisation_is_a_404(app, make_user, world):
    client = venue_client(app, make_user, world.orgs[1])
    for org in world.orgs + [world.outsider]:
        own = org.id == world.orgs[1].id
        for path in (
            f"/segments/comparison/{org.slug}",
            f"/segments/comparison/{org.slug}/portrait",
            f"/segments/comparison/{org.slug}/comparison.csv",
            f"/segments/comparison?slug={org.slug}",
        ):
            status = client.get(path).status_code
            assert status == ((302 if "?" in path else 200) if own else 404), (path, status)
        if not own:  # never named on the venue's own comparison
            assert org.name not in client.get("/segments/comparison?lang=en").get_data(as_text=True)


# --- no contact field for staff, evaluators and administrators -------------------------------------


def _crawl_urls(app, world, role: str) -> list[str]:
    urls = []
    for endpoint, entry in MATRIX.items():
        if entry.get[role] == 200 and endpoint != "static":
            urls.append(url_of(app, endpoint, world))
    with app.test_request_context():
        for table in TABLES:
            urls.append(url_for("segments.insights_csv", table=table))
            urls.append(url_for("segments.insights_discipline_csv", key="theatre", table=table))
            urls.append(url_for("segments.insights_organisation_csv", slug=world.org_a.slug, table=table))
        for org in world.orgs:
            urls.append(url_for("segments.insights_organisation", slug=org.slug))
        for campaign in (world.launched, world.awaiting, world.draft) if role in ("staff", "admin") else ():
            urls.append(url_for("campaigns.detail", campaign_id=campaign.id))
    urls += [f"{u}{'&' if '?' in u else '?'}lang=en" for u in urls[:10]]
    return urls


@pytest.mark.parametrize("role", ["staff", "evaluator", "admin"])
def test_no_contact_field_reaches_pooled_roles(app, make_user, world, role):
    user = make_user(role, None, email=f"{role}-{uuid.uuid4().hex[:6]}@isolation.example")
    if role == "evaluator":  # granted the audience insights: the widest an evaluator reads
        grant_insights(app, user)
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    forbidden = world.personal
    assert len(forbidden) > 100  # names, e-mails, phones, addresses and postal codes of the test contacts
    read = 0
    for url in _crawl_urls(app, world, role):
        response = client.get(url)
        if response.status_code == 500:
            continue  # a page under construction: the authorisation matrix reports it
        assert response.status_code in (200, 302), (url, response.status_code)
        found = leaks(response.get_data(as_text=True), forbidden)
        assert not found, f"{role} sees contact fields on {url}: {found[:5]}"
        read += 1
    assert read >= 20


def test_erasure_search_never_echoes_the_address(app, make_user, world):
    user = make_user("admin", None, email=f"admin-{uuid.uuid4().hex[:6]}@isolation.example")
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    email = sorted(v for v in world.contacts[world.org_a.id] if "@" in v)[0]
    response = client.post("/campaigns/admin/erasure", data={"email": email})
    assert response.status_code == 200
    assert email not in response.get_data(as_text=True)


def test_another_venue_sees_no_foreign_contact_anywhere(app, make_user, world):
    """Organisation B's user reads every page the matrix lists for venues: A's and C's people never show."""
    client = venue_client(app, make_user, world.orgs[1])
    forbidden = world.personal_not_of(world.orgs[1].id)
    own_approval = next(a for a, o in sorted(world.approvals.items()) if o == world.orgs[1].id)
    urls = [url_of(app, e, world) for e, entry in MATRIX.items() if entry.get["venue"] == 200 and e != "static"]
    urls += [f"/campaigns/approvals/{own_approval}", f"/campaigns/approvals/{own_approval}/contacts"]
    for url in urls:
        response = client.get(url)
        if response.status_code == 500:
            continue  # a page under construction: the authorisation matrix reports it
        found = leaks(response.get_data(as_text=True), forbidden)
        assert not found, f"organisation B sees other organisations' contacts on {url}: {found[:5]}"


def test_a_venue_cannot_import_for_another_organisation(app, make_user, world, session, tmp_path):
    client = venue_client(app, make_user, world.orgs[1])
    path = write_import(tmp_path / "intrus.csv", import_rows(2, world.district.now.date(), "Intrus"))
    before = dict(session.execute(select(ImportBatch.id, ImportBatch.organisation_id)).all())
    for org in (world.orgs[0], world.orgs[2], world.outsider):
        response = client.post(
            "/imports",
            data={
                "organisation": str(org.id),
                "kind": "sales",
                "skip_invalid": "0",
                "file": (io.BytesIO(path.read_bytes()), "intrus.csv"),
            },
        )
        assert response.status_code == 404, (org.slug, response.status_code)
    session.expire_all()
    assert dict(session.execute(select(ImportBatch.id, ImportBatch.organisation_id)).all()) == before
    assert not session.scalars(select(Contact).where(Contact.last_name.like("Intrus%"))).all()
