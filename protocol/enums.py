"""Every enumeration on the wire. Values are frozen per protocol version: append, never renumber."""

from __future__ import annotations

from enum import IntEnum, IntFlag


class MsgType(IntEnum):
    """Message type byte of the header. 0x01-0x3F host to device, 0x40-0x7F device to host."""

    HELLO = 0x01
    HEARTBEAT = 0x02  # both directions, never acknowledged
    ARM = 0x10
    START = 0x11
    PAUSE = 0x12
    RESUME = 0x13
    STOP = 0x14
    CLEAR = 0x15
    SET_LIMITS = 0x16
    GET_STATUS = 0x17
    SET_TELEMETRY = 0x18
    # 0x20-0x27: syringe and calibration (SPEC §5.17-§5.23)
    SET_SYRINGE = 0x20
    ZERO = 0x21
    CALIBRATE_SPAN = 0x22
    CALIBRATE_VOLUME = 0x23
    GET_CALIBRATION = 0x24
    PRIME = 0x28
    JOG = 0x29
    WITHDRAW = 0x2A
    HOME = 0x2B
    GET_MOTION = 0x2C
    DEVICE_INFO = 0x40
    STATUS = 0x41
    TELEMETRY_BATCH = 0x42
    EVENT = 0x43
    SYRINGE_INFO = 0x44
    CALIBRATION_INFO = 0x45
    MOTION_STATUS = 0x48
    ACK = 0x7E
    NAK = 0x7F


class State(IntEnum):
    IDLE = 0
    ARMED = 1
    INJECTING = 2
    PAUSED = 3
    STOPPED = 4
    DONE = 5
    FAULT = 6
    PRIMING = 7
    """PRIME: forward at the prime's flow until its volume, every forward detector active."""
    JOGGING = 8
    """JOG: hold-to-move, forward or backward, only while the host keeps sending JOG."""
    WITHDRAWING = 9
    """WITHDRAW (also refill): backward at a set flow until a set volume, never behind home."""
    HOMING = 10
    """HOME: backward to the home position."""


MOVEMENT_STATES: frozenset[State] = frozenset({State.PRIMING, State.JOGGING, State.WITHDRAWING, State.HOMING})
"""The bench movements (SPEC §8.6): entered from IDLE, the plunger moves; a STOP latches them
(-> STOPPED) as it does ARMED, INJECTING and PAUSED."""


class StopReason(IntEnum):
    """Rows of the hazard table (docs/design.md), plus NONE."""

    NONE = 0
    OVERPRESSURE = 1
    PRESSURE_RISE = 2
    PRESSURE_LOSS = 3
    VOLUME_LIMIT = 4
    INCREMENT_DONE = 5
    FLUORO_STOP = 6
    OPERATOR_STOP = 7
    HOST_LOST = 8
    SENSOR_FAULT = 9
    MOTOR_STALL = 10
    END_OF_TRAVEL = 11
    WORKING_TIME = 12
    VISCOSITY_WINDOW = 13


class StopDetail(IntEnum):
    """EVENT.detail of a STOP event: which signature tripped, where a reason has more than one."""

    NONE = 0
    NO_FLOW_AT_CEILING = 1
    """PRESSURE_RISE: the pressure loop held the syringe at the soft limit with (almost) no flow for
    the configured time: the pressure cannot rise further, but the line is blocked or setting."""
    SESSION_TAKEN = 2
    """HOST_LOST: a HELLO opened a new session while INJECTING or PAUSED; the device stops before it
    answers, so a moving plunger is never handed to a host that did not start it (SPEC §7.6)."""
    POSTERIOR_QUARTER = 3
    """FLUORO_STOP from FLUORO_IMAGE: the cement front crossed the posterior-quarter line (lateral view)."""
    EXTRAVASATION = 4
    """FLUORO_STOP from FLUORO_IMAGE: cement outside the vertebral body's outline."""
    VENOUS_FILLING = 5
    """FLUORO_STOP from FLUORO_IMAGE: a thin elongated opacity grew (a vein fills)."""
    IMAGE_LOST = 6
    """FLUORO_STOP from FLUORO_IMAGE: the guard went blind (no, frozen, black or saturated frames, or
    the outline lost) while configured to stop."""


class StopSource(IntEnum):
    """Who asked for a stop. Detector stops carry CONTROLLER."""

    NONE = 0
    OPERATOR = 1
    """STOP from the host's operator: CLI, dashboard stop key."""
    FLUORO_OPERATOR = 2
    """Fluoroscopy stop entered at the host (dashboard fluoroscopy key)."""
    FLUORO_REMOTE = 3
    """Fluoroscopy stop from the imaging system over MQTT, forwarded by the host."""
    REMOTE = 4
    """Any other remote stop request (MQTT)."""
    FLUORO_LINE = 5
    """The controller's own footswitch / imaging input line."""
    CONTROLLER = 6
    """A controller detector or the watchdog."""
    FLUORO_IMAGE = 7
    """The host's fluoroscopic guard: a rule on the image tripped; STOP.detail names it (SPEC §5.6)."""


