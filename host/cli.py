"""The `cementguard` command: one entry point, one subcommand per job.

Subcommands register themselves from their own modules. The simulator's `sim` lives in
`firmware_sim.cli` and is only imported for that subcommand: host code never depends on the
simulator's internals.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from protocol import PROTOCOL_VERSION


def _version() -> str:
    try:
        return version("cementguard")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    from firmware_sim import cli as sim_cli
    from host import demo, device_cmds, export, plot, run

    parser = argparse.ArgumentParser(
        prog="cementguard",
        description="Bench injection controller for PMMA bone cement: simulator, host tools and tests.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"cementguard {_version()} (wire protocol {PROTOCOL_VERSION})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim_cli.add_parser(sub)
    run.add_parser(sub)
    device_cmds.add_parsers(sub)
    demo.add_parser(sub)
    export.add_parser(sub)
    plot.add_parser(sub)
    from host.dashboard import cli as dashboard_cli

    dashboard_cli.add_parsers(sub)
    from hil import cli as hil_cli  # the launcher may import hil, as it does firmware_sim

    hil_cli.add_parser(sub)
    from host.mqtt import cli as mqtt_cli

    mqtt_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
