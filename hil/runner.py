"""Play one scenario through the whole stack and measure what happened.

host.client.DeviceClient <-> `cementguard sim --pty --trace --scenario <plant file> --time-scale X` (a
subprocess with its own pty), or a real rig at `--port`. The runner arms and starts the plan, performs
the host-side events (silence, link cut, MQTT stop, operator / fluoroscopy key), answers increment
pauses after the imaging time, records telemetry and events (a host.recording recording per scenario),
and measures: detection latency, after-flow, delivered volume, peak pressure, final state, false stops.

Clocks. Device time is the simulator's simulated clock (telemetry `t_us`, event `t_us`, the `--trace`
lines); it is the same whatever the time scale, so detection latencies in device time are honest at
any scale as long as the simulator keeps its tick. Stops the host itself sends (operator, fluoroscopy
key, MQTT) are timed on the host's wall clock, from the request to the STOP event read off the port,
as `host.stops` does. Teardown (simulator killed, port closed, recording closed) always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.guard import FeedCut, FramePaths, simulator_args, truth_onsets
from hil.outcome import WATCHDOG_S, Measured, Outcome, harness_lag, judge
from hil.scenario import PLANT_EVENT_KINDS, Scenario
from hil.simulator import Simulator, Trace, write_plant_file
from host.client import DeviceClient, LinkOptions, LinkState
from host.control import serve_control
from host.errors import CementguardError, CommandRefused
from host.frames import FrameSource, open_frame_source
from host.guard import Guard, GuardConfig
from host.guard.biplane import BiplaneGuard
from host.guard.worker import GuardWorker
from host.guard_feed import ClosingSource, GuardRecording, judged_handler
from host.link_quality import LinkQuality
from host.logs import LOG_FILE, attach_log_file, detach_log_file
from host.plan import clamp_to_device
from host.plan_stop import wait_for_plan_stop
from host.pump import Consumer, ConsumerFailure, StreamPump
from host.recording import Recorder, device_setup_json
from host.recording_sink import RecordingSink, close_recorder, open_recorder
from protocol import Event, EventKind, NakCode, State, StopDetail, StopReason, StopSource, TelemetryBatch
from protocol.models import DeviceInfoRecord

HOST_STOP_KINDS = {"operator_stop": StopSource.OPERATOR, "fluoro_key_stop": StopSource.FLUORO_OPERATOR}
HOST_CLOCK_KINDS = frozenset({"operator_stop", "fluoro_key_stop", "mqtt_stop"})
"""Trigger events whose latency is timed on the host's wall clock (the host sends the stop)."""
FINAL_STATUS_TIMEOUT_S = 10.0
PREPARE_TIMEOUT_S = 10.0
HEARTBEAT_S = 0.005
HOST_SILENCE_FACTOR = 4.0
DEFAULT_TELEMETRY_DIVIDER = 2
"""500 Hz telemetry: a tenth of the host's decode load at 10x, ample for plots and peaks."""


@dataclass
class RunOptions:
    time_scale: float = 5.0
    port: str | None = None
    """A real rig's port URL; None: a simulator per scenario."""
    report_dir: Path = Path("build/hil/report")
    telemetry_divider: int = DEFAULT_TELEMETRY_DIVIDER


class _HilRecording(RecordingSink):
    """The scenario's recording. Every STOP event carries its source's name (the HIL report reads
    it); the tail is the scenario's own `settle_s`, waited by the driver."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder, tail_s=0.0)

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        marks = {"stop_source": _name(StopSource, event.source)} if event.kind == EventKind.STOP else {}
        # the pump's notes are not the runner's to keep (they would change every recording); a stop
        # the runner read from STATUS says so (`read_from`, `note`)
        kept = {
            k: v
            for k, v in notes.items()
            if k in ("read_from", "note", "image_rule") or k.startswith("guard_")
        }
        super().on_event(event, {**kept, **marks}, received_at)


def _name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)


def scenario_parameters(scenario: Scenario) -> dict[str, str]:
    """The scenario's parameters as flat name -> text, for JUnit properties and the report."""
    out: dict[str, str] = {"seed": str(scenario.seed)}
    for key, value in scenario.plant.model_dump(exclude={"events", "seed"}).items():
        if value is not None:
            out[f"plant.{key}"] = str(value)
    plan = scenario.plan
    out["plan.mode"] = plan.mode
    out["plan.flow_ml_min"] = f"{plan.flow_ml_min:g}"
    out["plan.volume_limit_ml"] = f"{plan.volume_limit_ml:g}"
    if plan.increment_ml:
        out["plan.increment_ml"] = f"{plan.increment_ml:g}"
    out["plan.soft_limit_kpa"] = f"{plan.pressure.soft_limit_kpa:g}"
    out["plan.hard_limit_kpa"] = f"{plan.pressure.hard_limit_kpa:g}"
    out["plan.relief"] = f"{plan.relief.enabled} ({plan.relief.relief_kpa:g} kPa)"
    out["plan.working_time_s"] = f"{plan.cement.working_time_s:g}"
    out["plan.viscosity_pa_s"] = f"{plan.cement.viscosity_min_pa_s:g}-{plan.cement.viscosity_max_pa_s:g}"
    for i, ev in enumerate(scenario.events):
        out[f"event.{i}"] = " ".join(f"{k}={v}" for k, v in ev.model_dump(exclude_none=True).items())
    return out


