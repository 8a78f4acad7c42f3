"""One session owns a port: the lock that says who holds it, and where its control endpoint is.

Two programs reading one serial port split its bytes between them: each loses frames, the first one's
link is declared lost and the device stops with HOST_LOST (docs/design.md, "Sessions"). So every
`host.link.Link` takes this lock for its port before opening it, and keeps it until closed
(reconnects included). The lock is an advisory `flock` on a file in a per-user runtime directory,
named after the port; the file holds who took it (program, PID, command line, start time, the
control endpoint's socket) so that a second opener is told exactly which program and process to go
to. The kernel releases a `flock` when its holder dies, so a lock left behind by a crashed process
is simply taken over (its old holder is named in the log). The serial port itself is also opened
with pyserial's ``exclusive=True`` (a `flock` on the device, honoured by few programs) and marked
exclusive with TIOCEXCL (host.tty_exclusive), which keeps out every other opener but root.

The runtime directory is ``$XDG_RUNTIME_DIR/cementguard`` (or ``<tmp>/cementguard-<uid>``), mode
0700 and owned by the user; anything else is refused: the control socket beside the lock accepts
STOP, status and CLEAR requests and must be reachable by its owner only.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from host.errors import CementguardError, PortUnavailable

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

MAX_HOLDER_BYTES = 16_384
"""A lock file's holder record is small; anything larger is not ours and is not read further."""


class RuntimeDirError(CementguardError):
    """The per-user runtime directory is missing, not ours, or open to other users."""


class PortBusy(PortUnavailable):
    """Another session holds the port; `holder` says which program and process."""

    def __init__(self, port: str, holder: Holder | None) -> None:
        who = holder.describe() if holder is not None else "another process (it left no record)"
        super().__init__(port, f"it is held by {who}")
        self.holder = holder


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a port: written into the lock file by the holder, read by whoever is refused."""

    pid: int
    program: str
    """e.g. ``cementguard run``."""
    command_line: str
    started: str
    """ISO 8601, UTC."""
    port: str
    socket: str | None = None
    """The holder's control endpoint (a Unix socket), None while it serves none."""
    tty_fd: int | None = None
    """The holder's descriptor of the port while it is marked exclusive (host.tty_exclusive), so
    that `cementguard stop` can borrow it to write STOP beside a holder that does not answer."""

    @classmethod
    def of_this_process(cls, port: str, socket: str | None = None) -> Holder:
        argv = list(getattr(sys, "orig_argv", sys.argv))
        return cls(
            pid=os.getpid(),
            program=_program(sys.argv),
            command_line=" ".join(argv),
            started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            port=port,
            socket=socket,
        )

    def describe(self) -> str:
        return f"{self.program} (PID {self.pid}, since {self.started}: {self.command_line})"


def _program(argv: list[str]) -> str:
    name = Path(argv[0]).name if argv else "python"
    if name in ("cli.py", "__main__.py"):
        name = "cementguard"
    if len(argv) > 1 and not argv[1].startswith("-"):
        return f"{name} {argv[1]}"
    return name


def runtime_dir() -> Path:
    """The per-user directory for locks and control sockets, created 0700 if missing. Refused
    (RuntimeDirError) when it exists but belongs to someone else or is open to group or others."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(xdg) / "cementguard" if xdg and Path(xdg).is_dir() else None
    if base is None:
        import tempfile  # only without XDG_RUNTIME_DIR: it is slow to import, and stop must be fast

        base = Path(tempfile.gettempdir()) / f"cementguard-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(base)
    except OSError as exc:
        raise RuntimeDirError(f"cannot create the runtime directory {base}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"the runtime directory {base} is not a directory (a symlink?): remove it")
    if info.st_uid != os.getuid():
        raise RuntimeDirError(f"the runtime directory {base} belongs to user {info.st_uid}, not to you")
    if info.st_mode & 0o077:
        raise RuntimeDirError(
            f"the runtime directory {base} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "it must be 0700: chmod 700 it"
        )
    return base


PTY_DIR = "/dev/pts/"
"""Where Linux's pseudo-terminal slaves live (devpts): their numbers are reused."""


def port_key(port: str) -> str:
    """A file name for a port: the same for every spelling of one device (symlinks such as
    /dev/serial/by-id/... resolve to the device), readable, and short enough for a socket path.

    A pty is named by its instance as well: the kernel gives a freed pty's number to the next one, so
    a session still holding (reconnecting to) a dead simulator's /dev/pts/3 must not hold a new
    simulator's /dev/pts/3. devpts creates a new inode for every pty, stamped with its creation time
    (st_ctime_ns; nothing the link does to a tty changes it). A real serial device keeps its name's
    key across a USB re-enumeration, so a session holds it while it reconnects."""
    canonical = port.strip().lower() if "://" in port else os.path.realpath(port)
    readable = re.sub(r"[^A-Za-z0-9]+", "-", canonical).strip("-")[-40:]
    instance = canonical
    if canonical.startswith(PTY_DIR):
        with contextlib.suppress(OSError):
            instance = f"{canonical}@{os.stat(canonical).st_ctime_ns}"
    digest = hashlib.sha256(instance.encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


def lock_path(port: str) -> Path:
    return runtime_dir() / f"{port_key(port)}.lock"


def socket_path(port: str) -> Path:
    """Where the session holding `port` serves its control endpoint (host.control)."""
    return runtime_dir() / f"{port_key(port)}.sock"


def read_holder(path: Path) -> Holder | None:
    """The holder record in a lock file, None if missing or unreadable (never raises)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_HOLDER_BYTES))
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError):
        return None


class PortLock:
    """The lock on one port, held by this process until `release()`."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.key = port_key(port)
        self.path = runtime_dir() / f"{self.key}.lock"
        self._fd: int | None = None
        self.holder: Holder | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def current(self) -> bool:
        """Whether the device at the port's name is still the one this lock was taken for (False
        once a pty was replaced by another at the same path: `port_key`)."""
        return port_key(self.port) == self.key

    def acquire(self) -> None:
        """Take the lock, or raise PortBusy naming the holder. A lock whose holder died is free."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PortBusy(self.port, read_holder(self.path)) from None
            raise PortUnavailable(self.port, f"cannot lock {self.path}: {exc}") from exc
        previous = read_holder(self.path)
        if previous is not None and previous.pid != os.getpid():
            log.info(
                "took over the lock on %s left by %s (no longer running)", self.port, previous.describe()
            )
        self._fd = fd
        self._write(Holder.of_this_process(self.port))

    def set_socket(self, socket: str | None) -> None:
        """Record (or forget) the control endpoint this holder serves."""
        if self._fd is not None and self.holder is not None:
            self._write(Holder(**{**asdict(self.holder), "socket": socket}))

    def set_tty_fd(self, fd: int | None) -> None:
        """Record (or forget) the descriptor of the exclusive tty this holder has open."""
        if self._fd is not None and self.holder is not None:
            self._write(Holder(**{**asdict(self.holder), "tty_fd": fd}))

    def _write(self, holder: Holder) -> None:
        assert self._fd is not None
        data = json.dumps(asdict(holder)).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        self.holder = holder

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the record goes with the lock; the file stays (no unlink race)
        os.close(fd)
        self.holder = None
