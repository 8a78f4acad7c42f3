"""Fixtures for the MQTT bridge tests: a real Mosquitto on a free loopback port, the real simulator
over a pty, a bridge running in the test's event loop, and a watcher subscribed to the rig's topics.

Every wait is on something arriving (an MQTT message, a state, a counter), bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hil.mosquitto import Mosquitto, find_binary
from host.client import DeviceClient
from host.mqtt import MqttBridge, MqttOptions
from host.stops import StopRequests
from tests.support.wire_client import simulator

RIG = "rig1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto (anonymous clients) on a free loopback port."""
    with Mosquitto.start(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def sim_pty() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`cementguard sim --pty` in a subprocess: (process, pty path)."""
    with simulator("--pty", "--serial", "MQTT-TEST") as (proc, address):
        yield proc, address


async def until(condition: Callable[[], bool], within_s: float = 5.0, what: str = "condition") -> None:
    """Wait until `condition()` holds, re-checked every 10 ms, at most `within_s`."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within_s} s")
        await asyncio.sleep(0.01)  # polling interval of a bounded wait, not a decision


async def mosquitto_pub(broker: Mosquitto, topic: str, *args: str) -> None:
    """The real `mosquitto_pub`, QoS 1, e.g. ``await mosquitto_pub(broker, topic, "-m", "{}")``; run
    without blocking the event loop, so the bridge under test reads the message while it is sent."""
    proc = await asyncio.create_subprocess_exec(
        find_binary("mosquitto_pub"),
        "-h",
        broker.host,
        "-p",
        str(broker.port),
        "-q",
        "1",
        "-t",
        topic,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(10):
        _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")


@dataclass
class Watcher:
    """Everything published under cementguard/<rig>/#, by topic, in arrival order."""

    messages: list[aiomqtt.Message] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, suffix: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.value == f"cementguard/{RIG}/{suffix}"]

    async def next(
        self,
        suffix: str,
        predicate: Callable[[aiomqtt.Message], bool] = lambda m: True,
        within_s: float = 5.0,
    ) -> aiomqtt.Message:
        """The first message on `suffix` satisfying `predicate` (already arrived or arriving)."""
        async with asyncio.timeout(within_s):
            while True:
                for m in self.on(suffix):
                    if predicate(m):
                        return m
                self.arrived.clear()
                await self.arrived.wait()

    async def consume(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.messages.append(message)
            self.arrived.set()


@contextlib.asynccontextmanager
async def watching(broker: Mosquitto, **client_args: Any) -> AsyncIterator[Watcher]:
    """A subscriber to the rig's whole tree (retained messages included), for the test's checks."""
    watcher = Watcher()
    async with aiomqtt.Client(broker.host, broker.port, **client_args) as client:
        await client.subscribe(f"cementguard/{RIG}/#", qos=1)
        task = asyncio.create_task(watcher.consume(client))
        try:
            yield watcher
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@dataclass
class RunningBridge:
    bridge: MqttBridge
    log: list[str]
    stops: StopRequests
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_bridge(ctl: DeviceClient, url: str, **options: Any) -> AsyncIterator[RunningBridge]:
    """A bridge on `ctl` in this event loop, with a fast reconnect backoff; connected on entry unless
    `connect=False`."""
    connect = options.pop("connect", True)
    opts = MqttOptions(**{"url": url, "rig": RIG, "backoff_min_s": 0.05, "backoff_max_s": 0.5, **options})
    log: list[str] = []
    stops = StopRequests()
    bridge = MqttBridge(ctl, opts, stops=stops, log=log.append)
    task = asyncio.create_task(bridge.run())
    try:
        if connect:
            await bridge.wait_connected(timeout=10)
        yield RunningBridge(bridge, log, stops, task)
    finally:
        task.cancel()
        (ended,) = await asyncio.gather(task, return_exceptions=True)
        assert ended is None or isinstance(ended, asyncio.CancelledError), f"bridge.run() raised {ended!r}"
