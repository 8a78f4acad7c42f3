"""Recordings as pandas DataFrames for analysis: `cementguard.load(REC)`.

`load` returns a `LoadedRecording`, a named tuple `(samples, events, meta)`:

- `samples`: one row per telemetry sample, the columns of the CSV export with their units in the
  names (`t_s`, `pressure_kpa`, `delivered_ml`, `plunger_mm`, `flow_ml_min`, `flow_setpoint_ml_min`,
  `motor_mm_s`, `viscosity_pa_s`, `flags`, `state`, `stop_reason`). Measured values are float64, NaN
  where there is no valid value (pressure while SENSOR_FAULT, viscosity not valid, a column a
  format-1 recording never had); `flags` is the uint16 bit set; `state` and `stop_reason` are
  categoricals of the enum names.
- `events`: one row per controller event, the events CSV's columns (enum names, `t_s`,
  `pressure_kpa`, `delivered_ml`, `plunger_mm`, ...) then the host annotations
  (`host_time_unix_s`, `source_latency_ms`, ...).
- `meta`: the recording's meta.json (plan, device, run metadata, units) as a dict.

`samples, events, meta = cementguard.load("recordings/<run>")` unpacks it. The samples are read in
chunks into preallocated columns, so loading needs the DataFrame's own size plus one chunk, never a
second copy of the recording. The DataFrame is bounded: at most `max_rows` rows (DEFAULT_MAX_ROWS,
2,000,000: 33 minutes at 1 kHz, ~180 MB with every column); a longer selection is refused with
`LoadTooLargeError`, which says how many rows and how much memory it would take, before anything
is allocated (a 2-hour 1 kHz run is 7.2 M rows, ~660 MB). Select less: `start_s=`/`end_s=` (a time
range, in the `t_s` column's clock), `columns=` (only those columns' memory), or pass
`max_rows=None` knowingly. For statistics over a whole long recording, stream it with
`host.recording.Recording.iter_samples` or export it to Parquet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from host.export import EVENT_COLUMNS, EVENT_ENUMS, SAMPLE_COLUMNS, edge_arrays, enum_names
from host.recording import DEFAULT_CHUNK_SAMPLES, Recording, RecordingError

if TYPE_CHECKING:
    import pandas as pd


class LoadedRecording(NamedTuple):
    samples: pd.DataFrame
    """One row per telemetry sample, units in the column names."""
    events: pd.DataFrame
    """One row per controller event, enum names, then the host annotations."""
    meta: dict[str, Any]
    """The recording's meta.json: plan, device, run metadata, units."""


DEFAULT_MAX_ROWS = 2_000_000
"""The most sample rows `load` builds unless told otherwise: 33 minutes at 1 kHz."""
_DTYPES = {"flags": np.uint16, "state": np.uint8, "stop_reason": np.uint8}


class LoadTooLargeError(RecordingError):
    """The samples selected for `load` exceed its `max_rows`: select fewer, or stream them."""


def load(
    recording: Recording | str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> LoadedRecording:
    """Read a recording into pandas: `(samples, events, meta)`. `columns` selects sample columns
    (default: all, in the CSV's order); an unknown name is a ValueError naming it and the choices.
    `start_s` / `end_s` keep the samples with `start_s <= t_s <= end_s` (controller clock, as the
    `t_s` column; the events are all kept). More than `max_rows` selected rows raise
    LoadTooLargeError before anything is allocated (None: no bound)."""
    import pandas as pd

    rec = recording if isinstance(recording, Recording) else Recording.open(recording)
    wanted = tuple(SAMPLE_COLUMNS if columns is None else columns)
    unknown = [c for c in wanted if c not in SAMPLE_COLUMNS]
    if unknown:
        raise ValueError(f"columns: unknown {unknown}; choose from {list(SAMPLE_COLUMNS)}")
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if value is not None and not np.isfinite(value):
            raise ValueError(f"{name} = {value!r}: a finite time in seconds (the t_s column's clock)")
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows = {max_rows}: 0 or more, or None for no bound")
    ranged = start_s is not None or end_s is not None
    lo_us = -np.inf if start_s is None else start_s * 1e6
    hi_us = np.inf if end_s is None else end_s * 1e6

    def selected(chunk: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        t = chunk["t_us"]
        return chunk[(t >= lo_us) & (t <= hi_us)] if ranged else chunk

    n = sum(len(selected(c)) for c in rec.iter_samples(chunk_samples)) if ranged else rec.sample_count
    if max_rows is not None and n > max_rows:
        row_bytes = sum(np.dtype(_DTYPES.get(c, np.float64)).itemsize for c in wanted)
        raise LoadTooLargeError(
            f"{rec.path}: {n:,} samples selected ({n * row_bytes / 1e6:,.0f} MB as a DataFrame of "
            f"{len(wanted)} columns), more than max_rows={max_rows:,}. Select a time range "
            "(start_s=, end_s=, seconds of the t_s column), fewer columns (columns=), or pass "
            "max_rows=None to load them all; to go through every sample, stream them "
            "(Recording.iter_samples) or export to Parquet"
        )
    out = {c: np.empty(n, dtype=_DTYPES.get(c, np.float64)) for c in wanted}
    at = 0
    for chunk in rec.iter_samples(chunk_samples):
        part = selected(chunk)[: n - at]
        if not len(part):
            continue
        arrays = edge_arrays(rec, part, wanted)
        for c in wanted:
            out[c][at : at + len(part)] = arrays[c]
        at += len(part)
    frame: dict[str, Any] = {}
    for c in wanted:
        values = out[c][:at]
        if c in ("state", "stop_reason"):
            names = enum_names(rec, "State" if c == "state" else "StopReason")
            used = np.unique(values)
            frame[c] = pd.Categorical.from_codes(
                np.searchsorted(used, values), categories=[names[int(v)] for v in used]
            )
        else:
            frame[c] = values
    samples = pd.DataFrame(frame, columns=list(wanted), copy=False)
    return LoadedRecording(samples, events_frame(rec), dict(rec.meta))


def events_frame(rec: Recording) -> pd.DataFrame:
    """The events as a DataFrame: the events CSV's columns (enum names), then the annotations."""
    import pandas as pd

    extra = sorted({k for e in rec.events for k in e.annotations} - {"host_time_unix_s"})
    annotation_columns = ["host_time_unix_s", *extra]
    rows: list[dict[str, Any]] = []
    for e in rec.events:
        row: dict[str, Any] = {}
        for column in EVENT_COLUMNS:
            value = getattr(e.record, column)
            if column in EVENT_ENUMS:
                value = rec.enum_name(EVENT_ENUMS[column], int(value))
            row[column] = value
        for key in annotation_columns:
            row[key] = e.annotations.get(key)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*EVENT_COLUMNS, *annotation_columns])
    for column in ("t_s", "pressure_kpa", "delivered_ml", "plunger_mm", "host_time_unix_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame


__all__ = ["DEFAULT_MAX_ROWS", "LoadTooLargeError", "LoadedRecording", "events_frame", "load"]
