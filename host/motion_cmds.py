"""`cementguard prime`, `withdraw` (also `refill`), `home` and `jog`: the bench movements before and
after an injection (protocol/SPEC.md §5.16, §8.6), from any terminal.

The device owns every limit of a movement: these commands check their options (finite, in range,
host.cli_types), send one command, wait for the movement's end and say what happened: the volume
primed or withdrawn, where the plunger rests, or the stop that ended it. Ctrl-C during a prime,
withdraw or home sends STOP (an operator stop, latched until `cementguard clear`). A jog is
hold-to-move: the command repeats JOG while the operator holds it (`--for SECONDS`, or `--keys` in
a terminal: a jog key held down), and when it stops repeating the device brings the plunger to rest
within one grant (at most one watchdog period) by itself; no STOP is needed and none latches.

They open the port themselves; a port held by another session (run, dashboard, bridge) is refused
with its holder's name: movements are not relayed through a session's control endpoint. While they
hold the port they serve its endpoint, so `cementguard stop` from another terminal goes through.

Exit codes: 0 done; 1 refused or ended by a stop; 4 no device reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from host.cli_types import BORE_MM as BORE
from host.cli_types import FLOW_ML_MIN as FLOW
from host.cli_types import VOLUME_ML as VOLUME
from host.cli_types import finite_float
from host.errors import CementguardError, CommandRefused
from host.port_lock import PortBusy
from host.syringes import NoSyringeSelectedError, selected_bore_um

if TYPE_CHECKING:
    from host.client import DeviceClient
    from host.link import Subscription
    from protocol.messages import Event, MotionStatus, Status

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_LINK = 4

HOME_SPEED = finite_float("--speed-mm-s", 0.01, 5.0, "mm/s")
"""Up to the plunger's top speed (SPEC §5.16, HOME)."""
JOG_SPEED = finite_float("--speed-mm-s", 0.001, 5.0, "mm/s")
"""Jog speed: backward up to the top speed; forward the device refuses above 0.25 mm/s."""
JOG_FOR = finite_float("--for", 0.05, 60.0, "s")
"""How long a jog is held without a terminal; Ctrl-C releases it early."""

JOG_HOLD_MS = 250
"""Motion each JOG grants: the plunger is at rest at most this long after the last one (the
reference device's watchdog is 500 ms; the grant is capped to the device's own watchdog_ms)."""
JOG_REPEAT_S = 0.08
"""JOG period: three JOGs per grant, so one lost frame does not stop a held jog."""
KEY_RELEASE_S = 0.6
"""A key counts as held until this long after its last byte: terminals repeat a held key only after
an initial delay (about 0.5 s), so a shorter window would stutter at the start of every hold."""
SETTLE_S = 5.0
"""Beyond a movement's own duration: its braking, and a slow device answering."""
RELIEF_WAIT_S = 5.0
"""How long a stopped prime or forward jog waits for its relief's RELIEF_DONE: the device's relief
gives up 3 s after the stop (SPEC §8.4), plus its braking and the link."""

