"""gilstudy.Executor: a :class:`concurrent.futures.Executor` whose workers are gilstudy
runners (coprocesses, threads, subinterpreters or MPI ranks), so code written against
ProcessPoolExecutor, loky or MPIPoolExecutor runs on them unchanged; and executor_line(),
the Executor line that matches a model of ``gilstudy compare``.

It is built on the public runner API only: the workers are started with
:func:`gilstudy.coprocesses`, :func:`gilstudy.threads`, :func:`gilstudy.subinterpreters` or
``gilstudy.mpi.ranks()`` (each behind one :class:`gilstudy.Dispatch`), every worker runs
the consumer :class:`Calls`, and the results come back through a results consumer that
completes the futures.
"""

import concurrent.futures as cf
import itertools
import math
import pickle
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from gilstudy import _checks, mainscript
from gilstudy.errors import RemoteError, RemoteTraceback

__all__ = ["Executor", "Calls", "KINDS", "executor_line"]

# The kinds of worker, and what each is called in an error about __main__.
KINDS = {
    "coprocess": "a coprocess",
    "thread": "a thread",
    "subinterpreter": "a subinterpreter",
    "mpi": "an MPI rank",
}

_PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL

# map()'s automatic chunk size: a chunk should take at least this many times the measured
# cost of dispatching one (so dispatching costs at most about 1 % of the work), and never
# less than _MIN_CHUNK_SECONDS: a worker then always has several milliseconds of work queued,
# more than the up to 5 ms a partial batch waits before it is written.
_COST_FACTOR = 100
_MIN_CHUNK_SECONDS = 0.002
# What one chunk is assumed to cost to dispatch before any has been timed.
_FIRST_DISPATCH_COST = 20e-6
# Chunks of one map() in flight per worker at most (fewer until the first has come back,
# which times the function): enough to keep every worker busy, few enough that
# shutdown(cancel_futures=True) still finds most of a long map unsent.
_CHUNKS_PER_WORKER = 4
# How many functions' call times an executor remembers.
_KNOWN_FUNCTIONS = 64


class Calls:
    """The consumer every worker of an :class:`Executor` runs: each item is one task,
    ``(task, payload)``, where ``payload`` is ``(function, list of argument tuples,
    keyword arguments)``, pickled when ``pickled`` (workers in other processes or
    interpreters, which then unpickle it themselves, so a payload that does not load fails
    only its own task). It calls the function on each argument tuple in turn, stopping at
    the first exception, and returns ``(task, seconds, values, failure)``.

    In a pickled worker ``values`` is one pickle of ``(list of values, failure)``, where
    ``failure`` is None or ``(pickled exception or None, type name, message, traceback
    text)``; a value or exception that does not pickle becomes the failure instead of
    breaking the worker. Otherwise ``values`` is the list and ``failure`` the exception.
    """

    def __init__(self, pickled: bool):
        self._pickled = pickled

    def send(self, item: tuple) -> tuple:
        task, payload = item
        start = time.perf_counter()
        values: list = []
        failure = None
        try:
            function, arglist, kwargs = pickle.loads(payload) if self._pickled else payload
        except BaseException as exc:
            failure = exc
        else:
            append = values.append
            try:
                for args in arglist:
                    append(function(*args, **kwargs))
            except BaseException as exc:
                failure = exc
        seconds = time.perf_counter() - start
        if not self._pickled:
            return (task, seconds, values, failure)
        return (task, seconds, _pack(values, failure), None)

    def close(self) -> None:
        return None

    def __reduce__(self):
        return (type(self), (self._pickled,))


def _describe(exc: BaseException | None):
    if exc is None:
        return None
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        dumped = pickle.dumps(exc, _PICKLE_PROTOCOL)
    except Exception:
        dumped = None
    return (dumped, type(exc).__qualname__, str(exc), text)


