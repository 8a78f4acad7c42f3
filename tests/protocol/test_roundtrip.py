"""Every message type survives encode -> frame -> decode over its whole legal range, and a value that
does not fit its wire type is refused with an error that names the class, the field, the value and
the range."""

from __future__ import annotations

import dataclasses
import math
import struct
from enum import IntFlag
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import framing
from protocol.codec import (
    HEADER,
    PROTOCOL_VERSION,
    SEQ_MODULO,
    Frame,
    MessageStream,
    Rejected,
    RejectReason,
    decode_payload,
    encode_frame,
    encode_payload,
)
from protocol.enums import Capabilities, MsgType, NakCode, State
from protocol.messages import (
    _INT_RANGES,
    REGISTRY,
    Ack,
    Arm,
    DeviceInfo,
    EncodeError,
    Event,
    FieldValueError,
    Message,
    Nak,
    Status,
    Stop,
    TelemetryBatch,
)
from protocol.telemetry import MAX_BATCH_SAMPLES, SAMPLE_DTYPE
from tests.protocol.helpers import (
    ALL_TYPES,
    FIXED_TYPES,
    is_enum,
    layout,
    message_strategy,
    messages,
    minimal,
    same_message,
)

F32_MAX = float(np.finfo(np.float32).max)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.TYPE.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), seq=st.integers(0, SEQ_MODULO - 1))
def test_round_trip_every_type(cls: type[Message], data: st.DataObject, seq: int) -> None:
    message = data.draw(message_strategy(cls))
    payload = encode_payload(message, seq)
    decoded = decode_payload(payload)
    assert decoded.header.seq == seq
    assert decoded.header.msg_type == cls.TYPE
    assert same_message(decoded.message, message)
    assert encode_payload(decoded.message, seq) == payload  # float32 bits, NaN included, preserved

    stream = MessageStream()
    out = stream.feed(encode_frame(message, seq))
    assert len(out) == 1
    assert isinstance(out[0], Frame)
    assert same_message(out[0].message, message)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(messages(), st.integers(1, 64)), min_size=1, max_size=20))
def test_round_trip_mixed_stream(items: list[tuple[Message, int]]) -> None:
    """Consecutive frames of mixed types, fed in chunks of varying size, come out in order."""
    wire = b"".join(encode_frame(m, seq) for seq, (m, _) in enumerate(items))
    sizes = [n for _, n in items]
    stream = MessageStream()
    out: list[Frame | Rejected] = []
    pos = i = 0
    while pos < len(wire):
        n = sizes[i % len(sizes)]
        out.extend(stream.feed(wire[pos : pos + n]))
        pos, i = pos + n, i + 1
    assert len(out) == len(items)
    for seq, (item, (message, _)) in enumerate(zip(out, items, strict=True)):
        assert isinstance(item, Frame)
        assert item.header.seq == seq
        assert same_message(item.message, message)
    assert stream.counters.lost_frames == 0


@pytest.mark.parametrize("cls", FIXED_TYPES, ids=lambda c: c.TYPE.name)
def test_integer_bounds_round_trip(cls: type[Message]) -> None:
    base = minimal(cls)
    for name, code, hint in layout(cls):
        if code not in _INT_RANGES or is_enum(hint):
            continue
        for value in _INT_RANGES[code]:
            m = dataclasses.replace(base, **{name: value})  # type: ignore[type-var]
            assert getattr(decode_payload(encode_payload(m, 0)).message, name) == value


@pytest.mark.parametrize("value", [0.0, -0.0, F32_MAX, -F32_MAX, 1.4e-45, math.inf, -math.inf, math.nan])
def test_float32_edges_round_trip_bit_exact(value: float) -> None:
    m = dataclasses.replace(minimal(REGISTRY[MsgType.STATUS]), viscosity_pas=value)  # type: ignore[type-var]
    payload = encode_payload(m, 0)
    back = decode_payload(payload).message
    assert struct.pack("<f", back.viscosity_pas) == struct.pack("<f", value)  # type: ignore[attr-defined]
    assert encode_payload(back, 0) == payload


