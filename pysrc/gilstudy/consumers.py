"""The consumer interface (an object with send(item) and close()) and the runners that run a
consumer in this process: Inline in the caller's thread, ConsumerThread in a thread of its
own (threads() starts N of them behind a Dispatch), plus Collect, the results consumer a
caller can wait on, and @coroutine for generator consumers. Fan-out lives in
gilstudy.dispatch; runners in other processes in gilstudy.remote and gilstudy.processes.
"""

import functools
import inspect
import itertools
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from gilstudy import _checks
from gilstudy._exit_rule import ExitRule
from gilstudy.dispatch import Broadcast, Dispatch, start_runners
from gilstudy.errors import ConsumerError

__all__ = [
    "Consumer",
    "Runner",
    "Collect",
    "Inline",
    "ConsumerThread",
    "coroutine",
    "Broadcast",
    "Dispatch",
    "threads",
    "DEFAULT_MAXSIZE",
]

# Items a ConsumerThread may hold queued before send() blocks. Large enough that a producer
# and a worker sharing the GIL swap only once per few hundred items, small enough that the
# queue's memory never matters.
DEFAULT_MAXSIZE = 1024


@runtime_checkable
class Consumer(Protocol):
    """Anything with ``send(item)`` and ``close()``: the interface every execution model
    runs.

    ``send`` handles one item; ``close`` says no more items will come. What either returns,
    when it is not None, is a *result*: a runner given ``results=`` forwards it there.
    Classes, primed generators (see :func:`coroutine`) and runners are all consumers.

    >>> isinstance(Collect(), Consumer)
    True
    """

    def send(self, item: Any) -> Any:
        """Handle one item.

        Returns
        -------
        object
            A result, or None when there is none.
        """

    def close(self) -> Any:
        """No more items will come: finish, and return a last result or None."""


@runtime_checkable
class Runner(Consumer, Protocol):
    """A consumer that runs another consumer somewhere (inline, in a thread, in another
    process) and can say how much work it has in hand.

    ``pending`` counts the items sent but not yet handled; :class:`Dispatch` sends each
    item to the runner with the fewest. ``close()`` is idempotent: it waits for every item
    already sent, closes the wrapped consumer, stops the worker, then raises the worker's
    error if there was one. ``abort()`` stops the worker as soon as it can instead: items
    not yet handled are dropped, the wrapped consumer is not closed (its stream is
    incomplete) and nothing is raised.

    The exit rule, the same for every runner: a runner is a context manager; leaving the
    ``with`` block normally closes it (everything sent is delivered, a worker's error is
    raised), leaving it because the block raised aborts it, so the block's exception
    reaches the caller at once and unchanged.
    """

    @property
    def pending(self) -> int:
        """Items sent but not yet handled."""

    def abort(self) -> None:
        """Stop the worker as soon as it can: items not yet handled are dropped, the wrapped
        consumer is not closed, nothing is raised. Idempotent.
        """

    def __enter__(self) -> "Runner": ...

    def __exit__(self, *exc_info: object) -> None: ...


