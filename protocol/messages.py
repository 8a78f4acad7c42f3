"""Message definitions: one frozen dataclass per message type, with its fixed little-endian layout.

Each class's fields appear in the order of its struct layout (pad bytes excluded), so the dataclass
is the C struct. Integer fields hold wire units (Pa, nL, nL/s, um, ms, us); conversions to kPa and mL
happen at the edges (`protocol.models`, the host UI).
"""

from __future__ import annotations

import struct
import typing
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import Any, ClassVar, Self

from protocol.batch_layout import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_SIZE
from protocol.enums import (
    AlarmCode,
    Capabilities,
    EventKind,
    Flags,
    Mode,
    MsgType,
    NakCode,
    PlanFlags,
    State,
    StopReason,
    StopSource,
)

if typing.TYPE_CHECKING:  # numpy is imported with the first telemetry batch: a STOP needs none
    from protocol.telemetry import SampleArray


class EncodeError(ValueError):
    """A field value does not fit its wire type."""


class BodyError(ValueError):
    """A body does not match its type's layout."""

    def __init__(self, msg_type: MsgType, expected: int, got: int) -> None:
        super().__init__(f"{msg_type.name} body is {got} bytes, layout needs {expected}")
        self.msg_type = msg_type
        self.expected = expected
        self.got = got


class FieldValueError(ValueError):
    """A body has the right length but a field holds a value its type does not define (an enum value
    this side does not know). The receiver rejects the frame; a device NAKs it BAD_PARAM with `index`."""

    def __init__(self, msg_type: MsgType, index: int, name: str, value: int) -> None:
        super().__init__(f"{msg_type.name}.{name} (field {index}) = {value} is not a defined value")
        self.msg_type = msg_type
        self.index = index
        self.name = name
        self.value = value


_INT_RANGES: dict[str, tuple[int, int]] = {
    "B": (0, 0xFF),
    "H": (0, 0xFFFF),
    "I": (0, 0xFFFF_FFFF),
    "Q": (0, 0xFFFF_FFFF_FFFF_FFFF),
    "b": (-0x80, 0x7F),
    "h": (-0x8000, 0x7FFF),
    "i": (-0x8000_0000, 0x7FFF_FFFF),
}


def _codes(fmt: str) -> list[str]:
    """Struct codes of the named fields, in order ('16s' stays one code, pad bytes dropped)."""
    out: list[str] = []
    count = ""
    for ch in fmt.lstrip("<"):
        if ch.isdigit():
            count += ch
            continue
        if ch == "x":
            count = ""
            continue
        if ch == "s":
            out.append(f"{count}s")
        else:
            out.extend(ch for _ in range(int(count or 1)))
        count = ""
    return out


