"""Charts as inline SVG text: pure functions from figures to markup, for self-contained pages.

Readable at any width without a script: x positions are percentages of the chart's width and
y positions pixels, so bars stretch with the page while text keeps its size (no viewBox that
would shrink the text with the chart). Rows put the label and the value on a line above the
bar, so long host names never squeeze the bars. Every text and attribute is escaped: host
names, key patterns and command names are untrusted. Hovering a bar or point shows its exact
figures (an SVG <title>, no JavaScript). Inline in HTML, an <svg> needs no xmlns: the page
names no URL at all.

Each chart is one <svg> with `data-chart` set to its id; bars are `class="bar"`, histogram
columns `class="column"`, timeline marks `class="point"`, so tests and readers can count them.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
LIMIT_COLOUR = "#d55e00"
TRACK_COLOUR = "#eef0f3"
FONT_PX = 12
_LINE = 16  # one line of text
_BAR = 14
_ROW_GAP = 8
_TITLE = 24
_AXIS = 22
_LEGEND = 20
_HIST_HEIGHT = 150
_TIMELINE_ROW = 26
_HEADROOM = 1.03
_HIST_LABELS = 6  # bucket labels per histogram: they fit side by side on a phone

Formatter = Callable[[float], str]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def esc(text: object) -> str:
    """Text safe inside an element or a quoted attribute: markup escaped, control characters
    (which XML forbids and a terminal would act on) shown as U+FFFD."""
    return html.escape(_CONTROL.sub("\ufffd", str(text)), quote=True)


@dataclass(frozen=True)
class Segment:
    """One part of a bar: its series (for colour and legend) and its value."""

    series: str
    value: float


@dataclass(frozen=True)
class BarRow:
    """One bar: a label (a host), its segments stacked left to right, an optional limit drawn
    as a marker across it (maxmemory), the text shown at the right, and an optional group
    heading printed above the first row of each group (grouped bars)."""

    label: str
    segments: tuple[Segment, ...]
    note: str
    limit: float | None = None
    group: str | None = None


@dataclass(frozen=True)
class Reference:
    """A vertical line across every bar at `value` (a threshold such as fragmentation 1.5)."""

    value: float
    label: str


@dataclass(frozen=True)
class Column:
    """One histogram bucket: its label (the upper bound) and its count."""

    label: str
    count: int
    detail: str


@dataclass(frozen=True)
class Mark:
    """One event on a timeline: its row (a host), when (epoch seconds), its size, and what
    hovering it says."""

    row: str
    at: float
    value: float
    detail: str


def bar_chart(
    chart_id: str,
    title: str,
    rows: Sequence[BarRow],
    *,
    unit: Formatter,
    axis_label: str,
    limit_label: str = "limit",
    references: Sequence[Reference] = (),
    scale_max: float | None = None,
    binary: bool = False,
) -> str:
    """Horizontal bars, one per row, segments stacked, limits and references as lines.

    The scale runs from 0 to the largest of the bars, limits, references and `scale_max`,
    in steps of powers of two with `binary` (sizes).
    An empty `rows` gives a chart that says there is nothing to show.
    """
    series = _series_of(rows)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    legend = [(name, colours[name]) for name in series if len(series) > 1]
    if any(row.limit for row in rows):
        legend.append((limit_label, LIMIT_COLOUR))
    # A limit or reference line right on the chart's edge is hard to see: leave some room.
    top = max(
        [sum(s.value for s in row.segments) for row in rows]
        + [(row.limit or 0) * _HEADROOM for row in rows]
        + [ref.value * _HEADROOM for ref in references]
        + [scale_max or 0, 0]
    )
    ticks = nice_ticks(top, binary=binary)
    top = ticks[-1] if ticks[-1] > 0 else 1
    parts: list[str] = []
    y = _TITLE + (_LEGEND if legend else 0)
    plot_top = y
    group = None
    for row in rows:
        if row.group is not None and row.group != group:
            group = row.group
            parts.append(_text(0, y + _LINE - 3, row.group, klass="group"))
            y += _LINE + 2
        parts.append(_text(0, y + _LINE - 4, row.label, klass="label"))
        parts.append(_text(100, y + _LINE - 4, row.note, anchor="end", klass="note"))
        y += _LINE
        parts.append(
            f'<rect x="0%" y="{y}" width="100%" height="{_BAR}" fill="{TRACK_COLOUR}"></rect>'
        )
        left = 0.0
        for segment in row.segments:
            width = _pct(segment.value, top)
            hover = f"{row.label}: {segment.series} {unit(segment.value)}"
            parts.append(
                f'<rect class="bar" data-label="{esc(row.label)}" data-series="'
                f'{esc(segment.series)}" x="{left:.3f}%" y="{y}" width="{width:.3f}%" '
                f'height="{_BAR}" fill="{colours[segment.series]}"><title>{esc(hover)}</title>'
                "</rect>"
            )
            left += width
        if row.limit:
            x = _pct(row.limit, top)
            parts.append(
                f'<line class="limit" x1="{x:.3f}%" x2="{x:.3f}%" y1="{y - 3}" '
                f'y2="{y + _BAR + 3}" stroke="{LIMIT_COLOUR}" stroke-width="3">'
                f"<title>{esc(f'{row.label}: {limit_label} {unit(row.limit)}')}</title></line>"
            )
        y += _BAR + _ROW_GAP
    if not rows:
        parts.append(_text(0, y + _LINE, "nothing to show", klass="empty"))
        y += _LINE + _ROW_GAP
    for ref in references:
        x = _pct(ref.value, top)
        parts.append(
            f'<line class="reference" x1="{x:.3f}%" x2="{x:.3f}%" y1="{plot_top}" y2="{y}" '
            'stroke="#555" stroke-dasharray="4 3"><title>'
            f"{esc(ref.label)}</title></line>"
        )
    parts.append(_axis(ticks, top, y, unit, axis_label))
    y += _AXIS + _LINE
    return _svg(chart_id, title, y, _legend(legend) + "".join(parts))


def histogram_chart(
    chart_id: str,
    title: str,
    columns: Sequence[Column],
    *,
    axis_label: str,
    count: Callable[[int], str] = str,
) -> str:
    """Vertical columns of equal width, one per bucket in the given order (log buckets make a
    log axis). Heights are on a log scale of the count (`count` words it), so the few slow
    calls of a tail stay visible next to millions of fast ones."""
    top = max([c.count for c in columns] + [0]) or 1
    width = 100 / max(len(columns), 1)
    base = _TITLE + _LINE + _HIST_HEIGHT
    parts = [
        _text(0, _TITLE + _LINE - 4, f"peak {count(top)}; heights on a log scale", klass="note")
    ]
    every = max(1, math.ceil(len(columns) / _HIST_LABELS))
    for index, column in enumerate(columns):
        height = round(math.log1p(column.count) / math.log1p(top) * _HIST_HEIGHT, 1)
        if column.count and height < 2:
            height = 2.0  # a bucket with calls is never invisible
        x = index * width
        parts.append(
            f'<rect class="column" data-label="{esc(column.label)}" data-count="{column.count}" '
            f'x="{x + width * 0.08:.3f}%" y="{base - height}" width="{width * 0.84:.3f}%" '
            f'height="{height}" fill="{PALETTE[0]}"><title>{esc(column.detail)}</title></rect>'
        )
        if index % every == 0:
            parts.append(
                _text(x + width / 2, base + _LINE - 2, column.label, anchor="middle", klass="tick")
            )
    if not columns:
        parts.append(_text(0, base - _HIST_HEIGHT / 2, "nothing to show", klass="empty"))
    parts.append(
        f'<line x1="0%" x2="100%" y1="{base}" y2="{base}" stroke="#888" stroke-width="1"></line>'
    )
    parts.append(_text(50, base + 2 * _LINE, axis_label, anchor="middle", klass="axis-label"))
    return _svg(chart_id, title, base + 2 * _LINE + 6, "".join(parts))


def timeline_chart(
    chart_id: str,
    title: str,
    marks: Sequence[Mark],
    *,
    unit: Formatter,
    time_label: Formatter,
    axis_label: str,
) -> str:
    """Events on one time axis, a row per `Mark.row` (first seen first); a mark's radius grows
    with the square root of its value, so its area is proportional."""
    rows = list(dict.fromkeys(mark.row for mark in marks))
    start = min((m.at for m in marks), default=0.0)
    end = max((m.at for m in marks), default=0.0)
    span = end - start or 1.0
    biggest = max((m.value for m in marks), default=0) or 1
    parts: list[str] = []
    y = _TITLE
    # Marks sit between 2% and 98% so the first and last are not cut in half at the edges.
    for row in rows:
        parts.append(_text(0, y + _LINE - 4, row, klass="label"))
        line_y = y + _LINE + 6
        parts.append(
            f'<line x1="0%" x2="100%" y1="{line_y}" y2="{line_y}" stroke="{TRACK_COLOUR}" '
            'stroke-width="6"></line>'
        )
        for mark in (m for m in marks if m.row == row):
            x = 2 + 96 * (mark.at - start) / span
            radius = 3 + 7 * math.sqrt(max(mark.value, 0) / biggest)
            parts.append(
                f'<circle class="point" data-row="{esc(row)}" cx="{x:.3f}%" cy="{line_y}" '
                f'r="{radius:.1f}" fill="{PALETTE[5]}" fill-opacity="0.75" stroke="#fff">'
                f"<title>{esc(mark.detail)}</title></circle>"
            )
        y += _LINE + _TIMELINE_ROW
    if not marks:
        parts.append(_text(0, y + _LINE, "nothing to show", klass="empty"))
        y += _LINE + _ROW_GAP
    else:
        parts.append(_text(2, y + _LINE, time_label(start), klass="tick"))
        if end > start:
            parts.append(_text(98, y + _LINE, time_label(end), anchor="end", klass="tick"))
        parts.append(
            _text(
                50,
                y + 2 * _LINE + 2,
                f"{axis_label}; the largest mark is {unit(biggest)}",
                anchor="middle",
                klass="axis-label",
            )
        )
        y += 2 * _LINE + 6
    return _svg(chart_id, title, y, "".join(parts))


def nice_ticks(top: float, count: int = 3, *, binary: bool = False) -> list[float]:
    """0 and about `count` round steps reaching `top`: 1, 2, 2.5 or 5 times a power of ten,
    or with `binary` (sizes) a power of two times a power of 1024 (128 MiB, 256 MiB...)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    if binary:
        power = 1024 ** max(0, math.floor(math.log(raw, 1024)))
        multiples: tuple[float, ...] = tuple(2.0**i for i in range(11))
    else:
        power = 10 ** math.floor(math.log10(raw))
        multiples = (1, 2, 2.5, 5, 10)
    step = next(m * power for m in multiples if m * power >= raw)
    steps = math.ceil(top / step - 1e-9)
    return [step * i for i in range(steps + 1)]


