"""The plot data path: ring buffers that wrap, downsampling that keeps every extreme, and plot lines
built from plotext's cells that are the same as through its ANSI text."""

from __future__ import annotations

import numpy as np
import pytest

from host.dashboard.history import History
from host.dashboard.widgets.plots import PlotSpec, figure, strips_from_ansi, strips_from_matrix
from protocol.telemetry import SAMPLE_DTYPE


def samples(first: int, n: int) -> np.ndarray:
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    idx = np.arange(first, first + n)
    s["t_us"] = idx * 1000
    s["pressure_pa"] = 100_000 + (idx % 7) * 1000
    s["delivered_nl"] = idx * 10
    return s


def test_ring_buffer_keeps_the_newest_samples_in_order() -> None:
    h = History(capacity=1000)
    for first in range(0, 2500, 300):  # batches that straddle the wrap point
        h.append(samples(first, 300))
    assert len(h) == 1000
    t = h.times()
    np.testing.assert_array_equal(np.diff(t) > 0, True)
    assert t[-1] == pytest.approx(2.699)  # newest sample, s since the first ever (t0 = 0)
    assert t[0] == pytest.approx(1.700)
    np.testing.assert_allclose(h.signal("delivered_ml"), np.arange(1700, 2700) * 10 / 1e6, rtol=1e-6)


@pytest.mark.parametrize("n", [500, 50_000, 600_000])
def test_downsampling_keeps_every_spike_and_the_time_order(n: int) -> None:
    h = History(capacity=600_000)
    s = samples(0, n)
    spike_up, spike_down = n // 3, 2 * n // 3
    s["pressure_pa"][spike_up] = 9_000_000
    s["pressure_pa"][spike_down] = -50_000
    h.append(s)
    series = h.downsampled("pressure_kpa", columns=120)
    assert len(series.x) <= 240
    assert series.y.max() == pytest.approx(9000.0)
    assert series.y.min() == pytest.approx(-50.0)
    assert np.all(np.diff(series.x) >= 0)
    assert series.x[np.argmax(series.y)] == pytest.approx(spike_up / 1000.0)
    assert series.x[np.argmin(series.y)] == pytest.approx(spike_down / 1000.0)


def cells(strips: list) -> list[list[tuple[str, object]]]:  # type: ignore[type-arg]
    out = []
    for strip in strips:
        row = []
        for segment in strip:
            row.extend((ch, segment.style) for ch in segment.text)
        out.append(row)
    return out


def test_plot_lines_from_the_matrix_match_the_ansi_text() -> None:
    x = np.linspace(0, 60, 200)
    spec = PlotSpec(
        width=100,
        height=20,
        theme="dark",
        title="syringe pressure, kPa",
        color="cyan",
        x=x.tolist(),
        y=(1500 * (1 - np.exp(-x / 10))).tolist(),
        hlines=[(2500.0, "orange"), (4000.0, "red")],
        vlines=[30.0],
        xlim=(0.0, 60.0),
        ylim=(0.0, 4320.0),
        yticks=[0.0, 2500.0, 4000.0],
    )
    from_matrix = strips_from_matrix(figure(spec), spec.width, spec.height)
    from_ansi = strips_from_ansi(figure(spec), spec.width, spec.height)
    assert len(from_matrix) == spec.height
    assert all(s.cell_length == spec.width for s in from_matrix)
    assert cells(from_matrix) == cells(from_ansi)
    text = "\n".join(s.text for s in from_matrix)
    assert "2500" in text
    assert "4000" in text
    assert "syringe pressure" in text
