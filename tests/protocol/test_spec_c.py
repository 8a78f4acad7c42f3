"""The C in protocol/SPEC.md compiles cleanly and has exactly the layouts of the Python reference.

SPEC.md promises a firmware engineer C definitions that are the wire layout. This extracts every
```c block, compiles them together with `-Wall -Wextra -Werror` (their own _Static_asserts included),
then runs a generated program that prints sizeof and offsetof of every named field, and compares each
with the offsets of the Python struct formats and the numpy sample dtype. A field moved or resized in
one place and not the other fails here.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from protocol import framing
from protocol.codec import HEADER, PROTOCOL_VERSION
from protocol.messages import (
    Ack,
    Arm,
    DeviceInfo,
    Event,
    Heartbeat,
    Hello,
    Message,
    Nak,
    SetLimits,
    SetTelemetry,
    Start,
    Status,
    Stop,
)
from protocol.telemetry import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_DTYPE, SAMPLE_SIZE
from tests.protocol.helpers import REPO

SPEC = REPO / "protocol" / "SPEC.md"

C_STRUCTS: dict[str, type[Message]] = {
    "cg_hello_t": Hello,
    "cg_heartbeat_t": Heartbeat,
    "cg_arm_t": Arm,
    "cg_simple_cmd_t": Start,
    "cg_stop_t": Stop,
    "cg_set_limits_t": SetLimits,
    "cg_set_telemetry_t": SetTelemetry,
    "cg_device_info_t": DeviceInfo,
    "cg_status_t": Status,
    "cg_event_t": Event,
    "cg_ack_t": Ack,
    "cg_nak_t": Nak,
}


def c_blocks() -> list[str]:
    return re.findall(r"```c\n(.*?)```", SPEC.read_text(encoding="utf-8"), flags=re.S)


def format_offsets(fmt: str, names: tuple[str, ...]) -> dict[str, int]:
    """Offset of each named field of a struct format, pad bytes ('x') skipped as the layout does."""
    offsets: dict[str, int] = {}
    pos = 0
    index = 0
    for count, code in re.findall(r"(\d*)([xBHIQbhiqfs])", fmt.lstrip("<")):
        n = int(count or 1)
        if code == "x":
            pos += n
        elif code == "s":
            offsets[names[index]] = pos
            pos += n
            index += 1
        else:
            size = struct.calcsize("<" + code)
            for _ in range(n):
                offsets[names[index]] = pos
                pos += size
                index += 1
    assert index == len(names), fmt
    assert pos == struct.calcsize(fmt), fmt
    return offsets


def expected_layouts() -> dict[str, tuple[int, dict[str, int]]]:
    out = {c: (cls.body_size(), format_offsets(cls.FORMAT, cls._names)) for c, cls in C_STRUCTS.items()}
    out["cg_header_t"] = (HEADER.size, format_offsets(HEADER.format, ("version", "type", "seq")))
    batch = ("first_index", "period_us", "count", "reserved")
    out["cg_batch_header_t"] = (BATCH_HEADER.size, format_offsets(BATCH_HEADER.format, batch))
    fields = SAMPLE_DTYPE.fields
    assert fields is not None
    out["cg_sample_t"] = (SAMPLE_SIZE, {n: int(fields[n][1]) for n in SAMPLE_DTYPE.names or ()})
    return out


def _compiler() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc is not None, "a C compiler (gcc) is needed to check the C in protocol/SPEC.md"
    return cc


@pytest.fixture(scope="module")
def c_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Every `name value` line the compiled program prints: sizes, offsets and constants."""
    layouts = expected_layouts()
    prints = []
    for struct_name, (_size, offsets) in layouts.items():
        prints.append(f'printf("sizeof.{struct_name} %zu\\n", sizeof({struct_name}));')
        for field in offsets:
            prints.append(f'printf("{struct_name}.{field} %zu\\n", offsetof({struct_name}, {field}));')
    for const in ("CG_PROTOCOL_VERSION", "CG_MAX_BATCH_SAMPLES", "CG_MAX_PAYLOAD", "CG_MAX_ENCODED"):
        prints.append(f'printf("{const} %u\\n", (unsigned)({const}));')
    source = "\n".join(["#include <stdio.h>", *c_blocks()])
    source += "\nint main(void)\n{\n    " + "\n    ".join(prints) + "\n    return 0;\n}\n"
    work: Path = tmp_path_factory.mktemp("spec_c")
    (work / "spec.c").write_text(source)
    build = subprocess.run(
        [
            _compiler(),
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(work / "spec"),
            str(work / "spec.c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(work / "spec")], capture_output=True, text=True, check=True)
    return {k: int(v) for k, v in (line.split() for line in run.stdout.splitlines())}


def test_spec_has_c_for_every_fixed_layout() -> None:
    text = "\n".join(c_blocks())
    for struct_name in expected_layouts():
        assert re.search(rf"\}}\s*{struct_name};", text), f"SPEC.md has no C struct {struct_name}"


@pytest.mark.parametrize("struct_name", sorted(expected_layouts()))
def test_c_struct_matches_the_python_layout(struct_name: str, c_layouts: dict[str, int]) -> None:
    size, offsets = expected_layouts()[struct_name]
    assert c_layouts[f"sizeof.{struct_name}"] == size
    for field, offset in offsets.items():
        assert c_layouts[f"{struct_name}.{field}"] == offset, field


def test_c_constants_match_the_python_reference(c_layouts: dict[str, int]) -> None:
    assert c_layouts["CG_PROTOCOL_VERSION"] == PROTOCOL_VERSION
    assert c_layouts["CG_MAX_BATCH_SAMPLES"] == MAX_BATCH_SAMPLES
    assert c_layouts["CG_MAX_PAYLOAD"] == framing.MAX_PAYLOAD
    assert c_layouts["CG_MAX_ENCODED"] == framing.MAX_ENCODED


def test_every_field_is_naturally_aligned_and_every_body_a_multiple_of_its_largest_field() -> None:
    """SPEC 1.2: a plain C struct has the wire layout without packing."""
    for struct_name, (size, offsets) in expected_layouts().items():
        cls = C_STRUCTS.get(struct_name)
        if cls is None:
            continue
        sizes = [struct.calcsize("<" + c) if not c.endswith("s") else 1 for c in cls._codes]
        for (field, offset), field_size in zip(offsets.items(), sizes, strict=True):
            assert offset % field_size == 0, f"{struct_name}.{field} at {offset}"
        assert size % max(sizes) == 0, struct_name
