"""The bridge: the controller's state, telemetry and events out to MQTT, stop requests in.

The broker is never on the safety path (docs/design.md):
- what goes out is put in a bounded queue (the oldest dropped and counted when it is full) by tasks
  that only read the link's subscriptions: nothing the link or the controller does ever waits on
  the broker, and an outage costs published messages, never a delayed frame;
- the connection to the broker is retried forever with bounded exponential backoff; `run` raises
  nothing because of the broker;
- a message on a stop topic stops the injection *before* anything else is done with it: the STOP
  is started from the MQTT client's receive callback, the moment the message is read off the socket,
  so neither a malformed payload, nor an oversized one, nor a busy consumer can hold it back.
  Parsing and logging come after;
- nothing but a stop is accepted: a request on the command topic (arm, start, resume, clear, limits
  or anything else) is refused, counted, logged and answered on the refused topic. Never forwarded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import aiomqtt
import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from host.client import DeviceClient, LinkChange, LinkState
from host.errors import CementguardError
from host.mqtt._aiomqtt_adapter import retrieve_disconnect, stamped_queue_type
from host.mqtt._options import MqttOptions
from host.mqtt._payloads import (
    EventPayload,
    RefusalPayload,
    StatePayload,
    TelemetryPayload,
    describe_request,
    enum_name,
    parse_stop_request,
    stop_lateness,
)
from host.mqtt._topics import OFFLINE, Topics
from host.pump import Consumer, ConsumerFailure, StreamPump
from host.relief_notice import relief_notice, relief_notice_ends
from host.stops import StopRequests, source_label
from protocol import Event, EventKind, Flags, State, StopReason, StopSource, TelemetryBatch
from protocol.models import TelemetryRecord, kpa, ml

__all__ = ["BridgeCounters", "MqttBridge"]

log = logging.getLogger(__name__)

INBOX_LIMIT = 256
"""Incoming messages waiting for the consumer (logging, refusals); beyond it new ones are dropped.
A stop is started before this queue, so a full queue never loses a stop."""
PUBLISH_TIMEOUT_S = 5.0
"""A QoS 1 publish not acknowledged within this is taken as a broken connection (reconnect)."""


@dataclass
class BridgeCounters:
    """What the bridge did, since it was made. All counts."""

    published: int = 0
    """Messages handed to the broker (QoS 1: acknowledged)."""
    dropped: int = 0
    """Outgoing messages dropped because the bounded queue was full (the broker slow or away)."""
    reconnects: int = 0
    """Connections to the broker after the first."""
    malformed: int = 0
    """Stop requests whose payload was not a valid request (they stopped all the same)."""
    oversized: int = 0
    """Stop requests beyond MqttOptions.max_request_bytes (they stopped all the same, unparsed)."""
    refused: int = 0
    """Requests for anything but a stop, refused and answered on the refused topic."""
    stops_forwarded: int = 0
    """STOPs from MQTT acknowledged by the controller."""
    stops_received: int = 0
    """Messages on the stop topics (retained ones excluded)."""
    stops_unsent: int = 0
    """Stop requests that could not be sent because the link was down (the controller had stopped
    itself: HOST_LOST)."""
    late_stops: int = 0
    """Stops that arrived more than LATE_STOP_S after their `sent_at` (queued by the broker while the
    bridge was away): acted on, and recorded with "late" in their origin."""
    stale: int = 0
    """Retained messages on a stop topic (old requests replayed by the broker): logged, not acted on."""
    dropped_samples: int = 0
    """Telemetry samples dropped from the bridge's bounded aggregation buffer."""
    inbox_dropped: int = 0
    """Incoming non-stop messages dropped because the consumer fell INBOX_LIMIT behind."""


