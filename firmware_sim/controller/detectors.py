"""The hazard detectors: one small class per row of the hazard table (docs/design.md).

Each detector owns its parameters and state, is fed plain scalars by the controller and answers
with a bool (or a small int), so it can be unit-tested alone and ported as a C struct plus one
function. Per-sample detectors run at the 1 kHz tick (PRESSURE_RISE's slope test among them, on the
raw ADC counts); the other slope-based ones run once per block of `ControllerConfig.block_samples`
samples on block means (see `BlockHistory`). Parameters and their
defaults are documented in `ControllerConfig` and tabulated in docs/controller.md.
"""

from __future__ import annotations

import math

from firmware_sim.controller.config import RISE_RING, ControllerConfig
from firmware_sim.hal import Hardware

TIMER_MASK = 0xFFFF_FFFF
"""Deadlines are kept on the low 32 bits of the microsecond clock, as a 32-bit hardware timer holds
them; it wraps every 71.6 min, so every check takes a wrap-safe difference (`elapsed_us`)."""


def elapsed_us(now_us: int, then_us: int) -> int:
    """Microseconds from `then_us` to `now_us` on a wrapping 32-bit timer: correct across a wrap for
    any span below 2^32 us (71.6 min). Both arguments may be full-width times; only the low 32 bits
    count, as on the microcontroller (a C port: `(uint32_t)(now - then)`)."""
    return (now_us - then_us) & TIMER_MASK


# SensorMonitor.cause bits, also the detail of the SENSOR_SUSPECT alarm.
SENSOR_RANGE = 0x1
SENSOR_STUCK = 0x2
SENSOR_NOISE = 0x4

# DeliveryMonitor.reached() results.
DELIVERY_NONE = 0
DELIVERY_INCREMENT = 1
DELIVERY_VOLUME = 2

# WorkingTimeMonitor.update() results.
AGE_OK = 0
AGE_WARNING = 1
AGE_EXPIRED = 2


class BlockHistory:
    """Fixed ring of per-block values: mean pressure, encoder position and commanded step rate at
    the block's end. Windows are read as "now" minus "k blocks ago"."""

    __slots__ = ("count", "encoder", "mask", "pos", "pressure", "rate")

    def __init__(self, size: int) -> None:
        if size & (size - 1):
            raise ValueError("BlockHistory size must be a power of two")
        self.mask = size - 1
        self.pressure = [0.0] * size
        self.encoder = [0] * size
        self.rate = [0.0] * size
        self.pos = 0
        self.count = 0
        """Blocks pushed so far, saturating at the ring size (a window needs count > k)."""

    def push(self, pressure_pa: float, encoder_counts: int, rate_hz: float) -> None:
        pos = (self.pos + 1) & self.mask
        self.pos = pos
        self.pressure[pos] = pressure_pa
        self.encoder[pos] = encoder_counts
        self.rate[pos] = rate_hz
        if self.count <= self.mask:
            self.count += 1

    def ago(self, k: int) -> int:
        """Ring index of the block pushed k blocks before the newest."""
        return (self.pos - k) & self.mask

    def full(self, k: int) -> bool:
        """True when a window of k blocks (k + 1 entries) is available."""
        return self.count > k


class OverpressureDetector:
    """OVERPRESSURE: filtered pressure at or above the hard limit for `samples` samples in a row.

    `run` is public so that the controller's tick can skip `update` when it would change nothing (a
    pressure below the limit with no run under way), the common case."""

    __slots__ = ("run", "samples")

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.run = 0

    def reset(self) -> None:
        self.run = 0

    def update(self, pressure_pa: float, hard_limit_pa: float) -> bool:
        if pressure_pa >= hard_limit_pa:
            self.run += 1
            return self.run >= self.samples
        self.run = 0
        return False


MASK64 = (1 << 64) - 1
SIGN64 = 1 << 63
"""The slope test's sums are kept modulo 2^64, as a C port keeps them in uint64: a window's
difference of two such sums is exact as long as its true value is below 2^63 (see `SlopeGlr`)."""

ABS_D2_PER_SIGMA = math.sqrt(12.0 / math.pi)
"""E|x[k] - 2 x[k-1] + x[k-2]| / sigma for white noise (the second difference has variance 6 sigma^2,
and E|N(0, s^2)| = s sqrt(2/pi)). A ramp of any slope cancels in it exactly."""


def glr_threshold(false_alarms_per_h: float, sample_rate_hz: float, windows: int) -> float:
    """The standardized threshold c of a window-limited slope test with `windows` windows, tested
    every sample, for a false-alarm budget of `false_alarms_per_h` per hour of armed injection.

    Boole's inequality over samples and windows: with every window's z ~ N(0, 1) under the least
    favourable null (a ramp at exactly the nominal slope), P(alarm within T) <= T f_s K Q(c), so
    c = -Phi^-1(lambda / (f_s K)), lambda the budget per second, keeps the false-alarm rate within the
    budget whatever the correlation between windows and samples (docs/controller.md, "Thresholds from
    a false-alarm budget", checks it numerically)."""
    if not false_alarms_per_h > 0.0 or not math.isfinite(false_alarms_per_h):
        raise ValueError(f"false-alarm budget {false_alarms_per_h!r} per hour must be finite and > 0")
    per_test = false_alarms_per_h / 3600.0 / (sample_rate_hz * windows)
    if not per_test < 0.5:
        raise ValueError(f"false-alarm budget {false_alarms_per_h!r} per hour is too large to test")
    return upper_tail_quantile(per_test)