def test_fixed_size_string_edges() -> None:
    base = minimal(DeviceInfo)
    full = dataclasses.replace(base, serial="ABCDEFGHIJKLMNOP")
    assert decode_payload(encode_payload(full, 0)).message.serial == "ABCDEFGHIJKLMNOP"  # type: ignore[attr-defined]
    empty = encode_payload(dataclasses.replace(base, serial=""), 0)
    assert decode_payload(empty).message.serial == ""  # type: ignore[attr-defined]


def test_flags_keep_undefined_bits() -> None:
    caps = Capabilities(0x8000_0001)
    m = dataclasses.replace(minimal(DeviceInfo), capabilities=caps)
    assert int(decode_payload(encode_payload(m, 0)).message.capabilities) == 0x8000_0001  # type: ignore[attr-defined]


def test_nak_answers_a_type_this_side_does_not_know() -> None:
    nak = Nak(cmd_id=9, cmd_type=0x30, code=NakCode.UNKNOWN_COMMAND, state=State.IDLE)
    assert decode_payload(encode_payload(nak, 1)).message == nak


# ---------------------------------------------------------------------------------------------
# Undefined enum values on the wire
# ---------------------------------------------------------------------------------------------


def _frame_raw(msg_type: int, body: bytes, seq: int = 0) -> bytes:
    return framing.encode(HEADER.pack(PROTOCOL_VERSION, msg_type, seq) + body)


def _enum_fields(cls: type[Message]) -> list[tuple[int, str, Any]]:
    """(layout index, name, enum) of the IntEnum fields (flags accept any bits, enums do not)."""
    return [
        (i, name, hint)
        for i, (name, _code, hint) in enumerate(layout(cls))
        if is_enum(hint) and not issubclass(hint, IntFlag)
    ]


COMMANDS = [cls for cls in FIXED_TYPES if cls.TYPE < 0x40]
DEVICE_MESSAGES = [cls for cls in FIXED_TYPES if cls.TYPE >= 0x40]


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda c: c.TYPE.name)
def test_undefined_enum_value_in_a_command_is_rejected_with_its_field(cls: type[Message]) -> None:
    """A CRC-good command whose enum byte is not a member is a reject (BAD_VALUE) naming the field,
    so a device can NAK it BAD_PARAM; never an exception out of the stream."""
    valid = cls._struct.unpack(minimal(cls).pack_body())
    for index, name, enum in _enum_fields(cls):
        undefined = max(int(m) for m in enum) + 1
        raw = list(valid)
        raw[index] = undefined
        bad = cls._struct.pack(*raw)
        with pytest.raises(FieldValueError) as exc:
            cls.unpack_body(bad)
        assert (exc.value.index, exc.value.name, exc.value.value) == (index, name, undefined)
        assert f"{cls.TYPE.name}.{name}" in str(exc.value)

        stream = MessageStream()
        out = stream.feed(_frame_raw(cls.TYPE, bad, seq=7))
        assert len(out) == 1
        rej = out[0]
        assert isinstance(rej, Rejected)
        assert rej.reason == RejectReason.BAD_VALUE
        assert rej.field_index == index
        assert rej.header.seq == 7
        assert stream.counters.bad_values == 1


@pytest.mark.parametrize("cls", DEVICE_MESSAGES, ids=lambda c: c.TYPE.name)
def test_undefined_enum_value_from_the_device_is_kept_as_a_plain_int(cls: type[Message]) -> None:
    """Device-to-host messages are lenient (SPEC 11.3): a value appended by a newer device arrives as
    its raw int, is never mistaken for a known member, and re-encodes to the same bytes."""
    valid = cls._struct.unpack(minimal(cls).pack_body())
    for index, name, enum in _enum_fields(cls):
        undefined = max(int(m) for m in enum) + 1
        raw = list(valid)
        raw[index] = undefined
        body = cls._struct.pack(*raw)
        stream = MessageStream()
        out = stream.feed(_frame_raw(cls.TYPE, body))
        assert len(out) == 1
        assert isinstance(out[0], Frame)
        value = getattr(out[0].message, name)
        assert type(value) is int
        assert value == undefined
        assert out[0].message.pack_body() == body
        assert stream.counters.bad_values == 0