class NakCode(IntEnum):
    """Why a command was refused. `Nak.field` and `Nak.detail` narrow it down where stated."""

    UNKNOWN_COMMAND = 1
    BAD_LENGTH = 2
    """Body length does not match the type's fixed layout; detail = expected length."""
    BAD_STATE = 3
    """Command not allowed in the current state (see the state table)."""
    STOP_LATCHED = 4
    """The controller is STOPPED or FAULT: CLEAR first."""
    BAD_PARAM = 5
    """A field is out of range; field = its index in the layout, detail = the bound it broke."""
    VERSION_MISMATCH = 6
    """Frame version differs from the device's; detail = the device's protocol version."""
    VISCOSITY_OUT_OF_WINDOW = 7
    SENSOR_FAULT = 8
    END_OF_TRAVEL = 9
    WORKING_TIME_EXCEEDED = 10
    BUSY = 11
    """Transient: e.g. pressure relief still running. Retry later with a new command id."""
    NO_SESSION = 12
    """No HELLO yet on this link: the handshake must come first."""
    CALIBRATION_OUT_OF_RANGE = 13
    """CALIBRATE_SPAN / CALIBRATE_VOLUME: the correction the measurement implies is outside the
    device's bound, so it is refused rather than applied; detail = that correction, ppm."""
    ZERO_DRIFT = 14
    """First ARM of a line presumed open (SPEC §5.23): the pressure at rest is not within the zero
    check's bound of 0 (the transducer's zero drifted: ZERO it); detail = the reading, Pa."""
    AT_HOME = 15
    """A backward movement (JOG backward, WITHDRAW, HOME) refused: the plunger is at home."""


class BusyDetail(IntEnum):
    """NAK BUSY `detail`: which transient condition refused the command (SPEC §6.5)."""

    NONE = 0
    RELIEF_ACTIVE = 1
    """Post-stop pressure relief is still backing the plunger off (flag RELIEF_ACTIVE)."""
    PLUNGER_MOVING = 2
    """The plunger is still decelerating after a stop: ARMED and IDLE mean a still plunger."""


class EventKind(IntEnum):
    POWER_UP = 1
    """Sent once after every reset; detail = ResetCause."""
    STATE_CHANGE = 2
    STOP = 3
    """A stop (latched or the planned ends VOLUME_LIMIT / INCREMENT_DONE); reason and source set."""
    ALARM = 4
    """An alarm became active; alarm set, detail per AlarmCode."""
    ALARM_CLEARED = 5
    RELIEF_DONE = 6
    """Post-stop pressure relief finished; detail = plunger back-off in um."""
    MOTION_DONE = 9
    """A movement (PRIMING, JOGGING, WITHDRAWING, HOMING = prev_state) ended normally, plunger at
    rest, state IDLE: the transition's one EVENT. detail = the volume it moved in nL for PRIMING
    (primed, positive) and WITHDRAWING (withdrawn, negative), its travel in um for JOGGING and
    HOMING (forward positive)."""


class AlarmCode(IntEnum):
    NONE = 0
    PRESSURE_THROTTLE = 1
    """Pressure reached the soft limit: the pressure loop is throttling flow; detail = flow nL/s."""
    WORKING_TIME_WARNING = 2
    """80 % of the cement's working time used; detail = ms left."""
    VISCOSITY_HIGH = 3
    VISCOSITY_LOW = 4
    SENSOR_SUSPECT = 5
    LIMIT_CLAMPED = 6
    """A requested limit exceeded the device's own and was clamped; detail = value in force."""
    FLUORO_LINE = 7
    """The fluoroscopy input line is asserted."""
    RELIEF_AT_LIMIT = 8
    """One-shot notice after RELIEF_DONE: the relief ended at its travel bound (its back-off bound
    or home) with the line still at or above relief_pa; detail = that pressure, Pa."""
    RELIEF_INCOMPLETE = 9
    """One-shot notice after RELIEF_DONE: the relief ended before the line was relieved, on its time
    bound or because the plunger could not move back (stall), with the line still at or above
    relief_pa; detail = that pressure, Pa."""


class ResetCause(IntEnum):
    POWER_ON = 1
    WATCHDOG = 2
    SOFTWARE = 3
    BROWNOUT = 4


class Mode(IntEnum):
    CONTINUOUS = 0
    INCREMENTAL = 1


class PlanFlags(IntFlag):
    NONE = 0
    RELIEF = 0x01
    """Back the plunger off after a stop until the pressure falls below `relief_pa`."""


class Flags(IntFlag):
    """Status bits carried by every telemetry sample and STATUS."""

    NONE = 0
    THROTTLING = 0x0001
    RELIEF_ACTIVE = 0x0002
    FLUORO_LINE = 0x0004
    SENSOR_FAULT = 0x0008
    HOST_LINK_OK = 0x0010
    END_OF_TRAVEL = 0x0020
    MOTOR_MOVING = 0x0040
    VISCOSITY_VALID = 0x0080
    WORKING_TIME_WARNING = 0x0100
    SIMULATED = 0x0200
    STALL_SUSPECT = 0x0400
    AT_HOME = 0x1000
    """The plunger is on or behind the home position: backward movements are refused (AT_HOME)."""


class Capabilities(IntFlag):
    NONE = 0
    RELIEF_BACKOFF = 0x01
    INCREMENTAL = 0x02
    FLUORO_LINE = 0x04
    VISCOSITY_ESTIMATE = 0x08
    SIMULATOR = 0x10
    TELEMETRY_CONFIG = 0x20
    SETUP = 0x40
    """SET_SYRINGE, ZERO, CALIBRATE_SPAN, CALIBRATE_VOLUME, GET_CALIBRATION; SYRINGE_INFO and
    CALIBRATION_INFO in the handshake; the zero check at ARM."""
    MOTION = 0x80
    """PRIME, JOG, WITHDRAW, HOME and GET_MOTION are implemented (else UNKNOWN_COMMAND)."""


COMMAND_TYPES: frozenset[MsgType] = frozenset(
    t for t in MsgType if 0x01 <= t <= 0x3F and t != MsgType.HEARTBEAT
)
"""Types that carry a command id and get exactly one ACK or NAK."""
