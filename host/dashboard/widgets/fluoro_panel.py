"""The fluoroscopy panel: the newest frame with the guard's overlay, in half-block cells, and the
guard's state under it.

Why half blocks. A terminal cell is about twice as tall as wide; "▀" with the upper pixel as its
foreground colour and the lower as its background shows two square pixels per cell, in any terminal
with 24-bit colour and no graphics protocol (serial consoles, tmux, ssh). textual-image (sixel, kitty)
is not in this project's package registry, so half blocks are the one rendering.

Biplane. With two views the panel shows both, side by side or one above the other (whichever draws
them larger in the panel's shape), each under a line with its view, its own state and its frame
number; the b key shows one view alone, larger, and then both again.
"""

from __future__ import annotations

import logging

import numpy as np
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from host.dashboard.guard_view import GuardFrame, GuardView

__all__ = ["FluoroPanel", "HalfBlocks", "fit_cells"]

log = logging.getLogger(__name__)

UPPER_HALF = "\u2580"
STATE_STYLES = {"WATCHING": "bold green", "BLIND": "bold yellow on red", "STOPPED": "bold white on red"}


class HalfBlocks:
    """A rich renderable of an RGB image: one cell per column and per two rows."""

    def __init__(self, rgb: np.ndarray) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"image shape {rgb.shape}; allowed H x W x 3 (RGB)")
        if rgb.shape[0] % 2:
            rgb = np.concatenate([rgb, np.zeros_like(rgb[:1])], axis=0)
        self.rgb = rgb.astype(np.uint8)

    def rows(self) -> list[list[Segment]]:
        """The segments of each cell row (a style cache: a grey image has few distinct pairs)."""
        cache: dict[tuple[int, ...], Style] = {}
        out = []
        for top, bottom in zip(self.rgb[0::2], self.rgb[1::2], strict=True):
            line = []
            for a, b in zip(top.tolist(), bottom.tolist(), strict=True):
                key = (*a, *b)
                style = cache.get(key)
                if style is None:
                    style = Style(color=Color.from_rgb(*a), bgcolor=Color.from_rgb(*b))
                    cache[key] = style
                line.append(Segment(UPPER_HALF, style))
            out.append(line)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.rows():
            yield from line
            yield Segment.line()


def fit_cells(frame_w: int, frame_h: int, cols: int, rows: int) -> tuple[int, int]:
    """(output width in pixels = cells, output height in pixels = 2 x cell rows), the frame's aspect
    kept, as large as fits `cols` x `rows` cells. At least 1 x 2."""
    cols, rows = max(1, cols), max(1, rows)
    scale = min(cols / frame_w, 2 * rows / frame_h)
    w = max(1, min(cols, round(frame_w * scale)))
    h = max(2, min(2 * rows, round(frame_h * scale)))
    return w, h + (h % 2)


