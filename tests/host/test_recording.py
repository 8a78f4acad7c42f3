"""Recordings: format, round trip, torn tails, version check, CSV export, PNG plot, CLI.

The crash test (a recording child process killed with SIGKILL) is in test_recording_crash.py.
Every wait here is on a report (a flush callback), never a sleep.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from host import recording as recording_module
from host.cli import main as cli_main
from host.export import EVENT_COLUMNS, SAMPLE_COLUMNS, export_csv, export_events_csv
from host.plot import make_figure, minmax_downsample, plan_limits, plot_png
from host.recording import (
    CLOSED_FILE,
    COUNTERS_FILE,
    EVENTS_FILE,
    META_FILE,
    TELEMETRY_FILE,
    FlushInfo,
    Recorder,
    RecorderError,
    Recording,
    RecordingError,
    RecordingVersionError,
    new_run_dir,
)
from protocol import (
    Ack,
    AlarmCode,
    Event,
    EventKind,
    Flags,
    Mode,
    Resume,
    State,
    StopReason,
    StopSource,
)
from protocol.codec import StreamCounters
from protocol.framing import FramingCounters
from protocol.models import DeviceInfoRecord, EventRecord
from protocol.telemetry import SAMPLE_DTYPE, SAMPLE_SIZE, SampleArray, concat_samples

DEVICE = DeviceInfoRecord(
    protocol_version=1,
    firmware_version="0.1.0",
    serial="BENCH-7",
    capabilities=["RELIEF_BACKOFF", "INCREMENTAL"],
    sample_rate_hz=1000,
    watchdog_ms=500,
    max_pressure_kpa=8000.0,
    max_flow_ml_min=10.0,
    travel_mm=60.0,
)
PLAN: dict[str, Any] = {
    "name": "L2 left",
    "mode": "incremental",
    "flow_ml_min": 3.0,
    "increment_ml": 0.5,
    "volume_limit_ml": 2.0,
    "pressure": {"soft_limit_kpa": 2500.0, "hard_limit_kpa": 4000.0},
    "relief": {"enabled": True, "relief_kpa": 200.0},
}


def synthetic_samples(n: int, t0_us: int = 0, *, period_us: int = 1000) -> SampleArray:
    """1 kHz telemetry with every field moving, so a byte-level comparison means something."""
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    i = np.arange(n)
    s["t_us"] = t0_us + i * period_us
    s["pressure_pa"] = 500_000 + (i * 37) % 100_000
    s["delivered_nl"] = i * 50
    s["plunger_um"] = 3_000 + i // 3 - (i % 11 == 10) * 2
    s["flow_nl_s"] = 50_000 + (i % 7)
    s["flow_setpoint_nl_s"] = 50_000 - (i % 5) * 1_000
    s["motor_um_s"] = 1197
    s["viscosity_pas"] = np.where(i % 3 == 0, np.nan, 120.5 + i % 5)
    s["flags"] = int(Flags.HOST_LINK_OK | Flags.MOTOR_MOVING)
    s["state"] = State.INJECTING
    return s


def stop_event(index: int, t_us: int, reason: StopReason = StopReason.OVERPRESSURE) -> Event:
    return Event(
        t_us=t_us,
        event_index=index,
        kind=EventKind.STOP,
        state=State.STOPPED,
        prev_state=State.INJECTING,
        reason=reason,
        source=StopSource.CONTROLLER,
        alarm=AlarmCode.NONE,
        flags=Flags.HOST_LINK_OK | Flags.RELIEF_ACTIVE,
        pressure_pa=4_000_123,
        delivered_nl=1_234_567,
        plunger_um=25_431,
        detail=0,
    )


def counters(frames: int) -> StreamCounters:
    return StreamCounters(framing=FramingCounters(frames=frames, bytes_in=frames * 100), lost_frames=1)


# ---------------------------------------------------------------------------------------------
# Round trip and format
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [True, False], ids=["writer-thread", "inline"])
def test_round_trip_reads_back_what_was_written(tmp_path: Path, background: bool) -> None:
    batches = [synthetic_samples(20, t0_us=k * 20_000) for k in range(100)]
    events = [stop_event(0, 1_000_000), stop_event(1, 1_500_000, StopReason.VOLUME_LIMIT)]
    path = tmp_path / "run"
    with Recorder.create(path, PLAN, DEVICE, extra={"scenario": "nominal"}, background=background) as rec:
        for k, batch in enumerate(batches):
            rec.add_samples(batch)
            if k == 50:
                rec.add_event(events[0], source_latency_ms=3.25)
                rec.add_counters(counters(10))
        rec.add_event(EventRecord.from_message(events[1]), host_time_unix_s=12.5)
        rec.add_counters({"frames_rx": 99, "nested": {"a": 1}})

    r = Recording.open(path)
    assert r.is_complete
    assert r.problems == []
    assert r.samples.dtype == SAMPLE_DTYPE
    assert r.samples.tobytes() == concat_samples(batches).tobytes()
    assert [e.record for e in r.events] == [EventRecord.from_message(e) for e in events]
    assert r.events[0].annotations["source_latency_ms"] == 3.25
    assert isinstance(r.events[0].host_time_unix_s, float)
    assert r.events[1].host_time_unix_s == 12.5
    assert [c.counters for c in r.counters] == [
        dataclasses.asdict(counters(10)),
        {"frames_rx": 99, "nested": {"a": 1}},
    ]
    assert r.plan == PLAN
    assert r.device == DEVICE
    assert r.meta["extra"] == {"scenario": "nominal"}
    assert r.format_version == (2, 0)
    assert r.missing_columns == ()
    assert r.closed is not None
    assert (r.closed["samples"], r.closed["events"], r.closed["counters"]) == (2000, 2, 2)
    assert r.duration_s == pytest.approx(1.999)
    assert [e.record.reason for e in r.stop_events()] == [StopReason.OVERPRESSURE, StopReason.VOLUME_LIMIT]


def test_the_files_are_readable_without_cementguard(tmp_path: Path) -> None:
    """What docs/recordings.md promises: numpy + json, nothing of ours."""
    samples = synthetic_samples(500)
    with Recorder.create(tmp_path / "run", PLAN, DEVICE) as rec:
        rec.add_samples(samples)
        rec.add_event(stop_event(0, 400_000))

    meta = json.loads((tmp_path / "run" / META_FILE).read_text())
    tel = meta["telemetry"]
    dtype = np.dtype(
        {
            "names": [f["name"] for f in tel["fields"]],
            "formats": [f["type"] for f in tel["fields"]],
            "offsets": [f["offset"] for f in tel["fields"]],
            "itemsize": tel["record_size"],
        }
    )
    raw = np.fromfile(tmp_path / "run" / tel["file"], dtype=dtype)
    assert raw.tobytes() == samples.tobytes()
    units = {f["name"]: f["unit"] for f in tel["fields"]}
    assert units["pressure_pa"] == "Pa"
    assert units["delivered_nl"] == "nL"
    assert units["plunger_um"] == "um"
    assert units["t_us"] == "us"
    pressure = next(f for f in tel["fields"] if f["name"] == "pressure_pa")
    assert pressure["edge"] == {"name": "pressure_kpa", "unit": "kPa", "factor": 1e-3}
    assert dict(np.dtype([tuple(d) for d in tel["numpy_descr"]]).fields or {}) == dict(
        SAMPLE_DTYPE.fields or {}
    )

    (line,) = (tmp_path / "run" / EVENTS_FILE).read_text().splitlines()
    event = json.loads(line)["event"]
    assert event["reason"] == meta["enums"]["StopReason"]["OVERPRESSURE"]
    assert event["pressure_kpa"] == 4000.123
    assert (event["delivered_ml"], event["plunger_mm"]) == (1.234567, 25.431)
    assert meta["events"]["units"]["pressure_kpa"] == "kPa"
    assert meta["format"] == "cementguard-recording"
    assert meta["format_version"] == "2.0"
    assert meta["host"]["cementguard_version"]
    assert meta["created_utc"].endswith("Z")


def test_meta_is_written_before_any_data_and_closed_marks_completion(tmp_path: Path) -> None:
    rec = Recorder.create(tmp_path / "run", PLAN, None, background=False)
    assert (tmp_path / "run" / META_FILE).is_file()
    assert not (tmp_path / "run" / f"{META_FILE}.tmp").exists()
    rec.add_samples(synthetic_samples(10))
    rec.flush()
    live = Recording.open(tmp_path / "run")
    assert not live.is_complete
    assert len(live.samples) == 10
    assert live.device is None
    rec.close()
    assert Recording.open(tmp_path / "run").is_complete
    rec.close()  # idempotent


def test_a_plan_model_is_stored_as_its_json(tmp_path: Path) -> None:
    from pydantic import BaseModel

    class Plan(BaseModel):
        flow_ml_min: float
        mode: Mode

    with Recorder.create(tmp_path / "run", Plan(flow_ml_min=2.5, mode=Mode.INCREMENTAL), None):
        pass
    assert Recording.open(tmp_path / "run").plan == {"flow_ml_min": 2.5, "mode": 1}


def test_create_refuses_a_used_directory_and_a_plan_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        Recorder.create(tmp_path / "used", PLAN, None)
    with pytest.raises(ValueError, match="plan is not plain JSON"):
        Recorder.create(tmp_path / "nan", {"soft_limit_kpa": math.nan}, None)
    with pytest.raises(ValueError, match="plan is not plain JSON"):
        Recorder.create(tmp_path / "obj", {"when": object()}, None)


def test_misuse_is_refused(tmp_path: Path) -> None:
    rec = Recorder.create(tmp_path / "run", PLAN, None)
    with pytest.raises(TypeError, match="dtype"):
        rec.add_samples(np.zeros(3, dtype=[("t_us", "<u8")]))
    rec.close()
    with pytest.raises(RecorderError, match="closed"):
        rec.add_samples(synthetic_samples(1))
    with pytest.raises(RecorderError, match="closed"):
        rec.add_event(stop_event(0, 0))
    with pytest.raises(RecorderError, match="closed"):
        rec.add_counters({})


def test_an_event_with_a_value_this_side_does_not_know_is_still_recorded(tmp_path: Path) -> None:
    """The codec keeps unknown enum values of a newer device as ints; the recording must keep them."""
    newer = dataclasses.replace(stop_event(3, 2_000_000), reason=99)  # type: ignore[arg-type]
    with Recorder.create(tmp_path / "run", PLAN, None) as rec:
        rec.add_event(newer)
    r = Recording.open(tmp_path / "run")
    (e,) = r.events
    assert e.record.reason == 99
    assert set(json.loads((tmp_path / "run" / EVENTS_FILE).read_text())["event"]) == set(
        EventRecord.model_fields
    )
    assert r.enum_name("StopReason", 99) == "StopReason(99)"
    assert r.enum_name("StopReason", 1) == "OVERPRESSURE"
    export_events_csv(r, tmp_path / "ev.csv")
    rows = list(csv.DictReader((tmp_path / "ev.csv").open()))
    assert rows[0]["reason"] == "StopReason(99)"


def test_counters_are_polled_from_a_source_and_at_close(tmp_path: Path) -> None:
    calls = []

    def source() -> StreamCounters:
        calls.append(1)
        return counters(len(calls))

    with Recorder.create(tmp_path / "ok", PLAN, None, counters_source=source, counters_interval_s=3600):
        pass
    (snap,) = Recording.open(tmp_path / "ok").counters
    assert snap.counters["framing"]["frames"] == 1

    def broken() -> dict[str, int]:
        raise RuntimeError("link gone")

    with Recorder.create(tmp_path / "broken", PLAN, None, counters_source=broken):
        pass
    (snap,) = Recording.open(tmp_path / "broken").counters
    assert "link gone" in snap.counters["error"]


def test_new_run_dir_names_sort_and_never_collide(tmp_path: Path) -> None:
    a = new_run_dir(tmp_path, "L2 left")
    a.mkdir()
    b = new_run_dir(tmp_path, "L2 left")
    assert a != b
    assert not b.exists()
    assert a.name.endswith("L2 left")
    assert a.name[:8].isdigit()


# ---------------------------------------------------------------------------------------------
# Flushing: cadence, events at once, failures
# ---------------------------------------------------------------------------------------------


def test_inline_recorder_flushes_at_least_every_interval_of_data_and_on_every_event(tmp_path: Path) -> None:
    flushes: list[FlushInfo] = []
    rec = Recorder.create(
        tmp_path / "run", PLAN, None, background=False, flush_interval_s=0.25, on_flush=flushes.append
    )
    for k in range(100):  # 2 s of 1 kHz data, delivered as fast as the test runs
        rec.add_samples(synthetic_samples(20, t0_us=k * 20_000))
        if k == 37:
            rec.add_event(stop_event(0, 37 * 20_000))
            on_disk = (tmp_path / "run" / EVENTS_FILE).read_text()
            assert on_disk.count("\n") == 1, "the event is on disk when add_event returns"
            assert (tmp_path / "run" / TELEMETRY_FILE).stat().st_size == 38 * 20 * SAMPLE_SIZE, (
                "with the data before it"
            )
    durable = [0] + [f.last_t_us for f in flushes if f.last_t_us is not None]
    assert max(np.diff(durable)) <= 250_000 + 20_000
    unflushed = 2_000_000 - 1000 - durable[-1]
    assert unflushed < 250_000
    rec.close()
    assert flushes[-1].samples == 2000
    assert rec.stats.flushes == len(flushes)


def test_writer_thread_flushes_an_event_at_once(tmp_path: Path) -> None:
    """With a flush interval of an hour only the event's wake-up can make it durable."""
    got_event = threading.Event()

    def on_flush(info: FlushInfo) -> None:
        if info.events >= 1:
            got_event.set()

    rec = Recorder.create(tmp_path / "run", PLAN, None, flush_interval_s=3600, on_flush=on_flush)
    rec.add_samples(synthetic_samples(100))
    rec.add_event(stop_event(0, 99_000))
    assert got_event.wait(10.0)
    r = Recording.open(tmp_path / "run")
    assert len(r.events) == 1
    assert len(r.samples) == 100
    rec.close()


