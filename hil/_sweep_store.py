"""A sweep's runs on disk: Parquet part files written in index order as results arrive, read back in
batches, and resumed where an interrupted sweep stopped.

Layout of a sweep directory:

    sweep-manifest.json                   what the runs are (seed, kinds, overrides, noise, code digest)
    runs/part-000000000000-000000002048.parquet   runs [start, stop), one file per flush

A part file is written to a temporary name and renamed, so a sweep killed at any instant leaves only
whole part files (and perhaps a temporary one, removed on the next open). The writer takes runs in
index order only, so the runs on disk are always the prefix 0..done-1: a resumed sweep starts at
`done`, and no run is lost or written twice. Reading goes part by part, batch by batch, so that the
report over a million runs never holds them all (docs/detector-thresholds.md, "Sweeps at scale").
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hil._sweep_chunks import SweepError
from hil._sweep_runs import Conditions, RunOutcome
from host.file_limits import MAX_JSON_BYTES, read_regular

logger = logging.getLogger(__name__)

MANIFEST = "sweep-manifest.json"
RUNS_DIR = "runs"
FORMAT = 1
"""Version of the layout and schema; a directory of another version is refused, never misread."""
PART = re.compile(r"^part-(\d{12})-(\d{12})\.parquet$")
ROWS_PER_PART = 2048
"""Runs per part file: ~500 files for a million runs; a kill loses at most this many (re-run on resume)."""
FLUSH_S = 30.0
"""A part is also written when its oldest run has waited this long, so a slow sweep loses little."""
READ_BATCH = 4096
"""Rows per batch when the report reads the runs back."""

# -- schema ----------------------------------------------------------------------------------------
_SCALARS: dict[Any, pa.DataType] = {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}


def _struct_of(cls: type) -> list[pa.Field]:
    hints = typing.get_type_hints(cls)
    return [pa.field(f.name, _SCALARS[hints[f.name]], nullable=False) for f in fields(cls)]


CONDITIONS = pa.struct(_struct_of(Conditions))
STOPS = pa.list_(pa.struct([pa.field("reason", pa.string()), pa.field("t_s", pa.float64())]))


def _schema() -> pa.Schema:
    hints = typing.get_type_hints(RunOutcome)
    cols: list[pa.Field] = []
    for f in fields(RunOutcome):
        if f.name == "conditions":
            cols.append(pa.field(f.name, CONDITIONS, nullable=False))
        elif f.name == "event":  # the plant event's own fields, which differ per kind: JSON text
            cols.append(pa.field(f.name, pa.string(), nullable=False))
        elif f.name == "stops":
            cols.append(pa.field(f.name, STOPS, nullable=False))
        else:
            cols.append(pa.field(f.name, _SCALARS[hints[f.name]], nullable=False))
    # derived, for whoever opens the file with pandas; ignored when read back
    cols += [pa.field("detected", pa.bool_()), pa.field("false_stop", pa.bool_())]
    return pa.schema(cols, metadata={b"cementguard_sweep_format": str(FORMAT).encode()})


SCHEMA = _schema()


def to_table(outcomes: Sequence[RunOutcome]) -> pa.Table:
    """Outcomes as a table of SCHEMA (NaN stays NaN: float64 holds it)."""
    rows = []
    for o in outcomes:
        row = {f.name: getattr(o, f.name) for f in fields(RunOutcome)}
        row["conditions"] = {f.name: getattr(o.conditions, f.name) for f in fields(Conditions)}
        row["event"] = json.dumps(o.event)
        row["stops"] = [{"reason": r, "t_s": t} for r, t in o.stops]
        row["detected"] = o.detected
        row["false_stop"] = o.false_stop
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


_OUTCOME_FIELDS = [f.name for f in fields(RunOutcome)]


def from_rows(rows: list[dict[str, Any]]) -> list[RunOutcome]:
    """The outcomes back from rows of SCHEMA: equal, field for field, to those written."""
    out = []
    for row in rows:
        kw = {name: row[name] for name in _OUTCOME_FIELDS}
        kw["conditions"] = Conditions(**row["conditions"])
        kw["event"] = json.loads(row["event"])
        kw["stops"] = [(s["reason"], s["t_s"]) for s in row["stops"]]
        out.append(RunOutcome(**kw))
    return out


# -- manifest --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """What makes two sweeps the same sweep: a partial one is resumed only under the same manifest."""

    seed: int
    kinds: tuple[str, ...] | None
    overrides: tuple[tuple[str, bool | int | float], ...]
    noise: float | None
    code: str
    """`hil._sweep_chunks.code_digest()` of the code the runs were made with."""

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seed": self.seed,
            "kinds": list(self.kinds) if self.kinds is not None else None,
            "overrides": [list(o) for o in self.overrides],
            "noise": self.noise,
            "code": self.code,
        }

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Manifest:
        kinds = doc["kinds"]
        return Manifest(
            seed=int(doc["seed"]),
            kinds=tuple(kinds) if kinds is not None else None,
            overrides=tuple((str(k), v) for k, v in doc["overrides"]),
            noise=None if doc["noise"] is None else float(doc["noise"]),
            code=str(doc["code"]),
        )

    def differences(self, other: Manifest) -> list[str]:
        """`name: here -> there` for every field that differs."""
        a, b = self.as_json(), other.as_json()
        return [f"{k} {a[k]!r} (on disk) vs {b[k]!r} (asked)" for k in a if a[k] != b[k]]


# -- the store -------------------------------------------------------------------------------------
def _part_name(start: int, stop: int) -> str:
    return f"part-{start:012d}-{stop:012d}.parquet"


class SweepStore:
    """One sweep directory: `open` it (resuming what is there), `append` runs in index order, `close`.

    `clock` (seconds, monotonic) times the FLUSH_S flush; it is injected so that tests need no sleep.
    """

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        rows_per_part: int = ROWS_PER_PART,
        flush_s: float = FLUSH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rows_per_part < 1 or not (math.isfinite(flush_s) and flush_s > 0):
            raise ValueError(f"rows_per_part {rows_per_part} must be >= 1, flush_s {flush_s} > 0 and finite")
        self.root = root
        self.runs_dir = root / RUNS_DIR
        self.manifest = manifest
        self.rows_per_part = rows_per_part
        self.flush_s = flush_s
        self.clock = clock
        self._buffer: list[RunOutcome] = []
        self._buffer_since = 0.0
        self.done = self._open()
        self.resumed = self.done
        """Runs found on disk when the store was opened."""

    def _open(self) -> int:
        path = self.root / MANIFEST
        if path.exists():
            try:
                doc = json.loads(read_regular(path, MAX_JSON_BYTES))
                fmt = doc.get("format")
                if fmt != FORMAT:
                    raise SweepError(
                        f"{path}: sweep format {fmt!r}, this version reads {FORMAT}: use another --report-dir"
                    )
                found = Manifest.from_json(doc)
            except (ValueError, KeyError, TypeError) as e:
                raise SweepError(f"{path}: not a sweep manifest ({e}); use another --report-dir") from None
            diff = found.differences(self.manifest)
            if diff:
                raise SweepError(
                    f"{self.root} holds a sweep of another configuration ({'; '.join(diff)}): it is not "
                    "resumed. Use another --report-dir, or delete that directory to start again."
                )
        else:
            if self.runs_dir.exists() and any(self.runs_dir.iterdir()):
                raise SweepError(
                    f"{self.runs_dir} holds files but {path} is missing: use another --report-dir"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.manifest.as_json(), indent=1) + "\n")
            os.replace(tmp, path)
        self.runs_dir.mkdir(exist_ok=True)
        for stale in self.runs_dir.glob("*.tmp"):  # a part being written when the sweep was killed
            logger.info("removing the unfinished part file %s", stale)
            stale.unlink()
        return self._check_parts()

    def parts(self) -> list[tuple[int, int, Path]]:
        """(start, stop, path) of every part file, by start."""
        out = []
        for path in self.runs_dir.iterdir():
            m = PART.match(path.name)
            if m is None:
                raise SweepError(
                    f"{path}: not a part file of this sweep; remove it or use another --report-dir"
                )
            out.append((int(m.group(1)), int(m.group(2)), path))
        return sorted(out)

    def _check_parts(self) -> int:
        """The number of runs on disk, after checking that the parts are exactly 0..done-1."""
        done = 0
        for start, stop, path in self.parts():
            rows = pq.ParquetFile(path).metadata.num_rows
            if start != done or stop - start != rows:
                raise SweepError(
                    f"{path}: runs {start}..{stop - 1} ({rows} rows) do not follow run {done - 1}: the "
                    "directory was edited by hand; use another --report-dir"
                )
            done = stop
        return done

    def append(self, outcomes: Sequence[RunOutcome]) -> None:
        """Take the next runs, which must start at `done` (pending ones count) and follow in order."""
        expected = self.done + len(self._buffer)
        for k, o in enumerate(outcomes):
            if o.index != expected + k:
                raise ValueError(f"run {o.index} appended where run {expected + k} was due")
        if outcomes and not self._buffer:
            self._buffer_since = self.clock()
        self._buffer.extend(outcomes)
        while len(self._buffer) >= self.rows_per_part:
            self._write(self.rows_per_part)
            self._buffer_since = self.clock()
        if self._buffer and self.clock() - self._buffer_since >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write every pending run now (at the end, on an interruption, or when they waited FLUSH_S)."""
        if self._buffer:
            self._write(len(self._buffer))

    def _write(self, rows: int) -> None:
        """The first `rows` pending runs as one part file (atomically: a temporary name, a rename)."""
        part, self._buffer = self._buffer[:rows], self._buffer[rows:]
        start, stop = self.done, self.done + len(part)
        final = self.runs_dir / _part_name(start, stop)
        tmp = final.with_suffix(".tmp")
        pq.write_table(to_table(part), tmp)
        os.replace(tmp, final)
        self.done = stop
        logger.debug("wrote runs %d..%d to %s", start, stop - 1, final)

    def iter_batches(
        self, batch_rows: int = READ_BATCH, limit: int | None = None
    ) -> Iterator[list[RunOutcome]]:
        """The runs on disk (the first `limit` of them) in index order, at most `batch_rows` at a time."""
        return iter_runs(self.runs_dir, batch_rows, limit)


def iter_runs(
    runs_dir: Path, batch_rows: int = READ_BATCH, limit: int | None = None
) -> Iterator[list[RunOutcome]]:
    """Every run in the part files of `runs_dir`, in index order, in batches of at most `batch_rows`;
    checks that each index follows the one before (a missing or doubled run is an error, not a gap)."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows = {batch_rows} must be >= 1")
    expected = 0
    for path in sorted(p for p in runs_dir.iterdir() if PART.match(p.name)):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            outcomes = from_rows(batch.to_pylist())
            if limit is not None:
                outcomes = outcomes[: max(0, limit - expected)]
            for o in outcomes:
                if o.index != expected:
                    raise SweepError(f"{path}: run {o.index} where run {expected} was due")
                expected += 1
            if outcomes:
                yield outcomes
            if limit is not None and expected >= limit:
                return
