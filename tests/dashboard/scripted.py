"""A deterministic dashboard source for the snapshot tests: synthetic telemetry, events, STATUS and
device info fed into the model at once, no link, no clock. Its commands only record what was asked."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from host.dashboard.model import DashboardModel
from host.plan import InjectionPlan
from host.stops import StopRequests
from protocol import EventKind, State, StopReason, StopSource
from protocol.enums import Flags
from protocol.models import DeviceInfoRecord, StatusRecord
from protocol.telemetry import SAMPLE_DTYPE, SampleArray

DEVICE = DeviceInfoRecord(
    protocol_version=1,
    firmware_version="0.1.0",
    serial="SNAP-0001",
    capabilities=["RELIEF_BACKOFF", "INCREMENTAL", "SIMULATOR"],
    sample_rate_hz=1000,
    watchdog_ms=500,
    max_pressure_kpa=8000.0,
    max_flow_ml_min=10.0,
    travel_mm=60.0,
)
COUNTERS = {
    "frames_rx": 12_345,
    "frames_tx": 678,
    "crc_errors": 0,
    "cobs_errors": 0,
    "overlong": 0,
    "runts": 0,
    "lost_samples": 0,
    "missed_events": 0,
    "dropped_batches": 0,
    "retries": 0,
    "link_losses": 0,
    "reconnects": 0,
}


def ramp(
    seconds: float,
    *,
    t0_s: float = 100.0,
    flow_ml_min: float = 3.0,
    state: State = State.INJECTING,
    rate_hz: int = 1000,
) -> SampleArray:
    """Telemetry of an injection: volume at the given flow, pressure rising to a plateau."""
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    s["t_us"] = np.round((t0_s + t) * 1e6).astype(np.uint64)
    s["delivered_nl"] = np.round(t * flow_ml_min / 60.0 * 1e6).astype(np.int32)
    s["plunger_um"] = 2_000 + np.round(t * flow_ml_min / 60.0 * 1e6 / 78.5).astype(np.int32)
    s["pressure_pa"] = np.round(1.2e6 * (1 - np.exp(-t / 1.5)) + 30e3 * np.sin(t * 7)).astype(np.int32)
    s["flow_nl_s"] = int(flow_ml_min / 60.0 * 1e6)
    s["viscosity_pas"] = 120.0
    s["flags"] = int(Flags.HOST_LINK_OK | Flags.VISCOSITY_VALID | Flags.SIMULATED)
    s["state"] = int(state)
    return s


def status(
    state: State,
    *,
    t_s: float,
    delivered_ml: float = 0.0,
    increments: int = 0,
    reason: StopReason = StopReason.NONE,
    source: StopSource = StopSource.NONE,
) -> StatusRecord:
    armed = state != State.IDLE
    return StatusRecord(
        state=state,
        stop_reason=reason,
        stop_source=source,
        flags=int(Flags.HOST_LINK_OK),
        t_s=t_s,
        pressure_kpa=0.0,
        delivered_ml=delivered_ml,
        plunger_mm=2.0 + delivered_ml * 1e3 / 78.5,
        flow_ml_min=0.0,
        flow_setpoint_ml_min=3.0 if armed else 0.0,
        volume_limit_ml=1.5 if armed else 0.0,
        increment_ml=0.5 if armed else 0.0,
        increments_done=increments,
        soft_limit_kpa=2500.0 if armed else 0.0,
        hard_limit_kpa=4000.0 if armed else 0.0,
        relief_kpa=200.0 if armed else 0.0,
        viscosity_pa_s=None,
        mixed_age_s=240.0 if armed else 0.0,
        working_time_s=600.0 if armed else 0.0,
    )


@dataclass
class Step:
    """What the source feeds, in order."""

    samples: list[SampleArray] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)
    status: StatusRecord | None = None
    link: tuple[str, str] = ("connected", "session open on /dev/ttySNAP")


@dataclass
class RecordedCommands:
    calls: list[str] = field(default_factory=list)

    async def arm(self, plan: InjectionPlan, mixed_ago_s: float) -> list[str]:
        self.calls.append("arm")
        return []

    async def start(self) -> None:
        self.calls.append("start")

    async def pause(self) -> None:
        self.calls.append("pause")

    async def resume(self) -> None:
        self.calls.append("resume")

    async def stop(self, source: StopSource) -> None:
        self.calls.append(f"stop {source.name}")

    async def clear(self) -> None:
        self.calls.append("clear")


class ScriptedSource:
    """Feeds `step` into the model when the app starts, then waits (until cancelled)."""

    label = "/dev/ttySNAP"

    def __init__(self, step: Step) -> None:
        self.step = step
        self.commands = RecordedCommands()
        self.stops = StopRequests()
        self.fed = asyncio.Event()

    async def run(self, model: DashboardModel) -> None:
        model.on_link("connecting", "opening", port=self.label)
        model.on_device(DEVICE)
        model.on_counters(dict(COUNTERS))
        if self.step.status is not None:
            model.on_status(self.step.status)
        for samples in self.step.samples:
            model.on_samples(samples)
        for event in self.step.events:
            model.on_event(**event)  # type: ignore[arg-type]
        model.on_link(*self.step.link)
        self.fed.set()
        await asyncio.Event().wait()


def stop_event(
    reason: StopReason,
    source: StopSource,
    state: State,
    *,
    t_s: float,
    pressure_kpa: float,
    delivered_ml: float,
    latency_ms: float | None = None,
) -> dict[str, object]:
    notes: dict[str, object] = {}
    if latency_ms is not None:
        notes = {"stop_latency_ms": latency_ms, "stop_origin": "dashboard key x"}
    return {
        "kind": int(EventKind.STOP),
        "state": int(state),
        "reason": int(reason),
        "source": int(source),
        "t_s": t_s,
        "pressure_kpa": pressure_kpa,
        "delivered_ml": delivered_ml,
        "notes": notes,
    }
