"""The spatial vertebral body: geometry, two-phase Darcy flow, leak paths, outputs, coupling."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.plant.body import build_body
from firmware_sim.plant.darcy import DarcyFlow
from firmware_sim.plant.spatial import POSTERIOR_QUARTER, SpatialVertebra
from firmware_sim.plant.spatial_config import CorticalDefect, SpatialConfig
from firmware_sim.plant.vertebra import DRAINAGE_RESISTANCE_PA_S_M3

from ._util import ML_MIN, command_for, run

R_DRAIN = DRAINAGE_RESISTANCE_PA_S_M3["intact"]
Q3 = 3.0 * ML_MIN


def spatial_plant(**spatial: object) -> Plant:
    config = PlantConfig.model_validate(
        {
            "vertebra": "spatial",
            "sensor_noise_kpa": 0.0,
            "syringe_bore_mm": 8.66,
            "mixed_ago_s": 240.0,
            "spatial": {"grid_mm": 3.0, **spatial},
        }
    )
    return Plant(config)


def fill(mu_c: float, mu_m: float, volume_ml: float, **cfg: object) -> DarcyFlow:
    """Inject at 3 mL/min straight into the flow model (no plant), 0.5 s per solve."""
    body = build_body(SpatialConfig.model_validate({"grid_mm": 2.0, **cfg}), 667.0)
    flow = DarcyFlow(body, R_DRAIN, 667.0, 1.194e-3)
    dt = 0.5
    for _ in range(round(volume_ml / 3.0 * 60.0 / dt)):
        flow.advance(Q3 * dt, flow.solve(Q3, mu_c, mu_m))
    return flow


def compactness(s: np.ndarray) -> float:
    filled = s >= 0.5
    padded = np.pad(filled, 1)
    faces = sum(int(np.count_nonzero(np.diff(padded, axis=a))) for a in range(3))
    return faces / (4.836 * int(filled.sum()) ** (2.0 / 3.0))


def test_the_lumped_vertebra_stays_the_default() -> None:
    assert PlantConfig().vertebra == "lumped"
    assert Plant().spatial is None


def test_bad_spatial_parameters_name_the_field_the_value_and_the_range() -> None:
    with pytest.raises(ValidationError, match=r"grid_mm = 0.5 mm is outside the allowed range 1..4 mm"):
        PlantConfig.model_validate({"vertebra": "spatial", "spatial": {"grid_mm": 0.5}})
    with pytest.raises(ValidationError, match=r"diameter_mm = 9.0 mm is outside the allowed range 0.2..8 mm"):
        PlantConfig.model_validate({"spatial": {"cortical_defect": {"diameter_mm": 9.0}}})
    with pytest.raises(ValidationError, match=r"bone = 'tumour' with vertebra = 'spatial'"):
        PlantConfig.model_validate({"vertebra": "spatial", "bone": "tumour"})
    with pytest.raises(ValidationError, match="approach"):
        PlantConfig.model_validate({"spatial": {"approach": "transcostal"}})


def test_the_body_has_its_shape_veins_and_a_transpedicular_tip() -> None:
    cfg = SpatialConfig()
    body = build_body(cfg, 667.0)
    # a lumbar body of 45 x 33 x 27 mm holds ~25-40 mL
    assert 25e-6 < body.body_volume_m3 < 40e-6
    names = {o.name for o in body.outlets}
    assert names == {"basivertebral", "segmental_left", "segmental_right"}
    basivertebral = body.outlets_by_name["basivertebral"]
    assert basivertebral.cell[1] == body.shape[1] - 1  # on the posterior wall
    # unipedicular from the left ends near the midline, bipedicular stays in its own (left) half
    uni = build_body(cfg, 667.0).tip_m[0]
    bi = build_body(cfg.model_copy(update={"approach": "bipedicular"}), 667.0).tip_m[0]
    assert abs(uni) < 4e-3
    assert bi < -6e-3
    assert body.tip_m[1] == pytest.approx(cfg.tip_depth_fraction * cfg.depth_mm * 1e-3)
    defect = build_body(cfg.model_copy(update={"cortical_defect": CorticalDefect(site="anterior")}), 667.0)
    assert defect.outlets_by_name["cortical_anterior"].cell[1] == 0


def test_permeability_is_anisotropic_as_baroud_measured() -> None:
    body = build_body(SpatialConfig(permeability_spread=0.0), 667.0)
    inside = body.inside
    assert np.all(body.k_z_m2[inside] == pytest.approx(4.45e-8))
    assert np.all(body.k_xy_m2[inside] == pytest.approx(3.44e-8))


def test_a_viscous_cement_fills_compactly_and_a_runny_one_fingers() -> None:
    # the viscosity ratio cement / marrow decides: 4000 (a real cement) vs 0.1 (thinner than marrow)
    compact = fill(400.0, 0.1, 2.0, permeability_spread=0.35)
    fingers = fill(0.01, 0.1, 2.0, permeability_spread=0.35)
    assert compactness(compact.s) < 1.75
    assert compactness(fingers.s) > 1.2 * compactness(compact.s)
    for flow in (compact, fingers):
        assert flow.cement_volume_m3 + sum(flow.leaked_m3.values()) == pytest.approx(2e-6, rel=1e-9)


def test_a_vein_takes_cement_only_above_its_opening_pressure_and_less_of_a_viscous_one() -> None:
    # a bipedicular tip from the left: 4 mL reach the left segmental vein
    shut = fill(100.0, 0.1, 4.0, vein_opening_pressure_kpa=50.0, approach="bipedicular")
    assert sum(shut.leaked_m3.values()) == 0.0
    runny = fill(100.0, 0.1, 4.0, approach="bipedicular")
    thick = fill(400.0, 0.1, 4.0, approach="bipedicular")
    assert runny.leaked_m3["segmental_left"] > 0.0
    # the pressure that drives it is the marrow's, the same for both: 4x the viscosity, < 1/4 the leak
    assert thick.leaked_m3["segmental_left"] < 0.25 * runny.leaked_m3["segmental_left"]


def test_the_syringe_pressure_comes_out_of_the_spatial_model() -> None:
    normal = spatial_plant()
    tight = spatial_plant(permeability_si_m2=4.45e-9, permeability_ap_m2=3.44e-9)
    for plant in (normal, tight):
        run(plant, command_for(plant, Q3), 10.0)
    body_drop = normal.tip_pressure_pa - normal.intravertebral_pressure_pa
    body_drop_tight = tight.tip_pressure_pa - tight.intravertebral_pressure_pa
    assert body_drop_tight > 5.0 * body_drop
    # the extra drop in the bone is in the syringe pressure the controller reads
    rise = tight.syringe_pressure_pa - normal.syringe_pressure_pa
    assert rise == pytest.approx(body_drop_tight - body_drop, rel=0.1)
    # intravertebral pressure keeps the calibrated drainage level (Reidy / Li, ~6 kPa at 3 mL/min)
    assert 5e3 < normal.intravertebral_pressure_pa < 8e3


def test_volume_is_conserved_between_syringe_grid_and_leaks() -> None:
    plant = spatial_plant(cortical_defect={"site": "anterior", "diameter_mm": 3.0}, tip_depth_fraction=0.15)
    run(plant, command_for(plant, Q3), 30.0)
    sp = plant.spatial
    assert sp is not None
    leaked = sum(sp.leak_volumes_m3.values())
    assert leaked > 0.0
    assert plant.leaked_volume_m3 == pytest.approx(leaked)
    pending = plant.delivered_volume_m3 - sp.cement_volume_m3 - leaked
    # what is not yet in the grid is at most the last solve interval's worth
    assert 0.0 <= pending <= Q3 * sp.config.flow_update_s + 1e-12
    assert plant.bone_volume_m3 == pytest.approx(plant.delivered_volume_m3 - leaked)


def test_outputs_front_depth_snapshots_and_the_posterior_quarter() -> None:
    plant = spatial_plant(tip_depth_fraction=0.5)
    sp = plant.spatial
    assert isinstance(sp, SpatialVertebra)
    depths = []
    for _ in range(6):
        run(plant, command_for(plant, 6.0 * ML_MIN), 10.0)
        depths.append(sp.front_ap_fraction())
    assert depths == sorted(depths)
    assert sp.reached_posterior_quarter
    assert depths[-1] >= POSTERIOR_QUARTER
    assert len(sp.snapshots) >= 5
    last = sp.snapshots[-1]
    assert last.cement_fraction.shape == sp.body.shape
    assert float((last.cement_fraction * sp.flow._pore).sum()) <= plant.delivered_volume_m3
    assert sp.temperature_c.shape == sp.body.shape


def test_the_tip_pressure_does_not_depend_on_the_grid() -> None:
    # the source cell's equivalent radius (0.315 h, the lattice value) makes the bone's drop at the tip
    # the same on any grid; with the cell's volume radius it grew by 20 % from 3 to 2 mm
    drops = []
    for grid in (3.0, 2.0):
        body = build_body(SpatialConfig(grid_mm=grid, permeability_spread=0.0), 667.0)
        flow = DarcyFlow(body, R_DRAIN, 667.0, 1.194e-3)
        for _ in range(20):
            flow.advance(Q3 * 0.5, flow.solve(Q3, 300.0, 0.1))
        sol = flow.solve(Q3, 300.0, 0.1)
        drops.append(sol.tip_pressure_pa - sol.marrow_pressure_pa)
    assert drops[0] == pytest.approx(drops[1], rel=0.02)


def test_a_cleft_carries_the_cement_along_it_and_a_tumour_at_the_tip_resists_it() -> None:
    plain = fill(300.0, 0.1, 1.5, permeability_spread=0.0)
    cleft = fill(
        300.0, 0.1, 1.5, permeability_spread=0.0, cleft={"height_fraction": 0.5, "thickness_mm": 2.0}
    )

    # the cleft is a horizontal gap at the tip's height: the fill spreads flat along it
    def flatness(flow: DarcyFlow) -> float:
        filled = np.argwhere(flow.s >= 0.5)
        return float(np.ptp(filled[:, 0]) + 1) / float(np.ptp(filled[:, 2]) + 1)

    assert flatness(cleft) > 1.5 * flatness(plain)
    body = build_body(SpatialConfig(permeability_spread=0.0), 667.0)
    tumour_cfg = SpatialConfig(
        permeability_spread=0.0,
        tumour={"centre_fraction": (0.5 + body.tip_m[0] / 0.045, 0.35, 0.5), "radius_mm": 6.0},
    )
    tumour = DarcyFlow(build_body(tumour_cfg, 667.0), R_DRAIN, 667.0, 1.194e-3)
    healthy = DarcyFlow(body, R_DRAIN, 667.0, 1.194e-3)
    for flow in (tumour, healthy):
        for _ in range(10):
            flow.advance(Q3 * 0.5, flow.solve(Q3, 300.0, 0.1))
    assert tumour.solve(Q3, 300.0, 0.1).tip_pressure_pa > 5.0 * healthy.solve(Q3, 300.0, 0.1).tip_pressure_pa


def test_the_pressure_solve_matches_a_direct_sparse_solve_and_restarts_cheaply_after_a_flow_drop() -> None:
    """The CG solution on the body's cells equals scipy's direct solve of the same system; a warm
    start rescaled to the new flow converges in few iterations when the flow falls tenfold (a stop)."""
    from scipy.sparse.linalg import spsolve

    flow = fill(300.0, 0.1, 1.0)
    mu = np.full(flow.body.shape, 300.0)
    sol = flow.solve(Q3, mu, 0.1)
    lam_xy, lam_z = flow._mobility(mu, 0.1)
    t = flow._transmissibilities(lam_xy, lam_z)
    n = flow._cells.size
    g = np.zeros(n)
    b = np.zeros(n)
    b[flow._pos[flow.body.tip]] = Q3
    for o in flow.body.outlets:
        gc = flow._marrow_g[o.name]
        g[flow._pos[o.cell]] += gc
        b[flow._pos[o.cell]] += gc * o.outside_pressure_pa
    a, _diag = flow._matrix(t, g)
    exact = spsolve(a.tocsc(), b)
    got = sol.pressure_pa.reshape(-1)[flow._cells]
    assert np.max(np.abs(got - exact)) < 1e-3 * (exact.max() - exact.min())
    after_stop = flow.solve(Q3 / 10.0, mu, 0.1)
    assert after_stop.iterations <= 20


def test_the_front_moves_every_second_the_field_is_solved_every_two_and_at_once_when_an_exit_fills() -> None:
    """`flow_update_s` (1 s) moves the front; `solve_update_s` (2 s) re-solves the pressure field;
    an exit cell of a leak path that fills in between forces a solve at the next move, so a vein
    is not opened up to a solve interval late."""
    plant = spatial_plant()
    sp = plant.spatial
    assert sp is not None
    cmd = command_for(plant, Q3)
    run(plant, cmd, 0.5, dt=0.01)
    solves, moves = sp.solve_count, len(sp.snapshots)
    run(plant, cmd, 10.0, dt=0.01)
    assert len(sp.snapshots) - moves == 10
    assert sp.solve_count - solves == 5
    # the last solve was at 10 s; fill the left segmental vein's exit cell by hand: the move at 11 s
    # solves, a second before its schedule
    solves = sp.solve_count
    exit_cell = sp.body.outlets_by_name["segmental_left"].cell
    sp.flow.s[exit_cell] = 1.0
    run(plant, cmd, 1.0, dt=0.01)
    assert sp.solve_count == solves + 1
    run(plant, cmd, 1.0, dt=0.01)  # 12 s: the schedule counts from the forced solve
    assert sp.solve_count == solves + 1
    run(plant, cmd, 1.0, dt=0.01)
    assert sp.solve_count == solves + 2