def upper_tail_quantile(p: float) -> float:
    """The c with Q(c) = P(N(0, 1) > c) = p, for 0 < p < 0.5, from `math.erfc` alone.

    Newton's method on log Q (convex and smooth on c >= 0), started from the Mills-ratio asymptote:
    erfc is in every C library (C99 `erfc`), so a port of the core derives the same threshold without
    a statistics package (the architecture test keeps the core to the C library's maths); it agrees
    with `statistics.NormalDist` to 1e-13 relative (tests/controller/test_detectors.py)."""
    if not 0.0 < p < 0.5:
        raise ValueError(f"tail probability {p!r} must be in (0, 0.5)")
    c = math.sqrt(max(-2.0 * math.log(p * math.sqrt(2.0 * math.pi)), 0.0))
    for _ in range(60):
        q = 0.5 * math.erfc(c / math.sqrt(2.0))
        pdf = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
        step = (math.log(q) - math.log(p)) * q / pdf
        c += step
        if abs(step) <= 1e-14 * max(1.0, c):
            break
    return c


STUCK_SIGMA_MARGIN = 2.0
"""The stuck test judges the sensor as if its noise were half the sigma measured (and half the
specified one at most): the estimate starts at the specification at power-up and follows a quieter
sensor with a 1 s lag, and quantization lifts it below ~1 count; assuming half costs one sample of
latency at the specified noise (`stuck_run_samples`: 7 instead of 6)."""


def stuck_run_samples(sigma_counts: float, log_budget: float, longest: int) -> int:
    """The run of identical ADC readings that a live sensor with white Gaussian noise of
    `sigma_counts` (ADC counts) makes with odds within the false-alarm budget, or 0 when that run is
    longer than `longest` (the sensor is too quiet to be judged stuck within the latency bound).

    A reading equals a given count j with probability p_j <= p = erf(1 / (2 sqrt 2 sigma)) (the
    one-count bin centred on the mean holds the most), whatever the pressure does meanwhile; so N
    readings in a row are equal with odds sum_j p_j^N <= p^(N-1), and by Boole's inequality over the
    samples at which a run can start, a run of N appears within T seconds with odds at most
    T f_s p^(N-1). `log_budget` is ln(lambda / f_s), lambda the budget per second:
    N = 1 + ceil(log_budget / ln p) (docs/controller.md, "The sensor monitor from the same budget")."""
    if not sigma_counts > 0.0:
        return 0
    p = math.erf(0.5 / (math.sqrt(2.0) * sigma_counts))
    if not p < 1.0:
        return 0
    n = 1 + math.ceil(log_budget / math.log(p))
    return n if n <= longest else 0


