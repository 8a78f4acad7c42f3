"""`cementguard hil run` end to end: real simulator subprocesses over ptys, JUnit, report, exit codes."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hil.cli import SCENARIO_DIR
from tests.support.wire_client import REPO, simulator


def hil_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", "hil", "run", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def cases(junit: Path) -> dict[str, ET.Element]:
    return {c.get("name", ""): c for c in ET.parse(junit).getroot().findall("testcase")}


def props(case: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def test_a_passing_and_a_failing_scenario_give_junit_a_report_and_exit_status_1(tmp_path: Path) -> None:
    wrong = tmp_path / "runny-but-expects-working-time.toml"
    text = (SCENARIO_DIR / "viscosity-too-runny-stop.toml").read_text()
    wrong.write_text(text.replace('reason = "VISCOSITY_WINDOW"', 'reason = "WORKING_TIME"'))
    junit, report = tmp_path / "junit.xml", tmp_path / "report"
    done = hil_run(
        str(SCENARIO_DIR / "plunger-end-of-travel.toml"),
        str(wrong),
        "--junit",
        str(junit),
        "--report-dir",
        str(report),
        "--jobs",
        "2",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed, 1 failed" in done.stdout
    found = cases(junit)
    passed = found["plunger-end-of-travel"]
    assert passed.find("failure") is None
    figures = props(passed)
    assert figures["measured.final_reason"] == "VOLUME_LIMIT"  # the stroke left, armed, ends on its volume
    assert 0.061 <= float(figures["measured.delivered_ml"]) <= 0.0622
    assert float(figures["measured.peak_pressure_kpa"]) > 100
    failure = found["runny-but-expects-working-time"].find("failure")
    assert failure is not None
    assert failure.get("message") == (
        "stop reason: expected WORKING_TIME, measured STOPPED (VISCOSITY_WINDOW, source CONTROLLER)"
    )
    for name in found:
        png = report / name / f"{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG")
        assert (report / name / "recording" / "closed.json").exists()
    index = (report / "index.html").read_text()
    assert "plunger-end-of-travel/plunger-end-of-travel.png" in index


def test_on_a_real_rig_plant_events_are_skipped_with_their_reason(tmp_path: Path) -> None:
    rig_plant = tmp_path / "rig.toml"
    rig_plant.write_text("[plant]\nplunger_start_mm = 58\n")
    junit, report = tmp_path / "junit.xml", tmp_path / "report"
    with simulator("--pty", "--scenario", str(rig_plant), "--serial", "RIG-1") as (_proc, port):
        done = hil_run(
            str(SCENARIO_DIR / "plunger-end-of-travel.toml"),
            str(SCENARIO_DIR / "occlusion-pressure-rise.toml"),
            "--port",
            port,
            "--junit",
            str(junit),
            "--report-dir",
            str(report),
        )
    assert done.returncode == 0, done.stdout + done.stderr
    found = cases(junit)
    skipped = found["occlusion-pressure-rise"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == (
        f"needs the simulator: plant event(s) occlusion cannot be injected into the rig at {port}"
    )
    ran = props(found["plunger-end-of-travel"])
    assert ran["measured.final_reason"] == "VOLUME_LIMIT"
    assert ran["port"] == port
    assert ran["measured.after_flow_ml"] == "n/a"  # only the simulator knows the cement at the tip
    suite = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().find("properties") or []}
    assert suite["setup.port"] == port


def test_an_invalid_scenario_file_stops_everything_with_exit_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('plan_file = "nowhere.toml"\n[expect]\nstate = "DONE"\n')
    done = hil_run(str(bad), "--junit", str(tmp_path / "j.xml"), "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 2
    assert "bad.toml: plan_file:" in done.stderr
    assert "nowhere.toml: file not found" in done.stderr
    assert not (tmp_path / "j.xml").exists()
