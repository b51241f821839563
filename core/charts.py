"""Server-made SVG charts: pure functions from labels and values to an accessible SVG string.

No JavaScript and no inline ``style`` (the Content-Security-Policy forbids both): colours are
presentation attributes, sizes come from the ``chart`` classes of ``static/css/app.css``. A value
of ``None`` is a hidden (suppressed) figure: drawn hatched and explained by ``hidden_note``.
Every label is escaped; callers pass text already translated and numbers already formatted.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from markupsafe import Markup, escape

BAR = "#3b5ba5"
HATCH_STROKE = "#8a8a99"
ZERO_FILL = "#ffffff"
GRID = "#e4e4ea"
AXIS = "#999999"
# Sequential scale of the heat maps, light to dark (enough contrast at both ends on white).
HEAT_LOW = (0xE8, 0xEE, 0xFA)
HEAT_HIGH = (0x1F, 0x3A, 0x7A)
CHAR_WIDTH = 6.2  # average width of an 11px system-ui character, for layout only


def _text(value) -> str:
    """Escape any value (lazy strings included) for SVG text content and attributes."""
    return str(escape(str(value)))


def _safe_id(chart_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", str(chart_id)) or "chart"


def _truncate(label: str, width_px: float) -> str:
    most = max(int(width_px / CHAR_WIDTH), 3)
    return label if len(label) <= most else label[: most - 1] + "…"


def _fmt(value) -> str:
    return "" if value is None else f"{value:,}".replace(",", "\u202f") if isinstance(value, int) else str(value)


def _open(chart_id: str, width: float, height: float, title: str, desc: str | None) -> list[str]:
    cid = _safe_id(chart_id)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}" role="img" aria-label="{_text(title)}"'
        + (f' aria-describedby="{cid}-desc"' if desc else "")
        + ">",
        f'<title id="{cid}-title">{_text(title)}</title>',
    ]
    if desc:
        parts.append(f'<desc id="{cid}-desc">{_text(desc)}</desc>')
    parts.append(
        f'<defs><pattern id="{cid}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3f3f6"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{HATCH_STROKE}" stroke-width="2"/></pattern></defs>'
    )
    return parts


def _hatch(chart_id: str) -> str:
    return f"url(#{_safe_id(chart_id)}-hatch)"


def _note(parts: list[str], chart_id: str, x: float, y: float, note: str) -> None:
    parts.append(
        f'<rect x="{x:g}" y="{y - 9:g}" width="14" height="10" fill="{_hatch(chart_id)}" stroke="{HATCH_STROKE}" '
        f'stroke-width="0.5"/><text x="{x + 20:g}" y="{y:g}" font-size="11">{_text(note)}</text>'
    )


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``maximum`` (1, 2, 2.5 or 5 times a power of ten, at least 1)."""
    if maximum <= 0:
        return [0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = max(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw), 1)  # counts: whole steps
    ticks = [0]
    while ticks[-1] < maximum:
        ticks.append(ticks[-1] + step)
    return ticks


def _tick_label(value: float) -> str:
    return _fmt(int(value)) if float(value).is_integer() else f"{value:g}"


