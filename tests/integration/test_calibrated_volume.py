"""The exact integer volume rules (SPEC §5.15, §8.5) with a selected syringe and a volume calibration
in force, on the real plant, over the wire: delivered volume is the high-water mark of the plunger's
travel since ARM times the calibrated volume per count A = round(A0 x k / 10^6), rounded down, and a
VOLUME_LIMIT stop rests on its target within SPEC §8.5's accuracy, whatever the library syringe and
the factor."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.controller.commands import corrected_fl_per_count, fl_per_count
from firmware_sim.hal import REFERENCE_RIG
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from host.syringes import LIBRARY, SyringeSpec
from protocol import Ack, CalibrateVolume, GetStatus, SetSyringe, State, Status, StopReason

UTC = 1_780_000_000


def _status(rig: VirtualRig) -> Status:
    answer = rig.command(GetStatus)
    assert isinstance(answer, Ack)
    return next(m for m in reversed(rig.replies) if isinstance(m, Status) and m.cmd_id == answer.cmd_id)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.sampled_from([s for s in LIBRARY if s.bore_mm <= 12.1]),  # the plant's bore range: 3-30 mm
    factor_ppm=st.integers(900_000, 1_100_000),
    flow_nl_s=st.sampled_from([20_000, 100_000]),
    target_nl=st.integers(10_000, 60_000),
)
def test_delivered_volume_is_the_calibrated_integer_product(
    spec: SyringeSpec, factor_ppm: int, flow_nl_s: int, target_nl: int
) -> None:
    rig = VirtualRig(PlantConfig.model_validate({"syringe_bore_mm": spec.bore_mm}))
    rig.connect()
    wire = spec.to_wire(1)
    assert isinstance(rig.command(lambda i: SetSyringe(i, *dataclasses.astuple(wire)[1:])), Ack)
    # a weighing that sets the factor exactly: k = mass x 10^6 / (density x nominal), density 10^6 mg/L
    assert isinstance(rig.command(lambda i: CalibrateVolume(i, 1_000_000, factor_ppm, 1_000_000, UTC)), Ack)
    start_um = _status(rig).plunger_um
    assert isinstance(
        rig.arm(syringe_bore_um=wire.bore_um, flow_nl_s=flow_nl_s, volume_limit_nl=target_nl), Ack
    )
    assert isinstance(rig.start(), Ack)
    assert rig.run(20.0, until=rig.state_is(State.DONE, State.STOPPED))
    assert rig.stop_events()[-1].reason == StopReason.VOLUME_LIMIT
    rig.run(0.3)  # at rest, and every sample of the braking ramp flushed to the host
    status = _status(rig)
    a = corrected_fl_per_count(
        fl_per_count(REFERENCE_RIG, math.pi * (wire.bore_um * 1e-6) ** 2 / 4), factor_ppm
    )
    high_um = int(rig.samples["plunger_um"].max())  # every 1 kHz sample: the furthest point since ARM
    assert status.delivered_nl == (high_um - start_um) * a // 1_000_000, "H x A / 10^6, rounded down"
    assert target_nl <= status.delivered_nl <= target_nl + max(target_nl // 100, 2_000), "SPEC §8.5 accuracy"
