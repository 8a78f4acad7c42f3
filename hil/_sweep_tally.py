"""The sweep's figures, tallied run by run: what the report states, without keeping the runs.

`SweepTally.add` takes one outcome at a time (the report feeds it batch by batch from the Parquet
store), so memory holds counters and, per table cell, the values whose percentiles are reported
(latency of detected event runs, leak shares and pressure falls): 8 bytes per such run, never a run's
record. The same tally serves a list of outcomes in memory (`tally(outcomes)`).

Intervals: detection rates carry the two-sided 95 % Wilson score interval (Wilson, 1927); false-stop
rates the one-sided 95 % exact upper bound of Clopper and Pearson (1934), which for 0 events in N runs
is 1 - 0.05^(1/N), about 3/N.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from hil._sweep_runs import KINDS, NOISE_LEVELS, NOMINAL_REASONS, OCCLUSION_REASONS, RunOutcome
from hil._sweep_stats import (
    CellStats,
    bin_index,
    bin_label,
    clopper_pearson_upper,
    counted_cell_stats,
    percentile,
)
from protocol import StopReason

EVALUATED = ("detected", "other_stop", "missed")
"""Event-run statuses that count towards detection (a stop before the onset is a false stop, not a
detection trial)."""
ALL = "all"
CONFIDENCE = 0.95

FALSE_STOP_DETECTORS: tuple[str, ...] = (
    *sorted(OCCLUSION_REASONS),
    *(
        r.name
        for r in StopReason
        if r.name not in NOMINAL_REASONS
        and r
        not in (StopReason.NONE, StopReason.OPERATOR_STOP, StopReason.PRESSURE_RISE, StopReason.OVERPRESSURE)
    ),
)
"""Every stop reason (and PRESSURE_RISE detail) a nominal run could be stopped by without an operator:
each gets a false-stop bound, zero events included. A reason seen that is not listed gets a row too."""


def noise_label(level: float) -> str:
    return f"{level:g}x"


class _Cell:
    """Counts of one table cell and the latencies of its detected runs."""

    __slots__ = ("detected", "latencies", "reasons", "runs", "stopped")

    def __init__(self) -> None:
        self.runs = 0
        self.detected = 0
        self.stopped = 0
        self.latencies = array("d")
        self.reasons: Counter[str] = Counter()

    def add(self, o: RunOutcome) -> None:
        self.runs += 1
        self.detected += o.detected
        self.stopped += o.stopped_after_onset
        if o.detected:
            self.latencies.append(o.latency_ms)
        self.reasons[o.stop_reason if o.stopped_after_onset else "NONE"] += 1

    def stats(self) -> tuple[CellStats, dict[str, int]]:
        stats = counted_cell_stats(self.runs, self.detected, self.stopped, self.latencies)
        return stats, dict(sorted(self.reasons.items()))


class _FalseStops:
    """False-stop counters of one noise level (or all)."""

    __slots__ = (
        "by_reason",
        "event_runs",
        "false_events",
        "false_nominal",
        "incomplete",
        "nominal",
        "reasons",
        "seconds",
    )

    def __init__(self) -> None:
        self.nominal = 0
        self.false_nominal = 0
        self.incomplete = 0
        self.event_runs = 0
        self.false_events = 0
        self.seconds = 0.0
        self.reasons: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        """False stops of nominal runs by reason: the per-detector statement."""

    def add(self, o: RunOutcome) -> None:
        if o.status == "refused":
            return
        if o.kind == "nominal":
            self.nominal += 1
            self.seconds += o.virtual_s
            self.incomplete += o.status == "incomplete"
            if o.false_stop:
                self.false_nominal += 1
                self.reasons[o.stop_reason] += 1
                self.by_reason[o.stop_reason] += 1
        else:
            self.event_runs += 1
            self.seconds += o.onset_s if not math.isnan(o.onset_s) else o.virtual_s
            if o.false_stop:
                self.false_events += 1
                self.reasons[o.stop_reason] += 1


class _Leak:
    __slots__ = ("dps", "rel", "shares")

    def __init__(self) -> None:
        self.shares = array("d")
        self.dps = array("d")
        self.rel = array("d")


@dataclass(frozen=True)
class DetectionRow:
    """One size bin of one kind at one noise level (or all of them)."""

    kind: str
    detector: str
    size_name: str
    size_unit: str
    bin: str
    bin_low: float
    bin_high: float
    noise: str
    stats: CellStats
    reasons: dict[str, int] = field(default_factory=dict)
    """First stop after the onset, by reason (NONE: no stop in the window)."""


@dataclass(frozen=True)
class DetectorSummary:
    kind: str
    detector: str
    stats: CellStats
    reasons: dict[str, int]
    excluded: int
    """Runs of this kind that stopped before the onset (false stops) or were refused."""


@dataclass(frozen=True)
class FalseStopSummary:
    noise: str
    nominal_runs: int
    false_stops: int
    rate: float
    rate_upper: float
    """One-sided 95 % exact (Clopper-Pearson) upper bound of the false-stop rate per nominal run."""
    incomplete: int
    event_runs_before_onset: int
    """Event runs, counted up to their onset (a nominal injection until then)."""
    false_stops_before_onset: int
    injecting_hours: float
    """Virtual time of nominal runs plus event runs up to their onset."""
    reasons: dict[str, int]


@dataclass(frozen=True)
class DetectorFalseStops:
    """False stops of one detector (stop reason) in the nominal runs of one noise level (or all)."""

    detector: str
    noise: str
    nominal_runs: int
    false_stops: int
    rate: float
    rate_upper: float
    """One-sided 95 % exact (Clopper-Pearson) upper bound per nominal run: 0 in N gives ~3/N."""


@dataclass(frozen=True)
class LeakSignature:
    """What a leak of one size did to the syringe pressure (against its twin run without the leak)."""

    kind: str
    bin: str
    runs: int
    share_p50: float
    share_max: float
    dp_p50_kpa: float
    dp_min_kpa: float
    dp_min_rel: float
    """Largest relative fall: leak dp / pressure at the onset."""


class SweepTally:
    """Every figure of the report, accumulated one run at a time."""

    def __init__(self) -> None:
        self.runs = 0
        self.virtual_s = 0.0
        self.totals: Counter[str] = Counter()
        self.kind_cells: dict[str, _Cell] = {}
        self.cells: dict[tuple[str, int, str], _Cell] = {}
        self.false: dict[str, _FalseStops] = {noise_label(lv): _FalseStops() for lv in NOISE_LEVELS}
        self.false[ALL] = _FalseStops()
        self.leaks: dict[tuple[str, int], _Leak] = {}

    def add(self, o: RunOutcome) -> None:
        self.runs += 1
        self.virtual_s += o.virtual_s
        self.totals[o.kind] += 1
        label = noise_label(o.conditions.noise_level)
        self.false.setdefault(label, _FalseStops()).add(o)
        self.false[ALL].add(o)
        if o.kind == "nominal" or o.status not in EVALUATED or math.isnan(o.size):
            return
        spec = KINDS[o.kind]
        self.kind_cells.setdefault(o.kind, _Cell()).add(o)
        i = bin_index(o.size, spec.edges)
        if i is None:
            return
        for noise in (label, ALL):
            self.cells.setdefault((o.kind, i, noise), _Cell()).add(o)
        if o.kind.startswith("leak") and not math.isnan(o.leak_dp_kpa):
            leak = self.leaks.setdefault((o.kind, i), _Leak())
            leak.shares.append(0.0 if math.isnan(o.leak_share) else o.leak_share)
            leak.dps.append(o.leak_dp_kpa)
            if o.pressure_at_onset_kpa > 0:
                leak.rel.append(o.leak_dp_kpa / o.pressure_at_onset_kpa)

    def add_all(self, outcomes: Iterable[RunOutcome]) -> SweepTally:
        for o in outcomes:
            self.add(o)
        return self

    # -- the report's records ----------------------------------------------------------------------
    def detection_rows(self) -> list[DetectionRow]:
        """Every event kind x size bin x (each noise level, then all), bins without runs left out."""
        rows: list[DetectionRow] = []
        labels = [*(noise_label(lv) for lv in NOISE_LEVELS), ALL]
        for spec in KINDS.values():
            bins = sorted({i for (kind, i, _) in self.cells if kind == spec.name})
            for i in bins:
                for label in labels:
                    cell = self.cells.get((spec.name, i, label))
                    if cell is None:
                        continue
                    stats, reasons = cell.stats()
                    rows.append(
                        DetectionRow(
                            spec.name,
                            spec.detector,
                            spec.size_name,
                            spec.size_unit,
                            bin_label(spec.edges, i),
                            spec.edges[i],
                            spec.edges[i + 1],
                            label,
                            stats,
                            reasons,
                        )
                    )
        return rows

    def detector_summary(self) -> list[DetectorSummary]:
        out = []
        for spec in KINDS.values():
            if spec.name == "nominal":
                continue
            cell = self.kind_cells.get(spec.name, _Cell())
            stats, reasons = cell.stats()
            out.append(
                DetectorSummary(spec.name, spec.detector, stats, reasons, self.totals[spec.name] - cell.runs)
            )
        return out

    def _levels(self) -> list[str]:
        """The noise levels (then all) in the report's order, extra levels sorted in."""
        known = [noise_label(lv) for lv in NOISE_LEVELS]
        extra = sorted(set(self.false) - {*known, ALL})
        return [*known, *extra, ALL]

    def false_stop_summary(self) -> list[FalseStopSummary]:
        out = []
        for label in self._levels():
            f = self.false[label]
            out.append(
                FalseStopSummary(
                    label,
                    f.nominal,
                    f.false_nominal,
                    f.false_nominal / f.nominal if f.nominal else math.nan,
                    clopper_pearson_upper(f.false_nominal, f.nominal, CONFIDENCE),
                    f.incomplete,
                    f.event_runs,
                    f.false_events,
                    f.seconds / 3600.0,
                    dict(sorted(f.reasons.items())),
                )
            )
        return out

    def detector_false_stops(self) -> list[DetectorFalseStops]:
        """Per detector (stop reason), per noise level with nominal runs and all: false stops in the
        nominal runs, rate and its one-sided 95 % Clopper-Pearson upper bound."""
        seen = set().union(*(f.by_reason for f in self.false.values()))
        detectors = [*FALSE_STOP_DETECTORS, *sorted(seen - set(FALSE_STOP_DETECTORS))]
        out = []
        for det in detectors:
            for label in self._levels():
                f = self.false[label]
                if not f.nominal and label != ALL:
                    continue
                k = f.by_reason[det]
                out.append(
                    DetectorFalseStops(
                        det,
                        label,
                        f.nominal,
                        k,
                        k / f.nominal if f.nominal else math.nan,
                        clopper_pearson_upper(k, f.nominal, CONFIDENCE),
                    )
                )
        return out

    def leak_signatures(self) -> list[LeakSignature]:
        out = []
        for spec in KINDS.values():
            if not spec.name.startswith("leak"):
                continue
            for i in range(len(spec.edges) - 1):
                g = self.leaks.get((spec.name, i))
                if g is None:
                    continue
                out.append(
                    LeakSignature(
                        spec.name,
                        bin_label(spec.edges, i),
                        len(g.dps),
                        percentile(g.shares, 50),
                        max(g.shares),
                        percentile(g.dps, 50),
                        min(g.dps),
                        min(g.rel, default=math.nan),
                    )
                )
        return out


def tally(outcomes: Iterable[RunOutcome]) -> SweepTally:
    """The tally of outcomes held in memory (tests, small sweeps)."""
    return SweepTally().add_all(outcomes)
