"""cementguard for analysis scripts and notebooks: `cementguard.load(REC)`.

    import cementguard
    samples, events, meta = cementguard.load("recordings/20261121T101500Z-L2-left")
    samples.plot(x="t_s", y="pressure_kpa")

`load` returns `host.analysis.LoadedRecording`, a named tuple of two pandas DataFrames (units in the
column names) and the recording's metadata; see `host.analysis` and docs/recordings.md. pandas is
imported on the first call, not on `import cementguard`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from host.analysis import LoadedRecording
    from host.recording import Recording


def load(
    recording: Recording | str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
) -> LoadedRecording:
    """The recording at `recording` as `(samples, events, meta)`: pandas DataFrames with units in the
    column names (`t_s`, `pressure_kpa`, `delivered_ml`, ...), and meta.json as a dict."""
    from host.analysis import load as _load

    return _load(recording, columns=columns)


__all__ = ["load"]
