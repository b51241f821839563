"""Statistics of the lift analysis (DESIGN.md §8): tests, intervals, adjustments; pure numpy/scipy."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

#: Below this expected cell count the two-proportion comparison switches to Fisher + Newcombe.
MIN_EXPECTED_CELL = 5.0
#: Sample-ratio mismatch is flagged below this p-value.
SRM_THRESHOLD = 0.001


def _sps() -> Any:
    """``scipy.stats``, imported on first use: importing it takes about a second, which every
    command and web worker would otherwise pay at start-up, pages without statistics included."""
    from scipy import stats

    return stats


@functools.lru_cache(maxsize=64)
def normal_quantile(alpha: float) -> float:
    """The two-sided normal quantile z_{1-α/2} (cached: a report asks for the same few levels)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(_sps().norm.isf(alpha / 2.0))


def two_sided_normal_p(z: float) -> float:
    # Φ(−|z|) rather than 1 − Φ(|z|): keeps p-values down to ~1e-300 instead of underflowing to 0
    # (scipy.special's ufunc: the same value as norm.sf, without scipy.stats' per-call overhead).
    if math.isnan(z):
        return math.nan
    from scipy.special import ndtr

    return float(min(1.0, 2.0 * ndtr(-abs(z))))


# --- two proportions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``(low, high)`` at level ``1 - alpha``."""

    low: float
    high: float

    def as_tuple(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class ProportionComparison:
    """Arm versus control on a binary metric; ``diff`` is arm rate − control rate."""

    test: str  # "z-test" or "fisher"
    n_control: int
    n_arm: int
    successes_control: int
    successes_arm: int
    control_rate: float
    arm_rate: float
    diff: float
    ci: tuple[float, float]
    statistic: float  # pooled z for the z-test; the sample odds ratio (arm odds / control odds) for Fisher
    p_value: float
    min_expected: float  # the smallest expected cell count of the 2×2 table
    alpha: float


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> Interval:
    """Wilson score interval for one proportion, no continuity correction.

    With p̂ = x/n and z = z_{1-α/2}:
    centre = (x + z²/2) / (n + z²), half-width = z / (n + z²) · sqrt(x(n − x)/n + z²/4).
    """
    if n <= 0:
        raise ValueError("a proportion needs n > 0")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    z = normal_quantile(alpha)
    z2 = z * z
    centre = (successes + z2 / 2.0) / (n + z2)
    half = z / (n + z2) * math.sqrt(successes * (n - successes) / n + z2 / 4.0)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(
    successes_control: int, n_control: int, successes_arm: int, n_arm: int, alpha: float = 0.05
) -> Interval:
    """Newcombe's hybrid score interval (his method 10) for p_arm − p_control, from Wilson intervals.

    With (l_a, u_a) and (l_c, u_c) the Wilson intervals and d = p̂_a − p̂_c:
    low = d − sqrt((p̂_a − l_a)² + (u_c − p̂_c)²), high = d + sqrt((u_a − p̂_a)² + (p̂_c − l_c)²).
    """
    p_c = successes_control / n_control
    p_a = successes_arm / n_arm
    w_c = wilson_interval(successes_control, n_control, alpha)
    w_a = wilson_interval(successes_arm, n_arm, alpha)
    d = p_a - p_c
    return Interval(d - math.hypot(p_a - w_a.low, w_c.high - p_c), d + math.hypot(w_a.high - p_a, p_c - w_c.low))


def two_proportions(
    successes_control: int, n_control: int, successes_arm: int, n_arm: int, alpha: float = 0.05, method: str = "auto"
) -> ProportionComparison:
    """Compare two proportions: arm − control.

    z-test: p̄ = (x_a + x_c)/(n_a + n_c), z = (p̂_a − p̂_c) / sqrt(p̄(1 − p̄)(1/n_a + 1/n_c)),
    p = 2·Φ(−|z|); Wald interval d ± z_{1-α/2}·sqrt(p̂_a(1 − p̂_a)/n_a + p̂_c(1 − p̂_c)/n_c).

    Fisher: the two-sided exact p-value of the table [[x_a, n_a − x_a], [x_c, n_c − x_c]]
    (statistic = its sample odds ratio) with Newcombe's hybrid score interval.

    ``method="auto"`` uses Fisher when any expected cell count (row total · column total / N)
    is under 5, the z-test otherwise; ``"z-test"`` or ``"fisher"`` forces one.
    """
    if n_control <= 0 or n_arm <= 0:
        raise ValueError("both groups need at least one observation")
    if not (0 <= successes_control <= n_control and 0 <= successes_arm <= n_arm):
        raise ValueError("successes must lie between 0 and the group size")
    if method not in ("auto", "z-test", "fisher"):
        raise ValueError(f"unknown method {method!r}")
    x_c, x_a = int(successes_control), int(successes_arm)
    n_c, n_a = int(n_control), int(n_arm)
    p_c, p_a = x_c / n_c, x_a / n_a
    d = p_a - p_c
    total = n_c + n_a
    successes = x_c + x_a
    min_expected = min(n_c, n_a) * min(successes, total - successes) / total
    use_fisher = method == "fisher" or (method == "auto" and min_expected < MIN_EXPECTED_CELL)
    if use_fisher:
        with np.errstate(divide="ignore", invalid="ignore"):
            result = _sps().fisher_exact([[x_a, n_a - x_a], [x_c, n_c - x_c]], alternative="two-sided")
        ci = newcombe_interval(x_c, n_c, x_a, n_a, alpha).as_tuple()
        return ProportionComparison(
            "fisher",
            n_c,
            n_a,
            x_c,
            x_a,
            p_c,
            p_a,
            d,
            ci,
            float(result.statistic),
            float(min(1.0, result.pvalue)),
            min_expected,
            alpha,
        )
    z_crit = normal_quantile(alpha)
    pooled = successes / total
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_c))
    if se0 > 0:
        z = d / se0
    else:  # every observation identical in both groups: no evidence of a difference
        z = 0.0
    se1 = math.sqrt(p_a * (1.0 - p_a) / n_a + p_c * (1.0 - p_c) / n_c)
    return ProportionComparison(
        "z-test",
        n_c,
        n_a,
        x_c,
        x_a,
        p_c,
        p_a,
        d,
        (d - z_crit * se1, d + z_crit * se1),
        z,
        two_sided_normal_p(z),
        min_expected,
        alpha,
    )


