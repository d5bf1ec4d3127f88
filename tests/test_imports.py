"""The package's import graph: no module imports one that (directly or not) imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import asttag

PACKAGE = Path(asttag.__file__).parent


def module_name(path: Path) -> str:
    parts = ("asttag", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports, at any depth of its code.

    Function-level imports count: one placed there to dodge a cycle is still a cycle.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from . import checkpoint` imports a module; `from .labels import LabelSet` a name.
            found.update(f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                         for a in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported(path, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for child in sorted(graph[node]):
            cycle = visit(child, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    return next((c for c in (visit(n, []) for n in sorted(graph)) if c), None)


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_and_reads_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    graph = import_graph()
    assert {"asttag.checkpoint", "asttag.ensemble"} <= graph["asttag.loading"]
    assert "asttag.cli.app" in graph["asttag.cli.tag"]  # `from .app import ...`
    assert "asttag.checkpoint" in graph["asttag.cli.models"]  # `from .. import checkpoint`


def test_the_cli_and_the_torch_free_modules_import_without_torch():
    """`asttag --help` and shell completion stay instant: the CLI, the choices it is built from
    and the data set readers load neither torch nor an audio decoder (one process for all)."""
    import subprocess
    import sys

    code = ("import sys, asttag.cli, asttag.choices, asttag.datasets; "
            "print(sorted(m for m in ('torch', 'torchaudio') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"
