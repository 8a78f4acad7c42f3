"""`SpatialVertebra`: the vertebral body as a place, coupled to the plant.

The plant calls `feed` every 10 ms with the cement it delivered into the body, the tip flow and the
syringe cement's state; every `flow_update_s` (1 s) the front is advanced (`darcy.py`) and the events
checked, with the fluxes of a pressure field solved every `solve_update_s` (2 s) or at once when a
leak path's exit cell has filled; every `heat_update_s` (2 s) the temperature and cure fields
(`heat.py`). Back to the plant go the bone's resistance at the tip (so the syringe pressure the
controller reads comes out of the same model) and the cement that left through the leak paths.

Why these rates. At 3 mL/min a 2 mm grid fills ~7 cells a second out of a front of ~50-150 cells:
moving the front every second keeps the imaging work's cement field and the event times to a
second; the flux pattern that moves it changes slowly (a solve every 2 s lets the front gain 10-28 %
of its cells between solves; the overflow of a cell that fills in between goes on downhill in the
last field), and the bone's resistance is 2-5 % of the syringe pressure, so a 2 s lag moves the
syringe pressure by well under the sensor noise. Against a solve every second the validation
predictions moved by < 1 % (docs/simulator.md); the solves are most of the body's cost. A vein must
not open a solve late, hence the solve when an exit cell fills. Heat relaxes across a 2 mm cell in
~20 s and the exotherm rises over ~15 s at 37 degC: every 2 s is enough (and stable in one explicit
step). Nothing is solved while no cement moves (the field is unchanged), only the heat.

Everything here is ground truth for tests, HIL reports and the imaging work: none of it reaches the
controller, which sees only the syringe pressure and the encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firmware_sim.plant.body import Body, FloatArray, build_body
from firmware_sim.plant.cement import CementProfile
from firmware_sim.plant.darcy import FULL, DarcyFlow, Solution
from firmware_sim.plant.heat import HeatField
from firmware_sim.plant.spatial_config import SpatialConfig
from firmware_sim.plant.spatial_outputs import POSTERIOR_QUARTER, OutputLayout, SpatialEvents, SpatialFrame
from firmware_sim.plant.spatial_truth import LeakTruth, SpatialTruth

__all__ = ["POSTERIOR_QUARTER", "Snapshot", "SpatialVertebra"]

TIME_SLACK_S = 1e-6
"""Tolerance on accumulated float time, so a 1 s update fires on the tick that reaches 1 s."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The cement fraction per cell at one moment (float32, shape of the grid)."""

    t_s: float
    cement_fraction: np.ndarray


