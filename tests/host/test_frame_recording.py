"""The guard's frames in a recording: decimation, every frame around a stop, the size cap, read back
by time (issue 15, "Where people see it")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from host.fluoro_overlay import FluoroPicture
from host.frame_recording import FRAMES_DIR, FrameLog, FrameRecorder
from host.frames import FluoroFrame
from host.guard.region import BodyRegion

REGION = BodyRegion.rectangle(20, 20, 100, 100)
FPS = 30


def frame(i: int, size: int = 128, source: str = "sim://test") -> FluoroFrame:
    px = np.random.default_rng(i).integers(0, 4095, (size, size), dtype=np.uint16)
    return FluoroFrame(i, round(i * 1e6 / FPS), "lateral", px, 12, 0.3, source)


def feed(rec: FrameRecorder, n: int, stop_at: int | None = None) -> None:
    for i in range(1, n + 1):
        f = frame(i)
        pic = FluoroPicture(f.pixels, 12, REGION, 0.75, 60.0 + i * 0.1)
        stop = "POSTERIOR_QUARTER" if i == stop_at else None
        rec.offer(f, pic, "STOPPED(POSTERIOR_QUARTER)" if stop else "WATCHING", stop)
        if stop:
            rec.decision(f.t_us, i, "STOPPED", "STOPPED(POSTERIOR_QUARTER)", stop)
    assert rec.close() is None


def test_at_most_two_frames_a_second_without_a_stop(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, max_fps=2.0, queue_size=1000)
    feed(rec, 10 * FPS)  # 10 s at 30 frames/s
    log = FrameLog.open(tmp_path)
    assert log is not None
    times = [f.t_us for f in log.frames]
    assert len(times) == 20
    assert min(np.diff(times)) >= 500_000
    assert len(list((tmp_path / FRAMES_DIR).glob("*.png"))) == 20


def test_every_frame_around_a_stop_is_kept(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, max_fps=2.0, around_stop_s=1.0, queue_size=1000)
    feed(rec, 10 * FPS, stop_at=5 * FPS)
    log = FrameLog.open(tmp_path)
    assert log is not None
    kept = {f.index for f in log.frames}
    assert set(range(4 * FPS, 6 * FPS + 1)) <= kept  # 1 s before to 1 s after, every frame
    assert [f.index for f in log.stops()] == [5 * FPS]
    assert log.decisions[0]["stop"] == "POSTERIOR_QUARTER"
    assert log.decisions[0]["frame"] == 5 * FPS


def test_the_cap_bounds_the_frames_and_says_so_and_the_decisions_go_on(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, max_fps=30.0, cap_bytes=200_000, queue_size=1000)
    feed(rec, 60, stop_at=50)
    pngs = list((tmp_path / FRAMES_DIR).glob("*.png"))
    assert 0 < sum(p.stat().st_size for p in pngs) <= 200_000
    assert rec.capped
    lines = [json.loads(x) for x in (tmp_path / FRAMES_DIR / "guard.jsonl").read_text().splitlines()]
    assert any("cap_reached" in x for x in lines)
    assert any("decision" in x for x in lines)  # after the cap, still recorded


def test_a_writer_that_is_behind_drops_frames_never_waits(tmp_path: Path) -> None:
    import threading

    rec = FrameRecorder(tmp_path, max_fps=30.0, queue_size=4)
    gate = threading.Event()
    write = rec._frame

    def stalled(*args: object) -> None:  # a disk that does not answer
        gate.wait(10.0)
        write(*args)  # type: ignore[arg-type]

    rec._frame = stalled  # type: ignore[method-assign]
    for i in range(1, 200):
        f = frame(i)
        rec.offer(f, FluoroPicture(f.pixels, 12), "WATCHING")
        rec.decision(f.t_us, i, "WATCHING", "WATCHING", None)
    # nothing waited for the stalled writer: 4 queued (+ the one it holds), every other frame dropped
    assert 194 <= rec.dropped <= 195
    gate.set()
    assert rec.close() is None
    log = FrameLog.open(tmp_path)
    assert log is not None
    assert len(log.frames) + rec.dropped == 199
    assert len(log.decisions) == 199  # decisions are small: all kept


def test_the_frame_at_a_time_and_its_overlay_come_back(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, max_fps=2.0, queue_size=1000)
    feed(rec, 3 * FPS)
    log = FrameLog.open(tmp_path)
    assert log is not None
    at = log.at(1_200_000)
    assert at is not None
    assert at.index == 31  # kept: frames 1, 16, 31 (every 0.5 s from the first); 31 is at 1.033 s
    assert log.at(-1) is None
    pic = log.picture(at)
    assert pic.pixels.shape == (128, 128)
    assert pic.region == REGION
    assert pic.front_x == pytest.approx(60.0 + at.index * 0.1)


def test_a_file_name_outside_frames_is_refused(tmp_path: Path) -> None:
    (tmp_path / FRAMES_DIR).mkdir()
    line = {"frame": {"index": 1, "t_us": 0, "file": "../meta.json", "label": "WATCHING"}}
    (tmp_path / FRAMES_DIR / "guard.jsonl").write_text(json.dumps(line) + "\n")
    log = FrameLog.open(tmp_path)
    assert log is not None
    assert log.frames == []
    assert FrameLog.open(tmp_path / "nothing") is None


def test_a_real_sources_frames_are_placed_on_the_controllers_clock(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, max_fps=30.0, queue_size=1000)
    for i in range(1, 4):
        f = frame(i, source="/dev/video0")  # stamped by the host's clock: not the recording's axis
        rec.offer(f, FluoroPicture(f.pixels, 12), "WATCHING", device_t_us=None if i == 1 else 50_000_000 + i)
    assert rec.close() is None
    log = FrameLog.open(tmp_path)
    assert log is not None
    assert log.unplaced == 1  # judged before any telemetry: kept, but not on the time axis
    at = log.at(50_000_002)
    assert at is not None
    assert at.index == 2
    assert log.at(round(3e6 / FPS)) is None  # its own stamp means nothing on the recording's axis


def test_a_stop_without_a_frame_keeps_the_seconds_before_it(tmp_path: Path) -> None:
    """The feed lost (or silent) while injecting: the guard's stop has no frame of its own; the last
    pictures it had are what an engineer looks at, so they are kept as around a frame's stop."""
    rec = FrameRecorder(tmp_path, max_fps=2.0, around_stop_s=1.0, queue_size=1000)
    for i in range(1, 3 * FPS + 1):
        f = frame(i)
        rec.offer(f, FluoroPicture(f.pixels, 12, REGION, 0.75, None), "WATCHING")
    rec.decision(None, None, "BLIND", "BLIND(feed lost: unplugged)", "IMAGE_LOST")
    assert rec.close() is None
    log = FrameLog.open(tmp_path)
    assert log is not None
    assert set(range(2 * FPS, 3 * FPS + 1)) <= {f.index for f in log.frames}  # the last second, every frame


