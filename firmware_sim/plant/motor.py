"""Stepper motor, lead screw, plunger and linear encoder.

The step generator follows the commanded microstep rate but ramps at `Hardware.max_step_accel_hz_s`,
as a ramp-generator IC does; a disabled command stops the steps at once (a 1 mm-lead screw is
self-locking, so the plunger stays where it is). The plunger moves with the steps unless the motor
stalls: when the force on the plunger (syringe pressure x bore area + seal friction) exceeds
`Hardware.max_force_n` a stepper loses synchronism and, until its step rate is brought back to
zero, only hums (steps are commanded, the plunger stays put: what a MOTOR_STALL detector must see).
An injected stall fault does the same in both directions. The plunger cannot pass home (0) or
`Hardware.travel_m`, where the end switch closes. The encoder reads the plunger position quantised
to `Hardware.encoder_m_per_count`.
"""

from __future__ import annotations

from firmware_sim.hal import Hardware

SEAL_FRICTION_N = 3.0
"""Sliding friction of the rubber plunger seal of a 1-3 mL syringe: a few newtons (an assumption)."""


class Motor:
    """Plunger drive state, advanced once per tick with plain floats (no allocation)."""

    __slots__ = (
        "_bore_area_m2",
        "_friction_n",
        "_inv_count_m",
        "_m_per_step",
        "_max_accel_hz_s",
        "_max_force_n",
        "_max_rate_hz",
        "_travel_m",
        "at_end",
        "position_m",
        "rate_hz",
        "stall_fault",
        "stalled",
        "velocity_m_s",
    )

    def __init__(
        self,
        hardware: Hardware,
        bore_area_m2: float,
        start_position_m: float = 0.0,
        seal_friction_n: float = SEAL_FRICTION_N,
    ) -> None:
        if not 0.0 <= start_position_m <= hardware.travel_m:
            raise ValueError(
                f"plunger start {start_position_m * 1e3:.3f} mm is outside the stroke "
                f"0..{hardware.travel_m * 1e3:g} mm"
            )
        self._m_per_step = hardware.plunger_m_per_step
        self._max_rate_hz = hardware.max_step_rate_hz
        self._max_accel_hz_s = hardware.max_step_accel_hz_s
        self._travel_m = hardware.travel_m
        self._max_force_n = hardware.max_force_n
        self._inv_count_m = 1.0 / hardware.encoder_m_per_count
        self._bore_area_m2 = bore_area_m2
        self._friction_n = seal_friction_n
        self.position_m = start_position_m
        self.rate_hz = 0.0
        """Step rate the generator outputs now (ramped towards the command)."""
        self.velocity_m_s = 0.0
        """Plunger velocity over the last tick (zero while stalled)."""
        self.stalled = False
        """Lost synchronism under load; cleared when the step rate comes back to zero or reverses."""
        self.stall_fault = False
        """Injected fault: steps are commanded, nothing moves."""
        self.at_end = start_position_m >= hardware.travel_m

    @property
    def encoder_counts(self) -> int:
        # a millionth of a count of slack, so a position that is a whole number of counts in decimal
        # (60 mm = 60000 um) does not read one count short after binary rounding
        return int(self.position_m * self._inv_count_m + 1e-6)

    def plunger_force_n(self, pressure_pa: float) -> float:
        return pressure_pa * self._bore_area_m2 + self._friction_n

    def advance(self, step_rate_hz: float, enabled: bool, dt_s: float, pressure_pa: float) -> float:
        """Advance one tick against the syringe pressure; returns the plunger displacement in m."""
        if not enabled:  # step output off: no more steps, and the lead screw does not back-drive
            self.rate_hz = 0.0
            self.stalled = False
            self.velocity_m_s = 0.0
            return 0.0
        target = step_rate_hz
        if target != target:  # NaN from a broken caller: treat as stop
            target = 0.0
        limit = self._max_rate_hz
        if target > limit:
            target = limit
        elif target < -limit:
            target = -limit
        rate = self.rate_hz
        ramp = self._max_accel_hz_s * dt_s
        if target > rate + ramp:
            rate += ramp
        elif target < rate - ramp:
            rate -= ramp
        else:
            rate = target
        self.rate_hz = rate
        if rate <= 0.0:
            self.stalled = False
        if self.stall_fault or rate == 0.0:
            self.velocity_m_s = 0.0
            return 0.0
        if rate > 0.0 and (
            self.stalled or pressure_pa * self._bore_area_m2 + self._friction_n > self._max_force_n
        ):
            self.stalled = True
            self.velocity_m_s = 0.0
            return 0.0
        x = self.position_m
        new = x + rate * self._m_per_step * dt_s
        if new >= self._travel_m:
            new = self._travel_m
            self.at_end = True
        else:
            self.at_end = False
            if new < 0.0:
                new = 0.0
        self.position_m = new
        dx = new - x
        self.velocity_m_s = dx / dt_s
        return dx