def skip_reason(scenario: Scenario, port: str | None) -> str | None:
    """Why a scenario cannot run on a real rig (events only the simulator can inject), or None."""
    if port is None:
        return None
    kinds = sorted({e.kind for e in scenario.events if e.kind in PLANT_EVENT_KINDS})
    if kinds:
        return (
            f"needs the simulator: plant event(s) {', '.join(kinds)} cannot be injected into the rig at "
            f"{port}"
        )
    return None


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------


class _Run:
    """State of one scenario run on the host side."""

    def __init__(
        self, scenario: Scenario, options: RunOptions, scale: float, url: str, sim: Simulator | None
    ):
        self.s = scenario
        self.options = options
        self.scale = scale
        self.url = url
        self.sim = sim
        self.m = Measured()
        self.samples: list[np.ndarray[Any, Any]] = []
        self.last_t_us: int | None = None
        self.last_delivered_nl = 0
        self.last_rx = 0.0
        self.telemetry_tick = asyncio.Event()
        self.stops: asyncio.Queue[tuple[Event, float] | str] = asyncio.Queue()
        self.host_onsets: dict[str, tuple[float, float]] = {}
        """kind -> (device s estimate, host perf_counter) of host-side events performed."""
        self.stop_events: list[tuple[Event, float]] = []
        self.cut = False
        self.recorder: Recorder | None = None
        self.recording: _HilRecording | None = None
        self.seen_stops: set[int] = set()
        """Event indexes of the STOP events the driver has taken (from the queue or reconciled)."""
        self.failure: str | None = None
        """A consumer or worker of the stream pump that failed (the scenario then errors)."""
        self.frames: FramePaths | None = None
        self.guard: GuardWorker | None = None
        self.feed: FeedCut | None = None
        self.truth_onsets: list[tuple[float, str]] = []
        """(device s, what) of the frame truth's onsets: the crossing, each leak's first cement."""

    def device_now_s(self) -> float:
        """Device time now, from the latest telemetry sample and the wall time since it was read."""
        if self.last_t_us is None:
            return 0.0
        return self.last_t_us / 1e6 + (time.perf_counter() - self.last_rx) * self.scale

    async def watch_loop_lag(self, period_s: float = 0.005) -> None:
        """How late this event loop runs a timer: a starved host misses heartbeats (harness health)."""
        worst = 0.0
        while True:
            t = time.perf_counter()
            await asyncio.sleep(period_s)
            lag = time.perf_counter() - t - period_s
            if lag > worst:
                worst = lag
                self.m.host_max_lag_ms = round(worst * 1000.0, 1)
                self.m.host_max_lag_at_s = round(self.device_now_s(), 3)

    def failed(self, failure: ConsumerFailure) -> None:
        """The stream pump's one policy: a failed consumer (the recorder, the judge's own feed) or
        worker ends the scenario as an error at once, naming it; the harness must not judge a run
        it did not fully see or record."""
        if self.failure is None:
            self.failure = str(failure)
        self.stops.put_nowait("failed")

    async def _wait_until(self, ev: Any) -> None:
        while True:
            if ev.at_s is None and ev.at_volume_ml is None:
                return
            if ev.at_s is not None and self.last_t_us is not None and self.device_now_s() >= ev.at_s:
                return
            if ev.at_volume_ml is not None and self.last_delivered_nl >= ev.at_volume_ml * 1e6:
                return
            self.telemetry_tick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.telemetry_tick.wait(), 0.5)

    async def host_event(self, ctl: DeviceClient, ev: Any, mqtt: Any) -> None:
        await self._wait_until(ev)
        onset = (self.device_now_s(), time.perf_counter())
        self.host_onsets.setdefault(ev.kind, onset)
        if ev.kind == "host_silence":
            ctl.link.suspend_heartbeats()
        elif ev.kind == "link_cut":
            self.cut = True
            await ctl.close()
            await self.stops.put("cut")
        elif ev.kind in HOST_STOP_KINDS:
            with contextlib.suppress(CementguardError):
                await ctl.stop(HOST_STOP_KINDS[ev.kind])
        elif ev.kind == "mqtt_stop":
            await mqtt.publish_stop()


