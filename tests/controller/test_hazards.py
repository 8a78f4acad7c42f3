"""The hazard table in closed loop: each detector stops the fake plant's fault, and nominal noisy
runs never stop falsely."""

from __future__ import annotations

import pytest

from firmware_sim.controller import ControllerConfig
from firmware_sim.hal import REFERENCE_RIG
from protocol import (
    Ack,
    AlarmCode,
    Clear,
    Event,
    EventKind,
    Flags,
    Nak,
    NakCode,
    PlanFlags,
    Start,
    State,
    Stop,
    StopDetail,
    StopReason,
    StopSource,
)
from tests.controller.fakeplant import FakePlant
from tests.controller.harness import Rig, arm_msg, nominal_run, started, with_config


def stop_after(rig: Rig, fault: str, value: object = True, seconds: float = 3.0) -> float:
    """Inject a plant fault, run until STOPPED; seconds from the fault to the stop."""
    setattr(rig.plant, fault, value)
    t0 = rig.now_us
    rig.run_until_state(State.STOPPED, seconds=seconds)
    return (rig.now_us - t0) / 1e6


# -- PRESSURE_RISE vs a plain threshold ------------------------------------------------------------
@pytest.mark.parametrize("flow_nl_s", [100_000, 30_000])
def test_occlusion_detected_in_under_0_3x_of_a_plain_threshold(flow_nl_s: int) -> None:
    times = {}
    for name, config in (
        ("rise", ControllerConfig()),
        ("plain", with_config(rise_enabled=False, throttle_enabled=False)),
    ):
        rig = started(config=config, plant=FakePlant(seed=11), seconds=3.0, flow_nl_s=flow_nl_s)
        assert rig.c.state == State.INJECTING
        times[name] = stop_after(rig, "occluded", seconds=10.0)
        expected = StopReason.PRESSURE_RISE if name == "rise" else StopReason.OVERPRESSURE
        assert rig.c.stop_reason == expected
    assert times["rise"] <= 0.3 * times["plain"], times
    assert times["rise"] <= 0.06


def test_a_blocked_line_held_at_the_ceiling_stops_after_the_no_flow_time() -> None:
    config = with_config(rise_enabled=False, ceiling_stall_ms=2000)
    rig = started(config=config, plant=FakePlant(seed=3), seconds=3.0)
    elapsed = stop_after(rig, "occluded", seconds=10.0)
    (stop,) = rig.stops()
    assert (stop.reason, stop.detail) == (StopReason.PRESSURE_RISE, StopDetail.NO_FLOW_AT_CEILING)
    assert stop.pressure_pa < config.default_soft_limit_pa * 1.05
    assert 2.0 <= elapsed <= 4.0, "throttle engages, then 2 s of no flow"


def test_throttled_but_flowing_is_not_a_stop() -> None:
    """A stiff line the throttle holds at the ceiling while it still delivers keeps injecting."""
    rig = started(config=with_config(rise_enabled=False, ceiling_stall_ms=1000), seconds=2.0)
    rig.plant.viscosity_pas *= 4.0  # steady flow at the plan rate would need about 4x the pressure
    rig.run(6.0)
    assert rig.c.state == State.INJECTING, rig.c.stop_reason
    assert rig.c.flags & Flags.THROTTLING


def test_pressure_loss_on_disconnection() -> None:
    rig = started(seconds=2.0)
    elapsed = stop_after(rig, "leak_factor", 500.0)
    assert rig.c.stop_reason == StopReason.PRESSURE_LOSS
    assert elapsed < 0.05


# -- SENSOR_FAULT ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["open_loop", "shorted_loop"])
def test_dead_sensor_stops_at_once_and_is_never_read_as_zero(fault: str) -> None:
    rig = started(seconds=2.0)
    pressure = rig.c.pressure_pa
    elapsed = stop_after(rig, fault)
    assert rig.c.stop_reason == StopReason.SENSOR_FAULT
    assert elapsed <= 0.004
    (stop,) = rig.stops()
    assert stop.pressure_pa == pytest.approx(pressure, rel=0.05), "the last valid pressure, not 0 kPa"
    rig.run(0.1)
    last = rig.batches[-1].samples[-1]
    assert last["flags"] & Flags.SENSOR_FAULT
    assert last["pressure_pa"] > 1_000_000


