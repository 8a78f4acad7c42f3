"""The client side of a session's control endpoint (host.control): one request, one answer.

Kept apart from the server so that `cementguard stop` through a session imports only asyncio, json
and the port's file names: no protocol, no numpy, no pyserial. The request goes out within a few
tens of milliseconds of the process starting.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from host.errors import CementguardError
from host.port_lock import socket_path

__all__ = ["ANSWER_TIMEOUT_S", "STOP_SOURCE_NAMES", "ControlError", "NoEndpoint", "request"]

ANSWER_TIMEOUT_S = 3.0
"""The whole exchange with a session (its STOP, the ACK, the event; a reconnect it waits for)."""
STOP_SOURCE_NAMES = ("fluoro", "operator")
"""`--source` of `cementguard stop`: OPERATOR, or FLUORO_OPERATOR (host.control.STOP_SOURCES)."""


class ControlError(CementguardError):
    """The control endpoint could not be reached, or answered something unusable."""


class NoEndpoint(ControlError):  # noqa: N818 - names of the host API
    """No session serves a control endpoint for this port."""


async def request(port: str, op: str, timeout_s: float = ANSWER_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
    """Send one request to the session holding `port`; its answer. NoEndpoint when no session
    serves one (no socket, or a dead session's socket); ControlError when it does not answer."""
    path = socket_path(port)
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
            line = await reader.readline()
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
