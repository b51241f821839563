"""Secondary suppression of a two-way table of exact counts published with its margins."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from core.privacy import is_small


@dataclass
class SuppressedTable:
    """A two-way table as it may be published: hidden figures are ``None``.

    ``row_totals``/``column_totals``/``total`` are None as a whole when the caller does not
    publish them; ``hidden`` lists the hidden inner cells as ``(row, column)``.
    """

    cells: list[list[int | None]]
    row_totals: list[int | None] | None
    column_totals: list[int | None] | None
    total: int | None
    hidden: set[tuple[int, int]] = field(default_factory=set)

    def shown(self, row: int, column: int) -> bool:
        return (row, column) not in self.hidden


def _table_bridges(hidden: set[tuple[int, int]], rows: int, columns: int) -> list[tuple[int, int]]:
    """The hidden positions that are bridges of the graph rows–columns whose edges are ``hidden``:
    exactly the hidden figures that the published ones determine (see :func:`suppress_table`)."""
    adjacency: dict[tuple[str, int], list[tuple[tuple[str, int], tuple[int, int]]]] = {}
    for r, c in hidden:
        adjacency.setdefault(("r", r), []).append((("c", c), (r, c)))
        adjacency.setdefault(("c", c), []).append((("r", r), (r, c)))
    order: dict = {}
    low: dict = {}
    bridges: list[tuple[int, int]] = []
    counter = 0
    for root in sorted(adjacency):
        if root in order:
            continue
        order[root] = low[root] = counter
        counter += 1
        stack: list[tuple[tuple[str, int], tuple[int, int] | None, Iterator[tuple[tuple[str, int], tuple[int, int]]]]]
        stack = [(root, None, iter(adjacency[root]))]
        while stack:
            vertex, via, edges = stack[-1]
            advanced = False
            for other, edge in edges:
                if edge == via:
                    continue
                if other in order:
                    low[vertex] = min(low[vertex], order[other])
                    continue
                order[other] = low[other] = counter
                counter += 1
                stack.append((other, edge, iter(adjacency[other])))
                advanced = True
                break
            if not advanced:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[vertex])
                    if low[vertex] > order[parent]:
                        assert via is not None  # only the root has no edge, and it has no parent
                        bridges.append(via)
    return sorted(bridges)


def _cheapest_cycle(
    grid: list[list[int]], hidden: set[tuple[int, int]], bridge: tuple[int, int], cost
) -> list[tuple[int, int]]:
    """The visible positions to hide so that ``bridge`` lies on a cycle of hidden positions:
    the cheapest path from its row to its column (hidden positions cost nothing), by Dijkstra."""
    import heapq

    rows, columns = len(grid), len(grid[0])
    start, goal = ("r", bridge[0]), ("c", bridge[1])
    best = {start: 0.0}
    previous: dict = {}
    queue = [(0.0, start)]
    while queue:
        distance, vertex = heapq.heappop(queue)
        if vertex == goal:
            break
        if distance > best.get(vertex, math.inf):
            continue
        kind, index = vertex
        neighbours = [("c", c) for c in range(columns)] if kind == "r" else [("r", r) for r in range(rows)]
        for other in neighbours:
            position = (index, other[1]) if kind == "r" else (other[1], index)
            if position == bridge:
                continue
            step = 0.0 if position in hidden else cost(position)
            if distance + step < best.get(other, math.inf):
                best[other] = distance + step
                previous[other] = (vertex, position)
                heapq.heappush(queue, (distance + step, other))
    path, vertex = [], goal
    while vertex in previous:
        vertex, position = previous[vertex]
        if position not in hidden:
            path.append(position)
    return path


def suppress_table(
    cells: Sequence[Sequence[int]],
    k: int,
    *,
    primary: Sequence[Sequence[bool]] | None = None,
    row_totals: bool = False,
    column_totals: bool = True,
    total: bool = True,
) -> SuppressedTable:
    """Primary and secondary suppression of a two-way table of counts published with its margins.

    Meant for tables whose figures must stay exact (a report's estimates: noise would bias them),
    so that hiding is the only protection. The table is read as a reader holding every published
    figure would read it: the inner cells, the published margins (row totals, column totals, the
    grand total), each line adding up. Unpublished margins are unknowns to that reader.

    - Primary: a cell or margin of 1 to k-1 (:func:`is_small`) is hidden, and so is every cell that
      ``primary`` marks (the caller hides a cell whose outcome count is small, say).
    - Exactness: put the table with its margins in a (R+1)×(C+1) grid whose every line sums to zero
      (the margins negated). A hidden figure is determined by the shown ones exactly when it is a
      bridge of the graph whose vertices are the grid's rows and columns and whose edges are the
      hidden figures (the unknowns of a conservation system are fixed only off every cycle). Each
      bridge (but an unpublished margin of k or more, which only adds up what a reader may
      see) is put on a cycle by hiding the cheapest path of visible figures from its row to its
      column (cost: the figure plus one, a margin costing more than every cell). This covers a
      line with one hidden cell (the classic case) and a lone row beside its total.
    - Width: in a line whose total is shown and whose hidden figures are all inner cells, the
      reader learns their sum; under k it would pin them down (hidden means at least 1 when 0 is
      shown), so the smallest visible non-zero cell of the line is hidden too (else the line's total).

    Both steps repeat until neither changes anything. Returns the published table; rates or
    estimates computed from a hidden cell must be hidden by the caller too.
    """
    n_rows = len(cells)
    n_columns = len(cells[0]) if n_rows else 0
    values = [[int(v) for v in row] for row in cells]
    if n_rows == 0 or n_columns == 0:
        return SuppressedTable(
            [list(r) for r in values],
            [] if row_totals else None,
            [0] * n_columns if column_totals else None,
            0 if total else None,
            set(),
        )
    grand = sum(map(sum, values))
    grid = [row + [sum(row)] for row in values]
    grid.append([sum(values[r][c] for r in range(n_rows)) for c in range(n_columns)] + [grand])
    R, C = n_rows, n_columns  # the margins' row and column in the grid
    hidden: set[tuple[int, int]] = set()
    unpublished: set[tuple[int, int]] = set()
    for r in range(R + 1):
        for c in range(C + 1):
            inner = r < R and c < C
            published = (
                inner
                or (r == R and c == C and total)
                or (r == R and c < C and column_totals)
                or (c == C and r < R and row_totals)
            )
            if not published and not is_small(grid[r][c], k):
                unpublished.add((r, c))  # a reader may work it out: it only adds up what it may see
            if not published or is_small(grid[r][c], k) or (inner and primary is not None and primary[r][c]):
                hidden.add((r, c))
    margin_penalty = grand + 1

    def cost(position: tuple[int, int]) -> float:
        r, c = position
        return grid[r][c] + 1 + (margin_penalty if r == R or c == C else 0)

    changed = True
    while changed:
        changed = False
        for bridge in _table_bridges(hidden, R + 1, C + 1):
            if bridge not in unpublished and bridge in _table_bridges(hidden, R + 1, C + 1):
                path = _cheapest_cycle(grid, hidden, bridge, cost)
                hidden.update(path)
                changed = changed or bool(path)
        for line in [[(r, c) for c in range(C + 1)] for r in range(R + 1)] + [
            [(r, c) for r in range(R + 1)] for c in range(C + 1)
        ]:
            *parts, line_total = line
            secret = [p for p in parts if p in hidden]
            if not secret or line_total in hidden or sum(grid[r][c] for r, c in secret) >= k:
                continue
            visible = sorted((cost(p), p) for p in parts if p not in hidden and grid[p[0]][p[1]])
            hidden.add(visible[0][1] if visible else line_total)
            changed = True

    def show(r: int, c: int) -> int | None:
        return None if (r, c) in hidden else grid[r][c]

    return SuppressedTable(
        cells=[[show(r, c) for c in range(C)] for r in range(R)],
        row_totals=[show(r, C) for r in range(R)] if row_totals else None,
        column_totals=[show(R, c) for c in range(C)] if column_totals else None,
        total=show(R, C) if total else None,
        hidden={(r, c) for r, c in hidden if r < R and c < C},
    )
