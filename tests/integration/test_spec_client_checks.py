"""Checks an independent client written from protocol/SPEC.md alone runs against the device, kept
here at the wire level (through the codec, on virtual time) so that they hold for what lands.

Only SPEC-level knowledge is used: message fields, flags, NAK codes and details, and the integer
definitions of §5.15 / §8.5. Each test names the SPEC clause it pins.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    BusyDetail,
    Clear,
    EventKind,
    Flags,
    Hello,
    Nak,
    NakCode,
    PlanFlags,
    State,
    Status,
    Stop,
    StopReason,
    StopSource,
)
from protocol.messages import Arm, GetStatus, Pause, Resume, TelemetryBatch


def _rig() -> VirtualRig:
    rig = VirtualRig(PlantConfig())
    rig.connect()
    return rig


def _status(rig: VirtualRig) -> Status:
    answer = rig.command(GetStatus)
    assert isinstance(answer, Ack)
    status = next(m for m in reversed(rig.replies) if isinstance(m, Status) and m.cmd_id == answer.cmd_id)
    return status


def _plan(rig: VirtualRig, **over: Any) -> dict[str, Any]:
    return {**rig.plan_for_plant(), **over}


@pytest.mark.parametrize("relief", [True, False])
def test_busy_detail_while_braking_names_what_the_host_must_wait_for(relief: bool) -> None:
    """SPEC §6.5 / §8.2 / §6.11: on a plan with RELIEF the relief runs from the stop on, its braking
    ramp included (flag RELIEF_ACTIVE, BUSY detail RELIEF_ACTIVE: retry after RELIEF_DONE, since a
    retry after the brake time would meet the back-off); without RELIEF the braking plunger gives
    BUSY PLUNGER_MOVING and no RELIEF_ACTIVE."""
    rig = _rig()
    flags = PlanFlags.RELIEF if relief else PlanFlags.NONE
    plan = _plan(rig, plan_flags=flags, flow_nl_s=150_000)
    assert isinstance(rig.command(lambda i: Arm(cmd_id=i, **plan)), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(1.0)
    stop_us = rig.now_us
    stop_id, clear_id = rig.send_together(lambda i: Stop(i, StopSource.OPERATOR), Clear)
    rig.run(0.2)
    assert isinstance(rig.answer(stop_id), Ack)
    clear = rig.answer(clear_id)
    assert isinstance(clear, Nak)
    expected = BusyDetail.RELIEF_ACTIVE if relief else BusyDetail.PLUNGER_MOVING
    assert (clear.code, clear.state, clear.detail) == (NakCode.BUSY, State.STOPPED, expected)
    s = rig.samples
    braking = s[(s["t_us"] > stop_us) & (s["state"] == State.STOPPED) & (s["motor_um_s"] > 0)]
    assert len(braking) > 10, "the stop was taken at speed: the plunger brakes over several ticks"
    has_relief_flag = (braking["flags"] & int(Flags.RELIEF_ACTIVE)) != 0
    assert bool(has_relief_flag.all()) if relief else not bool(has_relief_flag.any())
    assert bool(((braking["flags"] & int(Flags.MOTOR_MOVING)) != 0).all())


def test_delivered_is_the_integer_high_water_mark_of_the_plunger_in_every_sample() -> None:
    """SPEC §5.15 / §8.5: delivered_nl = floor(H x A / 10^6), H = furthest plunger_um since ARM minus
    plunger_um at ARM (1 count = 1 um on the reference rig), A = round(pi (bore/2)^2) fL per um:
    sample by sample, through relief back-offs and the re-advance after RESUME."""
    rig = _rig()
    plan = _plan(rig, plan_flags=PlanFlags.RELIEF, mode=1, increment_nl=30_000, volume_limit_nl=70_000)
    plan["flow_nl_s"] = 120_000
    arm = rig.command(lambda i: Arm(cmd_id=i, **plan))
    assert isinstance(arm, Ack)
    armed = next(m for m in reversed(rig.replies) if isinstance(m, Status) and m.cmd_id == arm.cmd_id)
    assert armed.delivered_nl == 0, "ARM resets the delivered volume"
    arm_us, p_arm = armed.t_us, armed.plunger_um
    assert isinstance(rig.start(), Ack)
    for _ in range(4):
        rig.run(6.0, until=rig.state_is(State.PAUSED, State.DONE))
        if rig.controller.state == State.DONE:
            break
        rig.run(0.5)  # braking, then the relief backs off
        assert isinstance(rig.command(Resume), Ack)
    assert rig.run(1.0, until=lambda r: r.controller.state == State.DONE and not r.controller.relief_active)
    rig.run(0.2)
    s = rig.samples
    s = s[s["t_us"] > arm_us]
    area_fl = round(math.pi * (plan["syringe_bore_um"] / 2) ** 2)
    high_water = np.maximum.accumulate(np.maximum(s["plunger_um"].astype(np.int64) - p_arm, 0))
    expected = high_water * area_fl // 1_000_000
    mismatch = np.nonzero(s["delivered_nl"] != expected)[0]
    assert mismatch.size == 0, (s[mismatch[:3]], expected[mismatch[:3]])
    assert bool((np.diff(s["plunger_um"]) < 0).any()), "the relief backed the plunger off"
    final = _status(rig)
    assert final.state == State.DONE
    assert (
        plan["volume_limit_nl"]
        <= final.delivered_nl
        <= plan["volume_limit_nl"] + max(plan["volume_limit_nl"] // 100, 2_000)
    ), "SPEC §8.5 accuracy at rest"


def test_a_hello_reopening_an_open_session_keeps_the_telemetry_index_contiguous() -> None:
    """SPEC §9.4: only a session that closes discards its partly filled batch; a HELLO that re-opens
    a session still open (a new host took over) changes no telemetry setting and loses no index."""
    rig = _rig()
    seen: list[tuple[int, int]] = []
    keep = rig._receive

    def receive(message: object) -> None:
        if isinstance(message, TelemetryBatch):
            seen.append((message.first_index, len(message.samples)))
        keep(message)  # type: ignore[arg-type]

    rig._receive = receive  # type: ignore[method-assign]
    rig.run(0.107)  # mid-batch (20 samples at 1 kHz)
    before = len(seen)
    answer = rig.command(lambda i: Hello(i, PROTOCOL_VERSION))
    assert isinstance(answer, Ack)
    rig.run(0.1)
    assert before >= 2
    assert len(seen) > before + 2
    for (a, n), (b, _m) in itertools.pairwise(seen):
        assert b == a + n, seen


def test_the_end_of_travel_stop_of_a_closed_limit_switch_carries_the_flag() -> None:
    """SPEC §8.5 / §6.11 / §5.12: the flag END_OF_TRAVEL means "limit switch closed, or the plunger on
    or past travel_um", and an EVENT's flags are those once the event has taken effect. So the STOP
    that a closing switch causes carries the flag, as does every sample from that tick on while the
    switch stays closed: flag, stop and START refusal agree from the first tick (the flag used to
    follow only at the next 10 ms block)."""
    rig = VirtualRig(
        PlantConfig.model_validate(
            {"plunger_start_mm": 20.0, "events": [{"kind": "end_switch", "at_s": 0.5}]}
        )
    )
    rig.connect()
    assert isinstance(rig.arm(volume_limit_nl=500_000), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(1.0, until=rig.state_is(State.STOPPED))
    rig.run(0.05)
    stop = rig.stop_events()[-1]
    assert stop.reason == StopReason.END_OF_TRAVEL
    assert stop.flags & Flags.END_OF_TRAVEL, f"STOP END_OF_TRAVEL without the flag: {stop.flags!r}"
    s = rig.samples
    after = s[s["t_us"] >= stop.t_us]
    assert len(after) >= 40
    assert bool(((after["flags"] & int(Flags.END_OF_TRAVEL)) != 0).all())
    before = s[s["t_us"] < stop.t_us]
    assert not bool(((before["flags"] & int(Flags.END_OF_TRAVEL)) != 0).any()), (
        "set only once the switch closed"
    )


def test_a_transition_event_carries_the_flags_once_it_has_taken_effect() -> None:
    """SPEC §5.12: EVENT `flags` are the status bits once the event has taken effect. A STOP out of
    INJECTING on a RELIEF plan starts the relief (RELIEF_ACTIVE, §6.11) and ends the viscosity
    estimate (VISCOSITY_VALID clear: no steady forward flow); a RESUME that cuts the relief short
    clears RELIEF_ACTIVE. The events used to carry the flags from before the transition."""
    rig = _rig()
    assert isinstance(rig.arm(plan_flags=PlanFlags.RELIEF), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(3.0, until=lambda r: bool(r.controller.flags & Flags.VISCOSITY_VALID))
    pause = rig.command(lambda i: Pause(i))
    assert isinstance(pause, Ack)
    rig.run(0.02)
    assert rig.controller.relief_active
    assert isinstance(rig.command(Resume), Ack)
    rig.run(1.0)
    assert isinstance(rig.command(lambda i: Stop(i, StopSource.OPERATOR)), Ack)
    rig.run(0.05)
    transitions = [e for e in rig.events if e.kind in (EventKind.STATE_CHANGE, EventKind.STOP)]
    paused, resumed, stopped = transitions[-3:]
    assert (paused.state, resumed.state, stopped.state) == (State.PAUSED, State.INJECTING, State.STOPPED)
    for event in (paused, stopped):
        assert event.flags & Flags.RELIEF_ACTIVE, f"{event.state!r}: the relief runs from the transition on"
        assert not event.flags & Flags.VISCOSITY_VALID, f"{event.state!r}: no estimate outside INJECTING"
    assert not resumed.flags & Flags.RELIEF_ACTIVE, "RESUME cut the relief short"
    relief_done = [e for e in rig.events if e.kind == EventKind.RELIEF_DONE]
    assert relief_done
    assert relief_done[0].event_index == resumed.event_index + 1, "RELIEF_DONE still follows the STATE_CHANGE"