def test_stuck_sensor_stops() -> None:
    rig = started(seconds=2.0)
    elapsed = stop_after(rig, "stuck_adc", rig.plant.sense().pressure_adc)
    assert rig.c.stop_reason == StopReason.SENSOR_FAULT
    # the budget's run at the specified noise: 7 identical readings, the first the last live one
    assert 0.005 <= elapsed <= 0.008


def test_implausibly_noisy_sensor_raises_suspect_then_stops() -> None:
    rig = started(seconds=2.0)
    stop_after(rig, "extra_noise_pa", 300_000.0)
    assert rig.c.stop_reason == StopReason.SENSOR_FAULT
    suspect = [e for e in rig.events if e.alarm == AlarmCode.SENSOR_SUSPECT and e.kind == EventKind.ALARM]
    assert suspect
    assert suspect[0].t_us < rig.stops()[0].t_us


BURST_PA = 2_000_000.0
"""A 2 MPa noise burst (a loose connector, EMI): the hil scenario sensor-noise-burst-injecting."""
MONITOR_ONLY = {"rise_enabled": False, "loss_enabled": False}
"""Only the sensor monitor can stop the burst: the reference for the SENSOR_FAULT path."""


def burst(seed: int, **config: object) -> tuple[Rig, float, list[Event]]:
    """A noise burst 2 s into a relief plan, run to the stop and 0.5 s on: the rig, seconds from the
    burst to the stop, and the events from the burst on."""
    rig = started(
        config=with_config(**config), plant=FakePlant(seed=seed), seconds=2.0, plan_flags=PlanFlags.RELIEF
    )
    first = len(rig.events)
    elapsed = stop_after(rig, "extra_noise_pa", BURST_PA, seconds=0.5)
    rig.run(0.5)
    return rig, elapsed, rig.events[first:]


def test_noise_burst_while_injecting_is_a_sensor_fault_every_time() -> None:
    """The burst throws the 100 ms slope past PRESSURE_RISE (or PRESSURE_LOSS) often before the
    noise check latches: a slope made of noise is not an occlusion, the stop is SENSOR_FAULT."""
    slope_first = 0
    for seed in range(12):
        rig, elapsed, _ = burst(seed)
        _, monitor_elapsed, _ = burst(seed, **MONITOR_ONLY)
        (stop,) = rig.stops()
        assert (stop.reason, stop.source) == (StopReason.SENSOR_FAULT, StopSource.CONTROLLER), seed
        assert elapsed <= monitor_elapsed, seed
        slope_first += elapsed < monitor_elapsed
    assert slope_first >= 3, "a slope detector saw the burst first in several seeds: the rule was used"


def test_noise_burst_sensor_fault_ends_as_the_monitors_own() -> None:
    """Through the slope detectors or the monitor: same state, flag, events, blind relief, and CLEAR
    refused while the sensor is noisy, accepted once it has been quiet for `sensor_clear_samples`."""
    seed = next(s for s in range(12) if burst(s)[1] < burst(s, **MONITOR_ONLY)[1])
    ends = []
    for config in ({}, MONITOR_ONLY):
        rig, _, events = burst(seed, **config)
        assert rig.c.state == State.STOPPED
        assert rig.c.flags & Flags.SENSOR_FAULT
        (relief,) = [e.detail for e in events if e.kind == EventKind.RELIEF_DONE]
        assert relief == pytest.approx(rig.c.config.relief_blind_m * 1e6, abs=250), "blind back-off"
        nak, _ = rig.command(Clear)
        assert isinstance(nak, Nak)
        assert nak.code == NakCode.SENSOR_FAULT
        rig.plant.extra_noise_pa = 0.0
        rig.run(1.0)  # the noise mean decays (IIR, 64 samples), then 100 good samples
        ack, _ = rig.command(Clear)
        assert isinstance(ack, Ack)
        assert rig.c.state == State.IDLE
        ends.append([(e.kind, e.state, e.reason, e.alarm) for e in events])
    assert ends[0] == ends[1]


