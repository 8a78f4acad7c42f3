"""The one place the MQTT bridge relies on aiomqtt beyond its documented API.

Two behaviours the bridge needs are not in aiomqtt's documentation; both live here, each checked by
tests/mqtt/test_aiomqtt_adapter.py, which fails loudly (naming what changed) when an aiomqtt release
moves them, and pyproject.toml pins aiomqtt to the minor release the test was written against.

- **A stop starts in the socket-read path.** `Client(queue_type=...)` is public: aiomqtt builds its
  incoming queue from that class. Undocumented is *how* it fills it: `put_nowait(message)` from its
  message callback, on the event loop, the moment paho has read the PUBLISH off the socket. The
  bridge's queue overrides `put_nowait` (public asyncio API) to see each message there, before any
  consumer, so the STOP is started before the payload is even parsed (docs/mqtt.md, "stop latency").
- **The disconnect future.** When the broker goes away both of the bridge's connections break, but
  the error surfaces through one of them; the other's "unexpected disconnection" sits in aiomqtt's
  private `_disconnected` future, and asyncio would log it as "Future exception was never
  retrieved". `retrieve_disconnect` marks it seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

__all__ = ["TESTED_VERSION", "retrieve_disconnect", "stamped_queue_type"]

TESTED_VERSION = "2.5.1"
"""The aiomqtt release these two behaviours were checked against (the test compares)."""

OnRead = Callable[[aiomqtt.Message, float], None]


def stamped_queue_type(on_read: OnRead, limit: int, on_drop: Callable[[], None]) -> type[asyncio.Queue[Any]]:
    """A queue class for `aiomqtt.Client(queue_type=...)`: every message is first handed to
    `on_read(message, t)` (t = time.perf_counter() when it was read), then queued as `(t, message)`
    unless `limit` messages already wait (then `on_drop()` is called and it is not queued)."""

    class StampedQueue(asyncio.Queue):  # type: ignore[type-arg]
        def put_nowait(self, item: Any) -> None:
            t = time.perf_counter()
            on_read(item, t)
            if self.qsize() >= limit:
                on_drop()
                return
            super().put_nowait((t, item))

    return StampedQueue


def retrieve_disconnect(client: aiomqtt.Client) -> None:
    """Mark a connection's "unexpected disconnection" as seen (it was logged through the other)."""
    done: asyncio.Future[None] | None = getattr(client, "_disconnected", None)
    if done is not None and done.done() and not done.cancelled():
        done.exception()
