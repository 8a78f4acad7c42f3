"""The simulated hardware: motor and lead screw, syringe, PMMA cement, cannula, vertebral body, leaks,
faults and the pressure sensor. See docs/simulator.md for the model and its sources.

`Plant` consumes `MotorCommand`s and produces `SensorFrame`s (firmware_sim.hal), so the controller
cannot tell it from a rig; its read-only truth properties are for tests, benchmarks and HIL reports.
"""

from firmware_sim.plant.cement import PROFILES, CementProfile
from firmware_sim.plant.config import SYRINGE_BORE_MM, PlantConfig
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
    parse_event,
)
from firmware_sim.plant.plant import CementState, FiredEvent, Plant

__all__ = [
    "PROFILES",
    "SYRINGE_BORE_MM",
    "CementProfile",
    "CementState",
    "Disconnection",
    "EndSwitch",
    "FiredEvent",
    "FluoroStopLine",
    "LeakOpen",
    "MotorStall",
    "Occlusion",
    "Plant",
    "PlantConfig",
    "PlantEvent",
    "SensorDrift",
    "SensorNoiseBurst",
    "SensorOpen",
    "SensorShort",
    "SensorStuck",
    "parse_event",
]
