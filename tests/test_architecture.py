"""The layering of docs/design.md ("Layering"), checked on the source: what each package may import.

    protocol      <- imported by everyone, imports no one of ours
    firmware_sim  -> protocol                       (never host, never hil)
    host          -> protocol                       (never firmware_sim, never hil)
    hil           -> host, firmware_sim, protocol   (the harness sits on top)

The one exception is the launcher, host/cli.py: it names the `sim` and `hil` subcommands' modules
(`firmware_sim.cli`, `hil.cli`) in its table and imports the one asked for at dispatch, by name. It
imports neither statically, and no other host module names them at all.

Imports are read from the source (every `import` statement, at module level or inside functions)
and followed transitively through the repository's own modules.
"""

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


PACKAGES = ("protocol", "firmware_sim", "host", "hil")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """module -> the repository modules it imports (relative imports resolved; `from a import b`
    counts a.b when a.b is a module)."""
    paths = {_module_name(p): p for pkg in PACKAGES for p in _modules(pkg)}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        deps = set()
        for target in targets:
            while target and target not in paths:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
                parent = target.rpartition(".")[0]
                while parent:  # importing a.b.c runs a/__init__ and a/b/__init__
                    if parent in paths:
                        deps.add(parent)
                    parent = parent.rpartition(".")[0]
        graph[name] = deps
    return graph


GRAPH = _graph()


def _closure(start: str, skip: frozenset[str] = frozenset()) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in GRAPH[todo.pop()] - seen - skip:
            seen.add(dep)
            todo.append(dep)
    return seen


HOST_MODULES = sorted(m for m in GRAPH if _top(m) == "host")
SIM_MODULES = sorted(m for m in GRAPH if _top(m) == "firmware_sim")


@pytest.mark.parametrize("module", HOST_MODULES)
def test_host_never_imports_the_simulator_or_the_harness_even_indirectly(module: str) -> None:
    """The host talks to a device over the wire; it never depends on the simulator or on the HIL
    harness built on top of it. Transitively: no chain of imports from any host module (the launcher
    included: it names them only as strings) reaches firmware_sim or hil."""
    reached = {_top(m) for m in _closure(module)}
    assert not reached & {"firmware_sim", "hil"}, sorted(_closure(module))


@pytest.mark.parametrize("module", SIM_MODULES)
def test_firmware_never_imports_the_host_or_the_harness_even_indirectly(module: str) -> None:
    reached = {_top(m) for m in _closure(module)}
    assert reached <= {"firmware_sim", "protocol"}, sorted(_closure(module))


def test_protocol_imports_only_itself() -> None:
    for module in (m for m in GRAPH if _top(m) == "protocol"):
        assert {_top(m) for m in _closure(module)} <= {"protocol"}


def test_the_launcher_is_the_one_exception_and_names_exactly_sim_and_hil() -> None:
    """host/cli.py resolves subcommands by module name: exactly `sim` -> firmware_sim.cli and
    `hil` -> hil.cli lie outside host; no other host module names firmware_sim or hil even as text."""
    from host.cli import COMMANDS

    outside = {name: c.module for name, c in COMMANDS.items() if _top(c.module) != "host"}
    assert outside == {"sim": "firmware_sim.cli", "hil": "hil.cli"}
    for module in HOST_MODULES:
        if module == "host.cli":
            continue
        source = REPO / (module.replace(".", "/") + ".py")
        if not source.exists():
            source = REPO / module.replace(".", "/") / "__init__.py"
        code = ast.parse(source.read_text())
        strings = {
            n.value for n in ast.walk(code) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        named = {
            s for s in strings if s.startswith(("firmware_sim.", "hil.")) or s in ("firmware_sim", "hil")
        }
        assert not named, f"{module} names {named}: only the launcher may resolve those by name"


def test_the_graph_sees_the_imports_it_checks() -> None:
    """The checks above are only as good as the graph: it must see a host module's imports,
    function-level ones included (the launcher's test would pass on an empty graph)."""
    assert "protocol" in _closure("host.link")
    assert "host.link" in _closure("host.device_cmds")  # imported inside a function there
    assert "host" in _closure("hil.runner")


def test_the_controller_core_exists_where_the_layout_says() -> None:
    assert _modules("firmware_sim/controller"), "firmware_sim/controller/ holds the controller core"


def test_the_simulator_and_the_host_accept_the_same_time_scales() -> None:
    """firmware_sim cannot import the host's option types (the layering above), so it states its
    --time-scale range itself: the two must agree, or a host would refuse a scale the simulator runs."""
    from firmware_sim.cli import TIME_SCALE_RANGE
    from host.cli_types import TIME_SCALE

    assert (TIME_SCALE.minimum, TIME_SCALE.maximum) == TIME_SCALE_RANGE
