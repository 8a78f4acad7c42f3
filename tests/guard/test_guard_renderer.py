"""The guard on the simulator's own renderer (firmware_sim/imaging): the outline it finds, the front it
measures against the scene's ground truth, the rules at their edges, no stop on nominal cement. A
256 px image over the default 102 mm field keeps it fast."""

from __future__ import annotations

import pytest

from firmware_sim.imaging.fluoro import FluoroConfig, FluoroRenderer
from firmware_sim.imaging.scene import CementScene
from firmware_sim.plant.spatial import SpatialVertebra
from host.frames import FluoroFrame
from host.guard import Guard, GuardConfig, GuardStep
from protocol import State, StopDetail
from tests.imaging.conftest import scene_with

SIZE = {"width_px": 256, "height_px": 256, "pixel_mm": 0.4}


class Camera:
    def __init__(self, vertebra: SpatialVertebra, dose: float) -> None:
        self.vertebra = vertebra
        config = FluoroConfig.model_validate({**SIZE, "photons_per_pixel": dose})
        self.r = FluoroRenderer(vertebra.body, config)
        self.index = 0

    def frame(self, scene: CementScene) -> FluoroFrame:
        self.index += 1
        c = self.r.config
        px = self.r.render(scene, "lateral", self.index)
        return FluoroFrame(self.index, self.index * 100_000, "lateral", px, c.bit_depth, c.pixel_mm, "render")


def watching(vertebra: SpatialVertebra, dose: float = 1000.0) -> tuple[Camera, Guard]:
    cam = Camera(vertebra, dose)
    guard = Guard(GuardConfig())
    empty = scene_with(vertebra)
    for _ in range(8):
        step = guard.frame(cam.frame(empty), cam.index * 0.1, State.ARMED)
    assert step.status.label == "WATCHING"
    return cam, guard


def run(cam: Camera, guard: Guard, scene: CementScene, n: int) -> list[GuardStep]:
    return [guard.frame(cam.frame(scene), 10 + cam.index * 0.1, State.INJECTING) for _ in range(n)]


@pytest.mark.parametrize("dose", [300.0, 3000.0])
def test_the_auto_outline_lies_on_the_true_body(vertebra: SpatialVertebra, dose: float) -> None:
    cam, guard = watching(vertebra, dose)
    left, top, right, bottom = cam.r.geometry("lateral").body_box_px
    region = guard.region
    assert region is not None
    tol = 1.0 / SIZE["pixel_mm"]  # 1 mm
    assert abs(region.left - left) <= tol
    assert abs(region.right - right) <= tol, "a late posterior wall would move the line back"
    assert abs(region.top - top) <= 2 * tol
    assert abs(region.bottom - bottom) <= 2 * tol


@pytest.mark.parametrize("dose", [300.0, 3000.0])
def test_cement_short_of_the_line_never_stops_and_past_it_stops(
    vertebra: SpatialVertebra, dose: float
) -> None:
    cam, guard = watching(vertebra, dose)
    depth_cells = vertebra.frame().grid.flow_shape[1]
    short = round(0.6 * depth_cells)
    steps = run(cam, guard, scene_with(vertebra, fill=0.8, depth_cells=short), 4)
    assert all(s.stop is None for s in steps), [s.status.label for s in steps]
    assert steps[-1].measures is not None
    assert steps[-1].measures.front_fraction == pytest.approx(short / depth_cells, abs=0.05)
    past = round(0.85 * depth_cells)
    steps = run(cam, guard, scene_with(vertebra, fill=0.8, depth_cells=past), 2)
    assert steps[-1].stop == StopDetail.POSTERIOR_QUARTER


def test_a_filling_vein_stops_the_injection(vertebra: SpatialVertebra) -> None:
    cam, guard = watching(vertebra)
    depth_cells = vertebra.frame().grid.flow_shape[1]
    bolus = round(0.4 * depth_cells)
    assert all(s.stop is None for s in run(cam, guard, scene_with(vertebra, fill=0.8, depth_cells=bolus), 3))
    steps = []
    for n in range(1, 25):  # the basivertebral vein fills, a cell (~1 mm) a frame
        steps += run(cam, guard, scene_with(vertebra, fill=0.8, depth_cells=bolus, leak_cells=n), 1)
    stops = [s.stop for s in steps if s.stop]
    assert stops in ([StopDetail.VENOUS_FILLING], [StopDetail.EXTRAVASATION]), [s.measures for s in steps]