def test_writer_thread_flushes_when_the_buffer_is_large(tmp_path: Path) -> None:
    flushed = threading.Event()
    rec = Recorder.create(
        tmp_path / "run",
        PLAN,
        None,
        flush_interval_s=3600,
        max_pending_bytes=64 * SAMPLE_SIZE,
        on_flush=lambda info: flushed.set(),
    )
    rec.add_samples(synthetic_samples(63))
    assert not flushed.is_set()
    rec.add_samples(synthetic_samples(1, t0_us=63_000))
    assert flushed.wait(10.0)
    rec.close()


def test_a_write_failure_is_raised_and_the_recording_is_not_marked_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder.create(tmp_path / "run", PLAN, None, background=False)
    rec.add_samples(synthetic_samples(10))
    rec.flush()

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recording_module, "_write_all", disk_full)
    rec.add_samples(synthetic_samples(10, t0_us=10_000))
    with pytest.raises(RecorderError, match="No space left"):
        rec.flush()
    with pytest.raises(RecorderError, match="No space left"):
        rec.add_samples(synthetic_samples(1))
    with pytest.raises(RecorderError, match="No space left"):
        rec.close()
    monkeypatch.undo()
    r = Recording.open(tmp_path / "run")
    assert not r.is_complete
    assert len(r.samples) == 10


