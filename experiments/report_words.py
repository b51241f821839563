"""A lift report in the reader's words: metric and test labels, formatted figures, headline sentences."""

from __future__ import annotations

import math

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from core import numbers

METRIC_NAMES = {
    "conversion": _l("conversion"),
    "revenue": _l("revenue per recipient"),
    "tickets": _l("tickets per recipient"),
    "cross_sell": _l("cross-sell"),
    "redemption": _l("redemption"),
}
METRIC_TITLES = {
    "conversion": _l("Conversion"),
    "revenue": _l("Revenue per recipient"),
    "tickets": _l("Tickets per recipient"),
    "cross_sell": _l("Cross-sell"),
    "redemption": _l("Redemption (uptake)"),
}
BASELINE_LABELS = {
    "year_earlier": _l("the same window one year earlier"),
    "before_launch": _l("the window before the planned launch"),
    "last_days": _l("the most recent days of data"),
}
N_SOURCE_LABELS = {
    "eligible": _l("eligible recipients (consent at launch, approvals and exclusions)"),
    "snapshot": _l("the frozen segment (an upper bound: consent and approvals only remove people)"),
    "segment": _l("the segment today (an upper bound: consent and approvals only remove people)"),
}
TEST_NAMES = {
    "z-test": _l("two-proportion z-test"),
    "fisher": _l("Fisher's exact test"),
    "welch": _l("Welch's t-test"),
    "CMH": _l("Cochran-Mantel-Haenszel"),
    "post-stratified": _l("post-stratified difference"),
}


# --- number formatting (French and English) -----------------------------------------------------


def fmt_number(value, digits: int = 2) -> str:
    return numbers.decimal(value, digits)


def fmt_percent(value, digits: int = 1, signed: bool = False) -> str:
    return numbers.percent(value, digits, signed)


def fmt_points(value, digits: int = 1) -> str:
    """A difference of proportions in percentage points."""
    return numbers.points(value, digits)


def fmt_money(value, signed: bool = False) -> str:
    return numbers.money(value, signed)


def fmt_p(value) -> str:
    """A p-value alone, for a table cell under a "p" heading: "0.042", "< 0.001"."""
    return numbers.p_value(value)


def fmt_p_equals(value, label: str = "p") -> str:
    """A p-value in a sentence: "p = 0.042", or "p < 0.001" (never "p = < 0.001"); ``label``
    names it ("always-valid p")."""
    if value is not None and math.isfinite(value) and value < 0.001:
        return f"{label}\u00a0<\u00a0{numbers.decimal(0.001, 3)}"
    return f"{label}\u00a0=\u00a0{fmt_p(value)}"


def fmt_value(metric: str, value, signed: bool = False) -> str:
    """A metric's value (a mean per recipient or a difference) in its natural unit."""
    if metric in ("conversion", "cross_sell", "redemption"):
        return fmt_points(value) if signed else fmt_percent(value)
    if metric == "revenue":
        return fmt_money(value, signed=signed)
    return numbers.decimal(value, 3, signed)


def fmt_count(value) -> str:
    return "<k" if value is None else numbers.count(value)


def level(alpha: float) -> str:
    return f"{round((1 - alpha) * 100):d}"


def arm_label(name: str) -> str:
    return _("control group") if name == "control" else _("test arm %(name)s", name=name)


def arm_title(name: str) -> str:
    """The arm's name at the start of a sentence or a heading."""
    return _("Control group") if name == "control" else _("Test arm %(name)s", name=name)


# --- the headline -------------------------------------------------------------------------------


def _interval_excludes_zero(interval) -> bool:
    low, high = interval or (None, None)
    return low is not None and high is not None and not low <= 0 <= high


