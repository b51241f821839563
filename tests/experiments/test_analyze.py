"""`pilot analyze` (DESIGN.md §9): Hillstrom against an independent statsmodels/scipy analysis, and user errors."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from experiments.analyze import analyze_command, analyze_file

#: The reference data, outside the repository; PILOT_HILLSTROM_CSV points elsewhere.
HILLSTROM = Path(
    os.environ.get("PILOT_HILLSTROM_CSV") or Path(__file__).resolve().parents[3] / "shared/data/hillstrom/hillstrom.csv"
)
CONTROL = "No E-Mail"
ARMS = [CONTROL, "Mens E-Mail", "Womens E-Mail"]
METRICS = {"conversion": "binary", "visit": "binary", "spend": "continuous"}
ALPHA = 0.05
#: Agreement required: 6 significant digits; p-values under 1e-10 on their logarithm.
SIGNIFICANT = 1e-6
TINY_P = 1e-10


def _hillstrom_path() -> Path:
    if not HILLSTROM.exists():
        message = f"reference data {HILLSTROM} is absent (set PILOT_HILLSTROM_CSV to its path)"
        if os.environ.get("PILOT_REQUIRE_REFERENCE_DATA") == "1":
            pytest.fail(message + ": PILOT_REQUIRE_REFERENCE_DATA=1 requires it")
        pytest.skip(message)
    return HILLSTROM


# --- the independent analysis ---------------------------------------------------------------


def _welch_fields(y_a, y_c, alpha):
    """t, p, df and interval of arm − control by statsmodels."""
    t, p, df = ttest_ind(y_a, y_c, usevar="unequal")
    low, high = CompareMeans(DescrStatsW(y_a), DescrStatsW(y_c)).tconfint_diff(alpha=alpha, usevar="unequal")
    return float(t), float(p), float(df), [float(low), float(high)]


def _relative(m_c, v_c, n_c, m_a, v_a, n_a, alpha):
    """Interval on ln(m_A/m_C): each log-mean has delta-method variance s²/(n·m²); lift = R − 1."""
    centre = math.log(m_a / m_c)
    se = math.sqrt(v_a / n_a / m_a**2 + v_c / n_c / m_c**2)
    z = sps.norm.ppf(1 - alpha / 2)
    return math.exp(centre) - 1, [math.exp(centre - z * se) - 1, math.exp(centre + z * se) - 1]


def _srm(counts, shares):
    result = sps.chisquare(counts, np.sum(counts) * np.asarray(shares))
    return {"chi2": float(result.statistic), "p_value": float(result.pvalue), "flag": bool(result.pvalue < 0.001)}


def independent_analysis(df: pd.DataFrame, alpha: float = ALPHA) -> dict:
    """What `pilot analyze` must print for Hillstrom, computed with statsmodels, scipy and pandas."""
    counts = df["segment"].value_counts()
    n = {arm: int(counts[arm]) for arm in ARMS}
    shares = [1 / 3] * 3
    expected = {
        "n": n,
        "srm": _srm([n[a] for a in ARMS], shares),
        "control": CONTROL,
        "arms": ARMS,
        "alpha": alpha,
        "shares": dict(zip(ARMS, shares)),
        "metrics": METRICS,
        "warnings": [],
    }
    by_channel = df.groupby(["channel", "segment"]).size().unstack()
    expected["srm_by_stratum"] = {
        channel: {
            "n": {a: int(by_channel.loc[channel, a]) for a in ARMS},
            **_srm([by_channel.loc[channel, a] for a in ARMS], shares),
        }
        for channel in sorted(by_channel.index)
    }

    control = df[df["segment"] == CONTROL]
    comparisons = []
    z = sps.norm.ppf(1 - alpha / 2)
    for arm_label in ARMS[1:]:
        arm = df[df["segment"] == arm_label]
        rows = []
        for metric, kind in METRICS.items():
            y_c, y_a = control[metric].to_numpy(float), arm[metric].to_numpy(float)
            n_c, n_a = y_c.size, y_a.size
            row = {"arm": arm_label, "metric": metric, "type": kind, "n_control": n_c, "n_arm": n_a}
            if kind == "binary":
                x_c, x_a = int(y_c.sum()), int(y_a.sum())
                table = np.array([[x_a, n_a - x_a], [x_c, n_c - x_c]])
                assert sps.contingency.expected_freq(table).min() >= 5  # so the z-test applies
                stat, p = proportions_ztest([x_a, x_c], [n_a, n_c])
                low, high = confint_proportions_2indep(x_a, n_a, x_c, n_c, method="wald", compare="diff", alpha=alpha)
                p_c, p_a = x_c / n_c, x_a / n_a
                rel_low, rel_high = confint_proportions_2indep(
                    x_a, n_a, x_c, n_c, compare="ratio", method="log", alpha=alpha
                )
                rel, rel_ci = p_a / p_c - 1, [rel_low - 1, rel_high - 1]
                row.update(
                    control_mean=p_c,
                    arm_mean=p_a,
                    abs_lift=p_a - p_c,
                    abs_ci=[low, high],
                    rel_lift=rel,
                    rel_ci=rel_ci,
                    test="z-test",
                    statistic=stat,
                    p_value=p,
                )
            else:
                stat, p, dof, ci = _welch_fields(y_a, y_c, alpha)
                rel, rel_ci = _relative(y_c.mean(), y_c.var(ddof=1), n_c, y_a.mean(), y_a.var(ddof=1), n_a, alpha)
                row.update(
                    control_mean=y_c.mean(),
                    arm_mean=y_a.mean(),
                    abs_lift=y_a.mean() - y_c.mean(),
                    abs_ci=ci,
                    rel_lift=rel,
                    rel_ci=rel_ci,
                    test="welch",
                    statistic=stat,
                    p_value=p,
                    df=dof,
                )
            row.update(rel_reason=None)

            # CUPED: θ is the least-squares slope of Y on X over both arms.
            x_c, x_a = control["history"].to_numpy(float), arm["history"].to_numpy(float)
            x_all = np.concatenate([x_c, x_a])
            theta = sps.linregress(x_all, np.concatenate([y_c, y_a])).slope
            adj_c, adj_a = y_c - theta * (x_c - x_all.mean()), y_a - theta * (x_a - x_all.mean())
            stat, p, dof, ci = _welch_fields(adj_a, adj_c, alpha)
            se_raw = CompareMeans(DescrStatsW(y_a), DescrStatsW(y_c)).std_meandiff_separatevar
            se_adj = CompareMeans(DescrStatsW(adj_a), DescrStatsW(adj_c)).std_meandiff_separatevar
            row["cuped"] = {
                "theta": theta,
                "abs_lift": adj_a.mean() - adj_c.mean(),
                "abs_ci": ci,
                "p_value": p,
                "variance_reduction": 1 - se_adj**2 / se_raw**2,
                "statistic": stat,
                "df": dof,
                "se": se_adj,
                "history": True,
            }

            channels = sorted(df["channel"].unique())
            if kind == "binary":
                tables = np.empty((2, 2, len(channels)))
                for k, channel in enumerate(channels):
                    a = arm.loc[arm["channel"] == channel, metric]
                    c = control.loc[control["channel"] == channel, metric]
                    tables[:, :, k] = [[a.sum(), a.size - a.sum()], [c.sum(), c.size - c.sum()]]
                strat = StratifiedTable(tables)
                test = strat.test_null_odds(correction=True)
                low, high = strat.oddsratio_pooled_confint(alpha=alpha)
                row["stratified"] = {
                    "test": "CMH",
                    "statistic": test.statistic,
                    # statsmodels' 1 − cdf underflows for visit; the survival function does not.
                    "p_value": sps.chi2.sf(test.statistic, 1),
                    "odds_ratio": strat.oddsratio_pooled,
                    "odds_ratio_ci": [low, high],
                }
            else:
                both = pd.concat([control.assign(is_arm=False), arm.assign(is_arm=True)])
                g = both.groupby(["channel", "is_arm"])[metric].agg(["mean", "var", "count"]).unstack()
                w = (g["count"][True] + g["count"][False]) / len(both)
                diff = float((w * (g["mean"][True] - g["mean"][False])).sum())
                se = math.sqrt(
                    float((w**2 * (g["var"][True] / g["count"][True] + g["var"][False] / g["count"][False])).sum())
                )
                row["stratified"] = {
                    "test": "post-stratified",
                    "statistic": diff / se,
                    "p_value": 2 * sps.norm.sf(abs(diff / se)),
                    "abs_lift": diff,
                    "abs_ci": [diff - z * se, diff + z * se],
                }
            row["stratified"].update(strata=len(channels), left_out_strata=[], left_out=0)
            rows.append(row)
        for row, p in zip(rows, multipletests([r["p_value"] for r in rows], method="holm")[1]):
            row["p_adjusted"] = p
        comparisons.extend(rows)
    for metric in METRICS:  # Holm across the two arms' comparisons with the control, metric by metric
        family = [r for r in comparisons if r["metric"] == metric]
        for row, p, p_cuped in zip(
            family,
            multipletests([r["p_value"] for r in family], method="holm")[1],
            multipletests([r["cuped"]["p_value"] for r in family], method="holm")[1],
        ):
            row["p_adjusted_arms"] = p
            row["cuped"]["p_adjusted_arms"] = p_cuped
    expected["comparisons"] = comparisons
    # the extension: offer against offer (Mens − Womens), the same tests, Holm over the single pair
    first, second = (df[df["segment"] == label] for label in ARMS[1:])
    pairs = []
    for metric, kind in METRICS.items():
        y_a, y_b = first[metric].to_numpy(float), second[metric].to_numpy(float)
        n_a, n_b = y_a.size, y_b.size
        row = {
            "arm": ARMS[1],
            "versus": ARMS[2],
            "metric": metric,
            "type": kind,
            "n_arm": n_a,
            "n_versus": n_b,
            "arm_mean": y_a.mean(),
            "versus_mean": y_b.mean(),
            "abs_diff": y_a.mean() - y_b.mean(),
            "rel_reason": None,
        }
        if kind == "binary":
            x_a, x_b = int(y_a.sum()), int(y_b.sum())
            stat, p = proportions_ztest([x_a, x_b], [n_a, n_b])
            ci = confint_proportions_2indep(x_a, n_a, x_b, n_b, method="wald", compare="diff", alpha=alpha)
            rel_low, rel_high = confint_proportions_2indep(
                x_a, n_a, x_b, n_b, compare="ratio", method="log", alpha=alpha
            )
            row.update(
                abs_ci=list(ci),
                rel_diff=y_a.mean() / y_b.mean() - 1,
                rel_ci=[rel_low - 1, rel_high - 1],
                test="z-test",
                statistic=stat,
                p_value=p,
                p_adjusted=p,
            )
        else:
            stat, p, _dof, ci = _welch_fields(y_a, y_b, alpha)
            rel, rel_ci = _relative(y_b.mean(), y_b.var(ddof=1), n_b, y_a.mean(), y_a.var(ddof=1), n_a, alpha)
            row.update(abs_ci=ci, rel_diff=rel, rel_ci=rel_ci, test="welch", statistic=stat, p_value=p, p_adjusted=p)
        pairs.append(row)
    expected["arm_pairs"] = pairs
    return expected


def assert_agrees(actual, expected, where="$", key=""):
    """Every field of ``actual`` has an independent value in ``expected`` and agrees with it."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert set(actual) == set(expected), f"{where}: fields {sorted(set(actual) ^ set(expected))} differ"
        for k in expected:
            assert_agrees(actual[k], expected[k], f"{where}.{k}", k)
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_agrees(a, e, f"{where}[{i}]", key)
    elif isinstance(expected, (bool, str, np.bool_)) or expected is None:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    else:
        expected = float(expected)
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{where}: {actual!r}"
        assert math.isfinite(expected), where
        if key in ("p_value", "p_adjusted", "p_adjusted_arms") and expected < TINY_P:
            assert actual > 0, f"{where}: p-value underflowed to 0 (expected {expected!r})"
            assert math.log(actual) == pytest.approx(math.log(expected), rel=SIGNIFICANT), where
        else:
            assert actual == pytest.approx(expected, rel=SIGNIFICANT, abs=1e-300), where