# ---------------------------------------------------------------------------------------------
# Reading damaged recordings
# ---------------------------------------------------------------------------------------------


def _closed_recording(path: Path, n: int = 1000) -> None:
    with Recorder.create(path, PLAN, DEVICE) as rec:
        rec.add_samples(synthetic_samples(n))
        rec.add_event(stop_event(0, 100_000))
        rec.add_event(stop_event(1, 200_000))
        rec.add_counters({"frames": 1})


def test_a_torn_last_record_and_torn_last_lines_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _closed_recording(path)
    (path / CLOSED_FILE).unlink()  # as if killed: the recorder never closed it
    with (path / TELEMETRY_FILE).open("r+b") as f:
        f.truncate(1000 * SAMPLE_SIZE - 13)  # a record cut mid-write
    with (path / EVENTS_FILE).open("ab") as f:
        f.write(b'{"event": {"event_index": 2, "kind": 3, "sta')
    with (path / COUNTERS_FILE).open("ab") as f:
        f.write(b'{"host_time_unix_s": 1.0, "coun')

    r = Recording.open(path)
    assert not r.is_complete
    assert len(r.samples) == 999
    assert r.samples.tobytes() == synthetic_samples(999).tobytes()
    assert [e.record.event_index for e in r.events] == [0, 1]
    assert len(r.counters) == 1
    assert r.dropped == {
        "telemetry_bytes": SAMPLE_SIZE - 13,
        "telemetry_zero_records": 0,
        "events_lines": 1,
        "counters_lines": 1,
    }
    assert any("torn last record" in p for p in r.problems)


