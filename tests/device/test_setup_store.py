"""The simulator's non-volatile setup (protocol/SPEC.md §5.23): the syringe and calibration survive a
power cycle of `cementguard sim`, and a setup file that cannot be used stops it with an error naming
the file and the field, without touching the file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import serial

from firmware_sim.controller import ControllerConfig
from firmware_sim.controller.calibration import Calibration, DeviceSetup
from firmware_sim.controller.syringes import MountedSyringe
from firmware_sim.device.setup_store import (
    MAX_SETUP_BYTES,
    SetupFileError,
    SetupWriter,
    load_setup,
    save_setup,
    setup_json,
)
from firmware_sim.hal import REFERENCE_RIG
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    CalibrateVolume,
    CalibrationInfo,
    Hello,
    SetSyringe,
    SyringeInfo,
    Zero,
)
from tests.device.test_sim_cli import _sim
from tests.support.wire_client import WireClient, simulator

UTC = 1_780_000_000
STORED = DeviceSetup(
    MountedSyringe("3ml", 8_660, 50_900, 90_000, 8_000_000),
    Calibration(zero_offset_pa=12_345, zero_utc_s=UTC, volume_factor_ppm=1_012_000, volume_utc_s=UTC + 5),
)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "setup.json"
    save_setup(path, STORED)
    assert load_setup(path, ControllerConfig(), REFERENCE_RIG) == STORED
    assert [p.name for p in tmp_path.iterdir()] == ["setup.json"], "no temporary file left behind"


def test_a_missing_file_is_a_new_device(tmp_path: Path) -> None:
    assert load_setup(tmp_path / "none.json", ControllerConfig(), REFERENCE_RIG) is None


def _doc() -> dict[str, object]:
    doc: dict[str, object] = json.loads(setup_json(STORED))
    return doc


BAD = {
    "not JSON": (b"{", "is not UTF-8 JSON"),
    "unknown key": (None, "calibration.extra"),
    "offset beyond the zero bound": (None, "calibration.zero_offset_pa = 150000 is outside -100000..100000"),
    "volume factor beyond its bound": (
        None,
        "calibration.volume_factor_ppm = 1200000 is outside 900000..1100000",
    ),
    "syringe longer than the drive": (None, "syringe.stroke_um: 70000 is refused by this device"),
    "a string for a number": (None, "calibration.span_gain_ppm: '1000000'"),
    "wrong format tag": (None, "format"),
}


def _bad_bytes(case: str) -> bytes:
    raw, _ = BAD[case]
    if raw is not None:
        return raw
    doc = _doc()
    cal = doc["calibration"]
    syr = doc["syringe"]
    assert isinstance(cal, dict)
    assert isinstance(syr, dict)
    if case == "unknown key":
        cal["extra"] = 1
    elif case == "offset beyond the zero bound":
        cal["zero_offset_pa"] = 150_000
    elif case == "volume factor beyond its bound":
        cal["volume_factor_ppm"] = 1_200_000
    elif case == "syringe longer than the drive":
        syr["stroke_um"] = 70_000
    elif case == "a string for a number":
        cal["span_gain_ppm"] = "1000000"
    elif case == "wrong format tag":
        doc["format"] = "something-else"
    return json.dumps(doc).encode()


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_file_is_refused_naming_the_field_and_left_as_it_is(tmp_path: Path, case: str) -> None:
    path = tmp_path / "setup.json"
    data = _bad_bytes(case)
    path.write_bytes(data)
    with pytest.raises(SetupFileError) as err:
        load_setup(path, ControllerConfig(), REFERENCE_RIG)
    assert str(path) in str(err.value)
    assert BAD[case][1] in str(err.value)
    assert path.read_bytes() == data


def test_an_oversized_file_or_a_fifo_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_SETUP_BYTES + 1))
    with pytest.raises(SetupFileError, match="larger than"):
        load_setup(big, ControllerConfig(), REFERENCE_RIG)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(SetupFileError, match="not a regular file"):
        load_setup(fifo, ControllerConfig(), REFERENCE_RIG)


def test_the_simulator_refuses_to_start_on_a_malformed_setup_file(tmp_path: Path) -> None:
    path = tmp_path / "setup.json"
    path.write_text('{"format": "cementguard-device-setup", "version": 1}')
    done = _sim("--tcp", "127.0.0.1:0", "--setup-file", str(path))
    assert done.returncode == 2
    assert f"setup file {path}" in done.stderr
    assert "syringe" in done.stderr
    assert "PORT" not in done.stdout
    assert path.read_text() == '{"format": "cementguard-device-setup", "version": 1}'


def _session(proc: subprocess.Popen[str], address: str) -> tuple[WireClient, list[object]]:
    port = serial.serial_for_url(address, timeout=0.05)
    proc.log.wait_for("host attached")  # type: ignore[attr-defined]
    client = WireClient(port)
    answer, replies = client.command(lambda i: Hello(i, PROTOCOL_VERSION))
    assert isinstance(answer, Ack), answer
    return client, list(replies)


def test_syringe_and_calibration_survive_a_power_cycle_of_the_simulator(tmp_path: Path) -> None:
    path = tmp_path / "setup.json"
    with simulator("--tcp", "127.0.0.1:0", "--setup-file", str(path)) as (proc, address):
        client, replies = _session(proc, address)
        assert [type(r) for r in replies[1:]] == [SyringeInfo, CalibrationInfo]
        ok, _ = client.command(lambda i: SetSyringe(i, "3ml", 8_660, 50_900, 90_000, 8_000_000))
        assert isinstance(ok, Ack), ok
        ok, zero = client.command(lambda i: Zero(i, UTC))
        assert isinstance(ok, Ack), ok
        ok, _ = client.command(lambda i: CalibrateVolume(i, 1_000_000, 1_010_000, 1_000_000, UTC + 9))
        assert isinstance(ok, Ack), ok
        client.port.close()
    (zeroed,) = zero
    assert isinstance(zeroed, CalibrationInfo)
    with simulator("--tcp", "127.0.0.1:0", "--setup-file", str(path)) as (proc, address):
        client, replies = _session(proc, address)
        client.port.close()
    _info, syringe, cal = replies
    assert isinstance(syringe, SyringeInfo)
    assert isinstance(cal, CalibrationInfo)
    assert (syringe.name, syringe.bore_um, syringe.stroke_um, syringe.travel_um) == (
        "3ml",
        8_660,
        50_900,
        50_400,
    )
    assert (cal.zero_offset_pa, cal.zero_utc_s) == (zeroed.zero_offset_pa, UTC)
    assert (cal.volume_factor_ppm, cal.volume_utc_s) == (1_010_000, UTC + 9)


def test_the_writer_writes_the_newest_setup_and_close_flushes_it(tmp_path: Path) -> None:
    path = tmp_path / "setup.json"
    errors: list[str] = []
    writer = SetupWriter(path, errors.append)
    writer.submit(DeviceSetup())
    writer.submit(STORED)
    writer.close()
    assert load_setup(path, ControllerConfig(), REFERENCE_RIG) == STORED
    assert errors == []


def test_the_writer_reports_a_file_it_cannot_write(tmp_path: Path) -> None:
    errors: list[str] = []
    writer = SetupWriter(tmp_path / "missing-dir" / "setup.json", errors.append)
    writer.submit(STORED)
    writer.close()
    assert len(errors) == 1
    assert "cannot be written" in errors[0]
