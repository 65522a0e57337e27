# How fast large numpy arrays reach a spawned coprocess: 1, 16 and 256 MiB distinct arrays
# over a pipe and a loopback socket (through shared memory when the size calls for it, see
# gilstudy.shared), next to numpy.copyto of the same size in this process, the ceiling; how
# long an array from gilstudy.shared_array() takes to reach the consumer; and a 256 MiB
# array sent with spawn()'s default settings; and the first use of a new array, a 16 or
# 256 MiB array a new coprocess has never seen (its segment is new), next to its anchor, a
# plain copy into fresh memory (the target: at least 40% of it).
# extra_info holds GB/s (10^9 bytes a second, from the median round) and, for a transport,
# the fraction of the copyto ceiling, or for a first use of the fresh copy, measured in the
# same run.
# Run: python -m pytest bench/bench_arrays.py --benchmark-only --benchmark-group-by=group
# (only the first-use figures and their anchor: add -k "first_use or fresh_memory")

import mmap
import statistics
import time

import numpy as np
import pytest

import _bench_consumers as bc
from gilstudy.consumers import Collect
from gilstudy.coprocess import spawn

# Only reached when something deadlocks.
TIMEOUT = 120
MIB = 1 << 20
# Distinct arrays per round: 64 MiB to 512 MiB a round, so that a round lasts tens of
# milliseconds at least and the default run stays near a minute.
SIZES = {1: 64, 16: 16, 256: 2}
ROUNDS = 3
# Sends of one shared array per round of the latency benchmark: the median of these is
# the figure, each a send until the consumer stamped its arrival.
ARRIVALS = 21
_ceilings: dict[int, float] = {}
# The first use of a new array: its sizes in MiB, and the rounds, each to a new coprocess.
FIRST_USE = (16, 256)
FIRST_ROUNDS = 5
# What a first use should reach, as a fraction of a copy into fresh memory.
FIRST_USE_TARGET = 0.4
_fresh: dict[tuple, float] = {}


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


