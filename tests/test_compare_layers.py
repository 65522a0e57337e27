# The compare package in layers: the result is data with its queries, and the text, the JSON,
# the plot and the projections are functions over it, so no compare module imports one that
# imports it back, not even for type checkers (an `if TYPE_CHECKING:` import counts here).

import ast
import pathlib

import pytest

import gilstudy.compare

pytestmark = pytest.mark.one_pass

PACKAGE = pathlib.Path(gilstudy.compare.__file__).parent
NAMES = {path.stem for path in PACKAGE.glob("*.py") if path.stem not in ("__init__", "__main__")}


def imports_of(name: str) -> set[str]:
    """The compare modules that module ``name`` names in any import statement."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "gilstudy.compare":
                found.update(alias.name for alias in node.names if alias.name in NAMES)
            elif node.module.startswith("gilstudy.compare."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[2] for alias in node.names
                         if alias.name.startswith("gilstudy.compare."))
    return found & NAMES - {name}


GRAPH = {name: imports_of(name) for name in NAMES}


def reaches(start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        for imported in GRAPH[module]:
            if imported == goal:
                return True
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return False


def test_the_graph_counts_type_checking_imports():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n"
              "    from gilstudy.compare.x import y\n")
    assert [n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)
            ] == ["typing", "gilstudy.compare.x"]
    assert "result" in GRAPH["plot"] and "result" in GRAPH["report"]


def test_no_compare_module_imports_itself_back():
    assert [name for name in sorted(NAMES) if reaches(name, name)] == []


@pytest.mark.parametrize("shown_by", ["report", "document", "plot", "projection"])
def test_the_result_knows_nothing_of_how_it_is_shown(shown_by):
    assert not reaches("result", shown_by)
    assert not reaches("answer", shown_by)
    assert reaches(shown_by, "result")