def _pack(values: list, failure: BaseException | None) -> bytes:
    """One pickle of the values and the failure; a value that does not pickle ends the
    list there, its pickling error becoming the failure."""
    try:
        return pickle.dumps((values, _describe(failure)), _PICKLE_PROTOCOL)
    except Exception:
        pass
    kept = []
    for index, value in enumerate(values):
        try:
            pickle.dumps(value, _PICKLE_PROTOCOL)
        except Exception as exc:
            exc.add_note(f"gilstudy.Executor: the result of call {index} of this task "
                         f"({type(value).__name__}) could not be pickled to come back")
            failure = exc
            break
        kept.append(value)
    return pickle.dumps((kept, _describe(failure)), _PICKLE_PROTOCOL)


def _unpack_failure(failure, where: str) -> BaseException:
    """The caller's side of _describe(): the exception itself, its traceback text as the
    ``__cause__``; a RemoteError naming its type when it does not unpickle here."""
    dumped, type_name, message, text = failure
    exc = None
    if dumped is not None:
        try:
            exc = pickle.loads(dumped)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        return RemoteError(type_name, message, text, where=where)
    exc.__cause__ = RemoteTraceback(text)
    return exc


class _MapRun:
    """One map(): its argument tuples, how far they have been cut into chunks, the chunk
    futures (in order) and, when it stopped early, why."""

    def __init__(self, function: Callable, items: list, chunksize: int | None):
        self.function = function
        self.items = items
        self.chunksize = chunksize
        self.position = 0
        self.futures: list[cf.Future] = []
        self.in_flight = 0
        self.stopped: BaseException | None = None
        # Seconds per call, as the workers timed the chunks that came back (None: none yet).
        self.call_seconds: float | None = None

    @property
    def is_cut(self) -> bool:
        return self.stopped is not None or self.position >= len(self.items)


class _State:
    """What the caller's threads, the feeder thread and the results consumer share, under
    one condition: the queue of work not yet sent, the tasks sent and not yet done, the
    shutdown and broken flags, and the measured cost of dispatching a chunk."""

    def __init__(self, line: str, workers: int, pickled: bool):
        self.line = line
        self.workers = workers
        self.pickled = pickled
        self.condition = threading.Condition()
        self.queue: deque = deque()
        self.running: dict[int, tuple] = {}
        self.tasks = itertools.count()
        self.is_shut_down = False
        self.broken: BaseException | None = None
        self.dispatch_cost = _FIRST_DISPATCH_COST
        # Seconds per call of each function map() ran (hashable ones, the latest few), so
        # a later map() of the same function sizes its chunks from the start.
        self.call_seconds: dict = {}

    def known_call_seconds(self, function: Callable) -> float | None:
        try:
            return self.call_seconds.get(function)
        except TypeError:
            return None  # an unhashable callable

    def learn_call_seconds(self, function: Callable, seconds: float) -> None:
        try:
            if function not in self.call_seconds and len(self.call_seconds) >= _KNOWN_FUNCTIONS:
                self.call_seconds.pop(next(iter(self.call_seconds)))
            self.call_seconds[function] = seconds
        except TypeError:
            pass

    # The results consumer's side ----------------------------------------------------------

    def send(self, result: tuple) -> None:
        """A worker's answer to one task (see Calls); completes its future."""
        task, seconds, values, failure = result
        if self.pickled:
            try:
                values, failure = pickle.loads(values)
            except Exception as exc:
                values, failure = [], exc
            else:
                if failure is not None:
                    failure = _unpack_failure(failure, f"a worker of {self.line}")
        with self.condition:
            entry = self.running.pop(task, None)
            if entry is None:
                return  # the executor broke meanwhile: its future already failed
            future, run = entry
            if run is not None:
                run.in_flight -= 1
                if values or failure is None:
                    per_call = seconds / max(1, len(values))
                    known = run.call_seconds
                    run.call_seconds = per_call if known is None else (known + per_call) / 2
                    self.learn_call_seconds(run.function, run.call_seconds)
                self.condition.notify_all()
        if run is not None:
            future.set_result((values, failure))
        elif failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(values[0])

    def close(self) -> None:
        return None

    def fail(self, exc: BaseException) -> None:
        """A worker failed (its runner tells its results consumer): break the executor."""
        self.breaks(exc)

    def breaks(self, exc: BaseException) -> None:
        """Mark the executor broken by ``exc`` and fail every future not yet done."""
        from gilstudy.errors import BrokenWorkerPool

        with self.condition:
            if self.broken is not None:
                return
            worker = getattr(exc, "where", None)
            exitcode = getattr(exc, "exitcode", None)
            error = BrokenWorkerPool(
                f"{self.line}: {exc} ({type(exc).__name__}); the executor is broken: every "
                f"call not yet finished failed", worker=worker, exitcode=exitcode)
            error.__cause__ = exc
            self.broken = error
            futures = [future for future, _ in self.running.values()]
            self.running.clear()
            for entry in self.queue:
                if isinstance(entry, _MapRun):
                    entry.stopped = error
                else:
                    futures.append(entry[0])
            self.queue.clear()
            self.condition.notify_all()
        for future in futures:
            try:
                future.set_exception(error)
            except cf.InvalidStateError:
                pass  # cancelled meanwhile

    # The feeder's side ------------------------------------------------------------------

    def refuse(self, task: int, future: cf.Future, run: _MapRun | None,
               exc: Exception) -> None:
        """The call of ``task`` could not be pickled: it fails on its own."""
        with self.condition:
            self.running.pop(task, None)
            if run is not None:
                run.in_flight -= 1
                self.condition.notify_all()
        if run is not None:
            future.set_result(([], exc))
        else:
            future.set_exception(exc)

    def chunk_size(self, run: _MapRun) -> int:
        """How many calls the next chunk of ``run`` takes."""
        left = len(run.items) - run.position
        if run.chunksize is not None:
            return min(run.chunksize, left)
        if run.call_seconds is None:
            return 1  # the first chunks time the function
        target = max(_COST_FACTOR * self.dispatch_cost, _MIN_CHUNK_SECONDS)
        size = max(1, int(target / max(run.call_seconds, 1e-9)))
        # Near the end, smaller chunks, so the workers finish together.
        balanced = max(1, math.ceil(left / (2 * self.workers)))
        return min(size, balanced, left)

    def may_cut(self, run: _MapRun) -> bool:
        limit = self.workers if run.call_seconds is None else _CHUNKS_PER_WORKER * self.workers
        return run.chunksize is not None or run.in_flight < limit


