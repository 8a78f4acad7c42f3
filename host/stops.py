"""Stop requests this host made, matched to the controller's STOP events that answer them.

Every fluoroscopy stop is recorded with its source and its latency (docs/design.md): a host that asks for a
stop (the dashboard key, the MQTT bridge, the CLI) notes when the request *originated*; when the STOP
event with that source comes back, `match` gives the annotations to record with it. The origin time is
taken where the request entered this host (the key press, the MQTT message read off the socket), so
the latency covers the host, the link and the controller's tick. Times are `time.perf_counter()`, the
clock `Subscription.received_at` uses.

The fluoroscopic guard (host/guard) stamps its request with the time its frame was read, so its
latency runs from the image that showed the cement to the STOPPED event; the event's `detail` names the
rule (`image_rule`), and the request's notes add the frame number and its timestamp.

A stop from the controller's own input line (source FLUORO_LINE) has no host-side origin: the
controller reports in the event's `detail` how long the line had been asserted before it stopped
(its debounce, in microseconds), and that is recorded instead.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol import Event, EventKind, StopDetail, StopSource

__all__ = ["StopRequest", "StopRequests"]

_SOURCE_LABELS = {
    StopSource.NONE: "none",
    StopSource.OPERATOR: "operator",
    StopSource.FLUORO_OPERATOR: "fluoroscopy (dashboard key)",
    StopSource.FLUORO_REMOTE: "fluoroscopy (imaging over MQTT)",
    StopSource.REMOTE: "remote (MQTT)",
    StopSource.FLUORO_LINE: "fluoroscopy (footswitch line)",
    StopSource.CONTROLLER: "controller",
    StopSource.FLUORO_IMAGE: "fluoroscopy (image guard)",
}


def source_label(source: StopSource | int) -> str:
    """A bench engineer's name for a stop source, for logs, tables and the dashboard."""
    try:
        return _SOURCE_LABELS[StopSource(source)]
    except ValueError:
        return f"source {int(source)}"


@dataclass(frozen=True)
class StopRequest:
    source: StopSource
    t: float
    """time.perf_counter() when the request entered this host."""
    origin: str
    """Where it came from, for the record: "dashboard key f", "mqtt cementguard/rig1/fluoro/stop"."""
    notes: Mapping[str, Any] = field(default_factory=dict)
    """More annotations for the STOP event it is matched to (the guard's frame number and time)."""


class StopRequests:
    """Pending stop requests, oldest first, each waiting for the STOP event that answers it.

    A request nobody answers (the pump was already stopped, so the controller sent no new STOP event)
    expires after `window_s`, so it is never matched to a later, unrelated stop. Bounded: at most
    `maxlen` requests are kept.
    """

    def __init__(self, window_s: float = 5.0, maxlen: int = 64) -> None:
        self._window_s = window_s
        self._pending: deque[StopRequest] = deque(maxlen=maxlen)

    def requested(
        self, source: StopSource, origin: str, t: float | None = None, notes: Mapping[str, Any] | None = None
    ) -> StopRequest:
        request = StopRequest(source, time.perf_counter() if t is None else t, origin, dict(notes or {}))
        self._pending.append(request)
        return request

    def __len__(self) -> int:
        return len(self._pending)

    def match(self, event: Event, received_at: float | None) -> dict[str, Any]:
        """Annotations for `event` (empty unless it is a STOP): `stop_source` always; for a stop this
        host asked for, `stop_origin` and `stop_latency_ms` (origin to the event read off the port);
        for the footswitch line, `line_latency_ms` as the controller reported it."""
        if event.kind != EventKind.STOP:
            return {}
        notes: dict[str, Any] = {"stop_source": source_label(event.source)}
        if event.source == StopSource.FLUORO_LINE:
            notes["line_latency_ms"] = event.detail / 1000.0
            return notes
        if event.source == StopSource.FLUORO_IMAGE:
            try:
                notes["image_rule"] = StopDetail(event.detail).name
            except ValueError:
                notes["image_rule"] = str(event.detail)
        now = time.perf_counter() if received_at is None else received_at
        while self._pending and now - self._pending[0].t > self._window_s:
            self._pending.popleft()
        for request in self._pending:
            if request.source == event.source and request.t <= now:
                self._pending.remove(request)
                notes["stop_origin"] = request.origin
                notes["stop_latency_ms"] = round((now - request.t) * 1000.0, 3)
                notes.update(request.notes)
                break
        return notes
