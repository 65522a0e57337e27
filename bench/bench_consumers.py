# How fast items cross from a producer to a consumer: a bare queue.Queue between two
# threads (the baseline ConsumerThread must match), ConsumerThread, and Inline (no thread,
# the ceiling). Run: python -m pytest bench/bench_consumers.py --benchmark-only

import queue
import threading

import pytest

from gilstudy.consumers import DEFAULT_MAXSIZE, ConsumerThread, Inline
from gilstudy.examples import Count

N = 100_000
ITEMS = [(n, n & 255) for n in range(N)]
ROUNDS = 5


def through_queue(maxsize: int) -> int:
    """Items through a queue.Queue to a consumer thread, the textbook way."""
    handoff = queue.Queue(maxsize)
    done = object()
    consumer = Count()

    def work():
        while (item := handoff.get()) is not done:
            consumer.send(item)

    worker = threading.Thread(target=work)
    worker.start()
    for item in ITEMS:
        handoff.put(item)
    handoff.put(done)
    worker.join()
    return consumer.close()


def through_runner(make_runner) -> int:
    consumer = Count()
    runner = make_runner(consumer)
    for item in ITEMS:
        runner.send(item)
    runner.close()
    return consumer.close()


HANDOFFS = {
    "queue.Queue-unbounded": lambda: through_queue(0),
    f"queue.Queue-maxsize{DEFAULT_MAXSIZE}": lambda: through_queue(DEFAULT_MAXSIZE),
    f"ConsumerThread-maxsize{DEFAULT_MAXSIZE}": lambda: through_runner(ConsumerThread),
    "Inline": lambda: through_runner(Inline),
}


@pytest.mark.benchmark(group="handoff")
@pytest.mark.parametrize("handoff", HANDOFFS.values(), ids=HANDOFFS.keys())
def test_handoff(benchmark, handoff):
    count = benchmark.pedantic(handoff, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert count == N
    benchmark.extra_info["items"] = N
    if benchmark.stats is not None:
        # The median, not the mean: one round slowed by another process on the shared
        # cores moves a mean, not a median.
        benchmark.extra_info["items_per_s"] = round(N / benchmark.stats.stats.median)
