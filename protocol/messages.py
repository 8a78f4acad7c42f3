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

import numpy as np

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
from protocol.telemetry import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_DTYPE, SAMPLE_SIZE, SampleArray


class EncodeError(ValueError):
    """A field value does not fit its wire type."""


class BodyError(ValueError):
    """A body does not match its type's layout."""

    def __init__(self, msg_type: MsgType, expected: int, got: int) -> None:
        super().__init__(f"{msg_type.name} body is {got} bytes, layout needs {expected}")
        self.msg_type = msg_type
        self.expected = expected
        self.got = got


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

    @classmethod
    def _bind_layout(cls) -> None:
        cls._struct = struct.Struct(cls.FORMAT)
        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        codes = tuple(_codes(cls.FORMAT))
        if len(names) != len(codes):
            raise TypeError(f"{cls.__name__}: {len(names)} fields but {len(codes)} struct codes")
        decoders: list[Any] = []
        for name in names:
            hint = hints[name]
            if isinstance(hint, type) and issubclass(hint, (IntEnum, IntFlag)):
                decoders.append(hint)
            elif hint is str:
                decoders.append(_decode_str)
            else:
                decoders.append(None)
        cls._names, cls._codes, cls._decoders = names, codes, tuple(decoders)

    @classmethod
    def body_size(cls) -> int:
        return cls._struct.size

    def pack_body(self) -> bytes:
        values = [getattr(self, n) for n in self._names]
        values = [v.encode("ascii") if isinstance(v, str) else v for v in values]
        try:
            return self._struct.pack(*values)
        except struct.error as exc:
            raise self._explain(values) from exc

    def _explain(self, values: list[Any]) -> EncodeError:
        for name, code, value in zip(self._names, self._codes, values, strict=True):
            if code in _INT_RANGES:
                lo, hi = _INT_RANGES[code]
                if not isinstance(value, int) or not lo <= value <= hi:
                    return EncodeError(
                        f"{type(self).__name__}.{name} = {value!r} is outside {code!r} range {lo}..{hi}"
                    )
            elif code.endswith("s") and len(value) > int(code[:-1]):
                size = code[:-1]
                return EncodeError(f"{type(self).__name__}.{name} = {value!r} is longer than {size} bytes")
        return EncodeError(f"{type(self).__name__}: cannot pack {values!r}")

    @classmethod
    def unpack_body(cls, body: bytes | memoryview) -> Self:
        if len(body) != cls._struct.size:
            raise BodyError(cls.TYPE, cls._struct.size, len(body))
        raw = cls._struct.unpack(body)
        values = [v if d is None else d(v) for d, v in zip(cls._decoders, raw, strict=True)]
        return cls(*values)

    def field_name(self, index: int) -> str | None:
        """Name of the field at a layout index, as NAK.field reports it."""
        return self._names[index] if 0 <= index < len(self._names) else None


def _decode_str(raw: bytes) -> str:
    return raw.rstrip(b"\x00").decode("ascii", "replace")


def _message(cls: type[Any]) -> type[Any]:
    """Class decorator: frozen slotted dataclass, layout bound, registered by type."""
    dc = dataclass(frozen=True, slots=True)(cls)
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
    """Always accepted, in every state; latches a stop when injecting or paused."""

    TYPE = MsgType.STOP
    FORMAT = "<HBx"
    cmd_id: int
    source: StopSource = StopSource.OPERATOR


@_message
class Clear(Command):
    """Releases a latched stop (STOPPED, FAULT, DONE -> IDLE) once relief has finished."""

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
    FORMAT = "<HBBBBHQiiiIIIH2xIIIfIII"
    cmd_id: int
    state: State
    stop_reason: StopReason
    stop_source: StopSource
    mode: Mode
    flags: Flags
    t_us: int
    pressure_pa: int
    volume_nl: int
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
    """Pushed unsolicited. event_index counts from 0 at power-up, so gaps are visible."""

    TYPE = MsgType.EVENT
    FORMAT = "<IBBBBBB2xQiii"
    event_index: int
    kind: EventKind
    state: State
    prev_state: State
    reason: StopReason
    source: StopSource
    alarm: AlarmCode
    t_us: int
    pressure_pa: int
    volume_nl: int
    detail: int


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
    """A batch of consecutive samples. Variable length: 8-byte header, then count x 32 bytes."""

    TYPE = MsgType.TELEMETRY_BATCH
    __slots__ = ("first_index", "period_us", "samples")

    def __init__(self, first_index: int, period_us: int, samples: SampleArray) -> None:
        self.first_index = first_index
        """Index of samples[0] in the device's sample stream since power-up; gaps mean lost samples."""
        self.period_us = period_us
        self.samples = samples

    @classmethod
    def body_size(cls) -> int:
        raise TypeError("TELEMETRY_BATCH is variable length")

    def pack_body(self) -> bytes:
        n = len(self.samples)
        if n > MAX_BATCH_SAMPLES:
            raise EncodeError(f"TelemetryBatch.samples has {n} samples, at most {MAX_BATCH_SAMPLES}")
        if self.samples.dtype != SAMPLE_DTYPE:
            raise EncodeError("TelemetryBatch.samples must have protocol.telemetry.SAMPLE_DTYPE")
        try:
            header = BATCH_HEADER.pack(self.first_index, n, self.period_us)
        except struct.error as exc:
            raise EncodeError(f"TelemetryBatch header out of range: {exc}") from exc
        return header + self.samples.tobytes()

    @classmethod
    def unpack_body(cls, body: bytes | memoryview) -> Self:
        if len(body) < BATCH_HEADER.size:
            raise BodyError(cls.TYPE, BATCH_HEADER.size, len(body))
        first_index, count, period_us = BATCH_HEADER.unpack_from(body)
        expected = BATCH_HEADER.size + count * SAMPLE_SIZE
        if len(body) != expected or count > MAX_BATCH_SAMPLES:
            raise BodyError(cls.TYPE, expected, len(body))
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
    "Capabilities",
    "Clear",
    "Command",
    "DeviceInfo",
    "EncodeError",
    "Event",
    "EventKind",
    "Flags",
    "GetStatus",
    "Heartbeat",
    "Hello",
    "Message",
    "Nak",
    "Pause",
    "Resume",
    "SetLimits",
    "SetTelemetry",
    "Start",
    "Status",
    "Stop",
    "TelemetryBatch",
]
