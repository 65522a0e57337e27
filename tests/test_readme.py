# The README's Python examples run and their assertions hold.

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# Blocks that build a user's project are illustrations of a setup.py, not runnable here.
# A block whose first line is "# file: NAME" is a helper script: it is written to NAME in
# the examples' directory, where the other blocks run.
FILES = {block.split("\n", 1)[0][len("# file: "):].strip(): block
         for block in BLOCKS if block.startswith("# file: ")}
RUNNABLE = [block for block in BLOCKS if "setup(" not in block and not block.startswith("# file: ")]
# A block whose first line is this comment runs only where concurrent.interpreters exists: it
# is marked `subinterpreters` (make test runs it in its 3.15 pass; elsewhere it is deselected
# and counted). Every other test here is `one_pass`: it reads the README or runs an example
# whose answer does not depend on the interpreter.
NEEDS_INTERPRETERS = "# needs: concurrent.interpreters"


@pytest.mark.one_pass
def test_readme_has_python_examples():
    assert len(RUNNABLE) >= 2
    assert any(block.startswith(NEEDS_INTERPRETERS) for block in RUNNABLE)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", [
    pytest.param(index, marks=pytest.mark.subinterpreters)
    if block.startswith(NEEDS_INTERPRETERS) else pytest.param(index, marks=pytest.mark.one_pass)
    for index, block in enumerate(RUNNABLE)])
def test_readme_example_runs(index, tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run([sys.executable, "-c", RUNNABLE[index]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"README example {index} failed:\n{RUNNABLE[index]}\n{done.stderr}"


def _relative_links(text: str) -> list[str]:
    """The targets of the markdown links and images that name a file of this repository:
    no scheme (http:, mailto:), no bare #anchor; an #anchor after a path is dropped."""
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return sorted({target.split("#", 1)[0] for target in targets
                   if ":" not in target and not target.startswith("#")})


@pytest.mark.one_pass
def test_every_relative_link_in_the_readme_names_a_file_git_tracks():
    root = README.parent
    links = _relative_links(README.read_text())
    assert links, "the README links no file of the repository"
    tracked = set(subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                                 check=True).stdout.decode().split("\0"))
    assert [link for link in links if link.rstrip("/") not in tracked
            and not any(path.startswith(link.rstrip("/") + "/") for path in tracked)] == []


@pytest.mark.one_pass
def test_the_link_finder_sees_links_and_images_and_skips_addresses():
    text = ("[a](docs/a.md) ![b](docs/b.png) [c](https://example.org/x) [d](#usage) "
            "[e](docs/e.md#part)")
    assert _relative_links(text) == ["docs/a.md", "docs/b.png", "docs/e.md"]
