"""Cement displacing marrow through the vertebral body: Darcy flow of both fluids on the grid.

Scheme: IMPES with a sharp interface (implicit pressure, explicit saturation).

1. Pressure. Both fluids are incompressible and obey Darcy's law with the cell's permeability and
   the viscosity of what fills it: a cell a fraction s full of cement (the front crosses it) has the
   series mobility ``k / (s mu_c + (1 - s) mu_m)``; faces take the harmonic mean. Cement enters the tip
   cell at the tip flow Q; fluid leaves through the outlets (`body.Outlet`), each a Hagen-Poiseuille
   pipe to its outside pressure. Marrow drains through the veins with the calibrated drainage
   resistance of the lumped model (their conductances share 1/R_drain by d^4), so the intravertebral
   pressure keeps Reidy's and Li's level; cement goes into a vein only once the cell at its exit is
   full of cement and its pressure exceeds the venous pressure by the opening pressure, and then at
   ``(p - p_out - p_open) / (mu_c 8 L / (pi r^4))``: the leak depends on the cement's viscosity while
   the pressure that drives it (the marrow's, set by the drainage) does not (Habib 2010). The linear
   system, on the body's cells only, is solved by Jacobi-preconditioned conjugate gradients with a
   scipy CSR matrix whose sparsity is laid out once (each solve refills its values), warm started
   from the last solution; an outlet whose pressure falls below its opening closes (check
   valve) and the system is solved again.
2. Saturation. The displacement is piston-like: the cement flux out of a full cell into a neighbour
   that is not full fills that neighbour; a cell that overflows passes the excess on to its own
   downstream neighbours. Volume is booked exactly: what the plant delivered to the bone in the
   interval is split between the leaks and the front by the fluxes of the solve.

Why the viscosity ratio decides the shape. With M = mu_c / mu_m >> 1 the pressure drop lies in the
cement, so the front cells nearest the tip (the shortest path through cement) get the most flux: the
front stays compact and rounds off. With M < 1 the drop lies in the marrow ahead of the front, so
the cells that stick out furthest get the most flux and grow faster still: fingers (the Saffman-Taylor
mechanism, seeded by the permeability scatter). No rule about shape is written into the scheme.

Near the tip the field is singular (a point source); the tip cell carries the analytic spherical
drop from the cannula bore r0 to the cell's equivalent radius r_eq = 0.315 h (the radius at which a
continuum point source has the pressure the grid gives its source cell: Peaceman's well index in 3D),
so the tip pressure does not depend on the grid size (bench/spatial_convergence.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import sparse

from firmware_sim.plant.body import Body, FloatArray

FULL = 1.0 - 1e-9
"""A cell whose cement fraction reaches this is full: its outflow is cement."""
CG_RTOL = 1e-5
CG_MAX_ITER = 2000
LATTICE_GREEN_ORIGIN = 0.2527310098
"""Green's function of the 7-point Laplacian at its source (Watson's integral / 6): a unit source in
a cell of an infinite grid raises that cell by this / (k h / mu). The continuum point source reaches
the same pressure at r_eq = h / (4 pi x this) = 0.315 h: the tip cell's equivalent radius (Peaceman's
argument, in 3D)."""
NOMINAL_Q_M3_S = 3e-6 / 60.0
"""Flow at which the bone's resistance is evaluated while nothing flows (3 mL/min)."""


@dataclass
class Solution:
    """One pressure solve: the field, the flows it implies, and the tip pressure."""

    q_m3_s: float
    pressure_pa: FloatArray
    tip_pressure_pa: float
    front_inflow: dict[int, float]
    """Flat cell index -> cement flow into that not-yet-full cell (m^3/s)."""
    leak_flow: dict[str, float]
    """Outlet name -> cement flow out of the body through it (m^3/s)."""
    marrow_pressure_pa: float
    iterations: int
    open_outlets: frozenset[str] = field(default_factory=frozenset)


