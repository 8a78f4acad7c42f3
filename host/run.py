"""`cementguard run`: one injection plan, headless, with a live terminal display and a recording.

The controller owns safety; this command only asks. It arms the plan (clamped to the device's own
limits, with a warning per clamped field), starts, shows delivered volume, pressure and state, and
answers increment pauses at the terminal (or after `--auto-resume` seconds, for unattended demos).
Ctrl-C sends STOP first and waits for its acknowledgement, with a timeout of its own, before leaving;
so do SIGTERM and SIGHUP (the terminal closed), not to leave the stop to the watchdog's HOST_LOST.

Exit codes (also in `cementguard run --help`): 0 plan completed, 2 usage or plan error, 3 safety
stop (the reason is printed), 4 link failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from host.cli_types import AUTO_RESUME, MIXED_AGO, TIME_SCALE
from host.client import Controller, LinkOptions, LinkState, PlanStop
from host.control import serve_control
from host.errors import CementguardError, CommandRefused, LinkLost
from host.plan import InjectionPlan, PlanError, clamp_to_device, load_plan
from host.recording import Recorder, new_run_dir
from host.stops import StopRequests
from protocol import State, StopReason, StopSource
from protocol.models import DeviceInfoRecord, kpa, ml, ml_min

EXIT_COMPLETED = 0
EXIT_USAGE = 2
EXIT_SAFETY_STOP = 3
EXIT_LINK = 4
EXIT_CODES_HELP = (
    "exit codes: 0 plan completed; 2 usage or plan error; 3 safety stop (reason printed); 4 link failure"
)
SAFE_STOP_TIMEOUT_S = 2.0
"""How long Ctrl-C waits for the STOP acknowledgement before giving up (the watchdog then stops)."""
ENDED = (State.STOPPED, State.DONE, State.FAULT)
STOP_SIGNALS = {signal.SIGINT: "ctrl-c", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
"""Signals that stop the injection as Ctrl-C does, and the origin each stop is recorded with."""


class _Interrupted(asyncio.Event):
    """Set by the first of STOP_SIGNALS to come; `origin` names it."""

    origin = "ctrl-c"

    def by(self, origin: str) -> None:
        if not self.is_set():
            self.origin = origin
        self.set()


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run an injection plan headless, with a live display and a recording",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("--port", required=True, help="serial device or pyserial URL (pty, socket://host:port)")
    p.add_argument("--plan", required=True, type=Path, help="injection plan (TOML; see plans/README.md)")
    p.add_argument("--record", type=Path, help="directory under which this run's recording is created")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--mixed-ago",
        type=MIXED_AGO,
        metavar="S",
        help=f"seconds since the cement was mixed ({MIXED_AGO.allowed})",
    )
    when.add_argument("--mixed-at", metavar="HH:MM[:SS]", help="wall-clock time the cement was mixed (today)")
    p.add_argument(
        "--auto-resume",
        type=AUTO_RESUME,
        metavar="S",
        help="resume each increment pause after S seconds instead of asking (unattended demos only; "
        f"{AUTO_RESUME.allowed})",
    )
    p.add_argument(
        "--time-scale",
        type=TIME_SCALE,
        default=1.0,
        help=f"the simulator's --time-scale, if any ({TIME_SCALE.allowed})",
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    console = Console(stderr=False)
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        console.print(f"[bold red]plan error[/]\n{exc}", highlight=False)
        return EXIT_USAGE
    try:
        mixed_ago_s = _mixed_ago(args.mixed_ago, args.mixed_at, plan)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    options = LinkOptions(time_scale=args.time_scale)
    return asyncio.run(
        run_plan(
            args.port,
            plan,
            mixed_ago_s=mixed_ago_s,
            record_root=args.record,
            auto_resume_s=args.auto_resume,
            options=options,
            console=console,
        )
    )


def _mixed_ago(mixed_ago: float | None, mixed_at: str | None, plan: InjectionPlan) -> float:
    if mixed_ago is not None:
        return MIXED_AGO.check(mixed_ago)
    if mixed_at is not None:
        now = datetime.now()
        try:
            parts = [int(x) for x in mixed_at.split(":")]
            at = now.replace(hour=parts[0], minute=parts[1], second=parts[2] if len(parts) > 2 else 0)
        except (ValueError, IndexError):
            raise ValueError(f"--mixed-at {mixed_at!r} is not a time of day HH:MM or HH:MM:SS") from None
        ago = (now - at).total_seconds()
        if not 0.0 <= ago <= 7200.0:
            raise ValueError(f"--mixed-at {mixed_at} is {ago:.0f} s ago; allowed range 0..7200 s")
        return ago
    from_plan = plan.mixed_ago_s()
    if from_plan is None:
        raise ValueError("the time of mixing is needed: give --mixed-ago S or --mixed-at HH:MM, or mixed_at")
    return from_plan


@dataclass
class _Live:
    """What the display shows, updated by the telemetry and event pumps."""

    state: str = "CONNECTING"
    pressure_kpa: float = 0.0
    volume_ml: float = 0.0
    flow_ml_min: float = 0.0


async def run_plan(
    url: str,
    plan: InjectionPlan,
    *,
    mixed_ago_s: float,
    record_root: Path | None,
    auto_resume_s: float | None,
    options: LinkOptions | None = None,
    console: Console | None = None,
    ask: Callable[[str], str] | None = None,
) -> int:
    """Run one plan to its end; returns the exit code. `ask` reads an operator answer (default:
    input() in a worker thread). An `auto_resume_s` that is not a finite 0.1..3600 s is refused
    (ValueError) before the port is opened: a negative or NaN wait would skip the imaging pause."""
    if auto_resume_s is not None:
        AUTO_RESUME.check(auto_resume_s)
    console = console or Console()
    try:
        ctl = await Controller.connect(url, options)
    except CementguardError as exc:
        console.print(f"[bold red]link failure:[/] {exc}", highlight=False)
        return EXIT_LINK
    recorder: Recorder | None = None
    interrupted = _Interrupted()
    loop = asyncio.get_running_loop()
    for sig, origin in STOP_SIGNALS.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.by, origin)
    try:
        info = ctl.device
        clamped, warnings = clamp_to_device(plan, info)
        for warning in warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if record_root is not None:
            recorder = Recorder.create(
                new_run_dir(record_root, _label(plan)),
                clamped,
                DeviceInfoRecord.from_message(info),
                extra={"port": url, "mixed_ago_s_at_arm": mixed_ago_s},
                counters_source=lambda: ctl.counters,
            )
            console.print(f"recording to {recorder.path}", highlight=False)
        async with serve_control(ctl):  # `cementguard stop/status/clear` from another terminal
            console.print(f"stop from any terminal: cementguard stop --port {url}", highlight=False)
            return await _inject(
                ctl, clamped, mixed_ago_s, recorder, auto_resume_s, interrupted, console, ask
            )
    except PlanError as exc:
        console.print(f"[bold red]plan error[/]\n{exc}", highlight=False)
        return EXIT_USAGE
    finally:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if recorder is not None:
            await asyncio.to_thread(recorder.close)  # its final fsync must not stall the loop
        await ctl.close()


def _label(plan: InjectionPlan) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in plan.name)[:40]


async def _inject(
    ctl: Controller,
    plan: InjectionPlan,
    mixed_ago_s: float,
    recorder: Recorder | None,
    auto_resume_s: float | None,
    interrupted: _Interrupted,
    console: Console,
    ask: Callable[[str], str] | None,
) -> int:
    live = _Live()
    requests = StopRequests()
    """Stops this command asks for (Ctrl-C, a stop at the prompt), matched to the STOP events so that
    the recording carries each stop's source, origin and latency."""
    link_lost = asyncio.Event()
    async with ctl.telemetry() as telemetry, ctl.events() as events, ctl.link_changes() as changes:

        async def pump_telemetry() -> None:
            async for batch in telemetry:
                if recorder is not None:
                    recorder.add_samples(batch.samples)
                last = batch.samples[-1] if len(batch.samples) else None
                if last is not None:
                    live.pressure_kpa = kpa(float(last["pressure_pa"]))
                    live.volume_ml = ml(float(last["volume_nl"]))
                    live.flow_ml_min = ml_min(float(last["flow_nl_s"]))

        async def pump_events() -> None:
            async for event in events:
                notes = requests.match(event, events.received_at)
                if recorder is not None:
                    recorder.add_event(event, **notes)
                live.state = _name(State, event.state)

        async def watch_link() -> None:
            async for change in changes:
                if change.state in (LinkState.LOST, LinkState.FAILED):
                    link_lost.set()

        pumps = [asyncio.create_task(f()) for f in (pump_telemetry, pump_events, watch_link)]
        try:
            with Live(_render(live, plan), console=console, refresh_per_second=4, transient=False) as view:
                refresher = asyncio.create_task(_refresh(view, live, plan))
                try:
                    code = await _drive(
                        ctl,
                        plan,
                        mixed_ago_s,
                        recorder,
                        link_lost,
                        auto_resume_s,
                        interrupted,
                        view,
                        ask,
                        requests,
                    )
                finally:
                    refresher.cancel()
                    view.update(_render(live, plan))
            console.print()  # the live view leaves the cursor at the end of its last line
            return code
        finally:
            for task in pumps:
                task.cancel()


