"""A relief that leaves the line pressurised is published on the events topic with its alarm's name
and the operator's sentence (SPEC §6.7 RELIEF_INCOMPLETE; docs/mqtt.md `events`), against a real
Mosquitto and the real simulator whose drive jams mid-injection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt._payloads import EventPayload, StatePayload
from protocol import AlarmCode, EventKind, PlanFlags
from tests.host.conftest import continuous_arm
from tests.mqtt.conftest import Watcher, running_bridge, watching
from tests.support.wire_client import simulator

STALL = """
[[plant.events]]
kind = "motor_stall"
at_s = 2.5
"""


def _state(m: object) -> StatePayload:
    return StatePayload.model_validate_json(m.payload)  # type: ignore[attr-defined]


def _new(w: Watcher, m: object, seen: int) -> bool:
    """`m` arrived on the state topic after the first `seen` messages there."""
    return any(m is later for later in w.on("state")[seen:])


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
            # the retained state says it too, for a supervisor that subscribes later, through CLEAR
            state = await w.next("state", lambda m: _state(m).relief_notice == notice.notice)
            assert _state(state).state == "STOPPED"
            seen = len(w.on("state"))
            await ctl.clear(settle_s=2.0)
            cleared = await w.next("state", lambda m: _new(w, m, seen) and _state(m).state == "IDLE")
            assert _state(cleared).relief_notice == notice.notice, "CLEAR does not empty the line"
            seen = len(w.on("state"))
            await ctl.arm(continuous_arm(plan_flags=PlanFlags.RELIEF))
            armed = await w.next("state", lambda m: _new(w, m, seen) and _state(m).state == "ARMED")
            assert _state(armed).relief_notice is None, "a new push: the notice was about the line before"


def test_the_state_topic_keeps_the_notice_until_the_next_push() -> None:
    """The bridge's own rule, event by event, without a broker: the notice enters the retained
    state at once (a republish), survives CLEAR, and leaves at the next ARM or movement."""
    from types import SimpleNamespace

    from host.client import LinkState
    from host.mqtt import MqttBridge, MqttOptions
    from protocol import Event, Flags, State, StopReason, StopSource

    ctl: Any = SimpleNamespace(
        link_state=LinkState.CONNECTED, link_reason="test", device=SimpleNamespace(serial="T-1")
    )
    bridge = MqttBridge(ctl, MqttOptions(url="mqtt://127.0.0.1:1", rig="rig1"))

    def event(kind: EventKind, state: State, alarm: AlarmCode = AlarmCode.NONE, detail: int = 0) -> Event:
        return Event(
            t_us=1,
            event_index=1,
            kind=kind,
            state=state,
            prev_state=state,
            reason=StopReason.NONE,
            source=StopSource.NONE,
            alarm=alarm,
            flags=Flags.HOST_LINK_OK,
            pressure_pa=777_913,
            delivered_nl=0,
            plunger_um=5_901,
            detail=detail,
        )

    def last_state() -> StatePayload:
        items = [payload for topic, payload, _q, _r in bridge._outbox._items if topic.endswith("/state")]
        return StatePayload.model_validate_json(items[-1])

    bridge._on_event(event(EventKind.RELIEF_DONE, State.STOPPED, detail=0), {})
    bridge._on_event(event(EventKind.ALARM, State.STOPPED, AlarmCode.RELIEF_INCOMPLETE, 777_913), {})
    said = "relief stopped short (time limit, or the plunger could not move back) with 778 kPa in the line"
    assert last_state().relief_notice == said
    bridge._on_event(event(EventKind.STATE_CHANGE, State.IDLE), {})  # CLEAR
    assert last_state().relief_notice == said
    bridge._on_event(event(EventKind.STATE_CHANGE, State.PRIMING), {})  # a new push
    assert last_state().relief_notice is None