def test_zeros_left_by_a_power_cut_are_dropped_from_an_incomplete_recording(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _closed_recording(path, n=100)
    (path / CLOSED_FILE).unlink()
    with (path / TELEMETRY_FILE).open("ab") as f:
        f.write(bytes(2 * SAMPLE_SIZE + 5))
    with (path / EVENTS_FILE).open("ab") as f:
        f.write(bytes(40))
    r = Recording.open(path)
    assert len(r.samples) == 100
    assert r.dropped["telemetry_zero_records"] == 2
    assert r.dropped["telemetry_bytes"] == 5
    assert len(r.events) == 2


def test_a_bad_line_in_the_middle_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _closed_recording(path)
    lines = (path / EVENTS_FILE).read_text().splitlines()
    (path / EVENTS_FILE).write_text(lines[0] + "\n" + "garbage\n" + lines[1] + "\n")
    r = Recording.open(path)
    assert [e.record.event_index for e in r.events] == [0, 1]
    assert any("line(s) [2]" in p for p in r.problems)


def test_a_clean_recording_missing_data_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _closed_recording(path)
    with (path / TELEMETRY_FILE).open("r+b") as f:
        f.truncate(500 * SAMPLE_SIZE)
    r = Recording.open(path)
    assert r.is_complete
    assert any("1000 samples, but 500" in p for p in r.problems)


def test_a_directory_without_meta_is_not_a_recording(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="not a recording"):
        Recording.open(tmp_path)
    (tmp_path / f"{META_FILE}.tmp").write_text("{")
    with pytest.raises(RecordingError, match="while creating"):
        Recording.open(tmp_path)


def _rewrite_meta(path: Path, **changes: Any) -> None:
    meta = json.loads((path / META_FILE).read_text())
    meta.update(changes)
    (path / META_FILE).write_text(json.dumps(meta))


def test_a_newer_major_version_is_a_clear_error_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _closed_recording(path)
    _rewrite_meta(path, format_version="3.1")
    with pytest.raises(RecordingVersionError) as info:
        Recording.open(path)
    message = str(info.value)
    assert "3.1" in message
    assert "2.x" in message
    assert "newer" in message


def test_a_newer_minor_version_reads_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _closed_recording(path)
    _rewrite_meta(path, format_version="2.7", something_new={"x": 1})
    r = Recording.open(path)
    assert r.format_version == (2, 7)
    assert len(r.samples) == 1000


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"format_version": "one"}, "MAJOR.MINOR"),
        ({"format": "something-else"}, "not a cementguard-recording"),
        ({"format_version": "0.9"}, "1.x to 2.x expected"),
    ],
)
def test_meta_that_is_not_ours_is_refused(tmp_path: Path, changes: dict[str, Any], match: str) -> None:
    path = tmp_path / "run"
    _closed_recording(path)
    _rewrite_meta(path, **changes)
    with pytest.raises(RecordingError, match=match):
        Recording.open(path)


