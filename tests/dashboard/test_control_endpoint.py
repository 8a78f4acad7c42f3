"""The dashboard holds its port and serves the control endpoint (docs/design.md, "Sessions"):
`cementguard status`, `stop` and `clear` from another terminal reach the device through it while it
injects, and the dashboard shows the stop with its origin."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.dashboard.source import LiveSource
from protocol import State
from protocol.enums import Flags
from tests.dashboard.conftest import until
from tests.support.wire_client import REPO


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A runtime directory of the test's own, for the dashboard (this process) and the commands."""
    base = tempfile.mkdtemp(prefix="cg-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", base)
    yield dict(os.environ, PYTHONPATH=str(REPO), XDG_RUNTIME_DIR=base)
    shutil.rmtree(base, ignore_errors=True)


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "host.cli", *args, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_status_and_stop_from_another_terminal_while_the_dashboard_injects(
    live_dashboard, continuous_plan: Path, runtime: dict[str, str]
) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        source = app.source
        assert isinstance(source, LiveSource)
        port = source.url
        await pilot.press("a")
        await until(pilot, lambda: source.controller is not None and source.controller.state == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: app.model.state == State.INJECTING, 10.0)

        code, out = await _cli(runtime, "status", "--port", port)
        assert code == 0, out
        assert f"(PID {os.getpid()})" in out
        assert "INJECTING" in out

        code, out = await _cli(runtime, "stop", "--port", port)
        assert code == 0, out
        assert "STOP acknowledged through" in out
        assert "OPERATOR_STOP (source OPERATOR), was INJECTING" in out
        await until(pilot, lambda: app.model.stops and app.model.stops[-1].reason == "OPERATOR_STOP")
        assert source.controller is not None
        assert source.controller.state == State.STOPPED
        assert app.model.linked, "the dashboard kept its link: the stop came through it"
        entry = app.model.stops[-1]
        assert entry.origin == "cementguard stop (another terminal)"
        assert entry.latency_ms is not None
        assert entry.latency_ms > 0

        # once the plunger is at rest (relief over), CLEAR from the other terminal goes through too
        await until(
            pilot,
            lambda: app.model.state == State.STOPPED and not app.model.latest.flags & Flags.RELIEF_ACTIVE,
            15.0,
        )
        code, out = await _cli(runtime, "clear", "--port", port)
        assert code == 0, out
        assert "CLEAR acknowledged through" in out
        assert "state IDLE" in out
        await until(pilot, lambda: source.controller is not None and source.controller.state == State.IDLE)