def headline_sentences(report: dict) -> list[str]:
    """The primary metric's result per test arm in plain words, never claiming more than the data."""
    sentences = []
    alpha = report["alpha"]
    days = report["window_days"]
    for h in report.get("headline", []):
        metric = h["metric"]
        name = METRIC_NAMES.get(metric, metric)
        arm = arm_title(h["arm"])
        if h.get("verdict") == "unknown" or h.get("hidden") or h.get("error"):
            sentences.append(
                _(
                    "%(arm)s: too few recipients to compare (or figures hidden under k): no conclusion "
                    "can be drawn on %(metric)s.",
                    arm=arm,
                    metric=name,
                )
            )
            continue
        values = dict(
            arm=arm,
            metric=name,
            arm_value=fmt_value(metric, h["arm_mean"]),
            control_value=fmt_value(metric, h["control_mean"]),
            level=level(alpha),
            diff=fmt_value(metric, h["abs_lift"], signed=True),
            diff_low=fmt_value(metric, (h.get("abs_ci") or [None, None])[0], signed=True),
            diff_high=fmt_value(metric, (h.get("abs_ci") or [None, None])[1], signed=True),
            p=fmt_p_equals(h.get("p_value")),
            p_av=fmt_p_equals(h.get("p_always_valid"), _("always-valid p")),
            day=max(1, min(days, math.ceil(report["days_elapsed"]))),
            days=days,
        )
        if h.get("rel_lift") is not None:
            # The interval shown is the difference's, the one the verdict reads (the relative lift's
            # delta-method interval can hold zero when the difference's does not: it is in the table).
            values.update(lift=fmt_percent(h["rel_lift"], signed=True))
            figures = _(
                "%(arm)s: %(metric)s %(arm_value)s against %(control_value)s in the control group, a "
                "difference of %(diff)s (%(level)s%% confidence interval %(diff_low)s to %(diff_high)s), "
                "that is a relative lift of %(lift)s.",
                **values,
            )
        else:
            figures = _(
                "%(arm)s: %(metric)s %(arm_value)s against %(control_value)s in the control group, a "
                "difference of %(diff)s (%(level)s%% confidence interval %(diff_low)s to %(diff_high)s).",
                **values,
            )
        if h.get("estimator") == "cuped":
            figures += " " + _(
                "The difference is adjusted for each recipient's purchases before the launch "
                "(CUPED): the conclusion reads this adjusted estimate."
            )
        elif h.get("history") is False:
            figures += " " + _("No purchase history before the launch was available: the difference is not adjusted.")
        if report.get("interim") and h.get("interval") == "always_valid":
            figures += " " + _("The interval is always-valid (interim).")
        verdict = h.get("verdict")
        if report.get("interim"):
            lead = _("Interim look, day %(day)s of %(days)s, %(p_av)s.", **values)
            if verdict == "increase":
                meaning = _(
                    "The always-valid p-value already shows an increase in %(metric)s; it stays valid however "
                    "often the report is read. The size of the effect is still uncertain until the window "
                    "closes.",
                    **values,
                )
            elif verdict == "decrease":
                meaning = _(
                    "The always-valid p-value already shows a decrease in %(metric)s; it stays valid however "
                    "often the report is read.",
                    **values,
                )
            else:
                meaning = _(
                    "No effect detected so far. The figures are provisional: wait for the end of the window "
                    "before drawing conclusions.",
                    **values,
                )
            sentences.append(f"{lead} {figures} {meaning}")
            continue
        if verdict == "increase":
            meaning = _(
                "The interval excludes zero (%(p)s): the data indicate that the promotion increased "
                "%(metric)s; how much is uncertain within the interval's bounds.",
                **values,
            )
        elif verdict == "decrease":
            meaning = _(
                "The interval excludes zero (%(p)s): the data indicate that %(metric)s was lower with the "
                "promotion than without it.",
                **values,
            )
        elif _interval_excludes_zero(h.get("abs_ci")):
            # the verdict is "none" because the test does not reject no effect (see reports._verdict)
            meaning = _(
                "No clear effect (%(p)s): the interval only just excludes zero, but the test does not "
                "reject the absence of an effect; the data do not settle the question.",
                **values,
            )
        else:
            meaning = _(
                "No detectable effect (%(p)s): the interval contains zero, so the data are compatible "
                "with no effect as well as with effects up to the interval's bounds. This does not show that "
                "the promotion had no effect.",
                **values,
            )
        sentences.append(f"{figures} {meaning}")
    sentences += _pair_sentences(report)
    return sentences


def _pair_sentences(report: dict) -> list[str]:
    """Offer against offer on the primary metric, once the window is over (``arm_pairs``)."""
    if report.get("interim"):
        return []
    out = []
    for c in report.get("arm_pairs") or []:
        if c["metric"] != report.get("primary_metric") or c.get("hidden") or c.get("p_value") is None:
            continue
        metric = c["metric"]
        ci = c.get("abs_ci") or [None, None]
        values = dict(
            first=arm_title(c["arm"]),
            second=arm_label(c["versus"]),
            metric=METRIC_NAMES.get(metric, metric),
            first_value=fmt_value(metric, c["arm_mean"]),
            second_value=fmt_value(metric, c["versus_mean"]),
            diff=fmt_value(metric, c["abs_diff"], signed=True),
            level=level(report["alpha"]),
            diff_low=fmt_value(metric, ci[0], signed=True),
            diff_high=fmt_value(metric, ci[1], signed=True),
            p=fmt_p_equals(c.get("p_adjusted")),
        )
        figures = _(
            "%(first)s against %(second)s: %(metric)s %(first_value)s against %(second_value)s, a difference "
            "of %(diff)s (%(level)s%% confidence interval %(diff_low)s to %(diff_high)s).",
            **values,
        )
        if _interval_excludes_zero(ci) and (c.get("p_adjusted") or 1.0) < report["alpha"]:
            better = c["abs_diff"] > 0
            meaning = (
                _("The data indicate that the first offer did better than the second (%(p)s).", **values)
                if better
                else _("The data indicate that the second offer did better than the first (%(p)s).", **values)
            )
        else:
            meaning = _("The data do not tell the two offers apart (%(p)s).", **values)
        out.append(f"{figures} {meaning}")
    return out
