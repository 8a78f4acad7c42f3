"""`cementguard stop` sends its STOP even when the runtime directory (where the port locks and the
control sockets live) cannot be used: open to other users, or not a directory. Refusing to stop over
a file-permission problem leaves the pump injecting; the lock and the endpoint are refused there (a
socket others could reach would accept STOP, status and CLEAR), but the STOP itself goes onto the
port."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from host import device_cmds
from protocol import MsgType
from tests.host.conftest import FakeDevice


async def test_stop_gets_out_when_the_runtime_directory_is_open_to_others(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_device: Callable[..., FakeDevice],
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path / "xdg"
    (base / "cementguard").mkdir(parents=True)
    os.chmod(base / "cementguard", 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    async with fake_device() as dev:
        code = await device_cmds.stop(dev.path, "operator")
        await dev.until(lambda: bool(dev.commands(MsgType.STOP)), within_s=2.0)
    said = capsys.readouterr().out
    assert "0755" in said, said  # the problem is named, so that it gets fixed
    assert "STOP written onto" in said, said
    assert code == device_cmds.EXIT_LINK  # not confirmed: nothing read the device's answer
