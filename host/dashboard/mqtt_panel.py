"""`--mqtt`: the MQTT bridge (host.mqtt) run beside the dashboard, its state in the connection panel.

The bridge publishes the controller's state and telemetry and forwards fluoroscopy stops from the
imaging system; it shares the dashboard's `StopRequests`, so a stop it forwards is logged with its
MQTT origin and latency. It never raises because of the broker: a dead broker shows as
"disconnected" here and nothing else changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.dashboard.app import DashboardApp

PANEL_PERIOD_S = 0.5


def describe_bridge(url: str, rig: str, connected: bool, counters: Any) -> str:
    state = "connected" if connected else "DISCONNECTED"
    c = counters
    return (
        f"{state} {url} rig {rig}\n"
        f"pub {c.published}  dropped {c.dropped}  stops in {c.stops_received} / sent {c.stops_forwarded}  "
        f"refused {c.refused}  reconnects {c.reconnects}"
    )


def mqtt_runner(url: str, rig: str) -> Callable[[DashboardApp], Awaitable[None]]:
    """The app's background task for `--mqtt URL --rig RIG`; options are checked now (a bad URL or
    rig name is a usage error before the screen opens)."""
    from host.mqtt import MqttOptions
    from host.settings import load_settings

    options = MqttOptions.from_settings(load_settings().mqtt, url=url, rig=rig)

    async def run(app: DashboardApp) -> None:
        from host.dashboard.source import LiveSource
        from host.mqtt import MqttBridge

        source = app.source
        if not isinstance(source, LiveSource):
            return
        app.model.mqtt = f"waiting for the controller ({url})"
        await source.connected.wait()
        ctl = source.controller
        if ctl is None:
            return
        bridge = MqttBridge(ctl, options, stops=source.stops, log=lambda _text: None)
        task = asyncio.get_running_loop().create_task(bridge.run())
        try:
            while not task.done():
                app.model.mqtt = describe_bridge(options.url, options.rig, bridge.connected, bridge.counters)
                app.model.touch()
                await asyncio.sleep(PANEL_PERIOD_S)  # display cadence
            task.result()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return run