class _Outbox:
    """Bounded FIFO of messages to publish; full: drop the oldest, count it. Never blocks a producer."""

    def __init__(self, size: int, counters: BridgeCounters) -> None:
        self._items: collections.deque[tuple[str, bytes, int, bool]] = collections.deque()
        self._size = size
        self._counters = counters
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        if len(self._items) >= self._size:
            self._items.popleft()
            self._counters.dropped += 1
        self._items.append((topic, payload, qos, retain))
        self._ready.set()

    def put_back(self, item: tuple[str, bytes, int, bool]) -> None:
        """A message whose publish failed goes back to the front, unless newer ones filled the queue."""
        if len(self._items) >= self._size:
            self._counters.dropped += 1
            return
        self._items.appendleft(item)
        self._ready.set()

    async def get(self) -> tuple[str, bytes, int, bool]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class MqttBridge:
    """One controller on one broker. `await bridge.run()` until cancelled."""

    def __init__(
        self,
        controller: DeviceClient,
        options: MqttOptions,
        stops: StopRequests | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        """`stops`: the stop requests of the process that records (the dashboard, `run`): MQTT stop
        requests are noted there too, and its owner matches them with the STOP events for its
        recording. The bridge matches against its own copy for the events topic, so it never takes
        a request away from the recording.

        Every line the bridge has to say goes to the `host.mqtt._bridge` logger (refusals, broker
        errors, malformed stop messages: nothing is discarded) and, if given, to `log` as well."""
        self._ctl = controller
        self.options = options
        self.topics = Topics(options.rig)
        self._shared_stops = stops
        self._own_stops = StopRequests()
        self._echo = log
        self.counters = BridgeCounters()
        self.guard_state: Callable[[], str | None] | None = None
        """The fluoroscopic guard's state label, where the program running this bridge runs a guard
        (the dashboard with --frames); published in the state topic's `guard`."""
        self._connected = False
        self._outbox = _Outbox(options.queue_size, self.counters)
        self._pending_samples: collections.deque[tuple[int, np.ndarray[Any, Any]]] = collections.deque()
        self._pending_count = 0
        self._pending_batches = 0
        self._telemetry_ready = asyncio.Event()
        self._stop_tasks: set[asyncio.Task[None]] = set()
        self._inbox_type = stamped_queue_type(self._on_message_read, INBOX_LIMIT, self._inbox_full)
        self.failures: dict[str, str] = {}
        """The bridge's own workers (and consumers) that failed, name -> error: also in the state."""
        self._stop_topics = {
            self.topics.fluoro_stop: StopSource.FLUORO_REMOTE,
            self.topics.stop: StopSource.REMOTE,
        }
        # what the state topic says
        self._last_state: State | int | None = None
        self._stop_reason: StopReason | int | None = None
        self._stop_source: StopSource | int | None = None
        self._pressure_kpa: float | None = None
        self._delivered_ml: float | None = None
        self._plunger_mm: float | None = None
        self._relief_notice: str | None = None
        self._connected_event = asyncio.Event()

    # -- what it is doing --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Connected to the broker right now."""
        return self._connected

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Until the bridge is connected to the broker and subscribed (TimeoutError after `timeout`)."""
        async with asyncio.timeout(timeout):
            while not self._connected:
                self._connected_event.clear()
                await self._connected_event.wait()

    def _log(self, line: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", line)
        if self._echo is not None:
            self._echo(line)

    def _inbox_full(self) -> None:
        self.counters.inbox_dropped += 1

    # -- running ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Bridge until cancelled. Raises nothing because of the broker; reconnects with backoff.

        The controller's streams come through the stream pump (`host.pump`); its tasks and the
        bridge's telemetry worker are supervised: one that fails is logged and named in the state
        topic (`bridge_failures`), never left dead behind a bridge that still looks connected."""
        ctl = self._ctl
        self._take_status()
        pump = StreamPump(ctl, [_Feed(self)], on_failure=self._failed, stops=self._own_stops, name="mqtt")
        async with pump:
            self._publish_state()
            pump.supervisor.spawn(self._flush_telemetry(), "mqtt: telemetry out")
            try:
                await self._stay_connected()
            finally:
                await pump.aclose()
                for task in list(self._stop_tasks):  # a STOP in flight is not abandoned
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(task)

    def _failed(self, failure: ConsumerFailure) -> None:
        self.failures[failure.name] = f"{type(failure.error).__name__}: {failure.error}"
        self._log(f"mqtt: {failure}: the bridge no longer publishes what it did", logging.ERROR)
        self._publish_state()

    async def _stay_connected(self) -> None:
        backoff = self.options.backoff_min_s
        connects = 0
        while True:
            clients: list[aiomqtt.Client] = []
            try:
                clients += (self._client("out"), self._client("in"))  # in the try: a bad TLS file retries
                async with clients[0] as out, clients[1] as inbound:
                    connects += 1
                    if connects > 1:
                        self.counters.reconnects += 1
                    await self._on_connected(out, inbound)
                    _honour_cancel(asyncio.current_task())
                    backoff = self.options.backoff_min_s
                    try:
                        await self._serve(out, inbound)
                    except asyncio.CancelledError:
                        await self._say_offline(out)
                        raise
            except aiomqtt.MqttError as exc:
                was = self._connected
                self._log(
                    f"mqtt: {'connection lost' if was else 'cannot connect'} ({exc}); "
                    f"retrying in {backoff:.2f} s",
                    logging.WARNING,
                )
            except Exception as exc:  # TLS files, name resolution...: never fatal to the bridge
                self._log(
                    f"mqtt: error with {self.options.describe()}: {type(exc).__name__}: {exc}; "
                    f"retrying in {backoff:.2f} s",
                    logging.ERROR,
                )
            finally:
                self._set_connected(False)
                for client in clients:
                    retrieve_disconnect(client)
            await asyncio.sleep(backoff)  # the reconnect backoff, not synchronisation
            backoff = min(backoff * 2.0, self.options.backoff_max_s)

    def _client(self, role: str) -> aiomqtt.Client:
        """One of the bridge's two connections. "out" publishes (and carries the last will); "in" only
        receives the requests. Kept apart so that nothing the bridge publishes can queue in front of a
        stop on its way in: a broker with Nagle's algorithm on (Mosquitto's default) would otherwise
        hold the stop behind its acknowledgement of the bridge's last publish, for up to the bridge's
        40 ms delayed ACK (measured by bench/mqtt_stop_latency.py)."""
        o = self.options
        tls_context: ssl.SSLContext | None = None
        if o.use_tls:
            tls_context = ssl.create_default_context(cafile=str(o.tls.ca_file) if o.tls.ca_file else None)
            if o.tls.cert_file is not None:
                tls_context.load_cert_chain(
                    str(o.tls.cert_file), str(o.tls.key_file) if o.tls.key_file else None
                )
            if o.tls.insecure:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        return aiomqtt.Client(
            o.host,
            o.port,
            # "out" speaks MQTT 5 for the retained state's message expiry (_state_properties); "in"
            # stays on 3.1.1, whose clean-session flag alone keeps its session (MQTT 5 would also need
            # a session expiry interval, and the stop path is not to change for this).
            protocol=aiomqtt.ProtocolVersion.V5 if role == "out" else aiomqtt.ProtocolVersion.V311,
            username=o.username,
            password=o.password.get_secret_value() if o.password is not None else None,
            identifier=self._identifier(role),
            clean_session=None if role == "out" else not o.persistent_session,
            queue_type=self._inbox_type if role == "in" else None,
            will=aiomqtt.Will(self.topics.state, OFFLINE, qos=1, retain=True) if role == "out" else None,
            transport=cast(Any, o.transport),
            websocket_path=o.websocket_path,
            keepalive=o.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            tls_context=tls_context,
            tls_insecure=True if (o.use_tls and o.tls.insecure) else None,
            # Each packet at once: with Nagle's algorithm a QoS 1 publish waits behind an unacknowledged
            # telemetry message for the broker's delayed ACK (up to 40 ms), throttling the bridge.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    def _identifier(self, role: str) -> str:
        """The MQTT client id. The receiving connection's is fixed per rig (its persistent session holds
        the stops published while the bridge is away); the publishing one's is unique per process."""
        o = self.options
        base = o.client_id or f"cementguard-{o.rig}"
        if role == "in" and o.persistent_session:
            return f"{base}-in"
        return f"{base}-{os.getpid()}-{role}"

    async def _on_connected(self, out: aiomqtt.Client, inbound: aiomqtt.Client) -> None:
        for topic in (self.topics.fluoro_stop, self.topics.stop, self.topics.command):
            await inbound.subscribe(topic, qos=1)
        # The retained state first: it replaces `offline` (the will of the previous connection).
        await out.publish(
            self.topics.state, self._state_payload(), qos=1, retain=True, properties=self._state_properties()
        )
        self.counters.published += 1
        self._set_connected(True)
        self._log(f"mqtt: connected to {self.options.describe()}")

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """A clean exit sends no last will: say `offline` ourselves, briefly, best effort."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await client.publish(self.topics.state, OFFLINE, qos=1, retain=True, timeout=1.0)
            self.counters.published += 1

    async def _serve(self, out: aiomqtt.Client, inbound: aiomqtt.Client) -> None:
        """Publish and receive until either fails (a connection broke): its MqttError goes up."""
        tasks = {
            asyncio.create_task(self._publish_loop(out), name="mqtt-publish"),
            asyncio.create_task(self._receive_loop(inbound), name="mqtt-receive"),
            asyncio.create_task(self._state_heartbeat(), name="mqtt-state-heartbeat"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for item in client.messages:
            received_at, message = cast(tuple[float, aiomqtt.Message], item)
            self._handle(message, received_at)

    async def _state_heartbeat(self) -> None:
        """Publish the retained state again every `state_heartbeat_s`, changed or not, so that it never
        expires while the bridge is connected, and does soon after it is gone (_state_properties)."""
        while True:
            await asyncio.sleep(self.options.state_heartbeat_s)  # a period, not synchronisation
            self._publish_state()

    def _state_properties(self) -> Properties:
        """The retained state's MQTT 5 message expiry. The bridge's last will (`offline`) is retained
        without one; but a broker that restarts from its database never fires the will of a bridge
        it lost when it died, and would serve the last `online` state until the bridge is back, or
        for ever if the bridge died with it. With the expiry it drops the state `state_expiry_s`
        after the bridge last published it: a retained `online` is then at most that old."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped here
        properties.MessageExpiryInterval = self.options.state_expiry_s
        return properties

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        me = asyncio.current_task()
        while True:
            item = await self._outbox.get()
            topic, payload, qos, retain = item
            expiring = retain and topic == self.topics.state and payload != OFFLINE
            try:
                await client.publish(
                    topic,
                    payload,
                    qos=qos,
                    retain=retain,
                    properties=self._state_properties() if expiring else None,
                )
            except BaseException:
                self._outbox.put_back(item)
                raise
            self.counters.published += 1
            _honour_cancel(me)

    def _set_connected(self, value: bool) -> None:
        self._connected = value
        if value:
            self._connected_event.set()

    # -- stops and requests in ----------------------------------------------------------------------
    def _on_message_read(self, message: aiomqtt.Message, t: float) -> None:
        """Called for every message as it is read off the socket; starts a STOP at once."""
        topic = message.topic.value
        source = self._stop_topics.get(topic)
        if source is None:
            return
        if message.retain:
            self.counters.stale += 1
            return
        self.counters.stops_received += 1
        origin = f"mqtt {topic}"
        late_s = stop_lateness(message.payload, self.options.max_request_bytes)
        if late_s is not None:  # queued by the broker during an outage: it stops all the same
            self.counters.late_stops += 1
            origin += f" (late: sent {late_s:.1f} s before it arrived)"
        task = asyncio.get_running_loop().create_task(self._forward_stop(source, topic, late_s))
        self._stop_tasks.add(task)
        task.add_done_callback(self._stop_tasks.discard)
        self._own_stops.requested(source, origin, t=t)
        if self._shared_stops is not None:
            self._shared_stops.requested(source, origin, t=t)

    async def _forward_stop(self, source: StopSource, topic: str, late_s: float | None = None) -> None:
        """The STOP first; then the log lines (a STOP never waits behind the log)."""
        try:
            await self._ctl.stop(source)
        except CementguardError as exc:
            self._log_late(topic, late_s)
            self.counters.stops_unsent += 1
            self._log(
                f"mqtt: stop request on {topic} not sent, the link to the controller is down ({exc}): "
                "the controller stops itself (HOST_LOST) when its host is gone",
                logging.ERROR,
            )
            return
        self.counters.stops_forwarded += 1
        self._log_late(topic, late_s)

    def _log_late(self, topic: str, late_s: float | None) -> None:
        if late_s is not None:
            self._log(f"mqtt: late stop on {topic}: sent {late_s:.1f} s before it arrived", logging.WARNING)

    def _handle(self, message: aiomqtt.Message, received_at: float) -> None:
        """After the fact: log stop requests (their STOP is already on its way), refuse the rest."""
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        if topic in self._stop_topics:
            self._log_stop(topic, payload, message.retain)
        elif self.topics.is_command(topic):
            self._refuse(topic, payload)

    def _log_stop(self, topic: str, payload: bytes, retained: bool) -> None:
        label = source_label(self._stop_topics[topic])
        if retained:
            self._log(
                f"mqtt: retained message on {topic} ignored: an old request replayed by the broker, "
                "not a new stop"
            )
            return
        limit = self.options.max_request_bytes
        if len(payload) > limit:
            self.counters.oversized += 1
            self._log(
                f"mqtt: {label} stop on {topic} with an oversized payload ({len(payload)} bytes > {limit}): "
                "stopped anyway, payload not parsed",
                logging.WARNING,
            )
            return
        request, problem = parse_stop_request(payload)
        if request is None:
            self.counters.malformed += 1
            self._log(
                f"mqtt: {label} stop on {topic} with a malformed payload ({problem}): stopped anyway; "
                f"payload {payload[:120]!r}",
                logging.WARNING,
            )
            return
        who = f" by {request.by}" if request.by else ""
        why = f": {request.reason}" if request.reason else ""
        self._log(f"mqtt: {label} stop on {topic}{who}{why}")

    def _refuse(self, topic: str, payload: bytes) -> None:
        self.counters.refused += 1
        request = describe_request(topic, payload, self.options.max_request_bytes)
        reason = (
            "only stop requests are accepted over MQTT; arm, start, resume, clear and limits are local only"
        )
        self._log(f"mqtt: refused {request!r} on {topic}: {reason}", logging.WARNING)
        answer = RefusalPayload(
            rig=self.options.rig,
            topic=topic,
            request=request,
            reason=reason,
            accepted_topics=[self.topics.fluoro_stop, self.topics.stop],
            host_time_s=time.time(),
        )
        self._outbox.put(self.topics.refused, _json(answer), qos=1)

    # -- controller out -------------------------------------------------------------------------------
    def _on_event(self, event: Event, notes: dict[str, Any]) -> None:
        payload = EventPayload.from_event(self.options.rig, event, notes)
        self._outbox.put(self.topics.events, _json(payload), qos=1)
        self._take_event(event)

    def _take_event(self, event: Event) -> None:
        changed = event.state != self._last_state
        self._last_state = event.state
        self._pressure_kpa = None if event.flags & Flags.SENSOR_FAULT else kpa(event.pressure_pa)
        self._delivered_ml = ml(event.delivered_nl)
        self._plunger_mm = event.plunger_um / 1000.0
        if event.kind == EventKind.STOP:
            self._stop_reason, self._stop_source = event.reason, event.source
        elif event.kind == EventKind.STATE_CHANGE:
            self._stop_reason = self._stop_source = None
        notice = relief_notice(event)
        if notice is not None:
            self._relief_notice = notice
            changed = True
        elif relief_notice_ends(event.kind, event.state):
            self._relief_notice = None  # a new push: the notice was about the line before it
        if changed or event.kind == EventKind.STOP:
            self._publish_state()

    def _on_link(self, change: LinkChange) -> None:
        if change.status is not None:
            self._take_status()
        self._publish_state()

    def _take_status(self) -> None:
        status = self._ctl.status
        if status is None:
            return
        self._last_state = status.state
        ended = status.state in (State.STOPPED, State.DONE, State.PAUSED, State.FAULT)
        self._stop_reason = status.stop_reason if ended and status.stop_reason else None
        self._stop_source = status.stop_source if ended and status.stop_reason else None
        self._pressure_kpa = None if status.flags & Flags.SENSOR_FAULT else kpa(status.pressure_pa)
        self._delivered_ml = ml(status.delivered_nl)
        self._plunger_mm = status.plunger_um / 1000.0

    def _publish_state(self) -> None:
        self._outbox.put(self.topics.state, self._state_payload(), qos=1, retain=True)

    def _state_payload(self) -> bytes:
        ctl = self._ctl
        link = ctl.link_state
        try:
            serial: str | None = ctl.device.serial
        except RuntimeError:
            serial = None
        last = enum_name(State, self._last_state)
        payload = StatePayload(
            rig=self.options.rig,
            link=cast(Any, link.value),
            link_reason=ctl.link_reason,
            state=last if link is LinkState.CONNECTED else None,
            last_state=last,
            stop_reason=enum_name(StopReason, self._stop_reason),
            stop_source=enum_name(StopSource, self._stop_source),
            device_serial=serial,
            pressure_kpa=self._pressure_kpa,
            delivered_ml=self._delivered_ml,
            plunger_mm=self._plunger_mm,
            host_time_s=time.time(),
            valid_for_s=float(self.options.state_expiry_s),
            guard=self.guard_state() if self.guard_state is not None else None,
            relief_notice=self._relief_notice,
            bridge_failures=[f"{name}: {error}" for name, error in self.failures.items()],
        )
        return _json(payload)

    def guard_changed(self) -> None:
        """The fluoroscopic guard's state changed: the retained state goes out now, not at the next
        heartbeat (a blind guard must be seen at once everywhere)."""
        self._publish_state()

    def _on_samples(self, batch: TelemetryBatch) -> None:
        limit = self.options.telemetry_max_samples
        samples = batch.samples
        if not len(samples):
            return
        self._pending_samples.append((batch.first_index, samples))
        self._pending_count += len(samples)
        self._pending_batches += 1
        while self._pending_count > limit and self._pending_samples:
            _index, old = self._pending_samples.popleft()
            self._pending_count -= len(old)
            self.counters.dropped_samples += len(old)
        self._telemetry_ready.set()

    async def _flush_telemetry(self) -> None:
        """At most telemetry_rate_hz messages per second, each with every sample since the last one."""
        period = 1.0 / self.options.telemetry_rate_hz
        last = -math.inf
        while True:
            await self._telemetry_ready.wait()
            wait = last + period - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the rate limit itself
            self._telemetry_ready.clear()
            if not self._pending_samples:
                continue
            first_index = self._pending_samples[0][0]
            samples = np.concatenate([s for _i, s in self._pending_samples])
            batches = self._pending_batches
            self._pending_samples.clear()
            self._pending_count = self._pending_batches = 0
            last = time.monotonic()
            payload = TelemetryPayload(
                rig=self.options.rig,
                batches=batches,
                samples=len(samples),
                dropped_samples=self.counters.dropped_samples,
                host_time_s=time.time(),
                telemetry=TelemetryRecord.from_samples(first_index, samples),
            )
            self._outbox.put(self.topics.telemetry, _json(payload), qos=0)


def _honour_cancel(task: asyncio.Task[Any] | None) -> None:
    """Python 3.11's asyncio.wait_for (inside aiomqtt's publish and subscribe) can swallow a
    cancellation that arrives together with the broker's answer; raise it here, or a cancelled bridge
    would go on waiting for its next message forever."""
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Feed(Consumer):
    """The bridge as a consumer of the stream pump: events, telemetry and link changes out."""

    name = "mqtt: controller out"

    def __init__(self, bridge: MqttBridge) -> None:
        self.bridge = bridge

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        self.bridge._on_samples(batch)

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        self.bridge._on_event(event, notes)

    def on_link(self, change: LinkChange) -> None:
        self.bridge._on_link(change)


def _json(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()
