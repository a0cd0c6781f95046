"""No import cycle in ``uploader`` or ``service``, counting every import the source names.

The graph is read from the AST of every module, so an import cannot hide from it by being lazy
(inside a function) or typing-only (under ``if TYPE_CHECKING:``): both still say "this module
needs that one", and a cycle among them is a tangle of concepts even when Python never trips on it.

How names become modules:

* ``import a.b`` and ``from a import b`` (with ``a.b`` a module) are edges to ``a.b``;
  ``from a import name`` (a class, a function ...) is an edge to ``a``, the package's ``__init__``.
  Relative imports are resolved against the importing module's package.
* A package ``__init__`` is a node like any module, with exactly the imports its source names.
  Importing ``a.b`` does not add an edge to ``a``: that Python runs ``a/__init__`` first is
  package mechanics, not a dependency. So ``uploader/__init__.py``, which re-exports names
  through a lazy ``__getattr__`` table (strings, not imports) plus ``TYPE_CHECKING`` imports of
  its own submodules, makes a cycle only if a submodule imports from the package itself
  (``from uploader import X``), which is a real one.
* Only edges between modules of the two packages count; the standard library and third-party
  packages cannot close a cycle through our code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("uploader", "service")


def module_files() -> dict[str, Path]:
    """Every module of ``PACKAGES`` by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``name``'s source imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in modules else source)
    return {target for target in targets if target in modules and target != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    modules = set(files)
    return {name: imports_of(name, path, modules) for name, path in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (iterative, so deep chains cannot overflow)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """The shortest closed chain from ``start`` back to it inside ``members`` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for successor in sorted(graph[node] & members):
                if successor == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(came_from[chain[-1]])
                    return [*reversed(chain), start]
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{start} is on no cycle within {sorted(members)}")


def describe(graph: dict[str, set[str]]) -> list[str]:
    """Each component's cycles as module chains: the shortest one through each of its modules,
    each listed once (from its first module in sorted order)."""
    found: list[str] = []
    for component in strongly_connected(graph):
        for start in component:
            loop = shortest_cycle(graph, set(component), start)[:-1]
            first = loop.index(min(loop))
            chain = " -> ".join([*loop[first:], *loop[:first], min(loop)])
            if chain not in found:
                found.append(chain)
    return found


def test_uploader_and_service_have_no_import_cycle() -> None:
    graph = import_graph()
    assert {"uploader", "service", "uploader.engine", "service.cli"} <= set(graph)
    cycles = describe(graph)
    assert not cycles, "import cycles (break them by giving the shared piece one home):\n" + "\n".join(cycles)


def write_package(root: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    names = {
        ".".join(Path(relative).with_suffix("").parts).removesuffix(".__init__"): root / relative
        for relative in files
    }
    modules = set(names)
    return {name: imports_of(name, path, modules) for name, path in names.items()}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(  # a lazy import inside a function closes the cycle
            {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n",
             "pkg/b.py": "def f():\n    from . import a\n"},
            ["pkg.a -> pkg.b -> pkg.a"], id="lazy"),
        pytest.param(  # a typing-only import counts too; ``from .a import name`` is an edge to a
            {"pkg/__init__.py": "", "pkg/a.py": "from .sub.c import C\n",
             "pkg/sub/__init__.py": "",
             "pkg/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from ..a import A\n"},
            ["pkg.a -> pkg.sub.c -> pkg.a"], id="type-checking"),
        pytest.param(  # a submodule importing a name from its package's __init__ is a real cycle
            {"pkg/__init__.py": "from .a import A\n", "pkg/a.py": "import pkg\n"},
            ["pkg -> pkg.a -> pkg"], id="package-init"),
        pytest.param(  # one component, two cycles: both are listed
            {"pkg/__init__.py": "", "pkg/a.py": "from . import b, c\n",
             "pkg/b.py": "from .a import A\n", "pkg/c.py": "import pkg.a\n"},
            ["pkg.a -> pkg.b -> pkg.a", "pkg.a -> pkg.c -> pkg.a"], id="every-cycle"),
        pytest.param(  # a lazy __getattr__ table is strings, and a.b does not import a's __init__
            {"pkg/__init__.py": "_HOME = {'A': 'a'}\n", "pkg/a.py": "from pkg.b import B\n",
             "pkg/b.py": "import json\n"},
            [], id="lazy-table"),
    ],
)
def test_the_graph_sees_every_import(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    assert describe(write_package(tmp_path, files)) == expected


@pytest.mark.parametrize(
    ("importer", "imported"),
    [("uploader", "service"), ("service.daemon", "service.client"), ("service.daemon", "service.commands")],
)
def test_layers_point_one_way(importer: str, imported: str) -> None:
    """The library knows no daemon; the server knows neither its CLI client nor the commands."""
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        if name == importer or name.startswith(importer + ".")
        for target in targets
        if target == imported or target.startswith(imported + ".")
    )
    assert not wrong, "\n".join(wrong)
