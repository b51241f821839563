"""Power before launch: minimum detectable effects and sample sizes, normal approximation (DESIGN.md §8)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace


def _normal() -> SimpleNamespace:
    """The standard normal's ``cdf``, ``ppf`` and ``isf``: scipy.special's, which ``scipy.stats.norm``
    calls for them (the same values), imported on first use. ``scipy.stats`` itself took most of
    the power page's first request in a new worker (8.1 of 9.4 s at a load of 20); scipy.special
    imports in a fifth of its time."""
    from scipy.special import ndtr, ndtri

    return SimpleNamespace(cdf=ndtr, ppf=ndtri, isf=lambda q: -ndtri(q))


@dataclass(frozen=True)
class MinimumDetectableEffect:
    """The smallest true difference (arm − control) detected with the requested power."""

    absolute: float
    relative: float | None  # absolute / baseline mean; None without a non-zero baseline
    se: float  # standard error of the estimated difference at these sizes
    alpha: float
    power: float


@dataclass(frozen=True)
class SampleSize:
    """Recipients needed for a target effect; ``total`` covers every arm under the given shares."""

    total: int  # ceil(total_exact)
    n_control: int  # ceil(total_exact · share_control)
    n_arm: int  # ceil(total_exact · share_arm)
    total_exact: float


def _check(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not alpha < power < 1.0:
        raise ValueError(f"power must be in (alpha, 1), got {power!r}")


def power_two_sided(effect: float, se: float, alpha: float = 0.05) -> float:
    """Power of the two-sided z-test at level α for a true difference ``effect``.

    With z = z_{1-α/2} and k = |effect|/se: power = Φ(k − z) + Φ(−k − z) (both rejection tails).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if se <= 0:
        raise ValueError("the standard error must be positive")
    norm = _normal()
    z = norm.isf(alpha / 2.0)
    k = abs(effect) / se
    return float(norm.cdf(k - z) + norm.cdf(-k - z))


def _required_k(alpha: float, power: float) -> float:
    """The standardised effect k = δ/se at which the two-sided z-test reaches ``power``.

    The closed form k₀ = z_{1-α/2} + z_{power} ignores the far rejection tail Φ(−k − z); the root
    of Φ(k − z) + Φ(−k − z) = power is then refined in [0, k₀] so results match exact solvers.
    """
    _check(alpha, power)
    norm = _normal()
    z = norm.isf(alpha / 2.0)
    k0 = z + norm.ppf(power)
    f = lambda k: norm.cdf(k - z) + norm.cdf(-k - z) - power  # noqa: E731
    if f(k0) <= 0:  # the far tail is negligible to double precision
        return float(k0)
    from scipy import optimize

    return float(optimize.brentq(f, 0.0, k0, xtol=1e-14))


def power_continuous(
    effect: float, sd_control: float, sd_arm: float, n_control: float, n_arm: float, alpha: float = 0.05
) -> float:
    """Power of Welch's test (normal approximation) for a true difference ``effect`` in means.

    se = sqrt(σ²_C/n_C + σ²_A/n_A) with each arm's standard deviation under the alternative;
    power = Φ(|δ|/se − z_{1-α/2}) + Φ(−|δ|/se − z_{1-α/2}).
    """
    se = math.sqrt(sd_control**2 / n_control + sd_arm**2 / n_arm)
    return power_two_sided(effect, se, alpha)


def buyers_sd(sd: float, mean: float, relative: float) -> float:
    """Standard deviation of a per-recipient amount (revenue, tickets) when the share of buyers is
    multiplied by 1 + r and what each buyer spends is unchanged (the variance under that alternative).

    Y = B·S with B a buyer indicator: E[Y²] scales by 1 + r like the mean, so
    σ₁² = (1 + r)(σ₀² + m₀²) − (1 + r)²m₀².
    """
    k = 1.0 + relative
    return math.sqrt(max(0.0, k * (sd * sd + mean * mean) - k * k * mean * mean))


