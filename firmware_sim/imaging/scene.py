"""What the renderer needs from the spatial vertebra at one moment, copied out read-only.

The renderer runs beside the plant (in the simulator's render thread, or in-process in HIL and the
sweeps), so it never holds the live `SpatialVertebra`: `scene_of` takes the body's public ground
truth at the frame's instant (`SpatialVertebra.frame()`, firmware_sim/plant/spatial_outputs.py: a
copy, a few hundred kB) and splits the cement into what is inside the body (on the flow grid) and
what leaked out of it (on the output grid, painted along each leak path's cells). Rendering works on
the copy. The rest of the `SpatialFrame` (the front's depth, leak volumes, event times) rides along
for the truth record only: the renderer draws from the two cement fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim.plant.spatial import SpatialVertebra
from firmware_sim.plant.spatial_outputs import OutputGrid, SpatialFrame, Tissue

__all__ = ["CementScene", "scene_from_frame", "scene_of"]

_INSIDE = (Tissue.CANCELLOUS, Tissue.CLEFT, Tissue.TUMOUR)


@dataclass(frozen=True, slots=True)
class CementScene:
    """The cement at one device-clock instant, as cement volume per cell volume (float32):
    `body_cement` on the flow grid (the body's cells), `leak_cement` on the output grid (zero inside
    the body). Axes of both: x medio-lateral (left -> right), y antero-posterior, z inferior ->
    superior. `truth` is the spatial body's ground truth at that instant (scoring only)."""

    t_us: int
    body_cement: np.ndarray
    leak_cement: np.ndarray
    grid: OutputGrid
    truth: SpatialFrame

    @property
    def has_leak(self) -> bool:
        return bool(self.leak_cement.any())


def scene_of(vertebra: SpatialVertebra, t_us: int) -> CementScene:
    """A copy of `vertebra`'s cement now, stamped `t_us` (the device clock)."""
    truth = vertebra.frame()
    return scene_from_frame(truth, t_us)


def scene_from_frame(truth: SpatialFrame, t_us: int) -> CementScene:
    g = truth.grid
    ox, oy, oz = g.body_offset
    nx, ny, nz = g.flow_shape
    body = truth.cement_fraction[ox : ox + nx, oy : oy + ny, oz : oz + nz].astype(np.float32)
    inside = np.isin(truth.labels, _INSIDE)
    leak = np.where(inside, 0.0, truth.cement_fraction).astype(np.float32)
    return CementScene(t_us=t_us, body_cement=body, leak_cement=leak, grid=g, truth=truth)
