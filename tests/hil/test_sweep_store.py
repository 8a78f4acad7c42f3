"""The sweep's runs on disk: exact round trip through Parquet, resume after an interruption (no run lost
or doubled), refusal of another configuration, a report built in batches that never holds every run,
and the fixed noise level."""

from __future__ import annotations

import json
import weakref
from dataclasses import asdict
from pathlib import Path

import pytest

import hil._sweep_store as store_module
import hil.sweep as sweep_module
from hil._sweep_chunks import Chunk, SweepError, code_digest, run_chunk
from hil._sweep_runs import NOISE_LEVELS, RunOutcome, draw_run
from hil._sweep_store import Manifest, SweepStore, from_rows, iter_runs, to_table
from hil._sweep_tally import tally
from hil.sweep import main, read_outcomes, run_sweep, write_report

SEED = 5
N = 24


def _records(outcomes: list[RunOutcome]) -> list[str]:
    return [json.dumps(asdict(o), sort_keys=True) for o in outcomes]  # NaN -> "NaN", comparable


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[RunOutcome]:
    """Runs 0..N-1 of SEED, made in this process in one go (the truth every other way must match)."""
    return run_chunk(Chunk(SEED, 0, N, None, ()))[1]


def test_a_run_comes_back_from_parquet_field_for_field(reference: list[RunOutcome]) -> None:
    back = from_rows(to_table(reference).to_pylist())
    assert _records(back) == _records(reference)
    assert any(o.stops for o in back)
    assert any(o.event for o in back)


class InterruptError(Exception):
    pass


def test_an_interrupted_sweep_resumes_where_it_stopped_with_no_run_lost_or_doubled(
    tmp_path: Path, reference: list[RunOutcome]
) -> None:
    d = tmp_path / "sweep"
    seen: list[int] = []

    def stop_after_ten(done: int, _total: int) -> None:
        seen.append(done)
        if done >= 10:
            raise InterruptError  # Ctrl-C, a dead client: whatever ends the driver mid-sweep

    with pytest.raises(InterruptError):
        run_sweep(N, SEED, d, jobs=1, progress=stop_after_ten, chunk=3, rows_per_part=4)
    on_disk = read_outcomes(d)
    assert len(on_disk) == seen[-1] == 12  # what was contiguous was written, as whole part files
    assert [p.name for p in (d / "runs").iterdir() if p.suffix == ".tmp"] == []

    resumed = run_sweep(N, SEED, d, jobs=1, chunk=5, rows_per_part=4)
    assert (resumed.resumed, resumed.ran, resumed.runs) == (12, N - 12, N)
    assert _records(read_outcomes(d)) == _records(reference)
    # and again: nothing left to run, nothing written twice
    again = run_sweep(N, SEED, d, jobs=1)
    assert (again.resumed, again.ran) == (N, 0)
    assert len(read_outcomes(d)) == N


def test_a_killed_writer_leaves_whole_parts_and_its_temporary_file_is_dropped(
    tmp_path: Path, reference: list[RunOutcome]
) -> None:
    d = tmp_path / "sweep"
    run_sweep(8, SEED, d, jobs=1, rows_per_part=4)
    (d / "runs" / "part-000000000008-000000000012.tmp").write_bytes(b"half a parquet file")
    result = run_sweep(N, SEED, d, jobs=1)
    assert result.resumed == 8
    assert _records(read_outcomes(d)) == _records(reference)


