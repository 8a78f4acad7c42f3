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
    CalibrateSpan,
    CalibrateVolume,
    CalibrationInfo,
    DeviceInfo,
    Event,
    Heartbeat,
    Hello,
    Home,
    Jog,
    Message,
    MotionStatus,
    Nak,
    Prime,
    SetLimits,
    SetSyringe,
    SetTelemetry,
    Start,
    Status,
    Stop,
    SyringeInfo,
    Zero,
)
from protocol.telemetry import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_DTYPE, SAMPLE_SIZE
from tests.protocol.helpers import REPO, negative_vectors, vectors

SPEC = REPO / "protocol" / "SPEC.md"

C_STRUCTS: dict[str, type[Message]] = {
    "cg_hello_t": Hello,
    "cg_heartbeat_t": Heartbeat,
    "cg_arm_t": Arm,
    "cg_simple_cmd_t": Start,
    "cg_stop_t": Stop,
    "cg_set_limits_t": SetLimits,
    "cg_set_telemetry_t": SetTelemetry,
    "cg_set_syringe_t": SetSyringe,
    "cg_zero_t": Zero,
    "cg_calibrate_span_t": CalibrateSpan,
    "cg_calibrate_volume_t": CalibrateVolume,
    "cg_syringe_info_t": SyringeInfo,
    "cg_calibration_info_t": CalibrationInfo,
    "cg_device_info_t": DeviceInfo,
    "cg_status_t": Status,
    "cg_event_t": Event,
    "cg_ack_t": Ack,
    "cg_nak_t": Nak,
    "cg_volume_move_t": Prime,
    "cg_jog_t": Jog,
    "cg_home_t": Home,
    "cg_motion_status_t": MotionStatus,
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


# ---------------------------------------------------------------------------------------------
# The framing C of §3.6 against the golden vectors, both directions (SPEC: "Tested against the
# Python reference (both directions)")
# ---------------------------------------------------------------------------------------------

FRAMING_MAIN = r"""
#include <stdio.h>
#include <string.h>

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    unsigned v;
    while (s[0] && s[1] && sscanf(s, "%2x", &v) == 1) {
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

int main(void)
{
    static char line[8192];
    static uint8_t buf[4096], out[CG_MAX_ENCODED + 1];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        size_t n = unhex(line + 2, buf);
        if (line[0] == 'E') {
            size_t m = cg_frame_encode(buf, n, out);
            for (size_t i = 0; i < m; i++)
                printf("%02x", out[i]);
            printf("\n");
        } else {
            cg_rx_t rx;
            memset(&rx, 0, sizeof rx);
            int got = 0;
            for (size_t i = 0; i < n; i++) {
                size_t plen = cg_rx_byte(&rx, buf[i]);
                if (plen) {
                    for (size_t j = 0; j < plen; j++)
                        printf("%02x", rx.buf[j]);
                    got = 1;
                }
            }
            if (!got)
                printf("DROP crc=%u cobs=%u overlong=%u runts=%u", (unsigned)rx.crc_errors,
                       (unsigned)rx.cobs_errors, (unsigned)rx.overlong, (unsigned)rx.runts);
            printf("\n");
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def framing_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blocks = c_blocks()
    framing_c = next(b for b in blocks if "cg_rx_byte" in b)
    work: Path = tmp_path_factory.mktemp("spec_framing")
    (work / "framing.c").write_text(framing_c + FRAMING_MAIN)
    build = subprocess.run(
        [
            _compiler(),
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(work / "framing"),
            str(work / "framing.c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    return work / "framing"


def test_the_spec_framing_c_encodes_and_decodes_every_golden_vector(framing_program: Path) -> None:
    good = vectors()
    framing_negatives = [v for v in negative_vectors() if v["expect"]["layer"] == "framing"]
    lines = [f"E {v['payload_hex']}" for v in good]
    lines += [f"D {v['frame_hex']}" for v in good]
    lines += [f"D {v['frame_hex']}" for v in framing_negatives]
    run = subprocess.run(
        [str(framing_program)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True
    )
    out = run.stdout.splitlines()
    encoded, decoded, dropped = out[: len(good)], out[len(good) : 2 * len(good)], out[2 * len(good) :]
    assert encoded == [v["frame_hex"] for v in good]
    assert decoded == [v["payload_hex"] for v in good]
    counter_names = {"crc_errors": "crc", "cobs_errors": "cobs", "overlong": "overlong", "runts": "runts"}
    for vector, result in zip(framing_negatives, dropped, strict=True):
        assert result.startswith("DROP"), vector["name"]
        counts = dict(item.split("=") for item in result.split()[1:])
        expected = counter_names[vector["expect"]["counter"]]
        assert counts == {k: str(int(k == expected)) for k in counts}, (vector["name"], result)