async def _drive(
    ctl: Controller,
    plan: InjectionPlan,
    mixed_ago_s: float,
    recorder: Recorder | None,
    link_lost: asyncio.Event,
    auto_resume_s: float | None,
    interrupted: _Interrupted,
    view: Live,
    ask: Callable[[str], str] | None,
    requests: StopRequests,
) -> int:
    console = view.console
    try:
        await ctl.arm(plan, mixed_ago_s=mixed_ago_s)
        await ctl.start()
        while True:
            event = await _next_stop(ctl, link_lost, interrupted)
            if event == "interrupted":
                return await _safe_stop(ctl, console, requests, interrupted.origin)
            if event is None:
                console.print(f"[bold red]link lost:[/] {ctl.link_reason}", highlight=False)
                return EXIT_LINK
            assert isinstance(event, PlanStop)
            reason = _name(StopReason, event.reason)
            at = f"at {event.pressure_pa / 1000:.0f} kPa, {event.volume_nl / 1e6:.3f} mL"
            if event.event_lost:
                _record_lost_stop(ctl, event, recorder)
                console.print(
                    f"[yellow]note:[/] the {reason} event was lost on the line; "
                    f"read from the device's STATUS (state {_name(State, event.state)})",
                    highlight=False,
                )
            if event.reason == StopReason.VOLUME_LIMIT or event.state == State.DONE:
                console.print(f"[bold green]plan completed[/]: {reason} {at}", highlight=False)
                return EXIT_COMPLETED
            if event.reason == StopReason.INCREMENT_DONE:
                answer = await _answer_pause(ctl, event, auto_resume_s, interrupted, link_lost, view, ask)
                if answer == "lost":
                    console.print(f"[bold red]link lost:[/] {ctl.link_reason}", highlight=False)
                    return EXIT_LINK
                if answer == "stop":
                    origin = interrupted.origin if interrupted.is_set() else "operator prompt"
                    return await _safe_stop(ctl, console, requests, origin)
                continue
            source = _name(StopSource, event.source)
            console.print(f"[bold red]safety stop: {reason}[/] (source {source}) {at}", highlight=False)
            return EXIT_SAFETY_STOP
    except CommandRefused as exc:
        console.print(f"[bold red]refused:[/] {exc}", highlight=False)
        return EXIT_SAFETY_STOP if ctl.state in ENDED else EXIT_USAGE
    except LinkLost as exc:
        console.print(f"[bold red]link lost:[/] {exc}", highlight=False)
        return EXIT_LINK


