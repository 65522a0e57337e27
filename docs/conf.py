"""Sphinx configuration of the gilstudy documentation (``make docs``).

The pages are MyST Markdown; the API reference is autodoc over the installed package,
written from ``gilstudy.__all__`` and the list of public modules at build time by the
``gilstudy_api`` extension in ``_ext/``, so it follows the code without a hand-kept list.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import gilstudy  # noqa: E402  (the installed package: its compiled kernels are there)

project = "gilstudy"
author = "the gilstudy authors"
copyright = "the gilstudy authors"
release = version = gilstudy.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "gilstudy_api",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: heading anchors so that a page can link to a section of another (page.md#anchor),
# and a link to a missing page or anchor is a warning, which -W makes an error.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# Every broken cross-reference to a gilstudy name fails the build (-W -n). References to
# the standard library's and numpy's names cannot be resolved here (the build reads nothing
# from the network), so only those are let through.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!gilstudy\b).*"),
                        # private bases (show-inheritance names them), documented nowhere
                        (r"py:.*", r"gilstudy(\.\w+)*\._\w+.*")]
# An unqualified name that both gilstudy.NAME and its defining module document (the API
# page shows each public name at both places) is ambiguous only in appearance.
suppress_warnings = ["ref.python"]

autodoc_default_options = {}  # each directive says what it shows
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# mpi4py initialises MPI when imported; the modules that run inside an MPI job import it.
autodoc_mock_imports = ["mpi4py"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# A code block that names no language (command output, tables) is shown as it is.
highlight_language = "none"

html_theme = "furo"
html_title = "gilstudy"
html_static_path = ["_static"]
html_css_files = ["gilstudy.css"]
