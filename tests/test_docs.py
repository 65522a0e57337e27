"""`make docs`'s build: the site builds from this checkout with no warning (-W, nitpicky),
its API reference lists every name in gilstudy.__all__, and a broken link or reference
fails the build. One pass only: the site does not depend on the interpreter running pytest.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gilstudy

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# The command `make docs` runs, less its output folder; -E: a fresh environment, so that no
# page passes on what an earlier build remembered.
SPHINX = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-E", "-q", "-b", "html"]

pytestmark = [pytest.mark.one_pass, pytest.mark.timeout(900)]


def _build(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SPHINX, str(source), str(out)], capture_output=True, text=True,
                          timeout=850)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html")
    done = _build(DOCS, out)
    assert done.returncode == 0, f"the docs build failed or warned:\n{done.stderr}"
    assert done.stderr == ""
    return out


def test_the_site_builds_with_no_warning_and_has_every_page(site):
    pages = {path.relative_to(site).as_posix() for path in site.rglob("*.html")}
    for page in DOCS.rglob("*.md"):
        relative = page.relative_to(DOCS)
        if relative.parts[0] != "_build":
            assert relative.with_suffix(".html").as_posix() in pages
    assert "api/modules/gilstudy.compare.html" in pages


def test_the_api_reference_documents_every_name_in_all(site):
    text = (site / "api" / "index.html").read_text()
    documented = set(re.findall(r'id="gilstudy\.(\w+)"', text))
    linked = set(re.findall(r'href="modules/gilstudy\.(\w+)\.html"', text))
    assert [name for name in gilstudy.__all__ if name not in documented | linked] == []


@pytest.mark.parametrize("broken", [
    "[a page that is not there](nowhere.md)",
    "{py:func}`gilstudy.no_such_function`",
])
def test_a_broken_link_or_reference_fails_the_build(broken, tmp_path):
    source = tmp_path / "docs"
    source.mkdir()
    shutil.copy(DOCS / "conf.py", source)
    shutil.copytree(DOCS / "_ext", source / "_ext")
    (source / "index.md").write_text(f"# A page\n\nSee {broken}.\n\n```{{toctree}}\n:hidden:\n\n"
                                     "api/modules\n```\n")
    (source / "api").mkdir()
    (source / "api" / "modules.md").write_text("# Modules\n\n```{toctree}\n:glob:\n\nmodules/*\n```\n")
    done = _build(source, tmp_path / "html")
    assert done.returncode != 0
    assert "index.md" in done.stderr