class _JudgeFeed(Consumer):
    """What the judge measures, fed by the stream pump: samples, the latest device time and volume,
    and the stop events (to the driver's queue, with the host time they were read)."""

    name = "hil judge"
    critical = True

    def __init__(self, run: _Run) -> None:
        self.run = run

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        run, s = self.run, batch.samples
        if len(s):
            run.samples.append(s.copy())
            run.last_t_us = int(s["t_us"][-1])
            run.last_delivered_nl = int(s["delivered_nl"][-1])
            run.last_rx = received_at or time.perf_counter()
        run.telemetry_tick.set()

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        if event.kind == EventKind.STOP:
            t = received_at or time.perf_counter()
            self.run.stop_events.append((event, t))
            self.run.stops.put_nowait((event, t))


async def run_scenario(scenario: Scenario, path: Path, options: RunOptions) -> Outcome:
    """Run one scenario (simulator or rig) and judge it. Never raises for a scenario's own failure:
    an exception inside becomes status 'error' with its message.

    A run that failed while the harness could not keep its clock (`harness_lag`: the host's event loop
    or the simulator's tick fell behind by more than 40 % of the scaled watchdog, e.g. on a machine
    saturated by other work) did not test what it meant to: it is run once more at time scale 1, and
    that run's verdict stands, with the first attempt's reason in `rerun`. Failures with a healthy
    harness are never rerun.
    """
    scale = scenario.time_scale or options.time_scale
    if options.port is not None:
        scale = 1.0
    outcome = await _attempt(scenario, path, options, scale)
    lag = harness_lag(outcome.measured, scale)
    if outcome.status in ("failed", "error") and options.port is None and scale > 1.0 and lag:
        first = outcome
        outcome = await _attempt(scenario, path, options, 1.0)
        outcome.rerun = f"rerun at time scale 1: at {scale:g} {lag}; first attempt: {first.message}"
        outcome.measured.wall_s = round(outcome.measured.wall_s + first.measured.wall_s, 3)
    return outcome


async def _attempt(scenario: Scenario, path: Path, options: RunOptions, scale: float) -> Outcome:
    outcome = Outcome(
        scenario.name,
        os.fspath(path),
        "error",
        time_scale=scale,
        port=options.port or "simulator pty",
        parameters=scenario_parameters(scenario),
        description=scenario.description,
    )
    reason = skip_reason(scenario, options.port)
    if reason is not None:
        outcome.status = "skipped"
        outcome.message = reason
        return outcome
    t0 = time.perf_counter()
    out_dir = options.report_dir / scenario.name
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a recording directory holds exactly one run
    out_dir.mkdir(parents=True)
    sim: Simulator | None = None
    run: _Run | None = None
    session_closed = False
    frames = FramePaths(out_dir) if scenario.guard is not None and options.port is None else None
    try:
        if options.port is None:
            plant_file = write_plant_file(scenario, out_dir / "plant.toml")
            extra = simulator_args(scenario.guard, frames) if scenario.guard and frames else None
            sim = Simulator(plant_file, scenario, scale, extra)
            url = await sim.start()
        else:
            url = options.port
        run = _Run(scenario, options, scale, url, sim)
        run.frames = frames
        await _drive(run, out_dir)
        outcome.recording = os.fspath(out_dir / "recording")
    except Exception as exc:  # the scenario errored: reported, never hides the teardown
        outcome.message = f"{type(exc).__name__}: {exc}"
        session_closed = isinstance(exc, CommandRefused) and exc.code == NakCode.NO_SESSION
    finally:
        if sim is not None:
            await sim.stop()
        if frames is not None:
            frames.cleanup()
    if run is not None:
        outcome.measured = run.m
    outcome.measured.runner_session_closed = session_closed
    if run is not None:
        if sim is not None:
            _measure_trace(run, sim.trace)
        if frames is not None:
            run.truth_onsets = truth_onsets(frames.truth)
        _measure_host(run)
        if not outcome.message:
            failures = judge(scenario, run.m, options.port is not None)
            outcome.status = "failed" if failures else "passed"
            outcome.message = "\n".join(failures)
    outcome.measured.wall_s = round(time.perf_counter() - t0, 3)
    return outcome


