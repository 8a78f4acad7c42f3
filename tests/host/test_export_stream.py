"""Exports, `cementguard.load` and the report read a recording in bounded chunks: memory does not grow
with its length, and what they write equals the samples (computed here from the raw records)."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import cementguard
from host.analysis import load
from host.cli import main as cli_main
from host.export import SAMPLE_COLUMNS, export_csv, export_parquet
from host.recording import Recorder, Recording
from protocol.enums import Flags, State, StopReason
from protocol.telemetry import SAMPLE_DTYPE
from tests.host.test_recording import DEVICE, PLAN, stop_event, synthetic_samples


def _record(path: Path, n: int, *, batch: int = 50_000) -> np.ndarray:
    """A recording of `n` synthetic samples written by the real Recorder; returns the samples."""
    parts = []
    with Recorder.create(path, PLAN, DEVICE, background=False) as rec:
        for start in range(0, n, batch):
            s = synthetic_samples(min(batch, n - start), t0_us=start * 1000)
            s["delivered_nl"] += start * 50
            parts.append(s)
            rec.add_samples(s)
        rec.add_event(stop_event(0, n * 1000), source_latency_ms=2.5)
    return np.concatenate(parts)


def test_iter_samples_respects_the_chunk_size_and_reads_every_record(tmp_path: Path) -> None:
    raw = _record(tmp_path / "r", 10_007)
    rec = Recording.open(tmp_path / "r")
    assert rec.sample_count == 10_007
    chunks = list(rec.iter_samples(1_000))
    assert [len(c) for c in chunks] == [1_000] * 10 + [7]
    assert np.concatenate(chunks).tobytes() == raw.tobytes()
    with pytest.raises(ValueError, match="chunk_samples"):
        next(rec.iter_samples(0))


def test_csv_export_memory_does_not_grow_with_the_recording(tmp_path: Path) -> None:
    """200,000 samples (8 MB on disk, ~100 MB as Python rows) exported 4,000 at a time: the peak
    Python allocation stays under 3 MB, a small fraction of the recording itself."""
    n = 200_000
    _record(tmp_path / "r", n)
    rec = Recording.open(tmp_path / "r")
    tracemalloc.start()
    try:
        rows = export_csv(rec, tmp_path / "s.csv", chunk_samples=4_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == n
    assert peak < 3_000_000, f"peak {peak / 1e6:.1f} MB for an {n * SAMPLE_DTYPE.itemsize / 1e6:.0f} MB file"


def test_load_needs_the_frame_and_one_chunk_not_a_copy_of_the_recording(tmp_path: Path) -> None:
    n = 200_000
    _record(tmp_path / "r", n)
    cementguard.load(tmp_path / "r", columns=["t_s"])  # pandas' own first-use imports, not measured
    tracemalloc.start()
    try:
        samples, _, _ = load(tmp_path / "r", columns=["t_s", "pressure_kpa"], chunk_samples=10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame_bytes = 2 * 8 * n  # two float64 columns
    assert len(samples) == n
    assert peak < frame_bytes + 2_000_000, f"peak {peak / 1e6:.1f} MB, frame {frame_bytes / 1e6:.1f} MB"


def _faulted(path: Path) -> np.ndarray:
    raw = _record(path, 9_000, batch=3_000)
    return raw


def _expected(raw: np.ndarray) -> dict[str, np.ndarray]:
    """The edge values, computed independently from the raw records."""
    fault = (raw["flags"] & int(Flags.SENSOR_FAULT)) != 0
    visc = raw["viscosity_pas"].astype(np.float64)
    return {
        "t_s": raw["t_us"] / 1e6,
        "pressure_kpa": np.where(fault, np.nan, raw["pressure_pa"] / 1000),
        "delivered_ml": raw["delivered_nl"] / 1e6,
        "plunger_mm": raw["plunger_um"] / 1000,
        "flow_ml_min": raw["flow_nl_s"] * 60 / 1e6,
        "flow_setpoint_ml_min": raw["flow_setpoint_nl_s"] * 60 / 1e6,
        "motor_mm_s": raw["motor_um_s"] / 1000,
        "viscosity_pa_s": visc,
    }


@pytest.fixture
def faulted(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """9,000 samples with a sensor fault in the middle and a stop at the end."""
    raw = synthetic_samples(9_000)
    raw["flags"][4_000:4_100] |= int(Flags.SENSOR_FAULT)
    raw["state"][-10:] = State.STOPPED
    raw["stop_reason"][-10:] = StopReason.OVERPRESSURE
    with Recorder.create(tmp_path / "r", PLAN, DEVICE, background=False, extra={"operator": "ab"}) as rec:
        rec.add_samples(raw)
        rec.add_event(stop_event(0, 9_000_000), source_latency_ms=2.5)
    return tmp_path / "r", raw


def test_parquet_holds_the_samples_in_edge_units_with_nulls_for_invalid_values(
    faulted: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, raw = faulted
    assert export_parquet(path, tmp_path / "s.parquet", chunk_samples=2_000) == len(raw)
    f = pq.ParquetFile(tmp_path / "s.parquet")
    assert f.metadata.num_row_groups == 5  # one per chunk: written as streamed
    table = f.read()
    assert table.column_names == list(SAMPLE_COLUMNS)
    for name, expected in _expected(raw).items():
        got = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, equal_nan=True, err_msg=name)
    assert table.column("pressure_kpa").null_count == 100
    assert table.column("flags").to_pylist() == raw["flags"].tolist()
    states = table.column("state").to_pylist()
    assert (states[0], states[-1]) == ("INJECTING", "STOPPED")
    assert table.column("stop_reason").to_pylist()[-1] == "OVERPRESSURE"
    assert b"cementguard.meta" in table.schema.metadata


def test_csv_with_a_metadata_header_reads_back_equal_to_the_samples(
    faulted: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, raw = faulted
    export_csv(path, tmp_path / "s.csv", metadata_header=True, chunk_samples=2_000)
    text = (tmp_path / "s.csv").read_text()
    header = [line for line in text.splitlines()[:40] if line.startswith("#")]
    assert any("device: serial BENCH-7" in line for line in header)
    assert any(line.startswith("# plan: ") and "L2 left" in line for line in header)
    frame = pd.read_csv(tmp_path / "s.csv", comment="#")
    assert list(frame.columns) == list(SAMPLE_COLUMNS)
    for name, expected in _expected(raw).items():
        np.testing.assert_allclose(frame[name].to_numpy(np.float64), expected, atol=1e-9, equal_nan=True)
    with (tmp_path / "plain.csv").open("w") as f:
        f.write("")
    export_csv(path, tmp_path / "plain.csv")
    assert next(csv.reader((tmp_path / "plain.csv").open())) == list(SAMPLE_COLUMNS)


def test_load_returns_samples_with_units_in_the_names_and_the_events_beside_them(
    faulted: tuple[Path, np.ndarray],
) -> None:
    path, raw = faulted
    samples, events, meta = cementguard.load(path)
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    for name, expected in _expected(raw).items():
        assert samples[name].dtype == np.float64
        np.testing.assert_allclose(samples[name].to_numpy(), expected, atol=1e-9, equal_nan=True)
    assert samples["state"].iloc[0] == "INJECTING"
    assert samples["stop_reason"].iloc[-1] == "OVERPRESSURE"
    assert samples["flags"].tolist() == raw["flags"].tolist()
    assert events["kind"].tolist() == ["STOP"]
    assert events["reason"].tolist() == ["OVERPRESSURE"]
    assert events["pressure_kpa"].tolist() == [4000.123]
    assert events["source_latency_ms"].tolist() == [2.5]
    assert meta["plan"] == PLAN
    assert meta["extra"] == {"operator": "ab"}
    with pytest.raises(ValueError, match="pressure_pa"):
        cementguard.load(path, columns=["pressure_pa"])


def test_cli_exports_parquet_and_refuses_nothing_to_do(
    faulted: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, raw = faulted
    out = tmp_path / "s.parquet"
    assert (
        cli_main(["export", str(path), "--parquet", str(out), "--csv", str(tmp_path / "s.csv"), "--metadata"])
        == 0
    )
    assert f"wrote {len(raw)} samples to {out}" in capsys.readouterr().out
    assert pq.read_metadata(out).num_rows == len(raw)
    assert (tmp_path / "s.csv").read_text().startswith("# recording: r\n")
    assert cli_main(["export", str(path)]) == 2
    assert "--csv FILE and/or --parquet FILE" in capsys.readouterr().err
