"""Stops published while the bridge is away are delivered when it is back (issue 13 item 10).

A broker restart: the broker is back, the bridge is still waiting out its reconnect backoff. A stop
published then used to be lost (clean session: nobody subscribed yet). The bridge's receiving
connection now has a persistent session (fixed client id, clean session off, QoS 1 subscriptions):
a broker that keeps sessions (persistence on, as deploy/mosquitto/cementguard.conf) queues the stop
and delivers it on the reconnect. A stop that arrives long after its `sent_at` is acted on and
logged and counted as late.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt._payloads import LATE_STOP_S, stop_lateness
from tests.mqtt.conftest import RIG, mosquitto_pub, running_bridge, until

SimPty = tuple[subprocess.Popen[str], str]
FLUORO = f"cementguard/{RIG}/fluoro/stop"


async def _session_saved(broker: Mosquitto) -> None:
    """Until the broker has written its database (autosave every second): the session is in it."""
    db = broker.workdir / "mosquitto.db"
    await until(db.exists, within_s=10, what="the broker saving its sessions")
    saved = db.stat().st_mtime
    await until(lambda: db.stat().st_mtime > saved, within_s=10, what="a save after the subscription")


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "clean"])
async def test_a_stop_published_while_the_bridge_reconnects(
    tmp_path: Path, sim_pty: SimPty, persistent: bool
) -> None:
    _proc, port = sim_pty
    with Mosquitto.start(tmp_path / "broker", persistence=True) as broker:
        async with (
            DeviceClient.open(port) as ctl,
            running_bridge(
                ctl, broker.url, persistent_session=persistent, backoff_min_s=1.5, backoff_max_s=1.5
            ) as rb,
        ):
            await _session_saved(broker)
            await asyncio.to_thread(broker.restart)  # killed (an outage) and back at once
            await until(lambda: not rb.bridge.connected, what="the bridge noticing")
            sent = {"by": "c-arm", "sent_at": time.time()}
            await mosquitto_pub(broker, FLUORO, "-m", json.dumps(sent))  # the bridge is still away
            await rb.bridge.wait_connected(timeout=10)
            # a marker stop after the reconnect: the broker delivers in order, so once the marker is
            # in, a stop queued during the outage has been delivered before it, or never will be
            await mosquitto_pub(broker, FLUORO, "-m", json.dumps({"by": "marker"}))
            await until(lambda: any("by marker" in line for line in rb.log), what="the marker stop")
            queued = any("by c-arm" in line for line in rb.log)
            assert queued is persistent, rb.log


def test_a_stop_sent_long_before_it_arrives_is_late() -> None:
    now = 1_000_000.0
    assert stop_lateness(json.dumps({"sent_at": now - 5}).encode(), 1024, now=now) == pytest.approx(5)
    assert stop_lateness(json.dumps({"sent_at": now - LATE_STOP_S / 2}).encode(), 1024, now=now) is None
    assert stop_lateness(b"{}", 1024, now=now) is None
    assert stop_lateness(b"not json", 1024, now=now) is None


async def test_a_late_stop_stops_and_is_recorded_as_late(broker: Mosquitto, sim_pty: SimPty) -> None:
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb:
        old = {"by": "c-arm", "sent_at": time.time() - 4.0}
        await mosquitto_pub(broker, FLUORO, "-m", json.dumps(old))
        await until(lambda: rb.bridge.counters.stops_forwarded == 1, what="the late stop")
        assert rb.bridge.counters.late_stops == 1
        assert any("late stop" in line for line in rb.log)
