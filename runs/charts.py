"""Charts drawn on the server as SVG: geometry here, markup in ``teams/usage.html``.

Each chart is a small immutable data structure with every coordinate already computed, so
the template only places rectangles and text (autoescaped: model ids and usernames come
from users and Runflow). No JavaScript library, no inline style: colours come from CSS
classes in ``static/css/usage.css`` and follow light and dark mode. Every chart carries a
title and a one-sentence description for screen readers, and the page shows the same
numbers in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

Number = int | float | Decimal
Formatter = Callable[[float], str]

LABEL_MAX = 28


def _short(label: str, limit: int = LABEL_MAX) -> str:
    """Long model ids keep their last part, which is what tells them apart."""
    if len(label) <= limit:
        return label
    return "…" + label[-(limit - 1) :]


def nice_scale(maximum: float, steps: int = 4) -> tuple[float, float]:
    """A round axis maximum and step (1, 2 or 5 times a power of ten) covering ``maximum``."""
    if maximum <= 0 or not math.isfinite(maximum):
        return 1.0, 0.25
    raw = maximum / steps
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(maximum / step - 1e-9), step


def _r(value: float) -> float:
    return round(value, 1)


@dataclass(frozen=True)
class Tick:
    pos: float  # y (column chart) or x (bar charts) in SVG units
    label: str


def _ticks(
    axis_max: float, step: float, fmt: Formatter, position: Callable[[float], float]
) -> tuple[Tick, ...]:
    """A labelled tick at every ``step`` from 0 to ``axis_max``; ``position`` maps a value
    to its place on the axis in SVG units."""
    return tuple(
        Tick(_r(position(n * step)), fmt(n * step)) for n in range(round(axis_max / step) + 1)
    )


@dataclass(frozen=True)
class Column:
    x: float  # in the plot's own units (0 to the chart's ``width``), stretched to fit
    y: float  # in CSS px: the plot keeps its height
    width: float
    height: float
    label: str  # shown under the column when ``show_label``
    title: str  # tooltip and screen-reader text with the exact value
    show_label: bool
    label_x: float  # where the label goes, in percent of the plot's width
    minor: bool  # every other label: hidden where the chart is narrow, so labels never overlap


@dataclass(frozen=True)
class _Chart:
    """What every chart has: a title, a one-sentence description, a size in SVG units."""

    title: str
    description: str
    width: int
    height: int


# The column chart's y axis labels sit in their own narrow SVG this many px wide, left of
# the plot, so they keep their size however wide the plot is stretched.
AXIS_WIDTH = 56


@dataclass(frozen=True)
class ColumnChart(_Chart):
    """Columns stretched to the page's width at a fixed height in CSS px.

    The plot (grid lines and columns) is drawn in ``width`` units across and stretched
    sideways to whatever width the page gives it (``preserveAspectRatio="none"``); its
    vertical units are CSS px. Text is never inside the stretched part: axis labels are in
    an unscaled SVG beside it and day labels are placed by percentage, so they stay at the
    CSS font size at any screen width.
    """

    top: int
    bottom: int
    columns: tuple[Column, ...]
    ticks: tuple[Tick, ...]
    empty: bool
    axis_width: int = AXIS_WIDTH

    @property
    def label_y(self) -> int:
        return self.bottom + 16

    @property
    def axis_x(self) -> int:
        return self.axis_width - 6


def column_chart(
    points: Sequence[tuple[str, Number, str]],
    *,
    title: str,
    fmt: Formatter,
    width: int = 720,
    height: int = 240,
) -> ColumnChart:
    """Columns over time (e.g. spend per day). ``points``: (label, value, tooltip).

    ``height`` is in CSS px; ``width`` only sets the plot's units across (it is stretched).
    """
    top, bottom = 12, height - 28
    values = [float(v) for _, v, _ in points]
    peak = max(values, default=0.0)
    axis_max, step = nice_scale(peak)
    plot_h = bottom - top
    slot = width / max(len(points), 1)
    gap = slot * 0.2
    every = max(1, math.ceil(len(points) / 8))  # at most ~8 labels under the axis
    columns = []
    for index, (label, value, tooltip) in enumerate(points):
        h = plot_h * float(value) / axis_max if axis_max else 0
        columns.append(
            Column(
                x=_r(index * slot + gap / 2),
                y=_r(bottom - h),
                width=_r(max(slot - gap, 1)),
                height=_r(h),
                label=label,
                title=tooltip,
                show_label=index % every == 0,
                label_x=_pct(100 * (index + 0.5) / max(len(points), 1)),
                minor=(index // every) % 2 == 1,
            )
        )
    ticks = _ticks(axis_max, step, fmt, lambda value: bottom - plot_h * value / axis_max)
    total = sum(values)
    description = (
        f"{len(points)} columns from {points[0][0]} to {points[-1][0]}; "
        f"highest {fmt(peak)}, total {fmt(total)}."
        if points
        else "No data."
    )
    return ColumnChart(
        title, description, width, height, top, bottom, tuple(columns), ticks, empty=peak <= 0
    )


# The row charts (spend per model or member, durations) are drawn in CSS px, never scaled:
# each row's label sits on its own line above its bar, and bar lengths, value positions and
# ticks are percentages of the plot's width, so the text keeps its CSS size at any width and
# a long label never fights the bar for room. The value written past a bar's end overflows
# into a right padding the stylesheet gives the chart (``.chart-rows--*``).


def _pct(value: float) -> float:
    return round(value, 2)


@dataclass(frozen=True)
class Bar:
    y: float  # top of the bar, px
    label_y: float  # baseline of the label above the bar, px
    text_y: float  # baseline of the value beside the bar's end, px
    label: str
    short_label: str
    width: float  # percent of the plot's width
    value_label: str
    title: str
    tone: str


@dataclass(frozen=True)
class _RowChart(_Chart):
    """A chart of horizontal rows in CSS px (``width`` is unused: it fills its card)."""

    bar_height: int


@dataclass(frozen=True)
class _Rows:
    """Where the rows of a horizontal chart go, in px: a line of label text, then a bar
    ``bar_h`` high, then ``gap`` before the next row."""

    bar_h: int
    gap: int
    label_h: int = 17

    def top(self, index: int) -> int:
        return index * (self.label_h + self.bar_h + self.gap)

    def label_y(self, index: int) -> int:
        return self.top(index) + 12

    def bar_y(self, index: int) -> int:
        return self.top(index) + self.label_h

    def text_y(self, index: int) -> float:
        """The baseline that centres a line of 12 px text on the row's bar."""
        return self.bar_y(index) + self.bar_h / 2 + 4

    def height(self, count: int) -> int:
        """Room for ``count`` rows, and for one when there are none (the "No data" chart)."""
        return self.top(max(count, 1)) - self.gap


