"""`Plant`: the simulated rig the controller drives, advanced tick by tick.

One hydraulic node, the syringe. Its stored volume V (compliance) is fed by the plunger and drained
through one power-law element, cannula plus cement cloud in series (``dP = K (a_can + a_cloud) Q^n``),
then the linear marrow drainage (``P_iv = P_rest + R Q``). An open leak channel at the tip takes a share
lambda of the flow (solved at the tip junction every 10 ms, `hydraulics.leak_fraction`); the bone then
sees ``(1 - lambda) Q``. After a disconnection the syringe drains through its open Luer tip instead.

Integration, per tick, with plain floats:

1. the motor advances (ramp, stall, end stops) and gives the plunger inflow ``Q_in``;
2. the outflow comes from one Newton step on ``Q = G (P - P_ref - R Q)^(1/n)`` started from the last
   tick's flow, which also gives the local conductance g = dQ/dP;
3. V is advanced with the exponential (exact-decay) update of the linearised node,
   ``dV = (Q_in - Q0) dt (1 - exp(-z)) / z`` with ``z = g dt / C``. It is unconditionally stable: a
   near-zero resistance (disconnection) settles within a tick instead of overshooting, a huge one
   (occlusion) makes the pressure climb at Q_in / C, as it should.
4. P follows from V in closed form (`Compliance.pressure`).

Volume is conserved exactly: what left the syringe this tick is ``Q_in dt - dV``, and it is booked to the
body, the leak paths or the vent. The cement's consistency K(t), the cloud's coefficient and the leak
conductances change slowly: they are refreshed every 10 ms and whenever an event fires.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from firmware_sim.hal import REFERENCE_RIG, Hardware, MotorCommand, SensorFrame
from firmware_sim.plant.cannula import Cannula, newtonian_viscosity, wall_shear_rate
from firmware_sim.plant.cement import NOMINAL_SHEAR_RATE_S, PROFILES, CementProfile, rate_factor
from firmware_sim.plant.config import PlantConfig
from firmware_sim.plant.events import (
    Disconnection,
    EndSwitch,
    FluoroStopLine,
    LeakOpen,
    MotorStall,
    Occlusion,
    PlantEvent,
    SensorDrift,
    SensorNoiseBurst,
    SensorOpen,
    SensorShort,
    SensorStuck,
)
from firmware_sim.plant.hydraulics import (
    LEAK_LENGTH_M,
    Compliance,
    leak_coefficient,
    leak_fraction,
    vent_coefficient,
)
from firmware_sim.plant.motor import Motor
from firmware_sim.plant.sensor import NORMAL, OPEN, SHORT, PressureSensor
from firmware_sim.plant.spatial import SpatialVertebra
from firmware_sim.plant.vertebra import DRAINAGE_RESISTANCE_PA_S_M3, Vertebra

SLOW_PERIOD_S = 0.010
"""How often K(t), the cloud and the leak conductances are refreshed: K changes by well under 1 % in
10 ms even in the last minute before the cement sets."""
_TIME_SLACK_S = 1e-9
"""Tolerance on accumulated float time, so an event at 5.0 s fires on the tick that reaches 5.0 s."""


@dataclass(frozen=True, slots=True)
class FiredEvent:
    """An event that took effect ('start') or that undid itself after its duration ('end')."""

    t_s: float
    delivered_ml: float
    phase: Literal["start", "end"]
    event: PlantEvent


@dataclass(frozen=True, slots=True)
class CementState:
    """The cement now, for tests, benchmarks and HIL reports."""

    profile: str
    seconds_since_mixing: float
    reduced_time_s: float
    """Seconds since mixing as if at 25 degC (the cure clock)."""
    consistency_k_pa_sn: float
    flow_index_n: float
    cure_time_s: float
    """Seconds after mixing at which this cement sets at the plant's temperature."""
    shear_rate_s: float
    """Cannula wall shear rate at the present flow (the nominal 44 1/s when there is no flow)."""
    apparent_viscosity_pa_s: float
    """K gamma_dot^(n-1) at that shear rate."""
    newtonian_viscosity_pa_s: float
    """Hagen-Poiseuille viscosity of the cannula's pressure drop at the present flow, as an online
    estimator computes it (inf when nothing flows)."""


