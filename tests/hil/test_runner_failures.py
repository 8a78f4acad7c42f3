"""The HIL runner's one error policy (issue 12, item 8): a consumer of the stream pump that fails
(here the recorder, on a full disk) ends the scenario at once as an error naming it, the link and
the simulator are still taken down, and the verdict is never "passed" on a run the harness did not
fully record."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import host.recording
from hil.cli import SCENARIO_DIR
from hil.runner import RunOptions, run_scenario
from hil.scenario import load_scenario


async def test_a_recorder_that_fails_mid_scenario_errors_the_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = 0
    real = host.recording._write_all

    def filling_up(fd: int, data: bytes) -> None:
        nonlocal writes
        writes += 1
        if writes > 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(host.recording, "_write_all", filling_up)
    path = SCENARIO_DIR / "operator-stop.toml"
    outcome = await run_scenario(
        load_scenario(path), path, RunOptions(time_scale=5.0, report_dir=tmp_path / "report")
    )
    assert outcome.status == "error", outcome.message
    # at once through the pump, or at the latest when the recorder is closed: never a traceback
    assert outcome.message.startswith("RuntimeError: the harness lost part of the run: recording failed"), (
        outcome.message
    )
    assert "No space left on device" in outcome.message
