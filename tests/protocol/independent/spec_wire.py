"""The wire protocol as protocol/SPEC.md states it, transcribed by an outside reader.

Nothing here imports the repository's codec (`protocol/`), the simulator or the host: COBS (§3.2),
the CRC (§3.3), the receiver rules (§3.5), the message-layer checks (§4.4) and every body layout
(§5) are written again from the SPEC text, so that a disagreement between SPEC, the golden vectors
and the device shows up as a failing test instead of being shared by both sides.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

VERSION = 2
HEADER = struct.Struct("<BBH")
MAX_PAYLOAD = 1024
MAX_ENCODED = MAX_PAYLOAD + 2 + (MAX_PAYLOAD + 2) // 254 + 1
MIN_DECODED = 6
SAMPLE = struct.Struct("<QiiiiIifHBB")
BATCH_HEADER = struct.Struct("<IIHH")
MAX_BATCH_SAMPLES = 25
SAMPLE_FIELDS = [
    "t_us",
    "pressure_pa",
    "delivered_nl",
    "plunger_um",
    "flow_nl_s",
    "flow_setpoint_nl_s",
    "motor_um_s",
    "viscosity_pas",
    "flags",
    "state",
    "stop_reason",
]


@dataclass(frozen=True)
class Layout:
    """One body layout of §5: its type, Python struct format and named fields (pads excluded)."""

    name: str
    type: int
    fmt: str
    fields: tuple[str, ...]
    # field index -> largest defined value, for enum fields decoded strictly in commands (§4.4)
    strict_enums: dict[int, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)


_SIMPLE = "<H2x"
_STATE_MAX = 10  # §6.2: IDLE 0 .. HOMING 10
_LAYOUTS = [
    Layout("HELLO", 0x01, "<HBx", ("cmd_id", "protocol_version")),
    Layout("HEARTBEAT", 0x02, "<IB3x", ("uptime_ms", "state"), {1: _STATE_MAX}),
    Layout(
        "ARM",
        0x10,
        "<HBBIIIIIIIIffIHH",
        (
            "cmd_id",
            "mode",
            "plan_flags",
            "flow_nl_s",
            "increment_nl",
            "volume_limit_nl",
            "soft_limit_pa",
            "hard_limit_pa",
            "relief_pa",
            "mixed_ago_ms",
            "working_time_ms",
            "viscosity_min_pas",
            "viscosity_max_pas",
            "cannula_length_um",
            "cannula_id_um",
            "syringe_bore_um",
        ),
        {1: 1},
    ),
    Layout("START", 0x11, _SIMPLE, ("cmd_id",)),
    Layout("PAUSE", 0x12, _SIMPLE, ("cmd_id",)),
    Layout("RESUME", 0x13, _SIMPLE, ("cmd_id",)),
    Layout("STOP", 0x14, "<HBB", ("cmd_id", "source", "detail"), {1: 7}),
    Layout("CLEAR", 0x15, _SIMPLE, ("cmd_id",)),
    Layout(
        "SET_LIMITS",
        0x16,
        "<H2xIIII",
        ("cmd_id", "soft_limit_pa", "hard_limit_pa", "relief_pa", "max_flow_nl_s"),
    ),
    Layout("GET_STATUS", 0x17, _SIMPLE, ("cmd_id",)),
    Layout("SET_TELEMETRY", 0x18, "<HHB3x", ("cmd_id", "divider", "batch_samples")),
    Layout(
        "SET_SYRINGE",
        0x20,
        "<H2x16sIIII",
        ("cmd_id", "name", "bore_um", "stroke_um", "dead_volume_nl", "max_pressure_pa"),
    ),
    Layout("ZERO", 0x21, "<H2xI", ("cmd_id", "utc_s")),
    Layout("CALIBRATE_SPAN", 0x22, "<H2xII", ("cmd_id", "reference_pa", "utc_s")),
    Layout(
        "CALIBRATE_VOLUME",
        0x23,
        "<H2xIIII",
        ("cmd_id", "nominal_nl", "mass_ug", "density_mg_l", "utc_s"),
    ),
    Layout("GET_CALIBRATION", 0x24, _SIMPLE, ("cmd_id",)),
    Layout("PRIME", 0x28, "<HHII", ("cmd_id", "syringe_bore_um", "flow_nl_s", "volume_nl")),
    Layout("JOG", 0x29, "<HHi", ("cmd_id", "hold_ms", "speed_um_s")),
    Layout("WITHDRAW", 0x2A, "<HHII", ("cmd_id", "syringe_bore_um", "flow_nl_s", "volume_nl")),
    Layout("HOME", 0x2B, "<H2xI", ("cmd_id", "speed_um_s")),
    Layout("GET_MOTION", 0x2C, _SIMPLE, ("cmd_id",)),
    Layout(
        "DEVICE_INFO",
        0x40,
        "<HBxBBBx16sIHHIIIB3x",
        (
            "cmd_id",
            "protocol_version",
            "fw_major",
            "fw_minor",
            "fw_patch",
            "serial",
            "capabilities",
            "sample_rate_hz",
            "watchdog_ms",
            "max_pressure_pa",
            "max_flow_nl_s",
            "travel_um",
            "max_batch_samples",
        ),
    ),
    Layout(
        "STATUS",
        0x41,
        "<HBBBBHQiiiiIIIH2xIIIfIII4x",
        (
            "cmd_id",
            "state",
            "stop_reason",
            "stop_source",
            "mode",
            "flags",
            "t_us",
            "pressure_pa",
            "delivered_nl",
            "plunger_um",
            "flow_nl_s",
            "flow_setpoint_nl_s",
            "volume_limit_nl",
            "increment_nl",
            "increments_done",
            "soft_limit_pa",
            "hard_limit_pa",
            "relief_pa",
            "viscosity_pas",
            "mixed_age_ms",
            "working_time_ms",
            "event_count",
        ),
    ),
    Layout(
        "EVENT",
        0x43,
        "<QIBBBBBBHiiii4x",
        (
            "t_us",
            "event_index",
            "kind",
            "state",
            "prev_state",
            "reason",
            "source",
            "alarm",
            "flags",
            "pressure_pa",
            "delivered_nl",
            "plunger_um",
            "detail",
        ),
    ),
    Layout(
        "SYRINGE_INFO",
        0x44,
        "<H2x16sIIIII",
        ("cmd_id", "name", "bore_um", "stroke_um", "dead_volume_nl", "max_pressure_pa", "travel_um"),
    ),
    Layout(
        "CALIBRATION_INFO",
        0x45,
        "<H2xiIIIIIII",
        (
            "cmd_id",
            "zero_offset_pa",
            "zero_utc_s",
            "span_gain_ppm",
            "span_reference_pa",
            "span_utc_s",
            "volume_factor_ppm",
            "volume_utc_s",
            "zero_check_pa",
        ),
    ),
    Layout(
        "MOTION_STATUS",
        0x48,
        "<HBBHHQiiiiIIiH2x",
        (
            "cmd_id",
            "state",
            "last_motion",
            "flags",
            "grant_ms",
            "t_us",
            "plunger_um",
            "home_um",
            "travel_um",
            "moved_um",
            "primed_nl",
            "withdrawn_nl",
            "speed_um_s",
            "syringe_bore_um",
        ),
    ),
    Layout("ACK", 0x7E, "<HBB", ("cmd_id", "cmd_type", "state")),
    Layout("NAK", 0x7F, "<HBBBBxxi", ("cmd_id", "cmd_type", "code", "state", "field", "detail")),
]
BY_NAME = {lay.name: lay for lay in _LAYOUTS}
BY_TYPE = {lay.type: lay for lay in _LAYOUTS}
TELEMETRY_BATCH = 0x42

# §6 values the checks below name
STATE = {
    n: i
    for i, n in enumerate(
        [
            "IDLE",
            "ARMED",
            "INJECTING",
            "PAUSED",
            "STOPPED",
            "DONE",
            "FAULT",
            "PRIMING",
            "JOGGING",
            "WITHDRAWING",
            "HOMING",
        ]
    )
}
NAK_CODE = {
    n: i + 1
    for i, n in enumerate(
        [
            "UNKNOWN_COMMAND",
            "BAD_LENGTH",
            "BAD_STATE",
            "STOP_LATCHED",
            "BAD_PARAM",
            "VERSION_MISMATCH",
            "VISCOSITY_OUT_OF_WINDOW",
            "SENSOR_FAULT",
            "END_OF_TRAVEL",
            "WORKING_TIME_EXCEEDED",
            "BUSY",
            "NO_SESSION",
            "CALIBRATION_OUT_OF_RANGE",
            "ZERO_DRIFT",
            "AT_HOME",
        ]
    )
}
EVENT_KIND = {"POWER_UP": 1, "STATE_CHANGE": 2, "STOP": 3, "ALARM": 4, "ALARM_CLEARED": 5}
EVENT_KIND |= {"RELIEF_DONE": 6, "MOTION_DONE": 9}  # 7, 8 reserved (§6.6)
ALARM_CODE = {"NONE": 0, "PRESSURE_THROTTLE": 1, "WORKING_TIME_WARNING": 2, "VISCOSITY_HIGH": 3}
ALARM_CODE |= {"VISCOSITY_LOW": 4, "SENSOR_SUSPECT": 5, "LIMIT_CLAMPED": 6, "FLUORO_LINE": 7}
ALARM_CODE |= {"RELIEF_AT_LIMIT": 8, "RELIEF_INCOMPLETE": 9}
STOP_REASON = {"NONE": 0, "FLUORO_STOP": 6, "OPERATOR_STOP": 7, "HOST_LOST": 8}
STOP_SOURCE = {"NONE": 0, "OPERATOR": 1, "FLUORO_OPERATOR": 2, "FLUORO_REMOTE": 3, "REMOTE": 4}
STOP_SOURCE |= {"FLUORO_LINE": 5, "CONTROLLER": 6, "FLUORO_IMAGE": 7}
STOP_DETAIL_SESSION_TAKEN = 2
BUSY_PLUNGER_MOVING = 2
FLAG_HOST_LINK_OK = 0x0010
FLAG_MOTOR_MOVING = 0x0040
FLAG_RELIEF_ACTIVE = 0x0002
FLAG_FLUORO_LINE = 0x0004
BUSY_RELIEF_ACTIVE = 1
FLAG_AT_HOME = 0x1000
FLAG_END_OF_TRAVEL = 0x0020
CAP_SETUP = 0x40
CAP_MOTION = 0x80
NO_FIELD = 0xFF


# §3.2 COBS, without the zero-run extension ------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """Runs of at most 254 non-zero bytes, each as code n + 1 then the bytes (§3.2).

    A code 0xFF (full run) implies no zero; when the data ends right after a full run, nothing
    more is emitted. Empty input encodes to 01.
    """
    out = bytearray([0])
    code_at = 0
    for i, b in enumerate(data):
        if b == 0:
            out[code_at] = len(out) - code_at
            code_at = len(out)
            out.append(0)
            continue
        out.append(b)
        if len(out) - code_at == 0xFF:
            out[code_at] = 0xFF
            if i == len(data) - 1:
                return bytes(out)
            code_at = len(out)
            out.append(0)
    out[code_at] = len(out) - code_at
    return bytes(out)


class CobsError(ValueError):
    """A code byte points past the end of the run (§3.5)."""


def cobs_decode(enc: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(enc):
        code = enc[i]
        if code == 0 or i + code > len(enc):
            raise CobsError(f"code {code} at {i} runs past {len(enc)}")
        out += enc[i + 1 : i + code]
        i += code
        if code < 0xFF and i < len(enc):
            out.append(0)
    return bytes(out)


# §3.3 CRC-16/CCITT-FALSE ---------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def frame(payload: bytes) -> bytes:
    """§3.1: COBS(payload || CRC little-endian) || 0x00."""
    return cobs_encode(payload + struct.pack("<H", crc16(payload))) + b"\x00"


# §3.5 receiver -------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """Collects bytes up to each 0x00 and judges the run; counters named as in §3.5."""

    counters: dict[str, int] = field(default_factory=dict)
    _run: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def feed(self, data: bytes) -> list[bytes]:
        payloads: list[bytes] = []
        for b in data:
            if b != 0:
                if self._skipping:
                    continue
                self._run.append(b)
                if len(self._run) > MAX_ENCODED:
                    self._count("overlong")
                    self._run.clear()
                    self._skipping = True
                continue
            if self._skipping:
                self._skipping = False
                continue
            if not self._run:
                continue
            run = bytes(self._run)
            self._run.clear()
            try:
                dec = cobs_decode(run)
            except CobsError:
                self._count("cobs_errors")
                continue
            if len(dec) < MIN_DECODED:
                self._count("runts")
            elif len(dec) > MAX_PAYLOAD + 2:
                self._count("overlong")
            elif crc16(dec[:-2]) != struct.unpack("<H", dec[-2:])[0]:
                self._count("crc_errors")
            else:
                self._count("frames")
                payloads.append(dec[:-2])
        return payloads


# §4.4 message layer and §5 bodies ------------------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    version: int
    type: int
    seq: int
    name: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Reject:
    """A payload the message layer refuses (§4.4), with what a device's NAK would carry."""

    reason: str
    version: int
    type: int
    seq: int
    cmd_id: int | None
    field_index: int | None
    expected_length: int | None = None


