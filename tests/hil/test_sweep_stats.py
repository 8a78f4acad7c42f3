"""The sweep's bookkeeping: Wilson intervals, size bins, percentiles, cells, seeds, the kind cycle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil._sweep_stats import (
    bin_index,
    bin_label,
    cell_stats,
    clopper_pearson_interval,
    clopper_pearson_upper,
    derive_seed,
    percentile,
    weighted_cycle,
    wilson_interval,
)


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_the_wilson_interval_holds_the_observed_rate_inside_0_1(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert high - low > 0.0


def test_wilson_interval_known_values() -> None:
    # 0 false stops in 500 runs still bounds the rate at z^2 / (n + z^2) = 0.76 %.
    low, high = wilson_interval(0, 500)
    assert low == 0.0
    assert high == pytest.approx(1.959964**2 / (500 + 1.959964**2), rel=1e-6)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


@given(st.integers(0, 50), st.integers(1, 20))
def test_more_trials_at_the_same_rate_narrow_the_interval(k: int, scale: int) -> None:
    n = 50
    low1, high1 = wilson_interval(k, n)
    low2, high2 = wilson_interval(k * (scale + 1), n * (scale + 1))
    assert high2 - low2 < high1 - low1


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_wilson_interval_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(k, n)


edges_strategy = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=2, max_size=10, unique=True
).map(sorted)


@given(edges_strategy, st.floats(-2e6, 2e6, allow_nan=False, allow_infinity=False))
def test_bin_index_finds_the_half_open_bin_holding_the_value(edges: list[float], value: float) -> None:
    i = bin_index(value, edges)
    if value < edges[0] or value > edges[-1]:
        assert i is None
        return
    assert i is not None
    assert edges[i] <= value
    assert value < edges[i + 1] or (i == len(edges) - 2 and value == edges[-1])


def test_bin_index_edges_nan_and_bad_edges() -> None:
    edges = (1.0, 2.0, 5.0)
    assert bin_index(2.0, edges) == 1  # an inner edge opens the upper bin
    assert bin_index(5.0, edges) == 1  # the last bin is closed
    assert bin_index(1.0, edges) == 0
    assert bin_index(0.999, edges) is None
    assert bin_index(math.nan, edges) is None
    with pytest.raises(ValueError, match="strictly increasing"):
        bin_index(1.0, (1.0, 1.0))
    with pytest.raises(ValueError, match="at least two"):
        bin_index(1.0, (1.0,))
    assert bin_label(edges, 0) == "[1, 2)"
    assert bin_label(edges, 1) == "[2, 5]"


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40),
    st.floats(0.0, 100.0),
)
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"outside 0\.\.100"):
        percentile([1.0], 101)


def test_cell_stats_counts_rates_and_latencies_of_detected_runs() -> None:
    s = cell_stats([True, True, False, False], [True, True, True, False], [10.0, 30.0])
    assert (s.runs, s.detected, s.stopped) == (4, 2, 3)
    assert s.rate == 0.5
    assert s.stop_rate == 0.75
    assert (s.rate_low, s.rate_high) == wilson_interval(2, 4)
    assert s.latency_p50_ms == 20.0
    assert s.latency_p90_ms == pytest.approx(28.0)
    assert s.latency_max_ms == 30.0
    empty = cell_stats([], [], [])
    assert empty.runs == 0
    assert math.isnan(empty.rate)
    assert math.isnan(empty.latency_max_ms)
    with pytest.raises(ValueError, match="detection flags"):
        cell_stats([True], [], [])


def test_a_runs_seed_depends_on_the_master_seed_and_index_only() -> None:
    assert derive_seed(1, 7) == derive_seed(1, 7)
    assert derive_seed(1, 7) != derive_seed(1, 8)
    assert derive_seed(1, 7) != derive_seed(2, 7)
    with pytest.raises(ValueError, match="must be >= 0"):
        derive_seed(-1, 0)


@given(st.lists(st.integers(1, 9), min_size=1, max_size=8))
def test_weighted_cycle_holds_each_kind_weight_times_spread_evenly(weights: list[int]) -> None:
    named = [(f"k{i}", w) for i, w in enumerate(weights)]
    cycle = weighted_cycle(named)
    total = sum(weights)
    assert len(cycle) == total
    for name, w in named:
        assert cycle.count(name) == w
        seen = 0
        for j, item in enumerate(cycle, start=1):
            seen += item == name
            # Within ~1 run of its share at every prefix (smooth weighted round robin); a cycle in
            # blocks would lag by up to w (1 - w / total) runs.
            assert abs(seen - j * w / total) < 1.5


def test_weighted_cycle_rejects_non_positive_weights() -> None:
    with pytest.raises(ValueError, match="positive"):
        weighted_cycle([("a", 1), ("b", 0)])


def test_zero_events_in_n_runs_bound_the_rate_at_about_three_over_n() -> None:
    # the "rule of three": 1 - 0.05^(1/N) ~ 2.996/N
    for n in (300, 30_000, 300_000):
        assert clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-12)
        assert 2.98 / n < clopper_pearson_upper(0, n) < 3.0 / n
    # a rate below 1 in 100,000 with 95 % confidence takes ~300,000 clean runs (issue 17)
    assert clopper_pearson_upper(0, 299_572) < 1e-5 < clopper_pearson_upper(0, 299_000)
    assert clopper_pearson_upper(0, 0) == 1.0
    assert clopper_pearson_upper(5, 5) == 1.0


def test_clopper_pearson_known_values() -> None:
    # one-sided 95 %: 1 in 10 -> 0.3942, 2 in 100 -> 0.0616 (exact beta quantiles)
    assert clopper_pearson_upper(1, 10) == pytest.approx(0.39416, abs=1e-5)
    assert clopper_pearson_upper(2, 100) == pytest.approx(0.06161, abs=1e-5)
    # tighter than the two-sided Wilson upper end at 0 events (3/N against 3.84/N)
    assert clopper_pearson_upper(0, 1000) < wilson_interval(0, 1000)[1]


@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_the_bound_is_the_rate_at_which_k_or_fewer_events_have_5_percent_probability(
    kn: tuple[int, int],
) -> None:
    from scipy.stats import binom

    k, n = kn
    p = clopper_pearson_upper(k, n)
    assert k / n < p <= 1.0
    assert float(binom.cdf(k, n, p)) == pytest.approx(0.05, abs=1e-9)


@pytest.mark.parametrize(("k", "n", "conf"), [(-1, 5, 0.95), (6, 5, 0.95), (0, -1, 0.95), (0, 5, 1.0)])
def test_clopper_pearson_rejects_impossible_arguments(k: int, n: int, conf: float) -> None:
    with pytest.raises(ValueError, match=r"events|confidence"):
        clopper_pearson_upper(k, n, conf)


def test_clopper_pearson_interval_known_values() -> None:
    # two-sided 95 %: 18 of 18 -> [0.8147, 1]; 0 of 18 -> [0, 0.1853]; 5 of 10 -> [0.1871, 0.8129]
    assert clopper_pearson_interval(18, 18) == pytest.approx((0.81470, 1.0), abs=1e-5)
    assert clopper_pearson_interval(0, 18) == pytest.approx((0.0, 0.18530), abs=1e-5)
    assert clopper_pearson_interval(5, 10) == pytest.approx((0.18709, 0.81291), abs=1e-5)
    assert clopper_pearson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes = 3"):
        clopper_pearson_interval(3, 2)


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_each_end_of_the_exact_interval_leaves_2_5_percent_in_its_tail(kn: tuple[int, int]) -> None:
    from scipy.stats import binom

    k, n = kn
    low, high = clopper_pearson_interval(k, n)
    assert low <= k / n <= high
    if k < n:
        assert float(binom.cdf(k, n, high)) == pytest.approx(0.025, abs=1e-9)
    if k > 0:
        assert float(binom.sf(k - 1, n, low)) == pytest.approx(0.025, abs=1e-9)
