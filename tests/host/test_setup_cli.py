"""Syringe and calibration from the host: DeviceClient.set_syringe / zero / calibrate_* /
get_calibration and `cementguard syringe|zero|calibrate` against the simulator over a real pty
(protocol/SPEC.md §5.17-§5.23), and the options refused before anything is sent."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from host import cli
from host.client import DeviceClient
from host.errors import CommandRefused
from host.recording import Recording
from host.report import _device_rows
from host.syringes import LIBRARY, UnknownSyringeError, find
from protocol import NakCode, SetSyringe, State
from tests.host.test_run_cli import _cli as run_cli
from tests.host.test_run_recording import CONTINUOUS
from tests.support.wire_client import REPO, simulator

SimPty = tuple[subprocess.Popen[str], str]


def test_the_library_has_the_usual_cement_syringes_and_every_one_fits_the_reference_device() -> None:
    assert [s.name for s in LIBRARY] == ["1ml", "2.5ml", "3ml", "5ml", "10ml"]
    for spec in LIBRARY:
        wire = spec.to_wire(1)
        assert 2_000 <= wire.bore_um <= 40_000
        assert 5_000 <= wire.stroke_um <= 60_000, f"{spec.name}: the reference drive's 60 mm"
        assert wire.max_pressure_pa <= 8_000_000
        volume_ml = 3.141592653589793 * (spec.bore_mm / 2) ** 2 * wire.stroke_um / 1e6
        assert abs(volume_ml - spec.capacity_ml) < 0.001
    assert find("2.5 mL") is find("2.5ml")
    with pytest.raises(UnknownSyringeError, match=r"'20ml' is not in the library; allowed 1ml, 2\.5ml"):
        find("20ml")


async def test_setup_through_the_client(sim_pty: SimPty) -> None:
    _proc, path = sim_pty
    async with DeviceClient.open(path) as ctl:
        assert ctl.syringe is not None, "the handshake reports the syringe in force"
        assert ctl.calibration is not None, "and the calibration"
        assert ctl.syringe.name == ""
        info = await ctl.set_syringe(find("3ml").to_wire(1))
        assert (info.name, info.bore_um, info.travel_um) == ("3ml", 8_660, 50_432), "the stroke less 0.5 mm"
        assert ctl.syringe == info

        before = time.time()
        cal = await ctl.zero()
        assert before - 1 <= cal.zero_utc_s <= time.time() + 1
        assert abs(cal.zero_offset_pa) < 20_000, "the simulator's open line reads about 0"

        with pytest.raises(CommandRefused) as refused:
            await ctl.set_syringe(SetSyringe(1, "long", 8_660, 70_000, 0, 4_000_000))
        assert refused.value.code == NakCode.BAD_PARAM
        says = "stroke_um (field 3) = 70000 um is out of range: allowed 5000 um to 60000 um"
        assert says in str(refused.value)

        with pytest.raises(CommandRefused) as refused:
            await ctl.calibrate_volume(nominal_nl=1_000_000, mass_ug=1_300_000, density_mg_l=998_203)
        assert refused.value.code == NakCode.CALIBRATION_OUT_OF_RANGE
        assert "+30.2" in str(refused.value), "the correction it would have made, in %"
        cal = await ctl.calibrate_volume(nominal_nl=1_000_000, mass_ug=1_010_000, density_mg_l=998_203)
        assert cal.volume_factor_ppm == 1_011_818

        syringe, again = await ctl.get_calibration()
        assert (syringe.name, again.volume_factor_ppm, again.zero_utc_s) == ("3ml", 1_011_818, cal.zero_utc_s)
        assert ctl.state == State.IDLE


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def test_the_commands_say_what_is_in_force(sim_pty: SimPty, capsys: pytest.CaptureFixture[str]) -> None:
    _proc, path = sim_pty
    code, out = _cli(capsys, "syringe", "select", "5 mL", "--port", path)
    assert code == 0, out
    assert "syringe 5ml: bore 12.06 mm, stroke 43.77 mm (usable stroke 43.27 mm)" in out
    assert "pressure ceiling 5000 kPa" in out
    code, out = _cli(capsys, "zero", "--port", path)
    assert code == 0, out
    assert "zeroed: offset" in out
    code, out = _cli(capsys, "calibrate", "span", "--port", path, "--reference-kpa", "1000")
    assert code == 1, "the open line reads about 0, not the 1000 kPa reference"
    assert "CALIBRATION_OUT_OF_RANGE" in out
    code, out = _cli(
        capsys,
        "calibrate",
        "volume",
        "--port",
        path,
        "--nominal-ml",
        "1",
        "--mass-g",
        "0.9982",
        "--density-g-ml",
        "0.998203",
    )
    assert code == 0, out
    assert "volume calibrated (1.000000 mL counted, 0.9982 g weighed): factor 0.999997" in out
    code, out = _cli(capsys, "calibrate", "show", "--port", path)
    assert code == 0, out
    assert "syringe 5ml" in out
    assert "span:   gain 1 (factory value)" in out
    assert "zero check at ARM: |pressure| <= 50 kPa" in out
    code, out = _cli(
        capsys,
        "syringe",
        "custom",
        "--port",
        path,
        "--bore-mm",
        "9",
        "--stroke-mm",
        "80",
        "--max-pressure-kpa",
        "2000",
    )
    assert code == 1
    assert "stroke_um (field 3) = 80000 um is out of range: allowed 5000 um to 60000 um" in out
    code, out = _cli(capsys, "syringe", "none", "--port", path)
    assert code == 0
    assert "no syringe selected" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["syringe", "select", "20ml", "--port", "/nonexistent"], "'20ml' is not in the library"),
        (
            [
                "syringe",
                "custom",
                "--port",
                "x",
                "--bore-mm",
                "inf",
                "--stroke-mm",
                "50",
                "--max-pressure-kpa",
                "1",
            ],
            "argument --bore-mm: inf is not a finite number; allowed 2..40 mm",
        ),
        (
            [
                "syringe",
                "custom",
                "--port",
                "x",
                "--bore-mm",
                "9",
                "--stroke-mm",
                "50",
                "--max-pressure-kpa",
                "1",
                "--name",
                "x" * 17,
            ],
            "is not a syringe name; allowed 1..16 printable ASCII characters",
        ),
        (
            ["calibrate", "span", "--port", "x", "--reference-kpa", "-5"],
            "argument --reference-kpa: -5 is outside the range; allowed 1..100000 kPa",
        ),
        (
            [
                "calibrate",
                "volume",
                "--port",
                "x",
                "--nominal-ml",
                "1",
                "--mass-g",
                "nan",
                "--density-g-ml",
                "1",
            ],
            "argument --mass-g: nan is not a finite number",
        ),
        (
            [
                "calibrate",
                "volume",
                "--port",
                "x",
                "--nominal-ml",
                "1",
                "--mass-g",
                "1",
                "--density-g-ml",
                "20",
            ],
            "argument --density-g-ml: 20 is outside the range; allowed 0.1..10 g/mL",
        ),
    ],
)
def test_bad_options_exit_2_naming_option_value_and_range(args: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stdout + done.stderr


def test_a_run_records_the_syringe_and_calibration_in_force_and_the_report_shows_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Setup, then a continuous run of the fast plan (2.5 mL syringe): the recording keeps what was in
    force (meta.json extra.device_setup) and the report's device table says it."""
    plan = tmp_path / "plan.toml"
    plan.write_text(CONTINUOUS)
    with simulator("--pty", "--time-scale", "5") as (_proc, port):
        assert _cli(capsys, "syringe", "select", "2.5ml", "--port", port)[0] == 0
        assert _cli(capsys, "zero", "--port", port)[0] == 0
        done = run_cli(
            "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240", "--time-scale", "5",
            "--record", str(tmp_path / "rec"), "--record-tail", "0",
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "rec").iterdir()
    setup = Recording.open(run_dir).device_setup
    assert setup is not None
    assert (setup.syringe, setup.bore_mm, setup.usable_stroke_mm) == ("2.5ml", 7.29, 59.395)
    assert setup.zero_utc_s > 0, "the zero taken before the run, with its date"
    assert (setup.span_gain, setup.span_utc_s, setup.volume_factor) == (1.0, 0, 1.0)
    rows = dict(_device_rows(Recording.open(run_dir)))
    assert rows["syringe"].startswith("2.5ml: bore 7.29 mm")
    assert rows["zero"].startswith("offset ")
    assert "calibrated 20" in rows["zero"]
    assert rows["span"] == "gain 1.000000, factory value"


