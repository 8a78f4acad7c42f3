"""Host settings: where the pump is, how the link is kept alive, where telemetry goes.

Read from a TOML file and from `CEMENTGUARD_*` environment variables, the environment winning, so
that one checked-in `cementguard.toml` serves a bench and CI overrides a value (or supplies the MQTT
password) without editing it. Nested fields use `__`: `CEMENTGUARD_LINK__RETRIES=5`,
`CEMENTGUARD_MQTT__PASSWORD=...`.

The file is, in order: the path given to `load_settings`, the `CEMENTGUARD_CONFIG` variable, or
`cementguard.toml` in the current directory if there is one (else defaults and environment only).
A file named explicitly must exist. Errors come as one line per problem naming where the value came
from (file or variable), the field, the value and what is allowed, as for plans.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from host.config_file import Problem, Raw, RulesBrokenError, Unit, describe, read_toml, show
from protocol.telemetry import MAX_BATCH_SAMPLES, MAX_DIVIDER

ENV_PREFIX = "CEMENTGUARD_"
CONFIG_ENV = "CEMENTGUARD_CONFIG"
DEFAULT_CONFIG = Path("cementguard.toml")
SERIAL_URL_SCHEMES = ("socket", "rfc2217", "loop", "spy", "hwgrep", "alt", "cp2110")
"""pyserial's URL handlers (serial.serial_for_url); anything without '://' is a device name."""
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
"""Schemes aiomqtt can connect with (tcp or websockets, plain or TLS) and their default ports."""


class SettingsError(ValueError):
    """Settings that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LinkSettings(_Section):
    """Keeping the session alive (protocol/SPEC.md §7.5, §9.2, §10.7)."""

    heartbeat_period_ms: Annotated[int | None, Field(ge=10, le=10_000), Unit("ms")] = None
    """None: a fifth of the watchdog time the device reports (DEVICE_INFO); SPEC §9.2 requires half
    at most, the rest is margin for a busy event loop (host.link.HEARTBEATS_PER_WATCHDOG). A period
    at or above the device's watchdog_ms lets the device stop with HOST_LOST (refused at connect)."""
    command_timeout_ms: Annotated[int, Field(ge=10, le=10_000), Unit("ms")] = 200
    """Wait this long for an ACK/NAK before retrying (SPEC §7.5: 200 ms recommended)."""
    retries: Annotated[int, Field(ge=0, le=10), Unit("count")] = 3
    """Retries with the same cmd_id before the link is declared lost."""
    reconnect_backoff_min_s: Annotated[float, Field(ge=0.01, le=60), Unit("s")] = 0.2
    """Shortest wait before a reconnect attempt; repeated failures back off towards the maximum."""
    reconnect_backoff_max_s: Annotated[float, Field(ge=0.01, le=600), Unit("s")] = 5.0

    @model_validator(mode="after")
    def _backoff(self) -> LinkSettings:
        lo, hi = self.reconnect_backoff_min_s, self.reconnect_backoff_max_s
        if lo > hi:
            why = "below reconnect_backoff_min_s"
            raise RulesBrokenError([Problem("reconnect_backoff_max_s", hi, why, f"[{show(lo)}, 600]", "s")])
        return self


class TelemetrySettings(_Section):
    """What the host asks for with SET_TELEMETRY right after the handshake (SPEC §9.4)."""

    divider: Annotated[int, Field(ge=0, le=MAX_DIVIDER), Unit("samples")] = 1
    """Send every n-th 1 kHz sample; 0 turns telemetry off. At 115 200 baud use >= 4 (SPEC §9.5)."""
    batch_samples: Annotated[int, Field(ge=1, le=MAX_BATCH_SAMPLES), Unit("samples")] = 20


