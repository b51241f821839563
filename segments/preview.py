"""Segment previews and members: one scan finds a rule's members and their breakdown (organisations,
life-cycle stages, contactable), remembered until the session writes; the protected preview shows
it as noisy figures (core.privacy)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import fields
from typing import Any

import numpy as np
from sqlalchemy import (
    Select,
    delete,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session

from core import sql
from core.kept import keep_first, read_kept
from core.models import Setting, Spectator
from core.privacy import Cell, Figure, Release, data_epoch, is_small, share, strictest_k, suppress
from core.sql_expressions import every_value, integers
from segments import column_scan, profile_columns
from segments.column_scan import Breakdown
from segments.profiles import (
    LIFECYCLE_STAGES,
    MAX_MASK_ORGANISATION_ID,
    facts_select,
    profiles_as_of,
    window_bounds,
)
from segments.query import (
    BREAKDOWN_COLUMNS,
    ORG,
    P,
    T,
    as_node,
    compile_rule,
    mask_and,
    plan_rule,
)
from segments.rules import Node

# --- previews and members -------------------------------------------------------------------------


def organisation_ids(session: Session) -> dict[str, int]:
    return dict(session.execute(select(ORG.c.slug, ORG.c.id)).all())


def default_as_of(session: Session) -> dt.date:
    """The profiles' date (the fast path), or today when there are no profiles."""
    return profiles_as_of(session) or dt.date.today()


def members_select(session: Session, rule: Any, as_of: dt.date | None = None) -> Select:
    """The compiled SELECT of a rule's spectator ids, for this database's profiles."""
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    sql.without_jit(session)
    return compile_rule(node, as_of, stored, organisation_ids(session))


def members(session: Session, rule: Any, as_of: dt.date | None = None) -> list[int]:
    """The sorted ids of the spectators matching ``rule`` (dict, JSON text or tree) on ``as_of``
    (default: the profiles' date)."""
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    if stored is not None and as_of == stored:
        # On the profiles' date, one scan finds the members and the preview's breakdown.
        return np.sort(_scan(session, node, as_of, stored).ids).tolist()
    sql.without_jit(session)
    ids = compile_rule(node, as_of, stored, organisation_ids(session)).subquery("matching")
    return np.sort(integers(session.scalar(select(every_value(ids.c.spectator_id))))).tolist()


_SCAN_KEY = "segments.query.scan"


def _forget_scan(session, *_args) -> None:
    session.info.pop(_SCAN_KEY, None)


def _forget_scan_on_write(state) -> None:
    if not state.is_select:
        _forget_scan(state.session)


def _watch(session: Session) -> None:
    """Forget the remembered scan on any write, flush or end of transaction of this session."""
    if session.info.get(_SCAN_KEY + ".watched"):
        return
    session.info[_SCAN_KEY + ".watched"] = True
    event.listen(session, "do_orm_execute", _forget_scan_on_write)
    event.listen(session, "after_flush", _forget_scan)
    event.listen(session, "after_transaction_end", _forget_scan)


