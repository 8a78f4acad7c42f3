"""JUnit XML and the index page, from outcomes of every kind."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from hil.outcome import Measured, Outcome
from hil.report import setup_info, write_index, write_junit
from protocol import PROTOCOL_VERSION


def outcomes(tmp_path: Path) -> list[Outcome]:
    png = tmp_path / "report" / "a" / "a.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG")
    passed = Outcome(
        "a",
        "hil/scenarios/a.toml",
        "passed",
        measured=Measured(
            final_state="DONE", final_reason="VOLUME_LIMIT", peak_pressure_kpa=1050.5, wall_s=9.5
        ),
        png=str(png),
        time_scale=5.0,
        parameters={"plant.cement": "low_viscosity", "seed": "1"},
        description="Reference run <2 mL>",
    )
    failed = Outcome(
        "b",
        "hil/scenarios/b.toml",
        "failed",
        message=(
            "detection latency: expected <= 150 ms, measured 250.0 ms\n"
            "after-flow: expected <= 0.02 mL, measured 0.05 mL"
        ),
        measured=Measured(
            final_state="STOPPED", latency_ms=250.0, stops=[(10.07, "PRESSURE_RISE", "CONTROLLER")]
        ),
        rerun="rerun at time scale 1: at 5 host event loop 100 ms late",
    )
    error = Outcome("c", "hil/scenarios/c.toml", "error", message="RuntimeError: the simulator did not start")
    skipped = Outcome(
        "d", "hil/scenarios/d.toml", "skipped", message="needs the simulator: plant event(s) occlusion"
    )
    return [passed, failed, error, skipped]


def test_junit_has_one_testcase_per_scenario_with_parameters_figures_and_verdicts(tmp_path: Path) -> None:
    setup = setup_info(5.0, None, 2)
    path = write_junit(outcomes(tmp_path), tmp_path / "j" / "junit.xml", setup)
    suite = ET.parse(path).getroot()
    assert (
        suite.tag,
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == (
        "testsuite",
        "4",
        "1",
        "1",
        "1",
    )
    suite_props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
    assert suite_props["setup.time_scale"] == "5"
    assert suite_props["setup.protocol_version"] == str(PROTOCOL_VERSION)
    assert "setup.cementguard" in suite_props
    assert "setup.host" in suite_props
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"a", "b", "c", "d"}
    a = {p.get("name"): p.get("value") for p in cases["a"].iter("property")}
    assert a["param.plant.cement"] == "low_viscosity"
    assert a["measured.final_reason"] == "VOLUME_LIMIT"
    assert a["measured.peak_pressure_kpa"] == "1050.5"
    assert a["measured.latency_ms"] == "n/a"
    assert cases["a"].find("failure") is None
    failure = cases["b"].find("failure")
    assert failure is not None
    assert failure.get("message") == "detection latency: expected <= 150 ms, measured 250.0 ms"
    assert "after-flow: expected <= 0.02 mL" in (failure.text or "")
    b = {p.get("name"): p.get("value") for p in cases["b"].iter("property")}
    assert b["measured.stops"] == "10.0700 s PRESSURE_RISE (CONTROLLER)"
    assert (b["rerun"] or "").startswith("rerun at time scale 1")
    error = cases["c"].find("error")
    assert error is not None
    assert error.get("message") == "RuntimeError: the simulator did not start"
    skipped = cases["d"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "needs the simulator: plant event(s) occlusion"


def test_the_index_page_has_the_table_the_messages_and_the_figures(tmp_path: Path) -> None:
    report = tmp_path / "report"
    index = write_index(outcomes(tmp_path), report, setup_info(5.0, None, 2))
    page = index.read_text()
    assert "1 passed, 1 failed, 1 errors, 1 skipped" in page
    assert '<img src="a/a.png"' in page
    assert "detection latency: expected &lt;= 150 ms, measured 250.0 ms" in page
    assert "rerun at time scale 1" in page
    assert page.count("<tr><td><a href=") == 4
    assert "<p>Reference run &lt;2 mL&gt;</p>" in page


def test_the_link_quality_of_each_run_is_in_the_junit_and_the_page(tmp_path: Path) -> None:
    """Issue 13 item 5: line errors are visible in the report, not only in the counter file."""
    quality = "POOR: 3.2 % damaged, 1.5 % lost"
    run = Outcome(
        "q", "hil/scenarios/q.toml", "passed", measured=Measured(final_state="DONE", link_quality=quality)
    )
    path = write_junit([run], tmp_path / "junit.xml", setup_info(5.0, None, 1))
    case = ET.parse(path).getroot().find("testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.find("properties") or []}
    assert props["measured.link_quality"] == quality
    page = write_index([run], tmp_path / "report", setup_info(5.0, None, 1)).read_text()
    assert quality in page
