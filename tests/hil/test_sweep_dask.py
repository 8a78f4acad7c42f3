"""The sweep on a real Dask cluster: a scheduler and two workers, separate processes on loopback
started here. Same runs as the local pool, field for field; a worker killed (SIGKILL) while it holds a
chunk costs no run and doubles none."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

from hil._sweep_backends import DaskBackend
from hil._sweep_chunks import SweepError
from hil._sweep_cluster import LoopbackCluster, _wait_for
from hil._sweep_runs import RunOutcome
from hil.sweep import main, read_outcomes, run_sweep

SEED = 11
N = 24
WAIT_S = 120.0


def _records(outcomes: list[RunOutcome]) -> list[str]:
    return [json.dumps(asdict(o), sort_keys=True) for o in outcomes]


@pytest.fixture(scope="module")
def local_pool(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The runs of the local pool (2 processes): what the cluster must reproduce."""
    d = tmp_path_factory.mktemp("local") / "sweep"
    assert run_sweep(N, SEED, d, jobs=2).backend == "local pool"
    return _records(read_outcomes(d))


@pytest.fixture
def cluster(tmp_path: Path) -> LoopbackCluster:
    with LoopbackCluster(workers=2, directory=tmp_path / "cluster") as c:
        yield c  # type: ignore[misc]


@pytest.mark.timeout(300)
def test_the_cluster_makes_the_same_runs_as_the_local_pool(
    cluster: LoopbackCluster, local_pool: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "dask"
    argv = ["--n", str(N), "--seed", str(SEED), "--scheduler", cluster.address, "--quiet", "--no-plot"]
    assert main([*argv, "--report-dir", str(d)]) == 0
    assert f"on dask, 2 workers at {cluster.address}" in capsys.readouterr().out
    assert _records(read_outcomes(d)) == local_pool
    # both workers took part
    doc = json.loads((d / "sweep.json").read_text())
    assert doc["backend"].startswith("dask, 2 workers")


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_sweep_costs_no_run_and_doubles_none(
    cluster: LoopbackCluster, local_pool: list[str], tmp_path: Path
) -> None:
    victim = cluster.worker_address(0)
    under_way = threading.Event()
    killed: list[list[str]] = []
    errors: list[BaseException] = []

    def holding_a_chunk() -> bool:
        return bool(cluster.client.processing([victim]).get(victim))

    def killer() -> None:
        try:
            assert under_way.wait(WAIT_S)
            _wait_for(holding_a_chunk, WAIT_S, "worker w0 holding a chunk", poll_s=0.005)
            held = list(cluster.client.processing([victim])[victim])
            cluster.kill_worker(0)
            killed.append(held)
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)

    def progress(done: int, _total: int) -> None:
        under_way.set()  # the first chunk is written: the sweep is running on both workers

    thread = threading.Thread(target=killer)
    thread.start()
    result = run_sweep(N, SEED, tmp_path / "dask", progress=progress, scheduler=cluster.address, chunk=2)
    thread.join(WAIT_S)
    assert not errors, errors
    assert killed, "worker w0 was not killed"
    assert killed[0], "worker w0 held no chunk when it was killed"
    assert cluster.procs[0].returncode is not None
    workers = cluster.client.scheduler_info()["workers"]
    assert len(workers) == 1
    assert victim not in workers
    runs = read_outcomes(result.directory)
    assert [o.index for o in runs] == list(range(N))  # none lost, none twice
    assert _records(runs) == local_pool


def test_an_unreachable_scheduler_is_refused_with_its_address() -> None:
    with pytest.raises(SweepError, match=r"tcp://127\.0\.0\.1:9: cannot reach the Dask scheduler"):
        DaskBackend("tcp://127.0.0.1:9", "x", connect_timeout_s=0.5)
