"""The fluoroscopic guard in a HIL run: the simulator publishes frames (`sim --frames-out`), the
runner's host side runs the guard on them through `sim://`, exactly as `cementguard run --frames`
does, and the simulator's frame truth (`--frames-truth`) says when the cement really crossed the
posterior-quarter line or first left the body, which is the onset the guard's latency counts from.

A lost video feed is injected on the host side (`FeedCut`): the source reports itself lost, as a
frame grabber unplugged mid-run does.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from host.file_limits import read_regular
from host.frames import FluoroFrame, FrameSource, FrameSourceLost

if TYPE_CHECKING:
    from hil.scenario import GuardScenario

__all__ = ["MAX_TRUTH_BYTES", "FeedCut", "FramePaths", "simulator_args", "truth_onsets"]

log = logging.getLogger(__name__)

MAX_TRUTH_BYTES = 64 * 1024 * 1024
"""The truth file of one run: ~600 bytes a frame, so 100 000 frames; more is not a HIL run."""


class FramePaths:
    """Where one run's frame socket and truth file live. The socket goes in a short temporary
    directory: a Unix socket path is limited to ~108 bytes, and report directories can be deeper."""

    def __init__(self, out_dir: Path) -> None:
        self._dir = tempfile.mkdtemp(prefix="cg-frames-")
        self.socket = os.path.join(self._dir, "frames.sock")
        self.truth = out_dir / "frames-truth.jsonl"

    @property
    def url(self) -> str:
        return f"sim://{self.socket}"

    def cleanup(self) -> None:
        for name in os.listdir(self._dir):
            os.unlink(os.path.join(self._dir, name))
        os.rmdir(self._dir)


def simulator_args(guard: GuardScenario, paths: FramePaths) -> list[str]:
    """The simulator's frame options for a scenario's `[guard]`."""
    size = f"{guard.size_px}x{guard.size_px}"
    return [
        "--frames-out", paths.socket,
        "--frames-fps", f"{guard.fps:g}",
        "--frames-view", guard.views,
        "--frames-dose", f"{guard.dose:g}",
        "--frames-size", size,
        "--frames-truth", os.fspath(paths.truth),
    ]  # fmt: skip


class FeedCut:
    """A frame source whose feed the harness can cut: after `cut()`, the next read raises
    FrameSourceLost, as an unplugged grabber does."""

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self._cut: str | None = None

    def cut(self, reason: str = "video feed cut by the scenario") -> None:
        self._cut = reason

    def read(self, timeout_s: float) -> FluoroFrame | None:
        if self._cut is not None:
            raise FrameSourceLost("hil feed", self._cut)
        return self._source.read(timeout_s)

    def close(self) -> None:
        self._source.close()


def truth_onsets(path: Path) -> list[tuple[float, str]]:
    """(device s, what) of the first frame whose truth shows the front past the posterior-quarter
    line, and of the first cement in each leak path: the onsets the guard's stops are judged from."""
    if not path.exists():
        return []
    crossing: float | None = None
    leaks: dict[str, float] = {}
    for line in read_regular(path, MAX_TRUTH_BYTES).decode().splitlines():
        if not line.strip():
            continue
        truth = json.loads(line)
        t_q = truth.get("posterior_quarter_t_us")
        if t_q is not None and crossing is None:
            crossing = t_q / 1e6
        for name, t_us in (truth.get("leak_onset_t_us") or {}).items():
            leaks.setdefault(name, t_us / 1e6)
    out = [] if crossing is None else [(round(crossing, 4), "truth_posterior_quarter")]
    out += [(round(t, 4), f"truth_leak_{name}") for name, t in leaks.items()]
    return sorted(out)
