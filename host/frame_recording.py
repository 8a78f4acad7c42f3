"""The fluoroscopic guard in a recording: its decisions and a decimated frame stream, beside the
telemetry, in `<recording>/frames/` (docs/fluoroscopy.md, "Where you see it").

    frames/guard.jsonl    one JSON object a line: every frame kept (`"frame"`), every change of the
                          guard's state and every stop it asked for (`"decision"`), in order
    frames/NNNNNNNN.png   8-bit grayscale frames (the 1st..99th percentile window, host/fluoro_overlay);
                          an AP view's frame of a biplane guard is NNNNNNNN-ap.png
    frames/NNNNNNNN[-ap]-mask.png   the guard's cement mask of that frame, where it saw cement: 8-bit,
                          0 none, 128 cement, 255 the cement a rule counted (beyond the outline's margin)

What is kept. At most `max_fps` frames a second of each view (device time, the frame's `t_us`), plus
EVERY frame from `around_stop_s` before to `around_stop_s` after each stop the guard asked for (a ring
of the latest frames holds the ones before). The outline, the posterior-quarter line and the front are
kept with each frame (a few numbers), and the cement mask beside it (a small PNG: a binary image
compresses to a few kB), so replay and the report draw the overlay again and show why a rule stopped.

Bounded. The frames stop at `cap_bytes` (default 64 MiB: a 10-minute injection at 2 frames/s of
512 x 512 is ~1200 PNGs of ~40-120 kB); the decisions go on (a line each); the cap reached is a
line in guard.jsonl, never silence. Never blocking. `offer` and `decision` only queue (at most
`QUEUE_SIZE` frames and `MAX_PENDING_DECISIONS` decisions wait; beyond, dropped and counted); one
thread encodes and writes. Nothing here can delay the link, a STOP or a screen refresh.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import math
import queue
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from host.errors import CementguardError
from host.file_limits import MAX_IMAGE_BYTES, read_regular
from host.fluoro_overlay import FluoroPicture, grayscale
from host.frames import VIEWS, FluoroFrame
from host.guard.region import BodyRegion

__all__ = [
    "DEFAULT_CAP_BYTES",
    "FRAMES_DIR",
    "FrameLog",
    "FrameLogError",
    "FrameRecorder",
    "KeptFrame",
]

log = logging.getLogger(__name__)

FRAMES_DIR = "frames"
LOG_NAME = "guard.jsonl"
DEFAULT_MAX_FPS = 2.0
DEFAULT_AROUND_STOP_S = 2.0
DEFAULT_CAP_BYTES = 64 << 20
QUEUE_SIZE = 32
"""Frames waiting for the writer; beyond, a frame is dropped (counted), never waited for."""
MAX_PENDING_DECISIONS = 10_000
"""Decisions waiting for the writer (a line each, ~200 bytes); beyond, dropped and counted."""
RING_SIZE = 64
"""Frames held for 'the seconds before a stop' (2 s at 30 frames/s)."""
MAX_LOG_BYTES = 64 << 20
"""guard.jsonl read back at most this large (a line is ~200 bytes: 300 000 lines)."""


class FrameLogError(CementguardError):
    """A recording's frames/guard.jsonl cannot be read: names the file and why."""


@dataclass(frozen=True, slots=True)
class KeptFrame:
    """One frame of a recording's guard log: where its PNG is and what the guard saw in it."""

    index: int
    t_us: int
    """The frame's own stamp: the controller's clock for sim:// frames, the host's otherwise."""
    file: str
    label: str
    region: tuple[tuple[float, float], ...] | None
    posterior: str
    posterior_fraction: float | None
    front_x: float | None
    stop: str | None
    """The rule of a stop the guard asked for on this frame, else None."""
    device_t_us: int | None = None
    """When the frame is on the recording's (controller's) time axis: its own stamp for sim://
    frames, else the newest telemetry's time when it was judged (within one telemetry batch)."""
    view: str = "lateral"
    view_label: str | None = None
    """The view's own state on this frame (a biplane guard's), else None (then `label` is it)."""
    mask_file: str | None = None
    """The cement mask's PNG beside the frame (None: the guard saw no cement, or an older recording)."""


