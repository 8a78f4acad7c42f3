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
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from host.cli_types import (
    AUTO_RESUME,
    CONFIG_HELP,
    EXIT_USAGE,
    MIXED_AGO,
    FiniteFloat,
    add_record_tail,
    add_time_scale,
)
from host.client import DeviceClient, LinkChange, LinkOptions, LinkState, PlanStop
from host.control import serve_control
from host.errors import CementguardError, CommandRefused, LinkLost, StatusUnavailable
from host.guard.options import GuardSetup, add_guard_arguments, guard_setup, load_guard_modules
from host.link_quality import LinkQuality
from host.logs import LOG_FILE, attach_log_file, detach_log_file
from host.loss_report import SeenEvents, missed_stop, report_after_loss
from host.plan import InjectionPlan, PlanError, clamp_to_device, load_plan
from host.pump import Consumer, ConsumerFailure, StreamPump
from host.recording import Recorder, device_setup_json, new_run_dir
from host.recording_sink import (
    DEFAULT_TAIL_S,
    MIN_FREE_BYTES,
    RecordingSink,
    close_recorder,
    free_space_problem,
    open_recorder,
)
from host.relief_notice import relief_notice
from host.run_metadata import add_arguments as add_metadata_arguments
from host.run_metadata import folder_label
from host.run_metadata import merge as merge_metadata
from host.settings import SettingsError, command_settings
from host.stops import StopRequests
from protocol import Event, Flags, NakCode, State, StopReason, StopSource, TelemetryBatch
from protocol.models import DeviceInfoRecord, kpa, ml, ml_min

if TYPE_CHECKING:
    from host.guard.worker import GuardWorker

log = logging.getLogger(__name__)

