"""What the bridge publishes, against a real Mosquitto and the real simulator: state (retained, with
the last will `offline`), telemetry (aggregated, rate-limited) and events, each validated against
the documented models (docs/mqtt.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import numpy as np

from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt import MqttBridge, MqttOptions
from host.mqtt._payloads import EventPayload, StatePayload, TelemetryPayload
from protocol import EventKind, State, StopReason, StopSource
from tests.host.conftest import continuous_arm
from tests.mqtt.conftest import RIG, running_bridge, until, watching
from tests.support.wire_client import REPO

SimPty = tuple[subprocess.Popen[str], str]


def _state(m: object) -> StatePayload:
    return StatePayload.model_validate_json(m.payload)  # type: ignore[attr-defined]


async def test_state_telemetry_and_events_arrive_with_their_schemas(broker: Mosquitto, sim_pty: SimPty):
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb, watching(broker) as w:
        first = _state(await w.next("state"))
        assert (first.rig, first.link, first.state, first.device_serial) == (
            RIG,
            "connected",
            "IDLE",
            "MQTT-TEST",
        )

        await ctl.arm(continuous_arm())
        await ctl.start()
        await w.next("state", lambda m: _state(m).state == "INJECTING")
        await w.next("telemetry", lambda m: TelemetryPayload.model_validate_json(m.payload).samples > 0)
        await until(lambda: len(w.on("telemetry")) >= 6, what="six telemetry messages")
        await ctl.stop()
        stopped = _state(await w.next("state", lambda m: _state(m).state == "STOPPED"))
        assert (stopped.stop_reason, stopped.stop_source) == ("OPERATOR_STOP", "OPERATOR")

        events = [EventPayload.model_validate_json(m.payload) for m in w.on("events")]
        kinds = [(e.event.kind, e.event.state) for e in events]
        assert (EventKind.STATE_CHANGE, State.ARMED) in kinds
        assert (EventKind.STATE_CHANGE, State.INJECTING) in kinds
        stop = next(e for e in events if e.event.kind == EventKind.STOP)
        assert (stop.reason_name, stop.source_name, stop.state_name) == (
            "OPERATOR_STOP",
            "OPERATOR",
            "STOPPED",
        )
        assert (stop.event.reason, stop.event.source) == (StopReason.OPERATOR_STOP, StopSource.OPERATOR)
        assert stop.event.delivered_ml > 0.0
        assert stop.event.plunger_mm is not None
        assert stop.event.plunger_mm > 0.0
        assert stop.stop_source == "operator"
        assert all(m.qos == 1 for m in w.on("events"))

        telemetry = [TelemetryPayload.model_validate_json(m.payload) for m in w.on("telemetry")]
        # 1 kHz in 20-sample batches is 50 batches/s: each message joins several, at most 10 per s
        assert max(t.batches for t in telemetry) > 1
        gaps = np.diff([t.host_time_s for t in telemetry])
        assert gaps.min() >= 0.1 - 0.005, gaps
        t_all = np.concatenate([t.telemetry.t_s for t in telemetry])
        assert np.all(np.diff(t_all) > 0), "samples in order, none twice"
        volumes = np.concatenate([t.telemetry.delivered_ml for t in telemetry])
        assert volumes.max() > volumes.min() >= 0.0
        assert np.all(np.diff(volumes) >= 0.0), "delivered never decreases"
        assert rb.bridge.counters.dropped == 0

        async with watching(broker) as late:  # a client arriving later still gets the state: retained
            retained = await late.next("state")
            assert retained.retain
            assert _state(retained).state == "STOPPED"


async def test_link_loss_shows_on_the_state_topic(broker: Mosquitto, sim_pty: SimPty):
    proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb, watching(broker) as w:
        await w.next("state", lambda m: _state(m).link == "connected")
        proc.send_signal(signal.SIGKILL)  # the pump's end of the serial line goes away
        lost = _state(await w.next("state", lambda m: _state(m).link in ("lost", "connecting")))
        assert lost.state is None
        assert lost.last_state == "IDLE"
        assert rb.bridge.connected, "the broker side is unaffected"


def _bridge_cmd(port: str, broker: Mosquitto) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CEMENTGUARD_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "host.cli", "bridge", "--port", port, "--mqtt", broker.url, "--rig", RIG],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


async def test_last_will_offline_when_the_bridge_process_dies(broker: Mosquitto, sim_pty: SimPty):
    """`cementguard bridge` killed with SIGKILL: the broker publishes its will, `offline`, retained."""
    _proc, port = sim_pty
    bridge = _bridge_cmd(port, broker)
    try:
        assert bridge.stdout is not None
        line = await asyncio.to_thread(bridge.stdout.readline)
        assert line.split() == ["BRIDGE", broker.url, RIG], line + (
            bridge.stderr.read() if bridge.stderr else ""
        )
        async with watching(broker) as w:
            online = await w.next("state", lambda m: m.payload != b"offline", within_s=10)
            assert _state(online).online
            bridge.send_signal(signal.SIGKILL)
            await w.next("state", lambda m: m.payload == b"offline")
        async with watching(broker) as late:
            gone = await late.next("state")
            assert (gone.payload, gone.retain) == (b"offline", True)
    finally:
        bridge.kill()
        bridge.wait(timeout=10)


async def test_a_clean_exit_says_offline_too(broker: Mosquitto, sim_pty: SimPty):
    _proc, port = sim_pty
    bridge = _bridge_cmd(port, broker)
    try:
        assert bridge.stdout is not None
        assert (await asyncio.to_thread(bridge.stdout.readline)).startswith("BRIDGE")
        async with watching(broker) as w:
            await w.next("state", lambda m: m.payload != b"offline", within_s=10)
            bridge.send_signal(signal.SIGTERM)
            await w.next("state", lambda m: m.payload == b"offline")
        assert await asyncio.to_thread(bridge.wait, 10) == 0
        assert bridge.stderr is not None
        assert "bridge ended: published" in bridge.stderr.read()
    finally:
        bridge.kill()
        bridge.wait(timeout=10)


async def test_outgoing_queue_is_bounded_and_drops_the_oldest(sim_pty: SimPty, tmp_path):
    """No broker at all: the bridge keeps consuming the link, its queue holds the newest messages."""
    _proc, port = sim_pty
    url = f"mqtt://127.0.0.1:{_closed_port()}"
    async with DeviceClient.open(port) as ctl:
        log: list[str] = []
        bridge = MqttBridge(
            ctl, MqttOptions(url=url, rig=RIG, queue_size=4, backoff_min_s=0.05), log=log.append
        )
        task = asyncio.create_task(bridge.run())
        try:
            await ctl.arm(continuous_arm())
            await ctl.start()
            await until(lambda: bridge.counters.dropped >= 5, what="drops counted")
            await ctl.stop()  # the controller answers at once: nothing waits on the broker
            assert not bridge.connected
            assert len(bridge._outbox) == 4
            assert any("cannot connect" in line for line in log)
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _closed_port() -> int:
    from hil.mosquitto import free_port

    return free_port()


def test_payload_models_round_trip_json() -> None:
    payload = StatePayload(
        rig=RIG,
        link="connected",
        link_reason="ok",
        state="IDLE",
        last_state="IDLE",
        stop_reason=None,
        stop_source=None,
        device_serial="X",
        pressure_kpa=1.0,
        delivered_ml=0.5,
        plunger_mm=12.25,
        host_time_s=1.0,
    )
    data = json.loads(payload.model_dump_json())
    assert data["schema_version"] == "cementguard.state/2"
    assert (data["delivered_ml"], data["plunger_mm"]) == (0.5, 12.25)
    assert StatePayload.model_validate(data) == payload
