"""One lost EVENT frame must not hang `run` (issue 13 item 2).

A relay between the host and `cementguard sim --pty` damages exactly one frame: the INCREMENT_DONE
or the VOLUME_LIMIT STOP event. The device's heartbeats and STATUS still say PAUSED or DONE, so the
host reconciles: it re-reads STATUS, goes on (resume after the pause, or "plan completed"), records
the stop it read from STATUS, and tells the operator that the event was lost.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console

from host.plan import load_plan
from host.recording import Recording
from host.run import EXIT_COMPLETED, run_plan
from protocol import Event, EventKind, StopReason
from protocol.messages import Message
from tests.host.test_run_cli import FAST_PLAN
from tests.support.lossy_link import lossy_relay
from tests.support.wire_client import simulator

RUN_BOUND_S = 30.0
"""Far above the ~3 s the plan takes: only a hang reaches it."""


def _stop_event(reason: StopReason):  # type: ignore[no-untyped-def]
    def match(msg: Message) -> bool:
        return isinstance(msg, Event) and msg.kind == EventKind.STOP and msg.reason == reason

    return match


async def _run_with_damaged(reason: StopReason, tmp_path: Path) -> tuple[int, str, Recording, list[Message]]:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    out = io.StringIO()
    with simulator("--pty") as (_proc, device_port), lossy_relay(device_port) as relay:
        relay.damage_next(_stop_event(reason))
        code = await asyncio.wait_for(
            run_plan(
                relay.port, load_plan(path), mixed_ago_s=240.0, record_root=tmp_path / "rec",
                auto_resume_s=0.2, console=Console(file=out, width=200),
            ),
            RUN_BOUND_S,
        )  # fmt: skip
        damaged = list(relay.damaged)
    (run_dir,) = (tmp_path / "rec").iterdir()
    return code, out.getvalue(), Recording.open(run_dir), damaged


async def test_a_lost_increment_done_event_does_not_hang_the_run(tmp_path: Path) -> None:
    code, text, rec, damaged = await _run_with_damaged(StopReason.INCREMENT_DONE, tmp_path)
    assert len(damaged) == 1  # exactly that frame was destroyed
    assert code == EXIT_COMPLETED, text
    assert "plan completed" in text
    assert "lost on the line" in text
    stops = {e.record.reason: e for e in rec.stop_events()}
    assert StopReason.INCREMENT_DONE in stops  # recorded from STATUS
    assert stops[StopReason.INCREMENT_DONE].annotations["read_from"] == "STATUS"
    assert StopReason.VOLUME_LIMIT in stops
    assert "read_from" not in stops[StopReason.VOLUME_LIMIT].annotations


async def test_a_lost_volume_limit_event_still_reports_plan_completed(tmp_path: Path) -> None:
    code, text, rec, damaged = await _run_with_damaged(StopReason.VOLUME_LIMIT, tmp_path)
    assert len(damaged) == 1
    assert code == EXIT_COMPLETED, text
    assert "plan completed" in text
    assert "stopped by the operator" not in text
    assert "lost on the line" in text
    (limit,) = [e for e in rec.stop_events() if e.record.reason == StopReason.VOLUME_LIMIT]
    assert limit.annotations["read_from"] == "STATUS"
    assert limit.record.delivered_ml >= 0.19
