"""Logging for the cementguard programs: stdlib `logging`, one logger per module.

Library code only does ``log = logging.getLogger(__name__)`` and logs; the package loggers carry a
`logging.NullHandler` (host/__init__.py, hil/__init__.py), so a program that imports cementguard as a
library sees nothing it did not ask for. The `cementguard` command configures output once
(`configure`, from `--log-level`), and each recording gets its own log file beside its data
(`attach_log_file`): refusals, broker errors, malformed stop messages and failed consumers leave a
trace with the run they belong to.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
from pathlib import Path

__all__ = ["LEVELS", "LOG_FILE", "attach_log_file", "configure", "detach_log_file"]

LOG_FILE = "host.log"
"""The log file in a recording's directory (docs/recordings.md)."""
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_console: logging.Handler | None = None


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the moment of each line, not the one of start-up: `run`'s
    live view (rich Live) replaces sys.stderr while it shows, so that log lines land above the view
    instead of being written into the middle of its lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass  # always the current sys.stderr


def configure(level: str = "WARNING") -> None:
    """Log to stderr at `level` (one of LEVELS). Idempotent: a second call changes the level."""
    global _console
    if level.upper() not in LEVELS:
        raise ValueError(f"--log-level {level!r} is not one of {', '.join(LEVELS)}")
    root = logging.getLogger()
    if _console is None:
        _console = _StderrHandler()
        _console.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(_console)
    _console.setLevel(level.upper())
    root.setLevel(min(logging.INFO, logging.getLevelName(level.upper())))


class _LogFile(logging.handlers.QueueHandler):
    """A log file written by a thread of its own. The file lives on the recording's disk, and log
    calls are made on the event loop: a call that waited for a stalled disk would hold up the link,
    a STOP included. A call only hands the line over (`QueueHandler` formats it, traceback included);
    the thread writes it."""

    def __init__(self, path: Path, level: int) -> None:
        super().__init__(queue.SimpleQueue())
        self.setLevel(level)
        self.file = logging.FileHandler(path, encoding="utf-8", delay=False)
        self.file.setFormatter(logging.Formatter(FORMAT))
        self._thread = threading.Thread(target=self._write, name=f"log file {path}", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while (record := self.queue.get()) is not None:
            self.file.handle(record)  # a write error is reported by logging's handleError, on stderr

    def close(self) -> None:
        """Write what is queued, then close; at most CLOSE_WAIT_S (a stalled disk keeps the rest)."""
        self.queue.put_nowait(None)
        self._thread.join(CLOSE_WAIT_S)
        if not self._thread.is_alive():
            self.file.close()
        super().close()


CLOSE_WAIT_S = 2.0
"""How long detaching a log file waits for its last lines to be written."""


def attach_log_file(path: Path, level: int = logging.INFO) -> logging.Handler:
    """Also log to `path` (at `level` or above) until `detach_log_file`: every logger, the
    libraries' too (a broker error from aiomqtt belongs to the run's record). The console keeps its
    own level (`configure`). The file is written by a thread of its own (`_LogFile`)."""
    handler = _LogFile(path, level)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
