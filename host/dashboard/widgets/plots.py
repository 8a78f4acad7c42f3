"""Live plots of syringe pressure and delivered volume (textual-plotext), redrawn on the app's timer.

A redraw has two steps. On the event loop, the history is reduced to min/max pairs per plot column
(`History.downsampled`: two numpy passes, about a millisecond for 10 minutes of 1 kHz data) and
packed into a `PlotSpec`. The drawing itself (plotext's `build`, pure Python, ~10 ms per plot and
much more on a loaded machine) runs in a worker thread, and the widget shows the last finished
text. So the event loop, which carries the STOP key and the link's heartbeat, is never held by a
plot: the interpreter hands it the GIL every few milliseconds while a plot is being built.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from host.dashboard._plotext_adapter import build_matrix, colors_to_ansi, set_size, theme_name
from host.dashboard.model import DashboardModel

log = logging.getLogger(__name__)

MARKER = "hd"
"""Quadrant block characters (2 x 2 dots per character, in every terminal font): less than half
plotext's build time of braille at the same point count, and sharp enough at plot-column resolution."""
Y_AXIS_COLUMNS = 8
"""Columns plotext spends on the y tick labels: not available to data."""


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """Everything one drawing needs, computed on the event loop; drawn in a thread by `draw`."""

    width: int
    height: int
    theme: str
    title: str
    color: str
    x: list[float]
    y: list[float]
    hlines: list[tuple[float, str]]
    vlines: list[float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    yticks: list[float]
    """Tick labels at the reference lines (and 0), so a limit line is read at its own value."""
    xlabel: str = "s"
    pauses: tuple[float, ...] = ()
    """x of the planned pauses (an increment's end, the target reached): drawn in PAUSE_COLOR, not
    in the red of the stops (`vlines`)."""


PAUSE_COLOR = "gray"
STOP_COLOR = "red"


def figure(spec: PlotSpec) -> Plot:
    """A fresh plotext figure for `spec` (safe in any thread: nothing shared)."""
    plt = Plot()
    plt.plotsize(spec.width, spec.height)
    set_size(plt, spec.width, spec.height)  # as textual-plotext's own render does (its issue #5)
    plt.theme(spec.theme)
    plt.title(spec.title)
    plt.xlabel(spec.xlabel)
    if spec.x:
        plt.plot(spec.x, spec.y, marker=MARKER, color=spec.color)
    for y, color in spec.hlines:
        plt.hline(y, color)
    for x in spec.pauses:
        plt.vline(x, PAUSE_COLOR)
    for x in spec.vlines:  # drawn last: a stop at a pause's time shows red
        plt.vline(x, STOP_COLOR)
    plt.xlim(*spec.xlim)
    plt.ylim(*spec.ylim)
    if spec.yticks:
        plt.yticks(spec.yticks, [f"{y:g}" for y in spec.yticks])
    return plt


def draw(spec: PlotSpec) -> list[Strip]:
    """The plot as screen lines, ready to paint, so the event loop only copies finished lines.
    Straight from plotext's cell matrix; through its ANSI text if that layout ever changes."""
    plt = figure(spec)
    try:
        return strips_from_matrix(plt, spec.width, spec.height)
    except (AttributeError, IndexError, TypeError) as exc:
        log.warning("plotext's cell matrix is not readable (%r): drawing through its ANSI text", exc)
        return strips_from_ansi(figure(spec), spec.width, spec.height)


def strips_from_ansi(plt: Plot, width: int, height: int) -> list[Strip]:
    """The documented way: plotext's ANSI string, parsed back by Rich (what PlotextPlot.render does)."""
    text = Text.from_ansi(plt.build())
    console = Console(
        width=width, height=height, color_system="truecolor", force_terminal=True, file=io.StringIO()
    )
    lines = console.render_lines(text, console.options.update(width=width, height=height), pad=True)
    return [Strip(line, width) for line in lines[:height]]


_STYLES: dict[str, Style] = {}


def _style(colors: list[object]) -> Style:
    """The Rich style of one plotext cell colour triple (foreground, style, background), cached:
    a plot uses a handful of them."""
    key = repr(colors)
    cached = _STYLES.get(key)
    if cached is not None:
        return cached
    decoded = Text.from_ansi(colors_to_ansi(*colors) + "x")
    found = decoded.spans[0].style if decoded.spans else Style.null()
    style = found if isinstance(found, Style) else Style.parse(found)
    _STYLES[key] = style
    return style


def strips_from_matrix(plt: Plot, width: int, height: int) -> list[Strip]:
    """Screen lines straight from plotext's cell matrix, skipping its ANSI string and the parse back:
    the same cells and colours as `build()`, at about half the cost."""
    m = build_matrix(plt)
    strips = []
    for row in list(m.Rows)[::-1][:height]:
        markers, fg, st, bg = m.marker[row], m.fullground[row], m.style[row], m.background[row]
        segments: list[Segment] = []
        start = 0
        for col in range(1, m.cols + 1):
            if col == m.cols or fg[col] != fg[start] or st[col] != st[start] or bg[col] != bg[start]:
                segments.append(
                    Segment("".join(markers[start:col]), _style([fg[start], st[start], bg[start]]))
                )
                start = col
        strips.append(Strip(segments).adjust_cell_length(width))
    return strips


class SignalPlot(PlotextPlot):
    """One signal of the history against time, with horizontal reference lines and stop marks."""

    def __init__(self, signal: str, title: str, color: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.signal = signal
        self.title_text = title
        self.color = color
        self._drawn: tuple[int, ...] | None = None
        self._strips: list[Strip] = []
        self._pending: PlotSpec | None = None
        self._building = False
        self.builds = 0
        """Drawings finished (tests wait on it)."""

    @property
    def idle(self) -> bool:
        """No drawing running or waiting."""
        return not self._building and self._pending is None

    def data_columns(self) -> int:
        return max(10, self.size.width - Y_AXIS_COLUMNS)

    def lines(self, model: DashboardModel) -> list[tuple[float, str, str]]:
        """(y, colour, label) reference lines; subclasses say which."""
        return []

    level_tick = False
    """Whether the y axis also gets a tick at the signal's recent level (`level_tick_at`)."""

    def data_rows(self) -> int:
        """Rows plotext gives the data (the title and the x axis take the rest)."""
        return max(3, self.size.height - 4)

    def spec(self, model: DashboardModel) -> PlotSpec:
        series = model.history.downsampled(self.signal, self.data_columns())
        top = 0.0
        if len(series.y):
            finite = series.y[np.isfinite(series.y)]
            top = float(finite.max()) if len(finite) else 0.0
        hlines = [(y, color) for y, color, _label in self.lines(model)]
        top = max([top, *(y for y, _c in hlines)])
        span = float(series.x[-1]) if len(series.x) else 1.0
        ylim = (0.0, top * 1.08 if top > 0 else 1.0)
        yticks = sorted({0.0, *(y for y, _c in hlines)}) if hlines else []
        if yticks and self.level_tick:
            level = level_tick_at(series.y, yticks, ylim[1] / self.data_rows())
            if level is not None:
                yticks = sorted({*yticks, level})
        return PlotSpec(
            width=self.size.width,
            height=self.size.height,
            theme=theme_name(self, self.app.theme),
            title=self.title_text,
            color=self.color,
            x=series.x.tolist(),
            y=series.y.tolist(),
            hlines=hlines,
            vlines=list(model.stop_marks_s),
            pauses=tuple(model.pause_marks_s),
            xlim=(0.0, max(span, 1.0)),
            ylim=ylim,
            yticks=yticks,
        )

    def redraw(self, model: DashboardModel, *, force: bool = False) -> bool:
        """Start a new drawing if the history, the marks or the size changed; True if it did."""
        key = (
            model.history.version,
            model.version,
            *self.size,
            len(model.stop_marks_s),
            len(model.pause_marks_s),
        )
        if (not force and key == self._drawn) or not self.size.width or not self.size.height:
            return False
        self._drawn = key
        self._pending = self.spec(model)
        self._kick()
        return True

    def _kick(self) -> None:
        """Draw the newest pending spec in a thread, one drawing at a time (a newer spec replaces an
        older one still waiting)."""
        if self._building or self._pending is None:
            return
        spec, self._pending = self._pending, None
        self._building = True
        self.run_worker(lambda: draw(spec), thread=True, group="plot", exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "plot" or not worker.is_finished:
            return
        event.stop()
        if event.state == WorkerState.SUCCESS and isinstance(worker.result, list):
            self._strips = worker.result
            self.builds += 1
            self.refresh()
        self._building = False
        self._kick()

    def render_line(self, y: int) -> Strip:
        """The finished drawing's line `y` (blank until the first drawing is done)."""
        strips = self._strips
        if y < len(strips) and strips[y].cell_length == self.size.width:
            return strips[y]
        return Strip.blank(self.size.width)


def level_tick_at(y: np.ndarray, ticks: list[float], row: float) -> float | None:
    """A tick at the signal's recent level (the median of its last tenth: the plateau while
    injecting), rounded to two significant digits, so the plateau is read off the axis, not guessed
    between 0 and a limit far above it. None when there is no data, or when an existing tick is
    within a row (`row`: the value of one row) and already reads it."""
    finite = y[np.isfinite(y)]
    if not len(finite) or row <= 0:
        return None
    level = float(np.median(finite[-max(1, len(finite) // 10) :]))
    if level <= 0:
        return None
    rounded = float(f"{level:.2g}")
    if any(abs(rounded - tick) < row for tick in ticks):
        return None
    return rounded


class PressurePlot(SignalPlot):
    level_tick = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("pressure_kpa", "syringe pressure, kPa (soft / hard limit)", "cyan", id=id)

    def lines(self, model: DashboardModel) -> list[tuple[float, str, str]]:
        limits = model.limits()
        out = []
        if limits["soft_kpa"]:
            out.append((float(limits["soft_kpa"]), "orange", "soft"))
        if limits["hard_kpa"]:
            out.append((float(limits["hard_kpa"]), "red", "hard"))
        return out


class VolumePlot(SignalPlot):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("delivered_ml", "delivered volume, mL (target / increments)", "green", id=id)

    def lines(self, model: DashboardModel) -> list[tuple[float, str, str]]:
        limits = model.limits()
        target = limits["volume_ml"]
        out: list[tuple[float, str, str]] = []
        increment = limits["increment_ml"]
        if target and increment and increment < target:
            out.extend((k * increment, "gray", "increment") for k in _steps(increment, target))
        if target:
            out.append((float(target), "green", "target"))
        return out


def _steps(increment: float, target: float) -> Iterable[int]:
    return range(1, min(math.ceil(target / increment - 1e-9), 50))


class PressureVolumePlot(SignalPlot):
    """Syringe pressure against delivered volume (v toggles it with the volume plot): how hard the
    cement is to push at each point of the delivery, with the pressure limits; the x axis runs to
    the plan's target."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("pressure_kpa", "pressure, kPa, against delivered volume, mL", "cyan", id=id)

    level_tick = True
    lines = PressurePlot.lines

    def spec(self, model: DashboardModel) -> PlotSpec:
        by_time = super().spec(model)
        series = model.history.downsampled(self.signal, self.data_columns(), against="delivered_ml")
        finite = series.x[np.isfinite(series.x)]
        right = max([float(finite.max()) if len(finite) else 0.0, model.limits()["volume_ml"] or 0.0])
        return dataclasses.replace(
            by_time,
            x=series.x.tolist(),
            y=series.y.tolist(),
            xlim=(0.0, right * 1.02 if right > 0 else 1.0),
            vlines=[],
            pauses=(),
            xlabel="mL",
        )