def test_the_enum_value_tests_cover_every_enum_field() -> None:
    commands = {(cls, name) for cls in COMMANDS for _, name, _ in _enum_fields(cls)}
    device = {(cls, name) for cls in DEVICE_MESSAGES for _, name, _ in _enum_fields(cls)}
    assert {(Arm, "mode"), (Stop, "source")} <= commands
    assert {(Ack, "cmd_type"), (Event, "kind"), (Status, "stop_reason")} <= device
    assert len(commands) + len(device) >= 15


# ---------------------------------------------------------------------------------------------
# Encode errors
# ---------------------------------------------------------------------------------------------


def _int_cases() -> list[Any]:
    cases = []
    for cls in FIXED_TYPES:
        for name, code, _hint in layout(cls):
            if code in _INT_RANGES:
                lo, hi = _INT_RANGES[code]
                cases += [
                    pytest.param(cls, name, code, bad, id=f"{cls.__name__}.{name}={bad}")
                    for bad in (lo - 1, hi + 1)
                ]
    return cases


@pytest.mark.parametrize(("cls", "name", "code", "bad"), _int_cases())
def test_out_of_range_integer_names_class_field_value_and_range(
    cls: type[Message], name: str, code: str, bad: int
) -> None:
    m = dataclasses.replace(minimal(cls), **{name: bad})  # type: ignore[type-var]
    lo, hi = _INT_RANGES[code]
    with pytest.raises(EncodeError) as exc:
        encode_frame(m, 0)
    text = str(exc.value)
    assert f"{cls.__name__}.{name} = {bad!r}" in text
    assert f"{lo}..{hi}" in text


@pytest.mark.parametrize("bad", [1e39, -1e39, 3.5e38])
def test_float_beyond_float32_is_an_encode_error(bad: float) -> None:
    m = dataclasses.replace(minimal(REGISTRY[MsgType.ARM]), viscosity_max_pas=bad)  # type: ignore[type-var]
    with pytest.raises(EncodeError) as exc:
        m.pack_body()
    text = str(exc.value)
    assert f"Arm.viscosity_max_pas = {bad!r}" in text
    assert repr(F32_MAX) in text


def test_wrong_python_type_is_an_encode_error() -> None:
    m = dataclasses.replace(minimal(REGISTRY[MsgType.HELLO]), cmd_id=1.5)  # type: ignore[type-var]
    with pytest.raises(EncodeError, match=r"Hello\.cmd_id = 1\.5 is outside 'H' range 0\.\.65535"):
        m.pack_body()


@pytest.mark.parametrize(
    ("serial", "why"),
    [("ABCDEFGHIJKLMNOPQ", "longer than 16 bytes"), ("CG-\u00e9", "not ASCII"), (b"CG-1", "not ASCII")],
)
def test_bad_string_is_an_encode_error_never_silently_truncated(serial: Any, why: str) -> None:
    m = dataclasses.replace(minimal(DeviceInfo), serial=serial)
    with pytest.raises(EncodeError) as exc:
        m.pack_body()
    assert f"DeviceInfo.serial = {serial!r}" in str(exc.value)
    assert why in str(exc.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"first_index": -1}, r"TelemetryBatch\.first_index = -1 is outside 'I' range 0\.\.4294967295"),
        ({"first_index": 1 << 32}, r"TelemetryBatch\.first_index = 4294967296 is outside 'I' range"),
        ({"period_us": -1}, r"TelemetryBatch\.period_us = -1 is outside '[HI]' range 0\.\."),
        ({"period_us": 1 << 32}, r"TelemetryBatch\.period_us = 4294967296 is outside '[HI]' range 0\.\."),
        (
            {"samples": np.zeros(MAX_BATCH_SAMPLES + 1, SAMPLE_DTYPE)},
            rf"{MAX_BATCH_SAMPLES + 1} samples, at most {MAX_BATCH_SAMPLES}",
        ),
        ({"samples": np.zeros(2, np.float64)}, r"SAMPLE_DTYPE"),
    ],
)
def test_telemetry_batch_encode_errors(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"first_index": 0, "period_us": 1000, "samples": np.zeros(1, SAMPLE_DTYPE)}
    args.update(kwargs)
    with pytest.raises(EncodeError, match=match):
        TelemetryBatch(**args).pack_body()
