"""The fluoroscopy panel: the newest frame with the guard's overlay, in half-block cells, and the
guard's state under it.

Why half blocks. A terminal cell is about twice as tall as wide; "▀" with the upper pixel as its
foreground colour and the lower as its background shows two square pixels per cell, in any terminal
with 24-bit colour and no graphics protocol (serial consoles, tmux, ssh). textual-image (sixel, kitty)
is not in this project's package registry, so half blocks are the one rendering.
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

from host.dashboard.guard_view import GuardView

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
    """The frame (drawn only when a newer one came or the panel was resized) and one state line."""

    DEFAULT_CSS = """
    FluoroPanel { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: GuardView | None = None
        self._drawn: tuple[int, int, int] | None = None
        self._image: HalfBlocks | None = None

    def show(self, view: GuardView | None) -> None:
        self.view = view
        frame = view.frame if view is not None else None
        key = (frame.index if frame is not None else -1, self.size.width, self.size.height)
        if key != self._drawn:
            self._drawn = key
            self._image = self._draw(view)
        self.refresh()

    def _draw(self, view: GuardView | None) -> HalfBlocks | None:
        frame = view.frame if view is not None else None
        if frame is None or self.size.width < 2 or self.size.height < 3:
            return None
        from host.fluoro_overlay import overlay_rgb  # opencv: only once there is a frame

        h, w = frame.picture.pixels.shape
        cols, rows = fit_cells(w, h, self.size.width, self.size.height - 2)
        try:
            return HalfBlocks(overlay_rgb(frame.picture, cols, rows))
        except (ValueError, IndexError) as exc:  # a frame that cannot be drawn is counted, not a crash
            assert view is not None
            view.dropped += 1
            log.warning("fluoro panel: frame %d not drawn: %s", frame.index, exc)
            return None

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
        if frame is not None:
            text.append(f"  frame {frame.index}", style="dim")
        if extra:
            text.append(f"\n{extra}: {view.source}")
        return text


class _Stack:
    """The state line above the image (one renderable: the panel's `render` returns one); the line
    first, so a short panel still shows the state."""

    def __init__(self, image: HalfBlocks, line: Text) -> None:
        self.image, self.line = image, line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.line
        yield self.image