def fresh_copy_s(src, huge: bool = True) -> float:
    """Seconds to copy ``src`` into memory fresh from the kernel: a new private anonymous
    mapping (what malloc gives numpy for a large array), asked for huge pages (``huge``) as
    numpy asks for them, so the kernel gives them where it can; the mapping is timed with
    the copy, and dropped after it."""
    start = time.perf_counter()
    memory = mmap.mmap(-1, src.nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge and hasattr(mmap, "MADV_HUGEPAGE"):
        memory.madvise(mmap.MADV_HUGEPAGE)
    fresh = np.frombuffer(memory, src.dtype)
    np.copyto(fresh, src)
    elapsed = time.perf_counter() - start
    del fresh
    memory.close()
    return elapsed


def fresh_copy_anchor(size: int, huge: bool = True) -> float:
    """GB/s of a copy of ``size`` bytes into fresh memory (fresh_copy_s), the median of
    seven, measured once per run."""
    if (size, huge) not in _fresh:
        src = np.full(size, 5, np.uint8)
        _fresh[size, huge] = size / statistics.median(
            fresh_copy_s(src, huge) for _ in range(7)) / 1e9
    return _fresh[size, huge]


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def distinct_arrays(size: int, count: int) -> list:
    """``count`` arrays of ``size`` bytes, each filled with its own number, so no two are
    the same object or hold the same bytes."""
    return [np.full(size, index % 251, np.uint8) for index in range(count)]


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
    # A round runs from the first send until the consumer has had every array (its result,
    # the size and whether it is writable, is back); starting and ending the coprocess are not
    # timed. max_frame is raised so that the same bench runs on a stream-only gilstudy.
    size, count = mib * MIB, SIZES[mib]
    arrays = distinct_arrays(size, count)

    def setup():
        # One untimed pass of the round's arrays: numpy imported there, batches sized for
        # arrays, and the shared-memory segments the sender reuses faulted in (a new
        # worker's first pass pays for fresh pages: test_256mib_with_default_settings
        # shows that cost).
        arrivals = Collect()
        consumer = spawn(bc.Bytes, transport=transport, results=arrivals,
                         max_frame=size + MIB)
        for array in arrays:
            consumer.send(array)
        consumer.flush()
        arrivals.take(count, timeout=TIMEOUT)
        return (consumer, arrivals), {}

    def run(consumer, arrivals):
        send = consumer.send
        for array in arrays:
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


@pytest.mark.benchmark(group="a shared array's arrival")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", ["pipe", "socket"])
def test_shared_array_arrival(benchmark, transport):
    # One round sends a 256 MiB shared_array ARRIVALS times, one at a time, each timed from
    # send() (and the flush() that writes it at once) until the consumer stamped its
    # arrival (time.perf_counter is CLOCK_MONOTONIC, one clock for both processes);
    # extra_info has the median of those in ms.
    from gilstudy import shared_array

    array = shared_array(256 * MIB, np.uint8)
    array[::4096] = 7
    latencies = []

    def setup():
        arrivals = Collect()
        consumer = spawn(bc.Arrival, transport=transport, results=arrivals)
        consumer.send(array)
        consumer.flush()
        arrivals.take(1, timeout=TIMEOUT)
        return (consumer, arrivals), {}

    def run(consumer, arrivals):
        for _ in range(ARRIVALS):
            start = time.perf_counter()
            consumer.send(array)
            consumer.flush()
            arrived, size = arrivals.take(1, timeout=TIMEOUT)[0]
            latencies.append(arrived - start)
            assert size == array.nbytes
        return len(latencies)

    def teardown(consumer, arrivals):
        consumer.close()

    benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=ROUNDS)
    latencies.sort()
    benchmark.extra_info["arrival_ms_median"] = round(latencies[len(latencies) // 2] * 1e3, 3)
    benchmark.extra_info["arrival_ms_worst"] = round(latencies[-1] * 1e3, 3)


@pytest.mark.benchmark(group="256 MiB with default settings")
@pytest.mark.timeout(TIMEOUT)
def test_256mib_with_default_settings(benchmark):
    # spawn() as a new user calls it: no max_frame. One array a round, to a new worker:
    # its shared memory is fresh pages, faulted in by the copy.
    array = np.full(256 * MIB, 3, np.uint8)

    def setup():
        arrivals = Collect()
        return (spawn(bc.Bytes, results=arrivals), arrivals), {}

    def run(consumer, arrivals):
        consumer.send(array)
        return arrivals.take(1, timeout=TIMEOUT)

    def teardown(consumer, arrivals):
        consumer.close()

    assert benchmark.pedantic(run, setup=setup, teardown=teardown,
                              rounds=ROUNDS) == [(array.nbytes, True)]
    benchmark.extra_info["gb_per_s"] = round(gb_per_s(benchmark, array.nbytes), 2)


@pytest.mark.benchmark(group="first use: anchor")
@pytest.mark.parametrize("mib", FIRST_USE, ids=lambda mib: f"{mib}MiB")
def test_copy_into_fresh_memory(benchmark, mib):
    # The anchor of a first use: numpy.copyto into a new anonymous mapping (huge pages
    # where the kernel gives them), the mapping made in the round.
    src = np.full(mib * MIB, 9, np.uint8)
    benchmark.pedantic(lambda: fresh_copy_s(src), rounds=FIRST_ROUNDS, warmup_rounds=1)
    benchmark.extra_info["gb_per_s"] = round(gb_per_s(benchmark, src.nbytes), 2)
    benchmark.extra_info["small_pages_gb_per_s"] = round(fresh_copy_anchor(src.nbytes, False), 2)


@pytest.mark.benchmark(group="first use of a new array")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", ["pipe", "socket"])
@pytest.mark.parametrize("mib", FIRST_USE, ids=lambda mib: f"{mib}MiB")
def test_first_use(benchmark, mib, transport):
    # A round sends one new array, which the sender never sent, to a new coprocess, whose
    # consumer reads a byte of every page (a consumer that uses the data faults its mapping
    # in); it runs from send() until the result is back. Starting the coprocess (and a
    # first small item, so numpy is imported there) and making the array are not timed.
    size = mib * MIB
    fills = iter(range(1, 1000))

    def setup():
        arrivals = Collect()
        consumer = spawn(bc.Pages, transport=transport, results=arrivals)
        consumer.send(np.zeros(16, np.uint8))
        consumer.flush()
        arrivals.take(1, timeout=TIMEOUT)
        fill = next(fills) % 251
        return (consumer, arrivals, np.full(size, fill, np.uint8), fill), {}

    def run(consumer, arrivals, array, fill):
        consumer.send(array)
        consumer.flush()
        return arrivals.take(1, timeout=TIMEOUT)[0], fill

    def teardown(consumer, arrivals, array, fill):
        consumer.close()

    (nbytes, page_sum), fill = benchmark.pedantic(run, setup=setup, teardown=teardown,
                                                  rounds=FIRST_ROUNDS)
    assert (nbytes, page_sum) == (size, fill * (size // 4096))
    speed = gb_per_s(benchmark, size)
    anchor = fresh_copy_anchor(size)
    benchmark.extra_info["gb_per_s"] = round(speed, 2)
    benchmark.extra_info["fresh_copy_gb_per_s"] = round(anchor, 2)
    benchmark.extra_info["fraction_of_fresh_copy"] = round(speed / anchor, 3)
    benchmark.extra_info["target_fraction"] = FIRST_USE_TARGET
