"""`cementguard dashboard` and `cementguard replay`: the Textual dashboard on a port or a recording.

Textual is imported only when one of these commands runs, so the other subcommands start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from host.cli_types import EXIT_OK, EXIT_USAGE, MIXED_AGO, REPLAY_SPEED, add_record_tail, add_time_scale
from host.guard.options import GuardSetup, add_guard_arguments, guard_setup
from host.plan import InjectionPlan, PlanError, load_plan

if TYPE_CHECKING:
    from host.dashboard.app import DashboardApp


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="live dashboard for one controller: plots, state, stop log, controls",
        description="Live plots of pressure and volume, the state, the stop log and the controls "
        "(a arm, s start, space pause/resume, c clear, r record, u setup panel, x/Escape STOP, "
        "f fluoroscopy stop, q quit). See docs/dashboard.md.",
    )
    p.add_argument("--port", required=True, help="serial device or pyserial URL (pty, socket://host:port)")
    p.add_argument("--plan", type=Path, help="injection plan to load (TOML; see plans/README.md)")
    p.add_argument(
        "--record", type=Path, default=Path("recordings"), help="where r records (default %(default)s)"
    )
    add_time_scale(p)
    add_record_tail(p)
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--mixed-ago",
        type=MIXED_AGO,
        metavar="S",
        help=f"seconds since the cement was mixed ({MIXED_AGO.allowed})",
    )
    when.add_argument("--mixed-at", metavar="HH:MM[:SS]", help="wall-clock time the cement was mixed (today)")
    p.add_argument("--mqtt", metavar="URL", help="also run the MQTT bridge to this broker (mqtt://host:port)")
    p.add_argument("--rig", help="rig name in the MQTT topics (with --mqtt; default from settings)")
    add_guard_arguments(p)  # the same --frames and --guard-* options as `cementguard run`
    p.set_defaults(func=_dashboard)

    r = subparsers.add_parser(
        "replay",
        help="play a recording back in the dashboard (space play/pause, +/- speed, left/right seek)",
    )
    r.add_argument("recording", type=Path, help="a recording directory (see docs/recordings.md)")
    r.add_argument(
        "--speed",
        type=REPLAY_SPEED,
        default=1.0,
        help=f"playback speed (default %(default)s x; {REPLAY_SPEED.allowed})",
    )
    r.add_argument("--paused", action="store_true", help="open paused at the start")
    r.set_defaults(func=_replay)


def _mixed_ago(args: argparse.Namespace, plan: InjectionPlan | None) -> float | None:
    from host.run import _mixed_ago as parse

    if args.mixed_ago is None and args.mixed_at is None:
        return plan.mixed_ago_s() if plan is not None else None
    return parse(args.mixed_ago, args.mixed_at, cast(InjectionPlan, plan))  # plan unused: a time is given


def _dashboard(args: argparse.Namespace) -> int:
    plan = None
    if args.plan is not None:
        try:
            plan = load_plan(args.plan)
        except PlanError as exc:
            print(f"plan error\n{exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        mixed_ago = _mixed_ago(args, plan)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    tail_s = args.record_tail
    try:
        guard = guard_setup(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    background = None
    if args.mqtt is not None or args.rig is not None:
        if args.mqtt is None:
            print("error: --rig needs --mqtt URL", file=sys.stderr)
            return EXIT_USAGE
        from host.dashboard.mqtt_panel import mqtt_runner

        try:
            background = mqtt_runner(args.mqtt, args.rig)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return run_dashboard(
        args.port,
        plan=plan,
        plan_path=args.plan,
        mixed_ago_s=mixed_ago,
        record_root=args.record,
        time_scale=args.time_scale,
        background=background,
        record_tail_s=tail_s,
        guard=guard,
    )


def run_dashboard(
    port: str,
    *,
    plan: InjectionPlan | None,
    plan_path: Path | None,
    mixed_ago_s: float | None,
    record_root: Path,
    time_scale: float = 1.0,
    background: Callable[[DashboardApp], Awaitable[None]] | None = None,
    record_tail_s: float | None = None,
    guard: GuardSetup | None = None,
) -> int:
    """Open the dashboard on a live port until the operator quits; returns the exit code. With
    `guard`, the fluoroscopic guard watches its frames beside the link and the panel shows them."""
    from host.client import LinkOptions
    from host.dashboard.app import DashboardApp
    from host.dashboard.guard_view import GuardView
    from host.dashboard.model import DashboardModel
    from host.dashboard.source import LiveSource
    from host.recording_sink import DEFAULT_TAIL_S

    tail_s = DEFAULT_TAIL_S if record_tail_s is None else record_tail_s
    source = LiveSource(port, LinkOptions(time_scale=time_scale), record_tail_s=tail_s, guard=guard)
    model = DashboardModel()
    if guard is not None:
        model.guard = GuardView(guard.frames_url, guard.views)
    app = DashboardApp(
        source,
        plan=plan,
        plan_path=plan_path,
        mixed_ago_s=mixed_ago_s,
        record_root=record_root,
        background=background,
        model=model,
    )
    code = app.run() or EXIT_OK
    print(app.exit_report())  # the alternate screen is gone: say what the session ended with
    return code


def _replay(args: argparse.Namespace) -> int:
    from host.dashboard.app import DashboardApp
    from host.dashboard.model import DashboardModel
    from host.dashboard.replay import ReplaySource
    from host.recording import Recording, RecordingError

    try:
        recording = Recording.open(args.recording)
    except RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    source = ReplaySource(recording, speed=args.speed, playing=not args.paused)
    model = DashboardModel()
    source.attach_guard(model)  # the guard's frames, when the recording kept them
    return DashboardApp(source, model=model).run() or EXIT_OK