# --- means (Welch) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MeanComparison:
    """Welch's t-test of arm versus control; ``diff`` is arm mean − control mean."""

    test: str  # always "welch"
    n_control: int
    n_arm: int
    control_mean: float
    arm_mean: float
    control_var: float  # sample variances, divisor n − 1
    arm_var: float
    diff: float
    se: float
    df: float
    ci: tuple[float, float]
    statistic: float  # Welch t
    p_value: float
    alpha: float


def _welch(
    n_c: int, mean_c: float, var_c: float, n_a: int, mean_a: float, var_a: float, alpha: float
) -> MeanComparison:
    if n_c < 2 or n_a < 2:
        raise ValueError("Welch's t-test needs at least two observations in each group")
    d = mean_a - mean_c
    v_c, v_a = var_c / n_c, var_a / n_a
    se2 = v_c + v_a
    normal_quantile(alpha)  # validates alpha
    if se2 <= 0:
        # Both groups constant: the difference is known exactly.
        t = 0.0 if d == 0 else math.copysign(math.inf, d)
        return MeanComparison(
            "welch", n_c, n_a, mean_c, mean_a, var_c, var_a, d, 0.0, math.nan, (d, d), t, 1.0 if d == 0 else 0.0, alpha
        )
    se = math.sqrt(se2)
    df = se2 * se2 / (v_c * v_c / (n_c - 1) + v_a * v_a / (n_a - 1))
    t = d / se
    from scipy.special import stdtr, stdtrit

    p = float(min(1.0, 2.0 * stdtr(df, -abs(t))))  # 2·T_ν(−|t|), as t.sf without its overhead
    q = float(stdtrit(df, 1.0 - alpha / 2.0))
    return MeanComparison(
        "welch", n_c, n_a, mean_c, mean_a, var_c, var_a, d, se, df, (d - q * se, d + q * se), t, p, alpha
    )


