# How fast large numpy arrays cross to a coprocess: 1, 16 and 256 MiB arrays over a pipe and
# a loopback socket (pickle protocol 5, the array data out of band, read into a fresh buffer
# on the other side), next to numpy.copyto of the same size in this process, the ceiling.
# extra_info holds GB/s (10^9 bytes a second, from the median round) and, for a transport,
# the fraction of the copyto ceiling measured in the same run.
# Run: python -m pytest bench/bench_arrays.py --benchmark-only --benchmark-group-by=group

import time

import numpy as np
import pytest

import _bench_consumers as bc
from gilstudy.consumers import Collect
from gilstudy.coprocess import spawn

# Only reached when something deadlocks.
TIMEOUT = 120
MIB = 1 << 20
# Arrays per round: about 64 MiB to 512 MiB a round, so that a round lasts tens of
# milliseconds at least and the default run stays near a minute.
SIZES = {1: 64, 16: 16, 256: 2}
ROUNDS = 3
_ceilings: dict[int, float] = {}


def gb_per_s(benchmark, nbytes: int) -> float:
    # The median round: one slow round on a shared machine moves a mean, not a median.
    return nbytes / benchmark.stats.stats.median / 1e9


def copyto_ceiling(size: int) -> float:
    """GB/s of numpy.copyto between two warm arrays of ``size`` bytes (best of five)."""
    if size not in _ceilings:
        src, dst = np.ones(size, np.uint8), np.empty(size, np.uint8)
        np.copyto(dst, src)
        best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(5))
        _ceilings[size] = size / best / 1e9
    return _ceilings[size]


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@pytest.mark.benchmark(group="large numpy arrays")
@pytest.mark.parametrize("mib", list(SIZES), ids=lambda mib: f"{mib}MiB")
def test_numpy_copyto_in_process(benchmark, mib):
    size, count = mib * MIB, SIZES[mib]
    src, dst = np.ones(size, np.uint8), np.empty(size, np.uint8)

    def run():
        for _ in range(count):
            np.copyto(dst, src)
        return int(dst[-1])

    assert benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1) == 1
    benchmark.extra_info["gb_per_s"] = round(gb_per_s(benchmark, size * count), 2)


@pytest.mark.benchmark(group="large numpy arrays")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", ["pipe", "socket"])
@pytest.mark.parametrize("mib", list(SIZES), ids=lambda mib: f"{mib}MiB")
def test_arrays_to_a_coprocess(benchmark, mib, transport):
    # A round runs from the first send until the coprocess has handled the last array (its
    # result is back); starting and ending the coprocess are not timed.
    size, count = mib * MIB, SIZES[mib]
    array = np.ones(size, np.uint8)

    def setup():
        arrivals = Collect()
        consumer = spawn(bc.Bytes, transport=transport, results=arrivals,
                         max_frame=size + MIB)
        consumer.send(array)  # numpy imported there, batches sized for arrays
        consumer.flush()
        arrivals.take(1, timeout=TIMEOUT)
        return (consumer, arrivals), {}

    def run(consumer, arrivals):
        send = consumer.send
        for _ in range(count):
            send(array)
        consumer.flush()
        return arrivals.take(count, timeout=TIMEOUT)

    def teardown(consumer, arrivals):
        consumer.close()

    arrived = benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=ROUNDS)
    assert arrived == [(size, True)] * count
    speed = gb_per_s(benchmark, size * count)
    benchmark.extra_info["gb_per_s"] = round(speed, 2)
    benchmark.extra_info["copyto_gb_per_s"] = round(copyto_ceiling(size), 2)
    benchmark.extra_info["fraction_of_copyto"] = round(speed / copyto_ceiling(size), 3)
