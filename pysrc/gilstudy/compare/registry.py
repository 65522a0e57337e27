"""The registry of the models `gilstudy compare` times: a Model entry says what a model needs
and how to start N workers; its Workers handle runs a workload and stops them. The runner,
report and CLI only go through entries, so a new model is one register() call. The built-in
models register in models.py, which importing any gilstudy.compare module imports first.
"""

import fnmatch
import importlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol

from gilstudy import _checks
from gilstudy.compare.workload import Work
from gilstudy.kernels import IMPLS, OPTIONAL_IMPLS, build_info

__all__ = ["Workers", "Model", "register", "unregister", "registered", "get", "names",
           "all_models", "quick_models", "select", "ALL", "FAMILIES", "needs_module",
           "needs_openmp", "needs_process_pools", "needs_new_process", "needs_parallel_call"]


# The --models word for every registered model (no model may take this name).
ALL = "all"

# What a model's ``family`` may be: how plots colour it and group it in panels.
FAMILIES = ("serial", "threads", "coprocesses", "prange", "pools", "interpreters", "cluster",
            "other")


class Workers(Protocol):
    """Started workers of one model, ready for work.

    ``run(workload, patience_s)`` does the whole workload on them and returns its combined
    answer; it may be called many times. A model whose workers wait for results may give
    up after ``patience_s`` seconds without progress (the runner derives it from the serial
    reference run) and raise. ``close()`` stops the workers and waits for them; it is
    idempotent and raises the workers' own error if one failed.
    """

    def run(self, workload: Work, patience_s: float) -> object: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Model:
    """One execution model: a registry entry.

    ``start(workload, impl, workers)`` starts ``workers`` workers and returns a ready
    Workers handle (the runner times it as the start-up). ``impl`` is the implementation
    the model runs, "python" or "cython" (for a user's function, "cython" means its
    GIL-releasing twin), or one of kernels.OPTIONAL_IMPLS ("numba": gilstudy's Numba
    kernels, which a model must check can load, in ``requires``). ``requires`` are checks that each return None when the model can
    run here, or the reason it cannot; ``requires_work`` the same for a given workload and
    impl (a process model needs work that a new process can import). ``max_workers`` caps
    the worker counts (1 for the serial baselines, which run at one worker whatever is
    asked). ``reusable=False`` makes the runner start and stop the workers around every
    repeat: for workers that cannot be reused, or whose idle workers use CPU and would
    disturb the models timed beside them. ``shares_gil`` says the workers are threads of this interpreter, so pure
    Python on them contends for its GIL; the verdict reports on those models.
    ``dispatches_items=False`` says the model hands no items to workers (prange splits one
    call's loop), so it has no per-item dispatch cost to measure.

    ``family`` groups the model with its kind in plots and reports (one of FAMILIES:
    "threads", "coprocesses", "pools" for process pools and their peers, "cluster" for MPI
    and Dask ...). ``quick`` puts it in the default set that `gilstudy compare` and
    `gilstudy breakeven` run without ``--models`` (quick_models()): models that start in
    well under a second and answer the common question; the others run with
    ``--models all`` or when named.
    """

    name: str
    impl: str
    summary: str
    start: Callable[[Work, str, int], Workers]
    requires: tuple[Callable[[], str | None], ...] = ()
    max_workers: int | None = None
    reusable: bool = True
    shares_gil: bool = False
    requires_work: tuple[Callable[[Work, str], str | None], ...] = ()
    dispatches_items: bool = True
    family: str = "other"
    quick: bool = False

    def __post_init__(self):
        if self.name == ALL:
            raise ValueError(f"model name {ALL!r} is reserved: --models {ALL} means every model")
        if self.family not in FAMILIES:
            raise ValueError(f"model {self.name!r}: family must be one of "
                             f"{', '.join(FAMILIES)}, got {self.family!r}")
        if self.impl not in IMPLS + OPTIONAL_IMPLS:
            raise ValueError(f"model {self.name!r}: impl must be one of "
                             f"{', '.join(IMPLS + OPTIONAL_IMPLS)}, got {self.impl!r}")
        if self.max_workers is not None:
            _checks.positive_int(f"model {self.name!r}", "max_workers", self.max_workers)

    def unavailable_reason(self, workload: Work | None = None) -> str | None:
        """None when the model can run here (and run ``workload``, when given), else why
        not. Never raises: a check that fails is reported as the reason."""
        checks = list(self.requires)
        if workload is not None:
            checks.append(lambda: workload.impl_reason(self.impl))
            checks += [lambda check=check: check(workload, self.impl)
                       for check in self.requires_work]
        for check in checks:
            try:
                reason = check()
            except Exception as exc:
                reason = f"availability check failed: {type(exc).__name__}: {exc}"
            if reason:
                return reason
        return None

    def label_for(self, workload: Work) -> str:
        """The model's name in reports on ``workload``: its registry name, with the impl
        at its end named as the workload names it ("threads-cython" runs a user's nogil
        function as "threads-nogil")."""
        label = workload.impl_label(self.impl)
        suffix = f"-{self.impl}"
        if label == self.impl or not self.name.endswith(suffix):
            return self.name
        return self.name[:-len(suffix)] + f"-{label}"

    @property
    def is_available(self) -> bool:
        return self.unavailable_reason() is None

    def worker_counts(self, requested: Iterable[int]) -> list[int]:
        """The requested worker counts this model runs at; a capped model that fits none
        of them runs at its cap (the serial baselines always run, at 1 worker)."""
        requested = sorted(set(requested))
        if self.max_workers is None:
            return requested
        return [n for n in requested if n <= self.max_workers] or [self.max_workers]

    def launch(self, workload: Work, workers: int) -> Workers:
        """Start ``workers`` workers of this model for ``workload``."""
        return self.start(workload, self.impl, workers)