async def _next_stop(
    ctl: Controller, link_lost: asyncio.Event, interrupted: asyncio.Event
) -> PlanStop | str | None:
    """The plan's next stop (from its event, or from STATUS when the event was lost: never an event
    alone), "interrupted", or None when the link is lost first."""
    stop = asyncio.ensure_future(ctl.wait_for_plan_stop())
    sig = asyncio.ensure_future(interrupted.wait())
    lost = asyncio.ensure_future(link_lost.wait())
    done, pending = await asyncio.wait({stop, sig, lost}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, CementguardError):
        await stop  # retrieves its exception (LinkLost) or finishes its cancellation
    if sig in done:
        return "interrupted"
    if stop in done and not stop.cancelled() and stop.exception() is None:
        return stop.result()
    return None


def _record_lost_stop(ctl: Controller, stop: PlanStop, recorder: Recorder | None) -> None:
    """A stop read from STATUS goes into the recording too, marked as such: the recording must never
    lack the stop that ended a run because one frame was damaged."""
    if recorder is None:
        return
    status = ctl.status
    event = stop.as_event(status.event_count if status is not None else 0)
    recorder.add_event(event, read_from="STATUS", note="the STOP event was lost on the line")


async def _answer_pause(
    ctl: Controller,
    event: PlanStop,
    auto_resume_s: float | None,
    interrupted: asyncio.Event,
    link_lost: asyncio.Event,
    view: Live,
    ask: Callable[[str], str] | None,
) -> str:
    """ "resume", "stop" or "lost". The plunger stays still meanwhile: the controller is PAUSED, and
    a link lost during the pause ends the wait at once (the controller latches HOST_LOST)."""
    console = view.console
    console.print(
        f"increment done at {event.volume_nl / 1e6:.3f} mL, {event.pressure_pa / 1000:.0f} kPa: "
        "check the imaging",
        highlight=False,
    )
    waits: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(interrupted.wait()),
        asyncio.ensure_future(link_lost.wait()),
    ]
    answer_task: asyncio.Future[str]
    if auto_resume_s is None:
        view.stop()
        reader = ask or input
        answer_task = _read_in_daemon_thread(reader, "resume? [Enter = resume, s = stop] ")
    else:
        answer_task = asyncio.ensure_future(asyncio.sleep(auto_resume_s, result=""))
    pending: list[asyncio.Future[Any]] = [answer_task, *waits]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        if auto_resume_s is None:
            view.start()
    if link_lost.is_set():
        return "lost"
    if interrupted.is_set() or not answer_task.done():
        return "stop"
    try:
        answer = answer_task.result()
    except EOFError:
        return "stop"  # no operator to answer: stopping is the safe reading of silence
    if answer.strip().lower().startswith("s"):
        return "stop"
    await ctl.resume()
    return "resume"


