"""One randomized sweep run: draw its conditions from its seed, play it on the virtual rig, classify it.

A run is either *nominal* (an injection to its planned end: any other stop is a false stop) or an
*event run*: a continuous injection brought to steady state, then one plant event (occlusion, leak,
disconnection, sensor or motor fault, fluoroscopy pulse, host silence) of a drawn size, then a
detection window. Everything runs in virtual time on `firmware_sim.virtual_rig.VirtualRig` (host
part through the real codec, controller, plant), in-process, with no wall clock, so a run is a pure
function of (master seed, index).

Each run is only as long as it needs to be: the start-up ramp (until the true syringe pressure is
steady, at most `MAX_RAMP_S`), 0.2-1 s more, the event, and the kind's window, cut short by the stop.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from firmware_sim.controller import ControllerConfig
from firmware_sim.hal import REFERENCE_RIG
from firmware_sim.plant import PlantConfig
from firmware_sim.plant.cannula import Cannula
from firmware_sim.plant.cement import PROFILES
from firmware_sim.plant.events import (
    Disconnection,
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
from firmware_sim.virtual_rig import VirtualRig
from hil._sweep_stats import derive_seed, weighted_cycle
from protocol import Ack, Event, Flags, Mode, PlanFlags, Resume, State, StopDetail, StopReason

# -- conditions ------------------------------------------------------------------------------------
NOISE_SPEC_KPA = 10.0
"""The reference transducer's specified noise (sigma per 1 kHz sample), `ControllerConfig`'s spec."""
NOISE_LEVELS = (0.5, 1.0, 2.0)
"""Sensor noise drawn as these multiples of the spec: a quieter transducer, the spec, twice it."""
CEMENTS = ("low_viscosity", "high_viscosity", "fast_setting")
GAUGES = (10, 11, 13)
BONES = ("intact", "tumour", "void")
SYRINGE_BORES_MM = (7.29, 8.66)
"""2.5 mL and 3 mL syringes (docs/references.md)."""
LIMITS_PA = {
    "low_viscosity": (2_500_000, 4_000_000),
    "fast_setting": (2_500_000, 4_000_000),
    "high_viscosity": (4_000_000, 6_000_000),
}
"""Plan (soft, hard) limits of a bench engineer, as in bench/false_stops.py: the high-viscosity dough
needs 2-4 MPa through 11G, i.e. a motorised delivery with a higher limit."""
FLOW_ML_MIN = (1.0, 6.0)
TEMPERATURE_C = (18.0, 25.0)
CANNULA_LENGTH_MM = (100.0, 150.0)
EARLIEST_MIX_S = 120.0
WORKING_FRAC_OF_CURE = 0.8
MAX_PRESSURE_FRAC_OF_SOFT = 1.25
"""A drawn condition is nominal only if its predicted steady syringe pressure at the end is at most
1.25x the soft limit: throttling near the end is nominal, a plan that can only run on its limit is not."""
CANNULA_SHARE = 0.95
NOMINAL_S = (4.0, 20.0)
"""Injection time of a nominal run (volume = flow x this): start-up ramp, steady flow, the end."""
PAUSE_S = (0.5, 3.0)
STROKE_USE = 0.9

# -- event runs ------------------------------------------------------------------------------------
MAX_RAMP_S = 12.0
"""Longest wait for steady state (a stiff cement at 1 mL/min through 13G has a ~4 s time constant)."""
STEADY_REL_PER_S = 0.1
"""Steady: the true syringe pressure moved by < 10 %/s over the last 100 ms (the controller's own
viscosity-steadiness criterion, applied to the plant's truth)."""
ONSET_AFTER_STEADY_S = (0.5, 3.0)
"""Onset of most events: this long after the true pressure became steady (an occlusion by setting
cement, a leak, a fault come during the injection, not with its first millilitre)."""
ONSET_AFTER_START_S = (0.3, 1.5)
"""Onset of `occlusion_early`: during the start-up ramp, before the occlusion detector has armed."""
PROBE_S = 1.0
"""The true syringe-pressure change is read this long after the onset (or at the stop)."""

NOMINAL_REASONS = frozenset({StopReason.VOLUME_LIMIT.name, StopReason.INCREMENT_DONE.name})
ENDED = (State.STOPPED, State.DONE, State.FAULT, State.PAUSED)
OCCLUSION_REASONS = frozenset(
    {
        StopReason.PRESSURE_RISE.name,
        f"{StopReason.PRESSURE_RISE.name}/{StopDetail.NO_FLOW_AT_CEILING.name}",
        StopReason.OVERPRESSURE.name,
    }
)


@dataclass(frozen=True)
class KindSpec:
    """One kind of run: the event, the detector(s) expected to catch it, how its size is measured."""

    name: str
    detector: str
    expected: frozenset[str]
    size_name: str
    size_unit: str
    edges: tuple[float, ...]
    log_x: bool
    weight: int
    window_s: float
    early_share: float = 0.0
    """Share of runs whose onset is ONSET_AFTER_START_S after START (during the start-up ramp)
    instead of ONSET_AFTER_STEADY_S after steady state."""
    draw: Callable[[np.random.Generator], float] = field(default=lambda _rng: math.nan, repr=False)
    """The event's size, drawn from the run's generator; NaN where the run measures it at the onset
    instead (disconnection: the pressure then; stall, nominal: the flow)."""
    event: Callable[[float, float, float], PlantEvent | None] = field(default=lambda *_: None, repr=False)
    """(size, sign, noise_kpa) -> the plant event to schedule; None: none (nominal, and host silence,
    which the host side plays)."""

    def as_json(self) -> dict[str, Any]:
        """The row as the sweep report stores it: its figures, not its functions."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("draw", "event")}
        out["expected"] = sorted(self.expected)
        return out


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _occlusion_factor(rng: np.random.Generator) -> float:
    """Half partial (1.2-10x: a narrowing, a stiffer plug), half near-total (10-10^4x)."""
    partial = rng.random() < 0.5
    return round(_log_uniform(rng, 1.2, 10.0) if partial else _log_uniform(rng, 10.0, 1e4), 3)


def _uniform(low: float, high: float, digits: int) -> Callable[[np.random.Generator], float]:
    return lambda rng: round(float(rng.uniform(low, high)), digits)


def _log(low: float, high: float, digits: int) -> Callable[[np.random.Generator], float]:
    return lambda rng: round(_log_uniform(rng, low, high), digits)


def _whole(low: int, high: int) -> Callable[[np.random.Generator], float]:
    """A whole number in [low, high]."""
    return lambda rng: float(rng.integers(low, high + 1))


def _sensor_noise(size: float, _sign: float, noise_kpa: float) -> PlantEvent:
    return SensorNoiseBurst(factor=min(1000.0, max(1.0, size / noise_kpa)), duration_s=0.5)


def _spec(
    name: str, detector: str, expected: frozenset[str] | str, size: str, unit: str, **kw: Any
) -> KindSpec:
    exp = frozenset({expected}) if isinstance(expected, str) else expected
    return KindSpec(name, detector, exp, size, unit, **kw)


SENSOR = StopReason.SENSOR_FAULT.name
KINDS: dict[str, KindSpec] = {
    s.name: s
    for s in (
        _spec(
            "nominal",
            "false stops",
            NOMINAL_REASONS,
            "flow",
            "mL/min",
            edges=(1, 2, 3, 4, 5, 6),
            log_x=False,
            weight=8,
            window_s=0.0,
        ),
        _spec(
            "occlusion",
            "PRESSURE_RISE / OVERPRESSURE",
            OCCLUSION_REASONS,
            "blocking factor",
            "x",
            edges=(1.2, 1.5, 2, 3, 5, 10, 100, 1e4),
            log_x=True,
            weight=4,
            window_s=6.0,
            draw=_occlusion_factor,
            event=lambda size, _sign, _noise: Occlusion(factor=size),
        ),
        _spec(
            "occlusion_early",
            "NO_FLOW_AT_CEILING / OVERPRESSURE (ramp)",
            OCCLUSION_REASONS,
            "blocking factor",
            "x",
            edges=(1.2, 1.5, 2, 3, 5, 10, 100, 1e4),
            log_x=True,
            weight=2,
            window_s=12.0,
            early_share=1.0,
            draw=_occlusion_factor,
            event=lambda size, _sign, _noise: Occlusion(factor=size),
        ),
        _spec(
            "disconnection",
            "PRESSURE_LOSS",
            StopReason.PRESSURE_LOSS.name,
            "pressure at onset",
            "kPa",
            edges=(0, 100, 200, 400, 800, 1600, 3200, 6000),
            log_x=False,
            weight=2,
            window_s=1.0,
            early_share=0.4,  # low pressures: down to the 200 kPa arming level
            event=lambda *_: Disconnection(),
        ),
        _spec(
            "leak_cortical",
            "PRESSURE_LOSS (cortical leak)",
            StopReason.PRESSURE_LOSS.name,
            "leak diameter",
            "mm",
            edges=(0.5, 1, 2, 3, 4, 5, 6),
            log_x=False,
            weight=2,
            window_s=3.0,
            draw=_uniform(0.5, 6.0, 2),
            event=lambda size, _sign, _noise: LeakOpen(path="cortical", diameter_mm=size),
        ),
        _spec(
            "leak_venous",
            "PRESSURE_LOSS (venous leak)",
            StopReason.PRESSURE_LOSS.name,
            "leak diameter",
            "mm",
            edges=(0.5, 1, 1.5, 2, 2.5, 3, 4),
            log_x=False,
            weight=2,
            window_s=3.0,
            draw=_uniform(0.5, 4.0, 2),
            event=lambda size, _sign, _noise: LeakOpen(path="venous", diameter_mm=size),
        ),
        _spec(
            "sensor_stuck",
            "SENSOR_FAULT (stuck)",
            SENSOR,
            "stuck for",
            "ms",
            edges=(50, 100, 150, 190, 210, 300, 600),
            log_x=False,
            weight=1,
            window_s=0.3,
            draw=_whole(50, 600),
            event=lambda size, _sign, _noise: SensorStuck(duration_s=size / 1000.0),
        ),
        _spec(
            "sensor_open",
            "SENSOR_FAULT (open loop)",
            SENSOR,
            "open for",
            "ms",
            edges=(1, 2, 3, 4, 6, 10),
            log_x=False,
            weight=1,
            window_s=0.2,
            draw=_whole(1, 10),
            event=lambda size, _sign, _noise: SensorOpen(duration_s=size / 1000.0),
        ),
        _spec(
            "sensor_short",
            "SENSOR_FAULT (shorted loop)",
            SENSOR,
            "shorted for",
            "ms",
            edges=(1, 2, 3, 4, 6, 10),
            log_x=False,
            weight=1,
            window_s=0.2,
            draw=_whole(1, 10),
            event=lambda size, _sign, _noise: SensorShort(duration_s=size / 1000.0),
        ),
        _spec(
            "sensor_noise",
            "SENSOR_FAULT (noise burst)",
            SENSOR,
            "burst sigma",
            "kPa",
            edges=(20, 50, 80, 100, 150, 200, 500, 1000),
            log_x=True,
            weight=2,
            window_s=0.8,
            draw=_log(20.0, 1000.0, 1),
            event=_sensor_noise,
        ),
        _spec(
            "sensor_drift",
            "SENSOR_FAULT (zero drift)",
            SENSOR,
            "|drift|",
            "kPa/s",
            edges=(1, 3, 10, 30, 100, 300, 1000),
            log_x=True,
            weight=2,
            window_s=5.0,
            draw=_log(1.0, 1000.0, 2),
            event=lambda size, sign, _noise: SensorDrift(rate_kpa_s=sign * size),
        ),
        _spec(
            "motor_stall",
            "MOTOR_STALL",
            StopReason.MOTOR_STALL.name,
            "flow",
            "mL/min",
            edges=(1, 2, 3, 4, 5, 6),
            log_x=False,
            weight=1,
            window_s=1.0,
            event=lambda *_: MotorStall(),
        ),
        _spec(
            "fluoro_pulse",
            "FLUORO_STOP (input line)",
            StopReason.FLUORO_STOP.name,
            "pulse",
            "ms",
            edges=(1, 2, 3, 4, 6, 10),
            log_x=False,
            weight=1,
            window_s=0.2,
            draw=_whole(1, 10),
            event=lambda size, _sign, _noise: FluoroStopLine(asserted=True, duration_s=size / 1000.0),
        ),
        _spec(
            "host_silence",
            "HOST_LOST (watchdog)",
            StopReason.HOST_LOST.name,
            "silence",
            "ms",
            edges=(100, 300, 450, 500, 550, 700, 1000),
            log_x=False,
            weight=1,
            window_s=0.3,
            draw=_whole(100, 1000),
        ),
    )
}
KIND_CYCLE = weighted_cycle([(s.name, s.weight) for s in KINDS.values()])
"""Run i is of kind KIND_CYCLE[i % len]: every kind is covered in proportion to its weight, even for
a small n, and independently of the seed."""


def kind_cycle(kinds: Sequence[str] | None = None) -> list[str]:
    """The cycle of run kinds, restricted to `kinds` (all when None), in the fixed weights."""
    if kinds is None:
        return KIND_CYCLE
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"kinds {unknown or list(kinds)} not known; choose from {', '.join(KINDS)}")
    return weighted_cycle([(s.name, s.weight) for s in KINDS.values() if s.name in kinds])


def kind_of(index: int, kinds: Sequence[str] | None = None) -> str:
    cycle = kind_cycle(kinds)
    return cycle[index % len(cycle)]


Override = tuple[str, bool | int | float]


def parse_override(text: str) -> Override:
    """`NAME=VALUE` for a `ControllerConfig` field, VALUE parsed as that field's type."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    defaults = ControllerConfig()
    if not sep or name not in {f.name for f in fields(ControllerConfig)}:
        raise ValueError(f"--set {text!r}: expected NAME=VALUE with NAME a ControllerConfig field")
    current = getattr(defaults, name)
    try:
        if isinstance(current, bool):
            if raw.strip().lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            value: bool | int | float = raw.strip().lower() in ("true", "1")
        elif isinstance(current, int):
            value = int(raw)
        elif isinstance(current, float):
            value = float(raw)
        else:
            raise ValueError(f"--set {name}: field of type {type(current).__name__} cannot be set here")
    except ValueError:
        kind = type(current).__name__
        raise ValueError(f"--set {name}={raw!r}: not a {kind} (default {current!r})") from None
    try:  # the config's own checks, now rather than in every worker
        controller_config((name, value))
    except ValueError as e:
        raise ValueError(f"--set {name}={value!r}: {e}") from None
    return (name, value)


def controller_config(*overrides: Override) -> ControllerConfig:
    """Default `ControllerConfig` with the overrides applied (its own checks raise ValueError)."""
    changes: dict[str, Any] = dict(overrides)
    return replace(ControllerConfig(), **changes)


@dataclass(frozen=True)
class Conditions:
    """A run's plant and plan, drawn inside nominal conditions."""

    cement: str
    temperature_c: float
    gauge: int
    cannula_length_mm: float
    syringe_bore_mm: float
    bone: str
    flow_ml_min: float
    mixed_ago_s: float
    working_time_s: float
    noise_level: float
    noise_kpa: float
    plant_seed: int
    soft_kpa: float
    hard_kpa: float
    predicted_end_kpa: float
    mode: str
    volume_ml: float
    increment_ml: float
    pause_s: float
    relief: bool
    planned_s: float
    rejected_draws: int


def predicted_pressure_pa(
    cement: str, gauge: int, length_mm: float, flow_ml_min: float, age_s: float, temperature_c: float
) -> float:
    """Steady syringe pressure from the plant's own physics: the cannula drop over its ~95 % share."""
    profile = PROFILES[cement]
    k = profile.consistency_at(age_s, temperature_c)
    q = flow_ml_min * 1e-6 / 60.0
    return (
        Cannula.from_gauge(gauge, length_mm / 1000.0).pressure_drop(q, k, profile.flow_index_n)
        / CANNULA_SHARE
    )


def _max_window_s() -> float:
    return max(s.window_s for s in KINDS.values()) + 1.0  # host silence adds up to 1 s before its window


def check_noise(noise: float | None) -> float | None:
    """A fixed sensor-noise level must be one of NOISE_LEVELS (the report's tables are per level)."""
    if noise is not None and noise not in NOISE_LEVELS:
        allowed = ", ".join(f"{lv:g}" for lv in NOISE_LEVELS)
        raise ValueError(f"--noise {noise:g} is not a sweep noise level; allowed {allowed} (x the spec)")
    return noise


def draw_conditions(rng: np.random.Generator, kind: str, noise: float | None = None) -> Conditions:
    """Nominal conditions for a run of `kind`, redrawn until the plan can run without its limits.
    `noise` fixes the sensor-noise level (a multiple in NOISE_LEVELS); the level is still drawn, so
    every other condition is the one the same run gets without it (a paired comparison)."""
    check_noise(noise)
    rejected = 0
    while True:
        cement = CEMENTS[int(rng.integers(len(CEMENTS)))]
        temperature = round(float(rng.uniform(*TEMPERATURE_C)), 1)
        gauge = GAUGES[int(rng.integers(len(GAUGES)))]
        length = round(float(rng.uniform(*CANNULA_LENGTH_MM)), 1)
        bore = SYRINGE_BORES_MM[int(rng.integers(len(SYRINGE_BORES_MM)))]
        bone = BONES[int(rng.integers(len(BONES)))]
        flow = round(float(rng.uniform(*FLOW_ML_MIN)), 2)
        level = NOISE_LEVELS[int(rng.integers(len(NOISE_LEVELS)))]
        if noise is not None:
            level = noise
        seed = int(rng.integers(2**31))
        relief = bool(rng.random() < 0.75)
        capacity_ml = STROKE_USE * REFERENCE_RIG.travel_m * math.pi * (bore / 2000.0) ** 2 * 1e6
        if kind == "nominal":
            inject_s = float(rng.uniform(*NOMINAL_S))
            volume = round(min(flow * inject_s / 60.0, capacity_ml), 3)
            incremental = bool(rng.random() < 0.5)
            steps = int(rng.integers(2, 5)) if incremental else 1
            increment = round(volume / steps + 0.0005, 3) if incremental else 0.0
            pause = round(float(rng.uniform(*PAUSE_S)), 2) if incremental else 0.0
            planned = volume / flow * 60.0 + (steps - 1) * pause
            mode = "incremental" if incremental else "continuous"
        else:
            planned = MAX_RAMP_S + ONSET_AFTER_STEADY_S[1] + _max_window_s()
            volume = round(min(flow * planned * 1.5 / 60.0 + 0.2, capacity_ml), 3)
            increment, pause, mode = 0.0, 0.0, "continuous"
        cure = PROFILES[cement].cure_time_s(temperature)
        working = WORKING_FRAC_OF_CURE * cure
        latest = working - planned * 1.2 - 10.0
        mixed = float(rng.uniform(EARLIEST_MIX_S, max(latest, EARLIEST_MIX_S)))
        soft, hard = LIMITS_PA[cement]
        p_end = predicted_pressure_pa(cement, gauge, length, flow, mixed + planned, temperature)
        if latest < EARLIEST_MIX_S or p_end > MAX_PRESSURE_FRAC_OF_SOFT * soft:
            rejected += 1
            continue
        return Conditions(
            cement=cement,
            temperature_c=temperature,
            gauge=gauge,
            cannula_length_mm=length,
            syringe_bore_mm=bore,
            bone=bone,
            flow_ml_min=flow,
            mixed_ago_s=round(mixed, 1),
            working_time_s=round(working, 1),
            noise_level=level,
            noise_kpa=NOISE_SPEC_KPA * level,
            plant_seed=seed,
            soft_kpa=soft / 1e3,
            hard_kpa=hard / 1e3,
            predicted_end_kpa=round(p_end / 1e3, 1),
            mode=mode,
            volume_ml=volume,
            increment_ml=increment,
            pause_s=pause,
            relief=relief,
            planned_s=round(planned, 2),
            rejected_draws=rejected,
        )


def draw_size(rng: np.random.Generator, kind: str) -> tuple[float, float]:
    """(size, sign) of the event, drawn by the kind's own row of KINDS (sign is only used by drift;
    drawn first, so every kind consumes the generator in the same order)."""
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return KINDS[kind].draw(rng), sign


@dataclass
class RunOutcome:
    """Parameters and result of one run; `asdict` gives the JSON record."""

    index: int
    kind: str
    conditions: Conditions
    size: float
    """In the kind's size unit (KINDS[kind]); NaN if there is none."""
    status: str = ""
    """Event run: detected | other_stop | missed | stopped_before_onset | refused.
    Nominal run: completed | false_stop | incomplete | refused."""
    stop_reason: str = ""
    """The first stop after the onset (event run), the first non-nominal stop (nominal run), or the
    stop that came before the onset."""
    latency_ms: float = math.nan
    """Onset -> STOP event, controller time, for any stop after the onset."""
    early_onset: bool = False
    """The onset was timed from START (during the ramp), not from steady state."""
    event: dict[str, Any] = field(default_factory=dict)
    """The event as injected: the plant event's fields (e.g. a drift's signed rate), or the silence."""
    onset_s: float = math.nan
    """Controller time of the onset since START."""
    ramp_s: float = math.nan
    steady: bool = False
    """The true pressure was steady before the onset (else the ramp timed out)."""
    throttled_at_onset: bool = False
    rise_armed_at_onset: bool = False
    """The occlusion detector had armed (start-up ramp settled) when the event came."""
    rise_armed_s: float = math.nan
    """Seconds from START to the first arming of the occlusion detector (NaN: not before the onset,
    or the end). With `rise_armed_at_onset`, a diagnostic read from the controller's internals to
    explain occlusion latencies; never used to classify a run."""
    leak_dp_kpa: float = math.nan
    """Leaks: true syringe pressure at the probe minus that of a twin run without the leak (same
    conditions and noise): what the leak itself did to the pressure the sensor sees."""
    pressure_at_onset_kpa: float = math.nan
    """True syringe pressure at the onset."""
    true_dp_kpa: float = math.nan
    """True syringe pressure PROBE_S after the onset (or at the stop) minus at the onset."""
    leak_share: float = math.nan
    """Leak flow / tip flow at the probe (leaks only)."""
    stop_pressure_kpa: float = math.nan
    """Filtered pressure in the STOP event."""
    stops: list[tuple[str, float]] = field(default_factory=list)
    """(reason, s since START) of every STOP event."""
    virtual_s: float = 0.0

    @property
    def detected(self) -> bool:
        return self.status == "detected"

    @property
    def stopped_after_onset(self) -> bool:
        return self.status in ("detected", "other_stop")

    @property
    def false_stop(self) -> bool:
        """A stop that nothing injected called for: in a nominal run, or before an event's onset."""
        return (
            self.status in ("false_stop", "stopped_before_onset") and self.stop_reason not in NOMINAL_REASONS
        )


def reason_name(stop: Event) -> str:
    if stop.reason == StopReason.PRESSURE_RISE and stop.detail:
        return f"{stop.reason.name}/{StopDetail(stop.detail).name}"
    return stop.reason.name


def make_rig(c: Conditions, config: ControllerConfig | None = None) -> tuple[VirtualRig, str]:
    """A rig in INJECTING for conditions `c`; '' or why ARM/START was refused."""
    plant = PlantConfig(
        cement=c.cement,  # type: ignore[arg-type]
        temperature_c=c.temperature_c,
        cannula_gauge=c.gauge,  # type: ignore[arg-type]
        cannula_length_mm=c.cannula_length_mm,
        syringe_bore_mm=c.syringe_bore_mm,
        bone=c.bone,  # type: ignore[arg-type]
        mixed_ago_s=c.mixed_ago_s,
        sensor_noise_kpa=c.noise_kpa,
        seed=c.plant_seed,
    )
    rig = VirtualRig(plant, config or ControllerConfig())
    rig.connect()
    plan: dict[str, Any] = {
        "mode": Mode.INCREMENTAL if c.mode == "incremental" else Mode.CONTINUOUS,
        "plan_flags": PlanFlags.RELIEF if c.relief else PlanFlags.NONE,
        "flow_nl_s": round(c.flow_ml_min * 1e6 / 60.0),
        "volume_limit_nl": round(c.volume_ml * 1e6),
        "increment_nl": round(c.increment_ml * 1e6),
        "soft_limit_pa": round(c.soft_kpa * 1e3),
        "hard_limit_pa": round(c.hard_kpa * 1e3),
        "working_time_ms": round(c.working_time_s * 1000),
    }
    for step, reply in (("ARM", rig.arm(**plan)), ("START", rig.start())):
        if not isinstance(reply, Ack):
            return rig, f"{step} refused: {reply}"
    return rig, ""


def _ended(rig: VirtualRig) -> bool:
    return rig.controller.state in ENDED


def _record_stops(out: RunOutcome, rig: VirtualRig, t0_us: int) -> None:
    out.stops = [(reason_name(e), round((e.t_us - t0_us) / 1e6, 4)) for e in rig.stop_events()]
    out.virtual_s = round((rig.now_us - t0_us) / 1e6, 4)


class ArmTracker:
    """An `until` for VirtualRig.run: notes when the occlusion detector first arms, stops on an end."""

    def __init__(self, out: RunOutcome, t0_us: int) -> None:
        self.out = out
        self.t0_us = t0_us

    def __call__(self, rig: VirtualRig) -> bool:
        if math.isnan(self.out.rise_armed_s) and rig.controller.rise_armed:
            self.out.rise_armed_s = round((rig.now_us - self.t0_us) / 1e6, 3)
        return rig.controller.state in ENDED


def run_nominal(out: RunOutcome, rig: VirtualRig) -> None:
    """Inject to the planned end (resuming after each increment); any other stop is a false stop."""
    c = out.conditions
    t0 = rig.now_us
    ended = ArmTracker(out, t0)
    budget_us = round((3.0 * c.planned_s + 10.0) * 1e6)
    while rig.now_us - t0 < budget_us:
        rig.run((budget_us - (rig.now_us - t0)) / 1e6, until=ended)
        if rig.controller.state == State.PAUSED and rig.controller.stop_reason == StopReason.INCREMENT_DONE:
            rig.run(c.pause_s, until=rig.state_is(State.STOPPED, State.FAULT))
            if rig.controller.state == State.PAUSED:
                reply = rig.command(Resume)
                if not isinstance(reply, Ack):
                    out.status, out.stop_reason = "refused", f"RESUME refused: {reply}"
                    _record_stops(out, rig, t0)
                    return
                continue
        break
    _record_stops(out, rig, t0)
    false = [(r, t) for r, t in out.stops if r not in NOMINAL_REASONS]
    if false:
        out.status, out.stop_reason = "false_stop", false[0][0]
        out.latency_ms = false[0][1] * 1000.0
    elif rig.controller.state == State.DONE:
        out.status, out.stop_reason = "completed", StopReason.VOLUME_LIMIT.name
    else:
        out.status = "incomplete"


def wait_steady(
    rig: VirtualRig, max_s: float, until: Callable[[VirtualRig], bool] = _ended
) -> tuple[bool, float]:
    """Run until the true syringe pressure is steady; (steady, seconds waited). Stops early if the
    controller leaves INJECTING."""
    history: deque[float] = deque(maxlen=11)  # 10 ms apart: the last 100 ms
    t0 = rig.now_us
    while rig.now_us - t0 < max_s * 1e6:
        if rig.run(0.01, until=until):
            break
        history.append(rig.plant.syringe_pressure_pa)
        if len(history) == history.maxlen:
            p = history[-1]
            if p > 0 and abs(p - history[0]) < STEADY_REL_PER_S * 0.1 * p:
                return True, (rig.now_us - t0) / 1e6
    return False, (rig.now_us - t0) / 1e6


def twin_pressure_pa(c: Conditions, at_us: int, config: ControllerConfig) -> float:
    """True syringe pressure at `at_us` of the same run without its event. Up to the onset the twin
    is the run itself (same conditions, plant seed and commands), so no onset needs replaying."""
    rig, refused = make_rig(c, config)
    if refused:
        return math.nan
    rig.run((at_us - rig.now_us) / 1e6)
    return rig.plant.syringe_pressure_pa


def _event_for(kind: str, size: float, sign: float, noise_kpa: float) -> PlantEvent | None:
    """The plant event of the kind's own row of KINDS (None: nominal, or host silence, which the
    host side plays)."""
    return KINDS[kind].event(size, sign, noise_kpa)


def run_event(out: RunOutcome, rig: VirtualRig, sign: float, onset_delay_s: float) -> None:
    """Steady state, the event at its onset, then the kind's window; classify the first stop."""
    spec = KINDS[out.kind]
    c = out.conditions
    t0 = rig.now_us
    tracker = ArmTracker(out, t0)
    if not out.early_onset:
        out.steady, out.ramp_s = wait_steady(rig, MAX_RAMP_S, tracker)
    if not _ended(rig):
        rig.run(onset_delay_s, until=tracker)
    if out.kind == "host_silence" and not _ended(rig):
        # The silence starts at the host's last frame: wait for the next heartbeat, then go quiet.
        rig.run(0.2, until=lambda r: r.last_heartbeat_us == r.now_us - 1000 or _ended(r))
    if _ended(rig):
        _record_stops(out, rig, t0)
        out.status = "stopped_before_onset"
        out.stop_reason = out.stops[0][0] if out.stops else rig.controller.state.name
        return
    plant = rig.plant
    out.throttled_at_onset = bool(rig.controller.flags & Flags.THROTTLING)
    out.rise_armed_at_onset = bool(rig.controller.rise_armed)
    p0 = plant.syringe_pressure_pa
    out.pressure_at_onset_kpa = round(p0 / 1e3, 2)
    if out.kind in ("disconnection",):
        out.size = out.pressure_at_onset_kpa
    elif out.kind == "motor_stall":
        out.size = c.flow_ml_min
    event = _event_for(out.kind, out.size, sign, c.noise_kpa)
    if event is not None:
        out.event = event.model_dump()
        plant.schedule(event)
        onset_us = round(plant.fired_events[-1].t_s * 1e6)
    else:  # host silence: from the last heartbeat, which the controller read at that tick
        out.event = {"kind": "host_silence", "silence_ms": out.size}
        onset_us = rig.last_heartbeat_us
        rig.heartbeats = False
        rig.run((onset_us + out.size * 1000.0 - rig.now_us) / 1e6, until=_ended)
        rig.heartbeats = True
    out.onset_s = round((onset_us - t0) / 1e6, 4)
    probe_end = onset_us + PROBE_S * 1e6
    rig.run(max(0.0, (probe_end - rig.now_us) / 1e6), until=_ended)
    out.true_dp_kpa = round((plant.syringe_pressure_pa - p0) / 1e3, 3)
    if out.kind.startswith("leak"):
        if plant.tip_flow_m3_s > 0:
            out.leak_share = round(plant.leak_flow_m3_s / plant.tip_flow_m3_s, 4)
        twin = twin_pressure_pa(c, rig.now_us, rig.controller_config)
        out.leak_dp_kpa = round((plant.syringe_pressure_pa - twin) / 1e3, 3)
    window_end = onset_us + spec.window_s * 1e6
    if out.kind == "host_silence":
        window_end += out.size * 1000.0
    if not _ended(rig) and rig.now_us < window_end:
        rig.run((window_end - rig.now_us) / 1e6, until=_ended)
    _record_stops(out, rig, t0)
    after = [e for e in rig.stop_events() if e.t_us >= onset_us]
    if not after:
        out.status = "missed"
        return
    first = after[0]
    out.stop_reason = reason_name(first)
    out.latency_ms = round((first.t_us - onset_us) / 1000.0, 3)
    out.stop_pressure_kpa = round(first.pressure_pa / 1e3, 2)
    out.status = "detected" if out.stop_reason in spec.expected else "other_stop"


@dataclass(frozen=True)
class RunSpec:
    """Everything a run is drawn with; `play` turns it into an outcome."""

    index: int
    kind: str
    conditions: Conditions
    size: float
    sign: float
    onset_delay_s: float
    early: bool


def draw_run(
    master_seed: int, index: int, kinds: Sequence[str] | None = None, noise: float | None = None
) -> RunSpec:
    """Run `index` of master seed `master_seed`: its kind from the index, the rest from its own seed
    (sensor noise fixed at `noise` x the spec if given)."""
    rng = np.random.default_rng(derive_seed(master_seed, index))
    kind = kind_of(index, kinds)
    conditions = draw_conditions(rng, kind, noise)
    size, sign = draw_size(rng, kind)
    early = bool(rng.random() < KINDS[kind].early_share)
    onset_delay = float(rng.uniform(*(ONSET_AFTER_START_S if early else ONSET_AFTER_STEADY_S)))
    if kind == "nominal":
        size = conditions.flow_ml_min
    return RunSpec(index, kind, conditions, size, sign, onset_delay, early)


def play(spec: RunSpec, config: ControllerConfig | None = None) -> RunOutcome:
    """Play one run on a fresh virtual rig with controller parameters `config` (default: defaults)."""
    out = RunOutcome(
        index=spec.index, kind=spec.kind, conditions=spec.conditions, size=spec.size, early_onset=spec.early
    )
    rig, refused = make_rig(spec.conditions, config)
    if refused:
        out.status, out.stop_reason = "refused", refused
        return out
    if spec.kind == "nominal":
        run_nominal(out, rig)
    else:
        run_event(out, rig, spec.sign, spec.onset_delay_s)
    return out


def run_one(
    master_seed: int,
    index: int,
    kinds: Sequence[str] | None = None,
    overrides: Sequence[Override] = (),
    noise: float | None = None,
) -> RunOutcome:
    """Run `index` of the sweep with master seed `master_seed` (kinds restricted to `kinds`, controller
    parameters `overrides`, sensor noise fixed at `noise`): the same arguments, the same outcome."""
    return play(draw_run(master_seed, index, kinds, noise), controller_config(*overrides))
