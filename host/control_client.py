"""The client side of a session's control endpoint (host.control): one request, one answer.

Kept apart from the server so that `cementguard stop` through a session imports only asyncio, json
and the port's file names: no protocol, no numpy, no pyserial. The request goes out within a few
tens of milliseconds of the process starting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host.errors import CementguardError
from host.port_lock import lock_path, read_holder, runtime_dir, socket_path

__all__ = [
    "ANSWER_TIMEOUT_S",
    "STOP_DEADLINE_S",
    "STOP_SOURCE_NAMES",
    "ControlError",
    "NoEndpoint",
    "request",
]

ANSWER_TIMEOUT_S = 3.0
"""The whole exchange with a session (its STOP, the ACK, the event; a reconnect it waits for)."""
STOP_DEADLINE_S = 0.2
"""How long `cementguard stop` waits for the session to say that the device acknowledged its STOP
before it writes STOP onto the port beside it (a frozen, hung or reconnecting session): with the
process's start-up (~100-150 ms on a loaded machine) inside the device's watchdog period (500 ms), so
that the operator's STOP, not HOST_LOST, stops the pump (docs/performance.md, "Stop beside a frozen
session"). A live session's STOP is acknowledged in milliseconds; one that answers later costs only
a second STOP on the line, which the device executes as a no-op."""
STOP_SOURCE_NAMES = ("fluoro", "operator")
"""`--source` of `cementguard stop`: OPERATOR, or FLUORO_OPERATOR (host.control.STOP_SOURCES)."""


class ControlError(CementguardError):
    """The control endpoint could not be reached, or answered something unusable."""


class NoEndpoint(ControlError):  # noqa: N818 - names of the host API
    """No session serves a control endpoint for this port."""


async def request(
    port: str,
    op: str,
    timeout_s: float = ANSWER_TIMEOUT_S,
    progress: Callable[[dict[str, Any]], None] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Send one request to the session holding `port`; its answer. NoEndpoint when no session
    serves one (no socket, or a dead session's socket); ControlError when it does not answer.
    Interim lines (a "progress" key: the STOP was acknowledged by the device, the event is awaited)
    go to `progress` as they arrive."""
    path = _endpoint(port)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NoEndpoint(f"no session serves a control endpoint for {port}") from exc
    except OSError as exc:
        raise ControlError(f"cannot reach the control endpoint {path}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                interim = _interim(line)
                if interim is None:
                    break
                if progress is not None:
                    progress(interim)
    except TimeoutError:
        raise ControlError(
            f"the session holding {port} accepted the request but did not answer within {timeout_s:g} s"
        ) from None
    except OSError as exc:
        raise ControlError(f"the control endpoint of {port} failed: {exc}") from exc
    finally:
        writer.close()
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ControlError(f"the control endpoint of {port} answered {line[:80]!r}, not a JSON object")
    return answer


def _interim(line: bytes) -> dict[str, Any] | None:
    """The interim answer on `line`, None for a final one (or anything else: judged by the caller)."""
    try:
        answer = json.loads(line)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and "progress" in answer else None


def _endpoint(port: str) -> Path:
    """The socket of the session holding `port`: beside its lock, or where the lock's record says. A
    session that followed a pty to a new instance at the same path (host.port_lock.port_key) holds
    the new instance's lock but still serves the socket it opened first; its record names it. Only a
    socket in our own runtime directory is taken from a record."""
    path = socket_path(port)
    if path.exists():
        return path
    holder = read_holder(lock_path(port))
    if holder is not None and holder.socket and Path(holder.socket).parent == runtime_dir():
        return Path(holder.socket)
    return path
