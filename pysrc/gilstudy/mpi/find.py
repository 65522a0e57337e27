"""Where gilstudy finds MPI: mpi4py, which only processes inside an MPI job import, and the
mpiexec that starts ranks (the one the mpich wheel installed beside this Python, else one
on PATH). When either is missing, one line says which and names the extra that brings both.
"""

import importlib.util
import os
import shutil

from gilstudy.errors import MpiUnavailable

__all__ = ["INSTALL_HINT", "find_mpiexec", "load_mpi", "unavailable_reason"]

INSTALL_HINT = "pip install 'gilstudy[mpi]' (mpi4py and the mpich wheel)"


def find_mpiexec() -> str:
    """The mpiexec to launch ranks with: the mpich wheel's when it is installed (pip puts it
    in this environment's bin/, which need not be on PATH), else the first on PATH. Raises
    MpiUnavailable when there is none."""
    from importlib import metadata

    try:
        files = metadata.distribution("mpich").files or ()
    except metadata.PackageNotFoundError:
        files = ()
    for file in files:
        if file.name == "mpiexec" and file.parent.name == "bin":
            path = os.path.normpath(str(file.locate()))
            if os.access(path, os.X_OK):
                return path
    found = shutil.which("mpiexec")
    if found is None:
        raise MpiUnavailable(f"gilstudy.mpi found no mpiexec to start ranks with: "
                             f"{INSTALL_HINT}")
    return found


def unavailable_reason() -> str | None:
    """None when gilstudy.mpi can start ranks here, else why not, in one line. Imports
    nothing from MPI."""
    if importlib.util.find_spec("mpi4py") is None:
        return f"gilstudy.mpi needs mpi4py, which is not installed: {INSTALL_HINT}"
    try:
        find_mpiexec()
    except MpiUnavailable as exc:
        return str(exc)
    return None


def load_mpi():
    """mpi4py's MPI module (importing it initialises MPI in this process, with
    MPI_THREAD_MULTIPLE); MpiUnavailable when mpi4py or its MPI library is missing."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:
        raise MpiUnavailable(f"gilstudy.mpi cannot load mpi4py ({type(exc).__name__}: "
                             f"{exc}): {INSTALL_HINT}") from None
    return MPI