class Message:
    """Base of every message. Subclasses set TYPE and FORMAT and are frozen dataclasses."""

    TYPE: ClassVar[MsgType]
    FORMAT: ClassVar[str]
    _struct: ClassVar[struct.Struct]
    _names: ClassVar[tuple[str, ...]]
    _codes: ClassVar[tuple[str, ...]]
    _decoders: ClassVar[tuple[Any, ...]]
    _str_sizes: ClassVar[tuple[tuple[int, int], ...]]
    """(field index, byte size) of each fixed-size string field."""

    @classmethod
    def _bind_layout(cls) -> None:
        cls._struct = struct.Struct(cls.FORMAT)
        # Device-to-host messages keep enum values this side does not know as plain ints, so that
        # appending an enum value needs no protocol bump (a newer device's new stop reason still
        # arrives). Commands stay strict: a device never acts on a value it does not define.
        lenient = cls.TYPE >= 0x40
        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        codes = tuple(_codes(cls.FORMAT))
        if len(names) != len(codes):
            raise TypeError(f"{cls.__name__}: {len(names)} fields but {len(codes)} struct codes")
        decoders: list[Any] = []
        for name in names:
            hint = hints[name]
            if isinstance(hint, type) and issubclass(hint, IntFlag):
                decoders.append(hint)  # unknown bits are kept (boundary KEEP)
            elif isinstance(hint, type) and issubclass(hint, IntEnum):
                decoders.append(_lenient(hint) if lenient else hint)
            elif hint is str:
                decoders.append(_decode_str)
            else:
                decoders.append(None)
        cls._names, cls._codes, cls._decoders = names, codes, tuple(decoders)
        cls._str_sizes = tuple((i, int(c[:-1])) for i, c in enumerate(codes) if c.endswith("s"))

    @classmethod
    def body_size(cls) -> int:
        return cls._struct.size

    def pack_body(self) -> bytes:
        values = [getattr(self, n) for n in self._names]
        try:
            for i, size in self._str_sizes:
                raw = values[i].encode("ascii")
                if len(raw) > size:  # struct would truncate silently
                    raise self._explain()
                values[i] = raw
            return self._struct.pack(*values)
        except (struct.error, OverflowError, UnicodeEncodeError, AttributeError) as exc:
            # OverflowError: a float beyond float32; the others: a str field that is not ASCII text.
            raise self._explain() from exc

    def _explain(self) -> EncodeError:
        cls = type(self).__name__
        for name, code in zip(self._names, self._codes, strict=True):
            value = getattr(self, name)
            if code in _INT_RANGES:
                lo, hi = _INT_RANGES[code]
                if not isinstance(value, int) or not lo <= value <= hi:
                    return EncodeError(f"{cls}.{name} = {value!r} is outside {code!r} range {lo}..{hi}")
            elif code == "f":
                try:
                    _F32.pack(value)
                except (struct.error, OverflowError):
                    return EncodeError(
                        f"{cls}.{name} = {value!r} is outside 'f' range -{_F32_MAX!r}..{_F32_MAX!r} "
                        "(float32; NaN and inf allowed)"
                    )
            elif code.endswith("s"):
                size = int(code[:-1])
                if not isinstance(value, str) or not value.isascii():
                    return EncodeError(f"{cls}.{name} = {value!r} is not ASCII text")
                if len(value) > size:
                    return EncodeError(f"{cls}.{name} = {value!r} is longer than {size} bytes")
        return EncodeError(f"{cls}: cannot pack {[getattr(self, n) for n in self._names]!r}")

    @classmethod
    def unpack_body(cls, body: bytes | memoryview) -> Self:
        if len(body) != cls._struct.size:
            raise BodyError(cls.TYPE, cls._struct.size, len(body))
        raw = cls._struct.unpack(body)
        try:
            values = [v if d is None else d(v) for d, v in zip(cls._decoders, raw, strict=True)]
        except ValueError:
            raise cls._bad_value(raw) from None
        return cls(*values)

    @classmethod
    def _bad_value(cls, raw: tuple[Any, ...]) -> FieldValueError:
        for index, (decoder, value) in enumerate(zip(cls._decoders, raw, strict=True)):
            if decoder is None:
                continue
            try:
                decoder(value)
            except ValueError:
                return FieldValueError(cls.TYPE, index, cls._names[index], value)
        raise AssertionError("no field failed to decode")  # pragma: no cover

    def field_name(self, index: int) -> str | None:
        """Name of the field at a layout index, as NAK.field reports it."""
        return self._names[index] if 0 <= index < len(self._names) else None


def _lenient(enum: type[IntEnum]) -> Any:
    members = {int(m): m for m in enum}
    return lambda value: members.get(value, value)


_F32 = struct.Struct("<f")
_F32_MAX = 3.4028234663852886e38


def _decode_str(raw: bytes) -> str:
    return raw.rstrip(b"\x00").decode("ascii", "replace")


_M = typing.TypeVar("_M", bound="Message")


@typing.dataclass_transform(frozen_default=True)
def _message(cls: type[_M]) -> type[_M]:
    """Class decorator: frozen slotted dataclass, layout bound, registered by type.

    dataclass_transform lets type checkers see each message's generated __init__ (fields, defaults).
    """
    dc: type[_M] = dataclass(frozen=True, slots=True)(cls)
    dc._bind_layout()
    if dc.TYPE in REGISTRY:
        raise TypeError(f"duplicate message type {dc.TYPE!r}")
    REGISTRY[dc.TYPE] = dc
    return dc


REGISTRY: dict[MsgType, type[Message]] = {}


# ---------------------------------------------------------------------------------------------
# Host -> device. Every command body starts with cmd_id (u16, never 0): the device answers each
# command with exactly one ACK or NAK carrying it, and answers a repeated cmd_id from its cache.
# ---------------------------------------------------------------------------------------------


class Command(Message):
    cmd_id: int


@_message
class Hello(Command):
    """Opens a session: the device answers DEVICE_INFO, then ACK."""

    TYPE = MsgType.HELLO
    FORMAT = "<HBx"
    cmd_id: int
    protocol_version: int


