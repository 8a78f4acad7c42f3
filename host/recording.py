"""Crash-safe recordings of a run: telemetry, events and link counters, in a self-describing format.

A recording is one directory per run (format spec: `docs/recordings.md`):

    meta.json        written once, atomically (tmp + fsync + rename), before any data: format name and
                     version, created time, host and protocol versions, the plan as given, device info,
                     the telemetry record layout with the unit of every column, and the enum tables
    telemetry.bin    append-only raw telemetry samples, exactly the 40-byte wire layout
                     (protocol.telemetry.SAMPLE_DTYPE), no header
    events.jsonl     one line per controller event: {"event": <EventRecord JSON>, "annotations": {...}}
    counters.jsonl   host link counter snapshots: {"host_time_unix_s": ..., "counters": {...}}
    closed.json      written atomically by `Recorder.close()`: its presence means "closed cleanly"

Why this shape:

- **Raw samples, no conversion, no header.** The hot path stays a memcpy: a decoded batch's bytes go to
  the file as they came off the wire, so 1 kHz costs nothing measurable and no precision is lost to a
  units conversion. Units live once, in meta.json, instead of in 600,000 rows. Without a header the
  file is one `np.fromfile(path, dtype)` away, and a torn last record (a crash mid-append) is simply
  the `size % record_size` bytes at the end.
- **JSON Lines for events and counters.** Events are rare and precious and are read by people and
  by other tools: one self-contained JSON object per line, appended with a single write, so a crash
  can tear at most the last line. Each event keeps the protocol's own JSON form (`EventRecord`, the
  same as on MQTT) under "event", and host-side facts (receive time, latency) under "annotations",
  so neither can shadow the other.
- **meta.json immutable, completion in a separate file.** meta.json is never rewritten, so no crash
  at any moment can leave it half-written or lost; "closed cleanly" is the atomic appearance of
  closed.json, which also states how much data a clean recording must hold.
- **Durability by batch.** Samples are buffered in memory and written + `fdatasync`ed at least every
  `flush_interval_s` (0.2 s), and at once on every event (with the telemetry up to it). A `kill -9` or
  a power cut therefore loses at most the last interval plus one flush (< 0.5 s). A flush at 1 kHz is
  one `write` of ~6.4 kB and one `fdatasync` per file touched: see docs/recordings.md for the
  measured cost.
- **Never block the caller on the disk.** By default a small writer thread does every write and sync;
  `add_samples` / `add_event` / `add_counters` only append to an in-memory list under a lock (a few
  microseconds), so they may be called straight from the asyncio loop. With `background=False` the
  recorder flushes inline from those calls instead (deterministic, for callers that already run it
  in a thread of their own).

Versioning: `format_version` is "MAJOR.MINOR". A minor bump only adds (new keys, new files), which
older readers ignore; a major bump breaks readers, and `Recording.open` refuses a newer major with an
error naming both versions. Format 2 (wire protocol 2) records `delivered_nl` and `plunger_um` where
format 1 had `volume_nl` (the v1 wire's plunger displacement since ARM); `Recording.open` still reads
1.x, presenting its samples and events in the format-2 layout (docs/recordings.md, "Format 1").
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from enum import IntEnum, IntFlag
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import numpy as np
from pydantic import BaseModel, ValidationError

from host.errors import CementguardError
from host.file_limits import (
    MAX_JSON_BYTES,
    MAX_LOG_BYTES,
    MAX_TELEMETRY_BYTES,
    FileRejectedError,
    check_regular,
    read_regular,
)
from protocol import PROTOCOL_VERSION
from protocol.enums import (
    AlarmCode,
    Capabilities,
    EventKind,
    Flags,
    Mode,
    PlanFlags,
    ResetCause,
    State,
    StopDetail,
    StopReason,
    StopSource,
)
from protocol.messages import CalibrationInfo, Event, SyringeInfo
from protocol.models import DeviceInfoRecord, DeviceSetupRecord, EventRecord
from protocol.telemetry import SAMPLE_DTYPE, SampleArray

FORMAT_NAME = "cementguard-recording"
FORMAT_VERSION = (2, 0)
"""(major, minor) written by this Recorder; Recording.open reads every 1.x and 2.x."""
OLDEST_MAJOR = 1

META_FILE = "meta.json"
TELEMETRY_FILE = "telemetry.bin"
EVENTS_FILE = "events.jsonl"
COUNTERS_FILE = "counters.jsonl"
CLOSED_FILE = "closed.json"

FLUSH_INTERVAL_S = 0.2
"""Default longest time data waits in memory: 0.2 s + one flush stays well inside the 0.5 s promise."""

TELEMETRY_UNITS: dict[str, tuple[str, str, tuple[str, str, float] | None]] = {
    # field: (unit, description, (edge column, edge unit, factor from field to edge unit) or None)
    "t_us": ("us", "controller time since power-up (not wall time)", ("t_s", "s", 1e-6)),
    "pressure_pa": (
        "Pa",
        "syringe pressure, gauge; invalid while flags has SENSOR_FAULT",
        ("pressure_kpa", "kPa", 1e-3),
    ),
    "delivered_nl": (
        "nL",
        "cement delivered since ARM, never decreases (1 nL = 1e-12 m^3)",
        ("delivered_ml", "mL", 1e-6),
    ),
    "plunger_um": ("um", "plunger position from home, forward positive", ("plunger_mm", "mm", 1e-3)),
    "flow_nl_s": ("nL/s", "measured flow (plunger speed x bore area)", ("flow_ml_min", "mL/min", 6e-5)),
    "flow_setpoint_nl_s": (
        "nL/s",
        "flow the controller commands (throttled); 0 outside INJECTING",
        ("flow_setpoint_ml_min", "mL/min", 6e-5),
    ),
    "motor_um_s": ("um/s", "commanded plunger speed, forward positive", ("motor_mm_s", "mm/s", 1e-3)),
    "viscosity_pas": (
        "Pa s",
        "online apparent viscosity estimate; NaN when not valid",
        ("viscosity_pa_s", "Pa s", 1.0),
    ),
    "flags": ("bit set", "status bits, enums.Flags", None),
    "state": ("enum", "controller state, enums.State", None),
    "stop_reason": ("enum", "reason of the latched stop, else NONE; enums.StopReason", None),
}

EVENT_UNITS: dict[str, str] = {
    "event_index": "count since power-up",
    "kind": "enum EventKind",
    "state": "enum State",
    "prev_state": "enum State",
    "reason": "enum StopReason",
    "source": "enum StopSource",
    "alarm": "enum AlarmCode",
    "t_s": "s, controller time since power-up",
    "flags": "bit set enums.Flags at the event (SENSOR_FAULT: pressure not valid)",
    "pressure_kpa": "kPa",
    "delivered_ml": "mL, cement delivered since ARM (never decreases)",
    "plunger_mm": "mm, plunger position from home; null in format 1 recordings",
    "detail": "per kind: see protocol/SPEC.md (e.g. um for RELIEF_DONE, ms for WORKING_TIME_WARNING)",
}

ANNOTATION_UNITS: dict[str, str] = {
    "host_time_unix_s": "s, host wall clock (UTC, Unix epoch) when the recorder got the event",
    "source_latency_ms": "ms, optional: host-measured latency from the cause to this event",
}

ENUMS: tuple[type[IntEnum] | type[IntFlag], ...] = (
    State,
    StopReason,
    StopSource,
    StopDetail,
    EventKind,
    AlarmCode,
    ResetCause,
    Mode,
    PlanFlags,
    Flags,
    Capabilities,
)


class RecordingError(CementguardError):
    """A directory is not a readable recording."""


class RecordingVersionError(RecordingError):
    """The recording's format version is newer than this reader understands."""


