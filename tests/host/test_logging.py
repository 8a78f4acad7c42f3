"""Logging (issue 12, item 9): stdlib loggers per module with a NullHandler on the package loggers,
`--log-level` before or after the subcommand, and a bad level refused as a usage error."""

from __future__ import annotations

import logging

import hil
import host
from tests.host.test_run_cli import _cli


def test_the_package_loggers_carry_a_null_handler_for_library_use() -> None:
    for package in (host, hil):
        handlers = logging.getLogger(package.__name__).handlers
        assert any(isinstance(h, logging.NullHandler) for h in handlers), package.__name__


def test_log_level_is_taken_after_the_subcommand_too() -> None:
    done = _cli("status", "--port", "/dev/cementguard-no-such-port", "--log-level", "INFO")
    assert done.returncode == 4, done.stdout + done.stderr  # a link failure, not a usage error


def test_a_bad_log_level_is_a_usage_error_naming_the_choices() -> None:
    done = _cli("--log-level", "LOUD", "status", "--port", "/dev/cementguard-no-such-port")
    assert done.returncode == 2
    assert "--log-level" in done.stderr
    assert "WARNING" in done.stderr


def test_console_log_lines_go_to_the_current_stderr(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`run`'s live view (rich Live) replaces sys.stderr while it shows, so that a log line lands
    above the view instead of inside it. A handler that kept the stderr of start-up wrote straight
    into the view's lines ("link ok: 0.0 % lost2026-12-05 ... WARNING host.control: STOP ...")."""
    import io
    import sys

    from host import logs

    monkeypatch.setattr(logs, "_console", None)
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        logs.configure("WARNING")
        now = io.StringIO()
        monkeypatch.setattr(sys, "stderr", now)
        logging.getLogger("host.test").warning("a line for the live view")
        assert "a line for the live view" in now.getvalue()
    finally:
        for handler in root.handlers[:]:
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])


def test_a_stalled_disk_under_the_log_file_never_blocks_the_caller(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The recording's host.log lives on the recording's disk. A log call on the event loop that
    waited for that disk (stalled, an NFS mount gone away) would hold up everything behind it, a STOP
    included: the file is written by a thread of its own, and a log call only hands it the line."""
    import threading

    from host import logs

    gate = threading.Event()
    real_emit = logging.FileHandler.emit

    path = tmp_path / logs.LOG_FILE

    def stalled(self: logging.FileHandler, record: logging.LogRecord) -> None:
        if self.baseFilename == str(path):  # not pytest's own log file, if any
            gate.wait(10.0)
        real_emit(self, record)

    monkeypatch.setattr(logging.FileHandler, "emit", stalled)
    handler = logs.attach_log_file(path)
    returned = threading.Event()
    try:
        caller = threading.Thread(
            target=lambda: (logging.getLogger("host.test").warning("STOP requested"), returned.set())
        )
        caller.start()
        assert returned.wait(5.0), "the log call waited for the disk"
    finally:
        gate.set()
        logs.detach_log_file(handler)
    assert "WARNING host.test: STOP requested" in path.read_text()