def adjusted_sds(
    sd: float,
    mean: float,
    relative: float,
    share_control: float,
    share_arm: float,
    rho2: float = 0.0,
    buyers: bool = True,
) -> tuple[float, float]:
    """(σ_C, σ_A): each arm's standard deviation of what the verdict's estimator compares, under the
    alternative of a relative lift r: Y itself without adjustment (ρ² = 0), else CUPED's
    Y' = Y − θ(X − X̄), X the same metric in the period before, ρ² = corr(Y, X)² in the control.

    ``buyers`` (an effect through more buyers, each spending as before: :func:`buyers_sd`):
    cov(Y_A, X) = (1 + r)·cov(Y_C, X) and the pooled θ = w·cov(Y_C, X)/var(X),
    w = (s_C + s_A(1 + r))/(s_C + s_A), so σ'²_C = σ₀²(1 − ρ²(2w − w²)) and
    σ'²_A = σ₁² − σ₀²ρ²(2w(1 + r) − w²), σ₁ = :func:`buyers_sd`. Shift alternative (``buyers``
    False): σ'_C = σ'_A = σ₀·sqrt(1 − ρ²). With ρ² = 0 both are the raw standard deviations.
    """
    if not 0.0 <= rho2 < 1.0:
        raise ValueError("the squared correlation must be in [0, 1)")
    if not buyers:
        s = sd * math.sqrt(1.0 - rho2)
        return s, s
    k = 1.0 + relative
    w = (share_control + share_arm * k) / (share_control + share_arm)
    var_c = sd * sd * (1.0 - rho2 * (2.0 * w - w * w))
    var_a = buyers_sd(sd, mean, relative) ** 2 - sd * sd * rho2 * (2.0 * w * k - w * w)
    return math.sqrt(max(0.0, var_c)), math.sqrt(max(0.0, var_a))


def mde_continuous(
    sd: float,
    n_control: int,
    n_arm: int,
    alpha: float = 0.05,
    power: float = 0.8,
    baseline_mean: float | None = None,
    buyers: bool = False,
    rho2: float = 0.0,
) -> MinimumDetectableEffect:
    """Minimum detectable difference in means (Welch's test, normal approximation).

    Shift alternative (default): the same σ in both arms, se = σ·sqrt(1/n_C + 1/n_A); MDE = k·se where
    k solves Φ(k − z_{1-α/2}) + Φ(−k − z_{1-α/2}) = power (≈ z_{1-α/2} + z_{power}).
    ``buyers=True`` (revenue, tickets: an effect through more buyers): the arm's σ under the
    alternative is :func:`buyers_sd` at the lift r, and r solves :func:`power_continuous` = power
    (needs ``baseline_mean`` > 0). Relative MDE = MDE / baseline_mean when that is given.
    ``rho2`` > 0: the estimate is CUPED's (regression on the pre-period), whose variance is smaller:
    each arm's σ is then :func:`adjusted_sds` (σ·sqrt(1 − ρ²) under the shift alternative).
    """
    if sd <= 0:
        raise ValueError("the standard deviation must be positive")
    if n_control <= 0 or n_arm <= 0:
        raise ValueError("both groups need a positive size")
    _check(alpha, power)
    if not buyers:
        se = adjusted_sds(sd, 0.0, 0.0, n_control, n_arm, rho2, buyers=False)[0] * math.sqrt(
            1.0 / n_control + 1.0 / n_arm
        )
        absolute = _required_k(alpha, power) * se
    else:
        if not baseline_mean or baseline_mean <= 0:
            raise ValueError("the buyers alternative needs a positive baseline mean")
        m = baseline_mean

        def f(r: float) -> float:
            sd_c, sd_a = adjusted_sds(sd, m, r, n_control, n_arm, rho2)
            return power_continuous(r * m, sd_c, sd_a, n_control, n_arm, alpha) - power

        high = 1.0
        while f(high) < 0:
            high *= 2.0
            if high > 1e9:
                raise ValueError("no detectable effect at these sizes")
        from scipy import optimize

        absolute = float(optimize.brentq(f, 0.0, high, xtol=1e-14, rtol=1e-12)) * m
        sd_c, sd_a = adjusted_sds(sd, m, absolute / m, n_control, n_arm, rho2)
        se = math.sqrt(sd_c * sd_c / n_control + sd_a * sd_a / n_arm)
    relative = absolute / abs(baseline_mean) if baseline_mean else None
    return MinimumDetectableEffect(absolute, relative, se, alpha, power)