def hbar_chart(
    labels: Sequence,
    values: Sequence[float | None],
    *,
    title: str,
    chart_id: str,
    desc: str | None = None,
    value_labels: Sequence[str] | None = None,
    hidden_note: str = "",
    hidden_label: str = "<k",
    width: int = 560,
    label_width: int = 150,
) -> Markup:
    """A horizontal bar chart, one bar per label; ``None`` values are drawn as a hatched stub.

    ``value_labels`` are the texts printed after the bars (default: the values themselves).
    """
    row, gap, top = 20, 6, 8
    shown = [v for v in values if v is not None]
    peak = max(shown, default=0) or 1
    texts = value_labels if value_labels is not None else [_fmt(v) for v in values]
    room = max((len(str(t)) for t in texts), default=4) * CHAR_WIDTH + 12  # for the longest value label
    plot = max(width - label_width - room, 60)
    hidden_any = any(v is None for v in values)
    height = top + len(labels) * (row + gap) + (24 if hidden_any and hidden_note else 8)
    parts = _open(chart_id, width, height, title, desc)
    for i, label in enumerate(labels):
        value = values[i]
        y = top + i * (row + gap)
        text = str(label)
        shown_label = value_labels[i] if value_labels is not None else _fmt(value)
        parts.append(f"<g><title>{_text(text)}: {_text(hidden_label if value is None else shown_label)}</title>")
        parts.append(
            f'<text x="{label_width - 8}" y="{y + row * 0.7:g}" text-anchor="end" font-size="11">'
            f"{_text(_truncate(text, label_width - 12))}</text>"
        )
        if value is None:
            stub = 36
            parts.append(
                f'<rect x="{label_width}" y="{y}" width="{stub}" height="{row}" fill="{_hatch(chart_id)}" '
                f'stroke="{HATCH_STROKE}" stroke-width="0.5"/>'
            )
            parts.append(
                f'<text x="{label_width + stub + 5}" y="{y + row * 0.7:g}" font-size="11">{_text(hidden_label)}</text>'
            )
        else:
            w = max(plot * value / peak, 1 if value else 0)
            parts.append(f'<rect class="bar" x="{label_width}" y="{y}" width="{w:.1f}" height="{row}" fill="{BAR}"/>')
            parts.append(
                f'<text x="{label_width + w + 5:.1f}" y="{y + row * 0.7:g}" font-size="11">{_text(shown_label)}</text>'
            )
        parts.append("</g>")
    parts.append(
        f'<line class="axis" x1="{label_width}" y1="{top - 2}" x2="{label_width}" '
        f'y2="{top + len(labels) * (row + gap) - gap + 2}" stroke="{AXIS}"/>'
    )
    if hidden_any and hidden_note:
        _note(parts, chart_id, label_width, height - 8, hidden_note)
    parts.append("</svg>")
    return Markup("".join(parts))


def vbar_chart(
    labels: Sequence,
    values: Sequence[float | None],
    *,
    title: str,
    chart_id: str,
    desc: str | None = None,
    value_labels: Sequence[str] | None = None,
    hidden_note: str = "",
    hidden_label: str = "<k",
    width: int = 560,
    height: int = 240,
    axis_label: str = "",
) -> Markup:
    """A vertical bar chart (a histogram of buckets in order); ``None`` values are hatched.

    ``axis_label`` is printed under the bars' labels (the unit of the buckets).
    """
    left, right, top = 56, 10, 14
    bottom = 30 + (16 if axis_label else 0) + (18 if hidden_note and any(v is None for v in values) else 0)
    height += bottom - 44
    plot_w, plot_h = width - left - right, height - top - bottom
    shown = [v for v in values if v is not None]
    ticks = nice_ticks(max(shown, default=0))
    peak = ticks[-1] or 1
    n = max(len(labels), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.72, 2)
    parts = _open(chart_id, width, height, title, desc)
    for tick in ticks:
        y = top + plot_h - plot_h * tick / peak
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_text(_tick_label(tick))}</text>'
        )
    label_room = slot - 2
    for i, label in enumerate(labels):
        value = values[i]
        x = left + i * slot + (slot - bar_w) / 2
        cx = left + i * slot + slot / 2
        text = str(label)
        shown_label = value_labels[i] if value_labels is not None else _fmt(value)
        parts.append(f"<g><title>{_text(text)}: {_text(hidden_label if value is None else shown_label)}</title>")
        if value is None:
            h = plot_h * 0.12
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{_hatch(chart_id)}" stroke="{HATCH_STROKE}" stroke-width="0.5"/>'
            )
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle" font-size="11">'
                f"{_text(hidden_label)}</text>"
            )
        else:
            h = plot_h * value / peak
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{BAR}"/>'
            )
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 15:.1f}" text-anchor="middle" font-size="11">'
            f"{_text(_truncate(text, label_room))}</text>"
        )
        parts.append("</g>")
    parts.append(
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="{AXIS}"/>'
    )
    if axis_label:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 32:.1f}" text-anchor="middle" '
            f'font-size="11">{_text(axis_label)}</text>'
        )
    if hidden_note and any(v is None for v in values):
        _note(parts, chart_id, left, height - 8, hidden_note)
    parts.append("</svg>")
    return Markup("".join(parts))


