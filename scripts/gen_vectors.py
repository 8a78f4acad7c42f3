"""Write protocol/vectors.json: golden frames for every message type, and frames a receiver must reject.

    python scripts/gen_vectors.py            # (re)write protocol/vectors.json
    python scripts/gen_vectors.py --check    # exit 1 if the committed file differs from what this writes

The output is deterministic (no clock, no randomness, a fixed order), so regenerating gives an identical
file; tests/protocol/test_vectors.py asserts that, and checks every vector in both directions.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import typing
from collections.abc import Callable
from enum import IntEnum, IntFlag
from pathlib import Path
from typing import Any

import numpy as np
from cobs import cobs

from protocol import framing
from protocol._crc import crc16
from protocol.codec import HEADER, HEADER_SIZE, PROTOCOL_VERSION, encode_payload
from protocol.enums import (
    AlarmCode,
    Capabilities,
    EventKind,
    Flags,
    Mode,
    MsgType,
    NakCode,
    PlanFlags,
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
    TelemetryBatch,
    Withdraw,
    Zero,
)
from protocol.telemetry import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_DTYPE, SAMPLE_SIZE, SampleArray

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "protocol" / "vectors.json"

FORMAT_NOTES = [
    "vectors: one valid frame each, sorted by msg_type value, then name. Both directions must hold: "
    "decoding frame_hex gives `fields`, and encoding `fields` (with msg_type, version and seq) gives "
    "frame_hex byte for byte.",
    "payload_hex = header (version u8, msg_type u8, seq u16 LE) + body, without the CRC. crc16 = "
    "CRC-16/CCITT-FALSE over payload_hex, sent little-endian after the payload. frame_hex = "
    "COBS(payload || crc16_le) followed by the 0x00 delimiter.",
    "fields are in wire (layout) order; pad bytes are not listed and are sent as 0x00. Integers are in "
    "wire units (Pa, nL, nL/s, um, ms, us). An enum or flag field is {name, value}: the enum member "
    "name (flags: member names joined by '|' in ascending bit order, 'NONE' for 0) and its integer.",
    "Floats are float32 on the wire. A finite float is the exact float32 value, written as the "
    "shortest decimal that parses to that double; non-finite floats are the strings 'NaN', "
    "'Infinity', '-Infinity'. NaN is sent as the quiet NaN 0x7FC00000.",
    "Strings are ASCII, NUL-padded to their fixed size; a string of exactly the full size has no "
    "terminating NUL.",
    "TELEMETRY_BATCH fields: first_index, count, period_us, then samples: one object per sample, in "
    "protocol.telemetry.SAMPLE_DTYPE order (flags/state/stop_reason as {name, value}).",
    "negative_vectors: byte strings a receiver must drop or reject, each fed alone to a fresh receiver. "
    "expect.layer 'framing': dropped before the header is read (no frame delivered); counter names "
    "the receiver counter that goes up by one. expect.layer 'message': CRC good, delivered as a "
    "rejected frame with expect.reason; a device answers the commands among them with NAK "
    "expect.nak_code (null: no NAK). expect.cmd_id is the command's id where a device answers it.",
]


# ---------------------------------------------------------------------------------------------
# JSON forms of field values
# ---------------------------------------------------------------------------------------------


def flag_name(value: IntFlag) -> str:
    """Member names in ascending bit order joined by '|', 'NONE' for 0, unknown bits as hex."""
    v = int(value)
    if v == 0:
        return "NONE"
    names: list[str] = []
    rest = v
    for member in sorted(type(value), key=int):
        m = int(member)
        if m and m & (m - 1) == 0 and v & m and member.name:
            names.append(member.name)
            rest &= ~m
    if rest:
        names.append(f"0x{rest:X}")
    return "|".join(names)


def enum_json(value: IntEnum | IntFlag) -> dict[str, Any]:
    name = flag_name(value) if isinstance(value, IntFlag) else value.name
    return {"name": name, "value": int(value)}


def f32(value: float) -> float:
    """The float32 the wire carries for `value`, as a Python float (exact)."""
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def float_json(value: float) -> float | str:
    v = f32(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def value_json(value: Any) -> Any:
    if isinstance(value, IntEnum | IntFlag):
        return enum_json(value)
    if isinstance(value, float):
        return float_json(value)
    if isinstance(value, bool):
        raise TypeError("no bool fields on the wire")
    if isinstance(value, int | str):
        return value
    raise TypeError(f"no JSON form for {value!r}")


def samples_json(samples: SampleArray) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in samples.tolist():
        t_us, pressure, delivered, plunger, flow, setpoint, motor, visc, flags, state, stop_reason = row
        out.append(
            {
                "t_us": t_us,
                "pressure_pa": pressure,
                "delivered_nl": delivered,
                "plunger_um": plunger,
                "flow_nl_s": flow,
                "flow_setpoint_nl_s": setpoint,
                "motor_um_s": motor,
                "viscosity_pas": float_json(visc),
                "flags": enum_json(Flags(flags)),
                "state": enum_json(State(state)),
                "stop_reason": enum_json(StopReason(stop_reason)),
            }
        )
    return out


def fields_json(message: Message) -> dict[str, Any]:
    if isinstance(message, TelemetryBatch):
        return {
            "first_index": message.first_index,
            "count": len(message.samples),
            "period_us": message.period_us,
            "samples": samples_json(message.samples),
        }
    hints = typing.get_type_hints(type(message))
    out: dict[str, Any] = {}
    for name in message._names:
        value, hint = getattr(message, name), hints[name]
        # The declared type decides the JSON form (Nak.cmd_type is a plain int even if given a MsgType).
        is_enum = isinstance(hint, type) and issubclass(hint, IntEnum | IntFlag)
        out[name] = enum_json(hint(value)) if is_enum else value_json(int(value) if hint is int else value)
    return out


# ---------------------------------------------------------------------------------------------
# The vectors
# ---------------------------------------------------------------------------------------------


def make_samples(n: int, t0_us: int = 5_000_000, nan_at: tuple[int, ...] = ()) -> SampleArray:
    """n consecutive 1 kHz samples of an injection: rising pressure and delivered volume, the plunger
    moving forward, some edge values (the last sample backs off: delivered holds while the plunger
    position falls)."""
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    for i in range(n):
        s[i]["t_us"] = t0_us + 1000 * i
        s[i]["pressure_pa"] = 850_000 + 1_237 * i
        s[i]["delivered_nl"] = 1_200_000 + 33 * i
        s[i]["plunger_um"] = 7_270 + i // 5 - (3 if i == n - 1 and n > 1 else 0)
        s[i]["flow_nl_s"] = 33_333 - 7 * i
        s[i]["flow_setpoint_nl_s"] = 33_333 if i % 5 != 4 else 30_000
        s[i]["motor_um_s"] = 202 if i % 7 else -15
        s[i]["viscosity_pas"] = math.nan if i in nan_at else 400.0 + 0.1 * i
        flags = Flags.MOTOR_MOVING | Flags.HOST_LINK_OK
        if i not in nan_at:
            flags |= Flags.VISCOSITY_VALID
        if i % 5 == 4:
            flags |= Flags.THROTTLING
        s[i]["flags"] = int(flags)
        s[i]["state"] = int(State.INJECTING)
        s[i]["stop_reason"] = int(StopReason.NONE)
    if n > 1:  # the last sample: stopped, backing off for relief; delivered holds, the plunger falls
        last = s[n - 1]
        last["delivered_nl"] = s[n - 2]["delivered_nl"]
        last["flow_nl_s"] = -4_000
        last["flow_setpoint_nl_s"] = 0
        last["motor_um_s"] = -70
        last["flags"] = (int(last["flags"]) | Flags.RELIEF_ACTIVE) & ~Flags.THROTTLING
        last["state"] = int(State.STOPPED)
        last["stop_reason"] = int(StopReason.OPERATOR_STOP)
    return s


def arm_continuous(cmd_id: int) -> Arm:
    return Arm(
        cmd_id=cmd_id,
        mode=Mode.CONTINUOUS,
        plan_flags=PlanFlags.NONE,
        flow_nl_s=33_333,
        increment_nl=0,
        volume_limit_nl=4_000_000,
        soft_limit_pa=1_500_000,
        hard_limit_pa=2_500_000,
        relief_pa=200_000,
        mixed_ago_ms=240_000,
        working_time_ms=900_000,
        viscosity_min_pas=50.0,
        viscosity_max_pas=2000.0,
        cannula_length_um=120_000,
        cannula_id_um=2_700,
        syringe_bore_um=14_500,
    )


def positive_vectors() -> list[tuple[str, int, Message]]:
    """(name, seq, message). Seqs include the 0 and 0xFFFF edges."""
    v: list[tuple[str, int, Message]] = []
    add = v.append
    # Host -> device.
    add(("hello", 0, Hello(cmd_id=1, protocol_version=PROTOCOL_VERSION)))
    add(("heartbeat_host", 1, Heartbeat(uptime_ms=0, state=State.IDLE)))
    add(("heartbeat_device_injecting", 0xFFFF, Heartbeat(uptime_ms=4_294_967_295, state=State.INJECTING)))
    add(("arm_continuous", 2, arm_continuous(2)))
    arm_inc = Arm(
        cmd_id=3,
        mode=Mode.INCREMENTAL,
        plan_flags=PlanFlags.RELIEF,
        flow_nl_s=16_667,
        increment_nl=500_000,
        volume_limit_nl=6_000_000,
        soft_limit_pa=1_200_000,
        hard_limit_pa=2_000_000,
        relief_pa=100_000,
        mixed_ago_ms=180_500,
        working_time_ms=720_000,
        viscosity_min_pas=0.1,
        viscosity_max_pas=1e4,
        cannula_length_um=100_000,
        cannula_id_um=2_400,
        syringe_bore_um=65_535,
    )
    add(("arm_incremental_relief", 3, arm_inc))
    add(("start", 4, Start(cmd_id=4)))
    add(("pause", 5, Pause(cmd_id=5)))
    add(("resume", 6, Resume(cmd_id=6)))
    for i, source in enumerate(StopSource):
        add((f"stop_{source.name.lower()}", 10 + i, Stop(cmd_id=10 + i, source=source)))
    # The fluoroscopic guard names its rule in the former pad byte (SPEC §5.6).
    for rule in (
        StopDetail.POSTERIOR_QUARTER,
        StopDetail.EXTRAVASATION,
        StopDetail.VENOUS_FILLING,
        StopDetail.IMAGE_LOST,
    ):
        seq = 0x70 + int(rule)
        stop = Stop(cmd_id=seq, source=StopSource.FLUORO_IMAGE, detail=int(rule))
        add((f"stop_fluoro_image_{rule.name.lower()}", seq, stop))
    add(("clear", 20, Clear(cmd_id=20)))
    add(
        (
            "set_limits_all",
            21,
            SetLimits(
                cmd_id=21,
                soft_limit_pa=1_000_000,
                hard_limit_pa=3_000_000,
                relief_pa=150_000,
                max_flow_nl_s=50_000,
            ),
        )
    )
    add(("set_limits_unchanged", 22, SetLimits(cmd_id=22)))
    add(("get_status", 23, GetStatus(cmd_id=0xFFFF)))
    add(("set_telemetry_1khz_batch20", 24, SetTelemetry(cmd_id=24, divider=1, batch_samples=20)))
    add(
        (
            f"set_telemetry_div4_batch{MAX_BATCH_SAMPLES}",
            25,
            SetTelemetry(cmd_id=25, divider=4, batch_samples=MAX_BATCH_SAMPLES),
        )
    )
    add(("set_telemetry_off", 26, SetTelemetry(cmd_id=26, divider=0, batch_samples=20)))
    # Device -> host.
    caps = Capabilities(0)
    for c in Capabilities:
        caps |= c
    add(
        (
            "device_info_simulator",
            0,
            DeviceInfo(
                cmd_id=1,
                protocol_version=PROTOCOL_VERSION,
                fw_major=0,
                fw_minor=1,
                fw_patch=0,
                serial="CG-SIM-000001",
                capabilities=caps,
                sample_rate_hz=1000,
                watchdog_ms=500,
                max_pressure_pa=3_000_000,
                max_flow_nl_s=100_000,
                travel_um=60_000,
                max_batch_samples=MAX_BATCH_SAMPLES,
            ),
        )
    )
    add(
        (
            "device_info_full_serial",
            1,
            DeviceInfo(
                cmd_id=7,
                protocol_version=PROTOCOL_VERSION,
                fw_major=255,
                fw_minor=0,
                fw_patch=12,
                serial="ABCDEFGHIJKLMNOP",
                capabilities=Capabilities.RELIEF_BACKOFF | Capabilities.FLUORO_LINE,
                sample_rate_hz=1000,
                watchdog_ms=1000,
                max_pressure_pa=4_000_000,
                max_flow_nl_s=200_000,
                travel_um=80_000,
                max_batch_samples=20,
            ),
        )
    )
    add(
        (
            "status_injecting",
            30,
            Status(
                cmd_id=23,
                state=State.INJECTING,
                stop_reason=StopReason.NONE,
                stop_source=StopSource.NONE,
                mode=Mode.CONTINUOUS,
                flags=Flags.THROTTLING | Flags.HOST_LINK_OK | Flags.MOTOR_MOVING | Flags.VISCOSITY_VALID,
                t_us=12_345_678_901,
                pressure_pa=1_499_321,
                delivered_nl=2_345_678,
                plunger_um=14_205,
                flow_nl_s=30_001,
                flow_setpoint_nl_s=33_333,
                volume_limit_nl=4_000_000,
                increment_nl=0,
                increments_done=0,
                soft_limit_pa=1_500_000,
                hard_limit_pa=2_500_000,
                relief_pa=200_000,
                viscosity_pas=412.5,
                mixed_age_ms=301_000,
                working_time_ms=900_000,
                event_count=17,
            ),
        )
    )
    add(
        (
            "status_stopped_overpressure_nan_viscosity",
            31,
            Status(
                cmd_id=0,
                state=State.STOPPED,
                stop_reason=StopReason.OVERPRESSURE,
                stop_source=StopSource.CONTROLLER,
                mode=Mode.INCREMENTAL,
                flags=Flags.RELIEF_ACTIVE | Flags.HOST_LINK_OK | Flags.SIMULATED,
                t_us=0xFFFF_FFFF_FFFF_FFFF,
                pressure_pa=-2_147_483_648,
                delivered_nl=2_147_483_647,
                plunger_um=-2_147_483_648,
                flow_nl_s=2_147_483_647,
                flow_setpoint_nl_s=0,
                volume_limit_nl=6_000_000,
                increment_nl=500_000,
                increments_done=65_535,
                soft_limit_pa=1_200_000,
                hard_limit_pa=2_000_000,
                relief_pa=100_000,
                viscosity_pas=math.nan,
                mixed_age_ms=0,
                working_time_ms=720_000,
                event_count=4_294_967_295,
            ),
        )
    )
    t_us = 6_000_000_123  # beyond 2^32: exercises the high word of t_us
    link = Flags.HOST_LINK_OK
    moving = Flags.HOST_LINK_OK | Flags.MOTOR_MOVING
    # (name, kind, state, prev_state, reason, source, alarm, detail, flags, delivered_nl, plunger_um)
    events: list[
        tuple[str, EventKind, State, State, StopReason, StopSource, AlarmCode, int, Flags, int, int]
    ] = [
        (
            "event_power_up",
            EventKind.POWER_UP,
            State.IDLE,
            State.IDLE,
            StopReason.NONE,
            StopSource.NONE,
            AlarmCode.NONE,
            ResetCause.WATCHDOG,
            Flags.SIMULATED,
            0,
            0,
        ),
        (
            "event_state_change",
            EventKind.STATE_CHANGE,
            State.INJECTING,
            State.ARMED,
            StopReason.NONE,
            StopSource.NONE,
            AlarmCode.NONE,
            0,
            moving,
            0,
            12_000,
        ),
        (
            "event_stop",
            EventKind.STOP,
            State.STOPPED,
            State.INJECTING,
            StopReason.FLUORO_STOP,
            StopSource.FLUORO_REMOTE,
            AlarmCode.NONE,
            0,
            moving | Flags.RELIEF_ACTIVE,
            2_000_000,
            24_113,
        ),
        (
            "event_stop_sensor_fault_pressure_invalid",
            EventKind.STOP,
            State.STOPPED,
            State.INJECTING,
            StopReason.SENSOR_FAULT,
            StopSource.CONTROLLER,
            AlarmCode.NONE,
            0,
            moving | Flags.SENSOR_FAULT,
            2_147_483_647,
            60_000,
        ),
        (
            "event_alarm",
            EventKind.ALARM,
            State.INJECTING,
            State.INJECTING,
            StopReason.NONE,
            StopSource.NONE,
            AlarmCode.PRESSURE_THROTTLE,
            12_500,
            moving | Flags.THROTTLING,
            1_500_000,
            21_000,
        ),
        (
            "event_alarm_cleared",
            EventKind.ALARM_CLEARED,
            State.INJECTING,
            State.INJECTING,
            StopReason.NONE,
            StopSource.NONE,
            AlarmCode.PRESSURE_THROTTLE,
            0,
            moving | Flags.VISCOSITY_VALID | Flags.WORKING_TIME_WARNING | Flags.STALL_SUSPECT,
            1_800_000,
            22_000,
        ),
        (
            "event_relief_done",
            EventKind.RELIEF_DONE,
            State.STOPPED,
            State.STOPPED,
            StopReason.NONE,
            StopSource.NONE,
            AlarmCode.NONE,
            350,
            link,
            2_000_000,
            -1,
        ),
    ]
    for i, (name, kind, state, prev, reason, source, alarm, detail, flags, delivered, plunger) in enumerate(
        events
    ):
        event = Event(
            event_index=i,
            kind=kind,
            state=state,
            prev_state=prev,
            reason=reason,
            source=source,
            alarm=alarm,
            flags=flags,
            t_us=t_us + 250_000 * i,
            pressure_pa=1_800_000 - 100_000 * i,
            delivered_nl=delivered,
            plunger_um=plunger,
            detail=int(detail),
        )
        add((name, 40 + i, event))
    add(("ack_start", 50, Ack(cmd_id=4, cmd_type=MsgType.START, state=State.INJECTING)))
    add(("ack_clear", 51, Ack(cmd_id=20, cmd_type=MsgType.CLEAR, state=State.IDLE)))
    naks: list[tuple[str, Nak]] = [
        (
            "nak_bad_param_flow",
            Nak(
                cmd_id=2,
                cmd_type=MsgType.ARM,
                code=NakCode.BAD_PARAM,
                state=State.IDLE,
                field=3,
                detail=100_000,
            ),
        ),
        ("nak_bad_state", Nak(cmd_id=4, cmd_type=MsgType.START, code=NakCode.BAD_STATE, state=State.IDLE)),
        (
            "nak_stop_latched",
            Nak(cmd_id=6, cmd_type=MsgType.RESUME, code=NakCode.STOP_LATCHED, state=State.STOPPED),
        ),
        (
            "nak_unknown_command",
            Nak(cmd_id=9, cmd_type=0x30, code=NakCode.UNKNOWN_COMMAND, state=State.ARMED),
        ),
        (
            "nak_version_mismatch",
            Nak(
                cmd_id=1,
                cmd_type=MsgType.HELLO,
                code=NakCode.VERSION_MISMATCH,
                state=State.IDLE,
                detail=PROTOCOL_VERSION,
            ),
        ),
        (
            "nak_bad_length",
            Nak(cmd_id=4, cmd_type=MsgType.START, code=NakCode.BAD_LENGTH, state=State.IDLE, detail=4),
        ),
        (
            "nak_no_session",
            Nak(cmd_id=1, cmd_type=MsgType.ARM, code=NakCode.NO_SESSION, state=State.IDLE, detail=-1),
        ),
    ]
    for i, (name, nak) in enumerate(naks):
        add((name, 60 + i, nak))
    add(("telemetry_batch_empty", 70, TelemetryBatch(first_index=0, period_us=1000, samples=make_samples(0))))
    add(("telemetry_batch_1", 71, TelemetryBatch(first_index=4_999, period_us=1000, samples=make_samples(1))))
    add(
        (
            "telemetry_batch_max_with_nan",
            72,
            TelemetryBatch(
                first_index=0xFFFF_FFFF,
                period_us=4000,
                samples=make_samples(MAX_BATCH_SAMPLES, t0_us=2**40, nan_at=(0, 13)),
            ),
        )
    )
    v.extend(motion_vectors())
    v.extend(setup_vectors())
    return v


def setup_vectors() -> list[tuple[str, int, Message]]:
    """Syringe and calibration messages (SPEC §5.17-§5.23) and their NAKs. Seqs 80-99."""
    v: list[tuple[str, int, Message]] = []
    add = v.append
    add(
        (
            "set_syringe_library",
            80,
            SetSyringe(
                cmd_id=80,
                name="2.5ml",
                bore_um=7_290,
                stroke_um=59_900,
                dead_volume_nl=80_000,
                max_pressure_pa=8_000_000,
            ),
        )
    )
    add(
        (
            "set_syringe_custom_full_name",
            81,
            SetSyringe(
                cmd_id=81,
                name="CUSTOM-16-CHARS!",
                bore_um=40_000,
                stroke_um=60_000,
                dead_volume_nl=0xFFFF_FFFF,
                max_pressure_pa=0xFFFF_FFFF,
            ),
        )
    )
    add(
        (
            "set_syringe_none",
            82,
            SetSyringe(cmd_id=82, name="", bore_um=0, stroke_um=0, dead_volume_nl=0, max_pressure_pa=0),
        )
    )
    add(("zero", 83, Zero(cmd_id=83, utc_s=1_780_000_000)))
    add(("calibrate_span", 84, CalibrateSpan(cmd_id=84, reference_pa=2_000_000, utc_s=0xFFFF_FFFF)))
    add(
        (
            "calibrate_volume",
            85,
            CalibrateVolume(
                cmd_id=85, nominal_nl=1_000_000, mass_ug=1_203_500, density_mg_l=998_203, utc_s=1_780_000_060
            ),
        )
    )
    add(("get_calibration", 86, GetCalibration(cmd_id=86)))
    add(
        (
            "syringe_info_selected",
            87,
            SyringeInfo(
                cmd_id=80,
                name="2.5ml",
                bore_um=7_290,
                stroke_um=59_900,
                dead_volume_nl=80_000,
                max_pressure_pa=8_000_000,
                travel_um=59_400,
            ),
        )
    )
    add(
        (
            "syringe_info_none",
            88,
            SyringeInfo(
                cmd_id=1,
                name="",
                bore_um=0,
                stroke_um=0,
                dead_volume_nl=0,
                max_pressure_pa=8_000_000,
                travel_um=0xFFFF_FFFF,
            ),
        )
    )
    add(
        (
            "calibration_info_calibrated",
            89,
            CalibrationInfo(
                cmd_id=86,
                zero_offset_pa=-2_147_483_648,
                zero_utc_s=1_780_000_000,
                span_gain_ppm=1_012_345,
                span_reference_pa=2_000_000,
                span_utc_s=1_780_000_030,
                volume_factor_ppm=987_654,
                volume_utc_s=0xFFFF_FFFF,
                zero_check_pa=50_000,
            ),
        )
    )
    add(
        (
            "calibration_info_factory",
            90,
            CalibrationInfo(
                cmd_id=1,
                zero_offset_pa=2_147_483_647,
                zero_utc_s=0,
                span_gain_ppm=1_000_000,
                span_reference_pa=0,
                span_utc_s=0,
                volume_factor_ppm=1_000_000,
                volume_utc_s=0,
                zero_check_pa=0,
            ),
        )
    )
    add(
        (
            "nak_zero_drift",
            91,
            Nak(cmd_id=2, cmd_type=MsgType.ARM, code=NakCode.ZERO_DRIFT, state=State.IDLE, detail=-73_500),
        )
    )
    add(
        (
            "nak_calibration_out_of_range",
            92,
            Nak(
                cmd_id=85,
                cmd_type=MsgType.CALIBRATE_VOLUME,
                code=NakCode.CALIBRATION_OUT_OF_RANGE,
                state=State.IDLE,
                detail=1_250_000,
            ),
        )
    )
    add(
        (
            "nak_bad_param_syringe_stroke",
            93,
            Nak(
                cmd_id=81,
                cmd_type=MsgType.SET_SYRINGE,
                code=NakCode.BAD_PARAM,
                state=State.IDLE,
                field=3,
                detail=60_000,
            ),
        )
    )
    return v


def motion_vectors() -> list[tuple[str, int, Message]]:
    """The movements (SPEC §5.16-§5.18): PRIME, JOG both ways, WITHDRAW, HOME, GET_MOTION, their
    MOTION_STATUS, the EVENT MOTION_DONE and the NAK AT_HOME."""
    moving = Flags.HOST_LINK_OK | Flags.MOTOR_MOVING
    return [
        ("prime", 80, Prime(cmd_id=80, syringe_bore_um=14_500, flow_nl_s=16_667, volume_nl=300_000)),
        ("jog_forward", 81, Jog(cmd_id=81, hold_ms=250, speed_um_s=200)),
        ("jog_backward", 82, Jog(cmd_id=0xFFFF, hold_ms=500, speed_um_s=-1_000)),
        ("withdraw", 83, Withdraw(cmd_id=83, syringe_bore_um=65_535, flow_nl_s=166_667, volume_nl=1)),
        ("home", 84, Home(cmd_id=84, speed_um_s=2_000)),
        ("get_motion", 85, GetMotion(cmd_id=85)),
        (
            "motion_status_priming",
            86,
            MotionStatus(
                cmd_id=80,
                state=State.PRIMING,
                last_motion=State.PRIMING,
                flags=moving | Flags.THROTTLING,
                grant_ms=0,
                t_us=6_000_000_123,
                plunger_um=12_345,
                home_um=200,
                travel_um=59_500,
                moved_um=1_817,
                primed_nl=300_041,
                withdrawn_nl=0,
                speed_um_s=101,
                syringe_bore_um=14_500,
            ),
        ),
        (
            "motion_status_jogging_backward_at_home",
            87,
            MotionStatus(
                cmd_id=85,
                state=State.JOGGING,
                last_motion=State.JOGGING,
                flags=moving | Flags.AT_HOME,
                grant_ms=499,
                t_us=0xFFFF_FFFF_FFFF_FFFF,
                plunger_um=-2_147_483_648,
                home_um=200,
                travel_um=59_500,
                moved_um=-2_147_483_648,
                primed_nl=4_294_967_295,
                withdrawn_nl=4_294_967_295,
                speed_um_s=-5_000,
                syringe_bore_um=0,
            ),
        ),
        (
            "event_motion_done_prime",
            88,
            Event(
                t_us=7_000_000_000,
                event_index=99,
                kind=EventKind.MOTION_DONE,
                state=State.IDLE,
                prev_state=State.PRIMING,
                reason=StopReason.NONE,
                source=StopSource.NONE,
                alarm=AlarmCode.NONE,
                flags=Flags.HOST_LINK_OK,
                pressure_pa=12_000,
                delivered_nl=0,
                plunger_um=14_162,
                detail=300_041,
            ),
        ),
        (
            "event_motion_done_withdraw",
            89,
            Event(
                t_us=7_000_500_000,
                event_index=100,
                kind=EventKind.MOTION_DONE,
                state=State.IDLE,
                prev_state=State.WITHDRAWING,
                reason=StopReason.NONE,
                source=StopSource.NONE,
                alarm=AlarmCode.NONE,
                flags=Flags.HOST_LINK_OK | Flags.AT_HOME,
                pressure_pa=-3_000,
                delivered_nl=2_000_000,
                plunger_um=200,
                detail=-1_000_000,
            ),
        ),
        (
            "ack_jog",
            90,
            Ack(cmd_id=81, cmd_type=MsgType.JOG, state=State.JOGGING),
        ),
        (
            "nak_withdraw_at_home",
            91,
            Nak(cmd_id=83, cmd_type=MsgType.WITHDRAW, code=NakCode.AT_HOME, state=State.IDLE),
        ),
        (
            # SPEC §6.7 AlarmCode 9: the relief of a stopped prime ended on a stall with 778 kPa left
            "event_alarm_relief_incomplete",
            92,
            Event(
                t_us=7_001_619_000,
                event_index=101,
                kind=EventKind.ALARM,
                state=State.STOPPED,
                prev_state=State.STOPPED,
                reason=StopReason.NONE,
                source=StopSource.NONE,
                alarm=AlarmCode.RELIEF_INCOMPLETE,
                flags=Flags.HOST_LINK_OK | Flags.STALL_SUSPECT,
                pressure_pa=777_913,
                delivered_nl=246_303,
                plunger_um=5_901,
                detail=777_913,
            ),
        ),
    ]


def vector_json(name: str, seq: int, message: Message) -> dict[str, Any]:
    payload = encode_payload(message, seq)
    return {
        "name": name,
        "msg_type": message.TYPE.name,
        "msg_type_value": int(message.TYPE),
        "seq": seq,
        "version": PROTOCOL_VERSION,
        "fields": fields_json(message),
        "payload_hex": payload.hex(),
        "crc16": f"0x{crc16(payload):04X}",
        "frame_hex": framing.encode(payload).hex(),
    }


# ---------------------------------------------------------------------------------------------
# Negative vectors
# ---------------------------------------------------------------------------------------------


def _cobs_frame(payload: bytes, crc: int | None = None) -> bytes:
    """A frame with an arbitrary (possibly wrong) CRC: COBS and delimiter done right."""
    value = crc16(payload) if crc is None else crc
    return bytes(cobs.encode(payload + value.to_bytes(2, "little"))) + framing.DELIMITER


def _batch_header(first_index: int, period_us: int, count: int) -> bytes:
    """A TELEMETRY_BATCH header with any count, even one TelemetryBatch refuses to encode: the count
    field is found as the one that differs between encoded 1- and 2-sample batches."""
    one, two = (
        list(BATCH_HEADER.unpack_from(TelemetryBatch(first_index, period_us, make_samples(n)).pack_body()))
        for n in (1, 2)
    )
    (index,) = (i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b)
    one[index] = count
    return BATCH_HEADER.pack(*one)


def negative_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def framing_error(name: str, description: str, frame: bytes, reason: str, counter: str) -> None:
        expect = {"layer": "framing", "reason": reason, "counter": counter}
        out.append({"name": name, "description": description, "frame_hex": frame.hex(), "expect": expect})

    def rejected(
        name: str,
        description: str,
        payload: bytes,
        reason: str,
        counter: str,
        nak_code: NakCode | None,
        field_index: int | None = None,
        cmd_id: int | None = None,
    ) -> None:
        version, msg_type, seq = HEADER.unpack_from(payload)
        if nak_code is not None:
            cmd_id = int.from_bytes(payload[HEADER_SIZE : HEADER_SIZE + 2], "little")
        expect: dict[str, Any] = {
            "layer": "message",
            "reason": reason,
            "counter": counter,
            "version": version,
            "msg_type_value": msg_type,
            "seq": seq,
            "cmd_id": cmd_id,
            "field_index": field_index,
            "nak_code": None if nak_code is None else enum_json(nak_code),
        }
        out.append(
            {
                "name": name,
                "description": description,
                "payload_hex": payload.hex(),
                "crc16": f"0x{crc16(payload):04X}",
                "frame_hex": framing.encode(payload).hex(),
                "expect": expect,
            }
        )

    hello = encode_payload(Hello(cmd_id=1, protocol_version=PROTOCOL_VERSION), 0)
    framing_error(
        "bad_crc",
        "The HELLO vector with the CRC's low byte XOR 0x01 (COBS and delimiter correct): drop it, count it.",
        _cobs_frame(hello, crc16(hello) ^ 0x0001),
        "crc_error",
        "crc_errors",
    )
    framing_error(
        "cobs_garbage",
        "A COBS code byte (0x05) promising more bytes than arrive before the delimiter.",
        bytes.fromhex("05112200"),
        "cobs_error",
        "cobs_errors",
    )
    framing_error(
        "runt",
        "Valid COBS, but the decoded frame (3 bytes) cannot hold a 4-byte header and a 2-byte CRC.",
        _cobs_frame(b"\x01", crc=0x1002),
        "runt",
        "runts",
    )
    framing_error(
        "overlong",
        f"{framing.MAX_ENCODED + 1} non-zero bytes without a delimiter: longer than any legal frame "
        f"(MAX_ENCODED = {framing.MAX_ENCODED}); dropped up to the next 0x00 without buffering it.",
        b"\x01" * (framing.MAX_ENCODED + 1) + framing.DELIMITER,
        "overlong",
        "overlong",
    )
    framing_error(
        "overlong_after_cobs",
        f"{framing.MAX_ENCODED} bytes 0x01 (within MAX_ENCODED) that COBS-decode to "
        f"{framing.MAX_ENCODED - 1} zero bytes: more than MAX_PAYLOAD + CRC = "
        f"{framing.MAX_PAYLOAD + framing.CRC_SIZE}, so overlong, judged before the CRC.",
        b"\x01" * framing.MAX_ENCODED + framing.DELIMITER,
        "overlong",
        "overlong",
    )
    for other, who in ((PROTOCOL_VERSION - 1, "an older"), (PROTOCOL_VERSION + 1, "a newer")):
        rejected(
            f"version_{other}_hello",
            f"A HELLO in protocol version {other}, from {who} host: rejected before its body is read; a "
            f"device answers NAK VERSION_MISMATCH (frozen layout, header version {PROTOCOL_VERSION}, "
            f"detail = {PROTOCOL_VERSION}, its own version) with the cmd_id from the body.",
            encode_payload(Hello(cmd_id=1, protocol_version=other), 0, version=other),
            "version_mismatch",
            "version_mismatches",
            NakCode.VERSION_MISMATCH,
        )
    rejected(
        "unknown_type_command",
        "Message type 0x30: in the command range but undefined; a device answers NAK UNKNOWN_COMMAND.",
        HEADER.pack(PROTOCOL_VERSION, 0x30, 9) + (9).to_bytes(2, "little") + b"\x00\x00",
        "unknown_type",
        "unknown_types",
        NakCode.UNKNOWN_COMMAND,
    )
    rejected(
        "truncated_start_body",
        "A START whose body is 2 bytes (cmd_id only) instead of 4: a device answers NAK BAD_LENGTH "
        "(detail = 4).",
        encode_payload(Start(cmd_id=4), 10)[: HEADER_SIZE + 2],
        "bad_length",
        "bad_lengths",
        NakCode.BAD_LENGTH,
    )
    one = make_samples(1)
    rejected(
        "telemetry_count_mismatch",
        "A TELEMETRY_BATCH whose header says 2 samples but carries 1.",
        HEADER.pack(PROTOCOL_VERSION, MsgType.TELEMETRY_BATCH, 11)
        + _batch_header(0, 1000, 2)
        + one.tobytes(),
        "bad_length",
        "bad_lengths",
        None,
    )
    full = make_samples(MAX_BATCH_SAMPLES)
    rejected(
        "telemetry_count_over_max",
        f"A TELEMETRY_BATCH whose header says {MAX_BATCH_SAMPLES + 1} samples (more than "
        f"MAX_BATCH_SAMPLES = {MAX_BATCH_SAMPLES}) and carries {MAX_BATCH_SAMPLES}: rejected.",
        HEADER.pack(PROTOCOL_VERSION, MsgType.TELEMETRY_BATCH, 12)
        + _batch_header(0, 1000, MAX_BATCH_SAMPLES + 1)
        + full.tobytes(),
        "bad_length",
        "bad_lengths",
        None,
    )
    over = make_samples(MAX_BATCH_SAMPLES + 1)
    over_payload = (
        HEADER.pack(PROTOCOL_VERSION, MsgType.TELEMETRY_BATCH, 13)
        + _batch_header(0, 1000, MAX_BATCH_SAMPLES + 1)
        + over.tobytes()
    )
    framing_error(
        "telemetry_too_many_samples",
        f"A TELEMETRY_BATCH of {MAX_BATCH_SAMPLES + 1} samples: its {len(over_payload)}-byte payload "
        f"exceeds MAX_PAYLOAD = {framing.MAX_PAYLOAD} (MAX_BATCH_SAMPLES is the most that fit), so its "
        "COBS run is longer than MAX_ENCODED: dropped as overlong before the header is read.",
        _cobs_frame(over_payload),
        "overlong",
        "overlong",
    )
    arm = bytearray(arm_continuous(31).pack_body())
    arm[2] = 0x02  # mode: not a Mode
    rejected(
        "undefined_enum_value_arm_mode",
        "An ARM whose mode (field 1) is 2, not a Mode: rejected, never delivered as a message; a device "
        "answers NAK BAD_PARAM with field 1.",
        HEADER.pack(PROTOCOL_VERSION, MsgType.ARM, 13) + bytes(arm),
        "bad_value",
        "bad_values",
        NakCode.BAD_PARAM,
        field_index=1,
    )
    rejected(
        "undefined_stop_source",
        "A STOP whose source (field 1) is 0x20, not a StopSource: the message layer rejects it like any "
        "undefined value, but a device still honours it as a STOP from OPERATOR and ACKs it "
        "(SPEC 7.6): a STOP is never refused for its source. No NAK.",
        HEADER.pack(PROTOCOL_VERSION, MsgType.STOP, 14) + struct.pack("<HBx", 30, 0x20),
        "bad_value",
        "bad_values",
        None,
        field_index=1,
        cmd_id=30,
    )
    return out


# ---------------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------------


def build() -> dict[str, Any]:
    vectors = [vector_json(*v) for v in positive_vectors()]
    vectors.sort(key=lambda v: (v["msg_type_value"], v["name"]))
    names = [v["name"] for v in vectors]
    if len(set(names)) != len(names):
        raise AssertionError("duplicate vector names")
    missing = {t.name for t in REGISTRY} - {v["msg_type"] for v in vectors}
    if missing:
        raise AssertionError(f"no vector for {sorted(missing)}")
    negatives = sorted(negative_vectors(), key=lambda v: str(v["name"]))
    check = b"123456789"
    return {
        "description": "Golden frames of the cementguard wire protocol (protocol/SPEC.md). Generated by "
        "scripts/gen_vectors.py: do not edit by hand, regenerate.",
        "protocol_version": PROTOCOL_VERSION,
        "format": FORMAT_NOTES,
        "crc": {
            "algorithm": "CRC-16/CCITT-FALSE",
            "poly": "0x1021",
            "init": "0xFFFF",
            "refin": False,
            "refout": False,
            "xorout": "0x0000",
            "check_input_ascii": check.decode("ascii"),
            "check": f"0x{crc16(check):04X}",
            "wire_byte_order": "little-endian",
        },
        "constants": {
            "header_size": HEADER_SIZE,
            "crc_size": framing.CRC_SIZE,
            "max_payload": framing.MAX_PAYLOAD,
            "max_encoded": framing.MAX_ENCODED,
            "batch_header_size": BATCH_HEADER.size,
            "sample_size": SAMPLE_SIZE,
            "max_batch_samples": MAX_BATCH_SAMPLES,
            "seq_modulo": 1 << 16,
        },
        "body_sizes": {
            t.name: (None if t is MsgType.TELEMETRY_BATCH else REGISTRY[t].body_size())
            for t in sorted(REGISTRY)
        },
        "vectors": vectors,
        "negative_vectors": negatives,
    }


def render(doc: dict[str, Any] | None = None) -> str:
    """The file's exact text: 2-space indent, ASCII only, keys in the order built, trailing newline."""
    return json.dumps(build() if doc is None else doc, indent=2, ensure_ascii=True, allow_nan=False) + "\n"


def main(argv: list[str] | None = None, write: Callable[[str], object] = sys.stdout.write) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="file to write (default: %(default)s)"
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the file is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    out: Path = args.output
    if args.check:
        current = out.read_text(encoding="ascii") if out.exists() else None
        if current != text:
            write(f"{out} is out of date: run python scripts/gen_vectors.py\n")
            return 1
        write(f"{out} is up to date\n")
        return 0
    out.write_text(text, encoding="ascii")
    doc = json.loads(text)
    write(f"wrote {out}: {len(doc['vectors'])} vectors, {len(doc['negative_vectors'])} negative vectors\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
