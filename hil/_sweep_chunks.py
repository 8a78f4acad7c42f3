"""What a sweep worker runs: a chunk of consecutive runs, and the fingerprint of the code it ran them on.

This module is what a Dask worker (or a local pool process) imports: it pulls in the simulator and the
controller through `hil._sweep_runs`, never Dask, pyarrow or matplotlib. A chunk's result carries the
digest of the sources that decide a run's outcome, so that a cluster whose workers were installed from
another commit is refused instead of mixing two controllers' results in one sweep.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from hil._sweep_runs import Override, RunOutcome, run_one
from host.errors import CementguardError

_ROOT = Path(__file__).resolve().parents[1]
DIGEST_SOURCES = ("firmware_sim", "protocol", "hil/_sweep_runs.py", "hil/_sweep_stats.py")
"""Everything a run's outcome depends on: the controller, the plant, the wire codec (the virtual rig's
host side), the run's draw and classification, the seed derivation."""


class SweepError(CementguardError):
    """A sweep cannot start or go on: Dask missing, scheduler unreachable, a partial sweep of another
    configuration in the output directory, workers on other code. The message says what to do."""


@dataclass(frozen=True)
class Chunk:
    """Runs start..stop-1 of one sweep configuration: the unit of work sent to a worker."""

    seed: int
    start: int
    stop: int
    kinds: tuple[str, ...] | None
    overrides: tuple[Override, ...]
    noise: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ValueError(f"chunk {self.start}..{self.stop}: start must be >= 0 and below stop")


@functools.cache
def code_digest() -> str:
    """SHA-256 (first 16 hex digits) of the sources in DIGEST_SOURCES, path and content, in a fixed
    order: the same on every machine that has the same files, whatever its clone's location."""
    h = hashlib.sha256()
    for name in DIGEST_SOURCES:
        base = _ROOT / name
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
        for path in files:
            h.update(path.relative_to(_ROOT).as_posix().encode())
            h.update(b"\0")
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


def run_chunk(chunk: Chunk) -> tuple[str, list[RunOutcome]]:
    """(code digest, outcomes of runs start..stop-1 in index order): a pure function of the chunk."""
    outcomes = [
        run_one(chunk.seed, i, chunk.kinds, chunk.overrides, chunk.noise)
        for i in range(chunk.start, chunk.stop)
    ]
    return code_digest(), outcomes
