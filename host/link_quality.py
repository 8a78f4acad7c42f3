"""Link quality in one line, and a warning when it is poor: for the run display, the dashboard's
connection panel, the run summary and the recording.

At 1e-2 damaged bytes per byte `run` used to print "plan completed" with most of the telemetry
missing, the damage visible only in the recording's counter file. The counters are the link's own
(`host.link.LinkCounters`); this module only turns them into fractions an operator can judge:
frames damaged on the line (CRC, COBS, overlong, runts) per frame seen, frames missing from the
device's sequence numbers, samples missing from the telemetry. Counted since `since` (the start of
a run), so the figures are about this run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WARN_FRACTION = 0.01
"""Above 1 % damaged frames, lost frames or lost samples the link is called poor: the telemetry and
the recording are visibly incomplete, and commands need retries (the controller still owns safety)."""

_FRAMING = ("crc_errors", "cobs_errors", "overlong", "runts")


def _values(counters: Any) -> Mapping[str, int]:
    if counters is None:
        return {}
    if dataclasses.is_dataclass(counters) and not isinstance(counters, type):
        return dataclasses.asdict(counters)
    return dict(counters)


@dataclass(frozen=True, slots=True)
class LinkQuality:
    frames_rx: int
    bad_frames: int
    """Frames damaged on the line: CRC, COBS, overlong, runts."""
    lost_frames: int
    """Gaps in the device's sequence numbers."""
    lost_samples: int
    samples_rx: int | None = None
    """Telemetry samples received, when the caller counts them (for the lost-sample fraction)."""

    @classmethod
    def of(cls, counters: Any, since: Any = None, samples_rx: int | None = None) -> LinkQuality:
        """From `LinkCounters` (or their dict), minus those at `since`."""
        now, base = _values(counters), _values(since)

        def delta(key: str) -> int:
            return max(0, int(now.get(key, 0)) - int(base.get(key, 0)))

        return cls(
            frames_rx=delta("frames_rx"),
            bad_frames=sum(delta(k) for k in _FRAMING),
            lost_frames=delta("lost_frames"),
            lost_samples=delta("lost_samples"),
            samples_rx=samples_rx,
        )

    @property
    def bad_fraction(self) -> float:
        return self.bad_frames / max(1, self.frames_rx + self.bad_frames)

    @property
    def lost_frame_fraction(self) -> float:
        return self.lost_frames / max(1, self.frames_rx + self.lost_frames)

    @property
    def lost_sample_fraction(self) -> float | None:
        if self.samples_rx is None:
            return None
        return self.lost_samples / max(1, self.samples_rx + self.lost_samples)

    @property
    def poor(self) -> bool:
        fractions = [self.bad_fraction, self.lost_frame_fraction, self.lost_sample_fraction or 0.0]
        return any(f > WARN_FRACTION for f in fractions)

    def line(self) -> str:
        """e.g. "12 damaged frames (0.4 %), 3 lost frames (0.1 %), 60 lost samples (0.2 %)"."""
        samples = f"{self.lost_samples} lost samples"
        fraction = self.lost_sample_fraction
        if fraction is not None:
            samples += f" ({100 * fraction:.1f} %)"
        return (
            f"{self.bad_frames} damaged frames ({100 * self.bad_fraction:.1f} %), "
            f"{self.lost_frames} lost frames ({100 * self.lost_frame_fraction:.1f} %), {samples}"
        )

    def short(self) -> str:
        """For narrow panels: "ok: 0.0 % damaged, 0.0 % lost" or "POOR: 3.2 % damaged, ..."."""
        lost = max(self.lost_frame_fraction, self.lost_sample_fraction or 0.0)
        verdict = "POOR" if self.poor else "ok"
        return f"{verdict}: {100 * self.bad_fraction:.1f} % damaged, {100 * lost:.1f} % lost"

    def warning(self) -> str | None:
        """A warning for the operator when the link is poor, else None."""
        if not self.poor:
            return None
        return (
            f"poor link: {self.line()} (above {100 * WARN_FRACTION:g} %): telemetry and recording are "
            "incomplete; check the cable, its screening and the baud rate"
        )
