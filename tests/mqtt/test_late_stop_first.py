"""A late stop request (queued by the broker during an outage) is logged as late, but only after its
STOP is on the wire: the log line goes to the terminal and, in the dashboard, to the screen and the
recording's host.log, and a STOP must never wait behind the log (issue 12, "STOP goes first")."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiomqtt

from host.mqtt import MqttOptions
from host.mqtt._bridge import MqttBridge
from protocol import StopSource


class _Ctl:
    def __init__(self, order: list[str]) -> None:
        self.order = order

    async def stop(self, source: StopSource) -> Any:
        self.order.append("STOP")  # the link writes the STOP frame in this first step
        return None


async def test_a_late_stop_is_sent_before_it_is_logged() -> None:
    order: list[str] = []
    bridge = MqttBridge(
        _Ctl(order),  # type: ignore[arg-type]
        MqttOptions(url="mqtt://127.0.0.1:1", rig="r1"),
        log=lambda line: order.append(f"log: {line}"),
    )
    payload = json.dumps({"sent_at": time.time() - 30.0}).encode()  # held up 30 s by the broker
    message = aiomqtt.Message(bridge.topics.fluoro_stop, payload, 1, False, 1, None)
    bridge._on_message_read(message, time.perf_counter())
    await asyncio.gather(*bridge._stop_tasks)
    assert order, "nothing happened"
    assert order[0] == "STOP", order
    assert any("late" in line for line in order[1:]), order
    assert bridge.counters.late_stops == 1