class SlopeGlr:
    """The occlusion's sequential test: is the pressure rising faster than a nominal ramp?

    A window-limited generalized likelihood ratio test (Lai 1998, IEEE Trans. Inf. Theory 44:2917)
    for "the last w samples lie on a line whose slope exceeds beta", the intercept unknown, white
    noise of known sigma, against the least favourable nominal case (a ramp of slope beta): the GLR
    of that one-sided linear-regression hypothesis is the standardized least-squares slope,
    z_w = (s_w - beta) sqrt(D_w) / sigma, D_w = w (w^2 - 1) / 12, and the window is the unknown time
    since the change. It alarms when z_w > c for any w of a fixed geometric bank (a window of about
    twice the time since the onset is the most powerful, and the power is flat within a factor 2 of
    it, so a bank of doublings loses < 5 % of z).

    Everything per sample is integer arithmetic on ADC counts: two running sums (the prefix sum of
    x[k] and q, a combination of it with the prefix sum of k x[k], see `push`) kept modulo 2^64 in a
    ring, so a window's centred sum 2 T_w = 2 sum (k - kbar) x[k] is a difference of two ring
    entries, exact; the thresholds (integers, in the same unit) are recomputed once per block from
    sigma. Fixed size: `ring` entries of two 64-bit sums.
    """

    __slots__ = (
        "_banks",
        "_beta",
        "_beta_d",
        "_count",
        "_k",
        "_n",
        "_q",
        "_ring0",
        "_ring1",
        "_s0",
        "mask",
        "sqrt_d",
        "two_d",
        "windows",
    )

    def __init__(self, windows: tuple[int, ...], ring: int) -> None:
        if ring & (ring - 1) or not windows or max(windows) >= ring or min(windows) < 3:
            raise ValueError(f"windows {windows} must be 3..{ring - 1} and the ring {ring} a power of two")
        self.windows = tuple(sorted(windows))
        self.mask = ring - 1
        self.two_d = tuple(w * (w * w - 1) / 6.0 for w in self.windows)
        """2 D_w: the centred sum 2 T_w of a unit-slope line (counts per sample)."""
        self.sqrt_d = tuple(math.sqrt(w * (w * w - 1) / 12.0) for w in self.windows)
        self._ring0 = [0] * ring
        self._ring1 = [0] * ring
        bank = [(w, MASK64) for w in self.windows]
        self._banks = (bank[0::2], bank[1::2])
        """(window, threshold of its 2 T_w) pairs in window order, every other one: an even sample
        tests the 1st, 3rd, ... window, an odd one the 2nd, 4th, ... (half the cost per tick; the
        windows are sqrt(2) apart, so a window's neighbour, within ~2 % of its power, is tested on
        the samples it is not)."""
        self._beta: float | None = None
        self._beta_d = self.two_d
        self._k = math.nan
        """The nominal ramp (the object) whose 2 beta D_w are in `_beta_d`, and the 2 c sigma of the
        thresholds in force: `set_threshold` with the same two computes nothing again."""
        self._n = 0
        self._s0 = 0
        self._q = 0
        self._count = 0
        """Samples pushed, saturating at the ring size: a window needs count > w."""

    def push(self, counts: int) -> None:
        """One sample (ADC counts), every tick. The ring holds s0 (sum of x) and
        q = 2 s1 - (2n + 1) s0 (s1 the sum of k x) at each n, so that a window's centred sum is
        2 T_w = q[n] - q[n-w] + w (s0[n] + s0[n-w]): two look-ups, one product. q is kept by its
        own recursion, q[n] = q[n-1] - x[n] - 2 s0[n-1] (the definition at n minus that at n - 1),
        so s1, which grows as n^2, is never formed. Python's integers are exact without a bound; a
        C port keeps them in uint64 and gets the same window sums (`_centred2`, tested)."""
        n = self._n + 1
        self._n = n
        s0 = self._s0
        q = self._q = self._q - counts - 2 * s0
        s0 = self._s0 = s0 + counts
        i = n & self.mask
        self._ring0[i] = s0
        self._ring1[i] = q
        if self._count <= self.mask:
            self._count += 1

    def set_threshold(self, beta_counts: float, c: float, sigma_counts: float) -> None:
        """Thresholds of 2 T_w: 2 beta D_w + 2 c sigma sqrt(D_w), beta in counts per sample.

        Called once per block; the nominal ramp changes only with the span calibration and sigma
        often sits on its floor, so the products of an unchanged beta are kept and an unchanged
        (beta, 2 c sigma) leaves the thresholds as they are: the same numbers, computed once."""
        k = 2.0 * c * sigma_counts
        if beta_counts is not self._beta:
            self._beta = beta_counts
            self._beta_d = tuple(beta_counts * d2 for d2 in self.two_d)
        elif k == self._k and type(k) is type(self._k):
            return
        self._k = k
        bank = [
            (w, int(bd + k * sd)) for w, bd, sd in zip(self.windows, self._beta_d, self.sqrt_d, strict=True)
        ]
        self._banks = (bank[0::2], bank[1::2])

    def _centred2(self, w: int) -> int:
        """2 T_w in the port's arithmetic: every sum and index modulo 2^64, the result read as a
        signed 64-bit integer (exact while |2 T_w| < 2^63: w^2 x the ADC span is ~10^9)."""
        n = self._n & MASK64
        j = (n - w) & self.mask
        q = ((self._ring1[n & self.mask] & MASK64) - (self._ring1[j] & MASK64)) & MASK64
        t2 = (q + w * ((self._s0 & MASK64) + (self._ring0[j] & MASK64))) & MASK64
        return t2 - (1 << 64) if t2 >= SIGN64 else t2

    def exceeded(self) -> bool:
        """True when any window tested at this sample (every other one, by parity) has its centred
        sum above its threshold (z_w > c)."""
        n = self._n
        mask = self.mask
        r0 = self._ring0
        r1 = self._ring1
        q = self._q
        s0 = self._s0
        if self._count > mask:  # the ring is full: every window is
            for w, thr in self._banks[n & 1]:
                j = (n - w) & mask
                if q - r1[j] + w * (s0 + r0[j]) > thr:
                    return True
            return False
        count = self._count
        for w, thr in self._banks[n & 1]:
            if count <= w:
                return False
            j = (n - w) & mask
            if q - r1[j] + w * (s0 + r0[j]) > thr:
                return True
        return False