def welch_test(
    control: Sequence[float] | np.ndarray, arm: Sequence[float] | np.ndarray, alpha: float = 0.05
) -> MeanComparison:
    """Welch's t-test from raw values.

    d = ȳ_a − ȳ_c, se² = s²_a/n_a + s²_c/n_c (s² with divisor n − 1), t = d/se,
    Welch-Satterthwaite df ν = se⁴ / ((s²_a/n_a)²/(n_a − 1) + (s²_c/n_c)²/(n_c − 1)),
    p = 2·T_ν(−|t|), interval d ± t_{ν,1-α/2}·se.
    """
    c = np.asarray(control, dtype=float)
    a = np.asarray(arm, dtype=float)
    if c.size < 2 or a.size < 2:
        raise ValueError("Welch's t-test needs at least two observations in each group")
    return _welch(c.size, float(c.mean()), float(c.var(ddof=1)), a.size, float(a.mean()), float(a.var(ddof=1)), alpha)


def welch_from_summary(
    n_control: int,
    sum_control: float,
    sumsq_control: float,
    n_arm: int,
    sum_arm: float,
    sumsq_arm: float,
    alpha: float = 0.05,
) -> MeanComparison:
    """Welch's t-test from summary statistics n, Σx, Σx² of each group.

    ȳ = Σx/n, s² = (Σx² − (Σx)²/n)/(n − 1); then as :func:`welch_test`.
    """

    def mean_var(n: float, s: float, ss: float) -> tuple[float, float]:
        return s / n, max(0.0, (ss - s * s / n) / (n - 1))

    if n_control < 2 or n_arm < 2:
        raise ValueError("Welch's t-test needs at least two observations in each group")
    m_c, v_c = mean_var(n_control, sum_control, sumsq_control)
    m_a, v_a = mean_var(n_arm, sum_arm, sumsq_arm)
    return _welch(int(n_control), m_c, v_c, int(n_arm), m_a, v_a, alpha)


# --- relative lift ---------------------------------------------------------------------------

#: A binary arm with fewer events than this has no estimable relative lift (the log-ratio interval
#: is unreliable and, at zero events, undefined).
MIN_EVENTS_RELATIVE = 5


@dataclass(frozen=True)
class RelativeLift:
    """m_A/m_C − 1 with its log-ratio interval; NaN (with ``reason``) when not estimable."""

    lift: float
    se: float  # standard error of ln(m_A/m_C)
    ci: tuple[float, float]
    alpha: float
    reason: str | None = None  # why not estimable: zero_mean, negative_mean, few_events


def relative_lift(
    mean_control: float,
    var_control: float,
    n_control: int,
    mean_arm: float,
    var_arm: float,
    n_arm: int,
    alpha: float = 0.05,
    binary: bool = False,
) -> RelativeLift:
    """Relative lift r = m_A/m_C − 1 with the interval on the log of the ratio (DESIGN.md §8).

    se² = s²_A/(n_A·m_A²) + s²_C/(n_C·m_C²); interval exp(ln(m_A/m_C) ± z_{1-α/2}·se) − 1, never
    below −100 %. Pass s² = p(1 − p) and ``binary=True`` for a binary metric (then it equals
    statsmodels' ``confint_proportions_2indep(compare='ratio', method='log')``), the sample variance
    (divisor n − 1) otherwise. Not estimable (NaN, ``reason`` set) when either mean is 0
    (``zero_mean``), a mean is negative (``negative_mean``: no logarithm) or a binary arm has fewer
    than 5 events (``few_events``).
    """
    z = normal_quantile(alpha)
    nan = RelativeLift(math.nan, math.nan, (math.nan, math.nan), alpha)
    if mean_control == 0 or mean_arm == 0:
        return RelativeLift(nan.lift, nan.se, nan.ci, alpha, "zero_mean")
    if mean_control < 0 or mean_arm < 0:
        return RelativeLift(nan.lift, nan.se, nan.ci, alpha, "negative_mean")
    if binary and min(round(mean_control * n_control), round(mean_arm * n_arm)) < MIN_EVENTS_RELATIVE:
        return RelativeLift(nan.lift, nan.se, nan.ci, alpha, "few_events")
    log_ratio = math.log(mean_arm / mean_control)
    se = math.sqrt(max(0.0, var_arm) / (n_arm * mean_arm**2) + max(0.0, var_control) / (n_control * mean_control**2))
    return RelativeLift(
        math.expm1(log_ratio), se, (math.expm1(log_ratio - z * se), math.expm1(log_ratio + z * se)), alpha
    )


