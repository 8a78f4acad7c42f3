"""Every row of the hazard table through the real controller and the real plant, in virtual time.

The rig speaks the wire protocol over an in-memory link, so these runs exercise codec, controller
and physics together; the pty and TCP paths are covered in tests/device.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from firmware_sim.controller import ControllerConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, EventKind, Flags, Mode, Resume, State, Stop, StopDetail, StopReason, StopSource

ENDED = (State.STOPPED, State.DONE, State.FAULT, State.PAUSED)


def _rig(events: list[dict[str, Any]] | None = None, **plant: Any) -> VirtualRig:
    rig = VirtualRig(PlantConfig.model_validate({"events": events or [], **plant}))
    rig.connect()
    return rig


def _inject(rig: VirtualRig, seconds: float = 60.0, **plan: Any) -> None:
    assert isinstance(rig.arm(**plan), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(seconds, until=rig.state_is(*ENDED))


def _only_stop(rig: VirtualRig) -> Any:
    stops = rig.stop_events()
    assert len(stops) == 1, [(e.reason.name, e.t_us) for e in stops]
    return stops[0]


def test_nominal_injection_runs_to_the_volume_limit() -> None:
    rig = _rig()
    _inject(rig)
    stop = _only_stop(rig)
    assert (stop.reason, stop.state) == (StopReason.VOLUME_LIMIT, State.DONE)
    assert abs(stop.delivered_nl - 2_000_000) < 20_000
    assert 300_000 < rig.samples["pressure_pa"].max() < 2_500_000


@pytest.mark.parametrize(
    ("event", "reasons"),
    [
        ({"kind": "occlusion", "at_volume_ml": 0.5}, {StopReason.PRESSURE_RISE}),
        ({"kind": "disconnection", "at_volume_ml": 0.5}, {StopReason.PRESSURE_LOSS}),
        ({"kind": "sensor_open", "at_volume_ml": 0.5}, {StopReason.SENSOR_FAULT}),
        ({"kind": "sensor_short", "at_volume_ml": 0.5}, {StopReason.SENSOR_FAULT}),
        ({"kind": "sensor_stuck", "at_volume_ml": 0.5}, {StopReason.SENSOR_FAULT}),
        ({"kind": "sensor_noise_burst", "at_volume_ml": 0.5, "factor": 200.0}, {StopReason.SENSOR_FAULT}),
        ({"kind": "motor_stall", "at_volume_ml": 0.5}, {StopReason.MOTOR_STALL}),
        ({"kind": "fluoro_stop_line", "at_volume_ml": 0.5}, {StopReason.FLUORO_STOP}),
    ],
    ids=lambda v: v["kind"] if isinstance(v, dict) else "",
)
def test_plant_fault_stops_the_injection_for_its_reason(
    event: dict[str, Any], reasons: set[StopReason]
) -> None:
    rig = _rig([event])
    _inject(rig)
    stop = _only_stop(rig)
    assert stop.reason in reasons
    assert stop.state == State.STOPPED
    fired_at = rig.plant.fired_events[0].t_s
    latency_s = stop.t_us / 1e6 - fired_at
    assert 0 <= latency_s < 1.0, latency_s
    if event["kind"] == "fluoro_stop_line":
        assert stop.source == StopSource.FLUORO_LINE


def test_occlusion_the_rise_detector_misses_is_held_at_the_ceiling_then_stopped_for_no_flow() -> None:
    """With rise detection off the throttle keeps the blocked line below the soft limit; the
    no-flow-at-ceiling check then stops it rather than holding the pressure forever."""
    occlusion = PlantConfig.model_validate({"events": [{"kind": "occlusion", "at_volume_ml": 0.5}]})
    rig = VirtualRig(occlusion, replace(ControllerConfig(), rise_enabled=False))
    rig.connect()
    _inject(rig, seconds=30.0)
    stop = _only_stop(rig)
    assert (stop.reason, stop.detail) == (StopReason.PRESSURE_RISE, StopDetail.NO_FLOW_AT_CEILING)
    injecting = rig.samples[rig.samples["state"] == State.INJECTING]
    assert injecting["pressure_pa"].max() < 2_500_000 * 1.05, "held below the soft limit meanwhile"
    assert injecting["flags"][-1] & Flags.THROTTLING
    blocked_for_s = stop.t_us / 1e6 - rig.plant.fired_events[0].t_s
    assert 3.0 <= blocked_for_s <= 10.0, blocked_for_s


def test_occlusion_without_rise_or_ceiling_checks_is_held_below_the_soft_limit() -> None:
    occlusion = PlantConfig.model_validate({"events": [{"kind": "occlusion", "at_volume_ml": 0.5}]})
    config = replace(ControllerConfig(), rise_enabled=False, ceiling_stall_enabled=False)
    rig = VirtualRig(occlusion, config)
    rig.connect()
    _inject(rig, seconds=20.0)
    assert rig.stop_events() == []
    assert rig.plant.syringe_pressure_pa < 2_500_000 * 1.05


def test_occlusion_with_only_a_plain_threshold_stops_on_overpressure() -> None:
    occlusion = PlantConfig.model_validate({"events": [{"kind": "occlusion", "at_volume_ml": 0.5}]})
    rig = VirtualRig(occlusion, replace(ControllerConfig(), rise_enabled=False, throttle_enabled=False))
    rig.connect()
    _inject(rig)
    assert _only_stop(rig).reason == StopReason.OVERPRESSURE


def test_a_silent_host_trips_the_watchdog() -> None:
    rig = _rig()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(1.0)
    rig.heartbeats = False
    silent_from = rig.now_us
    rig.run(5.0, until=rig.state_is(State.STOPPED))
    stop = _only_stop(rig)
    assert stop.reason == StopReason.HOST_LOST
    assert 0.45 <= (stop.t_us - silent_from) / 1e6 <= 0.6  # watchdog 500 ms


def test_a_vanished_link_trips_host_lost_at_once() -> None:
    rig = _rig()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(1.0)
    rig.link.connected = False
    cut_at = rig.now_us
    rig.run(1.0, until=lambda r: r.controller.state == State.STOPPED)
    assert rig.controller.stop_reason == StopReason.HOST_LOST
    assert rig.now_us - cut_at <= 5_000


def test_cement_past_its_working_time_stops() -> None:
    rig = _rig()
    plan = rig.plan_for_plant()
    _inject(rig, working_time_ms=plan["mixed_ago_ms"] + 3_000)
    assert _only_stop(rig).reason == StopReason.WORKING_TIME


def test_cement_stiffer_than_the_window_stops_on_viscosity() -> None:
    rig = _rig()
    _inject(rig, viscosity_max_pas=5.0)
    assert _only_stop(rig).reason == StopReason.VISCOSITY_WINDOW


def test_incremental_injection_pauses_after_each_increment_and_never_resumes_alone() -> None:
    rig = _rig()
    _inject(rig, mode=Mode.INCREMENTAL, increment_nl=500_000)
    stop = _only_stop(rig)
    assert (stop.reason, stop.state) == (StopReason.INCREMENT_DONE, State.PAUSED)
    volume_at_pause = rig.controller.volume_m3
    rig.run(10.0)
    assert rig.controller.state == State.PAUSED
    assert rig.controller.volume_m3 <= volume_at_pause + 1e-9, "plunger moved forward while PAUSED"
    assert isinstance(rig.command(Resume), Ack)
    rig.run(30.0, until=lambda r: len(r.stop_events()) == 2)
    assert rig.stop_events()[1].reason == StopReason.INCREMENT_DONE
    assert abs(rig.stop_events()[1].delivered_nl - 1_000_000) < 20_000


def test_operator_stop_with_relief_limits_the_after_flow() -> None:
    rig = _rig()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(20.0)
    assert isinstance(rig.command(lambda i: Stop(i, StopSource.OPERATOR)), Ack)
    delivered_at_stop = rig.plant.delivered_volume_m3
    rig.run(30.0)
    after_flow_ml = (rig.plant.delivered_volume_m3 - delivered_at_stop) * 1e6
    assert any(e.kind == EventKind.RELIEF_DONE for e in rig.events)
    assert rig.plant.syringe_pressure_pa < 200_000
    assert after_flow_ml < 0.02
