# How gilstudy's modules import each other: no cycle (the graph is read from the source, and
# an import inside a function counts: a lazy import must not hide one), each compare and
# experiments module imports alone in a fresh interpreter, and importing the registry is
# enough to find the built-in models.

import ast
import json
import pathlib
import subprocess
import sys

import pytest

import gilstudy

pytestmark = pytest.mark.one_pass

# Only reached if an interpreter hangs while importing.
TIMEOUT = 120

PACKAGE = pathlib.Path(gilstudy.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_imports(node: ast.AST):
    """The import statements under ``node`` that can run: at module level or inside a
    function or class, but not under ``if TYPE_CHECKING:`` (type checkers only)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node):
        for other in node.orelse:
            yield from _runtime_imports(other)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _runtime_imports(child)


def _imported_modules(name: str, path: pathlib.Path) -> set[str]:
    """The gilstudy modules that module ``name`` can import. ``from P import M`` counts as
    importing P.M when that is a module, else P. A package a module sits in is imported
    first by Python whatever the module says; that is not counted, or every package that
    imports its own submodules would be a cycle."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle that a depth-first walk from each module meets, as the modules on it."""
    cycles, done = [], set()

    def walk(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append(path[path.index(imported):] + [imported])
            elif imported not in done:
                walk(imported, path + [imported])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            walk(module, [module])
    return cycles


GRAPH = {name: _imported_modules(name, path) for name, path in MODULES.items()}


def test_the_import_graph_is_read_from_the_source():
    assert "gilstudy.compare.registry" in GRAPH["gilstudy.compare.models"]
    assert "gilstudy.compare.runner" in GRAPH["gilstudy.compare.child"]
    # The compare result is data; the text, JSON and plot are functions over it.
    assert "gilstudy.compare.result" in GRAPH["gilstudy.compare.plot"]
    assert "gilstudy.compare.result" in GRAPH["gilstudy.compare.report"]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_of_gilstudy_imports_itself_back_not_even_inside_a_function():
    assert _cycles(GRAPH) == []


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("module", sorted(
    name for name in MODULES if name.startswith(("gilstudy.compare", "gilstudy.experiments"))
    and not name.endswith("__main__")) + ["gilstudy.pythons", "gilstudy._table"])
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    done = subprocess.run([sys.executable, "-W", "error", "-c", f"import {module}"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.timeout(TIMEOUT)
def test_importing_the_registry_registers_the_built_in_models():
    code = ("import json, sys\n"
            "import gilstudy.compare.registry as registry\n"
            "print(json.dumps(registry.names()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "serial-python", "serial-cython", "threads-python", "threads-cython",
        "coprocess-python", "coprocess-cython", "prange-cython", "pool-python", "pool-cython",
        "joblib-python", "joblib-cython", "interp-python", "interp-cython", "interppool-python",
        "numba-threads", "numba-prange", "mpi-python", "mpi-cython", "mpipool-python",
        "mpipool-cython", "dask-python", "dask-cython"]
