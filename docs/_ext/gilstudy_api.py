"""The API reference, written from the code at build time.

``gilstudy-all`` is a directive that documents every name in ``gilstudy.__all__`` with the
autodoc directive its kind needs, so the page lists exactly what ``__all__`` lists today.
On ``builder-inited`` the extension also writes one page per public module (every module of
the installed package with no underscore in its dotted name, less the ``__main__`` ones) to
``api/modules/`` (git-ignored), which ``api/modules.md`` lists with a glob.
"""

import importlib
import inspect
import pkgutil
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

MODULE_PAGES = "api/modules"


def public_modules() -> list[str]:
    """The dotted names of gilstudy's public modules, sorted."""
    import gilstudy
    names = ["gilstudy"]
    for info in pkgutil.walk_packages(gilstudy.__path__, "gilstudy."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _directive_for(name: str, value: object) -> list[str]:
    """The Markdown that documents ``gilstudy.NAME``: a link for a module, else an autodoc
    directive (autodoc writes reStructuredText, so it runs inside an eval-rst fence)."""
    full = f"gilstudy.{name}"
    if inspect.ismodule(value):
        return [f"- {{doc}}`{value.__name__} <modules/{value.__name__}>`"]
    if inspect.isclass(value):
        directive = [f".. autoclass:: {full}", "   :members:", "   :show-inheritance:"]
    elif callable(value):
        directive = [f".. autofunction:: {full}"]
    else:
        # Plain data (``__version__``): its value, not the docstring of its type.
        directive = [f".. py:data:: {full}", f"   :value: {value!r}"]
    return ["```{eval-rst}", *directive, "```", ""]


class AllNames(SphinxDirective):
    """Document the names in ``gilstudy.__all__``, in its order: with the argument
    ``modules``, the submodules, as links to their pages; with ``names``, everything else
    (classes, functions, data), each with the autodoc directive of its kind."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        import gilstudy
        which = self.arguments[0]
        if which not in ("modules", "names"):
            raise self.error(f"gilstudy-all: the argument must be modules or names, got {which!r}")
        lines = []
        first_name = {}   # id of a value -> the first name in __all__ that holds it
        for name in gilstudy.__all__:
            value = getattr(gilstudy, name)
            if inspect.ismodule(value) != (which == "modules"):
                continue
            if id(value) in first_name and not inspect.ismodule(value):
                # A second name for the same object (an old name kept as an alias): a line
                # that points at the first, since autodoc would describe the object twice.
                lines += ["```{eval-rst}", f".. py:data:: gilstudy.{name}", "",
                          f"   Another name of :py:obj:`gilstudy.{first_name[id(value)]}`.",
                          "```", ""]
                continue
            first_name.setdefault(id(value), name)
            lines += _directive_for(name, value)
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]),
                                self.content_offset, container)
        return container.children


def write_module_pages(app) -> None:
    """Write one page per public module into api/modules/, only where its text changed."""
    folder = Path(app.srcdir) / MODULE_PAGES
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for name in public_modules():
        importlib.import_module(name)
        # Each page documents what its module defines; what a package re-exports is
        # documented where it is defined (and the names of gilstudy.__all__ on api/index).
        options = ("" if name == "gilstudy" else
                   "   :members:\n   :show-inheritance:\n   :ignore-module-all:\n")
        wanted[f"{name}.md"] = (f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n"
                                f"{options}```\n")
    for stale in folder.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()
    for filename, text in wanted.items():
        path = folder / filename
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def setup(app):
    app.add_directive("gilstudy-all", AllNames)
    app.connect("builder-inited", write_module_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