def test_masks_and_evidence_are_kept_beside_the_frames_and_a_bad_mask_is_left_out(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, max_fps=2.0, queue_size=1000)
    mask = np.zeros((128, 128), bool)
    mask[40:60, 40:60] = True
    mask[5:9, 50:54] = True
    evidence = np.zeros_like(mask)
    evidence[5:9, 50:54] = True
    for i, view in ((1, "lateral"), (1, "ap"), (40, "lateral")):
        f = frame(i)
        f = FluoroFrame(f.index, f.t_us, view, f.pixels, 12, 0.3, f.source)
        with_mask = i == 1
        pic = FluoroPicture(f.pixels, 12, REGION, 0.75, None, mask if with_mask else None, evidence)
        rec.offer(f, pic, "WATCHING")
    assert rec.close() is None
    log = FrameLog.open(tmp_path)
    assert log is not None
    files = sorted(p.name for p in (tmp_path / FRAMES_DIR).glob("*.png"))
    assert files == [
        "00000001-ap-mask.png",
        "00000001-ap.png",
        "00000001-mask.png",
        "00000001.png",
        "00000040.png",
    ]
    first, ap = log.at(100_000, "lateral"), log.at(100_000, "ap")
    assert first is not None
    assert ap is not None
    assert ap.view == "ap"
    pic = log.picture(ap)
    assert pic.mask is not None
    assert np.array_equal(pic.mask, mask)
    assert pic.evidence is not None
    assert np.array_equal(pic.evidence, evidence)
    later = log.at(2_000_000, "lateral")
    assert later is not None
    assert log.picture(later).mask is None  # no cement seen: no mask file
    (tmp_path / FRAMES_DIR / "00000001-mask.png").write_bytes(b"not a png")
    broken = log.picture(first)
    assert broken.mask is None  # said in the log, the frame still shown
    assert broken.pixels.shape == (128, 128)
