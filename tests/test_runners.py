# The same consumer class runs every way (inline, in a thread, as a coroutine, in a
# coprocess over each transport, through a server's connection, in a subinterpreter, on an
# MPI rank) and gives the same results;
# a million small items sent before close() all arrive, in order; and every runner obeys
# the same exit rule.

import os
import threading
import time

import pytest

import _coprocess_consumers as cc
from gilstudy import Collect, ConsumerThread, Dispatch, Inline, coroutine, mpi, spawn, threads
from gilstudy.coprocess import TRANSPORTS, connect, coprocesses, serve
from gilstudy.examples import Checksum
from gilstudy.interpreters import subinterpreter, subinterpreters
from gilstudy.kernels.work import KernelConsumer

# Runs only where concurrent.interpreters exists (make test's 3.15 pass).
SUBINTERPRETER = pytest.param("subinterpreter", marks=pytest.mark.subinterpreters)
RUNNERS = ["inline", "thread", "coroutine-inline", "coroutine-thread",
           *(f"coprocess-{t}" for t in TRANSPORTS), SUBINTERPRETER, "mpi-rank"]


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
    elif runner == "subinterpreter":
        target = subinterpreter(factory, *args, results=results)
    elif runner == "mpi-rank":
        target = mpi.ranks(factory, 1, *args, results=results)
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


# Under 3.13t and 3.15 the million goes through the in-process runners (inline, thread,
# subinterpreter); the coroutine, coprocess and MPI variants run it in make test's first
# pass only (one_pass), to keep the three passes within CI's time: their delivery is checked
# in every pass by the shorter tests of test_consumers.py, test_stream_edges.py and
# test_mpi.py.
ONE_PASS_MILLION = ("coroutine-inline", "coroutine-thread", "mpi-rank",
                    *(f"coprocess-{t}" for t in TRANSPORTS))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("runner", [pytest.param(runner, marks=pytest.mark.one_pass)
                                    if runner in ONE_PASS_MILLION else runner
                                    for runner in RUNNERS])
def test_a_million_items_sent_before_close_all_arrive_in_order(runner):
    items = [(i, i % 7) for i in range(10**6)]
    results = Collect()
    CLOSED_SUMMARIES.clear()
    run(runner, Checksum, (), items, results)
    summaries = CLOSED_SUMMARIES if runner.startswith("coroutine") else results.items
    assert summaries == [expected_checksum(items)]
    assert summaries[0][0] == 10**6


@pytest.mark.timeout(120)
@pytest.mark.parametrize("runner", ["inline", "thread", *(f"coprocess-{t}" for t in TRANSPORTS),
                                    SUBINTERPRETER, "mpi-rank"])
def test_the_same_kernel_consumer_gives_the_same_results_every_way(runner):
    items = [(index, (index * 500, index * 500 + 500)) for index in range(40)]
    results = Collect()
    run(runner, KernelConsumer, ("count_primes", "python"), items, results)
    expected = [KernelConsumer("count_primes", "python").send(item) for item in items]
    assert results.items == expected


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", ["threads", "coprocesses", "ranks",
                                  pytest.param("subinterpreters",
                                               marks=pytest.mark.subinterpreters)])
def test_dispatch_over_every_kind_of_runner_handles_each_item_exactly_once(make):
    items = [(index, (index * 1000, index * 1000 + 1000)) for index in range(64)]
    results = Collect()
    build = {"threads": threads, "coprocesses": coprocesses, "ranks": mpi.ranks,
             "subinterpreters": subinterpreters}[make]
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


# --- one exit rule for every runner ----------------------------------------------------------

KEY = b"the runner tests' key"


@pytest.fixture(scope="module")
def sleepy_server():
    with serve(("127.0.0.1", 0), cc.Sleepy, 0.05, authkey=KEY) as server:
        yield server


def exit_rule_runners(server) -> dict:
    """Each kind of runner, started on cc.Sleepy(0.05) with ``results``."""
    return {
        "inline": lambda results: Inline(cc.Sleepy(0.05), results=results),
        "thread": lambda results: ConsumerThread(cc.Sleepy(0.05), results=results),
        **{f"coprocess-{t}": (lambda results, t=t: spawn(cc.Sleepy, 0.05, transport=t,
                                                         results=results))
           for t in TRANSPORTS},
        "server-connection": lambda results: connect(server.address, results=results,
                                                     authkey=KEY),
        "threads": lambda results: threads(cc.Sleepy, 2, 0.05, results=results),
        "coprocesses": lambda results: coprocesses(cc.Sleepy, 2, 0.05, results=results),
        "mpi-ranks": lambda results: mpi.ranks(cc.Sleepy, 2, 0.05, results=results),
        "subinterpreter": lambda results: subinterpreter(cc.Sleepy, 0.05, results=results),
        "subinterpreters": lambda results: subinterpreters(cc.Sleepy, 2, 0.05, results=results),
    }


EXIT_RULE_RUNNERS = ["inline", "thread", *(f"coprocess-{t}" for t in TRANSPORTS),
                     "server-connection", "threads", "coprocesses", "mpi-ranks",
                     *(pytest.param(kind, marks=pytest.mark.subinterpreters)
                       for kind in ("subinterpreter", "subinterpreters"))]


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == me:
                        found.add(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", EXIT_RULE_RUNNERS)
def test_leaving_a_with_block_normally_delivers_everything_and_closes(kind, sleepy_server):
    results = Collect()
    with exit_rule_runners(sleepy_server)[kind](results) as runner:
        for item in range(6):
            runner.send(item)
    assert sorted(item for item in results.items if item != "closed") == list(range(6))
    closes = 2 if kind in ("threads", "coprocesses", "mpi-ranks", "subinterpreters") else 1
    assert results.items.count("closed") == closes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", EXIT_RULE_RUNNERS)
def test_leaving_a_with_block_on_an_exception_aborts_at_once_and_the_exception_passes(
        kind, sleepy_server):
    children = _children()
    threads_before = set(threading.enumerate())
    results = Collect()
    error = LookupError("the producer failed")
    queued = 0 if kind == "inline" else 200   # 10 s of work at 50 ms an item
    with pytest.raises(LookupError) as info:
        with exit_rule_runners(sleepy_server)[kind](results) as runner:
            runner.send("first")
            for item in range(queued):
                runner.send(item)
            start = time.monotonic()
            raise error
    took = time.monotonic() - start
    # The body's exception, unchanged; the work queued behind it dropped, not waited for;
    # the consumer not closed (its stream is incomplete); nothing left running.
    assert info.value is error
    assert took < 5.0
    assert "closed" not in results.items
    assert len(results.items) < queued or kind == "inline"
    assert _children() <= children
    if kind == "server-connection":
        # The server's side (in this process) finishes the item in its hands, then reads
        # the end of the connection.
        for thread in set(threading.enumerate()) - threads_before:
            if thread.name.endswith("-conn"):
                thread.join(5.0)
    assert [t.name for t in set(threading.enumerate()) - threads_before] == []