FORWARD_KEYS = frozenset({"f", "+", "\x1b[A", "\x1b[C"})
BACKWARD_KEYS = frozenset({"b", "-", "\x1b[B", "\x1b[D"})
QUIT_KEYS = frozenset({"q", " ", "\x1b", "\x03", "\x04"})
KEYS_HELP = "jog: hold f/+/up to move forward, b/-/down to move back; release to stop; q or space quits"


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epilog = "exit codes: 0 done; 1 refused or ended by a stop; 4 no device reached"
    for name, aliases, help_text in (
        ("prime", [], "prime (purge) the line: push a volume out with every pressure limit active"),
        ("withdraw", ["refill"], "withdraw (refill) a volume: the plunger moves back, never behind home"),
    ):
        p = subparsers.add_parser(name, aliases=aliases, help=help_text, epilog=epilog)
        p.add_argument("--port", required=True, help="serial device or pyserial URL")
        p.add_argument(
            "--bore-mm",
            type=BORE,
            default=None,
            help=f"syringe inner diameter ({BORE.allowed}; default: the syringe selected on the device)",
        )
        p.add_argument("--volume-ml", type=VOLUME, required=True, help=f"volume ({VOLUME.allowed})")
        p.add_argument("--flow-ml-min", type=FLOW, default=1.0, help=f"flow ({FLOW.allowed}; default 1)")
        p.set_defaults(func=_prime if name == "prime" else _withdraw)
    p = subparsers.add_parser("home", help="move the plunger back to its home position", epilog=epilog)
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    p.add_argument(
        "--speed-mm-s", type=HOME_SPEED, default=2.0, help=f"plunger speed ({HOME_SPEED.allowed}; default 2)"
    )
    p.set_defaults(func=_home)
    p = subparsers.add_parser(
        "jog",
        help="hold-to-move: jog the plunger while a key is held, or for a set time",
        description=(
            "Jog the plunger. With --for it moves for that long (Ctrl-C releases it early); with --keys "
            "it moves while f/+/up (forward) or b/-/down (backward) is held, q or space quits. When "
            f"the command stops asking, the device is at rest within {JOG_HOLD_MS} ms by itself."
        ),
        epilog=epilog,
    )
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    p.add_argument(
        "--speed-mm-s", type=JOG_SPEED, default=0.1, help=f"plunger speed ({JOG_SPEED.allowed}; default 0.1)"
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--for", dest="seconds", type=JOG_FOR, help=f"jog this long ({JOG_FOR.allowed})")
    how.add_argument("--keys", action="store_true", help="jog while a key is held (needs a terminal)")
    p.add_argument("--backward", action="store_true", help="with --for: jog backward (default forward)")
    p.set_defaults(func=_jog)


# -- unit conversions (the wire's integer units) -------------------------------------------------


def bore_um(bore_mm: float) -> int:
    return round(bore_mm * 1000.0)


def volume_nl(volume_ml: float) -> int:
    return round(volume_ml * 1e6)


def flow_nl_s(flow_ml_min: float) -> int:
    return max(1, round(flow_ml_min * 1e6 / 60.0))


def speed_um_s(speed_mm_s: float) -> int:
    return max(1, round(speed_mm_s * 1000.0))


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(text: str) -> None:
    print(f"cementguard: {text}", flush=True)


# -- prime, withdraw, home ------------------------------------------------------------------------


async def move(
    port: str, what: str, start: Callable[[DeviceClient], Awaitable[MotionStatus]], expected_s: float
) -> int:
    """Open the port, start a movement, wait for its end (`expected_s` plus SETTLE_S at most), report.
    A cancellation (Ctrl-C) while it runs sends STOP first. While it runs the session serves the
    port's control endpoint, so `cementguard stop` from another terminal goes through it."""
    from host.client import DeviceClient
    from host.control import serve_control

    try:
        async with DeviceClient.open(port) as ctl, serve_control(ctl), ctl.events() as events:
            try:
                await start(ctl)
            except (CommandRefused, NoSyringeSelectedError) as exc:
                _fail(str(exc))
                return EXIT_REFUSED
            _say(f"{what} started; stop from any terminal: cementguard stop --port {port}")
            began = time.monotonic()
            try:
                await ctl.wait_for_motion_end(timeout=expected_s + SETTLE_S)
            except asyncio.CancelledError:  # Ctrl-C: an operator stop
                await ctl.stop()
                _fail(f"{what} stopped by the operator (latched: `cementguard clear --port {port}` to go on)")
                raise
            except TimeoutError:
                await ctl.stop()
                _fail(f"{what} did not end within {expected_s + SETTLE_S:.0f} s: stopped (latched)")
                return EXIT_REFUSED
            return await _report(ctl, what, time.monotonic() - began, events)
    except PortBusy as exc:
        _fail(f"{what} not sent: {exc}")
        return EXIT_LINK
    except CementguardError as exc:
        _fail(f"{what}: {exc}")
        return EXIT_LINK


async def _report(
    ctl: DeviceClient, what: str, seconds: float, events: Subscription[Event] | None = None
) -> int:
    """The final line: what the movement did and where the plunger rests; after a stop, once its
    relief has ended. `events`: subscribed before the movement started (else from now on)."""
    from protocol import State

    with contextlib.ExitStack() as stack:
        if events is None:
            events = stack.enter_context(contextlib.closing(ctl.events()))
        status = await ctl.get_status()
        if status.state != State.IDLE:
            return await _report_stop(ctl, what, status, events)
    motion = await ctl.get_motion()
    where = f"plunger at {motion.plunger_um / 1000:.2f} mm from home"
    took = f" in {seconds:.1f} s" if seconds else ""
    _say(f"{what} done{took}: {moved_text(motion)}; {where}")
    return EXIT_OK


async def _report_stop(ctl: DeviceClient, what: str, status: Status, events: Subscription[Event]) -> int:
    """A stopped movement: after its relief (if any), what it did, where the plunger rests, the stop."""
    relief = await _await_relief(ctl, what, status, events)
    motion = await ctl.get_motion()
    where = f"plunger at {motion.plunger_um / 1000:.2f} mm from home"
    reason = getattr(status.stop_reason, "name", status.stop_reason)
    source = getattr(status.stop_source, "name", status.stop_source)
    _fail(
        f"{what} ended by a stop: {reason} (source {source}) after {moved_text(motion)}; {relief}{where}. "
        "The stop is latched: `cementguard clear` to go on"
    )
    return EXIT_REFUSED


async def _await_relief(ctl: DeviceClient, what: str, status: Status, events: Subscription[Event]) -> str:
    """After a stop: while the device's relief runs (flag RELIEF_ACTIVE, SPEC §8.6) say so and wait
    for its RELIEF_DONE, at most RELIEF_WAIT_S, so the final line tells where the plunger rests and
    whether the line is still pressurised (ALARM RELIEF_AT_LIMIT or RELIEF_INCOMPLETE, said as its
    own line). Returns the relief's part of the final line ("" when none ran)."""
    from host.relief_notice import relief_notice
    from protocol import EventKind, Flags

    done: Event | None = None
    notice: str | None = None

    def take(event: Event) -> None:
        nonlocal done, notice
        if event.kind == EventKind.RELIEF_DONE:
            done = event
        notice = relief_notice(event) or notice

    while (event := events.get_nowait()) is not None:  # what came before the STATUS
        take(event)
    if done is None and status.flags & Flags.RELIEF_ACTIVE:
        _say(f"{what} stopped; pressure relief is running: waiting for it (at most {RELIEF_WAIT_S:.0f} s)")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RELIEF_WAIT_S):
                while done is None:
                    take(await events.get())
        if done is None:
            return f"pressure relief did not report its end within {RELIEF_WAIT_S:.0f} s; "
    if done is None:
        return ""
    await ctl.get_status()  # a RELIEF_AT_LIMIT / _INCOMPLETE notice follows RELIEF_DONE: now read
    while (event := events.get_nowait()) is not None:
        take(event)
    if notice is not None:
        _fail(f"warning: {notice}")
    return f"relief backed off {done.detail / 1000:.2f} mm; "


