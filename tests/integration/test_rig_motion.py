"""The movements on the real plant, in virtual time, over the real codec (SPEC §8.6): a prime runs
every forward limit of an injection and is never counted as delivered; a withdraw and home never
take the plunger behind home; a jog ends by itself."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from firmware_sim.controller import ControllerConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, EventKind, Nak, NakCode, State, Status, StopDetail, StopReason
from protocol.messages import GetMotion, Home, Jog, MotionStatus, Prime, Withdraw

HOME_M = 200e-6
WATCHDOG_US = ControllerConfig().watchdog_ms * 1000


def _rig(
    events: list[dict[str, Any]] | None = None, config: ControllerConfig | None = None, **plant: Any
) -> VirtualRig:
    rig = VirtualRig(
        PlantConfig.model_validate({"events": events or [], **plant}), config or ControllerConfig()
    )
    rig.connect()
    return rig


def _bore(rig: VirtualRig) -> int:
    return int(rig.plan_for_plant()["syringe_bore_um"])


def _prime(rig: VirtualRig, volume_nl: int = 1_000_000, flow_nl_s: int = 50_000) -> None:
    bore = _bore(rig)
    assert isinstance(rig.command(lambda i: Prime(i, bore, flow_nl_s, volume_nl)), Ack)


def _motion(rig: VirtualRig) -> MotionStatus:
    assert isinstance(rig.command(GetMotion), Ack)
    return next(m for m in reversed(rig.replies) if isinstance(m, MotionStatus))


@pytest.mark.parametrize(
    ("event", "config", "reason", "detail"),
    [
        ({"kind": "occlusion", "at_s": 3.0}, {}, StopReason.PRESSURE_RISE, StopDetail.NONE),
        (
            {"kind": "occlusion", "at_s": 0.5},
            {"rise_enabled": False},
            StopReason.PRESSURE_RISE,
            StopDetail.NO_FLOW_AT_CEILING,
        ),
        (
            {"kind": "occlusion", "at_s": 0.5},
            {"rise_enabled": False, "throttle_enabled": False},
            StopReason.OVERPRESSURE,
            StopDetail.NONE,
        ),
        ({"kind": "motor_stall", "at_s": 0.5}, {}, StopReason.MOTOR_STALL, StopDetail.NONE),
        ({"kind": "sensor_open", "at_s": 0.5}, {}, StopReason.SENSOR_FAULT, StopDetail.NONE),
        ({"kind": "fluoro_stop_line", "at_s": 0.5}, {}, StopReason.FLUORO_STOP, None),
    ],
    ids=["occlusion-rise", "occlusion-no-flow", "occlusion-overpressure", "stall", "sensor", "fluoro-line"],
)
def test_a_prime_is_stopped_by_the_injections_detectors(
    event: dict[str, Any], config: dict[str, Any], reason: StopReason, detail: StopDetail | None
) -> None:
    rig = _rig([event], replace(ControllerConfig(), **config))
    _prime(rig)
    assert rig.run(20.0, until=rig.state_is(State.STOPPED, State.IDLE))
    stops = rig.stop_events()
    assert len(stops) == 1
    (stop,) = stops
    assert (stop.prev_state, stop.state, stop.reason) == (State.PRIMING, State.STOPPED, reason)
    if detail is not None:
        assert stop.detail == detail
    priming = rig.samples[rig.samples["state"] == State.PRIMING]
    assert priming["pressure_pa"].max() < 4_000_000 * 1.1, "never far past the hard limit in force"
    assert rig.run(0.2, until=lambda r: r.controller.step_rate_hz == 0.0)
    assert rig.controller.state == State.STOPPED, "latched"


def test_a_silent_host_stops_a_prime() -> None:
    rig = _rig()
    _prime(rig)
    rig.run(0.5)
    rig.heartbeats = False
    silent_from = rig.now_us
    assert rig.run(2.0, until=rig.state_is(State.STOPPED))
    assert rig.controller.stop_reason == StopReason.HOST_LOST
    assert rig.now_us - silent_from <= WATCHDOG_US + 2_000


def test_a_prime_is_not_counted_toward_the_next_injection() -> None:
    rig = _rig()
    _prime(rig, volume_nl=200_000, flow_nl_s=100_000)
    assert rig.run(10.0, until=rig.state_is(State.IDLE))
    (done,) = [e for e in rig.events if e.kind == EventKind.MOTION_DONE]
    assert 200_000 <= done.detail <= 202_000, done.detail
    assert done.delivered_nl == 0
    assert _motion(rig).primed_nl == done.detail
    assert isinstance(rig.arm(volume_limit_nl=300_000), Ack)
    status = next(m for m in reversed(rig.replies) if isinstance(m, Status))
    assert status.delivered_nl == 0
    assert isinstance(rig.start(), Ack)
    assert rig.run(30.0, until=rig.state_is(State.DONE, State.STOPPED))
    assert rig.controller.stop_reason == StopReason.VOLUME_LIMIT
    rig.run(0.2)
    assert 300_000 <= rig.controller.delivered_nl <= 300_000 + 3_000, "the injection alone"
    assert _motion(rig).primed_nl == done.detail, "the prime's figure is kept apart"


@pytest.mark.parametrize("start_mm", [0.5, 1.0, 3.0])
def test_withdraw_and_home_never_take_the_plunger_behind_home(start_mm: float) -> None:
    rig = _rig(plunger_start_mm=start_mm)
    bore = _bore(rig)
    answer = rig.command(lambda i: Withdraw(i, bore, 166_667, 100_000_000))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field) == (NakCode.BAD_PARAM, 3)
    room_nl = answer.detail
    lowest = rig.plant.plunger_position_m

    def track(r: VirtualRig) -> bool:
        nonlocal lowest
        lowest = min(lowest, r.plant.plunger_position_m)
        return r.controller.state == State.IDLE and r.controller.step_rate_hz == 0.0

    assert isinstance(rig.command(lambda i: Withdraw(i, bore, 166_667, room_nl)), Ack)
    assert rig.run(20.0, until=track)
    assert lowest >= HOME_M, lowest
    assert isinstance(rig.command(lambda i: Jog(i, 500, 250)), Ack)  # a little forward
    rig.run(0.6)
    assert isinstance(rig.command(lambda i: Home(i, 5_000)), Ack)
    assert rig.run(5.0, until=track)
    assert lowest >= HOME_M, lowest
    motion = _motion(rig)
    assert motion.home_um <= motion.plunger_um <= motion.home_um + 20
    assert isinstance(rig.command(lambda i: Jog(i, 500, -5_000)), Nak)


def test_a_jog_on_the_real_plant_is_at_rest_within_its_grant() -> None:
    rig = _rig(plunger_start_mm=20.0)
    last = 0
    for _ in range(5):
        last = rig.now_us
        assert isinstance(rig.command(lambda i: Jog(i, 300, -2_000)), Ack)
        rig.run(0.1)
    assert rig.run(1.0, until=lambda r: r.plant.plunger_velocity_m_s == 0.0)
    assert rig.now_us - last <= 300_000 + 2_000
    rig.run(0.01)
    assert rig.controller.state == State.IDLE
    assert rig.controller.stop_reason == StopReason.NONE
