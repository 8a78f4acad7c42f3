"""Where the guard cannot see it says so at once (BLIND, with the reason) and, by default, stops a
moving plunger (IMAGE_LOST); it never asks for anything but a stop. Injected clock throughout."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.frames import FluoroFrame
from host.guard import Guard, GuardConfig
from protocol import State, StopDetail
from tests.guard.phantom import Phantom
from tests.guard.test_guard_rules import learned


def test_learning_the_baseline_is_blind_and_says_how_far_it_got() -> None:
    ph = Phantom()
    guard = Guard()
    step = guard.frame(ph.frame(), 0.0, State.IDLE)
    assert step.status.label == "BLIND(learning the baseline (1/8 frames))"
    assert step.stop is None


def test_frames_that_only_start_once_injecting_stop_it_blind() -> None:
    """No baseline before the cement: the guard cannot tell cement from bone."""
    ph = Phantom()
    guard = Guard()
    step = guard.frame(ph.frame(), 0.0, State.INJECTING)
    assert step.status.label == "BLIND(no baseline before the injection)"
    assert step.stop == StopDetail.IMAGE_LOST
    for i in range(10):  # frames with cement in them never become the baseline
        step = guard.frame(ph.frame(), 0.1 * (i + 1), State.INJECTING)
    assert guard.baseline is None
    assert step.status.label == "BLIND(no baseline before the injection)"


def test_a_frozen_image_is_blind_and_stops_while_injecting() -> None:
    ph, guard = learned()
    still = ph.pixels()
    steps = [guard.frame(ph.frame(still.copy()), 1 + i * 0.1, State.INJECTING) for i in range(3)]
    assert [s.status.state for s in steps] == ["WATCHING", "WATCHING", "BLIND"]
    assert steps[-1].status.label == "BLIND(frozen image)"
    assert steps[-1].stop == StopDetail.IMAGE_LOST


def test_a_frozen_image_while_armed_is_shown_but_does_not_stop_by_default() -> None:
    ph, guard = learned()
    still = ph.pixels()
    steps = [guard.frame(ph.frame(still.copy()), 1 + i * 0.1, State.ARMED) for i in range(3)]
    assert steps[-1].status.label == "BLIND(frozen image)"
    assert all(s.stop is None for s in steps)
    # ... until the operator starts while it is still frozen: then at once
    step = guard.frame(ph.frame(still.copy()), 2.0, State.INJECTING)
    assert step.stop == StopDetail.IMAGE_LOST


def test_policy_always_stops_armed_and_never_only_shows() -> None:
    ph, always = learned(blind_stop="always")
    black = np.zeros_like(ph.pixels())
    assert always.frame(ph.frame(black), 1.0, State.ARMED).stop == StopDetail.IMAGE_LOST
    ph, never = learned(blind_stop="never")
    step = never.frame(ph.frame(black), 1.0, State.INJECTING)
    assert step.status.label == "BLIND(black image)"
    assert step.stop is None


@pytest.mark.parametrize(("value", "label"), [(0, "BLIND(black image)"), (4095, "BLIND(saturated image)")])
def test_black_and_saturated_images(value: int, label: str) -> None:
    ph, guard = learned()
    step = guard.frame(ph.frame(np.full((256, 256), value, np.uint16)), 1.0, State.INJECTING)
    assert step.status.label == label
    assert step.stop == StopDetail.IMAGE_LOST
    # the picture comes back: watching again (the stop stays latched in the controller)
    assert guard.frame(ph.frame(), 1.1, State.STOPPED).status.label == "WATCHING"


def test_no_frame_for_longer_than_the_gap_is_blind_on_the_injected_clock() -> None:
    ph, guard = learned(max_frame_gap_s=1.0)
    guard.frame(ph.frame(), 10.0, State.INJECTING)
    assert guard.tick(10.9, State.INJECTING).status.label == "WATCHING"
    step = guard.tick(11.05, State.INJECTING)
    assert step.status.label == "BLIND(no frame for 1.1 s)"
    assert step.stop == StopDetail.IMAGE_LOST
    assert guard.tick(11.5, State.INJECTING).stop is None, "asked once"


def test_a_lost_feed_is_blind_for_good() -> None:
    ph, guard = learned()
    step = guard.lost("grabber unplugged", 1.0, State.INJECTING)
    assert step.status.label == "BLIND(feed lost: grabber unplugged)"
    assert step.stop == StopDetail.IMAGE_LOST
    assert guard.frame(ph.frame(), 1.1, State.INJECTING).status.state == "BLIND"


def test_a_moved_image_is_outline_lost_not_a_leak() -> None:
    ph, guard = learned()
    ph.bolus(0.5)
    step = guard.frame(ph.frame(np.roll(ph.pixels(), 12, axis=1)), 1.0, State.INJECTING)
    assert step.status.label.startswith("BLIND(outline lost: the image moved 3.")
    assert step.stop == StopDetail.IMAGE_LOST


@pytest.mark.parametrize(
    "bad",
    [np.zeros((128, 128), np.uint16) + 1000, (np.zeros((256, 256), np.uint8) + 100)],
    ids=["wrong size", "wrong depth"],
)
def test_frames_that_do_not_fit_mid_stream_make_it_blind_never_crash(bad: np.ndarray) -> None:
    _ph, guard = learned(bad_frames=2)
    depth = 8 if bad.dtype == np.uint8 else 12
    frames = [FluoroFrame(100 + i, 10**7 + i, "lateral", bad, depth, 0.3, "x") for i in range(2)]
    first = guard.frame(frames[0], 1.0, State.INJECTING)
    assert first.status.label == "WATCHING"
    assert first.stop is None
    second = guard.frame(frames[1], 1.1, State.INJECTING)
    assert second.status.label.startswith("BLIND(bad frames: frame ")
    assert second.stop == StopDetail.IMAGE_LOST


def test_rejected_frames_count_towards_blindness() -> None:
    _ph, guard = learned(bad_frames=2)
    assert guard.rejected("corrupt DICOM", 1.0, State.INJECTING).stop is None
    step = guard.rejected("corrupt DICOM", 1.1, State.INJECTING)
    assert step.status.label == "BLIND(bad frames: corrupt DICOM)"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("posterior_fraction", math.nan),
        ("posterior_fraction", 1.2),
        ("baseline_frames", 1),
        ("z_high", math.inf),
    ],
)
def test_config_refuses_bad_numbers_naming_them(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        GuardConfig(**{name: value})  # type: ignore[arg-type]


_IMAGE_DETAILS = {
    StopDetail.POSTERIOR_QUARTER,
    StopDetail.EXTRAVASATION,
    StopDetail.VENOUS_FILLING,
    StopDetail.IMAGE_LOST,
}
_MOVING = {None, State.ARMED, State.INJECTING, State.PAUSED}

_PH = Phantom(seed=5)
_NORMAL = [_PH.pixels() for _ in range(4)]
_PH.bolus(0.85)
_PAST = [_PH.pixels() for _ in range(2)]
_INPUTS = st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(["normal", "past", "black", "frozen", "small"])),
    st.tuples(st.just("tick"), st.floats(0.0, 5.0)),
    st.tuples(st.just("rejected"), st.just("")),
    st.tuples(st.just("lost"), st.just("")),
)


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.tuples(_INPUTS, st.sampled_from([None, *State])), min_size=1, max_size=30),
    policy=st.sampled_from(["injecting", "always", "never"]),
)
def test_the_guard_only_ever_asks_for_a_stop_and_only_where_a_stop_latches(ops: list, policy: str) -> None:  # type: ignore[type-arg]
    """Whatever it is fed, a step carries no action but a stop with an image detail, and a stop only
    while the pump can move (or its state is unknown): the guard never starts or resumes anything."""
    guard = Guard(GuardConfig(blind_stop=policy, baseline_frames=2))  # type: ignore[arg-type]
    now, index = 0.0, 0
    frozen = _NORMAL[0]
    for (kind, arg), pump in ops:
        now += 0.1
        if kind == "frame":
            index += 1
            px = {
                "normal": _NORMAL[index % 4],
                "past": _PAST[index % 2],
                "black": np.zeros_like(frozen),
                "frozen": frozen,
                "small": np.zeros((64, 64), np.uint16) + 500,
            }[arg]
            step = guard.frame(FluoroFrame(index, index * 1000, "lateral", px, 12, 0.3, "h"), now, pump)
        elif kind == "tick":
            now += arg
            step = guard.tick(now, pump)
        elif kind == "rejected":
            step = guard.rejected("bad", now, pump)
        else:
            step = guard.lost("gone", now, pump)
        if step.stop is not None:
            assert step.stop in _IMAGE_DETAILS
            assert pump in _MOVING
            if step.stop == StopDetail.IMAGE_LOST:
                assert policy != "never"
                assert pump is not None
        assert step.status.state in ("WATCHING", "BLIND", "STOPPED")
