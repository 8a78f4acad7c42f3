"""An unknown CEMENTGUARD_* variable is refused by every command (issue 13 item 8).

`cementguard bridge` refused one (it reads the settings), but `run`, `status`, `sim` and the rest
ignored it silently and went on, although README says it is refused as an unknown key in
cementguard.toml is. Every command now refuses it before doing anything: exit 2, naming it.
"""

from __future__ import annotations

import pytest

from host.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--port", "/dev/cementguard-never-opened"],
        [
            "run",
            "--port",
            "/dev/cementguard-never-opened",
            "--plan",
            "plans/continuous-2ml.toml",
            "--mixed-ago",
            "60",
        ],
        ["sim", "validate", "--lumped-only"],
    ],
    ids=["status", "run", "sim"],
)
def test_every_command_refuses_an_unknown_cementguard_variable(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CEMENTGUARD_POTR", "/dev/ttyACM0")  # a typo of CEMENTGUARD_PORT
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "CEMENTGUARD_POTR: not a known setting" in err


def test_a_known_variable_is_not_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CEMENTGUARD_PORT", "/dev/ttyACM0")
    assert main(["status", "--port", "/dev/cementguard-never-opened"]) == 4  # it got as far as the port
    assert "not a known setting" not in capsys.readouterr().err
