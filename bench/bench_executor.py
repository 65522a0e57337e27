# gilstudy.Executor next to the executors people already use, in one run: map() of 100,000
# tiny calls, a lone submit().result(), and the default count_primes items of `gilstudy
# compare` against the coprocess model's own way of sending them. Every executor is started
# and warmed up before timing (ProcessPoolExecutor, loky and MPIPoolExecutor start their
# workers lazily) and used with its defaults, as a user would (ProcessPoolExecutor.map's
# chunksize is 1). The others are included where they can run: loky where joblib is
# installed, MPIPoolExecutor where mpi4py and an mpiexec are, InterpreterPoolExecutor and the
# subinterpreter kind on Python 3.14+. items/s is in extra_info.
#
# Run: .venv/bin/python -m pytest bench/bench_executor.py --benchmark-only
#          --benchmark-group-by=group --benchmark-columns=min,median,max,rounds
# (GILSTUDY_BENCH_MAP_ITEMS=N changes the 100,000 calls of the map benchmarks.)

import concurrent.futures
import importlib.util
import os
import sys

import pytest

from gilstudy import Collect, Executor, coprocesses, kernels
from gilstudy.compare.workload import make_workload
from gilstudy.kernels.work import KernelConsumer

# Only reached when something deadlocks.
TIMEOUT = 600
WORKERS = 2
MAP_ITEMS = int(os.environ.get("GILSTUDY_BENCH_MAP_ITEMS", "100000"))
# Executors that run tiny calls one task each (chunksize 1) do 2,000-10,000 calls a second:
# one round of them is already tens of seconds.
SLOW = {"ProcessPoolExecutor", "MPIPoolExecutor", "InterpreterPoolExecutor"}


def _mpi_pool(workers):
    from mpi4py.futures import MPIPoolExecutor

    from gilstudy.mpi import find_mpiexec

    # MPIPoolExecutor spawns its workers through MPI: a singleton needs mpiexec on PATH.
    os.environ["PATH"] = os.path.dirname(find_mpiexec()) + os.pathsep + os.environ["PATH"]
    return MPIPoolExecutor(max_workers=workers)


def _loky(workers):
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(max_workers=workers)


def _mpi_usable() -> bool:
    if importlib.util.find_spec("mpi4py") is None:
        return False
    from gilstudy import mpi

    return mpi.unavailable_reason() is None


EXECUTORS = {
    "gilstudy-coprocess": lambda n: Executor("coprocess", max_workers=n),
    "gilstudy-thread": lambda n: Executor("thread", max_workers=n),
    "ProcessPoolExecutor": lambda n: concurrent.futures.ProcessPoolExecutor(max_workers=n),
}
if importlib.util.find_spec("joblib") is not None:
    EXECUTORS["loky"] = _loky
if _mpi_usable():
    EXECUTORS["gilstudy-mpi"] = lambda n: Executor("mpi", max_workers=n)
    EXECUTORS["MPIPoolExecutor"] = _mpi_pool
if sys.version_info >= (3, 14):
    EXECUTORS["gilstudy-subinterpreter"] = lambda n: Executor("subinterpreter", max_workers=n)
    EXECUTORS["InterpreterPoolExecutor"] = (
        lambda n: concurrent.futures.InterpreterPoolExecutor(max_workers=n))


@pytest.fixture(params=list(EXECUTORS))
def executor(request):
    """A started, warmed-up executor of each kind (its workers each ran a call)."""
    pool = EXECUTORS[request.param](WORKERS)
    try:
        assert list(pool.map(abs, range(-4 * WORKERS, 0))) == list(range(4 * WORKERS, 0, -1))
        pool.name = request.param
        yield pool
    finally:
        pool.shutdown(wait=True)


def report(benchmark, calls: int) -> None:
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["calls"] = calls
    benchmark.extra_info["calls_per_s"] = round(calls / seconds)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.benchmark(group="executor-map-100k-tiny-calls")
def test_map_of_tiny_calls(benchmark, executor):
    arguments = range(-MAP_ITEMS, 0)
    expected = MAP_ITEMS * (MAP_ITEMS + 1) // 2

    def run():
        return sum(executor.map(abs, arguments))

    rounds = 1 if executor.name in SLOW else 3
    assert benchmark.pedantic(run, rounds=rounds, iterations=1) == expected
    report(benchmark, MAP_ITEMS)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.benchmark(group="executor-lone-submit-result")
def test_a_lone_submit_result(benchmark, executor):
    assert benchmark(lambda: executor.submit(abs, -7).result(TIMEOUT)) == 7
    report(benchmark, 1)


# --- the default count_primes items of `gilstudy compare` -------------------------------------

ITEMS = [args for _, args in make_workload("count_primes").items()]
PRIMES_BELOW_500_000 = 41538


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("impl", ["python", "cython"])
@pytest.mark.benchmark(group="executor-count-primes")
def test_count_primes_through_the_executor(benchmark, impl):
    kernel = kernels.get("count_primes", impl)
    lows, highs = zip(*ITEMS)
    with Executor("coprocess", max_workers=WORKERS) as pool:
        list(pool.map(abs, range(4 * WORKERS)))
        assert benchmark(lambda: sum(pool.map(kernel, lows, highs))) == PRIMES_BELOW_500_000
    report(benchmark, len(ITEMS))


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("impl", ["python", "cython"])
@pytest.mark.benchmark(group="executor-count-primes")
def test_count_primes_through_the_coprocess_model(benchmark, impl):
    """What compare's coprocess-* model does: KernelConsumers on coprocesses, the items
    sent through their Dispatch, the results collected."""
    results = Collect()
    items = list(enumerate(ITEMS))

    def run():
        for item in items:
            fan.send(item)
        fan.flush()
        return sum(count for _, count in results.take(len(items), TIMEOUT))

    with coprocesses(KernelConsumer, WORKERS, "count_primes", impl, results=results) as fan:
        assert benchmark(run) == PRIMES_BELOW_500_000
    report(benchmark, len(ITEMS))
