"""The fluoroscopic guard on randomized simulated injections with ground truth (issue 15).

    OMP_NUM_THREADS=1 python bench/guard_sweep.py                  # 3 doses x 2 rates x 4 kinds x 2 seeds
    python bench/guard_sweep.py --seeds 1 --doses 1000 --fps 5 --json
    nice python bench/guard_sweep.py --kinds venous nominal --seeds 3   # the venous figures

Each run is the whole controller and plant in virtual time (`VirtualRig`, the spatial body) with the
simulator's renderer (firmware_sim/imaging, lateral view, 256 x 256 px of 0.4 mm: the default 102 mm
field at a quarter of the pixels), the guard judging every frame with the controller's state, and its
stop sent to the controller as STOP source FLUORO_IMAGE (the controller's own detectors run as usual).
Kinds, each with a random tip depth and seed:

- posterior: the tip at 50-58 % of the depth, 2 mL: the front crosses the posterior-quarter line;
- cortical: a 2 mm anterior cortical defect, the tip at 15-25 %: cement leaks into the soft tissue;
- nominal: the tip at 25-32 %, 2 mL: inside the body, short of the line (checked on the truth);
- venous: the body, cement and vein of HIL guard-venous-runny (a 40 x 30 x 25 mm body, runny cement,
  bipedicular, a left segmental vein that takes cement), the tip at 25-35 %, 3 mL at 3 mL/min,
  watched by the biplane guard (lateral + AP, alternating pulses at `fps` per view): the vein runs
  along the lateral view's beam, only the AP view shows it leave the body.

Rates come with 95 % Wilson intervals and false stops with the one-sided 95 % Clopper-Pearson upper
bound (hil/_sweep_stats.py, the detector sweep's own); "pressure missed" counts the leaks the
controller's pressure detectors did not stop before the guard (or at all).

Per run, from the frames' ground truth (never given to the guard): the onset (the first frame past the
line, the first leaked cement), the guard's stop (frame, rule), its latency in frames and ms from the
onset (negative: it stopped before the truth's first frame past the line, "approaching" it), and
whether a pressure detector stopped the run first. A nominal run with any guard stop is a false stop.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import _common
import cv2

from firmware_sim.imaging.camera import FluoroCamera
from firmware_sim.imaging.fluoro import FluoroConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from hil._sweep_stats import clopper_pearson_upper, wilson_interval
from host.frames import FluoroFrame
from host.guard import Guard, GuardConfig
from host.guard.biplane import BiplaneGuard
from protocol import State, StopReason, StopSource
from protocol.messages import Stop

KINDS = ("posterior", "cortical", "venous", "nominal")
EXPECTED = {
    "posterior": "POSTERIOR_QUARTER",
    "cortical": "EXTRAVASATION",
    "venous": "VENOUS_FILLING",
    "nominal": None,
}
VENOUS_BODY: dict[str, Any] = {
    "width_mm": 40.0,
    "depth_mm": 30.0,
    "height_mm": 25.0,
    "approach": "bipedicular",
    "segmental_diameter_mm": 4.0,
    "vein_length_mm": 30.0,
    "vein_opening_pressure_kpa": 0.0,
}
"""hil/scenarios/guard-venous-runny.toml's body and vein."""


@dataclass
class Run:
    kind: str
    seed: int
    dose: float
    fps: float
    tip: float
    onset_s: float | None
    stop_s: float | None
    rule: str | None
    latency_ms: float | None
    latency_frames: float | None
    """Frame periods of one view (a biplane stream pulses each view at `fps`)."""
    controller_stop: str | None
    """A stop the controller latched before the guard's (a pressure detector), if any."""
    leak_ml_at_end: float
    front_at_end: float
    frames: int
    guard_ms_per_frame: float


