"""Delivered volume and plunger position on the real plant (issue 11 item 2, controller side).

`Controller.delivered_nl` is the cement delivered since ARM: the high-water mark of the plunger's
forward displacement, so it never falls during the relief back-off and an armed plan starts at 0
wherever the last one left the plunger. `Controller.plunger_um` is the plunger's position from home.
Both are checked against the plant's own plunger, on every tick, through the codec (VirtualRig).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, Mode, PlanFlags, Resume, State, Status
from protocol.messages import GetStatus

ENDED = (State.STOPPED, State.DONE, State.FAULT, State.PAUSED)


def _rig(**plant: Any) -> VirtualRig:
    rig = VirtualRig(PlantConfig.model_validate(plant))
    rig.connect()
    return rig


def _bore_nl_per_um(rig: VirtualRig) -> float:
    return rig.plant.bore_area_m2 * 1e-6 * 1e12


def _watch(rig: VirtualRig, seconds: float, until: Any = None) -> list[tuple[int, int, float]]:
    """Run, recording (delivered_nl, plunger_um, plant plunger um) after every tick."""
    seen: list[tuple[int, int, float]] = []

    def record(r: VirtualRig) -> bool:
        c = r.controller
        seen.append((c.delivered_nl, c.plunger_um, r.plant.plunger_position_m * 1e6))
        return until(r) if until is not None else False

    rig.run(seconds, until=record)
    return seen


def test_relieved_run_ends_done_showing_what_was_delivered_not_the_backed_off_position() -> None:
    rig = _rig()
    assert isinstance(rig.arm(volume_limit_nl=40_000, plan_flags=PlanFlags.RELIEF), Ack)
    start_um = rig.controller.plunger_um
    assert rig.controller.delivered_nl == 0
    assert isinstance(rig.start(), Ack)
    seen = _watch(rig, 10.0, until=rig.state_is(State.DONE))
    seen += _watch(rig, 1.0)  # braking, relief back-off and its end
    c = rig.controller
    assert c.state == State.DONE
    assert not c.relief_active
    delivered = [d for d, _, _ in seen]
    assert all(b >= a for a, b in itertools.pairwise(delivered)), "delivered volume fell"
    peak_um = max(p for _, p, _ in seen)
    assert c.plunger_um < peak_um - 50, "the relief backed the plunger off"
    assert math.isclose(c.delivered_nl, (peak_um - start_um) * _bore_nl_per_um(rig), abs_tol=1.0)
    assert abs(c.delivered_nl - 40_000) <= 2_000
    reply = rig.command(GetStatus)
    assert isinstance(reply, Ack)
    status = next(m for m in reversed(rig.replies) if isinstance(m, Status))
    assert status.delivered_nl == c.delivered_nl
    assert rig.samples["delivered_nl"][-1] == c.delivered_nl
    assert min(rig.samples["delivered_nl"]) >= 0


def test_plunger_position_is_the_plant_plunger_in_um_on_every_tick() -> None:
    rig = _rig(plunger_start_mm=12.5)
    assert isinstance(rig.arm(volume_limit_nl=200_000, plan_flags=PlanFlags.RELIEF), Ack)
    assert isinstance(rig.start(), Ack)
    seen = _watch(rig, 1.5)
    assert rig.controller.state == State.INJECTING
    # the controller reads the encoder at each tick, before the plant's next step
    for (_, pos_um, _), (_, _, plant_um) in zip(seen[1:], seen, strict=False):
        assert pos_um == math.floor(plant_um + 1e-6)
    assert seen[-1][1] > 12_500 + 500


def test_incremental_run_armed_after_a_relieved_one_starts_at_zero_and_never_goes_negative() -> None:
    rig = _rig()
    assert isinstance(rig.arm(volume_limit_nl=40_000, plan_flags=PlanFlags.RELIEF), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(10.0, until=rig.state_is(State.DONE))
    rig.run(1.0, until=lambda r: not r.controller.relief_active)
    plan = {"mode": Mode.INCREMENTAL, "increment_nl": 20_000, "volume_limit_nl": 60_000}
    assert isinstance(rig.arm(plan_flags=PlanFlags.RELIEF, **plan), Ack)
    assert rig.controller.delivered_nl == 0
    assert isinstance(rig.start(), Ack)
    delivered: list[int] = []
    for _ in range(3):
        seen = _watch(rig, 10.0, until=rig.state_is(*ENDED))
        seen += _watch(rig, 0.5)
        delivered += [d for d, _, _ in seen]
        if rig.controller.state == State.PAUSED:
            assert isinstance(rig.command(Resume), Ack)
    assert rig.controller.state == State.DONE
    assert min(delivered) >= 0
    assert all(b >= a for a, b in itertools.pairwise(delivered))
    assert abs(rig.controller.delivered_nl - 60_000) <= 2_000
    assert rig.controller.increments_done == 2
