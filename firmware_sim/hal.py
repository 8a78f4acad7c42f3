"""Hardware abstraction: the only things the controller core reads from and writes to the hardware.

On a microcontroller these are the ADC register, the encoder timer, two GPIO inputs and the step
generator. The simulated plant produces `SensorFrame`s and consumes `MotorCommand`s, so the
controller cannot tell it apart from a real rig. Everything here is plain scalars so it ports to C
as two structs and one constants block.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SensorFrame:
    """One 1 kHz sample of every input, as the firmware's ISR would latch it."""

    pressure_adc: int
    """Raw ADC counts of the 4-20 mA pressure transducer loop (see `Hardware.adc_*`).

    An open loop reads near 0 mA and a shorted one above 20.5 mA: both are sensor faults and must
    never be read as a pressure (a dead sensor is not 0 kPa)."""
    encoder_counts: int
    """Linear plunger encoder, counts from the home (fully retracted) position, forward positive."""
    end_of_travel: bool
    """Limit switch at the plunger's forward end; True when closed."""
    fluoro_stop_line: bool
    """Footswitch / imaging-system stop input; True when asserted (request to stop)."""


@dataclass(frozen=True, slots=True)
class MotorCommand:
    """Step generator setpoint for the next tick: signed microstep rate, forward positive."""

    step_rate_hz: float
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Hardware:
    """Fixed properties of one pump build. The handshake reports the limits derived from these.

    Defaults describe the reference bench rig: a 1 mm-lead screw driven by a 200-step motor at 16
    microsteps, a 1 um linear encoder, a 0-10 MPa gauge transducer on a 4-20 mA loop read by a
    16-bit ADC spanning 0-25 mA, and a 60 mm plunger stroke.
    """

    plunger_m_per_step: float = 1e-3 / (200 * 16)
    encoder_m_per_count: float = 1e-6
    max_step_rate_hz: float = 16_000.0
    """Top plunger speed: 16 000 usteps/s x 0.3125 um = 5 mm/s."""
    max_step_accel_hz_s: float = 200_000.0
    """Ramp limit of the step generator: reaches top speed from rest in 80 ms."""
    travel_m: float = 0.060
    """Plunger stroke from home to the forward end stop."""
    max_force_n: float = 600.0
    """Force at which the motor loses steps (stalls)."""
    adc_bits: int = 16
    adc_full_scale_ma: float = 25.0
    loop_zero_ma: float = 4.0
    loop_span_ma: float = 16.0
    sensor_full_scale_pa: float = 10e6
    loop_fault_low_ma: float = 3.6
    """Below this the loop is open or the transducer dead (NAMUR NE 43 lower fault band)."""
    loop_fault_high_ma: float = 21.0
    """Above this the loop is shorted or the transducer failed high (NAMUR NE 43 upper band)."""
    loop_measure_low_ma: float = 3.8
    loop_measure_high_ma: float = 20.5
    """A healthy transmitter saturates at these NAMUR NE 43 measurement limits (an over- or
    under-range pressure is not a fault): a reading there is flat by design, not stuck."""

    @property
    def adc_max(self) -> int:
        return (1 << self.adc_bits) - 1

    def ma_from_adc(self, counts: int) -> float:
        return counts * self.adc_full_scale_ma / self.adc_max

    def adc_from_ma(self, milliamps: float) -> int:
        counts = round(milliamps * self.adc_max / self.adc_full_scale_ma)
        return min(max(counts, 0), self.adc_max)

    def pa_from_ma(self, milliamps: float) -> float:
        return (milliamps - self.loop_zero_ma) / self.loop_span_ma * self.sensor_full_scale_pa

    def ma_from_pa(self, pascals: float) -> float:
        return self.loop_zero_ma + pascals / self.sensor_full_scale_pa * self.loop_span_ma


REFERENCE_RIG = Hardware()