class SpatialVertebra:
    """Geometry, flow, heat and the outputs of one spatial vertebral body."""

    def __init__(
        self,
        config: SpatialConfig,
        profile: CementProfile,
        *,
        resting_pressure_pa: float,
        drainage_resistance_pa_s_m3: float,
        source_radius_m: float,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.profile = profile
        self.body: Body = build_body(config, resting_pressure_pa, np.random.default_rng(seed))
        self.flow = DarcyFlow(
            body=self.body,
            drainage_resistance_pa_s_m3=drainage_resistance_pa_s_m3,
            resting_pressure_pa=resting_pressure_pa,
            source_radius_m=source_radius_m,
        )
        self._layout = OutputLayout(self.body)
        self.heat = HeatField(self.body, config.body_temperature_c, profile.cure_time_25c_s, self._layout)
        self._p_rest = resting_pressure_pa
        self._mu_m = config.marrow_viscosity_pa_s
        self._shear_factor = config.pore_shear_rate_s ** (profile.flow_index_n - 1.0)
        self._t = 0.0
        self._flow_acc = 0.0
        self._heat_acc = 0.0
        self._volume_acc = 0.0
        self._q = 0.0
        self._theta_in = 0.0
        self._temp_in = 22.0
        self._last_snapshot = -np.inf
        self.snapshots: list[Snapshot] = []
        self.solution: Solution | None = None
        self._resistance = 0.0
        self._marrow_slope = 0.0
        self.solve_count = 0
        self._solved_at = -math.inf
        self._exits_at_solve: frozenset[str] = frozenset()
        self._quarter_t: float | None = None
        self._onset_t: dict[str, float] = {}

    # -- coupling -------------------------------------------------------------------------------
    def viscosity(self, theta_s: float | FloatArray) -> FloatArray:
        """Apparent viscosity of the cement in the bone (Pa s) at one fixed pore shear rate."""
        p = self.profile
        theta = np.maximum(np.asarray(theta_s, dtype=float), 0.0)
        theta_g = p.gel_time_25c_s
        frac = np.minimum(theta / theta_g, 1.0 - 1e-12)
        k = np.minimum(p.k0_pa_sn / (1.0 - frac) ** p.gel_exponent, p.k_set_pa_sn)
        return np.asarray(k * self._shear_factor, dtype=float)

    def _cell_viscosity(self) -> FloatArray:
        theta = np.where(self.flow.s > 0.0, self.heat.theta_s, self._theta_in)
        return self.viscosity(theta)

    def start(self, theta_in_s: float, temperature_in_c: float) -> None:
        """First solve, before any flow, so the plant has the bone's resistance from tick one."""
        self._theta_in = theta_in_s
        self._temp_in = temperature_in_c
        self._solve()

    def feed(
        self, dt_s: float, volume_m3: float, q_m3_s: float, theta_in_s: float, temperature_in_c: float
    ) -> dict[str, float]:
        """Advance by `dt_s` with `volume_m3` more cement into the body; returns the leak volumes."""
        self._t += dt_s
        self._flow_acc += dt_s
        self._heat_acc += dt_s
        self._volume_acc += max(volume_m3, 0.0)
        self._q = q_m3_s
        self._theta_in = theta_in_s
        self._temp_in = temperature_in_c
        leaks: dict[str, float] = {}
        # the slack: 100 steps of 0.01 s sum to 0.99999..., which must count as the second
        if self._flow_acc >= self.config.flow_update_s - TIME_SLACK_S:
            if self._volume_acc > 0.0:
                leaks = self._move(self._volume_acc)
                self._volume_acc = 0.0
                if self._t - self._last_snapshot >= self.config.snapshot_every_s - TIME_SLACK_S:
                    self._snapshot()
            self._flow_acc = 0.0
        if self._heat_acc >= self.config.heat_update_s - TIME_SLACK_S:
            self.heat.advance(self._heat_acc, self.flow.s)
            self._heat_acc = 0.0
        return leaks

    def _move(self, volume_m3: float) -> dict[str, float]:
        if self._solve_due():
            self._solve(max(self._q, volume_m3 / max(self._flow_acc, 1e-9)))
        assert self.solution is not None
        s_old = self.flow.s.copy()
        leaks = self.flow.advance(volume_m3, self.solution)
        self.heat.receive(s_old, self.flow.s, self._theta_in, self._temp_in)
        for name, v in leaks.items():
            if v > 0.0 and name not in self._onset_t:
                self._onset_t[name] = self._t
        if self._quarter_t is None and self.front_ap_fraction() >= POSTERIOR_QUARTER:
            self._quarter_t = self._t
        return leaks

    def _solve_due(self) -> bool:
        """A new pressure field: every `solve_update_s`, or at once when a leak path's exit cell has
        filled since the last solve (its outlet may now carry cement)."""
        if self.solution is None or self._t - self._solved_at >= self.config.solve_update_s - TIME_SLACK_S:
            return True
        return self._full_exits() != self._exits_at_solve

    def _full_exits(self) -> frozenset[str]:
        s = self.flow.s
        return frozenset(o.name for o in self.body.outlets if s[o.cell] >= FULL)

    def _solve(self, q_m3_s: float = 0.0) -> None:
        self._solved_at = self._t
        self._exits_at_solve = self._full_exits()
        mu = self._cell_viscosity()
        sol = self.flow.solve(q_m3_s, mu, self._mu_m)
        self.solution = sol
        self.solve_count += 1
        self._resistance = max(sol.tip_pressure_pa - self._p_rest, 0.0) / sol.q_m3_s
        self._marrow_slope = max(sol.marrow_pressure_pa - self._p_rest, 0.0) / sol.q_m3_s

    def _snapshot(self) -> None:
        self._last_snapshot = self._t
        self.snapshots.append(Snapshot(self._t, self.flow.s.astype(np.float32)))

    @property
    def resistance_pa_s_m3(self) -> float:
        """Tip pressure above rest per unit flow, from the last solve (linear: Darcy, no shear thinning)."""
        return self._resistance

    def marrow_pressure(self, q_m3_s: float) -> float:
        """Mean marrow pressure (what a needle in the body reads) at the tip flow `q_m3_s`."""
        return self._p_rest + self._marrow_slope * max(q_m3_s, 0.0)

    # -- outputs --------------------------------------------------------------------------------
    def frame(self) -> SpatialFrame:
        """The ground truth now on the output grid, with the events so far (`spatial_outputs.py`).

        The stable API for the imaging work and HIL: labels, bone fraction, cement fraction per cell,
        temperature, the front's antero-posterior depth, each leak path's cells and volume, and the
        device times of the posterior-quarter crossing and of each leak's onset. Copies throughout."""
        return self._layout.frame(
            self._t,
            self.flow.s,
            self.heat.window,
            self.heat.window_temperature_c,
            self.heat.t_body,
            self.front_ap_fraction(),
            self.flow.leaked_m3,
            self.events,
        )

    def truth(self) -> SpatialTruth:
        """The ground truth in a few numbers (what HIL expectations are stated on; `spatial_truth.py`)."""
        return SpatialTruth(
            t_s=self._t,
            front_ap_fraction=self.front_ap_fraction(),
            posterior_quarter_t_s=self._quarter_t,
            peak_temperature_c=float(self.heat.peak_c.max()),
            canal_peak_c=self.heat.canal_peak_c,
            leaks={
                name: LeakTruth(v * 1e6, self._onset_t.get(name)) for name, v in self.flow.leaked_m3.items()
            },
        )

    @property
    def events(self) -> SpatialEvents:
        """Ground-truth events so far, in device time (resolution: `flow_update_s`)."""
        return SpatialEvents(self._quarter_t, dict(self._onset_t))

    @property
    def cement_fraction(self) -> FloatArray:
        """Fraction of each cell's pore volume that holds cement (a copy)."""
        return self.flow.s.copy()

    @property
    def temperature_c(self) -> FloatArray:
        return self.heat.temperature_c.copy()

    @property
    def peak_temperature_c(self) -> FloatArray:
        return self.heat.peak_c.copy()

    @property
    def leak_volumes_m3(self) -> dict[str, float]:
        """Cement that left the body through each outlet, by outlet name."""
        return dict(self.flow.leaked_m3)

    @property
    def cement_volume_m3(self) -> float:
        return self.flow.cement_volume_m3

    def front_ap_fraction(self) -> float:
        """How far back the cement reaches, as a fraction of the body's depth on the grid (0 anterior
        cortex, 1 posterior wall; 0 when there is none): the largest ``(j + s) / ny`` over the cells,
        a cell a fraction s full being taken as filled from its anterior face (a sharp front), so the
        depth moves continuously rather than a cell (1/16 of the default body) at a time."""
        s = self.flow.s
        cement = s > 0.0
        if not cement.any():
            return 0.0
        ny = int(s.shape[1])
        depth = np.arange(ny, dtype=float)[None, :, None] + s
        return float(depth[cement].max()) / ny

    @property
    def reached_posterior_quarter(self) -> bool:
        return self.front_ap_fraction() >= POSTERIOR_QUARTER

    def compactness(self, threshold: float = 0.5) -> float:
        """Exposed faces of the filled cells over those of a ball of the same cell count: ~1.5 for a
        compact blob on a cubic grid, larger when the cement fingers."""
        filled = self.flow.s >= threshold
        n = int(filled.sum())
        if n == 0:
            return 0.0
        padded = np.pad(filled, 1)
        faces = sum(int(np.count_nonzero(np.diff(padded, axis=a))) for a in range(3))
        return float(faces) / (4.836 * math.pow(n, 2.0 / 3.0))
