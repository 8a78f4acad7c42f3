"""A bridge worker that crashes is reported at once (log, `failures`, and the retained state topic),
never left dead behind a bridge that still looks connected (issue 12, item 8); the bridge's log
lines go to the logging system (item 9)."""

from __future__ import annotations

import logging
import subprocess

import pytest

import host.mqtt._bridge
from hil.mosquitto import Mosquitto
from host.client import DeviceClient
from host.mqtt._payloads import StatePayload
from tests.host.conftest import continuous_arm
from tests.mqtt.conftest import mosquitto_pub, running_bridge, until, watching

SimPty = tuple[subprocess.Popen[str], str]


async def test_a_crashed_telemetry_worker_is_named_in_the_state_and_logged(
    broker: Mosquitto, sim_pty: SimPty, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("telemetry encoder broke")

    monkeypatch.setattr(host.mqtt._bridge.TelemetryRecord, "from_samples", broken)
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb, watching(broker) as w:
        await ctl.arm(continuous_arm())
        await ctl.start()
        failed = await w.next(
            "state", lambda m: bool(StatePayload.model_validate_json(m.payload).bridge_failures)
        )
        state = StatePayload.model_validate_json(failed.payload)
        assert state.bridge_failures == ["mqtt: telemetry out: RuntimeError: telemetry encoder broke"]
        assert "mqtt: telemetry out" in rb.bridge.failures
        await ctl.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "host.mqtt._bridge"]
    assert any("telemetry encoder broke" in r.getMessage() for r in errors), caplog.text


async def test_refusals_and_malformed_stops_leave_a_trace_in_the_log(
    broker: Mosquitto, sim_pty: SimPty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="host.mqtt._bridge")
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, running_bridge(ctl, broker.url) as rb:
        await mosquitto_pub(broker, f"cementguard/{rb.bridge.options.rig}/command/arm", "-m", "{}")
        await mosquitto_pub(broker, f"cementguard/{rb.bridge.options.rig}/stop", "-m", "not json")
        await until(lambda: rb.bridge.counters.refused == 1 and rb.bridge.counters.malformed == 1)
    text = caplog.text
    assert "refused" in text
    assert "malformed payload" in text
