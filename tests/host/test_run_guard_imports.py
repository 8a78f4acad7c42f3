"""`cementguard run --frames` loads the guard's modules (opencv, the frame sources) before the session
opens: loaded once a session runs, even in a worker thread, the import holds the GIL for about
0.3 s of a loaded machine's wall time, and the device's watchdog ends a session that stalls that
long (docs/design.md, "Heartbeat and a stalled event loop"). Run in a fresh interpreter, where
nothing has loaded opencv yet."""

from __future__ import annotations

import json
import subprocess
import sys

from host.run import EXIT_LINK
from tests.support.wire_client import REPO

PROBE = """
import asyncio, json, sys
from host import run
from host.client import DeviceClient
from host.errors import PortNotFound
from host.guard.config import GuardConfig
from host.guard.options import GuardSetup
from host.plan import load_plan

loaded = {}

async def connect(url, options=None):
    loaded["at_connect"] = sorted(m for m in ("cv2", "host.guard.worker", "host.frames") if m in sys.modules)
    raise PortNotFound(url)

DeviceClient.connect = connect
guard = GuardSetup("sim://127.0.0.1:9", GuardConfig()) if sys.argv[1] == "guard" else None
plan = load_plan("plans/continuous-2ml.toml")
code = asyncio.run(run.run_plan("/dev/cg-none", plan, mixed_ago_s=0.0, record_root=None,
                                auto_resume_s=None, guard=guard))
print(json.dumps({"code": code, **loaded}))
"""


def _loaded_at_connect(mode: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == EXIT_LINK, result
    return result["at_connect"]


def test_a_run_with_the_guard_has_loaded_opencv_before_the_session_opens():
    assert _loaded_at_connect("guard") == ["cv2", "host.frames", "host.guard.worker"]