class FrameRecorder:
    """Writes `frames/` of one recording. `offer` every judged frame, `decision` every state change
    and stop; `close` at the end (waits for the writer, bounded)."""

    def __init__(
        self,
        recording: Path,
        *,
        max_fps: float = DEFAULT_MAX_FPS,
        around_stop_s: float = DEFAULT_AROUND_STOP_S,
        cap_bytes: int = DEFAULT_CAP_BYTES,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        if not (math.isfinite(max_fps) and 0.1 <= max_fps <= 30.0):
            raise ValueError(f"frame recording max_fps {max_fps}; allowed 0.1..30")
        if not (math.isfinite(around_stop_s) and 0.0 <= around_stop_s <= 10.0):
            raise ValueError(f"frame recording around_stop_s {around_stop_s}; allowed 0..10")
        if not 0 <= cap_bytes <= 1 << 34:
            raise ValueError(f"frame recording cap_bytes {cap_bytes}; allowed 0..16 GiB")
        self.directory = recording / FRAMES_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self._period_us = round(1e6 / max_fps)
        self._around_us = round(around_stop_s * 1e6)
        self.cap_bytes = cap_bytes
        self._last_kept_us: dict[str, int] = {}
        """The last kept frame's time, per view (each view is decimated on its own)."""
        self._stop_until_us: int | None = None
        self._ring: deque[tuple[FluoroFrame, dict[str, Any], FluoroPicture]] = deque(maxlen=RING_SIZE)
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._queue_size = queue_size
        self._pending = {"frame": 0, "decision": 0}
        """Items of each kind put and not yet taken by the writer (the queue's bound, per kind:
        frames are large and dropped first; a put never waits)."""
        self._pending_lock = threading.Lock()
        self.dropped_decisions = 0
        self.dropped = 0
        """Frames not written because the writer was behind (counted in guard.jsonl at close)."""
        self.written_bytes = 0
        self.frames_written = 0
        self.capped = False
        self.error: BaseException | None = None
        self._log = (self.directory / LOG_NAME).open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._write_loop, name="frame recording", daemon=True)
        self._thread.start()

    # -- on the caller's thread (never blocks) ------------------------------------------------

    def offer(
        self,
        frame: FluoroFrame,
        picture: FluoroPicture,
        label: str,
        stop: str | None = None,
        device_t_us: int | None = None,
        view_label: str | None = None,
    ) -> bool:
        """A judged frame: kept if due (decimation) or near a stop; True if it was queued.
        `device_t_us`: the controller's clock (the newest telemetry) when the frame was judged, which
        places a real source's frame (stamped by the host's clock) on the recording's time axis.
        `view_label`: the frame's view's own state, when the guard has a guard per view."""
        meta = _meta(frame, picture, label, stop, device_t_us)
        if view_label is not None:
            meta["view_label"] = view_label
        mask = picture  # its mask PNG is made on the writer's thread, for the frames kept only
        t = frame.t_us
        if stop is not None:
            self._stop_until_us = t + self._around_us
            for old, old_meta, old_mask in self._ring:  # the seconds before the stop
                if t - old.t_us <= self._around_us:
                    self._put("frame", (old, old_meta, old_mask))
            self._ring.clear()
        near_stop = self._stop_until_us is not None and t <= self._stop_until_us
        last = self._last_kept_us.get(frame.view)
        due = last is None or t - last >= self._period_us or t < last
        if near_stop or due:
            if near_stop:
                self._ring.clear()
            self._last_kept_us[frame.view] = t
            return self._put("frame", (frame, meta, mask))
        self._ring.append((frame, meta, mask))
        return False

    def decision(
        self,
        t_us: int | None,
        frame: int | None,
        state: str,
        label: str,
        stop: str | None,
        view: str | None = None,
    ) -> None:
        """A change of the guard's state, or a stop it asked for (`view`: the view that asked). A stop
        asked for without a frame (the feed lost, no frame for too long) keeps the frames of the
        seconds before it, as a frame's stop does: the last pictures the guard had."""
        if stop is not None and frame is None and self._ring:
            newest = self._ring[-1][0].t_us
            for old, old_meta, old_pic in self._ring:
                if newest - old.t_us <= self._around_us:
                    self._put("frame", (old, old_meta, old_pic))
            self._ring.clear()
        item = {"t_us": t_us, "frame": frame, "state": state, "label": label, "stop": stop}
        if view is not None:
            item["view"] = view
        self._put("decision", item)

    def _put(self, kind: str, item: Any) -> bool:
        """Queue `item` unless its kind's bound is reached (then it is dropped and counted). Never waits."""
        bound = self._queue_size if kind == "frame" else MAX_PENDING_DECISIONS
        with self._pending_lock:
            if self._pending[kind] >= bound:
                if kind == "frame":
                    self.dropped += 1
                else:
                    self.dropped_decisions += 1
                return False
            self._pending[kind] += 1
        self._queue.put((kind, item))
        return True

    def _taken(self, kind: str) -> None:
        with self._pending_lock:
            self._pending[kind] -= 1

    def close(self, timeout_s: float = 5.0) -> BaseException | None:
        """Ends the writer (what is queued is written first); the error it met, if any. Off the loop."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        return self.error

    # -- the writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        seen: set[tuple[str, int]] = set()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                kind, payload = item
                self._taken(kind)
                if kind == "decision":
                    self._line({"decision": payload})
                    continue
                frame, meta, mask = payload
                if (frame.view, frame.index) in seen:
                    continue
                seen.add((frame.view, frame.index))
                self._frame(frame, meta, _mask_png_input(mask))
            self._line(
                {"end": {"frames": self.frames_written, "bytes": self.written_bytes, "dropped": self.dropped}}
            )
        except BaseException as exc:  # a full disk: said, and the recording of frames ends
            self.error = exc
            log.error("frame recording failed: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                self._log.close()

    def _frame(self, frame: FluoroFrame, meta: dict[str, Any], mask: np.ndarray | None) -> None:
        if self.capped:
            return
        ok, buf = cv2.imencode(".png", grayscale(frame.pixels))
        if not ok:
            log.warning("frame %d: could not encode as PNG: not kept", frame.index)
            return
        data = buf.tobytes()
        mask_data = b""
        if mask is not None:
            ok, mbuf = cv2.imencode(".png", mask)
            mask_data = mbuf.tobytes() if ok else b""
        if self.written_bytes + len(data) + len(mask_data) > self.cap_bytes:
            self.capped = True
            self._line(
                {
                    "cap_reached": {
                        "bytes": self.written_bytes,
                        "cap_bytes": self.cap_bytes,
                        "frame": frame.index,
                    }
                }
            )
            log.warning(
                "frame recording: cap of %d bytes reached; the guard's decisions go on", self.cap_bytes
            )
            return
        stem = f"{frame.index:08d}" + ("" if frame.view == "lateral" else f"-{frame.view}")
        name = f"{stem}.png"
        (self.directory / name).write_bytes(data)
        self.written_bytes += len(data)
        line = {**meta, "file": name}
        if mask_data:
            line["mask"] = f"{stem}-mask.png"
            (self.directory / line["mask"]).write_bytes(mask_data)
            self.written_bytes += len(mask_data)
        self.frames_written += 1
        self._line({"frame": line})

    def _line(self, obj: dict[str, Any]) -> None:
        self._log.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._log.flush()


def _meta(
    frame: FluoroFrame, picture: FluoroPicture, label: str, stop: str | None, device_t_us: int | None
) -> dict[str, Any]:
    region = picture.region
    return {
        "index": frame.index,
        "t_us": frame.t_us,
        "clock": "device" if frame.source.startswith("sim://") else "host",
        "device_t_us": device_t_us,
        "label": label,
        "region": [list(p) for p in region.polygon] if region is not None else None,
        "posterior": region.posterior if region is not None else "right",
        "posterior_fraction": picture.posterior_fraction,
        "front_x": picture.front_x,
        "stop": stop,
        "view": frame.view,
    }


MASK_CEMENT, MASK_EVIDENCE = 128, 255
"""The mask PNG's values: cement the guard segmented, and the part of it a rule counted."""


