# The same consumer class runs every way (inline, in a thread, as a coroutine, in a
# coprocess over each transport) and gives the same results; a million small items sent
# before close() all arrive, in order.

import pytest

from gilstudy import Collect, ConsumerThread, Dispatch, Inline, coroutine, spawn
from gilstudy.coprocess import coprocesses, TRANSPORTS
from gilstudy.examples import Checksum
from gilstudy.kernels.work import KernelConsumer

RUNNERS = ["inline", "thread", "coroutine-inline", "coroutine-thread",
           *(f"coprocess-{t}" for t in TRANSPORTS)]


@coroutine
def checksum_coroutine():
    """Checksum as a generator: the same fold, its summary yielded after close is asked."""
    fold = Checksum()
    try:
        while True:
            fold.send((yield))
    except GeneratorExit:
        CLOSED_SUMMARIES.append(fold.close())
        raise


CLOSED_SUMMARIES: list = []


def run(runner: str, factory, args: tuple, items, results):
    """Send ``items`` to ``factory(*args)`` run the ``runner`` way, then close."""
    if runner == "inline":
        target = Inline(factory(*args), results=results)
    elif runner == "thread":
        target = ConsumerThread(factory(*args), results=results)
    elif runner == "coroutine-inline":
        target = Inline(checksum_coroutine(), results=results)
    elif runner == "coroutine-thread":
        target = ConsumerThread(checksum_coroutine(), results=results)
    else:
        target = spawn(factory, *args, transport=runner.split("-", 1)[1], results=results)
    with target:
        for item in items:
            target.send(item)


def expected_checksum(items):
    fold = Checksum()
    for item in items:
        fold.send(item)
    return fold.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("runner", RUNNERS)
def test_a_million_items_sent_before_close_all_arrive_in_order(runner):
    items = [(i, i % 7) for i in range(10**6)]
    results = Collect()
    CLOSED_SUMMARIES.clear()
    run(runner, Checksum, (), items, results)
    summaries = CLOSED_SUMMARIES if runner.startswith("coroutine") else results.items
    assert summaries == [expected_checksum(items)]
    assert summaries[0][0] == 10**6


@pytest.mark.timeout(120)
@pytest.mark.parametrize("runner", ["inline", "thread", *(f"coprocess-{t}" for t in TRANSPORTS)])
def test_the_same_kernel_consumer_gives_the_same_results_every_way(runner):
    items = [(index, (index * 500, index * 500 + 500)) for index in range(40)]
    results = Collect()
    run(runner, KernelConsumer, ("count_primes", "python"), items, results)
    expected = [KernelConsumer("count_primes", "python").send(item) for item in items]
    assert results.items == expected


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", ["threads", "coprocesses"])
def test_dispatch_over_threads_or_coprocesses_handles_each_item_exactly_once(make):
    from gilstudy import threads

    items = [(index, (index * 1000, index * 1000 + 1000)) for index in range(64)]
    results = Collect()
    build = threads if make == "threads" else coprocesses
    with build(KernelConsumer, 2, "count_primes", "cython", results=results) as fan:
        assert isinstance(fan, Dispatch)
        for item in items:
            fan.send(item)
    assert sorted(results.items) == [KernelConsumer("count_primes", "python").send(i) for i in items]
    assert sum(fan.dispatched) == 64 and all(n > 0 for n in fan.dispatched)


def test_coprocesses_rejects_a_bad_count():
    with pytest.raises(ValueError, match=r"^coprocesses: n must be >= 1, got 0$"):
        coprocesses(KernelConsumer, 0, "count_primes", "python")
    with pytest.raises(TypeError, match=r"^coprocesses: n must be an int, got float \(2.0\)$"):
        coprocesses(KernelConsumer, 2.0, "count_primes", "python")
