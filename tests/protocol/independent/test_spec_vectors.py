"""protocol/vectors.json checked both ways against a codec written from SPEC.md alone (spec_wire).

§12: every implementation MUST encode each vector's fields to exactly its payload, CRC and frame,
decode its frame back to exactly its header and fields, and drop or reject each negative input as
its `expect` says. Also checks SPEC's own worked examples (§3.2, §3.3, §3.7) and constants (§1.3).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from tests.protocol.independent import spec_wire as w

REPO = Path(__file__).resolve().parents[3]
DOC = json.loads((REPO / "protocol" / "vectors.json").read_text())
SPEC = (REPO / "protocol" / "SPEC.md").read_text()
VECTORS = DOC["vectors"]
NEGATIVE = DOC["negative_vectors"]


def _wire_value(v: Any) -> Any:
    """A vector field value in wire units (§12: enums and flags as {name, value}; float words)."""
    if isinstance(v, dict):
        return v["value"]
    if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
        return float(v.lower().replace("infinity", "inf"))
    if isinstance(v, list):
        return [{k: _wire_value(x) for k, x in s.items()} for s in v]
    return v


def _fields(vector: dict[str, Any]) -> dict[str, Any]:
    return {k: _wire_value(v) for k, v in vector["fields"].items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return w.same_float(float(a), float(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(
            s.keys() == t.keys() and all(_same(s[k], t[k]) for k in s) for s, t in zip(a, b, strict=True)
        )
    return bool(a == b)


def test_spec_examples_and_constants() -> None:
    assert w.cobs_encode(bytes.fromhex("11220033")) == bytes.fromhex("0311220233")
    assert w.cobs_encode(b"") == b"\x01"
    assert w.crc16(b"123456789") == 0x29B1 == int(DOC["crc"]["check"], 16)
    hello = w.encode("HELLO", 0, cmd_id=1, protocol_version=2)
    assert w.frame(hello).hex() == "0302010102010202032f1600"
    assert w.MAX_ENCODED == 1031 == DOC["constants"]["max_encoded"]
    assert DOC["protocol_version"] == w.VERSION


def test_cobs_length_rule() -> None:
    """§3.2: n + max(1, ceil(n / 254)) bytes, no trailing 01 after a final full run."""
    for n in (1, 253, 254, 255, 508, 509, 1026):
        data = bytes(i % 255 + 1 for i in range(n))
        enc = w.cobs_encode(data)
        assert len(enc) == n + max(1, math.ceil(n / 254))
        assert 0 not in enc
        assert w.cobs_decode(enc) == data


def test_body_sizes_match_spec_layouts() -> None:
    """vectors.json `body_sizes` against the §5 formats this reader transcribed."""
    sizes = DOC["body_sizes"]
    assert sizes.pop("TELEMETRY_BATCH") is None
    assert sizes == {lay.name: lay.size for lay in w.BY_NAME.values()}


def test_spec_formats_are_those_transcribed() -> None:
    """Every `Format ...` SPEC states is a format of one of the transcribed layouts, and back."""
    stated = set(re.findall(r"[Ff]ormat\s+`(<[0-9A-Za-z]+)`", SPEC))
    transcribed = {lay.fmt for lay in w.BY_NAME.values()}
    transcribed |= {w.HEADER.format, w.BATCH_HEADER.format, w.SAMPLE.format}
    assert transcribed - stated == set()
    assert stated - transcribed == set()


def test_every_type_has_a_vector() -> None:
    names = {v["msg_type"] for v in VECTORS}
    assert names == set(w.BY_NAME) | {"TELEMETRY_BATCH"}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_encodes(vector: dict[str, Any]) -> None:
    payload = w.encode(vector["msg_type"], vector["seq"], vector["version"], **_fields(vector))
    assert payload[1] == vector["msg_type_value"]
    assert payload.hex() == vector["payload_hex"]
    assert f"0x{w.crc16(payload):04X}" == vector["crc16"]
    assert w.frame(payload).hex() == vector["frame_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_decodes(vector: dict[str, Any]) -> None:
    rx = w.Receiver()
    payloads = rx.feed(bytes.fromhex(vector["frame_hex"]))
    assert len(payloads) == 1
    assert rx.counters == {"frames": 1}
    msg = w.decode(payloads[0])
    assert isinstance(msg, w.Msg), msg
    assert (msg.version, msg.type, msg.seq) == (vector["version"], vector["msg_type_value"], vector["seq"])
    want = _fields(vector)
    assert list(msg.fields) == list(want)
    bad = {k: (msg.fields[k], want[k]) for k in want if not _same(msg.fields[k], want[k])}
    assert bad == {}


@pytest.mark.parametrize("vector", NEGATIVE, ids=[v["name"] for v in NEGATIVE])
def test_negative_vector(vector: dict[str, Any]) -> None:
    expect = vector["expect"]
    rx = w.Receiver()
    payloads = rx.feed(bytes.fromhex(vector["frame_hex"]))
    if expect["layer"] == "framing":
        assert payloads == []
        assert rx.counters == {expect["counter"]: 1}
        return
    assert len(payloads) == 1
    assert payloads[0].hex() == vector["payload_hex"]
    assert f"0x{w.crc16(payloads[0]):04X}" == vector["crc16"]
    rej = w.decode(payloads[0])
    assert isinstance(rej, w.Reject), rej
    assert rej.reason == expect["reason"]
    assert (rej.version, rej.type, rej.seq) == (expect["version"], expect["msg_type_value"], expect["seq"])
    assert rej.cmd_id == expect["cmd_id"]
    assert rej.field_index == expect["field_index"]
    # The NAK a device answers (§7.7, §7.9), from the reject alone.
    nak = expect["nak_code"]
    is_command = 0x01 <= rej.type <= 0x3F and rej.type != 0x02
    if not is_command:
        assert nak is None
    elif rej.type == w.BY_NAME["STOP"].type and rej.reason == "bad_value":
        assert nak is None  # executed and ACKed (§7.6)
    else:
        want = {
            "version_mismatch": "VERSION_MISMATCH",
            "unknown_type": "UNKNOWN_COMMAND",
            "bad_length": "BAD_LENGTH",
            "bad_value": "BAD_PARAM",
        }[rej.reason]
        assert nak == {"name": want, "value": w.NAK_CODE[want]}
