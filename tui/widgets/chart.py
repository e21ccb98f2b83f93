"""A time-series chart (textual-plotext) over the shared time window, with version markers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

COLORS = ("cyan", "magenta", "green", "orange", "blue", "red", "yellow", "gray")


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
                rendered = super().render()
            except Exception as exc:  # noqa: BLE001  a plotting bug must not take the console down
                rendered = Text(f"{self.title}: cannot draw ({type(exc).__name__}: {exc})",
                                style="dim")
            self._cache = (key, rendered)
        return self._cache[1]

    def _replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        data = self.data
        div, unit = _time_axis(data.window_s)
        title = self.title + (f" ({self.unit})" if self.unit else "")
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
            plt.plot(xs, ys, label=line.label or None, marker="braille",
                     color=COLORS[i % len(COLORS)])
            top = max(top, max(ys))
            drawn += 1
        plt.xlim(-data.window_s / div, 0)
        if drawn and (data.ymin is not None or data.ymax is not None):
            lo = 0 if data.ymin is None else data.ymin * self.scale
            hi = top * 1.05 if data.ymax is None else data.ymax * self.scale
            plt.ylim(lo, hi if hi > lo else lo + 1)
        if not drawn:
            plt.ylim(0, 1)
            title += " - " + (data.message or "no data in this window")
        else:
            for ts, label in data.markers:
                x = (float(ts) - data.now) / div
                if -data.window_s / div <= x <= 0:
                    plt.vline(x, "red")
                    y = data.ymax * self.scale if data.ymax else top
                    plt.text(label, x, y, color="red")
        plt.title(f"{title} · {unit} ago")
