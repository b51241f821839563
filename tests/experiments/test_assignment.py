"""Assignment: determinism, block balance per organisation, the planned shares, codes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.assignment import CODE_ALPHABET, assign, planned_counts, randomised_counts, unique_codes
from experiments.stats import sample_ratio_mismatch


def _population(n=5000, orgs=7, seed=1):
    rng = np.random.default_rng(seed)
    units = rng.choice(10 * n, size=n, replace=False)
    strata = rng.integers(1, orgs + 1, size=n)
    return units, strata


def test_same_seed_same_assignment_whatever_the_input_order():
    units, strata = _population()
    first = assign(units, strata, [0.2, 0.8], seed=42)
    order = np.random.default_rng(9).permutation(len(units))
    second = assign(units[order], strata[order], [0.2, 0.8], seed=42)
    by_unit_first = dict(zip(first.units.tolist(), first.arms.tolist()))
    by_unit_second = dict(zip(second.units.tolist(), second.arms.tolist()))
    assert by_unit_first == by_unit_second


def test_other_seed_other_assignment():
    units, strata = _population()
    assert not np.array_equal(
        assign(units, strata, [0.5, 0.5], seed=1).arms, assign(units, strata, [0.5, 0.5], seed=2).arms
    )


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=8),
    shares=st.lists(st.integers(min_value=10, max_value=80), min_size=2, max_size=4),
    seed=st.integers(min_value=0, max_value=2**31),
)
@settings(max_examples=60, deadline=None)
def test_every_stratum_keeps_the_planned_shares_within_one_unit(sizes, shares, seed):
    units = np.arange(sum(sizes))
    strata = np.repeat(np.arange(len(sizes)), sizes)
    result = assign(units, strata, shares, seed=seed)
    total = sum(shares)
    for stratum, counts in result.counts_by_stratum().items():
        n = sizes[stratum]
        for i, share in enumerate(shares):
            assert abs(counts[str(i)] - n * share / total) < 1
    assert sorted(result.units.tolist()) == units.tolist()


def test_overall_split_passes_the_sample_ratio_check():
    units, strata = _population(n=20000)
    result = assign(units, strata, [0.1, 0.45, 0.45], seed=7, arm_names=["control", "A", "B"])
    counts = result.counts()
    srm = sample_ratio_mismatch([counts["control"], counts["A"], counts["B"]], [0.1, 0.45, 0.45])
    assert not srm.flag


def test_assignment_is_random_within_strata():
    # Within a stratum, arm membership must not follow unit order (a sorted cut would).
    units = np.arange(10000)
    result = assign(units, np.zeros(10000, dtype=int), [0.5, 0.5], seed=3)
    first_half_share = result.arms[:5000].mean()
    assert 0.45 < first_half_share < 0.55


def test_planned_counts_sum_to_n():
    rng = np.random.default_rng(0)
    for n in range(0, 50):
        assert planned_counts(n, [1, 1, 1], rng).sum() == n


def test_duplicates_and_bad_shares_are_refused():
    with pytest.raises(ValueError):
        assign([1, 1], [0, 0], [0.5, 0.5], seed=1)
    with pytest.raises(ValueError):
        assign([1, 2], [0, 0], [1.0], seed=1)


def test_codes_are_unique_unambiguous_and_avoid_taken_ones():
    taken = set(unique_codes(100))
    codes = unique_codes(5000, taken)
    assert len(set(codes)) == 5000 and not taken & set(codes)
    assert all(set(code) <= set(CODE_ALPHABET) for code in codes)
    assert not set("0O1IL") & set(CODE_ALPHABET)


@pytest.mark.parametrize(
    "sizes, shares", [([1, 1, 2, 3], [0.6, 0.4]), ([1, 2, 5], [0.1, 0.45, 0.45]), ([3, 4], [0.2, 0.3, 0.5])]
)
def test_every_unit_gets_each_arm_with_its_planned_probability(sizes, shares):
    """Tiny strata: over 4,000 seeds each unit's frequency of each arm is its share (binomial
    tolerance, 4.5 standard errors). Largest-remainder rounding (version 1) fails it: a lone unit
    with shares 0.6/0.4 always lands in the first arm."""
    units = np.arange(sum(sizes))
    strata = np.repeat(np.arange(len(sizes)), sizes)
    runs = 4000
    freq = np.zeros((units.size, len(shares)))
    old = np.zeros_like(freq)
    for seed in range(runs):
        arms = assign(units, strata, shares, seed=seed).arms
        freq[units, arms] += 1
        old[units, assign(units, strata, shares, seed=seed, version=1).arms] += 1
    share = np.asarray(shares)
    tolerance = 4.5 * np.sqrt(share * (1 - share) / runs)
    assert (np.abs(freq / runs - share) < tolerance).all(), freq / runs
    assert not (np.abs(old / runs - share) < tolerance).all()


def test_randomised_counts_are_within_one_unit_and_unbiased():
    rng = np.random.default_rng(5)
    shares = np.array([0.15, 0.35, 0.5])
    for n in range(0, 12):
        draws = np.array([randomised_counts(n, shares, rng) for _ in range(3000)])
        assert (draws.sum(axis=1) == n).all()
        assert (np.abs(draws - n * shares) < 1).all()
        assert draws.mean(axis=0) == pytest.approx(n * shares, abs=4.5 * 0.5 / np.sqrt(3000) + 1e-12)


def test_unknown_algorithm_version_is_refused():
    with pytest.raises(ValueError, match="version"):
        assign([1, 2], [0, 0], [0.5, 0.5], seed=1, version=3)