def moved_text(motion: MotionStatus) -> str:
    """What the current or last movement did, in the operator's units (mL primed or withdrawn, mm
    moved): said by these commands and by the dashboard's setup panel."""
    from protocol import State

    if motion.last_motion == State.PRIMING:
        return f"{motion.primed_nl / 1e6:.3f} mL primed"
    if motion.last_motion == State.WITHDRAWING:
        return f"{motion.withdrawn_nl / 1e6:.3f} mL withdrawn"
    return f"moved {motion.moved_um / 1000:+.3f} mm"


def _volume_seconds(args: argparse.Namespace) -> float:
    return float(args.volume_ml) / float(args.flow_ml_min) * 60.0


def _bore(args: argparse.Namespace, ctl: DeviceClient) -> int:
    """--bore-mm, else the bore of the syringe selected on the device (SPEC §5.17: it must match)."""
    return bore_um(args.bore_mm) if args.bore_mm is not None else selected_bore_um(ctl.syringe)


def _prime(args: argparse.Namespace) -> int:
    vol, flow = volume_nl(args.volume_ml), flow_nl_s(args.flow_ml_min)

    async def start(ctl: DeviceClient) -> MotionStatus:
        return await ctl.prime(syringe_bore_um=_bore(args, ctl), flow_nl_s=flow, volume_nl=vol)

    return _run(lambda: move(args.port, "prime", start, _volume_seconds(args)))


