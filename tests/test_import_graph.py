"""The package's modules import each other without cycles.

The graph is built from the source with `ast`, not by importing: a node per module of bench/
(`ftbench.*`), objectives/ (`ftbench.objectives.*`) and datasets/ (`ftbench.datasets.*`), an edge
A -> B for every import of B that runs when A is imported (statements at module level, inside
top-level `if` / `try` / `with` blocks and class bodies; not inside functions, nor under
`if TYPE_CHECKING:`). Relative imports are resolved against the module's package; `from P import
name` points at P.name where that is a module, else at P. A cycle makes import order matter (a
name half-defined when the other module reads it), so the test names the modules of each one.

A second graph adds the imports inside functions: an import moved into a function to dodge a cycle
hides it rather than removing it, so that graph must be acyclic too, and every package import left
inside a function says why on its line (`# lazy: ...`: CLI start-up, a torch-free report, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> the import name it is installed under (setup.py's ROOTS)
ROOTS = {"bench": "ftbench", "objectives": "ftbench.objectives", "datasets": "ftbench.datasets"}


def module_files() -> dict[str, Path]:
    """Import name -> source file of every module in the three folders."""
    found = {}
    for folder, name in ROOTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            if "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join((name, *parts))] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]):
    """The statements of `body` that run when the module is imported (recursing into blocks)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        yield node
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_time_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef, ast.For, ast.While)):
            yield from _import_time_statements(node.body)


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package modules that importing module `name` (source `path`) imports directly."""
    tree = ast.parse(path.read_text(), filename=str(path))
    edges: set[str] = set()
    for node in _import_time_statements(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            edges |= _targets(name, path, node, modules)
    return edges


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The package modules one import statement of module `name` (source `path`) names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
    else:
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            if not base:
                raise AssertionError(f"{path}: relative import beyond the top-level package")
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module
        for alias in node.names:
            sub = f"{origin}.{alias.name}"
            targets.add(sub if sub in modules else origin)
    edges = set()
    for target in targets:
        # `import ftbench.a.b` -> the deepest package module it names
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def function_imports(name: str, path: Path, modules: set[str]):
    """(line, statement's first line, package modules named) of each import inside a function."""
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in node.body:
                for stmt in ast.walk(inner):
                    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                        targets = _targets(name, path, stmt, modules)
                        if targets:
                            yield stmt.lineno, "\n".join(lines[stmt.lineno - 1 : stmt.end_lineno]), targets


def import_graph(with_function_imports: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports when imported; with `with_function_imports`, also
    those its functions import when they run."""
    files = module_files()
    modules = set(files)
    graph = {name: imports_of(name, path, modules) for name, path in files.items()}
    if with_function_imports:
        for name, path in files.items():
            for _, _, targets in function_imports(name, path, modules):
                graph[name] |= targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path A -> ... -> A) per strongly connected component with more than
    one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    components.append(set(comp))
    return [_cycle_in(graph, comp) for comp in components]


def _cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest closed path through the component's first module (breadth-first)."""
    start = min(comp)
    parent = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & comp):
            if child == start:
                path = [node]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle found in component {sorted(comp)}")


def test_no_import_cycles():
    graph = import_graph()
    assert "ftbench.kernels.search" in graph and "ftbench.objectives.base" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_through_function_imports():
    """A function-level import that would close a cycle if it stood at the top hides the cycle
    rather than removing it (the two modules still need each other); none is left."""
    cycles = find_cycles(import_graph(with_function_imports=True))
    assert not cycles, "import cycles through function-level imports:\n" + "\n".join(" -> ".join(c) for c in cycles)


#: function-level imports of package modules without a `# lazy:` comment, with the reason
LAZY_ALLOWED: dict[tuple[str, str], str] = {}


def test_function_level_imports_say_why():
    """Package modules are imported at the top; one imported inside a function says why on the
    import (`# lazy: CLI start-up`, `# lazy: the report needs no torch`, ...)."""
    files = module_files()
    modules = set(files)
    unexplained = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()}"
        for name, path in files.items()
        for line, text, _ in function_imports(name, path, modules)
        if "# lazy:" not in text and (name, text.strip()) not in LAZY_ALLOWED
    ]
    assert not unexplained, "package imports inside functions without a `# lazy:` reason:\n" + "\n".join(unexplained)


def test_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert sorted(map(tuple, find_cycles(graph))) == [("a", "b", "c", "a"), ("e", "e2", "e")]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_graph_reads_relative_and_block_imports(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sub\n"
        "from .other import thing\n"
        "try:\n    import p.deep.leaf\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    from . import hidden\n"
        "def f():\n    from . import late\n"
    )
    (pkg / "mod.py").write_text(source)
    modules = {"p", "p.mod", "p.sub", "p.other", "p.deep", "p.deep.leaf", "p.hidden", "p.late"}
    assert imports_of("p.mod", pkg / "mod.py", modules) == {"p.sub", "p.other", "p.deep.leaf"}


if __name__ == "__main__":  # pragma: no cover - a quick listing while untangling
    for cycle in find_cycles(import_graph()):
        print(" -> ".join(cycle))
