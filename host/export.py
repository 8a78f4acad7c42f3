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

With `metadata_header=True` (`export --metadata`) the samples CSV starts with `# `-prefixed lines
(the recording's name, creation time, device, host, run metadata and plan, one `# key: value`
each) before the column header; `pandas.read_csv(path, comment="#")` skips them. Without it the
first line is the column header, as spreadsheets and older scripts expect.

Parquet (`export --parquet FILE`, `export_parquet`): the same columns, typed (float64 for measured
values with null where the CSV cell is empty, uint16 flags, state and stop_reason as dictionary-
encoded strings), and the recording's meta.json in the file's key-value metadata under
"cementguard.meta". Both formats are written in chunks of samples (`DEFAULT_CHUNK_SAMPLES`), so the
memory an export needs does not grow with the recording's length.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from host.cli_types import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from host.recording import DEFAULT_CHUNK_SAMPLES, Recording, RecordingError
from protocol.enums import Flags
from protocol.telemetry import SampleArray

if TYPE_CHECKING:
    import pyarrow as pa

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


def sample_columns(recording: Recording, chunk: SampleArray | None = None) -> dict[str, list[Any]]:
    """The samples CSV as columns of Python values ('' for no valid value): of `chunk` if given (a
    slice of the recording's samples), else of every sample."""
    s = recording.samples if chunk is None else chunk
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


def edge_arrays(
    recording: Recording, chunk: SampleArray, columns: Iterable[str] = SAMPLE_COLUMNS
) -> dict[str, np.ndarray[Any, Any]]:
    """A chunk of samples as typed columns in edge units (the CSV's values and names; only `columns`
    are computed): float64 with NaN where the CSV cell is empty (pressure while SENSOR_FAULT,
    viscosity not valid, a column the recording never had), flags as uint16, state and stop_reason
    as the raw enum integers (uint8)."""
    s = chunk
    missing = set(recording.missing_columns)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name in columns:
        if name == "pressure_kpa":
            values = np.round(s["pressure_pa"] / 1e3, 3)
            values[(s["flags"] & int(Flags.SENSOR_FAULT)) != 0] = np.nan
        elif name == "viscosity_pa_s":
            values = s["viscosity_pas"].astype(np.float64)
        elif name in ("flags", "state", "stop_reason"):
            values = s[name].astype(np.uint16 if name == "flags" else np.uint8)
        else:
            field, divisor, multiplier, decimals = _SCALED[name]
            if field in missing:
                values = np.full(len(s), np.nan)
            else:  # rounded back to the exact decimal of the wire integer
                values = np.round(s[field] / divisor * multiplier, decimals)
        out[name] = values
    return out


_SCALED: dict[str, tuple[str, float, float, int]] = {
    "t_s": ("t_us", 1e6, 1.0, 6),
    "delivered_ml": ("delivered_nl", 1e6, 1.0, 6),
    "plunger_mm": ("plunger_um", 1e3, 1.0, 3),
    "flow_ml_min": ("flow_nl_s", 1.0, 6e-5, 5),
    "flow_setpoint_ml_min": ("flow_setpoint_nl_s", 1.0, 6e-5, 5),
    "motor_mm_s": ("motor_um_s", 1e3, 1.0, 3),
}
"""Edge column: (sample field, divisor, multiplier, decimals of the exact decimal value): the same
expressions as the CSV's, so every export gives the same numbers."""


def enum_names(recording: Recording, enum: str) -> list[str]:
    """Names for every value 0..255 of a one-byte enum column, by the recording's own tables."""
    return [recording.enum_name(enum, v) for v in range(256)]


def metadata_lines(recording: Recording) -> list[str]:
    """`key: value` lines describing the run, for the CSV's metadata header and the report."""
    rec = recording
    device = rec.meta.get("device") or {}
    host = rec.meta.get("host") or {}
    lines = [
        f"recording: {rec.path.name}",
        f"format: {rec.meta.get('format')} {rec.meta.get('format_version')}",
        f"created_utc: {rec.created_utc}",
        f"complete: {'yes' if rec.is_complete else 'no (the host stopped without closing it)'}",
        f"samples: {rec.sample_count}",
        f"events: {len(rec.events)}",
    ]
    if device:
        lines.append(
            f"device: serial {device.get('serial')}, firmware {device.get('firmware_version')}, "
            f"protocol {device.get('protocol_version')}"
        )
    if host:
        lines.append(f"host: cementguard {host.get('cementguard_version')}, python {host.get('python')}")
    lines.extend(f"{key}: {value}" for key, value in rec.run_metadata.items() if value not in (None, ""))
    lines.append("plan: " + json.dumps(rec.plan, sort_keys=True))
    lines.append("units: t_s controller time (s); pressure kPa; volume mL; flow mL/min; speed mm/s")
    return [line.replace("\r", " ").replace("\n", " ") for line in lines]