class PressureRiseDetector:
    """PRESSURE_RISE, the occlusion detector: pressure rising faster than the nominal ramps of a
    healthy line (`SlopeGlr` against `nominal_pa_s`), once the start-up ramp is over.

    A start-up ramp rises at the same rate as an occlusion (Q / C, flow over line compliance): the
    difference is that it decays as the cannula starts to carry the flow, while an occlusion's does
    not. So the detector arms only after the 100 ms block slope has settled below `arm_pa_s` for
    `arm_blocks` blocks at constant flow, *and* the pressure has reached its operating level: either
    a rise at `ramp_pa_s` was seen since the reset (the start-up ramp happened) or the pressure is at
    least `ref_frac` of the operating pressure of the previous injection phase. That keeps it
    disarmed through a flat stretch before the ramp (the plunger taking up a relief back-off). A flow
    increase disarms it until the new ramp has settled. Once armed it trips, per sample, when the
    slope test does: its thresholds follow from the false-alarm budget (c) and the sensor noise
    sigma measured online, floored at the configured one (`update`, once per block).
    """

    __slots__ = (
        "_below",
        "_beta1",
        "_floor1",
        "_ramp_seen",
        "_ref_pa",
        "arm_blocks",
        "arm_pa_s",
        "armed",
        "beta_counts",
        "c",
        "ramp_pa_s",
        "ref_frac",
        "sigma_floor_counts",
        "test",
    )

    def __init__(
        self,
        ramp_pa_s: float,
        arm_pa_s: float,
        arm_blocks: int,
        test: SlopeGlr,
        c: float,
        beta_counts: float,
        sigma_floor_counts: float,
        ref_frac: float = 0.5,
    ) -> None:
        self.ramp_pa_s = ramp_pa_s
        self.arm_pa_s = arm_pa_s
        self.arm_blocks = arm_blocks
        self.test = test
        self.c = c
        self.beta_counts = beta_counts
        """The nominal ramp tolerated, ADC counts per sample."""
        self.sigma_floor_counts = sigma_floor_counts
        self._beta1 = beta_counts
        self._floor1 = sigma_floor_counts
        """The nominal ramp and the sigma floor in counts at a span gain of 1 (`set_span`)."""
        self.ref_frac = ref_frac
        self.armed = False
        self._below = 0
        self._ramp_seen = False
        self._ref_pa = 0.0
        test.set_threshold(beta_counts, c, sigma_floor_counts)

    def set_span(self, span_gain: float) -> None:
        """The span calibration in force (pressure = (raw - zero) x span_gain): the test works on
        raw counts, so the nominal ramp and the sigma floor, stated in calibrated Pa, are this many
        times fewer counts. The zero offset does not change a slope. Thresholds follow at the next
        block."""
        self.beta_counts = self._beta1 / span_gain
        self.sigma_floor_counts = self._floor1 / span_gain

    def reset(self, reference_pa: float = 0.0) -> None:
        """At every START / RESUME; `reference_pa` is the operating pressure of the previous phase
        of this plan (0 when there is none)."""
        self.armed = False
        self._below = 0
        self._ramp_seen = False
        self._ref_pa = reference_pa

    def update(self, slope_pa_s: float, pressure_pa: float, flow_rising: bool, sigma_counts: float) -> float:
        """One block: arming on `slope_pa_s` (the 100 ms block slope), `flow_rising` when the
        commanded flow went up over that window; the test's thresholds from the noise sigma.
        Returns the sigma the test uses (counts): the measured one, floored."""
        floor = self.sigma_floor_counts
        sigma = sigma_counts if sigma_counts > floor else floor
        self.test.set_threshold(self.beta_counts, self.c, sigma)
        if slope_pa_s >= self.ramp_pa_s:
            self._ramp_seen = True
        if flow_rising:
            self.armed = False
            self._below = 0
            return sigma
        if not self.armed:
            if slope_pa_s < self.arm_pa_s and (
                self._ramp_seen or pressure_pa >= self.ref_frac * self._ref_pa > 0.0
            ):
                self._below += 1
                if self._below >= self.arm_blocks:
                    self.armed = True
            else:
                self._below = 0
        return sigma

    def tripped(self) -> bool:
        """Per sample, after `test.push`: armed and the slope test alarms."""
        return self.armed and self.test.exceeded()


def noise_suspect_sigma_pa(config: ControllerConfig) -> float:
    """The sensor noise (sigma per sample, Pa) above which the pressure tests' fixed terms no longer
    hold the false-alarm budget by themselves: PRESSURE_LOSS's `loss_min_pa` on the difference of
    two block means (sd sigma sqrt(2 / block)) holds the budget of one test per block only while
    c_b sigma sqrt(2 / block) <= loss_min_pa (c_b from `glr_threshold`); above it the statistical
    floor, on the sigma measured with a 1 s lag, must carry the budget, and a noise that rises faster
    than that lag defeats it (PRESSURE_RISE's, floored at the specification, sooner still). 38.4 kPa,
    3.84x the specified noise, at the defaults: SensorMonitor's suspect level (docs/controller.md,
    "The sensor monitor from the same budget")."""
    c_b = glr_threshold(config.rise_false_alarms_per_h, config.sample_rate_hz / config.block_samples, 1)
    return config.loss_min_pa / (c_b * math.sqrt(2.0 / config.block_samples))


def pa_per_count(hardware: Hardware) -> float:
    """Pressure of one ADC count (the gain `SensorMonitor` converts with)."""
    counts_per_ma = hardware.adc_max / hardware.adc_full_scale_ma
    return hardware.sensor_full_scale_pa / hardware.loop_span_ma / counts_per_ma


def rise_detector(config: ControllerConfig, hardware: Hardware) -> PressureRiseDetector:
    """The PRESSURE_RISE detector of a parameter block: the slope test's threshold c from the
    false-alarm budget and the number of windows, the nominal ramp and the sigma floor in counts."""
    gain = pa_per_count(hardware)
    dt = 1.0 / config.sample_rate_hz
    windows = tuple(sorted(set(config.rise_windows)))
    return PressureRiseDetector(
        config.rise_min_pa_s,
        config.rise_arm_pa_s,
        config.rise_arm_blocks,
        SlopeGlr(windows, RISE_RING),
        glr_threshold(config.rise_false_alarms_per_h, config.sample_rate_hz, len(windows)),
        config.rise_nominal_pa_s * dt / gain,
        config.rise_sigma_floor * config.sensor_noise_spec_pa / gain,
    )


