# gilstudy.Executor behaves as concurrent.futures documents an Executor, on every kind of
# worker: results and their order, exceptions as their own type with the worker's traceback,
# cancellation, shutdown, a dead worker breaking the executor; and nothing is left running.

import concurrent.futures as cf
import os
import pickle
import signal
import sys
import threading
import types

import pytest

import _executor_functions as fx
import gilstudy
from _leftovers import child_pids, threads_left
from gilstudy.errors import BrokenWorkerPool, RemoteError, RemoteTraceback
from gilstudy.executor import Executor, executor_line

# Only reached when something deadlocks.
TIMEOUT = 60

KINDS = ["thread", "coprocess", "mpi",
         pytest.param("subinterpreter", marks=pytest.mark.subinterpreters)]
# The kinds whose workers are processes of their own, which a test may kill.
PROCESS_KINDS = ["coprocess", "mpi"]


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every test ends with no child process and no thread of its own left running."""
    threads_before = set(threading.enumerate())
    children_before = child_pids()
    yield
    assert threads_left(threads_before) == set()
    assert child_pids() - children_before == set()


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture(params=PROCESS_KINDS)
def process_kind(request) -> str:
    return request.param


# --- results -------------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_submit_returns_a_future_with_the_result(kind):
    with Executor(kind, max_workers=2) as pool:
        future = pool.submit(fx.add, 2, 3, scale=10)
        assert isinstance(future, cf.Future)
        assert future.result(TIMEOUT) == 50
        assert future.done() and not future.cancelled() and future.exception() is None


@pytest.mark.timeout(TIMEOUT)
def test_map_yields_the_results_in_the_order_of_the_arguments(kind):
    with Executor(kind, max_workers=2) as pool:
        assert list(pool.map(fx.square, range(20_000))) == [x * x for x in range(20_000)]
        assert list(pool.map(fx.add, [1, 2, 3], [10, 20])) == [11, 22]
        assert list(pool.map(fx.square, [])) == []
        assert list(pool.map(fx.square, range(10), chunksize=3)) == [x * x for x in range(10)]


@pytest.mark.timeout(TIMEOUT)
def test_the_calls_run_in_the_workers(process_kind):
    with Executor(process_kind, max_workers=2) as pool:
        pids = set(pool.map(fx.pid, range(200), chunksize=1))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


@pytest.mark.timeout(TIMEOUT)
def test_map_cuts_tiny_calls_into_few_tasks_and_slow_ones_into_one_call_each(kind):
    with Executor(kind, max_workers=2) as pool:
        assert sum(pool.map(fx.square, range(20_000))) == sum(x * x for x in range(20_000))
        tiny_tasks = sum(worker.sent for worker in pool.workers)
        assert 2 <= tiny_tasks < 2_000
        before = sum(worker.sent for worker in pool.workers)
        assert list(pool.map(fx.sleep_then, [0.05] * 6, range(6))) == list(range(6))
        assert sum(worker.sent for worker in pool.workers) - before == 6
        before = sum(worker.sent for worker in pool.workers)
        assert list(pool.map(fx.square, range(10), chunksize=4)) == [x * x for x in range(10)]
        assert sum(worker.sent for worker in pool.workers) - before == 3


@pytest.mark.timeout(TIMEOUT)
def test_options_reach_the_function_that_starts_the_workers():
    with Executor("coprocess", max_workers=1, transport="socket") as pool:
        assert pool.submit(fx.square, 12).result(TIMEOUT) == 144
        assert "socket" in repr(pool.workers[0])
    with pytest.raises(TypeError, match=r"transport"):
        Executor("thread", max_workers=1, transport="socket")


@pytest.mark.timeout(TIMEOUT)
def test_as_completed_and_wait_work_on_its_futures(kind):
    with Executor(kind, max_workers=2) as pool:
        futures = [pool.submit(fx.square, n) for n in range(10)]
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=TIMEOUT)) == [
            n * n for n in range(10)]
        done, not_done = cf.wait(futures, timeout=TIMEOUT)
        assert done == set(futures) and not not_done


@pytest.mark.timeout(TIMEOUT)
def test_a_future_is_running_once_sent_and_then_cannot_be_cancelled(tmp_path):
    gate, started = tmp_path / "gate", tmp_path / "started"
    with Executor("coprocess", max_workers=1) as pool:
        future = pool.submit(fx.wait_for, str(gate), TIMEOUT, str(started))
        fx.wait_for(str(started))
        # The worker runs it: the future is running, so cancel() says no.
        assert future.running() and not future.cancel()
        gate.touch()
        assert future.result(TIMEOUT) == str(gate)


# --- exceptions ----------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_an_exception_comes_back_as_its_own_type_with_the_workers_traceback(process_kind):
    with Executor(process_kind, max_workers=1) as pool:
        future = pool.submit(fx.fail_at, 3, 3)
        with pytest.raises(KeyError, match=r"no entry 3") as raised:
            future.result(TIMEOUT)
    cause = raised.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail_at" in cause.text and "raise KeyError" in cause.text


@pytest.mark.timeout(TIMEOUT)
def test_a_thread_workers_exception_is_the_very_object_raised():
    with Executor("thread", max_workers=1) as pool:
        with pytest.raises(KeyError, match=r"no entry 3") as raised:
            pool.submit(fx.fail_at, 3, 3).result(TIMEOUT)
    assert any(frame.name == "fail_at" for frame in
               __import__("traceback").extract_tb(raised.value.__traceback__))


@pytest.mark.timeout(TIMEOUT)
def test_map_yields_the_results_before_a_failed_call_then_raises_its_exception(kind):
    with Executor(kind, max_workers=2) as pool:
        results = pool.map(fx.fail_at, range(10), [4] * 10, chunksize=3)
        assert [next(results) for _ in range(4)] == [0, 1, 2, 3]
        with pytest.raises(KeyError, match=r"no entry 4"):
            next(results)


@pytest.mark.timeout(TIMEOUT)
def test_an_exception_that_does_not_unpickle_is_a_remote_error_naming_its_type():
    with Executor("coprocess", max_workers=1) as pool:
        with pytest.raises(RemoteError, match=r"Unpicklable: a/b") as raised:
            pool.submit(fx.raise_unpicklable).result(TIMEOUT)
        assert raised.value.remote_type == "Unpicklable"
        assert "raise Unpicklable" in raised.value.remote_traceback
        assert pool.submit(fx.square, 4).result(TIMEOUT) == 16  # the worker lives on


@pytest.mark.timeout(TIMEOUT)
def test_a_result_that_does_not_pickle_fails_its_own_future_only():
    with Executor("coprocess", max_workers=1) as pool:
        with pytest.raises(TypeError, match=r"lock") as raised:
            pool.submit(fx.return_a_lock).result(TIMEOUT)
        assert any("could not be pickled" in note for note in raised.value.__notes__)
        assert pool.submit(fx.square, 5).result(TIMEOUT) == 25


@pytest.mark.timeout(TIMEOUT)
def test_a_function_that_does_not_pickle_fails_its_own_future_only():
    with Executor("coprocess", max_workers=1) as pool:
        future = pool.submit(lambda: 1)
        with pytest.raises((pickle.PicklingError, AttributeError)):
            future.result(TIMEOUT)
        assert pool.submit(fx.square, 6).result(TIMEOUT) == 36


@pytest.mark.timeout(TIMEOUT)
def test_a_function_from_a_main_that_cannot_be_loaded_again_is_refused_at_submit(monkeypatch):
    def from_main():
        return 1

    from_main.__module__ = "__main__"
    with Executor("coprocess", max_workers=1) as pool:
        monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
        monkeypatch.setattr(sys, "argv", ["-c"])
        with pytest.raises(ValueError, match=r"^Executor.submit: function '.*from_main' is "
                                             r"defined in __main__, which a coprocess cannot "
                                             r"import: .* python -c; define"):
            pool.submit(from_main)
        with pytest.raises(ValueError, match=r"^Executor.map: function"):
            pool.map(from_main, [1])


# --- timeouts and cancellation -------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_result_and_map_timeouts_bound_the_wait_for_a_call_that_hangs(kind, tmp_path):
    gate = tmp_path / "gate"
    with Executor(kind, max_workers=1) as pool:
        future = pool.submit(fx.wait_for, str(gate))
        with pytest.raises(TimeoutError):
            future.result(timeout=0.05)
        results = pool.map(fx.wait_for, [str(gate)], timeout=0.05)
        with pytest.raises(TimeoutError):
            next(results)
        gate.touch()
        assert future.result(TIMEOUT) == str(gate)


@pytest.mark.timeout(TIMEOUT)
def test_calls_queued_behind_a_map_can_be_cancelled(kind, tmp_path):
    gate = tmp_path / "gate"
    with Executor(kind, max_workers=1) as pool:
        # Until its first chunk is back, a map has one chunk per worker in flight: the
        # rest of it, and what is submitted after it, waits in the queue.
        blocked = pool.map(fx.wait_for, [str(gate)] * 3)
        queued = pool.submit(fx.square, 3)
        assert queued.cancel() and queued.cancelled()
        later = pool.submit(fx.square, 4)
        gate.touch()
        assert list(blocked) == [str(gate)] * 3
        assert later.result(TIMEOUT) == 16
    with pytest.raises(cf.CancelledError):
        queued.result()


@pytest.mark.timeout(TIMEOUT)
def test_shutdown_with_cancel_futures_cancels_what_was_not_sent(kind, tmp_path):
    gate, started = tmp_path / "gate", tmp_path / "started"
    pool = Executor(kind, max_workers=1)
    blocked = pool.map(fx.wait_for, [str(gate)] * 5, [TIMEOUT] * 5, [str(started)] * 5)
    queued = [pool.submit(fx.square, n) for n in range(3)]
    fx.wait_for(str(started))  # the first chunk was sent: the rest waits for its result
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(future.cancelled() for future in queued)
    gate.touch()
    assert next(blocked) == str(gate)  # the chunk already sent finishes
    with pytest.raises(cf.CancelledError):
        next(blocked)
    pool.shutdown(wait=True)


# --- shutdown --------------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_submit_and_map_after_shutdown_raise_runtime_error_and_shutdown_is_idempotent(kind):
    pool = Executor(kind, max_workers=1)
    future = pool.submit(fx.square, 9)
    pool.shutdown()
    assert future.result(0) == 81  # shutdown(wait=True) waited for it
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        pool.submit(fx.square, 1)
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        pool.map(fx.square, [1])
    pool.shutdown()
    pool.shutdown(wait=False)
    assert "shut down" in repr(pool)


@pytest.mark.timeout(TIMEOUT)
def test_shutdown_without_wait_still_finishes_every_call_submitted(kind):
    pool = Executor(kind, max_workers=2)
    futures = [pool.submit(fx.sleep_then, 0.01, n) for n in range(10)]
    pool.shutdown(wait=False)
    assert [future.result(TIMEOUT) for future in futures] == list(range(10))
    pool.shutdown(wait=True)


# --- a worker that dies -----------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("call, how", [
    ((fx.exit_now, 3), "exited with code 3"),
    ((fx.kill_myself,), "was killed by signal 9"),
], ids=["os._exit", "SIGKILL"])
def test_a_dead_worker_breaks_the_executor_naming_the_worker_and_how_it_ended(
        process_kind, call, how, tmp_path):
    pool = Executor(process_kind, max_workers=2)
    try:
        waiting = pool.submit(fx.wait_for, str(tmp_path / "never"), 50)
        dying = pool.submit(*call)
        with pytest.raises(BrokenWorkerPool) as raised:
            dying.result(TIMEOUT)
        error = raised.value
        assert isinstance(error, cf.BrokenExecutor)
        assert str(error).startswith(f"gilstudy.Executor({process_kind!r}, max_workers=2): ")
        assert error.worker is not None and error.worker in str(error)
        with pytest.raises(BrokenWorkerPool):
            waiting.result(TIMEOUT)
        with pytest.raises(BrokenWorkerPool):
            pool.submit(fx.square, 2)
        assert "broken" in repr(pool)
    finally:
        pool.shutdown()
    if process_kind == "coprocess":  # an MPI rank's death ends the job: which one says how
        assert how in str(error)
        assert (error.signal, error.exitcode) == ((9, -9) if "signal" in how else (None, 3))


def test_broken_worker_pool_pickles_with_its_facts():
    error = BrokenWorkerPool("broken", worker="coprocess 12", exitcode=-9)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.worker, copy.exitcode, copy.signal) == (
        BrokenWorkerPool, "broken", "coprocess 12", -9, 9)
    assert gilstudy.BrokenWorkerPool is BrokenWorkerPool


# --- arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda: Executor("forks"), ValueError,
     r"^Executor: kind must be one of 'coprocess', 'thread', 'subinterpreter', 'mpi', "
     r"got 'forks'$"),
    (lambda: Executor("thread", max_workers=0), ValueError, r"^Executor: max_workers"),
    (lambda: Executor("thread", max_workers=1.5), TypeError, r"^Executor: max_workers"),
], ids=["kind", "zero-workers", "float-workers"])
def test_bad_arguments_are_refused_before_anything_starts(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.timeout(TIMEOUT)
def test_bad_call_arguments_are_refused_naming_the_argument():
    with Executor("thread", max_workers=1) as pool:
        with pytest.raises(TypeError, match=r"^Executor.submit: fn must be callable, got 3"):
            pool.submit(3)
        with pytest.raises(ValueError, match=r"^Executor.map: chunksize"):
            pool.map(fx.square, [1], chunksize=0)
        with pytest.raises(ValueError, match=r"^Executor.map: timeout"):
            pool.map(fx.square, [1], timeout=-1)


@pytest.mark.timeout(TIMEOUT)
def test_max_workers_defaults_to_the_usable_cores():
    with Executor("thread") as pool:
        assert pool.max_workers == gilstudy.usable_cores() == len(pool.workers)
        assert pool.line == f"gilstudy.Executor('thread', max_workers={pool.max_workers})"


# --- executor_line ------------------------------------------------------------------------------

@pytest.mark.parametrize("model, workers, line", [
    ("coprocess-cython", 2, "gilstudy.Executor('coprocess', max_workers=2)"),
    ("threads-python@3.13t", 4, "gilstudy.Executor('thread', max_workers=4)"),
    ("interp-python", 3, "gilstudy.Executor('subinterpreter', max_workers=3)"),
    ("mpi-cython", 8, "gilstudy.Executor('mpi', max_workers=8)"),
    ("pool-python", 2, "gilstudy.Executor('coprocess', max_workers=2)"),
    ("mpipool-cython", 2, "gilstudy.Executor('mpi', max_workers=2)"),
    ("serial-python", 1, None),
    ("prange-cython", 4, None),
    ("numba-threads", 2, "gilstudy.Executor('thread', max_workers=2)"),
    ("numba-prange", 2, None),
])
def test_executor_line_names_the_executor_of_a_compare_model(model, workers, line):
    assert executor_line(model, workers) == line


def test_executor_line_covers_every_model_compare_has():
    from gilstudy.compare import registry

    for name in registry.names():
        line = executor_line(name, 2)
        assert line is None or line.startswith("gilstudy.Executor(")


@pytest.mark.parametrize("model, workers, error, message", [
    ("nonsense", 2, ValueError, r"^executor_line: model must be a compare model name"),
    ("forks-python", 2, ValueError, r"^executor_line: model 'forks-python' is of no family"),
    ("coprocess-cython", 0, ValueError, r"^executor_line: workers"),
    (3, 2, TypeError, r"^executor_line: model must be a str, got 3 \(int\)$"),
])
def test_executor_line_refuses_what_is_not_a_model(model, workers, error, message):
    with pytest.raises(error, match=message):
        executor_line(model, workers)
