"""core.privacy: suppress_table (nothing hidden recoverable from what is shown), and the noisy figures (cell keys,
consistent noise, thresholds, accounting, the budget)."""

from __future__ import annotations

import math

import numpy as np
import opendp.prelude as dp
import pytest
from scipy.optimize import linprog
from sqlalchemy import select

from core.models import AuditEvent, Spectator
from core.privacy import (
    DEFAULT_DELTA,
    BudgetExhausted,
    Cell,
    Figure,
    Release,
    advance_epoch,
    ask,
    ask_once,
    cell_key,
    daily_accounting,
    data_epoch,
    epsilon_for,
    fill_cell_keys,
    preview_rho,
    preview_sensitivity,
)
from core.table_suppression import suppress_table
from segments.models import SpectatorProfile
from segments.preview import _scan, protected_preview
from segments.profiles import refresh_profiles
from segments.query import as_node
from tests.segments.district import AS_OF, DISTRICT_SECRET, small_district  # noqa: F401  (fixture)

K = 10


def published_bounds(table, lowest: int = 0) -> dict[tuple[str, int, int], tuple[float, float]]:
    """What a reader holding the published figures can deduce: the range (linear programming over
    every cell ≥ ``lowest``, every margin ≥ 0, every line adding up) of each hidden figure, cells and margins.

    Keys are ``("cell", r, c)``, ``("row", r, -1)``, ``("column", -1, c)``, ``("total", -1, -1)``.
    """
    rows, columns = len(table.cells), len(table.cells[0])
    figures = {("cell", r, c): table.cells[r][c] for r in range(rows) for c in range(columns)}
    figures.update({("row", r, -1): table.row_totals[r] if table.row_totals is not None else None for r in range(rows)})
    figures.update(
        {("column", -1, c): table.column_totals[c] if table.column_totals is not None else None for c in range(columns)}
    )
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
    cells = rng.choice(
        [0, 1, 2, 3, 5, 8, 12, 30, 80, 400],
        size=(rows, columns),
        p=[0.08, 0.1, 0.08, 0.08, 0.08, 0.08, 0.15, 0.15, 0.1, 0.1],
    ).tolist()
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


# --- noisy figures ----------------------------------------------------------------------------------

SECRET = "a fixed secret"


def test_cell_keys_are_keyed_stable_and_in_range():
    keys = [cell_key(SECRET, f"spectator-{n}") for n in range(2000)]
    assert all(0 <= k < 2**31 for k in keys)
    assert keys == [cell_key(SECRET, f"spectator-{n}") for n in range(2000)]
    assert len(set(keys)) == len(keys)
    assert keys != [cell_key("another secret", f"spectator-{n}") for n in range(2000)]
    # spread over the whole range (a uniform's mean is 2^30)
    assert abs(np.mean(keys) / 2**30 - 1) < 0.05


def test_the_same_set_gives_the_same_figure_and_different_sets_independent_noise():
    release = Release(SECRET, epoch=3, k=10, sigma=14.0)
    cell = Cell(500, 123456789)
    assert release.noisy("size", cell) == release.noisy("size", Cell(500, 123456789))
    rng = np.random.default_rng(1)
    # 4,000 sets of the same size but other members: the noise is N(0, σ²), uncorrelated between
    # two figure names and between neighbouring sets
    cells = [Cell(500, int(s)) for s in rng.integers(0, 2**40, 4000)]
    size = np.array([release.noisy("size", c) - 500 for c in cells], dtype=float)
    other = np.array([release.noisy("org.a", c) - 500 for c in cells], dtype=float)
    neighbour = np.array([release.noisy("size", Cell(501, c.keysum + 12345)) - 501 for c in cells], dtype=float)
    assert abs(size.mean()) < 1.0 and 13.0 < size.std() < 15.0
    assert abs(np.corrcoef(size, other)[0, 1]) < 0.05
    assert abs(np.corrcoef(size, neighbour)[0, 1]) < 0.05
    # a new epoch redraws every figure
    redrawn = Release(SECRET, epoch=4, k=10, sigma=14.0)
    again = np.array([redrawn.noisy("size", c) - 500 for c in cells], dtype=float)
    assert abs(np.corrcoef(size, again)[0, 1]) < 0.05