def _unpack_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.rstrip(b"\x00").decode("ascii")
    return v


def decode(payload: bytes) -> Msg | Reject:
    version, mtype, seq = HEADER.unpack_from(payload)
    body = payload[HEADER.size :]
    is_command = 0x01 <= mtype <= 0x3F
    cmd_id = struct.unpack_from("<H", body)[0] if is_command and mtype != 0x02 and len(body) >= 2 else None
    if is_command and cmd_id is None and mtype != 0x02:
        cmd_id = 0
    if version != VERSION:
        return Reject("version_mismatch", version, mtype, seq, cmd_id, None)
    if mtype == TELEMETRY_BATCH:
        return _decode_batch(version, seq, body)
    lay = BY_TYPE.get(mtype)
    if lay is None:
        return Reject("unknown_type", version, mtype, seq, cmd_id, None)
    if len(body) != lay.size:
        return Reject("bad_length", version, mtype, seq, cmd_id, None, lay.size)
    values = [_unpack_value(v) for v in struct.unpack(lay.fmt, body)]
    if is_command:
        for idx, largest in lay.strict_enums.items():
            if values[idx] > largest:
                return Reject("bad_value", version, mtype, seq, cmd_id, idx)
    return Msg(version, mtype, seq, lay.name, dict(zip(lay.fields, values, strict=True)))


