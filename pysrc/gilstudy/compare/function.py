"""A user's own function as a compare workload: `[f(*args) for args in inputs]` in every model,
with an optional second implementation that releases the GIL (`--nogil`), which the models
registered as "-cython" run and the report names "-nogil". Functions and inputs are found
by MODULE:NAME, and a process model runs only a function that a new process can import.
"""

import importlib
import io
import os
import pickle
import sys
from pathlib import Path
from typing import Callable, Iterable

from gilstudy.compare.workload import Work, combine_indexed, digest, same_answer

__all__ = ["FunctionConsumer", "FunctionWorkload", "make_function_workload", "resolve",
           "NOGIL_LABEL", "is_numba_function", "compile_for"]

# How rows name the models that run the --nogil implementation ("threads-nogil").
NOGIL_LABEL = "nogil"

# What the impls of a model mean for a function workload: "python" runs the function,
# "cython" the GIL-releasing one. The models of another impl (numba-*) run gilstudy's own
# kernels only.
_ROLES = {"python": "function", "cython": "nogil"}


class FunctionConsumer:
    """Call ``function`` on each item: ``send((index, args))`` returns ``(index,
    function(*args))``. An item whose args are None is a probe (nothing is called): it
    measures what handing over one item costs. Pickles the function by reference, so a
    new process imports it by its module and name.

    A Numba function (an ``@njit`` dispatcher) compiles on its first call; given
    ``compile_args`` (a tuple of arguments like the items'), the consumer compiles it for
    their types when it is made or unpickled, so the compilation counts in a model's
    start-up, not in its first timed run. Nothing is called.
    """

    def __init__(self, function: Callable, compile_args: tuple | None = None):
        self.function = function
        self.compile_args = compile_args
        compile_for(function, compile_args)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        compile_for(self.function, self.compile_args)

    def send(self, item: tuple[int, tuple | None]) -> tuple[int, object]:
        index, args = item
        return index, None if args is None else self.function(*args)

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"FunctionConsumer({_name_of(self.function)})"


def is_numba_function(function: Callable) -> bool:
    """Whether ``function`` is a Numba dispatcher (what ``@numba.njit`` returns)."""
    return (type(function).__module__.split(".")[0] == "numba"
            and callable(getattr(function, "compile", None)) and hasattr(function, "py_func"))


def compile_for(function: Callable, args: tuple | None) -> None:
    """Compile Numba function ``function`` for the types of ``args`` (numba.typeof of
    each), unless it has that signature already; nothing for any other function, or for
    no ``args``. A function Numba cannot compile for them raises Numba's typing error,
    as its first call would."""
    if args is None or not is_numba_function(function):
        return
    import numba

    signature = tuple(numba.typeof(arg) for arg in args)
    if signature not in function.signatures:
        function.compile(signature)


def resolve(spec: str, option: str) -> object:
    """The object that ``spec``, "MODULE:NAME" (NAME may be dotted: "mod:Class.method"),
    names. The current directory is searched first, as ``python -m`` does.

    Raises ValueError naming ``option`` and what is wrong: no colon, a module that does not
    import (with the import's own message), or a name the module does not have.
    """
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise ValueError(f"{option}: must be MODULE:NAME, such as mymodule:myfunction, "
                         f"got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"{option}: cannot import module {module_name!r}: "
                         f"{type(exc).__name__}: {exc}") from None
    found = module
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"{option}: module {module_name!r} has no {name!r}") from None
    return found


def _name_of(function: Callable) -> str:
    module = getattr(function, "__module__", None) or "?"
    qualname = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}:{qualname}"


class _MainFinder(pickle.Pickler):
    """A pickler that notes every function or class from ``__main__`` it pickles: a new
    process does not import the caller's __main__, so it could not find them."""

    def __init__(self, file):
        super().__init__(file)
        self.from_main: list[str] = []

    def reducer_override(self, obj):
        if getattr(obj, "__module__", None) == "__main__" and hasattr(obj, "__qualname__"):
            self.from_main.append(obj.__qualname__)
        return NotImplemented


