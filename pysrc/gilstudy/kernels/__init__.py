"""The CPU-bound kernels, each in two implementations with the same results: plain Python
(gilstudy.kernels.python, holds the GIL) and Cython (gilstudy.kernels.cython, releases
it). get(name, impl) picks one; NAMES and IMPLS list the choices. OPTIONAL_IMPLS are the
implementations that need a package of their own: Numba (gilstudy.kernels.numba, releases
the GIL too), with the gilstudy[numba] extra; impl_unavailable_reason() says why one
cannot load here.
"""

import importlib
import os
from typing import Callable

from gilstudy.errors import UnknownKernelError

__all__ = ["NAMES", "IMPLS", "OPTIONAL_IMPLS", "EXTRAS", "get", "impl_unavailable_reason",
           "build_info", "get_include"]

NAMES = ("countdown", "count_primes", "mandelbrot")
# Always there: every kernel in both.
IMPLS = ("python", "cython")
# There only when their package is installed: the package and the extra that brings it.
OPTIONAL_IMPLS = ("numba",)
EXTRAS = {"numba": ("numba", "gilstudy[numba]")}


def get(name: str, impl: str = "python") -> Callable:
    """Return kernel ``name`` in implementation ``impl`` ("python", "cython" or "numba").

    Raises UnknownKernelError (a LookupError) naming the valid choices, and ImportError
    for an implementation of OPTIONAL_IMPLS that cannot load here, saying why and which
    extra installs it.

    >>> get("count_primes", "cython")(0, 100)
    25
    """
    if name not in NAMES:
        raise UnknownKernelError(f"unknown kernel {name!r}; choose one of: {', '.join(NAMES)}")
    if impl not in IMPLS + OPTIONAL_IMPLS:
        raise UnknownKernelError(f"unknown kernel implementation {impl!r}; choose one of: "
                                 f"{', '.join(IMPLS + OPTIONAL_IMPLS)}")
    return getattr(_load(impl), name)


def _load(impl: str):
    """The module of implementation ``impl``; ImportError saying why an optional one cannot
    load, and how to install it."""
    module_name = f"gilstudy.kernels.{impl}"
    if impl not in OPTIONAL_IMPLS:
        return importlib.import_module(module_name)
    package, extra = EXTRAS[impl]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("gilstudy."):
            raise
        missing = "" if exc.name == package else f" ({exc.name}, which it needs, is missing)"
        raise ImportError(f"the {impl} kernels need {package}, which is not installed"
                          f"{missing}: pip install '{extra}'", name=exc.name) from exc
    except ImportError as exc:
        raise ImportError(f"the {impl} kernels need {package}, which cannot be imported "
                          f"here: {exc}", name=exc.name) from exc


def impl_unavailable_reason(impl: str) -> str | None:
    """None when implementation ``impl`` loads here, else why not, in one line (for an
    optional one: its package is missing or broken, and the extra that installs it).
    Loading it is tried, so the first call may take a moment."""
    if impl not in IMPLS + OPTIONAL_IMPLS:
        return f"unknown kernel implementation {impl!r}"
    try:
        _load(impl)
    except ImportError as exc:
        return str(exc)
    return None


def build_info() -> dict:
    """Facts of the compiled extension's build, for reports: Cython version, compiler and
    flags, whether OpenMP was compiled in (and its thread limit), and whether the module
    declares itself free-threading compatible."""
    from gilstudy.kernels import _ckernels

    info = dict(_ckernels.build_info())
    info["module"] = _ckernels.__file__
    return info


def get_include() -> str:
    """The directory to put on Cython's include path to ``cimport gilstudy.kernels._ckernels``.

    It holds ``gilstudy/kernels/_ckernels.pxd``: the installed package's parent directory,
    or the source tree's ``pyx/`` for an editable install.
    """
    installed_root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    if os.path.exists(os.path.join(installed_root, "gilstudy", "kernels", "_ckernels.pxd")):
        return installed_root
    source_root = os.path.join(os.path.dirname(installed_root), "pyx")
    if os.path.exists(os.path.join(source_root, "gilstudy", "kernels", "_ckernels.pxd")):
        return source_root
    raise FileNotFoundError(
        f"gilstudy/kernels/_ckernels.pxd is neither in {installed_root} nor in {source_root}; "
        "reinstall gilstudy with 'pip install .'")
