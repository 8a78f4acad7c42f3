"""The retained `state` is honest across a broker restart (issue 13 item 10).

A broker with persistence restores its retained messages when it starts again. It died, so the
bridge's last will never fired: before, the restored `online` state stood until the bridge was back,
and for ever when the bridge died with it (one machine losing power). The bridge now publishes its
state with an MQTT 5 message expiry and renews it on a heartbeat: the broker drops a state the bridge
did not renew within `state_expiry_s`, restart or not.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt import MqttOptions
from host.mqtt._options import MqttOptionsError
from tests.mqtt.conftest import RIG, running_bridge, until, watching

SimPty = tuple[subprocess.Popen[str], str]
STATE = f"cementguard/{RIG}/state"


async def _retained_state(broker: Mosquitto) -> bytes | None:
    """What a client subscribing now gets on the state topic: the retained message, or None."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(STATE, qos=1)
        try:
            async with asyncio.timeout(0.5):  # a retained message comes right after the SUBACK
                async for message in client.messages:
                    return bytes(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            return None
    return None


async def test_the_restored_online_state_expires_when_the_bridge_died_with_the_broker(
    tmp_path: Path, sim_pty: SimPty
) -> None:
    _proc, port = sim_pty
    with Mosquitto.start(tmp_path / "broker", persistence=True) as broker:
        async with DeviceClient.open(port) as ctl:
            async with (
                running_bridge(ctl, broker.url, state_heartbeat_s=0.3, state_expiry_s=1) as rb,
                watching(broker, protocol=aiomqtt.ProtocolVersion.V5) as watcher,
            ):
                # the heartbeat renews the state, each with its expiry and saying how long it is valid
                renewed = await watcher.next("state", lambda m: len(watcher.on("state")) >= 4)
                assert json.loads(renewed.payload)["valid_for_s"] == 1.0  # type: ignore[arg-type]
                assert renewed.properties is not None
                remaining = renewed.properties.MessageExpiryInterval  # as the broker forwards it
                assert remaining in (0, 1)
                db = broker.workdir / "mosquitto.db"
                await until(db.exists, within_s=10, what="the broker saving its database")
                saved = db.stat().st_mtime
                await until(lambda: db.stat().st_mtime > saved, within_s=10, what="a save with the state")
                broker.kill()  # the broker and the bridge go down together: no will, no goodbye
                await until(lambda: not rb.bridge.connected, what="the bridge noticing")
            broker.restart()
            # no bridge any more: the restored `online` must not outlive its expiry
            await until_no_state(broker)


async def until_no_state(broker: Mosquitto, within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while (payload := await _retained_state(broker)) is not None:
            assert payload != b"offline"  # the will never fired: the broker died first
            await asyncio.sleep(0.2)  # polling a broker-side timer


async def test_a_running_bridge_keeps_its_state_retained_past_the_expiry(
    tmp_path: Path, sim_pty: SimPty
) -> None:
    _proc, port = sim_pty
    with Mosquitto.start(tmp_path / "broker") as broker:
        async with (
            DeviceClient.open(port) as ctl,
            running_bridge(ctl, broker.url, state_heartbeat_s=0.3, state_expiry_s=1),
        ):
            for _ in range(3):  # across three expiries, a new subscriber always finds the state
                payload = await _retained_state(broker)
                assert payload is not None
                assert json.loads(payload)["online"] is True
                await asyncio.sleep(0.6)  # spans the expiry: only the heartbeat keeps it


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"state_heartbeat_s": 1.0, "state_expiry_s": 1}, "state_expiry_s"),
        ({"state_expiry_s": 2.5}, "state_expiry_s"),
        ({"state_heartbeat_s": float("nan")}, "state_heartbeat_s"),
        ({"state_heartbeat_s": 0.0}, "state_heartbeat_s"),
    ],
)
def test_the_state_expiry_must_outlast_two_heartbeats(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(MqttOptionsError) as raised:
        MqttOptions(url="mqtt://127.0.0.1:1883", rig=RIG, **kwargs)
    assert raised.value.field == field
