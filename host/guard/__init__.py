"""The fluoroscopic guard (issue 15): watches the fluoroscopy image and stops the pump itself when the
cement nears the posterior quarter, leaves the body, or fills a vein; goes BLIND, says so, and stops
where configured when it cannot see. The core is pure (host/guard/guard.py); the worker that runs it
beside a device link is host/guard/worker.py. docs/fluoroscopy.md, "Guard"."""

from host.guard.config import GuardConfig
from host.guard.guard import Guard, GuardStatus, GuardStep
from host.guard.region import BodyRegion

__all__ = ["BodyRegion", "Guard", "GuardConfig", "GuardStatus", "GuardStep"]
