"""Standard output that can neither stop an injection nor print a traceback.

Two ways the terminal used to break a run after the pump had started:

- `cementguard run ... | head -c 100`: once `head` exits, every write to stdout raises
  BrokenPipeError; the live display's refresh raised it in the middle of the plan, `run` exited 1
  with no message, and the device stopped with HOST_LOST half-way.
- `PYTHONIOENCODING=ascii`: the progress bar's block characters raised UnicodeEncodeError (a
  traceback after the plan completed).

`protect_stdio()` (called first thing by `cementguard`) makes stdout and stderr replace what their
encoding cannot show (non-ASCII output degrades to "?"), and wraps stdout so that a closed pipe ends
the output, not the command: the first failed write is reported once on stderr, the rest of the
output goes nowhere, and the injection and its recording go on to their normal end and exit code.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from typing import Any, TextIO

__all__ = ["ClosedOutputGuard", "protect_stdio"]

_CLOSED = (errno.EPIPE, errno.EIO, errno.ECONNRESET)


class ClosedOutputGuard(io.TextIOBase):
    """A text stream that forwards to `inner` until a write fails because the reader is gone; from
    then on it swallows writes (`lost` is True) after saying so once on `notice`."""

    def __init__(self, inner: TextIO, notice: TextIO | None = None) -> None:
        self._inner = inner
        self._notice = notice
        self.lost = False

    def _gone(self, exc: OSError) -> None:
        if not self.lost:
            self.lost = True
            self._silence()
            if self._notice is not None:
                with contextlib.suppress(OSError, ValueError):
                    print(
                        f"cementguard: standard output was closed ({exc.strerror or exc}); output stops "
                        "here, the command goes on to its end",
                        file=self._notice,
                        flush=True,
                    )

    def _silence(self) -> None:
        """Point the file descriptor at /dev/null, so that the interpreter's own flush at exit does
        not print 'Exception ignored ... BrokenPipeError' either."""
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._inner.fileno())
            finally:
                os.close(devnull)

    def write(self, text: str) -> int:
        if self.lost:
            return len(text)
        try:
            return self._inner.write(text)
        except OSError as exc:
            if exc.errno not in _CLOSED and not isinstance(exc, BrokenPipeError):
                raise
            self._gone(exc)
            return len(text)

    def flush(self) -> None:
        if self.lost:
            return
        try:
            self._inner.flush()
        except OSError as exc:
            if exc.errno not in _CLOSED and not isinstance(exc, BrokenPipeError):
                raise
            self._gone(exc)

    def isatty(self) -> bool:
        return not self.lost and self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._inner.errors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def protect_stdio() -> None:
    """Make this process's stdout and stderr safe as described in the module docstring. Idempotent."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="replace")
    if sys.stdout is not None and not isinstance(sys.stdout, ClosedOutputGuard):
        sys.stdout = ClosedOutputGuard(sys.stdout, sys.stderr)
