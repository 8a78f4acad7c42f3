"""The suite's thread check (tests/conftest.py): a thread still running after a test is named, one
that is ending is waited for, within one bounded grace."""

from __future__ import annotations

import threading

from tests.support.threads import threads_left


def test_a_thread_still_running_is_named_and_one_that_ends_is_joined():
    before = set(threading.enumerate())
    hold, never = threading.Event(), threading.Event()
    leaky = threading.Thread(target=hold.wait, name="leaky", daemon=True)
    ending = threading.Thread(target=never.wait, args=(0.05,), name="ending")  # ends by itself
    leaky.start()
    ending.start()
    try:
        assert threads_left(before, grace_s=1.0) == [leaky]
        assert not ending.is_alive()
    finally:
        hold.set()
        leaky.join()
    assert threads_left(before, grace_s=1.0) == []
