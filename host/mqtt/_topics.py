"""The bridge's topic names for one rig (documented in docs/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OFFLINE", "ROOT", "Topics"]

ROOT = "cementguard"
OFFLINE = b"offline"
"""The state topic's last-will payload (retained): the bridge is gone, whatever the pump does."""


@dataclass(frozen=True)
class Topics:
    rig: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.rig}"

    # -- published by the bridge -------------------------------------------------------------------
    @property
    def state(self) -> str:
        """Retained; QoS 1; last will `offline`."""
        return f"{self.base}/state"

    @property
    def telemetry(self) -> str:
        """QoS 0; at most MqttOptions.telemetry_rate_hz messages per second."""
        return f"{self.base}/telemetry"

    @property
    def events(self) -> str:
        """QoS 1; every controller event, stops annotated with source and latency."""
        return f"{self.base}/events"

    @property
    def refused(self) -> str:
        """QoS 1; the answer to every request the bridge refuses (anything but a stop)."""
        return f"{self.base}/refused"

    # -- subscribed by the bridge ----------------------------------------------------------------
    @property
    def fluoro_stop(self) -> str:
        """QoS 1: the imaging system's fluoroscopy stop (STOP, source FLUORO_REMOTE)."""
        return f"{self.base}/fluoro/stop"

    @property
    def stop(self) -> str:
        """QoS 1: any other remote stop (STOP, source REMOTE): a data logger's or a supervisor's."""
        return f"{self.base}/stop"

    @property
    def command(self) -> str:
        """Filter for `<base>/command` and everything under it: requests that are always refused."""
        return f"{self.base}/command/#"

    def is_command(self, topic: str) -> bool:
        return topic == f"{self.base}/command" or topic.startswith(f"{self.base}/command/")