def _mask_png_input(picture: FluoroPicture) -> np.ndarray | None:
    """The picture's cement mask and evidence as one 8-bit image (None: no cement to keep)."""
    mask, evidence = picture.mask, picture.evidence
    shape = picture.pixels.shape
    if mask is None or mask.shape != shape or not mask.any():
        return None
    out = np.where(mask.astype(bool), np.uint8(MASK_CEMENT), np.uint8(0))
    if evidence is not None and evidence.shape == shape:
        out[evidence.astype(bool)] = MASK_EVIDENCE
    return out


class FrameLog:
    """A recording's frames/guard.jsonl read back: the kept frames by time (of each view) and the
    decisions."""

    def __init__(self, directory: Path, frames: list[KeptFrame], decisions: list[dict[str, Any]]) -> None:
        self.directory = directory
        placed = [f for f in frames if f.device_t_us is not None]
        self.frames = sorted(placed, key=lambda f: (f.device_t_us, f.index))
        self._times = [int(f.device_t_us or 0) for f in self.frames]
        self._by_view: dict[str, tuple[list[int], list[KeptFrame]]] = {}
        for f in self.frames:
            times, kept = self._by_view.setdefault(f.view, ([], []))
            times.append(int(f.device_t_us or 0))
            kept.append(f)
        self.unplaced = len(frames) - len(placed)
        """Frames judged before any telemetry (a real source's, with no controller time yet)."""
        self.decisions = decisions

    @property
    def views(self) -> list[str]:
        """The views with kept frames, lateral first."""
        return sorted(self._by_view, key=lambda v: (v != "lateral", v))

    @classmethod
    def open(cls, recording: Path) -> FrameLog | None:
        """None when the recording has no frames/ (made without --frames)."""
        directory = recording / FRAMES_DIR
        path = directory / LOG_NAME
        if not path.exists():
            return None
        try:
            text = read_regular(path, MAX_LOG_BYTES).decode("utf-8", errors="replace")
        except (OSError, ValueError) as exc:
            raise FrameLogError(f"{path}: {exc}") from exc
        frames, decisions = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if "frame" in obj:
                    frames.append(_kept(obj["frame"]))
                elif "decision" in obj:
                    decisions.append(dict(obj["decision"]))
            except (ValueError, TypeError, KeyError) as exc:  # a torn last line: the rest is kept
                log.warning("%s line %d: %s: skipped", path, n, exc)
        return cls(directory, frames, decisions)

    def at(self, t_us: int, view: str | None = None) -> KeptFrame | None:
        """The newest kept frame (of `view`, else of any) at or before `t_us` (controller time, as
        the telemetry's)."""
        if view is None:
            times, frames = self._times, self.frames
        else:
            times, frames = self._by_view.get(view, ([], []))
        i = bisect.bisect_right(times, t_us)
        return frames[i - 1] if i else None

    def stops(self) -> list[KeptFrame]:
        """The frames on which the guard asked for a stop."""
        return [f for f in self.frames if f.stop is not None]

    def picture(self, kept: KeptFrame) -> FluoroPicture:
        """The kept frame with its overlay's geometry, and its cement mask and the rule's evidence
        where the recording kept them. A mask that cannot be read or does not fit is left out
        (logged): the frame is still shown."""
        px = self._png(kept.file)
        region = None
        if kept.region is not None:
            region = BodyRegion(kept.region, "left" if kept.posterior == "left" else "right")
        mask = evidence = None
        if kept.mask_file is not None:
            try:
                m = self._png(kept.mask_file)
            except (OSError, ValueError, FrameLogError) as exc:
                log.warning("frame %d: its cement mask is not shown: %s", kept.index, exc)
            else:
                if m.shape == px.shape:
                    mask = m >= MASK_CEMENT // 2
                    evidence = m >= (MASK_CEMENT + MASK_EVIDENCE) // 2
                    if not evidence.any():
                        evidence = None
                else:
                    log.warning(
                        "frame %d: its mask %s does not fit the frame %s", kept.index, m.shape, px.shape
                    )
        return FluoroPicture(px, 8, region, kept.posterior_fraction, kept.front_x, mask, evidence)

    def _png(self, name: str) -> np.ndarray:
        data = read_regular(self.directory / name, MAX_IMAGE_BYTES)
        px = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if px is None:
            raise FrameLogError(f"{self.directory / name}: not a PNG image")
        image: np.ndarray = px
        return image


