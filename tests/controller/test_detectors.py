"""Each detector alone: it trips on its fault, and stays quiet on nominal input with realistic noise."""

from __future__ import annotations

import math
import random

import pytest

from firmware_sim.controller import ControllerConfig
from firmware_sim.controller.commands import CommandCache
from firmware_sim.controller.config import HISTORY_BLOCKS
from firmware_sim.controller.detectors import (
    AGE_EXPIRED,
    AGE_OK,
    AGE_WARNING,
    DELIVERY_INCREMENT,
    DELIVERY_VOLUME,
    SENSOR_NOISE,
    SENSOR_RANGE,
    SENSOR_STUCK,
    BlockHistory,
    Debouncer,
    DeliveryMonitor,
    OverpressureDetector,
    PressureLossDetector,
    PressureRiseDetector,
    SensorMonitor,
    StallDetector,
    TravelGuard,
    ViscosityWindowDetector,
    Watchdog,
    WorkingTimeMonitor,
    pa_per_count,
    stuck_run_samples,
)
from firmware_sim.controller.detectors import rise_detector as make_rise_detector
from firmware_sim.controller.loops import PressureThrottle, Relief, ViscosityEstimator
from firmware_sim.controller.telemetry import TelemetryBuffer
from firmware_sim.hal import REFERENCE_RIG
from protocol import Ack, MsgType, State

HW = REFERENCE_RIG
NOISE_PA = 10_000.0
BLOCK = 10
BLOCK_S = BLOCK / 1000


def adc_of(pa: float) -> int:
    return HW.adc_from_ma(HW.ma_from_pa(pa))


def sensor_monitor(stuck_longest: int = 200, noise_pa: float = NOISE_PA) -> SensorMonitor:
    """The controller's monitor at its defaults, the specified noise `noise_pa` as the prior."""
    nominal = NOISE_PA * 2 / math.sqrt(math.pi)
    return SensorMonitor(
        HW, 3, stuck_longest, 10 * nominal, 4 * nominal, 1 / 64, 20, 100, noise_pa / pa_per_count(HW)
    )


# -- OVERPRESSURE -----------------------------------------------------------------------------
def test_overpressure_trips_after_n_samples_at_the_limit() -> None:
    det = OverpressureDetector(3)
    assert [det.update(p, 4e6) for p in (4e6, 4.1e6, 4.2e6)] == [False, False, True]


def test_overpressure_needs_consecutive_samples() -> None:
    det = OverpressureDetector(3)
    results = [det.update(p, 4e6) for p in (4.1e6, 4.1e6, 3.9e6, 4.1e6, 4.1e6)]
    assert results == [False, False, False, False, False]


def test_overpressure_quiet_on_filtered_noise_just_below_the_limit() -> None:
    rng = random.Random(1)
    det = OverpressureDetector(3)
    pf = 3.97e6
    for _ in range(100_000):
        pf += 0.125 * (3.97e6 + rng.gauss(0, NOISE_PA) - pf)  # the controller's IIR
        assert not det.update(pf, 4e6)


# -- PRESSURE_RISE ----------------------------------------------------------------------------
def first_order_samples(
    rng: random.Random, seconds: float, p0: float, p_eq: float, tau_s: float, noise: float = NOISE_PA
) -> list[float]:
    """1 kHz samples of a first-order pressure response with white sensor noise."""
    out = []
    p = p0
    for _ in range(round(seconds * 1000)):
        p += (p_eq - p) * 0.001 / tau_s
        out.append(p + rng.gauss(0, noise))
    return out


