"""``pilot segment preview`` and the preview it prints: shape, suppression under k, user errors; snapshots."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from core.models import Organisation, Setting
from segments.models import Segment, SegmentSnapshot, SegmentVersion, SnapshotMember
from segments.preview import members, preview
from segments.snapshots import take_snapshot
from tests.segments.district import AS_OF, PAST, small_district  # noqa: F401  (fixture)

CROSS_SELL = {
    "all": [
        {"field": "discipline", "op": "any", "value": ["theatre"]},
        {"field": "discipline", "op": "none", "value": ["dance"]},
    ]
}
EVERYONE = {"field": "shows", "op": ">=", "value": 0}


def write(tmp_path, rule, name="rule.json") -> str:
    path = tmp_path / name
    path.write_text(rule if isinstance(rule, str) else json.dumps(rule), encoding="utf-8")
    return str(path)


def run_json(runner, path, *extra):
    result = runner.invoke(args=["segment", "preview", path, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_preview_json_has_the_contract_shape(runner, tmp_path, db, small_district):
    out = run_json(runner, write(tmp_path, EVERYONE))
    assert out["as_of"] == AS_OF.isoformat()
    assert out["k"] == 10
    assert out["size"] == len(small_district.universe(AS_OF))
    with db.session() as session:
        slugs = sorted(session.scalars(select(Organisation.slug)))
        expected = {}
        for slug in slugs:
            rule = {"field": "organisation", "op": "any", "value": [slug]}
            expected[slug] = len(members(session, rule))
    assert [row["organisation"] for row in out["by_organisation"]] == slugs
    for row in out["by_organisation"]:
        assert set(row) >= {"organisation", "spectators", "suppressed"}
        n = expected[row["organisation"]]
        assert row["suppressed"] is (0 < n < 10)
        assert row["spectators"] == (None if 0 < n < 10 else n)
    # A spectator counts under every organisation bought from: the counts overlap.
    assert sum(row["spectators"] or 0 for row in out["by_organisation"]) > out["size"]
    assert {row["stage"] for row in out["lifecycle"]} == {
        "new",
        "once_before",
        "convertee",
        "active",
        "super_active",
        "stale",
        "lapsed",
    }
    assert set(out["contactable"]) == {"spectators", "share", "suppressed"}


def test_counts_under_k_are_hidden_and_what_would_reveal_them(runner, tmp_path, small_district):
    out = run_json(runner, write(tmp_path, CROSS_SELL))
    for row in out["by_organisation"]:
        assert (row["spectators"] is None) is row["suppressed"]
        assert row["spectators"] is None or row["spectators"] == 0 or row["spectators"] >= 10
    stages = [row["spectators"] for row in out["lifecycle"]]
    hidden = [row for row in out["lifecycle"] if row["suppressed"]]
    assert all(n is None or n == 0 or n >= 10 for n in stages)
    assert len(hidden) != 1  # one hidden part of a shown total could be recomputed by subtraction

    # A segment of fewer than k spectators shows no size and no breakdown.
    tiny = {"field": "fsa", "op": "in", "value": ["H2X"]}
    assert 0 < len([s for s in small_district.universe(AS_OF) if small_district.fsa[s] == "H2X"]) < 10
    out = run_json(runner, write(tmp_path, tiny, "tiny.json"))
    assert out["size"] is None and out["size_suppressed"] is True
    assert all(row["spectators"] in (None, 0) for row in out["by_organisation"])
    assert out["contactable"] == {"spectators": None, "share": None, "suppressed": True}


def test_a_stricter_k_applies_to_the_view_across_organisations(runner, tmp_path, db, small_district):
    with db.session() as session:
        org = session.scalar(select(Organisation).where(Organisation.slug == "danse-sud"))
        org.k_threshold = 25
        session.commit()
    out = run_json(runner, write(tmp_path, EVERYONE))
    assert out["k"] == 25
    assert all(
        row["spectators"] is None or row["spectators"] == 0 or row["spectators"] >= 25 for row in out["by_organisation"]
    )


def test_as_of_and_text_output(runner, tmp_path, small_district):
    path = write(tmp_path, EVERYONE)
    out = run_json(runner, path, "--as-of", PAST.isoformat())
    assert out["as_of"] == PAST.isoformat() and out["size"] == len(small_district.universe(PAST))
    result = runner.invoke(args=["segment", "preview", path])
    assert result.exit_code == 0, result.output
    assert f"as of {AS_OF.isoformat()}: {len(small_district.universe(AS_OF))} spectators" in result.output
    assert "theatre-nord" in result.output


def test_user_errors_name_the_problem_and_exit_1(runner, tmp_path, app):
    cases = [
        ("{not json", "not valid JSON"),
        ({"all": [{"field": "colour", "op": "=", "value": 1}]}, "/all/0"),
        ({"all": [{"field": "shows", "op": ">=", "value": "3"}]}, "/all/0/value"),
        ({"any": []}, "/any"),
    ]
    for i, (rule, expected) in enumerate(cases):
        result = runner.invoke(args=["segment", "preview", write(tmp_path, rule, f"bad{i}.json"), "--json"])
        assert result.exit_code == 1, (rule, result.output)
        assert expected in result.output and "Traceback" not in result.output
    result = runner.invoke(args=["segment", "preview", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    result = runner.invoke(args=["segment", "preview", write(tmp_path, EVERYONE), "--as-of", "30/06/2024"])
    assert result.exit_code == 2


def test_preview_with_no_profiles_reads_the_transactions(db, small_district):
    with db.session() as session:
        session.execute(SegmentVersion.__table__.delete())
        from segments.models import SpectatorProfile

        session.execute(SpectatorProfile.__table__.delete())
        session.execute(Setting.__table__.delete())
        session.commit()
        out = preview(session, EVERYONE, AS_OF)
        assert out["profile_as_of"] is None
        assert out["size"] == len(small_district.universe(AS_OF))


def test_a_snapshot_freezes_the_members_and_never_commits(db, small_district):
    with db.session() as session:
        segment = Segment(name="Cross-sell")
        session.add(segment)
        session.flush()
        version = SegmentVersion(segment_id=segment.id, number=1, rule=CROSS_SELL)
        session.add(version)
        session.flush()
        for as_of in (AS_OF, PAST):
            snapshot = take_snapshot(session, version, as_of)
            frozen = sorted(
                session.scalars(select(SnapshotMember.spectator_id).where(SnapshotMember.snapshot_id == snapshot.id))
            )
            assert frozen == members(session, CROSS_SELL, as_of)
            assert snapshot.size == len(frozen) > 0 and snapshot.as_of == as_of
        session.rollback()
        assert session.scalar(select(func.count()).select_from(SegmentSnapshot)) == 0