def _feed(state: _State, dispatch) -> None:
    """The feeder thread: send the queued work to the workers through ``dispatch`` (the one
    thread that sends to it), in order; before it waits for more, flush what the workers'
    batches hold (so a lone call goes out at once, not within FLUSH_INTERVAL); once shut
    down and the queue is empty, close the workers (waiting for every call sent); on a
    failure, break the executor and abort them."""
    condition = state.condition
    unflushed = False
    try:
        while True:
            with condition:
                entry = None
                while state.broken is None:
                    if state.queue:
                        head = state.queue[0]
                        if not isinstance(head, _MapRun):
                            entry = state.queue.popleft()
                            break
                        if head.is_cut:
                            state.queue.popleft()
                            condition.notify_all()
                            continue
                        if state.may_cut(head):
                            entry = head
                            break
                    elif state.is_shut_down:
                        break
                    if unflushed:
                        break  # flush before waiting
                    condition.wait()
                if entry is not None:
                    task, future, run, call = _take(state, entry)
            if entry is None:
                if state.broken is not None:
                    break
                if unflushed:
                    dispatch.flush()
                    unflushed = False
                    continue
                break  # shut down, with nothing left to send
            if future is None:
                continue  # cancelled while queued
            started = time.perf_counter()
            if state.pickled:
                try:
                    call = pickle.dumps(call, _PICKLE_PROTOCOL)
                except Exception as exc:
                    state.refuse(task, future, run, exc)
                    continue
            dispatch.send((task, call))
            unflushed = True
            cost = time.perf_counter() - started
            state.dispatch_cost += (cost - state.dispatch_cost) / 8
    except BaseException as exc:  # a worker died or broke: nothing is sent any more
        state.breaks(exc)
    if state.broken is not None:
        dispatch.abort()
        return
    try:
        dispatch.close()
    except BaseException as exc:
        state.breaks(exc)
        dispatch.abort()


