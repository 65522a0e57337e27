"""The README's and the docs' Python examples run and their assertions hold; their links
name files that exist; the docs site builds with no warning; every module has a docstring.

Pages are found by globbing, so a page added under docs/ is covered with no edit here.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Folders under docs/ that hold no page of ours: the build's output and the module pages
# the build writes (git-ignored).
GENERATED = (DOCS / "_build", DOCS / "api" / "modules")
PAGES = [ROOT / "README.md"] + sorted(
    page for page in DOCS.rglob("*.md")
    if not any(folder in page.parents for folder in GENERATED))


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


# A block whose first line is "# file: NAME" is a helper script: it is written to NAME in
# the directory where the other blocks of the same page run. Blocks that build a user's
# project (a setup.py) are illustrations, not runnable here.
FILES = {_name(page): {block.split("\n", 1)[0][len("# file: "):].strip(): block
                       for block in _blocks(page) if block.startswith("# file: ")}
         for page in PAGES}
RUNNABLE = [(_name(page), index, block) for page in PAGES
            for index, block in enumerate(_blocks(page))
            if "setup(" not in block and not block.startswith("# file: ")]
# A block whose first line is one of these comments runs only where concurrent.interpreters
# exists (Python 3.14+): it is marked `subinterpreters` (make test runs it in its 3.15 pass;
# elsewhere it is deselected and counted). Every other test here is `one_pass`: it reads the
# pages or runs an example whose answer does not depend on the interpreter.
NEEDS_INTERPRETERS = ("# needs: concurrent.interpreters", "# requires: 3.14")


@pytest.mark.one_pass
def test_the_readme_and_the_docs_have_python_examples():
    readme = [block for page, _, block in RUNNABLE if page == "README.md"]
    assert len(readme) >= 3
    assert len(RUNNABLE) >= 20
    assert any(block.startswith(NEEDS_INTERPRETERS) for _, _, block in RUNNABLE)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page, index, block", [
    pytest.param(page, index, block, id=f"{page}:{index}",
                 marks=pytest.mark.subinterpreters if block.startswith(NEEDS_INTERPRETERS)
                 else pytest.mark.one_pass)
    for page, index, block in RUNNABLE])
def test_example_runs(page, index, block, tmp_path):
    for name, text in FILES[page].items():
        (tmp_path / name).write_text(text)
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"{page}, python block {index} failed:\n{block}\n{done.stderr}"


def _relative_links(text: str) -> list[str]:
    """The targets of the markdown links and images that name a file of this repository:
    no scheme (http:, mailto:), no bare #anchor; an #anchor after a path is dropped."""
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return sorted({target.split("#", 1)[0] for target in targets
                   if ":" not in target and not target.startswith("#")})


def _tracked() -> set[str]:
    return set(subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                              check=True).stdout.decode().split("\0"))


@pytest.mark.one_pass
def test_every_relative_link_in_the_readme_names_a_file_git_tracks():
    links = _relative_links((ROOT / "README.md").read_text())
    assert links, "the README links no file of the repository"
    tracked = _tracked()
    assert [link for link in links if link.rstrip("/") not in tracked
            and not any(path.startswith(link.rstrip("/") + "/") for path in tracked)] == []


@pytest.mark.one_pass
@pytest.mark.parametrize("page", [page for page in PAGES if page.name != "README.md"],
                         ids=_name)
def test_every_relative_link_of_a_docs_page_names_a_file_that_exists(page):
    """Links are relative to the page, as Sphinx and a Markdown viewer both read them; a
    link may also name a page the build writes (api/modules/...)."""
    missing = []
    for link in _relative_links(page.read_text()):
        target = (page.parent / link).resolve()
        if not target.exists() and DOCS / "api" / "modules" not in target.parents:
            missing.append(link)
    assert missing == []


@pytest.mark.one_pass
def test_the_link_finder_sees_links_and_images_and_skips_addresses():
    text = ("[a](docs/a.md) ![b](docs/b.png) [c](https://example.org/x) [d](#usage) "
            "[e](docs/e.md#part)")
    assert _relative_links(text) == ["docs/a.md", "docs/b.png", "docs/e.md"]


@pytest.mark.one_pass
def test_the_module_map_names_every_module_and_only_paths_that_exist():
    layout = (DOCS / "guide" / "layout.md").read_text()
    rows = re.findall(r"^\| `([^`]+)`", layout, flags=re.M)
    assert [row for row in rows if not (ROOT / row).exists()] == []
    modules = sorted(path for path in (ROOT / "pysrc" / "gilstudy").rglob("*.py")
                     if path.name not in ("__init__.py", "__main__.py"))
    assert [_name(path) for path in modules if f"`{path.name}`" not in layout
            and f"`{path.relative_to(path.parents[1]).as_posix()}`" not in layout
            and f"{path.relative_to(ROOT).as_posix()}`" not in layout] == []


@pytest.mark.one_pass
def test_every_module_opens_with_a_docstring():
    paths = sorted((ROOT / "pysrc" / "gilstudy").rglob("*.py"))
    assert len(paths) > 60
    assert [_name(path) for path in paths
            if not ast.get_docstring(ast.parse(path.read_text()))] == []