class DarcyFlow:
    """The cement fraction per cell and the pressure field that moves it."""

    def __init__(
        self,
        body: Body,
        drainage_resistance_pa_s_m3: float,
        resting_pressure_pa: float,
        source_radius_m: float,
    ) -> None:
        self.body = body
        self._r0 = source_radius_m
        """Radius at which cement enters the bone: the cannula bore."""
        self.s: FloatArray = np.zeros(body.shape)
        """Fraction of each cell's pore volume that holds cement."""
        self._pore = body.pore_volume_m3
        self._p_rest = resting_pressure_pa
        self._p: FloatArray = np.full(body.shape, resting_pressure_pa)
        self._flat_tip = int(np.ravel_multi_index(body.tip, body.shape))
        veins = [o for o in body.outlets if o.kind != "cortical"]
        weights = [o.diameter_m**4 for o in veins]
        total = sum(weights)
        self._marrow_g: dict[str, float] = {
            o.name: w / total / drainage_resistance_pa_s_m3 for o, w in zip(veins, weights, strict=True)
        }
        self.leaked_m3: dict[str, float] = {o.name: 0.0 for o in body.outlets}
        k_tip = (body.k_xy_m2[body.tip] ** 2 * body.k_z_m2[body.tip]) ** (1.0 / 3.0)
        self._k_tip = float(k_tip)
        self._r_eq = body.h_m / (4.0 * math.pi * LATTICE_GREEN_ORIGIN)
        self._q_last = NOMINAL_Q_M3_S
        self._csr_layout()

    # -- the linear system ----------------------------------------------------------------------
    def _mobility(self, mu_c: FloatArray, mu_m: float) -> tuple[FloatArray, FloatArray]:
        resist = self.s * mu_c + (1.0 - self.s) * mu_m
        return self.body.k_xy_m2 / resist, self.body.k_z_m2 / resist

    def _transmissibilities(self, lam_xy: FloatArray, lam_z: FloatArray) -> list[FloatArray]:
        h = self.body.h_m

        def harmonic(a: FloatArray, b: FloatArray) -> FloatArray:
            total = a + b
            return np.where(total > 0.0, 2.0 * a * b / np.where(total > 0.0, total, 1.0), 0.0) * h

        return [
            harmonic(lam_xy[:-1], lam_xy[1:]),
            harmonic(lam_xy[:, :-1], lam_xy[:, 1:]),
            harmonic(lam_z[:, :, :-1], lam_z[:, :, 1:]),
        ]

    def _csr_layout(self) -> None:
        """The sparsity of the pressure system on the body's cells, built once: every solve only
        refills its values (the faces' transmissibilities and the outlets' conductances)."""
        body = self.body
        cells = np.flatnonzero(body.inside.reshape(-1))
        n = cells.size
        pos = np.full(body.inside.size, -1, dtype=np.int64)
        pos[cells] = np.arange(n)
        pos3 = pos.reshape(body.shape)
        self._cells = cells
        self._pos = pos3
        lo_idx: list[npt.NDArray[np.int64]] = []
        hi_idx: list[npt.NDArray[np.int64]] = []
        self._face_sel: list[npt.NDArray[np.int64]] = []
        for axis in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis] = slice(None, -1)
            hi[axis] = slice(1, None)
            a = pos3[tuple(lo)].reshape(-1)
            b = pos3[tuple(hi)].reshape(-1)
            both = np.flatnonzero((a >= 0) & (b >= 0))
            self._face_sel.append(both)
            lo_idx.append(a[both])
            hi_idx.append(b[both])
        self._face_a = np.concatenate(lo_idx)
        self._face_b = np.concatenate(hi_idx)
        diag = np.arange(n)
        rows = np.concatenate([self._face_a, self._face_b, diag])
        cols = np.concatenate([self._face_b, self._face_a, diag])
        order = np.arange(rows.size, dtype=float) + 1.0
        pattern = sparse.csr_matrix((order, (rows, cols)), shape=(n, n))
        self._csr_perm = pattern.data.astype(np.int64) - 1
        """CSR data order -> position in [off-diagonal a-b, off-diagonal b-a, diagonal]."""
        self._csr = pattern
        self._n_faces = self._face_a.size

    def _matrix(self, t: list[FloatArray], g: FloatArray) -> tuple[sparse.csr_matrix, FloatArray]:
        """The pressure system's matrix on the body's cells and its diagonal."""
        faces = np.concatenate([ti.reshape(-1)[sel] for ti, sel in zip(t, self._face_sel, strict=True)])
        n = self._cells.size
        diag = g + np.bincount(self._face_a, faces, n) + np.bincount(self._face_b, faces, n)
        values = np.concatenate([-faces, -faces, diag])
        a = self._csr
        a.data = values[self._csr_perm]
        return a, diag

    @staticmethod
    def _cg(a: sparse.csr_matrix, diag: FloatArray, b: FloatArray, x0: FloatArray) -> tuple[FloatArray, int]:
        """Jacobi-preconditioned conjugate gradients, warm started from `x0`."""
        inv_d = 1.0 / diag
        x = x0.copy()
        r = b - a @ x
        z = r * inv_d
        d = z.copy()
        rz = float(r @ z)
        b_norm = math.sqrt(float((b * inv_d) @ b)) or 1.0
        for it in range(CG_MAX_ITER):
            if math.sqrt(abs(rz)) <= CG_RTOL * b_norm:
                return x, it
            ad = a @ d
            alpha = rz / float(d @ ad)
            x += alpha * d
            r -= alpha * ad
            z = r * inv_d
            rz_new = float(r @ z)
            d *= rz_new / rz
            d += z
            rz = rz_new
        return x, CG_MAX_ITER

    def solve(self, q_m3_s: float, mu_c: float | FloatArray, mu_m: float) -> Solution:
        """Pressure field for cement entering at `q_m3_s` (the nominal flow when it is ~0); `mu_c` is
        the cement's viscosity, one value or one per cell (its cure differs from cell to cell)."""
        body = self.body
        mu_cells = np.broadcast_to(np.asarray(mu_c, dtype=float), body.shape)
        q = q_m3_s if q_m3_s > 1e-12 else NOMINAL_Q_M3_S
        lam_xy, lam_z = self._mobility(mu_cells, mu_m)
        t = self._transmissibilities(lam_xy, lam_z)
        closed: set[str] = set()
        iterations = 0
        pos = self._pos
        n = self._cells.size
        # warm start: the last field, rescaled to this flow (the field above rest is nearly linear
        # in q; after a stop the flow falls tenfold between solves and an unscaled start costs ~5x
        # the iterations)
        x = self._p_rest + (self._p.reshape(-1)[self._cells] - self._p_rest) * (q / self._q_last)
        while True:
            g = np.zeros(n)
            b = np.zeros(n)
            b[pos[body.tip]] += q
            cement_g: dict[str, tuple[float, float]] = {}
            for o in body.outlets:
                full = self.s[o.cell] >= FULL
                if full:
                    if o.name in closed:
                        continue
                    gc = 1.0 / (float(mu_cells[o.cell]) * o.geometry_resistance)
                    ref = o.outside_pressure_pa + o.opening_pressure_pa
                    cement_g[o.name] = (gc, ref)
                elif o.kind == "cortical":
                    gc, ref = 1.0 / (mu_m * o.geometry_resistance), o.outside_pressure_pa
                else:
                    gc, ref = self._marrow_g[o.name], o.outside_pressure_pa
                g[pos[o.cell]] += gc
                b[pos[o.cell]] += gc * ref
            a, diag = self._matrix(t, g)
            x, its = self._cg(a, diag, b, x)
            iterations += its
            p = np.zeros(body.shape)
            p.reshape(-1)[self._cells] = x
            newly_closed = (
                {name for name, (_, ref) in cement_g.items() if p[body.outlets_by_name[name].cell] < ref}
                if cement_g
                else set()
            )
            if not newly_closed:
                break
            closed |= newly_closed
        self._p = p
        self._q_last = q
        leak = {name: gc * (p[body.outlets_by_name[name].cell] - ref) for name, (gc, ref) in cement_g.items()}
        front = self._front_inflow(p, t, q)
        marrow = self.s < 0.5
        marrow &= body.inside
        p_marrow = float(p[marrow].mean()) if marrow.any() else float(p[body.inside].mean())
        well = (
            float(mu_cells[body.tip])
            * q
            / (4.0 * math.pi * self._k_tip)
            * (1.0 / self._r0 - 1.0 / self._r_eq)
        )
        return Solution(
            q_m3_s=q,
            pressure_pa=p,
            tip_pressure_pa=float(p[body.tip]) + well,
            front_inflow=front,
            leak_flow=leak,
            marrow_pressure_pa=p_marrow,
            iterations=iterations,
            open_outlets=frozenset(cement_g),
        )

    def _front_inflow(self, p: FloatArray, t: list[FloatArray], q: float) -> dict[int, float]:
        full = self.s >= FULL
        inflow = np.zeros(self.body.shape)
        for axis, ti in enumerate(t):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis] = slice(None, -1)
            hi[axis] = slice(1, None)
            f = ti * (p[tuple(lo)] - p[tuple(hi)])
            # cement crosses a face from a full cell into a cell that is not full
            into_hi = np.where(full[tuple(lo)] & ~full[tuple(hi)] & (f > 0.0), f, 0.0)
            into_lo = np.where(full[tuple(hi)] & ~full[tuple(lo)] & (f < 0.0), -f, 0.0)
            inflow[tuple(hi)] += into_hi
            inflow[tuple(lo)] += into_lo
        if not full[self.body.tip]:
            inflow[self.body.tip] += q
        idx = np.flatnonzero(inflow > 0.0)
        return {int(i): float(inflow.flat[i]) for i in idx}

    # -- moving the front -----------------------------------------------------------------------
    def advance(self, volume_m3: float, solution: Solution) -> dict[str, float]:
        """Put `volume_m3` of cement (what the plant delivered to the bone) where the solve sends it.

        Returns the volume that went into each outlet in this interval."""
        if volume_m3 <= 0.0:
            return {}
        q = solution.q_m3_s
        leaks = {name: volume_m3 * min(max(f, 0.0) / q, 1.0) for name, f in solution.leak_flow.items()}
        total_leak = sum(leaks.values())
        if total_leak > volume_m3:
            scale = volume_m3 / total_leak
            leaks = {k: v * scale for k, v in leaks.items()}
            total_leak = volume_m3
        for name, v in leaks.items():
            self.leaked_m3[name] += v
        rest = volume_m3 - total_leak
        front = solution.front_inflow
        total = sum(front.values())
        if total <= 0.0:
            front = {self._flat_tip: 1.0}
            total = 1.0
        pending = [(i, rest * f / total) for i, f in front.items()]
        self._fill(pending, solution.pressure_pa)
        return leaks

    def _fill(self, pending: list[tuple[int, float]], p: FloatArray) -> None:
        s_flat = self.s.reshape(-1)
        pore_flat = self._pore.reshape(-1)
        shape = self.body.shape
        inside = self.body.inside
        guard = 0
        while pending and guard < 100_000:
            guard += 1
            i, v = pending.pop()
            room = (1.0 - s_flat[i]) * pore_flat[i]
            if v <= room or room < 0.0:
                s_flat[i] += v / pore_flat[i]
                continue
            s_flat[i] = 1.0
            excess = v - room
            cell = np.unravel_index(i, shape)
            targets: list[tuple[int, float]] = []
            for axis in range(3):
                for step in (-1, 1):
                    nb = list(cell)
                    nb[axis] += step
                    if not 0 <= nb[axis] < shape[axis]:
                        continue
                    nbt = (int(nb[0]), int(nb[1]), int(nb[2]))
                    if not inside[nbt] or self.s[nbt] >= FULL:
                        continue
                    targets.append((int(np.ravel_multi_index(nbt, shape)), max(p[cell] - p[nbt], 0.0)))
            if not targets:
                # boxed in: the excess goes to the nearest cell that is not full (rare)
                free = np.flatnonzero(inside.reshape(-1) & (s_flat < FULL))
                if free.size == 0:
                    return
                targets = [(int(free[0]), 1.0)]
            weight = sum(w for _, w in targets)
            for j, w in targets:
                share = w / weight if weight > 0.0 else 1.0 / len(targets)
                pending.append((j, excess * share))

    # -- outputs --------------------------------------------------------------------------------
    @property
    def cement_volume_m3(self) -> float:
        return float((self.s * self._pore).sum())
