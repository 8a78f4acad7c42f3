"""The lumbar vertebral body as a place: cells, bone, cortex, veins, and where the cannula tip is.

Axes of every array: x medio-lateral (left -> right), y antero-posterior (anterior cortex y = 0 ->
posterior wall y = depth), z inferior -> superior end plate. The axial section is an ellipse
truncated by a flat posterior wall (the bean shape of a lumbar body); the end plates are flat.

- Cancellous core: every inside cell, porosity phi, permeability k_SI along z and k_AP along x and y
  (Baroud 2004; medio-lateral = antero-posterior assumed) times a seeded log-normal scatter.
- Cortical shell and end plates: the no-flow boundary of the domain (the cortex is ~0.3-1 mm thick,
  under one cell): cement and marrow leave only through outlets.
- Outlets: the basivertebral vein exit in the middle of the posterior wall, segmental veins at the
  left and right antero-lateral cortex, and an optional cortical defect. Each is a pipe from its
  boundary cell to the outside at the venous pressure (veins) or 0 (a defect into soft tissue).
- Cleft: a fluid-filled horizontal gap in the anterior body (permeability x factor, porosity 1).
- Tumour: a ball of soft tissue (permeability x factor, a hundredth by default).
- Cannula tip: from a transpedicular trajectory. The pedicle enters the posterior wall at +-30 % of
  the width; unipedicular aims 25 degrees medially so the tip ends near the midline, bipedicular
  10 degrees so it stays in its own half. The tip is where the trajectory reaches
  `tip_depth_fraction` of the depth; the cells the cannula crosses are recorded (`cannula_cells`, for
  the imaging work) but not blocked: cement flowing back along the cannula track is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from firmware_sim.plant.spatial_config import SpatialConfig

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PEDICLE_OFFSET_FRACTION = 0.30
"""Where the pedicle meets the posterior wall, from the midline, as a fraction of the body's width."""
MEDIAL_ANGLE_DEG = {"unipedicular": 25.0, "bipedicular": 10.0}
"""Medial convergence of the trajectory (chosen within usual lumbar practice)."""


@dataclass(frozen=True, slots=True)
class Outlet:
    """Where fluid can leave the body: a vein exit or a cortical defect."""

    name: str
    kind: str
    """'basivertebral', 'segmental' or 'cortical'."""
    cell: tuple[int, int, int]
    diameter_m: float
    length_m: float
    outside_pressure_pa: float
    opening_pressure_pa: float

    @property
    def geometry_resistance(self) -> float:
        """Hagen-Poiseuille 8 L / (pi r^4): times a viscosity it is the pipe's resistance (Pa s/m^3)."""
        r = self.diameter_m / 2.0
        return 8.0 * self.length_m / (math.pi * r**4)


@dataclass(frozen=True)
class Body:
    """Cells and their properties, the outlets and the cannula tip."""

    config: SpatialConfig
    h_m: float
    inside: BoolArray
    k_xy_m2: FloatArray
    """Permeability across x and y faces (medio-lateral, antero-posterior), per cell (0 outside)."""
    k_z_m2: FloatArray
    porosity: FloatArray
    outlets: tuple[Outlet, ...]
    tip: tuple[int, int, int]
    tip_m: tuple[float, float, float]
    cannula_cells: tuple[tuple[int, int, int], ...]
    cleft_cells: BoolArray | None = None
    """Cells of the fracture cleft (None: no cleft)."""
    cannula_entry_m: tuple[float, float, float] | None = None
    """Where the trajectory meets the posterior wall (the pedicle's end), body frame (m)."""
    tumour_cells: BoolArray | None = None
    """Cells of the tumour (None: no tumour)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.inside.shape
        return (s[0], s[1], s[2])

    @property
    def outlets_by_name(self) -> dict[str, Outlet]:
        return {o.name: o for o in self.outlets}

    @property
    def cell_volume_m3(self) -> float:
        return self.h_m**3

    @property
    def pore_volume_m3(self) -> FloatArray:
        return self.porosity * self.cell_volume_m3 * self.inside

    @property
    def body_volume_m3(self) -> float:
        return float(self.inside.sum()) * self.cell_volume_m3

    def centres(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Cell-centre coordinates (m): x from the midline, y from the anterior cortex, z from the
        inferior end plate."""
        nx, ny, nz = self.shape
        h = self.h_m
        x = np.asarray((np.arange(nx) + 0.5) * h - nx * h / 2.0, dtype=np.float64)
        y = np.asarray((np.arange(ny) + 0.5) * h, dtype=np.float64)
        z = np.asarray((np.arange(nz) + 0.5) * h, dtype=np.float64)
        return x, y, z


def _nearest_inside(inside: BoolArray, point: tuple[float, float, float], h: float) -> tuple[int, int, int]:
    nx, ny, nz = inside.shape
    x = (np.arange(nx) + 0.5) * h - nx * h / 2.0
    y = (np.arange(ny) + 0.5) * h
    z = (np.arange(nz) + 0.5) * h
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
    d2 = (xx - point[0]) ** 2 + (yy - point[1]) ** 2 + (zz - point[2]) ** 2
    d2 = np.where(inside, d2, np.inf)
    i, j, k = np.unravel_index(int(np.argmin(d2)), inside.shape)
    return int(i), int(j), int(k)


