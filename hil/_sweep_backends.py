"""Where a sweep's chunks run: in this process, on a local process pool, or on a Dask cluster.

Every backend has the same two verbs: `submit(chunk)` and `next_done()` (the result of some finished
chunk, in whatever order they finish). The driver (hil/sweep.py) decides how many chunks are in
flight and puts the results back in index order, so the backend changes where runs are computed,
never what they are. Dask is imported only by `DaskBackend`, i.e. only with `--scheduler`: the bench
install does not need it (`pip install 'cementguard[cluster]'` brings it).

A Dask worker that dies with a chunk in hand loses nothing: the scheduler gives the chunk to another
worker, and the client receives each chunk's result once (dask.distributed reschedules tasks of a lost
worker; a task whose workers died more than `distributed.scheduler.allowed-failures` times errs, and
the sweep stops with what it wrote so far, to be resumed).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import re
import socket
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol
from urllib.parse import urlsplit

from hil._sweep_chunks import Chunk, SweepError, code_digest, run_chunk
from hil._sweep_runs import RunOutcome

logger = logging.getLogger(__name__)

CLUSTER_EXTRA = "pip install 'cementguard[cluster]'"
CONNECT_TIMEOUT_S = 30.0
SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def scheduler_address(text: str) -> str:
    """`tcp://HOST:PORT` (or `tls://`), port 1..65535; ValueError naming the value and the form."""
    m = SCHEDULER_ADDRESS.match(text.strip())
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise ValueError(f"--scheduler {text!r}: expected tcp://HOST:PORT (or tls://), port 1..65535")
    return text.strip()


class Backend(Protocol):
    name: str
    slots: int
    """Chunks that can run at once (processes, or the cluster's worker threads)."""

    def submit(self, chunk: Chunk) -> None: ...

    def next_done(self) -> tuple[Chunk, list[RunOutcome]]:
        """The chunk and outcomes of one finished chunk; blocks until one is; only after a submit."""
        ...

    def close(self) -> None: ...


def _checked(chunk: Chunk, result: tuple[str, list[RunOutcome]]) -> tuple[Chunk, list[RunOutcome]]:
    digest, outcomes = result
    if digest != code_digest():
        raise SweepError(
            f"a worker ran chunk {chunk.start}..{chunk.stop - 1} on other code (digest {digest}, here "
            f"{code_digest()}): install the same cementguard commit on the workers as on this machine"
        )
    if [o.index for o in outcomes] != list(range(chunk.start, chunk.stop)):
        raise SweepError(f"chunk {chunk.start}..{chunk.stop - 1} came back with other runs")
    return chunk, outcomes


class InProcessBackend:
    """`--jobs 1`: each chunk runs here when its result is asked for (no process, no pickling)."""

    name = "in-process"
    slots = 1

    def __init__(self) -> None:
        self._queue: deque[Chunk] = deque()

    def submit(self, chunk: Chunk) -> None:
        self._queue.append(chunk)

    def next_done(self) -> tuple[Chunk, list[RunOutcome]]:
        chunk = self._queue.popleft()
        return _checked(chunk, run_chunk(chunk))

    def close(self) -> None:
        self._queue.clear()


class LocalPoolBackend:
    """A process pool on this machine (spawned, not forked: the caller may hold threads, which fork
    would copy mid-state; each worker imports the simulator once and keeps it)."""

    name = "local pool"

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"--jobs = {processes} must be >= 1")
        self.slots = processes
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=processes, mp_context=ctx)
        self._futures: dict[Future[tuple[str, list[RunOutcome]]], Chunk] = {}

    def submit(self, chunk: Chunk) -> None:
        self._futures[self._pool.submit(run_chunk, chunk)] = chunk

    def next_done(self) -> tuple[Chunk, list[RunOutcome]]:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = min(done, key=lambda f: self._futures[f].start)
        chunk = self._futures.pop(future)
        return _checked(chunk, future.result())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


def import_distributed() -> Any:
    """`dask.distributed`, or a SweepError that names the extra to install."""
    try:
        return importlib.import_module("dask.distributed")
    except ImportError as e:
        raise SweepError(f"--scheduler needs Dask's distributed scheduler ({e}): {CLUSTER_EXTRA}") from None


def _reachable(address: str, timeout_s: float) -> None:
    """Refuse a tcp:// scheduler address that nothing listens on before a Client is made: a Client
    whose connection fails leaves its event-loop thread ('IO loop') running for the rest of the
    process (distributed 2026.8), one per failed attempt. Other schemes go to the Client as they are."""
    parts = urlsplit(address)
    if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout_s).close()
    except OSError as e:
        raise SweepError(f"--scheduler {address}: cannot reach the Dask scheduler ({e})") from None


class DaskBackend:
    """A Dask distributed cluster through its public client API (Client, submit, as_completed).

    Each chunk is a task whose key names the sweep and the chunk's first run, so two clients running
    the same sweep on one cluster share results instead of computing them twice (and a key can never
    stand for another sweep's chunk: the sweep id hashes its whole configuration and code)."""

    name = "dask"

    def __init__(self, address: str, sweep_id: str, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        distributed = import_distributed()
        _reachable(address, connect_timeout_s)
        try:
            self._client = distributed.Client(address, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise SweepError(f"--scheduler {address}: cannot reach the Dask scheduler ({e})") from None
        self.address = address
        self.sweep_id = sweep_id
        self._as_completed = distributed.as_completed(loop=self._client.loop)
        self._chunks: dict[str, Chunk] = {}
        threads = sum(self._client.nthreads().values())
        self.slots = max(1, threads)
        logger.info("Dask scheduler %s: %d worker threads", address, threads)

    def submit(self, chunk: Chunk) -> None:
        key = f"cementguard-sweep-{self.sweep_id}-{chunk.start}"
        self._chunks[key] = chunk
        # retries: a chunk that raised is tried again elsewhere (a run itself is deterministic, so a
        # second failure is real); a killed worker's chunk is rescheduled by the scheduler anyway.
        self._as_completed.add(self._client.submit(run_chunk, chunk, key=key, retries=1))

    def next_done(self) -> tuple[Chunk, list[RunOutcome]]:
        future = next(self._as_completed)
        chunk = self._chunks.pop(future.key)
        try:
            result = future.result()
        except Exception as e:
            raise SweepError(f"chunk {chunk.start}..{chunk.stop - 1} failed on the cluster: {e!r}") from e
        finally:
            future.release()
        return _checked(chunk, result)

    def close(self) -> None:
        try:
            self._client.close()
        finally:
            self._chunks.clear()