# ---------------------------------------------------------------------------------------------
# A realistic run from the virtual rig: incremental, two increments, then an occlusion
# ---------------------------------------------------------------------------------------------


def record_rig_run(path: Path) -> VirtualRig:
    rig = VirtualRig(PlantConfig.model_validate({"events": [{"kind": "occlusion", "at_volume_ml": 1.2}]}))
    info = rig.connect()
    taken = {"samples": 0, "events": 0}
    with Recorder.create(path, PLAN, DeviceInfoRecord.from_message(info)) as rec:

        def run(seconds: float, until: Any = None) -> None:
            rig.run(seconds, until=until)
            s = rig.samples
            rec.add_samples(s[taken["samples"] :])
            for e in rig.events[taken["events"] :]:
                rec.add_event(e, source_latency_ms=0.0)
            taken.update(samples=len(s), events=len(rig.events))

        run(0.2)
        assert isinstance(rig.arm(mode=Mode.INCREMENTAL, increment_nl=500_000), Ack)
        assert isinstance(rig.start(), Ack)
        for _ in range(5):
            run(60.0, until=rig.state_is(State.PAUSED, State.STOPPED, State.DONE))
            if rig.controller.state != State.PAUSED:
                break
            run(0.5)  # imaging
            assert isinstance(rig.command(Resume), Ack)
        run(1.0)
    return rig


@pytest.fixture(scope="module")
def rig_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, VirtualRig]:
    path = tmp_path_factory.mktemp("rig") / "run"
    rig = record_rig_run(path)
    return Recording.open(path), rig


def test_rig_run_round_trips(rig_recording: tuple[Recording, VirtualRig]) -> None:
    rec, rig = rig_recording
    assert rec.is_complete
    assert rec.samples.tobytes() == rig.samples.tobytes()
    assert [e.record for e in rec.events] == [EventRecord.from_message(e) for e in rig.events]
    reasons = [e.record.reason for e in rec.stop_events()]
    assert reasons == [StopReason.INCREMENT_DONE, StopReason.INCREMENT_DONE, StopReason.PRESSURE_RISE]


