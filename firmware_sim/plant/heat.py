"""Heat in the vertebral body: warming of the injected cement, its cure clock, the exotherm.

- Temperature field T per cell, explicit finite volumes on a window of the output grid
  (`spatial_outputs.OutputGrid`): the body, its cortical shell and end plates, `HEAT_PAD_MM` of the
  soft tissue around it, and the spinal canal behind the posterior wall, each with its own
  conductivity and heat capacity (`THERMAL`). The window's outer faces are held at the body
  temperature (37 degC in a patient, the bath temperature of a bench phantom). The canal is not a heat
  sink: heat crosses the posterior wall into the canal's contents and warms them, which is what a
  thermocouple in the canal of a cadaver measures (Belkoff & Molloy 2003). Perfusion is left out
  (it would cool faster, most of all in the canal's venous plexus in vivo: the peaks are upper
  estimates, to be compared with the cadaver).
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

import math

import numpy as np

from firmware_sim.plant.body import Body, FloatArray
from firmware_sim.plant.cement import ACTIVATION_ENERGY_J_MOL, KELVIN, R_GAS_J_MOL_K, REFERENCE_TEMPERATURE_C
from firmware_sim.plant.spatial_outputs import OutputLayout, Tissue

HEAT_OF_REACTION_J_M3 = 1.8e8
"""Heat released by fully polymerising one m^3 of cement (chosen; see the module docstring)."""
TISSUE_HEAT_CAPACITY_J_M3_K = 2.5e6
"""Volumetric heat capacity of cancellous bone with marrow and cement (chosen, ~2-3.5e6)."""
CEMENT_HEAT_CAPACITY_J_M3_K = 1.6e6
"""PMMA cement's volumetric heat capacity (~1.2 g/mL x ~1.35 J/g/K; chosen)."""
TISSUE_CONDUCTIVITY_W_M_K = 0.5
"""Thermal conductivity of cancellous bone with marrow (chosen, ~0.3-0.6; PMMA ~0.2)."""
CORTEX_CONDUCTIVITY_W_M_K = 0.6
CORTEX_HEAT_CAPACITY_J_M3_K = 2.4e6
"""Cortical bone: ~0.3-0.7 W/m/K, ~1.9 g/mL x ~1.3 J/g/K (chosen within textbook ranges)."""
SOFT_TISSUE_CONDUCTIVITY_W_M_K = 0.5
SOFT_TISSUE_HEAT_CAPACITY_J_M3_K = 3.6e6
"""Muscle, disc, fat around the body (~0.2-0.55 W/m/K, ~3-3.8e6 J/m^3/K; chosen)."""
CANAL_CONDUCTIVITY_W_M_K = 0.6
CANAL_HEAT_CAPACITY_J_M3_K = 4.0e6
"""Cerebrospinal fluid, dura and cord: water-like (chosen)."""
HEAT_PAD_MM = 4.0
"""Soft tissue kept around the body in the heat window (its outer faces at the body temperature):
the perfused tissue a few mm out is taken as the heat sink (chosen)."""
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


THERMAL: dict[Tissue, tuple[float, float]] = {
    Tissue.OUTSIDE: (SOFT_TISSUE_CONDUCTIVITY_W_M_K, SOFT_TISSUE_HEAT_CAPACITY_J_M3_K),
    Tissue.CANCELLOUS: (TISSUE_CONDUCTIVITY_W_M_K, TISSUE_HEAT_CAPACITY_J_M3_K),
    Tissue.CORTICAL_SHELL: (CORTEX_CONDUCTIVITY_W_M_K, CORTEX_HEAT_CAPACITY_J_M3_K),
    Tissue.ENDPLATE: (CORTEX_CONDUCTIVITY_W_M_K, CORTEX_HEAT_CAPACITY_J_M3_K),
    Tissue.POSTERIOR_WALL: (CORTEX_CONDUCTIVITY_W_M_K, CORTEX_HEAT_CAPACITY_J_M3_K),
    Tissue.VEIN: (SOFT_TISSUE_CONDUCTIVITY_W_M_K, SOFT_TISSUE_HEAT_CAPACITY_J_M3_K),
    Tissue.CANAL: (CANAL_CONDUCTIVITY_W_M_K, CANAL_HEAT_CAPACITY_J_M3_K),
    Tissue.DEFECT: (SOFT_TISSUE_CONDUCTIVITY_W_M_K, SOFT_TISSUE_HEAT_CAPACITY_J_M3_K),
    Tissue.CLEFT: (TISSUE_CONDUCTIVITY_W_M_K, TISSUE_HEAT_CAPACITY_J_M3_K),
    Tissue.TUMOUR: (TISSUE_CONDUCTIVITY_W_M_K, TISSUE_HEAT_CAPACITY_J_M3_K),
}
"""(conductivity W/m/K, volumetric heat capacity J/m^3/K) of each tissue."""