# --- CUPED -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CupedResult:
    """CUPED-adjusted comparison: ``adjusted`` is Welch on Y' = Y − θ(X − X̄)."""

    theta: float
    adjusted: MeanComparison
    variance_reduction: float


def cuped(
    y_control: Sequence[float] | np.ndarray,
    x_control: Sequence[float] | np.ndarray,
    y_arm: Sequence[float] | np.ndarray,
    x_arm: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
) -> CupedResult:
    """CUPED with a pre-period covariate X, pooled over the two compared groups.

    θ = cov(Y, X)/var(X) over both groups together (θ = 0 when X is constant);
    Y' = Y − θ(X − X̄) with X̄ the pooled mean; Welch's t-test on Y';
    variance_reduction = 1 − (s'²_A/n_A + s'²_C/n_C) / (s²_A/n_A + s²_C/n_C), i.e. one minus the
    ratio of the Welch variances of the estimated difference with Y' and with Y. Computed from each
    group's moments (:func:`cuped_from_moments`) of the values centred on the pooled means.
    """
    yc, xc = np.asarray(y_control, dtype=float), np.asarray(x_control, dtype=float)
    ya, xa = np.asarray(y_arm, dtype=float), np.asarray(x_arm, dtype=float)
    if yc.shape != xc.shape or ya.shape != xa.shape:
        raise ValueError("each group needs one covariate value per outcome")
    if yc.size < 2 or ya.size < 2:
        raise ValueError("Welch's t-test needs at least two observations in each group")
    # centred on the pooled means (which change neither θ nor any difference): sums of squares
    # of small numbers, without the cancellation of raw ones
    y_mean = (yc.sum() + ya.sum()) / (yc.size + ya.size)
    x_mean = (xc.sum() + xa.sum()) / (xc.size + xa.size)

    def moments(y: np.ndarray, x: np.ndarray) -> tuple[float, ...]:
        dy, dx = y - y_mean, x - x_mean
        return (y.size, float(dy.sum()), float(dx.sum()), float(dy @ dy), float(dx @ dx), float(dy @ dx))

    result = cuped_from_moments(moments(yc, xc), moments(ya, xa), alpha)
    a = result.adjusted  # its means back on the scale of Y
    adjusted = dataclasses.replace(a, control_mean=a.control_mean + y_mean, arm_mean=a.arm_mean + y_mean)
    return CupedResult(result.theta, adjusted, result.variance_reduction)