def _withdraw(args: argparse.Namespace) -> int:
    vol, flow = volume_nl(args.volume_ml), flow_nl_s(args.flow_ml_min)

    async def start(ctl: DeviceClient) -> MotionStatus:
        return await ctl.withdraw(syringe_bore_um=_bore(args, ctl), flow_nl_s=flow, volume_nl=vol)

    return _run(lambda: move(args.port, "withdraw", start, _volume_seconds(args)))


def _home(args: argparse.Namespace) -> int:
    speed = speed_um_s(args.speed_mm_s)

    async def start(ctl: DeviceClient) -> MotionStatus:
        status = await ctl.home(speed_um_s=speed)
        return status

    async def go() -> int:
        # the longest way home is the whole stroke: DEVICE_INFO.travel_um at this speed
        return await move(args.port, "home", start, 100_000 / speed)

    return _run(go)


# -- jog --------------------------------------------------------------------------------------------


@dataclass
class JogHold:
    """What the operator holds: a direction (+1 / -1) until a time (monotonic seconds)."""

    direction: int = 0
    until: float = -math.inf
    quit: bool = False
    once: bool = False
    """End at the first release (`--for`); with keys the operator may press again until quitting."""

    def held(self, now: float) -> int:
        return self.direction if now < self.until else 0

    def press(self, direction: int, now: float) -> None:
        """A jog key read at `now` (its first byte or a repeat): held in `direction` until
        KEY_RELEASE_S after it. The one rule for a held key, for `jog --keys` and the dashboard."""
        self.direction, self.until = direction, now + KEY_RELEASE_S


async def hold_to_move(
    ctl: DeviceClient,
    speed: int,
    hold: JogHold,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    report: Callable[[int], None] | None = None,
) -> tuple[int, str | None]:
    """Repeat JOG every JOG_REPEAT_S while `hold` says a direction is held; return when the operator
    quits (or, with `hold.once`, lets go), as (JOGs sent, the refusal that ended it or None). The
    grant is capped to the device's watchdog period, so the plunger is at rest at most that long
    after the last JOG, whatever happens to this host. `report(direction)` is told when the
    direction asked of the device changes: +1 / -1 once the first JOG of a hold is accepted, 0 at
    its release."""
    hold_ms = min(JOG_HOLD_MS, ctl.device.watchdog_ms)
    sent = 0
    shown = 0
    while not hold.quit:
        now = clock()
        direction = hold.held(now)
        if report is not None and shown and direction != shown:
            shown = 0
            report(0)
        if direction:
            grant = hold_ms
            if hold.once:  # a timed jog: the last grant ends when the time is up
                grant = max(1, min(hold_ms, math.ceil((hold.until - now) * 1000)))
            try:
                await ctl.jog(speed_um_s=direction * speed, hold_ms=grant)
            except CommandRefused as exc:
                return sent, str(exc)
            sent += 1
            if report is not None and shown != direction:
                shown = direction
                report(direction)
        elif hold.once:
            break
        await sleep(JOG_REPEAT_S)
    return sent, None