def feed_rise(det: PressureRiseDetector, samples: list[float], flow_rising_blocks: int = 0) -> int | None:
    """Run samples through the detector as the controller does (the slope test every sample, arming
    on the 100 ms slope of block means every block); index of the tripping sample or None."""
    hist = BlockHistory(HISTORY_BLOCKS)
    w = 10
    sigma = NOISE_PA / pa_per_count(HW)
    total = 0.0
    for i, p in enumerate(samples):
        det.test.push(adc_of(p))
        total += p
        if i % BLOCK == BLOCK - 1:
            hist.push(total / BLOCK, 0, 1.0)
            total = 0.0
            if hist.full(w):
                slope = (hist.pressure[hist.pos] - hist.pressure[hist.ago(w)]) / (w * BLOCK_S)
                det.update(slope, hist.pressure[hist.pos], i // BLOCK < flow_rising_blocks, sigma)
        if det.tripped():
            return i
    return None


def rise_detector() -> PressureRiseDetector:
    return make_rise_detector(ControllerConfig(rise_arm_pa_s=100_000.0, rise_arm_blocks=5), HW)


@pytest.mark.parametrize("tau_s", [0.05, 0.3, 1.5])
def test_rise_quiet_on_start_up_ramp_and_plateau(tau_s: float) -> None:
    rng = random.Random(2)
    samples = first_order_samples(rng, 3 * tau_s + 20.0, 0.0, 1.7e6, tau_s)
    det = rise_detector()
    assert feed_rise(det, samples, flow_rising_blocks=10) is None
    assert det.armed, "armed once the ramp has settled"


@pytest.mark.parametrize("tau_s", [0.1, 0.3, 1.5])
def test_rise_trips_fast_on_occlusion_after_plateau(tau_s: float) -> None:
    rng = random.Random(3)
    plateau = first_order_samples(rng, 5 * tau_s + 1.0, 0.0, 1.7e6, tau_s)
    rate = 1.7e6 / tau_s  # Q / C: the whole flow now fills the compliance
    occluded = [plateau[-1] + rate * 0.001 * (k + 1) + rng.gauss(0, NOISE_PA) for k in range(1000)]
    det = rise_detector()
    trip = feed_rise(det, plateau + occluded, flow_rising_blocks=10)
    assert trip is not None
    detection_s = (trip - len(plateau) + 1) / 1000
    plain_s = (4e6 - 1.7e6) / rate  # the same run reaching a 4 MPa hard limit
    assert detection_s <= 0.3 * plain_s, (detection_s, plain_s)


def test_rise_quiet_on_slow_viscosity_creep() -> None:
    """Setting cement: pressure doubling every 20 s from 1.5 MPa, up to the 200 kPa/s the test
    tolerates (5.6 MPa: 194 kPa/s); beyond it OVERPRESSURE is the guard, not PRESSURE_RISE."""
    rng = random.Random(4)
    det = rise_detector()
    samples = first_order_samples(rng, 2.0, 0.0, 1.5e6, 0.3)
    p = 1.5e6
    while p < 5.6e6:
        p *= math.exp(math.log(2) / 20 * 0.001)
        samples.append(p + rng.gauss(0, NOISE_PA))
    assert feed_rise(det, samples, flow_rising_blocks=10) is None


def test_rise_stays_disarmed_through_a_flat_stretch_before_the_ramp() -> None:
    """After a relief back-off the plunger first takes up the gap: pressure flat near 0, then the
    start-up ramp at occlusion rate. A detector armed on the flat part would trip on the ramp."""
    rng = random.Random(5)
    flat = first_order_samples(rng, 1.0, 0.0, 0.0, 1.0)
    ramp = first_order_samples(rng, 3.0, 0.0, 1.7e6, 0.3)
    det = rise_detector()
    det.reset(reference_pa=0.0)
    assert feed_rise(det, flat + ramp, flow_rising_blocks=10) is None


def test_rise_arms_on_reference_pressure_without_a_new_ramp() -> None:
    """RESUME right after a pause: the pressure is still at its operating level, no new ramp."""
    rng = random.Random(6)
    det = rise_detector()
    det.reset(reference_pa=1.7e6)
    samples = first_order_samples(rng, 1.0, 1.7e6, 1.7e6, 0.3)
    assert feed_rise(det, samples) is None
    assert det.armed


def test_rise_disarmed_while_the_flow_increases() -> None:
    det = rise_detector()
    det.reset(reference_pa=1e6)
    for _ in range(10):
        det.update(0.0, 1e6, False, 42.0)
    assert det.armed
    det.update(5e6, 1e6, True, 42.0)
    assert not det.armed
    assert not det.tripped()


# -- PRESSURE_LOSS ----------------------------------------------------------------------------
def test_loss_trips_on_disconnection() -> None:
    det = PressureLossDetector(100_000.0, 0.25, 200_000.0, 2)
    assert not det.update(1.7e6, 0.2e6, True)
    assert det.update(1.7e6, 0.05e6, True)


def test_loss_quiet_on_noise_and_slow_fall() -> None:
    rng = random.Random(7)
    det = PressureLossDetector(100_000.0, 0.25, 200_000.0, 2)
    for _ in range(50_000):
        then = 1.7e6 + rng.gauss(0, 3200)
        assert not det.update(then, then * 0.9 + rng.gauss(0, 3200), True)


def test_loss_ignored_without_steady_forward_flow_or_pressure() -> None:
    det = PressureLossDetector(100_000.0, 0.25, 200_000.0, 1)
    assert not det.update(1.7e6, 0.0, False), "throttled or braking: a fall is expected"
    assert not det.update(150_000.0, 0.0, True), "nothing to lose below arm_pa"


# -- SENSOR_FAULT -----------------------------------------------------------------------------
@pytest.mark.parametrize("milliamps", [0.0, 3.0, 21.5, 25.0])
def test_sensor_out_of_range_is_a_fault_and_never_a_pressure(milliamps: float) -> None:
    mon = sensor_monitor()
    for _ in range(50):
        mon.sample(adc_of(1.5e6), False)
    readings = [mon.sample(HW.adc_from_ma(milliamps), False) for _ in range(3)]
    assert mon.faulty
    assert mon.cause & SENSOR_RANGE
    assert readings == [pytest.approx(1.5e6, abs=300)] * 3, "the last valid value is held, never 0 kPa"


def test_sensor_single_out_of_range_spike_is_held_not_a_fault() -> None:
    mon = sensor_monitor()
    mon.sample(adc_of(1e6), False)
    assert mon.sample(0, False) == pytest.approx(1e6, abs=300)
    assert mon.suspect
    for _ in range(99):
        mon.sample(adc_of(1e6), False)
    assert mon.suspect, "suspect holds for clear_samples after the glitch"
    mon.sample(adc_of(1e6), False)
    assert not mon.suspect
    assert not mon.faulty


def test_sensor_stuck_while_moving_is_a_fault_after_the_budgets_run() -> None:
    """At the specified noise (42 counts, judged as 21) the budget's run is 7 readings: the 7th
    identical reading while moving trips, not the 200th."""
    mon = sensor_monitor()
    assert mon.stuck_samples == 7
    adc = adc_of(1e6)
    for _ in range(6):
        mon.sample(adc, True)
    assert not mon.faulty
    assert not mon.suspect, "a stuck run has no suspect stage"
    mon.sample(adc, True)
    assert mon.faulty
    assert mon.cause & SENSOR_STUCK


def test_stuck_run_follows_the_budget_formula() -> None:
    """N = 1 + ceil(ln(lambda / f_s) / ln erf(1 / (2 sqrt 2 sigma))), 0 beyond the longest run."""
    log_budget = math.log(1e-3 / 3600 / 1000)
    for sigma, n in ((42.0, 6), (21.0, 7), (1.0, 24), (0.5, 59), (0.31, 196)):
        p = math.erf(0.5 / (math.sqrt(2) * sigma))
        assert p ** (n - 1) <= 1e-3 / 3600 / 1000 < p ** (n - 2)
        assert stuck_run_samples(sigma, log_budget, 200) == n
    assert stuck_run_samples(0.3, log_budget, 200) == 0, "221 > 200: not judged"
    assert stuck_run_samples(0.0, log_budget, 200) == 0


def test_stuck_check_refuses_a_budget_it_cannot_meet() -> None:
    """A longest run shorter than the budget's run at the specified noise is refused, naming both."""
    with pytest.raises(ValueError, match=r"at most 6 samples .* needs 7 samples"):
        sensor_monitor(stuck_longest=6)
    with pytest.raises(ValueError, match="specified noise"):
        sensor_monitor(noise_pa=0.0)
    assert sensor_monitor(stuck_longest=0, noise_pa=0.0).stuck_samples == 0, "0 disables it"


def test_quiet_sensor_is_not_judged_stuck() -> None:
    """A sensor quieter than the test can judge within its longest run (here: noise-free) is never
    declared stuck once the measured sigma has followed it down; with noise it is judged again."""
    mon = sensor_monitor()
    adc = adc_of(1e6)
    for _ in range(6):  # below the run at the prior
        mon.sample(adc, False)
    for k in range(20_000):  # still: the run does not grow, the sigma estimate decays
        mon.sample(adc, False)
        if k % 10 == 0:
            mon.judge_stuck()
    assert mon.stuck_samples == 0
    for _ in range(5000):
        mon.sample(adc, True)
    assert not mon.faulty
    rng = random.Random(3)
    for k in range(6000):
        mon.sample(adc_of(1e6 + rng.gauss(0, NOISE_PA)), True)
        if k % 10 == 0:
            mon.judge_stuck()
    assert mon.stuck_samples == 7
    for _ in range(7):
        mon.sample(adc, True)
    assert mon.faulty


def test_stuck_fault_holds_while_the_reading_stays_frozen() -> None:
    """After the trip the measured sigma decays to 0 (the test no longer judges), but the fault is
    not cleared while the reading stays frozen, moving or not; it clears once the reading lives."""
    mon = sensor_monitor()
    adc = adc_of(1e6)
    for k in range(20_000):
        mon.sample(adc, k < 100)
        if k % 10 == 0:
            mon.judge_stuck()
    assert mon.stuck_samples == 0
    assert mon.faulty
    assert mon.cause & SENSOR_STUCK
    rng = random.Random(4)
    for _ in range(99):
        mon.sample(adc_of(1e6 + rng.gauss(0, NOISE_PA)), True)
    assert mon.faulty
    mon.sample(adc_of(1e6 + rng.gauss(0, NOISE_PA)), True)
    assert not mon.faulty, "cleared after clear_samples live readings"


def test_saturated_transmitter_is_not_stuck() -> None:
    """Readings at the NAMUR measurement limits are flat by design (an over-range pressure, the
    vacuum of a relief back-off at high noise): they break a stuck run."""
    mon = sensor_monitor()
    for ma in (HW.loop_measure_low_ma, HW.loop_measure_high_ma):
        for _ in range(5000):
            mon.sample(HW.adc_from_ma(ma), True)
        assert not mon.faulty


def test_sensor_constant_while_still_is_not_stuck() -> None:
    mon = sensor_monitor()
    for _ in range(5000):
        mon.sample(adc_of(0.0), False)
    assert not mon.faulty


def test_sensor_implausible_noise_is_a_fault() -> None:
    rng = random.Random(8)
    mon = sensor_monitor()
    for _ in range(2000):
        mon.sample(adc_of(1e6 + rng.gauss(0, 20 * NOISE_PA)), False)
    assert mon.faulty
    assert mon.cause & SENSOR_NOISE


def test_sensor_nominal_noise_never_suspect() -> None:
    rng = random.Random(9)
    mon = sensor_monitor()
    for k in range(200_000):
        mon.sample(adc_of(1e6 + 5e5 * math.sin(k / 500) + rng.gauss(0, NOISE_PA)), True)
        assert not mon.suspect
        assert not mon.faulty


def test_sensor_fault_clears_only_after_good_samples() -> None:
    mon = sensor_monitor()
    for _ in range(5):
        mon.sample(0, False)
    assert mon.faulty
    rng = random.Random(10)
    for _ in range(99):
        mon.sample(adc_of(rng.gauss(0, NOISE_PA)), False)
    assert mon.faulty
    mon.sample(adc_of(rng.gauss(0, NOISE_PA)), False)
    assert not mon.faulty


def test_sensor_fault_declared_by_the_controller_latches_and_clears_like_any_fault() -> None:
    """The controller declares a noise fault when the noise misled PRESSURE_RISE (core._rise_stop):
    faulty at once with the cause kept, cleared only after `clear_samples` good samples."""
    rng = random.Random(11)
    mon = sensor_monitor()
    for _ in range(20):  # the noise mean passes the suspect level (4x), not yet the fault (10x)
        mon.sample(adc_of(1e6 + rng.gauss(0, 20 * NOISE_PA)), True)
    assert mon.suspect
    assert not mon.faulty
    mon.declare_fault(SENSOR_NOISE)
    assert mon.faulty
    assert mon.cause & SENSOR_NOISE
    assert not mon.suspect
    quiet = 0
    while mon.faulty:
        mon.sample(adc_of(1e6 + rng.gauss(0, NOISE_PA)), True)
        quiet += 1
        assert quiet < 2000
    assert quiet >= 100, "the noise mean decays, then 100 good samples"
    assert mon.cause == 0


# -- MOTOR_STALL, END_OF_TRAVEL ----------------------------------------------------------------
def test_stall_trips_after_n_blocks_beyond_tolerance() -> None:
    det = StallDetector(100.0, 2)
    assert not det.update(50.0)
    assert not det.update(150.0)
    assert det.suspect
    assert det.update(250.0)


def test_stall_quiet_within_tolerance() -> None:
    det = StallDetector(100.0, 2)
    assert not any(det.update(e) for e in (99.0, -99.0, 99.0, -99.0))
    assert not det.suspect


def test_travel_guard_brakes_before_the_end() -> None:
    guard = TravelGuard(HW, 0.5e-3, 0.2e-3)
    end = guard.end_counts
    rate = 16_000.0
    brake = guard.braking_counts(rate)
    assert brake == pytest.approx(rate**2 / (2 * HW.max_step_accel_hz_s) * HW.plunger_m_per_step / 1e-6)
    assert not guard.forward_blocked(int(end - brake) - 1, rate, False)
    assert guard.forward_blocked(int(end - brake) + 1, rate, False)
    assert guard.forward_blocked(0, 0.0, True), "the limit switch trips at once"
    assert guard.home_blocked(int(guard.home_counts + brake), -rate)
    assert not guard.home_blocked(int(guard.home_counts + brake) + 2, -rate)


# -- FLUORO, watchdog, working time ------------------------------------------------------------
def test_fluoro_debounce_rejects_bounce_and_latches_after_n() -> None:
    deb = Debouncer(3, 20)
    assert [deb.update(x) for x in (True, True, False, True, True, True)] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert all(deb.update(False) for _ in range(19))
    assert not deb.update(False)


def test_watchdog_expires_only_when_armed_and_starved() -> None:
    wd = Watchdog(500_000)
    assert not wd.expired(10_000_000)
    wd.start(0)
    assert not wd.expired(500_000)
    assert wd.expired(500_001)
    wd.feed(400_000)
    assert not wd.expired(900_000)
    wd.stop()
    assert not wd.expired(10**9)


def test_working_time_warning_then_expiry() -> None:
    mon = WorkingTimeMonitor(0.8)
    mon.configure(mixed_ago_ms=600_000, working_time_ms=1_000_000, now_us=5_000_000)
    assert mon.update(5_000_000) == AGE_OK
    assert mon.update(5_000_000 + 199_999_000) == AGE_OK
    assert mon.update(5_000_000 + 200_000_000) == AGE_WARNING
    assert mon.update(5_000_000 + 400_000_000) == AGE_EXPIRED


# -- volume marks -------------------------------------------------------------------------------
def test_delivery_increments_then_volume_limit_wins() -> None:
    mon = DeliveryMonitor()
    mon.configure(fl_per_count=100_000_000, volume_limit_nl=250_000, increment_nl=100_000)  # 100 nL/count
    assert mon.target_counts == 1000
    assert mon.reached(1000.0) == DELIVERY_INCREMENT
    assert (mon.increments_done, mon.target_counts) == (1, 2000)
    assert mon.reached(2000.0) == DELIVERY_INCREMENT
    assert mon.target_counts == 2500, "the last increment is cut to the volume limit"
    assert mon.reached(2500.0) == DELIVERY_VOLUME


def test_delivery_volume_wins_when_the_last_increment_ends_at_the_limit() -> None:
    mon = DeliveryMonitor()
    mon.configure(fl_per_count=100_000_000, volume_limit_nl=200_000, increment_nl=100_000)
    assert mon.reached(1000.0) == DELIVERY_INCREMENT
    assert mon.reached(2000.0) == DELIVERY_VOLUME


def test_delivery_marks_round_up_so_a_plunger_at_rest_on_a_mark_delivered_the_volume() -> None:
    mon = DeliveryMonitor()
    mon.configure(fl_per_count=41_738_000, volume_limit_nl=40_000, increment_nl=0)  # 7.29 mm bore
    assert mon.target_counts == 959  # 958.4 counts: 958 would deliver 39 985 nL
    assert mon.target_counts * 41_738_000 // 1_000_000 >= 40_000
    assert (mon.target_counts - 1) * 41_738_000 // 1_000_000 < 40_000


def test_a_stop_past_several_increment_marks_counts_them_all() -> None:
    mon = DeliveryMonitor()
    mon.configure(fl_per_count=1_000_000, volume_limit_nl=100, increment_nl=10)  # 1 nL/count
    assert mon.reached(35.7) == DELIVERY_INCREMENT
    assert (mon.increments_done, mon.target_counts) == (3, 40)


# -- VISCOSITY_WINDOW and the estimate ---------------------------------------------------------------
def test_viscosity_window_debounce() -> None:
    det = ViscosityWindowDetector(3)
    assert not det.update(True, 500.0, 1.0, 400.0)
    assert not det.update(False, 500.0, 1.0, 400.0), "an invalid block resets the count"
    assert not det.update(True, 0.5, 1.0, 400.0)
    assert not det.update(True, 0.5, 1.0, 400.0)
    assert det.update(True, 0.5, 1.0, 400.0)
    assert not det.update(True, 200.0, 1.0, 400.0)


def test_viscosity_estimate_is_hagen_poiseuille_at_steady_state() -> None:
    est = ViscosityEstimator(5e-9, 50_000.0, 0.1, 1.0)
    est.configure(cannula_length_m=0.125, cannula_id_m=2.388e-3)
    k = math.pi * (2.388e-3 / 2) ** 4 / (8 * 0.125)
    assert est.update(1.7e6, 0.0, 1e-7, True)
    assert est.last == pytest.approx(1.7e6 * k / 1e-7)
    assert not est.update(1.7e6, 1e6, 1e-7, True), "pressure still rising: compliance carries flow"
    assert not est.update(1.7e6, 0.0, 1e-9, True), "flow too small"
    assert not est.update(1.7e6, 0.0, 1e-7, False), "flow not steady"
    assert est.last == pytest.approx(1.7e6 * k / 1e-7), "the last valid estimate is kept"


# -- throttle ---------------------------------------------------------------------------------------
def test_throttle_band_and_integral() -> None:
    thr = PressureThrottle(0.03, 0.15, 0.5, 0.001)
    thr.configure(2.5e6)
    p_set = 2.5e6 * 0.97
    assert thr.update(p_set - 0.16 * 2.5e6) == 1.0
    assert not thr.active
    mid = thr.update(p_set - 0.075 * 2.5e6)
    assert 0.4 < mid < 0.6
    assert thr.active
    assert thr.update(p_set + 0.01 * 2.5e6) < mid
    # held inside the band, the integral raises the flow towards the setpoint
    before = thr.update(p_set - 0.05 * 2.5e6)
    for _ in range(500):
        after = thr.update(p_set - 0.05 * 2.5e6)
    assert after > before


def test_throttle_cuts_flow_above_setpoint() -> None:
    thr = PressureThrottle(0.03, 0.15, 0.5, 0.001)
    thr.configure(2.5e6)
    assert thr.update(2.5e6) == 0.0


# -- relief -------------------------------------------------------------------------------------------
def test_relief_backs_off_until_pressure_below_threshold() -> None:
    relief = Relief(16_000.0, 3000.0, 1000.0, 3_000_000)
    relief.start(10_000, 0)
    assert relief.update(10_000, 1000, 1.5e6, 2e5, True, False) == -16_000.0
    assert relief.update(9_900, 2000, 1.9e5, 2e5, True, False) == 0.0
    assert relief.ending
    assert relief.backoff_counts(9_880) == 120


@pytest.mark.parametrize(
    ("encoder", "now_us", "sensor_ok", "halt"),
    [
        (7_000, 1000, True, False),
        (9_000, 1000, False, False),
        (9_900, 3_000_000, True, False),
        (9_900, 1000, True, True),
    ],
    ids=["max distance", "blind distance", "timeout", "home or stall"],
)
def test_relief_bounded(encoder: int, now_us: int, sensor_ok: bool, halt: bool) -> None:
    relief = Relief(16_000.0, 3000.0, 1000.0, 3_000_000)
    relief.start(10_000, 0)
    assert relief.update(encoder, now_us, 1.5e6, 2e5, sensor_ok, halt) == 0.0


# -- bookkeeping --------------------------------------------------------------------------------------
def test_command_cache_ring_of_16() -> None:
    cache = CommandCache(16)
    for i in range(1, 18):
        cache.put(i, MsgType.PAUSE, Ack(cmd_id=i, cmd_type=MsgType.PAUSE, state=State.PAUSED), False)
    assert cache.get(1, MsgType.PAUSE) is None, "the oldest entry was overwritten"
    hit = cache.get(17, MsgType.PAUSE)
    assert hit is not None
    assert hit[0] == Ack(cmd_id=17, cmd_type=MsgType.PAUSE, state=State.PAUSED)
    assert cache.get(17, MsgType.START) is None, "another command type is not a retry"
    cache.clear()
    assert cache.get(17, MsgType.PAUSE) is None


def test_telemetry_buffer_indexes_and_partial_batches() -> None:
    buf = TelemetryBuffer(3, 1000)
    batches = [buf.add(t, 1, 2, 3, 4, 5, 6, math.nan, 0, 2, 0) for t in range(7)]
    full = [b for b in batches if b is not None]
    assert [(b.first_index, len(b.samples)) for b in full] == [(0, 3), (3, 3)]
    assert list(full[1].samples["t_us"]) == [3, 4, 5]
    partial = buf.flush()
    assert partial is not None
    assert (partial.first_index, len(partial.samples)) == (6, 1)
    buf.add(7, 1, 2, 3, 4, 5, 6, 1.5, 0, 2, 0)
    buf.drop()
    buf.configure(2, 5000)
    nxt = buf.add(8, 1, 2, 3, 4, 5, 6, 1.5, 0, 2, 0) or buf.add(9, 1, 2, 3, 4, 5, 6, 1.5, 0, 2, 0)
    assert nxt is not None
    assert (nxt.first_index, nxt.period_us) == (8, 5000), "a dropped sample still advances the index"


@pytest.mark.parametrize("p", [0.49, 0.25, 0.1, 1e-3, 1e-6, 1e-9, 1e-12, 1e-15, 1e-20, 1e-40])
def test_upper_tail_quantile_is_the_normal_quantile_from_erfc_alone(p: float) -> None:
    """The occlusion threshold's Gaussian quantile, derived without `statistics` (the core may use the
    C library's maths only), is the standard normal's upper-tail quantile."""
    from statistics import NormalDist

    from firmware_sim.controller.detectors import upper_tail_quantile

    assert upper_tail_quantile(p) == pytest.approx(-NormalDist().inv_cdf(p), rel=1e-13)


@pytest.mark.parametrize("p", [0.0, 0.5, 0.7, -1e-3, math.nan])
def test_upper_tail_quantile_refuses_a_probability_outside_its_range(p: float) -> None:
    from firmware_sim.controller.detectors import upper_tail_quantile

    with pytest.raises(ValueError, match="tail probability"):
        upper_tail_quantile(p)
