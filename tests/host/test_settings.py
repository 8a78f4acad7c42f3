"""Host settings: file, environment and arguments, in that order of precedence; errors that say where
the bad value came from; secrets that never print."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.settings import HostSettings, SettingsError, load_settings

PASSWORD = "hunter2-very-secret"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CEMENTGUARD_* variable from the developer's shell, and a working directory without a
    cementguard.toml, unless a test puts one there."""
    for name in list(os.environ):
        if name.upper().startswith("CEMENTGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


FULL = """
port = "socket://127.0.0.1:7878"
baud = 115200
recording_dir = "runs"

[link]
heartbeat_period_ms = 50
command_timeout_ms = 300
retries = 5
reconnect_backoff_min_s = 0.5
reconnect_backoff_max_s = 10

[telemetry]
divider = 4
batch_samples = 10

[mqtt]
url = "mqtts://broker.lab:8884"
rig = "bench-2"
username = "bench"
password = "hunter2-very-secret"

[mqtt.tls]
ca_file = "ca.pem"
insecure = false
"""


def test_defaults_without_file_or_environment() -> None:
    s = load_settings()
    assert s.port is None
    assert s.baud == 921_600
    assert (s.link.heartbeat_period_ms, s.link.command_timeout_ms, s.link.retries) == (None, 200, 3)
    assert (s.link.reconnect_backoff_min_s, s.link.reconnect_backoff_max_s) == (0.2, 5.0)
    assert (s.telemetry.divider, s.telemetry.batch_samples) == (1, 20)
    assert s.recording_dir == Path("recordings")
    assert s.mqtt.url is None
    assert s.mqtt.password is None
    assert HostSettings() == s


def test_every_field_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    s = load_settings(_write(tmp_path / "bench.toml", FULL))
    assert (s.port, s.baud, s.recording_dir) == ("socket://127.0.0.1:7878", 115_200, Path("runs"))
    assert s.link.model_dump() == {
        "heartbeat_period_ms": 50,
        "command_timeout_ms": 300,
        "retries": 5,
        "reconnect_backoff_min_s": 0.5,
        "reconnect_backoff_max_s": 10.0,
    }
    assert (s.telemetry.divider, s.telemetry.batch_samples) == (4, 10)
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.use_tls, s.mqtt.rig) == ("broker.lab", 8884, True, "bench-2")
    assert s.mqtt.username == "bench"
    assert s.mqtt.password is not None
    assert s.mqtt.password.get_secret_value() == PASSWORD
    assert s.mqtt.tls.ca_file == Path("ca.pem")


def test_the_file_named_by_cementguard_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "elsewhere.toml", "baud = 460800\n")
    monkeypatch.setenv("CEMENTGUARD_CONFIG", str(path))
    assert load_settings().baud == 460_800
    assert HostSettings().baud == 460_800


def test_cementguard_toml_in_the_working_directory(tmp_path: Path) -> None:
    _write(tmp_path / "cementguard.toml", "[telemetry]\ndivider = 2\n")
    assert load_settings().telemetry.divider == 2
    assert HostSettings().telemetry.divider == 2


def test_an_explicit_file_wins_over_cementguard_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEMENTGUARD_CONFIG", str(_write(tmp_path / "env.toml", "baud = 460800\n")))
    _write(tmp_path / "cementguard.toml", "baud = 230400\n")
    assert load_settings(_write(tmp_path / "arg.toml", "baud = 115200\n")).baud == 115_200


def test_environment_wins_over_the_file_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.pem").write_text("x")
    path = _write(tmp_path / "bench.toml", FULL)
    monkeypatch.setenv("CEMENTGUARD_BAUD", "921600")
    monkeypatch.setenv("CEMENTGUARD_LINK__RETRIES", "1")
    monkeypatch.setenv("cementguard_mqtt__rig", "bench-9")  # names are not case-sensitive
    s = load_settings(path)
    assert (s.baud, s.link.retries, s.mqtt.rig) == (921_600, 1, "bench-9")
    assert s.link.command_timeout_ms == 300  # the rest of [link] still from the file
    assert s.mqtt.username == "bench"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEMENTGUARD_PORT", "/dev/ttyUSB0")
    assert load_settings(port="loop://").port == "loop://"
    assert load_settings().port == "/dev/ttyUSB0"
    with pytest.raises(SettingsError) as info:
        load_settings(baud=1)
    assert info.value.problems == ("argument baud: baud: 1 is too small; allowed [9600, 4000000] (baud)",)


