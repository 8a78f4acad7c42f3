"""protocol/vectors.json: up to date with its generator, complete, and true in both directions."""

from __future__ import annotations

import importlib.util
import math
from types import ModuleType
from typing import Any

import pytest

from protocol import framing
from protocol._crc import crc16
from protocol.codec import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    Frame,
    MessageStream,
    Rejected,
    decode_payload,
    encode_frame,
    encode_payload,
)
from protocol.enums import EventKind, Flags, MsgType, NakCode, PlanFlags, StopReason, StopSource
from protocol.messages import REGISTRY, Arm, Event, Nak, Stop, TelemetryBatch
from protocol.telemetry import MAX_BATCH_SAMPLES
from tests.protocol.helpers import (
    REPO,
    VECTORS_PATH,
    message_from_json,
    negative_vectors,
    same_message,
    vectors,
    vectors_doc,
)

VECTORS = vectors()
NEGATIVES = negative_vectors()
FRAMING_COUNTERS = ("crc_errors", "cobs_errors", "overlong", "runts")
STREAM_COUNTERS = ("version_mismatches", "unknown_types", "bad_lengths", "bad_values", "lost_frames")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_vectors", REPO / "scripts" / "gen_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _counters(stream: MessageStream) -> dict[str, int]:
    c = stream.counters
    out = {name: getattr(c.framing, name) for name in FRAMING_COUNTERS}
    out.update({name: getattr(c, name) for name in STREAM_COUNTERS})
    return out


def reference_crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit, as a C implementer would write it first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


# ---------------------------------------------------------------------------------------------
# The file itself
# ---------------------------------------------------------------------------------------------


def test_committed_file_is_what_the_generator_writes() -> None:
    gen = _generator()
    assert VECTORS_PATH.read_text(encoding="ascii") == gen.render(), "run python scripts/gen_vectors.py"


def test_generator_is_deterministic() -> None:
    gen = _generator()
    assert gen.render() == gen.render()


def test_generator_check_mode_detects_a_stale_file(tmp_path: Any) -> None:
    gen = _generator()
    out = tmp_path / "vectors.json"
    lines: list[str] = []
    assert gen.main(["--output", str(out)], write=lines.append) == 0
    assert gen.main(["--output", str(out), "--check"], write=lines.append) == 0
    out.write_text(out.read_text().replace('"seq": 3,', '"seq": 4,', 1))
    assert gen.main(["--output", str(out), "--check"], write=lines.append) == 1


def test_crc_check_value() -> None:
    crc = vectors_doc()["crc"]
    assert crc["check_input_ascii"] == "123456789"
    assert int(crc["check"], 16) == 0x29B1 == crc16(b"123456789") == reference_crc16(b"123456789")


def test_constants_match_the_code() -> None:
    doc = vectors_doc()
    assert doc["protocol_version"] == PROTOCOL_VERSION
    assert doc["constants"]["max_encoded"] == framing.MAX_ENCODED
    assert doc["constants"]["max_payload"] == framing.MAX_PAYLOAD
    assert doc["constants"]["header_size"] == HEADER_SIZE
    assert doc["constants"]["max_batch_samples"] == MAX_BATCH_SAMPLES
    for t, cls in REGISTRY.items():
        if t is not MsgType.TELEMETRY_BATCH:
            assert doc["body_sizes"][t.name] == cls.body_size()


def test_vectors_are_sorted_and_named_uniquely() -> None:
    keys = [(v["msg_type_value"], v["name"]) for v in VECTORS]
    assert keys == sorted(keys)
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)
    assert len({v["name"] for v in NEGATIVES}) == len(NEGATIVES)