@pytest.mark.parametrize("noise_pa", [10_000.0, 20_000.0], ids=["1x noise", "2x noise"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_occlusion_with_specified_or_twice_the_noise_stays_pressure_rise(noise_pa: float, seed: int) -> None:
    rig = started(plant=FakePlant(seed=seed, noise_pa=noise_pa), seconds=3.0)
    stop_after(rig, "occluded")
    (stop,) = rig.stops()
    assert stop.reason == StopReason.PRESSURE_RISE
    assert AlarmCode.SENSOR_SUSPECT not in [e.alarm for e in rig.events]
    assert not rig.c.flags & Flags.SENSOR_FAULT


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_disconnection_stays_pressure_loss_though_its_fall_looks_noisy(seed: int) -> None:
    """At twice the specified noise a disconnection's own fall (steps of ~1 MPa per sample) lifts
    the sensor's noise mean past the suspect level by itself: that is why the noise rule is
    PRESSURE_RISE's only, and PRESSURE_LOSS keeps its reason."""
    rig = started(plant=FakePlant(seed=seed, noise_pa=20_000.0), seconds=2.0)
    stop_after(rig, "leak_factor", 500.0)
    assert rig.c.stop_reason == StopReason.PRESSURE_LOSS
    assert AlarmCode.SENSOR_SUSPECT in [e.alarm for e in rig.events], "the fall did look noisy"
    assert not rig.c.flags & Flags.SENSOR_FAULT


def test_sensor_fault_in_idle_is_a_fault_state() -> None:
    rig = Rig()
    rig.hello()
    rig.plant.open_loop = True
    rig.run_until_state(State.FAULT)
    assert rig.c.stop_reason == StopReason.SENSOR_FAULT


# -- mechanics ------------------------------------------------------------------------------------------
def test_motor_stall_stops() -> None:
    rig = started(seconds=1.0)
    elapsed = stop_after(rig, "stalled")
    assert rig.c.stop_reason == StopReason.MOTOR_STALL
    assert elapsed < 0.08
    flags = [int(f) for b in rig.batches for f in b.samples["flags"]]
    assert any(f & Flags.STALL_SUSPECT for f in flags)


def test_a_plan_of_the_whole_stroke_left_comes_to_rest_on_the_usable_end_never_past_it() -> None:
    """ARM takes only plans that fit the stroke left, so the volume limit, not END_OF_TRAVEL, ends a
    plan of all of it: at rest on the usable end (`travel_um`), with the flag END_OF_TRAVEL set."""
    plant = FakePlant(position_m=REFERENCE_RIG.travel_m - 3e-3)
    rig = Rig(plant=plant)
    rig.hello()
    answer, _ = rig.command(lambda i: arm_msg(i, volume_limit_nl=2_000_000))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field) == (NakCode.BAD_PARAM, 5)
    rig.arm(volume_limit_nl=answer.detail, flow_nl_s=160_000)
    rig.ok(Start)
    rig.run_until_state(State.DONE)
    rig.run(0.2)
    end_m = REFERENCE_RIG.travel_m - ControllerConfig().travel_margin_m
    assert end_m <= plant.max_position_m < end_m + 10e-6
    assert rig.c.flags & Flags.END_OF_TRAVEL


def test_end_of_travel_switch_stops_at_once() -> None:
    rig = started(seconds=0.5)
    assert stop_after(rig, "end_switch_stuck") <= 0.001
    assert rig.c.stop_reason == StopReason.END_OF_TRAVEL


# -- cement --------------------------------------------------------------------------------------------
def test_working_time_warning_then_stop() -> None:
    rig = started(mixed_ago_ms=7_000, working_time_ms=10_000, volume_limit_nl=2_000_000)
    rig.run_until_state(State.STOPPED, seconds=4.0)
    assert rig.c.stop_reason == StopReason.WORKING_TIME
    (warning,) = [e for e in rig.events if e.alarm == AlarmCode.WORKING_TIME_WARNING]
    assert warning.t_us == pytest.approx(1_000_000, abs=15_000)
    assert warning.detail == pytest.approx(2_000, abs=15)
    assert rig.now_us == pytest.approx(3_000_000, abs=15_000)


@pytest.mark.parametrize(
    ("window", "alarm"),
    [((1.0, 90.0), AlarmCode.VISCOSITY_HIGH), ((200.0, 1000.0), AlarmCode.VISCOSITY_LOW)],
    ids=["too stiff", "too runny"],
)
def test_viscosity_outside_the_window_stops(window: tuple[float, float], alarm: AlarmCode) -> None:
    rig = started(viscosity_min_pas=window[0], viscosity_max_pas=window[1], volume_limit_nl=2_000_000)
    rig.run_until_state(State.STOPPED)
    assert rig.c.stop_reason == StopReason.VISCOSITY_WINDOW
    assert rig.c.viscosity_pas == pytest.approx(110.0, rel=0.05)
    assert [e.alarm for e in rig.events if e.kind == EventKind.ALARM] == [alarm]


def test_viscosity_alarm_near_the_edge_without_a_stop() -> None:
    rig = started(viscosity_max_pas=115.0, volume_limit_nl=2_000_000, seconds=4.0)
    assert rig.c.state == State.INJECTING
    assert AlarmCode.VISCOSITY_HIGH in rig.c.active_alarms


# -- fluoroscopy, host -------------------------------------------------------------------------------
def test_fluoro_line_debounced_then_latched_and_alarmed() -> None:
    rig = started(seconds=1.0)
    rig.plant.fluoro = True
    rig.run(0.002)
    rig.plant.fluoro = False
    rig.run(0.1)
    assert rig.c.state == State.INJECTING, "a 2 ms pulse is contact bounce"
    rig.plant.fluoro = True
    rig.run(0.003)
    assert (rig.c.state, rig.c.stop_reason, rig.c.stop_source) == (
        State.STOPPED,
        StopReason.FLUORO_STOP,
        StopSource.FLUORO_LINE,
    )
    assert rig.c.flags & Flags.FLUORO_LINE
    rig.plant.fluoro = False
    rig.run(0.1)
    assert not rig.c.flags & Flags.FLUORO_LINE
    alarms = [(e.kind, e.alarm) for e in rig.events if e.alarm == AlarmCode.FLUORO_LINE]
    assert alarms == [
        (EventKind.ALARM, AlarmCode.FLUORO_LINE),
        (EventKind.ALARM_CLEARED, AlarmCode.FLUORO_LINE),
    ]
    assert rig.c.state == State.STOPPED


@pytest.mark.parametrize("debounce", [3, 2, 7])
def test_fluoro_line_stop_carries_its_debounce_in_detail(debounce: int) -> None:
    """The STOP event's detail is the time from the line's first asserted sample to the stop (us):
    the host records it as the stop's latency (host.stops, line_latency_ms)."""
    rig = started(config=with_config(fluoro_debounce_samples=debounce), seconds=0.5)
    rig.plant.fluoro = True
    rig.run(0.001)
    rig.plant.fluoro = False  # a bounce: the run that trips starts at the next asserted sample
    rig.run(0.001)
    rig.plant.fluoro = True
    first_us = rig.now_us
    rig.run_until_state(State.STOPPED, seconds=0.1)
    (stop,) = [e for e in rig.events if e.kind == EventKind.STOP]
    assert (stop.reason, stop.source) == (StopReason.FLUORO_STOP, StopSource.FLUORO_LINE)
    assert stop.detail == stop.t_us - first_us == (debounce - 1) * 1000


def test_host_stop_events_keep_detail_zero() -> None:
    rig = started(seconds=0.5)
    rig.ok(lambda i: Stop(i, StopSource.FLUORO_REMOTE))
    (stop,) = [e for e in rig.events if e.kind == EventKind.STOP]
    assert (stop.reason, stop.source, stop.detail) == (StopReason.FLUORO_STOP, StopSource.FLUORO_REMOTE, 0)


def test_host_lost_exactly_after_the_watchdog_time() -> None:
    rig = started(seconds=1.0)
    last = rig.now_us - (rig.now_us % 100_000)  # the host heartbeats every 100 ms
    rig.heartbeats = False
    rig.run_until_state(State.STOPPED)
    assert rig.c.stop_reason == StopReason.HOST_LOST
    assert rig.now_us - 1000 == last + 500_000 + 1000


# -- false stops -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_nominal_noisy_runs_never_stop_falsely(seed: int) -> None:
    """Only INCREMENT_DONE and VOLUME_LIMIT may end a healthy injection (`python -m
    tests.controller.measure` runs the same scenario 500 times)."""
    rig = nominal_run(seed)
    assert rig.c.state != State.STOPPED, (rig.c.stop_reason, rig.now_us)
    assert {e.reason for e in rig.stops()} <= {StopReason.INCREMENT_DONE, StopReason.VOLUME_LIMIT}
