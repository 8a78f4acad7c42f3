"""`--mqtt`: the bridge runs beside the dashboard (real Mosquitto, real simulator); its state shows in
the connection panel, and a fluoroscopy stop from the imaging system lands in the stop log with its
MQTT origin and latency, through the dashboard's own stop requests."""

from __future__ import annotations

from pathlib import Path

from hil.mosquitto import Mosquitto
from host.dashboard.mqtt_panel import mqtt_runner
from host.dashboard.source import LiveSource
from protocol import State
from tests.dashboard.conftest import until
from tests.mqtt.conftest import mosquitto_pub

RIG = "dashrig"


async def test_mqtt_fluoro_stop_is_logged_and_broker_state_shown(
    live_dashboard, continuous_plan: Path, tmp_path: Path
) -> None:
    with Mosquitto.start(tmp_path / "broker") as broker:
        runner = mqtt_runner(broker.url, RIG)
        async with live_dashboard(continuous_plan, background=runner) as (app, pilot):
            await until(pilot, lambda: (app.model.mqtt or "").startswith("connected"), 10.0)
            assert f"rig {RIG}" in (app.model.mqtt or "")
            await pilot.press("a")
            source = app.source
            assert isinstance(source, LiveSource)
            await until(
                pilot, lambda: source.controller is not None and source.controller.state == State.ARMED
            )
            await pilot.press("s")
            await until(pilot, lambda: app.model.state == State.INJECTING)
            await mosquitto_pub(broker, f"cementguard/{RIG}/fluoro/stop", "-m", '{"reason": "vein filling"}')
            await until(pilot, lambda: app.model.stops and app.model.stops[-1].reason == "FLUORO_STOP")
            entry = app.model.stops[-1]
            assert entry.source == "fluoroscopy (imaging over MQTT)"
            assert entry.origin is not None
            assert "mqtt" in entry.origin
            assert entry.latency_ms is not None
            await until(pilot, lambda: "stops in 1 / sent 1" in (app.model.mqtt or ""))
            broker.kill()
            await until(pilot, lambda: (app.model.mqtt or "").startswith("DISCONNECTED"), 20.0)
            assert app.is_running
