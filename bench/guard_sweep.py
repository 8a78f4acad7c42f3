"""The fluoroscopic guard on randomized simulated injections with ground truth (issue 15).

    OMP_NUM_THREADS=1 nice -n 10 python bench/guard_sweep.py --json > guard_sweep.json   # the record
    python bench/guard_sweep.py --seeds 1 --doses 1000 --fps 5 --kinds nominal_ap          # one cell

Each run is the whole controller and plant in virtual time (`VirtualRig`, the spatial body), watched
at once by one camera and guard per (dose, frame rate): the simulator's renderer (firmware_sim/imaging,
256 x 256 px of 0.4 mm: the default 102 mm field at a quarter of the pixels), each guard judging
every frame of its camera with the controller's state. One plant run serves every (dose, rate) cell:
the cement does not depend on the camera, so the cells differ only in what the image shows, and the
plant (the costly part) runs once. So a guard's stop is recorded, not sent (it must not end the run
the other cells watch); what the controller does with an image stop is measured by HIL `guard-*` and
bench/guard.py. The controller's own pressure detectors run as usual; a pressure stop ends the run.

Kinds, each with a random tip depth and seed:

- posterior: lateral view, the tip at 50-58 % of the depth, 2 mL: the front crosses the line;
- cortical: lateral view, a 2 mm anterior cortical defect, the tip at 15-25 %: a pool outside;
- venous: the body, cement and vein of HIL guard-venous-runny (a 40 x 30 x 25 mm body, runny cement,
  bipedicular, a 4 mm left segmental vein 30 mm long that opens at 0 kPa), the tip at 25-35 %, 3 mL at
  3 mL/min, biplane (lateral + AP, alternating pulses at `fps` per view);
- small_vein: HIL spatial-venous-leak-runny's body and the plant's own vein (2 mm, 5 mm to the plexus,
  2 kPa to open: 0.01-0.03 mL by 3 mL), otherwise as venous;
- nominal, nominal_ap, nominal_biplane: the tip at 25-32 %, 2 mL, inside the body and short of the
  line (checked on the truth), watched in the lateral view, the AP view, or both.

Per run and cell, from the frames' ground truth (never given to the guard): the onset (the plant's
posterior-quarter crossing, the first leaked cement), the guard's first stop (time, rule), its latency
in ms and in frame periods of one view (negative: it stopped before the truth's crossing, as the cement
approached the line), whether a pressure detector stopped the run first, and the truth at the stop.
A nominal run with any stop by its guard is a false stop. Rates carry two-sided 95 % Clopper-Pearson
intervals, false stops the one-sided 95 % upper bound (hil/_sweep_stats.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common
import cv2

from firmware_sim.imaging.camera import FluoroCamera
from firmware_sim.imaging.fluoro import FluoroConfig, View
from firmware_sim.imaging.truth import FrameTruth
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from hil._sweep_stats import clopper_pearson_interval, clopper_pearson_upper, percentile
from host.file_limits import read_regular
from host.frames import FluoroFrame
from host.guard import Guard, GuardConfig
from host.guard.biplane import BiplaneGuard
from protocol import State, StopReason

KINDS = ("posterior", "cortical", "venous", "small_vein", "nominal", "nominal_ap", "nominal_biplane")
NOMINAL = ("nominal", "nominal_ap", "nominal_biplane")
LEAKS = ("cortical", "venous", "small_vein")
EXPECTED = {
    "posterior": "POSTERIOR_QUARTER",
    "cortical": "EXTRAVASATION",
    "venous": "VENOUS_FILLING",
    "small_vein": "VENOUS_FILLING",
}
VIEWS: dict[str, tuple[View, ...]] = {
    "posterior": ("lateral",),
    "cortical": ("lateral",),
    "venous": ("lateral", "ap"),
    "small_vein": ("lateral", "ap"),
    "nominal": ("lateral",),
    "nominal_ap": ("ap",),
    "nominal_biplane": ("lateral", "ap"),
}
SMALL_BODY: dict[str, Any] = {
    "width_mm": 40.0,
    "depth_mm": 30.0,
    "height_mm": 25.0,
    "approach": "bipedicular",
}
"""hil/scenarios/spatial-venous-leak-runny.toml's body (its vein: the plant's defaults)."""
VENOUS_VEIN: dict[str, Any] = {
    "segmental_diameter_mm": 4.0,
    "vein_length_mm": 30.0,
    "vein_opening_pressure_kpa": 0.0,
}
"""hil/scenarios/guard-venous-runny.toml's vein."""
RUNNY: dict[str, Any] = {"mixed_ago_s": 150, "syringe_bore_mm": 8.66}


