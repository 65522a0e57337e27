# How subinterpreters (gilstudy.interpreters) do, in one run next to threads, coprocesses and
# the standard library's InterpreterPoolExecutor: their speedup at 2 workers over 1 on the
# default count_primes workload of gilstudy compare, round trips of tiny tasks through 2
# workers, and start-up until a first item is handled. Each benchmark checks what it computed
# (broken code is never timed) and puts its figures (speedup, items/s) in extra_info. The sizes
# of the round trips are bench_coprocess.py's. It needs Python 3.14+: `make bench` runs it
# under .venv-3.15/bin/python, or
#     .venv-3.15/bin/python -m pytest bench/bench_interpreters.py --benchmark-only \
#         --benchmark-group-by=group

import math
import sys

import pytest

import _bench_consumers as bc
from bench_coprocess import (ROUNDS, TIMEOUT, time_executor_map, time_round_trip)
from gilstudy.compare.workload import make_workload
from gilstudy.consumers import Collect, ConsumerThread
from gilstudy.dispatch import start_runners
from gilstudy.examples import Square
from gilstudy.interpreters import subinterpreter, unavailable_reason
from gilstudy.kernels import IMPLS
from gilstudy.kernels.work import KernelConsumer
from gilstudy.processes import spawn
from gilstudy.timing import Samples, time_call

if unavailable_reason() is not None:
    # Not a stand-in for a feature: make bench runs this file under 3.15 (make py315).
    pytest.skip(f"bench_interpreters.py: {unavailable_reason()}; make bench runs it under "
                ".venv-3.15/bin/python", allow_module_level=True)

WORKERS = 2

STARTERS = {
    "subinterpreters": lambda results: subinterpreter(Square, results=results),
    "threads": lambda results: ConsumerThread(Square(), results=results),
    "coprocesses": lambda results: spawn(Square, results=results),
}


# --- Scaling: the default count_primes workload at 1 and 2 workers --------------------------

# Repeats of the 1- and 2-worker runs, interleaved so outside load hits both alike; the
# median of each is the figure.
SCALING_REPEAT = 5
# A sample shorter than this measures noise: the workload is run this long at least, in
# whole passes, per sample (the compiled kernel does the default workload in ~25 ms).
MIN_SAMPLE_S = 0.25
# What gilstudy compare gives a thread: a bounded queue, so Dispatch keeps balancing.
QUEUE_DEPTH = 8

KERNEL_WORKERS = {
    "subinterpreters": lambda impl, results: subinterpreter(KernelConsumer, "count_primes",
                                                            impl, results=results),
    "threads": lambda impl, results: ConsumerThread(KernelConsumer("count_primes", impl),
                                                    maxsize=QUEUE_DEPTH, results=results),
    "coprocesses": lambda impl, results: spawn(KernelConsumer, "count_primes", impl,
                                               results=results),
}


def _passes(fan, results, workload, passes: int) -> int:
    """Run ``workload`` ``passes`` times through ``fan``; return its answer."""
    items = workload.items()
    for _ in range(passes):
        for item in items:
            fan.send(item)
        answer = workload.combine(results.take(len(items), timeout=TIMEOUT))
    return answer


@pytest.mark.benchmark(group="speedup at 2 workers over 1, default count_primes, Python 3.14+")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", list(KERNEL_WORKERS))
def test_speedup_at_two_workers_on_the_default_count_primes_workload(benchmark, kind, impl):
    # One benchmark round is one interleaved pair (1 worker, then 2); its time is not the
    # figure: extra_info's medians and speedup are.
    workload = make_workload("count_primes")
    expected = KernelConsumer("count_primes", "cython").send((0, workload.whole_args()))[1]
    fans, collected = {}, {}
    try:
        for workers in (1, 2):
            collected[workers] = Collect()
            fans[workers] = start_runners(
                lambda index, w=workers: KERNEL_WORKERS[kind](impl, collected[w]), workers)
            assert _passes(fans[workers], collected[workers], workload, 1) == expected
        once, _ = time_call(lambda: _passes(fans[1], collected[1], workload, 1))
        passes = max(1, math.ceil(MIN_SAMPLE_S / once))
        samples = {1: Samples(), 2: Samples()}

        def pair():
            for workers in (1, 2):
                seconds, answer = time_call(
                    lambda: _passes(fans[workers], collected[workers], workload, passes))
                assert answer == expected
                samples[workers].seconds.append(seconds / passes)

        benchmark.pedantic(pair, rounds=SCALING_REPEAT)
    finally:
        for fan in fans.values():
            fan.close()
    benchmark.extra_info["passes_per_sample"] = passes
    benchmark.extra_info["median_1_worker_s"] = round(samples[1].median, 4)
    benchmark.extra_info["median_2_workers_s"] = round(samples[2].median, 4)
    benchmark.extra_info["speedup_2_over_1"] = round(samples[1].median / samples[2].median, 2)


# --- Round trips: tiny tasks out, results back, through two workers --------------------------

@pytest.mark.benchmark(group="round trip of tiny tasks, 2 workers, Python 3.14+")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("kind", list(STARTERS))
def test_round_trip_through_dispatch(benchmark, kind):
    time_round_trip(benchmark, STARTERS[kind], WORKERS)


def _take_path(path: tuple) -> None:
    """InterpreterPoolExecutor's initializer: each worker interpreter takes this one's
    sys.path, to import the task by name. It uses no globals, so it is handed over as code."""
    import sys

    sys.path[:] = path


@pytest.mark.benchmark(group="round trip of tiny tasks, 2 workers, Python 3.14+")
@pytest.mark.timeout(TIMEOUT)
def test_round_trip_through_interpreter_pool_executor_map(benchmark):
    from concurrent.futures import InterpreterPoolExecutor

    # One task per item (its chunksize is ignored), a few thousand a second, as for
    # ProcessPoolExecutor.map: fewer items keep a round short; items/s is what compares.
    time_executor_map(benchmark, lambda: InterpreterPoolExecutor(
        WORKERS, initializer=_take_path, initargs=(tuple(sys.path),)))


# --- Start-up: from nothing to a first item handled ------------------------------------------

@pytest.mark.benchmark(group="start-up, Python 3.14+")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("kind", list(STARTERS))
def test_start_until_first_item_handled_then_close(benchmark, kind):
    def run():
        results = Collect()
        worker = STARTERS[kind](results)
        worker.send((0, 3))
        results.wait(1, timeout=TIMEOUT)
        worker.close()
        return results.items

    assert benchmark.pedantic(run, rounds=ROUNDS * 2) == [(0, 9)]