def test_thresholds_are_decided_on_the_noisy_figure_on_the_set_and_its_complement():
    exact = Release(SECRET, epoch=1, k=10, sigma=1e-9)
    assert exact.figure("x", Cell(0, 0)) == Figure(None, "small", 10)  # 0 is a small figure like any other
    assert exact.figure("x", Cell(9, 5)) == Figure(None, "small", 10)
    assert exact.figure("x", Cell(10, 5)) == Figure(10, "shown", 10)
    assert exact.figure("x", Cell(95, 5), whole=100) == Figure(None, "all_but", 10)
    assert exact.figure("x", Cell(90, 5), whole=100) == Figure(90, "shown", 10)
    noisy = Release(SECRET, epoch=1, k=10, sigma=14.0)
    # on the noisy figure: a set of 12 is sometimes "fewer than 10", a set of 8 sometimes shown
    statuses = {n: {noisy.figure("x", Cell(n, s)).status for s in range(200)} for n in (8, 12)}
    assert statuses[8] == statuses[12] == {"small", "shown"}
    for s in range(200):
        figure = noisy.figure("x", Cell(12, s))
        assert (figure.status == "small") == (noisy.noisy("x", Cell(12, s)) < 10)


def test_the_wording_is_the_same_everywhere_in_french_and_english(app):
    figure_small, figure_all = Figure(None, "small", 10), Figure(None, "all_but", 10)
    with app.test_request_context("/?lang=en"):
        assert figure_small.label() == "fewer than 10" and figure_all.label() == "all but fewer than 10"
        assert Figure(1234, "shown", 10).as_json() == {
            "value": 1234,
            "suppressed": False,
            "status": "shown",
            "text": "1,234",
        }
    with app.test_request_context("/?lang=fr"):
        assert figure_small.label() == "moins de 10" and figure_all.label() == "tous sauf moins de 10"


def test_accounting_matches_opendp():
    sigma, organisations = 14.0, 20
    assert preview_sensitivity(organisations) == math.sqrt(24)
    rho = preview_rho(sigma, organisations)
    assert rho == pytest.approx(24 / (2 * sigma**2))
    # composition of 50 previews in OpenDP: ρ adds up
    dp.enable_features("contrib")
    gaussian = dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float), scale=sigma
    )
    composed = dp.c.make_composition([gaussian] * 50)
    assert composed.map(math.sqrt(24)) == pytest.approx(50 * rho)
    # ε at δ: OpenDP's conversion, never above the classic bound ρ + 2·sqrt(ρ·ln(1/δ))
    day = daily_accounting(sigma, organisations, 1000)
    assert day["rho_per_day"] == pytest.approx(1000 * rho)
    bound = day["rho_per_day"] + 2 * math.sqrt(day["rho_per_day"] * math.log(1 / DEFAULT_DELTA))
    assert 0 < day["epsilon_per_day"] <= bound
    converted = dp.c.make_zCDP_to_approxDP(composed).map(math.sqrt(24)).epsilon(DEFAULT_DELTA)
    assert epsilon_for(50 * rho) == pytest.approx(converted, rel=1e-6)


def test_the_preview_fingerprints_are_the_sums_of_the_members_keys(db, small_district):
    with db.session() as session:
        keys = dict(session.execute(select(Spectator.id, Spectator.cell_key)).all())
        assert all(k == cell_key(DISTRICT_SECRET, f"spectator-{n:03d}") for n, k in enumerate(keys.values()))
        profiles = dict(session.execute(select(SpectatorProfile.spectator_id, SpectatorProfile.cell_key)).all())
        assert profiles == {s: keys[s] for s in profiles}
        rule = {"field": "shows", "op": ">=", "value": 2}
        found = _scan(session, as_node(rule), AS_OF, AS_OF)
        members = set(found.ids.tolist())
        assert found.size_keys == sum(keys[s] for s in members)
        stage = dict(session.execute(select(SpectatorProfile.spectator_id, SpectatorProfile.lifecycle)).all())
        for name, total in found.stage_keys.items():
            assert total == sum(keys[s] for s in members if stage[s] == name)
        assert sum(found.org_keys.values()) >= found.size_keys  # one person counts under each organisation