def power_binary(rate_control: float, rate_arm: float, n_control: float, n_arm: float, alpha: float = 0.05) -> float:
    """Power of the pooled two-proportion z-test (the test the verdict uses) at true rates p_C, p_A.

    The variance under the null uses the pooled rate p̄ = (n_A·p_A + n_C·p_C)/(n_A + n_C), the one
    under the alternative each arm's own: se₀ = sqrt(p̄(1 − p̄)(1/n_A + 1/n_C)),
    se₁ = sqrt(p_A(1 − p_A)/n_A + p_C(1 − p_C)/n_C), δ = p_A − p_C;
    power = Φ((|δ| − z_{1-α/2}·se₀)/se₁) + Φ((−|δ| − z_{1-α/2}·se₀)/se₁)
    (statsmodels' ``power_proportions_2indep(δ, p_C, n_A, ratio=n_C/n_A)``; one tail is R's
    ``power.prop.test``).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_control <= 0 or n_arm <= 0:
        raise ValueError("both groups need a positive size")
    norm = _normal()
    d = abs(rate_arm - rate_control)
    pooled = (n_arm * rate_arm + n_control * rate_control) / (n_arm + n_control)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_arm + 1.0 / n_control))
    se1 = math.sqrt(rate_arm * (1.0 - rate_arm) / n_arm + rate_control * (1.0 - rate_control) / n_control)
    if se1 <= 0:
        return 1.0 if d > 0 else 0.0
    z = norm.isf(alpha / 2.0)
    return float(norm.cdf((d - z * se0) / se1) + norm.cdf((-d - z * se0) / se1))


def mde_binary(
    baseline_rate: float, n_control: int, n_arm: int, alpha: float = 0.05, power: float = 0.8, rho2: float | None = None
) -> MinimumDetectableEffect:
    """Minimum detectable increase of a proportion from a baseline rate p₀, variance under the alternative.

    The smallest δ > 0 with :func:`power_binary` (p₀, p₀ + δ) = power (found by root search, so the
    arm's variance is p₁(1 − p₁) at p₁ = p₀ + δ, not p₀(1 − p₀)); relative MDE = δ / p₀; ``se`` is
    se₁ at that δ. Raises ValueError when no increase up to p₁ = 1 reaches the power.

    With ``rho2`` (not None) the verdict reads CUPED's estimate (Welch on Y' = Y − θ(X − X̄), X the
    rate's pre-period indicator, ρ² = corr(Y, X)²) instead of the pooled z-test: the MDE of
    :func:`mde_continuous` with σ₀ = sqrt(p₀(1 − p₀)), m₀ = p₀ and the buyers alternative (whose
    σ₁ is then sqrt(p₁(1 − p₁))).
    """
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError("the baseline rate must be in (0, 1)")
    if n_control <= 0 or n_arm <= 0:
        raise ValueError("both groups need a positive size")
    _check(alpha, power)
    p0 = baseline_rate
    if rho2 is not None:
        return mde_continuous(
            math.sqrt(p0 * (1 - p0)), n_control, n_arm, alpha, power, baseline_mean=p0, buyers=True, rho2=rho2
        )
    f = lambda d: power_binary(p0, p0 + d, n_control, n_arm, alpha) - power  # noqa: E731
    top = 1.0 - p0 - 1e-12
    if f(top) < 0:
        raise ValueError("no increase of the rate is detectable with that power at these sizes")
    from scipy import optimize

    d = float(optimize.brentq(f, 0.0, top, xtol=1e-15, rtol=1e-13))
    p1 = p0 + d
    se = math.sqrt(p1 * (1 - p1) / n_arm + p0 * (1 - p0) / n_control)
    return MinimumDetectableEffect(d, d / p0, se, alpha, power)


def sample_size_continuous(
    sd: float,
    effect: float,
    share_control: float = 0.5,
    share_arm: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    baseline_mean: float | None = None,
    buyers: bool = False,
    rho2: float = 0.0,
) -> SampleSize:
    """Total recipients N so that a true difference ``effect`` is detected with ``power``.

    The control gets N·s_C and the arm N·s_A (the shares may leave room for other arms), so
    se = sqrt((σ_C²/s_C + σ_A²/s_A)/N) and N = k²·(σ_C²/s_C + σ_A²/s_A)/δ², with k as in
    :func:`mde_continuous` and σ_C = σ_A = σ under the shift alternative; with ``buyers``
    (needs ``baseline_mean`` > 0) and ``rho2`` (CUPED), (σ_C, σ_A) = :func:`adjusted_sds` at
    r = δ/m₀, which depend on the shares only.
    """
    if sd <= 0:
        raise ValueError("the standard deviation must be positive")
    if effect == 0:
        raise ValueError("the target effect must be non-zero")
    _shares(share_control, share_arm)
    if buyers and (not baseline_mean or baseline_mean <= 0):
        raise ValueError("the buyers alternative needs a positive baseline mean")
    k = _required_k(alpha, power)
    relative = effect / baseline_mean if buyers and baseline_mean else 0.0
    sd_c, sd_a = adjusted_sds(sd, baseline_mean or 0.0, relative, share_control, share_arm, rho2, buyers)
    total = k * k * (sd_c * sd_c / share_control + sd_a * sd_a / share_arm) / (effect * effect)
    return _sample_size(total, share_control, share_arm)


def _shares(share_control: float, share_arm: float) -> None:
    if not (0.0 < share_control <= 1.0 and 0.0 < share_arm <= 1.0 and share_control + share_arm <= 1.0 + 1e-9):
        raise ValueError("shares must be positive and sum to at most 1")


def _sample_size(total: float, share_control: float, share_arm: float) -> SampleSize:
    # A hair of tolerance so an exact integer answer is not pushed up by rounding noise.
    ceil = lambda v: math.ceil(v - 1e-9)  # noqa: E731
    return SampleSize(ceil(total), ceil(total * share_control), ceil(total * share_arm), total)


def sample_size_binary(
    baseline_rate: float,
    effect: float,
    share_control: float = 0.5,
    share_arm: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = False,
    rho2: float | None = None,
) -> SampleSize:
    """Total recipients N to detect a change ``effect`` of a baseline rate p₀ with the pooled z-test.

    ``effect`` is absolute (p₁ − p₀), or relative ((p₁ − p₀)/p₀) when ``relative``. N solves
    :func:`power_binary` (p₀, p₁, N·s_C, N·s_A) = power, the variance under the alternative
    p₁(1 − p₁) in the arm; its one-tail closed form
    √N·|δ| = z_{1-α/2}·sqrt(p̄(1 − p̄)(1/s_A + 1/s_C)) + z_{power}·sqrt(p₁(1 − p₁)/s_A + p₀(1 − p₀)/s_C)
    (R's ``power.prop.test`` with equal shares) starts the search. With ``rho2`` (CUPED's estimate,
    as :func:`mde_binary`): :func:`sample_size_continuous` with σ₀ = sqrt(p₀(1 − p₀)), buyers.
    """
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError("the baseline rate must be in (0, 1)")
    _shares(share_control, share_arm)
    _check(alpha, power)
    p0 = baseline_rate
    d = effect * p0 if relative else effect
    p1 = p0 + d
    if d == 0:
        raise ValueError("the target effect must be non-zero")
    if not 0.0 < p1 < 1.0:
        raise ValueError("the target rate must be in (0, 1)")
    if rho2 is not None:
        return sample_size_continuous(
            math.sqrt(p0 * (1 - p0)),
            d,
            share_control,
            share_arm,
            alpha,
            power,
            baseline_mean=p0,
            buyers=True,
            rho2=rho2,
        )
    norm = _normal()
    pooled = (share_arm * p1 + share_control * p0) / (share_arm + share_control)
    s0 = math.sqrt(pooled * (1 - pooled) * (1 / share_arm + 1 / share_control))
    s1 = math.sqrt(p1 * (1 - p1) / share_arm + p0 * (1 - p0) / share_control)
    total = ((norm.isf(alpha / 2) * s0 + norm.ppf(power) * s1) / abs(d)) ** 2
    f = lambda n: power_binary(p0, p1, n * share_control, n * share_arm, alpha) - power  # noqa: E731
    if f(total) > 0:  # the far tail adds a little power: the exact N is a hair smaller
        from scipy import optimize

        total = float(optimize.brentq(f, total * 1e-3, total, xtol=1e-10, rtol=1e-13))
    return _sample_size(total, share_control, share_arm)
