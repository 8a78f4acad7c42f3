"""The host says when the device's relief ended at its travel limit with the line still pressurised
(ALARM RELIEF_AT_LIMIT, SPEC §6.7, §8.4): `run`'s live view and summary, in one sentence."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from rich.console import Console

from host.relief_notice import relief_at_limit_text, relief_notice
from host.run import _Display, _LinkLoss, _Live, _render
from protocol import AlarmCode, EventKind, Flags, State
from tests.host.conftest import event_message
from tests.host.test_run_cli import FAST_PLAN

NOTICE = "relief ended at its travel limit with 1354 kPa in the line"


def _notice_event(pressure_pa: int = 1_353_629) -> Any:
    event = event_message(7, EventKind.ALARM, State.STOPPED, detail=pressure_pa)
    return dataclasses.replace(event, alarm=AlarmCode.RELIEF_AT_LIMIT)


def test_the_sentence_names_the_pressure_left_in_kpa() -> None:
    assert relief_at_limit_text(1_353_629) == NOTICE
    assert relief_notice(_notice_event()) == NOTICE


def test_a_relief_cut_short_is_said_too() -> None:
    """ALARM RELIEF_INCOMPLETE (SPEC §6.7): the relief ended on its time bound or a stall with the
    line still pressurised. Same pressure, its own cause; the dashboard and report take the same
    sentence from here."""
    event = dataclasses.replace(_notice_event(2_480_400), alarm=AlarmCode.RELIEF_INCOMPLETE)
    assert relief_notice(event) == (
        "relief stopped short (time limit, or the plunger could not move back) with 2480 kPa in the line"
    )


def test_other_events_say_nothing() -> None:
    assert relief_notice(event_message(6, EventKind.RELIEF_DONE, State.STOPPED, detail=1_353_629)) is None
    other = dataclasses.replace(_notice_event(), alarm=AlarmCode.LIMIT_CLAMPED)
    assert relief_notice(other) is None


def _plan() -> Any:
    import tomllib

    from host.plan import InjectionPlan

    return InjectionPlan.model_validate(tomllib.loads(FAST_PLAN))


def test_run_shows_the_notice_in_its_live_view() -> None:
    live = _Live()
    display = _Display(live, _LinkLoss(), cast(Any, SimpleNamespace(counters=None)))
    display.on_event(event_message(6, EventKind.RELIEF_DONE, State.STOPPED, detail=3_199), {}, None)
    assert live.relief is None
    display.on_event(_notice_event(), {}, None)
    assert live.relief == NOTICE
    out = io.StringIO()
    Console(file=out, width=120).print(_render(live, _plan()))
    assert NOTICE in out.getvalue()


def test_run_waits_for_the_relief_before_its_last_frame() -> None:
    """settled() does not end while the latest event says RELIEF_ACTIVE, so the summary can say how
    the relief ended; bounded by its timeout."""
    live = _Live()
    display = _Display(live, _LinkLoss(), cast(Any, SimpleNamespace(counters=None)))
    stop = dataclasses.replace(
        event_message(5, EventKind.STOP, State.STOPPED), flags=Flags.HOST_LINK_OK | Flags.RELIEF_ACTIVE
    )
    display.on_event(stop, {}, None)

    async def scenario() -> bool:
        waiting = asyncio.ensure_future(display.settled(5.0))
        await asyncio.sleep(0)
        held = not waiting.done()
        display.on_event(event_message(6, EventKind.RELIEF_DONE, State.STOPPED, detail=3_199), {}, None)
        await asyncio.wait_for(waiting, 1.0)
        return held

    assert asyncio.run(scenario()), "settled() returned while the relief ran"


def test_the_dashboard_banner_names_it_until_the_next_push() -> None:
    from host.dashboard.model import DashboardModel
    from host.dashboard.source import feed_event
    from host.dashboard.widgets.banner import banner_text

    model = DashboardModel(clock=lambda: 0.0)
    model.link.state = "connected"
    redraws: list[int] = []
    model.on_urgent = lambda: redraws.append(1)
    feed_event(model, event_message(5, EventKind.STOP, State.STOPPED), {}, None)
    feed_event(model, event_message(6, EventKind.RELIEF_DONE, State.STOPPED, detail=3_199), {}, None)
    assert NOTICE.upper() not in banner_text(model)[2]
    redraws.clear()
    feed_event(model, _notice_event(), {}, None)
    assert NOTICE.upper() in banner_text(model)[2]
    assert redraws, "the banner redraws at once"
    feed_event(model, event_message(8, EventKind.STATE_CHANGE, State.IDLE), {}, None)
    assert NOTICE.upper() in banner_text(model)[2], "CLEAR does not make the line safe"
    feed_event(model, event_message(9, EventKind.STATE_CHANGE, State.ARMED), {}, None)
    assert NOTICE.upper() not in banner_text(model)[2]


def test_the_recording_and_its_report_say_it(tmp_path: Path) -> None:
    """The notice is recorded as the device sent it, and `cementguard report` names it in the
    summary (HTML and PDF text page) with its time."""
    from host.recording import Recorder, Recording
    from host.report import summarize, write_report
    from tests.host.test_recording import DEVICE, PLAN, stop_event, synthetic_samples

    with Recorder.create(tmp_path / "r", PLAN, DEVICE, background=False) as rec:
        rec.add_samples(synthetic_samples(2_000))
        rec.add_event(stop_event(0, 1_000_000), source_latency_ms=0.0)
        rec.add_event(dataclasses.replace(_notice_event(), t_us=1_900_000), source_latency_ms=0.0)
    recording = Recording.open(tmp_path / "r")
    assert summarize(recording).relief_notices == ((1.9, NOTICE),)
    html = write_report(recording, tmp_path / "out").html.read_text()
    assert f"{NOTICE} (t = 1.900 s)" in html


def test_the_dashboard_banner_says_a_relief_cut_short_until_the_next_push() -> None:
    """The dashboard shows alarms of this kind on its banner (host/dashboard/widgets/banner.py):
    RELIEF_INCOMPLETE as RELIEF_AT_LIMIT, kept through CLEAR (it does not empty the line)."""
    from host.dashboard.model import DashboardModel
    from host.dashboard.widgets.banner import banner_text
    from protocol import StopReason, StopSource

    model = DashboardModel(clock=lambda: 0.0)
    model.link.state = "connected"
    common: dict[str, Any] = {"reason": StopReason.NONE, "source": StopSource.NONE, "t_s": 1.0}
    common |= {"pressure_kpa": 778.0, "delivered_ml": 0.2}
    model.on_event(kind=EventKind.RELIEF_DONE, state=State.STOPPED, **common)
    model.on_event(
        kind=EventKind.ALARM, state=State.STOPPED, alarm=AlarmCode.RELIEF_INCOMPLETE, detail=777_913, **common
    )
    shout = "RELIEF STOPPED SHORT (TIME LIMIT, OR THE PLUNGER COULD NOT MOVE BACK) WITH 778 KPA IN THE LINE"
    assert banner_text(model)[2].startswith(shout)
    model.on_event(kind=EventKind.STATE_CHANGE, state=State.IDLE, **common)  # CLEAR
    assert banner_text(model)[2].startswith(shout)
    model.on_event(kind=EventKind.STATE_CHANGE, state=State.ARMED, **common)  # a new push
    assert shout not in banner_text(model)[2]