@dataclass
class Run:
    """One (kind, seed) plant run as one (dose, rate) cell saw it."""

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
    pressure_stop: str | None
    """A stop the controller's own detectors latched before the guard's (or without one)."""
    leak_ml_at_stop: float
    """Leaked cement (truth) at the guard's stop, else at the end of the run."""
    front_at_stop: float
    frames: int
    guard_ms_per_frame: float


@dataclass
class Cell:
    """One (dose, rate) camera and guard on a shared plant run."""

    dose: float
    fps: float
    camera: FluoroCamera
    guard: Guard | BiplaneGuard
    stop_s: float | None = None
    rule: str | None = None
    truth_at_stop: FrameTruth | None = None
    last_truth: FrameTruth | None = None
    frames: int = 0
    spent_s: float = 0.0
    pending: list[Any] = field(default_factory=list)


def plant(kind: str, tip: float, seed: int) -> PlantConfig:
    spatial: dict[str, Any] = {"tip_depth_fraction": tip}
    extra: dict[str, Any] = {}
    if kind == "cortical":
        spatial["cortical_defect"] = {"site": "anterior", "diameter_mm": 2.0}
    if kind in ("venous", "small_vein"):
        spatial.update(SMALL_BODY)
        extra = dict(RUNNY)
    if kind == "venous":
        spatial.update(VENOUS_VEIN)
    return PlantConfig.model_validate({"vertebra": "spatial", "spatial": spatial, "seed": seed, **extra})


def tip_of(kind: str, seed: int) -> float:
    rnd = random.Random(seed * 1009 + KINDS.index(kind))
    lo, hi = {
        "posterior": (0.5, 0.58),
        "cortical": (0.15, 0.25),
        "venous": (0.25, 0.35),
        "small_vein": (0.25, 0.35),
    }.get(kind, (0.25, 0.32))
    return rnd.uniform(lo, hi)


def onset_of(kind: str, truth: FrameTruth) -> float | None:
    if kind == "posterior":
        t = truth.posterior_quarter_t_us
        return None if t is None else t / 1e6
    if kind in LEAKS and truth.leak_onset_t_us:
        return min(truth.leak_onset_t_us.values()) / 1e6
    return None


