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
from protocol import (
    Ack,
    AlarmCode,
    BusyDetail,
    Clear,
    EventKind,
    Flags,
    Nak,
    NakCode,
    PlanFlags,
    State,
    Status,
    Stop,
    StopDetail,
    StopReason,
    StopSource,
)
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
    # at rest after the brake, or after the relief that follows a stopped prime (at most its timeout)
    assert rig.run(3.5, until=lambda r: r.controller.step_rate_hz == 0.0 and not r.controller.relief_active)
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


def _clear_once_at_rest(rig: VirtualRig, home_m: float = HOME_M) -> tuple[list[Nak], float]:
    """CLEAR every 5 ms until one is ACKed; return the refusals met and the line pressure at the
    ACK. Each tick checks the plunger rules of relief: after the stop's brake it only moves
    backward and never behind `home_m` (home, or where the push began)."""
    refusals: list[Nak] = []
    peak = rig.plant.plunger_position_m
    for _ in range(2_000):
        answer = rig.command(Clear)
        if isinstance(answer, Ack):
            assert rig.plant.plunger_velocity_m_s == 0.0, "CLEAR accepted with the plunger moving"
            return refusals, rig.plant.syringe_pressure_pa
        refusals.append(answer)
        for _ in range(5):
            rig.step()
            position = rig.plant.plunger_position_m
            peak = max(peak, position) if rig.plant.plunger_velocity_m_s > 0.0 else peak
            assert position <= peak + 1e-12, "relief moved the plunger forward"
            assert position >= home_m, "relief took the plunger behind home or where the push began"
    raise AssertionError("CLEAR never accepted")


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({}, StopReason.PRESSURE_RISE),
        ({"rise_enabled": False}, StopReason.PRESSURE_RISE),
        ({"rise_enabled": False, "throttle_enabled": False}, StopReason.OVERPRESSURE),
    ],
    ids=["rise", "no-flow-at-ceiling", "overpressure"],
)
def test_an_occluded_prime_relieves_the_line_before_clear(config: dict[str, Any], reason: StopReason) -> None:
    """SPEC §8.6: a prime stopped by any stop backs off as an injection with RELIEF does: CLEAR is
    BUSY RELIEF_ACTIVE until RELIEF_DONE, and then the line is below relief_pa and the plunger
    at rest."""
    cfg = replace(ControllerConfig(), **config)
    rig = _rig([{"kind": "occlusion", "at_s": 0.5}], cfg)
    _prime(rig)
    assert rig.run(20.0, until=rig.state_is(State.STOPPED))
    (stop,) = rig.stop_events()
    assert (stop.prev_state, stop.reason) == (State.PRIMING, reason)
    assert stop.flags & Flags.RELIEF_ACTIVE, "the relief runs from the stop on"
    assert rig.plant.syringe_pressure_pa > cfg.default_relief_pa, "the occluded line is pressurised"
    refusals, pressure_pa = _clear_once_at_rest(rig)
    assert refusals, "CLEAR refused while the relief runs"
    assert (refusals[0].code, refusals[0].detail) == (NakCode.BUSY, BusyDetail.RELIEF_ACTIVE)
    assert {n.code for n in refusals} == {NakCode.BUSY}
    (done,) = [e for e in rig.events if e.kind == EventKind.RELIEF_DONE]
    assert done.detail > 0, "it backed off"
    assert pressure_pa < cfg.default_relief_pa, pressure_pa
    assert rig.controller.state == State.IDLE


def test_a_forward_jog_stopped_by_overpressure_relieves_the_line() -> None:
    cfg = replace(ControllerConfig(), rise_enabled=False, throttle_enabled=False)
    rig = _rig([{"kind": "occlusion", "at_s": 0.2}], cfg, plunger_start_mm=20.0)
    for _ in range(300):
        answer = rig.command(lambda i: Jog(i, 300, 250))
        if isinstance(answer, Nak):
            break
        rig.run(0.1, until=rig.state_is(State.STOPPED))
    assert rig.run(1.0, until=rig.state_is(State.STOPPED))
    (stop,) = rig.stop_events()
    assert (stop.prev_state, stop.reason) == (State.JOGGING, StopReason.OVERPRESSURE)
    assert stop.flags & Flags.RELIEF_ACTIVE
    refusals, pressure_pa = _clear_once_at_rest(rig)
    assert refusals, "CLEAR refused while the relief runs"
    assert refusals[0].detail == BusyDetail.RELIEF_ACTIVE
    assert pressure_pa < cfg.default_relief_pa, pressure_pa
    assert [e.kind for e in rig.events].count(EventKind.RELIEF_DONE) == 1