@_message
class Heartbeat(Message):
    """Liveness, both directions, never acknowledged. The host sends one every watchdog_ms / 2."""

    TYPE = MsgType.HEARTBEAT
    FORMAT = "<IB3x"
    uptime_ms: int
    state: State = State.IDLE


@_message
class Arm(Command):
    """Loads an injection plan; IDLE or DONE -> ARMED. The device clamps limits to its own."""

    TYPE = MsgType.ARM
    FORMAT = "<HBBIIIIIIIIffIHH"
    cmd_id: int
    mode: Mode
    plan_flags: PlanFlags
    flow_nl_s: int
    increment_nl: int
    """Volume per increment in INCREMENTAL mode; 0 in CONTINUOUS."""
    volume_limit_nl: int
    soft_limit_pa: int
    """The pressure loop throttles flow to hold the syringe pressure below this."""
    hard_limit_pa: int
    """OVERPRESSURE stop at or above this."""
    relief_pa: int
    """After a stop, back off until pressure is below this (when plan_flags has RELIEF)."""
    mixed_ago_ms: int
    """Time since the cement was mixed, at the moment this command is sent."""
    working_time_ms: int
    """WORKING_TIME stop once the cement is this old."""
    viscosity_min_pas: float
    viscosity_max_pas: float
    cannula_length_um: int
    cannula_id_um: int
    syringe_bore_um: int


@_message
class Start(Command):
    TYPE = MsgType.START
    FORMAT = "<H2x"
    cmd_id: int


@_message
class Pause(Command):
    TYPE = MsgType.PAUSE
    FORMAT = "<H2x"
    cmd_id: int


@_message
class Resume(Command):
    TYPE = MsgType.RESUME
    FORMAT = "<H2x"
    cmd_id: int


@_message
class Stop(Command):
    """Always honoured, in every state, with or without a session: latches a stop in ARMED,
    INJECTING and PAUSED. A STOP whose source byte is undefined still stops (source OPERATOR).

    `detail` was a reserved-zero pad byte (SPEC §5.6, §11.2): the fluoroscopic guard names its rule
    there (a StopDetail). A plain int, never rejected, so no detail value can keep a STOP back."""

    TYPE = MsgType.STOP
    FORMAT = "<HBB"
    cmd_id: int
    source: StopSource = StopSource.OPERATOR
    detail: int = 0


@_message
class Clear(Command):
    """Back to IDLE: releases a latched stop (STOPPED, FAULT) or DONE once relief has finished,
    and disarms ARMED."""

    TYPE = MsgType.CLEAR
    FORMAT = "<H2x"
    cmd_id: int


@_message
class SetLimits(Command):
    """Changes limits in force; 0 leaves a field unchanged. Answered by STATUS, then ACK."""

    TYPE = MsgType.SET_LIMITS
    FORMAT = "<H2xIIII"
    cmd_id: int
    soft_limit_pa: int = 0
    hard_limit_pa: int = 0
    relief_pa: int = 0
    max_flow_nl_s: int = 0


@_message
class GetStatus(Command):
    """Answered by STATUS (same cmd_id), then ACK."""

    TYPE = MsgType.GET_STATUS
    FORMAT = "<H2x"
    cmd_id: int


@_message
class SetTelemetry(Command):
    """divider 0 turns telemetry off; n sends every n-th 1 kHz sample, batch_samples per batch."""

    TYPE = MsgType.SET_TELEMETRY
    FORMAT = "<HHB3x"
    cmd_id: int
    divider: int = 1
    batch_samples: int = 20


@_message
class Prime(Command):
    """Prime / purge: IDLE -> PRIMING, forward at `flow_nl_s` until `volume_nl` has left the syringe
    or a stop. Every forward limit and detector is active; the volume is counted apart from any
    injection (MOTION_STATUS.primed_nl, EVENT MOTION_DONE), never in `delivered_nl`. Answered by
    MOTION_STATUS, then ACK."""

    TYPE = MsgType.PRIME
    FORMAT = "<HHII"
    cmd_id: int
    syringe_bore_um: int
    flow_nl_s: int
    volume_nl: int


@_message
class Jog(Command):
    """Hold-to-move: grants motion at `speed_um_s` (forward positive) for `hold_ms` (1 .. the
    watchdog period) from its arrival; the host repeats it while the operator holds the key. IDLE ->
    JOGGING, or renews the grant in JOGGING. Forward jog obeys every limit. ACK or NAK, no reply."""

    TYPE = MsgType.JOG
    FORMAT = "<HHi"
    cmd_id: int
    hold_ms: int
    speed_um_s: int


