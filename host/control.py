"""The control endpoint of a session: stop, status and clear from any terminal.

A session (`cementguard run`, the dashboard, the MQTT bridge, the HIL runner) holds its port
exclusively (host.port_lock), so `cementguard stop` from another terminal cannot open the port: it
asks the session instead, through a Unix socket beside the port's lock (`port_lock.socket_path`),
in the user's 0700 runtime directory, mode 0600, and only from the same user (checked with
SO_PEERCRED as well).

The client side (`request`, used by `cementguard stop`, `status` and `clear`) is
`host.control_client`, which imports neither this module nor the protocol: a stop through a session
must not wait for numpy to load. Each session adds the server with one line around its work::

    async with serve_control(ctl):
        ...

One request per connection: a JSON object on one line, at most `MAX_REQUEST` bytes, within
`REQUEST_TIMEOUT_S`; one JSON answer on one line. Requests:

- ``{"op": "stop", "source": "operator" | "fluoro"}``: STOP is sent at once (STOP never queues behind
  another command, SPEC §7.5), then the answer carries the state from its ACK and the STOP event the
  device emitted (reason, source), if it was moving. A stop request is executed even when its other
  fields are wrong (an unknown source stops as OPERATOR), as the device does with a malformed STOP.
- ``{"op": "status"}``: a fresh STATUS, the device's identity and the session's link state.
- ``{"op": "clear"}``: CLEAR; a refusal (BUSY while relief runs, SENSOR_FAULT, ...) is answered with
  the device's NAK code and its explanation.

Answers: ``{"ok": true, ...}`` or ``{"ok": false, "error": "...", "code": "BUSY"}``, each with
``"session"``: the program and PID that answered. Hostile or
broken input (too long, not JSON, an unknown op, a client that never finishes) gets an error answer
or a closed connection; it never ends or slows the session. Connections are not capped in number:
a stop must never be turned away because other clients hang; each one is bounded in size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host.control_client import (
    ANSWER_TIMEOUT_S,
    STOP_SOURCE_NAMES,
    ControlError,
    NoEndpoint,
    request,
)
from host.errors import CementguardError, CommandRefused
from host.port_lock import socket_path
from protocol import EventKind, State, StopReason, StopSource
from protocol.enums import MOVEMENT_STATES

__all__ = [  # the client side is re-exported: one module to import for both ends
    "ANSWER_TIMEOUT_S",
    "STOP_SOURCES",
    "ControlError",
    "ControlServer",
    "NoEndpoint",
    "request",
    "serve_control",
]

if TYPE_CHECKING:
    from host.client import DeviceClient
    from host.stops import StopRequests
    from protocol import Status

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

MAX_REQUEST = 1024
"""Bytes a request may have, newline included: every valid request is far below."""
REQUEST_TIMEOUT_S = 2.0
"""A client has this long to send its request line, and to read the answer."""
STOP_EVENT_WAIT_S = 0.5
"""After the STOP's ACK, how long the answer waits for the device's STOP event (it follows within a
tick or two; SPEC §7.2 leaves its order relative to the ACK open)."""
RECONNECT_WAIT_S = 1.0
"""A stop that arrives while the session's link is reconnecting waits this long for it, then tries
anyway (STOP is idempotent; the device has stopped on its own meanwhile: HOST_LOST)."""

ORIGIN = "cementguard stop (another terminal)"
"""How a stop through the endpoint is recorded (host.stops: `stop_origin`)."""
STOP_SOURCES = {"operator": StopSource.OPERATOR, "fluoro": StopSource.FLUORO_OPERATOR}
assert set(STOP_SOURCES) == set(STOP_SOURCE_NAMES)
_ACTIVE = {State.ARMED, State.INJECTING, State.PAUSED, *MOVEMENT_STATES}
"""States a STOP latches, so that its STOP event is worth waiting for."""


def _name(value: Any) -> Any:
    return getattr(value, "name", value)


class ControlServer:
    """Serves one session's control endpoint. Use `serve_control`."""

    def __init__(self, ctl: DeviceClient, path: Path, stops: StopRequests | None = None) -> None:
        self.ctl = ctl
        self.path = path
        self.stops = stops
        self.requests = 0
        self.refused = 0
        self._server: asyncio.AbstractServer | None = None
        self._inode = -1

    @property
    def session(self) -> str:
        """Who answers: this program and process, as the port's lock names it."""
        lock = self.ctl.link.port_lock
        holder = lock.holder if lock is not None else None
        return f"{holder.program} (PID {holder.pid})" if holder is not None else f"PID {os.getpid()}"

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)  # we hold the port's lock: a socket here is a dead session's
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:  # not a socket of the port's next session
                self.path.unlink()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(reader, writer)
            answer["session"] = self.session
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except Exception as exc:  # a client that went away, or anything else: the session goes on
            log.debug("control request ended: %r", exc)
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, Any]:
        if not _same_user(writer):
            self.refused += 1
            return _error("refused: the endpoint answers its own user only")
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                line = await reader.readuntil(b"\n")
        except (asyncio.LimitOverrunError, ValueError):
            self.refused += 1
            return _error(f"request too long (at most {MAX_REQUEST} bytes, one line)")
        except asyncio.IncompleteReadError:
            self.refused += 1
            return _error("request incomplete: one JSON object on one line, ending with a newline")
        except TimeoutError:
            self.refused += 1
            return _error(f"no complete request within {REQUEST_TIMEOUT_S:g} s")
        arrived = time.perf_counter()  # the stop's origin on this host, for its recorded latency
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self.refused += 1
            return _error('not a JSON object: send e.g. {"op": "stop"}')
        op = request.get("op")
        self.requests += 1
        if op == "stop":
            return await self._stop(request.get("source", "operator"), arrived, writer)
        if op == "status":
            return await self._status()
        if op == "clear":
            return await self._clear()
        self.refused += 1
        return _error(f"unknown request op={op!r}: expected 'stop', 'status' or 'clear'")

    async def _stop(
        self, source_name: Any, arrived: float, writer: asyncio.StreamWriter | None = None
    ) -> dict[str, Any]:
        source = STOP_SOURCES.get(source_name, StopSource.OPERATOR) if isinstance(source_name, str) else None
        ctl = self.ctl
        before = ctl.state
        events = ctl.events()  # subscribed before the STOP: its event cannot be missed
        try:
            if not _connected(ctl):  # reconnecting: the STOP goes out once it is back
                from host.link import LinkState

                with contextlib.suppress(TimeoutError, CementguardError):
                    await ctl.wait_for_link(LinkState.CONNECTED, timeout=RECONNECT_WAIT_S)
            if self.stops is not None:
                self.stops.requested(source or StopSource.OPERATOR, ORIGIN, t=arrived)
            try:
                ack = await ctl.stop(source or StopSource.OPERATOR)
            except CementguardError as exc:
                log.error("STOP from the control endpoint failed: %s", exc)
                text = str(exc)
                if not _connected(ctl):
                    text += (
                        f" (the session's link is {ctl.link_state.value}: the controller stops by itself, "
                        "HOST_LOST, when it hears no host for its watchdog time)"
                    )
                return _error(text, exc)
            log.warning("STOP from the control endpoint (another terminal): state %s", _name(ack.state))
            answer: dict[str, Any] = {"ok": True, "op": "stop", "state": _name(ack.state), "event": None}
            if writer is not None:  # the device has it: `stop` need not write it beside us
                _progress(
                    writer, {"ok": True, "op": "stop", "progress": "acknowledged", "state": answer["state"]}
                )
            if source is None or source_name not in STOP_SOURCES:
                answer["warning"] = f"unknown stop source {source_name!r}: stopped as OPERATOR"
            if before in _ACTIVE:
                with contextlib.suppress(TimeoutError, CementguardError):
                    async with asyncio.timeout(STOP_EVENT_WAIT_S):
                        async for event in events:
                            if event.kind == EventKind.STOP and event.reason in (
                                StopReason.OPERATOR_STOP,
                                StopReason.FLUORO_STOP,
                            ):
                                answer["event"] = {
                                    "reason": _name(event.reason),
                                    "source": _name(event.source),
                                    "state": _name(event.state),
                                    "prev_state": _name(event.prev_state),
                                    "t_s": event.t_us / 1e6,
                                }
                                break
        finally:
            events.close()
        if answer["event"] is None and ack.state == State.STOPPED:
            # Which stop holds it: a fresh STATUS, read after the STOP went out. The session's last
            # STATUS may be from before the stop that latched it (it said NONE).
            try:
                status: Status | None = await ctl.get_status()
            except CementguardError as exc:
                status = None
                answer["warning"] = f"which stop holds the pump is unknown: no STATUS ({exc})"
            if status is not None:
                answer["stop_reason"] = _name(status.stop_reason)
                answer["stop_source"] = _name(status.stop_source)
        return answer

    async def _status(self) -> dict[str, Any]:
        from protocol.models import StatusRecord

        ctl = self.ctl
        answer: dict[str, Any] = {"ok": True, "op": "status", "link": ctl.link_state.value}
        status: Status | None
        try:
            status = await ctl.get_status()
        except CementguardError as exc:
            status = ctl.status
            answer["stale"] = f"no fresh STATUS ({exc}); the last one received"
        if status is None:
            return _error(f"no STATUS: the link is {ctl.link_state.value} ({ctl.link_reason})")
        answer["state"] = _name(status.state)
        answer["stop_reason"] = _name(status.stop_reason)
        answer["stop_source"] = _name(status.stop_source)
        answer["status"] = StatusRecord.from_message(status).model_dump(mode="json")  # enums as numbers
        from host.setup_cmds import read_in_force

        answer["in_force"] = await read_in_force(ctl)
        info = ctl.link.device
        if info is not None:
            answer["device"] = {
                "serial": info.serial,
                "firmware": f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}",
                "protocol_version": info.protocol_version,
            }
        return answer

    async def _clear(self) -> dict[str, Any]:
        try:
            from host.client import CLEAR_SETTLE_S

            ack = await self.ctl.clear(settle_s=CLEAR_SETTLE_S)
        except CementguardError as exc:
            return _error(str(exc), exc)
        log.warning("CLEAR from the control endpoint (another terminal): state %s", _name(ack.state))
        return {"ok": True, "op": "clear", "state": _name(ack.state)}


