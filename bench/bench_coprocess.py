# How fast coprocesses move items, next to the standard library's ways of doing the same in
# one run: a one-way stream of small items, round trips of tiny tasks, start-up, and the
# plain protocol's sender against a bare pickle.dump loop. Each benchmark times one
# callable, checks what it returned (broken code is never timed) and puts items/s in
# extra_info. Run: pytest bench/bench_coprocess.py --benchmark-group-by=group

import concurrent.futures
import io
import multiprocessing
import pickle
import threading
import time

import pytest

import _bench_consumers as bc
from gilstudy.consumers import Collect
from gilstudy.dispatch import start_runners
from gilstudy.examples import Count, Square
from gilstudy.coprocess import CoprocessSender, spawn

# Only reached when something deadlocks.
TIMEOUT = 120
ROUNDS = 3

STREAM_ITEMS = 300_000
ROUND_TRIP_ITEMS = 200_000
# Issue 23: tiny items through a Dispatch over 2 coprocesses, results back.
ROUND_TRIP_TARGET = 1_000_000
# ProcessPoolExecutor.map with its default chunksize (1) does ~10 k tasks/s: fewer tasks
# keep a round short; items/s in extra_info is what compares.
EXECUTOR_ITEMS = 5_000
PLAIN_ITEMS = 200_000


def small_items(count: int) -> list:
    return [(i, i * 7) for i in range(count)]


def report(benchmark, items: int) -> None:
    # The median round: one slow round on a shared machine moves a mean, not a median.
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["items"] = items
    benchmark.extra_info["items_per_s"] = round(items / seconds)




def wait_idle(consumer) -> None:
    """Until ``consumer`` has acknowledged everything sent (start-up included)."""
    consumer.flush()
    deadline = time.monotonic() + TIMEOUT
    while consumer.pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{consumer!r} did not acknowledge its items")
        time.sleep(0.001)


# --- One-way stream: small items to one consumer that counts ----------------------------------

def _stream_to_coprocess(transport):
    items = small_items(STREAM_ITEMS)

    def setup():
        results = Collect()
        consumer = spawn(Count, transport=transport, results=results)
        consumer.send((-1, 0))
        wait_idle(consumer)
        return (consumer, results), {}

    def run(consumer, results):
        send = consumer.send
        for item in items:
            send(item)
        consumer.close()
        return results.items[0]

    return setup, run, STREAM_ITEMS + 1


def _stream_to_multiprocessing_queue():
    ctx = multiprocessing.get_context("spawn")
    items = small_items(STREAM_ITEMS)
    started = []

    def setup():
        queue, counts = ctx.Queue(), ctx.Queue()
        process = ctx.Process(target=bc.count_from_queue, args=(queue, counts))
        process.start()
        started.append((process, queue, counts))
        assert counts.get(timeout=TIMEOUT) == "ready"
        return (queue, counts), {}

    def run(queue, counts):
        put = queue.put
        for item in items:
            put(item)
        put(None)
        return counts.get(timeout=TIMEOUT)

    def teardown(queue, counts):
        process, *_ = started.pop()
        process.join(TIMEOUT)
        queue.close()
        counts.close()
        queue.join_thread()
        counts.join_thread()

    return setup, run, STREAM_ITEMS, teardown


@pytest.mark.benchmark(group="one-way stream of small items")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("runner", ["coprocess-pipe", "coprocess-fifo", "coprocess-socket",
                                    "multiprocessing-Queue"])
def test_one_way_stream(benchmark, runner):
    if runner == "multiprocessing-Queue":
        setup, run, expected, teardown = _stream_to_multiprocessing_queue()
    else:
        setup, run, expected = _stream_to_coprocess(runner.split("-")[1])
        teardown = None
    count = benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=ROUNDS)
    assert count == expected
    report(benchmark, STREAM_ITEMS)


# --- Round trips: tiny tasks out, results back, through two workers --------------------------

@pytest.mark.benchmark(group="round trip of tiny tasks, 2 workers")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", ["pipe", "socket"])
def test_round_trip_through_two_coprocesses(benchmark, transport):
    time_round_trip(benchmark, lambda results: spawn(Square, transport=transport,
                                                     results=results))