def test_prime_takes_the_selected_syringes_bore(sim_pty: SimPty, capsys: pytest.CaptureFixture[str]) -> None:
    _proc, path = sim_pty
    code, out = _cli(capsys, "prime", "--port", path, "--volume-ml", "0.02", "--flow-ml-min", "6")
    assert code == 1
    assert "no syringe is selected on the device: give --bore-mm" in out
    assert _cli(capsys, "syringe", "select", "2.5ml", "--port", path)[0] == 0
    code, out = _cli(capsys, "prime", "--port", path, "--volume-ml", "0.02", "--flow-ml-min", "6")
    assert code == 0, out
    assert "prime done" in out
    code, out = _cli(capsys, "prime", "--port", path, "--bore-mm", "8.66", "--volume-ml", "0.02")
    assert code == 1
    assert "= 8660 is not the bore of the syringe selected on the device, 7290 um" in out


def test_the_volume_calibration_takes_the_last_primes_volume(
    sim_pty: SimPty, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gravimetric workflow: prime into a weighed vessel, weigh, calibrate with what the device
    counted. Without a prime first, the command says so."""
    _proc, path = sim_pty
    weighed = ("--mass-g", "0.2", "--density-g-ml", "0.998203")
    code, out = _cli(capsys, "calibrate", "volume", "--port", path, *weighed)
    assert code == 1
    assert "the device's last movement was not a prime" in out
    assert _cli(capsys, "syringe", "select", "2.5ml", "--port", path)[0] == 0
    assert _cli(capsys, "prime", "--port", path, "--volume-ml", "0.2", "--flow-ml-min", "6")[0] == 0
    code, out = _cli(capsys, "calibrate", "volume", "--port", path, *weighed)
    assert code == 0, out
    counted = float(out.split("(")[1].split(" mL counted")[0])
    assert 0.2 <= counted < 0.202, "the prime's volume, as the device counted it"
    factor = float(out.split("factor ")[1].split(",")[0])
    assert abs(factor - 0.2 / 0.998203 / counted) < 2e-6
