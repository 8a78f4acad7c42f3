"""`cementguard run` over a lossy line: how runs end at each noise level (issue 13).

    python bench/lossy_link.py                     # 10 runs per level (about 2 min), table
    python bench/lossy_link.py --runs 20 --json

Set-up: `cementguard sim --pty --time-scale 5` behind the lossy relay of tests/support/lossy_link.py,
which flips bits, drops, duplicates and inserts bytes (the rate split evenly between the four) in
both directions; `host.run.run_plan` drives the 2-increment test plan (0.2 mL, auto-resume 0.2 s)
through it with a recording. Each run is bounded at 60 s: a run that does not end by then counts as
hung. Per noise level: runs completed (exit 0), stopped (exit 3: the device latched a stop, e.g.
HOST_LOST when the host's heartbeats did not come through), link lost (exit 4), hung, and runs with a
problem (an exit code that disagrees with its message or with the device's own event stream, forward
motion outside INJECTING, an incomplete recording). The baseline is the same plan on a clean line
(noise 0) in the same invocation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support is not an installed package

from tests.host.test_run_cli import FAST_PLAN  # noqa: E402
from tests.support.lossy_link import LossyRun, run_through_relay  # noqa: E402

LEVELS = (0.0, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2)


async def _level(rate: float, runs: int, time_scale: float) -> list[LossyRun]:
    out = []
    for seed in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            plan = Path(tmp) / "plan.toml"
            plan.write_text(FAST_PLAN)
            out.append(
                await run_through_relay(
                    str(plan), str(Path(tmp) / "rec"), rate=rate, seed=seed, time_scale=time_scale
                )
            )
    return out


def summarise(rate: float, runs: list[LossyRun]) -> dict[str, Any]:
    counts = {k: sum(r.outcome == k for r in runs) for k in ("completed", "stopped", "link lost", "hung")}
    problems = [f"seed {r.seed}: {p}" for r in runs for p in r.problems()]
    ends = [f"seed {r.seed}: exit {r.code}: {r.last_words}" for r in runs if r.code != 0]
    return {
        "rate": rate,
        "runs": len(runs),
        **counts,
        "problems": len(problems),
        "problem_list": problems,
        "not_completed": ends,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs per noise level (default 10)")
    parser.add_argument("--time-scale", type=float, default=5.0, help="simulator time scale (default 5)")
    parser.add_argument(
        "--levels", default=",".join(f"{x:g}" for x in LEVELS), help="noise levels per byte, comma-separated"
    )
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    args = parser.parse_args(argv)
    levels = [float(x) for x in args.levels.split(",")]
    rows = [summarise(rate, asyncio.run(_level(rate, args.runs, args.time_scale))) for rate in levels]
    doc = {"command": _common.command_line("lossy_link", argv), "machine": _common.machine(), "levels": rows}
    if args.json:
        _common.dump_json(doc)
    else:
        print(
            f"{'noise/byte':>10} {'runs':>5} {'completed':>9} {'stopped':>7} "
            f"{'link lost':>9} {'hung':>4} {'problems':>8}"
        )
        for row in rows:
            print(
                f"{row['rate']:>10g} {row['runs']:>5} {row['completed']:>9} {row['stopped']:>7} "
                f"{row['link lost']:>9} {row['hung']:>4} {row['problems']:>8}"
            )
            for line in row["problem_list"]:
                print(f"{'':>12}problem: {line}")
            for line in row["not_completed"]:
                print(f"{'':>12}{line}")
        print(doc["command"])
    return 1 if any(row["hung"] or row["problems"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