def _series_of(rows: Sequence[BarRow]) -> list[str]:
    return list(dict.fromkeys(s.series for row in rows for s in row.segments))


def _pct(value: float, top: float) -> float:
    return max(0.0, min(100.0, value / top * 100))


def _axis(ticks: Sequence[float], top: float, y: float, unit: Formatter, label: str) -> str:
    parts = [f'<line x1="0%" x2="100%" y1="{y}" y2="{y}" stroke="#888"></line>']
    for index, tick in enumerate(ticks):
        x = _pct(tick, top)
        anchor = "start" if index == 0 else "end" if index == len(ticks) - 1 else "middle"
        parts.append(
            f'<line x1="{x:.3f}%" x2="{x:.3f}%" y1="{y}" y2="{y + 4}" stroke="#888"></line>'
        )
        parts.append(_text(x, y + _LINE, unit(tick), anchor=anchor, klass="tick"))
    parts.append(_text(50, y + _AXIS + _LINE - 4, label, anchor="middle", klass="axis-label"))
    return "".join(parts)


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    if not entries:
        return ""
    # Entries flow as one <text> line of coloured squares and names: it wraps nowhere, but
    # stays short (a handful of series).
    spans = "".join(
        f'<tspan fill="{colour}">\u25a0</tspan><tspan> {esc(name)}\u2003</tspan>'
        for name, colour in entries
    )
    return f'<text class="legend" x="0%" y="{_TITLE + _LINE - 4}">{spans}</text>'


def _text(x_pct: float, y: float, text: str, *, anchor: str = "start", klass: str) -> str:
    return (
        f'<text class="{klass}" x="{x_pct:.3f}%" y="{y}" text-anchor="{anchor}">{esc(text)}</text>'
    )


def _svg(chart_id: str, title: str, height: float, body: str) -> str:
    title_id = f"{chart_id}-title"
    return (
        f'<svg class="chart" data-chart="{esc(chart_id)}" role="img" '
        f'aria-labelledby="{esc(title_id)}" width="100%" height="{math.ceil(height)}" '
        f'font-size="{FONT_PX}">'
        f'<title id="{esc(title_id)}">{esc(title)}</title>'
        f'<text class="title" x="0%" y="{_TITLE - 8}">{esc(title)}</text>'
        f"{body}</svg>"
    )
