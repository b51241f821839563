"""experiments.power against statsmodels' normal-approximation power (NormalIndPower, zt_ind_solve_power)."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import power_proportions_2indep, samplesize_proportions_2indep_onetail

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
    d = NormalIndPower().solve_power(
        effect_size=None, nobs1=n_control, alpha=alpha, power=target, ratio=n_arm / n_control
    )
    assert got.absolute == pytest.approx(d * sd, rel=1e-5)  # statsmodels' own solver tolerance
    # Sharper: statsmodels' power function at our MDE gives exactly the requested power.
    achieved = NormalIndPower().power(got.absolute / sd, n_control, alpha, ratio=n_arm / n_control)
    assert achieved == pytest.approx(target, abs=1e-10)
    assert got.relative == pytest.approx(got.absolute / 12.0)
    assert got.se == pytest.approx(sd * math.sqrt(1 / n_control + 1 / n_arm))


@pytest.mark.parametrize(
    "baseline, n_control, n_arm",
    [(0.005, 20000, 20000), (0.01, 12000, 8000), (0.08, 3000, 9000), (0.5, 400, 400), (0.93, 5000, 2500)],
)
def test_mde_binary_agrees_with_statsmodels_power_proportions_2indep(baseline, n_control, n_arm):
    """The variance under the alternative: statsmodels' power at our MDE is the requested power
    (the old p₀(1 − p₀)-in-both-arms MDE was 5 to 18 % too small and failed this)."""
    got = power.mde_binary(baseline, n_control, n_arm, alpha=0.05, power=0.8)
    achieved = power_proportions_2indep(got.absolute, baseline, n_arm, ratio=n_control / n_arm, alpha=0.05).power
    assert achieved == pytest.approx(0.8, rel=5e-4)  # 3 significant digits
    assert got.relative == pytest.approx(got.absolute / baseline)
    # statsmodels' own sample size for that difference gives back our sizes
    nobs1 = samplesize_proportions_2indep_onetail(got.absolute, baseline, 0.8, ratio=n_control / n_arm, alpha=0.05)
    assert nobs1 == pytest.approx(n_arm, rel=5e-3)


@pytest.mark.parametrize(
    "p_control, p_arm, n_control, n_arm, alpha",
    [(0.01, 0.013, 20000, 10000, 0.05), (0.3, 0.25, 500, 800, 0.1), (0.5, 0.75, 50, 50, 0.05)],
)
def test_power_binary_is_statsmodels(p_control, p_arm, n_control, n_arm, alpha):
    got = power.power_binary(p_control, p_arm, n_control, n_arm, alpha)
    ref = power_proportions_2indep(p_arm - p_control, p_control, n_arm, ratio=n_control / n_arm, alpha=alpha).power
    assert got == pytest.approx(ref, rel=1e-9)


def test_r_power_prop_test_published_examples():
    """R's ?power.prop.test: n = 50, p1 = .5, p2 = .75 → power 0.740; p1 = .5, p2 = .75, power .9 →
    n = 76.7 per group; n = 50, p1 = .5, power .9 → p2 = 0.8026."""
    assert f"{power.power_binary(0.5, 0.75, 50, 50):.3g}" == "0.74"
    assert f"{power.sample_size_binary(0.5, 0.25, 0.5, 0.5, 0.05, 0.9).total_exact / 2:.3g}" == "76.7"
    assert f"{0.5 + power.mde_binary(0.5, 50, 50, 0.05, 0.9).absolute:.4g}" == "0.8026"


def test_sample_size_binary_matches_statsmodels():
    for p0, lift, share_c, share_a in ((0.01, 0.2, 0.5, 0.5), (0.08, -0.1, 0.2, 0.8), (0.3, 0.05, 1 / 3, 1 / 3)):
        got = power.sample_size_binary(p0, lift, share_c, share_a, 0.05, 0.8, relative=True)
        nobs1 = samplesize_proportions_2indep_onetail(p0 * lift, p0, 0.8, ratio=share_c / share_a, alpha=0.05)
        assert got.total_exact * share_a == pytest.approx(nobs1, rel=1e-3)


def test_mde_of_revenue_with_more_buyers_uses_the_variance_under_the_alternative():
    # 0.5 % buyers, spend lognormal: the arm's variance grows with its share of buyers
    p, mu, sigma = 0.005, 3.0, 1.0
    e_s, e_s2 = math.exp(mu + sigma**2 / 2), math.exp(2 * mu + 2 * sigma**2)
    mean, sd = p * e_s, math.sqrt(p * e_s2 - (p * e_s) ** 2)
    got = power.mde_continuous(sd, 20000, 20000, 0.05, 0.8, baseline_mean=mean, buyers=True)
    r = got.relative
    p1 = p * (1 + r)
    sd1 = math.sqrt(p1 * e_s2 - (p1 * e_s) ** 2)
    se = math.sqrt(sd**2 / 20000 + sd1**2 / 20000)
    assert NormalIndPower().power(got.absolute / se, 2, 0.05) == pytest.approx(0.8, rel=1e-9)
    assert got.absolute > power.mde_continuous(sd, 20000, 20000, 0.05, 0.8).absolute


@pytest.mark.parametrize("share_control, share_arm", [(0.5, 0.5), (1 / 3, 1 / 3), (0.2, 0.8), (0.1, 0.45)])
def test_sample_size_matches_zt_ind_solve_power(share_control, share_arm):
    sd, effect = 2.5, 0.12
    got = power.sample_size_continuous(sd, effect, share_control, share_arm, alpha=0.05, power=0.8)
    nobs1 = zt_ind_solve_power(
        effect_size=effect / sd, nobs1=None, alpha=0.05, power=0.8, ratio=share_arm / share_control
    )
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
    nobs1 = samplesize_proportions_2indep_onetail(0.006, 0.04, 0.9, ratio=1.0, alpha=0.05)
    assert absolute.total_exact == pytest.approx(2 * nobs1, rel=1e-4)


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


@pytest.mark.parametrize("rho2", [0.0, 0.3, 0.75])
def test_mde_of_the_regression_adjusted_estimate_is_statsmodels_on_the_residual_sd(rho2):
    """CUPED's estimate (the verdict's when there is history) has variance σ²(1 − ρ²) under a shift:
    statsmodels' normal power on that σ; revenue through more buyers: the arm's and the control's
    residual σ (power.adjusted_sds) give statsmodels' power at the MDE, and it shrinks with ρ²."""
    sd, n_c, n_a = 3.7, 4000, 6000
    got = power.mde_continuous(sd, n_c, n_a, 0.05, 0.8, rho2=rho2)
    d = NormalIndPower().solve_power(effect_size=None, nobs1=n_c, alpha=0.05, power=0.8, ratio=n_a / n_c)
    assert got.absolute == pytest.approx(d * sd * math.sqrt(1 - rho2), rel=1e-5)
    mean = 1.2
    buyers = power.mde_continuous(sd, n_c, n_a, 0.05, 0.8, baseline_mean=mean, buyers=True, rho2=rho2)
    sd_c, sd_a = power.adjusted_sds(sd, mean, buyers.relative, n_c, n_a, rho2)
    se = math.sqrt(sd_c**2 / n_c + sd_a**2 / n_a)
    assert NormalIndPower().power(buyers.absolute / se, 2, 0.05) == pytest.approx(0.8, rel=1e-9)
    if rho2:
        assert buyers.absolute < power.mde_continuous(sd, n_c, n_a, 0.05, 0.8, baseline_mean=mean, buyers=True).absolute
    # the sample size the page gives for that effect is the one at which it is the MDE
    size = power.sample_size_continuous(
        sd, buyers.absolute, 0.4, 0.6, 0.05, 0.8, baseline_mean=mean, buyers=True, rho2=rho2
    )
    assert size.total_exact == pytest.approx(n_c + n_a, rel=1e-6)
    rate = power.mde_binary(0.04, n_c, n_a, 0.05, 0.8, rho2=rho2)
    assert rate.absolute == pytest.approx(
        power.mde_continuous(
            math.sqrt(0.04 * 0.96), n_c, n_a, 0.05, 0.8, baseline_mean=0.04, buyers=True, rho2=rho2
        ).absolute
    )
    needed = power.sample_size_binary(0.04, rate.relative, 0.4, 0.6, 0.05, 0.8, relative=True, rho2=rho2)
    assert needed.total_exact == pytest.approx(n_c + n_a, rel=1e-6)