@dataclass(frozen=True)
class BarChart(_RowChart):
    bars: tuple[Bar, ...]
    empty: bool


def bar_chart(
    rows: Sequence[tuple[str, Number]],
    *,
    title: str,
    fmt: Formatter,
    tones: Sequence[str] | None = None,
    limit: int = 12,
) -> BarChart:
    """Horizontal bars, largest first as given (e.g. spend per model or per member)."""
    shown = list(rows)[:limit]
    layout = _Rows(bar_h=18, gap=10)
    peak = max((float(v) for _, v in shown), default=0.0)
    bars = []
    for index, (label, value) in enumerate(shown):
        share = 100 * float(value) / peak if peak > 0 else 0.0
        bars.append(
            Bar(
                y=layout.bar_y(index),
                label_y=layout.label_y(index),
                text_y=layout.text_y(index),
                label=label,
                short_label=_short(label, 24),
                width=_pct(share),
                value_label=fmt(float(value)),
                title=f"{label}: {fmt(float(value))}",
                tone=tones[index] if tones else "accent",
            )
        )
    rest = len(rows) - len(shown)
    description = (
        f"{len(shown)} bars; largest {shown[0][0]} at {fmt(peak)}"
        + (f"; {rest} more in the table." if rest > 0 else ".")
        if shown
        else "No data."
    )
    return BarChart(
        title, description, 0, layout.height(len(shown)), layout.bar_h, tuple(bars), peak <= 0
    )