def time_round_trip(benchmark, start_one, workers: int = 2) -> None:
    """Time ROUND_TRIP_ITEMS tiny items through a Dispatch over ``workers`` runners, each
    made by ``start_one(results)`` through start_runners and answering a first item before
    the clock runs, until every result is back (the runners are closed after the clock
    stops, as the executors' pools are shut down after theirs); report items/s beside the
    target of issue 23, ROUND_TRIP_TARGET."""
    items = small_items(ROUND_TRIP_ITEMS)

    def setup():
        results = Collect()
        fan = start_runners(lambda index: start_one(results), workers)
        for worker in fan.consumers:
            worker.send((-1, 0))
        results.take(workers, timeout=TIMEOUT)  # every worker up and answering
        return (fan, results), {}

    def run(fan, results):
        send = fan.send
        for item in items:
            send(item)
        fan.flush()
        return results.take(ROUND_TRIP_ITEMS, timeout=TIMEOUT)

    def teardown(fan, results):
        fan.close()

    answers = benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=ROUNDS)
    assert sorted(answers) == sorted(bc.square(item) for item in items)
    report(benchmark, ROUND_TRIP_ITEMS)
    benchmark.extra_info["target_items_per_s"] = ROUND_TRIP_TARGET


@pytest.mark.benchmark(group="round trip of tiny tasks, 2 workers")
@pytest.mark.timeout(TIMEOUT)
def test_round_trip_through_process_pool_executor_map(benchmark):
    ctx = multiprocessing.get_context("spawn")
    time_executor_map(benchmark, lambda: concurrent.futures.ProcessPoolExecutor(
        2, mp_context=ctx))


def time_executor_map(benchmark, make_pool) -> None:
    """Time ``pool.map`` of EXECUTOR_ITEMS tiny tasks through a fresh pool each round (made
    by ``make_pool``, its workers started before the clock runs), and report items/s."""
    items = small_items(EXECUTOR_ITEMS)

    def setup():
        pool = make_pool()
        list(pool.map(bc.square, small_items(4)))  # both workers up
        return (pool,), {}

    def run(pool):
        return sum(1 for _ in pool.map(bc.square, items))

    count = benchmark.pedantic(run, setup=setup, teardown=lambda pool: pool.shutdown(),
                               rounds=ROUNDS)
    assert count == EXECUTOR_ITEMS
    report(benchmark, EXECUTOR_ITEMS)


# --- Start-up: from nothing to a first item handled ------------------------------------------

@pytest.mark.benchmark(group="start-up")
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", ["pipe", "fifo", "socket"])
def test_spawn_until_first_item_handled_then_close(benchmark, transport):
    def run():
        results = Collect()
        consumer = spawn(bc.Started, transport=transport, results=results)
        consumer.send("first")
        consumer.flush()
        results.wait(1, timeout=TIMEOUT)
        consumer.close()
        return results.items

    assert benchmark.pedantic(run, rounds=ROUNDS * 2) == ["first"]


@pytest.mark.benchmark(group="start-up")
@pytest.mark.timeout(TIMEOUT)
def test_multiprocessing_spawn_process_start_and_join(benchmark):
    ctx = multiprocessing.get_context("spawn")

    def run():
        process = ctx.Process(target=bc.nothing)
        process.start()
        process.join(TIMEOUT)
        return process.exitcode

    assert benchmark.pedantic(run, rounds=ROUNDS * 2) == 0


# --- The plain protocol's sender against a bare pickle.dump loop -----------------------------

@pytest.mark.benchmark(group="plain protocol: one pickle per item")
@pytest.mark.parametrize("writer", ["bare-pickle.dump", "CoprocessSender"])
def test_plain_sender(benchmark, writer):
    items = small_items(PLAIN_ITEMS)

    def setup():
        return (io.BytesIO(),), {}

    def bare(stream):
        dump = pickle.dump
        for item in items:
            dump(item, stream)
        return stream.tell()

    def sender(stream):
        send = CoprocessSender(stream).send
        for item in items:
            send(item)
        return stream.tell()

    written = benchmark.pedantic(bare if writer == "bare-pickle.dump" else sender, setup=setup,
                                 rounds=ROUNDS * 2)
    assert written > PLAIN_ITEMS * 10
    report(benchmark, PLAIN_ITEMS)