class PressureLossDetector:
    """PRESSURE_LOSS: a sudden fall while the plunger drives forward steadily (disconnection,
    rupture, a low-resistance leak path). Trips when, over its window, the pressure fell by more
    than max(min_pa, frac x p_then, noise_pa) from at least `arm_pa`, for `trip_blocks` blocks in a
    row, with the plunger at >= the flow fraction of its setpoint for the whole window (`flow_ok`).

    `noise_pa` is the statistical part, c sigma_d: the sd of the difference of two block means
    (sigma sqrt(2 / block), sigma measured online) times the threshold of one test per block for the
    false-alarm budget (`glr_threshold` with one window at the block rate). At the specified noise
    it is far below `min_pa` (the fall a healthy line never makes): it governs only at several
    times the specified noise, where a fixed floor would let noise trip the detector."""

    __slots__ = ("_run", "arm_pa", "frac", "min_pa", "trip_blocks")

    def __init__(self, min_pa: float, frac: float, arm_pa: float, trip_blocks: int) -> None:
        self.min_pa = min_pa
        self.frac = frac
        self.arm_pa = arm_pa
        self.trip_blocks = trip_blocks
        self._run = 0

    def reset(self) -> None:
        self._run = 0

    def threshold(self, pressure_then_pa: float, noise_pa: float = 0.0) -> float:
        rel = self.frac * pressure_then_pa
        floor = noise_pa if noise_pa > self.min_pa else self.min_pa
        return rel if rel > floor else floor

    def update(
        self, pressure_then_pa: float, pressure_now_pa: float, flow_ok: bool, noise_pa: float = 0.0
    ) -> bool:
        if (
            flow_ok
            and pressure_then_pa >= self.arm_pa
            and pressure_then_pa - pressure_now_pa > self.threshold(pressure_then_pa, noise_pa)
        ):
            self._run += 1
            return self._run >= self.trip_blocks
        self._run = 0
        return False


