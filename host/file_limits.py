"""Reading the files the programs are given: regular files only, and never more than a bound.

`--plan /dev/zero`, a scenario's `plan_file = "/dev/urandom"` or `CEMENTGUARD_CONFIG=/dev/zero` used
to be read until memory ran out; a FIFO would block the command for ever. Every file a command reads
(plans, settings, scenarios, recordings) goes through here: it is opened without blocking, must be a
regular file (after symlinks), and is refused with one clear line when larger than its bound.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "MAX_DICOM_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_JSON_BYTES",
    "MAX_LOG_BYTES",
    "MAX_TELEMETRY_BYTES",
    "MAX_TOML_BYTES",
    "MAX_VIDEO_BYTES",
    "FileRejectedError",
    "check_regular",
    "read_regular",
]

MAX_TOML_BYTES = 1 << 20
"""Plans, settings and scenarios: a few kB each; 1 MiB is far above any real one."""
MAX_JSON_BYTES = 1 << 20
"""A recording's meta.json and closed.json."""
MAX_LOG_BYTES = 1 << 30
"""A recording's events and counters (JSON lines): about 1 kB/s at most."""
MAX_IMAGE_BYTES = 64 << 20
"""One PNG frame: a 4096 x 4096 16-bit image is 32 MiB uncompressed."""
MAX_DICOM_BYTES = 2 << 30
"""One DICOM file, possibly multi-frame: a 30 s cine run of 1024 x 1024 16-bit frames at 30 frames/s
is 1.9 GiB. Read into memory whole (pydicom), so bounded."""
MAX_VIDEO_BYTES = 64 << 30
"""A video file: decoded frame by frame by opencv (never read whole); the bound only refuses a device
or a runaway file given by mistake."""
MAX_TELEMETRY_BYTES = 16 << 30
"""A recording's telemetry: 10 minutes at 1 kHz are ~30 MB; 16 GiB is days, and is read into memory."""


class FileRejectedError(ValueError):
    """A file that is not a regular file, or is larger than its bound; the message names both."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _size(name: str, st: os.stat_result, limit: int) -> int:
    if not stat.S_ISREG(st.st_mode):
        raise FileRejectedError(f"{name}: is {_kind(st.st_mode)}; allowed a regular file")
    if st.st_size > limit:
        raise FileRejectedError(f"{name}: {st.st_size} bytes is too large; allowed at most {limit} bytes")
    return st.st_size


def check_regular(path: str | os.PathLike[str], limit: int) -> int:
    """The size of `path` if it is a regular file of at most `limit` bytes; FileRejectedError if not,
    FileNotFoundError (an OSError) if it does not exist."""
    return _size(os.fspath(path), os.stat(path), limit)


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The content of a regular file of at most `limit` bytes. Opened non-blocking, so that a FIFO is
    refused instead of waiting for a writer; read to at most `limit` + 1 bytes, so that a file that
    grows while it is read is refused too."""
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _size(name, os.fstat(fd), limit)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise FileRejectedError(
                f"{name}: grew past {limit} bytes while read; allowed at most {limit} bytes"
            )
        return b"".join(chunks)
    finally:
        os.close(fd)
