"""The guard beside a device link: frames read and judged on a thread of their own, the pump's state
fed in from the one stream pump, the stop sent through the DeviceClient.

Why a thread. Reading a frame blocks (a grabber, a socket, a folder on a slow disk) and judging one
takes milliseconds of numpy/opencv; neither may delay a heartbeat, a STOP or a screen refresh on the
event loop. The thread only reads and judges; everything that touches the link or the screens is
handed to the loop (`call_soon_threadsafe`), where the stop is sent at once and recorded like every
other stop (host/stops.py: its latency runs from the moment the frame was read).

Why a consumer. The guard must know whether the plunger can move (a blind guard stops a moving one),
and the pump already delivers every sample and event in order (host/pump.py): `GuardWorker` is one
more consumer, critical (a guard that died is a blind guard, and `run` treats it so).

Two sources (biplane on the bench: `--frames` for the lateral view, `--frames-ap` for the AP one):
a reader thread per source, each feeding the one `BiplaneGuard` (under a lock, in arrival order). A
source that is lost or refuses a frame blinds its own view, not the other's; a frame of the wrong
view on a view's source (a miswired grabber, a simulator stream of the other view) is a refused frame
of that view. The stop goes out from either view, and names the view that asked for it.

Nothing here starts, resumes or clears: the only command this module can send is STOP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.frames import FluoroFrame, FrameRejected, FrameSource, FrameSourceLost
from host.guard.biplane import BiplaneGuard
from host.guard.guard import Guard, GuardStatus, GuardStep
from host.pump import Consumer, ConsumerFailure, Supervisor
from host.stops import StopRequests
from protocol import EventKind, State, StopDetail, StopSource

if TYPE_CHECKING:
    from host.client import DeviceClient
    from host.link import LinkChange
    from protocol import Event, TelemetryBatch

__all__ = ["GuardWorker", "Judged"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
"""How long one read waits for a frame: the frame-gap clock is checked at least this often."""

StepHandler = Callable[[GuardStep], None]


@dataclass(frozen=True, slots=True)
class Judged:
    """One step with what it is about, for the screens and the recording (`on_judged`)."""

    step: GuardStep
    frame: FluoroFrame | None
    """The frame the step judged (None: a tick, a refused frame, a lost source)."""
    view: str | None
    """The view the step is about: the frame's, or the source's (None: one source, any view)."""
    view_status: GuardStatus
    """That view's own state (the step's, with one guard)."""
    stop_view: str | None = None
    """The view whose guard asked for the step's stop, if it asked for one."""