async def _drive(run: _Run, out_dir: Path) -> None:
    s, scale = run.s, run.scale
    # Heartbeats every 5 ms of wall time (at most a fifth of the scaled watchdog): a simulator that
    # fell behind catches up in a burst of ticks, and the host's frames must keep pace with it. The
    # host gives a silent device 4 watchdogs before dropping the port: safety is the device's job.
    options = LinkOptions(
        time_scale=scale,
        heartbeat_period_s=min(HEARTBEAT_S, WATCHDOG_S / scale / 5),
        silence_factor=HOST_SILENCE_FACTOR,
    )
    mqtt_cm: Any = contextlib.nullcontext()
    if any(e.kind == "mqtt_stop" for e in s.events):
        from hil.mqtt_stop import MqttStopper

        mqtt_cm = MqttStopper(out_dir)
    async with mqtt_cm as mqtt:
        ctl = await DeviceClient.connect(run.url, options)
        tasks: list[asyncio.Task[Any]] = []
        pump: StreamPump | None = None
        log_file: logging.Handler | None = None
        control = serve_control(ctl)  # `cementguard stop/status/clear` from another terminal
        await control.__aenter__()
        try:
            if mqtt is not None:
                await mqtt.attach(ctl)
            info = ctl.device
            plan, _warnings = clamp_to_device(s.plan, info)
            run.recorder = await open_recorder(
                out_dir / "recording",
                plan,
                DeviceInfoRecord.from_message(info),
                extra={
                    "scenario": s.name,
                    "port": run.url,
                    "time_scale": scale,
                    "device_setup": device_setup_json(ctl.syringe, ctl.calibration),
                },
                counters_source=lambda: ctl.counters,
            )
            log_file = attach_log_file(run.recorder.path / LOG_FILE)
            run.recording = _HilRecording(run.recorder)
            pump = StreamPump(ctl, [_JudgeFeed(run), run.recording], on_failure=run.failed, name="hil")
            await pump.__aenter__()
            pump.supervisor.spawn(run.watch_loop_lag(), "hil: loop lag")
            await ctl.set_telemetry(run.options.telemetry_divider, 20)
            await _prepare_device(ctl)
            if run.frames is not None:
                await _start_guard(run, ctl, pump, s.guard.views if s.guard is not None else "lateral")
            status = await ctl.get_status()
            sim_age = s.plant.mixed_ago_s + (status.t_us / 1e6 if run.sim is not None else 0.0)
            await ctl.arm(plan, mixed_ago_s=sim_age)
            try:
                await ctl.start()
            except CommandRefused as exc:
                run.m.refused = _name(NakCode, exc.code)
                await _final(run, ctl, options)
                return
            start_perf = time.perf_counter()
            if run.feed is not None and s.guard is not None and s.guard.feed_lost_at_s is not None:
                start_s = run.device_now_s()
                pump.supervisor.spawn(_cut_feed(run, start_s + s.guard.feed_lost_at_s), "hil: feed cut")
            for ev in s.host_events:  # supervised: a host event that fails errors the scenario
                pump.supervisor.spawn(run.host_event(ctl, ev, mqtt), f"hil: host event {ev.kind}")
            deadline = start_perf + s.max_duration_s / scale
            pending: tuple[Event, float] | str | None = None
            while True:
                left = deadline - time.perf_counter()
                if pending is not None:
                    item, pending = pending, None
                elif left <= 0:
                    run.m.timed_out = True
                    break
                else:
                    try:
                        item = await asyncio.wait_for(_next_stop(run, ctl), left)
                    except TimeoutError:
                        run.m.timed_out = True
                        break
                if item == "failed":
                    raise RuntimeError(f"the harness lost part of the run: {run.failure}")
                if item == "cut":
                    if run.sim is not None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(run.sim.trace.stop_seen.wait(), 5.0)
                    break
                assert not isinstance(item, str)
                event = item[0]
                if event.reason == StopReason.INCREMENT_DONE and event.state == State.PAUSED:
                    run.m.increments_done += 1
                    if not s.resume_increments:
                        break
                    # The imaging pause, in device time. A stop during it (a fault while PAUSED, a
                    # cut link) ends the run instead of the RESUME.
                    with contextlib.suppress(TimeoutError):
                        pending = await asyncio.wait_for(_queued_stop(run), s.resume_after_s / scale)
                    if pending is not None:
                        continue
                    try:
                        await ctl.resume()
                    except CommandRefused as exc:
                        run.m.refused = _name(NakCode, exc.code)
                        break
                    except CementguardError:
                        pass  # a stop raced the resume: the next STOP event tells
                    continue
                break
            await asyncio.sleep(s.settle_s / scale)  # relief and after-flow, in device time
            await _final(run, ctl, options)
        finally:
            try:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if pump is not None:
                    await pump.aclose()
                if run.recorder is not None:
                    failed = await close_recorder(run.recorder)
                    if failed is not None and run.failure is None:
                        run.failure = f"recording failed on close: {failed}"
                await control.__aexit__(None, None, None)
            finally:
                if log_file is not None:
                    detach_log_file(log_file)
                await ctl.close()  # always, whatever failed above
            if run.failure is not None:
                raise RuntimeError(f"the harness lost part of the run: {run.failure}")


