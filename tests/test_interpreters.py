# Subinterpreters as workers (gilstudy.interpreters): each is an isolated interpreter of this
# process, with its own GIL, running the coprocess child's entry behind an ordinary
# RemoteConsumer. Every item arrives once; results cross as they do from a coprocess; a
# failing consumer is a RemoteError; an early exit, a stall and an abort end in bounded time,
# with nothing left running. Tests marked `subinterpreters` need concurrent.interpreters (3.14+):
# make test runs them under 3.15, and deselects and counts them elsewhere.

import os
import re
import sys
import threading
import time

import numpy as np
import pytest

import _coprocess_consumers as cc
import _in_subinterpreter as inside
from conftest import TIMEOUT
from gilstudy import Collect, Dispatch
from gilstudy.errors import CoprocessDied, CoprocessStalled, RemoteError, RemoteTraceback
from gilstudy.examples import Checksum
from gilstudy.interpreters import subinterpreter, subinterpreters, unavailable_reason
from gilstudy.kernels.work import KernelConsumer
from gilstudy.remote import EXIT_TIMEOUT

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")
needs_interpreters = pytest.mark.subinterpreters

# What a loaded 2-core machine may add to a bound.
SLACK = 2.0


def wait_acknowledged(worker, count: int) -> None:
    worker.flush()
    deadline = time.monotonic() + TIMEOUT
    while worker.acknowledged < count:
        assert time.monotonic() < deadline, f"{worker!r} never acknowledged {count} items"
        time.sleep(0.001)


def test_without_concurrent_interpreters_the_runner_names_the_python_it_needs(monkeypatch):
    # A None entry in sys.modules makes the import fail, as on Python 3.13 and older.
    monkeypatch.setitem(sys.modules, "concurrent.interpreters", None)
    reason = (r"subinterpreters need Python 3\.14 or newer \(concurrent\.interpreters\); "
              rf"this is Python {sys.version_info[0]}\.{sys.version_info[1]}\.\d+\S*")
    assert re.fullmatch(reason, unavailable_reason())
    with pytest.raises(ModuleNotFoundError, match=rf"^subinterpreter: {reason}$"):
        subinterpreter(cc.Echo)
    with pytest.raises(ModuleNotFoundError, match=rf"^subinterpreters: {reason}$"):
        subinterpreters(cc.Echo, 2)


@needs_interpreters
def test_bad_arguments_are_refused_before_anything_starts():
    with pytest.raises(TypeError,
                       match=r"^subinterpreter: factory must be callable, got 3 \(int\)$"):
        subinterpreter(3)
    with pytest.raises(ValueError, match=r"^subinterpreters: n must be >= 1, got 0$"):
        subinterpreters(cc.Echo, 0)
    with pytest.raises(TypeError, match=r"^subinterpreter: results must have a send\(\) method"):
        subinterpreter(cc.Echo, results=[])
    with pytest.raises(ValueError, match=r"^subinterpreter: the factory and its arguments pickle "
                                         r"to \d+ bytes, more than max_frame \(1024\)$"):
        subinterpreter(cc.Times, b"x" * 2048, max_frame=1024)


@needs_interpreters
@pytest.mark.timeout(120)
def test_every_item_sent_before_close_arrives_once_and_in_order():
    items = [(index, index % 7) for index in range(200_000)]
    results = Collect()
    with subinterpreter(Checksum, results=results) as worker:
        for item in items:
            worker.send(item)
    assert results.items == [Checksum.of(items)]


@needs_interpreters
@pytest.mark.timeout(120)
def test_dispatch_over_subinterpreters_hands_each_item_to_exactly_one():
    results = Collect()
    with subinterpreters(cc.Echo, 2, results=results) as fan:
        assert isinstance(fan, Dispatch)
        for item in range(50_000):
            fan.send(item)
    assert sorted(item for item in results.items if item != "closed") == list(range(50_000))
    assert results.items.count("closed") == 2
    assert all(count > 0 for count in fan.dispatched)


@needs_interpreters
@pytest.mark.timeout(120)
@pytest.mark.parametrize("impl", ["python", "cython"])
def test_kernel_results_are_what_this_thread_computes_arrays_included(impl):
    items = [(0, ("count_primes", (0, 30_000))), (1, ("mandelbrot", (40, 30, 60, 5, 25))),
             (2, ("countdown", (1000,)))]
    for index, (name, args) in items:
        results = Collect()
        with subinterpreter(KernelConsumer, name, impl, results=results) as worker:
            worker.send((index, args))
        [(got_index, got)] = results.items
        expected = KernelConsumer(name, impl).send((index, args))[1]
        assert got_index == index
        if name == "mandelbrot":
            # Made without numpy over there, a numpy array here.
            assert isinstance(got, np.ndarray) and got.dtype == np.uint32
            assert got.flags.writeable
            np.testing.assert_array_equal(got, expected)
        else:
            assert got == expected


