"""Unknown CEMENTGUARD_* variables are refused as an unknown key in the settings file is (issue 13
item 8): a typo such as CEMENTGUARD_MQTT__PASWORD used to be ignored silently, so the bridge ran
without the password the operator believed set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from host.settings import SettingsError, load_settings, unknown_environment


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CEMENTGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./cementguard.toml


@pytest.mark.parametrize(
    "name",
    ["CEMENTGUARD_PORTT", "CEMENTGUARD_MQTT__PASWORD", "CEMENTGUARD_LINK__RETRIES__X", "CEMENTGUARD_PORT__A"],
)
def test_an_unknown_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    (line,) = refused.value.problems
    assert line.startswith(f"{name}: not a known setting; allowed CEMENTGUARD_CONFIG")
    assert "mqtt" in line


def test_an_unknown_key_in_the_file_is_refused_the_same_way(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("portt = 'x'\n")
    with pytest.raises(SettingsError, match=r"portt: .* is not a known field"):
        load_settings(config)


def test_known_variables_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEMENTGUARD_BAUD", "115200")
    monkeypatch.setenv("CEMENTGUARD_LINK__RETRIES", "2")
    monkeypatch.setenv("cementguard_telemetry__divider", "5")  # variables are case-insensitive, as read
    assert unknown_environment() == []
    settings = load_settings()
    assert (settings.baud, settings.link.retries, settings.telemetry.divider) == (115200, 2, 5)


def test_the_bridge_command_refuses_an_unknown_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from host.cli import main

    monkeypatch.setenv("CEMENTGUARD_MQTT__PASWORD", "secret")
    assert main(["bridge", "--port", "/dev/null", "--mqtt", "mqtt://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "CEMENTGUARD_MQTT__PASWORD: not a known setting" in err
    assert "secret" not in err
