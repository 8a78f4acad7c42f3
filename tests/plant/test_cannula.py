"""Cannula: Rabinowitsch-Mooney power-law pipe flow and its inverse, gauges, a widened proximal part."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.plant.cannula import (
    GAUGE_ID_M,
    Cannula,
    flow_rate,
    newtonian_viscosity,
    pressure_drop,
    wall_shear_rate,
)


@given(
    st.floats(0.2, 1.0),
    st.floats(0.5e-3, 2e-3),
    st.floats(0.03, 0.3),
    st.floats(1.0, 1e5),
    st.floats(-1e-6, 1e-6).filter(lambda q: abs(q) > 1e-12),
)
def test_flow_rate_inverts_pressure_drop(n: float, radius: float, length: float, k: float, q: float) -> None:
    dp = pressure_drop(q, k, n, radius, length)
    assert math.copysign(1.0, dp) == math.copysign(1.0, q)
    assert flow_rate(dp, k, n, radius, length) == pytest.approx(q, rel=1e-9)


def test_newtonian_limit_is_hagen_poiseuille() -> None:
    q, mu, r, length = 5e-8, 270.0, 1.194e-3, 0.1
    assert pressure_drop(q, mu, 1.0, r, length) == pytest.approx(8 * mu * length * q / (math.pi * r**4))
    assert wall_shear_rate(q, 1.0, r) == pytest.approx(4 * q / (math.pi * r**3))
    dp = pressure_drop(q, mu, 1.0, r, length)
    assert newtonian_viscosity(dp, q, r, length) == pytest.approx(mu)


@pytest.mark.parametrize("n", [0.3, 0.45, 0.6, 0.8])
def test_13g_over_11g_ratio_is_the_power_law_one_and_below_newtonian(n: float) -> None:
    c11, c13 = Cannula.from_gauge(11, 0.125), Cannula.from_gauge(13, 0.125)
    ratio = c13.pressure_drop(5e-8, 500.0, n) / c11.pressure_drop(5e-8, 500.0, n)
    radius_ratio = GAUGE_ID_M[11] / GAUGE_ID_M[13]
    assert ratio == pytest.approx(radius_ratio ** (3 * n + 1))
    assert ratio < radius_ratio**4 == pytest.approx(3.08, abs=0.01)


def test_a_wider_proximal_section_lowers_the_pressure_drop() -> None:
    plain = Cannula.from_gauge(11, 0.125)
    wide = Cannula.from_gauge(11, 0.125, proximal_id_m=2 * GAUGE_ID_M[11], distal_length_m=0.035)
    saving = 1.0 - wide.pressure_drop(6.7e-8, 600.0, 0.6) / plain.pressure_drop(6.7e-8, 600.0, 0.6)
    fraction = 0.090 / 0.125
    assert saving == pytest.approx(fraction * (1.0 - 2.0 ** -(3 * 0.6 + 1)))
    assert 0.55 < saving < 0.7


def test_an_unknown_gauge_is_refused() -> None:
    with pytest.raises(ValueError, match="gauge 12"):
        Cannula.from_gauge(12, 0.1)
