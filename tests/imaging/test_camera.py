"""Pulses on the device clock, frames with their truth beside them (never inside)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from firmware_sim.imaging.camera import FluoroCamera, PulseSchedule
from firmware_sim.imaging.fluoro import FluoroConfig
from firmware_sim.plant.spatial import SpatialVertebra


def test_pulses_come_at_the_rate_on_the_device_clock() -> None:
    s = PulseSchedule(10.0)
    assert [(p.index, p.t_us) for p in s.due(0)] == [(0, 0)]
    assert s.due(99_999) == []
    assert [(p.index, p.t_us, p.view) for p in s.due(100_000)] == [(1, 100_000, "lateral")]


def test_a_caller_that_falls_behind_gets_every_missed_pulse_once() -> None:
    s = PulseSchedule(10.0)
    assert [p.index for p in s.due(350_000)] == [0, 1, 2, 3]
    assert [p.index for p in s.due(400_000)] == [4]


def test_biplane_pulses_alternate_half_a_period_apart() -> None:
    s = PulseSchedule(10.0, ("lateral", "ap"))
    got = [(p.index, p.t_us, p.view) for p in s.due(200_000)]
    assert got == [
        (0, 0, "lateral"),
        (1, 50_000, "ap"),
        (2, 100_000, "lateral"),
        (3, 150_000, "ap"),
        (4, 200_000, "lateral"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fps": 0.5}, "fps: 0.5 is outside the range; allowed 1..30"),
        ({"fps": 10.0, "views": ()}, "views"),
        ({"fps": 10.0, "views": ("lateral", "lateral")}, "each once"),
        ({"fps": 10.0, "views": ("oblique",)}, "allowed 'lateral', 'ap' or both"),
    ],
)
def test_bad_schedules_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PulseSchedule(**kwargs)


def test_capture_renders_the_due_frames_with_their_truth(vertebra: SpatialVertebra) -> None:
    config = FluoroConfig(width_px=96, height_px=96, pixel_mm=1.0, fps=5.0, bit_depth=10)
    camera = FluoroCamera(vertebra, config, ("lateral", "ap"))
    shots = camera.capture(250_000)
    assert [(f.index, f.t_us, f.view) for f, _ in shots] == [
        (0, 0, "lateral"),
        (1, 100_000, "ap"),
        (2, 200_000, "lateral"),
    ]
    for frame, truth in shots:
        assert truth.index == frame.index
        assert truth.t_us == frame.t_us
        assert truth.view == frame.view
        assert frame.pixels.shape == (96, 96)
        assert frame.bit_depth == 10
        assert int(frame.pixels.max()) < 1024
    # the frame carries pixels and acquisition facts only: nothing of the ground truth
    names = {f.name for f in dataclasses.fields(shots[0][0])}
    assert names == {"index", "t_us", "view", "pixels", "bit_depth", "pixel_mm"}
    lateral_truth = shots[0][1]
    assert lateral_truth.posterior_quarter_col is not None
    assert lateral_truth.anterior_col is not None
    assert lateral_truth.posterior_col is not None
    assert lateral_truth.anterior_col < lateral_truth.posterior_quarter_col < lateral_truth.posterior_col
    assert shots[1][1].posterior_quarter_col is None  # AP has no antero-posterior axis
    assert np.isfinite(lateral_truth.front_ap_fraction)
