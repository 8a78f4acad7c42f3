"""The layering of DESIGN.md, checked on the source: what each package may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", _modules("protocol"), ids=lambda p: str(p.relative_to(REPO)))
def test_protocol_is_pure(path: Path) -> None:
    """protocol/ is imported by both sides: no I/O, no asyncio, and neither side's code."""
    forbidden = {"asyncio", "serial", "socket", "os", "subprocess", "host", "firmware_sim", "hil", "aiomqtt"}
    assert not {_top(n) for n in _imports(path)} & forbidden


CONTROLLER_ALLOWED = {
    "__future__",
    "dataclasses",
    "collections",
    "typing",
    "enum",
    "math",
    "struct",
    "protocol",
}


@pytest.mark.parametrize("path", _modules("firmware_sim/controller"), ids=lambda p: str(p.relative_to(REPO)))
def test_controller_core_reads_no_clock_and_does_no_io(path: Path) -> None:
    imports = _imports(path)
    tops = {_top(n) for n in imports}
    allowed_firmware = {n for n in imports if n.startswith(("firmware_sim.controller", "firmware_sim.hal"))}
    assert tops - CONTROLLER_ALLOWED - {"firmware_sim"} == set(), tops
    assert {n for n in imports if _top(n) == "firmware_sim"} == allowed_firmware


@pytest.mark.parametrize(
    "path",
    [p for p in _modules("host") if p.name != "cli.py"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_host_never_imports_the_simulator(path: Path) -> None:
    """The host talks to a device over the wire; only the CLI launcher may start the simulator."""
    assert "firmware_sim" not in {_top(n) for n in _imports(path)}


def test_the_controller_core_exists_where_the_layout_says() -> None:
    assert _modules("firmware_sim/controller"), "firmware_sim/controller/ holds the controller core"
