"""The spatial body's ground truth for the imaging work, HIL reports and tests: one stable, read-only API.

`SpatialVertebra.frame()` returns a `SpatialFrame`: copies of the fields at that moment on the
**output grid**, and the ground-truth events with their device time. Nothing here reaches the
controller (telemetry stays the device's view).

The output grid (`OutputGrid`):

- isotropic cells of `spacing_mm` (the flow grid's, 2 mm by default);
- arrays are indexed ``[i, j, k]``: axis 0 = x, medio-lateral, left -> right (patient's left at i = 0);
  axis 1 = y, antero-posterior, anterior -> posterior; axis 2 = z, inferior -> superior;
- the flow grid (the cancellous core, `Body`) padded on every side so that the cortical shell, the end
  plates, the veins outside the body and the spinal canal behind the posterior wall have cells:
  `body_offset` is the output index of flow cell ``[0, 0, 0]``;
- body frame, in mm: x from the midline, y from the anterior cortex, z from the inferior end plate;
  `centre_mm(i, j, k)` gives a cell's centre; the posterior wall is the cortex at
  ``y = depth_mm`` (`posterior_wall_y_mm`), the clinical posterior-quarter line is at
  ``y = 0.75 depth_mm`` (`posterior_quarter_y_mm`).

Labels (`Tissue`) are fixed for a body; the cement, temperature and leak fields change with time.
Cortex thinner than a cell is given a whole cell of its own here (it is the no-flow boundary of the
flow grid): a renderer should weigh it by `bone_volume_fraction`, which is per cell.

Leak paths: each outlet of the body (basivertebral vein, left and right segmental veins, an optional
cortical defect) has an ordered list of output cells, from the breach outward: the basivertebral vein
through the posterior wall into the anterior epidural plexus (then up and down the canal's front),
the segmental veins outward along their cortex's normal, a cortical defect into a growing half-ball
(cement pooling in soft tissue or the disc). The leaked volume of a path is painted into its cells in
order, each cell up to full; what does not fit before the grid's edge stays in `volume_m3` only.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from firmware_sim.plant.body import Body, FloatArray

PAD_MM = 20.0
"""Margin of the output grid around the body box (room for the veins and a defect's pool)."""
CANAL_GAP_MM = 0.0
"""From the posterior wall's cortex to the canal (the canal's front touches the wall)."""
CANAL_DEPTH_MM = 16.0
"""Lumbar spinal canal, antero-posterior (mid-sagittal diameter ~15-18 mm; anatomical texts)."""
CANAL_WIDTH_MM = 23.0
"""Lumbar spinal canal, medio-lateral (interpedicular distance ~21-25 mm; anatomical texts)."""
DEFECT_POOL_RADIUS_MM = 16.0
"""How far from a cortical defect its leak is painted (a half-ball of ~8.6 mL)."""
CORTEX_BONE_FRACTION = 0.9
"""Bone volume per cell volume of a shell / end plate / posterior-wall cell (chosen: cortical bone
is ~90-95 % dense)."""
POSTERIOR_QUARTER = 0.75
"""The clinical stop line: cement nearing the posterior quarter of the body (0 anterior, 1 posterior)."""

IntArray = npt.NDArray[np.int64]
LabelArray = npt.NDArray[np.uint8]


class Tissue(enum.IntEnum):
    """What a cell of the output grid is (its value in `SpatialFrame.labels`, uint8)."""

    OUTSIDE = 0
    """Soft tissue around the body, the disc above and below, the pedicles (not modelled as bone)."""
    CANCELLOUS = 1
    CORTICAL_SHELL = 2
    ENDPLATE = 3
    POSTERIOR_WALL = 4
    """The cortical shell behind the body, between it and the canal."""
    VEIN = 5
    """A vein outside the body (the first cells of a venous leak path)."""
    CANAL = 6
    """The spinal canal (dura, cord, epidural space)."""
    DEFECT = 7
    """A breach in the cortex (the cell of the shell the defect crosses)."""
    CLEFT = 8
    """A fluid-filled fracture cleft inside the body."""
    TUMOUR = 9
    """Soft tissue replacing cancellous bone inside the body."""


@dataclass(frozen=True, slots=True)
class OutputGrid:
    """Geometry of the output grid (see the module docstring for axes and frame)."""

    spacing_mm: float
    shape: tuple[int, int, int]
    body_offset: tuple[int, int, int]
    """Output index of flow-grid cell [0, 0, 0]."""
    flow_shape: tuple[int, int, int]
    origin_mm: tuple[float, float, float]
    """Centre of output cell [0, 0, 0] in the body frame (x from the midline, y from the anterior
    cortex, z from the inferior end plate)."""
    depth_mm: float
    """The body's antero-posterior depth as laid on the grid (`depth_mm` of the scenario rounded to
    whole cells): anterior cortex at y = 0, posterior wall's inner face at y = depth."""

    @property
    def posterior_wall_y_mm(self) -> float:
        return self.depth_mm

    @property
    def posterior_quarter_y_mm(self) -> float:
        return POSTERIOR_QUARTER * self.depth_mm

    def centre_mm(self, i: float, j: float, k: float) -> tuple[float, float, float]:
        """Centre of output cell (i, j, k) in the body frame, mm."""
        h = self.spacing_mm
        o = self.origin_mm
        return (o[0] + i * h, o[1] + j * h, o[2] + k * h)

    def axis_mm(self, axis: int) -> FloatArray:
        """Cell-centre coordinates along `axis` (0 x, 1 y, 2 z), mm."""
        return np.asarray(self.origin_mm[axis] + np.arange(self.shape[axis]) * self.spacing_mm, dtype=float)

    def embed(self, flow_field: FloatArray, fill: float = 0.0) -> FloatArray:
        """A flow-grid array placed in an output-grid array filled with `fill`."""
        out = np.full(self.shape, fill, dtype=float)
        ox, oy, oz = self.body_offset
        nx, ny, nz = self.flow_shape
        out[ox : ox + nx, oy : oy + ny, oz : oz + nz] = flow_field
        return out


@dataclass(frozen=True, slots=True)
class LeakPath:
    """Where cement that leaves the body through one outlet goes, and how much went (ground truth)."""

    name: str
    """'basivertebral', 'segmental_left', 'segmental_right' or 'cortical_<site>'."""
    kind: str
    """'basivertebral', 'segmental' or 'cortical'."""
    cells: IntArray
    """Output-grid indices (N, 3), ordered from the breach outward."""
    volume_m3: float
    """Cement that has left the body through this path."""
    onset_t_s: float | None
    """Device time at which cement first entered this path (None: not yet)."""


@dataclass(frozen=True, slots=True)
class SpatialEvents:
    """Ground-truth events in device time (seconds since the simulator started; the plant's `t_s`).

    Resolution: the flow update (`flow_update_s`, 1 s by default), when the front is moved."""

    posterior_quarter_t_s: float | None
    """First time the front (cells at least half full) reached the posterior-quarter line."""
    leak_onset_t_s: dict[str, float]
    """Leak path name -> first time cement entered it (paths without cement are absent)."""


@dataclass(frozen=True, slots=True)
class SpatialFrame:
    """The spatial body at one moment: copies, safe to keep. Arrays have `grid.shape`."""

    t_s: float
    """Device time of this frame."""
    grid: OutputGrid
    labels: LabelArray
    """`Tissue` per cell (uint8)."""
    bone_volume_fraction: FloatArray
    """Bone mineral volume per cell volume: 1 - porosity in cancellous bone, `CORTEX_BONE_FRACTION`
    in the cortex, 0 in soft tissue, cleft, tumour, veins and canal."""
    cement_fraction: FloatArray
    """Cement volume per cell volume, 0..1: pore saturation x porosity in the body, the painted leak
    in leak-path cells."""
    temperature_c: FloatArray
    """Temperature per cell: computed in the body, its cortex, the canal and a few mm of tissue
    around it (`heat.py`); further out at the body (or bath) temperature."""
    front_ap_fraction: float
    """How far back the cement reaches (cells at least half full): 0 anterior cortex, 1 posterior
    wall; compare with `POSTERIOR_QUARTER`."""
    leak_paths: tuple[LeakPath, ...]
    events: SpatialEvents
    cannula_tip_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """The cannula's tip, body frame (mm): where the cement enters."""
    cannula_entry_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Where the cannula's straight transpedicular track meets the posterior wall, body frame (mm);
    the track goes on backwards, out through the pedicle, along the same line. One cannula is
    modelled (a bipedicular injection's first side, `side`)."""

    @property
    def reached_posterior_quarter(self) -> bool:
        return self.front_ap_fraction >= POSTERIOR_QUARTER

    @property
    def leak_volumes_m3(self) -> dict[str, float]:
        return {p.name: p.volume_m3 for p in self.leak_paths}

    def leak_path(self, name: str) -> LeakPath:
        for p in self.leak_paths:
            if p.name == name:
                return p
        raise KeyError(f"no leak path {name!r}: this body has {[p.name for p in self.leak_paths]}")


def _dilate(mask: npt.NDArray[np.bool_], axes: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """Cells with a neighbour in `mask` one step along any of `axes` (or in `mask`)."""
    out = mask.copy()
    for axis in axes:
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        out[tuple(lo)] |= mask[tuple(hi)]
        out[tuple(hi)] |= mask[tuple(lo)]
    return out


class OutputLayout:
    """Labels, bone fractions and leak-path cells of one body: built once, then read-only."""

    def __init__(self, body: Body) -> None:
        cfg = body.config
        h_mm = body.h_m * 1e3
        pad = math.ceil(PAD_MM / h_mm)
        back = math.ceil((CANAL_GAP_MM + CANAL_DEPTH_MM + PAD_MM) / h_mm) + 1
        nx, ny, nz = body.shape
        self.grid = OutputGrid(
            spacing_mm=h_mm,
            shape=(nx + 2 * pad, ny + pad + back, nz + 2 * pad),
            body_offset=(pad, pad, pad),
            flow_shape=(nx, ny, nz),
            origin_mm=((0.5 - nx / 2.0 - pad) * h_mm, (0.5 - pad) * h_mm, (0.5 - pad) * h_mm),
            depth_mm=ny * h_mm,
        )
        g = self.grid
        inside = g.embed(body.inside.astype(float)) > 0.5
        x, y = g.axis_mm(0), g.axis_mm(1)
        xx, yy = np.meshgrid(x, y, indexing="ij")
        labels = np.zeros(g.shape, dtype=np.uint8)
        # canal: an ellipse behind the posterior wall, over the whole height of the grid
        wall_back = g.depth_mm + h_mm
        cy = wall_back + CANAL_GAP_MM + CANAL_DEPTH_MM / 2.0
        canal_2d = (xx / (CANAL_WIDTH_MM / 2.0)) ** 2 + ((yy - cy) / (CANAL_DEPTH_MM / 2.0)) ** 2 <= 1.0
        labels[np.broadcast_to(canal_2d[:, :, None], g.shape)] = Tissue.CANAL
        shell = _dilate(_dilate(_dilate(inside, (0,)), (1,)), (2,)) & ~inside
        endplate = _dilate(inside, (2,)) & ~inside
        yyy = np.broadcast_to(yy[:, :, None], g.shape)
        posterior = shell & (yyy > g.depth_mm) & ~endplate
        labels[shell] = Tissue.CORTICAL_SHELL
        labels[endplate] = Tissue.ENDPLATE
        labels[posterior] = Tissue.POSTERIOR_WALL
        labels[inside] = Tissue.CANCELLOUS
        cortex = shell.copy()
        bone = np.where(cortex, CORTEX_BONE_FRACTION, 0.0)
        porosity_out = g.embed(body.porosity)
        bone = np.where(inside, 1.0 - porosity_out, bone)
        for mask, tissue in ((body.cleft_cells, Tissue.CLEFT), (body.tumour_cells, Tissue.TUMOUR)):
            if mask is not None:
                region = g.embed(mask.astype(float)) > 0.5
                labels[region] = tissue
                bone[region] = 0.0
        self._paths: dict[str, tuple[str, IntArray]] = {}
        for outlet in body.outlets:
            cell = tuple(c + o for c, o in zip(outlet.cell, g.body_offset, strict=True))
            cells = self._path_cells(outlet.kind, outlet.name, (cell[0], cell[1], cell[2]), inside, labels)
            self._paths[outlet.name] = (outlet.kind, cells)
            first = tuple(cells[0])
            if outlet.kind == "cortical":
                labels[first] = Tissue.DEFECT
                bone[first] = 0.0
            else:
                for c in cells[: max(1, math.ceil(cfg.vein_length_mm / h_mm)) + 1]:
                    t = tuple(c)
                    if labels[t] in (Tissue.OUTSIDE, Tissue.CORTICAL_SHELL, Tissue.POSTERIOR_WALL):
                        labels[t] = Tissue.VEIN
                        bone[t] = 0.0
        self.labels: LabelArray = labels
        self.bone_volume_fraction: FloatArray = bone
        self.labels.setflags(write=False)
        self.bone_volume_fraction.setflags(write=False)
        self._cell_volume_m3 = body.h_m**3
        tip = body.tip_m
        entry = body.cannula_entry_m or tip
        self._tip_mm = (tip[0] * 1e3, tip[1] * 1e3, tip[2] * 1e3)
        self._entry_mm = (entry[0] * 1e3, entry[1] * 1e3, entry[2] * 1e3)
        self._porosity = body.porosity

    def _path_cells(
        self,
        kind: str,
        name: str,
        cell: tuple[int, int, int],
        inside: npt.NDArray[np.bool_],
        labels: LabelArray,
    ) -> IntArray:
        """Output cells of the path out of the outlet at `cell` (an inside cell), breach first."""
        g = self.grid
        i0, j0, k0 = cell
        if kind == "basivertebral":
            # through the posterior wall (+y) to the canal, then up and down its front (the anterior
            # internal venous plexus), nearest first
            stem: list[tuple[int, int, int]] = []
            j = j0 + 1
            while j < g.shape[1] and labels[i0, j, k0] != Tissue.CANAL:
                stem.append((i0, j, k0))
                j += 1
            if j >= g.shape[1]:
                return np.asarray(stem, dtype=np.int64).reshape(-1, 3)
            column = sorted(range(g.shape[2]), key=lambda k: (abs(k - k0), k))
            return np.asarray(stem + [(i0, j, k) for k in column], dtype=np.int64)
        idx = np.indices(g.shape).reshape(3, -1).T
        rel = (idx - np.array(cell)) * g.spacing_mm
        free = ~inside.reshape(-1) & (labels.reshape(-1) != Tissue.CANAL)
        if kind == "segmental":
            # outward along the cortex's horizontal normal at the exit (from the body's axis)
            x_mm, y_mm, _ = g.centre_mm(*cell)
            direction = np.array([x_mm, y_mm - 0.55 * g.depth_mm, 0.0])
            direction /= float(np.linalg.norm(direction)) or 1.0
            along = rel @ direction
            across = np.linalg.norm(rel - np.outer(along, direction), axis=1)
            keep = free & (along > 0.0) & (across <= 0.75 * g.spacing_mm)
            order = along
        else:
            # a cortical defect: cement pools in a half-ball outside the breach
            along = rel @ self._defect_normal(name)
            dist = np.linalg.norm(rel, axis=1)
            keep = ~inside.reshape(-1) & (along > 0.0) & (dist <= DEFECT_POOL_RADIUS_MM)
            order = dist + 1e-6 * along
        chosen = np.flatnonzero(keep)
        chosen = chosen[np.argsort(order[chosen], kind="stable")]
        return np.asarray(idx[chosen], dtype=np.int64)

    @staticmethod
    def _defect_normal(name: str) -> FloatArray:
        site = name.removeprefix("cortical_")
        normals = {
            "anterior": (0.0, -1.0, 0.0),
            "left_lateral": (-1.0, 0.0, 0.0),
            "right_lateral": (1.0, 0.0, 0.0),
            "posterior_wall": (0.0, 1.0, 0.0),
            "superior_endplate": (0.0, 0.0, 1.0),
            "inferior_endplate": (0.0, 0.0, -1.0),
        }
        return np.array(normals[site], dtype=float)

    def path_names(self) -> list[str]:
        return list(self._paths)

    def frame(
        self,
        t_s: float,
        saturation: FloatArray,
        window: tuple[slice, slice, slice],
        window_temperature_c: FloatArray,
        t_body_c: float,
        front_ap_fraction: float,
        leaked_m3: dict[str, float],
        events: SpatialEvents,
    ) -> SpatialFrame:
        g = self.grid
        cement = g.embed(saturation * self._porosity)
        paths = []
        flat = cement.reshape(-1)
        for name, (kind, cells) in self._paths.items():
            volume = leaked_m3.get(name, 0.0)
            remaining = volume / self._cell_volume_m3
            for c in cells:
                if remaining <= 0.0:
                    break
                f = int(np.ravel_multi_index((int(c[0]), int(c[1]), int(c[2])), g.shape))
                room = 1.0 - flat[f]
                put = min(room, remaining)
                flat[f] += put
                remaining -= put
            cells_copy = cells.copy()
            cells_copy.setflags(write=False)
            paths.append(LeakPath(name, kind, cells_copy, volume, events.leak_onset_t_s.get(name)))
        temperature = np.full(g.shape, t_body_c)
        temperature[window] = window_temperature_c
        return SpatialFrame(
            t_s=t_s,
            grid=g,
            labels=self.labels,
            bone_volume_fraction=self.bone_volume_fraction,
            cement_fraction=cement,
            temperature_c=temperature,
            front_ap_fraction=front_ap_fraction,
            leak_paths=tuple(paths),
            events=events,
            cannula_tip_mm=self._tip_mm,
            cannula_entry_mm=self._entry_mm,
        )
