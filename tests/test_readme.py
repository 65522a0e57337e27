# The README's Python examples run and their assertions hold.

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# Blocks that build a user's project are illustrations of a setup.py, not runnable here.
RUNNABLE = [block for block in BLOCKS if "setup(" not in block]


def test_readme_has_python_examples():
    assert len(RUNNABLE) >= 2


@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_readme_example_runs(index, tmp_path):
    done = subprocess.run([sys.executable, "-c", RUNNABLE[index]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"README example {index} failed:\n{RUNNABLE[index]}\n{done.stderr}"
