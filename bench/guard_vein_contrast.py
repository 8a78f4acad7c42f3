"""What the image shows of the plant's own small venous leak (HIL spatial-venous-leak-runny, issue 15).

    OMP_NUM_THREADS=1 nice -n 10 python bench/guard_vein_contrast.py            # seed 62, 384 px AP
    python bench/guard_vein_contrast.py --seed 63 --json

The run of spatial-venous-leak-runny in virtual time (its body, runny cement, the plant's 2 mm left
segmental vein that opens at 2 kPa, 3 mL at 3 mL/min), the AP view at 384 px of 0.2 mm and 5 frames/s
(HIL guard-venous-runny's camera), a guard per dose learning its baseline before START. Every 2 s
after the vein's first cement, on noise-free renders (the renderer's `expected`) smoothed as the guard
smooths them:

- the vein's own opacity: the difference between the scene with and without the leaked cells, where
  it is at least 0.01 (log units) before smoothing: its footprint, and the part beyond the body's
  outline grown by 0.5, 1.0 and 1.5 mm (the guard's margin is 1.5 mm);
- its contrast-to-noise there: the vein's smoothed opacity over the guard's own noise sigma (the
  baseline's noise model, host/guard/vision.py) at each dose, peak and mean;
- the bolus's blurred tail on the same pixels and the bolus's plateau (90th percentile inside), the
  scale of the guard's `leak_level` floor.

Also the guard's own verdict at every dose over the whole run (it should not stop: a nominal-looking
frame). No figure here is a speed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
from dataclasses import replace
from typing import Any

import _common
import cv2
import numpy as np

from firmware_sim.imaging.camera import FluoroCamera
from firmware_sim.imaging.fluoro import FluoroConfig
from firmware_sim.imaging.scene import CementScene, scene_of
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from host.frames import FluoroFrame
from host.guard import Guard, GuardConfig
from host.guard.vision import log_image
from protocol import State

SIZE_PX = 384
PIXEL_MM = 0.2
MARGINS_MM = (0.5, 1.0, 1.5)
FOOTPRINT = 0.01
"""The vein's footprint: where its unsmoothed opacity is at least this (log units, ~1 % darker)."""


def plant(seed: int) -> PlantConfig:
    """hil/scenarios/spatial-venous-leak-runny.toml's plant."""
    spatial = {"width_mm": 40.0, "depth_mm": 30.0, "height_mm": 25.0, "approach": "bipedicular"}
    return PlantConfig.model_validate(
        {
            "vertebra": "spatial",
            "mixed_ago_s": 150,
            "syringe_bore_mm": 8.66,
            "seed": seed,
            "spatial": {**spatial, "tip_depth_fraction": 0.3},
        }
    )


def grown(body: np.ndarray, mm: float) -> np.ndarray:
    r = max(1, round(mm / PIXEL_MM))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    out: np.ndarray = cv2.dilate(body.astype(np.uint8), kernel).astype(bool)
    return out


def measure(
    scene: CementScene, cam: FluoroCamera, guards: dict[float, Guard], config: GuardConfig
) -> dict[str, Any]:
    r = cam.renderer
    smooth = config.smooth_mm / PIXEL_MM
    no_leak = replace(scene, leak_cells=scene.leak_cells[:0], leak_fill=scene.leak_fill[:0])
    empty = replace(no_leak, body_cement=np.zeros_like(scene.body_cement))
    e_with, e_without, e_empty = r.expected(scene, "ap"), r.expected(no_leak, "ap"), r.expected(empty, "ap")
    raw_vein = np.log(e_without) - np.log(e_with)
    vein = log_image(e_without, smooth) - log_image(e_with, smooth)
    bolus = log_image(e_empty, smooth) - log_image(e_without, smooth)
    region = guards[min(guards)].region
    assert region is not None
    body = region.mask(vein.shape)
    foot = raw_vein >= FOOTPRINT
    inside = body & (bolus > 0.02)
    row: dict[str, Any] = {
        "t_s": round(scene.t_us / 1e6, 1),
        "vein_ml": round(sum(scene.truth.leak_volumes_m3.values()) * 1e6, 4),
        "footprint_mm2": round(float(foot.sum()) * PIXEL_MM**2, 1),
        "vein_peak": round(float(vein[foot].max()), 4) if foot.any() else 0.0,
        "bolus_plateau": round(float(np.percentile(bolus[inside], 90)), 4) if inside.any() else 0.0,
    }
    for mm in MARGINS_MM:
        beyond = foot & ~grown(body, mm)
        key = f"beyond_{mm:g}mm"
        row[f"{key}_mm2"] = round(float(beyond.sum()) * PIXEL_MM**2, 1)
        if not beyond.any():
            continue
        row[f"{key}_vein_mean"] = round(float(vein[beyond].mean()), 4)
        row[f"{key}_bolus_tail_mean"] = round(float(bolus[beyond].mean()), 4)
        for dose, guard in guards.items():
            assert guard.baseline is not None
            cnr = vein[beyond] / guard.baseline.sigma[beyond]
            row[f"{key}_cnr_{dose:g}"] = [round(float(cnr.max()), 1), round(float(cnr.mean()), 1)]
    return row


def run(seed: int, doses: list[float]) -> dict[str, Any]:
    rig = VirtualRig(plant(seed))
    rig.connect()
    spatial = rig.plant.spatial
    assert spatial is not None
    config = GuardConfig()
    cams = {
        d: FluoroCamera(
            spatial,
            FluoroConfig(
                width_px=SIZE_PX,
                height_px=SIZE_PX,
                pixel_mm=PIXEL_MM,
                photons_per_pixel=d,
                fps=5.0,
                seed=seed,
            ),
            ("ap",),
        )
        for d in doses
    }
    guards = {d: Guard(config) for d in doses}
    stops: dict[float, list[str]] = {d: [] for d in doses}

    def feed() -> None:
        state = State(rig.controller.state)
        for d in doses:
            for rf, _truth in cams[d].capture(rig.now_us):
                frame = FluoroFrame(rf.index, rf.t_us, rf.view, rf.pixels, rf.bit_depth, rf.pixel_mm, "bench")
                step = guards[d].frame(frame, rf.t_us / 1e6, state)
                if step.stop is not None:
                    stops[d].append(f"{step.stop.name} at {rf.t_us / 1e6:.1f} s")

    while any(g.status.state != "WATCHING" for g in guards.values()):
        rig.run(0.2)
        feed()
    rig.arm(volume_limit_nl=3_000_000)
    rig.start()
    rows = []
    last_s = -1.0
    while rig.controller.state == State.INJECTING:
        rig.run(0.2)
        feed()
        scene = scene_of(spatial, rig.now_us)
        if not scene.truth.leak_onset_t_s or rig.now_us / 1e6 - last_s < 2.0:
            continue
        last_s = rig.now_us / 1e6
        rows.append(measure(scene, cams[doses[0]], guards, config))
    return {"seed": seed, "rows": rows, "guard_stops": {f"{d:g}": s for d, s in stops.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=62)
    p.add_argument("--doses", type=float, nargs="+", default=[300.0, 1000.0, 3000.0, 10000.0])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    doc = {
        "command": _common.command_line("guard_vein_contrast", argv),
        "machine": _common.machine(),
        **run(args.seed, args.doses),
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    for row in doc["rows"]:
        print(row)
    print("guard stops:", doc["guard_stops"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
