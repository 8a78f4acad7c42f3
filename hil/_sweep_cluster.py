"""A real Dask cluster on loopback: a `dask scheduler` and N `dask worker` processes, each its own OS
process that can be killed. For the tests and the benchmark of the Dask backend on one machine; a
real cluster is started by its operator the same way, on several machines (docs/detector-thresholds.md,
"Sweeps at scale").

Workers run without a nanny (`--no-nanny`), so killing one removes it from the cluster for good, as a
machine that dies would; each has one thread (a run is pure Python: more threads per process would
only contend for the GIL). Nothing here sleeps to synchronise: it waits for the scheduler file to
appear and for the scheduler to count its workers, with generous timeouts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from hil._sweep_backends import import_distributed
from hil._sweep_chunks import SweepError

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
"""Generous: on a loaded two-core machine a worker takes seconds to import distributed."""


def _wait_for(condition: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll `condition()` until true; SweepError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SweepError(f"loopback Dask cluster: {what} not within {timeout_s:.0f} s")
        time.sleep(poll_s)


@dataclass
class LoopbackCluster:
    """`with LoopbackCluster(workers=2, directory=tmp) as c:` ... `c.address`, `c.kill_worker(0)`."""

    workers: int
    directory: Path
    nice: int = 0
    """Niceness of the worker processes (a long sweep on a shared machine runs at nice 10)."""
    address: str = ""
    scheduler: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    client: Any = None
    """A client of this cluster, for looking at it (which worker processes which task)."""

    def _popen(self, args: list[str], log: str, nice: int = 0) -> subprocess.Popen[bytes]:
        out = (self.directory / log).open("wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,  # only os.nice: safe before exec
        )

    def __enter__(self) -> LoopbackCluster:
        distributed = import_distributed()
        self.directory.mkdir(parents=True, exist_ok=True)
        info = self.directory / "scheduler.json"
        info.unlink(missing_ok=True)
        common = ["--no-dashboard", "--host", "127.0.0.1"]
        try:
            self.scheduler = self._popen(
                ["distributed.cli.dask_scheduler", "--port", "0", "--scheduler-file", str(info), *common],
                "scheduler.log",
            )
            _wait_for(lambda: info.exists() and info.stat().st_size > 0, START_TIMEOUT_S, "scheduler file")
            self.address = json.loads(info.read_text())["address"]
            for i in range(self.workers):
                self.procs.append(
                    self._popen(
                        [
                            "distributed.cli.dask_worker",
                            self.address,
                            "--nthreads",
                            "1",
                            "--no-nanny",
                            "--name",
                            f"w{i}",
                            "--local-directory",
                            str(self.directory / f"w{i}"),
                            *common,
                        ],
                        f"worker{i}.log",
                        self.nice,
                    )
                )
            self.client = distributed.Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)
            self.client.wait_for_workers(self.workers, timeout=START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return self

    def worker_address(self, i: int) -> str:
        """The address of worker `i` (by its name, w<i>)."""
        for addr, w in self.client.scheduler_info()["workers"].items():
            if w["name"] == f"w{i}":
                return str(addr)
        raise KeyError(f"worker w{i} is not in the cluster")

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker `i`: it dies at once, whatever it was doing, as a crashed machine does."""
        self.procs[i].kill()
        self.procs[i].wait(timeout=START_TIMEOUT_S)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        for p in [*self.procs, *([self.scheduler] if self.scheduler else [])]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.procs, *([self.scheduler] if self.scheduler else [])]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
