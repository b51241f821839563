"""Organisations edited in the web (name, kind, disciplines, k, sender details, halls), and the audit
log in words in both languages, filterable by actor, action, object and period (issue 19, items 3 and 6)."""

from __future__ import annotations

import datetime as dt
import html

from sqlalchemy import select

from core.models import AuditEvent, Organisation, Show, User, Venue, audit
from tests.experiments.test_views import launched, ready  # noqa: F401 (fixtures)


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_an_organisation_is_edited_and_every_change_logged(login_as, make_org, session):
    admin = login_as("admin")
    org = make_org("theatre-x", "Théâtre X", disciplines="theatre")
    page = text_of(admin.get(f"/admin/organisations/{org.id}"))
    assert "theatre-x" in page
    assert '<input checked id="disciplines-1" name="disciplines" type="checkbox" value="theatre">' in page
    response = admin.post(
        f"/admin/organisations/{org.id}",
        data={
            "name": "Théâtre X du Quartier",
            "kind": "company",
            "disciplines": ["theatre", "dance"],
            "k_threshold": "15",
            "sender_name": "Billetterie X",
            "sender_email": "Billets@TheatreX.example",
        },
    )
    assert response.status_code == 302
    session.expire_all()
    saved = session.get(Organisation, org.id)
    assert (saved.name, saved.kind, saved.disciplines, saved.k_threshold, saved.sender_name, saved.sender_email) == (
        "Théâtre X du Quartier",
        "company",
        "theatre,dance",
        15,
        "Billetterie X",
        "billets@theatrex.example",
    )
    assert saved.slug == "theatre-x"  # the short name stays
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "organisation.update"))
    assert event.details["fields"] == ["name", "kind", "disciplines", "k_threshold", "sender_name", "sender_email"]
    # junk is refused and changes nothing
    for bad in (
        {"name": "", "kind": "venue"},
        {"name": "Y", "kind": "castle"},
        {"name": "Y", "kind": "venue", "sender_email": "pas-un-courriel"},
        {"name": "Y", "kind": "venue", "k_threshold": "1"},
        {"name": "Y", "kind": "venue", "disciplines": ["opera"]},
    ):
        assert admin.post(f"/admin/organisations/{org.id}", data=bad).status_code == 200
    session.expire_all()
    assert session.get(Organisation, org.id).name == "Théâtre X du Quartier"
    words = text_of(admin.get("/admin/audit?lang=en&action=organisation.update"))
    assert (
        "changed the organisation Théâtre X du Quartier: name, kind, disciplines, threshold k, sender name, "
        "sender e-mail"
    ) in words


def test_halls_are_added_renamed_and_removed_unless_shows_took_place(login_as, make_org, session):
    admin = login_as("admin")
    org = make_org("salle-y", "Salle Y")
    base = f"/admin/organisations/{org.id}"
    assert admin.post(f"{base}/venues", data={"name": "Grande salle", "capacity": "450"}).status_code == 302
    assert admin.post(f"{base}/venues", data={"name": "grande SALLE", "capacity": ""}).status_code == 302  # refused
    assert admin.post(f"{base}/venues", data={"name": "Studio", "capacity": "-4"}).status_code == 302  # refused
    halls = session.scalars(select(Venue).where(Venue.organisation_id == org.id)).all()
    assert [(v.name, v.capacity) for v in halls] == [("Grande salle", 450)]
    hall = halls[0]
    assert (
        admin.post(
            f"/admin/venues/{hall.id}", data={"action": "update", "name": "Salle Pauline", "capacity": "460"}
        ).status_code
        == 302
    )
    session.expire_all()
    assert (session.get(Venue, hall.id).name, session.get(Venue, hall.id).capacity) == ("Salle Pauline", 460)
    # a hall where shows took place stays
    session.add(
        Show(
            organisation_id=org.id,
            venue_id=hall.id,
            natural_key="k" * 64,
            title="Pièce",
            starts_at=dt.datetime(2026, 11, 1, 20),
        )
    )
    session.commit()
    admin.post(f"/admin/venues/{hall.id}", data={"action": "delete"})
    session.expire_all()
    assert session.get(Venue, hall.id) is not None
    admin.post(f"{base}/venues", data={"name": "Studio"})
    studio = session.scalar(select(Venue.id).where(Venue.name == "Studio"))
    assert admin.post(f"/admin/venues/{studio}", data={"action": "delete"}).status_code == 302
    session.expire_all()
    assert session.get(Venue, studio) is None
    words = text_of(admin.get("/admin/audit?lang=fr&object_type=venue"))
    assert "a ajouté la salle Grande salle à Salle Y" in words
    assert "a modifié la salle Salle Pauline de Salle Y" in words
    assert "a retiré la salle Studio de Salle Y" in words


def _named(session, user, name: str) -> None:
    session.get(User, user.id).name = name
    session.commit()