class RecorderError(CementguardError, RuntimeError):
    """The recorder cannot take more data: it is closed, or writing failed (see __cause__)."""


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def host_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cementguard")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0+unknown"


def _utc_iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_sync = getattr(os, "fdatasync", os.fsync)
"""fdatasync where the OS has it: it still persists the file size, which is all an append needs."""


def _fsync_dir(path: Path) -> None:
    """Make a create or rename in `path` durable. Not possible (nor needed) on every OS."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _jsonable(value: Any) -> Any:
    """A best-effort JSON form for host-side annotations and counters, which must never cost an event:
    non-finite floats become null, dataclasses dicts, enums their name, anything else its str()."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, IntEnum | IntFlag):
        return value.name if value.name is not None else int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="json"))
    return str(value)


def _strict_json(value: Any, what: str) -> Any:
    """The plan and extra metadata must be plain JSON, and are checked when the run starts."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not plain JSON (numbers must be finite): {exc}") from None


def describe_dtype(dtype: np.dtype[Any]) -> dict[str, Any]:
    """The telemetry record layout as meta.json states it: enough to rebuild the numpy dtype, or a C
    struct, without cementguard."""
    fields = []
    for name in dtype.names or ():
        sub, offset = dtype.fields[name][:2]  # type: ignore[index]
        unit, description, edge = TELEMETRY_UNITS.get(name, ("unknown", "", None))
        entry: dict[str, Any] = {
            "name": name,
            "type": sub.str,
            "offset": offset,
            "unit": unit,
            "description": description,
        }
        if edge is not None:
            entry["edge"] = {"name": edge[0], "unit": edge[1], "factor": edge[2]}
        fields.append(entry)
    return {
        "file": TELEMETRY_FILE,
        "record_size": dtype.itemsize,
        "byte_order": "little",
        "header_bytes": 0,
        "fields": fields,
        "numpy_descr": [[f["name"], f["type"]] for f in fields],
    }


def dtype_from_meta(telemetry: Mapping[str, Any]) -> np.dtype[Any]:
    try:
        fields = telemetry["fields"]
        dtype = np.dtype(
            {
                "names": [f["name"] for f in fields],
                "formats": [f["type"] for f in fields],
                "offsets": [f["offset"] for f in fields],
                "itemsize": telemetry["record_size"],
            }
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(f"meta.json telemetry layout is not readable: {exc!r}") from None
    return SAMPLE_DTYPE if dtype == SAMPLE_DTYPE else dtype


def _enum_tables() -> dict[str, dict[str, int]]:
    return {e.__name__: {m.name: int(m) for m in e if m.name is not None} for e in ENUMS}


def event_json(event: Event | EventRecord) -> dict[str, Any]:
    """The EventRecord JSON form of an event. An Event carrying an enum value this side does not know
    (the codec keeps such values as plain ints) is still recorded, with the int in place of the name
    (`EventRecord` keeps it raw)."""
    record = event if isinstance(event, EventRecord) else EventRecord.from_message(event)
    return record.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FlushInfo:
    """What one flush made durable; passed to `on_flush`. Totals count since the recording began."""

    samples: int
    """Samples durable in telemetry.bin after this flush."""
    last_t_us: int | None
    """t_us of the last durable sample, if the layout has t_us and there is one."""
    events: int
    counters: int
    bytes_written: int
    """Bytes written by this flush, all files."""
    duration_s: float
    """Wall time of this flush's writes and syncs."""


