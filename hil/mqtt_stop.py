"""The imaging system's fluoroscopy stop over MQTT, for HIL scenarios with an `mqtt_stop` event.

A real Mosquitto (hil/mosquitto.py) on a free loopback port, the host's MqttBridge on the scenario's
DeviceClient, and a separate MQTT client playing the imaging system, which publishes on
`cementguard/<rig>/fluoro/stop`. The bridge forwards it as STOP with source FLUORO_REMOTE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt import MqttBridge, MqttOptions, Topics
from host.stops import StopRequests

RIG = "hil"
CONNECT_TIMEOUT_S = 10.0


class MqttStopper:
    """Broker + bridge + imaging-system publisher. `async with MqttStopper(dir) as m: await m.attach(ctl)`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / "mosquitto"
        self.broker: Mosquitto | None = None
        self.bridge: MqttBridge | None = None
        self.log: list[str] = []
        self._bridge_task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> MqttStopper:
        self.broker = await asyncio.to_thread(Mosquitto.start, self.workdir)
        return self

    async def attach(self, ctl: DeviceClient) -> None:
        """Run the bridge on `ctl` and connect the publisher; returns once both are on the broker."""
        assert self.broker is not None
        self.bridge = MqttBridge(
            ctl, MqttOptions(url=self.broker.url, rig=RIG), stops=StopRequests(), log=self.log.append
        )
        self._bridge_task = asyncio.create_task(self.bridge.run())
        await self.bridge.wait_connected(CONNECT_TIMEOUT_S)
        where = urlsplit(self.broker.url)
        client = aiomqtt.Client(
            hostname=where.hostname or "127.0.0.1", port=where.port or 1883, identifier="hil-imaging"
        )
        self._client = await self._stack.enter_async_context(client)

    async def publish_stop(self) -> None:
        """What an imaging system sends when cement nears the posterior wall (QoS 1)."""
        assert self._client is not None
        payload = json.dumps(
            {"reason": "HIL scenario: cement near the posterior wall", "by": "hil", "sent_at": time.time()}
        )
        await self._client.publish(Topics(RIG).fluoro_stop, payload.encode(), qos=1)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._stack.aclose()
        except Exception as close_error:  # teardown goes on; the broker is killed anyway
            self.log.append(f"publisher close: {close_error!r}")
        if self._bridge_task is not None:
            self._bridge_task.cancel()
            await asyncio.gather(self._bridge_task, return_exceptions=True)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.kill)

    def describe(self) -> dict[str, Any]:
        return {"broker": self.broker.url if self.broker else None, "log": self.log[-20:]}