def test_a_partial_sweep_of_another_configuration_is_refused_with_the_difference(tmp_path: Path) -> None:
    d = tmp_path / "sweep"
    run_sweep(4, SEED, d, jobs=1)
    with pytest.raises(SweepError, match=r"another configuration \(seed 5 \(on disk\) vs 6 \(asked\)"):
        run_sweep(8, SEED + 1, d, jobs=1)
    with pytest.raises(SweepError, match="overrides"):
        run_sweep(8, SEED, d, jobs=1, overrides=[("rise_arm_blocks", 10)])
    with pytest.raises(SweepError, match="noise None"):
        run_sweep(8, SEED, d, jobs=1, noise=2.0)
    with pytest.raises(SweepError, match="more than --n 2"):
        run_sweep(2, SEED, d, jobs=1)
    manifest = json.loads((d / "sweep-manifest.json").read_text())
    manifest["code"] = "0" * 16  # runs made by other controller code
    (d / "sweep-manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SweepError, match="code"):
        run_sweep(8, SEED, d, jobs=1)
    assert len(read_outcomes(d)) == 4  # nothing was touched


def test_the_command_line_refuses_an_incompatible_directory_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--n", "2", "--jobs", "1", "--quiet", "--no-plot", "--report-dir", str(tmp_path)]
    assert main([*argv, "--seed", "1"]) == 0
    capsys.readouterr()
    assert main([*argv, "--seed", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cementguard hil sweep: ")
    assert "another configuration" in err
    assert err.count("\n") == 1


def test_a_hand_edited_run_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "sweep"
    run_sweep(8, SEED, d, jobs=1, rows_per_part=4)
    (d / "runs" / "part-000000000000-000000000004.parquet").unlink()
    manifest = Manifest(SEED, None, (), None, code_digest())
    with pytest.raises(SweepError, match="do not follow"):
        SweepStore(d, manifest)


def test_the_store_takes_runs_in_index_order_only_and_flushes_on_its_clock(
    tmp_path: Path, reference: list[RunOutcome]
) -> None:
    now = [0.0]
    manifest = Manifest(SEED, None, (), None, "x")
    s = SweepStore(tmp_path, manifest, rows_per_part=100, flush_s=30.0, clock=lambda: now[0])
    with pytest.raises(ValueError, match="run 1 appended where run 0 was due"):
        s.append(reference[1:2])
    s.append(reference[0:3])
    assert s.done == 0  # buffered
    now[0] = 29.9
    s.append(reference[3:4])
    assert s.done == 0
    now[0] = 30.0
    s.append(reference[4:5])
    assert s.done == 5  # the oldest buffered run waited FLUSH_S: written
    assert [p[2].name for p in s.parts()] == ["part-000000000000-000000000005.parquet"]
    s.append(reference[5:12])
    s.flush()
    assert [(a, b) for a, b, _ in s.parts()] == [(0, 5), (5, 12)]


def test_the_report_reads_the_runs_in_batches_and_never_holds_them_all(
    tmp_path: Path, reference: list[RunOutcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "sweep"
    run_sweep(N, SEED, d, jobs=1, rows_per_part=7)
    header = {"command": "test", "seed": SEED}
    whole = {k: p.read_bytes() for k, p in write_report(d, header, plot=False)[0].items()}

    made: list[weakref.ref[RunOutcome]] = []
    most = [0]
    real = store_module.from_rows

    def counting(rows: list[dict[str, object]]) -> list[RunOutcome]:
        out = real(rows)
        made.extend(weakref.ref(o) for o in out)
        most[0] = max(most[0], sum(r() is not None for r in made))
        return out

    monkeypatch.setattr(store_module, "from_rows", counting)
    paths, t = write_report(d, header, plot=False, batch_rows=2)
    assert 0 < most[0] <= 3 * 2 < N  # a few batches at a time (the loops' last ones), never all runs
    assert t.runs == N
    # the same report, byte for byte, as in one batch, and as from the runs in memory
    assert {k: p.read_bytes() for k, p in paths.items()} == whole
    assert t.false_stop_summary() == tally(reference).false_stop_summary()
    assert t.detection_rows() == tally(reference).detection_rows()
    assert [len(b) for b in iter_runs(d / "runs", batch_rows=5)] == [5, 2, 5, 2, 5, 2, 3]  # parts of 7
    assert sum(len(b) for b in iter_runs(d / "runs", limit=10)) == 10


def test_a_fixed_noise_level_changes_the_noise_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(6):
        free = draw_run(SEED, index)
        for level in NOISE_LEVELS:
            fixed = draw_run(SEED, index, noise=level)
            assert fixed.conditions.noise_level == level
            assert fixed.conditions.noise_kpa == 10.0 * level
            # everything else as drawn without it: a paired comparison across levels
            same = {k: v for k, v in asdict(fixed).items() if k != "conditions"}
            assert same == {k: v for k, v in asdict(free).items() if k != "conditions"}
            cond = {k: v for k, v in asdict(fixed.conditions).items() if not k.startswith("noise")}
            assert cond == {k: v for k, v in asdict(free.conditions).items() if not k.startswith("noise")}
    with pytest.raises(ValueError, match=r"--noise 3 is not a sweep noise level; allowed 0\.5, 1, 2"):
        draw_run(SEED, 0, noise=3.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise", "1.5"], "--noise 1.5 is not a sweep noise level"),
        (["--noise", "nan"], "not a sweep noise level"),
        (["--scheduler", "localhost:8786"], "expected tcp://HOST:PORT"),
        (["--scheduler", "tcp://127.0.0.1:70000"], "port 1..65535"),
        (["--scheduler", "tcp://127.0.0.1:8786", "--jobs", "2"], "not allowed with argument"),
    ],
)
def test_bad_options_are_refused_by_name(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--n", "1", "--report-dir", str(tmp_path), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_without_dask_the_scheduler_option_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hil._sweep_backends as backends

    real = backends.importlib.import_module

    def no_dask(name: str) -> object:
        if name.startswith(("dask", "distributed")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name)

    monkeypatch.setattr(backends.importlib, "import_module", no_dask)
    with pytest.raises(SweepError, match=r"pip install 'cementguard\[cluster\]'"):
        run_sweep(2, SEED, tmp_path / "d", scheduler="tcp://127.0.0.1:8786")


def test_progress_is_silent_off_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--n", "2", "--jobs", "1", "--no-plot", "--report-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""
    assert sweep_module.progress_bar is not None


def test_on_a_terminal_the_progress_bar_shows_runs_done_rate_and_eta() -> None:
    import io

    from rich.console import Console

    from hil._sweep_progress import progress_bar

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    now = [0.0]
    with progress_bar(1000, done=200, enabled=True, console=console, clock=lambda: now[0]) as update:
        now[0] = 10.0
        update(300, 1000)
    text = out.getvalue()
    assert "300/1000" in text
    assert "10.0 runs/s" in text  # the runs of this session over its time, not the resumed ones
    assert "ETA" in text
