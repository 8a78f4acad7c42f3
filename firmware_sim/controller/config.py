"""Every tunable of the controller, with its default and the reason for it.

`ControllerConfig` is the firmware's parameter block: plain scalars, fixed at boot. The numbers
assume the reference rig (`firmware_sim.hal.REFERENCE_RIG`): a 0-10 MPa transducer with about
10 kPa (0.1 % of full scale) of white noise per 1 kHz sample, a 1 um encoder, a 5 mm/s plunger.
`docs/controller.md` tabulates the detectors with their latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.enums import Capabilities
from protocol.telemetry import MAX_BATCH_SAMPLES, MAX_DIVIDER

ALL_CAPABILITIES = (
    Capabilities.RELIEF_BACKOFF
    | Capabilities.INCREMENTAL
    | Capabilities.FLUORO_LINE
    | Capabilities.VISCOSITY_ESTIMATE
    | Capabilities.TELEMETRY_CONFIG
    | Capabilities.SETUP
    | Capabilities.MOTION
)

OPTIONAL_CAPABILITIES = {
    "MOTION": Capabilities.MOTION,
    "TELEMETRY_CONFIG": Capabilities.TELEMETRY_CONFIG,
}
"""Capabilities a firmware may be built without, by name: the controller treats the commands each
covers as unknown types when its bit is clear (`Controller._implements`, SPEC §7.7 step 3), so a
simulator without one behaves as such a device (`cementguard sim --without`). The other bits are
not offered: the controller does not gate on them."""


@dataclass(frozen=True, slots=True)
class FirmwareIdentity:
    """Who the device is, as DEVICE_INFO reports it."""

    serial: str
    fw_major: int
    fw_minor: int
    fw_patch: int
    capabilities: Capabilities

    @classmethod
    def simulator(cls, serial: str = "SIM-0001") -> FirmwareIdentity:
        """The simulated pump: every capability, plus SIMULATOR (telemetry flag SIMULATED)."""
        return cls(serial, 0, 1, 0, ALL_CAPABILITIES | Capabilities.SIMULATOR)


DEFAULT_IDENTITY = FirmwareIdentity("CG-0000", 0, 1, 0, ALL_CAPABILITIES)


@dataclass(frozen=True)
class ControllerConfig:
    """The controller's parameter block. Pressures in Pa, times in ms unless named otherwise."""

    # -- timing and device limits -------------------------------------------------------------
    sample_rate_hz: int = 1000
    """Tick and sensor sample rate. Every count-based debounce below is in these samples."""
    watchdog_ms: int = 500
    """HOST_LOST when no valid frame arrived for this long. The host heartbeats at half of it, so
    one lost heartbeat is tolerated and a dead host stops the pump within 0.5 s."""
    max_pressure_pa: int = 8_000_000
    """Device ceiling for every pressure limit (80 % of the 10 MPa transducer span, so a hard limit
    always sits well inside the range the sensor can read). Requests above it are clamped."""
    max_flow_nl_s: int = 166_667
    """Device ceiling for the flow setpoint: 10 mL/min, 2.5x the 3-4 mL/min of clinical practice."""
    default_soft_limit_pa: int = 2_500_000
    """Soft limit in force before any ARM: the mean clinical peak is ~1.7 MPa (Krebs 2005)."""
    default_hard_limit_pa: int = 4_000_000
    """Hard limit in force before any ARM: above the highest clinical peak seen (3.2 MPa)."""
    default_relief_pa: int = 200_000
    """Relief threshold in force before any ARM."""

    # -- pressure conditioning --------------------------------------------------------------
    pressure_filter_alpha: float = 0.125
    """First-order IIR on the pressure used by OVERPRESSURE, the throttle and relief.
    Noise 10 kPa -> 2.6 kPa; lag on a ramp 7 samples (7 ms); 95 % of a step in 23 samples."""
    block_samples: int = 10
    """Samples averaged into one block (10 ms): the rate of the slope-based detectors, the
    viscosity estimate, the stall check and the working-time check. Halves their cost per tick
    tenfold and lowers block noise to 10/sqrt(10) = 3.2 kPa."""

    # -- OVERPRESSURE ------------------------------------------------------------------------
    overpressure_samples: int = 3
    """Consecutive filtered samples at or above the hard limit. 3 ms: short enough to be the
    plain threshold detector of the benchmark, long enough to ignore a single corrupt sample."""

    # -- PRESSURE_RISE (occlusion) -------------------------------------------------------------
    rise_enabled: bool = True
    rise_window_blocks: int = 10
    """Arming slope = (block mean now - block mean 10 blocks ago) / 100 ms. Noise on it is
    sqrt(2) x 3.2 kPa / 0.1 s = 45 kPa/s at the specified sensor."""
    rise_min_pa_s: float = 300_000.0
    """An arming slope at or above this since START/RESUME counts as the start-up ramp having been
    seen (one of the two conditions to arm, see `rise_arm_pa_s`). It no longer decides a trip."""
    rise_nominal_pa_s: float = 200_000.0
    """The nominal ramp the armed test tolerates: the pressure loop and setting cement raise the
    pressure at up to 200 kPa/s. The slope test's least favourable null (docs/controller.md)."""
    rise_false_alarms_per_h: float = 1e-3
    """False-alarm budget of the slope test: one per 1000 h of armed injection on a ramp at exactly
    `rise_nominal_pa_s` (an upper bound, Boole's inequality: the threshold c follows from it)."""
    rise_windows: tuple[int, ...] = (8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 255)
    """Window lengths (samples) of the slope test: 8 ms to 255 ms, sqrt(2) apart. The most powerful
    window is about twice the time since the onset (40-250 ms from 6 to 1 mL/min); one within a
    factor sqrt(2) of it loses < 2 % of z. 11 windows: they set c through the budget (K = 11), and
    the cost per tick (half of them per sample). Every one must fit the 256-sample ring. Six
    doublings (8-255) measured 1.31x the ideal at worst (`--quick` grid); these, 1.24x."""
    rise_sigma_floor: float = 1.0
    """The slope test's sigma is the one measured online (`sensor_sigma_shift`), never below this
    fraction of `sensor_noise_spec_pa`: a quiet stretch cannot lower the threshold below the
    specified sensor's."""
    rise_arm_pa_s: float = 200_000.0
    """Armed only once the slope has fallen below this after START/RESUME or a flow increase:
    the start-up ramp has the same rate as an occlusion, but it decays; an occlusion does not.
    Was 100 kPa/s, which armed late (3.4 s after START at the median, 6.4 s at p90): 29 % of
    steady-flow occlusions in the detector sweep came before arming and were stopped only by
    NO_FLOW_AT_CEILING after 3-6 s. At 200 kPa/s (with `rise_arm_blocks` 20) the same 1500 paired
    runs detected 94 % of occlusions instead of 86 %, p90 latency 236 ms instead of 4.2 s. 150 kPa/s
    with 10 blocks did as well in the sweep but armed on slow ramps at twice the specified noise and
    tripped there (bench/false_stops.py: 2 false stops in 2000 runs at 20 kPa).
    docs/detector-thresholds.md."""
    rise_arm_blocks: int = 20
    """Blocks the slope must stay below `rise_arm_pa_s` to arm (200 ms). A slow start-up ramp of a stiff
    cement at low flow still rises at 150-200 kPa/s seconds after START/RESUME; at twice the specified
    sensor noise (89 kPa/s on the slope) a run of quiet-looking blocks below the arming level comes by
    chance, arms the detector mid-ramp, and the ramp then trips it. bench/false_stops.py, 2000 nominal
    runs at 20 kPa: 5 blocks at 100 kPa/s, 4 false stops; 10 at 100 kPa/s, 0; 10 at 150 kPa/s, 2; 20 at
    200 kPa/s, 0 (and 0 in 2000 at 10 kPa). The 20 blocks cost 100 ms more before
    arming after START/RESUME and add nothing to the detection time once armed."""
    ceiling_stall_enabled: bool = True
    ceiling_stall_flow_frac: float = 0.1
    """While throttled at the soft limit, measured flow below this fraction of the plan's flow counts
    as no flow (10 %: 0.3 mL/min of a 3 mL/min plan, far below any useful delivery)."""
    ceiling_stall_ms: int = 3000
    """No flow at the ceiling this long latches PRESSURE_RISE (detail NO_FLOW_AT_CEILING). The throttle
    keeps a blocked line from ever reaching the rise or overpressure thresholds, so without this the
    pump would sit in INJECTING holding the soft-limit pressure, cement stored in the compliance,
    waiting for nothing. 3 s lets a brief throttle at a viscosity step recover first."""
    rise_flow_tolerance: float = 0.02
    """A commanded flow increase above this fraction of the setpoint over the window disarms."""

    # -- PRESSURE_LOSS (disconnection, rupture) -------------------------------------------------
    loss_enabled: bool = True
    loss_window_blocks: int = 5
    """Drop measured over 50 ms."""
    loss_min_pa: float = 100_000.0
    """A drop must exceed this (22 sigma of the 50 ms block difference) ..."""
    loss_frac: float = 0.25
    """... and this fraction of the pressure at the window start: at constant flow a healthy
    line never loses a quarter of its pressure in 50 ms."""
    loss_arm_pa: float = 200_000.0
    """Only meaningful when there is pressure to lose."""
    loss_flow_frac: float = 0.5
    """Armed only while the plunger has run at >= this fraction of the setpoint for the whole
    window: a falling pressure under a throttled or braking plunger is expected."""
    loss_trip_blocks: int = 2

    # -- SENSOR_FAULT -----------------------------------------------------------------------------
    sensor_range_samples: int = 3
    """Consecutive samples outside the NAMUR NE 43 band (Hardware.loop_fault_low/high_ma) to trip.
    Out-of-range samples are never used as pressure: the last valid one is held meanwhile."""
    sensor_stuck_samples: int = 200
    """The longest run of identical ADC readings while the plunger moves that the stuck check may
    need (its latency bound; 0 disables it). The run in force follows from
    `sensor_false_alarms_per_h` and the noise sigma (half the quieter of the measured and the
    specified one): 7 samples at the specified 42 counts, 200 at 0.62 counts; a sensor quieter than
    that is not judged (a noise-free simulated sensor among them). A configuration whose run at the
    specified noise exceeds this is refused (`SensorMonitor`)."""
    sensor_false_alarms_per_h: float = 1e-3
    """False-alarm budget of the stuck check per hour of plunger motion (Boole's inequality over
    the samples: docs/controller.md, "The sensor monitor from the same budget")."""
    sensor_noise_spec_pa: float = 10_000.0
    """The transducer's specified noise (sigma per sample)."""
    sensor_sigma_shift: int = 10
    """The online noise sigma (second difference of the ADC counts, integer IIR) has a time constant
    of 2^10 samples (1 s): its own scatter is ~3 % at white noise, too small to move the false-alarm
    rate much, and it follows a noisier sensor within seconds."""
    sensor_noise_alpha: float = 1.0 / 64.0
    """IIR on |p[k] - p[k-1]| (mean 1.13 sigma for white noise), time constant 64 samples."""
    sensor_noise_fault_factor: float = 10.0
    """Fault when that mean exceeds 10x its nominal value (113 kPa): a loose connector, EMI. It must
    lie above the SENSOR_SUSPECT level, which follows from the false-alarm budget
    (`detectors.noise_suspect_sigma_pa`: 3.84x at the defaults); a configuration where it does not
    is refused."""
    sensor_noise_samples: int = 20
    """Consecutive samples above the fault level to trip."""
    sensor_clear_samples: int = 100
    """A fault condition counts as gone after this many good samples (for CLEAR)."""

    # -- MOTOR_STALL, END_OF_TRAVEL ------------------------------------------------------------
    stall_tolerance_m: float = 100e-6
    """Commanded (integrated steps) minus encoder position beyond 0.1 mm: 40x the per-tick travel
    at full flow, above screw and coupling compliance, ~4 uL at a 7.3 mm bore."""
    stall_ms: int = 20
    """... for this long (checked per block)."""
    travel_margin_m: float = 0.5e-3
    """END_OF_TRAVEL when the plunger would stop (at the braking deceleration) within this of the
    forward end; the limit switch trips it at once as well."""
    home_margin_m: float = 0.2e-3
    """Relief never backs the plunger off to within this of home; it is also the home position
    that HOME, WITHDRAW and a backward JOG come to rest on or in front of (SPEC §8.6)."""
    home_band_m: float = 20e-6
    """AT_HOME within this in front of home: a backward movement anticipates its end by one
    period's travel (5 um at top speed) plus a count, so it rests inside this band."""
    jog_forward_max_um_s: int = 250
    """Top forward JOG speed: the device's max_flow_nl_s (10 mL/min) through a 29 mm bore, the
    largest cement syringe; a JOG carries no bore, so the speed bounds its flow."""

    # -- FLUORO_STOP ---------------------------------------------------------------------------------
    fluoro_debounce_samples: int = 3
    """Asserted for 3 consecutive samples (3 ms): rejects contact bounce and EMI spikes."""
    fluoro_release_samples: int = 20
    """Released for 20 samples before the line counts as released (flag, alarm cleared)."""

    # -- WORKING_TIME -------------------------------------------------------------------------------
    working_time_warning_frac: float = 0.8
    """WORKING_TIME_WARNING alarm at 80 % of the cement's working time."""

    # -- VISCOSITY_WINDOW ---------------------------------------------------------------------------
    viscosity_enabled: bool = True
    viscosity_window_blocks: int = 20
    """Flow and pressure steadiness are judged over 200 ms."""
    viscosity_min_flow_nl_s: float = 5_000.0
    """Estimate only above 0.3 mL/min: below it the encoder flow is too coarse."""
    viscosity_min_pa: float = 50_000.0
    """... and above 50 kPa, so that noise and the intravertebral back-pressure (~5-40 kPa,
    neglected by the estimate) stay small against the cannula pressure drop."""
    viscosity_steady_rel_per_s: float = 0.1
    """Valid only while |dp/dt| < 0.1/s x p: the compliance then carries < ~5 % of the flow."""
    viscosity_flow_steady_frac: float = 0.02
    """... and the commanded flow changed by < 2 % over the window."""
    viscosity_filter_alpha: float = 0.05
    """Per-block IIR on the estimate: time constant 200 ms."""
    viscosity_alarm_margin: float = 0.1
    """VISCOSITY_HIGH / LOW alarms once the estimate is within 10 % of an edge of the window."""
    viscosity_out_ms: int = 500
    """VISCOSITY_WINDOW stop after the valid estimate has been outside the window for 0.5 s."""

    # -- pressure throttle (the soft limit) -----------------------------------------------------
    throttle_enabled: bool = True
    throttle_margin_frac: float = 0.03
    """The loop regulates to 97 % of the soft limit, so the pressure holds below it."""
    throttle_band_frac: float = 0.15
    """Proportional band: flow falls from 100 % at 82 % of the soft limit to 0 at 97 %. The band
    gives the step ramp (38 ms to stop from full flow) room before the limit."""
    throttle_ti_s: float = 0.5
    """Integral time: inside the band the integral raises the flow until the pressure sits at
    the setpoint, rather than somewhere down the band."""
    throttle_clear_ms: int = 200
    """PRESSURE_THROTTLE alarm clears after the loop has been inactive for this long."""

    # -- relief --------------------------------------------------------------------------------------
    relief_speed_m_s: float = 5e-3
    """Back-off speed: the top plunger speed (capped at Hardware.max_step_rate_hz). After-flow
    with relief is about 1 - q ln(1 + 1/q) of a plain stop's, q = back-off flow / injection flow,
    plus what flows during the forced deceleration: the faster the back-off, the smaller the bolus
    (q = 2 at 6 mL/min and top speed: 0.19 before the ramp). The pressure undershoots relief_pa by
    one braking distance (~80 um, a few kPa below zero on the reference line)."""
    relief_max_m: float = 3e-3
    """Back-off never exceeds 3 mm (~125 uL at 7.3 mm), twice the compliance volume of a typical
    line at 2 MPa."""
    relief_blind_m: float = 1e-3
    """Back-off with a faulty sensor (pressure unknown): a fixed 1 mm."""
    relief_timeout_ms: int = 3000
    """Relief gives up after 3 s whatever the pressure."""

    # -- telemetry --------------------------------------------------------------------------------
    telemetry_divider: int = 1
    telemetry_batch_samples: int = 20
    """20 samples per batch: 50 frames/s at 1 kHz, 648-byte payloads."""

    # -- ARM plausibility --------------------------------------------------------------------------
    cannula_length_um_range: tuple[int, int] = (20_000, 500_000)
    cannula_id_um_range: tuple[int, int] = (300, 6_000)
    syringe_bore_um_range: tuple[int, int] = (2_000, 40_000)

    # -- syringe and calibration (SET_SYRINGE, ZERO, CALIBRATE_SPAN / _VOLUME; SPEC §5.17-§5.20) -----
    syringe_stroke_um_min: int = 5_000
    """A syringe stroke below 5 mm is a typing error, not a syringe."""
    zero_max_offset_pa: int = 100_000
    """ZERO refuses an offset beyond 1 % of the 10 MPa span from the factory zero (NAK SENSOR_FAULT):
    a gauge transducer's zero is specified within a fraction of that; more is a pressurised line or
    a failing transducer, which a tare would hide."""
    arm_zero_check_pa: int = 50_000
    """The first ARM of a line presumed open (SPEC §5.23) is refused (NAK ZERO_DRIFT) while |pressure|
    at rest exceeds this: a zero drift that no detector sees during an injection
    (docs/detector-thresholds.md) is bounded at the start of every syringe's session. 50 kPa is 19
    sigma of the filtered reading's noise (2.6 kPa) and 3 % of the mean clinical peak."""
    span_reference_pa_min: int = 500_000
    """CALIBRATE_SPAN needs a reference of at least 5 % of the span: at 10 kPa of noise, the gain of
    a smaller one is known to worse than 0.5 %."""
    span_gain_ppm_range: tuple[int, int] = (950_000, 1_050_000)
    """Span corrections beyond +-5 % are refused (NAK CALIBRATION_OUT_OF_RANGE): a wrong reference or
    a damaged transducer, not a calibration."""
    volume_factor_ppm_range: tuple[int, int] = (900_000, 1_100_000)
    """Volume corrections beyond +-10 % are refused: a leaking syringe, air or a wrong density."""
    volume_nominal_nl_range: tuple[int, int] = (100_000, 100_000_000)
    """CALIBRATE_VOLUME's dispensed volume: 0.1-100 mL (a smaller one is weighed too coarsely)."""
    density_mg_l_range: tuple[int, int] = (500_000, 3_000_000)
    """0.5-3 g/mL: water (0.998), saline, contrast media and PMMA cements lie inside."""
    utc_s_min: int = 1_577_836_800
    """Calibration dates before 2020-01-01 are a host clock that was never set."""

    def __post_init__(self) -> None:
        positive_ints = (
            "sample_rate_hz",
            "watchdog_ms",
            "max_pressure_pa",
            "max_flow_nl_s",
            "block_samples",
            "overpressure_samples",
            "rise_window_blocks",
            "rise_arm_blocks",
            "loss_window_blocks",
            "loss_trip_blocks",
            "sensor_range_samples",
            "sensor_noise_samples",
            "sensor_clear_samples",
            "fluoro_debounce_samples",
            "fluoro_release_samples",
            "viscosity_window_blocks",
            "relief_timeout_ms",
            "jog_forward_max_um_s",
        )
        for name in positive_ints:
            if getattr(self, name) <= 0:
                raise ValueError(f"ControllerConfig.{name} must be > 0")
        if not self.rise_windows or not all(3 <= w < RISE_RING for w in self.rise_windows):
            raise ValueError(f"ControllerConfig.rise_windows must be 3..{RISE_RING - 1} samples")
        if not 0 < self.rise_false_alarms_per_h < 1e3 or not self.rise_nominal_pa_s >= 0.0:
            raise ValueError(
                "ControllerConfig.rise_false_alarms_per_h must be in (0, 1000), rise_nominal_pa_s >= 0"
            )
        if not 0 < self.sensor_false_alarms_per_h < 1e3:
            raise ValueError(
                f"ControllerConfig.sensor_false_alarms_per_h {self.sensor_false_alarms_per_h!r} "
                "must be in (0, 1000)"
            )
        if self.sensor_stuck_samples < 0:
            raise ValueError(
                f"ControllerConfig.sensor_stuck_samples {self.sensor_stuck_samples} must be >= 0 "
                "(0 disables the stuck check)"
            )
        if not 1 <= self.sensor_sigma_shift <= 16 or not self.rise_sigma_floor > 0.0:
            raise ValueError("ControllerConfig.sensor_sigma_shift must be 1..16, rise_sigma_floor > 0")
        longest = max(self.rise_window_blocks, self.loss_window_blocks, self.viscosity_window_blocks)
        if longest >= HISTORY_BLOCKS:
            raise ValueError(f"detector windows must be shorter than {HISTORY_BLOCKS} blocks")
        if not 0 < self.default_relief_pa < self.default_soft_limit_pa < self.default_hard_limit_pa:
            raise ValueError("default limits must satisfy 0 < relief < soft < hard")
        if self.default_hard_limit_pa > self.max_pressure_pa:
            raise ValueError("default_hard_limit_pa exceeds max_pressure_pa")
        if not 0 < self.pressure_filter_alpha <= 1 or not 0 < self.viscosity_filter_alpha <= 1:
            raise ValueError("filter coefficients must be in (0, 1]")
        if not 0 < self.throttle_margin_frac < 1 or not 0 < self.throttle_band_frac < 1:
            raise ValueError("throttle fractions must be in (0, 1)")
        if not 1 <= self.telemetry_batch_samples <= MAX_BATCH_SAMPLES:
            raise ValueError(f"telemetry_batch_samples must be 1..{MAX_BATCH_SAMPLES}")
        if not 0 <= self.telemetry_divider <= MAX_DIVIDER:
            raise ValueError(f"telemetry_divider {self.telemetry_divider} is outside 0..{MAX_DIVIDER}")


RISE_RING = 256
"""Samples of the slope test's ring of prefix sums (two 64-bit sums each: 4 kB)."""
HISTORY_BLOCKS = 32
"""Length of the block history ring (320 ms at the defaults); every window must fit in it."""
