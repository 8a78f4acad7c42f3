"""The guard's parameters, each with its default and the reason for it (docs/fluoroscopy.md, "Guard").

One frozen record, checked once on construction: every number is finite and in its range, and a bad
one is refused with a message naming the parameter, the value and the allowed range (the same
`FiniteFloat`/`BoundedInt` checks the CLI options use, host/cli_types.py). The CLI's `--guard-*`
options are generated from `RANGES`, so a range is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from host.cli_types import BoundedInt, FiniteFloat, bounded_int, finite_float

__all__ = ["BLIND_POLICIES", "RANGES", "BlindPolicy", "GuardConfig"]

BlindPolicy = Literal["injecting", "always", "never"]
BLIND_POLICIES: tuple[BlindPolicy, ...] = ("injecting", "always", "never")

RANGES: dict[str, FiniteFloat | BoundedInt] = {
    "posterior_fraction": finite_float("posterior_fraction", 0.5, 0.95),
    "baseline_frames": bounded_int("baseline_frames", 2, 100, "frames"),
    "smooth_mm": finite_float("smooth_mm", 0.0, 5.0, "mm"),
    "z_high": finite_float("z_high", 2.0, 50.0, "sigma"),
    "z_low": finite_float("z_low", 1.0, 50.0, "sigma"),
    "background_mm": finite_float("background_mm", 2.0, 50.0, "mm"),
    "background_cut": finite_float("background_cut", 0.005, 1.0, "log units"),
    "front_level": finite_float("front_level", 0.05, 0.9),
    "leak_level": finite_float("leak_level", 0.01, 0.9),
    "min_area_mm2": finite_float("min_area_mm2", 0.1, 500.0, "mm2"),
    "confirm_frames": bounded_int("confirm_frames", 1, 10, "frames"),
    "outline_margin_mm": finite_float("outline_margin_mm", 0.0, 10.0, "mm"),
    "min_leak_area_mm2": finite_float("min_leak_area_mm2", 0.1, 500.0, "mm2"),
    "vein_min_length_mm": finite_float("vein_min_length_mm", 1.0, 100.0, "mm"),
    "vein_growth_mm": finite_float("vein_growth_mm", 0.2, 50.0, "mm"),
    "vein_growth_s": finite_float("vein_growth_s", 0.2, 30.0, "s"),
    "vein_exit_mm": finite_float("vein_exit_mm", 0.5, 20.0, "mm"),
    "vein_elongation": finite_float("vein_elongation", 1.5, 50.0),
    "max_frame_gap_s": finite_float("max_frame_gap_s", 0.1, 60.0, "s"),
    "frozen_frames": bounded_int("frozen_frames", 2, 100, "frames"),
    "frozen_diff": finite_float("frozen_diff", 0.0, 0.05, "of full scale"),
    "dark_fraction": finite_float("dark_fraction", 0.5, 1.0),
    "outline_min_correlation": finite_float("outline_min_correlation", -1.0, 1.0),
    "max_shift_mm": finite_float("max_shift_mm", 0.1, 20.0, "mm"),
    "bad_frames": bounded_int("bad_frames", 1, 100, "frames"),
}


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Every rule and every blindness test is a parameter. Defaults are the operating point chosen in
    docs/fluoroscopy.md ("Guard: operating point")."""

    posterior_fraction: float = 0.75
    """(a) POSTERIOR_QUARTER: the line at this fraction of the AP depth from the anterior wall. 0.75 is
    the clinical rule (stop when the cement approaches the posterior quarter of the body)."""
    baseline_frames: int = 8
    """Pre-injection frames averaged into the baseline: the baseline's own noise falls as 1/sqrt(N),
    so with 8 frames it adds 1/8 of a frame's noise variance to every difference."""
    smooth_mm: float = 1.0
    """Gaussian sigma of the spatial filter on the difference image: quantum noise is white, the
    cement is millimetres wide, so a ~1 mm filter cuts the noise ~3x at 0.3 mm pixels and keeps the
    front within a pixel or two."""
    z_high: float = 6.0
    """Hysteresis, strong threshold: a cement region must contain a pixel this many noise sigmas
    darker than the baseline (after filtering). 6 sigma: about one false pixel per 10^9 per frame."""
    z_low: float = 3.0
    """Hysteresis, weak threshold: the region grows through pixels this many sigmas darker."""
    background_mm: float = 8.0
    """The smooth part of the difference image is removed (Gaussian sigma, mm): cement lowers the
    scatter over tens of millimetres around it, and at a usual dose that faint, wide darkening is many
    noise sigmas strong; it is not cement. Compact cement is excluded from the estimate (below)."""
    background_cut: float = 0.05
    """Pixels darker than the baseline by more than this (natural-log units) are cement, not
    background, when the smooth part is estimated: 0.05 is ~0.2 mm of barium-loaded PMMA (mu ~0.23/mm),
    while scatter changes stay below ~0.02."""
    front_level: float = 0.2
    """The front is the posterior-most body pixel at least this fraction of the bolus's plateau
    contrast (its 90th percentile). The cement thins towards its front, so the projected edge is
    fainter than the bolus: calibrated on the simulator's renderer against its ground truth (the
    3-D front at half fill), where 0.2 tracks the true front within 0.01 of the AP depth and 0.5
    lagged it by 0.04-0.05 (docs/fluoroscopy.md, "Guard: calibration")."""
    min_area_mm2: float = 2.0
    """Regions smaller than this are noise, not cement (a 1.6 mm disc)."""
    confirm_frames: int = 2
    """A rule must hold on this many consecutive frames before the guard stops (temporal filter):
    costs one frame of latency, removes single-frame noise and flicker."""
    outline_margin_mm: float = 1.5
    """(b) EXTRAVASATION: cement counts as outside only beyond the outline grown by this margin (the
    outline's own error and the blur of the cortex)."""
    leak_level: float = 0.1
    """(b) EXTRAVASATION: cement outside counts only where it is at least this fraction of the
    opacity's plateau contrast. Cement that fills up to the cortex blurs past it: 1.5 mm out, a step
    blurred by ~1 mm keeps ~8 % of its height, which at a high dose is still many noise sigmas. A
    leak is an opacity of its own (a vein 3 mm thick is ~30 % of a 15 mm bolus)."""
    min_leak_area_mm2: float = 3.0
    """(b) EXTRAVASATION: the least cement area outside the margin that is a leak."""
    vein_min_length_mm: float = 3.0
    """(c) VENOUS: the least length of a venous opacity outside the outline (one that leaves the body
    at a vein's exit, or is elongated). Every vein leaves the body: cement inside the outline is never
    venous, so the slivers the cannula's shadow cuts from the bolus (6.0-6.6 mm on the renderer, which
    stopped nominal runs when any thin part inside counted) are not judged by this rule."""
    vein_growth_mm: float = 1.0
    """(c) VENOUS: a vein fills: its opacity must have grown by at least this much within the last
    `vein_growth_s`. A static opacity at the body's edge (a blurred bolus, a calcified vessel, a
    clip) never stops as a vein."""
    vein_growth_s: float = 3.0
    """(c) VENOUS: the window over which the growth is measured, on the frames' own clock (a time,
    not a frame count: a vein fills at mm/s whatever the pulse rate). On the renderer a segmental vein
    filling with runny cement at 3 mL/min lengthens by ~0.5 mm/s in the AP view (docs/fluoroscopy.md,
    "Guard: the venous rule"), so 3 s sees 1.5 mm."""
    vein_exit_mm: float = 4.0
    """(c) VENOUS: how far outside the outline the veins' exits reach (region.vein_exits); cement
    there is judged as venous, not as extravasation."""
    vein_elongation: float = 3.0
    """(c) VENOUS: outside the exits, an opacity at least this many times longer than wide is a vessel
    (a pool from a cortical breach is round)."""
    max_frame_gap_s: float = 2.0
    """Blind when no frame came for this long. Pulsed fluoroscopy runs at 1-30 frames/s: keep it at
    two frame periods or more of the slowest rate in use."""
    frozen_frames: int = 3
    """Blind when this many consecutive frames are (near) identical: a frozen grabber or a repeated
    last-image-hold. Real frames always differ by their quantum noise."""
    frozen_diff: float = 0.0005
    """Mean absolute difference of consecutive frames, as a fraction of full scale, below which two
    frames count as identical (quantum noise is far above it at any dose)."""
    dark_fraction: float = 0.9
    """Blind when this fraction of the pixels is black (<= 1 % of full scale: beam off, no signal) or
    saturated (>= 99 %: no patient, overexposed)."""
    outline_min_correlation: float = 0.5
    """Blind (outline lost) when the frame's coarse image correlates less than this with the baseline
    around the body (the C-arm or the patient moved; the outline no longer lies on the body)."""
    max_shift_mm: float = 1.0
    """Blind (outline lost) when the image moved more than this against the baseline: the baseline
    subtraction would paint the moved edges as cement (a false leak) and the outline is off the body.
    1 mm is a third of the narrowest vein the guard looks for."""
    bad_frames: int = 3
    """Blind after this many consecutive frames that were rejected or did not fit (wrong size/depth)."""
    blind_stop: BlindPolicy = "injecting"
    """When blindness stops the pump: "injecting" (default: a blind guard stops a moving plunger, as a
    dead pressure sensor does), "always" (also ARMED and PAUSED), "never" (only shows it)."""
    posterior: Literal["left", "right"] = "right"
    """Lateral view: the side of the image where the posterior wall (the spinal canal) is. The auto
    outline cannot tell anterior from posterior; the operator says it (default: patient facing left)."""
    rules: frozenset[str] = frozenset({"posterior_quarter", "extravasation", "venous"})
    """The rules in force."""

    def __post_init__(self) -> None:
        for f in fields(self):
            check = RANGES.get(f.name)
            if check is not None:
                check.check(getattr(self, f.name))
        if self.z_low > self.z_high:
            raise ValueError(
                f"z_low: {self.z_low:g} is above z_high {self.z_high:g}; allowed z_low <= z_high"
            )
        if self.blind_stop not in BLIND_POLICIES:
            raise ValueError(f"blind_stop: {self.blind_stop!r}; allowed {', '.join(BLIND_POLICIES)}")
        if self.posterior not in ("left", "right"):
            raise ValueError(f"posterior: {self.posterior!r}; allowed left, right")
        unknown = set(self.rules) - {"posterior_quarter", "extravasation", "venous"}
        if unknown:
            raise ValueError(
                f"rules: {sorted(unknown)[0]!r} is not a rule; "
                "allowed posterior_quarter, extravasation, venous"
            )