@_message
class Withdraw(Command):
    """Withdraw / refill: IDLE -> WITHDRAWING, backward at `flow_nl_s` until `volume_nl` has been
    drawn back, never behind home. Answered by MOTION_STATUS, then ACK."""

    TYPE = MsgType.WITHDRAW
    FORMAT = "<HHII"
    cmd_id: int
    syringe_bore_um: int
    flow_nl_s: int
    volume_nl: int


@_message
class Home(Command):
    """IDLE -> HOMING: backward at `speed_um_s` to the home position (MOTION_STATUS.home_um).
    Answered by MOTION_STATUS, then ACK."""

    TYPE = MsgType.HOME
    FORMAT = "<H2xI"
    cmd_id: int
    speed_um_s: int


@_message
class GetMotion(Command):
    """Answered by MOTION_STATUS (same cmd_id), then ACK, in every state."""

    TYPE = MsgType.GET_MOTION
    FORMAT = "<H2x"
    cmd_id: int


# -- syringe and calibration (SPEC §5.17-§5.23; capability SETUP) ------------------------------


@_message
class SetSyringe(Command):
    """Selects the syringe: IDLE only, plunger at rest. The device refuses dimensions beyond its own
    limits (NAK BAD_PARAM: the field and the bound) and answers SYRINGE_INFO, then ACK."""

    TYPE = MsgType.SET_SYRINGE
    FORMAT = "<H2x16sIIII"
    cmd_id: int
    name: str
    """ASCII, 1-16 characters: a library name ("BD 5 mL") or the operator's for a custom one."""
    bore_um: int
    """Inner diameter of the barrel."""
    stroke_um: int
    """Plunger travel from full (home) to empty: the usable end is this less the forward margin."""
    dead_volume_nl: int
    """Volume left in the syringe and its nozzle at the end of the stroke (reported, for priming)."""
    max_pressure_pa: int
    """The syringe's rated pressure: pressure limits are clamped to it while it is selected."""


@_message
class Zero(Command):
    """Tares the pressure transducer at atmospheric pressure (IDLE, plunger at rest, line open).
    Answered by CALIBRATION_INFO, then ACK."""

    TYPE = MsgType.ZERO
    FORMAT = "<H2xI"
    cmd_id: int
    utc_s: int
    """The host's UTC time, seconds since 1970-01-01: the date stored with the zero."""


@_message
class CalibrateSpan(Command):
    """Second point of the transducer calibration: the line holds a reference pressure, whose value
    the operator gives. Answered by CALIBRATION_INFO, then ACK."""

    TYPE = MsgType.CALIBRATE_SPAN
    FORMAT = "<H2xII"
    cmd_id: int
    reference_pa: int
    utc_s: int


@_message
class CalibrateVolume(Command):
    """Gravimetric volume calibration: the device dispensed `nominal_nl` by its own count, the operator
    weighed `mass_ug` of a fluid of density `density_mg_l`. Answered by CALIBRATION_INFO, then ACK."""

    TYPE = MsgType.CALIBRATE_VOLUME
    FORMAT = "<H2xIIII"
    cmd_id: int
    nominal_nl: int
    mass_ug: int
    density_mg_l: int
    """mg per litre (= g/m3): water at 20 C is 998 203."""
    utc_s: int


@_message
class GetCalibration(Command):
    """Answered by SYRINGE_INFO, CALIBRATION_INFO, then ACK."""

    TYPE = MsgType.GET_CALIBRATION
    FORMAT = "<H2x"
    cmd_id: int


# ---------------------------------------------------------------------------------------------
# Device -> host.
# ---------------------------------------------------------------------------------------------


@_message
class DeviceInfo(Message):
    """Answer to HELLO: who the device is and its own limits (host requests are clamped to these)."""

    TYPE = MsgType.DEVICE_INFO
    FORMAT = "<HBxBBBx16sIHHIIIB3x"
    cmd_id: int
    protocol_version: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    serial: str
    capabilities: Capabilities
    sample_rate_hz: int
    watchdog_ms: int
    max_pressure_pa: int
    max_flow_nl_s: int
    travel_um: int
    max_batch_samples: int

    @property
    def firmware_version(self) -> str:
        return f"{self.fw_major}.{self.fw_minor}.{self.fw_patch}"


