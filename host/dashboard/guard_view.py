"""What the dashboard knows about the fluoroscopic guard: its state line, the newest frame and what the
guard made of it. Pure (no Textual, no I/O): the live source and the replay both fill a `GuardView`,
the panel and the banner read it.

Stale frames are dropped here: the view holds only the newest frame of each view; the panel draws
them at the screen's refresh rate, never once per frame, so a 30 frames/s source costs the screen
nothing more than a 1 frame/s one.

Biplane (`--frames-ap`, or a recording or stream that carries both views): the newest frame of each
view, each view's own state beside the guard's, and which of them the panel shows (`shown`: both,
or one larger; the dashboard's b key cycles).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # opencv is loaded only by a session that has frames
    from host.fluoro_overlay import FluoroPicture

__all__ = ["SHOW_MODES", "GuardFrame", "GuardView"]

log = logging.getLogger(__name__)

NO_SOURCE = "no frame source"
SHOW_MODES = ("both", "lateral", "ap")
"""What the panel shows of a biplane guard: both views, or one of them larger."""


@dataclass(frozen=True, slots=True)
class GuardFrame:
    """One frame as the panel draws it."""

    index: int
    t_us: int
    picture: FluoroPicture
    view: str = "lateral"


class GuardView:
    """The guard's state for every screen, and the newest frame for the panel."""

    def __init__(self, source: str, views: tuple[str, ...] = ("lateral",)) -> None:
        self.source = source
        """The frame source's URL (or the recording it comes from)."""
        self.label = "BLIND(starting)"
        """WATCHING, BLIND(reason), STOPPED(rule) (host/guard GuardStatus.label): the guard's, the
        worst of its views'."""
        self.state = "BLIND"
        self.views: list[str] = list(views)
        """The views this guard watches, in the panel's order (a frame of another view adds it)."""
        self.latest: dict[str, GuardFrame] = {}
        """The newest frame of each view."""
        self.view_labels: dict[str, str] = {}
        """Each view's own state, when the guard has a guard per view."""
        self.frame: GuardFrame | None = None
        """The newest frame of any view."""
        self.frames = 0
        """Frames shown so far (the panel's counter)."""
        self.dropped = 0
        """Frames the panel could not draw (a picture that did not fit): counted, never a crash."""
        self.problem: str | None = None
        """Why there is no frame source at all (it failed to open), else None."""
        self.shown = "both"
        """`SHOW_MODES`: both views, or one (the b key)."""

    def no_source(self, why: str) -> None:
        self.problem = why
        self.state = "BLIND"
        self.label = f"BLIND({NO_SOURCE}: {why})"

    def status(self, state: str, label: str) -> None:
        self.state = state
        self.label = label

    def view_status(self, view: str, label: str) -> None:
        """`view`'s own state (a biplane guard's; the guard's state is `label`)."""
        self._add(view)
        self.view_labels[view] = label

    @property
    def biplane(self) -> bool:
        return len(self.views) > 1

    def show(self, frame: GuardFrame) -> None:
        """The newest frame of its view replaces the one before (drawn or not: stale frames are
        dropped). A picture whose mask does not fit its pixels is kept without its mask."""
        pic = frame.picture
        if pic.pixels.ndim != 2:
            self.dropped += 1
            log.warning("guard view: frame %d has %d dimensions: not shown", frame.index, pic.pixels.ndim)
            return
        if pic.mask is not None and np.shape(pic.mask) != pic.pixels.shape:
            pic = dataclasses.replace(pic, mask=None)
        if pic.evidence is not None and np.shape(pic.evidence) != pic.pixels.shape:
            pic = dataclasses.replace(pic, evidence=None)
        if pic is not frame.picture:
            frame = dataclasses.replace(frame, picture=pic)
        self._add(frame.view)
        self.latest[frame.view] = frame
        self.frame = frame
        self.frames += 1

    def _add(self, view: str) -> None:
        if view not in self.views:
            self.views.append(view)

    def next_shown(self) -> str:
        """The b key: both -> lateral -> ap -> both (only the views there are)."""
        modes = ["both", *self.views] if self.biplane else list(self.views)
        at = modes.index(self.shown) if self.shown in modes else -1
        self.shown = modes[(at + 1) % len(modes)]
        return self.shown

    def panes(self) -> list[tuple[str, GuardFrame | None]]:
        """(view, its newest frame) of each view the panel shows, in order."""
        views = self.views if self.shown == "both" or self.shown not in self.views else [self.shown]
        return [(v, self.latest.get(v)) for v in views]

    @property
    def blind(self) -> bool:
        return self.state == "BLIND"

    @property
    def headline(self) -> str:
        """The line every screen shows: `guard: <label>`, plainly."""
        return f"fluoroscopic guard: {self.label}"