@dataclass(frozen=True)
class Range:
    y: float  # top of the bar, px
    label_y: float
    text_y: float
    label: str
    short_label: str
    p90_width: float  # percent of the plot's width
    median_x: float  # percent of the plot's width
    marker_top: float
    marker_bottom: float
    value_label: str
    title: str


@dataclass(frozen=True)
class RangeTick:
    x: float  # percent of the plot's width
    label: str
    # Where the plot is narrow, "minor" tick labels (every other one) are hidden, and where
    # it is narrower still, all but the two ends (``inner``), so labels never overlap.
    minor: bool
    inner: bool


@dataclass(frozen=True)
class RangeChart(_RowChart):
    rows: tuple[Range, ...]
    ticks: tuple[RangeTick, ...]
    axis_y: int
    empty: bool

    @property
    def label_y(self) -> int:
        return self.axis_y + 16


def range_chart(
    rows: Sequence[tuple[str, Number, Number]],
    *,
    title: str,
    fmt: Formatter,
    limit: int = 12,
) -> RangeChart:
    """Typical and slow durations per row: a bar to the 90th percentile, a tick at the median."""
    shown = list(rows)[:limit]
    layout = _Rows(bar_h=16, gap=10)
    peak = max((float(p90) for _, _, p90 in shown), default=0.0)
    axis_max, step = nice_scale(peak)
    out = []
    for index, (label, median, p90) in enumerate(shown):
        y = layout.bar_y(index)
        out.append(
            Range(
                y=y,
                label_y=layout.label_y(index),
                text_y=layout.text_y(index),
                label=label,
                short_label=_short(label),
                p90_width=_pct(100 * float(p90) / axis_max),
                median_x=_pct(100 * float(median) / axis_max),
                marker_top=y - 3,
                marker_bottom=y + layout.bar_h + 3,
                value_label=f"{fmt(float(median))} · {fmt(float(p90))}",
                title=f"{label}: median {fmt(float(median))}, 90% under {fmt(float(p90))}",
            )
        )
    axis_y = layout.height(len(shown)) + 6
    raw = _ticks(axis_max, step, fmt, lambda v: 100 * v / axis_max)
    ticks = tuple(
        RangeTick(tick.pos, tick.label, minor=n % 2 == 1 and n < len(raw) - 1,
                  inner=0 < n < len(raw) - 1)
        for n, tick in enumerate(raw)
    )  # fmt: skip
    description = (
        f"Median and 90th-percentile duration for {len(shown)} models; slowest 90th "
        f"percentile {fmt(peak)}."
        if shown
        else "No data."
    )
    return RangeChart(
        title, description, 0, axis_y + 22, layout.bar_h, tuple(out), ticks, axis_y,
        empty=not shown,
    )  # fmt: skip


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    label: str
    count: int
    share: str
    tone: str


@dataclass(frozen=True)
class StackChart(_Chart):
    segments: tuple[Segment, ...]
    empty: bool


def stack_chart(
    parts: Sequence[tuple[str, int, str]], *, title: str, width: int = 720, height: int = 28
) -> StackChart:
    """One bar split by share (e.g. runs by status). ``parts``: (label, count, tone)."""
    total = sum(count for _, count, _ in parts)
    x = 0.0
    segments = []
    for label, count, tone in parts:
        if count <= 0:
            continue
        w = width * count / total
        segments.append(Segment(_r(x), _r(w), label, count, f"{100 * count / total:.0f}%", tone))
        x += w
    description = (
        ", ".join(f"{s.label}: {s.count} ({s.share})" for s in segments) + "."
        if segments
        else "No runs."
    )
    return StackChart(title, description, width, height, tuple(segments), empty=total == 0)
