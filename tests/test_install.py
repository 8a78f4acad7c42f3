"""`make install` (scripts/install.sh): the `cementguard` command lands in PREFIX/bin and runs from
its own environment (issue 16, "Install"). The dependencies are taken from this test venv (--no-deps
plus PYTHONPATH) to keep the test fast and offline-friendly; the wheel, its packages and the linked
entry point are the real ones."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_install_puts_a_working_cementguard_in_prefix_bin(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh"), "--method", "venv", "--prefix", str(prefix),
         "--pip-args", "--no-deps"],
        capture_output=True, text=True, env={**env, "PYTHONPATH": sysconfig.get_paths()["purelib"]},
        timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    command = prefix / "bin" / "cementguard"
    assert command.is_symlink()
    target = command.resolve()
    assert target.is_relative_to(prefix / "share" / "cementguard" / "venv"), target
    assert f"installed with venv: {command}" in done.stdout
    assert "cementguard 0." in done.stdout, "the script ran the installed command"
    assert f"add {prefix / 'bin'} to your PATH" in done.stdout

    deps = {**env, "PYTHONPATH": sysconfig.get_paths()["purelib"]}  # third-party packages only
    shown = subprocess.run(
        [str(command), "--help"], capture_output=True, text=True, env=deps, timeout=60, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert "report" in shown.stdout
    assert "export" in shown.stdout
    python = target.parent / "python"
    probe = "import cementguard, host.report; print(cementguard.__file__); print(host.report.__file__)"
    where = subprocess.run(  # not from the checkout: from elsewhere, as a user would
        [str(python), "-c", probe], capture_output=True, text=True, env=deps, timeout=60, cwd=tmp_path
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(prefix), f"{line} is not the installed copy"


def test_install_refuses_an_unknown_method(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh"), "--method", "brew", "--prefix", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--method brew is not one of auto, pipx, uv, venv" in done.stderr
    assert not (tmp_path / "bin").exists()