def _import_reason(function: Callable, option: str) -> str | None:
    """Why a new process could not get ``function`` by pickling it by reference, with the
    fix; None when it can."""
    finder = _MainFinder(io.BytesIO())
    try:
        finder.dump(function)
        error = None
    except Exception as exc:
        error = exc
    if finder.from_main:
        return (f"{option} {_name_of(function)} is defined in __main__, which a new process "
                "does not import; move it to a module of its own (for instance "
                f"myfunctions.py) and name it as myfunctions:{finder.from_main[0]}")
    if error is not None:
        return (f"{option} {_name_of(function)} cannot be sent to another process ("
                f"{type(error).__name__}: {error}); define it at the top level of a module "
                "and name it as MODULE:NAME")
    return None


def _module_root(module_name: str | None) -> str | None:
    """The sys.path entry that module ``module_name`` was imported from, or None."""
    module = sys.modules.get(module_name or "")
    path = getattr(module, "__file__", None)
    if module is None or path is None:
        return None
    depth = module.__name__.count(".") + (Path(path).name == "__init__.py")
    return str(Path(path).resolve().parents[depth])


def _check_inputs(inputs, option: str) -> list[tuple]:
    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__"):
        raise TypeError(f"{option}: must be an iterable of argument tuples, or a callable "
                        f"returning one, got {type(inputs).__name__} ({inputs!r:.80})")
    checked = []
    for position, args in enumerate(inputs):
        if not isinstance(args, tuple):
            raise TypeError(f"{option}: item {position} must be a tuple of arguments, such as "
                            f"(x,) for one argument, got {type(args).__name__} ({args!r:.80})")
        checked.append(args)
    if not checked:
        raise ValueError(f"{option}: give at least one tuple of arguments, got none")
    return checked


class FunctionWorkload(Work):
    """``function`` called on each tuple of ``inputs``, in order; its answer is the list of
    results. ``nogil`` is the same function implemented so that it releases the GIL (run
    by the models registered as "-cython", named "-nogil" in reports), or None.

    Build it with make_function_workload(), which checks the arguments.
    """

    def __init__(self, function: Callable, nogil: Callable | None, inputs: list[tuple],
                 names: dict[str, str | None], by_name: set[str], path: list[str],
                 prefix: str = ""):
        self.function = function
        self.nogil = nogil
        self.inputs = inputs
        self.items_count = len(inputs)
        self.names = names          # function, nogil, inputs: MODULE:NAME, or None
        self._by_name = by_name     # which of them were given as MODULE:NAME
        self._path = path           # where their modules were imported from
        self._prefix = prefix       # "--" when they came from the command line
        self.title = names["function"]
        self._items = list(enumerate(inputs))

    def __repr__(self) -> str:
        return f"FunctionWorkload({self.describe()})"

    def _implementation(self, impl: str) -> Callable | None:
        role = _ROLES.get(impl)
        return self.function if role == "function" else self.nogil if role == "nogil" else None

    def items(self) -> list[tuple[int, tuple]]:
        return list(self._items)

    def combine(self, results: Iterable[tuple[int, object]]) -> list:
        return combine_indexed(self.title, self.items_count, results)

    def consumer_factory(self, impl: str) -> tuple[Callable, tuple]:
        implementation = self._implementation(impl)
        assert implementation is not None, f"no {impl} implementation: see impl_reason()"
        return FunctionConsumer, (implementation, self.inputs[0])

    def probe_args(self):
        return None

    def impl_label(self, impl: str) -> str:
        role = _ROLES.get(impl)
        return "python" if role == "function" else NOGIL_LABEL if role == "nogil" else impl

    python_holds_gil = False

    def impl_words(self, impl: str) -> str:
        role = _ROLES.get(impl)
        if role == "function":
            return f"the function {self.names['function']}"
        if role == "nogil":
            return f"the nogil implementation {self.names['nogil']}"
        return f"gilstudy's {impl} kernel"

    def impl_reason(self, impl: str) -> str | None:
        if impl not in _ROLES:
            return (f"runs gilstudy's own {impl} kernels, not a function; give a {impl} "
                    f"function as {self._prefix}nogil to run it on the -nogil models")
        if self._implementation(impl) is None:
            return (f"no GIL-releasing implementation was given ({self._prefix}nogil)")
        return None

    def importable_reason(self, impl: str) -> str | None:
        implementation = self._implementation(impl)
        if implementation is None:
            return None
        return _import_reason(implementation, self._prefix + _ROLES[impl])

    def mismatch(self, answer, expected, reference: str) -> str | None:
        if same_answer(answer, expected):
            return None
        if not isinstance(answer, list) or len(answer) != len(expected):
            return (f"got {type(answer).__name__} {answer!r:.80}, {reference} got "
                    f"{len(expected)} results")
        index = next(i for i, (a, b) in enumerate(zip(answer, expected)) if not same_answer(a, b))
        return (f"result {index} (inputs[{index}] = {self.inputs[index]!r:.60}) is "
                f"{answer[index]!r:.80}, {reference}'s is {expected[index]!r:.80}")

    def summary(self, answer) -> object:
        return {"results": len(answer), "sha256": digest(answer)}

    def describe(self) -> str:
        nogil = f", nogil: {self.names['nogil']}" if self.names["nogil"] else ""
        return f"{self.title}(*args) over {self.items_count} inputs{nogil}"

    def to_dict(self, answer) -> dict:
        return {"kind": "function", "name": self.title, "function": self.names["function"],
                "nogil": self.names["nogil"], "inputs": self.names["inputs"],
                "items": self.items_count, "answer": self.summary(answer)}

    def spec(self) -> dict:
        """The names that rebuild this workload in another interpreter, with the
        directories their modules came from. ValueError when something was given as an
        object that has no importable name (inputs given as a list, a lambda)."""
        for role in ("function", "nogil", "inputs"):
            if (role != "nogil" or self.nogil is not None) and role not in self._by_name:
                raise ValueError(f"pythons: another interpreter finds the {role} by its name, "
                                 "so give it as 'MODULE:NAME', not as an object")
        return {"function": self.names["function"], "nogil": self.names["nogil"],
                "inputs": self.names["inputs"], "path": list(self._path)}