def test_a_withdraw_stopped_has_no_relief() -> None:
    """Relief backs off a forward push; a backward movement has nothing to relieve."""
    rig = _rig(plunger_start_mm=20.0)
    bore = _bore(rig)
    assert isinstance(rig.command(lambda i: Withdraw(i, bore, 100_000, 500_000)), Ack)
    rig.run(0.3)
    assert isinstance(rig.command(lambda i: Stop(i, StopSource.OPERATOR)), Ack)
    (stop,) = rig.stop_events()
    assert not stop.flags & Flags.RELIEF_ACTIVE
    assert not rig.controller.relief_active


@pytest.mark.parametrize("start_mm", [20.0, 2.0], ids=["mid-stroke", "near-home"])
def test_an_occluded_injection_with_relief_relieves_the_line_at_4_mpa(start_mm: float) -> None:
    """SPEC §8.4: an occluded injection stopped by OVERPRESSURE (4 MPa) compresses the line by more
    than relief_max (3 mm): its relief backs off as far as the plunger was pushed since ARM, so
    the line ends below relief_pa; the plunger only moves backward, never behind home nor behind
    where it was at ARM, and no RELIEF_AT_LIMIT notice follows."""
    cfg = replace(ControllerConfig(), rise_enabled=False, throttle_enabled=False)
    rig = _rig([{"kind": "occlusion", "at_s": 0.5}], cfg, plunger_start_mm=start_mm)
    assert isinstance(rig.arm(plan_flags=PlanFlags.RELIEF, volume_limit_nl=1_000_000), Ack)
    armed_m = rig.plant.plunger_position_m
    assert isinstance(rig.start(), Ack)
    assert rig.run(20.0, until=rig.state_is(State.STOPPED))
    (stop,) = rig.stop_events()
    assert (stop.prev_state, stop.reason) == (State.INJECTING, StopReason.OVERPRESSURE)
    assert stop.flags & Flags.RELIEF_ACTIVE
    pushed_m = rig.plant.plunger_position_m - armed_m
    assert pushed_m > cfg.relief_max_m, "the line took more than relief_max to reach 4 MPa"
    refusals, pressure_pa = _clear_once_at_rest(rig, home_m=max(HOME_M, armed_m))
    assert refusals[0].detail == BusyDetail.RELIEF_ACTIVE
    assert pressure_pa < cfg.default_relief_pa, pressure_pa
    (done,) = [e for e in rig.events if e.kind == EventKind.RELIEF_DONE]
    assert done.detail > cfg.relief_max_m * 1e6, "it backed off beyond relief_max"
    assert not [e for e in rig.events if e.alarm in (AlarmCode.RELIEF_AT_LIMIT, AlarmCode.RELIEF_INCOMPLETE)]


def test_a_relief_ending_at_its_travel_bound_with_pressure_left_says_so() -> None:
    """A line left at 4 MPa by a stop without relief, re-ARMed with RELIEF: the injection stops at
    once, having pushed almost nothing, so its relief may back off only relief_max (3 mm) of the
    ~4.8 mm compression. RELIEF_DONE is followed by the one-shot notice RELIEF_AT_LIMIT carrying
    the pressure left in the line (SPEC §6.7, §8.4)."""
    cfg = replace(ControllerConfig(), rise_enabled=False, throttle_enabled=False)
    rig = _rig([{"kind": "occlusion", "at_s": 0.5}], cfg, plunger_start_mm=20.0)
    assert isinstance(rig.arm(plan_flags=PlanFlags.NONE, volume_limit_nl=1_000_000), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(20.0, until=rig.state_is(State.STOPPED))
    _clear_once_at_rest(rig)
    assert rig.plant.syringe_pressure_pa > 3.5e6, "no relief: the line stays pressurised"
    assert isinstance(rig.arm(plan_flags=PlanFlags.RELIEF, volume_limit_nl=1_000_000), Ack)
    before = len(rig.events)
    assert isinstance(rig.start(), Ack)
    assert rig.run(5.0, until=rig.state_is(State.STOPPED))
    _, pressure_pa = _clear_once_at_rest(rig)
    assert pressure_pa >= cfg.default_relief_pa
    events = rig.events[before:]
    kinds = [(e.kind, e.alarm) for e in events]
    at = kinds.index((EventKind.RELIEF_DONE, AlarmCode.NONE))
    assert cfg.relief_max_m * 1e6 <= events[at].detail <= cfg.relief_max_m * 1e6 + 400, "relief_max + braking"
    assert kinds[at + 1] == (EventKind.ALARM, AlarmCode.RELIEF_AT_LIMIT)
    assert events[at + 1].detail == pytest.approx(pressure_pa, rel=0.05, abs=20_000)
    assert (EventKind.ALARM_CLEARED, AlarmCode.RELIEF_AT_LIMIT) not in kinds
