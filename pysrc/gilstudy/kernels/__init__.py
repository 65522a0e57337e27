"""The CPU-bound kernels, each in two implementations with the same results: plain Python
(gilstudy.kernels.python, holds the GIL) and Cython (gilstudy.kernels.cython, releases
it). get(name, impl) picks one; NAMES and IMPLS list the choices.
"""

import importlib
import os
from typing import Callable

from gilstudy.errors import UnknownKernelError

__all__ = ["NAMES", "IMPLS", "get", "build_info", "get_include"]

NAMES = ("countdown", "count_primes", "mandelbrot")
IMPLS = ("python", "cython")


def get(name: str, impl: str = "python") -> Callable:
    """Return kernel ``name`` in implementation ``impl`` ("python" or "cython").

    Raises UnknownKernelError (a LookupError) naming the valid choices.

    >>> get("count_primes", "cython")(0, 100)
    25
    """
    if name not in NAMES:
        raise UnknownKernelError(f"unknown kernel {name!r}; choose one of: {', '.join(NAMES)}")
    if impl not in IMPLS:
        raise UnknownKernelError(f"unknown kernel implementation {impl!r}; choose one of: {', '.join(IMPLS)}")
    module = importlib.import_module(f"gilstudy.kernels.{impl}")
    return getattr(module, name)


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
