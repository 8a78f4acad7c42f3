"""`cementguard demo`: the main job on the simulator, with no hardware and no broker."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("demo", help="run an example injection against the simulator")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    print(
        "cementguard demo: not available yet. It needs the host client and the headless `run` command "
        "(issue: host serial link and client API), then the dashboard. Until then, try "
        "`cementguard sim --pty` and `cementguard sim validate`.",
        file=sys.stderr,
    )
    return 1
