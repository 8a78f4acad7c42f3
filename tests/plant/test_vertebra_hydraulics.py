"""Vertebral back-pressure (cement cloud, marrow) and the syringe-side hydraulics (compliance, leaks)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.plant.hydraulics import (
    CAVITATION_PA,
    Compliance,
    leak_coefficient,
    leak_fraction,
)
from firmware_sim.plant.vertebra import Vertebra, spherical_integral

R11 = 1.194e-3


def test_the_cloud_resistance_grows_with_the_cloud_and_saturates() -> None:
    bone = Vertebra("intact", R11)
    b = [bone.cloud_coefficient(0.6, v * 1e-6) for v in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert b[0] == 0.0
    assert all(x < y for x, y in itertools.pairwise(b))
    assert b[-1] - b[-2] < b[2] - b[1], "each added mL adds less"


def test_a_tumour_has_no_cloud_and_a_void_fills_before_the_cement_permeates() -> None:
    assert Vertebra("tumour", R11).cloud_coefficient(0.6, 3e-6) == 0.0
    void = Vertebra("void", R11, void_volume_m3=2e-6)
    assert void.cloud_coefficient(0.6, 1.9e-6) == 0.0
    assert void.cloud_coefficient(0.6, 3e-6) > 0.0
    assert void.cloud_coefficient(0.6, 3e-6) < Vertebra("intact", R11).cloud_coefficient(0.6, 1e-6)


def test_the_log_form_at_n_one_half_joins_the_power_form() -> None:
    r0, rc = 1e-3, 1e-2
    assert spherical_integral(0.5, r0, rc) == pytest.approx(math.log(rc / r0))
    assert spherical_integral(0.5 + 1e-6, r0, rc) == pytest.approx(math.log(rc / r0), rel=1e-4)
    assert spherical_integral(0.5 - 1e-6, r0, rc) == pytest.approx(math.log(rc / r0), rel=1e-4)


def test_soft_tissue_raises_and_a_void_lowers_the_marrow_pressure() -> None:
    q = 5e-8
    intact, tumour, void = (
        Vertebra(b, R11, resting_pressure_pa=0.0).marrow_pressure(q) for b in ("intact", "tumour", "void")
    )
    assert void < intact < tumour
    assert 4e3 < intact < 8e3


@given(st.floats(-0.05e-6, 0.5e-6), st.sampled_from([0.0, 0.02e-6, 0.2e-6]))
def test_compliance_pressure_inverts_stored_volume(stored: float, air: float) -> None:
    c = Compliance(5e-14, air)
    p = c.pressure(stored)
    assert p >= CAVITATION_PA
    if stored > c.cavitation_volume_m3:
        assert c.stored_volume(p) == pytest.approx(stored, rel=1e-9, abs=1e-18)
    else:
        assert p == CAVITATION_PA
        assert math.isinf(c.local(p))


def test_entrained_air_stores_most_of_its_volume_at_low_pressure() -> None:
    c = Compliance(5e-14, 0.05e-6)
    assert c.stored_volume(100e3) - c.stored_volume(0.0) > 0.5 * 0.05e-6
    assert c.local(10e3) > 5 * c.local(2e6)


@given(st.floats(1e-9, 2e-7), st.floats(0.5e-3, 5e-3), st.floats(0.0, 5e10))
def test_the_leak_split_balances_the_tip_pressure(q: float, diameter: float, a_cloud: float) -> None:
    n, k = 0.6, 600.0
    a_leak = k * leak_coefficient(n, diameter, 0.01)
    r_drain, p_rest = 1.2e11, 667.0
    share = leak_fraction(q, n, a_cloud, r_drain, p_rest, a_leak, p_rest)
    assert 0.0 <= share <= 1.0
    qb, ql = (1 - share) * q, share * q
    bone = a_cloud * qb**n + r_drain * qb + p_rest
    leak = a_leak * ql**n + p_rest
    assert bone == pytest.approx(leak, rel=1e-3)


def test_a_wider_leak_takes_more_and_nothing_leaks_back() -> None:
    n, k, q = 0.6, 600.0, 5e-8
    shares = [
        leak_fraction(q, n, 2e10, 1.2e11, 667.0, k * leak_coefficient(n, d, 0.003), 0.0)
        for d in (1e-3, 2e-3, 4e-3)
    ]
    assert shares[0] < shares[1] < shares[2] < 1.0
    assert leak_fraction(-q, n, 2e10, 1.2e11, 667.0, k * leak_coefficient(n, 4e-3, 0.003), 0.0) == 0.0
