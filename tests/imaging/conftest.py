"""A spatial body for the imaging tests (built once: the first pressure solve takes a moment)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim.imaging.scene import CementScene, SceneTruth
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.plant.spatial import SpatialVertebra


@pytest.fixture(scope="session")
def vertebra() -> SpatialVertebra:
    spatial = Plant(PlantConfig(vertebra="spatial")).spatial
    assert spatial is not None
    return spatial


def scene_with(
    vertebra: SpatialVertebra, fill: float = 0.0, depth_cells: int = 0, leak_cells: int = 0, t_us: int = 0
) -> CementScene:
    """A scene with a block of cement `fill` full from the anterior cortex back `depth_cells` cells
    (the middle third of the body's width and height) and `leak_cells` cells of the basivertebral
    vein's path full."""
    truth = vertebra.frame()
    nx, ny, nz = truth.grid.flow_shape
    body = np.zeros((nx, ny, nz), np.float32)
    porosity = vertebra.body.porosity * vertebra.body.inside
    body[nx // 3 : 2 * nx // 3, :depth_cells, nz // 3 : 2 * nz // 3] = fill
    body *= porosity.astype(np.float32)
    cells = np.asarray(truth.leak_path("basivertebral").cells[:leak_cells], np.int64).reshape(-1, 3)
    fill = np.ones(len(cells), np.float32)
    return CementScene(t_us, body, truth.grid, cells, fill, SceneTruth.of(truth))