def _scan(
    session: Session,
    node: Node,
    as_of: dt.date,
    stored: dt.date | None,
    orgs: list | None = None,
    with_ids: bool = True,
    columns: bool = True,
) -> Breakdown:
    """Members and breakdown of ``node`` on ``as_of`` in one query (one scan of the base); without
    ``with_ids`` the breakdown alone (``ids`` empty): a preview needs no member's id, and sending a
    large segment's ids over costs as much as counting them.

    On the profiles' date, the kept profile columns count it instead when they can answer the rule
    (segments.column_scan: a few arrays instead of the 27-column table, 40 against 310 ms for the
    pages' rule at a million spectators on SQLite); ``columns`` False always scans the table.

    The result is remembered for the session's current transaction (the same rule, date and
    profiles' date), so that ``members`` then ``preview`` of one rule, as the builder and the
    benchmark ask them, cost one scan; any write, flush, commit or rollback of the session forgets
    it. Within one transaction the second call sees what the first saw.
    """
    if orgs is None:
        orgs = session.execute(select(ORG.c.id, ORG.c.slug, ORG.c.name).order_by(ORG.c.slug)).all()
    key = (node, as_of, stored, tuple(tuple(org) for org in orgs), columns)
    transaction = session.get_transaction()
    remembered = session.info.get(_SCAN_KEY)
    if remembered is not None and transaction is not None and remembered[0] is transaction and remembered[1] == key:
        if remembered[3] or not with_ids:  # a scan with the ids serves one without
            return remembered[2]
    found = column_scan.breakdown(session, node, as_of, stored, orgs) if columns else None
    if found is not None:
        if transaction is not None:
            _watch(session)
            session.info[_SCAN_KEY] = (transaction, key, found, True)
        return found
    sql.without_jit(session)
    slugs = {slug: id_ for id_, slug, _name in orgs}
    base, where = plan_rule(node, as_of, stored, slugs, BREAKDOWN_COLUMNS)
    in_mask = [(id_, slug) for id_, slug, _name in orgs if id_ <= MAX_MASK_ORGANISATION_ID]
    # PostgreSQL counts each organisation's bit over the members as it aggregates (a test per
    # member, not per row: the scan's filter comes first); SQLite hands over the members' masks as
    # one value whose bits numpy counts, since a test per organisation and member costs it five
    # times the scan.
    count_bits_in_sql = sql.counts_bits_in_sql(session)
    # Beside each count, the sum of the members' cell keys: the cell's fingerprint (core.privacy).
    keys = base.c.cell_key
    columns = [
        every_value(base.c.spectator_id) if with_ids else literal(None),
        func.count().label("size"),
        func.coalesce(func.sum(keys), 0),
    ]
    columns += [func.count().filter(base.c.lifecycle == stage) for stage in LIFECYCLE_STAGES]
    columns += [func.coalesce(func.sum(keys).filter(base.c.lifecycle == stage), 0) for stage in LIFECYCLE_STAGES]
    columns.append(func.count().filter(base.c.contactable))
    columns.append(func.coalesce(func.sum(keys).filter(base.c.contactable), 0))
    if count_bits_in_sql:
        columns += [func.count().filter(mask_and(base.c.organisation_mask, 1 << id_) != 0) for id_, _ in in_mask]
        columns += [
            func.coalesce(func.sum(keys).filter(mask_and(base.c.organisation_mask, 1 << id_) != 0), 0)
            for id_, _ in in_mask
        ]
    else:
        # Two aggregates of one query read the rows in the same order: the i-th key is the i-th mask's.
        columns.append(every_value(base.c.organisation_mask))
        columns.append(every_value(keys))
    row = session.execute(select(*columns).select_from(base).where(where)).one()
    ids = integers(row[0]) if with_ids else np.empty(0, dtype=np.int64)
    size, size_keys, row = int(row[1]), int(row[2]), row[3:]
    n_stages = len(LIFECYCLE_STAGES)
    stages = {stage: int(n) for stage, n in zip(LIFECYCLE_STAGES, row)}
    stage_keys = {stage: int(n) for stage, n in zip(LIFECYCLE_STAGES, row[n_stages:])}
    row = row[2 * n_stages :]
    contactable, contactable_keys, row = int(row[0]), int(row[1]), row[2:]
    if count_bits_in_sql:
        per_org = {slug: int(n) for (_id, slug), n in zip(in_mask, row)}
        org_keys = {slug: int(n) for (_id, slug), n in zip(in_mask, row[len(in_mask) :])}
    else:
        masks, member_keys = integers(row[0]), integers(row[1])
        per_org = {slug: int(np.count_nonzero(masks & (1 << id_))) for id_, slug in in_mask}
        org_keys = {slug: int(member_keys[(masks & (1 << id_)) != 0].sum()) for id_, slug in in_mask}
    beyond = [(id_, slug) for id_, slug, _name in orgs if id_ > MAX_MASK_ORGANISATION_ID]
    if beyond:
        # Organisations whose id does not fit the mask: count their buyers among the members.
        _, high = window_bounds(as_of, None)
        members_ids = select(base.c.spectator_id).where(where)
        buyers = (
            select(T.c.organisation_id, T.c.spectator_id)
            .where(
                T.c.organisation_id.in_([i for i, _ in beyond]),
                T.c.purchased_at < high,
                T.c.spectator_id.in_(members_ids),
            )
            .distinct()
            .subquery("buyers")
        )
        sp = Spectator.__table__
        counted = {
            org: (n, k)
            for org, n, k in session.execute(
                select(buyers.c.organisation_id, func.count(), func.coalesce(func.sum(sp.c.cell_key), 0))
                .join(sp, sp.c.id == buyers.c.spectator_id)
                .group_by(buyers.c.organisation_id)
            ).all()
        }
        per_org.update({slug: int(counted.get(id_, (0, 0))[0]) for id_, slug in beyond})
        org_keys.update({slug: int(counted.get(id_, (0, 0))[1]) for id_, slug in beyond})
    found = Breakdown(ids, size, stages, contactable, per_org, size_keys, stage_keys, contactable_keys, org_keys)
    if transaction is not None:
        _watch(session)
        session.info[_SCAN_KEY] = (transaction, key, found, with_ids)
    return found


