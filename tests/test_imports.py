# How gilstudy's modules import each other: no cycle (the graph is read from the source, and
# an import inside a function counts: a lazy import must not hide one), no module takes
# another's underscore names, no class is too long to read at once, each compare and
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
# Every module, compiled ones (gilstudy.kernels._ckernels) included: importing a module is
# never taking another module's private name, even when the module's own name starts with
# "_" (a module private to the package, such as gilstudy._checks).
ALL_MODULES = set(MODULES) | {_module_name(path.with_name(path.name.split(".")[0] + ".py"))
                              for path in PACKAGE.rglob("*.so")}


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


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_names_taken(name: str, path: pathlib.Path) -> set[str]:
    """Where module ``name`` takes an underscore name of another gilstudy module, as
    "module: other._name": imported (``from gilstudy.wire import _permits``) or read as an
    attribute of a module it imported (``wire._permits``). Every import counts, those for
    type checkers too; submodules (``from gilstudy import _checks``) are modules, not
    names, and do not."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    taken, aliases = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ALL_MODULES and alias.asname:
                    aliases[alias.asname] = alias.name
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in ALL_MODULES:
                aliases[alias.asname or alias.name] = full
            elif base in ALL_MODULES and base != name and _is_private(alias.name):
                taken.add(f"{name}: {full}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _is_private(node.attr)):
            module = aliases[node.value.id]
            if f"{module}.{node.attr}" not in ALL_MODULES and module != name:
                taken.add(f"{name}: {module}.{node.attr}")
    return taken


PRIVATE_NAMES_TAKEN = {leak for name, path in MODULES.items()
                       for leak in _private_names_taken(name, path)}


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


def test_the_private_name_finder_finds_imports_and_attributes(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from gilstudy.wire import _permits, Channel\n"
                      "from gilstudy import wire, _checks\n"
                      "import gilstudy.shared as shared\n"
                      "from gilstudy import __version__\n"
                      "wire._receive_buffer(1); shared._private; _checks.timeout; wire.__name__\n")
    assert _private_names_taken("gilstudy.probe", module) == {
        "gilstudy.probe: gilstudy.wire._permits", "gilstudy.probe: gilstudy.wire._receive_buffer",
        "gilstudy.probe: gilstudy.shared._private"}


def test_no_module_of_gilstudy_takes_another_modules_underscore_names():
    assert sorted(PRIVATE_NAMES_TAKEN) == []


# A class longer than this cannot be read at once: split it by job.
LONGEST_CLASS = 250


def test_no_class_is_too_long_to_read_at_once():
    long_classes = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > LONGEST_CLASS:
                    long_classes.append(f"{name}.{node.name}: {length} lines")
    assert long_classes == []


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