class GuardWorker(Consumer):
    """Runs `guard` on `source` while `run()` is awaited; `status` is always the latest state.

    `on_step` (called on the event loop) gets every step: a frame judged, a state change. `clock` is
    the monotonic clock of the frame-gap test (injected in tests); `stamp` the clock of the stop's
    latency (time.perf_counter, the one the link stamps received events with)."""

    name = "fluoroscopic guard"
    critical = True

    def __init__(
        self,
        guard: Guard | BiplaneGuard,
        source: FrameSource | Mapping[str, FrameSource],
        client: DeviceClient,
        stops: StopRequests,
        *,
        on_step: StepHandler | None = None,
        on_judged: Callable[[Judged], None] | None = None,
        on_failure: Callable[[ConsumerFailure], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        stamp: Callable[[], float] = time.perf_counter,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.guard = guard
        self.sources: dict[str | None, FrameSource] = {}
        """The source of each view (`{None: source}`: one source, whatever views it carries)."""
        if isinstance(source, Mapping):
            if not isinstance(guard, BiplaneGuard) or set(source) != set(guard.views):
                views = ", ".join(guard.views) if isinstance(guard, BiplaneGuard) else "one view"
                raise ValueError(f"sources for views {', '.join(source)}; the guard watches {views}")
            self.sources.update(source)
        else:
            self.sources = {None: source}
        self.source = next(iter(self.sources.values()))
        """The first source (the lateral one of two)."""
        self._client = client
        self._stops = stops
        self._on_step = on_step
        self._on_judged = on_judged
        self._lock = threading.Lock()
        """One caller at a time into the guard: with two sources, two reader threads feed it."""
        self._clock = clock
        self._stamp = stamp
        self._read_timeout_s = read_timeout_s
        state = client.state
        self._pump_state: State | None = State(state) if state in set(State) else None
        self._stop_flag = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor = Supervisor(on_failure)
        self.status: GuardStatus = guard.status
        self.frames = 0
        self.stops_sent: list[tuple[StopDetail, int | None]] = []
        """(rule, frame index) of every stop this worker sent, oldest first."""
        self.stop_views: list[str | None] = []
        """The view that asked for each of `stops_sent` (None: one view, or not known)."""
        self._watching = asyncio.Event()
        self._dead = False
        self._single_view: str | None = None
        """The view a one-view guard watches: its source's first frame's."""
        """The worker failed: later steps (another source's reader) change nothing on the screens."""

    # -- the pump's side (event loop) -----------------------------------------------------------

    @property
    def pump_state(self) -> State | None:
        """The controller's last known state (None: unknown, e.g. while the link is down)."""
        return self._pump_state

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        if len(batch.samples):
            self._set_pump(int(batch.samples[-1]["state"]))

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        if event.kind in (EventKind.STATE_CHANGE, EventKind.STOP):
            self._set_pump(int(event.state))

    def on_link(self, change: LinkChange) -> None:
        """A lost link: the pump's state is unknown until the client reads it again."""
        if change.state.value in ("lost", "failed"):
            self._pump_state = None

    def _set_pump(self, value: int) -> None:
        try:
            self._pump_state = State(value)
        except ValueError:
            self._pump_state = None

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: the reader thread runs, its steps are handled here. The source is closed
        on the way out."""
        self._loop = asyncio.get_running_loop()
        threads = [
            threading.Thread(
                target=self._read_loop,
                args=(source, view),
                name=f"guard: {view} frames" if view else "guard: frames",
                daemon=True,
            )
            for view, source in self.sources.items()
        ]
        for thread in threads:
            thread.start()
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            self._stop_flag.set()
            for thread in threads:
                await asyncio.to_thread(thread.join, 2.0)
            for source in self.sources.values():
                with contextlib.suppress(Exception):
                    source.close()
            await self._supervisor.aclose()

    async def watching(self, timeout_s: float) -> bool:
        """True once the guard has been WATCHING (baseline learned), False after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._watching.wait()
        return self._watching.is_set()

    def _read_loop(self, source: FrameSource, view: str | None) -> None:
        """Reads `source` (of `view`, or of any view with one source) until the worker ends."""
        guard = self.guard
        lost = False
        while not self._stop_flag.is_set():
            frame_at = None
            try:
                if lost:
                    self._stop_flag.wait(self._read_timeout_s)
                    judged = self._judge(self._tick, None, view)
                else:
                    try:
                        frame = source.read(self._read_timeout_s)
                    except FrameRejected as exc:
                        judged = self._refused(str(exc), view)
                    except FrameSourceLost as exc:
                        lost = True
                        judged = self._judge(functools.partial(self._lost, exc.reason, view), None, view)
                    else:
                        if frame is None:
                            judged = self._judge(self._tick, None, view)
                        elif view is not None and frame.view != view:
                            why = f"frame {frame.index} is a {frame.view!r} view on the {view} view's source"
                            judged = self._refused(why, view)
                        elif (other := self._other_view(frame)) is not None:
                            judged = self._refused(other, view)
                        else:
                            frame_at = self._stamp()
                            self.frames += 1
                            call = functools.partial(guard.frame, frame, self._clock(), self._pump_state)
                            judged = self._judge(call, frame, view)
            except Exception as exc:  # a reader or guard fault must not leave a silent guard
                log.exception("guard: failed")
                self._stop_flag.set()  # the other source's reader too: a failed guard is not half a guard
                self._post(self._failed, exc)
                return
            step = judged.step
            if step.stop is not None or step.changed or step.frame_index is not None:
                self._post(self._handle, judged, frame_at)

    def _other_view(self, frame: FluoroFrame) -> str | None:
        """One guard judges one view: on a stream that carries both (a simulator's `--frames-view
        both` read with `--frames` alone), the frames of the view it did not start with are refused,
        named, never judged against the other view's baseline. A biplane guard takes both."""
        if isinstance(self.guard, BiplaneGuard):
            return None
        if self._single_view is None:
            self._single_view = frame.view
        if frame.view == self._single_view:
            return None
        return (
            f"frame {frame.index} is a {frame.view!r} view on a {self._single_view} stream; "
            "allowed one view per source: give the AP view its own source (--frames-ap)"
        )

    def _tick(self) -> GuardStep:
        return self.guard.tick(self._clock(), self._pump_state)

    def _lost(self, reason: str, view: str | None) -> GuardStep:
        guard = self.guard
        if view is None or not isinstance(guard, BiplaneGuard):
            return guard.lost(reason, self._clock(), self._pump_state)
        return guard.lost(reason, self._clock(), self._pump_state, view)

    def _refused(self, reason: str, view: str | None) -> Judged:
        guard = self.guard

        def call() -> GuardStep:
            if view is None or not isinstance(guard, BiplaneGuard):
                return guard.rejected(reason, self._clock(), self._pump_state)
            return guard.rejected(reason, self._clock(), self._pump_state, view)

        return self._judge(call, None, view)

    def _judge(self, call: Callable[[], GuardStep], frame: FluoroFrame | None, view: str | None) -> Judged:
        """`call` into the guard, and the step with its view and that view's own state, under one
        hold of the lock (the other source's reader cannot come between the step and its view)."""
        guard = self.guard
        about = frame.view if frame is not None else view
        with self._lock:
            step = call()
            if not isinstance(guard, BiplaneGuard):
                return Judged(step, frame, about, step.status)
            stop_view = guard.stop_view if step.stop is not None else None
            own = guard.status_of(about) if about in guard.views else step.status
        return Judged(step, frame, about, own, stop_view)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing left to tell
                loop.call_soon_threadsafe(fn, *args)

    # -- on the event loop ----------------------------------------------------------------------

    def _handle(self, judged: Judged, frame_at: float | None) -> None:
        if self._dead:
            return
        step = judged.step
        if step.stop is not None:
            self._send_stop(step.stop, step, frame_at, judged.stop_view)
        self.status = step.status
        if step.status.state == "WATCHING":
            self._watching.set()
        if self._on_step is not None:
            self._on_step(step)
        if self._on_judged is not None:
            self._on_judged(judged)

    def _send_stop(
        self, rule: StopDetail, step: GuardStep, frame_at: float | None, view: str | None = None
    ) -> None:
        where = f"frame {step.frame_index}" if step.frame_index is not None else "no frame"
        if view is not None:
            where = f"{view} view, {where}"
        notes: dict[str, Any] = {"guard_rule": rule.name, "guard_state": step.status.label}
        if view is not None:
            notes["guard_view"] = view
        if step.frame_index is not None:
            notes["guard_frame"] = step.frame_index
            notes["guard_frame_t_us"] = step.t_us
        if step.measures is not None:
            m = step.measures
            notes["guard_front"] = None if m.front_fraction is None else round(m.front_fraction, 4)
            notes["guard_outside_mm2"] = round(m.outside_mm2, 2)
            notes["guard_vein_mm"] = round(m.vein_length_mm, 2)
        self._stops.requested(
            StopSource.FLUORO_IMAGE,
            f"fluoroscopic guard: {rule.name}, {where}",
            t=frame_at if frame_at is not None else self._stamp(),
            notes=notes,
        )
        self.stops_sent.append((rule, step.frame_index))
        self.stop_views.append(view)
        log.warning("guard: STOP %s (%s)", rule.name, where)
        self._supervisor.spawn(
            self._client.stop(StopSource.FLUORO_IMAGE, int(rule)), f"guard stop {rule.name}"
        )

    def _failed(self, error: Exception) -> None:
        """The reader or the guard raised: BLIND, a stop if a plunger moves, and the worker is
        reported failed (critical: `run` stops the injection too)."""
        if self._dead:
            return
        self._dead = True
        self.status = GuardStatus("BLIND", f"guard failed: {type(error).__name__}: {error}")
        if self._pump_state in (State.INJECTING, None) and self.guard.config.blind_stop != "never":
            step = GuardStep(self.status, StopDetail.IMAGE_LOST, changed=True)
            self._send_stop(StopDetail.IMAGE_LOST, step, None)
        failed = GuardStep(self.status, changed=True)
        if self._on_step is not None:
            self._on_step(failed)
        if self._on_judged is not None:
            self._on_judged(Judged(failed, None, None, self.status))
        self.fail(error)
