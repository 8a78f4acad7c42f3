"""Ground truth beside each frame, for scoring the guard: never inside a frame, never sent to it.

One `FrameTruth` per rendered frame, keyed by the frame's index: what the cement really did at that
instant (the spatial body's public outputs, firmware_sim/plant/spatial_outputs.py) and where the
body really is in that view's image. The simulator writes them as JSON lines to a sidecar file
(`cementguard sim --frames-truth PATH`), never to the frame stream; in-process runs (HIL, sweeps)
keep them in memory beside the frames they push to the guard.

Device time throughout: the frame's `t_us` is the controller's clock; the spatial body's event times
(seconds since the plant started, stepped with the controller's ticks) are given here in us too.
Their resolution is the plant's flow update (1 s by default): a leak's onset or the posterior-quarter
crossing is known to within that, not to the frame.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from firmware_sim.imaging.fluoro import ViewGeometry
from firmware_sim.imaging.scene import CementScene
from firmware_sim.plant.spatial_outputs import POSTERIOR_QUARTER

__all__ = ["FrameTruth", "TruthWriter", "truth_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameTruth:
    index: int
    t_us: int
    view: str
    front_ap_fraction: float
    """How far back the cement reaches (0 anterior cortex, 1 posterior wall)."""
    past_posterior_quarter: bool
    posterior_quarter_t_us: int | None
    """When the front first reached the posterior-quarter line (None: not yet)."""
    cement_volume_ml: float
    """Cement inside the body."""
    leak_volumes_ml: dict[str, float]
    """Per leak path (basivertebral, segmental_left/right, cortical_<site>): cement that left."""
    leak_onset_t_us: dict[str, int]
    """Per leak path with cement: when cement first entered it."""
    body_box_px: tuple[float, float, float, float]
    """The body's true outline in this view: (left, top, right, bottom), pixel-centre units."""
    anterior_col: float | None
    posterior_col: float | None
    posterior_quarter_col: float | None
    """Lateral view: the columns of the anterior cortex, the posterior wall and the clinical line."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _us(t_s: float | None) -> int | None:
    return None if t_s is None else round(t_s * 1e6)


def truth_of(scene: CementScene, index: int, view: str, geometry: ViewGeometry) -> FrameTruth:
    """The truth of frame `index` of `view`, rendered from `scene`."""
    t = scene.truth
    cell_ml = scene.grid.spacing_mm**3 * 1e-3
    inside_ml = float(scene.body_cement.sum()) * cell_ml
    return FrameTruth(
        index=index,
        t_us=scene.t_us,
        view=view,
        front_ap_fraction=t.front_ap_fraction,
        past_posterior_quarter=t.front_ap_fraction >= POSTERIOR_QUARTER,
        posterior_quarter_t_us=_us(t.posterior_quarter_t_s),
        cement_volume_ml=inside_ml,
        leak_volumes_ml={name: v * 1e6 for name, v in t.leak_volumes_m3.items()},
        leak_onset_t_us={k: round(v * 1e6) for k, v in t.leak_onset_t_s.items()},
        body_box_px=geometry.body_box_px,
        anterior_col=geometry.anterior_col,
        posterior_col=geometry.posterior_col,
        posterior_quarter_col=geometry.ap_fraction_col(POSTERIOR_QUARTER),
    )


class TruthWriter:
    """Appends truth records as JSON lines (one per frame) and flushes each, so a scorer reading the
    file while the simulator runs sees every frame's truth as soon as the frame is sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = path.open("w", encoding="utf-8")

    def write(self, truth: FrameTruth) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(truth.to_json(), separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
