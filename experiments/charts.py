"""Report charts as server-made SVG: cumulative conversion by arm, lift per organisation with intervals.

Pure functions from numbers and already translated labels to an accessible SVG string; no script,
no inline style (the Content-Security-Policy forbids both): colours are presentation attributes.
Suppressed rows are drawn hatched, like the other charts of the application (``core/charts.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

from markupsafe import Markup, escape

from core.charts import AXIS, GRID, HATCH_STROKE

# Control in grey-blue, test arms in the accent red and darker tones (readable in grey print too).
ARM_COLOURS = ("#5b6b8c", "#c8102e", "#1f3a7a", "#9a6700")
ARM_DASHES = ("6 4", "", "2 3", "8 3 2 3")


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round ticks from 0 to at least ``maximum`` (1, 2, 2.5 or 5 times a power of ten), for
    fractions as well as counts."""
    if not maximum > 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    ticks = [0.0]
    while ticks[-1] < maximum * (1 - 1e-9):
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _t(value) -> str:
    return str(escape(str(value)))


def _id(chart_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(chart_id)) or "chart"


def _svg_open(chart_id: str, width: float, height: float, title: str, desc: str | None) -> list[str]:
    cid = _id(chart_id)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}" role="img" aria-labelledby="{cid}-title"'
        + (f' aria-describedby="{cid}-desc"' if desc else "")
        + ">",
        f'<title id="{cid}-title">{_t(title)}</title>',
    ]
    if desc:
        parts.append(f'<desc id="{cid}-desc">{_t(desc)}</desc>')
    parts.append(
        f'<defs><pattern id="{cid}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3f3f6"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{HATCH_STROKE}" stroke-width="2"/></pattern></defs>'
    )
    return parts


def line_chart(
    days: Sequence[int],
    series: Sequence[tuple[str, Sequence[float] | None]],
    *,
    title: str,
    chart_id: str,
    desc: str | None = None,
    x_label: str = "",
    percent_label=lambda v: f"{v:.0%}",
    hidden_label: str = "",
    width: int = 640,
    height: int = 260,
) -> Markup:
    """Lines over days (cumulative shares, 0..1); ``series`` is ``[(label, values or None)]`` in
    arm order (None: hidden, listed in the legend as such)."""
    left, right, top, bottom = 52, 12, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    shown = [v for _label, values in series if values for v in values]
    ticks = nice_ticks(max(shown, default=0.0) or 0.01)
    peak = ticks[-1] or 1.0
    last_day = max(days, default=1) or 1
    parts = _svg_open(chart_id, width, height, title, desc)

    def x(day: float) -> float:
        return left + plot_w * day / last_day

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / peak

    for tick in ticks:
        parts.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{_t(percent_label(tick))}</text>"
        )
    step = max(1, math.ceil(last_day / 10))
    for day in range(0, last_day + 1, step):
        parts.append(f'<text x="{x(day):.1f}" y="{top + plot_h + 15}" text-anchor="middle" font-size="11">{day}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    if x_label:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 30}" text-anchor="middle" '
            f'font-size="11">{_t(x_label)}</text>'
        )
    legend_y = height - 10
    legend_x = left
    for i, (label, values) in enumerate(series):
        colour = ARM_COLOURS[i % len(ARM_COLOURS)]
        dash = ARM_DASHES[i % len(ARM_DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        if values:
            points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in zip([0, *days], [0.0, *values]))
            final = values[-1]
            parts.append(
                f"<g><title>{_t(label)}: {_t(percent_label(final))}</title>"
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/></g>'
            )
        text = str(label) if values else f"{label} ({hidden_label})"
        parts.append(
            f'<line x1="{legend_x}" y1="{legend_y - 4}" x2="{legend_x + 22}" y2="{legend_y - 4}" '
            f'stroke="{colour}" stroke-width="2"{dash_attr}/>'
        )
        parts.append(f'<text x="{legend_x + 28}" y="{legend_y}" font-size="11">{_t(text)}</text>')
        legend_x += 40 + 6.2 * len(text)
    parts.append("</svg>")
    return Markup("".join(parts))


def forest_chart(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    title: str,
    chart_id: str,
    desc: str | None = None,
    value_label=lambda v: f"{v:+.1%}",
    hidden_label: str = "<k",
    hidden_note: str = "",
    width: int = 640,
    label_width: int = 190,
) -> Markup:
    """Estimates with their intervals around a zero line, one row per label: ``(label, estimate,
    low, high)``; a None estimate is a hidden (suppressed or not estimable) row, drawn hatched."""
    row_h, top = 24, 10
    bounds = [v for _l, e, lo, hi in rows for v in (e, lo, hi) if v is not None and math.isfinite(v)]
    extent = max((abs(v) for v in bounds), default=0.0) or 0.01
    ticks = nice_ticks(extent, 3)
    extent = ticks[-1] or 0.01
    plot = width - label_width - 80
    hidden_any = any(e is None for _l, e, _lo, _hi in rows)
    height = top + len(rows) * row_h + 34 + (18 if hidden_any and hidden_note else 0)
    parts = _svg_open(chart_id, width, height, title, desc)
    cid = _id(chart_id)

    def x(value: float) -> float:
        return label_width + plot / 2 + plot / 2 * max(-1.0, min(1.0, value / extent))

    axis_y = top + len(rows) * row_h
    for tick in sorted({-t for t in ticks} | set(ticks)):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{axis_y}" '
            f'stroke="{AXIS if tick == 0 else GRID}"/>'
        )
        parts.append(
            f'<text x="{x(tick):.1f}" y="{axis_y + 14}" text-anchor="middle" font-size="11">'
            f"{_t(value_label(tick))}</text>"
        )
    for i, (label, estimate, low, high) in enumerate(rows):
        cy = top + i * row_h + row_h / 2
        parts.append(
            f'<text x="{label_width - 8}" y="{cy + 4:.1f}" text-anchor="end" font-size="11">'
            f"{_t(label if len(str(label)) <= 30 else str(label)[:29] + '…')}</text>"
        )
        if estimate is None:
            parts.append(
                f"<g><title>{_t(label)}: {_t(hidden_label)}</title>"
                f'<rect x="{x(0) - 18:.1f}" y="{cy - 7:.1f}" width="36" height="14" fill="url(#{cid}-hatch)" '
                f'stroke="{HATCH_STROKE}" stroke-width="0.5"/></g>'
            )
            continue
        lo = low if low is not None and math.isfinite(low) else estimate
        hi = high if high is not None and math.isfinite(high) else estimate
        tip = f"{label}: {value_label(estimate)} [{value_label(lo)}, {value_label(hi)}]"
        parts.append(
            f"<g><title>{_t(tip)}</title>"
            f'<line x1="{x(lo):.1f}" y1="{cy:.1f}" x2="{x(hi):.1f}" y2="{cy:.1f}" stroke="{ARM_COLOURS[2]}" '
            f'stroke-width="2"/>'
            f'<rect x="{x(estimate) - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="{ARM_COLOURS[1]}"/>'
            f"</g>"
        )
    if hidden_any and hidden_note:
        parts.append(
            f'<rect x="{label_width}" y="{height - 17}" width="14" height="10" fill="url(#{cid}-hatch)" '
            f'stroke="{HATCH_STROKE}" stroke-width="0.5"/>'
            f'<text x="{label_width + 20}" y="{height - 8}" font-size="11">{_t(hidden_note)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
