"""The stream pump's one error policy: a consumer that raises is taken out and reported at once (to
the program and the log), the others go on; a supervised task that dies is reported, never silent."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

import host.recording
from host.client import DeviceClient
from host.pump import Consumer, ConsumerFailure, StreamPump, Supervisor
from host.recording import Recorder
from host.recording_sink import RecordingSink, close_recorder
from protocol import Event, EventKind, State, TelemetryBatch
from protocol.telemetry import empty_samples
from tests.host.conftest import FakeDevice, batch_message, event_message
from tests.host.test_link_fake_device import FAST


class _Counting(Consumer):
    def __init__(self, name: str) -> None:
        self.name = name
        self.batches = 0
        self.events: list[Event] = []

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        self.batches += 1

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        self.events.append(event)


class _Breaks(_Counting):
    critical = True

    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        super().on_samples(batch, received_at)
        raise OSError(28, "No space left on device")


async def test_a_consumer_that_raises_is_reported_and_the_others_go_on(
    fake_device: Callable[..., FakeDevice], caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[ConsumerFailure] = []
    reported = asyncio.Event()

    def report(failure: ConsumerFailure) -> None:
        failures.append(failure)
        reported.set()

    broken, display = _Breaks("recording"), _Counting("display")
    async with (
        fake_device() as device,
        DeviceClient.open(device.path, FAST) as ctl,
        StreamPump(ctl, [broken, display], on_failure=report) as pump,
    ):
        device.send(batch_message(0, 20))
        await asyncio.wait_for(reported.wait(), 5.0)
        device.send(batch_message(20, 20))
        device.send(event_message(1, EventKind.STATE_CHANGE, State.ARMED))
        await device.until(lambda: len(display.events) == 1)
    assert broken.batches == 1, "a failed consumer gets nothing more"
    assert display.batches == 2
    assert display.events[0].state == State.ARMED
    (failure,) = failures
    assert failure.name == "recording"
    assert failure.critical
    assert isinstance(failure.error, OSError)
    assert pump.failures == failures
    assert "recording failed: OSError" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_supervised_task_that_dies_is_reported() -> None:
    failures: list[ConsumerFailure] = []

    async def worker() -> None:
        raise RuntimeError("publisher crashed")

    async with Supervisor(failures.append) as sup:
        task = sup.spawn(worker(), "mqtt-publish")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callback runs on the next turn of the loop
    assert [f.name for f in failures] == ["mqtt-publish"]
    assert "publisher crashed" in str(failures[0])
    assert isinstance(sup.failed["mqtt-publish"], RuntimeError)


async def test_a_recorder_whose_writer_fails_is_reported_without_more_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread's failure reaches the pump at once, not only when the next batch would
    have raised it (telemetry can be off, or the device idle)."""
    failures: list[ConsumerFailure] = []
    reported = asyncio.Event()

    def report(failure: ConsumerFailure) -> None:
        failures.append(failure)
        reported.set()

    recorder = Recorder.create(tmp_path / "run", {"name": "x"}, flush_interval_s=0.01)
    sink = RecordingSink(recorder)
    pump = StreamPump(cast(DeviceClient, None), [sink], on_failure=report)

    def no_space(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(host.recording, "_write_all", no_space)
    sink.on_samples(cast(TelemetryBatch, SimpleNamespace(samples=empty_samples(3))), None)
    await asyncio.wait_for(reported.wait(), 5.0)
    (failure,) = failures
    assert failure.consumer is sink
    assert "No space left on device" in str(failure)
    assert pump.consumers == ()
    assert await close_recorder(recorder) is not None
