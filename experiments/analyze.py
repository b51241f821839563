"""`pilot analyze`: the lift analysis of an experiment run outside the application (DESIGN.md §9)."""

from __future__ import annotations

import array
import csv
import json
import math
import os
from dataclasses import dataclass, field

import click
import numpy as np

from experiments import stats, summaries
from experiments.arm_pairs import compare_arm_pairs

METRIC_TYPES = ("binary", "continuous")
#: Planned shares may be typed with a few decimals (0.333, 0.333, 0.334): they must sum to 1
#: within this tolerance and are then rescaled to sum to exactly 1.
SHARE_TOLERANCE = 1e-3


class AnalyzeError(click.ClickException):
    """A user error in the file or the options: reported on one line, exit status 1."""


# --- options -----------------------------------------------------------------------------------


def parse_metric(spec: str | tuple) -> tuple[str, str | None]:
    """``"spend:continuous"`` → ``("spend", "continuous")``; ``"visit"`` → ``("visit", None)``.

    A suffix that is not a metric type stays part of the column name.
    """
    if isinstance(spec, tuple):
        name, kind = spec
    else:
        name, sep, kind = spec.rpartition(":")
        if not sep or kind not in METRIC_TYPES:
            name, kind = spec, None
    if kind is not None and kind not in METRIC_TYPES:
        raise AnalyzeError(f"metric {name!r}: unknown type {kind!r} (use binary or continuous)")
    if not name:
        raise AnalyzeError(f"metric {spec!r} has no column name")
    return name, kind


def parse_fraction(text: str) -> float:
    """``"0.25"`` or ``"1/4"`` → 0.25; ValueError otherwise."""
    num, sep, den = text.strip().partition("/")
    value = float(num) / float(den) if sep else float(num)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _shares_callback(ctx, param, values):
    shares = {}
    for item in values:
        label, sep, fraction = item.rpartition("=")
        if not sep or not label:
            raise click.BadParameter(f"{item!r} is not LABEL=FRACTION", ctx, param)
        try:
            shares[label] = parse_fraction(fraction)
        except (ValueError, ZeroDivisionError):
            raise click.BadParameter(f"{fraction!r} is not a fraction (in {item!r})", ctx, param) from None
    return shares or None


def _metrics_callback(ctx, param, values):
    try:
        return [parse_metric(v) for v in values]
    except AnalyzeError as error:
        raise click.BadParameter(error.message, ctx, param) from None


# --- reading -----------------------------------------------------------------------------------


@dataclass
class ExperimentData:
    """The columns an analysis needs, one entry per recipient, across every file read."""

    arm_labels: list[str]
    arm_codes: np.ndarray
    metrics: dict[str, np.ndarray]
    covariate: np.ndarray | None = None
    strata_labels: list[str] = field(default_factory=list)
    strata_codes: np.ndarray | None = None


def _column_index(header: list[str], name: str, path: str, role: str) -> int:
    positions = [i for i, h in enumerate(header) if h == name]
    if not positions:
        hint = " (a metric type is written :binary or :continuous)" if role == "metric" and ":" in name else ""
        raise AnalyzeError(
            f"{path}: {role} column {name!r} not found{hint}; the header has: " + ", ".join(repr(h) for h in header)
        )
    if len(positions) > 1:
        raise AnalyzeError(f"{path}: column {name!r} appears {len(positions)} times in the header")
    return positions[0]


