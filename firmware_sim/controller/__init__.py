"""The controller core: a deterministic, tick-driven reference implementation of the pump firmware.

No clock, no I/O, scalar arithmetic and fixed-size buffers only (tests/test_architecture.py checks
the imports). See docs/controller.md and docs/state-machine.md.
"""

from firmware_sim.controller.config import DEFAULT_IDENTITY, ControllerConfig, FirmwareIdentity
from firmware_sim.controller.core import Controller, TickOutput

__all__ = ["DEFAULT_IDENTITY", "Controller", "ControllerConfig", "FirmwareIdentity", "TickOutput"]
