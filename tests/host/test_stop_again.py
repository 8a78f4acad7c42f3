"""A second `cementguard stop` through a session, on a pump already stopped, says which stop holds it:
the one the device reports now, not the STATUS the session kept from before the first stop (it said
"already stopped: NONE (source NONE)" on the simulator)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from host import control
from host.client import DeviceClient
from host.control import serve_control
from host.plan import load_plan
from protocol import State
from tests.host.test_run_cli import FAST_PLAN
from tests.host.test_sessions import runtime  # noqa: F401 - autouse: a runtime directory of its own


async def test_a_second_stop_names_the_stop_that_holds_the_pump(
    tmp_path: Path, sim_pty: tuple[subprocess.Popen[str], str]
) -> None:
    _proc, port = sim_pty
    path = tmp_path / "plan.toml"
    path.write_text(FAST_PLAN)
    ctl = await DeviceClient.connect(port)
    try:
        async with serve_control(ctl):
            await ctl.arm(load_plan(path), mixed_ago_s=240.0)
            await ctl.start()
            first = await control.request(port, "stop")
            assert first["ok"], first
            assert first["event"]["reason"] == "OPERATOR_STOP", first
            again = await control.request(port, "stop")
    finally:
        await ctl.close()
    assert again["ok"], again
    assert again["state"] == State.STOPPED.name
    assert again["event"] is None  # nothing was moving: no new STOP event
    assert (again.get("stop_reason"), again.get("stop_source")) == ("OPERATOR_STOP", "OPERATOR"), again
