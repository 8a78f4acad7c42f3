"""A HIL scenario with a frame source keeps the guard's frames in its recording, as `cementguard run`
does (decimated, bounded): `report` and `replay` on a HIL recording show the frames at each stop."""

from __future__ import annotations

from pathlib import Path

from hil.runner import RunOptions, run_scenario
from hil.scenario import load_scenario
from host.frame_recording import FRAMES_DIR, FrameLog
from host.recording import Recording
from host.report import summarize
from host.report_frames import stop_frames

SCENARIO = """
description = "the guard-feed-lost scenario, small and short: the feed is cut 1.5 s after START"
seed = 64
time_scale = 1
plan_file = "{plans}/continuous-2ml.toml"
max_duration_s = 30

[plant]
vertebra = "spatial"

[plant.spatial]
tip_depth_fraction = 0.3

[guard]
fps = 4
dose = 1000
size_px = 192
feed_lost_at_s = 1.5

[expect]
state = "STOPPED"
reason = "FLUORO_STOP"
source = "FLUORO_IMAGE"
image_rule = "IMAGE_LOST"
"""


PLANS = Path(__file__).resolve().parents[2] / "plans"


async def test_a_guard_scenarios_recording_keeps_its_frames_for_the_report(tmp_path: Path) -> None:
    path = tmp_path / "feed-cut.toml"
    path.write_text(SCENARIO.format(plans=PLANS))
    outcome = await run_scenario(load_scenario(path), path, RunOptions(report_dir=tmp_path / "out"))
    assert outcome.status == "passed", outcome.message
    recording = Path(outcome.recording)
    log = FrameLog.open(recording)
    assert log is not None, "the recording has frames/"
    assert log.frames, "frames were kept"
    assert any(d.get("stop") == "IMAGE_LOST" for d in log.decisions)
    span_s = ((log.frames[-1].device_t_us or 0) - (log.frames[0].device_t_us or 0)) / 1e6
    assert len(log.frames) <= 2 * span_s + 1 + 4 * 2 + 1  # 2/s, and the 2 s of 4/s before the stop
    assert (
        (recording / FRAMES_DIR / "guard.jsonl").read_text().rstrip().endswith("}}")
    )  # closed: the end line
    rec = Recording.open(recording)
    frames, problem = stop_frames(recording, summarize(rec).stops)
    assert problem is None
    assert frames, "the report shows the frame at the stop"
    assert frames[0].reason == "FLUORO_STOP"