def read_experiment(
    paths,
    arm_column: str,
    metrics: list[tuple[str, str | None]],
    covariate: str | None = None,
    strata: str | None = None,
) -> ExperimentData:
    """Stream CSV files (header on line 1) into numpy arrays; AnalyzeError names file, line and column.

    Every file must hold the named columns; metric and covariate values must be finite numbers,
    and a metric declared binary only 0 or 1. Blank lines are skipped.
    """
    arm_index: dict[str, int] = {}
    strata_index: dict[str, int] = {}
    arm_codes = array.array("q")
    strata_codes = array.array("q")
    metric_values = {name: array.array("d") for name, _ in metrics}
    covariate_values = array.array("d")
    binary_declared = {name for name, kind in metrics if kind == "binary"}
    rows = 0

    for path in paths:
        path = os.fspath(path)
        try:
            handle = open(path, newline="", encoding="utf-8-sig")
        except OSError as error:
            raise AnalyzeError(f"cannot read {path}: {error.strerror}") from None
        with handle:
            reader = csv.reader(handle)
            try:
                header = next(reader, None)
                if header is None or not any(h.strip() for h in header):
                    raise AnalyzeError(f"{path} is empty: a header line naming the columns is expected")
                header = [h.strip() for h in header]
                arm_i = _column_index(header, arm_column, path, "arm")
                metric_cols = [
                    (name, _column_index(header, name, path, "metric"), metric_values[name], name in binary_declared)
                    for name, _ in metrics
                ]
                cov_i = _column_index(header, covariate, path, "covariate") if covariate else None
                strata_i = _column_index(header, strata, path, "strata") if strata else None
                width = len(header)
                for row in reader:
                    line = reader.line_num
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    if len(row) != width:
                        raise AnalyzeError(f"{path}, line {line}: {len(row)} fields where the header has {width}")
                    label = row[arm_i].strip()
                    if not label:
                        raise AnalyzeError(f"{path}, line {line}, column {arm_column!r}: the arm label is empty")
                    code = arm_index.get(label)
                    if code is None:
                        code = arm_index[label] = len(arm_index)
                    arm_codes.append(code)
                    for name, i, values, binary in metric_cols:
                        value = _number(row[i], path, line, name)
                        if binary and value != 0.0 and value != 1.0:
                            raise AnalyzeError(
                                f"{path}, line {line}, column {name!r}: {row[i].strip()!r} in a "
                                f"metric declared binary (values must be 0 or 1)"
                            )
                        values.append(value)
                    if cov_i is not None:
                        covariate_values.append(_number(row[cov_i], path, line, covariate))
                    if strata_i is not None:
                        stratum = row[strata_i].strip()
                        if not stratum:
                            raise AnalyzeError(
                                f"{path}, line {line}, column {strata!r}: the stratum label is empty "
                                f"(give every row a stratum, e.g. 'unknown')"
                            )
                        code = strata_index.get(stratum)
                        if code is None:
                            code = strata_index[stratum] = len(strata_index)
                        strata_codes.append(code)
                    rows += 1
            except csv.Error as error:
                raise AnalyzeError(f"{path}, line {reader.line_num}: malformed CSV ({error})") from None
            except UnicodeDecodeError as error:
                # Text is decoded by the block, so the offending line is not known.
                raise AnalyzeError(
                    f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} cannot be "
                    f"decoded); save it as UTF-8"
                ) from None

    if rows == 0:
        raise AnalyzeError("no data rows in " + ", ".join(os.fspath(p) for p in paths) + ": only a header")
    return ExperimentData(
        arm_labels=list(arm_index),
        arm_codes=np.frombuffer(arm_codes, dtype=np.int64),
        metrics={name: np.frombuffer(values, dtype=float) for name, values in metric_values.items()},
        covariate=np.frombuffer(covariate_values, dtype=float) if covariate else None,
        strata_labels=list(strata_index),
        strata_codes=np.frombuffer(strata_codes, dtype=np.int64) if strata else None,
    )


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        if not text.strip():
            raise AnalyzeError(
                f"{path}, line {line}, column {column!r}: empty value where a number is needed"
            ) from None
        raise AnalyzeError(f"{path}, line {line}, column {column!r}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise AnalyzeError(f"{path}, line {line}, column {column!r}: {text.strip()!r} is not a finite number")
    return value


# --- analysis ----------------------------------------------------------------------------------

_num = summaries.json_number
_pair = summaries.json_pair


def _planned_shares(arms: list[str], shares: dict[str, float] | None, arm_column: str) -> list[float]:
    if not shares:
        return [1.0 / len(arms)] * len(arms)
    unknown = [label for label in shares if label not in arms]
    if unknown:
        raise AnalyzeError(
            f"--share names {', '.join(map(repr, unknown))}, not an arm of column {arm_column!r} "
            f"(arms: {', '.join(map(repr, arms))})"
        )
    missing = [label for label in arms if label not in shares]
    if missing:
        raise AnalyzeError(f"--share is missing for arm {', '.join(map(repr, missing))}: give every arm's share")
    bad = [label for label in arms if not shares[label] > 0]
    if bad:
        raise AnalyzeError(f"--share for {', '.join(map(repr, bad))} must be positive")
    total = sum(shares[label] for label in arms)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise AnalyzeError(f"the shares sum to {total:g}, not 1")
    return [shares[label] / total for label in arms]


# The comparison builders live in experiments.stats, shared with the in-app lift reports.
_srm_dict = summaries.srm_summary
_compare = summaries.compare_summary
_stratified = summaries.stratified_summary


def parse_ratio(spec: str) -> tuple[str, str]:
    """``"spend/orders"`` → ``("spend", "orders")``; AnalyzeError otherwise."""
    num, sep, den = spec.partition("/")
    if not sep or not num.strip() or not den.strip():
        raise AnalyzeError(f"--ratio {spec!r} is not NUMERATOR/DENOMINATOR (two column names)")
    return num.strip(), den.strip()


def analyze_file(
    path,
    arm_column: str,
    control: str,
    metrics,
    covariate: str | None = None,
    strata: str | None = None,
    shares: dict[str, float] | None = None,
    alpha: float = 0.05,
    winsorize: float | None = None,
    ratios=(),
) -> dict:
    """Analyse an experiment stored as CSV (one row per recipient); the JSON structure of DESIGN.md §9.

    ``path`` is one path or a list of paths (read in turn, each with its header). ``metrics`` are
    ``"NAME[:binary|:continuous]"`` strings or ``(name, type-or-None)`` pairs; an untyped metric is
    binary when all its values are 0 or 1. ``shares`` maps every arm label to its planned fraction
    (equal shares without it). Each arm is compared with ``control`` on every metric; ``p_adjusted``
    is Holm over the metrics of that arm, ``p_adjusted_arms`` Holm across the arms for that metric.
    With ``covariate``: CUPED. With ``strata``: CMH for binary metrics, a post-stratified difference
    for continuous ones (strata lacking an arm left out, never merged), and sample-ratio checks per
    stratum. With ``winsorize`` (a percentile such as 99): each continuous metric is also compared
    after capping at that percentile of its non-zero values, arms pooled (``winsorised`` in each
    row, the caps under ``winsorize``). ``ratios`` (``"NUM/DEN"`` column pairs, e.g. revenue per
    buyer, tickets per order): ΣNUM/ΣDEN per arm compared with the delta method, under ``ratios``.
    ``warnings`` lists what the reader should know (a constant metric, a covariate identical to a
    metric, a covariate without history). Raises :class:`AnalyzeError` (a ``click.ClickException``)
    on a user error: a blank arm or stratum label, a covariate that is one of the metrics, ...
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise AnalyzeError("no file to analyse")
    if not 0.0 < alpha < 1.0:
        raise AnalyzeError(f"alpha must be between 0 and 1, got {alpha}")
    if winsorize is not None and not 50.0 <= winsorize < 100.0:
        raise AnalyzeError(f"--winsorize takes a percentile between 50 and 100 (such as 99), got {winsorize:g}")
    if isinstance(metrics, str):
        metrics = [metrics]
    specs = [parse_metric(m) for m in metrics]
    if not specs:
        raise AnalyzeError("give at least one --metric")
    names = [name for name, _ in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnalyzeError(f"metric {', '.join(map(repr, duplicates))} given more than once")
    for column, role in ((covariate, "covariate"), (strata, "strata")):
        if column is not None and column == arm_column:
            raise AnalyzeError(f"the {role} column cannot be the arm column {arm_column!r}")
    if arm_column in names:
        raise AnalyzeError(f"the arm column {arm_column!r} cannot also be a metric")
    if covariate is not None and covariate in names:
        raise AnalyzeError(
            f"the covariate {covariate!r} is also a metric: CUPED needs the same measure taken "
            f"before the launch (a pre-period column), not the outcome itself"
        )
    if strata is not None and strata in names:
        raise AnalyzeError(f"the strata column {strata!r} cannot also be a metric")
    ratio_pairs = [parse_ratio(r) if isinstance(r, str) else tuple(r) for r in ratios]
    extra = [c for pair in ratio_pairs for c in pair if c not in names and c != arm_column]
    extra = list(dict.fromkeys(extra))

    data = read_experiment(paths, arm_column, specs + [(c, None) for c in extra], covariate, strata)
    if control not in data.arm_labels:
        raise AnalyzeError(
            f"control arm {control!r} does not occur in column {arm_column!r} "
            f"(arms: {', '.join(map(repr, sorted(data.arm_labels)))})"
        )
    if len(data.arm_labels) < 2:
        raise AnalyzeError(f"column {arm_column!r} holds a single arm ({control!r}): at least 2 arms are needed")
    # Control first, then the other arms by label: output independent of row order.
    arms = [control] + sorted(label for label in data.arm_labels if label != control)
    code_of = {label: i for i, label in enumerate(data.arm_labels)}
    counts = np.bincount(data.arm_codes, minlength=len(data.arm_labels))
    n = {label: int(counts[code_of[label]]) for label in arms}
    small = [label for label in arms if n[label] < 2]
    if small:
        raise AnalyzeError(f"arm {', '.join(map(repr, small))} has fewer than 2 recipients")
    planned = _planned_shares(arms, shares, arm_column)
    kinds = {}
    for name, kind in specs:
        values = data.metrics[name]
        kinds[name] = kind or ("binary" if np.all((values == 0.0) | (values == 1.0)) else "continuous")

    warnings = []
    for name, _ in specs:
        values = data.metrics[name]
        if values.size and np.all(values == values[0]):
            warnings.append(
                f"metric {name!r} has the same value ({values[0]:g}) for every recipient: "
                f"no comparison can show anything"
            )
        if covariate and np.array_equal(values, data.covariate):
            warnings.append(
                f"the covariate {covariate!r} holds exactly the values of metric {name!r}: it is not a "
                f"pre-period measure, its CUPED estimate is meaningless"
            )
    if covariate and data.covariate.size and np.all(data.covariate == data.covariate[0]):
        warnings.append(
            f"the covariate {covariate!r} is the same for every recipient (no history before the "
            f"launch): CUPED adjusts nothing"
        )
    result = {
        "n": n,
        "srm": _srm_dict(stats.sample_ratio_mismatch([n[a] for a in arms], planned)),
        "control": control,
        "arms": arms,
        "alpha": alpha,
        "shares": dict(zip(arms, planned)),
        "metrics": kinds,
        "warnings": warnings,
    }
    if strata:
        by_stratum = {}
        for j, label in enumerate(data.strata_labels):
            in_stratum = data.strata_codes == j
            per_arm = np.bincount(data.arm_codes[in_stratum], minlength=len(data.arm_labels))
            srm = stats.sample_ratio_mismatch([int(per_arm[code_of[a]]) for a in arms], planned)
            by_stratum[label] = {"n": {a: int(per_arm[code_of[a]]) for a in arms}, **_srm_dict(srm)}
        result["srm_by_stratum"] = {label: by_stratum[label] for label in sorted(by_stratum)}

    capped = {}
    if winsorize is not None:
        for name, _ in specs:
            if kinds[name] == "continuous":
                capped[name] = stats.winsorize(data.metrics[name], winsorize)
        result["winsorize"] = {
            "percentile": winsorize,
            "cap": {name: _num(w.cap) for name, w in capped.items()},
            "capped": {name: w.n_capped for name, w in capped.items()},
        }

    control_mask = data.arm_codes == code_of[control]
    comparisons = []
    for arm in arms[1:]:
        arm_mask = data.arm_codes == code_of[arm]
        rows = []
        for name, _ in specs:
            kind = kinds[name]
            y = data.metrics[name]
            y_c, y_a = y[control_mask], y[arm_mask]
            row = {"arm": arm, "metric": name, "type": kind, "n_control": n[control], "n_arm": n[arm]}
            row.update(_compare(kind, y_c, y_a, alpha))
            if name in capped:
                w = capped[name].values
                row["winsorised"] = {
                    "cap": _num(capped[name].cap),
                    **_compare("continuous", w[control_mask], w[arm_mask], alpha),
                }
            if covariate:
                x = data.covariate
                row["cuped"] = summaries.cuped_summary(y_c, x[control_mask], y_a, x[arm_mask], alpha)
            if strata:
                s = data.strata_codes
                row["stratified"] = _stratified(kind, y_c, s[control_mask], y_a, s[arm_mask], data.strata_labels, alpha)
            rows.append(row)
        summaries.fill_holm(rows)
        comparisons.extend(rows)
    summaries.fill_holm_arms(comparisons)
    winsorised = [c["winsorised"] | {"metric": c["metric"]} for c in comparisons if "winsorised" in c]
    summaries.fill_holm_arms(winsorised)
    for c, w in zip([c for c in comparisons if "winsorised" in c], winsorised):
        c["winsorised"]["p_adjusted_arms"] = w["p_adjusted_arms"]
    result["comparisons"] = comparisons
    if len(arms) > 2:  # an extension: each pair of test arms (A − B), Holm over the pairs of a metric
        result["arm_pairs"] = compare_arm_pairs(
            arms[1:], kinds, lambda a, m: data.metrics[m][data.arm_codes == code_of[a]], alpha
        )
    if ratio_pairs:
        out = []
        for arm in arms[1:]:
            arm_mask = data.arm_codes == code_of[arm]
            for num, den in ratio_pairs:
                y, x = data.metrics[num], data.metrics[den]
                out.append(
                    {
                        "arm": arm,
                        "ratio": f"{num}/{den}",
                        **summaries.ratio_summary(y[control_mask], x[control_mask], y[arm_mask], x[arm_mask], alpha),
                    }
                )
        result["ratios"] = out
    return result


# --- the readable report -----------------------------------------------------------------------


def _g(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f}%"


def _ci(pair, fmt=_g) -> str:
    return f"[{fmt(pair[0])}, {fmt(pair[1])}]"


def _p(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


#: Why a relative lift is not estimable, in the readable report.
REL_REASONS = {
    "zero_mean": "n/a (a mean is 0)",
    "negative_mean": "n/a (a mean is negative)",
    "few_events": "n/a (under 5 events in an arm)",
}


def format_report(result: dict) -> str:
    """The analysis as plain-text tables, one block per arm compared with the control."""
    level = f"{(1 - result['alpha']) * 100:g}%"
    control = result["control"]
    lines = [
        "Arms: "
        + ", ".join(f"{arm} {count}" + (" (control)" if arm == control else "") for arm, count in result["n"].items())
    ]
    srm = result["srm"]
    verdict = "MISMATCH: check the assignment before reading any lift" if srm["flag"] else "no mismatch"
    lines.append(f"Sample ratio: chi2 = {_g(srm['chi2'])}, p = {_p(srm['p_value'])} ({verdict})")
    lines += [f"Warning: {w}" for w in result.get("warnings", [])]
    for label, s in result.get("srm_by_stratum", {}).items():
        if s["flag"]:
            lines.append(f"  stratum {label!r}: sample-ratio mismatch, p = {_p(s['p_value'])}")
    several = len(result["arms"]) > 2
    header = [
        "metric",
        "type",
        "control",
        "arm",
        "abs lift",
        f"{level} CI",
        "rel lift",
        f"{level} CI",
        "test",
        "statistic",
        "p",
        "p (Holm)",
    ] + (["p (Holm, arms)"] if several else [])
    for arm in result["arms"][1:]:
        rows = [c for c in result["comparisons"] if c["arm"] == arm]
        table = [header] + [
            [
                c["metric"],
                c["type"],
                _g(c["control_mean"]),
                _g(c["arm_mean"]),
                _g(c["abs_lift"]),
                _ci(c["abs_ci"]),
                _pct(c["rel_lift"]),
                _ci(c["rel_ci"], _pct)
                if c.get("rel_reason") is None
                else REL_REASONS.get(c["rel_reason"], c["rel_reason"]),
                c["test"],
                _g(c["statistic"]),
                _p(c["p_value"]),
                _p(c["p_adjusted"]),
            ]
            + ([_p(c["p_adjusted_arms"])] if several else [])
            for c in rows
        ]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines += ["", f"{arm} vs {control}"]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
        for c in rows:
            if "cuped" in c:
                cu = c["cuped"]
                if not cu.get("history", True):
                    lines.append(
                        f"  {c['metric']}, CUPED: no history before the launch (the covariate is the "
                        f"same for everyone): nothing to adjust, the raw estimate stands"
                    )
                else:
                    lines.append(
                        f"  {c['metric']}, CUPED: abs lift {_g(cu['abs_lift'])} {_ci(cu['abs_ci'])}, "
                        f"p = {_p(cu['p_value'])}, theta = {_g(cu['theta'])}, "
                        f"variance reduction {_pct(cu['variance_reduction'])}"
                    )
            if "stratified" in c:
                st = c["stratified"]
                if st["test"] == "CMH":
                    body = f"odds ratio {_g(st['odds_ratio'])} {_ci(st['odds_ratio_ci'])}, X2 = {_g(st['statistic'])}"
                else:
                    body = f"abs lift {_g(st['abs_lift'])} {_ci(st['abs_ci'])}, z = {_g(st['statistic'])}"
                left = (
                    f"; left out (an arm has too few recipients there): "
                    f"{len(st['left_out_strata'])} strata, {st['left_out']} recipients"
                    if st["left_out_strata"]
                    else ""
                )
                lines.append(
                    f"  {c['metric']}, {st['test']} over {st['strata']} strata: {body}, p = {_p(st['p_value'])}{left}"
                )
            if "winsorised" in c:
                w = c["winsorised"]
                lines.append(
                    f"  {c['metric']}, winsorised (cap {_g(w['cap'])}): abs lift {_g(w['abs_lift'])} "
                    f"{_ci(w['abs_ci'])}, p = {_p(w['p_value'])}"
                )
        for r in result.get("ratios", []):
            if r["arm"] == arm:
                body = (
                    "not estimable (a denominator is 0)"
                    if r["reason"]
                    else f"control {_g(r['control_ratio'])}, arm {_g(r['arm_ratio'])}, difference {_g(r['diff'])} "
                    f"{_ci(r['ci'])}, p = {_p(r['p_value'])}"
                )
                lines.append(f"  ratio {r['ratio']} (delta method): {body}")
    pairs = result.get("arm_pairs") or []
    if pairs:
        lines += ["", "Offer against offer (difference = first arm - second arm)"]
        for c in pairs:
            body = (
                (c.get("error") or "")
                if c.get("p_value") is None
                else (
                    f"{_g(c['arm_mean'])} vs {_g(c['versus_mean'])}, difference {_g(c['abs_diff'])} {_ci(c['abs_ci'])}, "
                    f"{c['test']}, p = {_p(c['p_value'])}, p (Holm, pairs) = {_p(c['p_adjusted'])}"
                )
            )
            lines.append(f"  {c['arm']} vs {c['versus']}, {c['metric']}: {body}")
    return "\n".join(lines)


@click.command("analyze")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--arm", "arm_column", required=True, metavar="COLUMN", help="Column holding each recipient's arm.")
@click.option("--control", required=True, metavar="LABEL", help="Label of the control arm.")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    required=True,
    callback=_metrics_callback,
    metavar="NAME[:binary|:continuous]",
    help="Outcome column (repeatable); binary when omitted and every value is 0 or 1.",
)
@click.option("--covariate", metavar="COLUMN", help="Pre-period covariate for CUPED.")
@click.option("--strata", metavar="COLUMN", help="Stratum column: CMH and post-stratified estimates.")
@click.option(
    "--share",
    "shares",
    multiple=True,
    callback=_shares_callback,
    metavar="LABEL=FRACTION",
    help="Planned share of an arm (repeatable; every arm, summing to 1). Default: equal.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Two-sided significance level of tests and intervals.",
)
@click.option(
    "--winsorize",
    type=float,
    default=None,
    metavar="PCT",
    help="Also compare each continuous metric capped at this percentile (e.g. 99) of its non-zero "
    "values, arms pooled. Off by default.",
)
@click.option(
    "--ratio",
    "ratios",
    multiple=True,
    metavar="NUM/DEN",
    help="Ratio metric ΣNUM/ΣDEN per arm (repeatable), e.g. spend/buyers (revenue per buyer) or "
    "tickets/orders; compared with a delta-method interval.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def analyze_command(files, arm_column, control, metrics, covariate, strata, shares, alpha, winsorize, ratios, as_json):
    """Analyse an experiment run outside the application: one CSV row per recipient.

    \b
    Each arm is compared with the control on every metric (z = z_{1-alpha/2}):
    - binary: pooled two-proportion z-test, unpooled Wald interval for the
      difference; Fisher's exact p and Newcombe's interval when an expected
      cell count is under 5;
    - continuous: Welch's t-test, Welch-Satterthwaite interval;
    - relative lift m_A/m_C - 1: exp(ln(m_A/m_C) +- z*sqrt(s2_A/(n_A m_A^2)
      + s2_C/(n_C m_C^2))) - 1; null with rel_reason when a mean is 0 or a
      binary arm has under 5 events;
    - p_adjusted: Holm over the arm's metrics; p_adjusted_arms: Holm across
      the arms' comparisons with the control, metric by metric;
    - with two test arms or more, "arm_pairs": each pair of test arms
      (arm - versus, e.g. A - B) with the same tests, p_adjusted Holm over
      the pairs of a metric;
    - --covariate: CUPED, theta = cov(Y,X)/var(X) over both arms, Welch on
      Y - theta(X - mean X); "history": false when X is constant;
    - --strata: CMH (binary; Mantel-Haenszel odds ratio, Robins-Breslow-
      Greenland interval) or the post-stratified difference sum w_k(d_k),
      w_k = n_k/N (continuous); strata where an arm has too few recipients
      are left out (left_out_strata, left_out), never merged;
    - --winsorize PCT: also each continuous metric capped at the PCT
      percentile of its non-zero values, arms pooled (the cap is printed);
    - --ratio NUM/DEN: sum NUM / sum DEN per arm, delta-method interval;
    - sample ratio: chi-square against --share (default equal), flagged at
      p < 0.001.
    Warnings (stderr, and "warnings" in the JSON): a constant metric, a
    covariate equal to a metric, a covariate without history.
    """
    result = analyze_file(
        list(files),
        arm_column,
        control,
        metrics,
        covariate=covariate,
        strata=strata,
        shares=shares,
        alpha=alpha,
        winsorize=winsorize,
        ratios=ratios,
    )
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(result, allow_nan=False))
    else:
        click.echo(format_report(result))
