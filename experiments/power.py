"""Power before launch: minimum detectable effects and sample sizes, normal approximation (DESIGN.md §8)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def _sps():
    """``scipy.stats``, imported on first use (about a second at start-up otherwise: the report
    pages import this module, every command and web worker would pay it)."""
    from scipy import stats

    return stats


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
    norm = _sps().norm
    z = norm.isf(alpha / 2.0)
    k = abs(effect) / se
    return float(norm.cdf(k - z) + norm.cdf(-k - z))


def _required_k(alpha: float, power: float) -> float:
    """The standardised effect k = δ/se at which the two-sided z-test reaches ``power``.

    The closed form k₀ = z_{1-α/2} + z_{power} ignores the far rejection tail Φ(−k − z); the root
    of Φ(k − z) + Φ(−k − z) = power is then refined in [0, k₀] so results match exact solvers.
    """
    _check(alpha, power)
    norm = _sps().norm
    z = norm.isf(alpha / 2.0)
    k0 = z + norm.ppf(power)
    f = lambda k: norm.cdf(k - z) + norm.cdf(-k - z) - power  # noqa: E731
    if f(k0) <= 0:  # the far tail is negligible to double precision
        return float(k0)
    from scipy import optimize

    return float(optimize.brentq(f, 0.0, k0, xtol=1e-14))


def mde_continuous(sd: float, n_control: int, n_arm: int, alpha: float = 0.05, power: float = 0.8,
                   baseline_mean: float | None = None) -> MinimumDetectableEffect:
    """Minimum detectable difference in means with a common standard deviation σ.

    se = σ·sqrt(1/n_C + 1/n_A); MDE = k·se where k solves Φ(k − z_{1-α/2}) + Φ(−k − z_{1-α/2})
    = power (≈ z_{1-α/2} + z_{power}). Relative MDE = MDE / baseline_mean when that is given.
    """
    if sd <= 0:
        raise ValueError("the standard deviation must be positive")
    if n_control <= 0 or n_arm <= 0:
        raise ValueError("both groups need a positive size")
    se = sd * math.sqrt(1.0 / n_control + 1.0 / n_arm)
    absolute = _required_k(alpha, power) * se
    relative = absolute / abs(baseline_mean) if baseline_mean else None
    return MinimumDetectableEffect(absolute, relative, se, alpha, power)


def mde_binary(baseline_rate: float, n_control: int, n_arm: int, alpha: float = 0.05,
               power: float = 0.8) -> MinimumDetectableEffect:
    """Minimum detectable difference in proportions around a baseline rate p₀.

    As :func:`mde_continuous` with σ = sqrt(p₀(1 − p₀)) in both arms (the variance under the
    alternative is approximated by the baseline's); relative MDE = MDE / p₀.
    """
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError("the baseline rate must be in (0, 1)")
    return mde_continuous(math.sqrt(baseline_rate * (1.0 - baseline_rate)), n_control, n_arm,
                          alpha, power, baseline_mean=baseline_rate)


def sample_size_continuous(sd: float, effect: float, share_control: float = 0.5, share_arm: float = 0.5,
                           alpha: float = 0.05, power: float = 0.8) -> SampleSize:
    """Total recipients N so that a true difference ``effect`` is detected with ``power``.

    The control gets N·s_C and the arm N·s_A (the shares may leave room for other arms), so
    se = σ·sqrt((1/s_C + 1/s_A)/N) and N = k²·σ²·(1/s_C + 1/s_A)/δ², with k as in
    :func:`mde_continuous`.
    """
    if sd <= 0:
        raise ValueError("the standard deviation must be positive")
    if effect == 0:
        raise ValueError("the target effect must be non-zero")
    if not (0.0 < share_control <= 1.0 and 0.0 < share_arm <= 1.0 and share_control + share_arm <= 1.0 + 1e-9):
        raise ValueError("shares must be positive and sum to at most 1")
    k = _required_k(alpha, power)
    total = k * k * sd * sd * (1.0 / share_control + 1.0 / share_arm) / (effect * effect)
    # A hair of tolerance so an exact integer answer is not pushed up by rounding noise.
    ceil = lambda v: math.ceil(v - 1e-9)  # noqa: E731
    return SampleSize(ceil(total), ceil(total * share_control), ceil(total * share_arm), total)


def sample_size_binary(baseline_rate: float, effect: float, share_control: float = 0.5,
                       share_arm: float = 0.5, alpha: float = 0.05, power: float = 0.8,
                       relative: bool = False) -> SampleSize:
    """Total recipients N to detect a change ``effect`` of a baseline rate p₀.

    ``effect`` is absolute (p₁ − p₀), or relative ((p₁ − p₀)/p₀) when ``relative``; then as
    :func:`sample_size_continuous` with σ = sqrt(p₀(1 − p₀)).
    """
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError("the baseline rate must be in (0, 1)")
    absolute = effect * baseline_rate if relative else effect
    return sample_size_continuous(math.sqrt(baseline_rate * (1.0 - baseline_rate)), absolute,
                                  share_control, share_arm, alpha, power)
