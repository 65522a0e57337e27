# Benchmarks of every compare model x kernel x worker count, grouped by kernel and worker
# count so that `pytest bench/bench_compare.py --benchmark-group-by=group` prints one
# comparable table per group, and of each model's dispatch cost per item (a pass over items
# that do no work, the figure `gilstudy compare` and `gilstudy breakeven` bound speedups
# with). Workers are started once per benchmark (outside the timing) and reused across
# rounds, as `gilstudy compare` does; every result is checked.
#
# Models that cannot run here are skipped with the reason. To require some models, name
# them (names or globs, as for --models): GILSTUDY_BENCH_MODELS='threads-*,prange-cython';
# an unavailable model named there fails with its reason instead.

import functools
import os

import pytest

from gilstudy import kernels
from gilstudy.compare import registry
from gilstudy.compare.measure import PROBE_ITEMS
from gilstudy.compare.workload import make_workload, same_answer

# (size, items) per kernel: small enough that this file runs in a few minutes on 2 cores
# (the pure-Python serial run of each takes about 50 ms), big enough that 32 items still
# take far longer than handing them to a worker.
SIZES = {"count_primes": (60_000, 32), "countdown": (2_000_000, 32), "mandelbrot": (96, 32)}
WORKERS = [1, 2]
ROUNDS = 5
PATIENCE_S = 120.0  # only reached if a worker hangs

_REQUESTED = os.environ.get("GILSTUDY_BENCH_MODELS")
MODELS = registry.select(_REQUESTED) if _REQUESTED else registry.all_models()


@functools.cache
def expected_answer(kernel: str):
    workload = make_workload(kernel, *SIZES[kernel])
    return kernels.get(kernel, "cython")(*workload.whole_args())


def _cases():
    for kernel in SIZES:
        for model in MODELS:
            for workers in model.worker_counts(WORKERS):
                yield pytest.param(model, kernel, workers, id=f"{kernel}-w{workers}-{model.name}")


def _available_or_skip(model, workload) -> None:
    reason = model.unavailable_reason(workload)
    if reason is not None:
        if _REQUESTED:
            pytest.fail(f"{model.name} was asked for but cannot run here: {reason}")
        pytest.skip(f"{model.name} unavailable: {reason}")


def _timed_passes(benchmark, model, workload, workers: int, work):
    """Start ``workers`` workers of ``model`` for ``workload`` (untimed), benchmark passes
    over ``work`` on them, stop them; return the last pass's answer."""
    handle = model.launch(workload, workers)
    try:
        return benchmark.pedantic(handle.run, args=(work, PATIENCE_S), rounds=ROUNDS,
                                  iterations=1, warmup_rounds=1)
    finally:
        handle.close()


@pytest.mark.parametrize("model, kernel, workers", list(_cases()))
def test_model(benchmark, model, kernel, workers):
    workload = make_workload(kernel, *SIZES[kernel])
    _available_or_skip(model, workload)
    benchmark.group = f"{kernel}-w{workers}"
    benchmark.extra_info.update(model=model.name, kernel=kernel, workers=workers,
                                size=workload.size, items=workload.items_count)
    answer = _timed_passes(benchmark, model, workload, workers, workload)
    assert same_answer(answer, expected_answer(kernel))


@pytest.mark.parametrize("model, workers", [
    pytest.param(model, workers, id=f"dispatch-w{workers}-{model.name}")
    for model in MODELS if model.dispatches_items for workers in model.worker_counts(WORKERS)])
def test_dispatch_cost(benchmark, model, workers):
    workload = make_workload("countdown", *SIZES["countdown"])
    _available_or_skip(model, workload)
    benchmark.group = f"dispatch-w{workers}"
    count = _timed_passes(benchmark, model, workload, workers, workload.probe(PROBE_ITEMS))
    assert count == PROBE_ITEMS
    benchmark.extra_info.update(model=model.name, workers=workers, items=PROBE_ITEMS,
                                us_per_item=1e6 * benchmark.stats.stats.min / PROBE_ITEMS)