def build_body(
    config: SpatialConfig, resting_pressure_pa: float, rng: np.random.Generator | None = None
) -> Body:
    """Lay out the body on its grid. `rng` seeds the permeability scatter (a fixed seed if None)."""
    rng = np.random.default_rng(0) if rng is None else rng
    h = config.grid_mm * 1e-3
    width, depth, height = config.width_mm * 1e-3, config.depth_mm * 1e-3, config.height_mm * 1e-3
    nx, ny, nz = (max(3, round(d / h)) for d in (width, depth, height))
    x = (np.arange(nx) + 0.5) * h - nx * h / 2.0
    y = (np.arange(ny) + 0.5) * h
    z = (np.arange(nz) + 0.5) * h
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
    # ellipse of semi-axes width/2 and 0.55 depth centred 0.55 depth behind the anterior cortex,
    # cut by the flat posterior wall at y = depth
    b = 0.55 * depth
    inside = (xx / (width / 2.0)) ** 2 + ((yy - b) / b) ** 2 <= 1.0
    inside &= yy <= depth

    scatter = np.exp(config.permeability_spread * rng.standard_normal(inside.shape))
    k_xy = config.permeability_ap_m2 * scatter
    k_z = config.permeability_si_m2 * scatter
    porosity = np.full(inside.shape, config.porosity)

    in_cleft: BoolArray | None = None
    in_tumour: BoolArray | None = None
    if config.cleft is not None:
        c = config.cleft
        zc = c.height_fraction * height
        in_cleft = (np.abs(zz - zc) <= max(c.thickness_mm * 1e-3, h) / 2.0) & (yy <= c.depth_fraction * depth)
        in_cleft &= inside
        k_xy = np.where(in_cleft, k_xy * c.permeability_factor, k_xy)
        k_z = np.where(in_cleft, k_z * c.permeability_factor, k_z)
        porosity = np.where(in_cleft, 1.0, porosity)
    if config.tumour is not None:
        t = config.tumour
        fx, fy, fz = t.centre_fraction
        centre = ((fx - 0.5) * width, fy * depth, fz * height)
        r = t.radius_mm * 1e-3
        in_tumour = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (zz - centre[2]) ** 2 <= r * r
        in_tumour &= inside
        k_xy = np.where(in_tumour, k_xy * t.permeability_factor, k_xy)
        k_z = np.where(in_tumour, k_z * t.permeability_factor, k_z)

    k_xy = np.where(inside, k_xy, 0.0)
    k_z = np.where(inside, k_z, 0.0)

    mid = height / 2.0
    open_pa = config.vein_opening_pressure_kpa * 1e3
    length = config.vein_length_mm * 1e-3
    outlets = [
        Outlet(
            "basivertebral",
            "basivertebral",
            _nearest_inside(inside, (0.0, depth, mid), h),
            config.basivertebral_diameter_mm * 1e-3,
            length,
            resting_pressure_pa,
            open_pa,
        )
    ]
    # segmental veins enter the antero-lateral cortex, 60 degrees from the front on the ellipse
    for side, sign in (("left", -1.0), ("right", 1.0)):
        ang = math.radians(60.0)
        point = (sign * (width / 2.0) * math.sin(ang), b - b * math.cos(ang), mid)
        outlets.append(
            Outlet(
                f"segmental_{side}",
                "segmental",
                _nearest_inside(inside, point, h),
                config.segmental_diameter_mm * 1e-3,
                length,
                resting_pressure_pa,
                open_pa,
            )
        )
    if config.cortical_defect is not None:
        d = config.cortical_defect
        points = {
            "anterior": (0.0, 0.0, mid),
            "left_lateral": (-width / 2.0, b, mid),
            "right_lateral": (width / 2.0, b, mid),
            "posterior_wall": (0.0, depth, 0.7 * height),
            "superior_endplate": (0.0, 0.4 * depth, height),
            "inferior_endplate": (0.0, 0.4 * depth, 0.0),
        }
        outlets.append(
            Outlet(
                f"cortical_{d.site}",
                "cortical",
                _nearest_inside(inside, points[d.site], h),
                d.diameter_mm * 1e-3,
                d.length_mm * 1e-3,
                0.0,
                0.0,
            )
        )

    # transpedicular trajectory, in the axial plane at mid-height
    sign = -1.0 if config.side == "left" else 1.0
    entry = (sign * PEDICLE_OFFSET_FRACTION * width, depth)
    angle = math.radians(MEDIAL_ANGLE_DEG[config.approach])
    travel = (1.0 - config.tip_depth_fraction) * depth
    tip_m = (entry[0] - sign * travel * math.tan(angle), entry[1] - travel, mid)
    tip = _nearest_inside(inside, tip_m, h)
    steps = max(2, int(math.hypot(travel * math.tan(angle), travel) / (h / 2.0)))
    crossed: list[tuple[int, int, int]] = []
    for s in np.linspace(0.0, 1.0, steps):
        px = entry[0] + (tip_m[0] - entry[0]) * s
        py = entry[1] + (tip_m[1] - entry[1]) * s
        cell = (int((px + nx * h / 2.0) // h), min(int(py // h), ny - 1), int(mid // h))
        if 0 <= cell[0] < nx and inside[cell] and cell != tip and cell not in crossed:
            crossed.append(cell)

    return Body(
        config=config,
        h_m=h,
        inside=inside,
        k_xy_m2=k_xy,
        k_z_m2=k_z,
        porosity=porosity,
        outlets=tuple(outlets),
        tip=tip,
        tip_m=tip_m,
        cannula_cells=tuple(crossed),
        cleft_cells=in_cleft,
        tumour_cells=in_tumour,
        cannula_entry_m=(entry[0], entry[1], mid),
    )
