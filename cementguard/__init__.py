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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.analysis import LoadedRecording
    from host.recording import Recording


_DEFAULT: Any = object()  # max_rows not given: host.analysis.DEFAULT_MAX_ROWS


def load(
    recording: Recording | str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    max_rows: int | None = _DEFAULT,
) -> LoadedRecording:
    """The recording at `recording` as `(samples, events, meta)`: pandas DataFrames with units in the
    column names (`t_s`, `pressure_kpa`, `delivered_ml`, ...), and meta.json as a dict. At most
    `max_rows` sample rows (default 2,000,000: 33 minutes at 1 kHz; None: no bound), else
    `host.analysis.LoadTooLargeError` before anything is allocated; `start_s` / `end_s` select a
    time range (the `t_s` column's seconds) and `columns` the columns."""
    from host.analysis import DEFAULT_MAX_ROWS
    from host.analysis import load as _load

    bound = DEFAULT_MAX_ROWS if max_rows is _DEFAULT else max_rows
    return _load(recording, columns=columns, start_s=start_s, end_s=end_s, max_rows=bound)


__all__ = ["load"]
