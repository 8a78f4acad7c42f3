"""The controller: one deterministic tick per 1 kHz sample.

`Controller.tick(now_us, sensors, received, host_connected)` takes the time, the latched sensor
sample, the frames decoded since the last tick and the link status, and returns the step rate for
the next period and the messages to send. It reads no clock, does no I/O and keeps every buffer at
a fixed size, so it ports line by line to a microcontroller's main loop.

Order of work in a tick (docs/controller.md):
1. sensors: ADC -> pressure (SensorMonitor), IIR filter, fluoroscopy line debounce, block mean;
   a sensor fault or a fluoroscopy edge latches its stop here.
2. received frames: commands answered (ACK/NAK, replies), watchdog fed; link / watchdog check.
3. per-sample detectors of the current state (OVERPRESSURE, END_OF_TRAVEL, volume marks) and,
   once per block, the slope-based ones (PRESSURE_RISE, PRESSURE_LOSS, MOTOR_STALL, viscosity,
   working time).
4. motion: flow setpoint x throttle in INJECTING, relief back-off, or 0; ramped at the step
   generator's acceleration limit.
5. telemetry sample and device heartbeat while a session is open.
The state machine is docs/state-machine.md; every transition emits exactly one EVENT.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

from firmware_sim.controller.calibration import (
    Calibration,
    DeviceSetup,
    OutOfRange,
    check_span,
    check_volume,
    check_zero,
)
from firmware_sim.controller.commands import (
    TELEMETRY_BATCH,
    TELEMETRY_DIVIDER,
    BadParam,
    CommandCache,
    Limits,
    Plan,
    check_arm,
    check_limits,
    usable_stroke_counts,
)
from firmware_sim.controller.config import (
    DEFAULT_IDENTITY,
    HISTORY_BLOCKS,
    RISE_RING,
    ControllerConfig,
    FirmwareIdentity,
)
from firmware_sim.controller.detectors import (
    AGE_EXPIRED,
    AGE_WARNING,
    DELIVERY_VOLUME,
    SENSOR_NOISE,
    BlockHistory,
    Debouncer,
    DeliveryMonitor,
    OverpressureDetector,
    PressureLossDetector,
    SensorMonitor,
    StallDetector,
    TravelGuard,
    ViscosityWindowDetector,
    Watchdog,
    WorkingTimeMonitor,
    elapsed_us,
    glr_threshold,
    noise_suspect_sigma_pa,
    pa_per_count,
    rise_detector,
)
from firmware_sim.controller.loops import PressureThrottle, Relief, ViscosityEstimator
from firmware_sim.controller.motion import (
    JOGGING,
    MOVING,
    PRIMING,
    WITHDRAWING,
    Movement,
    MoveRequest,
    at_home_counts,
    check_home,
    check_jog,
    check_prime,
    check_withdraw,
    home_counts,
)
from firmware_sim.controller.syringes import MountedSyringe, check_syringe, pressure_ceiling_pa, stroke_m
from firmware_sim.controller.telemetry import TelemetryBuffer
from firmware_sim.hal import REFERENCE_RIG, Hardware, MotorCommand, SensorFrame
from protocol.codec import PROTOCOL_VERSION, Frame, Rejected, RejectReason, is_command_type
from protocol.enums import (
    AlarmCode,
    BusyDetail,
    Capabilities,
    EventKind,
    Flags,
    Mode,
    MsgType,
    NakCode,
    ResetCause,
    State,
    StopDetail,
    StopReason,
    StopSource,
)
from protocol.messages import (
    REGISTRY,
    Ack,
    Arm,
    CalibrateSpan,
    CalibrateVolume,
    CalibrationInfo,
    Clear,
    Command,
    DeviceInfo,
    Event,
    GetCalibration,
    GetMotion,
    GetStatus,
    Heartbeat,
    Hello,
    Home,
    Jog,
    Message,
    MotionStatus,
    Nak,
    Pause,
    Prime,
    Resume,
    SetLimits,
    SetSyringe,
    SetTelemetry,
    Start,
    Status,
    Stop,
    SyringeInfo,
    Withdraw,
    Zero,
)
from protocol.telemetry import MAX_BATCH_SAMPLES, MAX_DIVIDER

# States as plain ints on the hot path; the enum members only at the message boundary.
IDLE, ARMED, INJECTING, PAUSED, STOPPED, DONE, FAULT = tuple(int(s) for s in State)[:7]
_STATE = tuple(State)
_LATCHED = (STOPPED, FAULT)
_RUNNING = (ARMED, INJECTING, PAUSED, *MOVING)
_NOTICES = (AlarmCode.LIMIT_CLAMPED, AlarmCode.RELIEF_AT_LIMIT, AlarmCode.RELIEF_INCOMPLETE)
"""One-shot alarms: sent every time, never followed by ALARM_CLEARED (SPEC §6.7)."""
"""States that a latched stop moves to STOPPED."""
_TAKEN = (INJECTING, PAUSED, *MOVING)
"""States a HELLO stops first (SESSION_TAKEN): a new session never inherits a moving plunger."""
_MOTION_TYPES = frozenset({MsgType.PRIME, MsgType.JOG, MsgType.WITHDRAW, MsgType.HOME, MsgType.GET_MOTION})
# The movements answered with a MOTION_STATUS (JOG has no reply): a cached retry rebuilds that (§7.2).
_MOTION_STATUS_REPLIED = frozenset({MsgType.PRIME, MsgType.WITHDRAW, MsgType.HOME, MsgType.GET_MOTION})

_F_THROTTLING = int(Flags.THROTTLING)
_F_RELIEF = int(Flags.RELIEF_ACTIVE)
_F_FLUORO = int(Flags.FLUORO_LINE)
_F_SENSOR = int(Flags.SENSOR_FAULT)
_F_LINK = int(Flags.HOST_LINK_OK)
_F_EOT = int(Flags.END_OF_TRAVEL)
_F_MOVING = int(Flags.MOTOR_MOVING)
_F_VISC = int(Flags.VISCOSITY_VALID)
_F_WT = int(Flags.WORKING_TIME_WARNING)
_F_SIM = int(Flags.SIMULATED)
_F_STALL = int(Flags.STALL_SUSPECT)
_F_HOME = int(Flags.AT_HOME)

_SESSIONLESS = frozenset({MsgType.HELLO, MsgType.GET_STATUS, MsgType.STOP})
"""Commands accepted before a HELLO (HEARTBEAT is not a command: it is never answered)."""
_HOST_SOURCES = frozenset(
    {
        StopSource.OPERATOR,
        StopSource.FLUORO_OPERATOR,
        StopSource.FLUORO_REMOTE,
        StopSource.REMOTE,
        StopSource.FLUORO_IMAGE,
    }
)
_FLUORO_SOURCES = frozenset({StopSource.FLUORO_OPERATOR, StopSource.FLUORO_REMOTE, StopSource.FLUORO_IMAGE})
_IMAGE_DETAILS = frozenset(
    {StopDetail.POSTERIOR_QUARTER, StopDetail.EXTRAVASATION, StopDetail.VENOUS_FILLING, StopDetail.IMAGE_LOST}
)
"""The STOP details a host may name, and only with source FLUORO_IMAGE (SPEC §5.6)."""


def _enum_maxima() -> dict[tuple[int, int], int]:
    """(command type, field index) -> largest defined value, for the detail of a NAK BAD_PARAM that
    answers an undefined enum value (SPEC §6.5)."""
    table: dict[tuple[int, int], int] = {}
    for msg_type, cls in REGISTRY.items():
        if not is_command_type(msg_type):
            continue
        hints = typing.get_type_hints(cls)
        for index, f in enumerate(dataclasses.fields(cls)):  # type: ignore[arg-type]
            hint = hints[f.name]
            if isinstance(hint, type) and issubclass(hint, IntEnum) and not issubclass(hint, IntFlag):
                table[msg_type, index] = max(int(m) for m in hint)
    return table


_ENUM_MAX = _enum_maxima()

_I32 = 0x7FFF_FFFF
_Q16 = 1 << 16
_FL_PER_NL = 1_000_000
_NO_FIELD = 0xFF


def _i32(x: float) -> int:
    """A float as a wire int32, saturated."""
    if x != x:
        return 0
    return -_I32 if x < -_I32 else (_I32 if x > _I32 else int(x))


@dataclass(slots=True)
class TickOutput:
    """What one tick hands the runtime: the step generator setpoint and the messages to send (the
    runtime adds header and sequence numbers and frames them). Owned by the controller and reused:
    valid until the next tick."""

    motor: MotorCommand
    outgoing: list[Message]


Replies = Message | tuple[Message, ...] | None
Answer = tuple[Replies, Message]
"""(reply, or replies, sent just before the answer, or None; the ACK or NAK)."""
Handler = Callable[[Any], Answer]


class Controller:
    """The injection controller firmware core (see the module docstring)."""

    def __init__(
        self,
        config: ControllerConfig | None = None,
        hardware: Hardware = REFERENCE_RIG,
        identity: FirmwareIdentity = DEFAULT_IDENTITY,
        reset_cause: ResetCause = ResetCause.POWER_ON,
        real: Callable[[float], float] = float,
        setup: DeviceSetup | None = None,
    ) -> None:
        """`real` makes the core's real numbers: `float` (double) here; a test passes
        `numpy.float32` to run every state variable, input and derived constant in single
        precision, as on a microcontroller with a single-precision FPU (NumPy keeps an operation
        with one float32 operand in float32), and checks that the decisions stay the same.

        `setup`: the syringe and calibration the device stored before this power-up (the runtime
        reads them from its non-volatile store; `setup` and `setup_version` tell it when to write)."""
        cfg = config if config is not None else ControllerConfig()
        self.config = cfg
        self._real = real
        self.hardware = hardware
        self.identity = identity
        self.reset_cause = reset_cause
        hw = hardware

        # -- derived constants -------------------------------------------------------------
        self._tick_us = 1_000_000 // cfg.sample_rate_hz
        dt = 1.0 / cfg.sample_rate_hz
        self._dv = real(hw.max_step_accel_hz_s * dt)
        """Largest step-rate change per tick."""
        self._counts_per_nstep = real(1e-9 * hw.plunger_m_per_step / hw.encoder_m_per_count)
        """Encoder counts per 1e-9 step: the unit of `_cmd_nsteps`."""
        self._um_per_step = hw.plunger_m_per_step * 1e6
        self._counts_per_step_tick = real(dt * hw.plunger_m_per_step / hw.encoder_m_per_count)
        """Encoder counts one period at 1 step/s moves the plunger (the braking distance's unit)."""
        stored = setup if setup is not None else DeviceSetup()
        self._syringe: MountedSyringe | None = stored.syringe
        self._cal: Calibration = stored.calibration
        self._setup_version = 0
        """Incremented by every accepted SET_SYRINGE / ZERO / CALIBRATE_*: the runtime persists `setup`."""
        self._zero_check_due = True
        """The line is presumed open to the air: from power-up, SET_SYRINGE or ZERO until a plan first
        moves the plunger forward (INJECTING) or a PRIME or JOG starts. The first ARM of such a line
        gets the zero check; a re-ARM after CLEAR continues on a line that may still hold cement under
        pressure."""
        self._cal_offset = real(self._cal.zero_offset_pa)
        self._cal_gain = real(self._cal.span_gain_ppm / 1_000_000)
        self._end_counts = usable_stroke_counts(cfg, hw, stroke_m(self._syringe, hw))
        """End of the usable stroke, encoder counts from home: END_OF_TRAVEL brings the plunger to
        rest on or just past it; DEVICE_INFO reports it as `travel_um`."""
        self._home_counts = home_counts(cfg, hw)
        """Home position, counts: backward movements come to rest on or in front of it."""
        self._at_home_counts = at_home_counts(cfg, hw)
        """On or behind this the plunger is AT_HOME (flag; backward movements refused)."""
        self._block_n = cfg.block_samples
        self._block_s = real(cfg.block_samples * dt)
        self._alpha = cfg.pressure_filter_alpha

        # -- detectors and loops -----------------------------------------------------------
        self._loss_noise = glr_threshold(
            cfg.rise_false_alarms_per_h, cfg.sample_rate_hz / cfg.block_samples, 1
        ) * math.sqrt(2.0 / cfg.block_samples)
        """PRESSURE_LOSS's statistical floor per Pa of noise sigma: c sqrt(2 / block)."""
        mean_dp = 2.0 / math.sqrt(math.pi)  # mean |p[k] - p[k-1]| of white noise per Pa of sigma
        suspect_pa = noise_suspect_sigma_pa(cfg) * mean_dp
        fault_pa = cfg.sensor_noise_spec_pa * cfg.sensor_noise_fault_factor * mean_dp
        if not fault_pa > suspect_pa:
            raise ValueError(
                f"ControllerConfig.sensor_noise_fault_factor {cfg.sensor_noise_fault_factor!r} puts the "
                f"noise fault ({fault_pa / mean_dp:.0f} Pa sigma) at or below the SENSOR_SUSPECT level "
                f"the budget sets ({suspect_pa / mean_dp:.0f} Pa sigma)"
            )
        self._sensor = SensorMonitor(
            hw,
            cfg.sensor_range_samples,
            cfg.sensor_stuck_samples,
            fault_pa,
            suspect_pa,
            cfg.sensor_noise_alpha,
            cfg.sensor_noise_samples,
            cfg.sensor_clear_samples,
            cfg.sensor_noise_spec_pa / pa_per_count(hw),
            cfg.sensor_sigma_shift,
            cfg.sensor_false_alarms_per_h,
            cfg.sample_rate_hz,
        )
        self._history = BlockHistory(HISTORY_BLOCKS)
        self._overpressure = OverpressureDetector(cfg.overpressure_samples)
        self._rise = rise_detector(cfg, hw)
        self._rise.set_span(self._cal.span_gain_ppm / 1_000_000)
        self._rise_on = cfg.rise_enabled
        self._outlier_per_sigma = self._rise.c * math.sqrt(6.0)
        """A second difference beyond c sqrt(6) sigma is implausible for the noise model."""
        self._sensor.quiet_samples = RISE_RING
        self._loss = PressureLossDetector(
            cfg.loss_min_pa, cfg.loss_frac, cfg.loss_arm_pa, cfg.loss_trip_blocks
        )
        stall_blocks = max(1, -(-cfg.stall_ms * cfg.sample_rate_hz // (1000 * cfg.block_samples)))
        self._stall = StallDetector(cfg.stall_tolerance_m / hw.encoder_m_per_count, stall_blocks)
        self._travel = TravelGuard(hw, cfg.travel_margin_m, cfg.home_margin_m)
        self._fluoro = Debouncer(cfg.fluoro_debounce_samples, cfg.fluoro_release_samples)
        self._watchdog = Watchdog(cfg.watchdog_ms * 1000)
        self._age = WorkingTimeMonitor(cfg.working_time_warning_frac)
        self._delivery = DeliveryMonitor()
        self._throttle = PressureThrottle(
            cfg.throttle_margin_frac, cfg.throttle_band_frac, cfg.throttle_ti_s, dt
        )
        self._viscosity = ViscosityEstimator(
            cfg.viscosity_min_flow_nl_s * 1e-12,
            cfg.viscosity_min_pa,
            cfg.viscosity_steady_rel_per_s,
            cfg.viscosity_filter_alpha,
        )
        visc_blocks = max(1, cfg.viscosity_out_ms * cfg.sample_rate_hz // (1000 * cfg.block_samples))
        self._visc_window = ViscosityWindowDetector(visc_blocks)
        relief_hz = min(cfg.relief_speed_m_s / hw.plunger_m_per_step, hw.max_step_rate_hz)
        self._relief = Relief(
            relief_hz,
            cfg.relief_max_m / hw.encoder_m_per_count,
            cfg.relief_blind_m / hw.encoder_m_per_count,
            cfg.relief_timeout_ms * 1000,
        )
        self._telemetry = TelemetryBuffer(cfg.telemetry_batch_samples, cfg.telemetry_divider * self._tick_us)
        self._cache = CommandCache()

        # -- state -----------------------------------------------------------------------
        self._state = IDLE
        self._stop_reason = StopReason.NONE
        self._stop_source = StopSource.NONE
        self._flags = _F_SIM if identity.capabilities & Capabilities.SIMULATOR else 0
        self._alarms = 0
        """Bit (1 << AlarmCode) per active alarm."""
        self._powered = False
        self._now_us = 0
        self._index = 0
        """1 kHz sample index since power-up."""
        self._event_index = 0
        self._out: list[Message] = []
        self._output = TickOutput(MotorCommand(0.0), self._out)

        self._pf = real(0.0)
        """Filtered pressure, Pa."""
        self._enc = 0
        self._end_switch = False
        self._bsum = 0.0
        self._bn = 0
        self._p_block = 0.0
        self._flow_meas_nl_s = 0
        self._sensor_faulty = False
        self._fluoro_line = False
        self._fluoro_raw = False
        """The fluoroscopy line's raw level at the previous sample."""
        self._fluoro_raw_us = 0
        """Time of the first asserted sample of the line's current high run (EVENT STOP detail)."""

        self._rate = real(0.0)
        """Step rate commanded for the current period (steps/s, forward positive)."""
        self._rate_brake = self._braking_counts(self._rate)
        """`_braking_counts(_rate)`, kept from the tick that set the rate (`_rate_changed`)."""
        self._rate_nsteps = round(self._rate * 1000.0) * self._tick_us
        """The 1e-9 steps one period at `_rate` commands (`_cmd_nsteps`' increment)."""
        self._motor_um_s = 0
        self._cmd_nsteps = 0
        """Steps commanded since the plunger was last at rest, in 1e-9 steps: the integer sum of
        (rate in mHz x tick in us) per tick. Exact whatever the run time (a float sum of the
        expected position drifted past the stall tolerance in single precision: MOTOR_STALL after
        ~3 min at 1 mL/min); only the difference to the encoder is ever converted to counts."""
        self._rest_enc = 0
        """Encoder position when the plunger was last at rest."""

        self._plan: Plan | None = None
        self._limits = Limits(
            cfg.default_soft_limit_pa, cfg.default_hard_limit_pa, cfg.default_relief_pa, cfg.max_flow_nl_s
        )
        self._hard = real(cfg.default_hard_limit_pa)
        self._setpoint_rate = 0.0
        """Flow setpoint in force as a step rate."""
        self._flow_plan_nl_s = 0
        self._ceiling_stall_nl_s = 0.0
        self._nl_per_count = 0.0
        self._m3_per_count = 0.0
        self._fl_per_count = 0
        """Plan's bore volume of one encoder count in femtolitres (1e-6 nL): the fixed-point factor
        of `delivered_nl`, so the delivered volume is an integer product, never a float sum."""
        self._origin = 0
        self._high_counts = 0
        """High-water mark of the plunger's forward displacement since ARM, encoder counts (>= 0):
        the relief back-off lowers the position but never this, and its re-advance adds nothing."""
        self._um_per_count_q = round(hw.encoder_m_per_count * 1e6 * _Q16)
        """Encoder count in um, Q16 fixed point (plunger position without floating point)."""
        self._phase_ref_pa = 0.0
        """Operating pressure when the plan's last injection phase ended (PRESSURE_RISE arming)."""
        self._steady_blocks = 0
        self._loss_blocks = 0
        self._ceiling_blocks = 0
        self._ceiling_stall_blocks = max(
            1, cfg.ceiling_stall_ms * 1000 // (cfg.block_samples * self._tick_us)
        )
        self._throttle_quiet_us = 0
        self._throttle_clear_us = cfg.throttle_clear_ms * 1000

        self._move: Movement | None = None
        """The movement in force (states PRIMING .. HOMING), or the last one, for MOTION_STATUS."""

        self._session = False
        self._hb_period_us = cfg.watchdog_ms * 500
        self._hb_last_us = 0
        self._hb_sent = False
        self._tm_divider = cfg.telemetry_divider
        self._tm_countdown = 1

        self._handlers: dict[type[Message], Handler] = {
            Hello: self._on_hello,
            Arm: self._on_arm,
            Start: self._on_start,
            Pause: self._on_pause,
            Resume: self._on_resume,
            Stop: self._on_stop,
            Clear: self._on_clear,
            SetLimits: self._on_set_limits,
            GetStatus: self._on_get_status,
            SetTelemetry: self._on_set_telemetry,
            Prime: self._on_prime,
            Jog: self._on_jog,
            Withdraw: self._on_withdraw,
            Home: self._on_home,
            GetMotion: self._on_get_motion,
            SetSyringe: self._on_set_syringe,
            Zero: self._on_zero,
            CalibrateSpan: self._on_calibrate_span,
            CalibrateVolume: self._on_calibrate_volume,
            GetCalibration: self._on_get_calibration,
        }
        self._limits = self._clamped_to_ceiling(self._limits)
        self._apply_limits()

    # =====================================================================================
    # read-only view for the runtime and tests
    # =====================================================================================
    @property
    def state(self) -> State:
        return _STATE[self._state]

    @property
    def stop_reason(self) -> StopReason:
        return self._stop_reason

    @property
    def stop_source(self) -> StopSource:
        return self._stop_source

    @property
    def rise_armed(self) -> bool:
        """The occlusion (PRESSURE_RISE) detector is armed: the detector sweep reports when it armed."""
        return self._rise.armed

    @property
    def pressure_pa(self) -> float:
        """Filtered syringe pressure (invalid while `flags` has SENSOR_FAULT)."""
        return self._pf

    @property
    def delivered_nl(self) -> int:
        """Cement delivered since ARM, nL: the high-water mark of the plunger's forward displacement
        since ARM times the plan's bore area. Reset to 0 at ARM and never decreases: the relief
        back-off and its re-advance do not count. Kept after CLEAR until the next ARM."""
        return self._high_counts * self._fl_per_count // _FL_PER_NL

    @property
    def plunger_um(self) -> int:
        """Plunger position from home, um, forward positive (0 .. the stroke), from the encoder."""
        return self._enc * self._um_per_count_q >> 16

    @property
    def volume_m3(self) -> float:
        """`delivered_nl` in m3 (for benchmarks and tests that work in SI units)."""
        return self.delivered_nl * 1e-12

    @property
    def flags(self) -> Flags:
        return Flags(self._flags)

    @property
    def step_rate_hz(self) -> float:
        return self._rate

    @property
    def session_open(self) -> bool:
        return self._session

    @property
    def relief_active(self) -> bool:
        return self._relief.active

    @property
    def sensor_faulty(self) -> bool:
        return self._sensor_faulty

    @property
    def viscosity_pas(self) -> float:
        """Last valid viscosity estimate of the plan, NaN if none."""
        return self._viscosity.last

    @property
    def active_alarms(self) -> frozenset[AlarmCode]:
        return frozenset(a for a in AlarmCode if a and self._alarms >> a & 1)

    @property
    def event_count(self) -> int:
        return self._event_index

    @property
    def sample_index(self) -> int:
        return self._index

    @property
    def limits(self) -> Limits:
        """Limits in force (those of the plan once armed, as changed by SET_LIMITS)."""
        return self._limits

    @property
    def increments_done(self) -> int:
        return self._delivery.increments_done

    @property
    def setup(self) -> DeviceSetup:
        """MountedSyringe and calibration in force: what the device keeps across power cycles."""
        return DeviceSetup(self._syringe, self._cal)

    @property
    def setup_version(self) -> int:
        """Changes whenever `setup` does (an accepted SET_SYRINGE, ZERO or CALIBRATE_*)."""
        return self._setup_version

    # =====================================================================================
    # the tick
    # =====================================================================================
    def tick(
        self,
        now_us: int,
        sensors: SensorFrame,
        received: Sequence[Frame | Rejected],
        host_connected: bool = True,
    ) -> TickOutput:
        # The hot path of the simulator (sim_speed, every sweep run): attribute reads are hoisted
        # into locals, the common no-change cases of the small detectors are tested inline, and
        # what depends only on the step rate is kept from the tick that set it (`_rate_changed`).
        # Every decision, and its order, is that of the plain version (tests/controller/
        # determinism.py pins the output byte for byte).
        out = self._out
        if out:
            out = self._out = []
            self._output.outgoing = out
        self._now_us = now_us
        if not self._powered:
            self._powered = True
            self._event(EventKind.POWER_UP, detail=int(self.reset_cause))

        # 1. sensors -----------------------------------------------------------------------
        rate = self._rate
        sensor = self._sensor
        p = sensor.sample(sensors.pressure_adc, rate != 0.0)
        real = self._real
        if real is not float:  # float() of a float is the float itself
            p = real(p)
        p = (p - self._cal_offset) * self._cal_gain
        adc = sensor.adc
        if adc >= 0:
            rise = self._rise
            test = rise.test
            test.push(adc)
            # PRESSURE_RISE's per-sample test, before this tick's block (whose SENSOR_SUSPECT alarm
            # must precede a noise fault taken on the slope, see `_rise_stop`)
            if self._rise_on and rise.armed:
                st = self._state
                if (
                    st == INJECTING or (st in MOVING and self._move is not None and self._move.forward)
                ) and test.exceeded():
                    self._rise_stop()
        faulty = sensor.faulty
        if faulty is not self._sensor_faulty:
            self._on_sensor_fault_change(faulty)
        pf = self._pf + self._alpha * (p - self._pf)
        self._pf = pf
        enc = sensors.encoder_counts
        self._enc = enc
        if self._plan is not None and enc - self._origin > self._high_counts:
            self._high_counts = enc - self._origin
        switch = sensors.end_of_travel
        self._end_switch = switch
        # every tick, before the detectors: a STOP END_OF_TRAVEL taken this tick, and this tick's sample,
        # carry the flag (flag, stop and START refusal agree from the same tick, SPEC §8.5; `_at_end`)
        flags = self._flags
        flags = flags | _F_EOT if switch or enc >= self._end_counts else flags & ~_F_EOT
        self._flags = flags | _F_HOME if enc <= self._at_home_counts else flags & ~_F_HOME
        line_in = sensors.fluoro_stop_line
        if line_in and not self._fluoro_raw:
            self._fluoro_raw_us = (
                now_us & 0xFFFF_FFFF
            )  # first asserted sample of this run: the stop's latency origin
        self._fluoro_raw = line_in
        fluoro = self._fluoro
        if line_in != fluoro.state or fluoro.run:  # else `update` would change nothing
            fluoro.update(line_in)
        if fluoro.state is not self._fluoro_line:
            self._on_fluoro_change()
        self._bsum += p
        bn = self._bn + 1
        self._bn = bn
        if bn >= self._block_n:
            self._block(enc)

        # 2. host ------------------------------------------------------------------------------
        if received:
            self._receive(received)
        if self._session:
            watchdog = self._watchdog
            if not host_connected or (
                watchdog.armed and (now_us - watchdog.last_us) & 0xFFFF_FFFF > watchdog.timeout_us
            ):  # `Watchdog.expired`, inline
                self._host_lost()

        # 3. per-sample detectors ---------------------------------------------------------------
        st = self._state
        if st == INJECTING:
            hard = self._hard
            overpressure = self._overpressure
            if (pf >= hard or overpressure.run) and overpressure.update(pf, hard):
                self._latch(StopReason.OVERPRESSURE)
            else:
                # Anticipation (SPEC §8.5): where the plunger comes to rest if it brakes from now on.
                rest = enc - self._origin + self._rate_brake
                if switch:
                    self._latch(StopReason.END_OF_TRAVEL)
                elif rest >= self._delivery.target_counts:
                    self._on_mark(rest)
                elif rest + self._origin >= self._end_counts:
                    self._latch(StopReason.END_OF_TRAVEL)
        elif st == PAUSED:
            if self._overpressure.update(pf, self._hard):
                self._latch(StopReason.OVERPRESSURE)
        elif st in MOVING:
            self._motion_checks(pf, enc, rate, switch)

        # 4. motion ----------------------------------------------------------------------------
        st = self._state
        if st == INJECTING:
            target = self._setpoint_rate
            throttle = self._throttle
            if pf > throttle.band_low_pa or throttle.integral or self._flags & _F_THROTTLING:
                target *= self._throttle_step(pf)
        elif st in MOVING:
            target = self._motion_target(pf)
        elif self._relief.active:
            target = self._relief_step(enc, rate)
        else:
            target = 0.0
        if target > rate:
            new = rate + self._dv
            if new > target:
                new = target
        elif target < rate:
            new = rate - self._dv
            if new < target:
                new = target
        else:
            new = rate
        if new != rate:
            self._rate_changed(new)
        if new == 0.0:
            self._cmd_nsteps = 0
            self._rest_enc = enc
            if st in MOVING and self._move is not None and self._move.ending:
                self._end_motion(enc)
        else:
            self._cmd_nsteps += self._rate_nsteps

        # 5. telemetry (while a session is open), heartbeat (always) --------------------------
        if self._session and self._tm_divider:
            c = self._tm_countdown - 1
            if c <= 0:
                c = self._tm_divider
                # the wire's int32 fields as `_i32` makes them (inline where in range) and
                # `_commanded_flow_nl_s` in INJECTING
                delivered = self._high_counts * self._fl_per_count // _FL_PER_NL
                plunger = enc * self._um_per_count_q >> 16
                flags = self._flags
                st = self._state
                batch = self._telemetry.add(
                    now_us,
                    int(pf) if -_I32 <= pf <= _I32 else _i32(pf),
                    delivered if -_I32 <= delivered <= _I32 else _i32(delivered),
                    plunger if -_I32 <= plunger <= _I32 else _i32(plunger),
                    self._flow_meas_nl_s,
                    int(self._flow_plan_nl_s * self._throttle.fraction)
                    if st == INJECTING
                    else self._commanded_flow_nl_s(),
                    self._motor_um_s,
                    self._viscosity.last if flags & _F_VISC else math.nan,
                    flags,
                    st,
                    self._stop_reason,
                )
                if batch is not None:
                    out.append(batch)
            self._tm_countdown = c
        if not self._hb_sent or (now_us - self._hb_last_us) & 0xFFFF_FFFF >= self._hb_period_us:
            self._hb_sent = True
            self._hb_last_us = now_us & 0xFFFF_FFFF
            out.append(Heartbeat(uptime_ms=(now_us // 1000) & 0xFFFF_FFFF, state=_STATE[self._state]))
        self._index += 1
        return self._output

    def _rate_changed(self, new: float) -> None:
        """The step rate for the next period changed: the motor command, and what depends only on
        the rate, kept until it changes again (the rate changes only here)."""
        self._rate = new
        self._output.motor = MotorCommand(float(new))
        self._motor_um_s = int(new * self._um_per_step)
        self._rate_brake = self._braking_counts(new)
        self._rate_nsteps = round(new * 1000.0) * self._tick_us
        if new == 0.0:
            self._flags &= ~_F_MOVING
        else:
            self._flags |= _F_MOVING

    # =====================================================================================
    # per-block work (every block_samples ticks)
    # =====================================================================================
    def _block(self, enc: int) -> None:
        cfg = self.config
        pmean = self._bsum / self._bn
        self._bsum = 0.0
        self._bn = 0
        self._p_block = pmean
        rate = self._rate
        hist = self._history
        hist.push(pmean, enc, rate)
        st = self._state
        block_s = self._block_s
        m3_per_count = self._m3_per_count

        # hist.full(k) and hist.ago(k), inline: count > k, (pos - k) & mask
        count, pos, mask = hist.count, hist.pos, hist.mask
        wl = cfg.loss_window_blocks
        if count > wl:
            then = (pos - wl) & mask
            self._flow_meas_nl_s = _i32((enc - hist.encoder[then]) * m3_per_count * 1e12 / (wl * block_s))

        lag = self._cmd_nsteps * self._counts_per_nstep - (enc - self._rest_enc)
        if self._stall.update(lag) and (st == INJECTING or st in MOVING):
            self._latch(StopReason.MOTOR_STALL)
        self._set_flag(_F_STALL, self._stall.suspect)
        self._sensor.judge_stuck()
        if self._sensor.suspect is not bool(self._alarms >> AlarmCode.SENSOR_SUSPECT & 1):
            self._alarm(AlarmCode.SENSOR_SUSPECT, self._sensor.suspect)

        if self._plan is not None:
            age = self._age.update(self._now_us)
            if age == AGE_EXPIRED:
                if self._state in _RUNNING:
                    self._latch(StopReason.WORKING_TIME)
            elif age == AGE_WARNING and not self._flags & _F_WT:
                self._flags |= _F_WT
                left = self._age.working_time_ms - self._age.age_ms(self._now_us)
                self._alarm(AlarmCode.WORKING_TIME_WARNING, True, left)

        st = self._state
        forward_move = st in MOVING and self._move is not None and self._move.forward
        if st != INJECTING and not forward_move:
            return
        setpoint = self._setpoint_rate
        injecting = st == INJECTING
        if rate >= cfg.loss_flow_frac * setpoint and rate > 0.0:
            self._loss_blocks += 1
        else:
            self._loss_blocks = 0

        w = cfg.rise_window_blocks
        sensor = self._sensor
        if cfg.rise_enabled and count > w:
            then = (pos - w) & mask
            slope = (pmean - hist.pressure[then]) / (w * block_s)
            rising = rate - hist.rate[then] > cfg.rise_flow_tolerance * setpoint
            sigma = self._rise.update(slope, pmean, rising, sensor.sigma_counts())
            sensor.outlier_counts = int(self._outlier_per_sigma * sigma)
        if injecting and cfg.loss_enabled and count > wl:
            then = (pos - wl) & mask
            noise = self._loss_noise * sensor.sigma_counts() * sensor.gain * self._cal_gain
            if self._loss.update(hist.pressure[then], pmean, self._loss_blocks > wl, noise):
                self._latch(StopReason.PRESSURE_LOSS)
                return
        if cfg.ceiling_stall_enabled:
            if self._flags & _F_THROTTLING and self._flow_meas_nl_s < self._ceiling_stall_nl_s:
                self._ceiling_blocks += 1
                if self._ceiling_blocks >= self._ceiling_stall_blocks:
                    self._latch(StopReason.PRESSURE_RISE, detail=StopDetail.NO_FLOW_AT_CEILING)
                    return
            else:
                self._ceiling_blocks = 0
        if injecting and cfg.viscosity_enabled:
            self._viscosity_block(pmean, enc, rate)

    def _rise_stop(self) -> None:
        """PRESSURE_RISE's slope test alarmed. While the sensor monitor suspects noise (mean |dp|
        above 4x the specified noise: SENSOR_SUSPECT, once that alarm is out) the slope is made of
        noise, not of a blocked line (a real rise is Q/C, a few kPa per sample, far below what lifts
        that mean): the sensor is declared faulty and the stop is the monitor's own SENSOR_FAULT
        stop, same path (flag SENSOR_FAULT, blind relief, CLEAR refused until the sensor is quiet).
        While an implausible second difference is in the test's windows (`SensorMonitor.outliers`)
        the alarm is ignored: a corrupt sample is not a rise. Not PRESSURE_LOSS: a
        disconnection's own fall is steps of up to ~1 MPa per sample, which lift that mean past the
        suspect level by themselves, so the rule would record real disconnections as sensor faults."""
        sensor = self._sensor
        if sensor.cause & SENSOR_NOISE:
            if not self._alarms >> AlarmCode.SENSOR_SUSPECT & 1:
                return  # the SENSOR_SUSPECT alarm goes out at the next block, the stop after it
            sensor.declare_fault(SENSOR_NOISE)
            self._on_sensor_fault_change(True)
        elif not sensor.outliers:
            self._latch(StopReason.PRESSURE_RISE)
        # else: an implausible second difference is in the windows (a corrupt sample, or a noise
        # burst the monitor has not judged yet): the slope is not the pressure's; no stop on it.

    def _viscosity_block(self, pmean: float, enc: int, rate: float) -> None:
        cfg = self.config
        hist = self._history
        pos, mask = hist.pos, hist.mask  # hist.ago(k), inline: (pos - k) & mask
        prev = hist.rate[(pos - 1) & mask]
        tolerance = cfg.viscosity_flow_steady_frac * rate
        if rate > 0.0 and abs(rate - prev) <= tolerance:
            self._steady_blocks += 1
        else:
            self._steady_blocks = 0
        w = cfg.viscosity_window_blocks
        valid = False
        if self._steady_blocks > w:
            then = (pos - w) & mask
            span = w * self._block_s
            steady = abs(rate - hist.rate[then]) <= tolerance
            flow = (enc - hist.encoder[then]) * self._m3_per_count / span
            slope = (pmean - hist.pressure[then]) / span
            valid = self._viscosity.update(pmean, slope, flow, steady)
        else:
            self._viscosity.valid = False
        self._set_flag(_F_VISC, valid)
        plan = self._plan
        assert plan is not None
        mu = self._viscosity.last
        lo, hi = plan.viscosity_min_pas, plan.viscosity_max_pas
        if valid:
            margin = cfg.viscosity_alarm_margin
            self._alarm(AlarmCode.VISCOSITY_HIGH, mu >= hi * (1.0 - margin))
            self._alarm(AlarmCode.VISCOSITY_LOW, mu <= lo * (1.0 + margin))
        if self._visc_window.update(valid, mu, lo, hi):
            self._latch(StopReason.VISCOSITY_WINDOW)

    # =====================================================================================
    # motion helpers
    # =====================================================================================
    def _throttle_step(self, pf: float) -> float:
        throttle = self._throttle
        if not self.config.throttle_enabled:
            return 1.0
        fraction = throttle.update(pf)
        if throttle.active:
            self._throttle_quiet_us = self._now_us & 0xFFFF_FFFF
            if not self._flags & _F_THROTTLING:
                self._flags |= _F_THROTTLING
                self._alarm(AlarmCode.PRESSURE_THROTTLE, True, int(fraction * self._flow_plan_nl_s))
        elif (
            self._flags & _F_THROTTLING
            and elapsed_us(self._now_us, self._throttle_quiet_us) >= self._throttle_clear_us
        ):
            self._throttle_clear()
        return fraction

    def _throttle_clear(self) -> None:
        if self._flags & _F_THROTTLING:
            self._flags &= ~_F_THROTTLING
            self._alarm(AlarmCode.PRESSURE_THROTTLE, False)

    def _relief_step(self, enc: int, rate: float) -> float:
        """Target step rate while relief runs; RELIEF_DONE once it has ended and the plunger is still."""
        relief = self._relief
        if not relief.ending:
            home = rate <= 0.0 and self._home_ahead(enc, -rate, relief.speed_hz)
            target = relief.update(
                enc,
                self._now_us,
                self._pf,
                self._limits.relief_pa,
                not self._sensor_faulty,
                self._stall.suspect,
                at_home=home,
            )
            if not relief.ending:
                return target
        if rate == 0.0:
            notice = (
                AlarmCode.RELIEF_AT_LIMIT
                if relief.at_limit
                else AlarmCode.RELIEF_INCOMPLETE
                if relief.cut_short
                else None
            )
            self._end_relief()
            if notice is not None and not self._sensor_faulty and self._pf >= self._limits.relief_pa:
                # the line is still pressurised at rest: the host must know (SPEC §6.7, §8.4)
                self._alarm(notice, True, _i32(self._pf))
        return 0.0

    # =====================================================================================
    # movements: PRIME, JOG, WITHDRAW, HOME (SPEC §8.6; command checks in motion.py)
    # =====================================================================================
    def _motion_checks(self, pf: float, enc: int, rate: float, switch: bool) -> None:
        """Per-sample limits of a movement, in the order of SPEC §8.6: OVERPRESSURE in every
        movement; forward: the limit switch (END_OF_TRAVEL), then, anticipated as in §8.5, the
        prime's mark (its end), the usable end (END_OF_TRAVEL; a forward JOG ends there);
        backward: home, anticipated one period early so the plunger never rests behind it, and
        the withdraw's mark; JOG: the grant, anticipated by the braking time."""
        move = self._move
        assert move is not None
        if self._overpressure.update(pf, self._hard):
            self._latch(StopReason.OVERPRESSURE)
            return
        move.track(enc)
        if move.forward:
            if switch:
                self._latch(StopReason.END_OF_TRAVEL)
                return
            if move.ending:
                return
            rest = enc + self._braking_counts(rate)
            if move.kind == PRIMING and rest - move.origin >= move.target_counts:
                move.ending = True
            elif rest >= self._end_counts:
                if move.kind != JOGGING:
                    self._latch(StopReason.END_OF_TRAVEL)
                    return
                move.ending = move.at_limit = True
        elif not move.ending:
            # Home is anticipated one period early: braking from the next period's rate (one dv
            # faster while still accelerating) after that period's travel, plus a count, must still
            # rest in front of it; else brake now.
            speed = -rate
            rest = enc - self._braking_counts(speed)
            target = move.target_counts
            if self._home_ahead(enc, speed, -move.rate) or (target > self._home_counts and rest <= target):
                move.ending = True
                move.at_limit = move.kind == JOGGING
        if move.kind == JOGGING and not move.ending:
            brake_us = math.ceil(abs(rate) / self._dv) * self._tick_us
            if elapsed_us(self._now_us, move.granted_at_us) + brake_us >= move.grant_us:
                move.ending = True

    def _home_ahead(self, enc: int, speed: float, top: float) -> bool:
        """Must a backward movement or relief at `speed` (steps/s, >= 0, over the period just ended;
        at most `top`) brake now to rest on or in front of home? Braking from the next period's
        rate after that period's travel, plus a count, must still rest in front of it (SPEC §8.6
        'Home': anticipated one period early)."""
        nxt = max(speed, min(speed + self._dv, top))
        early = enc - self._braking_counts(nxt) - nxt * self._counts_per_step_tick - 1
        return early <= self._home_counts

    def _motion_target(self, pf: float) -> float:
        """Step rate a movement asks for: 0 once it has reached its end; forward, the pressure loop
        throttles it at the soft limit exactly as an injection."""
        move = self._move
        assert move is not None
        if move.ending:
            return 0.0
        target = move.rate
        if target > 0.0:
            throttle = self._throttle
            if pf > throttle.band_low_pa or throttle.integral or self._flags & _F_THROTTLING:
                target *= self._throttle_step(pf)
        return target

    def _end_motion(self, enc: int) -> None:
        """The movement's normal end, plunger at rest: -> IDLE with EVENT MOTION_DONE."""
        move = self._move
        assert move is not None
        move.track(enc)
        if move.kind == PRIMING:
            detail = move.volume_nl()
        elif move.kind == WITHDRAWING:
            detail = -move.volume_nl()
        else:
            detail = (enc - move.origin) * self._um_per_count_q >> 16
        self._transition(IDLE, kind=EventKind.MOTION_DONE, detail=detail)

    def _enter_motion(self) -> None:
        move = self._move
        assert move is not None
        self._rise.reset(0.0)
        self._loss.reset()
        self._overpressure.reset()
        self._throttle.reset()
        self._stall.reset()
        self._steady_blocks = 0
        self._loss_blocks = 0
        self._ceiling_blocks = 0
        if move.forward:
            self._setpoint_rate = self._real(move.rate)
            self._flow_plan_nl_s = move.flow_nl_s
            self._ceiling_stall_nl_s = self.config.ceiling_stall_flow_frac * move.flow_nl_s
        if move.fl_per_count:
            self._m3_per_count = self._real(move.fl_per_count * 1e-18)

    def _leave_motion(self, stopped: bool) -> None:
        """A forward movement (PRIME, forward JOG) that is stopped backs off as an injection with
        RELIEF does (SPEC §8.6): whatever stopped it, the line it pushed on may be pressurised; the
        relief ends at once when the pressure is already below relief_pa. Not at the normal end:
        IDLE keeps a still plunger."""
        self._throttle.reset()
        self._throttle_clear()
        self._setpoint_rate = 0.0
        self._flow_plan_nl_s = 0
        self._ceiling_stall_nl_s = 0.0
        move = self._move
        if stopped and move is not None and move.forward:
            self._start_relief(move.origin)

    def _motion_refusal(self, msg: Command) -> Answer | None:
        """The state checks every movement command shares (SPEC §8.6): from IDLE only, at rest."""
        st = self._state
        if st in _LATCHED:
            return self._refuse(msg, NakCode.STOP_LATCHED)
        if st != IDLE:
            return self._refuse(msg, NakCode.BAD_STATE)
        busy = self._busy()
        if busy:
            return self._refuse(msg, NakCode.BUSY, detail=busy)
        return None

    def _start_motion(self, msg: Command, request: MoveRequest, reply: bool) -> Answer:
        if self._fluoro_line:  # a stop request is held: nothing moves
            return self._refuse(msg, NakCode.BAD_STATE)
        self._move = Movement.start(request, self._enc, self._now_us & 0xFFFF_FFFF)
        if request.kind in (PRIMING, JOGGING):
            self._zero_check_due = False  # cement pushed into the line: no longer presumed open (SPEC §5.23)
        for value in request.clamped:
            self._alarm(AlarmCode.LIMIT_CLAMPED, True, value)
        self._transition(request.kind)
        return self._ack(msg, self._motion_status(msg.cmd_id) if reply else None)

    def _on_prime(self, msg: Prime) -> Answer:
        refused = self._motion_refusal(msg)
        if refused is not None:
            return refused
        if self._at_end():
            return self._refuse(msg, NakCode.END_OF_TRAVEL)
        request = check_prime(
            msg,
            self.config,
            self.hardware,
            self._limits.max_flow_nl_s,
            self._end_counts - self._enc,
            selected_bore_um=self._selected_bore_um(),
            volume_factor_ppm=self._cal.volume_factor_ppm,
        )
        if isinstance(request, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, request.field, request.detail)
        return self._start_motion(msg, request, True)

    def _on_withdraw(self, msg: Withdraw) -> Answer:
        refused = self._motion_refusal(msg)
        if refused is not None:
            return refused
        if self._enc <= self._at_home_counts:
            return self._refuse(msg, NakCode.AT_HOME)
        request = check_withdraw(
            msg,
            self.config,
            self.hardware,
            self._limits.max_flow_nl_s,
            self._enc,
            selected_bore_um=self._selected_bore_um(),
            volume_factor_ppm=self._cal.volume_factor_ppm,
        )
        if isinstance(request, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, request.field, request.detail)
        return self._start_motion(msg, request, True)

    def _on_home(self, msg: Home) -> Answer:
        refused = self._motion_refusal(msg)
        if refused is not None:
            return refused
        if self._enc <= self._at_home_counts:
            return self._refuse(msg, NakCode.AT_HOME)
        request = check_home(msg, self.config, self.hardware)
        if isinstance(request, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, request.field, request.detail)
        return self._start_motion(msg, request, True)

    def _on_jog(self, msg: Jog) -> Answer:
        """IDLE -> JOGGING; in JOGGING a JOG the same way renews the grant (and may change the
        speed), the other way gets BUSY PLUNGER_MOVING until the jog has ended."""
        st = self._state
        move = self._move
        jogging = st == JOGGING and move is not None
        if not jogging:
            refused = self._motion_refusal(msg)
            if refused is not None:
                return refused
        request = check_jog(msg, self.config, self.hardware)
        if isinstance(request, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, request.field, request.detail)
        forward = request.rate > 0.0
        if jogging and move is not None and (move.forward != forward):
            return self._refuse(msg, NakCode.BUSY, detail=int(BusyDetail.PLUNGER_MOVING))
        if forward and (self._at_end() or (jogging and move is not None and move.at_limit)):
            return self._refuse(msg, NakCode.END_OF_TRAVEL)
        if not forward and (
            self._enc <= self._at_home_counts or (jogging and move is not None and move.at_limit)
        ):
            return self._refuse(msg, NakCode.AT_HOME)
        if jogging and move is not None:
            if self._fluoro_line:
                return self._refuse(msg, NakCode.BAD_STATE)
            move.rate = request.rate
            move.grant_us = request.grant_us
            move.granted_at_us = self._now_us & 0xFFFF_FFFF
            move.ending = False
            if forward:
                self._setpoint_rate = self._real(request.rate)
            return self._ack(msg)
        return self._start_motion(msg, request, False)

    def _on_get_motion(self, msg: GetMotion) -> Answer:
        return self._ack(msg, self._motion_status(msg.cmd_id))

    def _motion_status(self, cmd_id: int) -> MotionStatus:
        move = self._move
        enc = self._enc
        st = self._state
        grant_ms = 0
        if move is not None and st == JOGGING and not move.ending:
            left = move.grant_us - elapsed_us(self._now_us, move.granted_at_us)
            grant_ms = max(0, left) // 1000
        q = self._um_per_count_q
        return MotionStatus(
            cmd_id=cmd_id,
            state=_STATE[st],
            last_motion=_STATE[move.kind] if move is not None else State.IDLE,
            flags=Flags(self._flags),
            grant_ms=min(grant_ms, 0xFFFF),
            t_us=self._now_us,
            plunger_um=_i32(self.plunger_um),
            home_um=_i32(self._home_counts * q >> 16),
            travel_um=_i32(self._end_counts * q >> 16),
            moved_um=_i32((enc - move.origin) * q >> 16) if move is not None else 0,
            primed_nl=move.volume_nl() & 0xFFFF_FFFF if move is not None and move.kind == PRIMING else 0,
            withdrawn_nl=(
                move.volume_nl() & 0xFFFF_FFFF if move is not None and move.kind == WITHDRAWING else 0
            ),
            speed_um_s=self._motor_um_s,
            syringe_bore_um=move.bore_um if move is not None else 0,
        )

    # =====================================================================================
    # state machine
    # =====================================================================================
    def _transition(
        self,
        new: int,
        reason: StopReason = StopReason.NONE,
        source: StopSource = StopSource.NONE,
        detail: int = 0,
        kind: EventKind | None = None,
    ) -> None:
        prev = self._state
        if prev == new:
            return
        self._state = new
        if reason:
            self._stop_reason = reason
            self._stop_source = source
        else:
            self._stop_reason = StopReason.NONE
            self._stop_source = StopSource.NONE
        if kind is None:
            kind = EventKind.STOP if reason else EventKind.STATE_CHANGE
        at = len(self._out)
        self._event(kind, prev=prev, reason=reason, source=source, detail=detail)
        if prev == INJECTING:
            self._leave_injecting()
        elif prev in MOVING:
            self._leave_motion(stopped=new != IDLE)
        if new == INJECTING:
            self._enter_injecting()
        elif new in MOVING:
            self._enter_motion()
        elif new == FAULT:
            self._end_relief()  # FAULT keeps the plunger still: pressure is unknown
        # The event goes out first (an ALARM_CLEARED or RELIEF_DONE these cause follows it), but its
        # flags are those once the transition has taken effect (SPEC §5.12): relief started or cut
        # short, viscosity estimate and throttling ended.
        event = self._out[at]
        if isinstance(event, Event) and event.flags != self._flags:
            self._out[at] = dataclasses.replace(event, flags=Flags(self._flags))

    def _enter_injecting(self) -> None:
        self._zero_check_due = False  # cement goes into the line: it is no longer open to the air
        if self._relief.active:  # RESUME during a relief: the back-off is cut short
            self._end_relief()
        self._rise.reset(self._phase_ref_pa)
        self._loss.reset()
        self._overpressure.reset()
        self._throttle.reset()
        self._stall.reset()
        self._visc_window.reset()
        self._steady_blocks = 0
        self._loss_blocks = 0
        self._ceiling_blocks = 0

    def _leave_injecting(self) -> None:
        self._phase_ref_pa = self._p_block
        self._throttle.reset()
        self._throttle_clear()
        self._viscosity.valid = False  # the estimate needs steady forward flow
        self._flags &= ~_F_VISC
        plan = self._plan
        if plan is not None and plan.relief:
            self._start_relief(self._origin)

    def _start_relief(self, origin: int) -> None:
        """Start the post-stop back-off of a forward push that began at `origin` (ARM for an
        injection, the movement's start for PRIME / forward JOG): the one rule for both (SPEC §8.4).
        It may back off the larger of relief_max and the plunger's net forward travel since
        `origin`: an occluded line compressed by more than relief_max (~4.8 mm at 4 MPa on the
        reference plant) is relieved, and beyond relief_max it never withdraws more than was pushed.
        Home still bounds it (`_relief_step`)."""
        if self._relief.active:
            return
        pushed = max(0, self._enc - origin)
        self._relief.start(self._enc, self._now_us, max_counts=max(self._relief.max_counts, pushed))
        self._flags |= _F_RELIEF

    def _end_relief(self) -> None:
        """RELIEF_DONE with the back-off so far (plunger at rest, or RESUME / FAULT cut it short)."""
        relief = self._relief
        if relief.active:
            backoff_um = _i32(relief.backoff_counts(self._enc) * self.hardware.encoder_m_per_count * 1e6)
            relief.finish()
            self._flags &= ~_F_RELIEF
            self._event(EventKind.RELIEF_DONE, detail=max(0, backoff_um))

    def _latch(self, reason: StopReason, source: StopSource = StopSource.CONTROLLER, detail: int = 0) -> None:
        """A latched stop: ARMED / INJECTING / PAUSED -> STOPPED; elsewhere nothing changes."""
        if self._state in _RUNNING:
            self._transition(STOPPED, reason, source, detail)

    def _on_mark(self, stop_at: float) -> None:
        if self._delivery.reached(stop_at) == DELIVERY_VOLUME:
            self._transition(DONE, StopReason.VOLUME_LIMIT, StopSource.CONTROLLER)
        else:
            self._transition(PAUSED, StopReason.INCREMENT_DONE, StopSource.CONTROLLER)

    def _on_sensor_fault_change(self, faulty: bool) -> None:
        self._sensor_faulty = faulty
        self._set_flag(_F_SENSOR, faulty)
        if not faulty:
            return
        st = self._state
        if st in _RUNNING:
            self._latch(StopReason.SENSOR_FAULT)
        elif st in (IDLE, DONE):
            self._transition(FAULT, StopReason.SENSOR_FAULT, StopSource.CONTROLLER)

    def _on_fluoro_change(self) -> None:
        line = self._fluoro.state
        self._fluoro_line = line
        self._set_flag(_F_FLUORO, line)
        if line:  # detail: the debounce, first asserted sample to this stop, us (SPEC §6.6)
            self._latch(
                StopReason.FLUORO_STOP, StopSource.FLUORO_LINE, elapsed_us(self._now_us, self._fluoro_raw_us)
            )
        self._alarm(AlarmCode.FLUORO_LINE, line)

    def _host_lost(self) -> None:
        self._close_session()
        self._latch(StopReason.HOST_LOST)

    def _open_session(self) -> None:
        self._session = True
        self._flags |= _F_LINK
        self._watchdog.start(self._now_us)
        self._tm_countdown = 1

    def _close_session(self) -> None:
        self._session = False
        self._flags &= ~_F_LINK
        self._watchdog.stop()
        self._telemetry.drop()
        self._cache.clear()  # a new host's first command ids must not hit the old host's answers

    def _drop_plan(self) -> None:
        self._plan = None
        self._delivery.clear()
        self._setpoint_rate = 0.0
        self._flow_plan_nl_s = 0
        self._phase_ref_pa = 0.0
        self._flags &= ~(_F_WT | _F_VISC)
        for alarm in (AlarmCode.WORKING_TIME_WARNING, AlarmCode.VISCOSITY_HIGH, AlarmCode.VISCOSITY_LOW):
            self._alarm(alarm, False)

    # =====================================================================================
    # commands (protocol/SPEC.md §7: check order §7.7, cache §7.4, sessions §7.6)
    # =====================================================================================
    def _receive(self, received: Sequence[Frame | Rejected]) -> None:
        for item in received:
            if isinstance(item, Frame):
                self._watchdog.feed(self._now_us)
                message = item.message
                if not self._implements(item.header.msg_type):
                    assert isinstance(message, Command)
                    self._unknown(message.cmd_id, item.header.msg_type)
                    continue
                handler = self._handlers.get(type(message))
                if handler is not None:
                    assert isinstance(message, Command)
                    self._command(message, handler)
            else:
                self._rejected(item)

    def _command(self, msg: Command, handler: Handler) -> None:
        out = self._out
        cmd_id = msg.cmd_id
        msg_type = msg.TYPE
        if msg_type == MsgType.STOP:
            # STOP bypasses the command cache and is executed every time, whatever its id: a cached
            # answer would claim a stop that did not happen (an id reused by a host, or a malformed
            # STOP NAKed before its corrected retry). Latching is idempotent, so a genuine retry
            # changes nothing further; it is never cached either.
            assert isinstance(msg, Stop)
            out.append(self._on_stop(msg)[1])
            return
        if cmd_id == 0:
            out.append(self._make_nak(0, msg_type, NakCode.BAD_PARAM, 0, 1))
            return
        if msg_type != MsgType.HELLO:
            hit = self._cache.get(cmd_id, msg_type)
            if hit is not None:
                answer, had_reply = hit
                if had_reply:
                    out.extend(self._replies_again(msg_type, cmd_id))
                out.append(answer)
                return
        if not self._session and msg_type not in _SESSIONLESS:
            reply, answer = None, self._nak(msg, NakCode.NO_SESSION)
        else:
            reply, answer = handler(msg)
        if isinstance(reply, tuple):
            out.extend(reply)
        elif reply is not None:
            out.append(reply)
        out.append(answer)
        if msg_type != MsgType.HELLO and not (
            isinstance(answer, Nak) and answer.code == NakCode.VERSION_MISMATCH
        ):
            self._cache.put(cmd_id, msg_type, answer, reply is not None)

    def _implements(self, msg_type: int) -> bool:
        """SET_TELEMETRY exists only with capability TELEMETRY_CONFIG, the movements only with
        MOTION; without it the type is unknown to this device and answered as such at SPEC §7.7
        step 3, before anything else."""
        caps = self.identity.capabilities
        if msg_type == MsgType.SET_TELEMETRY:
            return bool(caps & Capabilities.TELEMETRY_CONFIG)
        if msg_type in _MOTION_TYPES:
            return bool(caps & Capabilities.MOTION)
        return True

    def _unknown(self, cmd_id: int, msg_type: int) -> None:
        nak = self._make_nak(cmd_id, msg_type, NakCode.UNKNOWN_COMMAND, _NO_FIELD, 0)
        self._out.append(nak)
        if cmd_id:
            self._cache.put(cmd_id, msg_type, nak, False)

    def _rejected(self, rej: Rejected) -> None:
        """A command the codec could not decode (SPEC §4.4, §7.9)."""
        msg_type = rej.header.msg_type
        reason = rej.reason
        if reason != RejectReason.VERSION_MISMATCH:
            self._watchdog.feed(self._now_us)  # intact and of our version: the host is alive
        if not is_command_type(msg_type):
            return
        cmd_id = rej.cmd_id or 0
        if reason == RejectReason.VERSION_MISMATCH:  # nothing applied, not even a STOP; never cached
            self._out.append(
                self._make_nak(cmd_id, msg_type, NakCode.VERSION_MISMATCH, _NO_FIELD, PROTOCOL_VERSION)
            )
            return
        if msg_type == MsgType.STOP:
            # Fail safe: an intact frame of our version that says STOP stops, even with an undefined
            # source byte or a body of the wrong length; recorded as an OPERATOR stop.
            self._command(Stop(cmd_id=cmd_id, source=StopSource.OPERATOR), self._handlers[Stop])
            return
        if not self._implements(msg_type):
            self._unknown(cmd_id, msg_type)
            return
        field, detail = _NO_FIELD, 0
        if reason == RejectReason.BAD_LENGTH:
            code = NakCode.BAD_LENGTH
            cls = REGISTRY.get(MsgType(msg_type))
            detail = cls.body_size() if cls is not None else 0
        elif reason == RejectReason.BAD_VALUE and rej.field_index is not None:
            code, field = NakCode.BAD_PARAM, rej.field_index
            detail = _ENUM_MAX.get((msg_type, field), 0)
        else:
            code = NakCode.UNKNOWN_COMMAND
        nak = self._make_nak(cmd_id, msg_type, code, field, detail)
        self._out.append(nak)
        if cmd_id:
            self._cache.put(cmd_id, msg_type, nak, False)

    def _ack(self, msg: Command, reply: Replies = None) -> Answer:
        return reply, Ack(cmd_id=msg.cmd_id, cmd_type=msg.TYPE, state=_STATE[self._state])

    def _nak(self, msg: Command, code: NakCode, field: int = _NO_FIELD, detail: int = 0) -> Nak:
        return self._make_nak(msg.cmd_id, msg.TYPE, code, field, detail)

    def _refuse(self, msg: Command, code: NakCode, field: int = _NO_FIELD, detail: int = 0) -> Answer:
        return None, self._make_nak(msg.cmd_id, msg.TYPE, code, field, detail)

    def _make_nak(self, cmd_id: int, cmd_type: int, code: NakCode, field: int, detail: int) -> Nak:
        state = _STATE[self._state]
        return Nak(cmd_id=cmd_id, cmd_type=cmd_type, code=code, state=state, field=field, detail=detail)

    def _on_hello(self, msg: Hello) -> Answer:
        if msg.protocol_version != PROTOCOL_VERSION:
            return self._refuse(msg, NakCode.VERSION_MISMATCH, detail=PROTOCOL_VERSION)
        if self._state in _TAKEN:
            # A new session must never inherit a moving (or resumable) plunger: the host that started
            # it may be gone from the screen. Latched before DEVICE_INFO is queued (SPEC §7.6).
            self._latch(StopReason.HOST_LOST, detail=StopDetail.SESSION_TAKEN)
        self._cache.clear()
        self._open_session()
        cfg = self.config
        ident = self.identity
        info = DeviceInfo(
            cmd_id=msg.cmd_id,
            protocol_version=PROTOCOL_VERSION,
            fw_major=ident.fw_major,
            fw_minor=ident.fw_minor,
            fw_patch=ident.fw_patch,
            serial=ident.serial,
            capabilities=ident.capabilities,
            sample_rate_hz=cfg.sample_rate_hz,
            watchdog_ms=cfg.watchdog_ms,
            max_pressure_pa=cfg.max_pressure_pa,
            max_flow_nl_s=cfg.max_flow_nl_s,
            travel_um=round(self._end_counts * self.hardware.encoder_m_per_count * 1e6),
            max_batch_samples=MAX_BATCH_SAMPLES,
        )
        if ident.capabilities & Capabilities.SETUP:
            return self._ack(msg, (info, self._syringe_info(msg.cmd_id), self._calibration_info(msg.cmd_id)))
        return self._ack(msg, info)

    def _on_arm(self, msg: Arm) -> Answer:
        st = self._state
        if st in _LATCHED:
            return self._refuse(msg, NakCode.STOP_LATCHED)
        if st not in (IDLE, ARMED, DONE):
            return self._refuse(msg, NakCode.BAD_STATE)
        busy = self._busy()
        if busy:  # DONE while braking or backing off: ARMED means a still plunger
            return self._refuse(msg, NakCode.BUSY, detail=busy)
        syringe = self._syringe
        plan = check_arm(
            msg,
            self.config,
            self.hardware,
            self.identity.capabilities,
            self._end_counts - self._enc,
            selected_bore_um=self._selected_bore_um(),
            pressure_ceiling_pa=pressure_ceiling_pa(syringe, self.config),
            volume_factor_ppm=self._cal.volume_factor_ppm,
        )
        if isinstance(plan, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, plan.field, plan.detail)
        drift = self._zero_drift_pa() if st == IDLE and self._zero_check_due else None
        if drift is not None:
            return self._refuse(msg, NakCode.ZERO_DRIFT, detail=drift)
        self._apply_plan(plan)
        for value in plan.clamped:
            self._alarm(AlarmCode.LIMIT_CLAMPED, True, value)
        self._transition(ARMED)
        return self._ack(msg, self._status(msg.cmd_id))

    def _apply_plan(self, plan: Plan) -> None:
        hw = self.hardware
        if self._plan is not None:
            self._drop_plan()
        self._plan = plan
        self._limits = Limits(
            plan.soft_limit_pa, plan.hard_limit_pa, plan.relief_pa, self._limits.max_flow_nl_s
        )
        self._m3_per_count = self._real(hw.encoder_m_per_count * plan.bore_area_m2)
        self._nl_per_count = self._m3_per_count * 1e12
        self._apply_limits()
        self._fl_per_count = plan.fl_per_count
        self._origin = self._enc
        self._high_counts = 0
        self._delivery.configure(plan.fl_per_count, plan.volume_limit_nl, plan.increment_nl)
        self._age.configure(plan.mixed_ago_ms, plan.working_time_ms, self._now_us)
        self._viscosity.configure(plan.cannula_length_m, plan.cannula_id_m)
        self._visc_window.reset()
        self._phase_ref_pa = 0.0

    def _apply_limits(self) -> None:
        limits = self._limits
        self._hard = self._real(limits.hard_limit_pa)
        self._throttle.configure(float(limits.soft_limit_pa))
        plan = self._plan
        if plan is not None:
            flow = min(plan.flow_nl_s, limits.max_flow_nl_s)
            self._flow_plan_nl_s = flow
            self._ceiling_stall_nl_s = self.config.ceiling_stall_flow_frac * flow
            self._setpoint_rate = self._real(
                flow * 1e-12 / (plan.bore_area_m2 * self.hardware.plunger_m_per_step)
            )

    def _start_checks(self, msg: Command) -> Answer | None:
        """The START / RESUME checks of docs/state-machine.md, in its order. No sensor check: a
        sensor fault latches ARMED and PAUSED at once (STOP_LATCHED answers first), and no
        fluoroscopy check on RESUME: the line's edge stops PAUSED, and INJECTING (PAUSED's only
        way in) is never entered with the line held (SPEC §7.7: no refusal that cannot happen)."""
        if self._at_end():
            return self._refuse(msg, NakCode.END_OF_TRAVEL)
        if self._age.update(self._now_us) == AGE_EXPIRED:
            return self._refuse(msg, NakCode.WORKING_TIME_EXCEEDED)
        plan = self._plan
        assert plan is not None
        mu = self._viscosity.last
        if mu == mu and not plan.viscosity_min_pas <= mu <= plan.viscosity_max_pas:
            return self._refuse(msg, NakCode.VISCOSITY_OUT_OF_WINDOW)
        if self._fluoro_line and msg.TYPE == MsgType.START:  # ARM while the line was held
            return self._refuse(msg, NakCode.BAD_STATE)
        return None

    def _at_end(self) -> bool:
        """Limit switch closed, or the plunger on or past the end of the usable stroke: the same
        position the END_OF_TRAVEL stop brings it to rest on (flag, START refusal and stop agree)."""
        return self._end_switch or self._enc >= self._end_counts

    def _braking_counts(self, rate: float) -> float:
        """Encoder counts the plunger still travels forward if the step rate, `rate` over the period
        just ended, falls by the deceleration limit every tick from now on: the rates r - dv,
        r - 2 dv, ... while positive, i.e. n = ceil(r / dv) - 1 periods, T (n r - dv n (n + 1) / 2)
        steps. Exact for the ramp the controller commands (not the continuous r^2 / 2a)."""
        if rate <= 0.0:
            return 0.0
        dv = self._dv
        n = math.ceil(rate / dv) - 1
        return (n * rate - dv * (n * (n + 1) // 2)) * self._counts_per_step_tick

    def _on_start(self, msg: Start) -> Answer:
        st = self._state
        if st in _LATCHED:
            return self._refuse(msg, NakCode.STOP_LATCHED)
        if st != ARMED:
            return self._refuse(msg, NakCode.BAD_STATE)
        refused = self._start_checks(msg)
        if refused is not None:
            return refused
        self._transition(INJECTING)
        return self._ack(msg)

    def _on_pause(self, msg: Pause) -> Answer:
        st = self._state
        if st in _LATCHED:
            return self._refuse(msg, NakCode.STOP_LATCHED)
        if st == INJECTING:
            self._transition(PAUSED)
        elif st != PAUSED:
            return self._refuse(msg, NakCode.BAD_STATE)
        return self._ack(msg)

    def _on_resume(self, msg: Resume) -> Answer:
        st = self._state
        if st in _LATCHED:
            return self._refuse(msg, NakCode.STOP_LATCHED)
        if st == PAUSED:
            refused = self._start_checks(msg)
            if refused is not None:
                return refused
            self._transition(INJECTING)
        elif st != INJECTING:
            return self._refuse(msg, NakCode.BAD_STATE)
        return self._ack(msg)

    def _on_stop(self, msg: Stop) -> Answer:
        """Always ACKed; latches in ARMED / INJECTING / PAUSED. Sources 1-4 and 7 are kept as given,
        any other (NONE, the device-only FLUORO_LINE and CONTROLLER) is recorded as OPERATOR. The
        detail byte is kept only where it names an image rule of a FLUORO_IMAGE stop, else 0: a host
        never makes the device report a signature it has no business naming."""
        source = msg.source if msg.source in _HOST_SOURCES else StopSource.OPERATOR
        reason = StopReason.FLUORO_STOP if source in _FLUORO_SOURCES else StopReason.OPERATOR_STOP
        image = source == StopSource.FLUORO_IMAGE and msg.detail in _IMAGE_DETAILS
        self._latch(reason, source, detail=msg.detail if image else 0)
        return self._ack(msg)

    def _busy(self) -> int:
        """BusyDetail of a CLEAR / ARM refused because the plunger is not at rest, else 0. At rest
        means the step generator's rate is 0: then the plunger did not move over the last period and
        (outside INJECTING and relief) will not move. After a stop it brakes at the step generator's
        deceleration limit, for at most `brake_time_ms` (SPEC §9.1)."""
        if self._relief.active:
            return int(BusyDetail.RELIEF_ACTIVE)
        if self._rate != 0.0:
            return int(BusyDetail.PLUNGER_MOVING)
        return 0

    def _on_clear(self, msg: Clear) -> Answer:
        st = self._state
        if st in (INJECTING, PAUSED) or st in MOVING:
            return self._refuse(msg, NakCode.BAD_STATE)
        busy = self._busy()
        if busy:  # IDLE means a still plunger: no CLEAR while it brakes or backs off
            return self._refuse(msg, NakCode.BUSY, detail=busy)
        if st in (STOPPED, FAULT) and self._sensor_faulty:
            return self._refuse(msg, NakCode.SENSOR_FAULT)
        if st != IDLE:
            self._drop_plan()
            self._transition(IDLE)
        return self._ack(msg)

    def _on_set_limits(self, msg: SetLimits) -> Answer:
        limits = check_limits(msg, self._limits, self.config, pressure_ceiling_pa(self._syringe, self.config))
        if isinstance(limits, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, limits.field, limits.detail)
        self._limits = Limits(
            limits.soft_limit_pa, limits.hard_limit_pa, limits.relief_pa, limits.max_flow_nl_s
        )
        self._apply_limits()
        for value in limits.clamped:
            self._alarm(AlarmCode.LIMIT_CLAMPED, True, value)
        return self._ack(msg, self._status(msg.cmd_id))

    def _on_get_status(self, msg: GetStatus) -> Answer:
        return self._ack(msg, self._status(msg.cmd_id))

    def _on_set_telemetry(self, msg: SetTelemetry) -> Answer:
        divider, batch = msg.divider, msg.batch_samples
        if divider > MAX_DIVIDER:
            return self._refuse(msg, NakCode.BAD_PARAM, TELEMETRY_DIVIDER, MAX_DIVIDER)
        if divider and batch < 1:
            return self._refuse(msg, NakCode.BAD_PARAM, TELEMETRY_BATCH, 1)
        if divider and batch > MAX_BATCH_SAMPLES:
            return self._refuse(msg, NakCode.BAD_PARAM, TELEMETRY_BATCH, MAX_BATCH_SAMPLES)
        telemetry = self._telemetry
        pending = telemetry.flush()  # a partly filled batch goes out as it is
        if pending is not None and self._session:
            self._out.append(pending)
        self._tm_divider = divider
        self._tm_countdown = 1
        telemetry.configure(batch if divider else telemetry.batch_samples, max(divider, 1) * self._tick_us)
        return self._ack(msg)

    # -- syringe and calibration (SPEC §5.17-§5.23): IDLE only, plunger at rest ----------------
    def _setup_refusal(self, msg: Command) -> Answer | None:
        """SET_SYRINGE, ZERO, CALIBRATE_SPAN and CALIBRATE_VOLUME change what every volume and
        pressure means: only in IDLE (no plan, nothing to inherit a changed meaning), with the
        plunger at rest (a moving plunger pressurises the line a ZERO would tare): the same state
        checks as a movement's (SPEC §8.2, §8.6)."""
        return self._motion_refusal(msg)

    def _on_set_syringe(self, msg: SetSyringe) -> Answer:
        refused = self._setup_refusal(msg)
        if refused is not None:
            return refused
        syringe = check_syringe(msg, self.config, self.hardware)
        if isinstance(syringe, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, syringe.field, syringe.detail)
        self._syringe = syringe
        self._end_counts = usable_stroke_counts(self.config, self.hardware, stroke_m(syringe, self.hardware))
        limits = self._clamped_to_ceiling(self._limits)
        self._limits = limits
        self._apply_limits()
        for value in limits.clamped:
            self._alarm(AlarmCode.LIMIT_CLAMPED, True, value)
        self._setup_version += 1
        self._zero_check_due = True
        self._set_flag(_F_EOT, self._at_end())
        return self._ack(msg, self._syringe_info(msg.cmd_id))

    def _clamped_to_ceiling(self, limits: Limits) -> Limits:
        """The limits in force lowered to the pressure ceiling of the selected syringe (keeping
        soft <= hard and relief < soft); `clamped` lists each value that changed."""
        ceiling = pressure_ceiling_pa(self._syringe, self.config)
        hard = min(limits.hard_limit_pa, ceiling)
        soft = min(limits.soft_limit_pa, hard)
        relief = min(limits.relief_pa, soft - 1)
        old = (limits.soft_limit_pa, limits.hard_limit_pa, limits.relief_pa)
        clamped = tuple(new for new, was in zip((soft, hard, relief), old, strict=True) if new != was)
        return Limits(soft, hard, relief, limits.max_flow_nl_s, clamped)

    def _raw_pressure_pa(self) -> float:
        """The filtered reading without the zero and span in force: what a new zero or span sees."""
        return float(self._pf) / float(self._cal_gain) + float(self._cal_offset)

    def _put_calibration(self, cal: Calibration) -> None:
        raw = self._raw_pressure_pa()
        self._cal = cal
        self._cal_offset = self._real(cal.zero_offset_pa)
        self._cal_gain = self._real(cal.span_gain_ppm / 1_000_000)
        self._rise.set_span(cal.span_gain_ppm / 1_000_000)
        self._pf = (self._real(raw) - self._cal_offset) * self._cal_gain  # the filter goes on seamlessly
        self._setup_version += 1
        self._zero_check_due = True

    def _calibrated(
        self, msg: Command, result: Calibration | BadParam | OutOfRange, out_of_range: NakCode
    ) -> Answer:
        if isinstance(result, BadParam):
            return self._refuse(msg, NakCode.BAD_PARAM, result.field, result.detail)
        if isinstance(result, OutOfRange):
            return self._refuse(msg, out_of_range, detail=result.value)
        self._put_calibration(result)
        return self._ack(msg, self._calibration_info(msg.cmd_id))

    def _on_zero(self, msg: Zero) -> Answer:
        refused = self._setup_refusal(msg)
        if refused is not None:
            return refused
        result = check_zero(msg, self._raw_pressure_pa(), self._cal, self.config)
        return self._calibrated(msg, result, NakCode.SENSOR_FAULT)

    def _on_calibrate_span(self, msg: CalibrateSpan) -> Answer:
        refused = self._setup_refusal(msg)
        if refused is not None:
            return refused
        ceiling = self.config.max_pressure_pa
        result = check_span(msg, self._raw_pressure_pa(), self._cal, self.config, ceiling)
        return self._calibrated(msg, result, NakCode.CALIBRATION_OUT_OF_RANGE)

    def _on_calibrate_volume(self, msg: CalibrateVolume) -> Answer:
        refused = self._setup_refusal(msg)
        if refused is not None:
            return refused
        result = check_volume(msg, self._cal, self.config)
        return self._calibrated(msg, result, NakCode.CALIBRATION_OUT_OF_RANGE)

    def _on_get_calibration(self, msg: GetCalibration) -> Answer:
        return self._ack(msg, (self._syringe_info(msg.cmd_id), self._calibration_info(msg.cmd_id)))

    def _selected_bore_um(self) -> int:
        """The bore every ARM, PRIME and WITHDRAW must name while a syringe is selected (else 0):
        with the volume factor, a primed volume is counted as an injected one would be."""
        return self._syringe.bore_um if self._syringe is not None else 0

    def _zero_drift_pa(self) -> int | None:
        """The zero check of the first ARM of an open line (SPEC §5.23): the reading, if beyond the bound."""
        if not self.identity.capabilities & Capabilities.SETUP:
            return None
        reading = _i32(self._pf)
        return reading if abs(reading) > self.config.arm_zero_check_pa else None

    def _syringe_info(self, cmd_id: int) -> SyringeInfo:
        s = self._syringe
        travel_um = round(self._end_counts * self.hardware.encoder_m_per_count * 1e6)
        if s is None:
            return SyringeInfo(
                cmd_id=cmd_id,
                name="",
                bore_um=0,
                stroke_um=0,
                dead_volume_nl=0,
                max_pressure_pa=self.config.max_pressure_pa,
                travel_um=travel_um,
            )
        return SyringeInfo(
            cmd_id=cmd_id,
            name=s.name,
            bore_um=s.bore_um,
            stroke_um=s.stroke_um,
            dead_volume_nl=s.dead_volume_nl,
            max_pressure_pa=pressure_ceiling_pa(s, self.config),
            travel_um=travel_um,
        )

    def _calibration_info(self, cmd_id: int) -> CalibrationInfo:
        c = self._cal
        return CalibrationInfo(
            cmd_id=cmd_id,
            zero_offset_pa=c.zero_offset_pa,
            zero_utc_s=c.zero_utc_s,
            span_gain_ppm=c.span_gain_ppm,
            span_reference_pa=c.span_reference_pa,
            span_utc_s=c.span_utc_s,
            volume_factor_ppm=c.volume_factor_ppm,
            volume_utc_s=c.volume_utc_s,
            zero_check_pa=self.config.arm_zero_check_pa,
        )

    def _replies_again(self, msg_type: int, cmd_id: int) -> tuple[Message, ...]:
        """The replies of a cached command that had some, built afresh for its retry (SPEC §7.4)."""
        if msg_type == MsgType.SET_SYRINGE:
            return (self._syringe_info(cmd_id),)
        if msg_type in (MsgType.ZERO, MsgType.CALIBRATE_SPAN, MsgType.CALIBRATE_VOLUME):
            return (self._calibration_info(cmd_id),)
        if msg_type == MsgType.GET_CALIBRATION:
            return (self._syringe_info(cmd_id), self._calibration_info(cmd_id))
        if msg_type in _MOTION_STATUS_REPLIED:
            return (self._motion_status(cmd_id),)
        return (self._status(cmd_id),)

    def _status(self, cmd_id: int) -> Status:
        plan = self._plan
        limits = self._limits
        return Status(
            cmd_id=cmd_id,
            state=_STATE[self._state],
            stop_reason=self._stop_reason,
            stop_source=self._stop_source,
            mode=Mode.INCREMENTAL if plan is not None and plan.incremental else Mode.CONTINUOUS,
            flags=Flags(self._flags),
            t_us=self._now_us,
            pressure_pa=_i32(self._pf),
            delivered_nl=self._delivered_wire_nl(),
            plunger_um=_i32(self.plunger_um),
            flow_nl_s=self._flow_meas_nl_s,
            flow_setpoint_nl_s=self._commanded_flow_nl_s(),
            volume_limit_nl=plan.volume_limit_nl if plan is not None else 0,
            increment_nl=plan.increment_nl if plan is not None else 0,
            increments_done=self._delivery.increments_done,
            soft_limit_pa=limits.soft_limit_pa,
            hard_limit_pa=limits.hard_limit_pa,
            relief_pa=limits.relief_pa,
            viscosity_pas=self._viscosity.last,
            mixed_age_ms=max(0, self._age.age_ms(self._now_us)) & 0xFFFF_FFFF if plan is not None else 0,
            working_time_ms=plan.working_time_ms if plan is not None else 0,
            event_count=self._event_index & 0xFFFF_FFFF,
        )

    def _commanded_flow_nl_s(self) -> int:
        """The flow the controller commands now: the setpoint in force, throttled; 0 outside INJECTING
        and PRIMING (0 too once the prime has reached its volume and brakes)."""
        st = self._state
        if st != INJECTING and (st != PRIMING or self._move is None or self._move.ending):
            return 0
        return int(self._flow_plan_nl_s * self._throttle.fraction)

    # =====================================================================================
    # events, alarms, flags
    # =====================================================================================
    def _delivered_wire_nl(self) -> int:
        """The wire's delivered_nl (SPEC §5.15: never decreases within a plan)."""
        return _i32(self.delivered_nl)

    def _event(
        self,
        kind: EventKind,
        prev: int | None = None,
        reason: StopReason = StopReason.NONE,
        source: StopSource = StopSource.NONE,
        alarm: AlarmCode = AlarmCode.NONE,
        detail: int = 0,
    ) -> None:
        state = _STATE[self._state]
        self._out.append(
            Event(
                t_us=self._now_us,
                event_index=self._event_index & 0xFFFF_FFFF,
                kind=kind,
                state=state,
                prev_state=state if prev is None else _STATE[prev],
                reason=reason,
                source=source,
                alarm=alarm,
                flags=Flags(self._flags),
                pressure_pa=_i32(self._pf),
                delivered_nl=self._delivered_wire_nl(),
                plunger_um=_i32(self.plunger_um),
                detail=_i32(detail),
            )
        )
        self._event_index += 1

    def _alarm(self, alarm: AlarmCode, on: bool, detail: int = 0) -> None:
        """ALARM when an alarm becomes active (LIMIT_CLAMPED, RELIEF_AT_LIMIT: every time, they are
        one-shot notices), and
        ALARM_CLEARED when an active one ends."""
        bit = 1 << alarm
        if on:
            if alarm in _NOTICES:
                self._event(EventKind.ALARM, alarm=alarm, detail=detail)
            elif not self._alarms & bit:
                self._alarms |= bit
                self._event(EventKind.ALARM, alarm=alarm, detail=detail)
        elif self._alarms & bit:
            self._alarms &= ~bit
            self._event(EventKind.ALARM_CLEARED, alarm=alarm)

    def _set_flag(self, flag: int, on: bool) -> None:
        if on:
            self._flags |= flag
        else:
            self._flags &= ~flag
