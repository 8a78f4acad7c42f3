"""The guard's rules on frames with known truth (tests/guard/phantom.py): each rule stops at its edge
and not before, at low and high dose; the nominal bolus never stops it."""

from __future__ import annotations

import numpy as np
import pytest

from host.guard import BodyRegion, Guard, GuardConfig
from protocol import State, StopDetail
from tests.guard.phantom import BODY, Phantom

DOSES = [300.0, 4000.0]  # photons per pixel through soft tissue: noisy and clean


def learned(seed: int = 1, photons: float = 4000.0, **config: object) -> tuple[Phantom, Guard]:
    ph = Phantom(seed=seed, photons=photons)
    guard = Guard(GuardConfig(**config))  # type: ignore[arg-type]
    for i in range(guard.config.baseline_frames):
        step = guard.frame(ph.frame(), i * 0.1, State.ARMED)
    assert step.status.label == "WATCHING"
    return ph, guard


def feed(ph: Phantom, guard: Guard, n: int, pump: State = State.INJECTING) -> list:  # type: ignore[type-arg]
    return [guard.frame(ph.frame(), 1.0 + i * 0.1, pump) for i in range(n)]


def test_the_auto_outline_finds_the_body() -> None:
    _ph, guard = learned()
    region = guard.region
    assert region is not None
    x0, y0, x1, y1 = BODY
    assert abs(region.left - x0) <= 2
    assert abs(region.right - (x1 - 1)) <= 2
    assert abs(region.top - y0) <= 2
    assert abs(region.bottom - (y1 - 1)) <= 2


@pytest.mark.parametrize("photons", DOSES)
@pytest.mark.parametrize("front", [0.3, 0.6, 0.7])
def test_a_front_short_of_the_posterior_quarter_never_stops(photons: float, front: float) -> None:
    ph, guard = learned(photons=photons)
    ph.bolus(front)
    steps = feed(ph, guard, 6)
    assert all(s.stop is None for s in steps)
    assert steps[-1].status.label == "WATCHING"
    assert steps[-1].measures.front_fraction == pytest.approx(front, abs=0.03)


@pytest.mark.parametrize("photons", DOSES)
def test_the_front_past_the_posterior_quarter_stops_after_the_confirmation(photons: float) -> None:
    ph, guard = learned(photons=photons)
    ph.bolus(0.8)
    first, second, third = feed(ph, guard, 3)
    assert first.stop is None, "one frame is not yet confirmed"
    assert second.stop == StopDetail.POSTERIOR_QUARTER
    assert second.status.label == "STOPPED(POSTERIOR_QUARTER)"
    assert third.stop is None, "asked once per pump state"


def test_the_posterior_fraction_is_a_parameter() -> None:
    ph, guard = learned(posterior_fraction=0.6)
    ph.bolus(0.7)
    assert any(s.stop == StopDetail.POSTERIOR_QUARTER for s in feed(ph, guard, 3))


def test_the_posterior_side_follows_the_region() -> None:
    """The same image mirrored, with the operator saying the posterior wall is on the left."""
    ph = Phantom(seed=2)
    x0, y0, x1, y1 = BODY
    region = BodyRegion.rectangle(255 - (x1 - 1), y0, 255 - x0, y1 - 1, posterior="left")
    guard = Guard(GuardConfig(posterior="left"), region)
    for i in range(8):
        guard.frame(ph.frame(np.fliplr(ph.pixels())), i * 0.1, State.ARMED)
    ph.bolus(0.8)
    steps = [guard.frame(ph.frame(np.fliplr(ph.pixels())), 1 + i * 0.1, State.INJECTING) for i in range(2)]
    assert steps[-1].stop == StopDetail.POSTERIOR_QUARTER
    assert steps[-1].measures.front_fraction == pytest.approx(0.8, abs=0.03)


def test_the_ap_view_has_no_posterior_quarter() -> None:
    ph, guard = learned()
    ph.bolus(0.9)
    steps = [guard.frame(ph.frame(view="ap"), 1 + i * 0.1, State.INJECTING) for i in range(4)]
    assert all(s.stop is None for s in steps)


@pytest.mark.parametrize("photons", DOSES)
def test_a_thin_opacity_that_appears_at_once_is_not_a_filling_vein(photons: float) -> None:
    """A line through the superior end plate, there in one frame and then unchanged: one frame's thin
    shape is not a vein filling (the VENOUS rule asks for growth, tests/guard/test_guard_venous.py);
    it is cement outside the body all the same, and stops as EXTRAVASATION."""
    ph, guard = learned(photons=photons)
    ph.bolus(0.5)
    assert all(s.stop is None for s in feed(ph, guard, 3))
    ph.vein(110, 110, 150, 60, width_px=4)
    steps = feed(ph, guard, 40)
    assert [s.stop for s in steps if s.stop] == [StopDetail.EXTRAVASATION]


def test_cement_through_the_cortex_stops_as_extravasation() -> None:
    ph, guard = learned()
    ph.bolus(0.5)
    ph.blob(120, 70, 8)  # a round blob above the superior endplate: outside, not vein-like
    steps = feed(ph, guard, 3)
    assert [s.stop for s in steps if s.stop] == [StopDetail.EXTRAVASATION]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("photons", DOSES)
def test_no_false_stop_on_a_growing_nominal_bolus(seed: int, photons: float) -> None:
    ph, guard = learned(seed=seed, photons=photons)
    for i, front in enumerate(np.linspace(0.15, 0.68, 12)):
        ph.bolus(float(front))
        step = guard.frame(ph.frame(), 2 + i * 0.1, State.INJECTING)
        assert step.stop is None, (front, step.status, step.measures)
        assert step.status.label == "WATCHING"


def test_a_disabled_rule_does_not_stop() -> None:
    ph, guard = learned(rules=frozenset({"extravasation", "venous"}))
    ph.bolus(0.9)
    assert all(s.stop is None for s in feed(ph, guard, 3))
