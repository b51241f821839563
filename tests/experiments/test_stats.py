"""experiments.stats against published reference cases (DESIGN.md §8) and statsmodels/scipy on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from experiments import stats, summaries

RABBITS = [(0, 6, 0, 5), (3, 3, 0, 6), (6, 0, 2, 4), (5, 1, 6, 0), (2, 0, 5, 0)]


def close(a, b, rel=1e-9, abs_=1e-12):
    return a == pytest.approx(b, rel=rel, abs=abs_)


# --- published reference cases ---------------------------------------------------------------


def test_cmh_reproduces_r_mantelhaen_test_on_rabbits():
    result = stats.cochran_mantel_haenszel(RABBITS)
    assert result.statistic == pytest.approx(3.928571, abs=5e-7)
    assert result.p_value == pytest.approx(0.04747, abs=5e-6)
    assert result.odds_ratio == pytest.approx(7.0, rel=1e-12)
    assert result.ci[0] == pytest.approx(1.026713, abs=5e-7)
    assert result.ci[1] == pytest.approx(47.725133, abs=5e-7)
    assert result.strata == 5


def test_welch_from_summary_reproduces_published_case():
    result = stats.welch_from_summary(3407, 1396.87, 52377.9767, 3461, 2422.7, 134698.29)
    assert result.test == "welch"
    assert result.diff == pytest.approx(0.29, abs=1e-12)
    assert result.p_value == pytest.approx(0.02016, abs=5e-6)
    assert result.ci[0] == pytest.approx(0.04538, abs=5e-6)
    assert result.ci[1] == pytest.approx(0.53462, abs=5e-6)


@pytest.mark.parametrize(
    "counts, shares, expected",
    [
        ([1000, 1200], [0.5, 0.5], 0.000020079),
        ([310, 98], [0.75, 0.25], 0.647434186),
    ],
)
def test_sample_ratio_mismatch_reference(counts, shares, expected):
    result = stats.sample_ratio_mismatch(counts, shares)
    # The published figures are rounded: agree to half a unit of their last digit.
    assert result.p_value == pytest.approx(expected, abs=5e-10)
    assert result.flag is (expected < 0.001)
    assert result.df == 1


def test_holm_reference():
    assert stats.holm([0.01, 0.04, 0.03, 0.005, 0.55, 0.6]) == pytest.approx([0.05, 0.12, 0.12, 0.03, 1, 1])


def test_benjamini_hochberg_reference():
    got = stats.benjamini_hochberg([0.898, 0.138, 0.007, 0.964, 0.538, 0.006, 0.138])
    assert got == pytest.approx([0.964, 0.2415, 0.0245, 0.964, 0.7532, 0.0245, 0.2415])


# --- two proportions -------------------------------------------------------------------------


def _random_counts(rng, size):
    n_c, n_a = rng.integers(200, 5000, size=2)
    p_c, p_a = rng.uniform(0.05, 0.6, size=2)
    return int(rng.binomial(n_c, p_c)), int(n_c), int(rng.binomial(n_a, p_a)), int(n_a)


def test_two_proportions_z_test_matches_statsmodels():
    rng = np.random.default_rng(20240101)
    for alpha in (0.05, 0.01, 0.1):
        for _ in range(20):
            x_c, n_c, x_a, n_a = _random_counts(rng, 1)
            got = stats.two_proportions(x_c, n_c, x_a, n_a, alpha)
            assert got.test == "z-test"
            z, p = proportions_ztest([x_a, x_c], [n_a, n_c])
            low, high = confint_proportions_2indep(x_a, n_a, x_c, n_c, method="wald", compare="diff", alpha=alpha)
            assert close(got.statistic, z) and close(got.p_value, p)
            assert close(got.ci[0], low) and close(got.ci[1], high)
            assert close(got.diff, x_a / n_a - x_c / n_c)


def test_two_proportions_switches_to_fisher_and_newcombe_on_small_counts():
    rng = np.random.default_rng(7)
    seen = 0
    for _ in range(60):
        n_c, n_a = (int(v) for v in rng.integers(3, 40, size=2))
        x_c, x_a = int(rng.binomial(n_c, 0.1)), int(rng.binomial(n_a, 0.15))
        got = stats.two_proportions(x_c, n_c, x_a, n_a)
        table = np.array([[x_a, n_a - x_a], [x_c, n_c - x_c]])
        expected = table.sum(1)[:, None] * table.sum(0)[None, :] / table.sum()
        assert got.test == ("fisher" if expected.min() < 5 else "z-test")
        if got.test != "fisher":
            continue
        seen += 1
        odds, p = sps.fisher_exact(table)
        low, high = confint_proportions_2indep(x_a, n_a, x_c, n_c, method="newcomb", compare="diff")
        assert close(got.p_value, min(1.0, p))
        assert close(got.ci[0], low) and close(got.ci[1], high)
        assert (math.isnan(odds) and math.isnan(got.statistic)) or got.statistic == odds
    assert seen > 30


def test_forced_methods_and_wilson_interval_match_statsmodels():
    got = stats.two_proportions(40, 400, 70, 410, method="fisher")
    assert got.test == "fisher"
    assert close(got.p_value, sps.fisher_exact([[70, 340], [40, 360]])[1])
    assert stats.two_proportions(2, 10, 1, 12, method="z-test").test == "z-test"
    for x, n in [(0, 10), (3, 17), (17, 17), (250, 1000)]:
        w = stats.wilson_interval(x, n, 0.1)
        low, high = proportion_confint(x, n, alpha=0.1, method="wilson")
        assert close(w.low, low) and close(w.high, high)


def test_two_proportions_rejects_impossible_counts():
    with pytest.raises(ValueError):
        stats.two_proportions(5, 4, 1, 10)
    with pytest.raises(ValueError):
        stats.two_proportions(0, 0, 1, 10)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.data())
def test_two_proportions_interval_contains_estimate(n_c, n_a, data):
    x_c = data.draw(st.integers(0, n_c))
    x_a = data.draw(st.integers(0, n_a))
    got = stats.two_proportions(x_c, n_c, x_a, n_a)
    assert got.ci[0] <= got.diff + 1e-12 and got.diff <= got.ci[1] + 1e-12
    assert 0.0 <= got.p_value <= 1.0


# --- Welch -----------------------------------------------------------------------------------


def test_welch_matches_statsmodels_and_summary_form():
    rng = np.random.default_rng(42)
    for alpha in (0.05, 0.2):
        for _ in range(15):
            control = rng.lognormal(1.0, 1.0, size=int(rng.integers(5, 3000)))
            arm = rng.lognormal(1.1, 1.3, size=int(rng.integers(5, 3000)))
            got = stats.welch_test(control, arm, alpha)
            t, p, df = ttest_ind(arm, control, usevar="unequal")
            low, high = CompareMeans(DescrStatsW(arm), DescrStatsW(control)).tconfint_diff(
                alpha=alpha, usevar="unequal"
            )
            assert close(got.statistic, t) and close(got.p_value, p) and close(got.df, df)
            assert close(got.ci[0], low) and close(got.ci[1], high)
            summary = stats.welch_from_summary(
                control.size, control.sum(), (control**2).sum(), arm.size, arm.sum(), (arm**2).sum(), alpha
            )
            assert summary.p_value == pytest.approx(got.p_value, rel=1e-7)
            assert summary.ci[0] == pytest.approx(got.ci[0], rel=1e-7)


def test_welch_tiny_p_value_does_not_underflow():
    rng = np.random.default_rng(3)
    got = stats.welch_test(rng.normal(0, 1, 5000), rng.normal(0.45, 1, 5000))
    assert 0.0 < got.p_value < 1e-80  # 1 - cdf would give 0 here
    assert math.log(got.p_value) == pytest.approx(math.log(2 * sps.t.sf(abs(got.statistic), got.df)), rel=1e-12)


def test_welch_constant_groups_and_too_few_values():
    got = stats.welch_test([2, 2, 2], [2, 2])
    assert got.p_value == 1.0 and got.ci == (0.0, 0.0)
    assert stats.welch_test([1, 1], [3, 3]).p_value == 0.0
    with pytest.raises(ValueError):
        stats.welch_test([1.0], [1.0, 2.0])


# --- relative lift ---------------------------------------------------------------------------


@pytest.mark.parametrize("x_c, n_c, x_a, n_a", [(40, 1000, 55, 1000), (9, 150, 21, 140), (5, 3000, 12, 2500)])
def test_relative_lift_of_proportions_is_statsmodels_log_ratio(x_c, n_c, x_a, n_a):
    p_c, p_a = x_c / n_c, x_a / n_a
    got = stats.relative_lift(p_c, p_c * (1 - p_c), n_c, p_a, p_a * (1 - p_a), n_a, 0.05, binary=True)
    low, high = confint_proportions_2indep(x_a, n_a, x_c, n_c, compare="ratio", method="log", alpha=0.05)
    assert got.reason is None
    assert close(got.lift, p_a / p_c - 1)
    assert close(got.ci[0], low - 1) and close(got.ci[1], high - 1)


def test_relative_lift_of_means_on_the_log_scale():
    rng = np.random.default_rng(11)
    for _ in range(10):
        c, a = rng.gamma(2.0, 3.0, 800), rng.gamma(2.2, 3.0, 900)
        got = stats.relative_lift(c.mean(), c.var(ddof=1), c.size, a.mean(), a.var(ddof=1), a.size, 0.1)
        # ln of each mean has delta-method variance s²/(n·m²) (statsmodels' standard error of the mean)
        se_c = DescrStatsW(c).std_mean / c.mean()
        se_a = DescrStatsW(a).std_mean / a.mean()
        centre = np.log(a.mean()) - np.log(c.mean())
        half = sps.norm.ppf(0.95) * math.hypot(se_c, se_a)
        assert close(got.lift, a.mean() / c.mean() - 1)
        assert close(got.ci[0], math.exp(centre - half) - 1) and close(got.ci[1], math.exp(centre + half) - 1)
        assert got.ci[0] > -1


def test_relative_lift_is_never_below_minus_100_percent():
    # small counts: the delta method on the ratio gave intervals far below -100 %
    got = stats.relative_lift(10.0, 900.0, 30, 1.0, 30.0, 30)
    assert -1 < got.ci[0] < got.lift < got.ci[1]


@pytest.mark.parametrize(
    "args, reason",
    [
        ((0.0, 0.0, 10, 0.2, 0.16, 10), "zero_mean"),
        ((0.2, 0.16, 100, 0.0, 0.0, 100), "zero_mean"),  # was [-100 %, -100 %]
        ((0.04, 0.0384, 100, 0.08, 0.0736, 100), "few_events"),  # 4 events in the control
    ],
)
def test_relative_lift_not_estimable_says_why(args, reason):
    got = stats.relative_lift(*args, binary=True)
    assert got.reason == reason
    assert math.isnan(got.lift) and all(math.isnan(v) for v in got.ci)
    summary = summaries.compare_summary("binary", np.r_[np.ones(4), np.zeros(96)], np.r_[np.ones(8), np.zeros(92)])
    assert summary["rel_lift"] is None and summary["rel_ci"] == [None, None] and summary["rel_reason"] == "few_events"


# --- CUPED -----------------------------------------------------------------------------------


def test_cuped_matches_regression_slope_and_welch_on_adjusted_values():
    rng = np.random.default_rng(5)
    x_c, x_a = rng.gamma(2, 50, 2000), rng.gamma(2, 50, 2100)
    y_c = 0.3 * x_c + rng.normal(0, 20, x_c.size)
    y_a = 0.3 * x_a + 5 + rng.normal(0, 20, x_a.size)
    got = stats.cuped(y_c, x_c, y_a, x_a, alpha=0.05)
    x, y = np.concatenate([x_c, x_a]), np.concatenate([y_c, y_a])
    theta = sps.linregress(x, y).slope
    assert close(got.theta, theta)
    adj_c, adj_a = y_c - theta * (x_c - x.mean()), y_a - theta * (x_a - x.mean())
    t, p, df = ttest_ind(adj_a, adj_c, usevar="unequal")
    low, high = CompareMeans(DescrStatsW(adj_a), DescrStatsW(adj_c)).tconfint_diff(usevar="unequal")
    assert close(got.adjusted.statistic, t) and close(got.adjusted.p_value, p, rel=1e-8)
    assert close(got.adjusted.ci[0], low) and close(got.adjusted.ci[1], high)
    raw_se = CompareMeans(DescrStatsW(y_a), DescrStatsW(y_c)).std_meandiff_separatevar
    adj_se = CompareMeans(DescrStatsW(adj_a), DescrStatsW(adj_c)).std_meandiff_separatevar
    assert close(got.variance_reduction, 1 - adj_se**2 / raw_se**2)
    assert got.variance_reduction > 0.5  # a strongly predictive covariate removes most variance
    assert close(got.adjusted.diff, (y_a.mean() - y_c.mean()) - theta * (x_a.mean() - x_c.mean()))


def test_cuped_with_constant_covariate_changes_nothing():
    got = stats.cuped([1.0, 2.0, 3.0], [4, 4, 4], [2.0, 3.0, 5.0], [4, 4, 4])
    assert got.theta == 0.0 and got.variance_reduction == 0.0
    assert close(got.adjusted.p_value, stats.welch_test([1, 2, 3], [2, 3, 5]).p_value)


# --- CMH and strata --------------------------------------------------------------------------


def test_cmh_matches_statsmodels_stratified_table():
    rng = np.random.default_rng(99)
    for _ in range(20):
        k = int(rng.integers(2, 8))
        tables = []
        for _ in range(k):
            n_t, n_c = (int(v) for v in rng.integers(20, 400, size=2))
            p_c = rng.uniform(0.1, 0.5)
            tables.append((int(rng.binomial(n_t, p_c * 1.3)), 0, int(rng.binomial(n_c, p_c)), 0))
            tables[-1] = (tables[-1][0], n_t - tables[-1][0], tables[-1][2], n_c - tables[-1][2])
        got = stats.cochran_mantel_haenszel(tables, alpha=0.1)
        reference = StratifiedTable(
            np.array([[[a, b], [c, d]] for a, b, c, d in tables], dtype=float).transpose(1, 2, 0)
        )
        test = reference.test_null_odds(correction=True)
        assert close(got.statistic, test.statistic)
        assert close(got.p_value, sps.chi2.sf(test.statistic, 1))  # statsmodels' 1 − cdf loses tiny p-values
        assert close(got.odds_ratio, reference.oddsratio_pooled)
        low, high = reference.oddsratio_pooled_confint(alpha=0.1)
        assert close(got.ci[0], low) and close(got.ci[1], high)


def test_cmh_continuity_correction_only_when_delta_reaches_one_half():
    # As R: no ½ correction when |Σ(a − E)| < ½ (statsmodels always subtracts it).
    tables = [(5, 5, 5, 5), (3, 4, 3, 4)]
    got = stats.cochran_mantel_haenszel(tables)
    uncorrected = stats.cochran_mantel_haenszel(tables, correct=False)
    assert got.statistic == uncorrected.statistic


def test_cmh_skips_single_observation_strata():
    with_singletons = stats.cochran_mantel_haenszel(RABBITS + [(1, 0, 0, 0), (0, 0, 0, 1)])
    assert with_singletons == stats.cochran_mantel_haenszel(RABBITS)


def _one_armed_strata(rng):
    """Three strata with both arms, plus two venues whose every recipient landed in one arm, with
    rates far from the others (merging them with anything biases the estimate)."""
    y_c, s_c, y_a, s_a = [], [], [], []
    for stratum, (n_c, p_c, n_a, p_a) in enumerate(
        [(400, 0.10, 420, 0.14), (300, 0.30, 280, 0.33), (200, 0.05, 210, 0.08), (0, 0, 150, 0.9), (120, 0.8, 0, 0)]
    ):
        y_c.append(rng.random(n_c) < p_c)
        y_a.append(rng.random(n_a) < p_a)
        s_c.append(np.full(n_c, stratum))
        s_a.append(np.full(n_a, stratum))
    return (
        np.concatenate(y_c).astype(float),
        np.concatenate(s_c),
        np.concatenate(y_a).astype(float),
        np.concatenate(s_a),
    )


def test_cmh_leaves_out_strata_lacking_an_arm():
    y_c, s_c, y_a, s_a = _one_armed_strata(np.random.default_rng(3))
    got = summaries.stratified_summary("binary", y_c, s_c, y_a, s_a, ["a", "b", "c", "solo-test", "solo-control"])
    tables = np.empty((2, 2, 3))
    for k in range(3):
        a, c = y_a[s_a == k], y_c[s_c == k]
        tables[:, :, k] = [[a.sum(), a.size - a.sum()], [c.sum(), c.size - c.sum()]]
    ref = StratifiedTable(tables)
    assert close(got["statistic"], ref.test_null_odds(correction=True).statistic)
    assert close(got["odds_ratio"], ref.oddsratio_pooled)
    assert close(got["odds_ratio_ci"][0], ref.oddsratio_pooled_confint()[0])
    assert got["strata"] == 3 and got["left_out_strata"] == ["solo-test", "solo-control"]
    assert got["left_out"] == 270
    assert "merged_strata" not in got


def test_post_stratified_leaves_out_strata_with_fewer_than_two_per_arm():
    rng = np.random.default_rng(9)
    y_c, s_c, y_a, s_a = _one_armed_strata(rng)
    # a venue with a single control recipient: no variance, left out as well
    y_c, s_c = np.r_[y_c, 50.0], np.r_[s_c, 5]
    y_a, s_a = np.r_[y_a, rng.normal(40, 5, 30)], np.r_[s_a, np.full(30, 5)]
    got = summaries.stratified_summary("continuous", y_c, s_c, y_a, s_a, list("abcdef"))
    keep_c, keep_a = s_c < 3, s_a < 3
    diff, ci, p = _post_stratified_by_hand(y_c[keep_c], s_c[keep_c], y_a[keep_a], s_a[keep_a], 0.05)
    assert close(got["abs_lift"], diff) and close(got["abs_ci"][1], ci[1]) and close(got["p_value"], p)
    assert got["left_out_strata"] == ["d", "e", "f"] and got["left_out"] == 150 + 120 + 31
    assert got["strata"] == 3


def test_no_estimable_stratum_gives_null_estimates():
    got = summaries.stratified_summary("binary", [1.0, 0.0], [0, 0], [1.0, 1.0], [1, 1], ["x", "y"])
    assert got["statistic"] is None and got["strata"] == 0 and got["left_out"] == 4


def _post_stratified_by_hand(y_c, s_c, y_a, s_a, alpha):
    total = y_c.size + y_a.size
    diff = var = 0.0
    for k in sorted(set(s_c) | set(s_a)):
        c, a = y_c[s_c == k], y_a[s_a == k]
        w = (c.size + a.size) / total
        diff += w * (a.mean() - c.mean())
        var += w**2 * (np.var(a, ddof=1) / a.size + np.var(c, ddof=1) / c.size)
    z = sps.norm.ppf(1 - alpha / 2)
    return diff, (diff - z * math.sqrt(var), diff + z * math.sqrt(var)), 2 * sps.norm.sf(abs(diff) / math.sqrt(var))


def test_post_stratified_difference():
    rng = np.random.default_rng(8)
    s_c, s_a = rng.choice(["web", "phone", "x"], 900, p=[0.6, 0.3, 0.1]), rng.choice(["web", "phone", "x"], 950)
    base = {"web": 10.0, "phone": 4.0, "x": 1.0}
    y_c = np.array([base[s] for s in s_c]) + rng.normal(0, 3, s_c.size)
    y_a = np.array([base[s] for s in s_a]) + 0.5 + rng.normal(0, 3, s_a.size)
    got = stats.post_stratified_diff(y_c, s_c, y_a, s_a, alpha=0.1)
    diff, ci, p = _post_stratified_by_hand(y_c, s_c, y_a, s_a, 0.1)
    assert close(got.diff, diff) and close(got.ci[0], ci[0]) and close(got.ci[1], ci[1])
    assert close(got.p_value, p) and got.strata == 3


def test_post_stratified_with_one_stratum_is_welch_without_df():
    rng = np.random.default_rng(1)
    c, a = rng.normal(0, 1, 300), rng.normal(0.2, 2, 200)
    got = stats.post_stratified_diff(c, np.zeros(300), a, np.zeros(200))
    welch = stats.welch_test(c, a)
    assert close(got.diff, welch.diff) and close(got.statistic, welch.statistic)


def test_post_stratified_refuses_unestimable_strata():
    with pytest.raises(ValueError, match="fewer than two"):
        stats.post_stratified_diff([1.0, 2.0, 3.0], ["a", "a", "b"], [1.0, 2.0, 3.0], ["a", "a", "b"])


# --- sample ratio, winsorisation, multiplicity ------------------------------------------------


def test_sample_ratio_mismatch_matches_scipy():
    rng = np.random.default_rng(4)
    for _ in range(10):
        shares = rng.dirichlet([5, 5, 5])
        counts = rng.multinomial(10000, shares)
        got = stats.sample_ratio_mismatch(counts, shares)
        ref = sps.chisquare(counts, counts.sum() * shares)
        assert close(got.chi2, ref.statistic) and close(got.p_value, ref.pvalue)
    assert stats.sample_ratio_mismatch([10, 10, 10]).p_value == 1.0
    with pytest.raises(ValueError):
        stats.sample_ratio_mismatch([10, 10], [0.5, 0.6])


def test_winsorize_caps_at_the_percentile_of_the_non_zero_values():
    rng = np.random.default_rng(2)
    # 0.5 % buyers: a percentile over everyone would be 0 and erase every revenue
    values = np.concatenate([np.zeros(199_000), rng.lognormal(3, 1.5, 1000)])
    got = stats.winsorize(values)
    buyers = values[values > 0]
    cap = float(np.quantile(buyers, 0.99, method="linear"))
    assert got.cap == pytest.approx(cap, rel=1e-12) and got.cap > np.percentile(buyers, 98)
    assert np.array_equal(got.values, np.minimum(values, got.cap))
    assert got.n_capped == 10
    assert stats.winsorize(values, 100).n_capped == 0
    nothing = stats.winsorize(np.zeros(10))
    assert math.isnan(nothing.cap) and nothing.n_capped == 0


def test_holm_across_arms_for_each_metric():
    rows = [
        {"arm": arm, "metric": metric, "p_value": p, "cuped": {"p_value": p / 2}}
        for arm, ps in (("a", (0.01, 0.2)), ("b", (0.03, 0.04)), ("c", (0.02, None)))
        for metric, p in zip(("conversion", "revenue"), ps)
        if p is not None
    ]
    rows[-1]["cuped"] = {"p_value": 0.01}
    summaries.fill_holm_arms(rows)
    conversion = [r for r in rows if r["metric"] == "conversion"]
    expected = multipletests([0.01, 0.03, 0.02], method="holm")[1]
    assert [r["p_adjusted_arms"] for r in conversion] == pytest.approx(list(expected))
    revenue = [r for r in rows if r["metric"] == "revenue"]
    assert [r["p_adjusted_arms"] for r in revenue] == pytest.approx(list(multipletests([0.2, 0.04], method="holm")[1]))
    assert [r["cuped"]["p_adjusted_arms"] for r in conversion] == pytest.approx(
        list(multipletests([0.005, 0.015, 0.01], method="holm")[1])
    )


@settings(max_examples=25, deadline=None)  # multipletests is slow (~30 ms a call)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_adjustments_match_statsmodels(p_values):
    for ours, method in ((stats.holm, "holm"), (stats.benjamini_hochberg, "fdr_bh")):
        got = ours(p_values)
        expected = multipletests(p_values, method=method)[1]
        assert got == pytest.approx(list(expected), rel=1e-12, abs=1e-15)
        assert all(g >= p - 1e-15 for g, p in zip(got, p_values)) and max(got) <= 1.0


def test_adjustments_leave_missing_p_values_out():
    assert stats.holm([0.01, math.nan, 0.02])[::2] == pytest.approx([0.02, 0.02])
    assert math.isnan(stats.benjamini_hochberg([0.01, math.nan])[1])
    assert stats.holm([]) == []


# --- mSPRT -----------------------------------------------------------------------------------


def test_msprt_formula_and_running_minimum():
    estimates, variances, tau2 = [0.5, -0.2, 0.9, 0.1], [0.2, 0.1, 0.05, 0.04], 0.3
    got = stats.msprt_p_values(estimates, variances, tau2)
    expected, running = [], 1.0
    for d, v in zip(estimates, variances):
        lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
        running = min(running, 1 / lam)
        expected.append(min(1.0, running))
        assert got.likelihood_ratios[len(expected) - 1] == pytest.approx(lam, rel=1e-12)
    assert got.p_values == pytest.approx(expected, rel=1e-12)
    assert all(b <= a for a, b in zip(got.p_values, got.p_values[1:]))
    # Overwhelming evidence gives a p-value near 0 rather than an overflow.
    assert 0.0 <= stats.msprt_p_values([50.0], [1e-4], 0.1).p_values[0] < 1e-100


# (the type-I error of the always-valid p-values is simulated in test_simulations.py)


def test_msprt_rejects_bad_arguments():
    with pytest.raises(ValueError):
        stats.msprt_p_values([0.1], [0.1], tau2=0)
    with pytest.raises(ValueError):
        stats.msprt_p_values([0.1], [0.0], tau2=1)


def test_cuped_from_moments_is_cuped_and_statsmodels():
    """The moments' form (used by the simulations) gives cuped's figures, on raw sums of values far
    from 0 as on centred ones."""
    rng = np.random.default_rng(12)
    x_c, x_a = 1000 + rng.gamma(2, 50, 700), 1000 + rng.gamma(2, 50, 900)
    y_c, y_a = 500 + 0.4 * x_c + rng.normal(0, 30, 700), 503 + 0.4 * x_a + rng.normal(0, 30, 900)

    def moments(y, x):
        return (y.size, y.sum(), x.sum(), y @ y, x @ x, x @ y)

    got = stats.cuped_from_moments(moments(y_c, x_c), moments(y_a, x_a))
    dense = stats.cuped(y_c, x_c, y_a, x_a)
    assert close(got.theta, dense.theta, rel=1e-7) and close(got.variance_reduction, dense.variance_reduction, rel=1e-6)
    assert close(got.adjusted.diff, dense.adjusted.diff, rel=1e-7) and close(
        got.adjusted.se, dense.adjusted.se, rel=1e-6
    )
    x = np.r_[x_c, x_a]
    t, p, _ = ttest_ind(y_a - dense.theta * (x_a - x.mean()), y_c - dense.theta * (x_c - x.mean()), usevar="unequal")
    assert close(dense.adjusted.statistic, t) and close(got.adjusted.p_value, p, rel=1e-5)
    assert close(dense.adjusted.control_mean, (y_c - dense.theta * (x_c - x.mean())).mean())
