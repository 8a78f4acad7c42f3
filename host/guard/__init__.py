"""The fluoroscopic guard (issue 15): watches the fluoroscopy image and stops the pump itself when the
cement nears the posterior quarter, leaves the body, or fills a vein; goes BLIND, says so, and stops
where configured when it cannot see. The core is pure (host/guard/guard.py); the worker that runs it
beside a device link is host/guard/worker.py. docs/fluoroscopy.md, "Guard".

The names below are loaded on first use: `cementguard run` and the dashboard import the options
(host/guard/options.py) at start-up, and opencv only when a guard is asked for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.guard.config import GuardConfig
    from host.guard.guard import Guard, GuardStatus, GuardStep
    from host.guard.region import BodyRegion

__all__ = ["BodyRegion", "Guard", "GuardConfig", "GuardStatus", "GuardStep"]

_WHERE = {
    "BodyRegion": "host.guard.region",
    "Guard": "host.guard.guard",
    "GuardConfig": "host.guard.config",
    "GuardStatus": "host.guard.guard",
    "GuardStep": "host.guard.guard",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'host.guard' has no attribute {name!r}")