def export_csv(
    recording: Recording | str | os.PathLike[str],
    path: str | os.PathLike[str],
    events_path: str | os.PathLike[str] | None = None,
    *,
    metadata_header: bool = False,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> int:
    """Write the samples CSV (and, if `events_path` is given, the events CSV); returns the sample rows.
    The samples are read and written `chunk_samples` at a time: memory does not grow with the length."""
    rec = _as_recording(recording)
    rows = 0
    with open(path, "w", newline="") as f:
        if metadata_header:
            f.writelines(f"# {line}\n" for line in metadata_lines(rec))
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        for chunk in rec.iter_samples(chunk_samples):
            columns = sample_columns(rec, chunk)
            writer.writerows(zip(*(columns[c] for c in SAMPLE_COLUMNS), strict=True))
            rows += len(chunk)
    if events_path is not None:
        export_events_csv(rec, events_path)
    return rows


def arrow_schema(recording: Recording) -> pa.Schema:
    """The Parquet schema: typed columns, and meta.json under the key "cementguard.meta"."""
    import pyarrow as pa

    fields = [
        pa.field(name, pa.float64())
        for name in SAMPLE_COLUMNS
        if name not in ("flags", "state", "stop_reason")
    ]
    fields += [
        pa.field("flags", pa.uint16()),
        pa.field("state", pa.dictionary(pa.uint8(), pa.string())),
        pa.field("stop_reason", pa.dictionary(pa.uint8(), pa.string())),
    ]
    return pa.schema(fields, metadata={"cementguard.meta": json.dumps(recording.meta)})


def arrow_batches(
    recording: Recording, chunk_samples: int = DEFAULT_CHUNK_SAMPLES
) -> Iterator[pa.RecordBatch]:
    """The samples as Arrow record batches of at most `chunk_samples` rows, in `arrow_schema`."""
    import pyarrow as pa

    schema = arrow_schema(recording)
    names = {
        "state": pa.array(enum_names(recording, "State"), pa.string()),
        "stop_reason": pa.array(enum_names(recording, "StopReason"), pa.string()),
    }
    for chunk in recording.iter_samples(chunk_samples):
        arrays = edge_arrays(recording, chunk)
        columns: list[pa.Array] = []
        for field in schema:
            values = arrays[field.name]
            if field.name in names:
                columns.append(
                    pa.DictionaryArray.from_arrays(pa.array(values, pa.uint8()), names[field.name])
                )
            elif field.type == pa.float64():
                columns.append(pa.array(values, pa.float64(), mask=np.isnan(values)))
            else:
                columns.append(pa.array(values, field.type))
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


def export_parquet(
    recording: Recording | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> int:
    """Write the samples as Parquet, one row group per chunk; returns the rows written."""
    import pyarrow.parquet as pq

    rec = _as_recording(recording)
    rows = 0
    with pq.ParquetWriter(path, arrow_schema(rec), compression="zstd") as writer:
        for batch in arrow_batches(rec, chunk_samples):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


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
        help="export a recording to CSV or Parquet (edge units: s, kPa, mL, mm, mL/min)",
        description="Write a recording's telemetry (and optionally its events) as CSV and/or Parquet, "
        "units in the column names. Streams the recording: memory does not grow with its length.",
    )
    p.add_argument("recording", metavar="REC", type=Path, help="recording directory")
    p.add_argument("--csv", type=Path, metavar="FILE", help="samples CSV to write")
    p.add_argument(
        "--metadata",
        action="store_true",
        help="start the CSV with '# key: value' lines describing the run (read with comment='#')",
    )
    p.add_argument("--parquet", type=Path, metavar="FILE", help="samples Parquet file to write")
    p.add_argument("--events-csv", type=Path, metavar="FILE", help="also write the events to this CSV")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    if args.csv is None and args.parquet is None and args.events_csv is None:
        print("cementguard export: nothing to write: give --csv FILE and/or --parquet FILE", file=sys.stderr)
        return EXIT_USAGE
    if args.metadata and args.csv is None:
        print(
            "cementguard export: --metadata is a header of the samples CSV: give --csv FILE", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        rec = Recording.open(args.recording)
    except RecordingError as exc:
        print(f"cementguard export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    warn_if_damaged(rec)
    try:
        if args.csv is not None:
            rows = export_csv(rec, args.csv, metadata_header=args.metadata)
            print(f"wrote {rows} samples to {args.csv}")
        if args.parquet is not None:
            rows = export_parquet(rec, args.parquet)
            print(f"wrote {rows} samples to {args.parquet}")
        if args.events_csv is not None:
            export_events_csv(rec, args.events_csv)
            print(f"wrote {len(rec.events)} events to {args.events_csv}")
    except RecordingError as exc:  # a data file found damaged while streaming it
        print(f"cementguard export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"cementguard export: cannot write: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
