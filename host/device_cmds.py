"""`cementguard ports`, `status`, `stop` and `clear`: the small commands a bench engineer types, from any
terminal, during or between runs.

`stop`, `status` and `clear` first ask the session that holds the port (`cementguard run`, the
dashboard, the bridge, the HIL runner) through its control endpoint (host.control): the session
sends the command on its own link at once. When no session holds the port they open it themselves.

`stop` sends STOP before anything else: no handshake first (SPEC §7.6 accepts STOP without a
session), then it reads the answer and the state (GET_STATUS, also accepted without a session).
This module imports only the link, the endpoint and the protocol: not the simulator, the HIL
harness, the dashboard or the plotting stack (tests/host/test_device_cmds.py checks it).

`status` reads the settings (host.settings: --config, $CEMENTGUARD_CONFIG or ./cementguard.toml) for
its port, baud rate and link timing, as `run` and `bridge` do; `stop` does not (it must not wait for
pydantic), and `--port` is required for it and for `clear`.

Exit codes: 0 done; 1 the device refused (CLEAR while relief runs, a sensor fault, ...); 2 a settings
error (`status`); 4 no device reached (port missing, held by a program that does not answer, no
device answered).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from host import control_client as control
from host.cli_types import CONFIG_HELP, EXIT_USAGE
from host.errors import CementguardError, CommandRefused, CommandTimeout
from host.port_lock import PortBusy, RuntimeDirError, lock_path, read_holder

if TYPE_CHECKING:
    from host.link import LinkOptions

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_LINK = 4
"""The same value as `cementguard run`'s link failure (host.run.EXIT_LINK)."""


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("ports", help="list the serial ports of this machine")
    p.set_defaults(func=_ports)
    epilog = "exit codes: 0 done; 1 the device refused; 4 no device reached"
    p = subparsers.add_parser(
        "status",
        help="show the controller's state, limits and last stop",
        epilog="exit codes: 0 done; 2 a settings error; 4 no device reached",
    )
    p.add_argument("--port", help="serial device or pyserial URL (default: the settings' port)")
    p.add_argument("--config", help=CONFIG_HELP)
    p.set_defaults(func=_status)
    p = subparsers.add_parser(
        "stop",
        help="stop the injection now (latched until CLEAR)",
        description="Send STOP at once: through the session holding the port, or on the port directly.",
        epilog=epilog,
    )
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    p.add_argument(
        "--source", choices=sorted(control.STOP_SOURCE_NAMES), default="operator", help="recorded stop source"
    )
    p.set_defaults(func=_stop)
    p = subparsers.add_parser(
        "clear",
        help="clear a latched stop (the controller goes back to IDLE)",
        description="Send CLEAR: refused by the device while pressure relief runs (BUSY) or on a fault.",
        epilog=epilog,
    )
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    p.set_defaults(func=_clear)


