# gilstudy.mpi next to raw mpi4py, in one MPI run: a small item's round trip (send, the
# consumer's answer back) against a raw pickle ping-pong; a stream of small items, each
# answered, against raw pickled messages both ways; a 16 MiB array's round trip against a
# raw Send/Recv with a small answer; and the count_primes workload on 1 and 2 ranks that
# gilstudy launches. Run: pytest bench/bench_mpi.py --benchmark-only
#
# The MPI figures are timed inside `mpiexec -n 2 python bench/bench_mpi.py`, which the
# benchmark launches: rank 0 produces, rank 1 answers; the raw and the gilstudy way take
# turns (A, B, A, B...) so outside load hits both alike, and each sample repeats its round
# trip until it lasts at least MIN_SAMPLE_S; the figure is the median sample. Rank 0 prints
# one JSON line of figures.

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

REPEATS = 5
MIN_SAMPLE_S = 0.2
ARRAY_BYTES = 16 << 20
SMALL_ITEM = (12345, "abc", 6.5)
TAG = 77


class Echo:
    def send(self, item):
        return item

    def close(self):
        return None


class Total:
    """Answers each array with one small number, as the raw side's receiver does."""

    def send(self, item):
        return int(item[-1])

    def close(self):
        return None


def _raw_small(comm, rank: int, count: int) -> None:
    for _ in range(count):
        if rank == 0:
            comm.send(SMALL_ITEM, 1, TAG)
            assert comm.recv(source=1, tag=TAG) == SMALL_ITEM
        else:
            comm.send(comm.recv(source=0, tag=TAG), 0, TAG)


def _raw_stream(comm, rank: int, count: int) -> None:
    """``count`` small items as pickled messages, each answered by one: rank 0 sends them
    all, then takes the answers (eager messages: neither side waits for the other)."""
    if rank == 0:
        for _ in range(count):
            comm.send(SMALL_ITEM, 1, TAG)
        for _ in range(count):
            assert comm.recv(source=1, tag=TAG) == SMALL_ITEM
    else:
        for _ in range(count):
            comm.send(comm.recv(source=0, tag=TAG), 0, TAG)


def _raw_array(comm, rank: int, count: int, array) -> None:
    from mpi4py import MPI

    for _ in range(count):
        if rank == 0:
            comm.Send([array, MPI.BYTE], 1, TAG)
            assert comm.recv(source=1, tag=TAG) == int(array[-1])
        else:
            comm.Recv([array, MPI.BYTE], 0, TAG)
            comm.send(int(array[-1]), 0, TAG)


def _through_gilstudy(comm, count: int, factory, item, stream: bool = False) -> None:
    """``count`` round trips of ``item`` through gilstudy.mpi.world() to rank 1: send,
    flush, wait for the answer; or, with ``stream``, ``count`` sends, then the wait for all
    the answers. Starting and closing the ranks is not timed."""
    from gilstudy import Collect
    from gilstudy import mpi

    results = Collect()
    fan = mpi.world(factory, results=results, comm=comm)
    if fan is None:
        return None
    runner = fan.consumers[0]
    start = time.perf_counter()
    if stream:
        for _ in range(count):
            runner.send(item)
        runner.flush()
        results.wait(count)
    else:
        for done in range(1, count + 1):
            runner.send(item)
            runner.flush()
            results.wait(done)
    seconds = time.perf_counter() - start
    fan.close()
    assert len(results.items) == count
    return seconds