def test_a_nested_table_may_come_whole_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEMENTGUARD_TELEMETRY", '{"divider": 10, "batch_samples": 5}')
    assert load_settings().telemetry.model_dump() == {"divider": 10, "batch_samples": 5}


def test_the_password_never_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEMENTGUARD_MQTT__URL", "mqtt://broker")
    monkeypatch.setenv("CEMENTGUARD_MQTT__USERNAME", "bench")
    monkeypatch.setenv("CEMENTGUARD_MQTT__PASSWORD", PASSWORD)
    s = load_settings()
    for text in (repr(s), str(s), repr(s.mqtt), s.model_dump_json(), str(s.model_dump())):
        assert PASSWORD not in text
    assert "**********" in repr(s)
    assert s.mqtt.password is not None
    assert s.mqtt.password.get_secret_value() == PASSWORD


def test_the_password_never_prints_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEMENTGUARD_MQTT__PASSWORD", PASSWORD)
    monkeypatch.setenv("CEMENTGUARD_MQTT__URL", "mqtt://broker")
    monkeypatch.setenv("CEMENTGUARD_BAUD", "fast")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert PASSWORD not in str(info.value)
    assert info.value.problems == (
        "CEMENTGUARD_BAUD: baud: 'fast' is not a whole number; allowed [9600, 4000000] (baud)",
        "settings: mqtt.username: (missing) is required with a password; allowed any text (text)",
    )


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path / "missing.toml")
    assert info.value.problems == (f"{tmp_path / 'missing.toml'}: file not found",)


def test_a_file_named_by_cementguard_config_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEMENTGUARD_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(SettingsError, match=r"gone\.toml: file not found"):
        load_settings()
    with pytest.raises(SettingsError, match=r"gone\.toml: file not found"):
        HostSettings()