@_message
class Status(Message):
    """Snapshot of the controller. cmd_id is the GET_STATUS / ARM / SET_LIMITS it answers, or 0."""

    TYPE = MsgType.STATUS
    FORMAT = "<HBBBBHQiiiiIIIH2xIIIfIII4x"
    cmd_id: int
    state: State
    stop_reason: StopReason
    stop_source: StopSource
    mode: Mode
    flags: Flags
    t_us: int
    pressure_pa: int
    delivered_nl: int
    """Cement delivered since ARM: the high-water mark of forward plunger travel x bore area. Never
    decreases (relief back-off does not un-deliver cement); 0 after ARM and without a plan."""
    plunger_um: int
    """Plunger position from home, forward positive: falls during relief back-off."""
    flow_nl_s: int
    flow_setpoint_nl_s: int
    volume_limit_nl: int
    increment_nl: int
    increments_done: int
    soft_limit_pa: int
    hard_limit_pa: int
    relief_pa: int
    viscosity_pas: float
    mixed_age_ms: int
    working_time_ms: int
    event_count: int
    """EVENTs sent since power-up: a host that saw fewer knows it missed some."""


@_message
class Event(Message):
    """Pushed unsolicited. event_index counts from 0 at power-up, so gaps are visible.

    t_us comes first so that every field is naturally aligned: a plain C struct, no packing.
    """

    TYPE = MsgType.EVENT
    FORMAT = "<QIBBBBBBHiiii4x"
    t_us: int
    event_index: int
    kind: EventKind
    state: State
    prev_state: State
    reason: StopReason
    source: StopSource
    alarm: AlarmCode
    flags: Flags
    """Status bits at the event, after it took effect: SENSOR_FAULT set means pressure_pa is not valid."""
    pressure_pa: int
    delivered_nl: int
    plunger_um: int
    detail: int


@_message
class MotionStatus(Message):
    """The movements' side of the controller: reply to PRIME, WITHDRAW, HOME and GET_MOTION.

    `moved_um`, `primed_nl` and `withdrawn_nl` describe the current movement, or the last one
    until the next starts (0 since power-up). None of them is ever part of STATUS.delivered_nl."""

    TYPE = MsgType.MOTION_STATUS
    FORMAT = "<HBBHHQiiiiIIiH2x"
    cmd_id: int
    state: State
    last_motion: State
    """State of the current or last movement (PRIMING .. HOMING); IDLE if none since power-up."""
    flags: Flags
    grant_ms: int
    """JOGGING: ms of motion the last JOG still grants; else 0."""
    t_us: int
    plunger_um: int
    home_um: int
    """The home position: backward movements come to rest on or in front of it."""
    travel_um: int
    """End of the usable stroke (DEVICE_INFO.travel_um)."""
    moved_um: int
    """Plunger travel of the movement since it started, um, forward positive."""
    primed_nl: int
    """Volume of the current or last PRIME: its farthest forward travel x its bore area."""
    withdrawn_nl: int
    """Volume of the current or last WITHDRAW: its farthest backward travel x its bore area."""
    speed_um_s: int
    """Plunger speed commanded now, um/s, forward positive."""
    syringe_bore_um: int
    """Bore of the current or last PRIME / WITHDRAW; 0 if none."""


@_message
class SyringeInfo(Message):
    """The syringe in force (reply to HELLO, SET_SYRINGE, GET_CALIBRATION). An empty `name` means
    none is selected: each ARM's `syringe_bore_um` is used, over the device's whole travel."""

    TYPE = MsgType.SYRINGE_INFO
    FORMAT = "<H2x16sIIIII"
    cmd_id: int
    name: str
    bore_um: int
    stroke_um: int
    dead_volume_nl: int
    max_pressure_pa: int
    """Ceiling of every pressure limit while selected (the device's own when none is selected)."""
    travel_um: int
    """Usable end of the stroke in force: where END_OF_TRAVEL brings the plunger to rest."""


@_message
class CalibrationInfo(Message):
    """The calibration in force (reply to HELLO, ZERO, CALIBRATE_SPAN, CALIBRATE_VOLUME,
    GET_CALIBRATION). A `*_utc_s` of 0: never calibrated (the factory value is in force)."""

    TYPE = MsgType.CALIBRATION_INFO
    FORMAT = "<H2xiIIIIIII"
    cmd_id: int
    zero_offset_pa: int
    """Reading at atmospheric pressure at the last ZERO, subtracted from every reading."""
    zero_utc_s: int
    span_gain_ppm: int
    """Gain applied after the zero, ppm (1 000 000 = 1)."""
    span_reference_pa: int
    span_utc_s: int
    volume_factor_ppm: int
    """Delivered volume per plunger count relative to the bore's geometric volume, ppm."""
    volume_utc_s: int
    zero_check_pa: int
    """The first ARM of a line presumed open is refused (ZERO_DRIFT) while |pressure| exceeds this."""


