"""Synthetic pulsed fluoroscopy of the spatial vertebra: lateral and AP projections.

Model (docs/fluoroscopy.md, "Renderer"): each detector pixel receives the photons that cross the
patient along one ray (parallel-beam projection, magnification folded into `pixel_mm`). Relative
to a ray through soft tissue alone, the log attenuation is the line integral of (mu - mu_water):

    L(ray) = sum over what the ray crosses of (mu_material - mu_water) * path length

- Soft tissue: the reference (L = 0), with a smooth seeded thickness variation (a patient is not a
  slab) of a few percent.
- The vertebral body and its two neighbours: the analytic shape of firmware_sim/plant/body.py (an
  ellipse cut by a flat posterior wall, extruded between flat end plates), a cortical shell of
  `cortex_mm`, cancellous bone inside at the body's porosity. Computed in closed form per pixel, so
  the outline is sharp at any resolution, not the 2 mm cells of the flow grid.
- Cement: the flow grid's cement fraction times porosity, projected along the beam (the path length
  of cement per column), interpolated to the pixels (bilinear) inside the body's outline.
- Leaked cement: the spatial body's leak paths (firmware_sim/plant/spatial_outputs.py), painted cell
  by cell from the breach outward: a vein fills as a thin column that grows along its course (out
  of the wall, then up and down the canal's front), a cortical defect as a pool beyond it.
- The steel cannula: a thin-walled tube from the tip back through the pedicle and out.

Then the detector: primary photons N = N0 exp(-L) with N0 = `photons_per_pixel` (the dose, behind
soft tissue only), scatter added as `scatter_to_primary` times a wide blur of the primary (it
lowers contrast, as in a real lateral lumbar view), Poisson quantum noise on the sum, a Gaussian
PSF of `blur_mm` (the scintillator's light spread: it blurs signal and noise), Gaussian electronic
noise, then a fixed gain (the C-arm's brightness control keeps the background near 80 % of full
scale) and quantisation to `bit_depth` bits. Pixels are intensity: BRIGHT = more X-rays through.

Everything is a pure function of the scene, the frame index and the seed: the same seed gives the
same frames, whatever frames were skipped before.

Image axes: lateral view, columns anterior -> posterior (the posterior wall on the right), rows
superior -> inferior (superior up); AP view, columns patient's right -> left (radiological
convention), rows superior -> inferior. The body's centre is at the image centre plus `shift_mm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict
from scipy import ndimage

from firmware_sim.imaging.attenuation import (
    MU_BONE_PER_MM,
    MU_CEMENT_PER_MM,
    MU_MARROW_PER_MM,
    MU_STEEL_PER_MM,
    MU_WATER_PER_MM,
)
from firmware_sim.imaging.scene import CementScene
from firmware_sim.plant.body import MEDIAL_ANGLE_DEG, PEDICLE_OFFSET_FRACTION, Body
from firmware_sim.plant.events import in_range
from firmware_sim.plant.spatial_outputs import OutputGrid

__all__ = ["VIEWS", "FluoroConfig", "FluoroRenderer", "View", "ViewGeometry"]

View = Literal["lateral", "ap"]
VIEWS: tuple[View, ...] = ("lateral", "ap")
Image = npt.NDArray[np.floating[Any]]

DISC_MM = 10.0
"""Lumbar intervertebral disc height (adult, ~8-12 mm): the gap to the neighbouring bodies."""
CANNULA_OUTER_MM = 3.0
CANNULA_WALL_MM = 0.3
"""An 11 G vertebroplasty cannula: 3.05 mm outer diameter, thin wall."""
PEDICLE_HEIGHT_FRACTION = 0.7
"""Where the pedicle (and so the cannula) meets the posterior wall, as a fraction of the body's height
from the inferior end plate: lumbar pedicles join the upper half of the body (anatomical texts)."""
CANNULA_OUTSIDE_MM = 60.0
"""How far the cannula runs back from the pedicle entry (through the pedicle and the back muscles)."""


class FluoroConfig(BaseModel):
    """The C-arm and detector: every field checked (out of range: the field, value and range)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width_px: Annotated[int, in_range(64, 2048, "px")] = 512
    height_px: Annotated[int, in_range(64, 2048, "px")] = 512
    pixel_mm: Annotated[float, in_range(0.05, 1.0, "mm")] = 0.2
    """Pixel spacing at the vertebral body: 0.2 mm puts a 102 mm field on 512 px (a 9-inch image
    intensifier in magnified mode), the body ~165 px deep and its neighbours in view."""
    photons_per_pixel: Annotated[float, in_range(10.0, 1e6, "photons")] = 1000.0
    """The dose: mean photons per pixel reaching the detector through soft tissue alone. At 60 keV
    ~2.7e5 photons/mm^2 make 1 uGy of air kerma, so 0.04 mm^2 pixels get ~330 photons at 30 nGy per
    frame (low-dose pulsed fluoroscopy) and ~1000 at 90 nGy (the default: the upper end of
    fluoroscopy; a dose sweep goes down to tens). Order-of-magnitude figures: the detector's
    efficiency and the magnification are folded in."""
    scatter_to_primary: Annotated[float, in_range(0.0, 5.0, "")] = 1.0
    """Scatter over primary at the detector behind the body. Lateral lumbar with an anti-scatter grid:
    ~0.5-2 (chosen 1.0: halves the contrast of everything, the "limited contrast" of fluoroscopy)."""
    scatter_blur_mm: Annotated[float, in_range(5.0, 200.0, "mm")] = 30.0
    blur_mm: Annotated[float, in_range(0.0, 3.0, "mm")] = 0.3
    """Detector PSF sigma (CsI scintillator and video chain), at the body's scale."""
    electronic_noise: Annotated[float, in_range(0.0, 100.0, "photons")] = 2.0
    """Detector read noise, rms, in photon equivalents."""
    bit_depth: Annotated[int, in_range(8, 16, "bits")] = 12
    background_level: Annotated[float, in_range(0.1, 0.95, "")] = 0.8
    """Where the brightness control puts soft tissue: this fraction of full scale."""
    dark_level: Annotated[float, in_range(0.0, 0.2, "")] = 0.02
    """Detector offset, as a fraction of full scale."""
    fps: Annotated[float, in_range(1.0, 30.0, "frames/s")] = 10.0
    """Pulse rate. Pulsed fluoroscopy runs 1-30 pulses per second (7.5-15 for vertebroplasty)."""
    cortex_mm: Annotated[float, in_range(0.1, 3.0, "mm")] = 0.5
    """Cortical shell of an osteoporotic lumbar body: ~0.3-0.6 mm (chosen 0.5)."""
    tissue_variation: Annotated[float, in_range(0.0, 1.0, "")] = 0.08
    """Standard deviation of the smooth soft-tissue log-attenuation variation across the field."""
    cement_mu_per_mm: Annotated[float, in_range(0.03, 2.0, "1/mm")] = MU_CEMENT_PER_MM
    neighbours: bool = True
    """Draw the vertebral bodies above and below (the guard must outline the right one)."""
    cannula: bool = True
    shift_mm: tuple[
        Annotated[float, in_range(-100.0, 100.0, "mm")], Annotated[float, in_range(-100.0, 100.0, "mm")]
    ] = (0.0, 0.0)
    """Where the body's centre sits from the image centre, (right, down) in mm."""
    seed: Annotated[int, in_range(0, 2**63 - 1, "")] = 0

    @property
    def full_scale(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint8 if self.bit_depth <= 8 else np.uint16

    @property
    def period_us(self) -> int:
        return round(1e6 / self.fps)


@dataclass(frozen=True, slots=True)
class ViewGeometry:
    """Where the body is in one view's image (pixels, column/row of pixel centres). Ground truth and
    operator settings, never inside a frame: the body's true box, and for the lateral view the
    columns of the anterior cortex, the posterior wall and the posterior-quarter line."""

    view: View
    width_px: int
    height_px: int
    pixel_mm: float
    body_box_px: tuple[float, float, float, float]
    """(left, top, right, bottom) of the body's projection: the true outline is this box in both
    views (the body is extruded between flat end plates)."""
    anterior_col: float | None
    posterior_col: float | None
    posterior_direction: str
    """Lateral: '+col' (posterior is to the right). AP: '' (the view has no antero-posterior axis)."""

    def ap_fraction_col(self, fraction: float) -> float | None:
        """The column at `fraction` of the body's depth (0 anterior, 1 posterior), lateral view only."""
        if self.anterior_col is None or self.posterior_col is None:
            return None
        return self.anterior_col + fraction * (self.posterior_col - self.anterior_col)


@dataclass(frozen=True, slots=True)
class BodyShape:
    """The body as the flow grid lays it (body.py): the grid's extent (whole cells: a 33 mm deep body
    on 2 mm cells is 32 mm deep here, the depth the truth's front fraction is measured over) and the
    ellipse of the axial section (semi-axes `a` medio-lateral, `b` antero-posterior, centred `b`
    behind the anterior cortex), cut by the flat posterior wall at `depth_mm`."""

    width_mm: float
    depth_mm: float
    height_mm: float
    a: float
    b: float

    @classmethod
    def of(cls, body: Body) -> BodyShape:
        c = body.config
        nx, ny, nz = body.shape
        h = body.h_m * 1e3
        return cls(nx * h, ny * h, nz * h, min(c.width_mm, nx * h) / 2.0, 0.55 * c.depth_mm)


class _Axes:
    """Pixel-centre coordinates of one view in body millimetres: (u, v) = the body coordinates along
    the columns and rows; the beam runs along the third axis."""

    def __init__(self, body: Body, config: FluoroConfig, view: View) -> None:
        c = BodyShape.of(body)
        self.view = view
        self.px = config.pixel_mm
        w, h = config.width_px, config.height_px
        cols = (np.arange(w) - (w - 1) / 2.0) * self.px - config.shift_mm[0]
        rows = (np.arange(h) - (h - 1) / 2.0) * self.px - config.shift_mm[1]
        # z (up) runs against the rows; the body's mid-height at the image centre
        self.z = c.height_mm / 2.0 - rows
        if view == "lateral":
            self.u = cols + c.depth_mm / 2.0  # y: anterior (0) -> posterior (depth)
        else:
            self.u = -cols  # x: patient's right on the image's left (radiological convention)
        self.w, self.h = w, h

    def col_of(self, u_mm: float) -> float:
        """Column (pixel-centre units) of body coordinate u (u is linear in the column)."""
        du = self.u[1] - self.u[0]
        return float((u_mm - self.u[0]) / du)

    def row_of(self, z_mm: float) -> float:
        dz = self.z[1] - self.z[0]
        return float((z_mm - self.z[0]) / dz)


class FluoroRenderer:
    """Renders frames of one spatial body. Static parts (bone, neighbours, cannula, soft tissue) are
    computed once per view; each frame adds the cement and the detector."""

    def __init__(self, body: Body, config: FluoroConfig | None = None) -> None:
        self.body = body
        self.shape = BodyShape.of(body)
        self.config = config or FluoroConfig()
        self._axes = {v: _Axes(body, self.config, v) for v in VIEWS}
        self._static: dict[View, Image] = {}
        self._interp: dict[View, tuple[_Axis1D, _Axis1D]] = {}
        self._inside: dict[View, Image] = {}
        self._leak_weights: dict[tuple[View, OutputGrid], tuple[_Axis1D, _Axis1D]] = {}
        for v in VIEWS:
            self._static[v] = self._static_map(v)
            self._interp[v] = self._cement_axes(v)
        c = self.config
        self._scatter = _WideBlur(c.height_px, c.width_px, c.scatter_blur_mm / c.pixel_mm)
        gain_photons = c.photons_per_pixel * (1.0 + c.scatter_to_primary)
        self._gain = (c.background_level - c.dark_level) * c.full_scale / gain_photons
        self._offset = c.dark_level * c.full_scale

    # -- geometry ------------------------------------------------------------------------------
    def geometry(self, view: View) -> ViewGeometry:
        ax = self._axes[view]
        c = self.shape
        z_top, z_bottom = ax.row_of(c.height_mm), ax.row_of(0.0)
        if view == "lateral":
            ant, post = ax.col_of(0.0), ax.col_of(c.depth_mm)
            return ViewGeometry(view, ax.w, ax.h, ax.px, (ant, z_top, post, z_bottom), ant, post, "+col")
        left, right = sorted((ax.col_of(c.a), ax.col_of(-c.a)))
        return ViewGeometry(view, ax.w, ax.h, ax.px, (left, z_top, right, z_bottom), None, None, "")

    # -- static line integrals -----------------------------------------------------------------
    def _body_chords(self, view: View, z_offset_mm: float) -> tuple[Image, Image]:
        """(outer, inner) chord lengths (mm) of the body shifted by `z_offset_mm`, per pixel."""
        c = self.shape
        ax = self._axes[view]
        t = self.config.cortex_mm
        a, b, d, height = c.a, c.b, c.depth_mm, c.height_mm
        z = ax.z - z_offset_mm
        in_z = ((z >= 0.0) & (z <= height)).astype(float)
        in_z_inner = ((z >= t) & (z <= height - t)).astype(float)
        u = ax.u
        if view == "lateral":
            y = u
            outer = 2.0 * a * np.sqrt(np.clip(1.0 - ((y - b) / b) ** 2, 0.0, None)) * ((y >= 0) & (y <= d))
            bi = b - t
            inner = 2.0 * (a - t) * np.sqrt(np.clip(1.0 - ((y - b) / bi) ** 2, 0.0, None))
            inner = inner * ((y >= t) & (y <= d - t))
        else:
            x = u
            s = np.sqrt(np.clip(1.0 - (x / a) ** 2, 0.0, None))
            outer = np.clip(np.minimum(b + b * s, d) - (b - b * s), 0.0, None) * (np.abs(x) <= a)
            ai, bi = a - t, b - t
            si = np.sqrt(np.clip(1.0 - (x / ai) ** 2, 0.0, None))
            inner = np.clip(np.minimum(b + bi * si, d - t) - (b - bi * si), 0.0, None) * (np.abs(x) <= ai)
        return np.outer(in_z, outer), np.outer(in_z_inner, inner)

    def _static_map(self, view: View) -> Image:
        """Log attenuation relative to soft tissue of everything that does not change in a run."""
        cfg = self.config
        phi = self.body.config.porosity
        d_cort = MU_BONE_PER_MM - MU_WATER_PER_MM
        d_canc = (1.0 - phi) * (MU_BONE_PER_MM - MU_WATER_PER_MM) + phi * (MU_MARROW_PER_MM - MU_WATER_PER_MM)
        offsets = [0.0]
        if cfg.neighbours:
            step = self.shape.height_mm + DISC_MM
            offsets += [-step, step]
        total = np.zeros((cfg.height_px, cfg.width_px))
        for off in offsets:
            outer, inner = self._body_chords(view, off)
            total += inner * d_canc + (outer - inner) * d_cort
            if off == 0.0:
                self._inside[view] = (outer > 0.0).astype(np.float32)
        rng = np.random.default_rng([cfg.seed, 0xF1, VIEWS.index(view)])
        if cfg.tissue_variation > 0:
            sigma = 15.0 / cfg.pixel_mm
            field = ndimage.gaussian_filter(rng.standard_normal((cfg.height_px, cfg.width_px)), sigma)
            field *= cfg.tissue_variation / max(float(field.std()), 1e-12)
            total += field
        if cfg.cannula:
            total += self._cannula_map(view)
        return total.astype(np.float32)

    def _cannula_map(self, view: View) -> Image:
        """Steel tube from the tip back through the pedicle entry and out (thin wall: annulus chord),
        filled with cement."""
        c = self.body.config
        tip = np.array(self.body.tip_m) * 1e3  # x from midline, y from anterior, z from inferior
        sign = -1.0 if c.side == "left" else 1.0
        # the pedicle joins the upper half of the body: the cannula comes down to the tip from there
        # (the flow model lays its track at mid-height; a cosmetic difference, docs/fluoroscopy.md)
        entry_z = PEDICLE_HEIGHT_FRACTION * self.shape.height_mm
        entry = np.array([sign * PEDICLE_OFFSET_FRACTION * c.width_mm, self.shape.depth_mm, entry_z])
        direction = entry - tip
        length = float(np.linalg.norm(direction))
        if length == 0:
            angle = math.radians(MEDIAL_ANGLE_DEG[c.approach])
            direction = np.array([sign * math.sin(angle), math.cos(angle), 0.0])
            length = 1.0
        unit = direction / length
        end = entry + unit * CANNULA_OUTSIDE_MM
        r_out = CANNULA_OUTER_MM / 2.0
        r_in = r_out - CANNULA_WALL_MM
        lumen = self._tube_chord(view, tip, end, r_in)
        wall = self._tube_chord(view, tip, end, r_out) - lumen
        # the lumen holds cement from the first push to the end (the stylet is out)
        return wall * (MU_STEEL_PER_MM - MU_WATER_PER_MM) + lumen * (
            self.config.cement_mu_per_mm - MU_WATER_PER_MM
        )

    def _tube_chord(self, view: View, p0: np.ndarray, p1: np.ndarray, radius: float) -> Image:
        """Path length (mm) through a solid cylinder of `radius` from p0 to p1 (body mm), per pixel."""
        ax = self._axes[view]
        beam = 0 if view == "lateral" else 1
        keep = [i for i in range(3) if i != beam]
        uv0 = np.array([p0[keep[0]] if view == "ap" else p0[1], p0[2]])
        uv1 = np.array([p1[keep[0]] if view == "ap" else p1[1], p1[2]])
        seg = uv1 - uv0
        length_3d = float(np.linalg.norm(p1 - p0))
        sin_t = max(float(np.linalg.norm(seg)) / max(length_3d, 1e-9), 0.05)
        uu, zz = np.meshgrid(ax.u, ax.z)
        rel_u, rel_z = uu - uv0[0], zz - uv0[1]
        seg2 = float(seg @ seg)
        s = np.clip((rel_u * seg[0] + rel_z * seg[1]) / seg2, 0.0, 1.0) if seg2 > 0 else np.zeros_like(uu)
        d2 = (rel_u - s * seg[0]) ** 2 + (rel_z - s * seg[1]) ** 2
        chord: Image = 2.0 * np.sqrt(np.clip(radius * radius - d2, 0.0, None)) / sin_t
        np.minimum(chord, length_3d + 2.0 * radius, out=chord)
        return chord

    # -- cement ----------------------------------------------------------------------------------
    def _cement_axes(self, view: View) -> tuple[_Axis1D, _Axis1D]:
        """Linear interpolation from the flow grid's cell centres to the pixel centres, separately for
        the columns and the rows (the projection is axis-aligned)."""
        ax = self._axes[view]
        body = self.body
        h_mm = body.h_m * 1e3
        nx, ny, nz = body.shape
        if view == "lateral":
            centres_u = (np.arange(ny) + 0.5) * h_mm
        else:
            centres_u = (np.arange(nx) + 0.5) * h_mm - nx * h_mm / 2.0
        centres_z = (np.arange(nz) + 0.5) * h_mm
        return _Axis1D.of(ax.z, centres_z), _Axis1D.of(ax.u, centres_u)

    def cement_path_mm(self, scene: CementScene, view: View) -> Image:
        """Millimetres of cement each ray crosses inside the body (not the leaks), held inside the
        body's outline (interpolation would otherwise smear the edge cells half a cell out)."""
        h_mm = self.body.h_m * 1e3
        beam = 0 if view == "lateral" else 1
        proj = scene.body_cement.sum(axis=beam) * np.float32(h_mm)  # (ny, nz) lateral, (nx, nz) AP
        rz, ru = self._interp[view]
        img = _resample(rz, ru, proj.T)
        img *= self._inside[view]
        return img

    def leak_path_mm(self, scene: CementScene, view: View) -> Image:
        """Millimetres of leaked cement each ray crosses: the leak paths' cells (spatial_outputs.py,
        painted from the breach outward, each up to full) projected and interpolated like the body's
        cement, but not held inside the outline: that is where a leak shows."""
        grid = scene.grid
        u_axis = 1 if view == "lateral" else 0  # summed along the other horizontal axis: the beam
        proj = np.zeros((grid.shape[u_axis], grid.shape[2]), np.float32)
        cells = scene.leak_cells
        np.add.at(proj, (cells[:, u_axis], cells[:, 2]), scene.leak_fill * np.float32(grid.spacing_mm))
        rz, ru = self._leak_interp(view, grid)
        return _resample(rz, ru, proj.T)

    def _leak_interp(self, view: View, grid: OutputGrid) -> tuple[_Axis1D, _Axis1D]:
        cached = self._leak_weights.get((view, grid))
        if cached is None:
            ax = self._axes[view]
            u_axis = 1 if view == "lateral" else 0
            rz = _Axis1D.of(ax.z, grid.axis_mm(2))
            ru = _Axis1D.of(ax.u, grid.axis_mm(u_axis))
            cached = self._leak_weights[(view, grid)] = (rz, ru)
        return cached

    # -- the frame -------------------------------------------------------------------------------
    def line_integral(self, scene: CementScene, view: View) -> Image:
        """Log attenuation relative to soft tissue, noise-free: static + cement + leaks."""
        phi_cement = self.config.cement_mu_per_mm - MU_MARROW_PER_MM  # cement replaces marrow
        leak = self.config.cement_mu_per_mm - MU_WATER_PER_MM  # ... or blood, or soft tissue
        out: Image = self.cement_path_mm(scene, view)
        out *= np.float32(phi_cement)
        out += self._static[view]
        if scene.has_leak:
            out += np.float32(leak) * self.leak_path_mm(scene, view)
        return out

    def expected(self, scene: CementScene, view: View) -> Image:
        """Mean detector value (before noise and quantisation), in output units: for tests."""
        primary = self.config.photons_per_pixel * np.exp(-self.line_integral(scene, view))
        return self._detect(primary, None)

    def render(self, scene: CementScene, view: View, index: int) -> np.ndarray:
        """The frame `index` of `view`: uint8 (bit_depth 8) or uint16, `height_px` x `width_px`.
        Deterministic in (seed, view, index) and the scene."""
        rng = np.random.default_rng([self.config.seed, VIEWS.index(view), index])
        primary = np.exp(-self.line_integral(scene, view))
        primary *= np.float32(self.config.photons_per_pixel)
        detected = self._detect(primary, rng)
        c = self.config
        np.rint(detected, out=detected)
        np.clip(detected, 0, c.full_scale, out=detected)
        return detected.astype(c.dtype)

    def _detect(self, primary: Image, rng: np.random.Generator | None) -> Image:
        c = self.config
        total = primary
        if c.scatter_to_primary > 0:
            total = primary + np.float32(c.scatter_to_primary) * self._scatter(primary)
        if rng is not None:
            total = _quantum_noise(total, rng)
        if c.blur_mm > 0:
            total = ndimage.gaussian_filter(total, c.blur_mm / c.pixel_mm)
        if rng is not None and c.electronic_noise > 0:
            total = total + c.electronic_noise * rng.standard_normal(total.shape, dtype=np.float32)
        total *= np.float32(self._gain)
        total += np.float32(self._offset)
        return total


SCATTER_BLOCK = 16
"""Pixels a side of the blocks the scatter is computed on."""
POISSON_EXACT_BELOW = 50.0
"""Photon counts below this are drawn from the Poisson law itself; above, from its normal
approximation (mean and variance equal; the skewness left out is 1/sqrt(n) < 0.15), three times
faster on a 512 x 512 frame."""


def _quantum_noise(mean: Image, rng: np.random.Generator) -> Image:
    """Photon counts with mean `mean`: Poisson (exactly where counts are low)."""
    noisy: Image = rng.standard_normal(mean.shape, dtype=np.float32)
    noisy *= np.sqrt(mean)
    noisy += mean
    low = mean < POISSON_EXACT_BELOW
    if low.any():
        noisy[low] = rng.poisson(mean[low])
    return noisy


@dataclass(frozen=True, slots=True)
class _Axis1D:
    """Linear interpolation from an evenly spaced grid of centres to positions: each position takes
    two grid values (`i0`, `i1`) with weights (`w0`, `w1`). Gathers, not a matrix product: a 512 x
    512 product goes through a threaded BLAS, which on a shared machine costs more than the
    arithmetic."""

    i0: npt.NDArray[np.intp]
    i1: npt.NDArray[np.intp]
    w0: npt.NDArray[np.float32]
    w1: npt.NDArray[np.float32]

    @classmethod
    def of(cls, at: Image, centres: Image, clamp: bool = False) -> _Axis1D:
        """Beyond the first and last centre the edge value holds for half a cell (cement never
        smears out of its grid) or, with `clamp`, for ever; further out the weight is 0."""
        n = len(centres)
        f = (np.asarray(at, float) - centres[0]) / (centres[1] - centres[0])
        reach = np.inf if clamp else 0.5
        valid = (f >= -reach) & (f <= n - 1 + reach)
        f = np.clip(f, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(f).astype(np.intp), n - 1)
        i1 = np.minimum(i0 + 1, n - 1)
        frac = f - i0
        return cls(i0, i1, ((1.0 - frac) * valid).astype(np.float32), (frac * valid).astype(np.float32))


def _resample(rows: _Axis1D, cols: _Axis1D, grid: Image) -> Image:
    """`grid` (rows x columns of cells) interpolated to the image (bilinear, separable)."""
    g = grid.astype(np.float32, copy=False)
    tall = g[rows.i0, :] * rows.w0[:, None] + g[rows.i1, :] * rows.w1[:, None]
    out: Image = tall[:, cols.i0] * cols.w0 + tall[:, cols.i1] * cols.w1
    return out


class _WideBlur:
    """A Gaussian blur of a large sigma (the scatter's spread, tens of mm): block means over
    `SCATTER_BLOCK` x `SCATTER_BLOCK` pixels, the blur on that small image, and back up by bilinear
    interpolation. Scatter has no detail finer than a block, and this costs about a millisecond
    instead of tens on a 512 x 512 frame."""

    def __init__(self, height: int, width: int, sigma_px: float) -> None:
        b = SCATTER_BLOCK
        self.shape = (height, width)
        self.small = (math.ceil(height / b), math.ceil(width / b))
        self.sigma = sigma_px / b
        centres_r = (np.arange(self.small[0]) + 0.5) * b - 0.5
        centres_c = (np.arange(self.small[1]) + 0.5) * b - 0.5
        self.rows = _Axis1D.of(np.arange(height, dtype=float), centres_r, clamp=True)
        self.cols = _Axis1D.of(np.arange(width, dtype=float), centres_c, clamp=True)

    def __call__(self, img: Image) -> Image:
        b = SCATTER_BLOCK
        h, w = self.shape
        ph, pw = self.small[0] * b - h, self.small[1] * b - w
        padded = np.pad(img, ((0, ph), (0, pw)), mode="edge") if ph or pw else img
        means = padded.reshape(self.small[0], b, self.small[1], b).mean(axis=(1, 3))
        return _resample(self.rows, self.cols, ndimage.gaussian_filter(means, self.sigma, mode="nearest"))