def one(kind: str, seed: int, doses: list[float], rates: list[float]) -> list[Run]:
    """One plant run of `kind`, watched by a camera and guard per (dose, rate)."""
    tip = tip_of(kind, seed)
    rig = VirtualRig(plant(kind, tip, seed))
    rig.connect()
    spatial = rig.plant.spatial
    assert spatial is not None
    views = VIEWS[kind]
    cells = []
    for dose in doses:
        for fps in rates:
            config = FluoroConfig(
                width_px=256, height_px=256, pixel_mm=0.4, photons_per_pixel=dose, fps=fps, seed=seed
            )
            guard: Guard | BiplaneGuard = (
                BiplaneGuard(GuardConfig(), views=views) if len(views) > 1 else Guard(GuardConfig())
            )
            cells.append(Cell(dose, fps, FluoroCamera(spatial, config, views), guard))
    step_s = 1.0 / max(rates) / len(views)
    onset: float | None = None

    def judge() -> None:
        nonlocal onset
        state = State(rig.controller.state)
        for cell in cells:
            for rf, truth in cell.camera.capture(rig.now_us):
                cell.last_truth = truth
                if onset is None:
                    onset = onset_of(kind, truth)
                frame = FluoroFrame(rf.index, rf.t_us, rf.view, rf.pixels, rf.bit_depth, rf.pixel_mm, "sweep")
                t0 = time.perf_counter()
                step = cell.guard.frame(frame, rf.t_us / 1e6, state)
                cell.spent_s += time.perf_counter() - t0
                cell.frames += 1
                if step.stop is not None and cell.stop_s is None:
                    cell.stop_s, cell.rule, cell.truth_at_stop = rf.t_us / 1e6, step.stop.name, truth

    # the baselines, before ARM and START (START waits for every guard, as `run --frames` does)
    while any(c.guard.status.state != "WATCHING" for c in cells) and rig.now_us < 30e6:
        rig.run(step_s)
        judge()
    rig.arm(volume_limit_nl=3_000_000 if kind in ("venous", "small_vein") else 2_000_000)
    rig.start()
    while rig.controller.state == State.INJECTING and rig.now_us < 150e6:
        rig.run(step_s)
        judge()
        if kind not in NOMINAL and all(c.stop_s is not None for c in cells):
            break  # every cell has stopped: what the plant does next is no cell's business
    pressure: tuple[float, str] | None = None
    if rig.controller.state != State.INJECTING:
        reason = rig.controller.stop_reason
        if reason not in (StopReason.VOLUME_LIMIT, StopReason.NONE):
            stops = rig.stop_events()
            t_stop = stops[-1].t_us / 1e6 if stops else rig.now_us / 1e6
            pressure = (t_stop, reason.name)
    out = []
    for cell in cells:
        latency = None if onset is None or cell.stop_s is None else (cell.stop_s - onset) * 1000.0
        first = pressure is not None and (cell.stop_s is None or pressure[0] <= cell.stop_s)
        truth = cell.truth_at_stop or cell.last_truth
        assert truth is not None
        out.append(
            Run(
                kind=kind,
                seed=seed,
                dose=cell.dose,
                fps=cell.fps,
                tip=round(tip, 3),
                onset_s=None if onset is None else round(onset, 3),
                stop_s=None if cell.stop_s is None else round(cell.stop_s, 3),
                rule=cell.rule,
                latency_ms=None if latency is None else round(latency, 1),
                latency_frames=None if latency is None else round(latency / 1000.0 * cell.fps, 2),
                pressure_stop=pressure[1] if pressure is not None and first else None,
                leak_ml_at_stop=round(sum(truth.leak_volumes_ml.values()), 4),
                front_at_stop=round(truth.front_ap_fraction, 3),
                frames=cell.frames,
                guard_ms_per_frame=round(cell.spent_s / max(cell.frames, 1) * 1000.0, 2),
            )
        )
    return out


def _ci(k: int, n: int) -> list[float]:
    lo, hi = clopper_pearson_interval(k, n)
    return [round(lo, 3), round(hi, 3)]


