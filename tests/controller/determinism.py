"""Byte-stream digests of the controller's behaviour over a fixed set of scenarios: what a change that
must not move any outcome (a cheaper tick, a refactor) is checked against.

Each scenario is a pure function of its definition: the fake plant (`tests.controller.harness.Rig`,
seeded) for the injections, occlusions at several phases, leaks, sensor faults, movements and setup
commands; the real plant through the whole virtual rig (`hil._sweep_runs`, one run per kind, seeded)
for the sweep's event kinds. Its digest is a SHA-256 over everything the controller produced, tick
by tick: every outgoing message as the device encodes it (telemetry samples, events with their
timestamps and details, replies, heartbeats) and the motor's step rate (exact, `float.hex`). One
decision taken at another sample, one flag bit or one telemetry byte changes it.

The expected digests (`tick_digests.json`) were recorded from the code before the change they
guard; re-record them only for a deliberate behaviour change, from the commit that makes it:

    .venv/bin/python -m tests.controller.determinism --record   # rewrites tick_digests.json
    .venv/bin/python -m tests.controller.determinism            # prints mismatches, exit 1 if any
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from firmware_sim.virtual_rig import VirtualRig
from hil import _sweep_runs
from protocol import (
    Clear,
    GetStatus,
    Mode,
    Pause,
    PlanFlags,
    Resume,
    SetLimits,
    SetTelemetry,
    Start,
    State,
    Stop,
    StopSource,
    encode_frame,
)
from protocol.messages import CalibrateSpan, GetCalibration, GetMotion, Message, Zero
from tests.controller.fakeplant import FakePlant
from tests.controller.harness import Rig, nominal_run
from tests.controller.test_motion_states import home, jog, prime, withdraw

DIGESTS = Path(__file__).with_name("tick_digests.json")

MOVEMENT_STATES = frozenset({State.PRIMING, State.JOGGING, State.WITHDRAWING, State.HOMING})


class DigestRig(Rig):
    """The in-process rig, hashing every tick's output as the device would send it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.digest = hashlib.sha256()

    def tick(self, received: Any = ()) -> list[Message]:
        outgoing = super().tick(received)
        h = self.digest
        for seq, message in enumerate(outgoing):
            h.update(encode_frame(message, seq))
        h.update(self.rates[-1].hex().encode())
        return outgoing


def _digest_rig(plant: FakePlant | None = None, **kwargs: Any) -> DigestRig:
    return DigestRig(plant=plant or FakePlant(), **kwargs)


def _started(plant: FakePlant | None = None, **arm: Any) -> DigestRig:
    rig = _digest_rig(plant)
    rig.hello()
    rig.arm(**arm)
    rig.ok(Start)
    return rig


def _finish(rig: DigestRig, seconds: float = 4.0) -> str:
    """Run on until the plunger has rested 0.5 s in a latched or final state (relief done), at most
    `seconds`; a CLEAR then, which a quiet sensor and a still plunger allow."""
    rest = 0
    for _ in range(round(seconds * 1000)):
        rig.tick()
        still = rig.c.step_rate_hz == 0.0 and not rig.c.relief_active
        rest = rest + 1 if still and rig.c.state in (State.STOPPED, State.FAULT, State.DONE) else 0
        if rest >= 500:
            break
    rig.command(Clear)
    rig.run(0.05)
    return rig.digest.hexdigest()


# -- the fake plant's scenarios ------------------------------------------------------------------------
def nominal(seed: int) -> str:
    """`harness.nominal_run`: a random plan (increments, relief, resumes) to its end, hashed."""
    digest = hashlib.sha256()
    rig = nominal_run(seed)
    for message in [*rig.events, *rig.batches, *rig.heartbeats_rx, *rig.replies]:
        digest.update(encode_frame(message, 0))
    digest.update(repr(rig.rates).encode())
    digest.update(repr([int(s) for s in rig.states]).encode())
    return digest.hexdigest()


def occlusion(at_s: float, relief: bool = True, flow_nl_s: int = 50_000) -> str:
    """The line occludes `at_s` after START: during the start-up ramp (the slope test not armed: the
    ceiling's no-flow stop), just after the test arms (1.25 s at 3 mL/min), in the steady injection."""
    rig = _started(
        plan_flags=PlanFlags.RELIEF if relief else PlanFlags.NONE,
        flow_nl_s=flow_nl_s,
        volume_limit_nl=2_000_000,
        soft_limit_pa=5_000_000,
        hard_limit_pa=7_000_000,
    )
    rig.run(at_s)
    rig.plant.occluded = True
    rig.run(8.0, lambda r: r.c.state != State.INJECTING)
    rig.plant.occluded = False
    return _finish(rig)


