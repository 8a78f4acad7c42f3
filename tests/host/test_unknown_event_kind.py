"""An EVENT whose kind (or alarm) this host does not know, a reserved EventKind 7 or 8 or a value a
newer device appends, is logged with its raw value and handled like any event: never a crash, never
taken for a known kind (SPEC §6.6 reserved values, §11.3 unknown values)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from host.client import DeviceClient
from host.dashboard.model import DashboardModel
from host.link import LinkOptions
from host.mqtt._payloads import EventPayload
from host.recording import Recorder, Recording
from host.relief_notice import relief_notice
from protocol import Event, EventKind, Flags, State, StopReason, StopSource
from protocol.models import EventRecord
from tests.host.conftest import FakeDevice, event_message


def _event(kind: int, alarm: int = 0) -> Event:
    return Event(
        t_us=2_500_000,
        event_index=41,
        kind=kind,
        state=State.STOPPED,
        prev_state=State.STOPPED,
        reason=StopReason.NONE,
        source=StopSource.NONE,
        alarm=alarm,
        flags=Flags.HOST_LINK_OK,
        pressure_pa=350_000,
        delivered_nl=1_200_000,
        plunger_um=15_000,
        detail=77,
    )


@pytest.mark.parametrize(("kind", "alarm"), [(7, 0), (8, 0), (200, 0), (int(EventKind.ALARM), 250)])
def test_the_json_record_keeps_an_unknown_kind_and_alarm_raw(kind: int, alarm: int) -> None:
    record = EventRecord.from_message(_event(kind, alarm))
    assert (int(record.kind), int(record.alarm)) == (kind, alarm)
    assert record.state == State.STOPPED
    assert record.pressure_kpa == 350.0
    back = EventRecord.model_validate_json(record.model_dump_json())
    assert (int(back.kind), int(back.alarm), back.event_index) == (kind, alarm, 41)


@pytest.mark.parametrize("kind", [7, 8])
def test_the_mqtt_event_payload_names_an_unknown_kind_by_its_number(kind: int) -> None:
    """What the bridge publishes for every event (host/mqtt `_on_event`): the consumer must not
    fail on it, or the bridge would stop publishing (and be reported failed) on one odd event."""
    payload = EventPayload.from_event("rig1", _event(kind), {})
    assert payload.kind_name == str(kind)
    assert payload.state_name == "STOPPED"
    again = EventPayload.model_validate_json(payload.model_dump_json())
    assert int(again.event.kind) == kind


def test_a_recording_and_the_dashboard_take_an_unknown_kind(tmp_path: Path) -> None:
    with Recorder.create(tmp_path / "run", {"plan": "x"}, None, background=False) as rec:
        rec.add_event(_event(7))
        rec.add_event(_event(8))
    rec_read = Recording.open(tmp_path / "run")
    assert [int(e.record.kind) for e in rec_read.events] == [7, 8]
    assert rec_read.stop_events() == []

    model = DashboardModel()
    entry = model.on_event(
        kind=7, state=int(State.STOPPED), reason=0, source=0, t_s=2.5, pressure_kpa=350.0, delivered_ml=1.2
    )
    assert entry is None, "not taken for a STOP"
    assert relief_notice(_event(8)) is None


async def test_over_the_wire_the_link_delivers_reserved_kinds_and_stays_up(
    fake_device: Callable[..., FakeDevice],
) -> None:
    """A device that sends EventKind 7 and 8 (a defect, §6.6) or a newer kind: the host's link
    decodes them leniently (§11.3), delivers them in order with their raw kind, counts no missed
    event, and keeps answering; what every consumer builds from them (the MQTT payload) is made."""
    fast = LinkOptions(reconnect_initial_s=0.02, reconnect_max_s=0.1)
    async with fake_device() as dev, DeviceClient.open(dev.path, fast) as ctl:
        events = ctl.events()
        for index, kind in ((1, 7), (2, 8), (3, 42)):
            dev.send(dataclasses.replace(event_message(index, EventKind.ALARM, State.IDLE), kind=kind))
        dev.send(event_message(4, EventKind.STATE_CHANGE, State.IDLE))
        got = [await events.get(timeout=2) for _ in range(4)]
        assert [int(e.kind) for e in got] == [7, 8, 42, EventKind.STATE_CHANGE]
        assert ctl.counters.missed_events == 0
        assert (await ctl.get_status()).state == State.IDLE, "the link still answers"
        assert [EventPayload.from_event("rig1", e, {}).kind_name for e in got] == [
            "7",
            "8",
            "42",
            "STATE_CHANGE",
        ]
