"""`run`'s live view shows the device's state from the moment the link is up (issue 12 item 5: "the
device's state as it is, at every moment"): before any telemetry arrives, e.g. when ARM is refused,
it showed CONNECTING although the handshake had long told it the device was IDLE."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from host.cli_types import EXIT_USAGE
from host.plan import load_plan
from host.run import run_plan
from protocol import MsgType, NakCode
from tests.host.conftest import FakeDevice
from tests.host.test_run_cli import FAST_PLAN


async def test_the_view_shows_the_handshake_state_before_any_sample(
    tmp_path: Path, fake_device: Callable[..., FakeDevice]
) -> None:
    path = tmp_path / "fast.toml"
    path.write_text(  # what the fake device supports: continuous, no relief
        FAST_PLAN.replace('mode = "incremental"', 'mode = "continuous"')
        .replace("increment_ml = 0.1\n", "")
        .replace("enabled = true", "enabled = false")
    )
    out = io.StringIO()
    async with fake_device(refuse={MsgType.ARM: (NakCode.BAD_PARAM, 5, 1)}) as dev:
        code = await run_plan(
            dev.path, load_plan(path), mixed_ago_s=240.0, record_root=None, auto_resume_s=None,
            console=Console(file=out, width=100),
        )  # fmt: skip
    text = out.getvalue()
    assert code == EXIT_USAGE, text
    assert "BAD_PARAM" in text
    assert "CONNECTING" not in text, text
    assert "IDLE" in text, text
