"""Where the bridge's broker is, who this rig is, and how hard the bridge tries: `MqttOptions`.

Validated on construction, so that a bad URL or rig name is refused before anything connects, with
an error naming the field, the value and the allowed form. The password is a `SecretStr`: never in
a repr, a log line or an error message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from host.settings import MQTT_SCHEMES, MqttSettings, TlsSettings

__all__ = ["RIG_ALLOWED", "URL_ALLOWED", "MqttOptions", "MqttOptionsError"]

URL_ALLOWED = "mqtt://HOST[:PORT] (TCP), mqtts://HOST[:PORT] (TLS), ws://... or wss://... (websockets)"
RIG_ALLOWED = "1 to 64 of A-Z a-z 0-9 _ . - (one MQTT topic level: no '/', '+', '#' or spaces)"
_RIG = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class MqttOptionsError(ValueError):
    """An option that cannot be used: `field`, `value` and `allowed` say which, what and what would do."""

    def __init__(self, field_name: str, value: object, why: str, allowed: str) -> None:
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"mqtt {field_name} {value!r} is {why}; allowed: {allowed}")


@dataclass(frozen=True)
class MqttOptions:
    """Everything the bridge needs besides the controller. Build from settings with `from_settings`."""

    url: str
    """mqtt://host[:port]; mqtts:// for TLS; ws:// or wss:// over websockets."""
    rig: str
    """This rig's name: the second level of every topic (cementguard/<rig>/...)."""
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    tls: TlsSettings = field(default_factory=TlsSettings)
    """CA, client certificate, insecure (host.settings.TlsSettings); used with mqtts:// and wss:// only."""
    client_id: str | None = None
    """None: cementguard-<rig>. The receiving connection is `<client_id>-in` (fixed, so that its
    persistent session is found again after a restart); the publishing one `<client_id>-<pid>-out`."""
    persistent_session: bool = True
    """The receiving connection asks for a persistent session (clean session off, QoS 1 subscriptions):
    a broker that keeps sessions (persistence on, as deploy/mosquitto/cementguard.conf) queues the stops
    published while the bridge is away and delivers them when it is back. False: a clean session."""
    queue_size: int = 256
    """Outgoing messages held while the broker is slow or away; beyond it the oldest are dropped
    (counted in BridgeCounters.dropped). The controller and the link never wait on this queue."""
    telemetry_rate_hz: float = 10.0
    """At most this many telemetry messages per second; batches in between are aggregated."""
    telemetry_max_samples: int = 5000
    """Samples one telemetry message may carry; older pending samples beyond it are dropped (counted)."""
    max_request_bytes: int = 1024
    """A stop request's payload beyond this is oversized: it still stops, but is not parsed."""
    backoff_min_s: float = 0.2
    """First wait before reconnecting to the broker; doubles per failed attempt up to backoff_max_s."""
    backoff_max_s: float = 5.0
    keepalive_s: int = 10
    """MQTT keepalive: the broker publishes the last will this long (x1.5) after a silent half-open link."""
    state_heartbeat_s: float = 1.0
    """The retained `state` is published again this often while the broker is connected, changed or
    not: its heartbeat, which keeps it from expiring (state_expiry_s)."""
    state_expiry_s: int = 3
    """The retained `state` is published with this MQTT 5 message expiry (whole seconds, at least twice
    the heartbeat): a broker that restarts from its database (or outlives a bridge that could not say
    goodbye) drops it this long after the bridge last published it, instead of serving a stale
    `online` for ever. Also in the payload as `valid_for_s`."""

    def __post_init__(self) -> None:
        _check_url(self.url)
        if not isinstance(self.rig, str) or not _RIG.match(self.rig):
            raise MqttOptionsError("rig", self.rig, "not a valid rig name", RIG_ALLOWED)
        if isinstance(self.password, str):
            object.__setattr__(self, "password", SecretStr(self.password))
        if self.password is not None and self.username is None:
            raise MqttOptionsError("username", None, "required with a password", "any text")
        if self.tls.configured and not self.use_tls:
            raise MqttOptionsError(
                "tls", "TLS settings", f"set but the URL {self.url!r} is plain", "mqtts:// or wss:// with TLS"
            )
        _positive("queue_size", self.queue_size, 1, 1_000_000)
        _positive("telemetry_rate_hz", self.telemetry_rate_hz, 0.1, 100.0)
        _positive("telemetry_max_samples", self.telemetry_max_samples, 1, 1_000_000)
        _positive("max_request_bytes", self.max_request_bytes, 16, 1_000_000)
        _positive("backoff_min_s", self.backoff_min_s, 0.001, 60.0)
        _positive("backoff_max_s", self.backoff_max_s, self.backoff_min_s, 600.0)
        _positive("keepalive_s", self.keepalive_s, 1, 3600)
        _positive("state_heartbeat_s", self.state_heartbeat_s, 0.1, 60.0)
        if not isinstance(self.state_expiry_s, int) or isinstance(self.state_expiry_s, bool):
            raise MqttOptionsError(
                "state_expiry_s", self.state_expiry_s, "not a whole number", "whole seconds"
            )
        _positive("state_expiry_s", self.state_expiry_s, math.ceil(2 * self.state_heartbeat_s), 3600)

    @classmethod
    def from_settings(
        cls, settings: MqttSettings, url: str | None = None, rig: str | None = None, **overrides: Any
    ) -> MqttOptions:
        """Options from `host.settings.MqttSettings` (file and environment); `url`, `rig` and any other
        keyword argument (e.g. from the command line) win over the settings."""
        chosen_url = url if url is not None else settings.url
        if chosen_url is None:
            raise MqttOptionsError(
                "url", None, "not set (no --mqtt, no [mqtt] url, no CEMENTGUARD_MQTT__URL)", URL_ALLOWED
            )
        options = cls(
            url=chosen_url,
            rig=rig if rig is not None else settings.rig,
            username=settings.username,
            password=settings.password,
            tls=settings.tls,
        )
        return replace(options, **overrides) if overrides else options

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return str(urlsplit(self.url).hostname)

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or MQTT_SCHEMES[parts.scheme]

    @property
    def use_tls(self) -> bool:
        return self.scheme in ("mqtts", "wss")

    @property
    def transport(self) -> str:
        return "websockets" if self.scheme in ("ws", "wss") else "tcp"

    @property
    def websocket_path(self) -> str | None:
        return (urlsplit(self.url).path or "/mqtt") if self.transport == "websockets" else None

    def describe(self) -> str:
        """For logs: the broker and the rig, the user name, never the password."""
        who = f" as {self.username!r}" if self.username else ""
        return f"{self.url} (rig {self.rig}{who}{', TLS' if self.use_tls else ''})"


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise MqttOptionsError("url", url, "not text", URL_ALLOWED)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise MqttOptionsError("url", url, "a URL with a port outside 1..65535", URL_ALLOWED) from None
    if parts.scheme not in MQTT_SCHEMES:
        why = f"not an MQTT broker URL (scheme {parts.scheme!r})" if parts.scheme else "not a URL"
        raise MqttOptionsError("url", url, why, URL_ALLOWED)
    if not parts.hostname:
        raise MqttOptionsError("url", url, "a URL without a host", URL_ALLOWED)
    if port == 0:
        raise MqttOptionsError("url", url, "a URL with port 0", URL_ALLOWED)


def _positive(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise MqttOptionsError(name, value, "out of range", f"{low:g} to {high:g}")
