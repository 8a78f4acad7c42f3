"""The serial link to a controller: framing over pyserial, handshake, heartbeat, commands, reconnect.

`Link` opens any pyserial URL (a device path, a pty, a socat port, ``socket://host:port``) through
pyserial-asyncio-fast, so serial I/O never blocks the caller: reads arrive in a protocol callback on the
event loop, writes go to the transport's buffer, opening and closing the port run in the loop's
executor.

What the link does (protocol/SPEC.md section in brackets):

- **Receive** [§3.5, §4.4]: every chunk read goes through one `protocol.MessageStream`; frames are
  dispatched at once to the command waiting for them (by cmd_id), to event and telemetry subscribers
  (bounded queues, oldest dropped and counted when a consumer falls behind), and to the latest STATUS
  and device state.
- **Connect** [§2, §10.1, §10.7]: take the port's lock (host.port_lock: one session per port; a
  second opener gets PortBusy naming the holder), open the port (pyserial ``exclusive=True``, and
  TIOCEXCL: host.tty_exclusive, so that no other program opens it), write a single 0x00 (ends
  whatever partial frame the device's receiver holds), HELLO -> DEVICE_INFO +
  ACK (re-sent with the command retry policy when no answer came or the DEVICE_INFO was damaged;
  the final error says what arrived), GET_STATUS -> STATUS. `open(handshake=False)` skips the
  session: only STOP and GET_STATUS, for `cementguard stop`. A device of another
  protocol version (NAK VERSION_MISMATCH, any frame with another header version, or a DEVICE_INFO
  naming another version) raises `ProtocolVersionError` and nothing more is sent [§11.4].
- **Heartbeat** [§9.2]: a HEARTBEAT whenever nothing else was sent for watchdog_ms / 5 (the device's
  value, divided by `LinkOptions.time_scale` for a simulator run with ``--time-scale``). SPEC §9.2
  asks for at least one frame every watchdog_ms / 2; beating more often leaves the event loop
  watchdog_ms - watchdog_ms / 5 (400 ms at the default 500 ms) to be late before the device's
  watchdog expires, instead of 275 ms, without changing what the watchdog means: a host that is
  hung still sends nothing and loses its session after watchdog_ms (docs/design.md, "Heartbeat").
- **Commands** [§7.1-§7.5]: `command()` numbers the command, sends it and waits for its ACK/NAK
  (200 ms), retrying with the **same** cmd_id (3 retries), so the device answers a retry from its
  cache and never applies a command twice. NAK -> `CommandRefused`. No answer after the retries ->
  `CommandTimeout` and the link is declared lost. One command at a time; STOP may overtake.
- **Link loss** [§9.3, §10.7]: no valid frame for watchdog_ms (the device heartbeats every
  watchdog_ms / 2), the port closing under us, a command without an answer, NAK NO_SESSION or a
  device reset (EVENT POWER_UP) -> link lost: the state goes to LOST at once (subscribers of
  `link_changes()` are told), pending commands fail with `LinkLost`, the port is closed and every
  reference to it dropped, and the link reconnects with exponential backoff: open, 0x00, HELLO,
  GET_STATUS. It **never** re-sends START, RESUME or anything else that moves the plunger: the only
  commands a reconnect sends are HELLO, GET_STATUS and, if the caller configured telemetry, the same
  SET_TELEMETRY again. The device has stopped on its own (HOST_LOST) and stays latched until the
  operator decides.

The link is the only place that knows about ports and bytes; `host.client.DeviceClient` is the typed API
on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import math
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

import serial
import serial_asyncio_fast

from host import tty_exclusive
from host.errors import (
    CementguardError,
    CommandRefused,
    CommandTimeout,
    DeviceNotResponding,
    LinkClosed,
    LinkLost,
    PortError,
    PortNotFound,
    PortUnavailable,
    ProtocolVersionError,
)
from host.port_lock import PortLock
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    DeviceInfo,
    Event,
    EventKind,
    GetStatus,
    Heartbeat,
    Hello,
    Message,
    MessageStream,
    MsgType,
    Nak,
    NakCode,
    Rejected,
    RejectReason,
    ResetCause,
    SetTelemetry,
    State,
    Status,
    StreamCounters,
    TelemetryBatch,
    encode_frame,
)
from protocol.messages import CalibrationInfo, MotionStatus, SyringeInfo

log = logging.getLogger(__name__)

DELIMITER = b"\x00"
HEARTBEATS_PER_WATCHDOG = 5
"""Default heartbeat period: watchdog_ms / this. Every heartbeat period taken from the watchdog is
event-loop lateness the session cannot survive (a stall that starts just before a beat is due
delays it by the stall: the device sees period + stall of silence). Five beats per watchdog cost a
~20-byte frame every 100 ms and leave 80 % of the watchdog to a busy loop."""
BEAT_EARLY = 0.9
"""A heartbeat is sent when nothing was sent for this fraction of the period: a little early, so that
ordinary scheduling delay never stretches a gap past the period."""
MIN_SILENCE_S = 0.05
"""Floor of the silent-device timeout, whatever the time scale: below this, event-loop jitter on a
busy machine would declare a healthy link lost."""
_STATES: dict[int, State] = {int(s): s for s in State}


class LinkState(Enum):
    CLOSED = "closed"
    """Not opened yet, or closed by the host."""
    CONNECTING = "connecting"
    """Opening the port and handshaking (first open, or a reconnect attempt)."""
    CONNECTED = "connected"
    """Session open: commands can be sent, heartbeats run."""
    LOST = "lost"
    """The link went down; the link is reconnecting (unless `LinkOptions.reconnect` is off)."""
    FAILED = "failed"
    """Gave up for good: a protocol version mismatch, or `reconnect_attempts` used up."""


@dataclass(frozen=True, slots=True)
class LinkChange:
    """One transition of the link, as `Link.link_changes()` delivers it."""

    state: LinkState
    reason: str
    at: float
    """time.monotonic() of the change."""
    error: CementguardError | None = None
    status: Status | None = None
    """CONNECTED: the STATUS read right after the handshake (after a reconnect: what the device did
    while the host was away, e.g. STOPPED / HOST_LOST)."""


@dataclass(slots=True)
class LinkOptions:
    """How the link talks to the device. Defaults follow protocol/SPEC.md §7.5 and §9.

    The user-facing configuration is `host.settings.HostSettings` (TOML + environment);
    `LinkOptions.from_settings` turns it (or its `link` section) into these options.
    """

    command_timeout_s: float = 0.2
    """Wait for each ACK/NAK (SPEC §7.5: 200 ms; at 115200 baud with large batches allow more)."""
    retries: int = 3
    """Retries after the first attempt, each with the same cmd_id."""
    time_scale: float = 1.0
    """Simulated time runs this many times faster than wall time (`cementguard sim --time-scale`):
    heartbeat and silence periods are divided by it."""
    heartbeat_period_s: float | None = None
    """None: watchdog_ms / HEARTBEATS_PER_WATCHDOG / time_scale from DEVICE_INFO (SPEC §9.2 asks for
    watchdog_ms / 2 at least). A period at or above the device's watchdog is refused at connect
    time."""
    silence_factor: float = 1.0
    """The link is lost after silence_factor x watchdog_ms without a valid frame from the device."""
    baudrate: int = 921_600
    """For real serial ports (ignored by ptys and socket:// URLs)."""
    telemetry_queue: int = 512
    """Batches a telemetry subscriber may fall behind before the oldest are dropped (~10 s at 1 kHz)."""
    event_queue: int = 1024
    reconnect: bool = True
    """Reconnect by itself after a link loss (re-HELLO, re-read STATUS; never re-START)."""
    reconnect_initial_s: float = 0.05
    reconnect_max_s: float = 2.0
    """Backoff between reconnect attempts doubles from initial up to this bound."""
    reconnect_attempts: int | None = None
    """Give up (FAILED) after this many failed reconnect attempts; None: keep trying until closed."""

    def __post_init__(self) -> None:
        if self.command_timeout_s <= 0 or self.retries < 0:
            raise ValueError("command_timeout_s must be > 0 and retries >= 0")
        if not (0 < self.time_scale < math.inf and 0 < self.silence_factor < math.inf):
            raise ValueError(
                f"time_scale {self.time_scale} and silence_factor {self.silence_factor} "
                "must be finite and > 0"
            )
        if self.heartbeat_period_s is not None and not self.heartbeat_period_s > 0:
            raise ValueError("heartbeat_period_s must be > 0")
        if self.telemetry_queue < 1 or self.event_queue < 1:
            raise ValueError("queue sizes must be >= 1")
        if not 0 < self.reconnect_initial_s <= self.reconnect_max_s:
            raise ValueError("need 0 < reconnect_initial_s <= reconnect_max_s")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> LinkOptions:
        """Options from `host.settings.HostSettings` (uses its `link` section and `baud`) or from a
        `link` section alone; keyword arguments (e.g. ``time_scale=10``) win. Read by attribute name,
        so this module does not depend on the settings module."""
        section = getattr(settings, "link", settings)
        values: dict[str, Any] = {}
        for ours, theirs, scale in (
            ("command_timeout_s", "command_timeout_ms", 1e-3),
            ("heartbeat_period_s", "heartbeat_period_ms", 1e-3),
            ("reconnect_initial_s", "reconnect_backoff_min_s", 1.0),
            ("reconnect_max_s", "reconnect_backoff_max_s", 1.0),
            ("retries", "retries", None),
        ):
            value = getattr(section, theirs, None)
            if value is not None:
                values[ours] = value if scale is None else value * scale
        baud = getattr(settings, "baud", None)
        if baud is not None:
            values["baudrate"] = baud
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class LinkCounters:
    """Diagnostics, cumulative over the life of the link (reconnects included)."""

    frames_rx: int
    """Valid frames received (our version, decoded)."""
    frames_tx: int
    bytes_rx: int
    crc_errors: int
    cobs_errors: int
    overlong: int
    runts: int
    bytes_dropped: int
    """Bytes thrown away by the framing layer (garbage, damaged frames)."""
    lost_frames: int
    """Gaps in the device's sequence numbers."""
    version_mismatches: int
    unknown_types: int
    bad_lengths: int
    bad_values: int
    lost_samples: int
    """Telemetry samples missing between batches (first_index gaps) while connected."""
    missed_events: int
    """Gaps in event_index while connected."""
    retries: int
    """Command re-sends (same cmd_id) after an answer timeout."""
    timeouts: int
    """Commands that got no answer after all retries."""
    reconnects: int
    """Successful reconnects after a link loss."""
    link_losses: int
    dropped_batches: int
    """Telemetry batches dropped because a subscriber's queue was full."""
    dropped_events: int
    stale_answers: int
    """ACK/NAKs that matched no waiting command: the late original answer of a retried command, or
    the cached answer to a retry that came after the original."""

    @property
    def framing_errors(self) -> int:
        """Everything the framing layer dropped: garbage on the line, damaged frames."""
        return self.crc_errors + self.cobs_errors + self.overlong + self.runts

    RENAMED: ClassVar[dict[str, str]] = {"bytes_rx": "bytes_in"}
    """Fields named otherwise in the part that counts them (FramingCounters.bytes_in)."""

    @classmethod
    def compose(cls, stream: StreamCounters, tally: _Tally) -> LinkCounters:
        """A snapshot made of the parts that count: the framing layer's and the message layer's
        counters (`stream`) and the link's own (`tally`). Each field is taken by name from the one
        part that has it, never copied by hand, so a counter added to a part and here cannot be
        forgotten on the way (tests/host/test_link_counters.py checks that every field has exactly
        one source)."""
        parts = _counts(stream.framing) | _counts(stream) | _counts(tally)
        return cls(**{f.name: parts[cls.RENAMED.get(f.name, f.name)] for f in dataclasses.fields(cls)})


def _counts(part: Any) -> dict[str, int]:
    """The int fields of a counters dataclass, by name."""
    return {
        f.name: value for f in dataclasses.fields(part) if isinstance(value := getattr(part, f.name), int)
    }


@dataclass(slots=True)
class _Tally:
    frames_tx: int = 0
    lost_samples: int = 0
    missed_events: int = 0
    retries: int = 0
    timeouts: int = 0
    reconnects: int = 0
    link_losses: int = 0
    dropped_batches: int = 0
    dropped_events: int = 0
    stale_answers: int = 0
    frames_rx: int = 0


T = TypeVar("T")


class Subscription(Generic[T]):
    """A bounded queue of what the link receives, for one consumer.

    Registered when created, so nothing that arrives after that is missed. When the consumer falls
    `maxsize` items behind, the oldest item is dropped and counted (`dropped`, and the link's
    counters). Iterate with ``async for``, or `get(timeout)`. Iteration ends when the link is closed
    (not when it is lost: a reconnect continues the same subscription).
    """

    def __init__(
        self, registry: set[Subscription[T]], maxsize: int, on_drop: Callable[[], None], source: str = ""
    ) -> None:
        self._source = source
        self._items: deque[tuple[float, T]] = deque()
        self._maxsize = maxsize
        self._registry = registry
        self._on_drop = on_drop
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0
        self.received_at: float | None = None
        """time.perf_counter() at which the item last returned was read from the port."""
        registry.add(self)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def _push(self, item: T, t: float) -> None:
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            self._on_drop()
        self._items.append((t, item))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self) -> None:
        self._closed = True
        self._registry.discard(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stop receiving; items already queued can still be read."""
        self._end()

    def get_nowait(self) -> T | None:
        if not self._items:
            return None
        self.received_at, item = self._items.popleft()
        return item

    async def get(self, timeout: float | None = None) -> T:  # noqa: ASYNC109
        """The next item; TimeoutError after `timeout` s, LinkClosed once closed and drained."""
        async with asyncio.timeout(timeout):
            while not self._items:
                if self._closed:
                    raise LinkClosed(self._source)
                if self._waiter is not None:
                    raise RuntimeError("a Subscription has one consumer")
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        self.received_at, item = self._items.popleft()
        return item

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except LinkClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _NoAnswer(Exception):  # noqa: N818 - internal signal, never escapes
    def __init__(self, attempts: int) -> None:
        super().__init__(f"no answer after {attempts} attempts")
        self.attempts = attempts


@dataclass(slots=True)
class _Pending:
    cmd_id: int
    cmd_type: int
    future: asyncio.Future[tuple[Ack | Nak, Message | None]]
    reply: Message | None = None
    retried: bool = False


class _PortProtocol(asyncio.Protocol):
    """Binds one opened port to the link. Detached (all references cleared) when the port is dropped,
    so that late callbacks of an old port can never reach the link."""

    def __init__(self, link: Link, closed: asyncio.Future[None]) -> None:
        self.link: Link | None = link
        self.conn: _Connection | None = None
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        link, conn = self.link, self.conn
        if link is not None and conn is not None:
            link._on_data(conn, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        link, conn = self.link, self.conn
        self.link = self.conn = None
        if link is not None and conn is not None:
            link._on_port_closed(conn, exc)


@dataclass(eq=False, slots=True)
class _Connection:
    """One opened port. Only `Link._conn` refers to it: code that waits (commands, the keeper) holds
    its generation number instead, so that no coroutine frame, and no traceback of an exception
    raised through one, keeps a dropped port alive."""

    transport: asyncio.BaseTransport
    protocol: _PortProtocol
    gen: int
    keeper: asyncio.Task[None] | None = None
    exclusive_fd: int | None = None
    """The tty's descriptor while it is marked exclusive (host.tty_exclusive), None otherwise."""

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


CommandLike = Command | Callable[[int], Command]
"""A command message (its cmd_id is replaced: the link numbers commands), or a factory taking the
cmd_id, e.g. the message class itself (`Start`) or ``lambda cmd_id: plan.to_arm(cmd_id, age)``."""


class Link:
    """One controller behind one port URL. See the module docstring for what it does."""

    def __init__(self, url: str, settings: LinkOptions | None = None) -> None:
        self.url = url
        self.settings = settings or LinkOptions()
        self._stream = MessageStream()
        self._tally = _Tally()
        self._conn: _Connection | None = None
        self._closing_ports: set[asyncio.Future[None]] = set()
        self._link_state = LinkState.CLOSED
        self._link_reason = "not opened"
        self._fatal_error: CementguardError | None = None
        self._closed_by_host = False
        self._device: DeviceInfo | None = None
        self._syringe: SyringeInfo | None = None
        self._calibration: CalibrationInfo | None = None
        self._status: Status | None = None
        self._device_state: State | int | None = None
        self._pending: dict[int, _Pending] = {}
        self._cmd_id = random.randrange(0, 0xFFFF)  # a stale answer of an earlier host never matches
        self._tx_seq = 0
        self._gen = 0
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_rx = 0.0
        self._last_tx = 0.0
        self._t_open = time.monotonic()
        self._next_sample: int | None = None
        self._next_event: int | None = None
        self._telemetry_config: tuple[int, int] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._event_subs: set[Subscription[Event]] = set()
        self._telemetry_subs: set[Subscription[TelemetryBatch]] = set()
        self._link_subs: set[Subscription[LinkChange]] = set()
        self._state_waiters: list[tuple[frozenset[State | int], asyncio.Future[State | int]]] = []
        self._link_waiters: list[tuple[frozenset[LinkState], asyncio.Future[LinkState]]] = []
        self._heartbeats_suspended = False
        self._port_lock: PortLock | None = None
        self._handshake = True

    # -- what the caller sees -------------------------------------------------------------------

    @property
    def link_state(self) -> LinkState:
        return self._link_state

    @property
    def link_reason(self) -> str:
        """Why the link is in its current state (e.g. what made it LOST)."""
        return self._link_reason

    @property
    def device(self) -> DeviceInfo | None:
        """DEVICE_INFO of the last handshake."""
        return self._device

    @property
    def syringe(self) -> SyringeInfo | None:
        """The last SYRINGE_INFO (handshake, SET_SYRINGE, GET_CALIBRATION; SPEC §5.22): the syringe in
        force. None from a device without capability SETUP. Its `cmd_id` names the command it answered."""
        return self._syringe

    @property
    def calibration(self) -> CalibrationInfo | None:
        """The last CALIBRATION_INFO (handshake, ZERO, CALIBRATE_*, GET_CALIBRATION): the calibration
        in force, recorded with every run."""
        return self._calibration

    @property
    def status(self) -> Status | None:
        """The latest STATUS received (answer to GET_STATUS, ARM, SET_LIMITS, or unsolicited)."""
        return self._status

    @property
    def state(self) -> State | int | None:
        """The device's state as last reported by any frame (ACK, EVENT, STATUS, HEARTBEAT, telemetry).
        A plain int is a state this host does not know (a newer device). Stale unless CONNECTED."""
        return self._device_state

    @property
    def fatal_error(self) -> CementguardError | None:
        return self._fatal_error

    @property
    def counters(self) -> LinkCounters:
        return LinkCounters.compose(self._stream.counters, self._tally)

    def subscribe_events(self, maxsize: int | None = None) -> Subscription[Event]:
        return Subscription(
            self._event_subs, maxsize or self.settings.event_queue, self._count_dropped_event, self.url
        )

    def subscribe_telemetry(self, maxsize: int | None = None) -> Subscription[TelemetryBatch]:
        return Subscription(
            self._telemetry_subs,
            maxsize or self.settings.telemetry_queue,
            self._count_dropped_batch,
            self.url,
        )

    def link_changes(self, maxsize: int = 256) -> Subscription[LinkChange]:
        return Subscription(self._link_subs, maxsize, lambda: None, self.url)

    async def wait_for_state(self, *states: State | int, timeout: float | None) -> State | int:  # noqa: ASYNC109
        """Until the device reports one of `states`. TimeoutError, or LinkLost if the link goes down
        meanwhile (the state is then unknown)."""
        if not states:
            raise ValueError("wait_for_state needs at least one state")
        self._check_ready()
        if self._device_state in states:
            return self._device_state
        waiter: asyncio.Future[State | int] = asyncio.get_running_loop().create_future()
        entry = (frozenset(states), waiter)
        self._state_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)

    async def wait_for_link(self, *states: LinkState, timeout: float | None) -> LinkState:  # noqa: ASYNC109
        """Until the link is in one of `states` (e.g. CONNECTED again after a loss). Raises the error
        that ended the link (LinkClosed, ProtocolVersionError, ...) if it can no longer get there."""
        if self._link_state in states:
            return self._link_state
        waiter: asyncio.Future[LinkState] = asyncio.get_running_loop().create_future()
        entry = (frozenset(states), waiter)
        self._link_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            if entry in self._link_waiters:
                self._link_waiters.remove(entry)

    # -- open and close ---------------------------------------------------------------------------

    async def open(self, *, handshake: bool = True) -> None:
        """Take the port's lock, open the port and handshake. Raises PortBusy (another session holds
        the port: the error names it), PortNotFound / PortUnavailable, DeviceNotResponding,
        ProtocolVersionError; the link is then CLOSED (FAILED for a version mismatch).

        `handshake=False` opens the port without a session: no HELLO, no heartbeat, no reconnect.
        The device then accepts only STOP and GET_STATUS (SPEC §7.6), which is all `cementguard
        stop` needs to send its STOP first, before anything else."""
        if self._link_state is not LinkState.CLOSED or self._closed_by_host:
            raise RuntimeError(f"Link.open: the link is {self._link_state.value}; a Link opens once")
        self._loop = asyncio.get_running_loop()
        self._t_open = time.monotonic()
        self._handshake = handshake
        if not handshake:
            self.settings = dataclasses.replace(self.settings, reconnect=False)
        try:
            lock = PortLock(self.url)
            lock.acquire()
            self._port_lock = lock
            await self._connect()
        except BaseException as exc:
            self._drop_connection()
            self._release_lock()
            if self._fatal_error is None:
                error = exc if isinstance(exc, CementguardError) else None
                self._set_link_state(LinkState.CLOSED, f"open failed: {exc}", error=error)
            raise

    async def close(self) -> None:
        """Close the port and end every subscription. Sends nothing (in particular no STOP): the
        controller owns safety and stops the pump by itself when its host goes away (HOST_LOST)."""
        if self._closed_by_host:
            return
        self._closed_by_host = True
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._drop_connection()
        self._fail_all(lambda: LinkClosed(self.url))
        await self._await_closing_ports()
        self._release_lock()
        if self._link_state is not LinkState.FAILED:
            self._set_link_state(LinkState.CLOSED, "closed by the host")
        subscriptions: list[Subscription[Any]] = [
            *self._event_subs,
            *self._telemetry_subs,
            *self._link_subs,
        ]
        for sub in subscriptions:
            sub._end()

    @property
    def port_lock(self) -> PortLock | None:
        """The lock this link holds on its port while open (host.port_lock), None when closed."""
        return self._port_lock

    def _release_lock(self) -> None:
        lock, self._port_lock = self._port_lock, None
        if lock is not None:
            lock.release()

    def suspend_heartbeats(self) -> None:
        """Stop sending heartbeats (everything else still works): plays a hung host, so HIL can show
        the device's watchdog stopping the pump with HOST_LOST. Test and HIL use only."""
        self._heartbeats_suspended = True

    def resume_heartbeats(self) -> None:
        """Undo `suspend_heartbeats`."""
        self._heartbeats_suspended = False

    # -- commands -----------------------------------------------------------------------------------

    async def command(
        self, command: CommandLike, *, answer_timeout_s: float | None = None, retries: int | None = None
    ) -> Ack:
        """Send a command and wait for its ACK. NAK -> CommandRefused; no answer -> CommandTimeout."""
        ack, _ = await self.request(command, answer_timeout_s=answer_timeout_s, retries=retries)
        return ack

    async def request(
        self, command: CommandLike, *, answer_timeout_s: float | None = None, retries: int | None = None
    ) -> tuple[Ack, Message | None]:
        """As `command`, also returning the reply that preceded the ACK (STATUS, DEVICE_INFO) or None."""
        self._check_ready()
        built: Command | None = None
        kind = getattr(command, "TYPE", None)  # a message, or a message class used as factory
        if kind is None:
            built = self._build(command)  # an opaque factory: build it now to see its type
            kind = built.TYPE
        if kind == MsgType.STOP:
            # STOP never queues behind another command (SPEC §7.5): it is sent at once.
            return await self._run(built or self._build(command), answer_timeout_s, retries)
        async with self._lock:
            self._check_ready()
            return await self._run(built or self._build(command), answer_timeout_s, retries)

    def next_cmd_id(self) -> int:
        """Commands are numbered 1..65535, 1, ... (0 is never used)."""
        self._cmd_id = self._cmd_id % 0xFFFF + 1
        return self._cmd_id

    def _build(self, command: CommandLike) -> Command:
        cmd_id = self.next_cmd_id()
        if isinstance(command, Command):
            return dataclasses.replace(command, cmd_id=cmd_id)  # type: ignore[type-var]
        built = command(cmd_id)
        if not isinstance(built, Command):
            raise TypeError(f"a command factory returned {built!r}, not a protocol Command")
        if built.cmd_id != cmd_id:
            built = dataclasses.replace(built, cmd_id=cmd_id)  # type: ignore[type-var]
        return built

    async def _run(
        self, cmd: Command, answer_timeout_s: float | None, retries: int | None
    ) -> tuple[Ack, Message | None]:
        if self._conn is None:
            raise LinkLost(self._link_reason)
        gen = self._conn.gen
        wait = self.settings.command_timeout_s if answer_timeout_s is None else answer_timeout_s
        retries = self.settings.retries if retries is None else retries
        try:
            answer, reply = await self._exchange(gen, cmd, wait, retries)
        except _NoAnswer as exc:
            self._tally.timeouts += 1
            error = CommandTimeout(cmd, exc.attempts, wait)
            self._lose(error.reason)
            raise error from None
        if isinstance(answer, Nak):
            if answer.code == NakCode.NO_SESSION:
                # The device's watchdog closed our session (frames lost one way): re-handshake.
                self._lose("the device has no session for this host (NAK NO_SESSION): its watchdog expired")
            raise CommandRefused(cmd, answer)
        if isinstance(cmd, SetTelemetry):
            self._telemetry_config = (cmd.divider, cmd.batch_samples)  # restored after a reconnect
        return answer, reply

    async def _exchange(
        self, gen: int, cmd: Command, wait: float, retries: int
    ) -> tuple[Ack | Nak, Message | None]:
        loop = asyncio.get_running_loop()
        pending = _Pending(cmd.cmd_id, int(cmd.TYPE), loop.create_future())
        self._pending[cmd.cmd_id] = pending
        future = pending.future
        try:
            for attempt in range(retries + 1):
                if attempt:
                    self._tally.retries += 1
                    pending.retried = True
                self._send(gen, cmd)
                done, _ = await asyncio.wait((future,), timeout=wait)
                if done:
                    return future.result()
            raise _NoAnswer(retries + 1)
        finally:
            if self._pending.get(cmd.cmd_id) is pending:
                del self._pending[cmd.cmd_id]
            if future.done():
                if not future.cancelled():
                    future.exception()  # retrieved: no "never retrieved" warning
            else:
                future.cancel()

    def _send(self, gen: int, msg: Message) -> None:
        conn = self._conn
        if conn is None or conn.gen != gen or conn.transport.is_closing():
            raise LinkLost(f"the port closed ({self._link_reason})")
        frame = encode_frame(msg, self._tx_seq)
        self._tx_seq = (self._tx_seq + 1) & 0xFFFF
        conn.write(frame)
        self._tally.frames_tx += 1
        self._last_tx = self._now()

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else time.monotonic()

    def _check_ready(self) -> None:
        if self._fatal_error is not None:
            raise _fresh(self._fatal_error)
        if self._closed_by_host:
            raise LinkClosed(self.url)
        if self._link_state is not LinkState.CONNECTED:
            raise LinkLost(f"the link is {self._link_state.value}: {self._link_reason}")

    # -- connect ----------------------------------------------------------------------------------

    async def _open_port(self) -> _Connection:
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        protocol = _PortProtocol(self, closed)
        url = self.url
        kwargs: dict[str, Any] = (
            {} if url.startswith("socket://") else {"baudrate": self.settings.baudrate, "exclusive": True}
        )
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                loop, lambda: protocol, url, **kwargs
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise _port_error(url, exc) from exc
        self._gen += 1
        conn = _Connection(transport, protocol, self._gen)
        protocol.conn = conn
        self._claim_exclusive(conn)
        self._closing_ports.add(closed)
        closed.add_done_callback(self._closing_ports.discard)
        return conn

    def _follow_device(self) -> None:
        """Before a reconnect opens the port: when another device now answers to its name (a new
        simulator's pty took the dead one's number), take that device's lock, or fail this attempt
        with PortBusy when another session holds it (host.port_lock.port_key)."""
        old = self._port_lock
        if old is None or old.current:
            return
        new = PortLock(self.url)
        new.acquire()
        socket = old.holder.socket if old.holder is not None else None
        old.release()
        self._port_lock = new
        new.set_socket(socket)
        log.info("%s is another device now (a new pty at that path): took its lock", self.url)

    def _claim_exclusive(self, conn: _Connection) -> None:
        """Mark the opened tty exclusive (TIOCEXCL: no other program opens it) and record its
        descriptor in the lock, for `cementguard stop`'s emergency path (host.tty_exclusive)."""
        port = conn.transport.get_extra_info("serial")
        fd = getattr(port, "fd", None)
        if not isinstance(fd, int) or fd < 0 or not tty_exclusive.claim(fd):
            return
        conn.exclusive_fd = fd
        tty_exclusive.allow_borrowing()
        if self._port_lock is not None:
            self._port_lock.set_tty_fd(fd)

    async def _connect(self) -> None:
        """Open the port and handshake; on success the link is CONNECTED. On failure the port is
        dropped again and the exception propagates (the caller sets the link state)."""
        self._set_link_state(LinkState.CONNECTING, f"opening {self.url}")
        await self._await_closing_ports()
        self._follow_device()
        self._conn = await self._open_port()
        gen = self._conn.gen
        if self._closed_by_host:
            self._drop_connection()
            raise LinkClosed(self.url)
        self._stream.reset()  # a new byte stream: no partial frame, no sequence history
        self._next_sample = None
        self._next_event = None
        self._last_rx = self._now()
        try:
            self._conn.write(DELIMITER)  # SPEC §3.1: a single 0x00 before our first frame
            if not self._handshake:
                self._set_link_state(LinkState.CONNECTED, f"port {self.url} open, without a session")
                return
            timeout, retries = self.settings.command_timeout_s, self.settings.retries
            self._syringe = self._calibration = None  # this handshake's, or none (no capability SETUP)
            info = await self._hello(gen, timeout, retries)
            if info.protocol_version != PROTOCOL_VERSION:
                raise self._fatal(ProtocolVersionError(info.protocol_version))
            self._device = info
            asked = self.settings.heartbeat_period_s
            watchdog_s = info.watchdog_ms / 1000.0 / self.settings.time_scale
            if asked is not None and asked >= watchdog_s:
                raise CementguardError(
                    f"heartbeat period {asked * 1000:.0f} ms is at or above the device's watchdog "
                    f"({watchdog_s * 1000:.0f} ms at time scale {self.settings.time_scale:g}): "
                    "the device would stop with HOST_LOST"
                )
            get_status = GetStatus(cmd_id=self.next_cmd_id())
            try:
                answer, status = await self._exchange(gen, get_status, timeout, retries)
            except _NoAnswer as exc:
                raise DeviceNotResponding(self.url, exc.attempts, timeout) from None
            if isinstance(answer, Nak):
                raise CommandRefused(get_status, answer)
            if self._telemetry_config is not None:
                # Not a motion command: the subscriber asked for this stream, restore it.
                divider, batch = self._telemetry_config
                config = SetTelemetry(cmd_id=self.next_cmd_id(), divider=divider, batch_samples=batch)
                with contextlib.suppress(_NoAnswer):
                    await self._exchange(gen, config, timeout, retries)
            if self._status is not None and self._status.event_count:
                self._next_event = self._status.event_count
        except BaseException:
            self._drop_connection()
            raise
        if self._conn is None or self._conn.gen != gen:
            raise LinkLost(f"the port closed during the handshake ({self._link_reason})")
        self._conn.keeper = asyncio.get_running_loop().create_task(self._keep_alive(gen))
        status = self._status
        what = "" if status is None else f": device {_name(status.state)}"
        if status is not None and status.stop_reason:
            what += f" ({_name(status.stop_reason)}, source {_name(status.stop_source)})"
        self._set_link_state(LinkState.CONNECTED, f"session open on {self.url}{what}", status=status)

    async def _hello(self, gen: int, wait: float, retries: int) -> DeviceInfo:
        """HELLO -> DEVICE_INFO + ACK, with the command retry policy (SPEC §7.5): up to `retries`
        re-sends of the same HELLO (every HELLO is executed, never answered from the cache, §7.4) when
        no answer came, or when the ACK came without a valid DEVICE_INFO before it (a damaged reply).

        When every attempt failed, the error says what actually arrived meanwhile (nothing at all,
        bytes that never made a valid frame, or frames of which none was the DEVICE_INFO), so that
        the operator looks at the power and the baud rate only when nothing arrived at all."""
        hello = Hello(cmd_id=self.next_cmd_id(), protocol_version=PROTOCOL_VERSION)
        before = _Received.snapshot(self)
        acks_without_info = 0
        attempts = retries + 1
        for attempt in range(attempts):
            if attempt:
                self._tally.retries += 1
            try:
                answer, info = await self._exchange(gen, hello, wait, 0)
            except _NoAnswer:
                continue
            if isinstance(answer, Nak):
                raise CommandRefused(hello, answer)
            if isinstance(info, DeviceInfo):
                return info
            acks_without_info += 1  # its DEVICE_INFO was damaged or lost on the way
        received = _Received.snapshot(self).since(before)
        raise DeviceNotResponding(self.url, attempts, wait, received=received.describe(acks_without_info))

    def _heartbeat_period(self, info: DeviceInfo) -> float:
        watchdog_s = info.watchdog_ms / 1000.0 / self.settings.time_scale
        asked = self.settings.heartbeat_period_s
        return watchdog_s / HEARTBEATS_PER_WATCHDOG if asked is None else asked

    @property
    def next_heartbeat_at(self) -> float | None:
        """Event-loop time (``loop.time()``) at which the keeper sends the next HEARTBEAT if nothing
        else is sent before; None without a session. For diagnostics and the stall tests."""
        info = self._device
        conn = self._conn
        if info is None or conn is None or conn.keeper is None or self._heartbeats_suspended:
            return None
        return self._last_tx + self._heartbeat_period(info) * BEAT_EARLY

    async def _keep_alive(self, gen: int) -> None:
        """Heartbeats out; a silent device in (SPEC §9.2, §9.3)."""
        info = self._device
        assert info is not None
        scale = self.settings.time_scale
        period = self._heartbeat_period(info)
        beat_after = period * BEAT_EARLY
        silence = max(info.watchdog_ms / 1000.0 / scale * self.settings.silence_factor, MIN_SILENCE_S)
        loop = asyncio.get_running_loop()
        while self._conn is not None and self._conn.gen == gen:
            now = loop.time()
            quiet = now - self._last_rx
            if quiet > silence and self._read_waiting(gen):
                continue  # bytes were waiting (this process was frozen): judge silence on them first
            if quiet > silence:
                self._lose(
                    f"no valid frame from the device for {quiet * 1000:.0f} ms "
                    f"(its heartbeat is every {info.watchdog_ms // 2} ms)"
                )
                return
            if now - self._last_tx >= beat_after and not self._heartbeats_suspended:
                uptime = int((time.monotonic() - self._t_open) * 1000) & 0xFFFF_FFFF
                try:
                    self._send(gen, Heartbeat(uptime_ms=uptime, state=State.IDLE))
                except LinkLost:
                    return  # the port is going away; its connection_lost reports it
            next_beat = self._last_tx + beat_after if not self._heartbeats_suspended else now + period
            wake = min(next_beat, self._last_rx + silence) - loop.time()
            await asyncio.sleep(max(wake, 0.001))

    def _read_waiting(self, gen: int) -> bool:
        """Read and handle what the port has already received, before a silence is declared: after
        this process was frozen (SIGSTOP, a stalled machine), the device's frames, such as the
        HOST_LOST event its watchdog sent meanwhile, wait in the input buffer. Declaring the link
        lost first would close the port and throw them away. True if any byte was read."""
        conn = self._conn
        if conn is None or conn.gen != gen:
            return False
        port = conn.transport.get_extra_info("serial")
        try:
            waiting = int(port.in_waiting) if port is not None else 0
            data = port.read(min(waiting, 1 << 16)) if waiting else b""
        except (OSError, serial.SerialException, AttributeError):
            return False
        if data:
            self._on_data(conn, data)
        return bool(data)

    async def _reconnect(self) -> None:
        s = self.settings
        delay = s.reconnect_initial_s
        attempt = 0
        while not self._closed_by_host and self._fatal_error is None:
            attempt += 1
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failed attempt is retried, whatever went wrong
                if self._fatal_error is not None or self._closed_by_host:
                    return
                error = exc if isinstance(exc, CementguardError) else CementguardError(repr(exc))
                if s.reconnect_attempts is not None and attempt >= s.reconnect_attempts:
                    why = f"gave up after {attempt} reconnect attempts: {exc}"
                    self._set_link_state(LinkState.FAILED, why, error=error)
                    return
                self._set_link_state(
                    LinkState.LOST, f"reconnect attempt {attempt} failed: {exc}", error=error
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, s.reconnect_max_s)
                continue
            self._tally.reconnects += 1
            return

    async def _await_closing_ports(self) -> None:
        if self._closing_ports:
            await asyncio.wait(list(self._closing_ports), timeout=2.0)

    # -- loss -----------------------------------------------------------------------------------------

    def _drop_connection(self) -> None:
        """Forget the current port: abort it (closed in the background), and clear every reference."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        keeper, conn.keeper = conn.keeper, None
        if keeper is not None and keeper is not asyncio.current_task():
            keeper.cancel()
        conn.protocol.link = None
        conn.protocol.conn = None
        fd, conn.exclusive_fd = conn.exclusive_fd, None
        if fd is not None and not conn.transport.is_closing():
            tty_exclusive.release(fd)  # a pty keeps the mark past the close otherwise
            if self._port_lock is not None:
                self._port_lock.set_tty_fd(None)
        if not conn.transport.is_closing():
            conn.transport.abort()  # type: ignore[attr-defined]

    def _lose(self, reason: str) -> None:
        """The link is lost: report it, fail what waits, drop the port, reconnect."""
        if self._link_state is not LinkState.CONNECTED:
            return
        self._tally.link_losses += 1
        self._drop_connection()
        self._fail_all(lambda: LinkLost(reason))
        self._set_link_state(LinkState.LOST, reason, error=LinkLost(reason))  # never raised: no traceback
        if self.settings.reconnect and not self._closed_by_host:
            loop = self._loop or asyncio.get_running_loop()
            self._reconnect_task = loop.create_task(self._reconnect())

    def _fatal(self, error: CementguardError) -> CementguardError:
        """Give up for good (another protocol version): nothing more is sent."""
        if self._fatal_error is None:
            self._fatal_error = error
            self._drop_connection()
            self._fail_all(lambda: _fresh(error))
            self._set_link_state(LinkState.FAILED, str(error), error=error)
        return self._fatal_error

    def _fail_all(self, error: Callable[[], Exception]) -> None:
        """Fail every waiting command and state wait, each with its own exception instance."""
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error())
        for _states, waiter in self._state_waiters:
            if not waiter.done():
                waiter.set_exception(error())

    def _on_port_closed(self, conn: _Connection, exc: Exception | None) -> None:
        if conn is not self._conn:
            return
        reason = f"the port closed ({exc})" if exc else "the port closed"
        if self._link_state is LinkState.CONNECTED:
            self._lose(reason)
        else:
            self._drop_connection()
            self._fail_all(lambda: LinkLost(reason))

    def _set_link_state(
        self,
        state: LinkState,
        reason: str,
        error: CementguardError | None = None,
        status: Status | None = None,
    ) -> None:
        if state is self._link_state and reason == self._link_reason:
            return
        self._link_state = state
        self._link_reason = reason
        level = logging.WARNING if state in (LinkState.LOST, LinkState.FAILED) else logging.INFO
        log.log(level, "link %s %s: %s", self.url, state.value, reason)
        change = LinkChange(state, reason, time.monotonic(), error, status)
        t = time.perf_counter()
        for sub in list(self._link_subs):
            sub._push(change, t)
        final = state is LinkState.FAILED or (state is LinkState.CLOSED and self._closed_by_host)
        for states, waiter in self._link_waiters:
            if waiter.done():
                continue
            if state in states:
                waiter.set_result(state)
            elif final:  # the state waited for can no longer come
                waiter.set_exception(error or LinkClosed(self.url))

    # -- receive --------------------------------------------------------------------------------------

    def _on_data(self, conn: _Connection, data: bytes) -> None:
        if conn is not self._conn:
            return
        t = time.perf_counter()
        alive = False
        tally = self._tally
        for item in self._stream.feed(data):
            if isinstance(item, Rejected):
                if item.reason == RejectReason.VERSION_MISMATCH:
                    self._fatal(ProtocolVersionError(_foreign_version(item)))
                    return
                alive = True  # our version, passed framing: the device is alive (SPEC §4.4)
                continue
            alive = True
            tally.frames_rx += 1
            msg = item.message
            kind = type(msg)
            if kind is TelemetryBatch:
                self._on_telemetry(msg, t)  # type: ignore[arg-type]
            elif kind is Ack or kind is Nak:
                self._on_answer(msg)  # type: ignore[arg-type]
            elif kind is Heartbeat:
                self._set_state(msg.state)  # type: ignore[attr-defined]
            elif kind is Event:
                self._on_event(msg, t)  # type: ignore[arg-type]
            elif kind is Status:
                self._status = msg  # type: ignore[assignment]
                self._set_state(msg.state)  # type: ignore[attr-defined]
                self._attach_reply(msg)
            elif kind is DeviceInfo:
                self._attach_reply(msg)
            elif kind is MotionStatus:
                self._set_state(msg.state)  # type: ignore[attr-defined]
                self._attach_reply(msg)
            elif kind is SyringeInfo:
                self._syringe = msg  # type: ignore[assignment]
            elif kind is CalibrationInfo:
                self._calibration = msg  # type: ignore[assignment]
            if conn is not self._conn:
                return  # a handler dropped this port (device reset, version mismatch)
        if alive:
            self._last_rx = self._now()

    def _on_telemetry(self, batch: TelemetryBatch, t: float) -> None:
        n = len(batch.samples)
        expected = self._next_sample
        if expected is not None and batch.first_index != expected:
            gap = (batch.first_index - expected) & 0xFFFF_FFFF
            if gap < 0x8000_0000:  # forward: samples lost; backward: the device restarted counting
                self._tally.lost_samples += gap
        self._next_sample = (batch.first_index + n) & 0xFFFF_FFFF
        if n:
            raw = int(batch.samples["state"][-1])
            self._set_state(_STATES.get(raw, raw))
        for sub in self._telemetry_subs:
            sub._push(batch, t)

    def _on_event(self, event: Event, t: float) -> None:
        reset = event.kind == EventKind.POWER_UP
        if reset:
            self._next_event = event.event_index + 1
            self._next_sample = None
        else:
            expected = self._next_event
            if expected is not None and event.event_index > expected:
                self._tally.missed_events += event.event_index - expected
            self._next_event = event.event_index + 1
        self._set_state(event.state)
        for sub in self._event_subs:
            sub._push(event, t)
        if reset and self._link_state is LinkState.CONNECTED and self._handshake:  # sessionless: none to lose
            cause = _name(ResetCause(event.detail)) if event.detail in _RESET_CAUSES else str(event.detail)
            self._lose(f"the device reset (POWER_UP, cause {cause}): its session is gone")

    def _on_answer(self, answer: Ack | Nak) -> None:
        pending = self._pending.get(answer.cmd_id)
        if pending is None or pending.future.done() or int(answer.cmd_type) != pending.cmd_type:
            self._tally.stale_answers += 1
            if isinstance(answer, Nak) and answer.code == NakCode.VERSION_MISMATCH:
                self._fatal(ProtocolVersionError(answer.detail))
            return
        if isinstance(answer, Nak) and answer.code == NakCode.VERSION_MISMATCH:
            self._fatal(ProtocolVersionError(answer.detail))
            return
        if not pending.retried:
            # A cached answer to a retry carries the state of the first attempt: not current.
            self._set_state(answer.state)
        pending.future.set_result((answer, pending.reply))

    def _attach_reply(self, msg: Message) -> None:
        cmd_id = getattr(msg, "cmd_id", 0)
        if cmd_id:
            pending = self._pending.get(cmd_id)
            if pending is not None and not pending.future.done():
                pending.reply = msg

    def _set_state(self, state: State | int) -> None:
        if state == self._device_state:
            return
        self._device_state = state
        for states, waiter in self._state_waiters:
            if state in states and not waiter.done():
                waiter.set_result(state)

    def _count_dropped_batch(self) -> None:
        self._tally.dropped_batches += 1

    def _count_dropped_event(self) -> None:
        self._tally.dropped_events += 1


_RESET_CAUSES = {int(c) for c in ResetCause}


@dataclass(frozen=True, slots=True)
class _Received:
    """What came in on the port during a handshake, to explain why it failed."""

    bytes_rx: int
    frames_rx: int
    crc_errors: int
    cobs_errors: int
    other_errors: int
    """Runts, overlong runs and frames the message layer rejected (length, value, type)."""
    foreign: int
    """Frames of another protocol version."""

    @classmethod
    def snapshot(cls, link: Link) -> _Received:
        c = link._stream.counters
        f = c.framing
        return cls(
            bytes_rx=f.bytes_in,
            frames_rx=link._tally.frames_rx,
            crc_errors=f.crc_errors,
            cobs_errors=f.cobs_errors,
            other_errors=f.runts + f.overlong + c.bad_lengths + c.bad_values + c.unknown_types,
            foreign=c.version_mismatches,
        )

    def since(self, before: _Received) -> _Received:
        return _Received(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(before))))  # noqa: B905

    def describe(self, acks_without_info: int) -> str:
        if self.bytes_rx == 0:
            return (
                "nothing was received. Is the controller powered, is this its port, "
                "and does the baud rate match?"
            )
        damaged = [
            f"{n} {what}"
            for n, what in (
                (self.crc_errors, "CRC errors"),
                (self.cobs_errors, "COBS errors"),
                (self.other_errors, "malformed frames"),
                (self.foreign, "frames of another protocol version"),
            )
            if n
        ]
        damage = ", ".join(damaged) if damaged else "no damaged frame"
        if self.frames_rx == 0:
            return (
                f"{self.bytes_rx} bytes arrived but no valid frame ({damage}): line noise, "
                "another device on this port, or a baud rate that does not match?"
            )
        acks = f"{acks_without_info} HELLO ACKs without their DEVICE_INFO, " if acks_without_info else ""
        return (
            f"{self.frames_rx} valid frames arrived but none was a valid DEVICE_INFO "
            f"({acks}{damage}): a noisy or lossy line?"
        )


def _fresh(error: CementguardError) -> CementguardError:
    """A new instance of a stored error, so that raising it again does not pile up tracebacks."""
    if isinstance(error, ProtocolVersionError):
        return ProtocolVersionError(error.device_version, error.host_version)
    return error


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _foreign_version(rejected: Rejected) -> int:
    """The version a foreign device speaks: a NAK VERSION_MISMATCH says it in `detail` (the NAK
    layout is frozen for every version, SPEC §11.4); any other frame says it in its header."""
    header = rejected.header
    if header.msg_type == MsgType.NAK and len(rejected.body) == Nak.body_size():
        nak = Nak.unpack_body(rejected.body)
        if nak.code == NakCode.VERSION_MISMATCH and nak.detail > 0:
            return nak.detail
    return header.version


def _port_error(url: str, exc: BaseException) -> PortError:
    if isinstance(exc, ValueError):
        return PortUnavailable(url, f"not a valid port or URL ({exc})")
    if isinstance(exc, ConnectionRefusedError):
        return PortNotFound(url, "connection refused")
    if isinstance(exc, socket.gaierror):
        return PortNotFound(url, f"unknown host: {exc}")
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return PortNotFound(url)
    text = str(exc)
    if "No such file or directory" in text:
        return PortNotFound(url)
    if code == errno.EBUSY:  # TIOCEXCL (host.tty_exclusive): the kernel refuses every other open
        return PortUnavailable(
            url,
            "the device is open exclusively (TIOCEXCL) in another program (not a cementguard session: "
            "those name themselves); a simulator's pty stays so after a cementguard session was "
            "killed: restart the simulator",
        )
    if "exclusively lock" in text:  # pyserial's exclusive=True: another program flock()ed the device
        return PortUnavailable(
            url, "another program holds the device locked (not a cementguard session: those name themselves)"
        )
    return PortUnavailable(url, text)
