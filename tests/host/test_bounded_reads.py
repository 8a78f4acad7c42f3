"""Plots, HIL figures, `Recording.t_s` / `duration_s` and `cementguard.load` are bounded in memory
(docs/performance.md, "Exports that scale"): the samples are streamed (or mapped from the file), and
`load` refuses more than `max_rows` rows unless told, before it allocates anything."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cementguard
from host.analysis import LoadTooLargeError, load
from host.plot import make_figure
from host.recording import Recording
from tests.host.test_export_stream import _record

N = 300_000
"""Five minutes at 1 kHz: a 12 MB telemetry file."""


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("bounded") / "r"
    return path, _record(path, N)


def _peak(work: Callable[[], Any]) -> tuple[Any, int]:
    work()  # first-use imports and caches (matplotlib's fonts) are not what is measured
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_a_plot_streams_the_samples(long_recording: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    """Its memory does not grow with the recording: four times the samples, about the same peak."""
    path, raw = long_recording
    _record(tmp_path / "quarter", N // 4)
    _, small = _peak(lambda: make_figure(Recording.open(tmp_path / "quarter"), max_points=4000))
    fig, peak = _peak(lambda: make_figure(Recording.open(path), max_points=4000))
    assert peak < 1.3 * small + 1_000_000, f"peak {peak / 1e6:.1f} MB, {small / 1e6:.1f} MB at a quarter"
    (pressure,) = [line for line in fig.axes[0].get_lines() if line.get_gid() == "pressure"]
    y = np.asarray(pressure.get_ydata())
    assert len(y) <= 4000
    assert np.nanmax(y) == pytest.approx(float(raw["pressure_pa"].max()) / 1e3)


def test_duration_and_times_do_not_read_the_samples_into_memory(
    long_recording: tuple[Path, np.ndarray],
) -> None:
    path, raw = long_recording
    duration, peak = _peak(lambda: Recording.open(path).duration_s)
    assert duration == pytest.approx((int(raw["t_us"][-1]) - int(raw["t_us"][0])) / 1e6)
    assert peak < 2_000_000, f"duration_s allocated {peak / 1e6:.1f} MB (opening included)"
    t_s, peak = _peak(lambda: Recording.open(path).t_s)
    np.testing.assert_array_equal(t_s, raw["t_us"] / 1e6)
    # its own 8 bytes a sample, one chunk being read (65,536 x 40 bytes) and the opening: not the file
    assert peak < 8 * N + 6_000_000, f"t_s allocated {peak / 1e6:.1f} MB"


def test_samples_are_mapped_from_the_file_not_copied(long_recording: tuple[Path, np.ndarray]) -> None:
    path, raw = long_recording
    samples, peak = _peak(lambda: Recording.open(path).samples)
    assert isinstance(samples, np.memmap)
    assert samples.tobytes() == raw.tobytes()
    assert peak < 2_000_000, f"samples allocated {peak / 1e6:.1f} MB (opening included)"


def test_load_refuses_more_than_max_rows_before_allocating_and_says_what_to_do(
    long_recording: tuple[Path, np.ndarray],
) -> None:
    path, _raw = long_recording
    with pytest.raises(LoadTooLargeError) as refused:
        load(path, max_rows=100_000)
    text = str(refused.value)
    assert "300,000 samples selected" in text
    assert "max_rows=100,000" in text
    assert "start_s=" in text
    assert "columns=" in text
    assert "max_rows=None" in text


def test_load_selects_a_time_range_and_columns(long_recording: tuple[Path, np.ndarray]) -> None:
    path, raw = long_recording
    t = raw["t_us"] / 1e6
    samples, events, _meta = cementguard.load(path, columns=["t_s", "pressure_kpa"], start_s=10.0, end_s=20.0)
    expected = (t >= 10.0) & (t <= 20.0)
    assert list(samples.columns) == ["t_s", "pressure_kpa"]
    np.testing.assert_array_equal(samples["t_s"].to_numpy(), t[expected])
    assert len(events) == 1, "the events are all kept"
    everything, _, _ = cementguard.load(path, max_rows=None, columns=["t_s"])
    assert len(everything) == N
    with pytest.raises(ValueError, match="start_s"):
        load(path, start_s=float("nan"))
