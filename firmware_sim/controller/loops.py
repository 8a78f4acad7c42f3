"""The control loops: the soft-limit pressure throttle, the online viscosity estimate and the
post-stop pressure relief. Plain scalar state, one update per tick (or per block)."""

from __future__ import annotations

import math

from firmware_sim.controller.detectors import TIMER_MASK, elapsed_us


class PressureThrottle:
    """Holds the syringe pressure below the soft limit by scaling the flow setpoint.

    A PI loop on the normalised error e = (p_set - p) / band, p_set = soft x (1 - margin) and
    band = soft x band_frac: the flow fraction is clamp(e + I, 0, 1). Below the band (e >= 1) the
    loop is inactive and its integral is reset, so it always starts as a proportional band that
    cuts the flow from 100 % at p_set - band to 0 at p_set. Inside the band the integral
    (dI/dt = e / ti) raises the flow until the pressure sits at p_set; above p_set e < 0 cuts the
    flow at once and the integral winds down. I is clamped to [0, 1] (anti-windup). In steady state
    the pressure is p_set < soft; the band leaves the step ramp room to slow the plunger before the
    limit, and the loop's gain (Q R / band) stays moderate for any line.
    """

    __slots__ = (
        "_inv_band",
        "_ki",
        "_p_set",
        "active",
        "band_frac",
        "band_low_pa",
        "fraction",
        "integral",
        "margin_frac",
    )

    def __init__(self, margin_frac: float, band_frac: float, ti_s: float, dt_s: float) -> None:
        self.margin_frac = margin_frac
        self.band_frac = band_frac
        self._ki = dt_s / ti_s
        self.integral = 0.0
        self.fraction = 1.0
        self.active = False
        self._p_set = 0.0
        self.band_low_pa = 0.0
        """Below this pressure (and with no integral left) the loop is inactive."""
        self._inv_band = 0.0

    def configure(self, soft_limit_pa: float) -> None:
        self._p_set = soft_limit_pa * (1.0 - self.margin_frac)
        band = soft_limit_pa * self.band_frac
        self.band_low_pa = self._p_set - band
        self._inv_band = 1.0 / band

    @property
    def setpoint_pa(self) -> float:
        return self._p_set

    def reset(self) -> None:
        self.integral = 0.0
        self.fraction = 1.0
        self.active = False

    def update(self, pressure_pa: float) -> float:
        """One tick: the fraction of the flow setpoint to command."""
        if pressure_pa <= self.band_low_pa and self.integral == 0.0:
            self.fraction = 1.0
            self.active = False
            return 1.0
        e = (self._p_set - pressure_pa) * self._inv_band
        if e >= 1.0:
            self.integral = 0.0
            self.fraction = 1.0
            self.active = False
            return 1.0
        i = self.integral + self._ki * e
        i = 0.0 if i < 0.0 else (1.0 if i > 1.0 else i)
        self.integral = i
        f = e + i
        f = 0.0 if f < 0.0 else (1.0 if f > 1.0 else f)
        self.fraction = f
        self.active = f < 0.99
        return f


class ViscosityEstimator:
    """Online apparent viscosity from Hagen-Poiseuille over the plan's cannula:
    mu = dP x pi R^4 / (8 L Q), with dP the syringe pressure (the intravertebral back-pressure,
    a few kPa, is neglected) and Q the plunger flow from the encoder.

    Q equals the cannula flow only when the line compliance is neither filling nor emptying, so an
    estimate is taken only at steady state: flow above `min_flow_m3_s`, the commanded flow steady
    over the window, pressure above `min_pa` and |dp/dt| < `steady_rel_per_s` x p. Valid estimates
    are low-pass filtered (per-block IIR `alpha`). `last` keeps the last filtered value, NaN until
    the first valid estimate of a plan; `valid` says whether this block produced one.
    """

    __slots__ = ("_k", "alpha", "last", "min_flow_m3_s", "min_pa", "steady_rel_per_s", "valid")

    def __init__(self, min_flow_m3_s: float, min_pa: float, steady_rel_per_s: float, alpha: float) -> None:
        self.min_flow_m3_s = min_flow_m3_s
        self.min_pa = min_pa
        self.steady_rel_per_s = steady_rel_per_s
        self.alpha = alpha
        self._k = 0.0
        self.valid = False
        self.last = math.nan

    def configure(self, cannula_length_m: float, cannula_id_m: float) -> None:
        """New plan: new geometry, estimate forgotten."""
        r = cannula_id_m / 2.0
        self._k = math.pi * r**4 / (8.0 * cannula_length_m)
        self.valid = False
        self.last = math.nan

    def update(self, pressure_pa: float, slope_pa_s: float, flow_m3_s: float, flow_steady: bool) -> bool:
        if (
            flow_steady
            and self._k > 0.0
            and flow_m3_s >= self.min_flow_m3_s
            and pressure_pa >= self.min_pa
            and abs(slope_pa_s) <= self.steady_rel_per_s * pressure_pa
        ):
            mu = pressure_pa * self._k / flow_m3_s
            last = self.last
            self.last = mu if last != last else last + self.alpha * (mu - last)  # NaN: first estimate
            self.valid = True
        else:
            self.valid = False
        return self.valid