def preview(session: Session, rule: Any, as_of: dt.date | None = None) -> dict:
    """The size of a rule's segment and its breakdowns, small counts suppressed (DESIGN.md §5, §10).

    :param rule: a dict, JSON text or parsed tree; a bad rule raises ``segments.rules.RuleError``.
    :param as_of: the date to evaluate on (default: the profiles' date, else today).
    :returns: ``{"as_of", "profile_as_of", "size", "size_suppressed", "k", "by_organisation":
        [{"organisation": slug, "name", "spectators", "suppressed"}], "lifecycle": [{"stage",
        "spectators", "suppressed"}], "contactable": {"spectators", "share", "suppressed"}}``.
        A spectator counts under every organisation they bought from up to ``as_of``; every count
        under k is None with ``suppressed`` true, and so is what subtraction would reveal.
    """
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    orgs = session.execute(select(ORG.c.id, ORG.c.slug, ORG.c.name).order_by(ORG.c.slug)).all()
    found = _scan(session, node, as_of, stored, orgs, with_ids=False)
    size, stages, contactable, per_org = found.size, found.stages, found.contactable, found.per_org

    k = strictest_k(session)
    size_hidden = is_small(size, k)
    # A spectator counts under several organisations: no total adds them up, nothing to subtract.
    org_shown = suppress(per_org, k, total_shown=False)
    stage_shown = suppress(stages, k, total_shown=True)
    reach = suppress({"yes": contactable, "no": size - contactable}, k, total_shown=True)
    if size_hidden:
        org_shown = {key: (None if n else n) for key, n in org_shown.items()}
        stage_shown = {key: (None if n else n) for key, n in stage_shown.items()}
        reach = {"yes": None, "no": None}
    names = {slug: name for _id, slug, name in orgs}
    return {
        "as_of": as_of.isoformat(),
        "profile_as_of": stored.isoformat() if stored else None,
        "size": None if size_hidden else size,
        "size_suppressed": size_hidden,
        "k": k,
        "by_organisation": [
            {
                "organisation": slug,
                "name": names[slug],
                "spectators": org_shown[slug],
                "suppressed": org_shown[slug] is None,
            }
            for slug in sorted(per_org)
        ],
        "lifecycle": [
            {"stage": stage, "spectators": stage_shown[stage], "suppressed": stage_shown[stage] is None}
            for stage in LIFECYCLE_STAGES
        ],
        "contactable": {
            "spectators": reach["yes"],
            "share": None if size_hidden or reach["yes"] is None else share(reach["yes"], size),
            "suppressed": reach["yes"] is None,
        },
    }