def cuped_from_moments(control: Sequence[float], arm: Sequence[float], alpha: float = 0.05) -> CupedResult:
    """:func:`cuped` from each group's moments (n, ΣY, ΣX, ΣY², ΣX², ΣXY), e.g. of a simulation.

    With N = n_C + n_A, X̄ = ΣX/N and Ȳ = ΣY/N over both groups: θ = S_XY/S_XX,
    S_XY = ΣXY − N·X̄·Ȳ, S_XX = ΣX² − N·X̄² (θ = 0 when S_XX = 0); per group
    ΣY' = ΣY − θ(ΣX − n·X̄) and ΣY'² = ΣY² − 2θ(ΣXY − X̄·ΣY) + θ²(ΣX² − 2X̄·ΣX + n·X̄²); then
    :func:`welch_from_summary` on Y' and on Y. Centre the values first when they are large.
    """
    n_c, y_c, x_c, yy_c, xx_c, xy_c = (float(v) for v in control)
    n_a, y_a, x_a, yy_a, xx_a, xy_a = (float(v) for v in arm)
    n = n_c + n_a
    x_mean, y_mean = (x_c + x_a) / n, (y_c + y_a) / n
    sxx = xx_c + xx_a - n * x_mean * x_mean
    sxy = xy_c + xy_a - n * x_mean * y_mean
    theta = sxy / sxx if sxx > 1e-12 * max(xx_c + xx_a, 1e-300) else 0.0

    def adjusted(m: float, y: float, x: float, yy: float, xx: float, xy: float) -> tuple[float, float]:
        return (
            y - theta * (x - m * x_mean),
            yy - 2 * theta * (xy - x_mean * y) + theta * theta * (xx - 2 * x_mean * x + m * x_mean * x_mean),
        )

    raw = welch_from_summary(int(n_c), y_c, yy_c, int(n_a), y_a, yy_a, alpha)
    s_c, ss_c = adjusted(n_c, y_c, x_c, yy_c, xx_c, xy_c)
    s_a, ss_a = adjusted(n_a, y_a, x_a, yy_a, xx_a, xy_a)
    result = welch_from_summary(int(n_c), s_c, ss_c, int(n_a), s_a, ss_a, alpha)
    raw_var = raw.se**2
    reduction = 1.0 - result.se**2 / raw_var if raw_var > 0 else 0.0
    return CupedResult(theta, result, reduction)


# --- strata ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CMHResult:
    """Cochran-Mantel-Haenszel test and Mantel-Haenszel common odds ratio over 2×2×K tables."""

    statistic: float  # X², with continuity correction unless asked otherwise
    p_value: float
    odds_ratio: float
    ci: tuple[float, float]  # Robins-Breslow-Greenland
    strata: int  # strata used (those with at least two observations)
    alpha: float


def cochran_mantel_haenszel(tables: Iterable[Sequence[float]], alpha: float = 0.05, correct: bool = True) -> CMHResult:
    """CMH test of a common odds ratio of 1, as R's ``mantelhaen.test`` for 2×2×K tables.

    Each table is (a, b, c, d) = (treated-success, treated-failure, control-success,
    control-failure), n_k = a + b + c + d. With E_k = (a+b)(a+c)/n_k and
    V_k = (a+b)(c+d)(a+c)(b+d)/(n_k²(n_k − 1)), Δ = Σ(a_k − E_k):
    X² = (|Δ| − ½)²/ΣV_k (the ½ only when ``correct`` and |Δ| ≥ ½, as R), p = P(χ²₁ > X²).
    Odds ratio OR = ΣR_k/ΣS_k, R_k = a d/n_k, S_k = b c/n_k; Robins-Breslow-Greenland
    var(log OR) = ΣP_kR_k/(2R²) + Σ(P_kS_k + Q_kR_k)/(2RS) + ΣQ_kS_k/(2S²), P_k = (a+d)/n_k,
    Q_k = (b+c)/n_k, R = ΣR_k, S = ΣS_k; interval exp(log OR ± z_{1-α/2}·sqrt(var)).
    Strata with n_k < 2 carry no information and are skipped (R refuses them).
    """
    z = normal_quantile(alpha)
    t = np.asarray(list(tables), dtype=float).reshape(-1, 4)
    n = t.sum(axis=1)
    t, n = t[n >= 2], n[n >= 2]
    a, b, c, d = t.T
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = float(np.sum(a - (a + b) * (a + c) / n))
        var = float(np.sum((a + b) * (c + d) * (a + c) * (b + d) / (n * n * (n - 1))))
        yates = 0.5 if correct and abs(delta) >= 0.5 else 0.0
        x2 = (abs(delta) - yates) ** 2 / var if var > 0 else math.nan
        p = float(_sps().chi2.sf(x2, 1)) if not math.isnan(x2) else math.nan
        r_k, s_k = a * d / n, b * c / n
        p_k, q_k = (a + d) / n, (b + c) / n
        r, s = float(r_k.sum()), float(s_k.sum())
        odds = r / s if s > 0 else (math.inf if r > 0 else math.nan)
        if r > 0 and s > 0:
            var_log = (
                np.sum(p_k * r_k) / (2 * r * r)
                + np.sum(p_k * s_k + q_k * r_k) / (2 * r * s)
                + np.sum(q_k * s_k) / (2 * s * s)
            )
            half = z * math.sqrt(float(var_log))
            ci = (math.exp(math.log(odds) - half), math.exp(math.log(odds) + half))
        else:
            ci = (math.nan, math.nan)
    return CMHResult(float(x2), p, float(odds), ci, int(len(n)), alpha)


