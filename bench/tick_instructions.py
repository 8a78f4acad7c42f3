"""Instructions per 1 kHz tick, counted by callgrind: the simulator's cost independent of the load.

    python bench/tick_instructions.py                    # controller alone and the whole rig
    python bench/tick_instructions.py --paths rig --json
    python bench/tick_instructions.py --compare-to DIR   # also the same counts for the tree at DIR

Wall and CPU time move with the other jobs on a shared machine; the number of instructions the
interpreter executes does not. Each path is run twice under `valgrind --tool=callgrind
--dump-instr=no` (Valgrind's instruction counter; Weidendorfer et al. 2004, "A tool suite for
simulation based analysis of memory access behavior", ICCS), for `--short` and `--long` seconds of
device time after the same set-up, and the difference of the two totals divided by the ticks between
them is the cost of one tick: start-up, imports and the warm-up cancel.

Workload: sim_speed's (the nominal injection, 2 s into INJECTING, heartbeat every 100 ms).

- controller: `Controller.tick` alone, fed the sensor frames recorded from the rig (sim_speed's
  controller baseline); the recording and the fresh rig are made in both runs alike.
- rig: `VirtualRig.run`: controller, lumped plant, device codec, host decode.

`--compare-to DIR` runs the same counts with PYTHONPATH=DIR (an exported tree of another commit, e.g.
`git archive main | tar -x -C DIR`), so a change is stated as a ratio to its baseline of the same
run. Needs valgrind; each count takes a minute or two (callgrind runs Python ~50x slower).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PATHS = ("controller", "rig")


def workload(path: str, seconds: float, record_s: float) -> None:
    """What runs under callgrind: `seconds` of `path` after the common set-up."""
    import sim_speed

    ticks = round(seconds * 1e6 / sim_speed.TICK_US)
    if path == "rig":
        rig = sim_speed.fresh_rig(1)
        rig.run(seconds)
        return
    rec = sim_speed.record(1, round(record_s * 1e6 / sim_speed.TICK_US))
    rig = sim_speed.fresh_rig(1)
    ctrl, now = rig.controller, rig.now_us
    tick = ctrl.tick
    hb = sim_speed.heartbeat_frame()
    none: list[Any] = []
    every = sim_speed.HB_EVERY
    for k, s in enumerate(rec.sensors[:ticks]):
        tick(now, s, hb if k % every == 0 else none, True)
        now += sim_speed.TICK_US


def count(path: str, seconds: float, record_s: float, tree: Path) -> int:
    """Total instructions (callgrind's Ir) of one run of the workload with `tree` first on the path."""
    with tempfile.TemporaryDirectory(prefix="tick-instr-") as tmp:
        out = Path(tmp) / "callgrind.out"
        # No .pyc written: both runs of a pair import in the same state (a first run that compiles
        # and caches the modules would make the second cheaper, and their difference wrong).
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(HERE)]), PYTHONDONTWRITEBYTECODE="1"
        )
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--dump-instr=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--inner",
            path,
            str(seconds),
            str(record_s),
        ]
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=tree)
        match = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no instruction total in {out}")
        return int(match.group(1))


def per_tick(path: str, short: float, long: float, tree: Path) -> float:
    lo = count(path, short, long, tree)
    hi = count(path, long, long, tree)
    return (hi - lo) / round((long - short) * 1000)


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated: controller, rig")
    parser.add_argument("--short", type=float, default=1.0, help="seconds of the short run (default 1)")
    parser.add_argument("--long", type=float, default=3.0, help="seconds of the long run (default 3)")
    parser.add_argument("--compare-to", type=Path, help="a tree of another commit: its counts too")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inner", nargs=3, metavar=("PATH", "SECONDS", "RECORD_S"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        workload(args.inner[0], float(args.inner[1]), float(args.inner[2]))
        return 0
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"--paths: unknown {unknown}, allowed {list(PATHS)}")
    if not 0.0 < args.short < args.long <= 20.0:
        parser.error(f"--short {args.short} and --long {args.long}: need 0 < short < long <= 20")
    trees = {"this": ROOT}
    if args.compare_to is not None:
        trees["baseline"] = args.compare_to.resolve()
    result: dict[str, dict[str, float]] = {}
    for name, tree in trees.items():
        result[name] = {p: per_tick(p, args.short, args.long, tree) for p in paths}
    if "baseline" in result:
        result["ratio"] = {p: result["this"][p] / result["baseline"][p] for p in paths}
    if args.json:
        _common.dump_json({"machine": _common.machine(), "instructions_per_tick": result})
        return 0
    for name, row in result.items():
        cells = "  ".join(f"{p} {v:,.3f}" if name == "ratio" else f"{p} {v:,.0f}" for p, v in row.items())
        print(f"{name:9s} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