class SensorMonitor:
    """SENSOR_FAULT: converts the raw ADC sample to pressure and judges the sensor.

    - out of range: loop current outside [loop_fault_low_ma, loop_fault_high_ma] (open or shorted
      loop, dead transducer) for `range_samples` samples. Such a sample is never used as a
      pressure: `sample()` returns the last valid one instead.
    - stuck: exactly the same ADC value for `stuck_samples` samples while the plunger moves, a run
      that follows from the false-alarm budget and the noise sigma (`stuck_run_samples`, set once
      per block by `judge_stuck` from the quieter of the measured and the specified sigma, halved),
      0 (not judged) when the sensor is too quiet for a run within `stuck_longest`. Readings at the
      transmitter's measurement limits (saturated, flat by design) break a run.
    - noisy: the IIR mean of |p[k] - p[k-1]| above `noise_fault_pa` for `noise_samples` samples.

    It also measures the noise sigma online for the slope tests (`sigma_counts`): an integer IIR of
    the second difference |x[k] - 2 x[k-1] + x[k-2]| of the valid ADC counts, time constant
    2^`sigma_shift` samples, which a ramp of any slope leaves unchanged (`ABS_D2_PER_SIGMA`). It
    starts at `sigma_prior_counts`, the configured noise. A second difference beyond
    `outlier_counts` (c sqrt(6) sigma, set per block: odds below the false-alarm budget for white
    noise, and far beyond what any pressure kink makes) is implausible: `outliers` counts them
    until `quiet_samples` have passed without one (the slope test's ring), for PRESSURE_RISE to tell
    a corrupt sample (one: ignored) and a noise burst (two or more: a sensor fault) from a rise.

    `faulty` latches when any of them trips and drops only once none has been seen for
    `clear_samples` samples (what CLEAR checks). `suspect` (an alarm, never a stop) is set while a
    condition builds up without having tripped (an out-of-range sample, noise above
    `noise_suspect_pa`) and for `clear_samples` samples after it was last seen. A stuck run has no
    suspect stage: it trips within milliseconds or ends.
    """

    __slots__ = (
        "_d2_acc",
        "_good_run",
        "_log_budget",
        "_noise_run",
        "_quiet",
        "_range_run",
        "_stuck_held",
        "_stuck_run",
        "_stuck_sigma_cap",
        "_x1",
        "_x2",
        "adc",
        "adc_high",
        "adc_low",
        "adc_sat_high",
        "adc_sat_low",
        "cause",
        "clear_samples",
        "faulty",
        "gain",
        "noise_alpha",
        "noise_fault_pa",
        "noise_mean_pa",
        "noise_samples",
        "noise_suspect_pa",
        "offset",
        "outlier_counts",
        "outliers",
        "pressure_pa",
        "quiet_samples",
        "range_samples",
        "sigma_shift",
        "stuck_longest",
        "stuck_samples",
    )

    def __init__(
        self,
        hardware: Hardware,
        range_samples: int,
        stuck_longest: int,
        noise_fault_pa: float,
        noise_suspect_pa: float,
        noise_alpha: float,
        noise_samples: int,
        clear_samples: int,
        sigma_prior_counts: float = 0.0,
        sigma_shift: int = 10,
        false_alarms_per_h: float = 1e-3,
        sample_rate_hz: float = 1000.0,
    ) -> None:
        counts_per_ma = hardware.adc_max / hardware.adc_full_scale_ma
        self.adc_low = hardware.loop_fault_low_ma * counts_per_ma
        self.adc_high = hardware.loop_fault_high_ma * counts_per_ma
        self.adc_sat_low = hardware.adc_from_ma(hardware.loop_measure_low_ma)
        self.adc_sat_high = hardware.adc_from_ma(hardware.loop_measure_high_ma)
        """Readings at or beyond these counts are a saturated transmitter: they break a stuck run."""
        pa_per_ma = hardware.sensor_full_scale_pa / hardware.loop_span_ma
        self.gain = pa_per_ma / counts_per_ma
        self.offset = hardware.loop_zero_ma * pa_per_ma
        self.range_samples = range_samples
        if not false_alarms_per_h > 0.0 or not math.isfinite(false_alarms_per_h):
            raise ValueError(f"false-alarm budget {false_alarms_per_h!r} per hour must be finite and > 0")
        self._log_budget = math.log(false_alarms_per_h / 3600.0 / sample_rate_hz)
        """ln(lambda / f_s): the odds per sample a stuck run may have (`stuck_run_samples`)."""
        self.stuck_longest = stuck_longest
        """The longest run the stuck test may need (its latency bound); 0 disables the test."""
        self._stuck_sigma_cap = sigma_prior_counts / STUCK_SIGMA_MARGIN
        self.stuck_samples = 0
        """The run in force (0: not judged); `judge_stuck` sets it once per block."""
        if stuck_longest:
            self.stuck_samples = stuck_run_samples(self._stuck_sigma_cap, self._log_budget, stuck_longest)
            if not self.stuck_samples:
                need = stuck_run_samples(self._stuck_sigma_cap, self._log_budget, 1 << 30)
                raise ValueError(
                    f"stuck run of at most {stuck_longest} samples cannot meet the false-alarm budget "
                    f"{false_alarms_per_h!r} per hour at the specified noise ({sigma_prior_counts:.3g} "
                    f"ADC counts): it needs {need or 'more than 2^30'} samples (0 disables the check)"
                )
        self.noise_fault_pa = noise_fault_pa
        self.noise_suspect_pa = noise_suspect_pa
        self.noise_alpha = noise_alpha
        self.noise_samples = noise_samples
        self.clear_samples = clear_samples
        self.pressure_pa = 0.0
        """Last valid pressure reading (held through out-of-range samples)."""
        self.noise_mean_pa = 0.0
        self.faulty = False
        self.cause = 0
        """SENSOR_* bits of the conditions that tripped (while faulty) or are building up."""
        self._range_run = 0
        self._stuck_run = 0
        self._stuck_held = False
        self._noise_run = 0
        self._good_run = 0
        self.adc = -1
        """Last valid ADC reading (held through out-of-range samples, -1 before the first)."""
        self.sigma_shift = sigma_shift
        self._d2_acc = round(sigma_prior_counts * ABS_D2_PER_SIGMA * (1 << sigma_shift))
        """2^sigma_shift x the IIR mean of |second difference|, ADC counts (an integer)."""
        self._x1 = -1
        self._x2 = -1
        self.outlier_counts = 1 << 62
        """|second difference| above this is an outlier (set by the controller once per block)."""
        self.outliers = 0
        self.quiet_samples = 256
        self._quiet = 0

    def sigma_counts(self) -> float:
        """Noise sigma per sample measured online, ADC counts."""
        return self._d2_acc / ((1 << self.sigma_shift) * ABS_D2_PER_SIGMA)

    @property
    def suspect(self) -> bool:
        return self.cause != 0 and not self.faulty

    def sample(self, adc: int, moving: bool) -> float:
        """One ADC sample; `moving` when the plunger was commanded to move. Returns the pressure."""
        bad = 0
        if self.adc_low <= adc <= self.adc_high:
            self._range_run = 0
            self.adc = adc
            x1 = self._x1
            if self._x2 >= 0:
                d2 = adc - 2 * x1 + self._x2
                if d2 < 0:
                    d2 = -d2
                acc = self._d2_acc
                self._d2_acc = acc + d2 - (acc >> self.sigma_shift)
                if d2 > self.outlier_counts:
                    if self.outliers < 255:
                        self.outliers += 1
                    self._quiet = 0
                elif self.outliers:
                    self._quiet += 1
                    if self._quiet >= self.quiet_samples:
                        self.outliers = 0
            self._x2 = x1
            self._x1 = adc
            if adc != x1 or adc <= self.adc_sat_low or adc >= self.adc_sat_high:
                self._stuck_run = 1 if moving else 0  # counts identical readings, this one included
                self._stuck_held = False
            else:
                run = self._stuck_run
                if moving:
                    run += 1
                    self._stuck_run = run
                if self._stuck_held or run >= self.stuck_samples > 0:
                    self._stuck_held = True  # until the reading changes, whatever sigma does now
                    bad = SENSOR_STUCK
            p = adc * self.gain - self.offset
            step = p - self.pressure_pa if x1 >= 0 else 0.0
            if step < 0.0:
                step = -step
            mean = self.noise_mean_pa + self.noise_alpha * (step - self.noise_mean_pa)
            self.noise_mean_pa = mean
            self.pressure_pa = p
            if mean > self.noise_suspect_pa:
                bad |= SENSOR_NOISE
                if mean > self.noise_fault_pa:
                    self._noise_run += 1
                else:
                    self._noise_run = 0
            else:
                self._noise_run = 0
        else:
            self._range_run += 1
            self._stuck_run = 0
            self._stuck_held = False
            bad = SENSOR_RANGE
            p = self.pressure_pa
        if bad:
            self._good_run = 0
            if not self.faulty:
                self.cause |= bad
                if (
                    self._range_run >= self.range_samples
                    or self._noise_run >= self.noise_samples
                    or bad & SENSOR_STUCK
                ):
                    self.faulty = True
        elif self.cause:
            self._good_run += 1
            if self._good_run >= self.clear_samples:
                self.faulty = False
                self.cause = 0
        return p

    def judge_stuck(self) -> None:
        """Once per block: the stuck run in force from the sigma measured now, capped at the
        specified one and halved (`STUCK_SIGMA_MARGIN`), 0 when the test is disabled or the sensor
        too quiet to judge within `stuck_longest`."""
        if self.stuck_longest:
            sigma = self.sigma_counts() / STUCK_SIGMA_MARGIN
            cap = self._stuck_sigma_cap
            self.stuck_samples = stuck_run_samples(
                sigma if sigma < cap else cap, self._log_budget, self.stuck_longest
            )

    def declare_fault(self, cause: int) -> None:
        """Latch the fault now for `cause` (SENSOR_* bits): the controller found a suspect condition
        misleading a detector. It clears as any fault does, after `clear_samples` good samples."""
        self.cause |= cause
        self.faulty = True
        self._good_run = 0


