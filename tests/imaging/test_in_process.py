"""The in-process path (hil/frames.py): a virtual rig injecting into the spatial body, its frames on
the device clock in a host frame source, the truth beside them."""

from __future__ import annotations

import itertools

import pytest

from firmware_sim.imaging.fluoro import FluoroConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from hil.frames import InProcessFrames
from host.frames import FrameSourceLost
from protocol import Ack


def test_a_virtual_injection_is_seen_frame_by_frame_with_its_truth() -> None:
    rig = VirtualRig(PlantConfig(vertebra="spatial", sensor_noise_kpa=0.0))
    frames = InProcessFrames(rig.plant, FluoroConfig(width_px=96, height_px=96, pixel_mm=1.0, fps=2.0))
    rig.connect()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    seen = []
    for _ in range(12):  # 12 s of injection at 3 mL/min
        rig.run(1.0)
        frames.tick(rig.now_us)
        while (frame := frames.source.read(0.0)) is not None:
            seen.append(frame)
    assert len(seen) >= 23
    assert all(b.t_us - a.t_us == 500_000 for a, b in itertools.pairwise(seen))
    first, last = frames.truth[seen[0].index], frames.truth[seen[-1].index]
    assert first.cement_volume_ml < last.cement_volume_ml
    assert last.front_ap_fraction > 0
    # the cement shows: the last frame is darker inside the body than the first
    left, top, right, bottom = (round(v) for v in last.body_box_px)
    inside = (slice(top, bottom), slice(left, right))
    assert seen[-1].pixels[inside].mean() < seen[0].pixels[inside].mean()


def test_a_lost_in_process_feed_is_reported() -> None:
    rig = VirtualRig(PlantConfig(vertebra="spatial"))
    frames = InProcessFrames(rig.plant, FluoroConfig(width_px=64, height_px=64, pixel_mm=1.0))
    frames.tick(0)
    frames.lose("grabber unplugged")
    assert frames.source.read(0.0) is not None
    with pytest.raises(FrameSourceLost, match="grabber unplugged"):
        frames.source.read(0.0)


def test_in_process_frames_need_the_spatial_body() -> None:
    with pytest.raises(ValueError, match="need the spatial vertebra"):
        InProcessFrames(VirtualRig(PlantConfig()).plant)
