"""The fluoroscopic guard: frames in, a state and at most a STOP out. Pure and deterministic.

    guard = Guard(GuardConfig(), region=None)          # None: outline found in the baseline
    step = guard.frame(frame, now_s, pump_state)        # every frame, in order
    step = guard.tick(now_s, pump_state)                # between frames: the frame-gap clock
    step = guard.rejected(reason, now_s, pump_state)    # a frame the source refused
    step = guard.lost(reason, now_s, pump_state)        # the source is gone
    if step.stop is not None: send STOP(source FLUORO_IMAGE, detail=step.stop)

The only action a step can carry is a stop (a `StopDetail`): the guard never starts, resumes or clears
anything. `now_s` is the caller's monotonic clock (injected in tests); `pump_state` is the controller's
last known state (None: not known yet: a rule still asks for a stop, blindness only shows).

States (`GuardStatus.label`): WATCHING; BLIND(reason), while it cannot see (also while it learns the
baseline); STOPPED(rule), once a rule asked for a stop, until the pump is armed again. A rule must hold
on `confirm_frames` consecutive frames. A stop is asked for at most once per pump state: a stop that
the controller latched changes the state, and if the operator clears, re-arms and starts while the
rule still holds (or the guard is still blind), the guard asks again.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from host.frames import FluoroFrame
from host.guard.blindness import coarse, correlation, exposure_fault, mean_abs_diff, motion_px
from host.guard.config import GuardConfig
from host.guard.region import BodyRegion, auto_outline, vein_exits
from host.guard.vision import (
    Baseline,
    Measures,
    log_image,
    measure,
    opaque_mask,
    remove_background,
    segment,
)
from protocol import State, StopDetail

__all__ = ["Guard", "GuardState", "GuardStatus", "GuardStep"]

log = logging.getLogger(__name__)

GuardState = Literal["WATCHING", "BLIND", "STOPPED"]

_RULE_NAMES = {
    StopDetail.POSTERIOR_QUARTER: "posterior_quarter",
    StopDetail.EXTRAVASATION: "extravasation",
    StopDetail.VENOUS_FILLING: "venous",
}
_STOPPABLE = frozenset({State.ARMED, State.INJECTING, State.PAUSED})


@dataclass(frozen=True, slots=True)
class GuardStatus:
    state: GuardState
    reason: str = ""
    """BLIND: what it cannot see through; STOPPED: the rule's name."""
    rule: StopDetail | None = None

    @property
    def label(self) -> str:
        """WATCHING, BLIND(frozen image), STOPPED(POSTERIOR_QUARTER): what every screen shows."""
        if self.state == "WATCHING":
            return "WATCHING"
        if self.state == "STOPPED" and self.rule is not None:
            return f"STOPPED({self.rule.name})"
        return f"{self.state}({self.reason})"