def _inside() -> None:
    """Both ranks: take turns, raw then gilstudy, for each size of item."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    array = np.ones(ARRAY_BYTES // 8, dtype=np.int64)
    cases = {
        "small-raw": lambda count: _raw_small(comm, rank, count),
        "small-gilstudy": lambda count: _through_gilstudy(comm, count, Echo, SMALL_ITEM),
        "stream-raw": lambda count: _raw_stream(comm, rank, count),
        "stream-gilstudy": lambda count: _through_gilstudy(comm, count, Echo, SMALL_ITEM,
                                                           stream=True),
        "16MiB-raw": lambda count: _raw_array(comm, rank, count, array),
        "16MiB-gilstudy": lambda count: _through_gilstudy(comm, count, Total, array),
    }
    counts = {name: 1 for name in cases}
    samples = {name: [] for name in cases}
    for _ in range(REPEATS):
        for name, case in cases.items():
            while True:   # doubling the round trips until the sample is long enough
                count = comm.bcast(counts[name], root=0)
                comm.Barrier()
                start = time.perf_counter()
                timed = case(count)
                seconds = timed if timed is not None else time.perf_counter() - start
                if comm.bcast(seconds >= MIN_SAMPLE_S, root=0):
                    samples[name].append(seconds / count)
                    break
                counts[name] *= 2
    if rank == 0:
        median = {name: statistics.median(values) for name, values in samples.items()}
        print(json.dumps({
            "small_raw_us": median["small-raw"] * 1e6,
            "small_gilstudy_us": median["small-gilstudy"] * 1e6,
            "small_ratio": median["small-gilstudy"] / median["small-raw"],
            "stream_raw_us_per_item": median["stream-raw"] * 1e6,
            "stream_gilstudy_us_per_item": median["stream-gilstudy"] * 1e6,
            "stream_ratio": median["stream-gilstudy"] / median["stream-raw"],
            "array_raw_ms": median["16MiB-raw"] * 1e3,
            "array_gilstudy_ms": median["16MiB-gilstudy"] * 1e3,
            "array_ratio": median["16MiB-gilstudy"] / median["16MiB-raw"],
            "array_raw_GBps": ARRAY_BYTES / median["16MiB-raw"] / 1e9,
            "array_gilstudy_GBps": ARRAY_BYTES / median["16MiB-gilstudy"] / 1e9,
            "round_trips_per_last_sample": counts}), flush=True)


@pytest.mark.benchmark(group="mpi-round-trip")
def test_mpi_round_trips_against_raw_mpi4py(benchmark):
    from gilstudy import mpi

    def launch() -> dict:
        done = subprocess.run([mpi.find_mpiexec(), "-n", "2", sys.executable,
                               os.path.abspath(__file__)], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    figures = benchmark.pedantic(launch, rounds=1, iterations=1)
    for name, value in figures.items():
        benchmark.extra_info[name] = round(value, 3) if isinstance(value, float) else value


@pytest.mark.benchmark(group="mpi-count-primes")
def test_count_primes_on_one_and_two_ranks(benchmark):
    """The default count_primes workload (Cython kernel) through ranks() on 1 and 2 ranks,
    interleaved; each sample runs the workload as many passes as make MIN_SAMPLE_S."""
    from gilstudy import Collect
    from gilstudy import mpi
    from gilstudy.compare.workload import make_workload
    from gilstudy.kernels.work import KernelConsumer

    workload = make_workload("count_primes")
    results = Collect()
    fans = {n: mpi.ranks(KernelConsumer, n, "count_primes", "cython", results=results)
            for n in (1, 2)}

    def run(n: int, passes: int) -> float:
        results.items.clear()
        start = time.perf_counter()
        for _ in range(passes):
            for item in workload.items():
                fans[n].send(item)
        results.wait(passes * workload.items_count)
        seconds = time.perf_counter() - start
        assert sum(count for _, count in results.items) == passes * 41538   # primes < 500,000
        return seconds

    try:
        passes = 1
        while run(1, passes) < MIN_SAMPLE_S:
            passes *= 2
        samples = {1: [], 2: []}

        def interleaved() -> None:
            for _ in range(REPEATS):
                for n in samples:
                    samples[n].append(run(n, passes))

        benchmark.pedantic(interleaved, rounds=1, iterations=1)
    finally:
        for fan in fans.values():
            fan.close()
    one, two = (statistics.median(samples[n]) for n in (1, 2))
    benchmark.extra_info.update({"passes_per_sample": passes, "one_rank_s": round(one, 4),
                                 "two_ranks_s": round(two, 4), "speedup": round(one / two, 3)})


if __name__ == "__main__":
    _inside()
