"""The sweep's progress bar: runs done of N, runs/s, elapsed and ETA (rich.progress), on a terminal only.

A sweep of hundreds of thousands of runs takes hours on one machine; the bar says how long is left.
Written to stderr, and only when stderr is a terminal (a CI log or a redirected run stays quiet: the
final summary line says what happened). A resumed sweep starts the bar at the runs already on disk; the
rate and ETA count only the runs of this session.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressFn = Callable[[int, int], None]
"""(runs done, runs in the sweep)."""


def _silent(_done: int, _total: int) -> None:
    return None


@contextmanager
def progress_bar(
    total: int,
    done: int = 0,
    enabled: bool | None = None,
    console: Console | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[ProgressFn]:
    """A `(done, total)` callback drawing the bar; `enabled` None: only if stderr is a terminal."""
    console = console or Console(stderr=True)
    if enabled is None:
        enabled = sys.stderr.isatty() and console.is_terminal
    if not enabled:
        yield _silent
        return
    columns = (
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    t0 = clock()
    with Progress(*columns, console=console, refresh_per_second=2) as bar:
        task = bar.add_task("sweep", total=total, completed=done, rate="")

        def update(now_done: int, now_total: int) -> None:
            elapsed = clock() - t0
            rate = f"{(now_done - done) / elapsed:.1f} runs/s" if elapsed > 0 else ""
            bar.update(task, completed=now_done, total=now_total, rate=rate)

        yield update