def universe(session: Session, as_of: dt.date | None = None) -> Cell:
    """The fingerprint of every spectator a rule can select on ``as_of`` (those who bought something
    up to then): the whole whose complement a preview's size must not reveal."""
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    if stored is not None and as_of == stored:
        return _kept_universe(session, stored)
    facts = facts_select(as_of, columns={"spectator_id", "cell_key"}).subquery("facts")
    count, keys = session.execute(select(func.count(), func.sum(facts.c.cell_key))).one()
    return Cell.of(count, keys)


UNIVERSE_SETTING = "preview:universe"


def _kept_universe(session: Session, stored: dt.date) -> Cell:
    """:func:`universe` on the profiles' date: every profile's cell key.

    The kept profile columns (segments.profile_columns) hold them all, so the universe is their
    length and their sum, read from the process's copy that the rule's own scan loads: no table read
    in a request. Without kept columns (before a refresh keeps them, or after a repair drops them)
    the profile table is counted once per data epoch and the count kept (a third of a second at a
    million spectators, four seconds on a table the refresh has just rewritten): only a profile
    refresh writes the profiles, and it moves the epoch (core.privacy); two previews counting it at
    once keep one."""
    columns = profile_columns.kept_columns(session, ["cell_key"], stored)
    if columns is not None:
        keys = columns["cell_key"].values
        return Cell(len(keys), int(keys.sum(dtype=np.int64)))
    epoch = data_epoch(session)
    kept = read_kept(session, UNIVERSE_SETTING)
    if kept is not None and kept.get("epoch") == epoch and kept.get("as_of") == stored.isoformat():
        return Cell(int(kept["count"]), int(kept["keys"]))
    count, keys = session.execute(select(func.count(), func.sum(P.c.cell_key))).one()
    cell = Cell.of(count, keys)
    keep_first(
        session,
        UNIVERSE_SETTING,
        {"epoch": epoch, "as_of": stored.isoformat(), "count": cell.count, "keys": cell.keysum},
    )
    return cell


KEPT_SCAN_PREFIX = "preview-scan:"


def _kept_scan(session: Session, node: Node, as_of: dt.date, stored: dt.date | None, orgs: list) -> Breakdown:
    """The breakdown of :func:`_scan` for the web pages' previews, kept per data epoch: asking a rule
    again (the segment's page, the builder after going back, another worker) reads what its first
    preview counted instead of scanning every profile again (a quarter of a second at a million
    spectators).

    Only on the profiles' date: only a profile refresh writes the profiles, and it advances the epoch
    (core.privacy), so a kept breakdown of the current epoch is the scan's own result; on any other
    date the rule reads the transactions and consents, which an erasure changes without a new epoch,
    so it is scanned. Kept under ``preview-scan:<epoch>:<digest of the rule, date and organisations>``;
    keeping one drops those of earlier epochs. Every preview is a question of the reader's budget
    (core.privacy.ask_question), which bounds how many an epoch keeps.
    """
    if stored is None or as_of != stored:
        return _scan(session, node, as_of, stored, orgs, with_ids=False)
    epoch = data_epoch(session)
    # the question's canonical name (the rule and date), and the organisations the breakdown counts
    asked = question_key(node, as_of) + json.dumps([[id_, slug] for id_, slug, _name in orgs], ensure_ascii=False)
    name = f"{KEPT_SCAN_PREFIX}{epoch}:{hashlib.sha256(asked.encode()).hexdigest()[:32]}"
    kept = read_kept(session, name)
    if kept is not None:
        try:
            return Breakdown(ids=np.empty(0, dtype=np.int64), **kept)
        except TypeError:  # kept by a version of the breakdown with other fields: counted again
            pass
    found = _scan(session, node, as_of, stored, orgs, with_ids=False)
    session.execute(
        delete(Setting).where(
            Setting.name.like(f"{KEPT_SCAN_PREFIX}%"), ~Setting.name.like(f"{KEPT_SCAN_PREFIX}{epoch}:%")
        ),
        execution_options={"synchronize_session": False},
    )
    keep_first(session, name, {f.name: getattr(found, f.name) for f in fields(found) if f.name != "ids"})
    return found


