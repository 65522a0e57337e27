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


def test_readme_has_python_examples():
    assert len(RUNNABLE) >= 2


@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_readme_example_runs(index, tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run([sys.executable, "-c", RUNNABLE[index]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"README example {index} failed:\n{RUNNABLE[index]}\n{done.stderr}"