def _decode_batch(version: int, seq: int, body: bytes) -> Msg | Reject:
    if len(body) < BATCH_HEADER.size:
        return Reject("bad_length", version, TELEMETRY_BATCH, seq, None, None)
    first, period, count, _reserved = BATCH_HEADER.unpack_from(body)
    if count > MAX_BATCH_SAMPLES or len(body) != BATCH_HEADER.size + SAMPLE.size * count:
        return Reject("bad_length", version, TELEMETRY_BATCH, seq, None, None)
    samples = [
        dict(zip(SAMPLE_FIELDS, SAMPLE.unpack_from(body, BATCH_HEADER.size + SAMPLE.size * i), strict=True))
        for i in range(count)
    ]
    fields = {"first_index": first, "count": count, "period_us": period, "samples": samples}
    return Msg(version, TELEMETRY_BATCH, seq, "TELEMETRY_BATCH", fields)


def _pack_value(code: str, v: Any) -> Any:
    if code.endswith("s"):
        return str(v).encode("ascii")
    if code == "f":
        return float(v)
    return int(v)


def _codes(fmt: str) -> list[str]:
    """The struct codes of the named fields of a format, pads dropped (`16s` kept as one)."""
    out: list[str] = []
    num = ""
    for ch in fmt[1:]:
        if ch.isdigit():
            num += ch
            continue
        if ch != "x":
            out.append(num + ch if ch == "s" else ch)
        num = ""
    return out


def encode_body(name: str, fields: dict[str, Any]) -> bytes:
    if name == "TELEMETRY_BATCH":
        samples = fields["samples"]
        out = BATCH_HEADER.pack(fields["first_index"], fields["period_us"], fields["count"], 0)
        return out + b"".join(SAMPLE.pack(*(s[n] for n in SAMPLE_FIELDS)) for s in samples)
    lay = BY_NAME[name]
    codes = _codes(lay.fmt)
    return struct.pack(lay.fmt, *(_pack_value(c, fields[n]) for c, n in zip(codes, lay.fields, strict=True)))


def encode(msg_name: str, seq: int, version: int = VERSION, /, **fields: Any) -> bytes:
    mtype = TELEMETRY_BATCH if msg_name == "TELEMETRY_BATCH" else BY_NAME[msg_name].type
    return HEADER.pack(version, mtype, seq) + encode_body(msg_name, fields)


def same_float(a: float, b: float) -> bool:
    """Equal as binary32, NaN equal to NaN (§1.2: any NaN is "no value")."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return struct.pack("<f", a) == struct.pack("<f", b)