def question_key(node: Node, as_of: dt.date) -> str:
    """The name of a preview question in the noise's seed: the parsed rule in canonical JSON and
    the date, so that asking it again gives the same figures (core.privacy)."""
    return "preview:" + json.dumps(
        {"rule": node.to_json(), "as_of": as_of.isoformat()}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def protected_preview(session: Session, rule: Any, release: Release, as_of: dt.date | None = None) -> dict:
    """The preview shown in the web pages: every figure noisy and thresholded (core.privacy).

    The same shape as :func:`preview` (``size``, ``size_suppressed``, ``by_organisation``,
    ``lifecycle``, ``contactable``), with ``k`` the release's, each hidden figure None with
    ``suppressed`` true and a ``status`` ("shown", "small": fewer than k, "all_but": all but fewer
    than k) and a ``text`` that says it. Each figure has noise of its own, keyed by the question
    (:func:`question_key`), the field (``size``, ``org.<slug>``, ``stage.<stage>``,
    ``contactable``: two fields over one set are independent draws) and the set's fingerprint.
    The size is also hidden when the noisy complement (noisy universe minus the noisy size) is
    under k; each breakdown figure when the noisy size minus it is under k. When the size is
    hidden, so is every breakdown figure.

    :returns: that dict, plus ``epoch`` (the data epoch the figures belong to).
    """
    node = as_node(rule)
    stored = profiles_as_of(session)
    as_of = as_of or stored or dt.date.today()
    orgs = session.execute(select(ORG.c.id, ORG.c.slug, ORG.c.name).order_by(ORG.c.slug)).all()
    found = _kept_scan(session, node, as_of, stored, orgs)
    whole = release.noisy(f"universe.{as_of.isoformat()}", universe(session, as_of))
    # The question itself keys the noise too (core.privacy, "Why the question keys the noise").
    asked = question_key(node, as_of)
    size = release.figure(f"{asked}.size", Cell(found.size, found.size_keys), whole=whole)

    def part(name: str, cell: Cell) -> Figure:
        if size.status != "shown":
            return Figure(None, "small", release.k)
        return release.figure(f"{asked}.{name}", cell, whole=size.value)

    names = {slug: name for _id, slug, name in orgs}
    orgs_shown = {
        slug: part(f"org.{slug}", Cell(found.per_org[slug], (found.org_keys or {}).get(slug, 0)))
        for slug in sorted(found.per_org)
    }
    stages = {
        stage: part(f"stage.{stage}", Cell(found.stages[stage], (found.stage_keys or {}).get(stage, 0)))
        for stage in LIFECYCLE_STAGES
    }
    reach = part("contactable", Cell(found.contactable, found.contactable_keys))
    return {
        "as_of": as_of.isoformat(),
        "profile_as_of": stored.isoformat() if stored else None,
        "size": size.value,
        "size_suppressed": size.suppressed,
        "size_status": size.status,
        "size_text": size.label(),
        "k": release.k,
        "epoch": release.epoch,
        "by_organisation": [
            {
                "organisation": slug,
                "name": names[slug],
                "spectators": fig.value,
                "suppressed": fig.suppressed,
                "status": fig.status,
                "text": fig.label(),
            }
            for slug, fig in orgs_shown.items()
        ],
        "lifecycle": [
            {
                "stage": stage,
                "spectators": fig.value,
                "suppressed": fig.suppressed,
                "status": fig.status,
                "text": fig.label(),
            }
            for stage, fig in stages.items()
        ],
        "contactable": {
            "spectators": reach.value,
            "share": share(reach.value, size.value) if reach.value is not None else None,
            "suppressed": reach.suppressed,
            "status": reach.status,
            "text": reach.label(),
        },
    }
