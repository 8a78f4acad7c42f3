"""`cementguard run --frames` and the dashboard with a guard load the guard's modules (opencv, the
frame sources) before the session opens: loaded once a session runs, the import holds the GIL for
about 0.3 s of a loaded machine's wall time from a worker thread (0.7-1.4 s on the event loop), and
the device's watchdog ends a session that stalls that long (docs/design.md, "Heartbeat and a
stalled event loop"). Each case runs in a fresh interpreter, where nothing has loaded opencv yet."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.wire_client import REPO

PROBE = """
import asyncio, json, sys
from types import SimpleNamespace
from host.client import DeviceClient
from host.guard.config import GuardConfig
from host.guard.options import GuardSetup

class Connecting(Exception):
    pass

async def connect(url, options=None):
    loaded = sorted(m for m in ("cv2", "host.guard.worker", "host.frames") if m in sys.modules)
    print(json.dumps(loaded), flush=True)
    raise Connecting(url)

DeviceClient.connect = connect
guard = GuardSetup("sim://127.0.0.1:9", GuardConfig())
if sys.argv[1] == "run":
    from host import run
    from host.plan import load_plan
    main = run.run_plan("/dev/cg-none", load_plan("plans/continuous-2ml.toml"), mixed_ago_s=0.0,
                        record_root=None, auto_resume_s=None, guard=guard)
else:
    from host.dashboard.source import LiveSource
    main = LiveSource("/dev/cg-none", guard=guard).run(SimpleNamespace(on_link=lambda *a, **k: None))
try:
    asyncio.run(main)
except Connecting:
    pass
"""


@pytest.mark.parametrize("command", ["run", "dashboard"])
def test_the_guard_is_loaded_before_the_session_opens(command: str):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, command], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    loaded_at_connect = json.loads(out.stdout.strip().splitlines()[0])
    assert loaded_at_connect == ["cv2", "host.frames", "host.guard.worker"]