def _heat_colour(fraction: float) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * fraction) for lo, hi in zip(HEAT_LOW, HEAT_HIGH))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    row_labels: Sequence,
    col_labels: Sequence,
    matrix: Sequence[Sequence[float | None]],
    *,
    title: str,
    chart_id: str,
    desc: str | None = None,
    cell_labels: Sequence[Sequence[str]] | None = None,
    hidden_note: str = "",
    hidden_label: str = "<k",
    legend_low: str = "",
    legend_high: str = "",
    cell: int = 24,
    label_width: int = 110,
    rotate_columns: bool = False,
    column_step: int = 1,
) -> Markup:
    """A heat map of a rows × columns matrix; darker is more, ``None`` cells are hatched.

    ``cell_labels`` are the tooltips' values (default: the values); ``column_step`` prints every
    n-th column label (hours); ``rotate_columns`` slants long column labels.
    """
    n_rows, n_cols = len(row_labels), len(col_labels)
    head = 70 if rotate_columns else 18
    width = label_width + n_cols * cell + (80 if rotate_columns else 20)
    legend_h = 58 if hidden_note and any(v is None for line in matrix for v in line) else 36
    height = head + n_rows * cell + legend_h
    shown = [v for line in matrix for v in line if v is not None]
    peak = max(shown, default=0) or 1
    parts = _open(chart_id, width, height, title, desc)
    for j, label in enumerate(col_labels):
        if j % column_step:
            continue
        x = label_width + j * cell + cell / 2
        text = _text(_truncate(str(label), 90 if rotate_columns else cell * column_step))
        if rotate_columns:
            parts.append(
                f'<text x="{x:g}" y="{head - 6}" font-size="11" transform="rotate(-40 {x:g} {head - 6})">{text}</text>'
            )
        else:
            parts.append(f'<text x="{x:g}" y="{head - 6}" text-anchor="middle" font-size="11">{text}</text>')
    for i, label in enumerate(row_labels):
        y = head + i * cell
        parts.append(
            f'<text x="{label_width - 6}" y="{y + cell * 0.65:g}" text-anchor="end" font-size="11">'
            f"{_text(_truncate(str(label), label_width - 8))}</text>"
        )
        for j in range(n_cols):
            value = matrix[i][j]
            x = label_width + j * cell
            shown_label = cell_labels[i][j] if cell_labels is not None else _fmt(value)
            tip = f"{_text(label)} × {_text(col_labels[j])}: {_text(hidden_label if value is None else shown_label)}"
            if value is None:
                fill = _hatch(chart_id)
            elif value == 0:
                fill = ZERO_FILL
            else:
                fill = _heat_colour(value / peak)
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}" '
                f'stroke="{GRID}" stroke-width="0.5"><title>{tip}</title></rect>'
            )
    # Legend: a light-to-dark strip, then the hatch when anything is hidden.
    ly = head + n_rows * cell + 14
    steps = 8
    for s in range(steps):
        parts.append(
            f'<rect x="{label_width + s * 14}" y="{ly}" width="14" height="10" '
            f'fill="{_heat_colour((s + 0.5) / steps)}"/>'
        )
    if legend_low:
        parts.append(
            f'<text x="{label_width - 6}" y="{ly + 9}" text-anchor="end" font-size="11">{_text(legend_low)}</text>'
        )
    if legend_high:
        parts.append(
            f'<text x="{label_width + steps * 14 + 6}" y="{ly + 9}" font-size="11">{_text(legend_high)}</text>'
        )
    if hidden_note and any(v is None for line in matrix for v in line):
        _note(parts, chart_id, label_width, ly + 26, hidden_note)
    parts.append("</svg>")
    return Markup("".join(parts))


# Series colours of the grouped bars (colour-blind safe, after Okabe and Ito), and their lighter tints
# for an earlier period compared with a later one.
SERIES_COLOURS = ("#0b5fa5", "#c25e00", "#2e7d5b", "#8e44ad")
SERIES_TINTS = ("#8fb8dd", "#eab48a", "#98c9b3", "#c9a4dc")


