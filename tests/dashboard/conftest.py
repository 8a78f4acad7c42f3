"""Fixtures for the dashboard tests: the real simulator on a pty, a live dashboard on it, plans, and
a bounded wait on an app condition (polled with pilot.pause, never decided by a sleep)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from host.client import LinkOptions
from host.dashboard.app import DashboardApp
from host.dashboard.source import LiveSource
from host.plan import load_plan
from tests.support.wire_client import REPO, simulator

EXAMPLE_PLAN = REPO / "plans" / "incremental-3x0.5ml.toml"
SIZE = (140, 44)
SMALL = (80, 24)
"""The default size of many bench PCs' terminals."""


async def until(pilot: Pilot[Any], condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Poll `condition` between event-loop turns until it holds; fail after `timeout_s`."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    assert condition(), f"condition not met within {timeout_s} s"


def write_plan(tmp_path: Path, name: str, **replace: str) -> Path:
    """The example plan with some lines replaced (key -> new 'key = value' line)."""
    lines = EXAMPLE_PLAN.read_text().splitlines()
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip()
        out.append(replace.get(key, line))
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(out) + "\n")
    load_plan(path)  # must be valid
    return path


@pytest.fixture
def continuous_plan(tmp_path: Path) -> Path:
    """1.5 mL at 3 mL/min in one go: injects for 30 s unless stopped."""
    return write_plan(tmp_path, "continuous", mode='mode = "continuous"', increment_ml="")


@pytest.fixture
def quick_increments(tmp_path: Path) -> Path:
    """0.05 mL increments at 6 mL/min: each takes half a second."""
    return write_plan(tmp_path, "quick", flow_ml_min="flow_ml_min = 6.0", increment_ml="increment_ml = 0.05")


@pytest.fixture
def sim() -> Iterator[tuple[subprocess.Popen[str], str]]:
    with simulator("--pty", "--serial", "DASH-TEST") as (proc, port):
        yield proc, port


class NotedApp(DashboardApp):
    """The dashboard, keeping every notification it showed for the test to read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str, str]] = []

    def notify(self, message: str, *, title: str = "", severity: Any = "information", **kw: Any) -> None:
        self.notes.append((title, message, str(severity)))
        super().notify(message, title=title, severity=severity, **kw)


@pytest.fixture
def live_dashboard(
    sim: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> Callable[..., contextlib.AbstractAsyncContextManager[tuple[NotedApp, Pilot[Any]]]]:
    """``async with live_dashboard(plan_path) as (app, pilot)``: the dashboard connected to the sim."""
    _proc, port = sim

    @contextlib.asynccontextmanager
    async def open_dashboard(
        plan_path: Path = EXAMPLE_PLAN,
        background: Any = None,
        refresh_hz: float = 5.0,
        record_tail_s: float = 1.0,
    ) -> AsyncIterator[tuple[NotedApp, Pilot[Any]]]:
        source = LiveSource(port, LinkOptions(), record_tail_s=record_tail_s)
        app = NotedApp(
            source,
            plan=load_plan(plan_path),
            plan_path=plan_path,
            mixed_ago_s=240.0,
            record_root=tmp_path / "recordings",
            background=background,
            refresh_hz=refresh_hz,
        )
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model.linked, 10.0)
            yield app, pilot

    return open_dashboard