class Collect:
    """A consumer that keeps every item it is sent, in order, in the list ``items``, and
    that a caller can wait on.

    Meant as the ``results`` consumer of runners: several workers may send to one Collect
    at once, so ``send`` holds a lock. ``wait(count)`` blocks until ``count`` items have
    arrived; ``take(count)`` waits for them and removes them. ``close()`` does nothing and
    returns None; a Collect pickles with its items (the lock is made anew).

    >>> from gilstudy.examples import Countdown
    >>> results = Collect()
    >>> with Inline(Countdown(), results=results) as runner:
    ...     runner.send(2)
    ...     runner.send(1)
    >>> results.items
    [2, 1, 'liftoff after 2 counts']
    >>> results.take(2)
    [2, 1]
    >>> results.items
    ['liftoff after 2 counts']
    """

    def __init__(self, items: Iterable[Any] = ()):
        self.items = list(items)
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        # The counts that wait() calls wait for now, the least of them, and when the last
        # item came while one waited: send() wakes them only once the least is reached, so
        # a runner's reader thread delivering results pays for a wake-up once, not per item.
        self._wants: list[int] = []
        self._least_wanted = 0
        self._last_arrival = 0.0

    def send(self, item: Any) -> None:
        """Keep ``item`` (thread-safe) and wake whoever waits for it."""
        with self._lock:
            self.items.append(item)
            if self._wants:
                self._arrival()

    def extend(self, items: Iterable[Any]) -> None:
        """Keep every one of ``items``, in order, as that many send() calls would, under one
        lock and with one wake-up. Runners behind a framed channel deliver a frame's
        results this way to a results consumer that has ``extend``."""
        with self._lock:
            self.items.extend(items)
            if self._wants:
                self._arrival()

    def _arrival(self) -> None:
        """Items just came while a wait() waits (the lock held): note when, and wake the
        waiters once the least count one of them waits for is reached."""
        self._last_arrival = time.monotonic()
        if len(self.items) >= self._least_wanted:
            self._arrived.notify_all()

    def close(self) -> None:
        """Do nothing: a Collect has no end to announce."""
        return None

    def fail(self, exc: BaseException) -> None:
        """A runner that sends here failed with ``exc`` (gilstudy.remote calls this): a
        wait() or take() that the items already here do not satisfy raises ``exc`` now,
        instead of waiting for results that will never come."""
        with self._lock:
            self.failure = exc
            self._arrived.notify_all()

    def wait(self, count: int, timeout: float | None = None) -> None:
        """Block until at least ``count`` items have arrived. With ``timeout`` (seconds),
        raise TimeoutError once that long passes with no item arriving: a worker that keeps
        delivering is waited for however long it takes, one that went silent is not. A
        runner's failure reported through fail() is raised instead of waiting."""
        _checks.integer("Collect.wait", "count", count)
        timeout = _checks.timeout("Collect.wait", timeout)
        with self._lock:
            if len(self.items) >= count:
                return
            wants = self._wants
            wants.append(count)
            self._least_wanted = min(wants)
            try:
                self._wait_held(count, timeout)
            finally:
                wants.remove(count)
                self._least_wanted = min(wants, default=0)

    def _wait_held(self, count: int, timeout: float | None) -> None:
        seen = len(self.items)
        last_arrival = time.monotonic()
        while len(self.items) < count:
            if self.failure is not None:
                raise self.failure
            if timeout is None:
                self._arrived.wait()
                continue
            if len(self.items) > seen:
                seen = len(self.items)
                last_arrival = max(last_arrival, self._last_arrival)
            left = last_arrival + timeout - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Collect.wait: no item for {timeout:g} s "
                                   f"({len(self.items)} of {count} arrived)")
            self._arrived.wait(left)

    def take(self, count: int, timeout: float | None = None) -> list[Any]:
        """wait() for ``count`` items, then remove the first ``count`` and return them."""
        self.wait(count, timeout)
        with self._lock:
            taken, self.items[:count] = self.items[:count], []
        return taken

    def __reduce__(self):
        return (type(self), (self.items,))

    def __repr__(self) -> str:
        return f"Collect(<{len(self.items)} items>)"


