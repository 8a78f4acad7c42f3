"""The spatial body's public outputs (`SpatialVertebra.frame()`): what the imaging work codes against.

Axes, labels, the posterior wall and the canal are checked against the body's own geometry; the
cement field against the plant's volume books; the events against the state they announce.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim.hal import MotorCommand
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.plant.spatial_outputs import POSTERIOR_QUARTER, SpatialFrame, Tissue

from ._util import ML_MIN, command_for

DT = 0.01


def plant_of(**spatial: object) -> Plant:
    config = PlantConfig.model_validate(
        {"vertebra": "spatial", "sensor_noise_kpa": 0.0, "mixed_ago_s": 150.0, "spatial": spatial}
    )
    return Plant(config)


def frame_of(plant: Plant) -> SpatialFrame:
    assert plant.spatial is not None
    return plant.spatial.frame()


def test_the_grid_axes_put_the_tip_the_wall_and_the_canal_where_the_body_has_them() -> None:
    plant = plant_of(tip_depth_fraction=0.35, side="left", approach="bipedicular")
    assert plant.spatial is not None
    body = plant.spatial.body
    frame = frame_of(plant)
    g = frame.grid
    assert frame.labels.shape == frame.cement_fraction.shape == frame.temperature_c.shape == g.shape
    assert g.spacing_mm == pytest.approx(2.0)
    # the tip: flow cell + offset; its centre in mm is the trajectory's end (x left of the midline
    # for a left bipedicular tip, y at 35 % of the depth, z mid-height)
    tip = tuple(c + o for c, o in zip(body.tip, g.body_offset, strict=True))
    assert frame.labels[tip] == Tissue.CANCELLOUS
    x, y, z = g.centre_mm(*tip)
    assert x == pytest.approx(body.tip_m[0] * 1e3, abs=g.spacing_mm)
    assert x < -2.0
    assert y == pytest.approx(0.35 * 33.0, abs=g.spacing_mm)
    assert z == pytest.approx(13.5, abs=g.spacing_mm)
    assert int((frame.labels == Tissue.CANCELLOUS).sum()) == int(body.inside.sum())
    # the cannula: from the left pedicle at the posterior wall to the tip
    assert frame.cannula_tip_mm == pytest.approx(tuple(c * 1e3 for c in body.tip_m))
    ex, ey, _ez = frame.cannula_entry_mm
    assert ex == pytest.approx(-0.30 * 45.0)
    assert ey == pytest.approx(33.0)
    # posterior wall behind the body, the canal behind the wall; end plates above and below
    j = np.nonzero(frame.labels == Tissue.POSTERIOR_WALL)[1]
    assert j.size > 0
    assert g.axis_mm(1)[j].min() > g.posterior_wall_y_mm
    canal = np.nonzero(frame.labels == Tissue.CANAL)
    assert g.axis_mm(1)[canal[1]].min() > g.axis_mm(1)[j].max()
    assert np.abs(g.axis_mm(0)[canal[0]]).max() < 12.0
    k = np.nonzero(frame.labels == Tissue.ENDPLATE)[2]
    oz, nz = g.body_offset[2], g.flow_shape[2]
    assert set(np.unique(k)) == {oz - 1, oz + nz}
    assert g.posterior_quarter_y_mm == pytest.approx(0.75 * g.posterior_wall_y_mm)
    # bone: cancellous 1 - porosity, cortex dense, none in the canal
    assert frame.bone_volume_fraction[tip] == pytest.approx(0.1)
    assert frame.bone_volume_fraction[frame.labels == Tissue.CORTICAL_SHELL].min() > 0.5
    assert frame.bone_volume_fraction[frame.labels == Tissue.CANAL].max() == 0.0


def test_cleft_tumour_and_defect_have_their_labels() -> None:
    frame = frame_of(
        plant_of(
            cleft={"height_fraction": 0.5},
            tumour={"centre_fraction": [0.7, 0.5, 0.5], "radius_mm": 5.0},
            cortical_defect={"site": "left_lateral"},
        )
    )
    for tissue in (Tissue.CLEFT, Tissue.TUMOUR, Tissue.DEFECT, Tissue.VEIN):
        assert (frame.labels == tissue).any(), tissue
    assert frame.bone_volume_fraction[frame.labels == Tissue.CLEFT].max() == 0.0
    defect = frame.leak_path("cortical_left_lateral")
    assert frame.labels[tuple(defect.cells[0])] == Tissue.DEFECT
    assert frame.grid.axis_mm(0)[defect.cells[:, 0]].max() < 0.0  # it pools on the left
    with pytest.raises(KeyError, match="no leak path 'nope'"):
        frame.leak_path("nope")


def test_the_cement_field_holds_what_entered_and_a_leak_is_painted_on_its_path() -> None:
    # the runny venous-leak scenario's body: the left segmental vein opens after ~2.5 mL
    plant = plant_of(
        width_mm=40.0, depth_mm=30.0, height_mm=25.0, approach="bipedicular", tip_depth_fraction=0.3
    )
    cmd = command_for(plant, 3.0 * ML_MIN)
    spatial = plant.spatial
    assert spatial is not None
    first_leak_t = None
    for _ in range(round(3.2 / 3.0 * 60.0 / DT)):
        plant.step(cmd, DT)
        if first_leak_t is None and spatial.leak_volumes_m3["segmental_left"] > 0.0:
            first_leak_t = plant.t_s
    plant.step(MotorCommand(0.0), 1.0)  # the last second's cement moved
    frame = frame_of(plant)
    cell_m3 = (frame.grid.spacing_mm * 1e-3) ** 3
    path = frame.leak_path("segmental_left")
    assert path.kind == "segmental"
    assert path.volume_m3 == pytest.approx(spatial.leak_volumes_m3["segmental_left"])
    assert path.volume_m3 > 0.01e-6
    assert sum(frame.leak_volumes_m3.values()) == pytest.approx(plant.leaked_volume_m3)
    # onset: device time, at the flow update that first moved cement into the vein
    assert first_leak_t is not None
    assert path.onset_t_s == frame.events.leak_onset_t_s["segmental_left"]
    assert first_leak_t - 0.02 <= path.onset_t_s <= first_leak_t + 0.02
    assert "segmental_right" not in frame.events.leak_onset_t_s
    # the painted leak lies on its path, outside the body, and holds the path's volume
    on_path = np.zeros(frame.grid.shape, dtype=bool)
    on_path[tuple(path.cells.T)] = True
    assert frame.cement_fraction[on_path].sum() * cell_m3 == pytest.approx(path.volume_m3, rel=1e-9)
    assert (frame.labels[on_path] != Tissue.CANCELLOUS).all()
    # everything that entered the body is in the field (bone + leaks)
    total = frame.cement_fraction.sum() * cell_m3
    assert total == pytest.approx(plant.delivered_volume_m3, rel=2e-3)
    assert frame.cement_fraction.min() >= 0.0
    assert frame.cement_fraction.max() <= 1.0


def test_the_posterior_quarter_event_is_the_device_time_the_front_first_crosses_it() -> None:
    plant = plant_of(tip_depth_fraction=0.5)
    spatial = plant.spatial
    assert spatial is not None
    cmd = command_for(plant, 3.0 * ML_MIN)
    crossed = None
    for _ in range(round(2.0 / 3.0 * 60.0 / DT)):
        plant.step(cmd, DT)
        if crossed is None and spatial.front_ap_fraction() >= POSTERIOR_QUARTER:
            crossed = plant.t_s
        assert (spatial.events.posterior_quarter_t_s is None) == (crossed is None)
    frame = frame_of(plant)
    assert crossed is not None
    assert frame.events.posterior_quarter_t_s == pytest.approx(crossed, abs=0.02)
    assert frame.reached_posterior_quarter
    assert frame.t_s == pytest.approx(plant.t_s, abs=0.011)
    # the cement reaches behind the quarter line on the grid, as the fraction says
    j = np.nonzero((frame.cement_fraction > 0.45) & (frame.labels == Tissue.CANCELLOUS))[1]
    assert frame.grid.axis_mm(1)[j].max() >= frame.grid.posterior_quarter_y_mm - frame.grid.spacing_mm


def test_a_frame_is_a_copy_and_its_fixed_fields_are_read_only() -> None:
    plant = plant_of()
    before = frame_of(plant)
    assert before.cement_fraction.sum() == 0.0
    assert before.events.posterior_quarter_t_s is None
    run_s = 30.0
    cmd = command_for(plant, 3.0 * ML_MIN)
    for _ in range(round(run_s / DT)):
        plant.step(cmd, DT)
    assert before.cement_fraction.sum() == 0.0
    after = frame_of(plant)
    assert after.cement_fraction.sum() > 0.0
    assert after.temperature_c.max() >= 37.0
    with pytest.raises(ValueError, match="read-only"):
        after.labels[0, 0, 0] = 1