def test_every_message_type_and_the_edges_that_matter_are_covered() -> None:
    assert {v["msg_type"] for v in VECTORS} == {t.name for t in REGISTRY}
    decoded = [message_from_json(v) for v in VECTORS]
    batches = [m for m in decoded if isinstance(m, TelemetryBatch)]
    assert {0, 1, MAX_BATCH_SAMPLES} <= {len(b.samples) for b in batches}
    assert any(math.isnan(float(x)) for b in batches for x in b.samples["viscosity_pas"])
    assert {m.kind for m in decoded if isinstance(m, Event)} == set(EventKind)
    assert {m.source for m in decoded if isinstance(m, Stop)} == set(StopSource)
    assert any(m.code is NakCode.BAD_PARAM and m.field != 0xFF for m in decoded if isinstance(m, Nak))
    assert any(m.plan_flags & PlanFlags.RELIEF and m.increment_nl > 0 for m in decoded if isinstance(m, Arm))
    assert {0, 0xFFFF} <= {v["seq"] for v in VECTORS}
    reasons = {n["expect"]["reason"] for n in NEGATIVES}
    assert {"crc_error", "version_mismatch", "unknown_type", "bad_length", "cobs_error"} <= reasons


# ---------------------------------------------------------------------------------------------
# Positive vectors, both directions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_internal_consistency(vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["payload_hex"])
    assert payload[0] == vector["version"] == PROTOCOL_VERSION
    assert payload[1] == vector["msg_type_value"]
    assert int.from_bytes(payload[2:4], "little") == vector["seq"]
    assert int(vector["crc16"], 16) == crc16(payload) == reference_crc16(payload)
    frame = bytes.fromhex(vector["frame_hex"])
    assert frame.endswith(b"\x00")
    assert b"\x00" not in frame[:-1]
    assert frame == framing.encode(payload)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_decodes_to_its_fields(vector: dict[str, Any]) -> None:
    stream = MessageStream()
    out = stream.feed(bytes.fromhex(vector["frame_hex"]))
    assert len(out) == 1
    frame = out[0]
    assert isinstance(frame, Frame)
    assert (frame.header.version, frame.header.msg_type, frame.header.seq) == (
        vector["version"],
        vector["msg_type_value"],
        vector["seq"],
    )
    expected = message_from_json(vector)
    assert same_message(frame.message, expected), (frame.message, expected)
    assert same_message(decode_payload(bytes.fromhex(vector["payload_hex"])).message, expected)
    assert all(v == 0 for v in _counters(stream).values())


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_fields_encode_to_its_bytes(vector: dict[str, Any]) -> None:
    message = message_from_json(vector)
    assert encode_payload(message, vector["seq"]).hex() == vector["payload_hex"]
    assert encode_frame(message, vector["seq"]).hex() == vector["frame_hex"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096])
def test_all_vectors_back_to_back_in_any_chunking(chunk: int) -> None:
    data = b"".join(bytes.fromhex(v["frame_hex"]) for v in VECTORS)
    stream = MessageStream()
    out: list[Frame | Rejected] = []
    for i in range(0, len(data), chunk):
        out.extend(stream.feed(data[i : i + chunk]))
    assert len(out) == len(VECTORS)
    for item, vector in zip(out, VECTORS, strict=True):
        assert isinstance(item, Frame)
        assert item.header.seq == vector["seq"]
        assert same_message(item.message, message_from_json(vector))
    assert stream.counters.lost_frames > 0  # the vectors' seqs are not consecutive: gaps are counted


# ---------------------------------------------------------------------------------------------
# Negative vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", NEGATIVES, ids=lambda v: v["name"])
def test_negative_vector_is_rejected_and_counted(vector: dict[str, Any]) -> None:
    expect = vector["expect"]
    stream = MessageStream()
    out = stream.feed(bytes.fromhex(vector["frame_hex"]))
    counters = _counters(stream)
    # Exactly the expected counter went up, by one.
    assert counters == {name: int(name == expect["counter"]) for name in counters}
    if expect["layer"] == "framing":
        assert out == []
        assert stream.counters.framing.frames == 0
        return
    assert len(out) == 1
    rej = out[0]
    assert isinstance(rej, Rejected)
    assert rej.reason == expect["reason"]
    assert (rej.header.version, rej.header.msg_type, rej.header.seq) == (
        expect["version"],
        expect["msg_type_value"],
        expect["seq"],
    )
    assert rej.field_index == expect["field_index"]
    assert list(stream.recent_rejects) == [rej]
    payload = bytes.fromhex(vector["payload_hex"])
    assert int(vector["crc16"], 16) == crc16(payload)
    assert rej.body == payload[HEADER_SIZE:]
    if expect["cmd_id"] is not None:
        assert rej.cmd_id == expect["cmd_id"]
    if expect["nak_code"] is not None:
        assert expect["cmd_id"] is not None
        assert NakCode[expect["nak_code"]["name"]] == expect["nak_code"]["value"]