class Plant:
    """Motor, syringe, cement, cannula, vertebra, leaks, faults and the pressure sensor."""

    def __init__(
        self,
        config: PlantConfig | None = None,
        hardware: Hardware = REFERENCE_RIG,
        *,
        profile: CementProfile | None = None,
    ) -> None:
        """`profile` overrides the named cement (used by the fit; scenarios name one in `config`)."""
        config = PlantConfig() if config is None else config
        self.config = config
        self.hardware = hardware
        self.profile: CementProfile = PROFILES[config.cement] if profile is None else profile
        n = self.profile.flow_index_n
        self._n = n
        self._inv_n = 1.0 / n
        self.cannula = Cannula.from_gauge(
            config.cannula_gauge,
            config.cannula_length_mm * 1e-3,
            None if config.cannula_proximal_id_mm is None else config.cannula_proximal_id_mm * 1e-3,
            config.cannula_distal_length_mm * 1e-3,
        )
        self.vertebra = Vertebra(
            bone=config.bone,
            source_radius_m=self.cannula.inner_radius_m,
            resting_pressure_pa=config.resting_pressure_kpa * 1e3,
            void_volume_m3=config.void_volume_ml * 1e-6,
        )
        self.compliance = Compliance(config.compliance_ml_per_mpa * 1e-12, config.entrained_air_ml * 1e-6)
        self.bore_area_m2 = math.pi * (config.syringe_bore_mm * 1e-3 / 2.0) ** 2
        self.motor = Motor(
            hardware, self.bore_area_m2, config.plunger_start_mm * 1e-3, config.seal_friction_n
        )
        self.sensor = PressureSensor(
            hardware, config.sensor_noise_kpa * 1e3, np.random.default_rng(config.seed)
        )

        self._can_coef = self.cannula.coefficient(n)
        self._vent_coef = vent_coefficient(n)
        self._rate_factor = rate_factor(config.temperature_c)
        self._warming = config.storage_temperature_c is not None
        self._theta = self._initial_cure_clock()
        self._k = self.profile.consistency(self._theta)
        self._slow_acc = 0.0
        self._air = self.compliance.air_volume_m3
        self._inv_c_lin = 1.0 / self.compliance.linear_m3_pa
        self._v_cav = self.compliance.cavitation_volume_m3
        self._p_cav = self.compliance.cavitation_pa

        self._t = 0.0
        self._occlusion = 1.0
        self._disconnected = False
        self._leaks: list[tuple[float, float, float]] = []
        """(diameter m, length m, reference pressure Pa) of each open leak channel."""
        self._fluoro = False
        self._end_switch = False
        """An `end_switch` fault holds the limit switch closed."""
        self._q = 0.0
        """Flow through the power-law element at the end of the last tick (the Newton start)."""
        self._q_tip = 0.0
        self._q_leak = 0.0
        self._delivered = 0.0
        self._leaked = 0.0
        self._vented = 0.0
        self._bone_volume = 0.0
        p0 = self.vertebra.resting_pressure_pa
        self._p = p0
        self._v = self.compliance.stored_volume(p0)
        self._v0 = self._v
        self._inv_c = 1.0 / self.compliance.local(p0)

        self._spatial: SpatialVertebra | None = None
        self._spatial_fed = 0.0
        self._spatial_leaked = 0.0
        if config.vertebra == "spatial":
            self._spatial = SpatialVertebra(
                config.spatial,
                self.profile,
                resting_pressure_pa=self.vertebra.resting_pressure_pa,
                drainage_resistance_pa_s_m3=DRAINAGE_RESISTANCE_PA_S_M3["intact"],
                source_radius_m=self.cannula.inner_radius_m,
                seed=config.seed,
            )
            self._spatial.start(self._theta, self.cement_temperature_c)

        self._a_can = self._a_cloud = self._g_path = self._g_vent = 0.0
        self._r_tip = self._p_tip_ref = self._leak_share = 0.0
        self._refresh()

        self._seq = 0
        self._timed: list[tuple[float, int, PlantEvent, Literal["start", "end"]]] = []
        self._by_volume: list[tuple[float, int, PlantEvent]] = []
        self._next_t = math.inf
        self._next_volume = math.inf
        self._fired: list[FiredEvent] = []
        for event in config.events:
            self.schedule(event)

    # -- the two calls of every tick ------------------------------------------------------------
    def step(self, cmd: MotorCommand, dt_s: float) -> None:
        """Advance the physics by `dt_s` with the motor following `cmd`."""
        if not dt_s > 0.0:
            raise ValueError(f"dt_s must be positive, got {dt_s!r}")
        acc = self._slow_acc + dt_s
        self._slow_acc = acc
        if acc >= SLOW_PERIOD_S:
            self._advance_cure()

        p = self._p
        q_in = self.motor.advance(cmd.step_rate_hz, cmd.enabled, dt_s, p) * self.bore_area_m2 / dt_s
        if self._disconnected:
            conductance, p_ref, r_lin = self._g_vent, 0.0, 0.0
        else:
            conductance, p_ref, r_lin = self._g_path, self._p_tip_ref, self._r_tip
        q_prev = self._q
        x = p - p_ref - r_lin * q_prev
        inv_n = self._inv_n
        if x > 0.0:
            f = conductance * x**inv_n
            fp = inv_n * f / x
        elif x < 0.0:
            f = -conductance * (-x) ** inv_n
            fp = inv_n * f / x
        else:
            f = fp = 0.0
        denom = 1.0 + fp * r_lin
        q0 = q_prev + (f - q_prev) / denom
        g = fp / denom
        z = g * dt_s * self._inv_c
        phi = -math.expm1(-z) / z if z > 1e-6 else 1.0 - 0.5 * z
        dv = (q_in - q0) * dt_s * phi
        v = self._v + dv
        self._v = v
        if self._air == 0.0:
            if v > self._v_cav:
                p_new = v * self._inv_c_lin
                self._inv_c = self._inv_c_lin
            else:
                p_new = self._p_cav
                self._inv_c = 0.0
        else:
            p_new = self.compliance.pressure(v)
            self._inv_c = 1.0 / self.compliance.local(p_new)
        self._p = p_new
        self._q = q0 + g * (p_new - p)
        out = q_in * dt_s - dv
        if self._disconnected:
            self._vented += out
            self._q_tip = 0.0
        else:
            self._delivered += out
            self._q_tip = out / dt_s
            if self._leaks:
                q_leak = self._leak_share * self._q_tip if out > 0.0 else 0.0
                self._q_leak = q_leak
                self._leaked += q_leak * dt_s
                out -= q_leak * dt_s
            self._bone_volume += out
        t = self._t + dt_s
        self._t = t
        if t >= self._next_t or self._delivered >= self._next_volume:
            self._fire_due()

    def sense(self) -> SensorFrame:
        """What the controller's peripherals latch now: ADC counts, encoder, end switch, stop line."""
        motor = self.motor
        return SensorFrame(
            self.sensor.read(self._p, self._t),
            motor.encoder_counts,
            motor.at_end or self._end_switch,
            self._fluoro,
        )

    # -- slow physics ---------------------------------------------------------------------------
    def _initial_cure_clock(self) -> float:
        """Reduced time at plant time 0: the cure clock integrated since mixing (1 s steps while the
        cement warms from its storage temperature)."""
        mixed = self.config.mixed_ago_s
        if not self._warming:
            return mixed * self._rate_factor
        theta, t = 0.0, 0.0
        while t < mixed:
            dt = min(1.0, mixed - t)
            theta += rate_factor(self._cement_temperature(t + dt / 2.0)) * dt
            t += dt
        return theta

    def _cement_temperature(self, since_mixing_s: float) -> float:
        config = self.config
        if config.storage_temperature_c is None:
            return config.temperature_c
        decay = math.exp(-since_mixing_s / config.warming_time_constant_s)
        return config.temperature_c + (config.storage_temperature_c - config.temperature_c) * decay

    @property
    def cement_temperature_c(self) -> float:
        """Temperature of the cement in the syringe now (storage relaxing to the room's)."""
        return self._cement_temperature(self.config.mixed_ago_s + self._t)

    def _advance_cure(self) -> None:
        dt = self._slow_acc
        if self._warming:
            mid = self.config.mixed_ago_s + self._t - dt / 2.0
            self._theta += rate_factor(self._cement_temperature(mid)) * dt
        else:
            self._theta += self._rate_factor * dt
        self._slow_acc = 0.0
        self._k = self.profile.consistency(self._theta)
        if self._spatial is not None:
            self._feed_spatial(dt)
        self._refresh()

    def _feed_spatial(self, dt: float) -> None:
        """Hand the spatial body what entered it since the last call; book what it leaked."""
        assert self._spatial is not None
        into_body = self._bone_volume + self._spatial_leaked
        volume = into_body - self._spatial_fed
        if volume > 0.0:
            self._spatial_fed = into_body
        else:
            volume = 0.0
        leaks = self._spatial.feed(
            dt, volume, self._q_tip - self._q_leak, self._theta, self.cement_temperature_c
        )
        if leaks:
            out = sum(leaks.values())
            self._spatial_leaked += out
            self._leaked += out
            self._bone_volume -= out

    def _refresh(self) -> None:
        """Recompute the coefficients that depend on K, the cloud, the occlusion and the leaks."""
        k, n, inv_n = self._k, self._n, self._inv_n
        self._a_can = k * self._can_coef * self._occlusion
        self._g_vent = (k * self._vent_coef) ** -inv_n
        if self._spatial is None:
            self._a_cloud = k * self.vertebra.cloud_coefficient(n, self._bone_volume)
            r_drain = self.vertebra.drainage_resistance
        else:
            # the spatial body is linear (Darcy at one pore shear rate): cloud and marrow in one R
            self._a_cloud = 0.0
            r_drain = self._spatial.resistance_pa_s_m3
        p_rest = self.vertebra.resting_pressure_pa
        share = 0.0
        if self._leaks:
            # parallel power-law channels add their conductances a^(-1/n); their outlet pressures are
            # averaged with the same weights (they differ by a kPa at most)
            weights = [leak_coefficient(n, d, length) ** -inv_n for d, length, _ in self._leaks]
            total = sum(weights)
            a_leak = k * total**-n
            p_leak = sum(w * p for w, (_, _, p) in zip(weights, self._leaks, strict=True)) / total
            share = leak_fraction(self._q_tip, n, self._a_cloud, r_drain, p_rest, a_leak, p_leak)
        self._leak_share = share
        bone_share = 1.0 - share
        self._g_path = (self._a_can + self._a_cloud * bone_share**n) ** -inv_n
        self._r_tip = r_drain * bone_share
        self._p_tip_ref = p_rest

    # -- events ---------------------------------------------------------------------------------
    def schedule(self, event: PlantEvent) -> None:
        """Add an event at run time (fault injection); one that is already due takes effect now."""
        self._seq += 1
        if event.at_volume_ml is not None:
            heapq.heappush(self._by_volume, (event.at_volume_ml * 1e-6, self._seq, event))
        else:
            at = 0.0 if event.at_s is None else event.at_s
            heapq.heappush(self._timed, (at, self._seq, event, "start"))
        self._fire_due()

    def _fire_due(self) -> None:
        changed = False
        while self._timed and self._timed[0][0] <= self._t + _TIME_SLACK_S:
            _, _, event, phase = heapq.heappop(self._timed)
            self._apply(event, phase)
            changed = True
        while self._by_volume and self._by_volume[0][0] <= self._delivered:
            _, _, event = heapq.heappop(self._by_volume)
            self._apply(event, "start")
            changed = True
        self._next_t = self._timed[0][0] - _TIME_SLACK_S if self._timed else math.inf
        self._next_volume = self._by_volume[0][0] if self._by_volume else math.inf
        if changed:
            self._refresh()

    def _apply(self, event: PlantEvent, phase: Literal["start", "end"]) -> None:
        start = phase == "start"
        sensor = self.sensor
        if isinstance(event, LeakOpen):
            length = event.length_mm * 1e-3 if event.length_mm is not None else LEAK_LENGTH_M[event.path]
            p_ref = self.vertebra.resting_pressure_pa if event.path == "venous" else 0.0
            self._leaks.append((event.diameter_mm * 1e-3, length, p_ref))
        elif isinstance(event, Occlusion):
            self._occlusion = event.factor if start else 1.0
        elif isinstance(event, Disconnection):
            self._disconnected = True
        elif isinstance(event, SensorStuck):
            sensor.stuck = start
        elif isinstance(event, SensorOpen):
            sensor.loop = OPEN if start else NORMAL
        elif isinstance(event, SensorShort):
            sensor.loop = SHORT if start else NORMAL
        elif isinstance(event, SensorNoiseBurst):
            sensor.noise_factor = event.factor if start else 1.0
        elif isinstance(event, SensorDrift):
            sensor.set_drift(event.rate_kpa_s * 1e3 if start else 0.0, self._t)
        elif isinstance(event, MotorStall):
            self.motor.stall_fault = start
        elif isinstance(event, EndSwitch):
            self._end_switch = start
        elif isinstance(event, FluoroStopLine):
            self._fluoro = event.asserted if start else not event.asserted
        self._fired.append(FiredEvent(self._t, self._delivered * 1e6, phase, event))
        duration = getattr(event, "duration_s", None)
        if start and duration is not None:
            self._seq += 1
            heapq.heappush(self._timed, (self._t + duration, self._seq, event, "end"))

    @property
    def fired_events(self) -> list[FiredEvent]:
        """What fired and when, in order."""
        return list(self._fired)

    @property
    def fluoro_stop_line(self) -> bool:
        return self._fluoro

    @fluoro_stop_line.setter
    def fluoro_stop_line(self, asserted: bool) -> None:
        self._fluoro = bool(asserted)

    # -- truth, read-only -----------------------------------------------------------------------
    @property
    def t_s(self) -> float:
        return self._t

    @property
    def syringe_pressure_pa(self) -> float:
        """True gauge pressure in the syringe (what the transducer measures before noise)."""
        return self._p

    @property
    def intravertebral_pressure_pa(self) -> float:
        """Marrow pressure in the vertebral body (what Reidy and Li measured)."""
        if self._disconnected:
            return self.vertebra.resting_pressure_pa
        if self._spatial is not None:
            return self._spatial.marrow_pressure(self._q_tip - self._q_leak)
        return self.vertebra.marrow_pressure(self._q_tip - self._q_leak)

    @property
    def tip_pressure_pa(self) -> float:
        """Cement pressure at the cannula tip: marrow pressure plus the drop across the cement cloud."""
        if self._spatial is not None:
            q = self._q_tip - self._q_leak
            return self.vertebra.resting_pressure_pa + self._spatial.resistance_pa_s_m3 * q
        return self.intravertebral_pressure_pa + self._power_drop(self._a_cloud)

    @property
    def spatial(self) -> SpatialVertebra | None:
        """The spatial vertebral body (ground truth: cement per cell, front, leaks, heat), or None."""
        return self._spatial

    @property
    def cannula_dp_pa(self) -> float:
        """Pressure drop along the cannula at the present flow."""
        return self._power_drop(self._a_can)

    def _power_drop(self, a: float) -> float:
        q = self._q_tip
        return math.copysign(a * abs(q) ** self._n, q) if q != 0.0 else 0.0

    @property
    def tip_flow_m3_s(self) -> float:
        """Cement flow out of the cannula tip over the last tick (negative: drawn back)."""
        return self._q_tip

    @property
    def leak_flow_m3_s(self) -> float:
        return self._q_leak

    @property
    def delivered_volume_m3(self) -> float:
        """Net cement volume out of the cannula tip since start (into the body, leaks included)."""
        return self._delivered

    @property
    def leaked_volume_m3(self) -> float:
        """Part of the delivered volume that went into leak channels."""
        return self._leaked

    @property
    def vented_volume_m3(self) -> float:
        """Cement that left through the open Luer tip after a disconnection (not delivered)."""
        return self._vented

    @property
    def bone_volume_m3(self) -> float:
        """Cement in the vertebral body's bone (delivered minus leaked)."""
        return self._bone_volume

    @property
    def plunger_position_m(self) -> float:
        return self.motor.position_m

    @property
    def plunger_velocity_m_s(self) -> float:
        return self.motor.velocity_m_s

    @property
    def displaced_volume_m3(self) -> float:
        """Volume the plunger has swept since start (forward positive)."""
        return (self.motor.position_m - self.config.plunger_start_mm * 1e-3) * self.bore_area_m2

    @property
    def stored_volume_m3(self) -> float:
        """Volume held by the compliance above the resting state (drives after-flow)."""
        return self._v - self._v0

    @property
    def motor_stalled(self) -> bool:
        return self.motor.stalled or self.motor.stall_fault

    @property
    def end_of_travel(self) -> bool:
        """The limit switch: the plunger at the physical end, or an `end_switch` fault."""
        return self.motor.at_end or self._end_switch

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @property
    def occlusion_factor(self) -> float:
        return self._occlusion

    @property
    def viscosity(self) -> CementState:
        """Cement age, consistency and the viscosities an estimator would see now."""
        profile = self.profile
        theta = self._theta + self._rate_factor * self._slow_acc
        q = self._q_tip
        radius = self.cannula.inner_radius_m
        shear = wall_shear_rate(q, self._n, radius) if q != 0.0 else NOMINAL_SHEAR_RATE_S
        return CementState(
            profile=profile.name,
            seconds_since_mixing=self.config.mixed_ago_s + self._t,
            reduced_time_s=theta,
            consistency_k_pa_sn=self._k,
            flow_index_n=self._n,
            cure_time_s=profile.cure_time_s(self.cement_temperature_c),
            shear_rate_s=shear,
            apparent_viscosity_pa_s=profile.apparent_viscosity(self._k, shear),
            newtonian_viscosity_pa_s=newtonian_viscosity(self.cannula_dp_pa, q, radius, self.cannula.length_m)
            if q > 0.0
            else math.inf,
        )