def _ports(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from serial.tools import list_ports

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


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(text: str) -> None:
    """Failures go to stdout, as every message of these commands and of `run` does (the exit code
    tells a script that it failed)."""
    print(f"cementguard: {text}", flush=True)


def _session_name(port: str, answer: dict[str, Any]) -> str:
    """Who answered: the session names itself in its answer (the lock's record may be gone by the
    time we read it, when the stop ended the session)."""
    who = answer.get("session")
    if isinstance(who, str) and who:
        return who
    holder = read_holder(lock_path(port))
    return f"{holder.program} (PID {holder.pid})" if holder is not None else "the session holding the port"


def _busy(exc: PortBusy, what: str) -> str:  # status and clear: nothing to force
    return f"{what}: {exc}. That program serves no control endpoint: ask it, or end it first"


# -- stop --------------------------------------------------------------------------------------------


async def stop(
    port: str,
    source: str,
    answer_timeout_s: float = control.ANSWER_TIMEOUT_S,
    deadline_s: float = control.STOP_DEADLINE_S,
) -> int:
    """`cementguard stop`: through the session's endpoint, else directly. When the port is held and
    the session has not said within `deadline_s` that the device acknowledged its STOP (its interim
    answer), STOP is written onto the port beside it at once: a frozen or reconnecting session must not
    hold the STOP back (the device must have it within its watchdog period); the session's answer is
    still awaited for the rest of `answer_timeout_s`. Returns the exit code."""
    acknowledged = asyncio.Event()
    asking = asyncio.ensure_future(
        control.request(
            port, "stop", timeout_s=answer_timeout_s, progress=lambda _: acknowledged.set(), source=source
        )
    )
    heard = asyncio.ensure_future(acknowledged.wait())
    wrote: str | None = None
    try:
        done, _ = await asyncio.wait({asking, heard}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            wrote = _write_beside(port, _stop_frame(source), _holder_name(port))
            _fail(f"the session holding {port} did not answer within {deadline_s:g} s: {wrote}")
        answer = await asking
    except control.NoEndpoint:
        return await _stop_directly(port, source)
    except RuntimeDirError as exc:
        # No lock and no endpoint can be used there, but a stop must never be refused over a
        # file-permission problem: the STOP goes onto the port all the same.
        _fail(f"{exc}. {_write_beside(port, _stop_frame(source), 'the program holding the port, if any')}")
        return EXIT_LINK
    except control.ControlError as exc:
        if wrote is None:
            wrote = _write_beside(port, _stop_frame(source), _holder_name(port))
        _fail(f"{exc}. {wrote}")
        return EXIT_LINK
    finally:
        asking.cancel()
        heard.cancel()
    who = _session_name(port, answer)
    if not answer.get("ok"):
        _fail(f"STOP through {who} failed: {answer.get('error')}")
        return EXIT_LINK
    event = answer.get("event")
    if event:
        what = f"{event['reason']} (source {event['source']}), was {event['prev_state']}"
    elif answer.get("stop_reason"):
        what = f"already stopped: {answer['stop_reason']} (source {answer['stop_source']})"
    else:
        what = "nothing was moving"
    _say(f"STOP acknowledged through {who}: state {answer.get('state')}; {what}")
    if answer.get("warning"):
        _fail(str(answer["warning"]))
    return EXIT_OK


async def _stop_directly(port: str, source: str) -> int:
    from host.control import STOP_SOURCES
    from host.link import Link, LinkOptions
    from protocol import GetStatus, Status, Stop

    link = Link(port, LinkOptions(reconnect=False))
    try:
        await link.open(handshake=False)
    except PortBusy as exc:
        who = exc.holder.describe() if exc.holder is not None else "another process"
        wrote = _write_beside(port, _stop_frame(source), who)
        _fail(f"{port} is held by {who}, which serves no control endpoint. {wrote}")
        return EXIT_LINK
    except CementguardError as exc:
        _fail(f"STOP not sent: {exc}")
        return EXIT_LINK
    try:
        try:
            ack = await link.command(Stop(cmd_id=0, source=STOP_SOURCES[source]))
        except CommandTimeout as exc:
            _fail(
                f"no cementguard device answered STOP on {port} ({exc.attempts} attempts): is the "
                "controller powered, is this its port, and does the baud rate match?"
            )
            return EXIT_LINK
        what = ""
        try:
            _ack, status = await link.request(GetStatus)
        except CementguardError:
            status = None
        if isinstance(status, Status) and status.stop_reason:
            what = f"; {status.stop_reason.name} (source {status.stop_source.name})"
        state = getattr(ack.state, "name", ack.state)
        _say(f"STOP acknowledged on {port}: state {state}{what}")
        return EXIT_OK
    except CementguardError as exc:
        _fail(f"STOP not confirmed: {exc}")
        return EXIT_LINK
    finally:
        await link.close()


def _holder_name(port: str) -> str:
    holder = read_holder(lock_path(port))
    return holder.describe() if holder is not None else "the session holding the port"


def _stop_frame(source: str) -> bytes:
    """The STOP written beside a holder: a delimiter, then STOP with cmd_id 0 (see `_write_beside`)."""
    from host.control import STOP_SOURCES
    from protocol import Stop, encode_frame

    return b"\x00" + encode_frame(Stop(cmd_id=0, source=STOP_SOURCES[source]), 0)


def _write_beside(port: str, frame: bytes, who: str) -> str:
    """The last resort when the program holding the port does not answer: write one STOP frame
    (`_stop_frame`) onto the port beside it, without reading (its bytes are the holder's). STOP with
    cmd_id 0 is executed and never refused by the device (SPEC §7.3, §7.6) and cannot collide with the
    holder's commands; its ACK goes to the holder. Returns what happened, in words."""
    if "://" in port:
        return (
            f"STOP not sent: {port} is not a device file that can be written beside its holder; stop it "
            f"from {who}, or end that program (the controller then stops by itself: HOST_LOST)"
        )
    try:
        fd = _open_beside(port)
        try:
            written = os.write(fd, frame)
        finally:
            os.close(fd)
    except OSError as exc:
        return (
            f"STOP not sent: cannot write to {port} ({exc}); end {who} (the controller then stops: HOST_LOST)"
        )
    if written != len(frame):
        return f"STOP not sent whole ({written} of {len(frame)} bytes): end {who}"
    return (
        f"STOP written onto {port} directly, beside it: the device executes it, but its answer goes "
        f"to {who}, so it is NOT confirmed here. Check the pump; `cementguard status` once that "
        "program has ended"
    )


def _open_beside(port: str) -> int:
    """A descriptor to write STOP onto `port` beside its holder. The holder marks the tty exclusive
    (TIOCEXCL: open() fails with EBUSY), so the holder's own descriptor is borrowed then
    (host.tty_exclusive), after checking that it still is this device."""
    try:
        return os.open(port, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        busy = exc
    from host import tty_exclusive

    holder = read_holder(lock_path(port))
    if holder is None or holder.tty_fd is None:
        raise busy
    try:
        fd = tty_exclusive.borrow_fd(holder.pid, holder.tty_fd)
    except OSError as exc:
        why = f"{busy.strerror}; borrowing the holder's descriptor failed: {exc}"
        raise OSError(busy.errno, why) from exc
    try:
        same = os.fstat(fd).st_rdev == os.stat(port).st_rdev
    except OSError:
        same = False
    if not same:
        os.close(fd)
        raise OSError(busy.errno, f"{busy.strerror}; the holder's descriptor {holder.tty_fd} is not {port}")
    return fd


def _stop(args: argparse.Namespace) -> int:
    return _run(lambda: stop(args.port, args.source))


# -- status and clear ----------------------------------------------------------------------------------


async def status(port: str, options: LinkOptions | None = None) -> int:
    from protocol.models import StatusRecord

    try:
        answer = await control.request(port, "status")
    except control.NoEndpoint:
        answer = None
    except control.ControlError as exc:
        _fail(str(exc))
        return EXIT_LINK
    if answer is not None:
        if not answer.get("ok"):
            _fail(f"status through {_session_name(port, answer)} failed: {answer.get('error')}")
            return EXIT_LINK
        device = answer.get("device") or {}
        record = StatusRecord.model_validate(answer["status"])
        header = f"session   {_session_name(port, answer)}, link {answer.get('link')}"
        if answer.get("stale"):
            header += f" ({answer['stale']})"
        in_force = answer.get("in_force")
        _print_status(device, record, header, in_force if isinstance(in_force, list) else [])
        return EXIT_OK
    from host.client import DeviceClient
    from host.setup_cmds import read_in_force

    try:
        async with DeviceClient.open(port, options) as ctl:
            record = StatusRecord.from_message(await ctl.get_status())
            info = ctl.device
            in_force = await read_in_force(ctl)
    except PortBusy as exc:
        _fail(_busy(exc, "no status"))
        return EXIT_LINK
    except CementguardError as exc:
        _fail(f"no status: {exc}")
        return EXIT_LINK
    device = {
        "serial": info.serial,
        "firmware": f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}",
        "protocol_version": info.protocol_version,
    }
    _print_status(device, record, None, in_force)
    return EXIT_OK


def _print_status(
    device: dict[str, Any], s: Any, header: str | None, in_force: list[str] | None = None
) -> None:
    lines = []
    if header:
        lines.append(header)
    lines.append(
        f"device    {device.get('serial', '?')}  firmware {device.get('firmware', '?')}  "
        f"protocol {device.get('protocol_version', '?')}"
    )
    lines.append(f"state     {s.state.name}")
    if s.stop_reason:
        lines.append(f"stop      {s.stop_reason.name} (source {s.stop_source.name})")
    lines.append(f"pressure  {_pressure_text(s)}")
    lines.append(f"delivered {_delivered_text(s)}")
    lines.append(f"plunger   {s.plunger_mm:.2f} mm from home")
    lines.append(f"limits    soft {s.soft_limit_kpa:.0f} kPa, hard {s.hard_limit_kpa:.0f} kPa")
    lines.extend(str(line) for line in in_force or ())  # syringe, calibration, last movement
    _say("\n".join(lines))


def _pressure_text(s: Any) -> str:
    """A faulty sensor's reading is not a pressure (SPEC §6.11): never show it as one."""
    from protocol import Flags

    if s.flags & Flags.SENSOR_FAULT:
        return "invalid (sensor fault)"
    return f"{s.pressure_kpa:.0f} kPa".replace("-0 kPa", "0 kPa")


def _delivered_text(s: Any) -> str:
    """Delivered since the last ARM; after CLEAR the plan (and its limit) is gone but the volume of
    the last run is kept until the next ARM (SPEC §5.15), so it is labelled as the last run's."""
    if s.volume_limit_ml > 0:
        return f"{s.delivered_ml:.3f} of {s.volume_limit_ml:.3f} mL planned"
    if s.delivered_ml > 0:
        return f"{s.delivered_ml:.3f} mL (last run; no plan loaded)"
    return "0.000 mL (no plan loaded)"


async def clear(port: str) -> int:
    """CLEAR, waiting up to CLEAR_SETTLE_S while the device answers BUSY (plunger not yet at rest)."""
    from host.client import CLEAR_SETTLE_S

    try:
        answer = await control.request(port, "clear", timeout_s=CLEAR_SETTLE_S + control.ANSWER_TIMEOUT_S)
    except control.NoEndpoint:
        answer = None
    except control.ControlError as exc:
        _fail(str(exc))
        return EXIT_LINK
    if answer is not None:
        who = _session_name(port, answer)
        if answer.get("ok"):
            _say(f"CLEAR acknowledged through {who}: state {answer.get('state')}")
            return EXIT_OK
        _fail(f"through {who}: {answer.get('error')}")
        return EXIT_REFUSED if answer.get("code") else EXIT_LINK
    from host.client import DeviceClient

    try:
        async with DeviceClient.open(port) as ctl:
            ack = await ctl.clear(settle_s=CLEAR_SETTLE_S)
    except CommandRefused as exc:
        _fail(str(exc))
        return EXIT_REFUSED
    except PortBusy as exc:
        _fail(_busy(exc, "CLEAR not sent"))
        return EXIT_LINK
    except CementguardError as exc:
        _fail(f"CLEAR not sent: {exc}")
        return EXIT_LINK
    _say(f"CLEAR acknowledged on {port}: state {getattr(ack.state, 'name', ack.state)}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from host.link import LinkOptions
    from host.settings import SettingsError, command_settings

    try:
        settings, port = command_settings(args.config, args.port)
    except SettingsError as exc:
        _fail(f"settings error:\n{exc}")
        return EXIT_USAGE
    return _run(lambda: status(port, LinkOptions.from_settings(settings)))


def _clear(args: argparse.Namespace) -> int:
    return _run(lambda: clear(args.port))


def _run(go: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(go())
    except CementguardError as exc:  # e.g. the runtime directory is not usable
        _fail(str(exc))
        return EXIT_LINK
