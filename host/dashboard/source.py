"""Where the dashboard's data comes from, and where its commands go.

A `DashboardSource` feeds a `DashboardModel` from its own asyncio tasks (`run`, started by the app
in a worker) and, if it can, carries commands (`commands`). Three kinds exist: `LiveSource` over a
`host.client.DeviceClient` (this module), `host.dashboard.replay.ReplaySource` over a recording, and
the deterministic sources of the tests. The UI never awaits the link in a handler: commands run as
their own tasks, and a STOP is sent at once, never behind another command (the link lets STOP
overtake).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from host.client import CLEAR_SETTLE_S, DeviceClient, LinkChange, LinkOptions, LinkState
from host.control import serve_control
from host.dashboard.guard_view import GuardView
from host.dashboard.model import DashboardModel
from host.errors import CementguardError, LinkLost
from host.guard.options import load_guard_modules
from host.loss_report import SeenEvents, describe, missed_stop
from host.plan import InjectionPlan, clamp_to_device
from host.pump import Consumer, ConsumerFailure, StreamPump
from host.recording import Recorder
from host.recording_sink import DEFAULT_TAIL_S, RecordingSink
from host.stops import StopRequests
from protocol import Event, Flags, Status, StopSource, TelemetryBatch
from protocol.models import DeviceInfoRecord, StatusRecord, kpa, ml

if TYPE_CHECKING:
    from host.fluoro_overlay import FluoroPicture
    from host.guard.options import GuardSetup
    from host.guard.worker import GuardWorker, Judged
    from host.guard_feed import GuardRecording

log = logging.getLogger(__name__)

COUNTERS_PERIOD_S = 0.5
STATUS_PERIOD_S = 2.0
"""GET_STATUS cadence: limits in force, increments done, cement age (telemetry carries the rest)."""
RETRY_OPEN_S = (0.5, 5.0)
"""Backoff between attempts to open the port when it cannot be opened at all (first connect)."""


class Commands(Protocol):
    """What the dashboard's keys ask of a controller. Every call may raise CommandRefused (a NAK,
    shown as a notification) or LinkLost."""

    async def arm(self, plan: InjectionPlan, mixed_ago_s: float) -> list[str]: ...
    async def start(self) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def stop(self, source: StopSource) -> None: ...
    async def clear(self) -> None: ...


class DashboardSource(Protocol):
    @property
    def label(self) -> str:
        """Shown in the connection panel: the port URL, or the recording played back."""
        ...

    @property
    def commands(self) -> Commands | None:
        """None: a source that cannot be commanded (a replay)."""
        ...

    @property
    def stops(self) -> StopRequests: ...

    async def run(self, model: DashboardModel) -> None:
        """Feed `model` until cancelled. Must not raise for link trouble: it shows it in the model."""
        ...


def status_record(status: Status | None) -> StatusRecord | None:
    """The STATUS in edge units; None for one carrying an enum value this host does not know."""
    if status is None:
        return None
    try:
        return StatusRecord.from_message(status)
    except ValidationError:
        return None


def feed_event(model: DashboardModel, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
    model.on_event(
        kind=int(event.kind),
        state=int(event.state),
        reason=int(event.reason),
        source=int(event.source),
        t_s=event.t_us / 1e6,
        pressure_kpa=math.nan if event.flags & Flags.SENSOR_FAULT else kpa(event.pressure_pa),
        delivered_ml=ml(event.delivered_nl),
        notes=notes,
        received_at=received_at,
        alarm=int(event.alarm),
        detail=int(event.detail),
    )


class _ModelFeed(Consumer):
    """The dashboard's model, fed by the pump: samples, events (with their stop notes), link changes."""

    name = "dashboard display"

    def __init__(self, source: LiveSource, model: DashboardModel) -> None:
        self.source = source
        self.model = model
        self.seen = SeenEvents()
        """Events received: after a reconnect, whether the device's latched stop reached us."""
        self.lost = False

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        self.model.on_samples(batch.samples)

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        self.seen.saw(event)
        feed_event(self.model, event, notes, received_at)
        self.source._status_due.set()  # increments done, limits in force: read STATUS soon

    def on_link(self, change: LinkChange) -> None:
        self.model.on_link(change.state.value, change.reason)
        record = status_record(change.status)
        if record is not None:
            self.model.on_status(record)
        log.info("link %s: %s", change.state.value, change.reason)
        self.source._log(f"link {change.state.value}: {change.reason}")
        if change.state in (LinkState.LOST, LinkState.FAILED):
            self.lost = True
        elif change.state is LinkState.CONNECTED and self.lost and change.status is not None:
            self.lost = False
            self._after_reconnect(change.status)

    def _after_reconnect(self, status: Status) -> None:
        """What the device did while the link was down: said in the log, and its latched stop
        recorded (and shown in the stop log) when the STOP event never reached the dashboard."""
        self.source._log(describe(status, self.seen))
        missed = missed_stop(status, self.seen)
        if missed is None:
            return
        event, notes = missed
        self.seen.saw(event)
        feed_event(self.model, event, notes, None)
        sink = self.source.sink
        if sink is not None and sink.failed is None:
            try:
                sink.on_event(event, notes, None)
            except Exception as exc:  # a recording failure is reported by the sink; the display goes on
                log.error("recording the stop read after the reconnect failed: %s", exc)


