"""Cement rheology: shear thinning, consistency rising with age, faster when warm."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.plant.cement import K_SET_PA_SN, PROFILES, rate_factor

profiles = st.sampled_from(sorted(PROFILES))


@given(profiles, st.floats(0.1, 1e3), st.floats(1.01, 100.0))
def test_apparent_viscosity_falls_as_shear_rate_rises(name: str, shear: float, factor: float) -> None:
    profile = PROFILES[name]
    k = profile.consistency_at(300.0, 22.0)
    assert profile.apparent_viscosity(k, shear * factor) < profile.apparent_viscosity(k, shear)


@given(profiles, st.floats(0.0, 1500.0), st.floats(1.0, 300.0), st.floats(2.0, 45.0))
def test_consistency_rises_with_time_until_set(name: str, t: float, later: float, temp: float) -> None:
    profile = PROFILES[name]
    k1, k2 = profile.consistency_at(t, temp), profile.consistency_at(t + later, temp)
    if k1 < K_SET_PA_SN:
        assert k2 > k1
    else:
        assert k2 == k1 == K_SET_PA_SN


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_warm_cement_is_stiffer_at_the_same_age(name: str) -> None:
    profile = PROFILES[name]
    for t in (60.0, 180.0, 300.0):
        assert (
            profile.consistency_at(t, 37.0) > profile.consistency_at(t, 25.0) > profile.consistency_at(t, 6.0)
        )


def test_the_cure_clock_runs_twice_as_fast_at_37_as_at_25() -> None:
    assert rate_factor(25.0) == pytest.approx(1.0)
    assert rate_factor(37.0) == pytest.approx(2.0, rel=1e-9)
    q10 = rate_factor(35.0) / rate_factor(25.0)
    assert 1.7 < q10 < 1.9


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_cement_sets_at_its_cure_time_and_stays_set(name: str) -> None:
    profile = PROFILES[name]
    cure = profile.cure_time_s(25.0)
    assert cure == pytest.approx(profile.cure_time_25c_s)
    assert profile.consistency_at(cure * 0.999, 25.0) < K_SET_PA_SN
    assert profile.consistency_at(cure * 1.001, 25.0) == K_SET_PA_SN
    assert profile.consistency_at(cure * 5.0, 25.0) == K_SET_PA_SN


@given(profiles, st.floats(0.0, 0.99), st.floats(2.0, 45.0))
def test_time_to_reach_inverts_consistency(name: str, fraction: float, temp: float) -> None:
    profile = PROFILES[name]
    t = fraction * profile.cure_time_s(temp)
    k = profile.consistency_at(t, temp)
    assert profile.time_to_reach(k, temp) == pytest.approx(t, rel=1e-6, abs=1e-6)


def test_high_viscosity_cement_is_stiffer_early_than_low_viscosity_cement_late() -> None:
    """Habib 2010: high-viscosity cement at 3.5 min leaked less than low-viscosity cement at 9.5 min."""
    low, high = PROFILES["low_viscosity"], PROFILES["high_viscosity"]
    shear = 44.0
    assert high.apparent_viscosity(high.consistency_at(210.0, 22.0), shear) > low.apparent_viscosity(
        low.consistency_at(570.0, 22.0), shear
    )
