"""`cementguard report`: the figures of the report are those of the recording (computed here again,
independently, from the raw samples), it is self-contained, and it reads the samples in bounded chunks."""

from __future__ import annotations

import base64
import itertools
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from firmware_sim.virtual_rig import VirtualRig
from host.cli import main as cli_main
from host.recording import Recording
from host.report import summarize, write_report
from protocol.enums import Flags, State, StopReason
from tests.host.test_export_stream import _record
from tests.host.test_recording import record_rig_run


@pytest.fixture(scope="module")
def rig_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, VirtualRig]:
    """A virtual-rig run: two increments (INCREMENT_DONE) then an occlusion (PRESSURE_RISE)."""
    path = tmp_path_factory.mktemp("rig") / "run"
    rig = record_rig_run(path)
    return Recording.open(path), rig


def _independent(rec: Recording) -> dict[str, object]:
    """The summary's figures straight from every sample, by plain loops where it matters."""
    s = rec.samples
    valid = (s["flags"] & int(Flags.SENSOR_FAULT)) == 0
    injecting = s["state"] == State.INJECTING
    pressure = s["pressure_pa"].astype(float)
    increments = []
    i = 0
    for is_inj, group in itertools.groupby(range(len(s)), key=lambda k: bool(injecting[k])):
        idx = list(group)
        if is_inj:
            a, b = idx[0], idx[-1]
            before = int(s["delivered_nl"][a - 1]) if a > 0 else int(s["delivered_nl"][a])
            increments.append(
                ((int(s["t_us"][b]) - int(s["t_us"][a])) / 1e6, (int(s["delivered_nl"][b]) - before) / 1e6)
            )
        i += len(idx)
    after = []
    for e in rec.stop_events():
        t_stop = round(e.record.t_s * 1e6)
        k = int(np.searchsorted(s["t_us"], t_stop))
        while k < len(s) and injecting[k]:
            k += 1
        last = None
        while k < len(s) and not injecting[k]:
            last = int(s["delivered_nl"][k])
            k += 1
        after.append(None if last is None else (last - round(e.record.delivered_ml * 1e6)) / 1e6)
    return {
        "delivered_ml": int(s["delivered_nl"].max()) / 1e6,
        "peak_pressure_kpa": pressure[valid].max() / 1e3,
        "mean_pressure_kpa": pressure[valid & injecting].mean() / 1e3,
        "increments": increments,
        "after_flow_ml": after,
        "reasons": [rec.enum_name("StopReason", int(e.record.reason)) for e in rec.stop_events()],
    }


@pytest.mark.parametrize("chunk", [997, 65_536])
def test_the_summary_is_the_recordings_figures(
    rig_recording: tuple[Recording, VirtualRig],
    chunk: int,
) -> None:
    rec, _ = rig_recording
    expected = _independent(rec)
    summary = summarize(rec, chunk_samples=chunk)
    assert summary.samples == len(rec.samples)
    assert summary.delivered_ml == expected["delivered_ml"]
    assert summary.peak_pressure_kpa == pytest.approx(expected["peak_pressure_kpa"], abs=1e-9)
    assert summary.mean_pressure_kpa == pytest.approx(expected["mean_pressure_kpa"], rel=1e-9)
    got = [(round(i.duration_s, 6), round(i.volume_ml, 6)) for i in summary.increments]
    assert got == [(round(d, 6), round(v, 6)) for d, v in expected["increments"]]  # type: ignore[attr-defined]
    assert len(summary.increments) == 3, "two INCREMENT_DONE and the stopped third"
    assert [s.reason for s in summary.stops] == expected["reasons"]
    assert [s.reason for s in summary.stops] == ["INCREMENT_DONE", "INCREMENT_DONE", "PRESSURE_RISE"]
    assert [s.latched for s in summary.stops] == [False, False, True]
    assert [s.after_flow_ml for s in summary.stops] == expected["after_flow_ml"]
    assert all(a is not None and a >= 0 for a in expected["after_flow_ml"])  # type: ignore[attr-defined]
    assert [s.latency_ms for s in summary.stops] == [0.0, 0.0, 0.0]
    # the plot points keep the extremes: the peak is drawn
    assert np.nanmax(summary.series.pressure_kpa) == pytest.approx(expected["peak_pressure_kpa"])
    assert summary.series.delivered_ml[-1] == expected["delivered_ml"]


def test_the_report_is_self_contained_html_and_a_pdf_with_the_figures(
    rig_recording: tuple[Recording, VirtualRig],
    tmp_path: Path,
) -> None:
    rec, _ = rig_recording
    written = write_report(rec, tmp_path)
    text = written.html.read_text()
    expected = _independent(rec)
    assert f"{expected['delivered_ml']:.6f} mL" in text
    assert f"{expected['peak_pressure_kpa']:.3f} kPa" in text
    assert f"{expected['mean_pressure_kpa']:.3f} kPa" in text
    assert text.count("<td>PRESSURE_RISE</td>") == 1
    assert text.count("<td>INCREMENT_DONE</td>") == 2
    assert rec.device is not None
    assert f"<td>{rec.device.serial}</td>" in text, "the device"
    assert f"<td>{rec.device.firmware_version}</td>" in text
    assert "L2 left" in text, "the plan"
    sources = re.findall(r"""(?:src|href)=["']([^"']+)""", text)
    assert sources, "the plots are embedded"
    assert all(src.startswith("data:image/png;base64,") for src in sources), sources
    png = base64.b64decode(sources[0].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = written.pdf.read_bytes()
    assert pdf[:5] == b"%PDF-"
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 2


def test_the_report_reads_the_samples_in_bounded_memory(tmp_path: Path) -> None:
    """200,000 samples summarised 4,000 at a time: the peak Python allocation stays a small fraction
    of the recording (8 MB), whatever its length."""
    _record(tmp_path / "r", 200_000)
    rec = Recording.open(tmp_path / "r")
    tracemalloc.start()
    try:
        summary = summarize(rec, chunk_samples=4_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.samples == 200_000
    assert summary.stops[0].reason == StopReason.OVERPRESSURE.name
    assert len(summary.series.t_s) < 15_000
    assert peak < 3_000_000, f"peak {peak / 1e6:.1f} MB"


def test_cli_report(
    rig_recording: tuple[Recording, VirtualRig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec, _ = rig_recording
    assert cli_main(["report", str(rec.path), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'r' / 'report.html'}" in out
    assert (tmp_path / "r" / "report.pdf").is_file()
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "not a recording" in capsys.readouterr().err
