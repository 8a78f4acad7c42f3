"""What the dashboard knows about the fluoroscopic guard: its state line, the newest frame and what the
guard made of it. Pure (no Textual, no I/O): the live source and the replay both fill a `GuardView`,
the panel and the banner read it.

Stale frames are dropped here: the view holds only the newest frame; the panel draws it at the
screen's refresh rate, never once per frame, so a 30 frames/s source costs the screen nothing more
than a 1 frame/s one.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # opencv is loaded only by a session that has frames
    from host.fluoro_overlay import FluoroPicture

__all__ = ["GuardFrame", "GuardView"]

log = logging.getLogger(__name__)

NO_SOURCE = "no frame source"


@dataclass(frozen=True, slots=True)
class GuardFrame:
    """One frame as the panel draws it."""

    index: int
    t_us: int
    picture: FluoroPicture


class GuardView:
    """The guard's state for every screen, and the newest frame for the panel."""

    def __init__(self, source: str) -> None:
        self.source = source
        """The frame source's URL (or the recording it comes from)."""
        self.label = "BLIND(starting)"
        """WATCHING, BLIND(reason), STOPPED(rule) (host/guard GuardStatus.label)."""
        self.state = "BLIND"
        self.frame: GuardFrame | None = None
        self.frames = 0
        """Frames shown so far (the panel's counter)."""
        self.dropped = 0
        """Frames the panel could not draw (a picture that did not fit): counted, never a crash."""
        self.problem: str | None = None
        """Why there is no frame source at all (it failed to open), else None."""

    def no_source(self, why: str) -> None:
        self.problem = why
        self.state = "BLIND"
        self.label = f"BLIND({NO_SOURCE}: {why})"

    def status(self, state: str, label: str) -> None:
        self.state = state
        self.label = label

    def show(self, frame: GuardFrame) -> None:
        """The newest frame replaces the one before (not yet drawn or not: stale frames are dropped).
        A picture whose mask does not fit its pixels is kept without its mask."""
        pic = frame.picture
        if pic.pixels.ndim != 2:
            self.dropped += 1
            log.warning("guard view: frame %d has %d dimensions: not shown", frame.index, pic.pixels.ndim)
            return
        if pic.mask is not None and np.shape(pic.mask) != pic.pixels.shape:
            frame = GuardFrame(frame.index, frame.t_us, dataclasses.replace(pic, mask=None))
        self.frame = frame
        self.frames += 1

    @property
    def blind(self) -> bool:
        return self.state == "BLIND"

    @property
    def headline(self) -> str:
        """The line every screen shows: `guard: <label>`, plainly."""
        return f"fluoroscopic guard: {self.label}"