def plant_fault(name: str, value: Any, at_s: float = 1.5, for_s: float = 0.0) -> str:
    """A plant attribute (leak, sensor loop, stuck ADC, extra noise, stall, fluoroscopy line) set
    `at_s` after START, for `for_s` (0: to the end)."""
    rig = _started(plan_flags=PlanFlags.RELIEF, volume_limit_nl=2_000_000)
    rig.run(at_s)
    before = getattr(rig.plant, name)
    setattr(rig.plant, name, value)
    if for_s:
        rig.run(for_s)
        setattr(rig.plant, name, before)
    rig.run(3.0, lambda r: r.c.state != State.INJECTING)
    setattr(rig.plant, name, before)
    return _finish(rig)


def incremental_with_pauses() -> str:
    """Increments with relief, a PAUSE and RESUME, SET_LIMITS and SET_TELEMETRY while injecting, a
    throttled stretch (a stiff cement at a low soft limit), then an operator STOP."""
    plant = FakePlant(seed=5, viscosity_pas=300.0, viscosity_rate_per_s=0.02)
    rig = _started(
        plant,
        mode=Mode.INCREMENTAL,
        increment_nl=150_000,
        plan_flags=PlanFlags.RELIEF,
        soft_limit_pa=2_500_000,
        hard_limit_pa=6_000_000,
        volume_limit_nl=2_000_000,
    )
    for _ in range(3):
        rig.run(6.0, lambda r: r.c.state == State.PAUSED and not r.c.relief_active)
        rig.command(Resume)
    rig.command(lambda i: SetTelemetry(i, 2, 10))
    rig.run(0.7)
    rig.command(Pause)
    rig.run(0.4)
    rig.command(Resume)
    rig.command(lambda i: SetLimits(i, soft_limit_pa=1_500_000))
    rig.run(2.0)
    rig.command(GetStatus)
    rig.command(lambda i: Stop(i, StopSource.OPERATOR))
    return _finish(rig)


def host_lost() -> str:
    """The host falls silent during the injection (HOST_LOST at the watchdog)."""
    rig = _started(plan_flags=PlanFlags.RELIEF)
    rig.run(1.2)
    rig.heartbeats = False
    rig.run(2.0)
    rig.heartbeats = True
    rig.hello()
    return _finish(rig)


def movements() -> str:
    """PRIME to its mark, JOG forward held and released, JOG back, WITHDRAW, HOME, a PRIME that
    occludes (PRESSURE_RISE and the relief of a stopped forward movement), a JOG into the usable
    end, setup commands (ZERO, CALIBRATE_SPAN, GET_CALIBRATION, GET_MOTION) in IDLE."""
    rig = _digest_rig(FakePlant(seed=9, position_m=0.030))
    rig.hello()
    visited: set[State] = set()

    def until_idle(seconds: float = 6.0) -> None:
        rig.run(seconds, lambda r: (visited.add(r.c.state), r.c.state == State.IDLE)[1])

    rig.command(prime(volume_nl=200_000, flow_nl_s=40_000))
    until_idle()
    for _ in range(4):
        rig.command(jog(speed_um_s=300, hold_ms=150))
        rig.run(0.1)
    until_idle()
    rig.command(jog(speed_um_s=-400, hold_ms=250))
    until_idle()
    rig.command(withdraw(volume_nl=150_000, flow_nl_s=30_000))
    rig.run(0.2)
    rig.command(GetMotion)
    until_idle()
    rig.command(home(speed_um_s=2_000))
    until_idle(20.0)
    rig.command(prime(volume_nl=400_000, flow_nl_s=60_000))
    rig.run(0.8)
    rig.plant.occluded = True
    rig.run(3.0, lambda r: r.c.state != State.PRIMING)
    rig.plant.occluded = False
    rig.run(3.5)
    rig.command(Clear)
    rig.run(0.1)
    rig.command(lambda i: Zero(i, 1_760_000_000))
    rig.command(lambda i: CalibrateSpan(i, 0, 1_760_000_000))
    rig.command(GetCalibration)
    rig.plant.position_m = rig.plant.hw.travel_m - 0.0015
    rig.plant.max_position_m = rig.plant.position_m
    rig.run(0.05)
    for _ in range(8):
        rig.command(jog(speed_um_s=1_000, hold_ms=150))
        rig.run(0.1)
    until_idle()
    rig.command(GetMotion)
    rig.run(0.05)
    missing = MOVEMENT_STATES - visited
    if missing:
        raise AssertionError(f"the movement scenario never reached {sorted(s.name for s in missing)}")
    return rig.digest.hexdigest()