class TlsSettings(_Section):
    ca_file: Annotated[Path | None, Unit("path")] = None
    """CA bundle to trust; None: the system's."""
    cert_file: Annotated[Path | None, Unit("path")] = None
    """Client certificate (with key_file) for brokers that authenticate clients by certificate."""
    key_file: Annotated[Path | None, Unit("path")] = None
    insecure: Annotated[bool, Unit("true/false")] = False
    """Skip the broker's certificate and host name checks: only for a lab broker with a self-signed
    certificate, never across a network you do not control."""

    @model_validator(mode="after")
    def _files(self) -> TlsSettings:
        problems = [
            Problem(name, str(path), "not an existing file", "a readable file", "path")
            for name in ("ca_file", "cert_file", "key_file")
            if (path := getattr(self, name)) is not None and not Path(path).is_file()
        ]
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            other = "cert_file" if missing == "key_file" else "key_file"
            problems.append(
                Problem(missing, Raw("(missing)"), f"required with {other}", "a readable file", "path")
            )
        if problems:
            raise RulesBrokenError(problems)
        return self

    @property
    def configured(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file, self.insecure))


class MqttSettings(_Section):
    """The MQTT bridge (telemetry out, remote stop requests in). No url: the bridge is off."""

    url: Annotated[str | None, Unit("URL", "mqtt://HOST[:PORT], mqtts://, ws:// or wss://")] = None
    """mqtt://host[:port], mqtts:// for TLS, ws:// or wss:// over websockets."""
    rig: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$"), Unit("topic segment", "1 to 64 of A-Z a-z 0-9 _ . -")
    ] = "bench"
    """This rig's name in the MQTT topics: one topic level, so no '/', '+' or '#'."""
    username: Annotated[str | None, Field(min_length=1, max_length=256), Unit("text")] = None
    password: Annotated[SecretStr | None, Unit("text")] = None
    """Never printed: repr and logs show '**********'. Best supplied as CEMENTGUARD_MQTT__PASSWORD."""
    tls: TlsSettings = TlsSettings()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in MQTT_SCHEMES or not parts.hostname or port == -1:
            raise ValueError("not an MQTT broker URL (mqtt://host[:port], mqtts://, ws://, wss://)")
        return value

    @model_validator(mode="after")
    def _auth(self) -> MqttSettings:
        problems = []
        if self.password is not None and self.username is None:
            problems.append(
                Problem("username", Raw("(missing)"), "required with a password", "any text", "text")
            )
        if self.tls.configured and not self.use_tls:
            why = f"set but the broker URL {self.url!r} is not mqtts:// or wss://"
            problems.append(
                Problem("tls", Raw("a [mqtt.tls] table"), why, "TLS settings with mqtts/wss only", "table")
            )
        if problems:
            raise RulesBrokenError(problems)
        return self

    @property
    def use_tls(self) -> bool:
        return self.url is not None and urlsplit(self.url).scheme in ("mqtts", "wss")

    @property
    def host(self) -> str | None:
        return None if self.url is None else urlsplit(self.url).hostname

    @property
    def port(self) -> int | None:
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        return parts.port or MQTT_SCHEMES[parts.scheme]


_PORT_HOST = re.compile(r"^[^\s:/]+:(\d{1,5})(?:[/?].*)?$")


class HostSettings(BaseSettings):
    """Everything the bench PC's host needs to reach and drive a pump. Build it with `load_settings`
    for formatted errors; `HostSettings()` works too (env + CEMENTGUARD_CONFIG / ./cementguard.toml)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, allow_inf_nan=False
    )

    port: Annotated[
        str | None,
        Field(min_length=1),
        Unit(
            "pyserial URL",
            "a device name (/dev/ttyACM0, COM3) or socket://HOST:PORT, rfc2217://HOST:PORT, loop://",
        ),
    ] = None
    """/dev/ttyACM0, COM3, socket://127.0.0.1:7878 (the simulator's --tcp), rfc2217://, loop://.
    None: the command line must name one."""
    baud: Annotated[int, Field(ge=9_600, le=4_000_000), Unit("baud")] = 921_600
    """921 600 carries 1 kHz telemetry at 45 % load; 115 200 needs telemetry.divider >= 5 (SPEC §9.5)."""
    link: LinkSettings = LinkSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    recording_dir: Annotated[Path, Unit("path")] = Path("recordings")
    """Directory for run recordings."""
    mqtt: MqttSettings = MqttSettings()

    @field_validator("port")
    @classmethod
    def _port(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        scheme, _, rest = value.partition("://")
        if scheme not in SERIAL_URL_SCHEMES:
            raise ValueError(f"not a pyserial URL scheme ({', '.join(SERIAL_URL_SCHEMES)}) nor a device name")
        if scheme in ("socket", "rfc2217"):
            m = _PORT_HOST.match(rest)
            if m is None or not 1 <= int(m[1]) <= 65535:
                raise ValueError(f"not {scheme}://HOST:PORT with a port in 1..65535")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments over environment over file; no .env or secrets directory (not used on a bench)."""
        loaded = _LOADED.get()
        if loaded is None:
            loaded = _read_config(config_path(None))
        return init_settings, env_settings, _FileSource(settings_cls, loaded[1])


