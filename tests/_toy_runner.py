"""The toy runner of docs/guide/new-runner.md (a consumer behind two os.pipe()s, its far side
in a thread), loaded from the page itself: the code the page shows is the code the fault
table runs (tests/test_faults.py). The page's block that starts "# file: toy_runner.py"
defines PipeThread and pipe_thread here."""

import pathlib
import re

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "guide" / "new-runner.md"

_blocks = re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), re.S | re.M)
SOURCE, = (block for block in _blocks if block.startswith("# file: toy_runner.py\n"))
exec(compile(SOURCE, str(PAGE), "exec"), globals())
