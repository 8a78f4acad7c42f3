"""HIL scenarios with the fluoroscopic guard: the `[guard]` table is checked like every other, the
simulator gets its frame options, and the frame truth gives the onsets the guard is judged from."""

from __future__ import annotations

import json
from pathlib import Path

from hil.guard import FramePaths, simulator_args, truth_onsets
from hil.scenario import load_scenario
from tests.hil.test_scenario import problems, scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "hil" / "scenarios"


def test_a_guard_needs_the_spatial_body_and_an_image_rule_needs_a_guard() -> None:
    assert any(
        "guard" in p and 'plant.vertebra = "spatial"' in p for p in problems(scenario(guard={"fps": 5}))
    )
    said = problems(scenario(expect={"state": "DONE", "image_rule": "VENOUS_FILLING"}))
    assert any("expect.image_rule" in p and "[guard]" in p for p in said)


def test_guard_values_out_of_range_name_the_field() -> None:
    data = scenario(guard={"fps": 100}, plant={"vertebra": "spatial"})
    assert any("guard.fps" in p for p in problems(data))


def test_the_simulator_is_told_where_to_publish_and_what(tmp_path: Path) -> None:
    s = load_scenario(SCENARIOS / "guard-feed-lost.toml")
    assert s.guard is not None
    paths = FramePaths(tmp_path)
    try:
        args = simulator_args(s.guard, paths)
        assert args[args.index("--frames-out") + 1] == paths.socket
        assert args[args.index("--frames-size") + 1] == "512x512"
        assert len(paths.socket) < 100, "a Unix socket path must stay short"
        assert args[args.index("--frames-view") + 1] == "lateral"
        biplane = load_scenario(SCENARIOS / "guard-venous-runny.toml").guard
        assert biplane is not None
        assert simulator_args(biplane, paths)[args.index("--frames-view") + 1] == "both"
    finally:
        paths.cleanup()


def test_truth_onsets_are_the_first_crossing_and_each_leaks_first_cement(tmp_path: Path) -> None:
    rows = [
        {"posterior_quarter_t_us": None, "leak_onset_t_us": {}},
        {"posterior_quarter_t_us": None, "leak_onset_t_us": {"cortical_anterior": 3_100_000}},
        {"posterior_quarter_t_us": 4_250_000, "leak_onset_t_us": {"cortical_anterior": 3_100_000}},
    ]
    path = tmp_path / "truth.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert truth_onsets(path) == [(3.1, "truth_leak_cortical_anterior"), (4.25, "truth_posterior_quarter")]
    assert truth_onsets(tmp_path / "missing.jsonl") == []