def test_a_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.toml", "baud = 115200\n[link\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    (line,) = info.value.problems
    assert line.startswith(f"{path}: line 2, column 6: TOML syntax error: ")


def test_file_errors_name_the_file_field_value_and_range(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.toml",
        """
baud = 300
colour = "red"
[link]
retries = -1
reconnect_backoff_min_s = 3
[telemetry]
divider = 1001
batch_samples = 31
[mqtt]
url = "http://broker"
rig = "bench/1"
""",
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.problems == (
        f"{path}: baud: 300 is too small; allowed [9600, 4000000] (baud)",
        f"{path}: link.retries: -1 is too small; allowed [0, 10] (count)",
        f"{path}: telemetry.divider: 1001 is too large; allowed [0, 1000] (samples)",
        f"{path}: telemetry.batch_samples: 31 is too large; allowed [1, 25] (samples)",
        f"{path}: mqtt.url: 'http://broker' is not an MQTT broker URL (mqtt://host[:port], mqtts://, ws://, "
        "wss://); allowed mqtt://HOST[:PORT], mqtts://, ws:// or wss:// (URL)",
        f"{path}: mqtt.rig: 'bench/1' is not in the allowed form; allowed 1 to 64 of A-Z a-z 0-9 _ . - "
        "(topic segment)",
        f"{path}: colour: 'red' is not a known field; "
        "allowed port, baud, link, telemetry, recording_dir, mqtt (field names)",
    )


def test_a_rule_between_two_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.toml", "[link]\nreconnect_backoff_min_s = 3\nreconnect_backoff_max_s = 1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.problems == (
        f"{path}: link.reconnect_backoff_max_s: 1 is below reconnect_backoff_min_s; allowed [3, 600] (s)",
    )


@pytest.mark.parametrize(
    ("port", "ok"),
    [
        ("/dev/ttyACM0", True),
        ("COM3", True),
        ("socket://127.0.0.1:7878", True),
        ("rfc2217://rig.lab:4000", True),
        ("loop://", True),
        ("spy:///dev/ttyUSB0", True),
        ("socket://127.0.0.1", False),
        ("socket://127.0.0.1:70000", False),
        ("tcp://127.0.0.1:7878", False),
        ("", False),
    ],
)
def test_the_port_is_a_device_name_or_a_pyserial_url(
    port: str, ok: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEMENTGUARD_PORT", port)
    if ok:
        assert load_settings().port == port
        return
    with pytest.raises(SettingsError) as info:
        load_settings()
    (line,) = info.value.problems
    assert line.startswith(f"CEMENTGUARD_PORT: port: {port!r} is ")
    assert line.endswith(
        "; allowed a device name (/dev/ttyACM0, COM3) or socket://HOST:PORT, rfc2217://HOST:PORT, loop:// "
        "(pyserial URL)"
    )


def test_tls_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text("x")
    path = _write(
        tmp_path / "tls.toml",
        '[mqtt]\nurl = "mqtts://broker"\n[mqtt.tls]\nca_file = "nope.pem"\ncert_file = "client.pem"\n',
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.problems == (
        f"{path}: mqtt.tls.ca_file: 'nope.pem' is not an existing file; allowed a readable file (path)",
        f"{path}: mqtt.tls.key_file: (missing) is required with cert_file; allowed a readable file (path)",
    )


def test_tls_settings_need_a_tls_url(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.toml", '[mqtt]\nurl = "mqtt://broker"\n[mqtt.tls]\ninsecure = true\n')
    with pytest.raises(SettingsError, match=r"mqtt.tls: a \[mqtt.tls\] table is set but the broker URL"):
        load_settings(path)


def test_mqtt_default_ports() -> None:
    for url, port in (("mqtt://b", 1883), ("mqtts://b", 8883), ("ws://b", 80), ("wss://b:9001", 9001)):
        assert load_settings(mqtt={"url": url}).mqtt.port == port


INT_FIELDS = {
    # env var: (low, high, field path, allowed, unit)
    "CEMENTGUARD_BAUD": (9600, 4_000_000, "baud", "[9600, 4000000]", "baud"),
    "CEMENTGUARD_LINK__RETRIES": (0, 10, "link.retries", "[0, 10]", "count"),
    "CEMENTGUARD_LINK__COMMAND_TIMEOUT_MS": (10, 10_000, "link.command_timeout_ms", "[10, 10000]", "ms"),
    "CEMENTGUARD_LINK__HEARTBEAT_PERIOD_MS": (10, 10_000, "link.heartbeat_period_ms", "[10, 10000]", "ms"),
    "CEMENTGUARD_TELEMETRY__DIVIDER": (0, 1000, "telemetry.divider", "[0, 1000]", "samples"),
    "CEMENTGUARD_TELEMETRY__BATCH_SAMPLES": (1, 25, "telemetry.batch_samples", "[1, 25]", "samples"),
}


@given(st.sampled_from(sorted(INT_FIELDS)), st.integers(min_value=-(10**9), max_value=10**9))
def test_integer_settings_from_the_environment_are_checked(name: str, value: int) -> None:
    lo, hi, path, allowed, unit = INT_FIELDS[name]
    # monkeypatch is function-scoped; hypothesis runs many examples per call, so set and restore here.
    os.environ[name] = str(value)
    try:
        if lo <= value <= hi:
            assert load_settings().model_dump()[path.split(".")[0]] is not None
            return
        with pytest.raises(SettingsError) as info:
            load_settings()
        why = "too small" if value < lo else "too large"
        assert info.value.problems == (f"{name}: {path}: '{value}' is {why}; allowed {allowed} ({unit})",)
    finally:
        del os.environ[name]
