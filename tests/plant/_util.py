"""Helpers shared by the plant tests: drive the plunger at a flow, run for a while."""

from __future__ import annotations

from firmware_sim.hal import MotorCommand
from firmware_sim.plant import Plant

ML_MIN = 1e-6 / 60.0
DT = 1e-3


def command_for(plant: Plant, flow_m3_s: float) -> MotorCommand:
    """The step rate that sweeps `flow_m3_s` with this plant's syringe."""
    return MotorCommand(flow_m3_s / (plant.bore_area_m2 * plant.hardware.plunger_m_per_step))


def run(plant: Plant, cmd: MotorCommand, seconds: float, dt: float = DT) -> None:
    for _ in range(round(seconds / dt)):
        plant.step(cmd, dt)
