"""`cementguard hil`: `run` plays the scenario corpus through the whole stack; `sweep` (hil/sweep.py)
runs randomized scenarios in virtual time.

    cementguard hil run [SCENARIO...] [--port URL] --junit FILE --report-dir DIR [--jobs N]

Exit status: 0 every scenario passed (or was skipped on a real rig), 1 a scenario failed or errored,
2 a scenario file is invalid (nothing runs then).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hil.scenario import Scenario, ScenarioError, load_scenario
from host.cli_types import EXIT_FAILED, EXIT_USAGE, add_time_scale, bounded_int

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
EXIT_PASSED = 0
DEFAULT_TIME_SCALE = 5.0
JOBS = bounded_int("--jobs", 1, 64)
"""Simulated seconds per wall second for scenarios that do not set their own (docs/hil.md: why 5)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "hil",
        help="hardware-in-the-loop scenarios: run the corpus, or sweep detectors",
        description="Hardware-in-the-loop scenarios against the simulator or a real rig (docs/hil.md).",
    )
    sub = p.add_subparsers(dest="hil_command", metavar="{run,sweep}")
    r = sub.add_parser(
        "run",
        help="run scenarios through host client and simulator (or a rig); JUnit XML and an HTML report",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="exit codes: 0 all passed; 1 a scenario failed or errored; 2 an invalid scenario file",
    )
    r.add_argument(
        "scenarios",
        nargs="*",
        type=Path,
        metavar="SCENARIO",
        help="scenario files (default: hil/scenarios/*.toml)",
    )
    r.add_argument(
        "--port",
        help="a real rig's port or pyserial URL; scenarios with plant events are then skipped (reason given)",
    )
    r.add_argument("--junit", type=Path, required=True, help="JUnit XML file to write")
    r.add_argument(
        "--report-dir", type=Path, required=True, help="directory for index.html, PNGs, recordings"
    )
    r.add_argument(
        "--jobs", type=JOBS, default=2, help=f"scenarios run in parallel (default 2; {JOBS.allowed})"
    )
    add_time_scale(
        r,
        DEFAULT_TIME_SCALE,
        f"simulated time per wall second, for scenarios that set none (default {DEFAULT_TIME_SCALE:g})",
    )
    r.set_defaults(func=_run)
    from hil import sweep

    sweep.add_parser(sub)


def discover(paths: list[Path]) -> list[Path]:
    """The scenario files: the given ones (a directory stands for its *.toml), else the corpus."""
    if not paths:
        return sorted(SCENARIO_DIR.glob("*.toml"))
    out: list[Path] = []
    for path in paths:
        out.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    return out


def load_all(paths: list[Path]) -> tuple[list[tuple[Path, Scenario]], list[str]]:
    loaded: list[tuple[Path, Scenario]] = []
    problems: list[str] = []
    names: dict[str, Path] = {}
    for path in paths:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        if scenario.name in names:
            problems.append(
                f"{path}: name: {scenario.name!r} is also the name of {names[scenario.name]}; "
                "allowed a name no other scenario has (name)"
            )
            continue
        names[scenario.name] = path
        loaded.append((path, scenario))
    return loaded, problems


def _one(path: Path, scenario: Scenario, options: object) -> object:
    """Worker process: run one scenario, then draw its figure (matplotlib never runs beside a live link
    in the same process)."""
    from hil.outcome import Outcome
    from hil.report import plot_outcome
    from hil.runner import RunOptions, run_scenario

    assert isinstance(options, RunOptions)
    try:
        outcome = asyncio.run(run_scenario(scenario, path, options))
    except Exception as exc:  # a runner bug: this scenario errors, the others still run
        message = f"runner: {type(exc).__name__}: {exc}"
        return Outcome(scenario.name, os.fspath(path), "error", message=message)
    if outcome.status != "skipped":
        try:
            png = plot_outcome(outcome, options.report_dir / scenario.name / f"{scenario.name}.png")
            outcome.png = os.fspath(png) if png else None
        except Exception as exc:  # a broken plot must not hide the run's verdict
            outcome.message += f"\n(plot failed: {type(exc).__name__}: {exc})"
    return outcome


def run_corpus(
    scenarios: list[tuple[Path, Scenario]],
    *,
    port: str | None,
    junit: Path,
    report_dir: Path,
    jobs: int,
    time_scale: float,
    echo: bool = True,
) -> int:
    """Run, write the JUnit file and the report; the exit status."""
    from hil.outcome import Outcome
    from hil.report import setup_info, write_index, write_junit
    from hil.runner import RunOptions

    if port is not None:
        jobs = 1  # one rig, one scenario at a time
    options = RunOptions(time_scale=time_scale, port=port, report_dir=report_dir)
    setup = setup_info(time_scale, port, jobs)
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_one, path, scenario, options) for path, scenario in scenarios]
        for future in futures:
            outcome = future.result()
            assert isinstance(outcome, Outcome)
            outcomes.append(outcome)
            if echo:
                m = outcome.measured
                latency = "" if m.latency_ms is None else f", latency {m.latency_ms:.1f} ms"
                print(
                    f"{outcome.status.upper():7} {outcome.name} ({m.wall_s:.1f} s): {m.final_state} "
                    f"{m.final_reason or ''}{latency}",
                    flush=True,
                )
                if outcome.rerun:
                    print(f"        {outcome.rerun.splitlines()[0]}", flush=True)
                if outcome.message and outcome.status != "passed":
                    for line in outcome.message.splitlines():
                        print(f"        {line}", flush=True)
    setup["wall_s"] = f"{time.perf_counter() - t0:.1f}"
    write_junit(outcomes, junit, setup)
    index = write_index(outcomes, report_dir, setup)
    bad = [o for o in outcomes if o.status in ("failed", "error")]
    if echo:
        passed = sum(o.status == "passed" for o in outcomes)
        skipped = sum(o.status == "skipped" for o in outcomes)
        print(
            f"{passed} passed, {len(bad)} failed, {skipped} skipped in {setup['wall_s']} s; "
            f"JUnit {junit}, report {index}"
        )
    return EXIT_FAILED if bad else EXIT_PASSED


def _run(args: argparse.Namespace) -> int:
    paths = discover(args.scenarios)
    if not paths:
        print("error: no scenario files found", file=sys.stderr)
        return EXIT_USAGE
    scenarios, problems = load_all(paths)
    if problems:
        print("invalid scenario file(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    return run_corpus(
        scenarios,
        port=args.port,
        junit=args.junit,
        report_dir=args.report_dir,
        jobs=args.jobs,
        time_scale=args.time_scale,
    )
