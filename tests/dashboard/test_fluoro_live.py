"""The dashboard with `--frames` on the real simulator's frame stream: the panel shows the newest
frame and the guard's state, and a recording keeps the decimated frames and the decisions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from host.client import LinkOptions
from host.dashboard.guard_view import GuardView
from host.dashboard.model import DashboardModel
from host.dashboard.source import LiveSource
from host.dashboard.widgets.fluoro_panel import FluoroPanel
from host.frame_recording import FRAMES_DIR, FrameLog
from host.guard import GuardConfig
from host.guard.options import GuardSetup
from host.plan import load_plan
from tests.dashboard.conftest import EXAMPLE_PLAN, SIZE, NotedApp, until
from tests.support.wire_client import simulator

SPATIAL = "hil/scenarios/spatial-posterior-quarter.toml"


async def test_the_live_panel_shows_frames_and_the_recording_keeps_them(tmp_path: Path) -> None:
    sock = tmp_path / "f.sock"
    args = ("--pty", "--power-on", "now", "--scenario", SPATIAL, "--frames-out", str(sock))
    args += ("--frames-size", "128x96", "--frames-fps", "10")
    with simulator(*args) as (proc, port):
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        setup = GuardSetup(url, GuardConfig())
        source = LiveSource(port, LinkOptions(), record_tail_s=0.5, guard=setup)
        model = DashboardModel()
        model.guard = GuardView(url)
        app = NotedApp(
            source,
            plan=load_plan(EXAMPLE_PLAN),
            plan_path=EXAMPLE_PLAN,
            mixed_ago_s=240.0,
            record_root=tmp_path / "recordings",
            model=model,
        )
        async with app.run_test(size=SIZE) as pilot:
            view = model.guard
            await until(pilot, lambda: view.frame is not None, 20.0)
            panel = app.query_one(FluoroPanel)
            await until(pilot, lambda: panel._image is not None, 5.0)
            assert view.frame is not None
            assert view.frame.picture.pixels.shape == (96, 128)
            await pilot.press("r")
            await until(pilot, lambda: app.recorder is not None, 10.0)
            assert app.recorder is not None
            path = app.recorder.path
            first = view.frames
            await until(pilot, lambda: view.frames >= first + 12, 20.0)  # > 1 s at 10 frames/s
            await pilot.press("r")
            await until(pilot, lambda: app.recorder is None, 10.0)
            log_file = path / FRAMES_DIR / "guard.jsonl"
            await until(pilot, lambda: log_file.exists() and '"end"' in log_file.read_text(), 10.0)
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert any("decision" in x for x in lines)  # the guard's state changes while it learns
    log = FrameLog.open(path)
    assert log is not None
    times = sorted(f.t_us for f in log.frames)
    assert len(times) >= 2  # recorded for > 1.2 s
    assert min(np.diff(times)) >= 500_000  # at most 2 frames/s, decimated from 10
    assert log.picture(log.frames[0]).pixels.shape == (96, 128)