_FILE = re.compile(r"\d{8}(-ap)?\.png")
_MASK_FILE = re.compile(r"\d{8}(-ap)?-mask\.png")


def _kept(d: dict[str, Any]) -> KeptFrame:
    region = d.get("region")
    own = int(d["t_us"])
    placed = d.get("device_t_us")
    device_t_us = own if d.get("clock", "device") == "device" else (None if placed is None else int(placed))
    if not _FILE.fullmatch(str(d["file"])):
        raise ValueError(f"file {d['file']!r}; allowed NNNNNNNN.png or NNNNNNNN-ap.png in frames/")
    mask = d.get("mask")
    if mask is not None and not _MASK_FILE.fullmatch(str(mask)):
        raise ValueError(f"mask {mask!r}; allowed NNNNNNNN-mask.png or NNNNNNNN-ap-mask.png in frames/")
    view = str(d.get("view", "lateral"))
    if view not in VIEWS:
        raise ValueError(f"view {view!r}; allowed {' or '.join(VIEWS)}")
    return KeptFrame(
        index=int(d["index"]),
        t_us=own,
        file=str(d["file"]),
        label=str(d.get("label", "")),
        region=tuple((float(x), float(y)) for x, y in region) if region else None,
        posterior=str(d.get("posterior", "right")),
        posterior_fraction=None if d.get("posterior_fraction") is None else float(d["posterior_fraction"]),
        front_x=None if d.get("front_x") is None else float(d["front_x"]),
        stop=d.get("stop"),
        device_t_us=device_t_us,
        view=view,
        view_label=None if d.get("view_label") is None else str(d["view_label"]),
        mask_file=None if mask is None else str(mask),
    )