class StallDetector:
    """MOTOR_STALL: the commanded position (integrated steps) runs ahead of the encoder by more
    than `tolerance_counts` for `blocks` blocks in a row. `suspect` is set as soon as the error is
    beyond the tolerance (telemetry flag STALL_SUSPECT)."""

    __slots__ = ("_run", "blocks", "suspect", "tolerance_counts")

    def __init__(self, tolerance_counts: float, blocks: int) -> None:
        self.tolerance_counts = tolerance_counts
        self.blocks = blocks
        self.suspect = False
        self._run = 0

    def reset(self) -> None:
        self._run = 0
        self.suspect = False

    def update(self, error_counts: float) -> bool:
        if error_counts > self.tolerance_counts or -error_counts > self.tolerance_counts:
            self.suspect = True
            self._run += 1
            return self._run >= self.blocks
        self.suspect = False
        self._run = 0
        return False


class TravelGuard:
    """END_OF_TRAVEL and home: would the plunger, braking now at the step generator's limit, stop
    beyond the forward end (less a margin) or behind home (plus a margin)? The limit switch trips
    the forward end at once. Braking distance = v^2 / (2 a), in encoder counts."""

    __slots__ = ("brake", "end_counts", "home_counts")

    def __init__(self, hardware: Hardware, travel_margin_m: float, home_margin_m: float) -> None:
        self.end_counts = (hardware.travel_m - travel_margin_m) / hardware.encoder_m_per_count
        self.home_counts = home_margin_m / hardware.encoder_m_per_count
        accel = hardware.max_step_accel_hz_s
        self.brake = hardware.plunger_m_per_step / (2.0 * accel * hardware.encoder_m_per_count)
        """Braking distance in counts per (steps/s)^2."""

    def braking_counts(self, rate_hz: float) -> float:
        return rate_hz * rate_hz * self.brake

    def forward_blocked(self, encoder_counts: int, rate_hz: float, switch: bool) -> bool:
        return switch or encoder_counts + rate_hz * rate_hz * self.brake >= self.end_counts

    def home_blocked(self, encoder_counts: int, rate_hz: float) -> bool:
        return encoder_counts - rate_hz * rate_hz * self.brake <= self.home_counts


class Debouncer:
    """A digital input (the fluoroscopy stop line): asserted after `on_samples` consecutive high
    samples, released after `off_samples` consecutive low ones. `run` (samples at the other level so
    far) is public so that the controller's tick can skip `update` when the level equals the state
    and no run is under way: it would change nothing."""

    __slots__ = ("off_samples", "on_samples", "run", "state")

    def __init__(self, on_samples: int, off_samples: int) -> None:
        self.on_samples = on_samples
        self.off_samples = off_samples
        self.state = False
        self.run = 0

    def update(self, level: bool) -> bool:
        if level == self.state:
            self.run = 0
        else:
            self.run += 1
            if self.run >= (self.off_samples if self.state else self.on_samples):
                self.state = level
                self.run = 0
        return self.state


class Watchdog:
    """HOST_LOST: armed by HELLO, fed by every valid frame from the host, expires after
    `timeout_us` without one."""

    __slots__ = ("armed", "last_us", "timeout_us")

    def __init__(self, timeout_us: int) -> None:
        self.timeout_us = timeout_us
        self.armed = False
        self.last_us = 0

    def start(self, now_us: int) -> None:
        self.armed = True
        self.last_us = now_us & TIMER_MASK

    def stop(self) -> None:
        self.armed = False

    def feed(self, now_us: int) -> None:
        self.last_us = now_us & TIMER_MASK

    def expired(self, now_us: int) -> bool:
        return self.armed and elapsed_us(now_us, self.last_us) > self.timeout_us


