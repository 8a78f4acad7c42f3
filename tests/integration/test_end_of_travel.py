"""End of travel on the real plant, through the codec (issue 11 item 5).

DEVICE_INFO `travel_um` is the usable stroke: the position END_OF_TRAVEL brings the plunger to rest
on. ARM refuses a volume limit the stroke left cannot deliver (NAK BAD_PARAM, field 5, detail = the
largest volume that fits, nL); a plan of all of it rests on `travel_um`; the flag END_OF_TRAVEL, the
START refusal and the stop agree on where the end is.
"""

from __future__ import annotations

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import (
    Ack,
    Clear,
    DeviceInfo,
    Flags,
    GetStatus,
    Nak,
    NakCode,
    PlanFlags,
    Start,
    State,
    Status,
    StopReason,
)
from protocol.messages import Arm


def _rig(start_mm: float, *events: dict[str, object]) -> VirtualRig:
    rig = VirtualRig(PlantConfig.model_validate({"plunger_start_mm": start_mm, "events": list(events)}))
    rig.connect()
    return rig


def _status(rig: VirtualRig) -> Status:
    answer = rig.command(GetStatus)
    assert isinstance(answer, Ack)
    return next(m for m in reversed(rig.replies) if isinstance(m, Status) and m.cmd_id == answer.cmd_id)


def _stroke_left_nl(rig: VirtualRig, travel_um: int) -> int:
    area_um2 = round(rig.plant.bore_area_m2 * 1e12)  # fL per um of travel
    return (travel_um - rig.controller.plunger_um) * area_um2 // 1_000_000


def test_travel_um_is_where_a_plan_of_the_whole_stroke_left_comes_to_rest() -> None:
    rig = _rig(57.0)
    assert isinstance(rig.info, DeviceInfo)
    travel_um = rig.info.travel_um
    assert travel_um == 59_500, "the stroke less the 0.5 mm margin to the end stop"
    answer = rig.arm(volume_limit_nl=2_000_000, flow_nl_s=150_000)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field) == (NakCode.BAD_PARAM, 5)
    assert answer.detail == _stroke_left_nl(rig, travel_um)
    assert isinstance(rig.arm(volume_limit_nl=answer.detail + 1, flow_nl_s=150_000), Nak)
    plan = {"volume_limit_nl": answer.detail, "flow_nl_s": 150_000, "plan_flags": PlanFlags.NONE}
    assert isinstance(rig.arm(**plan), Ack)
    assert not _status(rig).flags & Flags.END_OF_TRAVEL
    assert isinstance(rig.start(), Ack)
    assert rig.run(5.0, until=rig.state_is(State.DONE, State.STOPPED))
    assert rig.stop_events()[-1].reason == StopReason.VOLUME_LIMIT
    rig.run(0.3)
    position_um = rig.plant.plunger_position_m * 1e6
    assert travel_um <= position_um < travel_um + 10, "at rest on the reported end, never short of it"
    assert rig.controller.plunger_um >= travel_um
    status = _status(rig)
    assert status.flags & Flags.END_OF_TRAVEL
    assert status.delivered_nl >= answer.detail
    again = rig.arm(volume_limit_nl=1)
    assert isinstance(again, Nak)
    assert (again.code, again.field, again.detail) == (NakCode.BAD_PARAM, 5, 0)


def test_past_the_usable_end_the_flag_is_set_and_no_plan_is_armed() -> None:
    rig = _rig(59.8)
    rig.run(0.05)
    assert _status(rig).flags & Flags.END_OF_TRAVEL
    answer = rig.arm(volume_limit_nl=1)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, 5, 0)


def test_just_before_the_usable_end_the_flag_is_clear_and_what_is_left_can_be_delivered() -> None:
    rig = _rig(59.45)  # 50 um of usable stroke left
    rig.run(0.05)
    assert not _status(rig).flags & Flags.END_OF_TRAVEL
    left = _stroke_left_nl(rig, 59_500)
    assert left > 0
    assert isinstance(rig.arm(volume_limit_nl=left), Ack)
    assert isinstance(rig.command(Start), Ack)
    assert rig.run(2.0, until=rig.state_is(State.DONE, State.STOPPED))
    assert rig.stop_events()[-1].reason == StopReason.VOLUME_LIMIT
    rig.run(0.2)
    assert _status(rig).flags & Flags.END_OF_TRAVEL
    assert rig.controller.delivered_nl >= left


def test_a_limit_switch_that_closes_early_stops_and_start_is_refused_while_it_is_closed() -> None:
    rig = _rig(20.0, {"kind": "end_switch", "at_s": 0.5})
    assert isinstance(rig.arm(volume_limit_nl=500_000), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(1.0, until=rig.state_is(State.STOPPED))
    assert rig.stop_events()[-1].reason == StopReason.END_OF_TRAVEL
    ids = rig.send_together(Clear, lambda i: Arm(cmd_id=i, **rig.plan_for_plant()), Start)
    rig.run(0.002)
    clear, arm, start = (rig.answer(i) for i in ids)
    assert isinstance(clear, Nak)
    assert clear.code == NakCode.BUSY, "braking: no CLEAR, so no START right after the stop"
    assert isinstance(arm, Nak)
    assert isinstance(start, Nak)
    rig.run(0.3)
    assert _status(rig).flags & Flags.END_OF_TRAVEL
    assert isinstance(rig.command(Clear), Ack)
    assert isinstance(rig.arm(volume_limit_nl=100_000), Ack)
    answer = rig.command(Start)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.state) == (NakCode.END_OF_TRAVEL, State.ARMED)
