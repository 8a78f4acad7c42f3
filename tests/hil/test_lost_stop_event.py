"""The HIL runner never waits on a STOP event alone (issue 13 item 2).

A relay between the runner and a rig (`cementguard sim --pty`) damages exactly one frame: the
INCREMENT_DONE STOP event. The device's heartbeats and STATUS say PAUSED; the runner used to wait
for the lost event until `max_duration_s` and fail the scenario as timed out, with no RESUME sent.
It now takes the stop from STATUS (host.plan_stop's reconciliation), records it as such, resumes
after the imaging pause, and the plan completes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hil.runner import RunOptions, run_scenario
from hil.scenario import load_scenario
from host.recording import Recording
from protocol import Event, EventKind, StopReason
from protocol.messages import Message
from tests.host.test_run_cli import FAST_PLAN
from tests.support.lossy_link import lossy_relay
from tests.support.wire_client import simulator

SCENARIO = """
name = "lost-increment-done"
plan_file = "fast.toml"
max_duration_s = 30
resume_after_s = 0.2
settle_s = 0.5

[expect]
state = "DONE"
reason = "VOLUME_LIMIT"
increments_done = 1
"""


def _increment_done(msg: Message) -> bool:
    return isinstance(msg, Event) and msg.kind == EventKind.STOP and msg.reason == StopReason.INCREMENT_DONE


async def test_a_lost_increment_done_event_is_read_from_status_and_the_plan_goes_on(tmp_path: Path) -> None:
    (tmp_path / "fast.toml").write_text(FAST_PLAN)
    path = tmp_path / "lost.toml"
    path.write_text(SCENARIO)
    report = tmp_path / "report"
    with simulator("--pty") as (_proc, device_port), lossy_relay(device_port) as relay:
        relay.damage_next(_increment_done)
        outcome = await asyncio.wait_for(
            run_scenario(load_scenario(path), path, RunOptions(port=relay.port, report_dir=report)), 60
        )
        damaged = list(relay.damaged)
    assert len(damaged) == 1  # exactly that frame was destroyed
    assert outcome.status == "passed", outcome.message
    assert not outcome.measured.timed_out
    assert outcome.measured.increments_done == 1
    assert outcome.measured.stops_read_from_status == 1
    rec = Recording.open(report / "lost-increment-done" / "recording")
    stops = {e.record.reason: e for e in rec.stop_events()}
    assert stops[StopReason.INCREMENT_DONE].annotations["read_from"] == "STATUS"
    assert "read_from" not in stops[StopReason.VOLUME_LIMIT].annotations


async def test_a_stop_event_taken_through_the_reconciliation_is_not_taken_again_from_the_queue() -> None:
    """The reconciliation may see a STOP event before the driver's queue does; the queue's copy must
    not count a second INCREMENT_DONE (and a second imaging pause and RESUME)."""
    from types import SimpleNamespace

    from hil.runner import _queued_stop
    from protocol import AlarmCode, Flags, State, StopSource

    def stop(index: int) -> Event:
        return Event(
            t_us=1, event_index=index, kind=EventKind.STOP, state=State.PAUSED, prev_state=State.INJECTING,
            reason=StopReason.INCREMENT_DONE, source=StopSource.CONTROLLER, alarm=AlarmCode.NONE,
            flags=Flags(0), pressure_pa=0, delivered_nl=0, plunger_um=0, detail=0,
        )  # fmt: skip

    run = SimpleNamespace(stops=asyncio.Queue(), seen_stops={7})  # 7 was taken through the reconciliation
    for item in ((stop(7), 0.0), (stop(8), 0.0), "cut"):
        run.stops.put_nowait(item)
    first = await _queued_stop(run)  # type: ignore[arg-type]
    assert not isinstance(first, str)
    assert first[0].event_index == 8
    assert await _queued_stop(run) == "cut"  # type: ignore[arg-type]
    assert run.seen_stops == {7, 8}
