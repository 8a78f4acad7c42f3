"""Replay shows the guard's frame at the replay's time, with its state then (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from host.dashboard.app import DashboardApp
from host.dashboard.model import DashboardModel
from host.dashboard.replay import ReplaySource
from host.dashboard.widgets.banner import banner_text
from host.dashboard.widgets.fluoro_panel import FluoroPanel
from host.fluoro_overlay import FluoroPicture
from host.frame_recording import FRAMES_DIR, FrameRecorder
from host.frames import FluoroFrame
from host.guard.region import BodyRegion
from host.recording import Recording
from tests.dashboard.conftest import SIZE
from tests.dashboard.test_plan_and_replay import make_recording

REGION = BodyRegion.rectangle(20, 20, 100, 100)


def add_frames(path: Path) -> None:
    """One frame a second from 50 s to 70 s of controller time; the guard stops on the one at 65 s."""
    rec = FrameRecorder(path, max_fps=1.0, around_stop_s=0.0, queue_size=100)
    for i, t_s in enumerate(range(50, 71), start=1):
        px = np.full((128, 128), 1000 + 100 * i, np.uint16)
        frame = FluoroFrame(i, t_s * 1_000_000, "lateral", px, 12, 0.3, "sim:///tmp/f.sock")
        stop = "POSTERIOR_QUARTER" if t_s == 65 else None
        label = "WATCHING" if t_s < 65 else "STOPPED(POSTERIOR_QUARTER)"
        rec.offer(frame, FluoroPicture(px, 12, REGION, 0.75, 60.0), label, stop)
    assert rec.close() is None


async def test_replay_shows_the_frame_at_the_time_and_the_guards_state_then(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "rec")
    add_frames(path)
    source = ReplaySource(Recording.open(path), playing=False)
    model = DashboardModel()
    source.attach_guard(model)
    assert model.guard is not None
    app = DashboardApp(source, model=model)
    async with app.run_test(size=SIZE) as pilot:
        view = model.guard
        assert view.frame is not None
        assert view.frame.index == 1  # position 0 = 50 s: the first frame
        source.seek_to(12.4)  # 62.4 s
        assert view.frame is not None
        assert view.frame.index == 13  # the frame of 62 s
        assert view.label == "WATCHING"
        assert view.frame.picture.pixels.shape == (128, 128)
        source.seek_to(15.5)  # 65.5 s: the stop's frame
        assert view.frame is not None
        assert view.frame.index == 16
        assert view.label == "STOPPED(POSTERIOR_QUARTER)"
        assert "fluoroscopic guard: STOPPED(POSTERIOR_QUARTER)" in banner_text(model)[2]
        app.refresh_view()
        await pilot.pause()
        assert app.query_one(FluoroPanel)._image is not None


def test_a_recording_without_frames_replays_without_the_panel(tmp_path: Path) -> None:
    source = ReplaySource(Recording.open(make_recording(tmp_path / "rec")), playing=False)
    model = DashboardModel()
    source.attach_guard(model)
    assert model.guard is None


def test_an_unreadable_frame_log_is_said_not_a_crash(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "rec")
    (path / FRAMES_DIR).mkdir()
    (path / FRAMES_DIR / "guard.jsonl").mkdir()  # not a regular file
    source = ReplaySource(Recording.open(path), playing=False)
    model = DashboardModel()
    source.attach_guard(model)
    assert model.guard is not None
    assert model.guard.problem is not None
    assert "guard.jsonl" in model.guard.problem


async def test_replay_of_a_biplane_recording_shows_each_view_with_its_mask(tmp_path: Path) -> None:
    from tests.host.test_report_frames import add_biplane_frames

    path = make_recording(tmp_path / "rec")
    add_biplane_frames(path)
    source = ReplaySource(Recording.open(path), playing=False)
    model = DashboardModel()
    source.attach_guard(model)
    view = model.guard
    assert view is not None
    assert view.views == ["lateral", "ap"]
    app = DashboardApp(source, model=model)
    async with app.run_test(size=SIZE):
        source.seek_to(14.7)  # 64.7 s: the lateral frame of 64 s, the AP one of 64.5 s (the guard's stop)
        lateral, ap = view.latest["lateral"], view.latest["ap"]
        assert (lateral.index, ap.index) == (14, 14)
        assert ap.picture.mask is not None
        assert ap.picture.evidence is not None
        assert ap.picture.evidence[4:12, 60:68].all()
        assert int(ap.picture.evidence.sum()) == 64
        assert lateral.picture.mask is None
        assert view.label == "STOPPED(EXTRAVASATION)"
        assert view.view_labels == {"lateral": "WATCHING", "ap": "STOPPED(EXTRAVASATION)"}
        source.seek_to(5.2)  # back to 55.2 s: no mask, both watching
        assert view.latest["ap"].picture.mask is None
        assert view.view_labels["ap"] == "WATCHING"
