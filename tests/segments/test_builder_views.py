"""The segment builder's pages: list, live preview JSON, saving and versions, who may use them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from core.models import AuditEvent
from segments.models import Segment, SegmentVersion
from segments.preview import preview
from tests.segments.district import AS_OF, PAST, small_district  # noqa: F401  (fixture)

CROSS_SELL = {
    "all": [
        {"field": "discipline", "op": "any", "value": ["theatre"]},
        {"field": "discipline", "op": "none", "value": ["dance"]},
    ]
}


def save(client, url, name, rule, **extra):
    data = {
        "name": name,
        "description": extra.get("description", ""),
        "as_of": extra.get("as_of", ""),
        "rule": rule if isinstance(rule, str) else json.dumps(rule),
    }
    return client.post(url, data=data)


@pytest.mark.parametrize("role", ["evaluator", "venue"])
def test_the_builder_is_for_staff_and_administrators(login_as, db, role):
    client = login_as(role)
    with db.session() as session:
        segment = Segment(name="x")
        session.add(segment)
        session.commit()
        segment_id = segment.id
    assert client.get("/segments/new").status_code == 403
    assert client.get(f"/segments/{segment_id}").status_code == 403
    assert client.post("/segments/preview", json={"rule": CROSS_SELL}).status_code == 403
    assert save(client, "/segments/new", "x", CROSS_SELL).status_code == 403
    # Venue approvers may read the list; evaluators see aggregates in reports only.
    assert client.get("/segments/").status_code == (200 if role == "venue" else 403)


def test_the_list_offers_the_classic_cases(login_as):
    page = login_as("staff").get("/segments/?lang=en").get_data(as_text=True)
    assert "Cross-sell: theatre-goers who never tried dance" in page
    assert "/segments/new?template=upsell" in page and "No segment yet." in page


def test_a_template_prefills_the_builder(login_as):
    client = login_as("admin")
    page = client.get("/segments/new?template=cross_sell&lang=en").get_data(as_text=True)
    assert "Theatre-goers who never tried dance" in page
    assert "&#34;discipline&#34;" in page or "&quot;discipline&quot;" in page
    assert 'id="builder-config"' in page and "js/segment-builder.js" in page
    assert "<script>" not in page  # the CSP forbids inline scripts: only a JSON data block


def test_live_preview_json(app, login_as, small_district, db):
    # A tiny σ: the figures are the exact ones (the noise itself is tested in tests/core/test_privacy.py).
    app.config["PRIVACY_SIGMA"] = 1e-6
    client = login_as("staff")
    response = client.post("/segments/preview", json={"rule": CROSS_SELL})
    assert response.status_code == 200
    data = response.get_json()
    assert data["as_of"] == AS_OF.isoformat() and data["k"] == 10
    with db.session() as session:
        exact = preview(session, CROSS_SELL)
    assert isinstance(data["size"], int) and data["size"] == exact["size"] >= 10
    assert data["size_status"] == "shown" and data["size_text"] == str(exact["size"])
    assert {row["organisation"] for row in data["by_organisation"]} >= {"theatre-nord", "danse-sud"}
    assert [row["stage"] for row in data["lifecycle"]][0] == "new"
    assert set(data["contactable"]) == {"spectators", "share", "suppressed", "status", "text"}
    assert data["questions_left"] == 999
    with db.session() as session:
        asked = session.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.question")).all()
    assert [(e.user_id, e.object_id, e.details["question"]["rule"]) for e in asked] == [
        (client.user.id, "preview", CROSS_SELL)
    ]
    past = client.post("/segments/preview", json={"rule": CROSS_SELL, "as_of": PAST.isoformat()}).get_json()
    assert past["as_of"] == PAST.isoformat()


def test_live_preview_reports_a_bad_rule_with_its_place(login_as, app):
    client = login_as("staff")
    bad = {"all": [{"field": "shows", "op": ">=", "value": -1}]}
    response = client.post("/segments/preview?lang=en", json={"rule": bad})
    assert response.status_code == 400
    body = response.get_json()
    assert body["path"] == "/all/0/value" and body["code"] == "out_of_range"
    assert body["error"].startswith("Condition 1: value -1 of field 'shows' is out of range")
    assert "/all" not in body["error"]  # words for people; the pointer stays in "path" for scripts
    nested = {
        "all": [
            {"field": "shows", "op": ">=", "value": 1},
            {"not": {"any": [{"field": "orders", "op": ">=", "value": 1}, {"field": "spend", "op": ">", "value": 1}]}},
        ]
    }
    deep = client.post("/segments/preview?lang=en", json={"rule": nested}).get_json()
    assert deep["path"] == "/all/1/not/any/1" and deep["error"].startswith("Condition 2 › condition 2: unknown field")
    french = client.post("/segments/preview?lang=fr", json={"rule": bad}).get_json()
    assert "hors" in french["error"] and french["error"].startswith("Condition 1 :")  # « hors limites »
    assert client.post("/segments/preview", json={"rule": CROSS_SELL, "as_of": "2024-13-01"}).status_code == 400
    assert client.post("/segments/preview", data="nope").status_code == 400


def test_saving_creates_a_segment_then_versions_when_the_rule_changes(login_as, db, small_district):
    client = login_as("staff")
    response = save(client, "/segments/new", "Theatre, not dance", CROSS_SELL, description="Cross-sell")
    assert response.status_code == 302
    with db.session() as session:
        segment = session.scalar(select(Segment))
        assert (segment.name, segment.description) == ("Theatre, not dance", "Cross-sell")
        assert [v.number for v in segment.versions] == [1]
        assert segment.versions[0].rule == CROSS_SELL
        segment_id = segment.id
    url = f"/segments/{segment_id}"
    assert response.headers["Location"].endswith(url)
    page = client.get(url + "?lang=en").get_data(as_text=True)
    assert "Versions of the rule" in page and "Theatre, not dance" in page

    # Same rule (written differently): no new version; the name may change.
    same = {
        "all": [
            {"field": "discipline", "op": "any", "value": ["Theatre"]},
            {"field": "discipline", "op": "none", "value": ["dance", "dance"]},
        ]
    }
    assert save(client, url, "Theatre-goers", same).status_code == 302
    changed = {"all": [*CROSS_SELL["all"], {"field": "contactable", "op": "is", "value": True}]}
    assert save(client, url, "Theatre-goers", changed).status_code == 302
    with db.session() as session:
        versions = session.scalars(select(SegmentVersion).order_by(SegmentVersion.number)).all()
        assert [v.number for v in versions] == [1, 2] and versions[1].rule == changed
        assert session.get(Segment, segment_id).name == "Theatre-goers"
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions.count("segment.create") == 1 and actions.count("segment.version") == 1


def test_a_bad_rule_or_name_is_refused_with_a_message(login_as, db):
    client = login_as("admin")
    response = save(client, "/segments/new?lang=en", "", CROSS_SELL)
    assert response.status_code == 400
    response = save(client, "/segments/new?lang=en", "x", {"all": [{"field": "colour", "op": "=", "value": 1}]})
    assert response.status_code == 400
    assert "Condition 1: unknown field" in response.get_data(as_text=True)
    assert "/all/0" not in response.get_data(as_text=True)
    with db.session() as session:
        assert session.scalar(select(Segment)) is None