def plant(kind: str, tip: float, seed: int) -> PlantConfig:
    spatial: dict[str, Any] = {"tip_depth_fraction": tip}
    extra: dict[str, Any] = {}
    if kind == "cortical":
        spatial["cortical_defect"] = {"site": "anterior", "diameter_mm": 2.0}
    if kind == "venous":
        spatial.update(VENOUS_BODY)
        extra = {"mixed_ago_s": 150, "syringe_bore_mm": 8.66}
    return PlantConfig.model_validate({"vertebra": "spatial", "spatial": spatial, "seed": seed, **extra})


def one(kind: str, seed: int, dose: float, fps: float) -> Run:
    rnd = random.Random(seed * 1009 + KINDS.index(kind))
    tip = {
        "posterior": rnd.uniform(0.5, 0.58),
        "cortical": rnd.uniform(0.15, 0.25),
        "venous": rnd.uniform(0.25, 0.35),
    }.get(kind, rnd.uniform(0.25, 0.32))
    rig = VirtualRig(plant(kind, tip, seed))
    rig.connect()
    config = FluoroConfig(
        width_px=256, height_px=256, pixel_mm=0.4, photons_per_pixel=dose, fps=fps, seed=seed
    )
    spatial = rig.plant.spatial
    assert spatial is not None
    biplane = kind == "venous"
    camera = FluoroCamera(spatial, config, ("lateral", "ap") if biplane else ("lateral",))
    guard: Guard | BiplaneGuard = BiplaneGuard(GuardConfig()) if biplane else Guard(GuardConfig())
    period = 1.0 / fps
    onset: float | None = None
    stop_s: float | None = None
    rule: str | None = None
    frames = 0
    spent = 0.0
    last_truth = None

    def judge() -> None:
        nonlocal onset, stop_s, rule, frames, spent, last_truth
        for rf, truth in camera.capture(rig.now_us):
            last_truth = truth
            t = rf.t_us / 1e6
            if onset is None:
                if kind == "posterior" and truth.posterior_quarter_t_us is not None:
                    onset = truth.posterior_quarter_t_us / 1e6
                elif kind != "posterior" and truth.leak_onset_t_us:
                    onset = min(truth.leak_onset_t_us.values()) / 1e6
            frame = FluoroFrame(rf.index, rf.t_us, rf.view, rf.pixels, rf.bit_depth, rf.pixel_mm, "sweep")
            t0 = time.perf_counter()
            step = guard.frame(frame, t, State(rig.controller.state))
            spent += time.perf_counter() - t0
            frames += 1
            if step.stop is not None and stop_s is None:
                stop_s, rule = t, step.stop.name
                detail = int(step.stop)

                def image_stop(i: int, d: int = detail) -> Stop:
                    return Stop(cmd_id=i, source=StopSource.FLUORO_IMAGE, detail=d)

                rig.command(image_stop)

    while guard.status.state != "WATCHING" and rig.now_us < 30e6:  # the baseline, before ARM and START
        rig.run(period)
        judge()
    rig.arm(volume_limit_nl=3_000_000 if kind == "venous" else 2_000_000)
    rig.start()
    controller_stop = None
    while rig.controller.state == State.INJECTING and rig.now_us < 120e6:
        rig.run(period)
        judge()
    if rig.controller.state != State.INJECTING and stop_s is None:
        reason = rig.controller.stop_reason
        if reason not in (StopReason.VOLUME_LIMIT, StopReason.NONE):
            controller_stop = reason.name
    for _ in range(3):  # the frames that show the stop
        rig.run(period)
        judge()
    latency = None if onset is None or stop_s is None else (stop_s - onset) * 1000.0
    assert last_truth is not None
    return Run(
        kind=kind,
        seed=seed,
        dose=dose,
        fps=fps,
        tip=round(tip, 3),
        onset_s=None if onset is None else round(onset, 3),
        stop_s=None if stop_s is None else round(stop_s, 3),
        rule=rule,
        latency_ms=None if latency is None else round(latency, 1),
        latency_frames=None if latency is None else round(latency / 1000.0 * fps, 2),
        controller_stop=controller_stop,
        leak_ml_at_end=round(sum(last_truth.leak_volumes_ml.values()), 4),
        front_at_end=round(last_truth.front_ap_fraction, 3),
        frames=frames,
        guard_ms_per_frame=round(spent / max(frames, 1) * 1000.0, 2),
    )