def _callable(value, option: str) -> tuple[Callable, str, bool]:
    """(the callable, its name, whether it was given as MODULE:NAME)."""
    if isinstance(value, str):
        found = resolve(value, option)
        if not callable(found):
            raise TypeError(f"{option}: {value} must be callable, got "
                            f"{type(found).__name__}")
        return found, value, True
    if not callable(value):
        raise TypeError(f"{option}: must be a callable or 'MODULE:NAME', got "
                        f"{type(value).__name__} ({value!r:.80})")
    return value, _name_of(value), False


def make_function_workload(function, inputs, nogil=None, prefix: str = "") -> FunctionWorkload:
    """A checked FunctionWorkload.

    ``function`` and ``nogil`` are callables or "MODULE:NAME" strings; ``inputs`` is an
    iterable of argument tuples, a callable returning one, or a "MODULE:NAME" naming either.
    It is read once, here, into a list.

    Raises ValueError for a name that does not resolve (a module that does not import, a
    missing attribute) or empty inputs; TypeError for something that is not callable or
    inputs that are not tuples, naming the item. Messages name the argument with
    ``prefix`` before it (the command line passes "--": "--inputs: item 3 must be ...").
    """
    function, function_name, function_by_name = _callable(function, prefix + "function")
    nogil_name, by_name = None, {"function"} if function_by_name else set()
    if nogil is not None:
        nogil, nogil_name, nogil_by_name = _callable(nogil, prefix + "nogil")
        by_name |= {"nogil"} if nogil_by_name else set()
    inputs_name = None
    if isinstance(inputs, str):
        inputs_name = inputs
        by_name.add("inputs")
        inputs = resolve(inputs, prefix + "inputs")
    if callable(inputs):
        inputs = inputs()
    checked = _check_inputs(inputs, prefix + "inputs")
    modules = [getattr(obj, "__module__", None) for obj in (function, nogil) if obj is not None]
    if inputs_name:
        modules.append(inputs_name.partition(":")[0])
    path = [root for root in dict.fromkeys(map(_module_root, modules)) if root]
    names = {"function": function_name, "nogil": nogil_name, "inputs": inputs_name}
    return FunctionWorkload(function, nogil, checked, names, by_name, path, prefix)