@dataclasses.dataclass(slots=True)
class RecorderStats:
    flushes: int = 0
    flush_time_s: float = 0.0
    max_flush_s: float = 0.0
    bytes_written: int = 0


CountersSource = Callable[[], Any]


class Recorder:
    """Writes one recording. Use `Recorder.create(...)`, as a context manager or with `close()`.

    Thread-safe: `add_*` may be called from any thread (typically the asyncio loop's); they never touch
    the disk unless `background=False`. Once writing fails (disk full, ...) every later call raises
    RecorderError from the OSError; nothing is dropped silently.
    """

    def __init__(
        self,
        path: Path,
        dtype: np.dtype[Any],
        *,
        flush_interval_s: float,
        background: bool,
        counters_source: CountersSource | None,
        counters_interval_s: float,
        on_flush: Callable[[FlushInfo], None] | None,
        max_pending_bytes: int,
    ) -> None:
        self.path = path
        self.dtype = dtype
        self.flush_interval_s = flush_interval_s
        self.background = background
        self.stats = RecorderStats()
        self._counters_source = counters_source
        self._counters_interval_s = counters_interval_s
        self._on_flush = on_flush
        self._max_pending_bytes = max_pending_bytes
        self._has_t = dtype.names is not None and "t_us" in dtype.names

        self._lock = threading.Lock()  # guards the pending buffers and flags below; held briefly
        self._io_lock = threading.Lock()  # serialises flushes (swap + write + sync) so order is kept
        self._tel: list[bytes] = []
        self._ev: list[bytes] = []
        self._cnt: list[bytes] = []
        self._pending_bytes = 0
        self._pending_first_t: int | None = None
        self._pending_last_t: int | None = None
        self._last_flush_mono = time.monotonic()
        self._last_counters_mono = time.monotonic()
        self._samples_total = 0
        self._events_total = 0
        self._counters_total = 0
        self._durable_samples = 0
        self._durable_events = 0
        self._durable_counters = 0
        self._durable_last_t: int | None = None
        self._error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        """Called once, on the writer thread, when a background flush fails: the error is then known
        at once, not only at the next add_* (which raises it too)."""
        self._closing = False
        self._closed = False

        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fds = {
            name: os.open(path / name, flags, 0o644) for name in (TELEMETRY_FILE, EVENTS_FILE, COUNTERS_FILE)
        }
        _fsync_dir(path)

        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"recorder:{path.name}", daemon=True)
            self._thread.start()
        atexit.register(self._at_exit)

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        plan: Mapping[str, Any] | BaseModel | None,
        device: DeviceInfoRecord | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        sample_dtype: np.dtype[Any] = SAMPLE_DTYPE,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        background: bool = True,
        counters_source: CountersSource | None = None,
        counters_interval_s: float = 1.0,
        on_flush: Callable[[FlushInfo], None] | None = None,
        max_pending_bytes: int = 1 << 20,
    ) -> Recorder:
        """Start a recording in `directory` (created; it must not hold anything yet).

        plan: the plan as the caller gave it (a JSON-able mapping or a pydantic model), stored verbatim.
        device: the handshake's DeviceInfoRecord, or None when recording without a device.
        extra: any other JSON-able facts about the run (scenario name, operator, rig notes).
        counters_source: optional callable returning the link counters (a mapping or a dataclass); the
            recorder snapshots it every `counters_interval_s` (on its writer thread) and at close.
        on_flush: called after every flush that wrote something (on the writer thread).
        """
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise FileExistsError(f"{path} is not empty: a recording directory holds exactly one run")
        created = time.time()
        meta = {
            "format": FORMAT_NAME,
            "format_version": f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}",
            "created_utc": _utc_iso(created),
            "created_unix_s": created,
            "host": {
                "cementguard_version": host_version(),
                "protocol_version": PROTOCOL_VERSION,
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "device": device.model_dump(mode="json") if device is not None else None,
            "plan": _strict_json(dict(plan) if isinstance(plan, Mapping) else plan, "plan"),
            "extra": _strict_json(dict(extra or {}), "extra"),
            "telemetry": describe_dtype(sample_dtype),
            "events": {
                "file": EVENTS_FILE,
                "line": '{"event": {...EventRecord...}, "annotations": {...}}',
                "units": EVENT_UNITS,
                "annotation_units": ANNOTATION_UNITS,
            },
            "counters": {
                "file": COUNTERS_FILE,
                "line": '{"host_time_unix_s": <s>, "counters": {...}}',
                "units": {"host_time_unix_s": "s, host wall clock (UTC, Unix epoch)", "counters": "counts"},
            },
            "closed_file": CLOSED_FILE,
            "flush_interval_s": flush_interval_s,
            "enums": _enum_tables(),
        }
        _write_json_atomic(path / META_FILE, meta)
        return cls(
            path,
            sample_dtype,
            flush_interval_s=flush_interval_s,
            background=background,
            counters_source=counters_source,
            counters_interval_s=counters_interval_s,
            on_flush=on_flush,
            max_pending_bytes=max_pending_bytes,
        )

    # -- data in -------------------------------------------------------------------------------
    def add_samples(self, samples: SampleArray) -> None:
        """Append telemetry samples (a structured array of the recording's dtype, any length)."""
        if samples.dtype != self.dtype:
            raise TypeError(f"samples must have dtype {self.dtype}, got {samples.dtype}")
        n = len(samples)
        if n == 0:
            self._check_open()
            return
        data = samples.tobytes()  # a copy: the caller may reuse its buffer
        first_t = int(samples["t_us"][0]) if self._has_t else None
        last_t = int(samples["t_us"][-1]) if self._has_t else None
        with self._lock:
            self._check_open()
            self._tel.append(data)
            self._pending_bytes += len(data)
            self._samples_total += n
            if self._pending_first_t is None:
                self._pending_first_t = first_t
            self._pending_last_t = last_t
            due = self._due()
        if due:
            self._kick()

    def add_event(self, event: Event | EventRecord, **annotations: Any) -> None:
        """Append a controller event, with optional host-side annotations (JSON-able keyword values,
        e.g. source_latency_ms=3.2). `host_time_unix_s` is added unless given. The event, and the
        telemetry before it, is made durable at once (inline) or within one flush (background)."""
        annotations.setdefault("host_time_unix_s", time.time())
        line = {"event": event_json(event), "annotations": _jsonable(annotations)}
        data = (json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            self._check_open()
            self._ev.append(data)
            self._pending_bytes += len(data)
            self._events_total += 1
        self._kick()

    def add_counters(self, counters: Any) -> None:
        """Append a snapshot of the host link counters (a mapping or a dataclass such as
        protocol.StreamCounters; nested values are fine)."""
        with self._lock:
            self._check_open()
        self._append_counters(counters)

    def _append_counters(self, counters: Any) -> None:
        line = {"host_time_unix_s": time.time(), "counters": _jsonable(counters)}
        data = (json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            self._cnt.append(data)
            self._pending_bytes += len(data)
            self._counters_total += 1
            due = self._due()
        if due:
            self._kick()

    # -- flushing ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._error is not None:
            raise RecorderError(f"recording {self.path} failed: {self._error!r}") from self._error
        if self._closing:
            raise RecorderError(f"recording {self.path} is closed")

    def _due(self) -> bool:
        """Under self._lock: is the pending data old or large enough to flush now?"""
        if self._pending_bytes >= self._max_pending_bytes:
            return True
        if self.background:
            return False  # the writer thread flushes on its own clock
        if time.monotonic() - self._last_flush_mono >= self.flush_interval_s:
            return True
        first, last = self._pending_first_t, self._pending_last_t
        return first is not None and last is not None and last - first >= self.flush_interval_s * 1e6

    def _kick(self) -> None:
        if self.background:
            self._wake.set()
        else:
            self.flush()

    def flush(self) -> FlushInfo | None:
        """Write and sync everything added so far, in the calling thread; returns what it made durable,
        or None when there was nothing to write."""
        with self._lock:
            self._check_open_for_flush()
        info = self._flush()
        if info is not None and self._on_flush is not None:
            self._on_flush(info)
        return info

    def _check_open_for_flush(self) -> None:
        if self._error is not None:
            raise RecorderError(f"recording {self.path} failed: {self._error!r}") from self._error
        if self._closed:
            raise RecorderError(f"recording {self.path} is closed")

    def _flush(self) -> FlushInfo | None:
        with self._io_lock:
            if self._closed:
                return None
            with self._lock:
                batches = ((TELEMETRY_FILE, self._tel), (EVENTS_FILE, self._ev), (COUNTERS_FILE, self._cnt))
                self._tel, self._ev, self._cnt = [], [], []
                self._pending_bytes = 0
                self._pending_first_t = None
                last_t = self._pending_last_t
                totals = (self._samples_total, self._events_total, self._counters_total)
                self._last_flush_mono = time.monotonic()
            if not any(chunks for _, chunks in batches):
                return None
            t0 = time.perf_counter()
            written = 0
            try:
                for name, chunks in batches:
                    if chunks:
                        data = b"".join(chunks)
                        _write_all(self._fds[name], data)
                        written += len(data)
                for name, chunks in batches:
                    if chunks:
                        _sync(self._fds[name])
            except OSError as exc:
                self._error = exc
                raise RecorderError(f"recording {self.path}: write failed: {exc!r}") from exc
            duration = time.perf_counter() - t0
            self._durable_samples, self._durable_events, self._durable_counters = totals
            if last_t is not None:
                self._durable_last_t = last_t
            s = self.stats
            s.flushes += 1
            s.flush_time_s += duration
            s.max_flush_s = max(s.max_flush_s, duration)
            s.bytes_written += written
            return FlushInfo(
                samples=totals[0],
                last_t_us=self._durable_last_t,
                events=totals[1],
                counters=totals[2],
                bytes_written=written,
                duration_s=duration,
            )

    def _poll_counters(self, force: bool = False) -> None:
        if self._counters_source is None:
            return
        now = time.monotonic()
        if not force and now - self._last_counters_mono < self._counters_interval_s:
            return
        self._last_counters_mono = now
        try:
            snapshot = self._counters_source()
        except Exception as exc:  # a broken counters source must not stop the recording
            snapshot = {"error": repr(exc)}
        self._append_counters(snapshot)

    def _run(self) -> None:
        """The writer thread: flush every flush_interval_s, or at once when woken (event, big buffer)."""
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._closing:
                return
            try:
                self._poll_counters()
                info = self._flush()
                if info is not None and self._on_flush is not None:
                    self._on_flush(info)
            except BaseException as exc:  # reported to the caller by the next add_* / close
                if self._error is None:
                    self._error = exc
                report = self.on_error
                if report is not None:
                    with contextlib.suppress(Exception):
                        report(exc.__cause__ if isinstance(exc, RecorderError) and exc.__cause__ else exc)
                return

    # -- closing -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, exit_status: str = "ok") -> None:
        """Flush, sync, and mark the recording complete (closed.json). Idempotent. If writing had
        failed, the files are closed, closed.json is not written, and RecorderError is raised."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if self._thread is not None:
            self._wake.set()
            self._thread.join()
        try:
            if self._error is None:
                self._poll_counters(force=True)
                info = self._flush()
                if info is not None and self._on_flush is not None:
                    self._on_flush(info)
        finally:
            with self._io_lock:
                self._closed = True
                for fd in self._fds.values():
                    os.close(fd)
            atexit.unregister(self._at_exit)
        if self._error is not None:
            raise RecorderError(f"recording {self.path} failed: {self._error!r}") from self._error
        closed = time.time()
        sizes = {name: (self.path / name).stat().st_size for name in self._fds}
        _write_json_atomic(
            self.path / CLOSED_FILE,
            {
                "closed_utc": _utc_iso(closed),
                "closed_unix_s": closed,
                "exit": exit_status,
                "samples": self._durable_samples,
                "events": self._durable_events,
                "counters": self._durable_counters,
                "bytes": sizes,
            },
        )

    def _at_exit(self) -> None:
        """Interpreter exit without close(): save what is pending, but do not claim a clean close."""
        if not self._closed and self._error is None:
            with contextlib.suppress(Exception):
                self._flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close("ok" if exc is None else f"exception: {exc!r}")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Recorder {self.path} {state} samples={self._samples_total} events={self._events_total}>"


def new_run_dir(root: str | os.PathLike[str], label: str = "") -> Path:
    """A fresh, sortable run directory name under `root`: 20261121T101500Z[-label][-N] (not created)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path(root) / (f"{stamp}-{label}" if label else stamp)
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedEvent:
    record: EventRecord
    """The event. Enum fields hold plain ints where the value is unknown to this protocol version."""
    annotations: dict[str, Any]

    @property
    def host_time_unix_s(self) -> float | None:
        value = self.annotations.get("host_time_unix_s")
        return float(value) if isinstance(value, int | float) else None


@dataclasses.dataclass(frozen=True, slots=True)
class CounterSnapshot:
    host_time_unix_s: float
    counters: dict[str, Any]


def parse_version(text: Any) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        raise RecordingError(f"meta.json format_version {text!r} is not MAJOR.MINOR") from None


def _read_jsonl(path: Path, name: str, problems: list[str]) -> tuple[list[Any], int]:
    """Lines of a JSON Lines file. A torn tail (the last line(s) unparseable, e.g. a crash mid-append,
    or zeros after a power cut) is dropped and counted; a bad line followed by good ones is skipped
    and reported in `problems`. Returns (objects, lines dropped from the tail)."""
    try:
        data = read_regular(path, MAX_LOG_BYTES)
    except FileNotFoundError:
        return [], 0
    except FileRejectedError as exc:
        raise RecordingError(str(exc)) from None
    parsed: list[tuple[int, Any]] = []
    bad: list[int] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip(b" \t\r\x00"):
            continue
        try:
            parsed.append((number, json.loads(raw)))
        except ValueError:
            bad.append(number)
    last_good = parsed[-1][0] if parsed else 0
    middle = [n for n in bad if n < last_good]
    if middle:
        problems.append(f"{name}: skipped unreadable line(s) {middle}")
    return [obj for _, obj in parsed], len(bad) - len(middle)


DEFAULT_CHUNK_SAMPLES = 65_536
"""Samples per chunk when streaming a recording (`Recording.iter_samples`): 2.6 MB of 40-byte records."""


@dataclasses.dataclass(frozen=True, slots=True)
class _SampleFile:
    """Where a recording's readable samples are: the file, its record layout, and how many records to
    read (a torn tail and trailing zeros of a crashed recording already excluded)."""

    path: Path
    dtype: np.dtype[Any]
    count: int
    major: int


class Recording:
    """A recording read back. `Recording.open(directory)` reads the metadata, events and counters;
    the samples are mapped from the file by `samples` (read-only, paged in as touched: the replay's
    random access) or streamed in bounded chunks by `iter_samples` (exports, reports, plots and
    `cementguard.load` do that, so a 2-hour recording never needs to fit in memory)."""

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        samples: SampleArray | _SampleFile,
        events: list[RecordedEvent],
        counters: list[CounterSnapshot],
        closed: dict[str, Any] | None,
        problems: list[str],
        dropped: dict[str, int],
        missing_columns: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self.meta = meta
        self._samples: SampleArray | None = None if isinstance(samples, _SampleFile) else samples
        self._sample_file = samples if isinstance(samples, _SampleFile) else None
        self.events = events
        self.counters = counters
        self.closed = closed
        """closed.json, or None if the recorder never closed (host crashed or killed)."""
        self.problems = problems
        """Human-readable notes on anything the reader dropped or found inconsistent."""
        self.dropped = dropped
        """What a crash tore off the tails: telemetry_bytes, telemetry_zero_records, events_lines,
        counters_lines."""
        self.missing_columns = missing_columns
        """Sample columns this recording never had (format 1: plunger_um, flow_setpoint_nl_s): they
        read as 0 in `samples`; exports leave them empty."""

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Recording:
        path = Path(directory)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            if (path / (META_FILE + ".tmp")).exists():
                raise RecordingError(
                    f"{path}: the host stopped while creating this recording (no {META_FILE})"
                )
            raise RecordingError(f"{path} is not a recording: no {META_FILE}")
        try:
            meta = json.loads(read_regular(meta_path, MAX_JSON_BYTES))
        except FileRejectedError as exc:
            raise RecordingError(str(exc)) from None
        except ValueError as exc:
            raise RecordingError(f"{meta_path} is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            got = meta.get("format") if isinstance(meta, dict) else None
            raise RecordingError(f"{path} is not a {FORMAT_NAME} (format is {got!r})")
        version = parse_version(meta.get("format_version"))
        if version[0] > FORMAT_VERSION[0]:
            raise RecordingVersionError(
                f"{path} is recording format {version[0]}.{version[1]}, newer than this cementguard "
                f"({host_version()}) reads: format {FORMAT_VERSION[0]}.x. Upgrade cementguard to read it."
            )
        if version[0] < OLDEST_MAJOR:
            raise RecordingVersionError(
                f"{path} is recording format {version[0]}.{version[1]}; "
                f"{OLDEST_MAJOR}.x to {FORMAT_VERSION[0]}.x expected"
            )

        closed: dict[str, Any] | None = None
        problems: list[str] = []
        if (path / CLOSED_FILE).is_file():
            try:
                closed = json.loads(read_regular(path / CLOSED_FILE, MAX_JSON_BYTES))
            except ValueError:  # FileRejectedError included
                problems.append(f"{CLOSED_FILE} is unreadable: treated as incomplete")
        complete = closed is not None

        dtype = dtype_from_meta(meta.get("telemetry", {}))
        sample_file, tail_bytes, zero_records = _sample_extent(
            path / meta.get("telemetry", {}).get("file", TELEMETRY_FILE), dtype, complete, version[0]
        )
        dropped = {"telemetry_bytes": tail_bytes, "telemetry_zero_records": zero_records}
        if tail_bytes:
            problems.append(f"{TELEMETRY_FILE}: dropped a torn last record ({tail_bytes} bytes)")
        if zero_records:
            problems.append(f"{TELEMETRY_FILE}: dropped {zero_records} all-zero records at the end")
        missing: tuple[str, ...] = ()
        if version[0] == 1:
            missing = upgrade_v1_samples(np.zeros(0, dtype=dtype))[1]

        raw_events, dropped["events_lines"] = _read_jsonl(path / EVENTS_FILE, EVENTS_FILE, problems)
        events: list[RecordedEvent] = []
        for i, obj in enumerate(raw_events):
            event = _event_from_json(upgrade_v1_event(obj) if version[0] == 1 else obj)
            if event is None:
                problems.append(f"{EVENTS_FILE}: entry {i} is not an event: skipped")
            else:
                events.append(event)
        raw_counters, dropped["counters_lines"] = _read_jsonl(path / COUNTERS_FILE, COUNTERS_FILE, problems)
        counters = [
            CounterSnapshot(float(obj.get("host_time_unix_s", math.nan)), dict(obj.get("counters") or {}))
            for obj in raw_counters
            if isinstance(obj, dict)
        ]
        for name in ("events_lines", "counters_lines"):
            if dropped[name]:
                problems.append(
                    f"{name.split('_')[0]}.jsonl: dropped {dropped[name]} torn line(s) at the end"
                )

        if closed is not None:
            expected = {"samples": sample_file.count, "events": len(events), "counters": len(counters)}
            for key, have in expected.items():
                if isinstance(closed.get(key), int) and closed[key] != have:
                    problems.append(f"closed cleanly with {closed[key]} {key}, but {have} are readable")
        return cls(path, meta, sample_file, events, counters, closed, problems, dropped, missing)

    # -- samples -----------------------------------------------------------------------------------
    @property
    def samples(self) -> SampleArray:
        """Every sample, in `SAMPLE_DTYPE`. A current-format file is mapped read-only (`np.memmap`):
        nothing is copied into the process's memory, the pages are read as they are touched and the
        kernel can drop them again (a 2-hour 1 kHz run is 288 MB of file). A format-1 file is upgraded
        into memory on first use and kept. For one pass over a long recording prefer `iter_samples`."""
        if self._samples is None:
            source = self._sample_file
            if source is not None and source.count and source.dtype == SAMPLE_DTYPE:
                self._samples = np.memmap(source.path, dtype=SAMPLE_DTYPE, mode="r", shape=(source.count,))
            else:
                parts = [np.zeros(0, dtype=SAMPLE_DTYPE), *self.iter_samples(1 << 22)]
                self._samples = np.concatenate(parts)
        return self._samples

    @property
    def sample_count(self) -> int:
        """How many samples the recording holds, without reading them."""
        if self._samples is not None:
            return len(self._samples)
        return self._sample_file.count if self._sample_file is not None else 0

    def iter_samples(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[SampleArray]:
        """The samples in order, in chunks of at most `chunk_samples` (`SAMPLE_DTYPE`, format 1
        upgraded), read from the file one chunk at a time: memory stays bounded whatever the length."""
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        if self._samples is not None:
            for start in range(0, len(self._samples), chunk_samples):
                yield self._samples[start : start + chunk_samples]
            return
        source = self._sample_file
        if source is None or source.count == 0:
            return
        with open(source.path, "rb") as f:
            left = source.count
            while left > 0:
                chunk = np.fromfile(f, dtype=source.dtype, count=min(chunk_samples, left))
                if not len(chunk):  # the file shrank under us: stop at what is there
                    return
                left -= len(chunk)
                yield upgrade_v1_samples(chunk)[0] if source.major == 1 else chunk

    # -- what it is ------------------------------------------------------------------------------
    @property
    def is_complete(self) -> bool:
        """True if the recorder closed it cleanly; False if the host crashed or was killed mid-run."""
        return self.closed is not None

    @property
    def format_version(self) -> tuple[int, int]:
        return parse_version(self.meta["format_version"])

    @property
    def plan(self) -> dict[str, Any]:
        plan = self.meta.get("plan")
        return plan if isinstance(plan, dict) else {}

    @property
    def device(self) -> DeviceInfoRecord | None:
        device = self.meta.get("device")
        if device is None:
            return None
        try:
            return DeviceInfoRecord.model_validate(device)
        except ValidationError:
            return DeviceInfoRecord.model_construct(**device)

    @property
    def device_setup(self) -> DeviceSetupRecord | None:
        """The syringe and calibration in force during the run (meta.json `extra.device_setup`, from
        the handshake's SYRINGE_INFO and CALIBRATION_INFO); None for a device without capability
        SETUP and for recordings made before it was recorded."""
        extra = self.meta.get("extra")
        found = extra.get("device_setup") if isinstance(extra, dict) else None
        if not isinstance(found, dict):
            return None
        try:
            return DeviceSetupRecord.model_validate(found)
        except ValidationError:
            return None

    @property
    def run_metadata(self) -> dict[str, Any]:
        """The run's metadata for the lab notebook (specimen, operator, cement product and lot, ...:
        `host.run_metadata`), from meta.json `extra.run_metadata`; {} for a recording without it."""
        extra = self.meta.get("extra")
        found = extra.get("run_metadata") if isinstance(extra, dict) else None
        return dict(found) if isinstance(found, dict) else {}

    @property
    def created_utc(self) -> str:
        return str(self.meta.get("created_utc", ""))

    @property
    def t_s(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Sample times, controller clock, seconds: 8 bytes a sample, filled chunk by chunk (the
        samples themselves are not read into memory for it)."""
        out = np.empty(self.sample_count, dtype=np.float64)
        at = 0
        for chunk in self.iter_samples():
            out[at : at + len(chunk)] = chunk["t_us"] / 1e6
            at += len(chunk)
        return out[:at]

    @property
    def duration_s(self) -> float:
        """Last sample time minus first, from those two samples alone."""
        n = self.sample_count
        if n < 2:
            return 0.0
        first, last = self.sample_at(0), self.sample_at(n - 1)
        return float(int(last["t_us"]) - int(first["t_us"])) / 1e6

    def sample_at(self, index: int) -> np.void:
        """One sample (`SAMPLE_DTYPE`), read alone from the file: for the first and last sample of a
        recording too long to read. IndexError outside 0..sample_count-1."""
        n = self.sample_count
        if not 0 <= index < n:
            raise IndexError(f"sample {index} of a recording with {n} samples")
        if self._samples is not None:
            return cast(np.void, self._samples[index])
        source = self._sample_file
        assert source is not None
        with open(source.path, "rb") as f:
            f.seek(index * source.dtype.itemsize)
            raw = np.fromfile(f, dtype=source.dtype, count=1)
        if source.major == 1:
            raw = upgrade_v1_samples(raw)[0]
        return cast(np.void, raw.astype(SAMPLE_DTYPE, copy=False)[0])

    def stop_events(self) -> list[RecordedEvent]:
        return [e for e in self.events if e.record.kind == EventKind.STOP]

    def enum_name(self, enum: str, value: int) -> str:
        """Name of an enum value, by the recording's own tables (so a newer writer's values read), else
        this protocol's, else e.g. 'StopReason(99)'."""
        table = self.meta.get("enums", {}).get(enum) or {}
        for name, number in table.items():
            if number == value:
                return str(name)
        for e in ENUMS:
            if e.__name__ == enum:
                try:
                    member = e(value)
                    if member.name is not None:
                        return member.name
                except ValueError:
                    pass
        return f"{enum}({value})"

    def __repr__(self) -> str:
        state = "complete" if self.is_complete else "INCOMPLETE"
        return (
            f"<Recording {self.path} {state} samples={self.sample_count} events={len(self.events)} "
            f"counters={len(self.counters)}>"
        )


def _sample_extent(
    path: Path, dtype: np.dtype[Any], complete: bool, major: int
) -> tuple[_SampleFile, int, int]:
    """(where the readable samples are, torn tail bytes, trailing all-zero records dropped). A crash
    can leave a partial last record; a power cut after the size was committed but before the data can
    leave zeros at the end: both are excluded from an incomplete recording. Only the file's end is
    read (backwards, a chunk at a time, until a non-zero record), never the whole file."""
    try:
        size = check_regular(path, MAX_TELEMETRY_BYTES)
    except FileNotFoundError:
        return _SampleFile(path, dtype, 0, major), 0, 0
    except FileRejectedError as exc:
        raise RecordingError(str(exc)) from None
    count = size // dtype.itemsize
    tail = size - count * dtype.itemsize
    zeros = 0
    if not complete and count:
        keep, end = 0, count
        with open(path, "rb") as f:
            while end > 0 and not keep:
                start = max(0, end - DEFAULT_CHUNK_SAMPLES)
                f.seek(start * dtype.itemsize)
                raw = np.fromfile(f, dtype=np.uint8, count=(end - start) * dtype.itemsize)
                nonzero = np.flatnonzero(raw.reshape(-1, dtype.itemsize).any(axis=1))
                if len(nonzero):
                    keep = start + int(nonzero[-1]) + 1
                end = start
        if keep and keep < count:  # only after a real sample: an all-zero first sample is possible
            zeros = count - keep
            count = keep
    return _SampleFile(path, dtype, count, major), tail, zeros


def upgrade_v1_samples(samples: SampleArray) -> tuple[SampleArray, tuple[str, ...]]:
    """Format-1 samples (wire protocol 1) in the current layout, and the columns they never had.

    Protocol 1's `volume_nl` was the plunger's displacement since ARM, which it called "delivered";
    it becomes `delivered_nl` as recorded (it can fall during relief: that is what was on the wire).
    Columns a format-1 recording cannot have read as 0 and are named in the second value."""
    names = samples.dtype.names or ()
    out = np.zeros(len(samples), dtype=SAMPLE_DTYPE)
    missing: list[str] = []
    for name in SAMPLE_DTYPE.names or ():
        source = "volume_nl" if name == "delivered_nl" and name not in names else name
        if source in names:
            out[name] = samples[source]
        else:
            missing.append(name)
    return out, tuple(missing)


def upgrade_v1_event(obj: Any) -> Any:
    """A format-1 events.jsonl entry in the format-2 form: `volume_ml` (protocol 1's displacement,
    called delivered) becomes `delivered_ml`; flags 0 and plunger_mm null, which format 1 lacked."""
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), dict):
        return obj
    event = dict(obj["event"])
    if "volume_ml" in event and "delivered_ml" not in event:
        event["delivered_ml"] = event.pop("volume_ml")
    event.setdefault("flags", 0)
    event.setdefault("plunger_mm", None)
    return {**obj, "event": event}


def _event_from_json(obj: Any) -> RecordedEvent | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), dict):
        return None
    raw = obj["event"]
    annotations = obj.get("annotations") or {}
    try:
        record = EventRecord.model_validate(raw)
    except ValidationError:
        if not set(EventRecord.model_fields) <= set(raw):
            return None
        # an enum value this protocol version does not know: keep the plain ints
        record = EventRecord.model_construct(**{k: raw[k] for k in EventRecord.model_fields})
    return RecordedEvent(record, dict(annotations) if isinstance(annotations, dict) else {})


__all__ = [
    "CLOSED_FILE",
    "COUNTERS_FILE",
    "EVENTS_FILE",
    "FLUSH_INTERVAL_S",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "META_FILE",
    "TELEMETRY_FILE",
    "CounterSnapshot",
    "FlushInfo",
    "RecordedEvent",
    "Recorder",
    "RecorderError",
    "RecorderStats",
    "Recording",
    "RecordingError",
    "RecordingVersionError",
    "describe_dtype",
    "device_setup_json",
    "dtype_from_meta",
    "event_json",
    "new_run_dir",
    "upgrade_v1_event",
    "upgrade_v1_samples",
]


def device_setup_json(
    syringe: SyringeInfo | None, calibration: CalibrationInfo | None
) -> dict[str, Any] | None:
    """What a recording keeps of the syringe and calibration in force (`extra.device_setup`), from the
    handshake's replies (DeviceClient.syringe / .calibration); None without them."""
    if syringe is None or calibration is None:
        return None
    return DeviceSetupRecord.from_messages(syringe, calibration).model_dump(mode="json")