class Relief:
    """Post-stop pressure relief: after a transition out of INJECTING on a plan with RELIEF, back
    the plunger off at `speed_hz` until the filtered pressure is below relief_pa, or it has backed
    off `max_counts` (`blind_counts` while the sensor is faulty: the pressure is then unknown), or
    `timeout_us` has passed, or it nears home, or the motor stalls. It then brakes; once the
    plunger is still, the controller reports RELIEF_DONE with the back-off distance."""

    __slots__ = (
        "_max",
        "_peak",
        "_start_us",
        "active",
        "at_limit",
        "blind_counts",
        "cut_short",
        "ending",
        "max_counts",
        "speed_hz",
        "timeout_us",
    )

    def __init__(self, speed_hz: float, max_counts: float, blind_counts: float, timeout_us: int) -> None:
        self.speed_hz = speed_hz
        self.max_counts = max_counts
        self.blind_counts = blind_counts
        self.timeout_us = timeout_us
        self.active = False
        self.ending = False
        self.at_limit = False
        """It ended at a travel bound (its back-off bound or home), not on the pressure."""
        self.cut_short = False
        """It ended on its time bound or on a stall, sensor healthy: not on the pressure either."""
        self._peak = 0
        self._start_us = 0
        self._max = max_counts

    def start(self, encoder_counts: int, now_us: int, max_counts: float | None = None) -> None:
        """`max_counts` overrides the back-off bound for this relief (a stopped movement may back
        off as far as it pushed, SPEC §8.6)."""
        self.active = True
        self.ending = False
        self.at_limit = False
        self.cut_short = False
        self._max = self.max_counts if max_counts is None else max_counts
        self._peak = encoder_counts
        self._start_us = now_us & TIMER_MASK

    def backoff_counts(self, encoder_counts: int) -> int:
        """How far the plunger has come back from the furthest point it reached since the stop."""
        return self._peak - encoder_counts

    def update(
        self,
        encoder_counts: int,
        now_us: int,
        pressure_pa: float,
        relief_pa: float,
        sensor_ok: bool,
        must_halt: bool,
        at_home: bool = False,
    ) -> float:
        """One tick while active: the step rate to aim for (negative backs off, 0 brakes).
        `must_halt` when the stall detector says stop moving back, `at_home` when the travel
        guard does (a travel bound, as the back-off bound: `at_limit`)."""
        if encoder_counts > self._peak:
            self._peak = encoder_counts  # still braking forward after the stop
        if not self.ending:
            limit = self._max if sensor_ok else self.blind_counts
            if sensor_ok and pressure_pa < relief_pa:
                self.ending = True
            elif must_halt:
                self.ending = True
                self.cut_short = sensor_ok
            elif at_home or self._peak - encoder_counts >= limit:
                self.ending = True
                self.at_limit = sensor_ok
            elif elapsed_us(now_us, self._start_us) >= self.timeout_us:
                self.ending = True
                self.cut_short = sensor_ok
        return 0.0 if self.ending else -self.speed_hz

    def finish(self) -> None:
        self.active = False
        self.ending = False