EXIT_COMPLETED = 0
EXIT_SAFETY_STOP = 3
EXIT_LINK = 4
EXIT_CODES_HELP = (
    "exit codes: 0 plan completed; 2 usage or plan error; 3 safety stop (reason printed); 4 link failure"
)
SAFE_STOP_TIMEOUT_S = 2.0
"""How long Ctrl-C waits for the STOP acknowledgement before giving up (the watchdog then stops)."""
ENDED = (State.STOPPED, State.DONE, State.FAULT)
MOVING = (State.ARMED, State.INJECTING, State.PAUSED)
"""States in which a failed recording stops the injection (a plan is loaded, the plunger may move)."""
SETTLE_TIMEOUT_S = 4.0
"""After a stop, how long the display waits to show the ended state, the relief over, before its
last frame: the relief gives up 3 s after the stop (SPEC §8.4), plus the brake and the link."""
RECORDING_FAILED = "recording failed"
MIN_FREE_MB = FiniteFloat("--min-free-mb", 0.0, 1e6, "MB")
STOP_SIGNALS = {signal.SIGINT: "ctrl-c", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
"""Signals that stop the injection as Ctrl-C does, and the origin each stop is recorded with."""


class _LinkLoss(asyncio.Event):
    """Set when the link is lost; `reason` is why (the first loss: later reconnect attempts have
    their own reasons, e.g. "opening /dev/pts/3", which say nothing about the loss)."""

    reason = ""

    def by(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
        self.set()


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
    p.add_argument(
        "--port", help="serial device or pyserial URL (pty, socket://host:port; default: the settings' port)"
    )
    p.add_argument("--config", help=CONFIG_HELP)
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
    add_time_scale(p)
    add_record_tail(p)
    p.add_argument(
        "--on-record-error",
        choices=("stop", "continue"),
        default="stop",
        help="a recording failure (disk full, read-only) during the injection: stop the injection "
        "(default), or continue unrecorded with a loud warning",
    )
    p.add_argument(
        "--min-free-mb",
        type=MIN_FREE_MB,
        default=MIN_FREE_BYTES / 1e6,
        metavar="MB",
        help="with --record, refuse to start with less free space than this "
        f"(default %(default).0f MB; {MIN_FREE_MB.allowed})",
    )
    add_metadata_arguments(p)
    add_guard_arguments(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    console = Console(stderr=False)
    try:
        settings, port = command_settings(args.config, args.port)
    except SettingsError as exc:
        console.print(f"[bold red]settings error[/]\n{exc}", highlight=False)
        return EXIT_USAGE
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        console.print(f"[bold red]plan error[/]\n{exc}", highlight=False)
        return EXIT_USAGE
    try:
        mixed_ago_s = _mixed_ago(args.mixed_ago, args.mixed_at, plan)
        plan = plan.model_copy(update={"metadata": merge_metadata(plan.metadata, args)})
        guard = guard_setup(args)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    options = LinkOptions.from_settings(settings, time_scale=args.time_scale)
    return asyncio.run(
        run_plan(
            port,
            plan,
            mixed_ago_s=mixed_ago_s,
            record_root=args.record,
            auto_resume_s=args.auto_resume,
            options=options,
            console=console,
            record=RecordPolicy(
                tail_s=args.record_tail,
                on_error=args.on_record_error,
                min_free_bytes=int(args.min_free_mb * 1e6),
            ),
            guard=guard,
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
    """What the display shows: the device as its latest telemetry sample, event or link change says
    it is (never a frame kept from before a pause or a stop)."""

    state: str = "CONNECTING"
    pressure_kpa: float = 0.0
    delivered_ml: float = 0.0
    """Cement delivered since ARM (SPEC §5.15): never falls during relief, unlike the plunger."""
    flow_ml_min: float = 0.0
    prompt: str = ""
    """The question the operator is asked now (increment pause), shown in the live view itself."""
    seen_state: State | int | None = None
    samples: int = 0
    quality: LinkQuality | None = None
    """Link quality since the run started (host.link_quality), refreshed with each batch."""
    guard: str | None = None
    """The fluoroscopic guard's state (WATCHING, BLIND(reason), STOPPED(rule)); None: no guard."""
    relief_active: bool = False
    """The device's post-stop relief runs (flag RELIEF_ACTIVE of the latest sample)."""
    relief: str | None = None
    """The relief ended at its travel limit with the line still pressurised (ALARM
    RELIEF_AT_LIMIT or RELIEF_INCOMPLETE): shown in the live view and repeated in the summary."""


class _Display(Consumer):
    """Keeps `_Live` current from every telemetry sample (each carries the state), event and link
    change."""

    name = "display"
    critical = True
    """It also tells `run` that the link is lost: without it nothing would end the wait."""

    def __init__(self, live: _Live, link_lost: _LinkLoss, ctl: DeviceClient) -> None:
        self.live = live
        self.link_lost = link_lost
        self.changed = asyncio.Event()
        self.seen = SeenEvents()
        """The events received: after a link loss, whether the device's stop still has to be read."""
        self._ctl = ctl
        self.counters_at_start = ctl.counters

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        if not len(batch.samples):
            return
        last = batch.samples[-1]
        live = self.live
        live.samples += len(batch.samples)
        live.quality = LinkQuality.of(self._ctl.counters, self.counters_at_start, live.samples)
        live.pressure_kpa = kpa(float(last["pressure_pa"]))
        live.delivered_ml = ml(float(last["delivered_nl"]))
        live.flow_ml_min = ml_min(float(last["flow_nl_s"]))
        live.relief_active = bool(int(last["flags"]) & Flags.RELIEF_ACTIVE)
        self._state(int(last["state"]))

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        self.seen.saw(event)
        self.live.relief_active = bool(event.flags & Flags.RELIEF_ACTIVE)
        notice = relief_notice(event)
        if notice is not None:
            self.live.relief = notice
        self._state(int(event.state))

    def on_link(self, change: LinkChange) -> None:
        if change.state in (LinkState.LOST, LinkState.FAILED):
            self.link_lost.by(change.reason)
            self.live.state = f"LINK {change.state.value.upper()} (last seen {self.live.state})"
            self.live.seen_state = None
            self.changed.set()

    def _state(self, value: int) -> None:
        self.live.state = _name(State, value)
        self.live.seen_state = value
        self.changed.set()

    async def settled(self, timeout_s: float) -> None:
        """Until the display shows an ended state (STOPPED, DONE, FAULT) with the plunger no longer
        moving forward and no relief running, or a lost link, at most `timeout_s`: the last frame
        after a stop must show the stop, not the injection before it, and the summary whether the
        relief left the line pressurised. Called only for a run that ended in a stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                live = self.live
                while not live.state.startswith("LINK") and (
                    live.seen_state not in ENDED or live.flow_ml_min > 0.0 or live.relief_active
                ):
                    self.changed.clear()
                    await self.changed.wait()


@dataclass(frozen=True)
class RecordPolicy:
    """How `run` records: the tail after the last stop, what a recording failure does, the free
    space START needs."""

    tail_s: float = DEFAULT_TAIL_S
    on_error: str = "stop"
    """"stop": a recording failure stops the injection (default); "continue": a loud warning, and
    the injection goes on unrecorded."""
    min_free_bytes: int = MIN_FREE_BYTES


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
    record: RecordPolicy | None = None,
    guard: GuardSetup | None = None,
) -> int:
    """Run one plan to its end; returns the exit code. `ask` reads an operator answer (default:
    input() in a worker thread). An `auto_resume_s` that is not a finite 0.1..3600 s is refused
    (ValueError) before the port is opened: a negative or NaN wait would skip the imaging pause.
    The link is closed on every way out, and closing the recording never raises past it."""
    if auto_resume_s is not None:
        AUTO_RESUME.check(auto_resume_s)
    console = console or Console()
    policy = record or RecordPolicy()
    if guard is not None:
        load_guard_modules()  # before the session: the import would stall its heartbeats
    try:
        ctl = await DeviceClient.connect(url, options)
    except CementguardError as exc:
        console.print(f"[bold red]link failure:[/] {exc}", highlight=False)
        return EXIT_LINK
    recorder: Recorder | None = None
    log_handler: logging.Handler | None = None
    interrupted = _Interrupted()
    loop = asyncio.get_running_loop()
    for sig, origin in STOP_SIGNALS.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.by, origin)
    code = EXIT_LINK
    try:
        try:
            info = ctl.device
            clamped, warnings = clamp_to_device(plan, info)
            for warning in warnings:
                console.print(f"[yellow]warning:[/] {warning}", highlight=False)
            sink: RecordingSink | None = None
            if record_root is not None:
                problem = free_space_problem(record_root, policy.min_free_bytes)
                if problem is not None:
                    console.print(f"[bold red]not started:[/] {problem}", highlight=False)
                    code = EXIT_USAGE
                    return code
                try:
                    recorder = await open_recorder(
                        new_run_dir(record_root, folder_label(plan.metadata, plan.name)),
                        clamped,
                        DeviceInfoRecord.from_message(info),
                        extra={
                            "port": url,
                            "mixed_ago_s_at_arm": mixed_ago_s,
                            "run_metadata": plan.metadata.record(),
                            "device_setup": device_setup_json(ctl.syringe, ctl.calibration),
                        },
                        counters_source=lambda: ctl.counters,
                    )
                except OSError as exc:
                    console.print(f"[bold red]cannot record:[/] {exc}", highlight=False)
                    code = EXIT_USAGE
                    return code
                log_handler = attach_log_file(recorder.path / LOG_FILE)
                sink = RecordingSink(recorder, policy.tail_s)
                console.print(f"recording to {recorder.path}", highlight=False)
                log.info("recording %s to %s", plan.name, recorder.path)
            stops = StopRequests()  # this command's own stops and those from other terminals
            async with serve_control(ctl, stops=stops):  # `cementguard stop/status/clear` from elsewhere
                console.print(f"stop from any terminal: cementguard stop --port {url}", highlight=False)
                code = await _inject(
                    ctl,
                    clamped,
                    mixed_ago_s,
                    sink,
                    policy,
                    auto_resume_s,
                    interrupted,
                    console,
                    ask,
                    stops,
                    guard,
                )
            return code
        except PlanError as exc:
            console.print(f"[bold red]plan error[/]\n{exc}", highlight=False)
            code = EXIT_USAGE
            return code
        finally:
            for sig in STOP_SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            if recorder is not None:
                failed = await close_recorder(recorder, "ok" if code == EXIT_COMPLETED else f"exit {code}")
                with contextlib.suppress(OSError):
                    if failed is not None:
                        console.print(f"[bold red]recording failed:[/] {failed}", highlight=False)
                    else:
                        console.print(f"recording saved: {recorder.path}", highlight=False)
            if log_handler is not None:
                detach_log_file(log_handler)
    finally:
        await ctl.close()


async def _inject(
    ctl: DeviceClient,
    plan: InjectionPlan,
    mixed_ago_s: float,
    sink: RecordingSink | None,
    policy: RecordPolicy,
    auto_resume_s: float | None,
    interrupted: _Interrupted,
    console: Console,
    ask: Callable[[str], str] | None,
    stops: StopRequests | None = None,
    guard: GuardSetup | None = None,
) -> int:
    live = _Live()
    if ctl.state is not None:  # the handshake said what the device is doing: show it before any sample
        live.state, live.seen_state = _name(State, ctl.state), ctl.state
    link_lost = _LinkLoss()
    display = _Display(live, link_lost, ctl)
    requests = stops if stops is not None else StopRequests()
    """Stops this command asks for (Ctrl-C, a stop at the prompt, a failed recording) and those
    asked through the control endpoint, matched to the STOP events so that the recording carries
    each stop's source, origin and latency."""

    def failed(failure: ConsumerFailure) -> None:
        with contextlib.suppress(OSError):
            console.print(f"[bold red]{failure}[/]", highlight=False)
        if failure.consumer is not sink:
            if failure.critical:  # the display watches the link: nothing could end the run any more
                interrupted.by(f"{failure.name} failed")
            return
        if policy.on_error == "continue":
            log.warning("the recording failed; the injection goes on UNRECORDED (--on-record-error continue)")
            with contextlib.suppress(OSError):
                console.print(
                    "[bold red reverse] WARNING: the recording failed; the injection goes on UNRECORDED "
                    "(--on-record-error continue) [/]",
                    highlight=False,
                )
        elif ctl.state in MOVING:
            log.error("the recording failed during the injection: stopping it (--on-record-error stop)")
            interrupted.by(RECORDING_FAILED)

    consumers: list[Consumer] = [display]
    if sink is not None:
        consumers.insert(0, sink)
    watcher = None
    if guard is not None:
        try:
            # in a thread: importing opencv and connecting to the source must not hold up heartbeats
            watcher = await asyncio.to_thread(_guard_worker, guard, ctl, requests, live, display, sink)
        except CementguardError as exc:
            console.print(f"[bold red]not started:[/] {exc}", highlight=False)
            return EXIT_USAGE
        consumers.append(watcher)
    async with StreamPump(ctl, consumers, on_failure=failed, stops=requests, name="run") as pump:
        with Live(_render(live, plan), console=console, refresh_per_second=4, transient=False) as view:
            refresher = pump.supervisor.spawn(_refresh(view, live, plan), "run: display refresh")
            try:
                if watcher is not None and guard is not None:
                    pump.supervisor.spawn(watcher.run(), "run: fluoroscopic guard", critical=True)
                    if not await watcher.watching(guard.ready_timeout_s):
                        console.print(
                            f"[bold red]not started:[/] the fluoroscopic guard is {watcher.status.label} "
                            f"after {guard.ready_timeout_s:g} s (--guard-ready-timeout)",
                            highlight=False,
                        )
                        return EXIT_USAGE
                code = await _drive(
                    ctl,
                    plan,
                    mixed_ago_s,
                    sink,
                    link_lost,
                    display.seen,
                    auto_resume_s,
                    interrupted,
                    view,
                    ask,
                    requests,
                    live,
                )
                if sink is not None and sink.failed is None and not link_lost.is_set():
                    await _keep_tail(sink, ctl, interrupted)
                if not link_lost.is_set() and code in (EXIT_COMPLETED, EXIT_SAFETY_STOP):
                    await display.settled(SETTLE_TIMEOUT_S)
            finally:
                refresher.cancel()
                if link_lost.is_set() and ctl.link_state is LinkState.CONNECTED and ctl.state is not None:
                    live.state = f"{_name(State, ctl.state)} (read after the reconnect)"
                view.update(_render(live, plan))
        with contextlib.suppress(OSError):
            console.print()  # the live view leaves the cursor at the end of its last line
            _summarise_link(console, LinkQuality.of(ctl.counters, display.counters_at_start, live.samples))
            if live.relief is not None:
                console.print(f"[bold red]warning:[/] {live.relief}", highlight=False)
        return code


def _guard_worker(
    setup: GuardSetup,
    ctl: DeviceClient,
    requests: StopRequests,
    live: _Live,
    display: _Display,
    sink: RecordingSink | None,
) -> GuardWorker:
    """The guard's worker on `setup`'s source (or a source per view with `--frames-ap`): its state
    goes to the status line (and the log); the sources are opened here, so a bad URL is refused
    before anything is armed. Imported here: opencv is loaded only by a run that watches frames."""

    def show(step: Any) -> None:
        label = step.status.label
        if step.changed:
            log.warning("fluoroscopic guard: %s", label)
        live.guard = label
        display.changed.set()

    # the recording keeps the guard's frames and decisions (host/guard_feed.py, docs/fluoroscopy.md)
    from host.guard_feed import GuardRecording, open_guard_worker

    recording = GuardRecording(sink.recorder.path, lambda: sink.latest_t_us) if sink is not None else None
    live.guard = "BLIND(starting)"
    try:
        return open_guard_worker(
            setup,
            ctl,
            requests,
            on_frame=recording,
            on_close=recording.close if recording is not None else None,
            on_step=show,
        )
    except BaseException:
        if recording is not None:
            recording.close()
        raise


async def _keep_tail(sink: RecordingSink, ctl: DeviceClient, interrupted: _Interrupted) -> None:
    """The recording's tail after the stop (relief, after-flow), shown live meanwhile; a quit signal
    during the tail ends it at once (the STOP was sent before)."""
    again = _Interrupted()
    loop = asyncio.get_running_loop()
    for sig, origin in STOP_SIGNALS.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, again.by, origin)
    tail = asyncio.ensure_future(sink.keep_tail(ctl.link.settings.time_scale))
    quit_ = asyncio.ensure_future(again.wait())
    try:
        await asyncio.wait({tail, quit_}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (tail, quit_):
            task.cancel()
        for sig, origin in STOP_SIGNALS.items():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, interrupted.by, origin)


async def _drive(
    ctl: DeviceClient,
    plan: InjectionPlan,
    mixed_ago_s: float,
    sink: RecordingSink | None,
    link_lost: _LinkLoss,
    seen: SeenEvents,
    auto_resume_s: float | None,
    interrupted: _Interrupted,
    view: Live,
    ask: Callable[[str], str] | None,
    requests: StopRequests,
    live: _Live,
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
                return await _link_failure(ctl, link_lost.reason, seen, sink, console)
            assert isinstance(event, PlanStop)
            reason = _name(StopReason, event.reason)
            at = f"at {_event_pressure(event)}, {event.delivered_nl / 1e6:.3f} mL delivered"
            if event.event_lost:
                _record_lost_stop(ctl, event, sink)
                console.print(
                    f"[yellow]note:[/] the {reason} event was lost on the line; "
                    f"read from the device's STATUS (state {_name(State, event.state)})",
                    highlight=False,
                )
            if event.reason == StopReason.VOLUME_LIMIT or event.state == State.DONE:
                console.print(f"[bold green]plan completed[/]: {reason} {at}", highlight=False)
                return EXIT_COMPLETED
            if event.reason == StopReason.INCREMENT_DONE:
                answer = await _answer_pause(
                    ctl, event, auto_resume_s, interrupted, link_lost, view, ask, live
                )
                if answer == "lost":
                    return await _link_failure(ctl, link_lost.reason, seen, sink, console)
                if answer == "stop":
                    origin = interrupted.origin if interrupted.is_set() else "operator prompt"
                    return await _safe_stop(ctl, console, requests, origin)
                continue
            source = _name(StopSource, event.source)
            log.warning("safety stop: %s (source %s) %s", reason, source, at)
            console.print(f"[bold red]safety stop: {reason}[/] (source {source}) {at}", highlight=False)
            return EXIT_SAFETY_STOP
    except CommandRefused as exc:
        if exc.code == NakCode.NO_SESSION:  # the device's watchdog closed the session: the link failed
            return await _link_failure(ctl, str(exc), seen, sink, console)
        log.warning("refused: %s", exc)
        console.print(f"[bold red]refused:[/] {exc}", highlight=False)
        if ctl.state in ENDED:  # a stop latched meanwhile (its event may have been lost): say which
            await _report_latched(ctl, seen, sink, console)
            return EXIT_SAFETY_STOP
        return EXIT_USAGE
    except LinkLost as exc:
        return await _link_failure(ctl, link_lost.reason or exc.reason, seen, sink, console)
    except StatusUnavailable as exc:  # the line is too poor to read the device back: nothing started
        console.print(f"[bold red]link failure:[/] {exc}", highlight=False)
        return EXIT_LINK


async def _report_latched(
    ctl: DeviceClient, seen: SeenEvents, sink: RecordingSink | None, console: Console
) -> None:
    """A command was refused because the device had latched a stop (RESUME after a stop during the
    imaging pause): re-read STATUS and say which stop, as if its event had come, and record it when
    its event never reached the host (damaged on the line). The operator is never left with only
    "STOP_LATCHED"."""
    try:
        status = await ctl.get_status()
    except CementguardError as exc:
        console.print(f"[bold red]device state unknown:[/] {exc}", highlight=False)
        return
    stop = PlanStop.of_status(status)
    reason, source = _name(StopReason, stop.reason), _name(StopSource, stop.source)
    at = f"at {_event_pressure(stop)}, {stop.delivered_nl / 1e6:.3f} mL delivered"
    log.warning("safety stop: %s (source %s) %s", reason, source, at)
    console.print(f"[bold red]safety stop: {reason}[/] (source {source}) {at}", highlight=False)
    missed = missed_stop(status, seen)
    if missed is not None and sink is not None and sink.failed is None:
        event, notes = missed
        console.print(f"[yellow]note:[/] the {reason} event never reached the host; read from STATUS")
        try:
            sink.on_event(event, {**notes, "read_from": "STATUS"}, None)
        except Exception as exc:  # reported like any recording failure
            log.error("recording the stop read from STATUS failed: %s", exc)


async def _link_failure(
    ctl: DeviceClient, reason: str, seen: SeenEvents, sink: RecordingSink | None, console: Console
) -> int:
    """Say why the link failed, then what the device did (read after the link's own reconnect)."""
    console.print(f"[bold red]link lost:[/] {reason}", highlight=False)

    def record(event: Event, notes: dict[str, Any]) -> None:
        if sink is None or sink.failed is not None:
            return
        try:
            sink.on_event(event, notes, None)
        except Exception as exc:  # reported like any recording failure; the run goes on to its end
            log.error("recording the stop read after the reconnect failed: %s", exc)

    await report_after_loss(ctl, seen=seen, record=record, console=console)
    return EXIT_LINK


async def _next_stop(
    ctl: DeviceClient, link_lost: asyncio.Event, interrupted: asyncio.Event
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


def _record_lost_stop(ctl: DeviceClient, stop: PlanStop, sink: RecordingSink | None) -> None:
    """A stop read from STATUS goes into the recording too, marked as such: the recording must never
    lack the stop that ended a run because one frame was damaged."""
    if sink is None or sink.failed is not None:
        return
    status = ctl.status
    event = stop.as_event(status.event_count if status is not None else 0)
    try:
        sink.on_event(event, {"read_from": "STATUS", "note": "the STOP event was lost on the line"}, None)
    except Exception as exc:  # reported like any recording failure; the run goes on to its end
        log.error("recording the stop read from STATUS failed: %s", exc)


async def _answer_pause(
    ctl: DeviceClient,
    event: PlanStop,
    auto_resume_s: float | None,
    interrupted: asyncio.Event,
    link_lost: asyncio.Event,
    view: Live,
    ask: Callable[[str], str] | None,
    live: _Live,
) -> str:
    """ "resume", "stop" or "lost". The plunger stays still meanwhile: the controller is PAUSED, and
    a link lost during the pause ends the wait at once (the controller latches HOST_LOST). The live
    view goes on showing the device meanwhile (relief, pressure decay, a stop), with the question in
    it: a frozen frame from before the pause would show a pump that is no longer doing that."""
    console = view.console
    console.print(
        f"increment done at {event.delivered_nl / 1e6:.3f} mL delivered, {_event_pressure(event)}: "
        "check the imaging",
        highlight=False,
    )
    waits: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(interrupted.wait()),
        asyncio.ensure_future(link_lost.wait()),
    ]
    answer_task: asyncio.Future[str]
    if auto_resume_s is None:
        reader = ask or input
        live.prompt = PAUSE_PROMPT
        answer_task = _read_in_daemon_thread(reader, PAUSE_PROMPT)
    else:
        live.prompt = f"resuming in {auto_resume_s:g} s (--auto-resume)"
        answer_task = asyncio.ensure_future(asyncio.sleep(auto_resume_s, result=""))
    pending: list[asyncio.Future[Any]] = [answer_task, *waits]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        live.prompt = ""
        for task in waits:
            task.cancel()
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


PAUSE_PROMPT = "resume? [Enter = resume, s = stop] "


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


async def _safe_stop(ctl: DeviceClient, console: Console, requests: StopRequests, origin: str) -> int:
    """STOP, then tell the operator and the log. STOP goes first: the terminal may block (paused with
    Ctrl-S, or gone after SIGHUP) and the log file lives on the recording's disk, which may stall;
    neither may delay the STOP (tests/host/test_run_stop_first.py)."""
    requests.requested(StopSource.OPERATOR, f"cementguard run {origin}")
    try:
        ack = await asyncio.wait_for(ctl.stop(StopSource.OPERATOR), timeout=SAFE_STOP_TIMEOUT_S)
    except (TimeoutError, CementguardError) as exc:
        log.error("STOP (%s) not acknowledged: %s", origin, exc or "timeout")
        with contextlib.suppress(OSError):
            console.print(
                f"[bold red]STOP not acknowledged[/] ({exc or 'timeout'}): the controller's watchdog stops "
                "the pump when this host goes away",
                highlight=False,
            )
        return EXIT_LINK
    log.info("STOP (%s) acknowledged: state %s", origin, _name(State, ack.state))
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        if ack.state == State.DONE:  # STOP leaves DONE as it is: the device had finished the plan
            console.print("[bold green]plan completed[/] by the device before the stop", highlight=False)
        elif origin == RECORDING_FAILED:
            console.print("[bold red]injection stopped: the recording failed[/]", highlight=False)
        else:
            console.print("[bold]stopped by the operator[/]", highlight=False)
    return EXIT_COMPLETED if ack.state == State.DONE else EXIT_SAFETY_STOP


async def _refresh(view: Live, live: _Live, plan: InjectionPlan) -> None:
    while True:
        await asyncio.sleep(0.25)  # display refresh cadence, not synchronisation
        view.update(_render(live, plan))


def _summarise_link(console: Console, quality: LinkQuality) -> None:
    """The run summary's link line; a warning when the link was poor (the plan may still have
    completed: the controller does not need the telemetry, the operator and the recording do)."""
    warning = quality.warning()
    if warning is not None:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    else:
        console.print(f"link: {quality.line()}", highlight=False)


def _render(live: _Live, plan: InjectionPlan) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold")
    table.add_column()
    done = min(1.0, live.delivered_ml / plan.volume_limit_ml) if plan.volume_limit_ml else 0.0
    bar = "\u2588" * round(done * 30) + "\u2591" * (30 - round(done * 30))
    table.add_row("state", live.state)
    table.add_row("delivered", f"{bar} {live.delivered_ml:.3f} / {plan.volume_limit_ml:.3f} mL")
    soft = plan.pressure.soft_limit_kpa
    hard = plan.pressure.hard_limit_kpa
    table.add_row("pressure", f"{live.pressure_kpa:7.0f} kPa  (soft {soft:.0f}, hard {hard:.0f})")
    table.add_row("flow", f"{live.flow_ml_min:7.2f} mL/min  (plan {plan.flow_ml_min:.2f})")
    if live.guard is not None:
        style = "green" if live.guard == "WATCHING" else "bold red"
        table.add_row("guard", Text(live.guard, style))
    if live.quality is not None:
        poor = live.quality.poor
        text = live.quality.short()  # one line at 80 columns; the summary has the counts
        table.add_row("link", Text(text, "bold red" if poor else ""))
    if live.relief is not None:
        table.add_row("relief", Text(live.relief, "bold red"))
    if live.prompt:
        table.add_row("answer", live.prompt)
    return table


def _name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)


def _event_pressure(event: PlanStop) -> str:
    """The pressure at an event, or that there is none: a SENSOR_FAULT event's reading is stale (SPEC
    §5.12), and a dead sensor is never shown as a pressure."""
    if event.flags & Flags.SENSOR_FAULT:
        return "pressure invalid (sensor fault)"
    return f"{event.pressure_pa / 1000:.0f} kPa"
