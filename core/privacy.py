"""Small-cell suppression: every pooled figure hides counts under k, and what subtraction would reveal."""

from __future__ import annotations

from typing import Hashable, Iterable, Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Organisation, Setting

DEFAULT_K = 10


def district_k(session: Session, default: int = DEFAULT_K) -> int:
    """The district-wide threshold (admin setting ``k_threshold``, else the configured default)."""
    value = session.scalar(select(Setting.value).where(Setting.name == "k_threshold"))
    try:
        return max(int(value), 2) if value is not None else default
    except ValueError:
        return default


def strictest_k(session: Session, organisation_ids: Iterable[int] | None = None, default: int = DEFAULT_K) -> int:
    """The k that applies to a view over ``organisation_ids`` (all organisations when None).

    A view across several organisations uses the strictest of their thresholds and the district's.
    """
    base = district_k(session, default)
    query = select(func.max(Organisation.k_threshold))
    if organisation_ids is not None:
        ids = list(organisation_ids)
        if not ids:
            return base
        query = query.where(Organisation.id.in_(ids))
    highest = session.scalar(query)
    return max(base, highest or 0)


def is_small(count: int | None, k: int) -> bool:
    """A count that must not be shown: 1 to k-1 people (zero reveals nobody)."""
    return count is not None and 0 < count < k


def suppress(counts: Mapping[Hashable, int], k: int, total_shown: bool = True) -> dict[Hashable, int | None]:
    """Hide every count under ``k``; when a total is shown, also hide enough others that no
    hidden count can be recovered by subtraction (the smallest visible non-zero part).

    Returns a new mapping where hidden counts are ``None``.
    """
    result: dict[Hashable, int | None] = {key: (None if is_small(v, k) else v) for key, v in counts.items()}
    hidden = [key for key, v in result.items() if v is None]
    if total_shown and len(hidden) == 1:
        visible = sorted(((v, key) for key, v in result.items() if v), key=lambda t: t[0])
        if visible:
            result[visible[0][1]] = None
        # With nothing else visible the lone hidden cell equals the total: the caller hides the total.
    return result


def suppress_total(total: int | None, parts: Mapping[Hashable, int | None], k: int) -> int | None:
    """The total to show beside suppressed ``parts``: hidden when small, or when it would
    reveal a hidden part (every other part visible)."""
    if total is None or is_small(total, k):
        return None
    hidden = [v for v in parts.values() if v is None]
    if len(hidden) == 1:
        return None
    return total


def suppress_matrix(matrix: Sequence[Sequence[int]], k: int) -> list[list[int | None]]:
    """Suppress a two-way table whose row and column totals are shown.

    Primary suppression hides cells under k; complementary suppression repeats until no row or
    column has exactly one hidden cell, hiding the smallest visible non-zero cell of that line.
    """
    grid: list[list[int | None]] = [[None if is_small(v, k) else v for v in row] for row in matrix]
    changed = True
    while changed:
        changed = False
        lines = [[(r, c) for c in range(len(grid[r]))] for r in range(len(grid))]
        if grid:
            lines += [[(r, c) for r in range(len(grid))] for c in range(len(grid[0]))]
        for line in lines:
            hidden = [pos for pos in line if grid[pos[0]][pos[1]] is None and matrix[pos[0]][pos[1]]]
            if len(hidden) == 1:
                visible = [(grid[r][c], (r, c)) for r, c in line if grid[r][c]]
                if visible:
                    _, (r, c) = min(visible)
                    grid[r][c] = None
                    changed = True
    return grid


def share(part: int | None, whole: int | None) -> float | None:
    """``part / whole`` or None when either is hidden or the whole is zero."""
    if part is None or not whole:
        return None
    return part / whole
