"""`--mqtt`: the MQTT bridge (host.mqtt) run beside the dashboard, its state in the connection panel.

The bridge publishes the controller's state and telemetry and forwards fluoroscopy stops from the
imaging system; it shares the dashboard's `StopRequests`, so a stop it forwards is logged with its
MQTT origin and latency. It never raises because of the broker: a dead broker shows as
"disconnected" here and nothing else changes. Its log lines (refusals, broker errors, malformed stop
messages) go to the `host.mqtt._bridge` logger, into the recording's host.log while recording; a
bridge worker that fails is named here in red, never left dead behind "connected".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.dashboard.app import DashboardApp

log = logging.getLogger(__name__)

PANEL_PERIOD_S = 0.5


def describe_bridge(
    url: str, rig: str, connected: bool, counters: Any, failures: dict[str, str] | None = None
) -> str:
    state = "connected" if connected else "DISCONNECTED"
    c = counters
    text = (
        f"{state} {url} rig {rig}\n"
        f"pub {c.published}  dropped {c.dropped}  stops in {c.stops_received} / sent {c.stops_forwarded}  "
        f"refused {c.refused}  reconnects {c.reconnects}"
    )
    for name, error in (failures or {}).items():
        text += f"\nFAILED {name}: {error}"
    return text


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
        bridge = MqttBridge(ctl, options, stops=source.stops)
        model = app.model
        if model.guard is not None:  # --frames: the guard's state on the state topic too
            bridge.guard_state = lambda: model.guard.label if model.guard is not None else None
            model.guard_listeners.append(bridge.guard_changed)
        task = asyncio.get_running_loop().create_task(bridge.run())
        try:
            while not task.done():
                app.model.mqtt = describe_bridge(
                    options.url, options.rig, bridge.connected, bridge.counters, bridge.failures
                )
                app.model.touch()
                await asyncio.sleep(PANEL_PERIOD_S)  # display cadence
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.error("the MQTT bridge failed: %s", error, exc_info=error)
                app.model.mqtt = f"FAILED {options.url}: {type(error).__name__}: {error}"
                app.model.touch()
                app.notify(str(error), title="MQTT bridge failed", severity="error", timeout=30)
        finally:
            if bridge.guard_changed in model.guard_listeners:
                model.guard_listeners.remove(bridge.guard_changed)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return run
