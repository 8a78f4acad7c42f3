"""Volume stops land on the target (issue 11 item 3), on the real plant, through the codec.

SPEC §8.5: the controller anticipates VOLUME_LIMIT and INCREMENT_DONE by the exact braking distance
of its own deceleration ramp, so the plunger comes to rest on the mark: the delivered volume at rest
(STATUS `delivered_nl`) is at least the target and at most max(1 %, 2 uL) above it, at every flow in
range, with and without relief, continuous and incremental.
"""

from __future__ import annotations

import pytest

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, GetStatus, Mode, PlanFlags, Resume, State, Status, StopReason

FLOWS_NL_S = [1_000, 20_000, 50_000, 166_667]


def _accuracy_nl(target_nl: int) -> int:
    return max(target_nl // 100, 2_000)


def _delivered_at_rest(rig: VirtualRig) -> int:
    rig.run(0.5, until=lambda r: r.controller.step_rate_hz == 0.0 and not r.controller.relief_active)
    answer = rig.command(GetStatus)
    assert isinstance(answer, Ack)
    status = next(m for m in reversed(rig.replies) if isinstance(m, Status) and m.cmd_id == answer.cmd_id)
    return status.delivered_nl


@pytest.mark.parametrize("relief", [False, True], ids=["no-relief", "relief"])
@pytest.mark.parametrize("flow_nl_s", FLOWS_NL_S)
@pytest.mark.parametrize("bore_mm", [4.78, 7.29, 14.5])
def test_continuous_volume_limit_rests_on_the_target(flow_nl_s: int, relief: bool, bore_mm: float) -> None:
    rig = VirtualRig(PlantConfig.model_validate({"syringe_bore_mm": bore_mm}))
    rig.connect()
    target = max(10_000, flow_nl_s // 4) + 777  # a volume that is no whole number of counts
    flags = PlanFlags.RELIEF if relief else PlanFlags.NONE
    assert isinstance(rig.arm(flow_nl_s=flow_nl_s, volume_limit_nl=target, plan_flags=flags), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(30.0, until=rig.state_is(State.DONE, State.STOPPED))
    stop = rig.stop_events()[-1]
    assert stop.reason == StopReason.VOLUME_LIMIT
    delivered = _delivered_at_rest(rig)
    assert target <= delivered <= target + _accuracy_nl(target)
    assert stop.delivered_nl <= delivered, "the EVENT carries the volume when the stop was taken"


@pytest.mark.parametrize("relief", [False, True], ids=["no-relief", "relief"])
@pytest.mark.parametrize("flow_nl_s", [5_000, 100_000])
def test_incremental_marks_rest_on_each_increment(flow_nl_s: int, relief: bool) -> None:
    rig = VirtualRig(PlantConfig())
    rig.connect()
    increment = 15_333
    flags = PlanFlags.RELIEF if relief else PlanFlags.NONE
    plan = {"mode": Mode.INCREMENTAL, "increment_nl": increment, "volume_limit_nl": 3 * increment}
    assert isinstance(rig.arm(flow_nl_s=flow_nl_s, plan_flags=flags, **plan), Ack)
    assert isinstance(rig.start(), Ack)
    for k in (1, 2, 3):
        assert rig.run(30.0, until=rig.state_is(State.PAUSED, State.DONE, State.STOPPED))
        delivered = _delivered_at_rest(rig)
        target = k * increment
        assert target <= delivered <= target + _accuracy_nl(target), k
        if k < 3:
            assert rig.controller.state == State.PAUSED
            assert rig.stop_events()[-1].reason == StopReason.INCREMENT_DONE
            assert isinstance(rig.command(Resume), Ack)
    assert rig.controller.state == State.DONE
    assert rig.controller.increments_done == 2