GUARD_READY_TIMEOUT_S = 60.0
"""Wall seconds the runner waits for the guard to learn its baseline before START."""


async def _start_guard(run: _Run, ctl: DeviceClient, pump: StreamPump, views: str = "lateral") -> None:
    """The guard on the simulator's frames, as a critical consumer of the pump; returns once it is
    watching (START must never go out to a blind guard)."""
    assert run.frames is not None
    run.feed = FeedCut(open_frame_source(run.frames.url))
    guard = BiplaneGuard(GuardConfig()) if views == "both" else Guard(GuardConfig())
    # the recording keeps the guard's frames and decisions as `cementguard run` does (decimated,
    # bounded, host/frame_recording.py), so `replay` and `report` show the frames at each stop
    source: FrameSource = run.feed
    on_judged = None
    if run.recorder is not None:
        recording = GuardRecording(run.recorder.path, lambda: run.last_t_us)
        source = ClosingSource(run.feed, recording.close)
        on_judged = judged_handler(lambda: None, lambda _s, _l: None, lambda: run.guard, recording)
    run.guard = GuardWorker(guard, source, ctl, pump.stops, on_judged=on_judged, on_failure=run.failed)
    pump.add(run.guard)
    pump.supervisor.spawn(run.guard.run(), "hil: fluoroscopic guard", critical=True)
    if not await run.guard.watching(GUARD_READY_TIMEOUT_S):
        raise RuntimeError(
            f"the guard was not watching after {GUARD_READY_TIMEOUT_S:g} s: {run.guard.status.label}"
        )


async def _cut_feed(run: _Run, at_s: float) -> None:
    while run.device_now_s() < at_s:
        run.telemetry_tick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.telemetry_tick.wait(), 0.5)
    run.host_onsets.setdefault("feed_lost", (run.device_now_s(), time.perf_counter()))
    assert run.feed is not None
    run.feed.cut()


