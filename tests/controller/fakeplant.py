"""A tiny deterministic plant for the controller tests: not the real physics package.

Syringe + line as one linear compliance C, cannula as one linear resistance R (Newtonian cement of
viscosity mu through the plan's cannula), so that C dp/dt = Q_plunger - p / R. The plunger follows
the step command exactly (unless stalled), the encoder floors the position to whole counts, and the
transducer adds seeded Gaussian noise before the 4-20 mA loop and the 16-bit ADC. Faults are plain
attributes a test flips: occlusion, leak, open loop, stuck ADC, noise, stall, fluoroscopy line.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from firmware_sim.hal import REFERENCE_RIG, Hardware, MotorCommand, SensorFrame

BORE_M = 7.29e-3
AREA_M2 = math.pi * BORE_M**2 / 4
CANNULA_L_M = 0.125
CANNULA_ID_M = 2.388e-3
GEOMETRY_K = math.pi * (CANNULA_ID_M / 2) ** 4 / (8 * CANNULA_L_M)
"""Hagen-Poiseuille: Q = GEOMETRY_K x dP / mu."""


@dataclass
class FakePlant:
    hw: Hardware = REFERENCE_RIG
    seed: int = 1
    viscosity_pas: float = 110.0
    compliance_m3_pa: float = 1.8e-14
    """tau = R C = 0.31 s at the default viscosity."""
    noise_pa: float = 10_000.0
    position_m: float = 0.010
    pressure_pa: float = 0.0
    viscosity_rate_per_s: float = 0.0
    """Relative viscosity creep d(ln mu)/dt (cement setting)."""
    occluded: bool = False
    leak_factor: float = 1.0
    """Outflow multiplier (a disconnection is a large factor)."""
    open_loop: bool = False
    shorted_loop: bool = False
    stuck_adc: int | None = None
    extra_noise_pa: float = 0.0
    stalled: bool = False
    fluoro: bool = False
    end_switch_stuck: bool = False
    slip: float = 0.0
    """Fraction of the commanded steps the mechanics lose (the encoder sees the real motion)."""
    outflow_m3: float = 0.0
    """Cement pushed out of the cannula so far (what an after-flow measurement integrates)."""
    rng: random.Random = field(init=False)
    max_position_m: float = field(init=False)
    min_position_m: float = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.max_position_m = self.position_m
        self.min_position_m = self.position_m

    @property
    def resistance(self) -> float:
        return self.viscosity_pas / GEOMETRY_K

    def step(self, cmd: MotorCommand, dt: float) -> None:
        dx = 0.0 if self.stalled else cmd.step_rate_hz * self.hw.plunger_m_per_step * dt * (1.0 - self.slip)
        self.position_m += dx
        self.max_position_m = max(self.max_position_m, self.position_m)
        self.min_position_m = min(self.min_position_m, self.position_m)
        q_in = dx / dt * AREA_M2
        q_out = 0.0 if self.occluded else self.pressure_pa / self.resistance * self.leak_factor
        self.outflow_m3 += q_out * dt
        self.pressure_pa += (q_in - q_out) / self.compliance_m3_pa * dt
        self.pressure_pa = max(self.pressure_pa, -90_000.0)
        self.viscosity_pas *= 1.0 + self.viscosity_rate_per_s * dt

    def sense(self) -> SensorFrame:
        hw = self.hw
        if self.stuck_adc is not None:
            adc = self.stuck_adc
        elif self.open_loop:
            adc = hw.adc_from_ma(0.0)
        elif self.shorted_loop:
            adc = hw.adc_from_ma(23.0)
        else:
            sigma = math.hypot(self.noise_pa, self.extra_noise_pa)
            pa = self.pressure_pa + (self.rng.gauss(0.0, sigma) if sigma else 0.0)
            adc = hw.adc_from_ma(hw.ma_from_pa(pa))
        encoder = math.floor(self.position_m / hw.encoder_m_per_count + 1e-9)
        end = self.end_switch_stuck or self.position_m >= hw.travel_m
        return SensorFrame(adc, encoder, end, self.fluoro)