class Inline(ExitRule):
    """The trivial runner: calls the consumer directly, in the caller's thread.

    ``send(item)`` returns once the consumer has handled the item, so ``pending`` is always
    0. A result (a non-None return of the consumer's ``send`` or ``close``) is forwarded to
    ``results`` when given and dropped otherwise; the runner's own ``send`` and ``close``
    return None, like every runner's.

    A consumer that raises is a ConsumerError here too, as on every runner (the rule of
    gilstudy.errors): the ``send`` or ``close`` that called it raises ConsumerError, with
    the consumer's own exception as the ``__cause__`` and the counts ``sent`` (the failing
    item included) and ``acknowledged`` (the items the consumer handled). The runner is
    then closed, its consumer unclosed. ``close()`` is idempotent; ``send`` after it raises
    ValueError. ``abort()`` marks it closed without closing the consumer.

    >>> from gilstudy.examples import Countdown
    >>> results = Collect()
    >>> runner = Inline(Countdown(), results=results)
    >>> runner.send(3)
    >>> runner.close()
    >>> results.items
    [3, 'liftoff after 1 count']
    """

    def __init__(self, consumer: Consumer, results: Consumer | None = None):
        _checks.consumer("Inline", "consumer", consumer)
        _checks.results("Inline", results)
        self._consumer = consumer
        self._results = results
        self._is_closed = False
        self._sent = 0
        self._failed = False   # the consumer's send() raised

    @property
    def consumer(self) -> Consumer:
        """The consumer this runner runs."""
        return self._consumer

    @property
    def sent(self) -> int:
        """Items passed to send() so far."""
        return self._sent

    @property
    def acknowledged(self) -> int:
        """Items the consumer has handled (all sent, but one that raised)."""
        return self._sent - 1 if self._failed else self._sent

    @property
    def results(self) -> Consumer | None:
        """Where the consumer's non-None results go, or None."""
        return self._results

    @property
    def pending(self) -> int:
        """Always 0: an item is handled before send() returns."""
        return 0

    @property
    def is_closed(self) -> bool:
        """Whether close() or abort() was called."""
        return self._is_closed

    def send(self, item: Any) -> None:
        """Send ``item`` to the consumer now, in the caller's thread, and forward its result.

        Raises
        ------
        ValueError
            After close() or abort().
        Exception
            Whatever the consumer raises, unchanged.
        """
        if self._is_closed:
            raise ValueError("send on a closed Inline runner")
        self._sent += 1
        try:
            result = self._consumer.send(item)
        except Exception as exc:
            raise self._failure("send()", exc, handled=self._sent - 1) from exc
        if result is not None and self._results is not None:
            self._results.send(result)

    def close(self) -> None:
        """Close the consumer (once) and forward its last result; idempotent."""
        if self._is_closed:
            return
        self._is_closed = True
        try:
            result = self._consumer.close()
        except Exception as exc:
            raise self._failure("close()", exc, handled=self._sent) from exc
        if result is not None and self._results is not None:
            self._results.send(result)

    def _failure(self, where: str, exc: Exception, handled: int) -> ConsumerError:
        self._is_closed = True
        self._failed = where == "send()"
        return ConsumerError(f"Inline: the consumer's {where} raised {type(exc).__name__}: "
                             f"{exc} ({self._sent} items sent, {handled} acknowledged)",
                             sent=self._sent, acknowledged=handled)

    def abort(self) -> None:
        """Mark the runner closed without closing the consumer."""
        self._is_closed = True

    def __repr__(self) -> str:
        return f"Inline({self.consumer!r})"


# Put on a ConsumerThread's queue by close(): the worker closes the consumer and returns.
_CLOSE = object()
# Put there by abort(), after every queued item was dropped: the worker returns at once,
# leaving the consumer unclosed.
_ABORT = object()