# --- Hillstrom, the acceptance test ---------------------------------------------------------

HILLSTROM_OPTIONS = dict(
    arm_column="segment",
    control=CONTROL,
    metrics=["conversion", "visit", "spend"],
    covariate="history",
    strata="channel",
)


@pytest.fixture(scope="module")
def hillstrom_expected():
    return independent_analysis(pd.read_csv(_hillstrom_path()))


@pytest.fixture(scope="module")
def hillstrom_result():
    return analyze_file(_hillstrom_path(), **HILLSTROM_OPTIONS)


def test_hillstrom_analysis_agrees_with_statsmodels(hillstrom_result, hillstrom_expected):
    assert_agrees(hillstrom_result, hillstrom_expected)
    # The file really exercises the tiny-p-value path, and the documented structure is complete.
    assert min(c["p_value"] for c in hillstrom_result["comparisons"]) < 1e-100
    for c in hillstrom_result["comparisons"]:
        assert {
            "arm",
            "metric",
            "type",
            "control_mean",
            "arm_mean",
            "abs_lift",
            "abs_ci",
            "rel_lift",
            "rel_ci",
            "test",
            "statistic",
            "p_value",
            "p_adjusted",
            "cuped",
            "stratified",
        } <= set(c)


def test_hillstrom_command_json_agrees_with_statsmodels(hillstrom_result, hillstrom_expected):
    result = CliRunner().invoke(
        analyze_command,
        [
            str(_hillstrom_path()),
            "--arm",
            "segment",
            "--control",
            CONTROL,
            "--metric",
            "conversion",
            "--metric",
            "visit:binary",
            "--metric",
            "spend:continuous",
            "--covariate",
            "history",
            "--strata",
            "channel",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert_agrees(printed, hillstrom_expected)
    assert printed == json.loads(json.dumps(hillstrom_result))


def test_hillstrom_planned_shares(tmp_path):
    path = _hillstrom_path()
    shares = {"No E-Mail": 0.3, "Mens E-Mail": 0.3, "Womens E-Mail": 0.4}
    got = analyze_file(path, "segment", CONTROL, ["visit"], shares=shares)
    n = got["n"]
    assert_agrees(got["srm"], _srm([n[a] for a in ARMS], [shares[a] for a in ARMS]))
    assert got["srm"]["flag"] is True
    thirds = CliRunner().invoke(
        analyze_command,
        [
            str(path),
            "--arm",
            "segment",
            "--control",
            CONTROL,
            "--metric",
            "visit",
            "--share",
            "No E-Mail=1/3",
            "--share",
            "Mens E-Mail=1/3",
            "--share",
            "Womens E-Mail=1/3",
            "--json",
        ],
    )
    assert thirds.exit_code == 0, thirds.output
    assert json.loads(thirds.stdout)["srm"] == pytest.approx(got["srm"] | _srm([n[a] for a in ARMS], [1 / 3] * 3))


def test_hillstrom_readable_table():
    result = CliRunner().invoke(
        analyze_command,
        [
            str(_hillstrom_path()),
            "--arm",
            "segment",
            "--control",
            CONTROL,
            "--metric",
            "conversion",
            "--metric",
            "spend",
            "--covariate",
            "history",
            "--strata",
            "channel",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Mens E-Mail vs No E-Mail" in out and "Womens E-Mail vs No E-Mail" in out
    assert "z-test" in out and "welch" in out and "CMH" in out and "post-stratified" in out
    assert "CUPED" in out and "no mismatch" in out


# --- small files -----------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "exp.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args):
    return CliRunner().invoke(analyze_command, [str(a) for a in args])


def small_experiment(rng, n=400):
    lines = ["arm,bought,revenue,pre,region"]
    for i in range(n):
        arm = ["ctl", "t1", "t2"][i % 3]
        bought = int(rng.random() < (0.2 if arm == "ctl" else 0.3))
        revenue = round(bought * rng.gamma(2, 20), 2)
        region = "north" if i % 5 else "south"
        lines.append(f"{arm},{bought},{revenue},{round(rng.gamma(2, 20), 2)},{region}")
    return "\n".join(lines) + "\n"


def test_types_inferred_and_multiple_files_equal_one(tmp_path):
    text = small_experiment(np.random.default_rng(0))
    whole = write(tmp_path, text)
    header, *rows = text.splitlines()
    first = write(tmp_path, "\n".join([header] + rows[:150]) + "\n", "a.csv")
    second = write(tmp_path, "\n".join([header] + rows[150:]) + "\n\n", "b.csv")  # trailing blank line
    options = dict(arm_column="arm", control="ctl", metrics=["bought", "revenue"], covariate="pre", strata="region")
    one = analyze_file(whole, **options)
    two = analyze_file([first, second], **options)
    assert one == two
    assert one["metrics"] == {"bought": "binary", "revenue": "continuous"}
    forced = analyze_file(whole, "arm", "ctl", ["bought:continuous"])
    assert forced["comparisons"][0]["test"] == "welch"


def test_small_counts_use_fisher_and_json_stays_valid(tmp_path):
    rows = (
        ["arm,y,s"]
        + [f"c,0,{'a' if i % 2 else 'b'}" for i in range(12)]
        + [f"t,{int(i < 3)},{'a' if i % 2 else 'b'}" for i in range(10)]
        + ["t,0,lonely", "c,0,alone"]
    )
    path = write(tmp_path, "\n".join(rows) + "\n")
    result = run(path, "--arm", "arm", "--control", "c", "--metric", "y", "--strata", "s", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    c = out["comparisons"][0]
    assert c["test"] == "fisher"
    assert c["statistic"] is None  # the sample odds ratio is infinite with no control successes
    assert c["rel_lift"] is None  # nor is a lift relative to a zero control rate defined
    table = [[3, 8], [0, 13]]
    assert c["p_value"] == pytest.approx(sps.fisher_exact(table)[1], rel=1e-12)
    assert c["rel_reason"] == "zero_mean"
    # "lonely" has no control recipient and "alone" no arm recipient: left out (never merged) and counted.
    assert c["stratified"]["left_out_strata"] == ["lonely", "alone"] and c["stratified"]["left_out"] == 2
    assert c["stratified"]["strata"] == 2 and "merged_strata" not in c["stratified"]
    # the arm's buyers are its rows 0, 1, 2: one in stratum a (odd rows), two in b
    tables = np.stack([[[1, 4], [0, 6]], [[2, 3], [0, 6]]], axis=2).astype(float)
    assert c["stratified"]["statistic"] == pytest.approx(
        StratifiedTable(tables).test_null_odds(correction=True).statistic, rel=1e-9
    )
    assert "left out" in run(path, "--arm", "arm", "--control", "c", "--metric", "y", "--strata", "s").stdout


def test_post_stratified_leaves_out_small_strata(tmp_path):
    rows = ["arm,v,s"] + [
        f"{arm},{i * 1.5 % 7 + (arm == 't') * (i % 10 == 0) * 50},{'big' if i % 10 else 'tiny' + str(i)}"
        for i in range(60)
        for arm in ("c", "t")
    ]
    got = analyze_file(write(tmp_path, "\n".join(rows) + "\n"), "arm", "c", ["v"], strata="s")
    st = got["comparisons"][0]["stratified"]
    assert st["test"] == "post-stratified"
    assert sorted(st["left_out_strata"]) == sorted(f"tiny{i}" for i in range(0, 60, 10))
    assert st["left_out"] == 12 and st["strata"] == 1
    # one stratum left: Welch's difference on it, with a normal interval
    big = [i * 1.5 % 7 for i in range(60) if i % 10]
    ref = CompareMeans(DescrStatsW(np.array(big)), DescrStatsW(np.array(big)))
    assert st["abs_lift"] == pytest.approx(0.0, abs=1e-12)
    assert st["abs_ci"][1] == pytest.approx(sps.norm.ppf(0.975) * ref.std_meandiff_separatevar, rel=1e-9)


def test_byte_order_mark_and_quoted_labels(tmp_path):
    text = '\ufeffarm,"y"\n"ctl",1\n"ctl",0\n"a, b",1\n"a, b",1\n'
    got = analyze_file(write(tmp_path, text), "arm", "ctl", ["y"])
    assert got["n"] == {"ctl": 2, "a, b": 2}


# --- user errors: exit status 1, one clear line, no traceback --------------------------------

GOOD = "arm,y,z,g\nc,1,2.5,x\nc,0,3.5,x\nt,1,1.0,y\nt,1,4.0,y\n"


@pytest.mark.parametrize(
    "text, args, message",
    [
        (GOOD, ["--metric", "nope"], "metric column 'nope' not found"),
        (GOOD, ["--metric", "y", "--covariate", "w"], "covariate column 'w' not found"),
        (GOOD, ["--metric", "y:count"], "a metric type is written :binary or :continuous"),
        (GOOD.replace("arm", "group"), ["--metric", "y"], "arm column 'arm' not found"),
        (GOOD, ["--metric", "y", "--control", "zz"], "control arm 'zz' does not occur in column 'arm'"),
        ("arm,y\nc,1\nc,0\nt,1\nt,oops\n", ["--metric", "y"], "line 5, column 'y': 'oops' is not a number"),
        ("arm,y\nc,1\nc,\nt,1\nt,0\n", ["--metric", "y"], "line 3, column 'y': empty value"),
        ("arm,y\nc,1\nc,nan\nt,1\nt,0\n", ["--metric", "y"], "line 3, column 'y': 'nan' is not a finite number"),
        (
            "arm,y\nc,1\nc,2\nt,1\nt,0\n",
            ["--metric", "y:binary"],
            "line 3, column 'y': '2' in a metric declared binary",
        ),
        ("arm,y\nc,1\nc,0,9\nt,1\nt,0\n", ["--metric", "y"], "line 3: 3 fields where the header has 2"),
        ("arm,y\nc,1\n,0\nt,1\nt,0\n", ["--metric", "y"], "line 3, column 'arm': the arm label is empty"),
        (GOOD, ["--metric", "y", "--share", "c=0.5", "--share", "t=0.6"], "the shares sum to 1.1, not 1"),
        (GOOD, ["--metric", "y", "--share", "c=0.5"], "--share is missing for arm 't'"),
        (GOOD, ["--metric", "y", "--share", "c=0.5", "--share", "t=0.4", "--share", "u=0.1"], "'u', not an arm"),
        ("arm,y\nc,1\nc,0\n", ["--metric", "y"], "at least 2 arms are needed"),
        ("arm,y\nc,1\nc,0\nt,1\n", ["--metric", "y"], "arm 't' has fewer than 2 recipients"),
        ("", ["--metric", "y"], "is empty"),
        ("arm,y\n", ["--metric", "y"], "no data rows"),
        (GOOD, ["--metric", "y", "--metric", "y"], "given more than once"),
        (GOOD, ["--metric", "y", "--strata", "g"], None),
        (
            "arm,y,g\nc,1,x\nc,0,\nt,1,y\nt,0,y\n",
            ["--metric", "y", "--strata", "g"],
            "line 3, column 'g': the stratum label is empty",
        ),
        (GOOD, ["--metric", "y", "--metric", "z", "--covariate", "z"], "the covariate 'z' is also a metric"),
        (GOOD, ["--metric", "y", "--ratio", "z"], "is not NUMERATOR/DENOMINATOR"),
        (GOOD, ["--metric", "y", "--ratio", "z/w"], "column 'w' not found"),
        (GOOD, ["--metric", "arm"], "cannot also be a metric"),
    ],
)
def test_user_errors_exit_1_with_a_clear_message(tmp_path, text, args, message):
    path = write(tmp_path, text)
    if "--control" not in args:
        args = [*args, "--control", "c"]
    result = run(path, "--arm", "arm", *args)
    if message is None:  # the valid variant of a case below
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_bad_arguments_exit_2(tmp_path):
    path = write(tmp_path, GOOD)
    assert run(path, "--arm", "arm", "--control", "c", "--metric", "y", "--share", "c").exit_code == 2
    assert run(path, "--arm", "arm", "--control", "c", "--metric", "y", "--share", "c=half").exit_code == 2
    assert run(path, "--arm", "arm", "--control", "c", "--metric", "y", "--alpha", "1.5").exit_code == 2
    assert run(tmp_path / "absent.csv", "--arm", "arm", "--control", "c", "--metric", "y").exit_code == 2


def test_analyze_file_raises_click_exception(tmp_path):
    import click

    with pytest.raises(click.ClickException, match="line 5"):
        analyze_file(write(tmp_path, "arm,y\nc,1\nc,0\nt,1\nt,x\n"), "arm", "c", ["y"])


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("arm,y\nc,1\nc,0\nt,1\nt,0\nt,1,é\n".encode("latin-1"))
    result = run(path, "--arm", "arm", "--control", "c", "--metric", "y")
    assert result.exit_code == 1 and "is not UTF-8 text" in result.output


def test_winsorize_option_caps_at_the_percentile_of_buyers(tmp_path):
    rng = np.random.default_rng(21)
    n = 6000
    arm = rng.choice(["c", "t1", "t2"], n)
    spend = np.where(rng.random(n) < 0.008, rng.lognormal(3, 1.2, n), 0.0)  # under 1 % buyers
    path = write(tmp_path, "arm,spend\n" + "".join(f"{a},{v:.4f}\n" for a, v in zip(arm, spend)))
    plain = analyze_file(path, "arm", "c", ["spend"])
    assert "winsorize" not in plain and all("winsorised" not in c for c in plain["comparisons"])
    result = run(path, "--arm", "arm", "--control", "c", "--metric", "spend", "--winsorize", "99", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    values = np.round(spend, 4)
    cap = np.percentile(values[values > 0], 99)
    assert cap > 0 and got["winsorize"]["cap"]["spend"] == pytest.approx(cap, rel=1e-12)
    assert got["winsorize"]["capped"]["spend"] == int((values > cap).sum())
    capped = np.minimum(values, cap)
    ps = []
    for c in got["comparisons"]:
        t, p, _ = ttest_ind(capped[arm == c["arm"]], capped[arm == "c"], usevar="unequal")
        assert c["winsorised"]["statistic"] == pytest.approx(t, rel=1e-9)
        assert c["winsorised"]["p_value"] == pytest.approx(p, rel=1e-9)
        assert c["winsorised"]["cap"] == pytest.approx(cap, rel=1e-12)
        ps.append(p)
    assert [c["winsorised"]["p_adjusted_arms"] for c in got["comparisons"]] == pytest.approx(
        list(multipletests(ps, method="holm")[1]), rel=1e-9
    )
    assert (
        "winsorised (cap"
        in run(path, "--arm", "arm", "--control", "c", "--metric", "spend", "--winsorize", "99").stdout
    )
    assert run(path, "--arm", "arm", "--control", "c", "--metric", "spend", "--winsorize", "5").exit_code == 1


def test_hillstrom_fails_rather_than_skips_when_required(tmp_path):
    """With PILOT_REQUIRE_REFERENCE_DATA=1 (set by .ci/run) a missing reference file is a failure."""
    import subprocess
    import sys

    env = {**os.environ, "PILOT_REQUIRE_REFERENCE_DATA": "1", "PILOT_HILLSTROM_CSV": str(tmp_path / "absent.csv")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-q",
            f"{__file__}::test_hillstrom_readable_table",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 failed" in done.stdout and "PILOT_REQUIRE_REFERENCE_DATA" in done.stdout


def test_constant_metric_and_covariate_copies_are_warned(tmp_path):
    text = "arm,y,z,pre,flat\nc,1,2.5,0,3\nc,0,3.5,0,3\nt,1,1.0,0,3\nt,1,4.0,0,3\n"
    path = write(tmp_path, text)
    result = CliRunner().invoke(
        analyze_command,
        [
            str(path),
            "--arm",
            "arm",
            "--control",
            "c",
            "--metric",
            "flat",
            "--metric",
            "z",
            "--covariate",
            "pre",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert any("'flat' has the same value" in w for w in got["warnings"])
    assert any("no history before the launch" in w for w in got["warnings"])
    assert "warning: metric 'flat'" in result.stderr
    cu = next(c for c in got["comparisons"] if c["metric"] == "z")["cuped"]
    assert cu["history"] is False and cu["variance_reduction"] is None and cu["theta"] is None
    copy = analyze_file(
        write(tmp_path, "arm,y,x\nc,1,1\nc,0,0\nt,1,1\nt,0,0\n", "copy.csv"),
        "arm",
        "c",
        ["y:continuous"],
        covariate="x",
    )
    assert any("holds exactly the values of metric 'y'" in w for w in copy["warnings"])


def test_ratio_metric_delta_method(tmp_path):
    rng = np.random.default_rng(5)
    n = 3000
    arm = rng.choice(["c", "t"], n)
    orders = rng.poisson(np.where(arm == "t", 0.35, 0.3))
    tickets = orders * 2 + rng.poisson(orders * 0.5)
    path = write(tmp_path, "arm,orders,tickets\n" + "".join(f"{a},{o},{t}\n" for a, o, t in zip(arm, orders, tickets)))
    got = analyze_file(path, "arm", "c", ["orders"], ratios=["tickets/orders"])
    (r,) = got["ratios"]

    # independently: the linearised (influence) values (y − R·x)/x̄ of each arm, their variance over n
    def arm_ratio(mask):
        y, x = tickets[mask].astype(float), orders[mask].astype(float)
        ratio = y.sum() / x.sum()
        return ratio, DescrStatsW((y - ratio * x) / x.mean()).std_mean ** 2

    (r_c, v_c), (r_a, v_a) = arm_ratio(arm == "c"), arm_ratio(arm == "t")
    se = math.sqrt(v_c + v_a)
    assert r["control_ratio"] == pytest.approx(r_c) and r["arm_ratio"] == pytest.approx(r_a) and r["arm"] == "t"
    assert r["ci"] == pytest.approx([r_a - r_c - 1.959963984540054 * se, r_a - r_c + 1.959963984540054 * se])
    assert r["p_value"] == pytest.approx(2 * sps.norm.sf(abs(r_a - r_c) / se))
    assert (
        "ratio tickets/orders (delta method)"
        in run(path, "--arm", "arm", "--control", "c", "--metric", "orders", "--ratio", "tickets/orders").stdout
    )


def test_help_describes_every_method():
    text = CliRunner().invoke(analyze_command, ["--help"]).output
    for words in (
        "Welch",
        "Newcombe",
        "ln(m_A/m_C)",
        "p_adjusted_arms",
        "CUPED",
        "left out",
        "--winsorize PCT",
        "non-zero values",
        "--ratio NUM/DEN",
        "delta-method",
        "chi-square",
    ):
        assert words in text, words
