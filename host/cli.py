"""The `cementguard` command: one entry point, one subcommand per job.

Each subcommand lives in its own module, which registers its argument parser (`add_parser` /
`add_parsers`) and its handler. The launcher knows the subcommands by name only (`COMMANDS`) and
imports the one module that implements the command given, at dispatch: `cementguard stop` loads the
link and the protocol, never the simulator, the HIL harness, the dashboard (textual) or the plots
(matplotlib). `cementguard --help` imports none of them.

This module is the one allowed exception to the layering of docs/design.md: it resolves the `sim`
(firmware_sim) and `hil` subcommands by module name, so that `host` never imports `firmware_sim`
or `hil` (tests/test_architecture.py checks both).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Subcommand:
    """Where a subcommand is implemented: `module.register(subparsers)` adds its parser(s)."""

    module: str
    register: str
    help: str


COMMANDS: dict[str, Subcommand] = {
    "sim": Subcommand(
        "firmware_sim.cli", "add_parser", "run the simulated pump, cement and vertebra on a pty or TCP port"
    ),
    "run": Subcommand(
        "host.run", "add_parser", "run an injection plan headless, with a live display and a recording"
    ),
    "ports": Subcommand("host.device_cmds", "add_parsers", "list the serial ports of this machine"),
    "status": Subcommand(
        "host.device_cmds", "add_parsers", "show the controller's state, limits and last stop"
    ),
    "stop": Subcommand("host.device_cmds", "add_parsers", "stop the injection now (latched until CLEAR)"),
    "clear": Subcommand(
        "host.device_cmds", "add_parsers", "clear a latched stop (the controller goes back to IDLE)"
    ),
    "prime": Subcommand(
        "host.motion_cmds", "add_parsers", "prime (purge) the line: push a volume out, every limit active"
    ),
    "withdraw": Subcommand(
        "host.motion_cmds", "add_parsers", "withdraw (refill) a volume, never behind home"
    ),
    "refill": Subcommand("host.motion_cmds", "add_parsers", "the same as withdraw"),
    "home": Subcommand("host.motion_cmds", "add_parsers", "move the plunger back to its home position"),
    "jog": Subcommand(
        "host.motion_cmds", "add_parsers", "hold-to-move: jog while a key is held, or for a set time"
    ),
    "syringe": Subcommand(
        "host.setup_cmds", "add_parsers", "list, select or show the syringe (library or custom)"
    ),
    "zero": Subcommand(
        "host.setup_cmds", "add_parsers", "tare the pressure transducer (line open to the air)"
    ),
    "calibrate": Subcommand(
        "host.setup_cmds", "add_parsers", "span and volume calibration; show the calibration in force"
    ),
    "demo": Subcommand(
        "host.demo",
        "add_parser",
        "the dashboard on the simulator with the example plan (no hardware, no broker)",
    ),
    "export": Subcommand(
        "host.export", "add_parser", "export a recording to CSV or Parquet (edge units: s, kPa, mL, mL/min)"
    ),
    "plot": Subcommand(
        "host.plot", "add_parser", "plot a recording to a PNG (pressure, volume, flow with limits and stops)"
    ),
    "report": Subcommand(
        "host.report", "add_parser", "write a run report (self-contained HTML and PDF) for the lab notebook"
    ),
    "dashboard": Subcommand(
        "host.dashboard.cli",
        "add_parsers",
        "live dashboard for one controller: plots, state, stop log, controls",
    ),
    "replay": Subcommand(
        "host.dashboard.cli",
        "add_parsers",
        "play a recording back in the dashboard (space play/pause, +/- speed, left/right seek)",
    ),
    "hil": Subcommand(
        "hil.cli", "add_parser", "hardware-in-the-loop scenarios: run the corpus, or sweep detectors"
    ),
    "bridge": Subcommand(
        "host.mqtt.cli",
        "add_parser",
        "publish a controller's state, telemetry and events over MQTT; take fluoroscopy stops",
    ),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # ~20 ms: only when asked

    try:
        return version("cementguard")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+unknown"


class _VersionAction(argparse.Action):
    """`--version`, computed only when asked (it reads the protocol package)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and the wire protocol version")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from protocol import PROTOCOL_VERSION

        print(f"cementguard {_version()} (wire protocol {PROTOCOL_VERSION})")
        parser.exit()


OPTIONS_WITH_VALUE = frozenset({"--log-level"})
"""The launcher's own options that take a separate value."""


def _command_name(argv: list[str]) -> str | None:
    """The subcommand named on the command line: the first argument that is neither an option nor
    the value of one (`--log-level INFO run ...`)."""
    args = iter(argv)
    for arg in args:
        if arg in OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _hoist_log_level(argv: list[str]) -> list[str]:
    """`--log-level X` is the launcher's option, but operators type it anywhere
    (`cementguard run ... --log-level INFO`): move it in front of the subcommand."""
    hoisted: list[str] = []
    rest: list[str] = []
    seen_command = False
    args = iter(argv)
    for arg in args:
        if seen_command and arg == "--log-level":
            hoisted += [arg, next(args, "")]
        elif seen_command and arg.startswith("--log-level="):
            hoisted.append(arg)
        else:
            if not seen_command and arg in OPTIONS_WITH_VALUE:
                rest += [arg, next(args, "")]
                continue
            seen_command = seen_command or not arg.startswith("-")
            rest.append(arg)
    return hoisted + rest


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: the named subcommand's module is imported and registers its full
    parser; every other subcommand is listed by name and help only. `argv` None: the whole parser,
    every module imported (for documentation and tests of every command's options)."""
    parser = argparse.ArgumentParser(
        prog="cementguard",
        description="Bench injection controller for PMMA bone cement: simulator, host tools and tests.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="log messages at this level or above to stderr (default WARNING; INFO for `bridge`, whose "
        "log is its output); a recording also gets its own log file, host.log, at INFO",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = list(COMMANDS) if argv is None else [_command_name(argv)]
    for name in wanted:
        command = COMMANDS.get(name or "")
        if command is not None and name not in sub.choices:
            getattr(importlib.import_module(command.module), command.register)(sub)
    for name, command in COMMANDS.items():
        if name not in sub.choices:  # listed by name only: its module is not imported
            sub.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from host.safe_output import protect_stdio

    protect_stdio()  # a closed pipe or an ASCII-only terminal never ends a command (host/safe_output.py)
    args_in = _hoist_log_level(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_in)
    args = parser.parse_args(args_in)
    from host.logs import configure

    configure(args.log_level or getattr(args, "default_log_level", "WARNING"))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    if any(name.upper().startswith("CEMENTGUARD_") for name in os.environ):
        # every command, not only those that read the settings: a typo in a CEMENTGUARD_* variable is
        # refused as an unknown key in cementguard.toml is (issue 13 item 8), never silently ignored
        from host.settings import unknown_environment

        unknown = unknown_environment()
        if unknown:
            for line in unknown:
                print(f"error: {line}", file=sys.stderr)
            return 2
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
