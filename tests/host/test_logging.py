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