def _take(state: _State, entry) -> tuple:
    """With the condition held: make the next task of ``entry`` (a submitted call, or the
    next chunk of a map), mark its future running and register it; return ``(task,
    future, run, call)``, future None for a call cancelled while it was queued."""
    task = next(state.tasks)
    if isinstance(entry, _MapRun):
        run = entry
        size = state.chunk_size(run)
        arglist = run.items[run.position:run.position + size]
        run.position += size
        future = cf.Future()
        future.set_running_or_notify_cancel()
        run.futures.append(future)
        run.in_flight += 1
        call = (run.function, arglist, {})
        state.condition.notify_all()
    else:
        run = None
        future, function, args, kwargs = entry
        if not future.set_running_or_notify_cancel():
            return task, None, None, None
        call = (function, [args], kwargs)
    state.running[task] = (future, run)
    return task, future, run, call


def _start(kind: str, workers: int, results: _State, options: dict):
    if kind == "thread":
        from gilstudy.consumers import threads

        return threads(Calls, workers, False, results=results, **options)
    if kind == "coprocess":
        from gilstudy.processes import coprocesses

        return coprocesses(Calls, workers, True, results=results, **options)
    if kind == "subinterpreter":
        from gilstudy.interpreters import subinterpreters

        return subinterpreters(Calls, workers, True, results=results, **options)
    from gilstudy.mpi import ranks

    return ranks(Calls, workers, True, results=results, **options)