class WorkingTimeMonitor:
    """WORKING_TIME: cement age (mixed_ago_ms at ARM plus the time since) against its working time,
    with a warning at `warning_frac` of it. The time since ARM is an integer sum of wrap-safe 32-bit
    timer differences (the controller asks at least every block), so a plan armed for longer than
    the timer's 71.6 min wrap still ages correctly."""

    __slots__ = ("_last_us", "_mixed_ago_ms", "_since_arm_us", "warning_frac", "working_time_ms")

    def __init__(self, warning_frac: float) -> None:
        self.warning_frac = warning_frac
        self.working_time_ms = 0
        self._mixed_ago_ms = 0
        self._last_us = 0
        self._since_arm_us = 0

    def configure(self, mixed_ago_ms: int, working_time_ms: int, now_us: int) -> None:
        self._mixed_ago_ms = mixed_ago_ms
        self.working_time_ms = working_time_ms
        self._last_us = now_us & TIMER_MASK
        self._since_arm_us = 0

    def age_ms(self, now_us: int) -> int:
        self._since_arm_us += elapsed_us(now_us, self._last_us)
        self._last_us = now_us & TIMER_MASK
        return self._mixed_ago_ms + self._since_arm_us // 1000

    def update(self, now_us: int) -> int:
        """AGE_OK, AGE_WARNING or AGE_EXPIRED."""
        if self.working_time_ms <= 0:
            return AGE_OK
        age = self.age_ms(now_us)
        if age >= self.working_time_ms:
            return AGE_EXPIRED
        if age >= self.warning_frac * self.working_time_ms:
            return AGE_WARNING
        return AGE_OK


class DeliveryMonitor:
    """VOLUME_LIMIT and INCREMENT_DONE, on the encoder (never the step count), in integer encoder
    counts from the ARM position. The mark of a volume V is ceil(V / volume per count) counts, so a
    plunger at rest on or past it has delivered at least V. Marks are positions, not distances
    travelled: a relief back-off is taken up again before new volume counts, which makes them marks
    on the delivered volume (the high-water mark of the plunger). The controller compares the
    position it would come to rest at if it braked now with `target_counts` every tick and calls
    `reached()` when it is crossed (the anticipation, SPEC §8.5)."""

    __slots__ = (
        "_fl_per_count",
        "_limit_counts",
        "increment_nl",
        "increments_done",
        "target_counts",
        "volume_limit_nl",
    )

    NEVER = 1 << 62
    """`target_counts` without a plan: beyond any position."""

    def __init__(self) -> None:
        self._fl_per_count = 1
        self._limit_counts = self.NEVER
        self.volume_limit_nl = 0
        self.increment_nl = 0
        self.increments_done = 0
        self.target_counts = self.NEVER

    def configure(self, fl_per_count: int, volume_limit_nl: int, increment_nl: int) -> None:
        """`fl_per_count`: femtolitres per encoder count (> 0); `increment_nl` 0 for CONTINUOUS."""
        self._fl_per_count = fl_per_count
        self.volume_limit_nl = volume_limit_nl
        self.increment_nl = increment_nl
        self.increments_done = 0
        self._limit_counts = self.mark_counts(volume_limit_nl)
        self._retarget()

    def mark_counts(self, volume_nl: int) -> int:
        """Counts from the ARM position at which `volume_nl` is delivered: ceil(V x 1e6 / fl)."""
        return -(-volume_nl * 1_000_000 // self._fl_per_count)

    def clear(self) -> None:
        self.target_counts = self.NEVER
        self.increments_done = 0

    def _retarget(self) -> None:
        target = self._limit_counts
        if self.increment_nl:
            target = min(target, self.mark_counts((self.increments_done + 1) * self.increment_nl))
        self.target_counts = target

    def reached(self, stop_counts: float) -> int:
        """The plunger will rest at `stop_counts` from the ARM position (>= target): which mark."""
        if stop_counts >= self._limit_counts:
            return DELIVERY_VOLUME
        if self.increment_nl:
            # marks at or before the rest position: ceil(k I / v) <= s  <=>  k I <= floor(s) v
            whole = int(stop_counts)
            passed = whole * self._fl_per_count // (self.increment_nl * 1_000_000)
            self.increments_done = max(self.increments_done + 1, passed)
            self._retarget()
            return DELIVERY_INCREMENT
        return DELIVERY_NONE  # pragma: no cover - target is the limit when there are no increments


class ViscosityWindowDetector:
    """VISCOSITY_WINDOW: the valid viscosity estimate outside [low, high] for `blocks` blocks in a
    row (blocks without a valid estimate reset the count)."""

    __slots__ = ("_run", "blocks")

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks
        self._run = 0

    def reset(self) -> None:
        self._run = 0

    def update(self, valid: bool, viscosity_pas: float, low_pas: float, high_pas: float) -> bool:
        if valid and not low_pas <= viscosity_pas <= high_pas:
            self._run += 1
            return self._run >= self.blocks
        self._run = 0
        return False