@pytest.mark.parametrize("vector", NEGATIVES, ids=lambda v: v["name"])
def test_receiver_recovers_after_a_negative_vector(vector: dict[str, Any]) -> None:
    good = VECTORS[0]
    stream = MessageStream()
    stream.feed(bytes.fromhex(vector["frame_hex"]))
    out = stream.feed(bytes.fromhex(good["frame_hex"]))
    assert len(out) == 1
    assert isinstance(out[0], Frame)
    assert same_message(out[0].message, message_from_json(good))


# ---------------------------------------------------------------------------------------------
# Protocol version 2: every field of the changed layouts is exercised
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["STATUS", "EVENT"])
def test_every_field_of_the_changed_layouts_is_nonzero_in_some_vector(msg_type: str) -> None:
    """SPEC 12: a field that is 0 in every vector would not catch a receiver reading it at the wrong
    offset (zeros read anywhere in a zero-padded body)."""
    mine = [v["fields"] for v in VECTORS if v["msg_type"] == msg_type]
    for name in mine[0]:
        values = [f[name]["value"] if isinstance(f[name], dict) else f[name] for f in mine]
        assert any(v not in (0, 0.0) for v in values), f"{msg_type}.{name} is 0 in every vector"


def test_every_sample_field_is_nonzero_in_some_vector() -> None:
    samples = [s for v in VECTORS if v["msg_type"] == "TELEMETRY_BATCH" for s in v["fields"]["samples"]]
    for name in samples[0]:
        values = [s[name]["value"] if isinstance(s[name], dict) else s[name] for s in samples]
        assert any(v not in (0, 0.0) for v in values), f"sample {name} is 0 in every vector"


def test_delivered_holds_while_the_plunger_backs_off_in_the_sample_vectors() -> None:
    """The vectors show the two quantities of SPEC 5.15 apart: a back-off lowers plunger_um only."""
    batch = next(v for v in VECTORS if v["name"] == "telemetry_batch_max_with_nan")
    samples = batch["fields"]["samples"]
    delivered = [s["delivered_nl"] for s in samples]
    assert delivered == sorted(delivered)
    assert samples[-1]["plunger_um"] < samples[-2]["plunger_um"]
    assert samples[-1]["delivered_nl"] == samples[-2]["delivered_nl"]


def test_a_sensor_fault_stop_vector_marks_its_pressure_invalid() -> None:
    (vector,) = [v for v in VECTORS if v["name"] == "event_stop_sensor_fault_pressure_invalid"]
    event = message_from_json(vector)
    assert isinstance(event, Event)
    assert event.reason == StopReason.SENSOR_FAULT
    assert event.flags & Flags.SENSOR_FAULT


def test_old_and_new_host_hellos_get_a_version_mismatch_naming_the_device_version() -> None:
    """SPEC 11.4: a version-1 host's HELLO (and a newer one's) is rejected before its body is read,
    and the vector says a device answers NAK VERSION_MISMATCH."""
    by_name = {n["name"]: n for n in NEGATIVES}
    for other in (PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1):
        expect = by_name[f"version_{other}_hello"]["expect"]
        assert expect["version"] == other
        assert expect["nak_code"]["name"] == "VERSION_MISMATCH"
    (nak,) = [message_from_json(v) for v in VECTORS if v["name"] == "nak_version_mismatch"]
    assert isinstance(nak, Nak)
    assert nak.detail == PROTOCOL_VERSION