class FluoroPanel(Widget):
    """The frame(s) (drawn only when a newer one came, the panel was resized or the b key changed
    what is shown) and one state line."""

    DEFAULT_CSS = """
    FluoroPanel { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: GuardView | None = None
        self._drawn: tuple[object, ...] | None = None
        self._image: HalfBlocks | _Panes | None = None

    def show(self, view: GuardView | None) -> None:
        self.view = view
        if view is not None and view.biplane:
            panes = tuple((v, f.index if f is not None else -1) for v, f in view.panes())
            key: tuple[object, ...] = (panes, self.size.width, self.size.height)
        else:
            frame = view.frame if view is not None else None
            key = (frame.index if frame is not None else -1, self.size.width, self.size.height)
        if key != self._drawn:
            self._drawn = key
            self._image = self._draw_panes(view) if view is not None and view.biplane else self._draw(view)
        self.refresh()

    def _draw(self, view: GuardView | None) -> HalfBlocks | None:
        frame = view.frame if view is not None else None
        if frame is None or self.size.width < 2 or self.size.height < 3:
            return None
        assert view is not None
        return _half_blocks(view, frame, self.size.width, self.size.height - 2)

    def _draw_panes(self, view: GuardView) -> _Panes | None:
        panes = view.panes()
        frames = [f for _v, f in panes if f is not None]
        if not frames or self.size.width < 5 or self.size.height < 5:
            return None
        width, height = self.size.width, self.size.height - 1  # the state line
        h, w = frames[0].picture.pixels.shape
        n = len(panes)
        side = fit_cells(w, h, (width - (n - 1)) // n, height - 2)  # one row of panes, two label lines
        stacked = fit_cells(w, h, width, height // n - 1)  # a column: a label line each
        across = n > 1 and side[0] * side[1] > stacked[0] * stacked[1]
        cols, rows = ((width - (n - 1)) // n, height - 2) if across else (width, height // n - 1)
        images = [(v, f, _half_blocks(view, f, cols, rows) if f is not None else None) for v, f in panes]
        return _Panes(view, images, across, cols)

    def render(self) -> RenderableType:
        view = self.view
        if view is None:
            return Text("no frame source (--frames URL)", style="bold")
        if self._image is None:
            return self._status_line(view, "no frame yet" if view.problem is None else "")
        return _Stack(self._image, self._status_line(view, ""))

    @staticmethod
    def _status_line(view: GuardView, extra: str) -> Text:
        text = Text()
        text.append(f" {view.label} ", style=STATE_STYLES.get(view.state, "bold"))
        frame = view.frame
        if view.biplane:
            shown = "both views" if view.shown == "both" else f"{view.shown} view"
            text.append(f"  {shown} (b)", style="dim")
        elif frame is not None:
            text.append(f"  frame {frame.index}", style="dim")
        if extra:
            text.append(f"\n{extra}: {view.source}")
        return text


def _half_blocks(view: GuardView, frame: GuardFrame, cols: int, rows: int) -> HalfBlocks | None:
    """The frame with its overlay in `cols` x `rows` cells; None (counted) if it cannot be drawn."""
    from host.fluoro_overlay import overlay_rgb  # opencv: only once there is a frame

    h, w = frame.picture.pixels.shape
    out_w, out_h = fit_cells(w, h, cols, rows)
    try:
        return HalfBlocks(overlay_rgb(frame.picture, out_w, out_h))
    except (ValueError, IndexError) as exc:  # a frame that cannot be drawn is counted, not a crash
        view.dropped += 1
        log.warning("fluoro panel: frame %d not drawn: %s", frame.index, exc)
        return None


def _pane_labels(view: GuardView, name: str, frame: GuardFrame | None) -> tuple[Text, Text]:
    """The view's name and frame number; its own state (empty before the guard said it)."""
    head = Text()
    head.append(name.upper(), style="bold")
    head.append(f"  frame {frame.index}" if frame is not None else "  no frame yet", style="dim")
    label = view.view_labels.get(name, "")
    state = Text(label, style=STATE_STYLES.get(label.split("(", 1)[0], "bold")) if label else Text()
    return head, state


class _Panes:
    """Two (or one) views, each under its label line: side by side (`across`) or one above the
    other. A view without a frame yet is its label line alone."""

    def __init__(
        self,
        view: GuardView,
        images: list[tuple[str, GuardFrame | None, HalfBlocks | None]],
        across: bool,
        cols: int,
    ) -> None:
        self.view, self.images, self.across, self.cols = view, images, across, cols

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        labels = [_pane_labels(self.view, v, f) for v, f, _img in self.images]
        if not self.across:
            for (head, state), (_v, _f, image) in zip(labels, self.images, strict=True):
                line = head.copy()
                if state:
                    line.append(" ")
                    line.append_text(state)
                line.truncate(options.max_width)
                yield line
                if image is not None:
                    yield image
            return
        for part in (0, 1):  # the names and frame numbers, then the states, a column each
            line = Text()
            for k, pair in enumerate(labels):
                cell = pair[part].copy()
                cell.truncate(self.cols, pad=True)
                line.append_text(cell)
                if k < len(labels) - 1:
                    line.append(" ")
            yield line
        grids = [img.rows() if img is not None else [] for _v, _f, img in self.images]
        widths = [len(g[0]) if g else 0 for g in grids]
        for r in range(max((len(g) for g in grids), default=0)):
            for k, g in enumerate(grids):
                if r < len(g):
                    yield from g[r]
                    pad = self.cols - widths[k]
                else:
                    pad = self.cols
                if k < len(grids) - 1:
                    yield Segment(" " * (pad + 1))
            yield Segment.line()


class _Stack:
    """The state line above the image (one renderable: the panel's `render` returns one); the line
    first, so a short panel still shows the state."""

    def __init__(self, image: HalfBlocks | _Panes, line: Text) -> None:
        self.image, self.line = image, line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.line
        yield self.image