def _interval(k: int, n: int) -> list[float]:
    lo, hi = wilson_interval(k, n)
    return [round(lo, 3), round(hi, 3)]


def _row(kind: str, group: list[Run], **key: Any) -> dict[str, Any]:
    want = EXPECTED[kind]
    if want is None:
        false = sum(r.rule is not None for r in group)
        return {
            "kind": kind,
            **key,
            "runs": len(group),
            "false_stops": false,
            "false_stop_rate_upper95": round(clopper_pearson_upper(false, len(group)), 3),
        }
    onset = [r for r in group if r.onset_s is not None]
    hit = [r for r in onset if r.rule == want]
    lat = [r.latency_ms for r in hit if r.latency_ms is not None]
    missed_by_pressure = [r for r in onset if r.controller_stop is None]
    caught_only_by_guard = [r for r in missed_by_pressure if r.rule == want]
    return {
        "kind": kind,
        **key,
        "runs": len(group),
        "with_onset": len(onset),
        "detected": len(hit),
        "detection_ci95": _interval(len(hit), len(onset)),
        "stopped_without_onset": sum(r.rule is not None and r.onset_s is None for r in group),
        "wrong_rule": sum(r.rule not in (None, want) for r in group),
        "latency_ms_median": _common.median(lat) if lat else None,
        "latency_ms_max": max(lat) if lat else None,
        "pressure_caught": sum(r.controller_stop is not None for r in group),
        "pressure_missed": len(missed_by_pressure),
        "guard_caught_of_pressure_missed": len(caught_only_by_guard),
        "guard_only_ci95": _interval(len(caught_only_by_guard), len(missed_by_pressure)),
    }


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """A row per (kind, dose, frame rate), then a row per kind over all cells (the pooled rates the
    intervals are tight enough to read)."""
    rows = []
    keys = sorted({(r.kind, r.dose, r.fps) for r in runs}, key=lambda k: (KINDS.index(k[0]), k[1], k[2]))
    for kind, dose, fps in keys:
        group = [r for r in runs if (r.kind, r.dose, r.fps) == (kind, dose, fps)]
        rows.append(_row(kind, group, dose=dose, fps=fps))
    for kind in sorted({r.kind for r in runs}, key=KINDS.index):
        rows.append(_row(kind, [r for r in runs if r.kind == kind], dose="all", fps="all"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--doses", type=float, nargs="+", default=[300.0, 1000.0, 3000.0])
    p.add_argument("--fps", type=float, nargs="+", default=[2.0, 5.0])
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    runs = []
    t0 = time.perf_counter()
    for kind, dose, fps, seed in itertools.product(
        args.kinds, args.doses, args.fps, range(1, args.seeds + 1)
    ):
        run = one(kind, seed, dose, fps)
        runs.append(run)
        if not args.json:
            print(
                f"{kind:9s} dose {dose:6.0f} fps {fps:4.1f} seed {seed} tip {run.tip:.2f}: "
                f"onset {run.onset_s} stop {run.stop_s} {run.rule or '-'} latency {run.latency_ms} ms "
                f"({run.latency_frames} frames) pressure {run.controller_stop or '-'} "
                f"leak {run.leak_ml_at_end} front {run.front_at_end}",
                flush=True,
            )
    summary = summarise(runs)
    doc: dict[str, Any] = {
        "command": _common.command_line("bench/guard_sweep.py", argv),
        "machine": _common.machine(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    for row in summary:
        print(row)
    print(f"wall {doc['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