@_message
class Ack(Message):
    TYPE = MsgType.ACK
    FORMAT = "<HBB"
    cmd_id: int
    cmd_type: MsgType
    state: State
    """State after the command took effect."""


@_message
class Nak(Message):
    TYPE = MsgType.NAK
    FORMAT = "<HBBBBxxi"
    cmd_id: int
    cmd_type: int
    """Plain int: a NAK may answer a type this side does not know (UNKNOWN_COMMAND)."""
    code: NakCode
    state: State
    field: int = 0xFF
    """Layout index of the offending field for BAD_PARAM, else 0xFF."""
    detail: int = 0


class TelemetryBatch(Message):
    """A batch of consecutive samples. Variable length: 12-byte header, then count x 40 bytes."""

    TYPE = MsgType.TELEMETRY_BATCH
    __slots__ = ("first_index", "period_us", "samples")

    def __init__(self, first_index: int, period_us: int, samples: SampleArray) -> None:
        self.first_index = first_index
        """Index of samples[0] among the telemetry samples sent since power-up: the next batch starts
        at first_index + count whatever the divider, so a gap means lost samples."""
        self.period_us = period_us
        self.samples = samples

    @classmethod
    def body_size(cls) -> int:
        raise TypeError("TELEMETRY_BATCH is variable length")

    def pack_body(self) -> bytes:
        n = len(self.samples)
        if n > MAX_BATCH_SAMPLES:
            raise EncodeError(f"TelemetryBatch.samples has {n} samples, at most {MAX_BATCH_SAMPLES}")
        from protocol.telemetry import SAMPLE_DTYPE

        if self.samples.dtype != SAMPLE_DTYPE:
            raise EncodeError("TelemetryBatch.samples must have protocol.telemetry.SAMPLE_DTYPE")
        for name, code, value in (("first_index", "I", self.first_index), ("period_us", "I", self.period_us)):
            lo, hi = _INT_RANGES[code]
            if not isinstance(value, int) or not lo <= value <= hi:
                raise EncodeError(f"TelemetryBatch.{name} = {value!r} is outside {code!r} range {lo}..{hi}")
        header = BATCH_HEADER.pack(self.first_index, self.period_us, n, 0)
        return header + self.samples.tobytes()

    @classmethod
    def unpack_body(cls, body: bytes | memoryview) -> Self:
        if len(body) < BATCH_HEADER.size:
            raise BodyError(cls.TYPE, BATCH_HEADER.size, len(body))
        first_index, period_us, count, _reserved = BATCH_HEADER.unpack_from(body)
        expected = BATCH_HEADER.size + count * SAMPLE_SIZE
        if len(body) != expected or count > MAX_BATCH_SAMPLES:
            raise BodyError(cls.TYPE, expected, len(body))
        import numpy as np

        from protocol.telemetry import SAMPLE_DTYPE

        samples = np.frombuffer(body, dtype=SAMPLE_DTYPE, count=count, offset=BATCH_HEADER.size)
        return cls(first_index, period_us, samples)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelemetryBatch):
            return NotImplemented
        return (
            self.first_index == other.first_index
            and self.period_us == other.period_us
            and self.samples.tobytes() == other.samples.tobytes()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n = len(self.samples)
        return f"TelemetryBatch(first_index={self.first_index}, period_us={self.period_us}, n={n})"


REGISTRY[MsgType.TELEMETRY_BATCH] = TelemetryBatch


__all__ = [
    "REGISTRY",
    "Ack",
    "AlarmCode",
    "Arm",
    "BodyError",
    "CalibrateSpan",
    "CalibrateVolume",
    "CalibrationInfo",
    "Capabilities",
    "Clear",
    "Command",
    "DeviceInfo",
    "EncodeError",
    "Event",
    "EventKind",
    "FieldValueError",
    "Flags",
    "GetCalibration",
    "GetMotion",
    "GetStatus",
    "Heartbeat",
    "Hello",
    "Home",
    "Jog",
    "Message",
    "MotionStatus",
    "Nak",
    "Pause",
    "Prime",
    "Resume",
    "SetLimits",
    "SetSyringe",
    "SetTelemetry",
    "Start",
    "Status",
    "Stop",
    "SyringeInfo",
    "TelemetryBatch",
    "Withdraw",
    "Zero",
]
