"""Every run over a noisy line ends, with the exit code and message of what the device did.

`run` drives `cementguard sim --pty --time-scale 5` through the lossy relay (tests/support): bits
flipped, bytes dropped, duplicated and inserted at 1e-5 to 1e-2 per byte in both directions. Whatever
the noise, the run ends (completed, stopped or link lost: never hung), its exit code and message
agree with each other and with the device's own event stream, the recording is complete, and the
plunger never moves forward outside INJECTING. One seed per level keeps the cost at a few seconds;
`bench/lossy_link.py` runs many (docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from host.link_quality import WARN_FRACTION, LinkQuality
from tests.host.test_run_cli import FAST_PLAN
from tests.support.lossy_link import Noise, run_through_relay


@pytest.mark.parametrize(("rate", "seed"), [(1e-5, 1), (1e-4, 1), (1e-3, 1), (3e-3, 1), (1e-2, 2), (1e-2, 3)])
async def test_a_run_over_a_noisy_line_ends_with_the_right_code_and_message(
    tmp_path: Path, rate: float, seed: int
) -> None:
    plan = tmp_path / "fast.toml"
    plan.write_text(FAST_PLAN)
    run = await run_through_relay(str(plan), str(tmp_path / "rec"), rate=rate, seed=seed, bound_s=45.0)
    assert run.problems() == [], run.text
    assert run.code in (0, 3, 4)
    # link quality in the run summary: a warning when poor (1e-3 per byte damages ~half the telemetry)
    if rate >= 1e-3 and run.code == 0:
        assert "warning: poor link:" in run.text
    if run.code == 0:  # every run that got going ends with the link's summary line, good or poor
        assert "link: " in run.text or "warning: poor link:" in run.text


def test_uniform_noise_splits_the_rate_between_the_four_faults() -> None:
    noise = Noise.uniform(1e-3)
    assert noise.flip + noise.drop + noise.duplicate + noise.insert == pytest.approx(1e-3)


def test_link_quality_counts_since_the_start_and_warns_above_the_threshold() -> None:
    start = {"frames_rx": 1000, "crc_errors": 50, "lost_frames": 5, "lost_samples": 100}
    now = {"frames_rx": 2000, "crc_errors": 55, "cobs_errors": 2, "lost_frames": 5, "lost_samples": 100}
    good = LinkQuality.of(now, start, samples_rx=20_000)
    assert (good.frames_rx, good.bad_frames, good.lost_frames, good.lost_samples) == (1000, 7, 0, 0)
    assert not good.poor
    assert good.warning() is None
    assert good.line() == "7 damaged frames (0.7 %), 0 lost frames (0.0 %), 0 lost samples (0.0 %)"
    lossy = LinkQuality.of({**now, "lost_samples": 100 + 400}, start, samples_rx=20_000)
    assert lossy.lost_sample_fraction is not None
    assert lossy.lost_sample_fraction > WARN_FRACTION
    assert lossy.poor
    warning = lossy.warning()
    assert warning is not None
    assert "400 lost samples (2.0 %)" in warning
    assert lossy.short() == "POOR: 0.7 % damaged, 2.0 % lost"


def _batch(states: list[int], plunger_um: list[int], t0_us: int = 0) -> bytes:
    import numpy as np

    from protocol import TelemetryBatch, encode_frame
    from protocol.telemetry import SAMPLE_DTYPE

    samples = np.zeros(len(states), dtype=SAMPLE_DTYPE)
    samples["state"] = states
    samples["plunger_um"] = plunger_um
    samples["t_us"] = [t0_us + 1000 * i for i in range(len(states))]
    return encode_frame(TelemetryBatch(first_index=0, period_us=1000, samples=samples), 0)


def test_the_truth_flags_forward_motion_outside_injecting_after_the_brake() -> None:
    """The harness's own check can fail: a plunger creeping forward while PAUSED, 0.2 s after the stop."""
    from protocol import State
    from tests.support.lossy_link import Truth

    moving, paused = int(State.INJECTING), int(State.PAUSED)
    truth = Truth()
    truth.feed(_batch([moving] * 10 + [paused] * 10, [1000 + i for i in range(10)] + [1010] * 10))
    for k in range(1, 16):  # 300 ms at rest, in batches of 20 samples
        truth.feed(_batch([paused] * 20, [1010] * 20, t0_us=k * 20_000))
    assert truth.violations == []  # still, after braking
    truth.feed(_batch([paused] * 20, [1010 + 50 + i for i in range(20)], t0_us=320_000))
    assert truth.violations  # 50 um forward while PAUSED
