"""The repository's locked-down Mosquitto deployment, on a real broker (issue 13 item 9).

deploy/mosquitto/cementguard.acl with passwords (as deploy/mosquitto/cementguard.conf sets up): the
rig's own bridge publishes its topics and receives stops; the imaging system may publish a stop and
nothing else (its forged retained `state` never reaches anyone); a viewer reads and cannot publish;
an anonymous client cannot connect at all. On an open broker (the tests' default) the same forged
state is delivered and retained: that is what the README warns about.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt._aiomqtt_adapter import retrieve_disconnect
from tests.mqtt.conftest import RIG, running_bridge, until, watching
from tests.support.wire_client import REPO

DEPLOY = REPO / "deploy" / "mosquitto"
USERS = {"cementguard-rig1": "bridge-pw", "imaging": "imaging-pw", "viewer": "viewer-pw"}
FORGED = json.dumps({"state": "online", "device_state": "IDLE", "forged": True})


def _conf_directives() -> dict[str, str]:
    lines = (DEPLOY / "cementguard.conf").read_text().splitlines()
    pairs = (line.split(None, 1) for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


def test_the_example_config_is_locked_down() -> None:
    conf = _conf_directives()
    assert conf["allow_anonymous"] == "false"
    assert conf["password_file"].endswith("cementguard.passwd")
    assert conf["acl_file"].endswith("cementguard.acl")
    assert conf["persistence"] == "true"  # the bridge's persistent session survives a restart
    assert 1 << 20 <= int(conf["max_packet_size"]) <= 16 << 20  # bounded, above the bridge's own messages


@pytest.fixture
def locked(tmp_path: Path) -> Mosquitto:
    broker = Mosquitto.start(
        tmp_path / "broker",
        users=USERS,
        acl_file=DEPLOY / "cementguard.acl",
        max_packet_size=int(_conf_directives()["max_packet_size"]),
    )
    yield broker  # type: ignore[misc]
    broker.kill()


def _client(broker: Mosquitto, user: str | None, **kwargs: object) -> aiomqtt.Client:
    password = USERS.get(user) if user else None
    return aiomqtt.Client(broker.host, broker.port, username=user, password=password, **kwargs)  # type: ignore[arg-type]


async def test_only_the_rigs_bridge_publishes_its_state_and_only_stops_come_from_imaging(
    locked: Mosquitto, sim_pty: tuple[object, str]
) -> None:
    _proc, port = sim_pty
    async with (
        DeviceClient.open(port) as ctl,
        running_bridge(ctl, locked.url, username="cementguard-rig1", password="bridge-pw") as rb,
        watching(locked, username="viewer", password=USERS["viewer"]) as seen,
    ):
        state = await seen.next("state", lambda m: b'"online"' in bytes(m.payload))
        assert b"forged" not in bytes(state.payload)

        async with _client(locked, "imaging") as imaging:
            await imaging.publish(f"cementguard/{RIG}/state", FORGED, qos=1, retain=True)  # denied
            await imaging.publish(f"cementguard/{RIG}/events", FORGED, qos=1)  # denied
            await imaging.publish(f"cementguard/{RIG}/fluoro/stop", '{"by": "imaging-1"}', qos=1)  # allowed
        await until(lambda: any("by imaging-1" in line for line in rb.log), what="the imaging stop")

        async with _client(locked, "viewer") as viewer:  # a viewer reads and cannot publish
            await viewer.publish(f"cementguard/{RIG}/fluoro/stop", '{"by": "viewer"}', qos=1)
        async with _client(locked, "imaging") as imaging:  # the broker took the viewer's publish first
            await imaging.publish(f"cementguard/{RIG}/fluoro/stop", '{"by": "imaging-2"}', qos=1)
        await until(lambda: any("by imaging-2" in line for line in rb.log), what="the second imaging stop")
        assert not any("by viewer" in line for line in rb.log)
        await ctl.get_status()  # the forged messages had every chance to arrive meanwhile
    assert not any(b"forged" in bytes(m.payload) for m in seen.messages)


async def test_a_huge_publish_is_refused_by_the_broker_not_held_by_the_bridge(
    locked: Mosquitto, sim_pty: tuple[object, str]
) -> None:
    """A 256 MB publish on a stop topic used to reach the bridge, which held it several times over;
    the example config's max_packet_size disconnects the sender instead, and stops go on working."""
    _proc, port = sim_pty
    limit = int(_conf_directives()["max_packet_size"])
    assert limit >= 1 << 20  # the bridge's own largest message (telemetry at its cap) is ~0.6 MB
    async with (
        DeviceClient.open(port) as ctl,
        running_bridge(ctl, locked.url, username="cementguard-rig1", password="bridge-pw") as rb,
    ):
        sender = _client(locked, "imaging")
        with pytest.raises(aiomqtt.MqttError):  # disconnected: the publish never completes
            async with sender:
                await sender.publish(f"cementguard/{RIG}/fluoro/stop", b"x" * (limit + 1), qos=1, timeout=5)
        retrieve_disconnect(sender)  # its "unexpected disconnection" is the point, not a stray error
        async with _client(locked, "imaging") as imaging:
            await imaging.publish(f"cementguard/{RIG}/fluoro/stop", '{"by": "after"}', qos=1)
        await until(lambda: any("by after" in line for line in rb.log), what="the next stop")
        assert not any("oversized" in line for line in rb.log)  # the huge one never reached it
        assert rb.bridge.connected


async def test_an_anonymous_client_cannot_connect(locked: Mosquitto) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(locked, None):
            pass


async def test_on_an_open_broker_anyone_can_forge_the_retained_state(broker: Mosquitto) -> None:
    """What the README warns about: without the ACL, a stranger's retained state is what everyone reads."""
    async with aiomqtt.Client(broker.host, broker.port) as stranger:
        await stranger.publish(f"cementguard/{RIG}/state", FORGED, qos=1, retain=True)
    async with watching(broker) as seen:
        forged = await seen.next("state")
    assert b"forged" in bytes(forged.payload)
    await asyncio.sleep(0)