@dataclass(frozen=True, slots=True)
class GuardStep:
    """The guard's answer to one input."""

    status: GuardStatus
    stop: StopDetail | None = None
    """A stop to send now (source FLUORO_IMAGE, this detail), else None."""
    frame_index: int | None = None
    """The frame this step judged (None for ticks and source errors)."""
    t_us: int | None = None
    measures: Measures | None = None
    changed: bool = False
    """The status differs from the previous step's."""
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The cement mask of this frame (for drawing), when there was one."""


class Guard:
    """One guard for one frame stream. Not thread-safe: one caller feeds it in order."""

    def __init__(self, config: GuardConfig | None = None, region: BodyRegion | None = None) -> None:
        self.config = config or GuardConfig()
        self._operator_region = region
        self.region: BodyRegion | None = region
        self._learning: list[np.ndarray] = []
        self._learn_shape: tuple[int, int] | None = None
        self.baseline: Baseline | None = None
        self._body: np.ndarray | None = None
        self._grown: np.ndarray | None = None
        self._coarse0: np.ndarray | None = None
        self._opaque: np.ndarray | None = None
        """Pixels already far darker than bone before the injection (the steel cannula), grown by a
        millimetre: cement that fills the cannula's lumen is not cement leaving the body."""
        self._status = GuardStatus("BLIND", "learning the baseline (0 frames)")
        self._last_good_s: float | None = None
        self._started_s: float | None = None
        self._prev: np.ndarray | None = None
        self._same = 0
        self._bad = 0
        self._lost: str | None = None
        self._streak: dict[StopDetail, int] = dict.fromkeys(_RULE_NAMES, 0)
        self._pump: State | None = None
        self._asked = False
        """A stop was asked for in the current pump state."""
        self._tripped: StopDetail | None = None
        self._veins: deque[tuple[int, float]] = deque()
        """(t_us, venous length mm) of the frames within `vein_growth_s`, newest last: the VENOUS rule
        asks the length to grow."""
        self._exits: np.ndarray | None = None

    # -- inputs -------------------------------------------------------------------------------

    @property
    def status(self) -> GuardStatus:
        return self._status

    def set_region(self, region: BodyRegion) -> None:
        """The operator's outline (or an adjustment of it); takes effect on the next frame."""
        self._operator_region = region
        self.region = region
        self._body = None

    def relearn(self) -> None:
        """Forget the baseline: the next `baseline_frames` frames are taken as the new one (the
        operator moved the C-arm). BLIND meanwhile."""
        self._learning = []
        self._learn_shape = None
        self.baseline = None
        self._body = None
        self._veins.clear()
        if self._operator_region is None:
            self.region = None

    def tick(self, now_s: float, pump: State | None) -> GuardStep:
        """No frame: the gap clock runs, and a change of the pump's state may call for a stop."""
        self._pump_state(pump)
        if self._started_s is None:
            self._started_s = now_s
        since = self._last_good_s if self._last_good_s is not None else self._started_s
        if self._lost is None and now_s - since > self.config.max_frame_gap_s:
            return self._blind(f"no frame for {now_s - since:.1f} s", None, None)
        return self._step(self._status, None, None)

    def lost(self, reason: str, now_s: float, pump: State | None) -> GuardStep:
        """The frame source is gone: blind for good (until a new source is given to a new guard)."""
        self._pump_state(pump)
        self._lost = f"feed lost: {reason}"
        return self._blind(self._lost, None, None)

    def rejected(self, reason: str, now_s: float, pump: State | None) -> GuardStep:
        """A frame the source refused (wrong size, depth, rate, corrupt): counted; blind after
        `bad_frames` in a row."""
        self._pump_state(pump)
        return self._bad_frame(reason, None, None)

    def frame(self, frame: FluoroFrame, now_s: float, pump: State | None) -> GuardStep:
        self._pump_state(pump)
        if self._started_s is None:
            self._started_s = now_s
        if self._lost is not None:
            return self._blind(self._lost, frame.index, frame.t_us)
        cfg = self.config
        px = frame.pixels
        fault = exposure_fault(px, frame.max_value, cfg.dark_fraction)
        if fault is not None:
            self._last_good_s = now_s  # a frame came: the gap clock is satisfied, the image is not
            self._prev = None
            return self._blind(fault, frame.index, frame.t_us)
        if self._prev is not None and self._prev.shape == px.shape and self._prev.dtype == px.dtype:
            if mean_abs_diff(self._prev, px) < cfg.frozen_diff * frame.max_value:
                self._same += 1
            else:
                self._same = 0
        self._prev = px
        if self._same >= cfg.frozen_frames - 1:
            return self._blind("frozen image", frame.index, frame.t_us)
        if self.baseline is None:
            if self._pump == State.INJECTING:  # cement may be in the picture: never a baseline
                self._learning = []
                self._last_good_s = now_s
                return self._blind("no baseline before the injection", frame.index, frame.t_us, learning=True)
            return self._learn(frame, now_s)
        base = self.baseline
        if px.shape != base.shape or frame.bit_depth != base.bit_depth:
            h, w = px.shape
            why = (
                f"frame {w}x{h} {frame.bit_depth}-bit does not fit the baseline "
                f"{base.shape[1]}x{base.shape[0]} {base.bit_depth}-bit"
            )
            return self._bad_frame(why, frame.index, frame.t_us)
        self._bad = 0
        self._last_good_s = now_s
        return self._judge(frame)

    # -- learning -----------------------------------------------------------------------------

    def _learn(self, frame: FluoroFrame, now_s: float) -> GuardStep:
        cfg = self.config
        if self._learn_shape is not None and frame.shape != self._learn_shape:
            self._learning = []  # the stream changed size while learning: start again
        self._learn_shape = frame.shape
        self._learning.append(frame.pixels.copy())
        self._last_good_s = now_s
        self._bad = 0
        n = len(self._learning)
        if n < cfg.baseline_frames:
            why = f"learning the baseline ({n}/{cfg.baseline_frames} frames)"
            return self._blind(why, frame.index, frame.t_us, learning=True)
        smooth_px = cfg.smooth_mm / frame.pixel_mm
        self.baseline = Baseline.from_frames(self._learning, frame.bit_depth, smooth_px)
        self._learning = []
        if self.region is None:
            self.region = auto_outline(
                -self.baseline.log_mean, cfg.posterior, frame.pixel_mm, -self.baseline.sharp_log
            )
            if self.region is None:
                self.baseline = None
                return self._blind("no vertebral body found: set the region", frame.index, frame.t_us)
            log.info("guard: body outline found, x %.0f..%.0f", self.region.left, self.region.right)
        self._body = None
        self._opaque = None
        self._coarse0 = coarse(self.baseline.log_mean)
        return self._judge(frame)

    # -- judging ------------------------------------------------------------------------------

    def _masks(self, shape: tuple[int, int], pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
        if self._body is None or self._grown is None or self._body.shape != shape:
            assert self.region is not None
            body = self.region.mask(shape)
            r = max(1, round(self.config.outline_margin_mm / pixel_mm))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            self._body = body
            self._grown = cv2.dilate(body.astype(np.uint8), kernel).astype(bool)
            self._exits = None
        return self._body, self._grown

    def _exit_mask(self, shape: tuple[int, int], view: str, pixel_mm: float) -> np.ndarray:
        if self._exits is None or self._exits.shape != shape:
            assert self.region is not None
            near = (self.config.outline_margin_mm + self.config.vein_exit_mm) / pixel_mm
            self._exits = vein_exits(self.region, view, shape, near)
        return self._exits

    def _opaque_mask(self, body: np.ndarray, grown: np.ndarray, pixel_mm: float) -> np.ndarray:
        if self._opaque is None or self._opaque.shape != body.shape:
            assert self.baseline is not None
            base = self.baseline
            self._opaque = opaque_mask(-base.sharp_log, body, grown, pixel_mm, base.no_image)
        return self._opaque

    def _judge(self, frame: FluoroFrame) -> GuardStep:
        cfg = self.config
        base = self.baseline
        assert base is not None
        assert self.region is not None
        assert self._coarse0 is not None
        try:
            body, grown = self._masks(frame.shape, frame.pixel_mm)
        except ValueError as exc:
            return self._blind(f"outline lost: {exc}", frame.index, frame.t_us)
        smoothed = log_image(frame.pixels, base.smooth_px)
        if correlation(coarse(smoothed), self._coarse0) < cfg.outline_min_correlation:
            return self._blind("outline lost: the image no longer shows the body", frame.index, frame.t_us)
        moved_mm = motion_px(base.log_mean, smoothed, ~grown) * frame.pixel_mm
        if moved_mm > cfg.max_shift_mm:
            return self._blind(f"outline lost: the image moved {moved_mm:.1f} mm", frame.index, frame.t_us)
        background_px = cfg.background_mm / frame.pixel_mm
        d = remove_background(base.log_mean - smoothed, cfg.background_cut, background_px)
        z = d / base.sigma
        unjudged = self._opaque_mask(body, grown, frame.pixel_mm)
        mask = segment(z, cfg, frame.pixel_mm) & ~unjudged
        exits = self._exit_mask(frame.shape, frame.view, frame.pixel_mm)
        m = measure(z, mask, body, grown, self.region, cfg, frame.pixel_mm, unjudged, exits)
        hits = self._rules(m, frame.view, frame.t_us)
        rule = next((r for r in hits if self._streak[r] >= cfg.confirm_frames), None)
        stop = None
        if rule is not None and self._tripped is None:
            self._tripped = rule
        if self._tripped is not None:
            status = GuardStatus("STOPPED", _RULE_NAMES[self._tripped], self._tripped)
            live = rule if rule is not None else None
            if live is not None and self._may_stop() and not self._asked:
                stop = live
                self._asked = True
        else:
            status = GuardStatus("WATCHING")
        return self._step(status, stop, frame.index, frame.t_us, m, mask)

    def _rules(self, m: Measures, view: str, t_us: int) -> list[StopDetail]:
        """The rules that hold on this frame, most specific first; streaks updated."""
        cfg = self.config
        holds = {
            StopDetail.VENOUS_FILLING: "venous" in cfg.rules and self._vein_grows(t_us, m.vein_length_mm),
            StopDetail.EXTRAVASATION: "extravasation" in cfg.rules and m.outside_mm2 >= cfg.min_leak_area_mm2,
            StopDetail.POSTERIOR_QUARTER: (
                "posterior_quarter" in cfg.rules
                and view == "lateral"
                and m.front_fraction is not None
                and m.front_fraction >= cfg.posterior_fraction
            ),
        }
        for rule, ok in holds.items():
            self._streak[rule] = self._streak[rule] + 1 if ok else 0
        return [r for r, ok in holds.items() if ok]

    def _vein_grows(self, t_us: int, length_mm: float) -> bool:
        """A vein fills: the venous opacity is at least `vein_min_length_mm` long, and over the last
        `vein_growth_s` (the frames' own clock) it grew by `vein_growth_mm` and kept growing: the
        median lengths of the oldest, middle and newest thirds of the frames rise, the last by
        `vein_growth_mm` over the first and each by a third of it over the one before. Medians: a
        static opacity's measured length jitters by a millimetre with the quantum noise. Rising
        thirds: an opacity that appears at once (a sliver the bolus uncovers beside the cannula)
        steps up between two thirds and then stays; a filling vein keeps lengthening. One frame's
        length says nothing about a vein filling; its growth does."""
        cfg = self.config
        window_us = round(cfg.vein_growth_s * 1e6)
        self._veins.append((t_us, length_mm))
        while t_us - self._veins[0][0] > window_us:
            self._veins.popleft()
        n = len(self._veins)
        if n < 3 or length_mm < cfg.vein_min_length_mm:
            return False
        third = n // 3
        lengths = [mm for _t, mm in self._veins]
        first = float(np.median(lengths[:third]))
        middle = float(np.median(lengths[third : n - third]))
        last = float(np.median(lengths[n - third :]))
        step = cfg.vein_growth_mm / 3
        return last - first >= cfg.vein_growth_mm and middle - first >= step and last - middle >= step

    def _clear_streaks(self) -> None:
        for rule in self._streak:
            self._streak[rule] = 0

    # -- blindness and stops ------------------------------------------------------------------

    def _bad_frame(self, why: str, index: int | None, t_us: int | None) -> GuardStep:
        self._bad += 1
        log.warning("guard: bad frame: %s", why)
        if self._bad >= self.config.bad_frames:
            return self._blind(f"bad frames: {why}", index, t_us)
        return self._step(self._status, None, index, t_us)

    def _blind(
        self, reason: str, index: int | None, t_us: int | None, *, learning: bool = False
    ) -> GuardStep:
        """BLIND with `reason`; a stop if the policy says so. Learning the baseline is the expected
        blindness before an injection: it stops only a plunger that already moves (cement may be in
        the frames it would take as the baseline), whatever the policy but "never"."""
        self._clear_streaks()
        stop = None
        acts = self._blind_stops() and (not learning or self._pump == State.INJECTING)
        if acts and not self._asked:
            stop = StopDetail.IMAGE_LOST
            self._asked = True
        status = GuardStatus("BLIND", reason)
        if self._tripped is not None:  # a rule already stopped the pump: that stays on screen first
            status = GuardStatus("STOPPED", _RULE_NAMES[self._tripped], self._tripped)
        return self._step(status, stop, index, t_us)

    def _blind_stops(self) -> bool:
        policy = self.config.blind_stop
        if policy == "never":
            return False
        if self._pump is None:  # nothing known to move: blindness is shown, not acted on
            return False
        if policy == "injecting":
            return self._pump == State.INJECTING
        return self._pump in _STOPPABLE

    def _may_stop(self) -> bool:
        return self._pump is None or self._pump in _STOPPABLE

    def _pump_state(self, pump: State | None) -> None:
        if pump != self._pump:
            self._pump = pump
            self._asked = False
            if pump == State.ARMED:  # a new plan: the last trip is history, the guard judges afresh
                self._tripped = None

    def _step(
        self,
        status: GuardStatus,
        stop: StopDetail | None,
        index: int | None,
        t_us: int | None = None,
        measures: Measures | None = None,
        mask: np.ndarray | None = None,
    ) -> GuardStep:
        changed = status != self._status
        if changed:
            log.info("guard: %s -> %s", self._status.label, status.label)
        self._status = status
        if stop is not None:
            log.warning("guard: STOP %s (frame %s)", stop.name, index)
        return GuardStep(status, stop, index, t_us, measures, changed, mask)