def _read_in_daemon_thread(reader: Callable[[str], str], prompt: str) -> asyncio.Future[str]:
    """The operator's answer, read in a daemon thread: when the link drops or Ctrl-C comes while
    the prompt waits, the command must exit at once, not wait at shutdown for an Enter that an
    executor thread (asyncio.to_thread) would still be blocked on."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(answer: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(answer or "")

    def read() -> None:
        try:
            answer = reader(prompt)
        except BaseException as exc:  # EOFError included: handed to the waiting coroutine
            loop.call_soon_threadsafe(settle, None, exc)
            return
        loop.call_soon_threadsafe(settle, answer, None)

    threading.Thread(target=read, name="operator-prompt", daemon=True).start()
    return future


async def _safe_stop(ctl: Controller, console: Console, requests: StopRequests, origin: str) -> int:
    requests.requested(StopSource.OPERATOR, f"cementguard run {origin}")
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone: STOP all the same
        console.print("[bold]stopping[/] (STOP sent, waiting for the acknowledgement)", highlight=False)
    try:
        ack = await asyncio.wait_for(ctl.stop(StopSource.OPERATOR), timeout=SAFE_STOP_TIMEOUT_S)
    except (TimeoutError, CementguardError) as exc:
        console.print(
            f"[bold red]STOP not acknowledged[/] ({exc or 'timeout'}): the controller's watchdog stops "
            "the pump when this host goes away",
            highlight=False,
        )
        return EXIT_LINK
    if ack.state == State.DONE:  # STOP leaves DONE as it is: the device had finished the plan
        console.print("[bold green]plan completed[/] by the device before the stop", highlight=False)
        return EXIT_COMPLETED
    console.print("[bold]stopped by the operator[/]", highlight=False)
    return EXIT_SAFETY_STOP


async def _refresh(view: Live, live: _Live, plan: InjectionPlan) -> None:
    while True:
        await asyncio.sleep(0.25)  # display refresh cadence, not synchronisation
        view.update(_render(live, plan))


def _render(live: _Live, plan: InjectionPlan) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold")
    table.add_column()
    done = min(1.0, live.volume_ml / plan.volume_limit_ml) if plan.volume_limit_ml else 0.0
    bar = "\u2588" * round(done * 30) + "\u2591" * (30 - round(done * 30))
    table.add_row("state", live.state)
    table.add_row("delivered", f"{bar} {live.volume_ml:.3f} / {plan.volume_limit_ml:.3f} mL")
    soft = plan.pressure.soft_limit_kpa
    hard = plan.pressure.hard_limit_kpa
    table.add_row("pressure", f"{live.pressure_kpa:7.0f} kPa  (soft {soft:.0f}, hard {hard:.0f})")
    table.add_row("flow", f"{live.flow_ml_min:7.2f} mL/min  (plan {plan.flow_ml_min:.2f})")
    return table


def _name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)
