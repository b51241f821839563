"""suppress_table: small cells hidden, and nothing hidden can be recovered from what is shown."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from core.privacy import suppress_table

K = 10


def published_bounds(table, lowest: int = 0) -> dict[tuple[str, int, int], tuple[float, float]]:
    """What a reader holding the published figures can deduce: the range (linear programming over
    every cell ≥ ``lowest``, every margin ≥ 0, every line adding up) of each hidden figure, cells and margins.

    Keys are ``("cell", r, c)``, ``("row", r, -1)``, ``("column", -1, c)``, ``("total", -1, -1)``.
    """
    rows, columns = len(table.cells), len(table.cells[0])
    figures = {("cell", r, c): table.cells[r][c] for r in range(rows) for c in range(columns)}
    figures.update({("row", r, -1): table.row_totals[r] if table.row_totals is not None else None
                    for r in range(rows)})
    figures.update({("column", -1, c): table.column_totals[c] if table.column_totals is not None else None
                    for c in range(columns)})
    figures[("total", -1, -1)] = table.total
    unknown = [key for key, value in figures.items() if value is None]
    if not unknown:
        return {}
    index = {key: i for i, key in enumerate(unknown)}
    equations = []  # (terms, sign) : sum(parts) - total = 0

    def line(parts, whole):
        equations.append([(p, 1.0) for p in parts] + [(whole, -1.0)])

    for r in range(rows):
        line([("cell", r, c) for c in range(columns)], ("row", r, -1))
    for c in range(columns):
        line([("cell", r, c) for r in range(rows)], ("column", -1, c))
    line([("row", r, -1) for r in range(rows)], ("total", -1, -1))
    line([("column", -1, c) for c in range(columns)], ("total", -1, -1))
    a_eq, b_eq = [], []
    for terms in equations:
        row, rhs = np.zeros(len(unknown)), 0.0
        for key, sign in terms:
            if key in index:
                row[index[key]] += sign
            else:
                rhs -= sign * figures[key]
        a_eq.append(row)
        b_eq.append(rhs)
    bounds = [(lowest if key[0] == "cell" else 0, None) for key in unknown]
    result = {}
    for key, i in index.items():
        objective = np.zeros(len(unknown))
        objective[i] = 1.0
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        assert low.status == 0, "the published table must be consistent"
        result[key] = (low.fun, -high.fun if high.status == 0 else float("inf"))
    return result


def test_one_small_cell_in_a_row_hides_a_second_the_smallest_other():
    table = suppress_table([[3, 40, 25], [50, 60, 70]], K, row_totals=True)
    assert table.cells[0] == [None, 40, None] or table.cells[0][0] is None
    assert table.cells[0][0] is None
    hidden_row = [c for c in range(3) if table.cells[0][c] is None]
    assert len(hidden_row) >= 2 and 2 in hidden_row, "the smallest other cell of the row (25) is hidden"
    assert all(lo < hi for lo, hi in published_bounds(table).values())


def test_a_lone_row_beside_its_total_is_hidden():
    table = suppress_table([[4, 50]], K)
    assert table.cells[0][0] is None
    assert table.column_totals[0] is None, "the column total equals the hidden cell"
    assert all(lo < hi for lo, hi in published_bounds(table).values())


def test_two_tiny_cells_are_not_left_as_a_tiny_sum():
    # 1 + 1 hidden with the row total shown would say both are 1 (hidden means at least 1)
    table = suppress_table([[1, 1, 30, 40], [20, 30, 40, 50]], K, row_totals=True)
    assert table.cells[0][2] is None, "the smallest visible cell joins the hidden ones"
    bounds = published_bounds(table, lowest=1)
    assert bounds[("cell", 0, 0)][1] >= K


def test_nothing_small_nothing_hidden_and_zero_shown():
    table = suppress_table([[0, 40], [50, 60]], K, row_totals=True)
    assert table.cells == [[0, 40], [50, 60]] and table.total == 150 and not table.hidden


def test_primary_mask_hides_a_large_cell():
    table = suppress_table([[100, 40], [50, 60]], K, primary=[[True, False], [False, False]])
    assert table.cells[0][0] is None and table.cells[1][0] is None
    assert all(lo < hi for lo, hi in published_bounds(table).values())


def test_empty_and_all_small():
    assert suppress_table([], K).cells == []
    table = suppress_table([[1, 2], [3, 2]], K)
    assert table.total is None and all(v is None for row in table.cells for v in row)


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_hide_every_small_cell_and_no_hidden_figure_is_recoverable(seed):
    rng = np.random.default_rng(seed)
    rows, columns = int(rng.integers(1, 7)), int(rng.integers(1, 5))
    cells = rng.choice([0, 1, 2, 3, 5, 8, 12, 30, 80, 400], size=(rows, columns),
                       p=[.08, .1, .08, .08, .08, .08, .15, .15, .1, .1]).tolist()
    row_totals = bool(rng.integers(0, 2))
    table = suppress_table(cells, K, row_totals=row_totals)
    for r in range(rows):
        for c in range(columns):
            if 0 < cells[r][c] < K:
                assert table.cells[r][c] is None
            elif table.cells[r][c] is not None:
                assert table.cells[r][c] == cells[r][c], "shown figures stay exact"
    row_sums = [sum(row) for row in cells]
    for (kind, r, c), (low, high) in published_bounds(table).items():
        if kind == "row" and not row_totals and not 0 < row_sums[r] < K:
            continue  # an unpublished total of visible cells: worked out, but it says nothing hidden
        assert high - low >= 1 - 1e-9, f"{kind} {r},{c} is recovered exactly from the published figures: {table}"
    hidden_zero = any(table.cells[r][c] is None and cells[r][c] == 0 for r in range(rows) for c in range(columns))
    if not hidden_zero:
        for (kind, r, c), (low, high) in published_bounds(table, lowest=1).items():
            if kind == "cell" and 0 < cells[r][c] < K:
                assert high - low >= 1 - 1e-9, f"small cell {r},{c} pinned once hidden means at least 1"
