"""Keep programs that are not cementguard sessions off a port a session holds, and still let
`cementguard stop` write STOP onto it when that session is frozen.

The session's lock (host.port_lock) is a `flock` that only cementguard honours: minicom, screen or a
plain pyserial script open the device all the same and write into the link. pyserial's
``exclusive=True`` is also only a `flock` on POSIX (serialposix.py: ``fcntl.flock(self.fd, LOCK_EX |
LOCK_NB)``). So the session marks the open tty exclusive with the ``TIOCEXCL`` ioctl (tty_ioctl(4)):
the kernel then refuses every further ``open()`` of the device with EBUSY, whoever asks. Limits:

- A process with CAP_SYS_ADMIN (root, as a rule) is not refused: the kernel lets it open anyway.
- The mark belongs to the tty, not to the descriptor. A real serial device drops it when its last
  descriptor closes; a pty slave keeps it as long as its master is open. So the session clears it
  (``TIOCNXCL``) before it closes the port; a session killed with SIGKILL cannot, and the pty of a
  simulator stays closed to non-root openers until the simulator is restarted.

The documented emergency path of `cementguard stop` (docs/design.md, "Sessions") writes STOP beside a
holder that does not answer. It cannot open the device any more; it borrows the holder's own
descriptor instead, with ``pidfd_getfd(2)`` (Linux 5.6): the kernel duplicates the open file from
the holder's descriptor table, which works while the holder is stopped (SIGSTOP) or frozen. The
holder records the descriptor's number in its lock record. The kernel allows it to the holder's own
user (ptrace access mode ATTACH_REALCREDS); under the Yama LSM's ptrace_scope 1 the holder says so
ahead with ``prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY)`` (`allow_borrowing`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

__all__ = ["allow_borrowing", "borrow_fd", "claim", "release"]

_SYS_PIDFD_GETFD = 438
"""Linux's syscall number for pidfd_getfd: the same on every architecture (the unified table, 5.1+)."""
_PR_SET_PTRACER = 0x59616D61
_PR_SET_PTRACER_ANY = ctypes.c_ulong(-1)


def claim(fd: int) -> bool:
    """Mark the tty open on `fd` exclusive; False where the platform or the file does not allow it
    (not a tty: a socket, a FIFO)."""
    import fcntl
    import termios

    request = getattr(termios, "TIOCEXCL", None)
    if request is None:
        return False
    try:
        fcntl.ioctl(fd, request)
    except OSError as exc:
        log.debug("TIOCEXCL on fd %d refused: %s", fd, exc)
        return False
    return True


def release(fd: int) -> None:
    """Clear the exclusive mark before the descriptor closes (a pty keeps it otherwise)."""
    import fcntl
    import termios

    request = getattr(termios, "TIOCNXCL", None)
    if request is not None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, request)


def allow_borrowing() -> None:
    """Let processes of this user borrow our descriptors while Yama's ptrace_scope is 1 (no effect
    without Yama, and none on other users: the kernel's own ptrace checks still apply)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PTRACER, _PR_SET_PTRACER_ANY, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        pass


def borrow_fd(pid: int, fd: int) -> int:
    """A duplicate of process `pid`'s descriptor `fd` (pidfd_getfd), close-on-exec. OSError when the
    process is gone, the descriptor is closed, or the kernel does not allow it."""
    if not sys.platform.startswith("linux"):
        raise OSError(f"borrowing another process's descriptor needs Linux (this is {sys.platform})")
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        borrowed = int(libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
        if borrowed < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"pidfd_getfd({pid}, {fd}): {os.strerror(code)}")
        return borrowed
    finally:
        os.close(pidfd)