class _FileSource(PydanticBaseSettingsSource):
    """The parsed config file, as the lowest-priority source."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


_LOADED: ContextVar[tuple[Path | None, dict[str, Any]] | None] = ContextVar("_LOADED", default=None)
"""The file `load_settings` read, handed to settings_customise_sources (a classmethod, so it cannot
take the path as an argument)."""


def config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """Which config file to read: the argument, $CEMENTGUARD_CONFIG, or ./cementguard.toml if present."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _read_config(path: Path | None) -> tuple[Path | None, dict[str, Any]]:
    return path, ({} if path is None else read_toml(path, SettingsError))


def _origin(path: Path | None, overrides: dict[str, Any]) -> Callable[[str], str]:
    """For an error at a dotted field path: the argument or environment variable that set it, else
    the file."""
    env = {k.upper() for k in os.environ}

    def origin(field_path: str) -> str:
        if field_path.split(".")[0] in overrides:
            return f"argument {field_path.split('.')[0]}"
        parts = field_path.upper().split(".")
        for n in range(len(parts), 0, -1):  # CEMENTGUARD_LINK__RETRIES, then CEMENTGUARD_LINK (JSON)
            name = ENV_PREFIX + "__".join(parts[:n])
            if name in env:
                return name
        return str(path) if path is not None else "settings"

    return origin


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One problem line per CEMENTGUARD_* variable that names no setting: a typo
    (CEMENTGUARD_MQTT__PASWORD) is refused as an unknown key in the file is, not silently ignored."""
    environ = os.environ if environ is None else environ
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        if not _names_a_setting(upper[len(ENV_PREFIX) :].lower().split("__")):
            problems.append(
                f"{name}: not a known setting; allowed {CONFIG_ENV}, or {ENV_PREFIX}<FIELD> and "
                f"{ENV_PREFIX}<SECTION>__<FIELD> for the fields of the settings file "
                f"({', '.join(sorted(HostSettings.model_fields))})"
            )
    return problems


def _names_a_setting(parts: list[str]) -> bool:
    model: type[BaseModel] = HostSettings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        nested = field.annotation
        if i == len(parts) - 1:
            return True
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return False  # CEMENTGUARD_PORT__X: a plain field has no parts
        model = nested
    return False


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> HostSettings:
    """Settings from `config` (or $CEMENTGUARD_CONFIG, or ./cementguard.toml), the environment and
    `overrides` (keyword arguments, e.g. from the command line), each over the one before.
    Raises SettingsError with one line per problem, an unknown CEMENTGUARD_* variable included."""
    unknown = unknown_environment()
    if unknown:
        raise SettingsError(unknown)
    loaded = _read_config(config_path(config))
    token = _LOADED.set(loaded)
    try:
        return HostSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc, HostSettings, _origin(loaded[0], overrides))) from None
    finally:
        _LOADED.reset(token)


def command_settings(config: str | os.PathLike[str] | None, port: str | None) -> tuple[HostSettings, str]:
    """What a command that opens a port uses: the settings (`load_settings(config)`) and the port,
    `--port` winning over the settings' `port`. SettingsError when neither names one."""
    settings = load_settings(config)
    chosen = port or settings.port
    if chosen is None:
        where = config_path(config)
        origin = f"{where}: " if where is not None else ""
        raise SettingsError(
            [f"{origin}port: not set; give --port, or set port in the settings file (or CEMENTGUARD_PORT)"]
        )
    return settings, chosen
