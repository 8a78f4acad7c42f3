"""Recordings to CSV, in edge units named in every column header; `cementguard export`.

Samples CSV, one row per telemetry sample:

    t_s,pressure_kpa,delivered_ml,plunger_mm,flow_ml_min,flow_setpoint_ml_min,motor_mm_s,
    viscosity_pa_s,flags,state,stop_reason

t_s is controller time since power-up. delivered_ml is the cement delivered since ARM (it never
falls); plunger_mm the plunger's position from home (it falls during relief back-off). Values are
exact decimal forms of the wire integers (1 Pa, 1 nL, 1 um, 1 nL/s, 1 um/s resolution). An empty cell
means "no valid value": viscosity_pa_s when the estimate is not valid (NaN on the wire),
pressure_kpa while flags has SENSOR_FAULT, because the controller marks the reading invalid then and
a spreadsheet must not average it in, and a column the recording never had (plunger_mm and
flow_setpoint_ml_min of a format-1 recording). flags is the
integer bit set (protocol.enums.Flags); state and stop_reason are names.

Events CSV, one row per event: the EventRecord fields with enum names, then the host annotations
(host_time_unix_s first, then any others, alphabetically).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from host.recording import Recording, RecordingError
from protocol.enums import Flags

SAMPLE_COLUMNS = (
    "t_s",
    "pressure_kpa",
    "delivered_ml",
    "plunger_mm",
    "flow_ml_min",
    "flow_setpoint_ml_min",
    "motor_mm_s",
    "viscosity_pa_s",
    "flags",
    "state",
    "stop_reason",
)

EVENT_COLUMNS = (
    "t_s",
    "event_index",
    "kind",
    "state",
    "prev_state",
    "reason",
    "source",
    "alarm",
    "flags",
    "pressure_kpa",
    "delivered_ml",
    "plunger_mm",
    "detail",
)
EVENT_ENUMS = {
    "kind": "EventKind",
    "state": "State",
    "prev_state": "State",
    "reason": "StopReason",
    "source": "StopSource",
    "alarm": "AlarmCode",
}


def _as_recording(recording: Recording | str | os.PathLike[str]) -> Recording:
    return recording if isinstance(recording, Recording) else Recording.open(recording)


def _names(recording: Recording, enum: str, values: np.ndarray[Any, Any]) -> list[str]:
    unique, inverse = np.unique(values, return_inverse=True)
    names = np.array([recording.enum_name(enum, int(v)) for v in unique], dtype=object)
    return list(names[inverse.reshape(-1)])


def sample_columns(recording: Recording) -> dict[str, list[Any]]:
    """The samples CSV as columns of Python values ('' for no valid value)."""
    s = recording.samples
    pressure: list[Any] = np.round(s["pressure_pa"] / 1e3, 3).tolist()
    for i in np.flatnonzero(s["flags"] & int(Flags.SENSOR_FAULT)).tolist():
        pressure[i] = ""
    missing = set(recording.missing_columns)

    def column(name: str, values: np.ndarray[Any, Any]) -> list[Any]:
        return [""] * len(s) if name in missing else values.tolist()

    return {
        "t_s": np.round(s["t_us"] / 1e6, 6).tolist(),
        "pressure_kpa": pressure,
        "delivered_ml": np.round(s["delivered_nl"] / 1e6, 6).tolist(),
        "plunger_mm": column("plunger_um", np.round(s["plunger_um"] / 1e3, 3)),
        "flow_ml_min": np.round(s["flow_nl_s"] * 6e-5, 5).tolist(),
        "flow_setpoint_ml_min": column("flow_setpoint_nl_s", np.round(s["flow_setpoint_nl_s"] * 6e-5, 5)),
        "motor_mm_s": np.round(s["motor_um_s"] / 1e3, 3).tolist(),
        "viscosity_pa_s": ["" if v != v else f"{v:.7g}" for v in s["viscosity_pas"].tolist()],
        "flags": s["flags"].tolist(),
        "state": _names(recording, "State", s["state"]),
        "stop_reason": _names(recording, "StopReason", s["stop_reason"]),
    }


def export_csv(
    recording: Recording | str | os.PathLike[str],
    path: str | os.PathLike[str],
    events_path: str | os.PathLike[str] | None = None,
) -> int:
    """Write the samples CSV (and, if `events_path` is given, the events CSV); returns the sample rows."""
    rec = _as_recording(recording)
    columns = sample_columns(rec)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        writer.writerows(zip(*(columns[c] for c in SAMPLE_COLUMNS), strict=True))
    if events_path is not None:
        export_events_csv(rec, events_path)
    return len(rec.samples)


def export_events_csv(recording: Recording | str | os.PathLike[str], path: str | os.PathLike[str]) -> int:
    """Write the events CSV; returns the rows written."""
    rec = _as_recording(recording)
    extra = sorted({k for e in rec.events for k in e.annotations} - {"host_time_unix_s"})
    annotation_columns = ["host_time_unix_s", *extra]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*EVENT_COLUMNS, *annotation_columns])
        for e in rec.events:
            row: list[Any] = []
            for column in EVENT_COLUMNS:
                value = getattr(e.record, column)
                if column in EVENT_ENUMS:
                    value = rec.enum_name(EVENT_ENUMS[column], int(value))
                row.append("" if value is None else value)
            row.extend("" if e.annotations.get(k) is None else e.annotations[k] for k in annotation_columns)
            writer.writerow(row)
    return len(rec.events)


def warn_if_damaged(rec: Recording) -> None:
    if not rec.is_complete:
        print(
            f"warning: {rec.path} was not closed cleanly (the host stopped mid-run); reading what was saved",
            file=sys.stderr,
        )
    for problem in rec.problems:
        print(f"warning: {rec.path}: {problem}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a recording to CSV (edge units: s, kPa, mL, mm, mL/min)",
        description="Write a recording's telemetry (and optionally its events) as CSV, units in the header.",
    )
    p.add_argument("recording", metavar="REC", type=Path, help="recording directory")
    p.add_argument("--csv", required=True, type=Path, metavar="FILE", help="samples CSV to write")
    p.add_argument("--events-csv", type=Path, metavar="FILE", help="also write the events to this CSV")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    try:
        rec = Recording.open(args.recording)
    except RecordingError as exc:
        print(f"cementguard export: {exc}", file=sys.stderr)
        return 1
    warn_if_damaged(rec)
    rows = export_csv(rec, args.csv, args.events_csv)
    print(f"wrote {rows} samples to {args.csv}")
    if args.events_csv is not None:
        print(f"wrote {len(rec.events)} events to {args.events_csv}")
    return 0
