"""`cementguard ports`, `status` and `stop`: the small commands a bench engineer types between runs."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from rich.console import Console
from rich.table import Table
from serial.tools import list_ports

from host.client import Controller
from host.errors import CementguardError
from host.run import EXIT_LINK
from protocol import StopSource
from protocol.models import StatusRecord

STOP_SOURCES = {"operator": StopSource.OPERATOR, "fluoro": StopSource.FLUORO_OPERATOR}


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("ports", help="list the serial ports of this machine")
    p.set_defaults(func=_ports)
    p = subparsers.add_parser("status", help="show the controller's state, limits and last stop")
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    p.set_defaults(func=_status)
    p = subparsers.add_parser("stop", help="stop the injection now (latched until CLEAR)")
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    p.add_argument("--source", choices=sorted(STOP_SOURCES), default="operator", help="recorded stop source")
    p.set_defaults(func=_stop)


def _ports(args: argparse.Namespace) -> int:
    console = Console()
    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    if not ports:
        console.print("no serial ports found (a simulator's pty is not listed: use its PORT line)")
        return 0
    table = Table("port", "description", "hardware id")
    for port in ports:
        table.add_row(port.device, port.description or "", port.hwid or "")
    console.print(table)
    return 0


def _status(args: argparse.Namespace) -> int:
    console = Console()

    async def go() -> int:
        async with Controller.open(args.port) as ctl:
            status = StatusRecord.from_message(await ctl.get_status())
            info = ctl.device
        table = Table.grid(padding=(0, 2))
        table.add_row(
            "device", f"{info.serial}  firmware {info.firmware_version}  protocol {info.protocol_version}"
        )
        table.add_row("state", status.state.name)
        if status.stop_reason:
            table.add_row("stop", f"{status.stop_reason.name} (source {status.stop_source.name})")
        table.add_row("pressure", f"{status.pressure_kpa:.0f} kPa")
        table.add_row("delivered", f"{status.volume_ml:.3f} / {status.volume_limit_ml:.3f} mL")
        table.add_row("limits", f"soft {status.soft_limit_kpa:.0f} kPa, hard {status.hard_limit_kpa:.0f} kPa")
        console.print(table)
        return 0

    return _guarded(console, go)


def _stop(args: argparse.Namespace) -> int:
    console = Console()

    async def go() -> int:
        async with Controller.open(args.port) as ctl:
            ack = await ctl.stop(STOP_SOURCES[args.source])
        console.print(f"STOP acknowledged: state {ack.state.name}")
        return 0

    return _guarded(console, go)


def _guarded(console: Console, go: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(go())
    except CementguardError as exc:
        console.print(f"[bold red]link failure:[/] {exc}", highlight=False)
        return EXIT_LINK