async def jog_for(port: str, speed: int, seconds: float) -> int:
    """`jog --for`: held from now for `seconds` (Ctrl-C releases early), then released."""
    from host.client import DeviceClient
    from host.control import serve_control

    try:
        async with DeviceClient.open(port) as ctl, serve_control(ctl):
            hold = JogHold(direction=1 if speed > 0 else -1, until=time.monotonic() + seconds, once=True)
            _sent, refused = await hold_to_move(ctl, abs(speed), hold)
            return await _jog_end(ctl, refused)
    except PortBusy as exc:
        _fail(f"jog not sent: {exc}")
        return EXIT_LINK
    except CementguardError as exc:
        _fail(f"jog: {exc}")
        return EXIT_LINK


async def _jog_end(ctl: DeviceClient, refused: str | None) -> int:
    """The jog was released: the device brings the plunger to rest by itself; report where."""
    released = time.monotonic()
    await ctl.wait_for_motion_end(timeout=SETTLE_S)
    log.info("jog released; the device reported its end %.0f ms later", (time.monotonic() - released) * 1000)
    if refused is not None:
        _fail(refused)
        return EXIT_REFUSED
    return await _report(ctl, "jog", 0.0)


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def key_action(text: str, hold: JogHold, now: float) -> None:
    """Apply the bytes read from the terminal to `hold` (arrow keys are escape sequences)."""
    i = 0
    while i < len(text):
        key = text[i : i + 3] if text.startswith("\x1b[", i) else text[i]
        i += len(key)
        if key in FORWARD_KEYS:
            hold.press(1, now)
        elif key in BACKWARD_KEYS:
            hold.press(-1, now)
        elif key in QUIT_KEYS:
            hold.quit = True


async def jog_keys(port: str, speed: int, fd: int | None = None) -> int:
    """`jog --keys`: jog while a jog key is held in this terminal; q, space or Esc quits."""
    from host.client import DeviceClient
    from host.control import serve_control

    fd = sys.stdin.fileno() if fd is None else fd
    if not os.isatty(fd):
        _fail("jog --keys needs a terminal on stdin (use --for SECONDS otherwise)")
        return EXIT_REFUSED
    try:
        async with DeviceClient.open(port) as ctl, serve_control(ctl):
            hold = JogHold()
            loop = asyncio.get_running_loop()

            def on_key() -> None:
                key_action(os.read(fd, 32).decode(errors="replace"), hold, time.monotonic())

            with _cbreak(fd):
                loop.add_reader(fd, on_key)
                # only now: keys typed before cbreak was set are flushed with the line discipline
                _say(KEYS_HELP)

                def report(direction: int) -> None:
                    if direction:
                        way = "forward" if direction > 0 else "backward"
                        _say(f"jogging {way} at {speed / 1000:.3f} mm/s")
                    else:
                        _say("released: the device brings the plunger to rest by itself")

                try:
                    _sent, refused = await hold_to_move(ctl, speed, hold, report=report)
                finally:
                    loop.remove_reader(fd)
            return await _jog_end(ctl, refused)
    except PortBusy as exc:
        _fail(f"jog not sent: {exc}")
        return EXIT_LINK
    except CementguardError as exc:
        _fail(f"jog: {exc}")
        return EXIT_LINK


def _jog(args: argparse.Namespace) -> int:
    speed = speed_um_s(args.speed_mm_s)
    if args.keys:
        return _run(lambda: jog_keys(args.port, speed))
    return _run(lambda: jog_for(args.port, -speed if args.backward else speed, float(args.seconds)))


def _run(go: Callable[[], Awaitable[int]]) -> int:
    async def main() -> int:
        return await go()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_REFUSED
    except CementguardError as exc:
        _fail(str(exc))
        return EXIT_LINK


__all__ = [
    "JogHold",
    "add_parsers",
    "bore_um",
    "flow_nl_s",
    "hold_to_move",
    "jog_for",
    "jog_keys",
    "key_action",
    "move",
    "speed_um_s",
    "volume_nl",
]
