"""The package's import graph: no cycles, and the library never imports the command line or the experiments.

Reads every module of ``asr_introspect`` with :mod:`ast` (nothing is imported),
resolves absolute and relative imports, including function-local ones and
``importlib.import_module("...")`` with a literal name, to modules of the
package. ``from pkg import name`` is an import of ``pkg.name`` when that is a
module, else of ``pkg``. A package's ``__init__`` that runs because a submodule
is imported is not counted (the usual package pattern is no cycle), and imports
under ``if TYPE_CHECKING:`` never run, so they count for the layering rule but
not for cycles.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "asr_introspect"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


@dataclass(frozen=True)
class Import:
    target: str  # the imported module name, made absolute
    line: int
    runtime: bool  # False under `if TYPE_CHECKING:`
    names: tuple[str, ...] = ()  # `from target import names`

    def candidates(self) -> list[str]:
        """What this import may load: ``target``, or ``target.name`` per name (``target`` itself for a
        name that is no module)."""
        return [f"{self.target}.{n}" for n in self.names] if self.names else [self.target]


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` of the package (a package wins over a same-named module)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or not all(part.isidentifier() for part in rel.with_suffix("").parts):
            continue
        if not all((root / Path(*rel.parts[:i]) / "__init__.py").is_file() for i in range(1, len(rel.parts))):
            continue  # a folder that is not a package (data, templates)
        parts = [package, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif (path.with_suffix("") / "__init__.py").is_file():
            continue  # shadowed by the package of the same name
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _base_package(module: str, is_package: bool, level: int) -> str:
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts)


def module_imports(module: str, path: Path) -> list[Import]:
    """Every import in the file (top-level, in functions, in classes), names made absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runtime)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, runtime) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _base_package(module, is_package, node.level)
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            found.append(Import(source, node.lineno, runtime, names if len(names) == len(node.names) else ()))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if (
                name in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                target = node.args[0].value
                if target.startswith(".") and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    level = len(target) - len(target.lstrip("."))
                    target = f"{_base_package(str(node.args[1].value), True, level)}.{target.lstrip('.')}"
                found.append(Import(target.rstrip("."), node.lineno, runtime))
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(tree, True)
    return found


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module an imported name refers to: itself, else its longest module prefix
    (``pkg.mod.func`` -> ``pkg.mod``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(modules: dict[str, Path], runtime_only: bool = True) -> dict[str, dict[str, int]]:
    """module -> {imported package module: first line}, without self-edges."""
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in modules.items():
        for imp in module_imports(module, path):
            if runtime_only and not imp.runtime:
                continue
            for name in imp.candidates():
                target = resolve(name, modules)
                if target is not None and target != module:
                    graph[module].setdefault(target, imp.line)
    return graph


def knots(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(graph[start])))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, e.g. ``[a, b, a]`` (breadth-first)."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in previous and child != start:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle per knot of mutually importing modules."""
    return [shortest_cycle(graph, component) for component in knots(graph)]


def _describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    steps = [f"{a} (line {graph[a][b]} of {modules[a].relative_to(ROOT.parent)})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(steps + [cycle[-1]])


def _forbidden(name: str) -> bool:
    return (
        name == f"{PACKAGE}.cli"
        or name.startswith(f"{PACKAGE}.cli.")
        or name == "experiments"
        or name.startswith("experiments.")
        or name == f"{PACKAGE}.experiments"
        or name.startswith(f"{PACKAGE}.experiments.")
    )


# --------------------------------------------------------------------------- the checks themselves


def test_the_walk_sees_the_package():
    modules = package_modules()
    assert {PACKAGE, f"{PACKAGE}.cli", f"{PACKAGE}.workflows", f"{PACKAGE}.loading"} <= set(modules)
    graph = import_graph(modules)
    assert f"{PACKAGE}.loading" in graph[f"{PACKAGE}.cli._common"]  # a function-local import is an edge


def test_no_import_cycles():
    modules = package_modules()
    graph = import_graph(modules)
    found = knots(graph)
    report = [
        f"{_describe(shortest_cycle(graph, c), graph, modules)}\n  (all modules of this cycle: {', '.join(c)})"
        for c in found
    ]
    assert not found, "import cycles:\n" + "\n".join(report)


def test_library_never_imports_cli_or_experiments():
    modules = package_modules()
    bad = []
    for module, path in modules.items():
        if module == f"{PACKAGE}.cli" or module.startswith(f"{PACKAGE}.cli."):
            continue
        for imp in module_imports(module, path):
            for name in dict.fromkeys([imp.target, *imp.candidates()]):
                if _forbidden(name):
                    bad.append(f"{path.relative_to(ROOT.parent)}:{imp.line}: imports {name}")
    assert not bad, "the library imports the command line or the experiments:\n" + "\n".join(bad)


# --------------------------------------------------------------------------- the checker checks


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package_modules(root / "pkg", "pkg")


def test_finds_a_cycle_through_relative_and_function_local_imports(tmp_path):
    modules = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .sub import b\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": "def f():\n    from ..c import g\n",
            "pkg/c.py": "import pkg.a\ndef g(): pass\n",
            "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
            "pkg/data/x.py": "import pkg.d\n",  # not a package: not a module
        },
    )
    assert "pkg.data.x" not in modules
    graph = import_graph(modules)
    assert graph["pkg.c"] == {"pkg.a": 1} and "pkg.a" not in graph["pkg.d"]
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]


@pytest.mark.parametrize(
    "text, cyclic",
    [
        ("from pkg.a import VALUE\n", True),  # a name of pkg.a: an import of pkg.a
        ("from pkg import a\n", True),  # a submodule named in `from pkg import`
        ("import importlib\nimportlib.import_module('pkg.a')\n", True),
        ("from pkg import other\n", False),  # a name of pkg/__init__.py only
    ],
)
def test_resolves_names_to_modules(tmp_path, text, cyclic):
    modules = _write(
        tmp_path, {"pkg/__init__.py": "other = 1\n", "pkg/a.py": "import pkg.b\nVALUE = 1\n", "pkg/b.py": text}
    )
    assert bool(find_cycles(import_graph(modules))) == cyclic