def test_the_audit_log_says_who_did_what_to_which_object_in_both_languages(login_as, make_org, session):
    admin = login_as("admin")
    _named(session, admin.user, "Alice")
    org = make_org("theatre-x", "Théâtre X")
    admin.post("/admin/users", data={"email": "bob@example.org", "role": "venue", "organisation": str(org.id)})
    admin.post("/admin/users", data={"email": "carole@example.org", "role": "evaluator", "organisation": ""})
    bob = session.scalar(select(User).where(User.email == "bob@example.org"))
    admin.post(f"/admin/users/{bob.id}/role", data={"role": "staff", "organisation": ""})
    admin.post(f"/admin/users/{bob.id}/deactivate", data={"confirm": "yes"})
    english = text_of(admin.get("/admin/audit?lang=en"))
    assert "Alice (administrator) invited bob@example.org as venue approver of Théâtre X" in english
    assert "Alice (administrator) invited carole@example.org as evaluator" in english
    assert "Alice (administrator) made bob@example.org partnership staff (was venue approver)" in english
    assert "Alice (administrator) deactivated bob@example.org" in english
    french = text_of(admin.get("/admin/audit?lang=fr"))
    assert "Alice (administrateur) a invité bob@example.org comme approbateur (diffuseur) de Théâtre X" in french
    assert "Alice (administrateur) a désactivé bob@example.org" in french
    assert "Alice (administrateur) s'est connecté" in french


def test_the_audit_log_filters_by_actor_name_object_words_action_and_period(login_as, make_user, session):
    admin = login_as("admin")
    _named(session, admin.user, "Alice Gagnon")
    other = login_as("admin")
    target = make_user("staff", email="zoe@example.org")
    admin.post(f"/admin/users/{target.id}/link", data={})
    other.post(f"/admin/users/{target.id}/deactivate", data={"confirm": "yes"})
    old = audit(session, "user.reactivate", actor="ancien@example.org", object_type="user", object_id=target.id)
    old.at = dt.datetime(2025, 1, 15, 12)
    session.commit()

    def sentences(query: str) -> list[str]:
        page = text_of(other.get(f"/admin/audit?lang=en&{query}"))
        return [
            line
            for line in (
                "made a password reset link for zoe@example.org",
                "deactivated zoe@example.org",
                "reactivated zoe@example.org",
                "logged in",
            )
            if line in page
        ]

    assert sentences("actor=gagnon") == ["made a password reset link for zoe@example.org", "logged in"]
    assert sentences("object=ZOE") == [
        "made a password reset link for zoe@example.org",
        "deactivated zoe@example.org",
        "reactivated zoe@example.org",
    ]
    assert sentences("object=personne") == []
    assert sentences("object=zoe&action=user.deactivate") == ["deactivated zoe@example.org"]
    assert sentences("object=zoe&since=2025-01-01&until=2025-01-31") == ["reactivated zoe@example.org"]
    # an event of an actor no longer known, and an action with no sentence of its own: still in words
    audit(session, "plugin.thing", actor="scheduler", object_type="campaign", object_id=12)
    session.commit()
    assert "scheduler: plugin.thing (campaign #12)" in text_of(other.get("/admin/audit?lang=en&action=plugin.thing"))
    assert "scheduler : plugin.thing (campagne #12)" in text_of(other.get("/admin/audit?lang=fr&action=plugin.thing"))


def test_the_log_names_the_role_the_actor_had_then(login_as, session):
    admin = login_as("admin")
    _named(session, admin.user, "Alice")
    staff = login_as("staff")
    _named(session, staff.user, "Sam")
    admin.post(f"/admin/users/{staff.user.id}/role", data={"role": "evaluator", "organisation": ""})
    page = text_of(admin.get("/admin/audit?lang=en&actor=sam"))
    assert "Sam (partnership staff) logged in" in page  # staff when they logged in, an evaluator now
    assert "Alice (administrator) made Sam" not in page  # the actor filter keeps Alice's events out


def test_feature_objects_are_named_and_found_by_words(login_as, session):
    from segments.models import Segment

    segment = Segment(name="Amateurs de danse")
    session.add(segment)
    session.flush()
    audit(session, "segment.create", actor="staff@x.org", object_type="segment", object_id=segment.id)
    audit(session, "segment.create", actor="staff@x.org", object_type="segment", object_id=segment.id + 1)
    session.commit()
    admin = login_as("admin")
    page = text_of(admin.get("/admin/audit?lang=en&object=DANSE"))
    assert "staff@x.org: Segment created (Amateurs de danse)" in page
    assert f"(segment #{segment.id + 1})" not in page  # another segment, not named so
    assert f"(segment #{segment.id + 1})" in text_of(admin.get("/admin/audit?lang=en&action=segment.create"))


def test_the_venue_sees_the_sender_an_administrator_set_beside_its_contact_list(session, launched, login_as):
    district, experiment = launched
    org = district.orgs[0]
    venue = login_as("venue", org)
    page = text_of(venue.get("/experiments/?lang=en"))
    assert f"No sender is set for {org.name} yet" in page
    admin = login_as("admin")
    assert (
        admin.post(
            f"/admin/organisations/{org.id}",
            data={
                "name": org.name,
                "kind": org.kind,
                "disciplines": org.discipline_list,
                "sender_name": "Billetterie du Quartier",
                "sender_email": "billets@quartier.example",
            },
        ).status_code
        == 302
    )
    page = text_of(venue.get(f"/experiments/{experiment.id}?lang=fr"))
    assert "Envoyez les messages au nom de Billetterie du Quartier <billets@quartier.example>" in page