def test_csv_has_units_in_the_header_and_the_values_in_them(
    rig_recording: tuple[Recording, VirtualRig], tmp_path: Path
) -> None:
    rec, _ = rig_recording
    rows_written = export_csv(rec, tmp_path / "s.csv", tmp_path / "e.csv")
    with (tmp_path / "s.csv").open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert tuple(header) == SAMPLE_COLUMNS
    assert header == [
        "t_s",
        "pressure_kpa",
        "delivered_ml",
        "plunger_mm",
        "flow_ml_min",
        "flow_setpoint_ml_min",
        "motor_mm_s",
        "viscosity_pa_s",
        "flags",
        "state",
        "stop_reason",
    ]
    assert len(rows) == rows_written == len(rec.samples)
    s = rec.samples
    for i in (0, len(s) // 3, len(s) - 1):
        row = dict(zip(header, rows[i], strict=True))
        assert float(row["t_s"]) == pytest.approx(s["t_us"][i] / 1e6, abs=1e-9)
        assert float(row["pressure_kpa"]) == pytest.approx(s["pressure_pa"][i] / 1000, abs=1e-9)
        assert float(row["delivered_ml"]) == pytest.approx(s["delivered_nl"][i] / 1e6, abs=1e-12)
        assert float(row["plunger_mm"]) == pytest.approx(s["plunger_um"][i] / 1e3, abs=1e-12)
        assert float(row["flow_setpoint_ml_min"]) == pytest.approx(
            s["flow_setpoint_nl_s"][i] * 6e-5, abs=1e-9
        )
        assert float(row["flow_ml_min"]) == pytest.approx(s["flow_nl_s"][i] * 60 / 1e6, abs=1e-9)
        assert float(row["motor_mm_s"]) == pytest.approx(s["motor_um_s"][i] / 1000, abs=1e-9)
        assert int(row["flags"]) == s["flags"][i]
        assert row["state"] == State(s["state"][i]).name
        assert row["stop_reason"] == StopReason(s["stop_reason"][i]).name
        visc = s["viscosity_pas"][i]
        assert (row["viscosity_pa_s"] == "") == bool(np.isnan(visc))
    assert rows[-1][header.index("state")] == "STOPPED"
    assert rows[-1][header.index("stop_reason")] == "PRESSURE_RISE"
    assert any(r[header.index("viscosity_pa_s")] for r in rows), "the estimate became valid"
    # a typical mid-run value, checked as text: 1 Pa resolution, no float noise
    injecting = np.flatnonzero(s["state"] == State.INJECTING)
    j = int(injecting[len(injecting) // 2])
    assert rows[j][1] == repr(int(s["pressure_pa"][j]) / 1000)

    with (tmp_path / "e.csv").open(newline="") as f:
        events = list(csv.DictReader(f))
    assert list(events[0]) == [*EVENT_COLUMNS, "host_time_unix_s", "source_latency_ms"]
    stops = [e for e in events if e["kind"] == "STOP"]
    assert [e["reason"] for e in stops] == ["INCREMENT_DONE", "INCREMENT_DONE", "PRESSURE_RISE"]
    assert float(stops[-1]["pressure_kpa"]) == rec.stop_events()[-1].record.pressure_kpa


def test_csv_leaves_pressure_empty_while_the_sensor_is_faulted(tmp_path: Path) -> None:
    s = synthetic_samples(4)
    s["flags"][2] |= int(Flags.SENSOR_FAULT)
    with Recorder.create(tmp_path / "run", PLAN, None) as rec:
        rec.add_samples(s)
    export_csv(tmp_path / "run", tmp_path / "s.csv")
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["pressure_kpa"] == "" for r in rows] == [False, False, True, False]


def test_png_is_written_and_the_figure_shows_limits_and_stops(
    rig_recording: tuple[Recording, VirtualRig], tmp_path: Path
) -> None:
    rec, _ = rig_recording
    out = tmp_path / "run.png"
    fig = plot_png(rec, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 900)

    ax_p, ax_v, ax_q = fig.axes

    def hlines(ax: Any, gid: str) -> list[float]:
        return sorted(float(line.get_ydata()[0]) for line in ax.get_lines() if line.get_gid() == gid)

    assert hlines(ax_p, "soft_limit") == [2500.0]
    assert hlines(ax_p, "hard_limit") == [4000.0]
    assert hlines(ax_p, "relief") == [200.0]
    assert hlines(ax_v, "volume_limit") == [2.0]
    assert hlines(ax_v, "increment_mark") == [0.5, 1.0, 1.5]
    assert hlines(ax_q, "flow_setpoint") == [3.0]
    assert ax_p.get_ylim()[1] > 4000, "the hard limit is inside the view"

    t0 = rec.samples["t_us"][0] / 1e6
    stop_times = [e.record.t_s - t0 for e in rec.stop_events()]
    for ax in fig.axes:
        lines = [float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_gid() == "stop"]
        assert lines == pytest.approx(stop_times)
    labels = [t.get_text().strip() for t in ax_p.texts if t.get_gid() == "stop_label"]
    assert labels == ["INCREMENT_DONE", "INCREMENT_DONE", "PRESSURE_RISE"]
    colours = [line.get_color() for line in ax_p.get_lines() if line.get_gid() == "stop"]
    assert colours == ["tab:green", "tab:green", "tab:red"], "latched stops stand out from planned ends"
    (done,) = [line for line in ax_v.get_lines() if line.get_gid() == "increment_done"]
    assert list(done.get_ydata()) == pytest.approx([0.5, 1.0], abs=0.01)

    assert ax_p.get_ylabel() == "syringe pressure (kPa)"
    assert ax_v.get_ylabel() == "delivered volume (mL)"
    assert ax_q.get_ylabel() == "flow (mL/min)"
    assert ax_q.get_xlabel().startswith("time (s)")
    assert "VIRTUAL-1" in fig.get_suptitle()


def test_a_long_recording_is_downsampled_keeping_its_peaks(tmp_path: Path) -> None:
    n = 600_000  # 10 minutes at 1 kHz
    s = synthetic_samples(n)
    s["pressure_pa"][123_457] = 3_900_000
    s["pressure_pa"][400_001] = -5_000
    with Recorder.create(tmp_path / "long", PLAN, None) as rec:
        rec.add_samples(s)
    r = Recording.open(tmp_path / "long")
    fig = make_figure(r, max_points=4000)
    (pressure,) = [line for line in fig.axes[0].get_lines() if line.get_gid() == "pressure"]
    y = np.asarray(pressure.get_ydata())
    assert len(y) <= 4000
    assert y.max() == 3900.0
    assert y.min() == -5.0
    x = np.asarray(pressure.get_xdata())
    assert np.all(np.diff(x) >= 0), "points stay in time order"
    assert fig.axes[0].texts == [] or all(t.get_gid() != "stop_label" for t in fig.axes[0].texts)
    assert "INCOMPLETE" not in " ".join(t.get_text() for t in fig.texts)


def test_minmax_downsample_ignores_nan_within_a_bucket_and_keeps_all_nan_gaps() -> None:
    x = np.arange(100.0)
    y = np.arange(100.0)
    y[10:20] = np.nan  # one whole bucket of 10
    y[35] = np.nan
    xs, ys = minmax_downsample(x, y, max_points=20)
    assert len(ys) == 20
    assert np.isnan(ys[2:4]).all()
    assert list(ys[6:8]) == [30.0, 39.0]
    assert list(xs[:2]) == [0.0, 9.0]
    short_x, short_y = minmax_downsample(x[:10], y[:10], max_points=20)
    assert np.array_equal(short_x, x[:10])
    assert np.array_equal(short_y, y[:10], equal_nan=True), "short traces are drawn as they are"


def test_plan_limits_read_either_unit_and_any_nesting() -> None:
    wire = plan_limits({"soft_limit_pa": 2_500_000, "hard_limit_pa": 4_000_000, "volume_limit_nl": 2_000_000})
    assert (wire.soft_kpa, wire.hard_kpa, wire.volume_ml) == (2500.0, 4000.0, 2.0)
    edge = plan_limits(PLAN)
    assert (edge.soft_kpa, edge.hard_kpa, edge.relief_kpa, edge.increment_ml) == (2500.0, 4000.0, 200.0, 0.5)
    none = plan_limits({"increment_ml": None, "soft_limit_kpa": True})
    assert none.increment_ml is None
    assert none.soft_kpa is None


def test_an_incomplete_recording_plots_and_says_so(tmp_path: Path) -> None:
    rec = Recorder.create(tmp_path / "run", {}, None, background=False)
    rec.add_samples(synthetic_samples(50))
    rec.add_event(stop_event(0, 20_000))
    fig = plot_png(tmp_path / "run", tmp_path / "p.png")
    assert any("INCOMPLETE" in t.get_text() for t in fig.texts)
    assert [line.get_gid() for line in fig.axes[0].get_lines()].count("soft_limit") == 0
    rec.close()

    with Recorder.create(tmp_path / "empty", {}, None):
        pass
    fig = plot_png(tmp_path / "empty", tmp_path / "e.png")
    assert any(t.get_text() == "no telemetry" for t in fig.axes[0].texts)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_export_and_plot(
    rig_recording: tuple[Recording, VirtualRig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec, _ = rig_recording
    assert (
        cli_main(
            [
                "export",
                str(rec.path),
                "--csv",
                str(tmp_path / "s.csv"),
                "--events-csv",
                str(tmp_path / "e.csv"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"wrote {len(rec.samples)} samples" in out
    assert f"wrote {len(rec.events)} events" in out
    assert (
        (tmp_path / "s.csv").read_text().startswith("t_s,pressure_kpa,delivered_ml,plunger_mm,flow_ml_min,")
    )
    assert (tmp_path / "e.csv").is_file()

    assert cli_main(["plot", str(rec.path), "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reports_a_bad_recording_and_warns_on_a_crashed_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["export", str(tmp_path), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "not a recording" in capsys.readouterr().err
    assert cli_main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a recording" in capsys.readouterr().err

    path = tmp_path / "crashed"
    _closed_recording(path)
    (path / CLOSED_FILE).unlink()
    assert cli_main(["export", str(path), "--csv", str(tmp_path / "c.csv")]) == 0
    assert "not closed cleanly" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Format 1 (wire protocol 1) recordings still read
# ---------------------------------------------------------------------------------------------

V1_SAMPLE_DTYPE = np.dtype(
    [
        ("t_us", "<u8"),
        ("pressure_pa", "<i4"),
        ("volume_nl", "<i4"),
        ("flow_nl_s", "<i4"),
        ("motor_um_s", "<i4"),
        ("viscosity_pas", "<f4"),
        ("flags", "<u2"),
        ("state", "u1"),
        ("stop_reason", "u1"),
    ]
)


def _format_1_recording(path: Path) -> np.ndarray[Any, Any]:
    """A recording as cementguard wrote it for protocol 1 (format 1.0), written by hand."""
    path.mkdir()
    s = np.zeros(50, dtype=V1_SAMPLE_DTYPE)
    s["t_us"] = 1_000_000 + np.arange(50) * 1000
    s["pressure_pa"] = 700_000
    s["volume_nl"] = np.r_[np.arange(40) * 1000, 39_000 - np.arange(10) * 3_000]  # relief: falls
    s["flow_nl_s"] = 50_000
    s["state"] = State.INJECTING
    fields = [
        {"name": n, "type": V1_SAMPLE_DTYPE.fields[n][0].str, "offset": V1_SAMPLE_DTYPE.fields[n][1]}  # type: ignore[index]
        for n in V1_SAMPLE_DTYPE.names or ()
    ]
    meta = {
        "format": "cementguard-recording",
        "format_version": "1.0",
        "telemetry": {"file": TELEMETRY_FILE, "record_size": 32, "fields": fields},
    }
    (path / META_FILE).write_text(json.dumps(meta))
    s.tofile(path / TELEMETRY_FILE)
    event = {
        "event_index": 3,
        "kind": 3,
        "state": 4,
        "prev_state": 2,
        "reason": 7,
        "source": 1,
        "alarm": 0,
        "t_s": 1.04,
        "pressure_kpa": 700.0,
        "volume_ml": 0.039,
        "detail": 0,
    }
    (path / EVENTS_FILE).write_text(json.dumps({"event": event, "annotations": {}}) + "\n")
    (path / CLOSED_FILE).write_text(json.dumps({"samples": 50, "events": 1, "counters": 0}))
    return s


def test_a_format_1_recording_reads_in_the_current_layout(tmp_path: Path) -> None:
    v1 = _format_1_recording(tmp_path / "old")
    r = Recording.open(tmp_path / "old")
    assert r.format_version == (1, 0)
    assert r.samples.dtype == SAMPLE_DTYPE
    assert r.samples["delivered_nl"].tolist() == v1["volume_nl"].tolist()  # what v1 called delivered
    assert r.samples["t_us"].tolist() == v1["t_us"].tolist()
    assert r.missing_columns == ("plunger_um", "flow_setpoint_nl_s")
    (event,) = r.events
    assert (event.record.delivered_ml, event.record.plunger_mm, event.record.flags) == (0.039, None, 0)
    assert event.record.reason == StopReason.OPERATOR_STOP


def test_a_format_1_recording_exports_with_empty_cells_for_what_it_never_had(tmp_path: Path) -> None:
    v1 = _format_1_recording(tmp_path / "old")
    export_csv(tmp_path / "old", tmp_path / "s.csv", tmp_path / "e.csv")
    with (tmp_path / "s.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["delivered_ml"]) for r in rows] == (v1["volume_nl"] / 1e6).tolist()
    assert {r["plunger_mm"] for r in rows} == {""}
    assert {r["flow_setpoint_ml_min"] for r in rows} == {""}
    with (tmp_path / "e.csv").open(newline="") as f:
        (event,) = list(csv.DictReader(f))
    assert (event["delivered_ml"], event["plunger_mm"], event["reason"]) == ("0.039", "", "OPERATOR_STOP")


def test_a_sensor_fault_stop_is_recorded_and_exported_without_a_pressure(tmp_path: Path) -> None:
    """SPEC 5.12: the STOP of a SENSOR_FAULT carries a stale pressure, marked by flags SENSOR_FAULT:
    the recording writes null and the export leaves the cell empty, never a reading."""
    fault = dataclasses.replace(
        stop_event(0, 1_000_000, StopReason.SENSOR_FAULT), flags=Flags.HOST_LINK_OK | Flags.SENSOR_FAULT
    )
    with Recorder.create(tmp_path / "run", PLAN, DEVICE) as rec:
        rec.add_samples(synthetic_samples(10))
        rec.add_event(fault)
        rec.add_event(stop_event(1, 1_001_000))
    (line, _) = (tmp_path / "run" / EVENTS_FILE).read_text().splitlines()
    assert json.loads(line)["event"]["pressure_kpa"] is None
    r = Recording.open(tmp_path / "run")
    assert [e.record.pressure_kpa for e in r.events] == [None, 4000.123]
    export_events_csv(r, tmp_path / "e.csv")
    with (tmp_path / "e.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["pressure_kpa"] for row in rows] == ["", "4000.123"]
    assert int(rows[0]["flags"]) & Flags.SENSOR_FAULT
