"""The house stays layered: imports only point down, no module imports itself round a circle, commands stay apart.

The layers (see docs/architecture.md)::

    tuner  ->  trainables  ->  { lensdata, search_spaces }

A command of ``tuner/commands/`` imports no other command; only ``tuner.cli`` imports the commands.

Every import counts, also those inside functions (the project imports torch, ray and its own
heavy modules lazily, and a lazy import is still a dependency) and those under ``TYPE_CHECKING``.
Benchmarks only use the public faces of the packages: no underscore names or modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tuner", "trainables", "lensdata", "search_spaces")
ALLOWED = {  # what each package may import, itself included
    "tuner": {"tuner", "trainables", "lensdata", "search_spaces"},
    "trainables": {"trainables", "lensdata", "search_spaces"},
    "lensdata": {"lensdata"},
    "search_spaces": {"search_spaces"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every absolute import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; the project uses absolute ones"
            found.append((node.module or "", [alias.name for alias in node.names], node.lineno))
    return found


def _targets(module: str, names: list[str]) -> list[str]:
    """The project modules an import statement loads (a ``from pkg import submodule`` loads the submodule)."""
    if module.split(".")[0] not in PACKAGES:
        return []
    subs = [f"{module}.{name}" for name in names if f"{module}.{name}" in MODULES]
    return subs if subs and len(subs) == len(names) else [module, *subs]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, names, _ in _imports(path):
            graph[name].update(t for t in _targets(module, names) if t in MODULES and t != name)
    return graph


def test_the_walk_sees_every_package_and_their_imports():
    graph = _graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    assert "lensdata.store" in graph["lensdata.sources"]  # a module-level import
    assert "trainables.loop" in graph["tuner.training"]  # one inside a function


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_only_point_down(package):
    wrong = []
    for name, path in MODULES.items():
        if name.split(".")[0] != package:
            continue
        for module, _, line in _imports(path):
            target = module.split(".")[0]
            if target in PACKAGES and target not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert _cycles(_graph()) == []


COMMANDS = "tuner.commands"  # one thin module per command (docs/architecture.md)
COMMAND_CALLER = "tuner.cli"  # the one module that imports the commands


def _is_command(module: str) -> bool:
    return module == COMMANDS or module.startswith(COMMANDS + ".")


def _command_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a command module by another command module, or by machinery (anything but the CLI).

    What two commands share lives in a module that is not a command; the machinery never reaches up
    into a command.
    """
    return sorted(f"{name} imports {target}" for name, targets in graph.items() for target in targets
                  if _is_command(target) and target != name and name != COMMAND_CALLER)


def test_the_command_rule_finds_a_command_importing_another():
    graph = {"tuner.cli": {"tuner.commands.search", "tuner.commands.compare"},
             "tuner.commands.compare": {"tuner.commands.search", "tuner.driver"},
             "tuner.commands.search": {"tuner.driver"}, "tuner.driver": {"tuner.commands.search"}}
    assert _command_imports(graph) == ["tuner.commands.compare imports tuner.commands.search",
                                       "tuner.driver imports tuner.commands.search"]
    assert _command_imports({"tuner.cli": {"tuner.commands.search"}, "tuner.commands.search": {"tuner.driver"}}) == []


def test_commands_import_no_other_command_and_only_the_cli_imports_them():
    graph = _graph()
    assert {name for name in graph if _is_command(name)} >= {f"{COMMANDS}.search", f"{COMMANDS}.compare"}
    assert "tuner.api" in graph[f"{COMMANDS}.search"]  # the walk sees the commands' lazy imports
    assert _command_imports(graph) == []


def test_benchmarks_use_only_public_faces():
    private = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for module, names, line in _imports(path):
            if module.split(".")[0] not in PACKAGES:
                continue
            hidden = [n for n in [*module.split(".")[1:], *names] if n.startswith("_")]
            if hidden:
                private.append(f"{path.relative_to(ROOT)}:{line} imports {module} {names}")
    assert not private, "benchmarks import private names:\n" + "\n".join(private)