class _Handoff:
    """What the producer side and the worker thread of one ConsumerThread share.

    The worker takes items with ``deque.popleft`` without the lock (deque's append and
    popleft are atomic); the lock guards the two waits. A producer takes the lock once per
    item and notifies only when the worker is really asleep; the worker takes it only when
    it finds the deque empty or a producer waiting for room. queue.Queue, by contrast,
    takes its lock on both sides for every item and notifies every time.

    Counting: ``sent`` items went into the deque, ``handled`` came out and were finished
    (handled by the consumer, or discarded after a failure). ``sent - handled`` is at most
    ``maxsize`` queued plus the one in the worker's hands.
    """

    __slots__ = ("items", "maxsize", "lock", "not_empty", "not_full", "worker_waiting",
                 "producers_waiting", "sent", "handled", "is_stopping", "is_aborted",
                 "failure", "acknowledged", "is_failure_reported", "later_failures")

    def __init__(self, maxsize: int):
        self.items = deque()
        self.maxsize = maxsize
        self.lock = threading.Lock()
        self.not_empty = threading.Condition(self.lock)
        self.not_full = threading.Condition(self.lock)
        self.worker_waiting = False
        # Producers asleep in not_full.wait() that nobody has notified yet.
        self.producers_waiting = 0
        self.sent = 0
        self.handled = 0
        self.is_stopping = False
        self.is_aborted = False
        self.failure: tuple[str, BaseException] | None = None
        self.acknowledged = 0
        self.is_failure_reported = False
        self.later_failures: list[tuple[str, BaseException]] = []

    def wait_for_items(self) -> None:
        """Worker: sleep until the deque is not empty."""
        with self.lock:
            if self.producers_waiting:
                self.producers_waiting = 0
                self.not_full.notify_all()
            while not self.items:
                self.worker_waiting = True
                self.not_empty.wait()

    def make_room(self) -> None:
        """Worker, after taking an item off a full deque: wake one waiting producer."""
        with self.lock:
            if self.producers_waiting:
                self.producers_waiting -= 1
                self.not_full.notify()

    def stop(self, abort: bool = False) -> bool:
        """Queue the close sentinel (beyond maxsize: it is not an item) and wake every
        producer blocked for room, to be told the runner is closed. With ``abort``, first
        drop every queued item and queue the abort sentinel instead (even after a close
        began). True the first time the runner stops only."""
        with self.lock:
            first = not self.is_stopping
            if not first and (not abort or self.is_aborted):
                return False
            self.is_stopping = True
            if abort:
                self.is_aborted = True
                self.items.clear()
            self.items.append(_ABORT if abort else _CLOSE)
            if self.worker_waiting:
                self.worker_waiting = False
                self.not_empty.notify()
            if self.producers_waiting:
                self.producers_waiting = 0
                self.not_full.notify_all()
            return first

    def fail(self, where: str, exc: BaseException) -> None:
        """Worker: record that ``where`` raised ``exc``; only the first failure is raised,
        later ones become notes on it."""
        with self.lock:
            if self.failure is None:
                self.acknowledged = self.handled
                self.failure = (where, exc)
            else:
                self.later_failures.append((where, exc))


def _work(handoff: _Handoff, consumer: Consumer, results: Consumer | None) -> None:
    # The worker thread's loop. It holds no reference to the ConsumerThread, so a runner
    # that is dropped without close() can be garbage-collected, which stops this loop.
    take = handoff.items.popleft
    handle = consumer.send
    forward = None if results is None else results.send
    consumer_name = type(consumer).__name__
    results_name = type(results).__name__
    is_failed = False
    while True:
        try:
            item = take()
        except IndexError:
            handoff.wait_for_items()
            continue
        if handoff.producers_waiting:
            handoff.make_room()
        if item is _CLOSE:
            break
        if item is _ABORT:
            return
        if not is_failed:
            try:
                result = handle(item)
            except BaseException as exc:
                handoff.fail(f"{consumer_name}.send()", exc)
                is_failed = True
            else:
                if result is not None and forward is not None:
                    try:
                        forward(result)
                    except BaseException as exc:
                        handoff.fail(f"results {results_name}.send()", exc)
                        is_failed = True
        handoff.handled += 1
    try:
        summary = consumer.close()
    except BaseException as exc:
        handoff.fail(f"{consumer_name}.close()", exc)
        return
    # After a failure the consumer is still closed, so it can release what it holds, but
    # its summary describes an incomplete stream and is not forwarded.
    if summary is not None and forward is not None and not is_failed:
        try:
            forward(summary)
        except BaseException as exc:
            handoff.fail(f"results {results_name}.send()", exc)


def _abandon(handoff: _Handoff) -> None:
    handoff.stop()


