"""A time-series chart (textual-plotext) over the shared time window, with version markers.

plotext draws the axes and the lines (braille markers: 2x4 dots per cell, so lines are
continuous, as btop's are). The title, the legend and the marker labels are drawn here, in rows
of their own above the plot: plotext's legend sits on the data and its text labels collide
("v2vv4"). Marker labels are placed at their line's column, and labels that would touch are
merged into one ("v2,v3"), so they never overlap each other or the legend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

COLORS = ("cyan", "magenta", "green", "orange", "blue", "red", "yellow", "gray")
# the same colours by Rich's names, for the legend drawn above the plot
RICH_COLORS = {"orange": "dark_orange", "gray": "grey50"}


@dataclass
class Line:
    label: str
    points: Sequence[Sequence[float | None]]  # [[ts, value], ...]


@dataclass
class ChartData:
    lines: list[Line] = field(default_factory=list)
    now: float = 0.0
    window_s: float = 3600.0
    markers: list[tuple[float, str]] = field(default_factory=list)  # (ts, label)
    ymin: float | None = None
    ymax: float | None = None
    message: str = ""


def _time_axis(window_s: float) -> tuple[float, str]:
    """Divisor and unit for the x axis: minutes up to 2 h, hours up to 2 days, else days."""
    if window_s <= 2 * 3600:
        return 60.0, "min"
    if window_s <= 2 * 86400:
        return 3600.0, "h"
    return 86400.0, "d"


class TimeChart(PlotextPlot):
    """Lines over the last ``window`` seconds; x is time before now (e.g. -45 min ... 0)."""

    def __init__(self, title: str, *, scale: float = 1.0, unit: str = "",
                 fmt: Callable[[float], str] | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.scale = scale
        self.unit = unit
        self.fmt = fmt
        self.data = ChartData(message="waiting for data")
        self._version = 0
        self._cache: tuple[tuple[int, int, int, str], RenderResult] | None = None

    def show(self, data: ChartData) -> None:
        self.data = data
        self._version += 1
        self._replot()
        self.refresh()

    def on_resize(self) -> None:
        self._replot()

    def render(self) -> RenderResult:
        """Build the plot only when its data, size or theme changed (plotext is not cheap)."""
        key = (self._version, self.size.width, self.size.height, self.app.theme)
        if self._cache is None or self._cache[0] != key:
            try:
                rendered: RenderResult = self._draw()
            except Exception as exc:  # noqa: BLE001  a plotting bug must not take the console down
                rendered = Text(f"{self.title}: cannot draw ({type(exc).__name__}: {exc})",
                                style="dim")
            self._cache = (key, rendered)
        return self._cache[1]

    def _draw(self) -> Text:
        width, height = self.size.width, self.size.height
        markers = self._visible_markers()
        head_rows = 2 if markers else 1
        plt = self.plt
        plt.plotsize(width, max(3, height - head_rows))
        plt._set_size(width, max(3, height - head_rows))  # noqa: SLF001 - as textual-plotext does
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        body = Text.from_ansi(plt.build())
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append_text(self._header(width))
        if markers:
            out.append("\n")
            out.append_text(self._marker_row(body.plain, markers, width))
        out.append("\n")
        out.append_text(body)
        return out

    def _header(self, width: int) -> Text:
        data = self.data
        _div, unit = _time_axis(data.window_s)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" " + self.title, style="bold")
        if self.unit:
            t.append(f" ({self.unit})", style="dim")
        drawn = [(i, line) for i, line in enumerate(data.lines)
                 if any(v is not None for _ts, v in line.points)]
        if not drawn:
            t.append(" - " + (data.message or "no data in this window"), style="dim")
            t.truncate(width, overflow="ellipsis")
            return t
        legend = Text(no_wrap=True)
        for i, line in drawn:
            if line.label:
                color = COLORS[i % len(COLORS)]
                legend.append(" ■ ", style=RICH_COLORS.get(color, color))
                legend.append(line.label)
        axis = Text(f"   x: {unit} ago", style="dim")
        # the legend is what the lines mean: it stays whole; the x-axis note gives way first,
        # then the unit, then the title is shortened
        if len(t) + len(legend) + len(axis) > width:
            axis = Text("")
        if len(t) + len(legend) > width and self.unit:
            t = Text(" " + self.title, style="bold", no_wrap=True, overflow="ellipsis")
        room = width - len(legend) - len(axis)
        if len(t) > room:
            t.truncate(max(4, room), overflow="ellipsis")
        t.append_text(legend)
        t.append_text(axis)
        t.truncate(width, overflow="ellipsis")
        return t

    def _visible_markers(self) -> list[tuple[float, str]]:
        data = self.data
        if not any(line.points for line in data.lines):
            return []
        return sorted((float(ts), label) for ts, label in data.markers
                      if data.now - data.window_s <= float(ts) <= data.now)

    def _marker_row(self, plot: str, markers: list[tuple[float, str]], width: int) -> Text:
        """Each marker's label above its line, merged with its neighbour when they would
        touch; the row never runs past the plot's right edge."""
        lines = plot.splitlines()
        axis = next((ln for ln in reversed(lines) if "└" in ln and "┘" in ln), "")
        left, right = (axis.index("└"), axis.rindex("┘")) if axis else (0, width - 1)
        span = max(1, right - left - 1)
        data = self.data
        groups: list[tuple[int, list[str]]] = []  # (column, labels)
        for ts, label in markers:
            col = left + 1 + round((ts - (data.now - data.window_s)) / data.window_s * (span - 1))
            if groups and col <= groups[-1][0] + len(",".join(groups[-1][1])):
                groups[-1][1].append(label)  # would touch the previous label: merge
            else:
                groups.append((col, [label]))
        row = Text(no_wrap=True, overflow="crop")
        end = 0
        for col, labels in groups:
            text = ",".join(labels)
            start = max(end, min(col, right - len(text)))
            row.append(" " * (start - end))
            row.append(text, style="bold red")
            end = start + len(text) + 1
            row.append(" ")
        return row

    def _replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        data = self.data
        div, unit = _time_axis(data.window_s)
        drawn = 0
        top = 0.0
        for i, line in enumerate(data.lines):
            xs, ys = [], []
            for ts, v in line.points:
                if ts is None or v is None:
                    continue
                xs.append((float(ts) - data.now) / div)
                ys.append(float(v) * self.scale)
            if not xs:
                continue
            plt.plot(xs, ys, marker="braille", color=COLORS[i % len(COLORS)])
            top = max(top, max(ys))
            drawn += 1
        plt.xlim(-data.window_s / div, 0)
        if drawn and (data.ymin is not None or data.ymax is not None):
            lo = 0 if data.ymin is None else data.ymin * self.scale
            hi = top * 1.05 if data.ymax is None else data.ymax * self.scale
            plt.ylim(lo, hi if hi > lo else lo + 1)
        if not drawn:
            plt.ylim(0, 1)
        else:
            for ts, _label in data.markers:
                x = (float(ts) - data.now) / div
                if -data.window_s / div <= x <= 0:
                    plt.vline(x, "red")
