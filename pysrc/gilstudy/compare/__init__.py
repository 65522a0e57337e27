"""`gilstudy compare`: one workload (a kernel, or the user's own function) in every execution
model at several worker counts, the answers checked against each other, the speedups
reported; `gilstudy breakeven`: how much work an item needs before each model pays. Models
are entries of gilstudy.compare.registry; the built-in ones (gilstudy.compare.models, then
interp_models, numba_models and cluster_models) are imported here, so they are registered
whichever compare module is imported first, in the order reports list them.

    >>> from gilstudy import compare
    >>> result = compare.run("count_primes", size=200_000, workers=[1, 2], repeat=3)
    >>> result.answer.model, result.answer.workers
    >>> print(compare.report.report(result))

The result is data (compare.result); its answer is chosen from that data (compare.answer);
the text (compare.report), the JSON (compare.document) and the figure (compare.plot) are
functions over it.
"""

from gilstudy.compare import document, models, registry, report
from gilstudy.compare import interp_models, numba_models  # noqa: F401  (after models)
from gilstudy.compare import cluster_models  # noqa: F401  (last)
from gilstudy.compare.fit import ScalingFit, fit_amdahl, fit_usl
from gilstudy.compare.function import FunctionWorkload, make_function_workload
from gilstudy.compare.answer import Answer, Standing
from gilstudy.compare.document import SCHEMA_VERSION, to_json
from gilstudy.compare.facts import Interpreter, ModelInfo, Row
from gilstudy.compare.measure import Repeat, Timing
from gilstudy.compare.registry import (Model, Workers, quick_models, register, registered,
                                       unregister)
from gilstudy.compare.plot import plot
from gilstudy.compare.projection import Ceiling, Projection, ceilings, projections
from gilstudy.compare.remote_session import probe
from gilstudy.compare.result import CompareResult
from gilstudy.compare.runner import REFERENCE, default_workers, run, scaling_workers
from gilstudy.compare.workload import Work, Workload, make_workload
from gilstudy.pythons import Python

__all__ = [
    "run",
    "CompareResult",
    "Answer",
    "Standing",
    "ModelInfo",
    "Row",
    "report",
    "document",
    "to_json",
    "ceilings",
    "projections",
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
    "scaling_workers",
    "quick_models",
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
