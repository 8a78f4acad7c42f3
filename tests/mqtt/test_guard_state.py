"""The fluoroscopic guard's state on the retained MQTT state topic (issue 15: every screen shows it):
absent where no guard runs, and republished at once when it changes, not at the next heartbeat."""

from __future__ import annotations

import subprocess

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt._payloads import StatePayload
from tests.mqtt.conftest import running_bridge, watching

SimPty = tuple[subprocess.Popen[str], str]


async def test_the_guards_state_is_published_at_once_when_it_changes(
    broker: Mosquitto, sim_pty: SimPty
) -> None:
    _proc, port = sim_pty
    label: list[str | None] = [None]
    # a heartbeat far beyond the test: a state with the guard can only come from the change itself
    async with (
        DeviceClient.open(port) as ctl,
        running_bridge(ctl, broker.url, state_heartbeat_s=60.0, state_expiry_s=120) as rb,
        watching(broker) as w,
    ):
        first = await w.next("state", lambda m: True)
        assert StatePayload.model_validate_json(first.payload).guard is None, "no guard runs here"
        rb.bridge.guard_state = lambda: label[0]
        label[0] = "BLIND(frozen image)"
        rb.bridge.guard_changed()
        blind = await w.next(
            "state", lambda m: StatePayload.model_validate_json(m.payload).guard == "BLIND(frozen image)"
        )
        assert StatePayload.model_validate_json(blind.payload).online