async def _next_stop(run: _Run, ctl: DeviceClient) -> tuple[Event, float] | str:
    """The plan's next stop while the device injects: never an event alone (issue 13 item 2).

    The STOP event from the driver's queue, or, when that frame was damaged on the line, the stop
    the device's state and STATUS show (`host.plan_stop.wait_for_plan_stop`, the reconciliation
    `run` uses). A stop read from STATUS goes into the recording and the judge's stop list as an
    EVENT-shaped record marked `read_from: STATUS`; a STOP event taken once is never taken again
    (the reconciliation may see it before the queue does). "cut" and "failed" come from the queue."""
    while True:
        queued = asyncio.ensure_future(run.stops.get())
        reconciled = asyncio.ensure_future(wait_for_plan_stop(ctl))
        try:
            done, _ = await asyncio.wait({queued, reconciled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reconciled.cancel()
            if not queued.done():
                queued.cancel()  # a cancelled Queue.get takes nothing from the queue
            with contextlib.suppress(asyncio.CancelledError, CementguardError):
                await reconciled  # its LinkLost after a cut: the queue says "cut"
        if queued in done:
            item = queued.result()
            if isinstance(item, str):
                return item
            if item[0].event_index in run.seen_stops:
                continue  # already taken through the reconciliation
            run.seen_stops.add(item[0].event_index)
            return item
        if reconciled.cancelled() or reconciled.exception() is not None:
            return await _queued_stop(run)  # the link is gone: "cut", "failed", or the deadline
        stop = reconciled.result()
        now = time.perf_counter()
        if stop.event is not None:
            if stop.event.event_index in run.seen_stops:
                continue
            run.seen_stops.add(stop.event.event_index)
            return stop.event, now
        status = ctl.status
        event = stop.as_event(status.event_count if status is not None else 0)
        if event.event_index in run.seen_stops:
            # the device still shows a stop the driver has taken (a RESUME that failed on the line):
            # nothing new to reconcile; what comes next comes through the queue (or the deadline)
            return await _queued_stop(run)
        run.seen_stops.add(event.event_index)
        run.m.stops_read_from_status += 1
        run.stop_events.append((event, now))
        if run.recording is not None:
            run.recording.on_event(
                event, {"read_from": "STATUS", "note": "the STOP event was lost on the line"}, None
            )
        return event, now


async def _queued_stop(run: _Run) -> tuple[Event, float] | str:
    """The next item of the driver's queue that is not a STOP event taken already."""
    while True:
        item = await run.stops.get()
        if isinstance(item, str):
            return item
        if item[0].event_index not in run.seen_stops:
            run.seen_stops.add(item[0].event_index)
            return item


async def _prepare_device(ctl: DeviceClient) -> None:
    """Bring a device left latched by the previous scenario (a real rig) back to IDLE: STOP if it
    holds a plan, then CLEAR, retried while relief still runs (BUSY). A fresh simulator is IDLE."""
    state = (await ctl.get_status()).state
    if state == State.IDLE:
        return
    if state not in (State.STOPPED, State.DONE, State.FAULT):
        # a plan, a movement (PRIMING .. HOMING) or a state this host does not know: stop it first
        await ctl.stop(StopSource.OPERATOR)
    deadline = time.perf_counter() + PREPARE_TIMEOUT_S
    while True:
        try:
            await ctl.clear()
            return
        except CommandRefused as exc:
            if exc.code != NakCode.BUSY or time.perf_counter() > deadline:
                raise
        await asyncio.sleep(0.05)  # relief is still backing off; CLEAR is refused until it ends


async def _final(run: _Run, ctl: DeviceClient, options: LinkOptions) -> None:
    """The final STATUS: on the open session, after a reconnect, or from a new connection (cut)."""
    ctl.link.resume_heartbeats()
    run.m.link_quality = LinkQuality.of(ctl.counters).short()
    status = None
    if run.cut:
        fresh = await DeviceClient.connect(run.url, options)
        try:
            status = fresh.status
        finally:
            await fresh.close()
    else:
        try:
            status = await asyncio.wait_for(ctl.get_status(), FINAL_STATUS_TIMEOUT_S)
        except (CementguardError, TimeoutError):
            await ctl.wait_for_link(LinkState.CONNECTED, timeout=FINAL_STATUS_TIMEOUT_S)
            status = ctl.status
    if status is None:
        return
    run.m.final_t_s = status.t_us / 1e6
    run.m.final_state = _name(State, status.state)
    run.m.final_reason = _name(StopReason, status.stop_reason) if status.stop_reason else None
    run.m.final_source = _name(StopSource, status.stop_source) if status.stop_source else None
    if run.m.delivered_ml is None:
        run.m.delivered_ml = round(status.delivered_nl / 1e6, 6)


def _final_stop(run: _Run) -> tuple[Event, float] | None:
    """The first stop that ended the injection (latched or VOLUME_LIMIT) before the final STATUS."""
    for event, t in _run_stops(run):
        if event.reason != StopReason.INCREMENT_DONE:
            return event, t
    return None


def _run_stops(run: _Run) -> list[tuple[Event, float]]:
    end = run.m.final_t_s
    return [(e, t) for e, t in run.stop_events if end is None or e.t_us / 1e6 <= end]


def _measure_host(run: _Run) -> None:
    """Figures from what the host received: stops, peak pressure, delivered volume, host-clock
    latency, and onsets/latency where the simulator's trace is not there (a real rig)."""
    m = run.m
    for event, _t in _run_stops(run):
        entry = (round(event.t_us / 1e6, 4), _name(StopReason, event.reason), _name(StopSource, event.source))
        if entry not in m.stops:
            m.stops.append(entry)
    m.stops.sort()
    if run.samples:
        samples = np.concatenate(run.samples)
        m.peak_pressure_kpa = round(float(samples["pressure_pa"].max()) / 1e3, 1)
    final = _final_stop(run)
    stops = _run_stops(run)
    if final is not None:
        m.delivered_ml = round(final[0].delivered_nl / 1e6, 6)
    elif stops:  # paused after an increment: what it had delivered then
        m.delivered_ml = round(stops[-1][0].delivered_nl / 1e6, 6)
    if final is not None and final[0].source == StopSource.FLUORO_IMAGE:
        m.image_rule = _name(StopDetail, final[0].detail)
    if run.guard is not None:
        m.guard_state = run.guard.status.label
        m.guard_frames = run.guard.frames
    m.onsets.extend(run.truth_onsets)
    for kind, (dev_s, _perf) in run.host_onsets.items():
        if kind == "link_cut" and run.sim is not None and run.sim.trace.detached_s:
            dev_s = run.sim.trace.detached_s[0]  # the device's own clock saw the cut here
        m.onsets.append((round(dev_s, 4), kind))
    m.onsets.sort()
    trigger = run.s.expect.latency_from or (m.onsets[0][1] if m.onsets else None)
    m.trigger = trigger
    if trigger is None:
        latched = [st for st in m.stops if st[1] not in ("INCREMENT_DONE", "VOLUME_LIMIT")]
        if latched and run.s.expect.reason is not None and latched[0][1] != run.s.expect.reason:
            m.false_stops = 1
        return
    onset = next((t for t, k in m.onsets if k == trigger), None)
    m.onset_s = onset
    latched = [st for st in m.stops if st[1] not in ("INCREMENT_DONE", "VOLUME_LIMIT")]
    first = latched[0] if latched else next((st for st in m.stops if st[1] == "VOLUME_LIMIT"), None)
    if first is not None:
        m.stop_s = first[0]
    if onset is not None and latched and latched[0][0] < onset:
        m.false_stops = 1
    if trigger in HOST_CLOCK_KINDS and trigger in run.host_onsets and final is not None:
        m.latency_ms = round((final[1] - run.host_onsets[trigger][1]) * 1000.0, 3)
        m.latency_clock = "host wall clock (request -> STOP event read off the port)"
    elif onset is not None and m.stop_s is not None and latched:
        m.latency_ms = round((m.stop_s - onset) * 1000.0, 3)
        m.latency_clock = "device (simulated) clock"


def _measure_trace(run: _Run, trace: Trace) -> None:
    """Figures only the simulator knows: when plant events fired, stops the host never saw (a cut
    link), the true cement delivered and the after-flow."""
    m = run.m
    for t_s, _ml, phase, kind in trace.plant:
        if phase == "start" and not any(k == kind for _t, k in m.onsets):
            m.onsets.append((round(t_s, 4), kind))
    end = m.final_t_s
    if trace.ticks is not None:
        m.sim_overruns, m.sim_max_late_ms = trace.ticks[1], trace.ticks[2]
    for t_s, reason, source, _ml in trace.stops:
        if end is not None and t_s > end + 0.0005:
            continue
        entry = (round(t_s, 4), _name(StopReason, reason), _name(StopSource, source))
        if not any(abs(e[0] - entry[0]) < 0.002 and e[1] == entry[1] for e in m.stops):
            m.stops.append(entry)
    final = next(
        (
            (t, ml)
            for t, r, _s, ml in trace.stops
            if r != StopReason.INCREMENT_DONE and (end is None or t <= end + 0.0005)
        ),
        None,
    )
    spatial = [row for row in trace.spatial if end is None or row.t_s <= end + 0.0005]
    if spatial:
        m.truth = spatial[-1]
    truth = [row for row in trace.truth if end is None or row[0] <= end + 0.0005]
    if truth:
        m.delivered_truth_ml = round(truth[-1][1], 6)
        if final is not None:
            m.after_flow_ml = round(max(0.0, truth[-1][1] - final[1]), 6)
