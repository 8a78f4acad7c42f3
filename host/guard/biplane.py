"""Two views, one guard: a `Guard` per view of a biplane stream, the stop from either, the state the
worst of both.

Why. A venous leak can be invisible in one projection and plain in the other: a segmental vein runs
out of the lateral cortex along the beam of the lateral view (it projects onto the body and the
cannula's track), and across the AP view, where it leaves the outline sideways. The basivertebral
vein is the other way round. Biplane C-arms (and a single C-arm swung between the views) give both;
`firmware_sim/imaging` renders both, alternating pulses on one stream.

Every frame goes to the guard of its view (`frame.view`); each learns its own baseline and outline.
The views may come on one stream (pulses alternating) or on two sources (`cementguard run --frames
URL --frames-ap URL`, host/guard/worker.py): then a source that is lost or refuses a frame blinds
its own view only (`lost(..., view=)`, `rejected(..., view=)`), and the other keeps watching.
The stream's state is the worst of the views': STOPPED (either view's rule) over BLIND (either
cannot see: a biplane guard that loses one view is blind, as one dead sensor of two is a fault) over
WATCHING. A stop asked for by either view's guard goes out at once; neither starts anything.

    guard = BiplaneGuard(GuardConfig())                        # views ("lateral", "ap")
    step = guard.frame(frame, now_s, pump_state)               # as Guard
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from host.frames import FluoroFrame
from host.guard.config import GuardConfig
from host.guard.guard import Guard, GuardStatus, GuardStep
from host.guard.region import BodyRegion
from protocol import State

__all__ = ["BIPLANE_VIEWS", "BiplaneGuard"]

log = logging.getLogger(__name__)

BIPLANE_VIEWS: tuple[str, ...] = ("lateral", "ap")
_RANK = {"WATCHING": 0, "BLIND": 1, "STOPPED": 2}


class BiplaneGuard:
    """A guard per view. The same calls as `Guard`; `guards[view]` is the view's own."""

    def __init__(
        self,
        config: GuardConfig | None = None,
        regions: dict[str, BodyRegion] | None = None,
        views: tuple[str, ...] = BIPLANE_VIEWS,
    ) -> None:
        if not views or len(set(views)) != len(views) or any(v not in BIPLANE_VIEWS for v in views):
            raise ValueError(f"views: {views!r}; allowed 'lateral', 'ap' or both, each once")
        regions = regions or {}
        unknown = set(regions) - set(views)
        if unknown:
            raise ValueError(
                f"regions: view {sorted(unknown)[0]!r} is not watched; allowed {', '.join(views)}"
            )
        self.config = config or GuardConfig()
        self.views = views
        self.guards = {v: Guard(self.config, regions.get(v)) for v in views}
        self._status = self._worst()
        self.stop_view: str | None = None
        """The view whose guard asked for the last step's stop (None: the step asked for none)."""

    @property
    def status(self) -> GuardStatus:
        return self._status

    @property
    def region(self) -> BodyRegion | None:
        """The first view's outline (the lateral one in a biplane pair): what a one-frame screen draws."""
        return self.guards[self.views[0]].region

    def region_of(self, view: str) -> BodyRegion | None:
        """The outline the guard of `view` judges with (None: not found yet)."""
        return self._guard(view).region

    def status_of(self, view: str) -> GuardStatus:
        """The state of `view`'s own guard (the stream's state is the worst of these)."""
        return self._guard(view).status

    def set_region(self, region: BodyRegion, view: str = "lateral") -> None:
        self._guard(view).set_region(region)

    def relearn(self) -> None:
        for g in self.guards.values():
            g.relearn()

    def frame(self, frame: FluoroFrame, now_s: float, pump: State | None) -> GuardStep:
        """Judged by the guard of `frame.view`; the others' gap clocks run. A frame of a view this
        guard does not watch counts as a bad frame of every view (a miswired source)."""
        guard = self.guards.get(frame.view)
        if guard is None:
            why = f"frame {frame.index} is a {frame.view!r} view; this guard watches {', '.join(self.views)}"
            return self.rejected(why, now_s, pump)
        step = guard.frame(frame, now_s, pump)
        stop_view = frame.view if step.stop is not None else None
        for view, other in self.guards.items():
            if view != frame.view:
                extra = other.tick(now_s, pump)
                if extra.stop is not None and step.stop is None:
                    step = replace(step, stop=extra.stop)
                    stop_view = view
        self.stop_view = stop_view
        return self._combined(step)

    def tick(self, now_s: float, pump: State | None) -> GuardStep:
        return self._all(lambda g: g.tick(now_s, pump))

    def lost(self, reason: str, now_s: float, pump: State | None, view: str | None = None) -> GuardStep:
        """The source is gone: of `view` alone (its own source, when each view has one), else of all."""
        return self._all(lambda g: g.lost(reason, now_s, pump), view)

    def rejected(self, reason: str, now_s: float, pump: State | None, view: str | None = None) -> GuardStep:
        """A frame the source refused: counted against `view` (its own source), else every view."""
        return self._all(lambda g: g.rejected(reason, now_s, pump), view)

    # -- combining ----------------------------------------------------------------------------

    def _guard(self, view: str) -> Guard:
        try:
            return self.guards[view]
        except KeyError:
            raise ValueError(f"view: {view!r}; allowed {', '.join(self.views)}") from None

    def _all(self, call: Callable[[Guard], GuardStep], view: str | None = None) -> GuardStep:
        """`call` on every view's guard (or on `view`'s alone); the first step that asks for a stop
        (else the first step), with the combined state."""
        if view is not None:
            self._guard(view)  # ValueError naming a view this guard does not watch
        views = self.views if view is None else (view,)
        steps = [(v, call(self.guards[v])) for v in views]
        stop_view, first = next(((v, s) for v, s in steps if s.stop is not None), (None, steps[0][1]))
        self.stop_view = stop_view
        return self._combined(first)

    def _worst(self) -> GuardStatus:
        statuses = [g.status for g in self.guards.values()]
        worst = max(statuses, key=lambda s: _RANK[s.state])
        if worst.state == "BLIND" and len(self.views) > 1:
            view = next(v for v, g in self.guards.items() if g.status == worst)
            return GuardStatus("BLIND", f"{view}: {worst.reason}")
        return worst

    def _combined(self, step: GuardStep) -> GuardStep:
        before = self._status
        self._status = self._worst()
        if step.stop is not None:
            log.warning("guard: %s asks for a stop", step.status.label)
        return replace(step, status=self._status, changed=self._status != before)
