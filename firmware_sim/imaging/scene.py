"""What the renderer needs from the spatial vertebra at one moment, copied out read-only.

The renderer runs beside the plant (in the simulator's render process, or in-process in HIL and the
sweeps), so it never holds the live `SpatialVertebra`: `scene_of` takes the body's public ground
truth at the frame's instant (`SpatialVertebra.frame()`, firmware_sim/plant/spatial_outputs.py) and
keeps only what a frame is drawn from: the cement inside the body (on the flow grid) and the cells
of the leak paths that hold cement (on the output grid, painted from each breach outward), a few tens
of kB that cross a process boundary cheaply. The front's depth, the leak volumes and the event times
ride along in `SceneTruth`, for the truth record only: the renderer draws from the cement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firmware_sim.plant.spatial import SpatialVertebra
from firmware_sim.plant.spatial_outputs import OutputGrid, SpatialFrame, Tissue

__all__ = ["CementScene", "SceneTruth", "scene_from_frame", "scene_of"]

_INSIDE = (Tissue.CANCELLOUS, Tissue.CLEFT, Tissue.TUMOUR)


@dataclass(frozen=True, slots=True)
class SceneTruth:
    """The spatial body's ground truth at the scene's instant (device time in seconds)."""

    front_ap_fraction: float = 0.0
    posterior_quarter_t_s: float | None = None
    leak_volumes_m3: dict[str, float] = field(default_factory=dict)
    leak_onset_t_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, frame: SpatialFrame) -> SceneTruth:
        return cls(
            front_ap_fraction=frame.front_ap_fraction,
            posterior_quarter_t_s=frame.events.posterior_quarter_t_s,
            leak_volumes_m3=frame.leak_volumes_m3,
            leak_onset_t_s=dict(frame.events.leak_onset_t_s),
        )


@dataclass(frozen=True, slots=True)
class CementScene:
    """The cement at one device-clock instant, as cement volume per cell volume (float32).

    `body_cement`: the body's cells, on the flow grid. `leak_cells` (N x 3, output-grid indices) and
    `leak_fill` (N): the cells outside the body that hold leaked cement. Axes of both grids: x
    medio-lateral (left -> right), y antero-posterior, z inferior -> superior."""

    t_us: int
    body_cement: np.ndarray
    grid: OutputGrid
    leak_cells: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    leak_fill: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    truth: SceneTruth = field(default_factory=SceneTruth)

    @property
    def has_leak(self) -> bool:
        return bool(len(self.leak_fill))


def scene_of(vertebra: SpatialVertebra, t_us: int) -> CementScene:
    """A copy of `vertebra`'s cement now, stamped `t_us` (the device clock)."""
    return scene_from_frame(vertebra.frame(), t_us)


def scene_from_frame(truth: SpatialFrame, t_us: int) -> CementScene:
    g = truth.grid
    ox, oy, oz = g.body_offset
    nx, ny, nz = g.flow_shape
    body = truth.cement_fraction[ox : ox + nx, oy : oy + ny, oz : oz + nz].astype(np.float32)
    outside = (truth.cement_fraction > 0.0) & ~np.isin(truth.labels, _INSIDE)
    cells = np.argwhere(outside)
    fill = truth.cement_fraction[outside].astype(np.float32)
    return CementScene(t_us, body, g, cells, fill, SceneTruth.of(truth))