@needs_interpreters
@pytest.mark.timeout(60)
def test_the_consumer_runs_in_an_isolated_interpreter_without_numpy():
    results = Collect()
    with subinterpreter(inside.Whereabouts, results=results):
        pass
    [facts] = results.items
    assert facts["interpreter"] != facts["main"]
    assert facts == {**facts, "numpy": False, "far side": True}


@needs_interpreters
@pytest.mark.timeout(60)
def test_a_consumer_that_raises_is_a_remote_error_with_its_traceback():
    worker = subinterpreter(cc.FailOn, 3)
    for item in range(6):
        worker.send(item)
    with pytest.raises(RemoteError) as info:
        worker.close()
    error = info.value
    assert error.where == worker.peer.name and error.where.startswith("subinterpreter ")
    assert (error.remote_type, error.remote_message) == ("ValueError", "item 3 is bad")
    assert (error.sent, error.acknowledged) == (6, 3)
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "in send" in error.__cause__.text and "item 3 is bad" in error.__cause__.text
    assert worker.peer.wait(TIMEOUT) == 0


@needs_interpreters
@pytest.mark.timeout(60)
def test_a_consumer_that_calls_sys_exit_ends_its_interpreter_and_the_caller_is_told():
    worker = subinterpreter(inside.ExitsAt, 7, 2)
    for item in range(2):
        worker.send(item)
    wait_acknowledged(worker, 2)
    for item in range(2, 5):
        worker.send(item)
    start = time.monotonic()
    with pytest.raises(CoprocessDied) as info:
        worker.close()
    assert time.monotonic() - start < EXIT_TIMEOUT
    assert (info.value.exitcode, info.value.acknowledged) == (7, 2)
    assert worker.peer.wait(TIMEOUT) == 7


@needs_interpreters
@pytest.mark.timeout(60)
def test_a_factory_that_fails_to_import_is_reported_and_nothing_is_left(tmp_path):
    worker = subinterpreter(cc.broken_factory)
    worker.send(1)
    with pytest.raises(RemoteError, match="no consumer today"):
        worker.close()
    assert worker.peer.wait(TIMEOUT) == 0


@needs_interpreters
@pytest.mark.timeout(60)
def test_a_stalled_consumer_stalls_close_and_abort_releases_the_caller(tmp_path):
    release = tmp_path / "release"
    results = Collect()
    worker = subinterpreter(cc.Blocker, str(release), results=results)
    try:
        worker.send("held")
        start = time.monotonic()
        with pytest.raises(CoprocessStalled):
            worker.close(timeout=0.5)
        assert time.monotonic() - start < 0.5 + SLACK
        # An interpreter cannot be killed: abort() releases this side, waiting at most
        # EXIT_TIMEOUT for the consumer's call to return.
        start = time.monotonic()
        worker.abort()
        assert time.monotonic() - start < EXIT_TIMEOUT + SLACK
        assert worker.peer.wait(0) is None
    finally:
        release.touch()
    # Released, its call returns, its next write fails, and the interpreter ends.
    assert worker.peer.wait(TIMEOUT) == 0
    assert "closed" not in results.items


@needs_interpreters
@pytest.mark.timeout(60)
def test_abort_ends_an_idle_interpreter_at_once():
    worker = subinterpreter(cc.Echo)
    worker.send(1)
    worker.flush()
    start = time.monotonic()
    worker.abort()
    assert time.monotonic() - start < SLACK
    assert worker.peer.wait(0) == 0


@needs_interpreters
@pytest.mark.timeout(60)
def test_pure_python_in_a_subinterpreter_does_not_hold_this_interpreters_gil():
    # This interpreter's switch interval is raised to 100 s: a thread that held its GIL
    # would freeze the counting loop below until the kernel finished. The subinterpreter
    # signals through a pipe that its pure-Python kernel is about to run; this thread then
    # counts all its steps while the kernel runs, because that GIL is another.
    read_fd, write_fd = os.pipe()
    outcome = []
    previous = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        with inside.fresh_interpreter() as interpreter:
            caller = threading.Thread(target=lambda: outcome.append(interpreter.call(
                inside.signal_then_run, write_fd, "count_primes", "python", (0, 300_000))))
            caller.start()
            assert os.read(read_fd, 1) == b"!"
            steps = 0
            while steps < inside.PROBE_STEPS and caller.is_alive():
                steps += 1
            caller.join(TIMEOUT)
    finally:
        sys.setswitchinterval(previous)
        os.close(read_fd)
        os.close(write_fd)
    assert outcome == [25_997]
    assert steps == inside.PROBE_STEPS