# -- the real plant, through the whole virtual rig (the sweep's run kinds) ----------------------------
class _HashingVirtualRig(VirtualRig):
    """The virtual rig, hashing every byte the device sends (as the host receives them)."""

    digest: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        link = self.link
        take = link.take_from_device
        digest = _HashingVirtualRig.digest

        def hashed() -> bytes:
            data = take()
            digest.update(data)
            return data

        link.take_from_device = hashed  # type: ignore[method-assign]


@contextmanager
def _hashing_sweep_rig() -> Iterator[Any]:
    digest = hashlib.sha256()
    _HashingVirtualRig.digest = digest
    saved = _sweep_runs.VirtualRig
    _sweep_runs.VirtualRig = _HashingVirtualRig  # type: ignore[misc]
    try:
        yield digest
    finally:
        _sweep_runs.VirtualRig = saved  # type: ignore[misc]
        _HashingVirtualRig.digest = None


def sweep_run(kind: str, index: int, seed: int = 18) -> str:
    """Run `index` of the sweep restricted to `kind` (master seed `seed`): its device bytes and outcome."""
    with _hashing_sweep_rig() as digest:
        out = _sweep_runs.run_one(seed, index, [kind])
    digest.update(repr((out.status, out.stop_reason, out.stops, out.virtual_s)).encode())
    return str(digest.hexdigest())


SWEEP_KINDS = (
    "nominal",
    "occlusion",
    "occlusion_early",
    "disconnection",
    "leak_cortical",
    "sensor_stuck",
    "sensor_open",
    "sensor_short",
    "sensor_noise",
    "sensor_drift",
    "motor_stall",
    "fluoro_pulse",
    "host_silence",
)

SCENARIOS: dict[str, Callable[[], str]] = {
    "nominal_fake_3": lambda: nominal(3),
    "nominal_fake_8": lambda: nominal(8),
    "occlusion_ramp_0.05s": lambda: occlusion(0.05),
    "occlusion_armed_1.26s": lambda: occlusion(1.26),
    "occlusion_1.7s": lambda: occlusion(1.7),
    "occlusion_2.5s_no_relief": lambda: occlusion(2.5, relief=False),
    "occlusion_slow_1.5s": lambda: occlusion(1.5, flow_nl_s=30_000),
    "leak": lambda: plant_fault("leak_factor", 40.0),
    "sensor_open": lambda: plant_fault("open_loop", True),
    "sensor_short": lambda: plant_fault("shorted_loop", True),
    "sensor_stuck": lambda: plant_fault("stuck_adc", 20_000),
    "sensor_noise": lambda: plant_fault("extra_noise_pa", 80_000.0),
    "stall": lambda: plant_fault("stalled", True),
    "fluoro_pulse": lambda: plant_fault("fluoro", True, for_s=0.03),
    "incremental_pauses_throttle": incremental_with_pauses,
    "host_lost": host_lost,
    "movements": movements,
    **{f"sweep_{kind}_{i}": (lambda k=kind, i=i: sweep_run(k, i)) for kind in SWEEP_KINDS for i in (0, 1)},
}


def compute(names: list[str] | None = None) -> dict[str, str]:
    return {name: SCENARIOS[name]() for name in names or SCENARIOS}


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--record", action="store_true", help=f"write the digests to {DIGESTS.name}")
    args = parser.parse_args(argv)
    got = compute()
    if args.record:
        DIGESTS.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(got)} digests in {DIGESTS}")
        return 0
    expected = json.loads(DIGESTS.read_text())
    bad = [name for name in sorted(set(got) | set(expected)) if got.get(name) != expected.get(name)]
    for name in bad:
        print(f"MISMATCH {name}: {expected.get(name)} -> {got.get(name)}")
    print(f"{len(got) - len(bad)} of {len(got)} scenarios unchanged")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
