"""`gilstudy compare`: one workload (a kernel, or the user's own function) in every execution
model at several worker counts, the answers checked against each other, the speedups
reported; `gilstudy breakeven`: how much work an item needs before each model pays. Models
are entries of gilstudy.compare.registry; the built-in ones (gilstudy.compare.models, then
interp_models, numba_models and cluster_models) are imported here, so they are registered
whichever compare module is imported first, in the order reports list them.

    >>> from gilstudy import compare
    >>> result = compare.run("count_primes", size=200_000, workers=[1, 2], repeat=3)
    >>> print(result.table()); print(result.verdict())
"""

from gilstudy.compare import models, registry
from gilstudy.compare import interp_models, numba_models  # noqa: F401  (after models)
from gilstudy.compare import cluster_models  # noqa: F401  (last)
from gilstudy.compare.fit import ScalingFit, fit_amdahl, fit_usl
from gilstudy.compare.function import FunctionWorkload, make_function_workload
from gilstudy.compare.measure import Repeat, Timing
from gilstudy.compare.registry import Model, Workers, register, registered, unregister
from gilstudy.compare.plot import plot
from gilstudy.compare.projection import Ceiling, Projection
from gilstudy.compare.remote_session import probe
from gilstudy.compare.report import SCHEMA_VERSION, CompareResult, Interpreter, Row
from gilstudy.compare.runner import REFERENCE, default_workers, run
from gilstudy.compare.workload import Work, Workload, make_workload
from gilstudy.pythons import Python

__all__ = [
    "run",
    "CompareResult",
    "Row",
    "Projection",
    "Ceiling",
    "Repeat",
    "Timing",
    "Interpreter",
    "Python",
    "probe",
    "SCHEMA_VERSION",
    "REFERENCE",
    "default_workers",
    "plot",
    "registry",
    "models",
    "Model",
    "Workers",
    "register",
    "registered",
    "unregister",
    "Work",
    "Workload",
    "make_workload",
    "FunctionWorkload",
    "make_function_workload",
    "ScalingFit",
    "fit_amdahl",
    "fit_usl",
]
