"""Stops in, everything else refused: `mosquitto_pub` on the stop topics stops a running simulated
injection (fail safe on malformed and oversized payloads); a remote start or arm changes nothing."""

from __future__ import annotations

import subprocess

import pytest

from hil.mosquitto import Mosquitto
from host.client import DeviceClient, LinkState
from host.mqtt._payloads import EventPayload, RefusalPayload
from protocol import Event, EventKind, State, StopReason, StopSource
from tests.host.conftest import continuous_arm, next_matching
from tests.mqtt.conftest import RIG, mosquitto_pub, running_bridge, until, watching

SimPty = tuple[subprocess.Popen[str], str]
FLUORO = f"cementguard/{RIG}/fluoro/stop"


def _is_stop(event: Event) -> bool:
    return event.kind == EventKind.STOP


async def _injecting(ctl: DeviceClient) -> None:
    await ctl.arm(continuous_arm())
    await ctl.start()
    await ctl.wait_for_state(State.INJECTING, timeout=5)


async def test_mosquitto_pub_on_the_fluoro_topic_stops_the_injection(broker: Mosquitto, sim_pty: SimPty):
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb, watching(broker) as w:
        async with ctl.events() as events:
            await _injecting(ctl)
            await mosquitto_pub(
                broker, FLUORO, "-m", '{"by": "c-arm 2", "reason": "cement near the posterior wall"}'
            )
            stop = await next_matching(events, _is_stop, within_s=5)
            notes = rb.stops.match(stop, events.received_at)  # the recording's matcher got the request too
        assert (stop.state, stop.reason, stop.source) == (
            State.STOPPED,
            StopReason.FLUORO_STOP,
            StopSource.FLUORO_REMOTE,
        )
        assert notes["stop_origin"] == f"mqtt {FLUORO}"
        assert 0 < notes["stop_latency_ms"] < 5000
        published = EventPayload.model_validate_json(
            (await w.next("events", lambda m: b'"STOP"' in m.payload)).payload
        )
        assert (published.reason_name, published.source_name) == ("FLUORO_STOP", "FLUORO_REMOTE")
        assert published.stop_origin == f"mqtt {FLUORO}"
        assert published.stop_latency_ms is not None
        assert published.stop_source == "fluoroscopy (imaging over MQTT)"
        await until(lambda: rb.bridge.counters.stops_forwarded == 1, what="stop acknowledged")
        assert (rb.bridge.counters.malformed, rb.bridge.counters.oversized) == (0, 0)
        assert any("stop on" in line and "by c-arm 2: cement near" in line for line in rb.log)
        assert ctl.state == State.STOPPED, "latched"


async def test_the_generic_stop_topic_stops_with_source_remote(broker: Mosquitto, sim_pty: SimPty):
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url), ctl.events() as events:
        await _injecting(ctl)
        await mosquitto_pub(broker, f"cementguard/{RIG}/stop", "-n")  # an empty payload is a plain stop
        stop = await next_matching(events, _is_stop, within_s=5)
        assert (stop.reason, stop.source) == (StopReason.OPERATOR_STOP, StopSource.REMOTE)


@pytest.mark.parametrize(
    ("payload", "counter", "logged"),
    [
        (b"STOP NOW {", "malformed", "malformed payload (not JSON"),
        (b'["stop"]', "malformed", "malformed payload (not a JSON object"),
        (b'{"reason": 5}', "malformed", "malformed payload (reason"),
        (b"\xff\xfe\x00garbage", "malformed", "malformed payload (not JSON"),
        (b"x" * 5000, "oversized", "oversized payload (5000 bytes > 1024)"),
    ],
    ids=["not-json", "not-object", "bad-field", "binary", "oversized"],
)
async def test_malformed_and_oversized_payloads_still_stop(
    broker: Mosquitto, sim_pty: SimPty, tmp_path, payload: bytes, counter: str, logged: str
):
    _proc, port = sim_pty
    message = tmp_path / "payload.bin"
    message.write_bytes(payload)
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb, ctl.events() as events:
        await _injecting(ctl)
        await mosquitto_pub(broker, FLUORO, "-f", str(message))
        stop = await next_matching(events, _is_stop, within_s=5)
        assert (stop.reason, stop.source) == (StopReason.FLUORO_STOP, StopSource.FLUORO_REMOTE)
        await until(lambda: getattr(rb.bridge.counters, counter) == 1, what=f"{counter} counted")
        assert any(logged in line and "stopped anyway" in line for line in rb.log), rb.log


async def test_a_retained_stop_is_an_old_request_not_a_new_stop(broker: Mosquitto, sim_pty: SimPty):
    """A stop left retained on the broker would stop every injection after each reconnect: ignored."""
    _proc, port = sim_pty
    await mosquitto_pub(broker, FLUORO, "-r", "-m", "{}")
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb:
        await until(lambda: rb.bridge.counters.stale == 1, what="retained stop seen")
        await _injecting(ctl)
        assert rb.bridge.counters.stops_received == 0
        await mosquitto_pub(broker, FLUORO, "-m", "{}")  # a live one still stops
        await ctl.wait_for_state(State.STOPPED, timeout=5)
    await mosquitto_pub(broker, FLUORO, "-r", "-n")  # clear the retained message


@pytest.mark.parametrize(
    ("topic", "payload", "asked"),
    [
        ("command", '{"command": "start"}', "start"),
        ("command/arm", '{"flow_ml_min": 6}', "arm"),
        ("command", "resume", "resume"),
        ("command/set_limits", '{"hard_limit_kpa": 9000}', "set_limits"),
        ("command/clear", "", "clear"),
    ],
)
async def test_remote_commands_are_refused(
    broker: Mosquitto, sim_pty: SimPty, topic: str, payload: str, asked: str
):
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb, watching(broker) as w:
        await ctl.arm(continuous_arm())
        before = (await ctl.get_status()).hard_limit_pa
        async with ctl.events() as events:
            await mosquitto_pub(
                broker, f"cementguard/{RIG}/{topic}", *(["-m", payload] if payload else ["-n"])
            )
            answer = RefusalPayload.model_validate_json((await w.next("refused")).payload)
            assert events.get_nowait() is None, "no event: the controller was not asked anything"
        assert answer.request == asked
        assert answer.topic == f"cementguard/{RIG}/{topic}"
        assert answer.accepted_topics == [FLUORO, f"cementguard/{RIG}/stop"]
        assert "only stop requests" in answer.reason
        assert rb.bridge.counters.refused == 1
        assert any(f"refused {asked!r}" in line for line in rb.log)
        status = await ctl.get_status()
        assert (status.state, status.hard_limit_pa) == (State.ARMED, before)


async def test_a_stop_while_the_link_is_lost_is_logged(broker: Mosquitto, sim_pty: SimPty):
    proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb:
        proc.kill()  # the controller is gone (its watchdog would have stopped a real pump: HOST_LOST)
        await ctl.wait_for_link(LinkState.LOST, LinkState.CONNECTING, LinkState.FAILED, timeout=5)
        await mosquitto_pub(broker, FLUORO, "-m", "{}")
        await until(lambda: rb.bridge.counters.stops_unsent == 1, what="unsent stop counted")
        assert any(
            "not sent, the link to the controller is down" in line and "HOST_LOST" in line for line in rb.log
        )
        assert rb.bridge.counters.stops_forwarded == 0
