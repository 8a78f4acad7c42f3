"""The simulator's non-volatile memory for the syringe and the calibration (protocol/SPEC.md §5.23).

A real pump keeps them in flash; the simulator keeps them in a small JSON file (`cementguard sim
--setup-file`). Reading it is all or nothing: a file that cannot be read, is not JSON, has an unknown
or missing key, or holds a value the device's own commands would refuse raises `SetupFileError`
naming the file and the field, and nothing is put in force (the simulator does not start), so a
hand-edited or truncated file can never smuggle a correction into the pressure or volume readings.
Writes are atomic (a temporary file in the same directory, fsync, rename): a power cut mid-write
leaves the old file or the new one, never half of one. The simulator writes from a thread of its own
(`SetupWriter`): an fsync can take a loaded disk 100 ms, which must never stall the 1 kHz tick.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware_sim.controller.calibration import Calibration, DeviceSetup, check_stored
from firmware_sim.controller.commands import BadParam
from firmware_sim.controller.config import ControllerConfig
from firmware_sim.controller.syringes import MountedSyringe, check_syringe
from firmware_sim.hal import Hardware
from protocol.messages import SetSyringe

log = logging.getLogger(__name__)

MAX_SETUP_BYTES = 64 * 1024
"""The file holds a few numbers; anything larger is not ours (and is never read whole)."""
FORMAT = "cementguard-device-setup"

_U32 = Annotated[int, Field(ge=0, le=0xFFFF_FFFF)]
_I32 = Annotated[int, Field(ge=-0x8000_0000, le=0x7FFF_FFFF)]


class SetupFileError(ValueError):
    """The setup file cannot be used; the message names the file, the field and the allowed values."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _SyringeModel(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=16)]
    bore_um: _U32
    stroke_um: _U32
    dead_volume_nl: _U32
    max_pressure_pa: _U32


class _CalibrationModel(_Strict):
    zero_offset_pa: _I32 = 0
    zero_utc_s: _U32 = 0
    span_gain_ppm: _U32 = 1_000_000
    span_reference_pa: _U32 = 0
    span_utc_s: _U32 = 0
    volume_factor_ppm: _U32 = 1_000_000
    volume_utc_s: _U32 = 0


class _SetupModel(_Strict):
    format: Literal["cementguard-device-setup"]
    version: Literal[1]
    syringe: _SyringeModel | None
    calibration: _CalibrationModel


def _read_bounded(path: Path) -> bytes:
    """The file's bytes: a regular file of at most MAX_SETUP_BYTES (a FIFO or /dev/zero is refused
    without being read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SetupFileError(f"setup file {path}: is not a regular file")
        data = os.read(fd, MAX_SETUP_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SETUP_BYTES:
        raise SetupFileError(
            f"setup file {path}: is larger than {MAX_SETUP_BYTES} bytes; allowed at most that"
        )
    return data


def _problems(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(file)"
        value = err.get("input")
        lines.append(f"{where}: {value!r}: {err['msg']}")
    return "; ".join(lines)


def load_setup(path: Path, config: ControllerConfig, hardware: Hardware) -> DeviceSetup | None:
    """The setup stored in `path`, None when the file does not exist yet (a new device: factory
    values). SetupFileError when it exists but cannot be put in force."""
    try:
        data = _read_bounded(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SetupFileError(f"setup file {path}: cannot be read: {exc.strerror or exc}") from None
    try:
        raw: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SetupFileError(f"setup file {path}: is not UTF-8 JSON: {exc}") from None
    try:
        model = _SetupModel.model_validate(raw)
    except ValidationError as exc:
        raise SetupFileError(f"setup file {path}: {_problems(exc)}") from None
    syringe: MountedSyringe | None = None
    if model.syringe is not None:
        s = model.syringe
        msg = SetSyringe(0, s.name, s.bore_um, s.stroke_um, s.dead_volume_nl, s.max_pressure_pa)
        checked = check_syringe(msg, config, hardware)
        if isinstance(checked, BadParam):
            name = msg.field_name(checked.field) or "name"
            value = getattr(s, name)
            raise SetupFileError(
                f"setup file {path}: syringe.{name}: {value!r} is refused by this device "
                f"(SET_SYRINGE's bound: {checked.detail})"
            )
        syringe = checked
    setup = DeviceSetup(syringe, Calibration(**model.calibration.model_dump()))
    why = check_stored(setup, config)
    if why is not None:
        raise SetupFileError(f"setup file {path}: calibration.{why}")
    return setup


def setup_json(setup: DeviceSetup) -> str:
    s = setup.syringe
    c = setup.calibration
    doc = {
        "format": FORMAT,
        "version": 1,
        "syringe": None
        if s is None
        else {
            "name": s.name,
            "bore_um": s.bore_um,
            "stroke_um": s.stroke_um,
            "dead_volume_nl": s.dead_volume_nl,
            "max_pressure_pa": s.max_pressure_pa,
        },
        "calibration": {
            "zero_offset_pa": c.zero_offset_pa,
            "zero_utc_s": c.zero_utc_s,
            "span_gain_ppm": c.span_gain_ppm,
            "span_reference_pa": c.span_reference_pa,
            "span_utc_s": c.span_utc_s,
            "volume_factor_ppm": c.volume_factor_ppm,
            "volume_utc_s": c.volume_utc_s,
        },
    }
    return json.dumps(doc, indent=2) + "\n"


def save_setup(path: Path, setup: DeviceSetup) -> None:
    """Write atomically: the old file or the new one survives a crash, never a mix."""
    text = setup_json(setup).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("device setup written to %s", path)


class SetupWriter:
    """Writes the latest setup handed to it, off the tick loop; `close` writes what is pending.

    Only the newest setup matters (each is complete), so a burst of changes costs one write."""

    def __init__(self, path: Path, on_error: Callable[[str], None]) -> None:
        self.path = path
        self._on_error = on_error
        self._pending: DeviceSetup | None = None
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="setup-writer", daemon=True)
        self._thread.start()

    def submit(self, setup: DeviceSetup) -> None:
        with self._cond:
            self._pending = setup
            self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                setup, self._pending = self._pending, None
                closing = self._closing
            if setup is not None:
                try:
                    save_setup(self.path, setup)
                except OSError as exc:
                    self._on_error(f"setup file {self.path}: cannot be written: {exc.strerror or exc}")
            if closing and setup is None:
                return
