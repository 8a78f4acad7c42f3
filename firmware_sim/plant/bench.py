"""Per-tick cost of `Plant.sense()` + `Plant.step()`: ``python -m firmware_sim.plant.bench``.

The controller and the plant together must run >= 100x real time at a 1 kHz tick, i.e. within 10 us
per tick; the plant's share is budgeted at ~4 us. Measured with timeit over a nominal injection
(3 mL/min, sensor noise on), with and without an open leak (the leak split adds a bisection every
10 ms), best of several repeats.
"""

from __future__ import annotations

import argparse
import timeit

from firmware_sim.hal import MotorCommand
from firmware_sim.plant.config import PlantConfig
from firmware_sim.plant.events import LeakOpen
from firmware_sim.plant.plant import Plant


def tick_cost_us(config: PlantConfig, ticks: int = 100_000, repeats: int = 5) -> float:
    """Best-of-`repeats` microseconds per sense() + step(cmd, 1e-3) pair over `ticks` ticks."""
    plant = Plant(config)
    cmd = MotorCommand(3e-6 / 60.0 / (plant.bore_area_m2 * plant.hardware.plunger_m_per_step))
    sense, step = plant.sense, plant.step

    def loop() -> None:
        for _ in range(ticks):
            sense()
            step(cmd, 1e-3)

    loop()  # warm up into steady injection
    return min(timeit.repeat(loop, number=1, repeat=repeats)) / ticks * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.plant.bench", description=__doc__)
    parser.add_argument("--ticks", type=int, default=100_000)
    args = parser.parse_args(argv)
    nominal = tick_cost_us(PlantConfig(), args.ticks)
    leaking = tick_cost_us(PlantConfig(events=(LeakOpen(path="venous", diameter_mm=2.0),)), args.ticks)
    print(f"plant sense()+step(): {nominal:.2f} us/tick nominal, {leaking:.2f} us/tick with a leak open")
    print(f"plant alone: {1000.0 / nominal:.0f}x real time at 1 kHz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
