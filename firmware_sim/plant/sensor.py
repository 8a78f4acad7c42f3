"""The syringe pressure transducer on its 4-20 mA loop, as the controller's ADC reads it.

Healthy: loop current = 4 mA + P / full scale x 16 mA (`Hardware.ma_from_pa`), plus white Gaussian
noise (default sigma 0.1 % of full scale: 10 kPa on the reference 10 MPa gauge), plus any drift; the
transmitter saturates at the NAMUR NE 43 measurement limits 3.8 / 20.5 mA (an over-range pressure is
not a fault), and the ADC quantises (`Hardware.adc_from_ma`: one count = 0.38 uA = 238 Pa).

Faults: stuck (the reading freezes at its last value), open loop (~0 mA: below the 3.6 mA fault band),
short / failed high (24 mA: above the 21 mA band), noise burst (sigma x factor), drift (Pa/s).

Speed: the noise comes from a seeded numpy Generator in blocks of 4096 normals turned into a list, so
a tick costs one list index, not one numpy call. Every read draws one normal, faulty or not, so the
noise sequence after a fault ends is the one a fault-free run would have seen.
"""

from __future__ import annotations

import numpy as np

from firmware_sim.hal import REFERENCE_RIG, Hardware

NAMUR_MEASURE_LOW_MA = REFERENCE_RIG.loop_measure_low_ma
NAMUR_MEASURE_HIGH_MA = REFERENCE_RIG.loop_measure_high_ma
"""NAMUR NE 43 measurement range of a healthy transmitter: it saturates here, it does not fault
(`Hardware.loop_measure_*_ma`, which the controller's stuck check also knows)."""
OPEN_LOOP_MA = 0.0
SHORTED_LOOP_MA = 24.0
DEFAULT_NOISE_FRACTION_OF_FULL_SCALE = 0.001
"""0.1 % of full scale, typical of an industrial 4-20 mA gauge transmitter's noise plus ADC noise."""
NOISE_BLOCK = 4096

NORMAL, OPEN, SHORT = 0, 1, 2


class PressureSensor:
    """Turns the true syringe pressure into ADC counts, one reading per call."""

    __slots__ = (
        "_adc_full_scale_ma",
        "_adc_max",
        "_block",
        "_buffer",
        "_full_scale_pa",
        "_index",
        "_ma_per_pa",
        "_rng",
        "_span_ma",
        "_zero_ma",
        "drift_base_pa",
        "drift_rate_pa_s",
        "drift_since_s",
        "last_counts",
        "loop",
        "noise_factor",
        "noise_sigma_pa",
        "stuck",
    )

    def __init__(
        self, hardware: Hardware, noise_sigma_pa: float, rng: np.random.Generator, block: int = NOISE_BLOCK
    ) -> None:
        if noise_sigma_pa < 0.0:
            raise ValueError(f"noise sigma {noise_sigma_pa} Pa must not be negative")
        self._adc_max = hardware.adc_max
        self._adc_full_scale_ma = hardware.adc_full_scale_ma
        self._full_scale_pa = hardware.sensor_full_scale_pa
        self._span_ma = hardware.loop_span_ma
        self._ma_per_pa = hardware.loop_span_ma / hardware.sensor_full_scale_pa
        self._zero_ma = hardware.loop_zero_ma
        self._rng = rng
        self._block = block
        self._buffer: list[float] = []
        self._index = 0
        self.noise_sigma_pa = noise_sigma_pa
        self.noise_factor = 1.0
        self.stuck = False
        self.loop = NORMAL
        self.drift_rate_pa_s = 0.0
        self.drift_base_pa = 0.0
        self.drift_since_s = 0.0
        self.last_counts = hardware.adc_from_ma(hardware.loop_zero_ma)

    def _refill(self) -> None:
        self._buffer = self._rng.standard_normal(self._block).tolist()
        self._index = 0

    def drift_pa(self, t_s: float) -> float:
        return self.drift_base_pa + self.drift_rate_pa_s * (t_s - self.drift_since_s)

    def set_drift(self, rate_pa_s: float, t_s: float) -> None:
        """Start drifting at a new rate; the offset reached so far is kept."""
        self.drift_base_pa = self.drift_pa(t_s)
        self.drift_rate_pa_s = rate_pa_s
        self.drift_since_s = t_s

    def read(self, pressure_pa: float, t_s: float) -> int:
        """ADC counts for the true pressure now."""
        i = self._index
        if i >= len(self._buffer):
            self._refill()
            i = 0
        self._index = i + 1
        if self.stuck:
            return self.last_counts
        noise = self._buffer[i] * self.noise_sigma_pa * self.noise_factor
        loop = self.loop
        if loop == NORMAL:
            p = pressure_pa + noise
            if self.drift_rate_pa_s != 0.0 or self.drift_base_pa != 0.0:
                p += self.drift_pa(t_s)
            ma = self._zero_ma + p / self._full_scale_pa * self._span_ma  # as Hardware.ma_from_pa
            if ma < NAMUR_MEASURE_LOW_MA:
                ma = NAMUR_MEASURE_LOW_MA
            elif ma > NAMUR_MEASURE_HIGH_MA:
                ma = NAMUR_MEASURE_HIGH_MA
        elif loop == OPEN:
            ma = OPEN_LOOP_MA + abs(noise) * self._ma_per_pa
        else:
            ma = SHORTED_LOOP_MA - abs(noise) * self._ma_per_pa
        counts = round(ma * self._adc_max / self._adc_full_scale_ma)  # as Hardware.adc_from_ma
        if counts > self._adc_max:
            counts = self._adc_max
        self.last_counts = counts
        return counts