def grouped_bar_chart(
    labels: Sequence,
    series: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    title: str,
    chart_id: str,
    desc: str | None = None,
    value_labels: Sequence[Sequence[str]] | None = None,
    colours: Sequence[str] | None = None,
    hidden_note: str = "",
    hidden_label: str = "<k",
    width: int = 640,
    label_width: int = 150,
) -> Markup:
    """Horizontal grouped bars: for each label, one bar per series (``values[label][series]``), the
    series named in a legend above; ``None`` values are drawn as a hatched stub. All series share one
    scale, so that the bars compare (pass shares, not counts, when the series differ in size).

    ``value_labels[label][series]`` are the texts after the bars (default: the values); ``colours``
    one per series (default :data:`SERIES_COLOURS`).
    """
    n_series = max(len(series), 1)
    colours = list(colours or SERIES_COLOURS)
    bar, gap, legend_row = 11, 8, 16
    per_line = max(int((width - 10) // 170), 1)
    legend_h = legend_row * math.ceil(len(series) / per_line) + 6
    top = legend_h + 4
    group = n_series * bar + gap
    shown = [v for line in values for v in line if v is not None]
    peak = max(shown, default=0) or 1
    texts = value_labels if value_labels is not None else [[_fmt(v) for v in line] for line in values]
    room = max((len(str(t)) for line in texts for t in line), default=4) * CHAR_WIDTH + 10
    plot = max(width - label_width - room, 60)
    hidden_any = any(v is None for line in values for v in line)
    height = top + len(labels) * group + (24 if hidden_any and hidden_note else 6)
    parts = _open(chart_id, width, height, title, desc)
    for s, name in enumerate(series):  # the legend
        x, y = 10 + (s % per_line) * 170, 4 + (s // per_line) * legend_row
        parts.append(
            f'<rect x="{x}" y="{y}" width="12" height="10" fill="{colours[s % len(colours)]}"/>'
            f'<text x="{x + 17}" y="{y + 9}" font-size="11">{_text(_truncate(str(name), 150))}</text>'
        )
    for i, label in enumerate(labels):
        y0 = top + i * group
        text = str(label)
        parts.append(
            f'<text x="{label_width - 8}" y="{y0 + n_series * bar / 2 + 4:g}" text-anchor="end" '
            f'font-size="11">{_text(_truncate(text, label_width - 12))}</text>'
        )
        for s in range(len(series)):
            value = values[i][s]
            y = y0 + s * bar
            shown_label = texts[i][s]
            parts.append(
                f"<g><title>{_text(text)} · {_text(series[s])}: "
                f"{_text(hidden_label if value is None else shown_label)}</title>"
            )
            if value is None:
                parts.append(
                    f'<rect x="{label_width}" y="{y}" width="24" height="{bar - 1}" fill="{_hatch(chart_id)}" '
                    f'stroke="{HATCH_STROKE}" stroke-width="0.5"/>'
                )
                parts.append(
                    f'<text x="{label_width + 29}" y="{y + bar - 2}" font-size="9">{_text(hidden_label)}</text>'
                )
            else:
                w = max(plot * value / peak, 1 if value else 0)
                parts.append(
                    f'<rect class="series-bar" x="{label_width}" y="{y}" width="{w:.1f}" height="{bar - 1}" '
                    f'fill="{colours[s % len(colours)]}"/>'
                )
                parts.append(
                    f'<text x="{label_width + w + 4:.1f}" y="{y + bar - 2}" font-size="9">{_text(shown_label)}</text>'
                )
            parts.append("</g>")
    parts.append(
        f'<line class="axis" x1="{label_width}" y1="{top - 2}" x2="{label_width}" '
        f'y2="{top + len(labels) * group - gap + 2}" stroke="{AXIS}"/>'
    )
    if hidden_any and hidden_note:
        _note(parts, chart_id, label_width, height - 8, hidden_note)
    parts.append("</svg>")
    return Markup("".join(parts))
