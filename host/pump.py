"""The one stream pump: from a device client's subscriptions to the consumers of a program.

Every program that talks to a controller (`cementguard run`, the dashboard, the MQTT bridge, the HIL
runner) needs the same loop: subscribe to telemetry, events and link changes, and hand each item to
whoever consumes it (the recorder, the display, the MQTT outbox, the HIL judge). It used to be
written four times with four error policies, and a consumer that raised (the recorder on a full disk)
killed its loop silently: the display froze and `run` waited forever for a STOP event that the dead
loop would never deliver.

Here it is written once, with one error policy:

- **A consumer that fails is isolated and reported at once.** Its exception is logged (with the
  traceback) and handed to the program's `on_failure` (which tells the operator: a red line in `run`,
  a notification in the dashboard, the bridge's state); the consumer gets nothing more; the other
  consumers go on. Nothing dies silently.
- **The pump's own tasks are supervised** (`Supervisor`): a task that ends with an exception is
  reported the same way, never left as a "Task exception was never retrieved".
- **Consumers are plain synchronous callbacks**, called on the event loop in the order items were
  read off the port. They must not block (the recorder only appends to a buffer; the disk is its
  writer thread's business), so nothing a consumer does can delay a heartbeat or a STOP.
- **Stop annotations are matched once** (`host.stops.StopRequests`) and the same notes go to every
  consumer, so the recording and the MQTT events topic say the same thing about a stop.

The pump never closes the link: the program that opened it closes it, always (see `host.run`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from host.stops import StopRequests

if TYPE_CHECKING:
    from host.client import DeviceClient
    from host.link import LinkChange, Subscription
    from protocol import Event, TelemetryBatch

__all__ = ["Consumer", "ConsumerFailure", "StreamPump", "Supervisor"]

log = logging.getLogger(__name__)


class Consumer:
    """Something the pump feeds. Override what you consume; the defaults ignore the item.

    Each method is called on the event loop and must return quickly. An exception it raises takes
    this consumer out of the pump (reported through `on_failure` and the log); the others go on."""

    name = "consumer"
    critical = False
    """A critical consumer's failure matters to safety or to the run's record (the recorder): the
    program decides what follows (`run` stops the injection by default)."""
    _pump: StreamPump | None = None

    def fail(self, error: Exception) -> None:
        """Report this consumer as failed from outside the pump's own calls (on the event loop):
        e.g. a recorder whose writer thread failed while no new data came to raise it. The same
        policy as an exception raised in a callback: taken out, reported at once."""
        if self._pump is not None:
            self._pump._fail(self, error)

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        """A telemetry batch; `received_at` is when it was read off the port (time.perf_counter())."""

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        """A controller event, with the stop annotations (`host.stops`) for a STOP."""

    def on_link(self, change: LinkChange) -> None:
        """A link state change (LOST, CONNECTED after a reconnect, FAILED, CLOSED)."""


@dataclass(frozen=True)
class ConsumerFailure:
    """A consumer (or a supervised task) that failed: what, and why."""

    name: str
    error: BaseException
    critical: bool
    consumer: Consumer | None = None

    def __str__(self) -> str:
        return f"{self.name} failed: {type(self.error).__name__}: {self.error}"


FailureHandler = Callable[[ConsumerFailure], None]


def _report(failure: ConsumerFailure, on_failure: FailureHandler | None) -> None:
    log.error("%s", failure, exc_info=failure.error)
    if on_failure is None:
        return
    try:
        on_failure(failure)
    except Exception:  # the reporter itself must not take the pump down
        log.exception("reporting %s failed", failure.name)


class Supervisor:
    """Named tasks whose failure is reported at once (log + `on_failure`), never lost.

    A task that returns normally or is cancelled is not a failure. `failed` keeps what failed, so a
    program can show it (the MQTT bridge's state names a dead worker). Leaving the context (or
    `aclose`) cancels what is left and waits for it."""

    def __init__(self, on_failure: FailureHandler | None = None) -> None:
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failed: dict[str, BaseException] = {}

    def spawn(
        self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, name, critical))
        return task

    def _done(self, task: asyncio.Task[Any], name: str, critical: bool) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        self.failed[name] = error
        _report(ConsumerFailure(name, error, critical), self._on_failure)

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class StreamPump:
    """Subscribes to a client's telemetry, events and link changes, and feeds `consumers`.

        async with StreamPump(client, [recording, display], on_failure=report):
            ...  # arm, start, wait: the consumers are fed meanwhile

    Subscriptions are taken on entry, so nothing received after `__aenter__` is missed. Consumers
    may be added and removed while it runs (the dashboard's recorder comes and goes)."""

    def __init__(
        self,
        client: DeviceClient,
        consumers: Iterable[Consumer] = (),
        *,
        on_failure: FailureHandler | None = None,
        stops: StopRequests | None = None,
        name: str = "pump",
        telemetry_maxsize: int | None = None,
    ) -> None:
        self._client = client
        self._consumers: list[Consumer] = []
        for consumer in consumers:
            self.add(consumer)
        self._on_failure = on_failure
        self.stops = stops if stops is not None else StopRequests()
        """Stop requests of this program, matched to STOP events (their notes go to every consumer)."""
        self.name = name
        self._telemetry_maxsize = telemetry_maxsize
        self._supervisor = Supervisor(on_failure)
        self._subscriptions: list[Subscription[Any]] = []
        self.failures: list[ConsumerFailure] = []
        """Every consumer failure so far, oldest first."""

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        return tuple(self._consumers)

    @property
    def supervisor(self) -> Supervisor:
        """Supervises the pump's tasks; programs may spawn their own workers on it."""
        return self._supervisor

    def add(self, consumer: Consumer) -> None:
        if consumer not in self._consumers:
            self._consumers.append(consumer)
            consumer._pump = self

    def remove(self, consumer: Consumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    async def __aenter__(self) -> StreamPump:
        ctl = self._client
        telemetry = ctl.telemetry(self._telemetry_maxsize)
        events = ctl.events()
        changes = ctl.link_changes()
        self._subscriptions = [telemetry, events, changes]
        sup = self._supervisor
        sup.spawn(self._pump_telemetry(telemetry), f"{self.name}: telemetry")
        sup.spawn(self._pump_events(events), f"{self.name}: events")
        sup.spawn(self._pump_link(changes), f"{self.name}: link")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop feeding: the pump's tasks are cancelled and its subscriptions released."""
        await self._supervisor.aclose()
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions = []

    # -- the three loops ----------------------------------------------------------------------

    async def _pump_telemetry(self, telemetry: Subscription[TelemetryBatch]) -> None:
        async for batch in telemetry:
            at = telemetry.received_at
            for consumer in tuple(self._consumers):
                self._call(consumer, consumer.on_samples, batch, at)

    async def _pump_events(self, events: Subscription[Event]) -> None:
        async for event in events:
            at = events.received_at
            notes = self.stops.match(event, at)
            for consumer in tuple(self._consumers):
                self._call(consumer, consumer.on_event, event, dict(notes), at)

    async def _pump_link(self, changes: Subscription[LinkChange]) -> None:
        async for change in changes:
            for consumer in tuple(self._consumers):
                self._call(consumer, consumer.on_link, change)

    def _call(self, consumer: Consumer, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception as exc:
            self._fail(consumer, exc)

    def _fail(self, consumer: Consumer, error: Exception) -> None:
        if consumer not in self._consumers:
            return  # already taken out and reported
        self.remove(consumer)
        failure = ConsumerFailure(consumer.name, error, consumer.critical, consumer)
        self.failures.append(failure)
        _report(failure, self._on_failure)