# ---- the registry ------------------------------------------------------------------

_REGISTRY: dict[str, Model] = {}


def register(model: Model, replace: bool = False) -> Model:
    """Add ``model`` to the registry (after the models already there); return it.

    Raises ValueError if a model of that name is registered, unless ``replace``.
    """
    if model.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {model.name!r} is already registered")
    _REGISTRY[model.name] = model
    return model


def unregister(name: str) -> Model:
    """Remove and return model ``name``; LookupError if there is none."""
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise LookupError(f"no model named {name!r} is registered") from None


@contextmanager
def registered(model: Model) -> Iterator[Model]:
    """Register ``model`` for the duration of a ``with`` block (tests, notebooks)."""
    register(model)
    try:
        yield model
    finally:
        unregister(model.name)


def get(name: str) -> Model:
    """Model ``name``; ValueError naming the registered models if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; models: {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    """The names of the registered models, in the order reports list them."""
    return list(_REGISTRY)


def all_models() -> list[Model]:
    """The registered models, in the order reports list them."""
    return list(_REGISTRY.values())


def quick_models() -> list[Model]:
    """The default set (Model.quick), in registry order."""
    return [m for m in _REGISTRY.values() if m.quick]


def select(spec: str | Iterable[str] | None = None) -> list[Model]:
    """The models a ``--models`` value names, in registry order.

    ``spec`` is a comma-separated string or a list of names and glob patterns
    (``'*-cython'``, ``'threads-*'``); ``"all"`` (ALL) means every model, None the quick
    default set (quick_models()). Raises ValueError for a name that is not registered or
    a pattern that matches none, listing the models.
    """
    if spec is None:
        return quick_models()
    tokens = spec.split(",") if isinstance(spec, str) else list(spec)
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        raise ValueError(f"no model named; models: {', '.join(_REGISTRY)}")
    chosen: set[str] = set()
    for token in tokens:
        if token == ALL:
            chosen.update(_REGISTRY)
        elif any(c in token for c in "*?["):
            matches = fnmatch.filter(_REGISTRY, token)
            if not matches:
                raise ValueError(f"model pattern {token!r} matches no model; models: "
                                 f"{', '.join(_REGISTRY)}")
            chosen.update(matches)
        else:
            chosen.add(get(token).name)
    return [m for m in _REGISTRY.values() if m.name in chosen]


# ---- availability checks -----------------------------------------------------------

def needs_module(module: str, hint: str = "") -> Callable[[], str | None]:
    """A check: ``module`` can be imported."""

    def check() -> str | None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                return f"{module} not installed" + (f" ({hint})" if hint else "")
            return f"{module} cannot be imported: {exc}"
        except ImportError as exc:
            return f"{module} cannot be imported: {exc}"
        return None

    check.__qualname__ = f"needs_module({module!r})"
    return check


def needs_openmp() -> str | None:
    """A check: the Cython kernels were compiled with OpenMP, so prange runs in parallel."""
    if not build_info()["openmp"]:
        return ("gilstudy's Cython kernels were built without OpenMP, so prange would run "
                "on one thread; rebuild with a compiler that supports -fopenmp")
    return None


def needs_process_pools() -> str | None:
    """A check: this platform has the semaphores process pools are built on."""
    try:
        importlib.import_module("multiprocessing.synchronize")
    except ImportError as exc:
        return f"process pools do not work on this platform (multiprocessing: {exc})"
    return None


def needs_new_process(workload: Work, impl: str) -> str | None:
    """A workload check: a worker in a new process can rebuild the workload's consumer
    (a user's function must be importable by its module and name)."""
    return workload.importable_reason(impl)


def needs_parallel_call(workload: Work, impl: str) -> str | None:
    """A workload check: the workload has one call that splits its work over threads (a
    built-in kernel's prange twin)."""
    if workload.parallel_call(impl) is None:
        return ("needs one call that splits the whole work over threads: only the built-in "
                "kernels' prange twins have one")
    return None
