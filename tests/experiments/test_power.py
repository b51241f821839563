"""experiments.power against statsmodels' normal-approximation power (NormalIndPower, zt_ind_solve_power)."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power

from experiments import power

CASES = [  # (n_control, n_arm, alpha, power)
    (1000, 1000, 0.05, 0.8),
    (5000, 15000, 0.05, 0.9),
    (200, 350, 0.01, 0.8),
    (40000, 21000, 0.1, 0.95),
    (30, 30, 0.2, 0.3),  # low power: the far rejection tail matters here
]


@pytest.mark.parametrize("n_control, n_arm, alpha, target", CASES)
def test_mde_continuous_matches_statsmodels(n_control, n_arm, alpha, target):
    sd = 3.7
    got = power.mde_continuous(sd, n_control, n_arm, alpha, target, baseline_mean=12.0)
    d = NormalIndPower().solve_power(effect_size=None, nobs1=n_control, alpha=alpha, power=target,
                                     ratio=n_arm / n_control)
    assert got.absolute == pytest.approx(d * sd, rel=1e-5)  # statsmodels' own solver tolerance
    # Sharper: statsmodels' power function at our MDE gives exactly the requested power.
    achieved = NormalIndPower().power(got.absolute / sd, n_control, alpha, ratio=n_arm / n_control)
    assert achieved == pytest.approx(target, abs=1e-10)
    assert got.relative == pytest.approx(got.absolute / 12.0)
    assert got.se == pytest.approx(sd * math.sqrt(1 / n_control + 1 / n_arm))


@pytest.mark.parametrize("baseline", [0.01, 0.08, 0.5, 0.93])
def test_mde_binary_uses_the_baseline_variance(baseline):
    got = power.mde_binary(baseline, 12000, 8000, alpha=0.05, power=0.8)
    sd = math.sqrt(baseline * (1 - baseline))
    achieved = NormalIndPower().power(got.absolute / sd, 12000, 0.05, ratio=8000 / 12000)
    assert achieved == pytest.approx(0.8, abs=1e-10)
    assert got.relative == pytest.approx(got.absolute / baseline)
    # The textbook closed form (z_{1-α/2} + z_power)·se ignores the far rejection tail, so it is
    # a hair larger than the exact solution.
    closed_form = (1.959963984540054 + 0.8416212335729143) * got.se
    assert got.absolute == pytest.approx(closed_form, rel=1e-5) and got.absolute < closed_form


@pytest.mark.parametrize("share_control, share_arm", [(0.5, 0.5), (1 / 3, 1 / 3), (0.2, 0.8), (0.1, 0.45)])
def test_sample_size_matches_zt_ind_solve_power(share_control, share_arm):
    sd, effect = 2.5, 0.12
    got = power.sample_size_continuous(sd, effect, share_control, share_arm, alpha=0.05, power=0.8)
    nobs1 = zt_ind_solve_power(effect_size=effect / sd, nobs1=None, alpha=0.05, power=0.8,
                               ratio=share_arm / share_control)
    assert got.total_exact * share_control == pytest.approx(nobs1, rel=1e-6)
    assert got.total == math.ceil(got.total_exact)
    assert got.n_control == math.ceil(got.total_exact * share_control)
    assert got.n_arm == math.ceil(got.total_exact * share_arm)
    # Round trip: at those sizes the minimum detectable effect is the target effect.
    mde = power.mde_continuous(sd, got.total_exact * share_control, got.total_exact * share_arm)
    assert mde.absolute == pytest.approx(effect, rel=1e-9)


def test_sample_size_binary_absolute_and_relative():
    absolute = power.sample_size_binary(0.04, 0.006, alpha=0.05, power=0.9)
    relative = power.sample_size_binary(0.04, 0.15, alpha=0.05, power=0.9, relative=True)
    assert absolute.total_exact == pytest.approx(relative.total_exact)
    sd = math.sqrt(0.04 * 0.96)
    nobs1 = zt_ind_solve_power(effect_size=0.006 / sd, alpha=0.05, power=0.9, ratio=1.0)
    assert absolute.total_exact == pytest.approx(2 * nobs1, rel=1e-6)


def test_power_two_sided_matches_statsmodels():
    for effect, se, alpha in [(0.1, 0.05, 0.05), (-0.3, 0.2, 0.01), (0.0, 1.0, 0.05)]:
        # Two groups of 2 and 2: statsmodels' standardised effect is then effect / se itself.
        expected = NormalIndPower().power(abs(effect) / se, 2.0, alpha, ratio=1.0)
        assert power.power_two_sided(effect, se, alpha) == pytest.approx(expected, rel=1e-12)
    assert power.power_two_sided(0.0, 1.0, 0.05) == pytest.approx(0.05)


def test_bad_arguments():
    with pytest.raises(ValueError):
        power.mde_binary(0.0, 100, 100)
    with pytest.raises(ValueError):
        power.mde_continuous(1.0, 100, 100, alpha=0.05, power=0.03)
    with pytest.raises(ValueError):
        power.sample_size_continuous(1.0, 0.0)
    with pytest.raises(ValueError):
        power.sample_size_continuous(1.0, 0.1, 0.6, 0.6)
