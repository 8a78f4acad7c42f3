"""Run metadata for the lab notebook (issue 16): from the plan's [metadata] table and the command
line, checked with clear errors, stored in the recording, used in the recording's folder name."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from host.export import export_csv
from host.plan import PlanError, load_plan, parse_plan
from host.recording import Recorder, Recording
from host.run_metadata import RunMetadata, add_arguments, folder_label, merge, sanitise
from tests.host.test_recording import PLAN
from tests.host.test_run_cli import FAST_PLAN, _cli
from tests.support.wire_client import simulator

CONTINUOUS = FAST_PLAN.replace('mode = "incremental"', 'mode = "continuous"').replace(
    "increment_ml = 0.1\n", ""
)
WITH_METADATA = (
    CONTINUOUS
    + """
[metadata]
specimen = "L2 left/07"
operator = "plan operator"
cement_product = "Osteopal V"
cement_lot = "8123-44"
mixing_time_s = 60
room_temperature_c = 21.5
notes = "first line\\nsecond line"
"""
)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_plan_metadata_table_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(WITH_METADATA)
    meta = load_plan(path).metadata
    assert meta.specimen == "L2 left/07"
    assert meta.mixing_time_s == 60
    assert meta.notes == "first line\nsecond line"
    assert meta.record() == {
        "specimen": "L2 left/07",
        "operator": "plan operator",
        "cement_product": "Osteopal V",
        "cement_lot": "8123-44",
        "mixing_time_s": 60.0,
        "room_temperature_c": 21.5,
        "notes": "first line\nsecond line",
    }
    bad = WITH_METADATA.replace("room_temperature_c = 21.5", "room_temperature_c = 80").replace(
        'operator = "plan operator"', 'operater = "x"\nspecimen_lot = 3'
    )
    path.write_text(bad.replace('cement_lot = "8123-44"', 'cement_lot = "a\\nb"'))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    text = str(info.value)
    assert "metadata.room_temperature_c: 80 is too large; allowed [-10, 50] (degC)" in text
    assert "metadata.operater: 'x' is not a known field" in text
    assert "metadata.cement_lot: 'a\\nb' is not in the allowed form" in text


def test_a_plan_without_metadata_still_loads() -> None:
    plan = parse_plan({**_fast_plan_dict()})
    assert plan.metadata == RunMetadata()
    assert plan.metadata.record() == {}


def _fast_plan_dict() -> dict[str, object]:
    import tomllib

    return tomllib.loads(CONTINUOUS)


def test_command_line_options_override_the_plan_field_by_field() -> None:
    base = RunMetadata(specimen="S1", operator="plan", room_temperature_c=20.0)
    merged = merge(base, _parse(["--operator", "cli", "--bath-temperature", "37", "--label", "pilot"]))
    assert merged.record() == {
        "label": "pilot",
        "specimen": "S1",
        "operator": "cli",
        "room_temperature_c": 20.0,
        "bath_temperature_c": 37.0,
    }
    assert merge(base, _parse([])) is base


def test_bad_command_line_metadata_names_the_option_value_and_range() -> None:
    with pytest.raises(ValueError, match=r"--specimen: specimen: '.*' is too long; allowed .*64"):
        merge(RunMetadata(), _parse(["--specimen", "x" * 65]))
    with pytest.raises(ValueError, match=r"--operator: operator: 'a\\x1bb' is not in the allowed form"):
        merge(RunMetadata(), _parse(["--operator", "a\x1bb"]))
    with pytest.raises(SystemExit):
        _parse(["--room-temperature", "nan"])


def test_the_folder_label_is_label_and_specimen_sanitised() -> None:
    assert folder_label(RunMetadata(label="pilot 2", specimen="L2 left/07"), "plan") == "pilot-2-L2-left-07"
    assert folder_label(RunMetadata(specimen="../../etc"), "plan") == "etc"
    assert folder_label(RunMetadata(), "L2 left") == "L2-left"
    assert folder_label(RunMetadata(specimen="Wirbel-Kör"), "p") == "Wirbel-K-r"
    assert sanitise("///") == "run"
    assert len(sanitise("a" * 200)) == 48


def test_older_recordings_read_with_empty_run_metadata(tmp_path: Path) -> None:
    with Recorder.create(tmp_path / "r", PLAN, None, extra={"port": "x"}):
        pass
    assert Recording.open(tmp_path / "r").run_metadata == {}


def test_run_records_the_metadata_and_names_the_folder_after_it(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(WITH_METADATA)
    with simulator("--pty", "--time-scale", "5") as (_proc, port):
        done = _cli(
            "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240", "--time-scale", "5",
            "--record", str(tmp_path / "rec"), "--record-tail", "0.5",
            "--operator", "A. Bench", "--label", "pilot", "--bath-temperature", "37",
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "rec").iterdir()
    assert run_dir.name.endswith("Z-pilot-L2-left-07"), run_dir.name
    rec = Recording.open(run_dir)
    assert rec.run_metadata == {
        "label": "pilot",
        "specimen": "L2 left/07",
        "operator": "A. Bench",
        "cement_product": "Osteopal V",
        "cement_lot": "8123-44",
        "mixing_time_s": 60.0,
        "room_temperature_c": 21.5,
        "bath_temperature_c": 37.0,
        "notes": "first line\nsecond line",
    }
    assert json.loads((run_dir / "meta.json").read_text())["extra"]["run_metadata"]["operator"] == "A. Bench"
    export_csv(rec, tmp_path / "s.csv", metadata_header=True)
    head = (tmp_path / "s.csv").read_text().split("\nt_s,", 1)[0]
    assert "# operator: A. Bench" in head
    assert "# notes: first line second line" in head  # one line per key, whatever the text


def test_run_refuses_bad_metadata_before_touching_the_port(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(CONTINUOUS)
    done = _cli("run", "--port", "/dev/cementguard-none", "--plan", str(plan), "--mixed-ago", "1",
                "--specimen", "")  # fmt: skip
    assert done.returncode == 2
    assert "--specimen: specimen: '' is too short" in done.stdout + done.stderr
    done = _cli("run", "--port", "/dev/cementguard-none", "--plan", str(plan), "--mixed-ago", "1",
                "--mixing-time", "-5")  # fmt: skip
    assert done.returncode == 2
    assert "--mixing-time" in done.stderr
    assert "0..3600 s" in done.stderr
