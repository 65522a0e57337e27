# Benchmarks of every compare model x kernel x worker count, grouped by kernel and worker
# count so that `pytest bench/bench_compare.py --benchmark-group-by=group` prints one
# comparable table per group. Workers are started once per benchmark (outside the timing)
# and reused across rounds, as `gilstudy compare` does; every result is checked.
#
# Models that cannot run here are skipped with the reason. To require some models, name
# them (names or globs, as for --models): GILSTUDY_BENCH_MODELS='threads-*,prange-cython';
# an unavailable model named there fails with its reason instead.

import functools
import os

import pytest

from gilstudy import kernels
from gilstudy.compare import registry
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


@pytest.mark.parametrize("model, kernel, workers", list(_cases()))
def test_model(benchmark, model, kernel, workers):
    reason = model.unavailable_reason()
    if reason is not None:
        if _REQUESTED:
            pytest.fail(f"{model.name} was asked for but cannot run here: {reason}")
        pytest.skip(f"{model.name} unavailable: {reason}")
    workload = make_workload(kernel, *SIZES[kernel])
    benchmark.group = f"{kernel}-w{workers}"
    benchmark.extra_info.update(model=model.name, kernel=kernel, workers=workers,
                                size=workload.size, items=workload.items_count)
    handle = model.launch(workload, workers)
    try:
        answer = benchmark.pedantic(handle.run, args=(workload, PATIENCE_S), rounds=ROUNDS,
                                    iterations=1, warmup_rounds=1)
    finally:
        handle.close()
    assert same_answer(answer, expected_answer(kernel))