def test_asking_again_gives_the_same_preview_and_a_reformulation_a_fresh_draw(app, db, small_district):
    with app.test_request_context(), db.session() as session:
        # k = 2 and σ = 3 on this district of fifty: the figures are shown, their noise visible
        release = Release(DISTRICT_SECRET, data_epoch(session), 2, sigma=3.0)
        rule = {"field": "shows", "op": ">=", "value": 4}
        first = protected_preview(session, rule, release)
        assert first == protected_preview(session, dict(rule), release) and first["size"] is not None
        # the same members said otherwise: a fresh draw, else equal figures would say "same set"
        # (an equality oracle: tests/test_attacks.py)
        reformulations = [
            {"not": {"field": "shows", "op": "<", "value": 4}},
            {"all": [rule, {"field": "shows", "op": ">=", "value": 1}]},
            {"any": [rule, {"field": "shows", "op": ">=", "value": 5}]},
        ]
        sizes = {first["size"]} | {protected_preview(session, r, release)["size"] for r in reformulations}
        assert len(sizes) >= 3


def test_imports_and_refreshes_advance_the_epoch(app, db, small_district):
    with app.app_context(), db.session() as session:
        before = data_epoch(session)
        assert before >= 1  # the fixture's refresh
        refresh_profiles(session, as_of=AS_OF)
        assert data_epoch(session) == before + 1
        assert advance_epoch(session) == before + 2
        session.add(Spectator(key="late-comer", fsa="H2X"))
        session.flush()
        assert fill_cell_keys(session, DISTRICT_SECRET) == 1
        assert session.scalar(select(Spectator.cell_key).where(Spectator.key == "late-comer")) == cell_key(
            DISTRICT_SECRET, "late-comer"
        )


def test_the_budget_refuses_past_it_and_audits_every_question(db, make_user):
    user = make_user("staff")
    with db.session() as session:
        assert ask(session, user_id=user.id, actor=user.email, kind="preview", question={"n": 1}, budget=2) == 1
        assert ask(session, user_id=user.id, actor=user.email, kind="preview", question={"n": 2}, budget=2) == 0
        with pytest.raises(BudgetExhausted):
            ask(session, user_id=user.id, actor=user.email, kind="preview", question={"n": 3}, budget=2)
        assert ask(session, user_id=user.id, actor=user.email, kind="preview", question={"n": 4}, budget=None) is None
        session.commit()
        asked = session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "privacy.question").order_by(AuditEvent.id)
        ).all()
    assert [d["question"]["n"] for d in asked] == [1, 2, 4]


def test_a_state_read_again_is_free_and_each_new_state_a_question(db, make_user):
    """ask_once (the campaign pages): the figures of one state are asked once a day; a new state is
    a fresh draw, so a question, refused past the budget while a state already read stays free."""
    user = make_user("staff")
    state = {"campaign": 7, "figures": "campaign.abc", "baseline": {"kind": "last_days", "end": (2024, 6, 30)}}
    with db.session() as session:

        def once(question):
            return ask_once(session, user_id=user.id, actor=user.email, kind="campaign", question=question, budget=2)

        assert once(state) == 1
        assert once(dict(reversed(list(state.items())))) == 1  # the same state (a tuple reads as its JSON list)
        assert once({**state, "figures": "campaign.def"}) == 0
        with pytest.raises(BudgetExhausted):
            once({**state, "figures": "campaign.ghi"})
        assert once(state) == 0
        # the same question under another kind, or by another user, is another question
        assert ask_once(session, user_id=user.id, actor=user.email, kind="power", question=state, budget=None) is None
        session.commit()
        asked = session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "privacy.question").order_by(AuditEvent.id)
        ).all()
    assert [d["question"]["figures"] for d in asked] == ["campaign.abc", "campaign.def", "campaign.abc"]


def test_the_error_a_preview_of_a_thousand_spectators_costs_is_under_one_percent():
    """The honest user's cost, measured: median relative error of the size of 20,000 distinct
    questions of exactly 1,000 spectators (the worst case of "1,000 or more") at the default σ."""
    from core.privacy import DEFAULT_SIGMA

    release = Release(SECRET, epoch=1, k=10, sigma=DEFAULT_SIGMA)
    rng = np.random.default_rng(0)
    errors = [
        abs(release.noisy(f"preview:{i}.size", Cell(1000, int(keys))) - 1000) / 1000
        for i, keys in enumerate(rng.integers(0, 2**40, 20_000))
    ]
    median = float(np.median(errors))
    print("median relative error at 1,000 spectators:", median)
    assert median <= 0.01