def estimable_strata(sizes: Sequence[Sequence[int]], min_per_arm: int) -> np.ndarray:
    """Which strata an estimate may use: those where every compared arm has at least ``min_per_arm``
    recipients (1 for a CMH table, 2 for a post-stratified variance). The others are left out,
    never merged: merging strata with different rates biases both CMH and the post-stratified
    difference. ``sizes`` holds one row per stratum, one count per arm; returns a boolean mask."""
    counts = np.asarray(sizes, dtype=np.int64).reshape(len(sizes), -1) if len(sizes) else np.zeros((0, 2), np.int64)
    return np.asarray(np.all(counts >= min_per_arm, axis=1))


@dataclass(frozen=True)
class PostStratifiedResult:
    """Post-stratified difference in means (arm − control) with its normal interval."""

    diff: float
    se: float
    ci: tuple[float, float]
    statistic: float  # z
    p_value: float
    strata: int
    alpha: float


def post_stratified_diff(
    y_control: Sequence[float] | np.ndarray,
    strata_control: Sequence[Any] | np.ndarray,
    y_arm: Sequence[float] | np.ndarray,
    strata_arm: Sequence[Any] | np.ndarray,
    alpha: float = 0.05,
) -> PostStratifiedResult:
    """Post-stratified difference Σ w_k(ȳ_Ak − ȳ_Ck), w_k = n_k/N (DESIGN.md §8).

    n_k counts both arms of stratum k and N both arms of the strata used; var =
    Σ w_k²(s²_Ak/n_Ak + s²_Ck/n_Ck) with sample variances (divisor n − 1); z = diff/se,
    p = 2·Φ(−|z|), interval diff ± z_{1-α/2}·se. Every stratum needs two observations in each arm:
    leave the others out first (:func:`estimable_strata`), the weights then renormalise over the rest.
    """
    z_crit = normal_quantile(alpha)
    yc, ya = np.asarray(y_control, dtype=float), np.asarray(y_arm, dtype=float)
    sc, sa = np.asarray(strata_control), np.asarray(strata_arm)
    if yc.shape != sc.shape or ya.shape != sa.shape:
        raise ValueError("each group needs one stratum label per outcome")
    labels, codes = np.unique(np.concatenate([sc, sa]), return_inverse=True)
    k = labels.size
    codes_c, codes_a = codes[: yc.size], codes[yc.size :]

    def by_stratum(y: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = np.bincount(code, minlength=k).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.bincount(code, weights=y, minlength=k) / n
            # Two passes (deviations from each stratum's mean) for a stable variance.
            ss = np.bincount(code, weights=(y - mean[code]) ** 2, minlength=k)
            return n, mean, ss / (n - 1)

    n_c, m_c, v_c = by_stratum(yc, codes_c)
    n_a, m_a, v_a = by_stratum(ya, codes_a)
    if np.any(n_c < 2) or np.any(n_a < 2):
        too_small = [str(labels[i]) for i in range(k) if n_c[i] < 2 or n_a[i] < 2]
        raise ValueError(f"strata with fewer than two observations in an arm: {', '.join(too_small)}")
    w = (n_c + n_a) / (n_c.sum() + n_a.sum())
    diff = float(np.sum(w * (m_a - m_c)))
    se = math.sqrt(float(np.sum(w * w * (v_a / n_a + v_c / n_c))))
    if se > 0:
        stat = diff / se
        p = two_sided_normal_p(stat)
    else:
        stat = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
    return PostStratifiedResult(diff, se, (diff - z_crit * se, diff + z_crit * se), stat, p, k, alpha)


# --- sample-ratio mismatch -------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRatioResult:
    """Chi-square goodness of fit of observed arm sizes to the planned shares."""

    chi2: float
    df: int
    p_value: float
    flag: bool
    expected: tuple[float, ...]


def sample_ratio_mismatch(
    counts: Sequence[int], shares: Sequence[float] | None = None, threshold: float = SRM_THRESHOLD
) -> SampleRatioResult:
    """Sample-ratio mismatch: X² = Σ(o_i − e_i)²/e_i with e_i = N·share_i, df = k − 1.

    p = P(χ²_{k−1} > X²); flagged when p < ``threshold`` (0.001). Shares default to equal and
    must be positive and sum to 1 (within 1e-6).
    """
    o = np.asarray(counts, dtype=float)
    if o.ndim != 1 or o.size < 2:
        raise ValueError("sample-ratio mismatch needs at least two arms")
    if np.any(o < 0):
        raise ValueError("counts cannot be negative")
    s = np.full(o.size, 1.0 / o.size) if shares is None else np.asarray(shares, dtype=float)
    if s.shape != o.shape:
        raise ValueError("one share per arm is needed")
    if np.any(s <= 0) or abs(float(s.sum()) - 1.0) > 1e-6:
        raise ValueError("shares must be positive and sum to 1")
    e = o.sum() * s / s.sum()
    if o.sum() == 0:
        return SampleRatioResult(0.0, o.size - 1, 1.0, False, tuple(float(v) for v in e))
    x2 = float(np.sum((o - e) ** 2 / e))
    # chdtrc(k, x) is chi2.sf(x, k): scipy.special alone imports in a third of scipy.stats' time,
    # and the launch (which checks the ratio) needs nothing else of scipy.stats
    from scipy.special import chdtrc

    p = float(chdtrc(o.size - 1, x2))
    return SampleRatioResult(x2, o.size - 1, p, p < threshold, tuple(float(v) for v in e))


# --- winsorisation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Winsorized:
    """Values capped at a percentile of the non-zero values."""

    values: np.ndarray
    cap: float  # NaN when no value is non-zero (nothing to cap)
    n_capped: int
    percentile: float


def winsorize(values: Sequence[float] | np.ndarray, percentile: float = 99.0) -> Winsorized:
    """Cap values above the given percentile of the non-zero values: y_i ← min(y_i, q_p).

    q_p is numpy's default (linear interpolation) percentile over the non-zero values (the buyers,
    for revenue), all arms pooled, so the cap is the same for every arm and does not depend on the
    assignment. A percentile over every recipient would be 0 whenever fewer than 1 − p % buy, and
    would erase every revenue effect. Zeros are left as they are.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError("percentile must be in (0, 100]")
    v = np.asarray(values, dtype=float)
    nonzero = v[v != 0]
    if nonzero.size == 0:
        return Winsorized(v.copy(), math.nan, 0, percentile)
    cap = float(np.percentile(nonzero, percentile))
    return Winsorized(np.minimum(v, cap), cap, int(np.count_nonzero(v > cap)), percentile)


# --- multiplicity ----------------------------------------------------------------------------


def _adjust(p_values: Sequence[float], kind: str) -> list[float]:
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    # As R's p.adjust: missing p-values stay missing and do not count among the tests.
    valid = ~np.isnan(p)
    q = p[valid]
    m = q.size
    if m == 0:
        return list(out.tolist())
    order = np.argsort(q, kind="mergesort")
    ranked = q[order]
    if kind == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        adjusted = np.minimum.accumulate((m / np.arange(m, 0, -1)) * ranked[::-1])[::-1]
    adjusted = np.minimum(adjusted, 1.0)
    back = np.empty(m)
    back[order] = adjusted
    out[valid] = back
    return list(out.tolist())


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: with p₍₁₎ ≤ … ≤ p₍ₘ₎,
    p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎). NaN stays NaN and is not counted in m."""
    return _adjust(p_values, "holm")


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjustment: with p₍₁₎ ≤ … ≤ p₍ₘ₎,
    p̃₍ᵢ₎ = min_{j ≥ i} min(1, m·p₍ⱼ₎/j). NaN stays NaN and is not counted in m."""
    return _adjust(p_values, "bh")


# --- always-valid p-values -------------------------------------------------------------------


@dataclass(frozen=True)
class AlwaysValid:
    """mSPRT always-valid p-values, one per interim look (a running minimum)."""

    p_values: tuple[float, ...]
    likelihood_ratios: tuple[float, ...]
    tau2: float


def msprt_p_values(
    estimates: Sequence[float], variances: Sequence[float], tau2: float, null: float = 0.0
) -> AlwaysValid:
    """Always-valid p-values of the mixture SPRT with a normal mixing distribution.

    At look n, with δ̂ₙ the estimated difference (arm − control, in means or proportions) minus
    ``null`` and Vₙ its variance (e.g. s²_A/n_A + s²_C/n_C, or p(1 − p)/n per arm):
    Λₙ = sqrt(Vₙ/(Vₙ + τ²)) · exp(τ²δ̂ₙ² / (2Vₙ(Vₙ + τ²))), pₙ = min(pₙ₋₁, 1/Λₙ), p₀ = 1.

    τ² is the variance of the normal mixture over the true difference, N(null, τ²). The
    guarantee P(some pₙ ≤ α | H₀) ≤ α holds for any τ² fixed before the data are seen; τ² only
    tunes which effects are detected fastest. Choose τ on the scale of the effect the experiment
    is meant to find (τ² = MDE², the planned minimum detectable effect from ``power.py``):
    the test is then quickest for effects of about that size.
    """
    if not tau2 > 0:
        raise ValueError("the mixing variance tau2 must be positive")
    est = np.asarray(estimates, dtype=float) - null
    var = np.asarray(variances, dtype=float)
    if est.shape != var.shape:
        raise ValueError("one variance per estimate is needed")
    if np.any(var <= 0):
        raise ValueError("variances must be positive")
    # Logarithms keep Λ finite when the evidence is overwhelming.
    log_lr = 0.5 * np.log(var / (var + tau2)) + tau2 * est**2 / (2.0 * var * (var + tau2))
    p = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lr))) if est.size else np.array([])
    with np.errstate(over="ignore"):
        lr = np.exp(log_lr)
    return AlwaysValid(tuple(float(v) for v in p), tuple(float(v) for v in lr), float(tau2))


# --- always-valid intervals ------------------------------------------------------------------------


def confidence_sequence(estimate: float, variance: float, tau2: float, alpha: float = 0.05) -> tuple[float, float]:
    """The always-valid interval of the mSPRT normal mixture (the dual of :func:`msprt_p_values`).

    With V the estimate's variance at this look and τ² the mixing variance: the values δ₀ the test
    would not reject, δ̂ ± sqrt(V(V + τ²)/τ² · (ln((V + τ²)/V) − 2 ln α)). It covers the true
    difference at every look at once with probability ≥ 1 − α, so it may be read at interim looks;
    it is wider than the fixed-horizon interval, which is only valid at the planned end.
    """
    if not (variance > 0 and tau2 > 0) or not math.isfinite(estimate):
        return (math.nan, math.nan)
    half = math.sqrt(
        variance * (variance + tau2) / tau2 * (math.log((variance + tau2) / variance) - 2.0 * math.log(alpha))
    )
    return (estimate - half, estimate + half)