def _connected(ctl: DeviceClient) -> bool:
    """Without importing host.link (and pyserial) into the client side of this module."""
    return bool(ctl.link_state.value == "connected")


def _error(text: str, exc: BaseException | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"ok": False, "error": text}
    if isinstance(exc, CommandRefused):
        answer["code"] = _name(exc.code)
    return answer


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is None or peercred is None:
        return True  # no credentials on this platform: the 0700 directory alone protects
    try:
        _pid, uid, _gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
        )
    except OSError:
        return False
    return bool(uid == os.getuid())


def _progress(writer: asyncio.StreamWriter, line: dict[str, Any]) -> None:
    """An interim answer line (host.control_client.request passes it to its `progress` callback):
    written at once, never awaited, so that a client gone away cannot stall the request."""
    with contextlib.suppress(Exception):
        writer.write(json.dumps(line).encode() + b"\n")


@contextlib.asynccontextmanager
async def serve_control(
    ctl: DeviceClient, port: str | None = None, stops: StopRequests | None = None
) -> AsyncIterator[ControlServer]:
    """Serve the control endpoint of the session on `ctl`'s port (or `port`) while inside.

    The link must be open: it holds the port's lock, which makes this process the one that may
    serve the port's endpoint. The lock's holder record names the socket while it is served.
    `stops`: the session's stop requests (host.stops), so that a stop from another terminal is
    recorded with its origin and latency like the session's own."""
    lock = ctl.link.port_lock
    if lock is None or not lock.held:
        raise ControlError(f"serve_control: the link to {ctl.url} is not open (it holds no port lock)")
    server = ControlServer(ctl, socket_path(port or ctl.url), stops)
    await server.start()
    lock.set_socket(str(server.path))
    try:
        yield server
    finally:
        lock.set_socket(None)
        await server.close()
