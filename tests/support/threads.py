"""Which threads a test left running (tests/conftest.py checks every test with it)."""

from __future__ import annotations

import threading
import time


def threads_left(before: set[threading.Thread], grace_s: float) -> list[threading.Thread]:
    """The threads alive now that were not in `before`, after joining each for what is left of a
    shared `grace_s` deadline: Thread.join returns as soon as the thread ends, so a thread that is
    ending (a closed pipe's reader, asyncio's waitpid thread of a killed child) costs only the time
    it takes, and one that never ends costs `grace_s` once."""
    deadline = time.monotonic() + grace_s
    left = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            left.append(thread)
    return left