class LiveSource:
    """A controller behind a port URL. Opens it (retrying while it cannot), then streams telemetry,
    events and link changes into the model through the stream pump (`host.pump`); the link itself
    reconnects after a loss and never re-sends a motion command."""

    def __init__(
        self,
        url: str,
        options: LinkOptions | None = None,
        *,
        stops: StopRequests | None = None,
        on_log: Callable[[str], None] | None = None,
        record_tail_s: float = DEFAULT_TAIL_S,
        guard: GuardSetup | None = None,
    ) -> None:
        self.url = url
        self.guard = guard
        """The fluoroscopic guard to run beside the link (`--frames`), or None."""
        self.guard_worker: GuardWorker | None = None
        self.frame_recorder: GuardRecording | None = None
        """The guard's decisions and decimated frames (host/frame_recording.py), while recording
        with a guard: `<recording>/frames/`."""
        self.label = url
        self.options = options or LinkOptions()
        self.stops = stops or StopRequests()
        self.commands: Commands | None = self
        self.controller: DeviceClient | None = None
        self.record_tail_s = record_tail_s
        self.sink: RecordingSink | None = None
        """The recording being made, fed by the pump (set through `recorder`)."""
        self.on_recorder_error: Callable[[Exception], None] | None = None
        self.on_failure: Callable[[ConsumerFailure], None] | None = None
        """Told of any other consumer or worker of the pump that failed (the app notifies)."""
        self._log = on_log or (lambda _text: None)
        self._model: DashboardModel | None = None
        self._pump: StreamPump | None = None
        self._status_due = asyncio.Event()
        self.connected = asyncio.Event()
        """Set once the first connection is open (tests and the MQTT bridge wait on it)."""

    @property
    def recorder(self) -> Recorder | None:
        """The recorder every sample and event read is appended to, while the app records."""
        return self.sink.recorder if self.sink is not None else None

    @recorder.setter
    def recorder(self, recorder: Recorder | None) -> None:
        if self.sink is not None and self._pump is not None:
            self._pump.remove(self.sink)
        self.sink = RecordingSink(recorder, self.record_tail_s) if recorder is not None else None
        if self.sink is not None and self._pump is not None:
            self._pump.add(self.sink)
        self._switch_frame_recorder(recorder)

    def _switch_frame_recorder(self, recorder: Recorder | None) -> None:
        """A recording with a guard keeps its frames and decisions beside it; the one before is closed
        on a thread of its own (its writer finishes what is queued, never on the event loop)."""
        old, self.frame_recorder = self.frame_recorder, None
        if old is not None:
            threading.Thread(target=old.close, name="frame recording: close", daemon=True).start()
        if recorder is not None and self.guard is not None:
            from host.guard_feed import GuardRecording

            try:
                self.frame_recorder = GuardRecording(recorder.path, self._device_t_us)
            except OSError as exc:
                log.error("the guard's frames are not recorded: %s", exc)

    def _device_t_us(self) -> int | None:
        now_s = self._model.latest.t_s if self._model is not None else math.nan
        return round(now_s * 1e6) if math.isfinite(now_s) else None

    def _guard_step(self, judged: Judged, picture: FluoroPicture | None) -> None:
        if self.frame_recorder is not None:
            self.frame_recorder(judged, picture)

    # -- feeding --------------------------------------------------------------------------------

    async def run(self, model: DashboardModel) -> None:
        self._model = model
        model.on_link("connecting", f"opening {self.url}", port=self.url)
        if self.guard is not None:  # before the session: the import would stall its heartbeats
            await asyncio.to_thread(load_guard_modules)
        ctl = await self._open(model)
        try:
            pump = StreamPump(
                ctl, [_ModelFeed(self, model)], on_failure=self._failed, stops=self.stops, name="dashboard"
            )
            async with (
                serve_control(ctl, stops=self.stops),
                pump,
            ):  # serve: `cementguard stop/status/clear` from elsewhere
                self._pump = pump
                if self.sink is not None:
                    pump.add(self.sink)
                self.controller = ctl
                model.on_device(DeviceInfoRecord.from_message(ctl.device))
                record = status_record(ctl.status)
                if record is not None:
                    model.on_status(record)
                model.on_link(ctl.link_state.value, ctl.link_reason)
                self.connected.set()
                if self.guard is not None:
                    await self._start_guard(model, ctl, pump, self.guard)
                await pump.supervisor.spawn(self._poll(model, ctl), "dashboard: status poll")
        finally:
            self._pump = None
            self.controller = None
            with contextlib.suppress(Exception):
                await asyncio.shield(ctl.close())

    async def _start_guard(
        self, model: DashboardModel, ctl: DeviceClient, pump: StreamPump, setup: GuardSetup
    ) -> None:
        """The guard on `setup`'s source(s), as in `cementguard run` (host/guard/worker.py), one more
        consumer of this pump. A source that cannot be opened is shown on every screen, not a crash:
        the dashboard is also how the operator finds out the C-arm's feed is not there."""
        from host.guard_feed import open_guard_worker

        if model.guard is None:
            model.guard = GuardView(setup.frames_url, setup.views)
        try:  # sockets or devices: never on the event loop
            worker = await asyncio.to_thread(
                open_guard_worker,
                setup,
                ctl,
                self.stops,
                view_of=lambda: model.guard,
                on_state=model.on_guard_state,
                on_frame=self._guard_step,
                on_failure=self._failed,
            )
        except CementguardError as exc:
            log.error("fluoroscopic guard not started: %s", exc)
            model.guard.no_source(str(exc))
            model.touch()
            return
        self.guard_worker = worker
        pump.add(worker)
        pump.supervisor.spawn(worker.run(), "dashboard: fluoroscopic guard", critical=True)

    async def _open(self, model: DashboardModel) -> DeviceClient:
        delay = RETRY_OPEN_S[0]
        while True:
            try:
                return await DeviceClient.connect(self.url, self.options)
            except CementguardError as exc:
                model.on_link("lost", f"cannot open: {exc}")
                log.warning("cannot open %s: %s", self.url, exc)
                self._log(f"cannot open {self.url}: {exc}")
            await asyncio.sleep(delay)  # backoff before the next attempt, not a synchronisation
            delay = min(delay * 2, RETRY_OPEN_S[1])
            model.on_link("connecting", f"opening {self.url} again")

    async def _poll(self, model: DashboardModel, ctl: DeviceClient) -> None:
        """Counters twice a second, STATUS every few seconds (the device pushes the rest)."""
        last_status = time.monotonic()
        while True:
            model.on_counters(dataclasses.asdict(ctl.counters))
            if ctl.link_state is LinkState.CONNECTED and time.monotonic() - last_status >= STATUS_PERIOD_S:
                last_status = time.monotonic()
                with contextlib.suppress(CementguardError, TimeoutError, RuntimeError):
                    record = status_record(await ctl.get_status())
                    if record is not None:
                        model.on_status(record)
            with contextlib.suppress(TimeoutError):  # display cadence, or at once after an event
                await asyncio.wait_for(self._status_due.wait(), COUNTERS_PERIOD_S)
            if self._status_due.is_set():
                self._status_due.clear()
                last_status = 0.0

    def _failed(self, failure: ConsumerFailure) -> None:
        """The pump's one error policy: reported at once. A failed recording is dropped (the app says
        so, and stops the injection); any other failure goes to `on_failure`."""
        if self.sink is not None and failure.consumer is self.sink:
            self.sink = None
            if self.on_recorder_error is not None and isinstance(failure.error, Exception):
                self.on_recorder_error(failure.error)
            return
        self._log(str(failure))
        if self.on_failure is not None:
            self.on_failure(failure)

    # -- commands ---------------------------------------------------------------------------------

    def _ctl(self) -> DeviceClient:
        ctl = self.controller
        if ctl is None:
            raise LinkLost("not connected to the controller")
        return ctl

    async def arm(self, plan: InjectionPlan, mixed_ago_s: float) -> list[str]:
        """ARM the plan, clamped to the device's own limits; returns one warning per clamped field."""
        ctl = self._ctl()
        clamped, warnings = clamp_to_device(plan, ctl.device)
        status = await ctl.arm(clamped, mixed_ago_s=mixed_ago_s)
        record = status_record(status)
        if record is not None and self._model is not None:
            self._model.on_status(record)
        return warnings

    async def start(self) -> None:
        await self._ctl().start()

    async def pause(self) -> None:
        await self._ctl().pause()

    async def resume(self) -> None:
        await self._ctl().resume()

    async def stop(self, source: StopSource) -> None:
        await self._ctl().stop(source)

    async def clear(self) -> None:
        await self._ctl().clear(settle_s=CLEAR_SETTLE_S)
        if self._model is not None:
            with contextlib.suppress(CementguardError):
                record = status_record(await self._ctl().get_status())
                if record is not None:
                    self._model.on_status(record)