def _pct(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def _row(kind: str, group: list[Run], **key: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": kind, **key, "runs": len(group)}
    if kind in NOMINAL:
        false = sum(r.rule is not None for r in group)
        return {
            **base,
            "false_stops": false,
            "false_stops_per_run": round(false / len(group), 4),
            "false_stop_rate_upper95": round(clopper_pearson_upper(false, len(group)), 4),
            "rules": sorted({r.rule for r in group if r.rule is not None}),
        }
    want = EXPECTED[kind]
    onset = [r for r in group if r.onset_s is not None]
    hit = [r for r in onset if r.rule == want]
    stopped = [r for r in onset if r.rule is not None and r.stop_s is not None]
    ms = [r.latency_ms for r in hit if r.latency_ms is not None]
    frames = [r.latency_frames for r in hit if r.latency_frames is not None]
    pressure_missed = [r for r in onset if r.pressure_stop is None]
    guard_only = [r for r in pressure_missed if r.rule is not None]
    return {
        **base,
        "with_onset": len(onset),
        "detected": len(hit),
        "detection_ci95": _ci(len(hit), len(onset)),
        "stopped_any_rule": len(stopped),
        "stopped_before_onset": sum(r.rule is not None and r.onset_s is None for r in group),
        "wrong_rule": sum(r.rule not in (None, want) for r in onset),
        "latency_ms_p50": _pct(ms, 50),
        "latency_ms_p99": _pct(ms, 99),
        "latency_frames_p50": _pct(frames, 50),
        "latency_frames_p99": _pct(frames, 99),
        "leak_ml_at_stop_max": max((r.leak_ml_at_stop for r in hit), default=None),
        "pressure_caught": sum(r.pressure_stop is not None for r in onset),
        "pressure_missed": len(pressure_missed),
        "guard_caught_of_pressure_missed": len(guard_only),
        "guard_only_ci95": _ci(len(guard_only), len(pressure_missed)),
    }


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """A row per (kind, dose, frame rate), then a row per kind over all cells, then the nominal kinds
    pooled and the leak kinds pooled (guard-only catches)."""
    rows = []
    keys = sorted({(r.kind, r.dose, r.fps) for r in runs}, key=lambda k: (KINDS.index(k[0]), k[1], k[2]))
    for kind, dose, fps in keys:
        group = [r for r in runs if (r.kind, r.dose, r.fps) == (kind, dose, fps)]
        rows.append(_row(kind, group, dose=dose, fps=fps))
    for kind in sorted({r.kind for r in runs}, key=KINDS.index):
        rows.append(_row(kind, [r for r in runs if r.kind == kind], dose="all", fps="all"))
    nominal = [r for r in runs if r.kind in NOMINAL]
    if nominal:
        rows.append(_row("nominal", nominal, dose="all", fps="all", views="all"))
    leaks = [r for r in runs if r.kind in LEAKS and r.onset_s is not None]
    if leaks:
        missed = [r for r in leaks if r.pressure_stop is None]
        caught = [r for r in missed if r.rule is not None]
        rows.append(
            {
                "kind": "all leaks",
                "runs": len(leaks),
                "pressure_missed": len(missed),
                "guard_caught_of_pressure_missed": len(caught),
                "guard_only_ci95": _ci(len(caught), len(missed)),
            }
        )
    return rows


MAX_JSON_BYTES = 64 * 1024 * 1024
"""One sweep's --json output: ~600 bytes a run, so ~100 000 runs; more is not this sweep's."""


def merge(paths: list[Path], argv: list[str] | None) -> int:
    """The summary of the runs of several --json outputs, as JSON on stdout (their commands, wall and
    CPU seconds kept beside it)."""
    runs: list[Run] = []
    parts = []
    for path in paths:
        doc = json.loads(read_regular(path, MAX_JSON_BYTES))
        runs += [Run(**r) for r in doc["runs"]]
        parts.append({k: doc.get(k) for k in ("command", "wall_s", "cpu_s")})
    _common.dump_json(
        {
            "command": _common.command_line("guard_sweep", argv),
            "machine": _common.machine(),
            "parts": parts,
            "cpu_s": round(sum(p["cpu_s"] or 0.0 for p in parts), 1),
            "summary": summarise(runs),
            "runs": [asdict(r) for r in runs],
        }
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--doses", type=float, nargs="+", default=[300.0, 1000.0, 3000.0])
    p.add_argument("--fps", type=float, nargs="+", default=[2.0, 5.0])
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="summarise the runs of earlier --json outputs (kinds run in two processes) instead of running",
    )
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, argv)
    cv2.setNumThreads(1)
    runs: list[Run] = []
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for kind in args.kinds:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            cell_runs = one(kind, seed, args.doses, args.fps)
            runs += cell_runs
            for run in cell_runs:
                print(
                    f"{kind:15s} dose {run.dose:6.0f} fps {run.fps:4.1f} seed {seed} tip {run.tip:.2f}: "
                    f"onset {run.onset_s} stop {run.stop_s} {run.rule or '-'} latency {run.latency_ms} ms "
                    f"({run.latency_frames} frames) pressure {run.pressure_stop or '-'} "
                    f"leak {run.leak_ml_at_stop} front {run.front_at_stop}",
                    flush=True,
                    file=sys.stderr if args.json else sys.stdout,
                )
    summary = summarise(runs)
    doc: dict[str, Any] = {
        "command": _common.command_line("guard_sweep", argv),
        "machine": _common.machine(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    for row in summary:
        print(row)
    print(f"wall {doc['wall_s']} s, cpu {doc['cpu_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