class ConsumerThread(ExitRule):
    """Run any consumer in a thread of its own, fed through a bounded queue.

    The thread starts in the constructor. ``send(item)`` queues the item and returns; when
    ``maxsize`` items are already queued it blocks until the worker takes one, so a fast
    producer cannot run ahead and memory stays flat. The worker calls ``consumer.send`` on
    each item in order and forwards every non-None return to ``results`` (results calls
    come from the worker thread; see :class:`Collect` for a results consumer shared by
    several threads). ``close()`` waits until every item sent before it was handled,
    closes the consumer, forwards its non-None return, joins the thread and returns None.

    Arguments:
        consumer: the consumer to run; only the worker thread calls it.
        maxsize: how many items may wait in the queue (int >= 1).
        results: consumer for the results, or None to drop them.
        name: the thread's name (default ``ConsumerThread-N``).

    Raises TypeError or ValueError for bad arguments, naming the argument.

    Under trouble: if the consumer (or ``results``) raises, the worker records the
    exception and discards every later item, so a producer never blocks forever. The
    failure reaches the caller as :class:`~gilstudy.errors.ConsumerError`, with the
    original exception as ``__cause__`` and ``sent``/``acknowledged`` counts (items after
    ``acknowledged`` were not handled): every ``send`` after the failure raises it, and
    ``close()`` raises it unless a ``send`` already did. The consumer is still closed, but
    its close result is not forwarded. ``close()`` is idempotent; ``send`` after it raises
    ValueError. ``abort()`` drops what is queued and stops the thread after the item in its
    hands, leaving the consumer unclosed; leaving a ``with`` block on an exception aborts.
    A ConsumerThread dropped without ``close()`` stops its thread when it is
    garbage-collected; its thread is a daemon only so that a runner never closed cannot
    keep the interpreter from exiting.

    >>> from gilstudy.examples import Countdown
    >>> results = Collect()
    >>> with ConsumerThread(Countdown(), results=results) as runner:
    ...     for n in (3, 2, 1):
    ...         runner.send(n)
    >>> results.items
    [3, 2, 1, 'liftoff after 3 counts']
    """

    _numbers = itertools.count(1)

    def __init__(self, consumer: Consumer, maxsize: int = DEFAULT_MAXSIZE,
                 results: Consumer | None = None, name: str | None = None):
        _checks.consumer("ConsumerThread", "consumer", consumer)
        _checks.positive_int("ConsumerThread", "maxsize", maxsize)
        _checks.results("ConsumerThread", results)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"ConsumerThread: name must be a str or None, got {name!r} "
                            f"({type(name).__name__})")
        self._consumer = consumer
        self._results = results
        self.name = name if name is not None else f"ConsumerThread-{next(self._numbers)}"
        self._handoff = _Handoff(maxsize)
        self._thread = threading.Thread(target=_work, args=(self._handoff, consumer, results),
                                        name=self.name, daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, _abandon, self._handoff)
        self._finalizer.atexit = False

    @property
    def consumer(self) -> Consumer:
        """The consumer this runner runs (only its worker thread may call it)."""
        return self._consumer

    @property
    def results(self) -> Consumer | None:
        """Where the consumer's non-None results go, or None."""
        return self._results

    @property
    def maxsize(self) -> int:
        """How many items may wait in the queue before send() blocks."""
        return self._handoff.maxsize

    @property
    def pending(self) -> int:
        """Items sent but not yet handled: at most ``maxsize`` queued plus one in hand."""
        return self._handoff.sent - self._handoff.handled

    @property
    def sent(self) -> int:
        """Items passed to send() so far."""
        return self._handoff.sent

    @property
    def acknowledged(self) -> int:
        """Items the consumer has handled (after a failure: those handled before it)."""
        handoff = self._handoff
        return handoff.acknowledged if handoff.failure is not None else handoff.handled

    @property
    def is_closed(self) -> bool:
        """Whether close() or abort() was called."""
        return self._handoff.is_stopping

    def send(self, item: Any) -> None:
        """Queue ``item`` for the worker thread, waiting while ``maxsize`` items are queued.

        Raises
        ------
        ValueError
            After close() or abort(), or when a close() races this send and wins (the item
            is then never handled).
        gilstudy.ConsumerError
            When the consumer raised on an earlier item; its exception is the ``__cause__``.
        """
        handoff = self._handoff
        with handoff.lock:
            if handoff.is_stopping:
                raise ValueError(f"send on a closed ConsumerThread {self.name!r}")
            if handoff.failure is not None:
                raise self._reported_failure()
            if len(handoff.items) >= handoff.maxsize:
                self._wait_for_room()
            handoff.items.append(item)
            handoff.sent += 1
            if handoff.worker_waiting:
                handoff.worker_waiting = False
                handoff.not_empty.notify()

    def _wait_for_room(self) -> None:
        # Called with the lock held. The worker discards items after a failure, so room
        # always comes; the checks after each wake-up turn it into the error.
        handoff = self._handoff
        while len(handoff.items) >= handoff.maxsize:
            handoff.producers_waiting += 1
            handoff.not_full.wait()
            if handoff.is_stopping:
                raise ValueError(f"send on a closed ConsumerThread {self.name!r}")
            if handoff.failure is not None:
                raise self._reported_failure()

    def close(self) -> None:
        """Wait until every item sent is handled, close the consumer in its thread, and end the
        thread; idempotent.

        Raises
        ------
        gilstudy.ConsumerError
            When the consumer raised (on an item, or in close()) and no send() reported it yet.
        """
        handoff = self._handoff
        is_first = handoff.stop()
        self._finalizer.detach()
        self._thread.join()
        if is_first and handoff.failure is not None and not handoff.is_failure_reported:
            raise self._reported_failure()

    def abort(self) -> None:
        """Drop the items still queued and stop the thread once it has finished the item in
        its hands, without closing the consumer or raising its error; idempotent."""
        self._handoff.stop(abort=True)
        self._finalizer.detach()
        self._thread.join()

    def _reported_failure(self) -> ConsumerError:
        handoff = self._handoff
        handoff.is_failure_reported = True
        where, exc = handoff.failure
        error = ConsumerError(
            f"{self.name}: {where} raised {type(exc).__name__}: {exc} "
            f"({handoff.sent} items sent, {handoff.acknowledged} acknowledged)",
            sent=handoff.sent, acknowledged=handoff.acknowledged)
        for later_where, later in handoff.later_failures:
            error.add_note(f"then {later_where} raised {type(later).__name__}: {later}")
        error.__cause__ = exc
        return error


    def __repr__(self) -> str:
        state = "closed" if self.is_closed else f"pending={self.pending}"
        return f"<ConsumerThread {self.name!r} running {type(self.consumer).__name__}, {state}>"


