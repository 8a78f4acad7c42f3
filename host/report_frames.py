"""The run report's fluoroscopy section: the frames at each stop, with the guard's overlay (issue 15).

For every latched stop of the recording (not the plan's own ends), the newest frame of each view the
recording kept at or before the stop's controller time (host/frame_recording.py keeps every frame from
2 s before a guard's stop, and at least 2 a second of each view otherwise), drawn with the outline, the
posterior-quarter line, the front, the segmented cement and the rule's evidence (the cement beyond the
outline's margin: why an extravasation or venous stop stopped) the guard saw in it. A stop the guard
asked for also shows the frame it judged (the rule's frame, which names the view that tripped), if
that is another one. Nothing when the recording has no frames.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from host.fluoro_overlay import overlay_rgb, png_bytes
from host.frame_recording import FrameLog, FrameLogError, KeptFrame

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from host.report import StopRow

__all__ = ["StopFrame", "frames_html", "frames_pages", "stop_frames"]

log = logging.getLogger(__name__)

MIN_SIDE_PX = 384
"""A small frame (the simulator's 128 px) is drawn larger, so its one-pixel lines stay visible."""
MAX_STOP_FRAMES = 20
"""At most this many frames in a report (a run with more stops lists the count)."""


@dataclass(frozen=True, slots=True)
class StopFrame:
    stop_t_s: float
    """The stop's controller time (s)."""
    reason: str
    source: str
    frame: KeptFrame
    png: bytes
    """The frame with its overlay, PNG."""

    biplane: bool = False
    """The recording kept two views: the caption names the frame's."""

    @property
    def caption(self) -> str:
        f = self.frame
        view = f"{f.view} view " if self.biplane else ""
        rule = f"; the guard stopped here ({f.stop}, {f.view} view)" if f.stop and self.biplane else ""
        rule = rule or (f"; the guard stopped here ({f.stop})" if f.stop else "")
        own = f" ({f.view}: {f.view_label})" if self.biplane and f.view_label else ""
        when = (f.device_t_us or 0) / 1e6
        return (
            f"stop {self.reason} ({self.source}) at {self.stop_t_s:.3f} s: {view}frame {f.index} "
            f"of {when:.3f} s, guard {f.label}{own}{rule}"
        )


def stop_frames(recording: Path, stops: Sequence[StopRow]) -> tuple[list[StopFrame], str | None]:
    """The frame at each latched stop (at most `MAX_STOP_FRAMES`); and a problem to print, if the
    frames could not be read (the report is still written)."""
    try:
        log_ = FrameLog.open(recording)
    except FrameLogError as exc:
        return [], str(exc)
    if log_ is None:
        return [], None
    out: list[StopFrame] = []
    problem = None
    views = log_.views
    biplane = len(views) > 1
    for stop in stops:
        if not stop.latched:
            continue
        at = round(stop.t_s * 1e6)
        frames = [k for k in (log_.at(at, v) for v in views) if k is not None]
        if not frames:
            continue
        ruled = _guard_frame_before(log_, max(frames, key=lambda k: k.device_t_us or 0))
        if ruled is not None and ruled not in frames:
            frames.insert(0, ruled)  # the guard's own frame, just before the STOP event
        for frame in frames:
            if len(out) >= MAX_STOP_FRAMES:
                return out, f"more than {MAX_STOP_FRAMES} stop frames: the first {MAX_STOP_FRAMES} are shown"
            try:
                picture = log_.picture(frame)
                h, w = picture.pixels.shape
                scale = max(1, -(-MIN_SIDE_PX // max(h, w)))
                png = png_bytes(overlay_rgb(picture, w * scale, h * scale))
            except (OSError, ValueError, FrameLogError) as exc:
                problem = f"frame {frame.index}: {exc}"
                log.warning("report: %s", problem)
                continue
            out.append(StopFrame(stop.t_s, stop.reason, stop.source, frame, png, biplane))
    return out, problem


GUARD_FRAME_WITHIN_US = 2_000_000
"""The guard's stop frame is shown beside the stop's frame if it came at most 2 s before it."""


def _guard_frame_before(log_: FrameLog, kept: KeptFrame) -> KeptFrame | None:
    """The latest frame on which the guard asked for a stop, at most 2 s before `kept` (of any view),
    if not `kept`."""
    at = kept.device_t_us
    if at is None or kept.stop is not None:
        return None
    best = None
    for f in log_.stops():
        t = f.device_t_us
        if (
            t is not None
            and 0 <= at - t <= GUARD_FRAME_WITHIN_US
            and (best is None or t > (best.device_t_us or 0))
        ):
            best = f
    return best


def frames_html(frames: list[StopFrame], problem: str | None) -> str:
    """The HTML section (frames embedded as base64 PNG); empty without frames or a problem."""
    if not frames and problem is None:
        return ""
    parts = ["<h2>Fluoroscopy at the stops</h2>"]
    parts.append(
        "<p>outline green, posterior-quarter line yellow, detected front cyan (red past the line), "
        "segmented cement orange, the cement a rule counted (beyond the outline's margin) magenta</p>"
    )
    if problem is not None:
        parts.append(f"<p class='warn'>{html.escape(problem)}</p>")
    for f in frames:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(
            f"<figure><img class='frame' alt='{html.escape(f.caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def frames_pages(frames: list[StopFrame]) -> list[Figure]:
    """PDF pages of the stop frames, four to a page."""
    import io

    import matplotlib.image as mpimg
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pages = []
    for start in range(0, len(frames), 4):
        fig = Figure(figsize=(8.27, 11.69))
        FigureCanvasAgg(fig)
        fig.suptitle(
            "fluoroscopy at the stops (outline green, line yellow, front cyan/red, cement orange, "
            "the rule's evidence magenta)",
            fontsize=9,
        )
        for k, f in enumerate(frames[start : start + 4]):
            ax = fig.add_subplot(2, 2, k + 1)
            ax.imshow(mpimg.imread(io.BytesIO(f.png), format="png"))
            ax.set_title(f.caption, fontsize=5.5, wrap=True)
            ax.set_axis_off()
        pages.append(fig)
    return pages
