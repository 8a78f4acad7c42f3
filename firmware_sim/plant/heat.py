"""Heat in the vertebral body: warming of the injected cement, its cure clock, the exotherm.

- Temperature field T per cell, explicit finite volumes on the flow grid. The outside of the body
  (cortex, soft tissue, the canal) is held at the body temperature (37 degC in a patient, the bath
  temperature of a bench phantom). Perfusion is left out (it would cool faster: the peaks are upper
  estimates).
- Cement arrives at the syringe's temperature and cure clock; each cell then keeps its own cure clock
  ``theta`` (seconds at 25 degC) advanced at ``rate_factor(T_cell)``, the Arrhenius factor of
  `cement.py` (x2 from 25 to 37 degC, Nicholas 2007; 1.7-1.9x per 10 degC over 15-37 degC, inside
  the 1.5-2.0x measured for four cements: Arch Orthop Trauma Surg).
- Exotherm: the degree of polymerisation ``alpha(theta)`` is a logistic step centred on the cement's
  set point (its rheometer cure time in reduced time), a few per cent of it wide: the
  auto-accelerating (gel-effect) polymerisation releases most of its heat around setting. Heat of
  reaction per cement volume: 1.8e8 J/m^3 (chosen: MMA polymerises at about 55 kJ/mol, ~550 J/g of
  monomer, a textbook figure; the monomer is about a third of the cement's mass; 1.2 g/mL). With
  the tissue's volumetric heat capacity (2.5e6 J/m^3/K, chosen) that is an adiabatic rise of ~65 K
  in a cell 90 % full: the published centre peaks (Belkoff & Molloy 2003) come out of this and of
  conduction, not of a fitted number.
"""

from __future__ import annotations

import numpy as np

from firmware_sim.plant.body import Body, FloatArray
from firmware_sim.plant.cement import ACTIVATION_ENERGY_J_MOL, KELVIN, R_GAS_J_MOL_K, REFERENCE_TEMPERATURE_C

HEAT_OF_REACTION_J_M3 = 1.8e8
"""Heat released by fully polymerising one m^3 of cement (chosen; see the module docstring)."""
TISSUE_HEAT_CAPACITY_J_M3_K = 2.5e6
"""Volumetric heat capacity of cancellous bone with marrow and cement (chosen, ~2-3.5e6)."""
CEMENT_HEAT_CAPACITY_J_M3_K = 1.6e6
"""PMMA cement's volumetric heat capacity (~1.2 g/mL x ~1.35 J/g/K; chosen)."""
TISSUE_CONDUCTIVITY_W_M_K = 0.5
"""Thermal conductivity of cancellous bone with marrow (chosen, ~0.3-0.6; PMMA ~0.2)."""
EXOTHERM_WIDTH_FRACTION = 0.04
"""Width of the logistic polymerisation step, as a fraction of the set point (chosen: the exotherm
of a 10-15 min cement lasts about a minute or two)."""


def rate_factors(temperature_c: FloatArray) -> FloatArray:
    """Vectorised `cement.rate_factor`: cure speed relative to 25 degC."""
    t_ref = REFERENCE_TEMPERATURE_C + KELVIN
    return np.exp(-ACTIVATION_ENERGY_J_MOL / R_GAS_J_MOL_K * (1.0 / (temperature_c + KELVIN) - 1.0 / t_ref))


def conversion(theta_s: FloatArray, set_point_s: float) -> FloatArray:
    """Degree of polymerisation 0..1 at a reduced time (logistic around the set point)."""
    width = EXOTHERM_WIDTH_FRACTION * set_point_s
    return 1.0 / (1.0 + np.exp(-(theta_s - set_point_s) / width))


class HeatField:
    """Temperature and cure clock of every cell."""

    def __init__(self, body: Body, body_temperature_c: float, set_point_s: float) -> None:
        self.body = body
        self.t_body = body_temperature_c
        self.set_point_s = set_point_s
        self.temperature_c: FloatArray = np.full(body.shape, body_temperature_c)
        self.theta_s: FloatArray = np.zeros(body.shape)
        """Cure clock of the cement in each cell (volume-weighted over what arrived)."""
        self.peak_c: FloatArray = self.temperature_c.copy()
        self._inside = body.inside
        h = body.h_m
        self._diff = TISSUE_CONDUCTIVITY_W_M_K / TISSUE_HEAT_CAPACITY_J_M3_K / (h * h)
        self._max_dt = 0.9 / (6.0 * self._diff)

    def receive(self, s_old: FloatArray, s_new: FloatArray, theta_in: float, temperature_in_c: float) -> None:
        """Cement of the syringe's cure clock and temperature arrived where s rose."""
        ds = s_new - s_old
        got = ds > 0.0
        if not got.any():
            return
        self.theta_s[got] = (self.theta_s[got] * s_old[got] + theta_in * ds[got]) / s_new[got]
        # the cement brings its heat capacity, the marrow it displaces takes the same volume's away
        frac = ds[got] * self.body.porosity[got] * CEMENT_HEAT_CAPACITY_J_M3_K / TISSUE_HEAT_CAPACITY_J_M3_K
        self.temperature_c[got] += (temperature_in_c - self.temperature_c[got]) * np.minimum(frac, 1.0)

    def advance(self, dt_s: float, s: FloatArray) -> None:
        """Cure, exotherm and conduction over `dt_s` (sub-stepped for stability)."""
        steps = max(1, int(np.ceil(dt_s / self._max_dt)))
        dt = dt_s / steps
        cement = (s > 0.0) & self._inside
        for _ in range(steps):
            t = self.temperature_c
            if cement.any():
                theta_new = self.theta_s + rate_factors(t) * dt * cement
                alpha_old = conversion(self.theta_s, self.set_point_s)
                alpha_new = conversion(theta_new, self.set_point_s)
                self.theta_s = np.where(cement, theta_new, self.theta_s)
                heat = HEAT_OF_REACTION_J_M3 * s * self.body.porosity * (alpha_new - alpha_old) * cement
                t = t + heat / TISSUE_HEAT_CAPACITY_J_M3_K
            padded = np.pad(np.where(self._inside, t, self.t_body), 1, constant_values=self.t_body)
            outside = ~self._inside
            padded[1:-1, 1:-1, 1:-1][outside] = self.t_body
            lap = (
                padded[2:, 1:-1, 1:-1]
                + padded[:-2, 1:-1, 1:-1]
                + padded[1:-1, 2:, 1:-1]
                + padded[1:-1, :-2, 1:-1]
                + padded[1:-1, 1:-1, 2:]
                + padded[1:-1, 1:-1, :-2]
                - 6.0 * padded[1:-1, 1:-1, 1:-1]
            )
            t = t + dt * self._diff * lap
            self.temperature_c = np.where(self._inside, t, self.t_body)
        self.peak_c = np.maximum(self.peak_c, self.temperature_c)
