"""A rule's members and breakdown counted with numpy over the kept profile columns
(``segments.profile_columns``): the same answer as the profile table's scan, read from a few arrays.

It answers a rule on the profiles' date whose every condition the profile row answers
(``segments.query.on_base``) and whose organisations all fit the mask; anything else (a venue, a
window the profiles do not hold, an organisation beyond the mask, another date) is None, and the
caller scans the tables. Each condition is evaluated as the SQL compiler writes it: NULL-free
(``x IS NOT NULL AND x op v``), so that NOT is two-valued; sets are bit tests on the masks; days
since a purchase compare the purchase date with ``as_of`` minus the days.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from sqlalchemy.orm import Session

from core.models import DISCIPLINES
from segments.profile_columns import KeptColumn, day_number, kept_columns
from segments.profiles import LIFECYCLE_STAGES, MAX_MASK_ORGANISATION_ID
from segments.query import BREAKDOWN_COLUMNS, FLIPPED, base_column, mask_ids, on_base
from segments.rules import Condition, Group, Node, Not, compare, iter_conditions


@dataclass(frozen=True)
class Breakdown:
    """What one pass over a rule's members finds (this module's or the profile table's scan,
    ``segments.preview._scan``): their ids, their number, their count per life-cycle stage, the
    contactable ones and the count per organisation of the mask."""

    ids: np.ndarray
    size: int
    stages: dict[str, int]
    contactable: int
    per_org: dict[str, int]
    # The same cells' sums of cell keys (core.privacy.Cell): their fingerprints.
    size_keys: int = 0
    stage_keys: dict[str, int] | None = None
    contactable_keys: int = 0
    org_keys: dict[str, int] | None = None


def answers(node: Node, organisations: Mapping[str, int]) -> bool:
    """Whether the kept columns answer every condition of ``node`` (see the module's docstring)."""
    return all(on_base(cond, organisations) for cond in iter_conditions(node))


def breakdown(session: Session, node: Node, as_of: dt.date, stored: dt.date | None, orgs: list) -> Breakdown | None:
    """The breakdown of ``node`` on ``as_of``, its members' ids in spectator order, or None when the
    kept columns cannot answer it (then scan the tables).

    :param orgs: (id, slug, name) of every organisation; the breakdown counts each one's members.
    """
    slugs = {slug: id_ for id_, slug, _name in orgs}
    if stored is None or as_of != stored or any(id_ > MAX_MASK_ORGANISATION_ID for id_ in slugs.values()):
        return None
    if not answers(node, slugs):
        return None
    names = {base_column(cond) for cond in iter_conditions(node)}
    columns = kept_columns(session, [*BREAKDOWN_COLUMNS, *sorted(names)], as_of)
    if columns is None:
        return None
    chosen = _node(node, columns, as_of, slugs)
    keys = columns["cell_key"].values[chosen].astype(np.int64)  # sums of cell keys in 64 bits
    stage = columns["lifecycle"]
    codes = stage.values[chosen]
    stages, stage_keys = {}, {}
    for name in LIFECYCLE_STAGES:
        hit = codes == (stage.vocabulary.index(name) if name in stage.vocabulary else -2)
        stages[name], stage_keys[name] = int(np.count_nonzero(hit)), int(keys[hit].sum())
    reach = columns["contactable"].values[chosen] == 1
    masks = columns["organisation_mask"].values[chosen]
    per_org, org_keys = {}, {}
    for id_, slug, _name in orgs:
        hit = (masks & (1 << id_)) != 0
        per_org[slug], org_keys[slug] = int(np.count_nonzero(hit)), int(keys[hit].sum())
    return Breakdown(
        ids=columns["spectator_id"].values[chosen].astype(np.int64),
        size=int(np.count_nonzero(chosen)),
        size_keys=int(keys.sum()),
        stages=stages,
        stage_keys=stage_keys,
        contactable=int(np.count_nonzero(reach)),
        contactable_keys=int(keys[reach].sum()),
        per_org=per_org,
        org_keys=org_keys,
    )


def _node(node: Node, columns: dict[str, KeptColumn], as_of: dt.date, slugs: Mapping[str, int]) -> np.ndarray:
    """The rows (a boolean array) that satisfy ``node``."""
    rows = len(columns["spectator_id"].values)
    if isinstance(node, Group):
        parts = [_node(child, columns, as_of, slugs) for child in node.children]
        if not parts:
            return np.full(rows, node.kind == "all")
        return functools.reduce(np.logical_and if node.kind == "all" else np.logical_or, parts)
    if isinstance(node, Not):
        return ~_node(node.child, columns, as_of, slugs)
    return _condition(node, columns[base_column(node)], as_of, slugs)


def _mask_test(values: np.ndarray, op: str, mask: int, complete: bool = True) -> np.ndarray:
    """any / all / none of the bits of ``mask`` (as ``segments.query._mask_test``)."""
    if op == "any":
        return (values & mask) != 0 if mask else np.zeros(len(values), dtype=bool)
    if op == "all":
        return (values & mask) == mask if complete else np.zeros(len(values), dtype=bool)
    return (values & mask) == 0


def _days_since(values: np.ndarray, op: str, value, as_of: dt.date) -> np.ndarray:
    """days = as_of − the date: compared on the date, as the SQL compiler does."""
    today = day_number(as_of)
    if op == "between":
        low, high = value
        return (values >= today - high) & (values <= today - low)
    return compare(values, FLIPPED[op], today - value)


def _words(column: KeptColumn, chosen) -> np.ndarray:
    """The rows whose text is one of the vocabulary's words that ``chosen(word)`` accepts."""
    accepted = np.array([bool(chosen(word)) for word in column.vocabulary] + [False])
    return accepted[column.values]  # NULL's code (-1) reads the last entry: not accepted


def _condition(cond: Condition, column: KeptColumn, as_of: dt.date, slugs: Mapping[str, int]) -> np.ndarray:
    """The rows that satisfy one condition, written as ``segments.query._condition`` writes it."""
    field, op, value = cond.field, cond.op, cond.value
    values = column.values
    if field == "organisation":
        ids = mask_ids(cond, slugs) or []  # never None here: answers() checked the organisations
        return _mask_test(values, op, sum(1 << i for i in set(ids)), complete=len(ids) == len(value))
    if field == "discipline":
        return _mask_test(values, op, sum(1 << DISCIPLINES.index(d) for d in value))
    if cond.spec.kind == "boolean":
        return column.valid() & (values == int(bool(value)))
    if op in ("in", "not_in", "starts_with"):
        listed = set(value)
        if op == "in":
            return _words(column, lambda word: word in listed)
        if op == "not_in":
            return _words(column, lambda word: word not in listed)
        return _words(column, lambda word: any(word.startswith(prefix) for prefix in listed))
    if field in ("days_since_last", "days_since_first"):
        return column.valid() & _days_since(values, op, value, as_of)
    return column.valid() & compare(values, op, value)