class Executor(cf.Executor):
    """A :class:`concurrent.futures.Executor` whose workers are gilstudy runners.

    Arguments:
        kind: "coprocess" (a fresh Python process per worker, the default), "thread",
            "subinterpreter" (Python 3.14+) or "mpi" (the ranks of an MPI job that
            gilstudy launches; needs ``gilstudy[mpi]``).
        max_workers: how many workers (an int >= 1); default: the cores this process
            may use (:func:`gilstudy.machine.usable_cores`).
        \\*\\*options: passed on to the function that starts the workers
            (:func:`gilstudy.coprocesses`, :func:`gilstudy.threads`,
            :func:`gilstudy.subinterpreters`, ``gilstudy.mpi.ranks()``), such as
            ``transport="socket"`` or ``hostfile=``.

    The workers start in the constructor. ``submit(fn, *args, **kwargs)`` returns a
    :class:`concurrent.futures.Future` at once; ``map(fn, *iterables, timeout=None,
    chunksize=None)`` returns an iterator over the results in the order of the arguments;
    ``shutdown(wait=True, cancel_futures=False)`` ends the workers once every call already
    submitted is done (``cancel_futures``: calls not yet sent are cancelled instead);
    leaving a ``with`` block shuts down and waits. ``as_completed`` and ``wait`` from
    concurrent.futures work on its futures.

    Functions and arguments (and results and exceptions, back) are pickled for every kind
    but "thread", as ProcessPoolExecutor does; a function defined in your script's
    ``__main__`` is found in the workers, which load the script under ``__mp_main__`` (so
    its ``if __name__ == "__main__":`` block does not run there; see
    :mod:`gilstudy.mainscript`). A function that cannot be pickled fails its own future.

    ``map`` cuts the calls into chunks, one task per chunk: with ``chunksize`` given, of
    that many calls; by default the first chunks have one call each, which times the
    function, and later ones as many calls as take 100 times the measured cost of
    dispatching a chunk (at least 2 ms), smaller near the end so that the workers finish
    together; a later map of the same function starts from the time measured. A call's exception ends its chunk there: the iterator yields the results
    before it, then raises it.

    Trouble, as concurrent.futures documents it: an exception raised by the function is
    raised by ``Future.result()`` (and by map's iterator) as its own type, with the
    worker's traceback as its ``__cause__`` (a :class:`gilstudy.errors.RemoteTraceback`); one
    that does not unpickle here is a :class:`gilstudy.RemoteError` naming its type. A
    worker that dies (killed, crashed, ``os._exit``) breaks the executor: every call not
    yet finished fails with :class:`gilstudy.BrokenWorkerPool` (a
    :class:`concurrent.futures.BrokenExecutor`) naming the worker and how it ended, the
    other workers are ended, and ``submit`` raises it. ``submit`` after ``shutdown``
    raises RuntimeError. ``Future.result(timeout)`` and map's ``timeout`` bound the wait
    for a worker that hangs (TimeoutError); the worker is left running.

    Where it differs from the standard executors: a call is sent to a worker as soon as
    the feeder thread takes it, so ``Future.cancel()`` succeeds only for calls still
    queued behind others (and for chunks of a map not yet cut). With ``kind="thread"``
    the functions run in this interpreter's threads: a function that holds the GIL (pure
    Python, on a build with the GIL) runs one at a time, as with ThreadPoolExecutor; a
    call that hangs cannot be stopped (its thread is a daemon, so it does not keep the
    interpreter from exiting, whereas ThreadPoolExecutor waits for its threads at exit).
    ``map`` has no ``buffersize`` (Python 3.14): it reads its iterables at once.
    ``submit`` may block when a worker has 65,536 calls in flight (see
    :class:`gilstudy.remote.RemoteConsumer`), or a thread worker 1,024.

    >>> import operator
    >>> with Executor("thread", max_workers=2) as pool:
    ...     list(pool.map(operator.mul, range(5), range(5)))
    [0, 1, 4, 9, 16]
    """

    def __init__(self, kind: str = "coprocess", max_workers: int | None = None, **options):
        if kind not in KINDS:
            raise ValueError(f"Executor: kind must be one of {', '.join(map(repr, KINDS))}, "
                             f"got {kind!r}")
        if max_workers is None:
            from gilstudy.machine import usable_cores

            max_workers = usable_cores()
        _checks.positive_int("Executor", "max_workers", max_workers)
        self._kind = kind
        self._max_workers = max_workers
        self._state = _State(self.line, max_workers, pickled=kind != "thread")
        self._shutdown_lock = threading.Lock()
        self._dispatch = _start(kind, max_workers, self._state, options)
        self._feeder = threading.Thread(target=_feed, args=(self._state, self._dispatch),
                                        name=f"gilstudy-Executor-{kind}-feeder", daemon=True)
        self._feeder.start()

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def line(self) -> str:
        """The expression that makes an executor like this one."""
        return f"gilstudy.Executor({self._kind!r}, max_workers={self._max_workers})"

    @property
    def workers(self) -> tuple:
        """The runners (one per worker), as gilstudy.Dispatch holds them."""
        return self._dispatch.consumers

    def _check_open(self) -> None:
        state = self._state
        if state.broken is not None:
            raise state.broken
        if state.is_shut_down:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _check_function(self, owner: str, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError(f"{owner}: fn must be callable, got {fn!r} ({type(fn).__name__})")
        if self._state.pickled:
            mainscript.check(owner, "function", fn, KINDS[self._kind])

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        """Schedule ``fn(*args, **kwargs)`` and return a Future for its result."""
        self._check_function("Executor.submit", fn)
        future = cf.Future()
        state = self._state
        with state.condition:
            self._check_open()
            state.queue.append((future, fn, args, kwargs))
            state.condition.notify_all()
        return future

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None,
            chunksize: int | None = None) -> Iterator:
        """``fn`` over the arguments taken from ``iterables`` in parallel, like the built-in
        map: the iterables are read at once, and the iterator returned yields the results
        in order. ``timeout`` (seconds, from this call) makes a ``next()`` that would wait
        past it raise TimeoutError; ``chunksize`` (an int >= 1) fixes the calls per task
        (default: chosen from the measured dispatch cost, see the class). Leaving the
        iterator early stops the chunks not yet sent."""
        self._check_function("Executor.map", fn)
        if chunksize is not None:
            _checks.positive_int("Executor.map", "chunksize", chunksize)
        timeout = _checks.timeout("Executor.map", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        run = _MapRun(fn, list(zip(*iterables)), chunksize)
        state = self._state
        with state.condition:
            self._check_open()
            run.call_seconds = state.known_call_seconds(fn)
            if run.items:
                state.queue.append(run)
                state.condition.notify_all()
        return self._results(run, deadline)

    def _results(self, run: _MapRun, deadline: float | None) -> Iterator:
        state = self._state
        condition = state.condition
        try:
            index = 0
            while True:
                with condition:
                    while index >= len(run.futures) and not run.is_cut:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            raise TimeoutError
                        condition.wait(left)
                    if index >= len(run.futures):
                        if run.stopped is not None:
                            raise run.stopped
                        return
                    future = run.futures[index]
                left = None if deadline is None else deadline - time.monotonic()
                values, failure = future.result(left)
                future = None
                yield from values
                if failure is not None:
                    raise failure
                index += 1
        finally:
            with condition:
                if not run.is_cut:
                    run.stopped = cf.CancelledError()
                condition.notify_all()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; with ``cancel_futures``, cancel those not yet sent (and the
        chunks of a map not yet cut: its iterator raises CancelledError there); the
        workers end once every call sent is done. With ``wait`` (default), return only
        then. Idempotent."""
        state = self._state
        cancelled = []
        with state.condition:
            state.is_shut_down = True
            if cancel_futures:
                for entry in state.queue:
                    if isinstance(entry, _MapRun):
                        entry.stopped = cf.CancelledError()
                    else:
                        cancelled.append(entry[0])
                state.queue = deque(entry for entry in state.queue
                                    if isinstance(entry, _MapRun))
            state.condition.notify_all()
        for future in cancelled:
            future.cancel()
        if wait:
            self._feeder.join()

    def __repr__(self) -> str:
        state = self._state
        status = ("broken" if state.broken is not None
                  else "shut down" if state.is_shut_down else "running")
        return f"<{self.line}, {status}>"


# compare's model families -> the Executor kind that runs the same work on gilstudy's
# runners (the library executors' rows map to the runner that replaces them).
_KIND_OF_FAMILY = {
    "threads": "thread",
    "coprocess": "coprocess",
    "pool": "coprocess",
    "joblib": "coprocess",
    "dask": "coprocess",
    "interp": "subinterpreter",
    "interppool": "subinterpreter",
    "mpi": "mpi",
    "mpipool": "mpi",
}


def executor_line(model: str, workers: int) -> str | None:
    """The Executor line to paste for ``gilstudy compare``'s model ``model`` (as the
    report names it, "coprocess-cython" or "threads-python@3.13t") at ``workers``
    workers, or None for a model no Executor runs (serial, prange: one call).

    >>> executor_line("coprocess-cython", 2)
    "gilstudy.Executor('coprocess', max_workers=2)"
    >>> executor_line("serial-python", 1) is None
    True

    Raises ValueError for a name that is not ``family-impl`` or whose family compare does
    not have, and TypeError or ValueError for a ``workers`` that is not an int >= 1.
    """
    if not isinstance(model, str):
        raise TypeError(f"executor_line: model must be a str, got {model!r} "
                        f"({type(model).__name__})")
    _checks.positive_int("executor_line", "workers", workers)
    family, dash, impl = model.partition("@")[0].rpartition("-")
    if family == "numba":   # the Numba models name their runner last: numba-threads
        family = {"threads": "threads", "prange": "prange"}.get(impl, impl)
    if not dash:
        raise ValueError(f"executor_line: model must be a compare model name such as "
                         f"'coprocess-cython', got {model!r}")
    if family in ("serial", "prange"):
        return None
    if family not in _KIND_OF_FAMILY:
        raise ValueError(f"executor_line: model {model!r} is of no family compare has "
                         f"(known: {', '.join(sorted({'serial', 'prange', *_KIND_OF_FAMILY}))})")
    return f"gilstudy.Executor({_KIND_OF_FAMILY[family]!r}, max_workers={workers})"
