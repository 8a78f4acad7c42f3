"""SPEC.md agrees with itself where a reader would implement from two places at once.

An outside implementer reads the type table (§6.1) and the versioning rules (§11.2) to pick codes,
and the Capabilities table (§6.12) to decode DEVICE_INFO: a code listed as free that is in use, or a
bit listed twice, is a defect of the document whatever the reference does.
"""

from __future__ import annotations

import re

from tests.protocol.independent import spec_wire as w
from tests.protocol.independent.test_spec_vectors import SPEC


def _section(title: str) -> str:
    start = SPEC.index(title)
    nxt = SPEC.find("\n### ", start + len(title))
    return SPEC[start : nxt if nxt > 0 else len(SPEC)]


def _codes(text: str) -> set[int]:
    """Every type code named by a `0xAA`–`0xBB` range or a lone `0xAA` in `text`."""
    out: set[int] = set()
    for lo, hi in re.findall(r"`0x([0-9A-Fa-f]{2})`(?:\s*[–-]\s*`0x([0-9A-Fa-f]{2})`)?", text):
        out |= set(range(int(lo, 16), int(hi or lo, 16) + 1))
    return out


def _defined_types() -> set[int]:
    table = _section("### 6.1 MsgType")
    return {int(v, 16) for v in re.findall(r"^\| `0x([0-9A-F]{2})` \|", table, re.M)}


def test_type_table_is_the_transcribed_one() -> None:
    assert _defined_types() == set(w.BY_TYPE) | {w.TELEMETRY_BATCH}


def test_free_types_of_6_1_are_exactly_the_unused_ones() -> None:
    sec = _section("### 6.1 MsgType")
    free = _codes(sec[sec.index("Free for future types") :])
    assert free & _defined_types() == set()
    assert free | _defined_types() == set(range(0x01, 0x80))  # 0x00 reserved, 0x80.. reserved (§4.2)


def test_version_rules_name_no_used_type_as_free() -> None:
    """§11.2 'a new message type in a free range (...)' must not offer a code §6.1 uses."""
    row = next(line for line in _section("### 11.2").splitlines() if "new message type" in line)
    assert _codes(row) & _defined_types() == set(), sorted(hex(c) for c in _codes(row) & _defined_types())


def test_capability_bits_are_listed_once() -> None:
    rows = re.findall(r"^\| (\d+)(?:–\d+)? \| ([^|]+) \| (\w+) \|", _section("### 6.12 Capabilities"), re.M)
    bits = [int(b) for b, _mask, _name in rows]
    assert len(bits) == len(set(bits)), rows


def test_version_history_names_every_addition_within_version_2() -> None:
    """§11.5: what was added within version 2 without a bump is listed, so a reader of an older
    version-2 device knows which messages and values it may not have (capability bits, §6.12)."""
    history = _section("### 11.5")
    added = [lay.name for lay in w.BY_NAME.values() if 0x20 <= lay.type < 0x40 or 0x44 <= lay.type < 0x7E]
    added += ["CALIBRATION_OUT_OF_RANGE", "ZERO_DRIFT", "AT_HOME", "SETUP", "MOTION", "FLUORO_IMAGE"]
    added += ["RELIEF_AT_LIMIT", "RELIEF_INCOMPLETE"]
    assert [name for name in added if name not in history] == []


def test_every_event_kind_up_to_the_last_is_defined_or_reserved() -> None:
    """§6.6: a gap in the EventKind values (7 and 8 below MOTION_DONE 9) is either a kind or marked
    reserved, with what a host does on a kind it does not know: an implementer must not guess."""
    table = _section("### 6.6 EventKind")
    defined = {int(v) for v in re.findall(r"^\| (\d+) \| [A-Z_]+ \|", table, re.M)}
    assert defined == set(w.EVENT_KIND.values())
    reserved: set[int] = set()
    for row in re.findall(r"^\| ([\d, –]+) \| — \| \*\*reserved\*\*", table, re.M):
        for part in row.split(","):
            lo, _, hi = part.strip().partition("–")
            reserved |= set(range(int(lo), int(hi or lo) + 1))
    assert defined | reserved == set(range(1, max(defined) + 1)), sorted(defined | reserved)
    assert "A device MUST NOT send them" in table
    assert "**A kind the host does not know**" in table
