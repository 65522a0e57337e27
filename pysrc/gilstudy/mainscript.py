"""The caller's main script in the workers it starts: what a process-based worker needs to
know to find the functions and classes defined in ``__main__``, and, in the worker, loading
that script under another name so that its ``if __name__ == "__main__":`` block does not run
again (what multiprocessing's spawn start method does).

Near side: :func:`describe` says how this process's ``__main__`` can be loaded again (a
script's path, or a module's name for ``python -m``), or why it cannot (an interactive
session, ``python -c``, a script read from standard input); :func:`check` refuses, with
that reason and what to do, an object from ``__main__`` that a worker could not find.

Far side: :func:`install` puts a stand-in for ``__main__`` in ``sys.modules`` that loads the
caller's main script, under the name ``__mp_main__``, the first time something is looked up
in it: a worker that never unpickles anything from ``__main__`` never runs the script. Once
loaded, ``sys.modules["__main__"]`` and ``sys.modules["__mp_main__"]`` are the same module,
so objects pickled as ``__main__.Name`` are found, and so are the classes the script
defines (whose ``__module__`` is ``__mp_main__``) when their instances come back.
"""

import os
import sys
import threading
import types
from typing import Any

__all__ = ["MAIN_NAME", "describe", "unavailable_reason", "check", "install", "LazyMain"]

# The name the main script runs under in a worker, as in multiprocessing: not "__main__",
# so the script's guarded block does not run.
MAIN_NAME = "__mp_main__"

# Where the main script is a module of a package run with ``python -m``, this is the
# description's kind; a script file's kind is "path"; one that cannot be loaded, "none".
_MODULE, _PATH, _NONE = "module", "path", "none"


def unavailable_reason(main: types.ModuleType | None = None) -> str | None:
    """Why ``main`` (default: this process's ``__main__``) cannot be loaded again in another
    process, as a phrase ("it is an interactive session"); None when it can."""
    if main is None:
        main = sys.modules.get("__main__")
    if main is None:
        return "this process has no __main__ module"
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) not in (None, "__main__"):
        return None  # python -m package.module: loaded again by its name
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and path and not path.startswith("<"):
        if os.path.exists(path):
            return None
        return f"its file {path!r} does not exist any more"
    argv0 = sys.argv[0] if sys.argv else ""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return "it is an interactive session"
    if argv0 == "-c":
        return "it is a program given with python -c"
    if argv0 in ("-", ""):
        return "it was read from standard input or is an interactive session"
    return "it has no file to load"


def describe() -> tuple:
    """How a worker can load this process's ``__main__`` again: ``("module", name)``,
    ``("path", absolute path)`` or ``("none", reason)``. A tuple of strings, so it pickles
    into any worker's setup.

    It also makes ``sys.modules["__mp_main__"]`` this process's ``__main__``, so that
    instances of the script's classes sent back by a worker (where the class's module is
    ``__mp_main__``) unpickle here."""
    main = sys.modules.get("__main__")
    reason = unavailable_reason(main)
    if reason is not None:
        return (_NONE, reason)
    sys.modules.setdefault(MAIN_NAME, main)
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) not in (None, "__main__"):
        return (_MODULE, spec.name)
    return (_PATH, os.path.realpath(main.__file__))


def check(owner: str, what: str, obj: Any, worker: str) -> None:
    """Raise ValueError when ``obj`` (``what``: "factory", "function") is defined in
    ``__main__`` and this process's ``__main__`` cannot be loaded again in ``worker``,
    saying why and what to do. An object from a script file, or from a module run with
    ``python -m``, passes: the worker loads the script under ``__mp_main__``."""
    if getattr(obj, "__module__", None) != "__main__":
        return
    reason = unavailable_reason()
    if reason is None:
        return
    name = getattr(obj, "__qualname__", None) or repr(obj)
    raise ValueError(
        f"{owner}: {what} {name!r} is defined in __main__, which {worker} cannot import: "
        f"this program's main script cannot be loaded again because {reason}; define "
        f"{name} in a module (a .py file beside your script) and import it from there, or "
        f"run your program as a script file")


class LazyMain(types.ModuleType):
    """The stand-in for ``__main__`` in a worker: the caller's main script, loaded under
    ``__mp_main__`` the first time a name that is not a dunder is looked up and missing.

    A script that raises while loading raises here, at that lookup (inside the unpickling
    of whatever needed it), each time; one that cannot be loaded (``("none", reason)``)
    raises AttributeError saying why."""

    def __init__(self, description: tuple):
        super().__init__(MAIN_NAME)
        # Set through the instance dict, not as attributes a lookup could trigger.
        self.__dict__["_gilstudy_main"] = tuple(description)
        self.__dict__["_gilstudy_lock"] = threading.RLock()
        self.__dict__["_gilstudy_state"] = "new"
        if description[0] == _PATH:
            # So that a worker's own workers are told the same script (describe()).
            self.__dict__["__file__"] = description[1]

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        state = self.__dict__
        with state["_gilstudy_lock"]:
            if state["_gilstudy_state"] == "new":
                state["_gilstudy_state"] = "loading"
                try:
                    self._load()
                except BaseException:
                    state["_gilstudy_state"] = "new"
                    raise
                state["_gilstudy_state"] = "loaded"
        try:
            return state[name]
        except KeyError:
            raise AttributeError(self._missing(name)) from None

    def _missing(self, name: str) -> str:
        kind, value = self.__dict__["_gilstudy_main"]
        if kind == _NONE:
            return (f"{name!r} is defined in the caller's __main__, which this worker cannot "
                    f"load because {value}; define it in a module and import it from there")
        if self.__dict__["_gilstudy_state"] == "loading":
            return (f"{name!r} was looked up in the caller's main script {value!r} while it "
                    f"was still loading")
        return f"the caller's main script {value!r} defines no {name!r}"

    def _load(self) -> None:
        import runpy

        kind, value = self.__dict__["_gilstudy_main"]
        if kind == _MODULE:
            found = runpy.run_module(value, run_name=MAIN_NAME, alter_sys=True)
        elif kind == _PATH:
            found = runpy.run_path(value, run_name=MAIN_NAME)
        else:
            return
        found.pop("__name__", None)
        self.__dict__.update(found)


def install(description: tuple | None) -> None:
    """In a worker, before anything of the caller's is unpickled: make ``__main__`` (and
    ``__mp_main__``) a LazyMain for the caller's main script as ``description`` (from
    describe()) says. Nothing is done when ``description`` is None (an older caller) or
    when this process's ``__main__`` already is that script (the ranks of an MPI job run
    the caller's own program)."""
    if description is None:
        return
    kind, value = description
    current = sys.modules.get("__main__")
    if kind == _PATH and current is not None:
        path = getattr(current, "__file__", None)
        if isinstance(path, str) and os.path.exists(path) and os.path.realpath(path) == value:
            return
    if kind == _MODULE and current is not None:
        spec = getattr(current, "__spec__", None)
        if spec is not None and getattr(spec, "name", None) == value:
            return
    stand_in = LazyMain(description)
    sys.modules["__main__"] = stand_in
    sys.modules[MAIN_NAME] = stand_in
