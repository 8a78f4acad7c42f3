"""TELEMETRY_BATCH to numpy without copying, and the JSON records at the edges: units and round trips."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

from protocol.codec import Frame, MessageStream, encode_frame
from protocol.enums import Capabilities, EventKind, Flags, State, StopReason, StopSource
from protocol.framing import MAX_PAYLOAD
from protocol.messages import DeviceInfo, Event, Message, Status, TelemetryBatch
from protocol.models import DeviceInfoRecord, EventRecord, StatusRecord, TelemetryRecord
from protocol.telemetry import (
    BATCH_HEADER,
    MAX_BATCH_SAMPLES,
    SAMPLE_DTYPE,
    SAMPLE_SIZE,
    empty_samples,
    pack_sample,
)
from tests.protocol.helpers import message_from_json, sample_arrays, vectors

BY_NAME: dict[str, Message] = {v["name"]: message_from_json(v) for v in vectors()}


def _decode_one(frame: bytes) -> Message:
    out = MessageStream().feed(frame)
    assert len(out) == 1
    assert isinstance(out[0], Frame)
    return out[0].message


# ---------------------------------------------------------------------------------------------
# numpy
# ---------------------------------------------------------------------------------------------


def test_sample_layout_is_the_documented_40_bytes() -> None:
    assert SAMPLE_SIZE == 40
    assert SAMPLE_DTYPE.names == (
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
    )
    offsets = [SAMPLE_DTYPE.fields[n][1] for n in SAMPLE_DTYPE.names]  # type: ignore[index]
    assert offsets == [0, 8, 12, 16, 20, 24, 28, 32, 36, 38, 39]
    # Every field naturally aligned and the record a multiple of its largest field (SPEC 1.2).
    for name in SAMPLE_DTYPE.names:
        sub, offset = SAMPLE_DTYPE.fields[name][:2]  # type: ignore[index]
        assert offset % sub.itemsize == 0, name
    assert SAMPLE_SIZE % 8 == 0
    raw = pack_sample(
        2**40 + 1, -5, 6, -7, 8, 9, 10, 0.5, int(Flags.THROTTLING), int(State.PAUSED), int(StopReason.NONE)
    )
    s = np.frombuffer(raw, SAMPLE_DTYPE)[0]
    got = [int(s[n]) for n in ("t_us", "pressure_pa", "delivered_nl", "plunger_um", "flow_nl_s")]
    got += [int(s[n]) for n in ("flow_setpoint_nl_s", "motor_um_s")]
    assert got == [2**40 + 1, -5, 6, -7, 8, 9, 10]
    assert (float(s["viscosity_pas"]), int(s["state"])) == (0.5, State.PAUSED)


def test_max_batch_is_the_most_that_fits_in_max_payload() -> None:
    """SPEC 5.11 / 11.2: MAX_BATCH_SAMPLES is fixed by the sample size; one more would not fit."""
    payload = 4 + BATCH_HEADER.size + MAX_BATCH_SAMPLES * SAMPLE_SIZE
    assert payload <= MAX_PAYLOAD < payload + SAMPLE_SIZE
    assert MAX_BATCH_SAMPLES == 25


def test_batch_decodes_zero_copy_into_a_structured_array() -> None:
    expected = BY_NAME["telemetry_batch_max_with_nan"]
    assert isinstance(expected, TelemetryBatch)
    frame = encode_frame(expected, 5)
    batch = _decode_one(frame)
    assert isinstance(batch, TelemetryBatch)
    s = batch.samples
    assert s.dtype == SAMPLE_DTYPE
    assert s.shape == (MAX_BATCH_SAMPLES,)
    # Zero copy: a view over the received body's bytes, not an array of its own.
    assert not s.flags.owndata
    assert isinstance(s.base, bytes)
    assert len(s.base) == BATCH_HEADER.size + MAX_BATCH_SAMPLES * SAMPLE_SIZE
    assert s.ctypes.data == np.frombuffer(s.base, np.uint8).ctypes.data + BATCH_HEADER.size
    assert not s.flags.writeable  # consumers copy before they modify
    assert s.tobytes() == expected.samples.tobytes()
    assert np.isnan(s["viscosity_pas"][[0, 13]]).all()
    assert np.isfinite(np.delete(s["viscosity_pas"], [0, 13])).all()
    assert (np.diff(s["t_us"].astype(np.int64)) == 1000).all()
    assert batch.first_index == 0xFFFF_FFFF
    assert batch.period_us == 4000


def test_empty_batch_decodes_to_an_empty_array() -> None:
    batch = _decode_one(encode_frame(TelemetryBatch(3, 1000, empty_samples()), 0))
    assert isinstance(batch, TelemetryBatch)
    assert batch.samples.dtype == SAMPLE_DTYPE
    assert batch.samples.shape == (0,)


def test_decoded_batches_concatenate_into_one_stream() -> None:
    wire = b""
    sent = []
    for k in range(10):
        s = empty_samples(20)
        s["t_us"] = np.arange(20 * k, 20 * k + 20) * 1000
        s["pressure_pa"] = np.arange(20) + k
        sent.append(s)
        wire += encode_frame(TelemetryBatch(20 * k, 1000, s), k)
    stream = MessageStream()
    arrays = [f.message.samples for f in stream.feed(wire) if isinstance(f, Frame)]  # type: ignore[attr-defined]
    joined = np.concatenate(arrays)
    assert joined.dtype == SAMPLE_DTYPE
    assert joined.tobytes() == np.concatenate(sent).tobytes()
    assert (np.diff(joined["t_us"].astype(np.int64)) == 1000).all()


# ---------------------------------------------------------------------------------------------
# Records: units
# ---------------------------------------------------------------------------------------------


def test_telemetry_record_units() -> None:
    s = empty_samples(2)
    s[0] = (
        1_500_000,
        1_234_567,
        2_500_000,
        21_000,
        50_000,
        50_000,
        250,
        412.5,
        int(Flags.VISCOSITY_VALID),
        int(State.INJECTING),
        0,
    )
    s[1] = (
        1_501_000,
        -2_000,
        2_500_000,
        20_650,
        -16_667,
        0,
        -1_000,
        np.nan,
        0,
        int(State.STOPPED),
        int(StopReason.OVERPRESSURE),
    )
    r = TelemetryRecord.from_samples(40, s)
    assert r.first_index == 40
    assert r.t_s == [1.5, 1.501]
    assert r.pressure_kpa == [1234.567, -2.0]
    assert r.delivered_ml == [2.5, 2.5]  # delivered holds while the plunger backs off
    assert r.plunger_mm == [21.0, 20.65]
    assert r.flow_setpoint_ml_min == [pytest.approx(3.0, rel=1e-12), 0.0]
    assert r.flow_ml_min == [pytest.approx(3.0, rel=1e-12), pytest.approx(-1.00002, rel=1e-12)]
    assert r.motor_mm_s == [0.25, -1.0]
    assert r.viscosity_pa_s == [412.5, None]  # NaN is "no estimate", JSON null
    assert r.flags == [int(Flags.VISCOSITY_VALID), 0]
    assert r.state == [int(State.INJECTING), int(State.STOPPED)]


def test_event_record_units() -> None:
    m = BY_NAME["event_stop"]
    assert isinstance(m, Event)
    r = EventRecord.from_message(m)
    assert r.kind is EventKind.STOP
    assert r.reason is StopReason.FLUORO_STOP
    assert r.source is StopSource.FLUORO_REMOTE
    assert r.t_s == pytest.approx(m.t_us / 1e6, rel=1e-15)
    assert r.t_s == pytest.approx(6000.500123)
    assert r.pressure_kpa == 1600.0  # 1_600_000 Pa
    assert r.delivered_ml == 2.0  # 2_000_000 nL
    assert r.plunger_mm == 24.113
    assert r.flags == int(m.flags)


def test_event_record_of_a_sensor_fault_has_no_pressure() -> None:
    """SPEC 5.12: a STOP for SENSOR_FAULT carries flags SENSOR_FAULT, so its stale pressure is not
    shown as a reading: JSON null."""
    m = BY_NAME["event_stop_sensor_fault_pressure_invalid"]
    assert isinstance(m, Event)
    assert m.flags & Flags.SENSOR_FAULT
    r = EventRecord.from_message(m)
    assert r.pressure_kpa is None
    assert '"pressure_kpa":null' in r.model_dump_json()
    assert r.detail == m.detail


def test_status_record_units() -> None:
    m = BY_NAME["status_injecting"]
    assert isinstance(m, Status)
    r = StatusRecord.from_message(m)
    assert r.state is State.INJECTING
    assert r.flags == int(m.flags)
    assert r.pressure_kpa == 1499.321
    assert r.delivered_ml == 2.345678
    assert r.plunger_mm == 14.205
    assert r.flow_ml_min == pytest.approx(30_001 * 60 / 1e6, rel=1e-12)
    assert r.flow_setpoint_ml_min == pytest.approx(2.0, abs=1e-4)  # 33_333 nL/s
    assert r.volume_limit_ml == 4.0
    assert r.soft_limit_kpa == 1500.0
    assert r.hard_limit_kpa == 2500.0
    assert r.relief_kpa == 200.0
    assert r.viscosity_pa_s == 412.5
    assert r.mixed_age_s == 301.0
    assert r.working_time_s == 900.0
    stopped = StatusRecord.from_message(BY_NAME["status_stopped_overpressure_nan_viscosity"])  # type: ignore[arg-type]
    assert stopped.viscosity_pa_s is None
    assert stopped.stop_reason is StopReason.OVERPRESSURE
    assert stopped.pressure_kpa == -2_147_483.648


def test_device_info_record_units() -> None:
    m = BY_NAME["device_info_simulator"]
    assert isinstance(m, DeviceInfo)
    r = DeviceInfoRecord.from_message(m)
    assert r.firmware_version == "0.1.0"
    assert r.serial == "CG-SIM-000001"
    assert r.capabilities == [c.name for c in Capabilities if c.name]
    assert r.max_pressure_kpa == 3000.0
    assert r.max_flow_ml_min == pytest.approx(6.0, rel=1e-12)  # 100_000 nL/s
    assert r.travel_mm == 60.0
    partial = DeviceInfoRecord.from_message(dataclasses.replace(m, capabilities=Capabilities.FLUORO_LINE))
    assert partial.capabilities == ["FLUORO_LINE"]


# ---------------------------------------------------------------------------------------------
# Records: JSON round trips
# ---------------------------------------------------------------------------------------------


def _json_round_trip(record: Any) -> None:
    text = record.model_dump_json()
    back = type(record).model_validate_json(text)
    assert back == record
    assert back.model_dump_json() == text


@pytest.mark.parametrize("name", [n for n in BY_NAME if n.startswith(("event_", "status_", "device_info_"))])
def test_message_records_survive_json(name: str) -> None:
    m = BY_NAME[name]
    record: Any
    if isinstance(m, Event):
        record = EventRecord.from_message(m)
    elif isinstance(m, Status):
        record = StatusRecord.from_message(m)
    else:
        assert isinstance(m, DeviceInfo)
        record = DeviceInfoRecord.from_message(m)
    _json_round_trip(record)


@settings(max_examples=100, deadline=None)
@given(sample_arrays())
def test_telemetry_record_survives_json_for_any_samples(samples: np.ndarray[Any, Any]) -> None:
    record = TelemetryRecord.from_samples(7, samples)
    _json_round_trip(record)
    assert len(record.t_s) == len(samples)
    finite = [v is not None and math.isfinite(v) for v in record.viscosity_pa_s]
    assert finite == np.isfinite(samples["viscosity_pas"]).tolist()
