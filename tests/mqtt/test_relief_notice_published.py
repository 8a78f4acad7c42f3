"""A relief that leaves the line pressurised is published on the events topic with its alarm's name
and the operator's sentence (SPEC §6.7 RELIEF_INCOMPLETE; docs/mqtt.md `events`), against a real
Mosquitto and the real simulator whose drive jams mid-injection."""

from __future__ import annotations

from pathlib import Path

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt._payloads import EventPayload
from protocol import AlarmCode, EventKind, PlanFlags
from tests.host.conftest import continuous_arm
from tests.mqtt.conftest import running_bridge, watching
from tests.support.wire_client import simulator

STALL = """
[[plant.events]]
kind = "motor_stall"
at_s = 2.5
"""


def _payload(m: object) -> EventPayload:
    return EventPayload.model_validate_json(m.payload)  # type: ignore[attr-defined]


async def test_a_relief_cut_short_by_a_stall_is_published_with_its_notice(
    broker: Mosquitto, tmp_path: Path
) -> None:
    scenario = tmp_path / "stall.toml"
    scenario.write_text(STALL)
    with simulator("--pty", "--serial", "MQTT-TEST", "--scenario", str(scenario)) as (_proc, port):
        async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url), watching(broker) as w:
            await ctl.arm(continuous_arm(plan_flags=PlanFlags.RELIEF))
            await ctl.start()
            msg = await w.next("events", lambda m: _payload(m).alarm_name == "RELIEF_INCOMPLETE", 10.0)
            notice = _payload(msg)
            assert notice.kind_name == "ALARM"
            assert notice.event.alarm == AlarmCode.RELIEF_INCOMPLETE
            assert notice.event.detail > 200_000, "the pressure left, above relief_pa"
            kpa = round(notice.event.detail / 1000)
            why = "relief stopped short (time limit, or the plunger could not move back)"
            assert notice.notice == f"{why} with {kpa} kPa in the line"
            before = [_payload(m) for m in w.on("events")]
            kinds = [(p.kind_name, p.alarm_name) for p in before]
            at = kinds.index(("ALARM", "RELIEF_INCOMPLETE"))
            assert kinds[at - 1] == ("RELIEF_DONE", ""), kinds
            assert all(p.notice is None for p in before if p is not before[at])
            assert ("STOP", "") in kinds[:at]
            assert all(p.event.kind != EventKind.ALARM_CLEARED for p in before[at:])
