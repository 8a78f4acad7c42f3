"""Suite-wide settings and checks.

Hypothesis explores new random examples on every developer run; under CI (the CI environment
variable, which .ci/run's environment sets) it is derandomized so that a landing is judged on a
reproducible set of examples. A failure found locally is replayed from .hypothesis/ and gets fixed.

Every test must end the threads it started (`_no_thread_left_behind`): a thread left running, daemon
or not, keeps working in the same pytest process while later tests run, takes the GIL and the CPU
from their event loops (a host that misses its heartbeats loses its session to the device's
watchdog), and hides a resource leak that a bench session would suffer too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.threads import threads_left

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

THREAD_GRACE_S = 5.0
"""How long the threads a test started may take to end after its teardown (joined: the wait ends
as soon as they do)."""


@pytest.fixture(autouse=True)
def _no_thread_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread running that it started (checked after its own fixtures'
    teardown: this fixture is set up first and torn down last of the test's own)."""
    before = set(threading.enumerate())
    yield
    left = threads_left(before, THREAD_GRACE_S)
    if left:
        names = ", ".join(f"{t.name!r} ({'daemon' if t.daemon else 'non-daemon'})" for t in left)
        pytest.fail(
            f"{request.node.nodeid} left {len(left)} thread(s) running {THREAD_GRACE_S:g} s after it "
            f"ended: {names}; stop and join them in the test or in the code under test",
            pytrace=False,
        )