class HeatField:
    """Temperature of the heat window and the cure clock of every cell of the body."""

    def __init__(
        self, body: Body, body_temperature_c: float, set_point_s: float, layout: OutputLayout | None = None
    ) -> None:
        self.body = body
        self.t_body = body_temperature_c
        self.set_point_s = set_point_s
        layout = OutputLayout(body) if layout is None else layout
        grid = layout.grid
        h_mm = grid.spacing_mm
        pad = math.ceil(HEAT_PAD_MM / h_mm)
        ox, oy, oz = grid.body_offset
        nx, ny, nz = body.shape
        canal_y = np.nonzero((layout.labels == Tissue.CANAL).any(axis=(0, 2)))[0]
        back = int(canal_y.max()) + 1 + pad if canal_y.size else oy + ny + 1 + pad
        self.window = (
            slice(ox - pad, ox + nx + pad),
            slice(oy - pad, min(back, grid.shape[1])),
            slice(oz - pad, oz + nz + pad),
        )
        """Where the heat window lies in the output grid."""
        labels = layout.labels[self.window]
        self.labels = labels
        self._flow = (slice(pad, pad + nx), slice(pad, pad + ny), slice(pad, pad + nz))
        """Where the body's flow grid lies in the window."""
        k = np.zeros(labels.shape)
        c = np.zeros(labels.shape)
        for tissue, (kt, ct) in THERMAL.items():
            k[labels == tissue] = kt
            c[labels == tissue] = ct
        h = body.h_m
        kp = np.pad(k, 1, mode="edge")
        # face conductances / h^2 (harmonic means; the window's outer faces see a ghost at t_body)
        self._gx = (
            2.0 * kp[1:, 1:-1, 1:-1] * kp[:-1, 1:-1, 1:-1] / (kp[1:, 1:-1, 1:-1] + kp[:-1, 1:-1, 1:-1]) / h**2
        )
        self._gy = (
            2.0 * kp[1:-1, 1:, 1:-1] * kp[1:-1, :-1, 1:-1] / (kp[1:-1, 1:, 1:-1] + kp[1:-1, :-1, 1:-1]) / h**2
        )
        self._gz = (
            2.0 * kp[1:-1, 1:-1, 1:] * kp[1:-1, 1:-1, :-1] / (kp[1:-1, 1:-1, 1:] + kp[1:-1, 1:-1, :-1]) / h**2
        )
        self._inv_c = 1.0 / c
        total = (
            self._gx[1:]
            + self._gx[:-1]
            + self._gy[:, 1:]
            + self._gy[:, :-1]
            + self._gz[:, :, 1:]
            + self._gz[:, :, :-1]
        )
        self._max_dt = 0.9 / float((total * self._inv_c).max())
        self.window_temperature_c: FloatArray = np.full(labels.shape, body_temperature_c)
        """Temperature of every cell of the window."""
        self.theta_s: FloatArray = np.zeros(body.shape)
        """Cure clock of the cement in each cell (volume-weighted over what arrived)."""
        self.peak_c: FloatArray = np.full(body.shape, body_temperature_c)
        """Highest temperature each cell of the body has reached."""
        self.window_peak_c: FloatArray = self.window_temperature_c.copy()
        self._inside = body.inside
        wall = labels == Tissue.POSTERIOR_WALL
        behind = np.zeros_like(wall)
        behind[:, :-1] = labels[:, 1:] == Tissue.CANAL
        self._wall_face = np.nonzero(wall & behind)
        """Posterior-wall cells with the canal right behind them: where a thermocouple 'at the spinal
        canal' sits, on the canal face of the wall."""
        self._canal_face = (self._wall_face[0], self._wall_face[1] + 1, self._wall_face[2])
        self.canal_peak_c = body_temperature_c if self._wall_face[0].size else math.nan
        """Highest temperature reached on the canal face of the posterior wall (the mean of the wall
        cell and the canal cell behind it: equal conductivities, so the face temperature of a linear
        profile); nan if the grid has no canal behind the wall."""
        self._quiet = True
        """Nothing has moved the field off the body temperature yet: nothing to compute."""

    @property
    def temperature_c(self) -> FloatArray:
        """Temperature of the flow grid's cells (a view into the window)."""
        return self.window_temperature_c[self._flow]

    def receive(self, s_old: FloatArray, s_new: FloatArray, theta_in: float, temperature_in_c: float) -> None:
        """Cement of the syringe's cure clock and temperature arrived where s rose."""
        ds = s_new - s_old
        got = ds > 0.0
        if not got.any():
            return
        self.theta_s[got] = (self.theta_s[got] * s_old[got] + theta_in * ds[got]) / s_new[got]
        # the cement brings its heat capacity, the marrow it displaces takes the same volume's away
        frac = ds[got] * self.body.porosity[got] * CEMENT_HEAT_CAPACITY_J_M3_K / TISSUE_HEAT_CAPACITY_J_M3_K
        t = self.temperature_c
        t[got] += (temperature_in_c - t[got]) * np.minimum(frac, 1.0)
        self._quiet = False

    def advance(self, dt_s: float, s: FloatArray) -> None:
        """Cure, exotherm and conduction over `dt_s` (sub-stepped for stability)."""
        if self._quiet:
            return
        steps = max(1, int(np.ceil(dt_s / self._max_dt)))
        dt = dt_s / steps
        cement = (s > 0.0) & self._inside
        any_cement = bool(cement.any())
        gx, gy, gz = self._gx, self._gy, self._gz
        for _ in range(steps):
            if any_cement:
                theta_new = self.theta_s + rate_factors(self.temperature_c) * dt * cement
                alpha_old = conversion(self.theta_s, self.set_point_s)
                alpha_new = conversion(theta_new, self.set_point_s)
                self.theta_s = np.where(cement, theta_new, self.theta_s)
                heat = HEAT_OF_REACTION_J_M3 * s * self.body.porosity * (alpha_new - alpha_old) * cement
                self.temperature_c[...] += heat / TISSUE_HEAT_CAPACITY_J_M3_K
            t = self.window_temperature_c
            tp = np.pad(t, 1, constant_values=self.t_body)
            fx = gx * (tp[1:, 1:-1, 1:-1] - tp[:-1, 1:-1, 1:-1])
            fy = gy * (tp[1:-1, 1:, 1:-1] - tp[1:-1, :-1, 1:-1])
            fz = gz * (tp[1:-1, 1:-1, 1:] - tp[1:-1, 1:-1, :-1])
            div = fx[1:] - fx[:-1] + fy[:, 1:] - fy[:, :-1] + fz[:, :, 1:] - fz[:, :, :-1]
            t += dt * div * self._inv_c
        np.maximum(self.window_peak_c, self.window_temperature_c, out=self.window_peak_c)
        if self._wall_face[0].size:
            t = self.window_temperature_c
            face = 0.5 * (t[self._wall_face] + t[self._canal_face])
            self.canal_peak_c = max(self.canal_peak_c, float(face.max()))
        np.maximum(self.peak_c, self.temperature_c, out=self.peak_c)