def coroutine(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a generator function written as ``item = yield result`` so that calling it
    returns the generator primed (advanced to its first ``yield``): a consumer.

    The generator's ``send(item)`` returns what it yields next, a result under the
    consumer interface; its ``close()`` raises GeneratorExit at the ``yield``, so
    ``finally`` blocks run. (From Python 3.13, ``close()`` also returns what the generator
    returns on GeneratorExit; before, it returns None.) The decorated function keeps the
    original's name and docstring.

    Raises TypeError at decoration when ``function`` is not a generator function, and
    RuntimeError at the call when the generator finishes before its first ``yield``.

    >>> @coroutine
    ... def doubler():
    ...     result = None
    ...     while True:
    ...         item = yield result
    ...         result = 2 * item
    >>> doubling = doubler()
    >>> doubling.send(21)
    42
    >>> doubling.close()
    """
    if not inspect.isgeneratorfunction(function):
        name = getattr(function, "__qualname__", repr(function))
        raise TypeError(f"coroutine: {name} is not a generator function "
                        "(it must contain 'item = yield result')")

    @functools.wraps(function)
    def primed(*args: Any, **kwargs: Any):
        generator = function(*args, **kwargs)
        try:
            next(generator)
        except StopIteration:
            raise RuntimeError(f"coroutine: {function.__qualname__}() returned before its "
                               "first yield, so it cannot receive items") from None
        return generator

    return primed


def threads(factory: Callable[..., Consumer], n: int, *args: Any,
            results: Consumer | None = None, maxsize: int = DEFAULT_MAXSIZE) -> Dispatch:
    """``n`` ConsumerThreads, each running its own ``factory(*args)``, behind one Dispatch.

    Raises TypeError or ValueError when ``n`` is not an int >= 1 or ``factory`` is not
    callable; ConsumerThread checks ``maxsize`` and ``results``. Give a thread-safe
    ``results`` (such as :class:`Collect`): all ``n`` threads send to it.

    >>> from gilstudy.examples import Checksum
    >>> results = Collect()
    >>> with threads(Checksum, 2, results=results) as fan:
    ...     for n in range(100):
    ...         fan.send(n)
    >>> sum(count for count, _ in results.items)
    100
    """
    _checks.positive_int("threads", "n", n)
    if not callable(factory):
        raise TypeError(f"threads: factory must be callable, got {factory!r} "
                        f"({type(factory).__name__})")
    return start_runners(lambda index: ConsumerThread(factory(*args), results=results,
                                                      maxsize=maxsize), n, owner="threads")
