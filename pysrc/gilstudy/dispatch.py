"""Fan-out on the producer's side: Dispatch gives each item to one of several consumers (the
least loaded), Broadcast gives every item to all of them, and start_runners() is the one
way to start N runners of any kind (threads, coprocesses, and whatever runs the far-side
loop next) and put them behind a Dispatch.
"""

import heapq
import threading
from typing import Any, Callable, Iterable

from gilstudy import _checks
from gilstudy._exit_rule import ExitRule

__all__ = ["Dispatch", "Broadcast", "start_runners", "close_all", "abort_all"]


def close_all(owner: str, consumers: Iterable) -> None:
    """Close every consumer even if some raise; then raise the first error, with a note
    naming each later one."""
    errors = []
    for index, consumer in enumerate(consumers):
        try:
            consumer.close()
        except Exception as exc:
            errors.append((index, exc))
    _raise_first(owner, "close", errors)


def abort_all(consumers: Iterable) -> None:
    """Abort every consumer that can be aborted (runners: work not yet handled is dropped,
    the wrapped consumer is left unclosed); leave plain consumers as they are. Never
    raises: this runs while another error is on its way to the caller."""
    for consumer in consumers:
        abort = getattr(consumer, "abort", None)
        if callable(abort):
            try:
                abort()
            except Exception:
                pass  # the error already on its way is the one to report


def _raise_first(owner: str, method: str, errors: list[tuple[int, Exception]]) -> None:
    if not errors:
        return
    (_, first), *later = errors
    for index, exc in later:
        first.add_note(f"{owner}: consumers[{index}].{method}() also raised "
                       f"{type(exc).__name__}: {exc}")
    raise first


def _consumer_tuple(owner: str, consumers: Iterable) -> tuple:
    if _checks.is_consumer(consumers):
        raise TypeError(f"{owner}: consumers must be an iterable of consumers, got the "
                        f"single consumer {consumers!r}; pass [consumer]")
    try:
        consumers = tuple(consumers)
    except TypeError:
        raise TypeError(f"{owner}: consumers must be an iterable of consumers, got "
                        f"{consumers!r} ({type(consumers).__name__})") from None
    for index, consumer in enumerate(consumers):
        _checks.consumer(owner, f"consumers[{index}]", consumer)
    return consumers


class _FanOut(ExitRule):
    """What Dispatch and Broadcast share: the consumers, the closed flag, close() that
    closes them all, and the exit rule of every runner: leaving a ``with`` block normally
    closes (delivering everything sent), leaving it on an exception aborts."""

    _owner = "fan-out"

    def __init__(self):
        self._is_closed = False
        # (index, runner) whose close(timeout=) stalled: a later close() or abort() ends them.
        self._stalled: list = []

    @property
    def is_closed(self) -> bool:
        return self._is_closed

    def _consumers_now(self) -> tuple:
        raise NotImplementedError

    def _mark_closed(self) -> bool:
        """Mark closed; True the first time only."""
        if self._is_closed:
            return False
        self._is_closed = True
        return True

    def close(self, timeout: float | None = None) -> None:
        """Close every consumer even if some raise, then raise the first error unchanged
        except for one note per later error naming the consumer's index; idempotent.

        With ``timeout`` (seconds), as on one runner: each runner whose close() takes a
        timeout (coprocesses, connections, MPI ranks, subinterpreters) gets it, and one
        whose worker makes no progress for that long raises CoprocessStalled (a
        TimeoutError) and is left as it is, while the others are closed. A later close()
        tries the stalled ones again (and ends them), abort() ends them at once. Other
        consumers (threads, plain consumers) are closed without a bound."""
        if timeout is not None:
            timeout = _checks.timeout(f"{self._owner}.close", timeout)
        if self._mark_closed():
            left = list(enumerate(self._consumers_now()))
        else:
            left, self._stalled = self._stalled, []
        errors, stalled = [], []
        for index, consumer in left:
            try:
                _close_within(consumer, timeout)
            except Exception as exc:
                errors.append((index, exc))
                if isinstance(exc, TimeoutError):
                    stalled.append((index, consumer))
        self._stalled = stalled
        _raise_first(self._owner, "close", errors)

    def flush(self) -> None:
        """Have every consumer that batches (one with ``flush()``: coprocesses, server
        connections, MPI ranks, subinterpreters) write what it holds now rather than within
        its flush interval: for a producer that sent its last item for a while and now
        waits for results. Consumers without ``flush()`` are left alone. The first error
        is raised once every consumer was asked, as for close().

        Raises
        ------
        ValueError
            After close().
        """
        if self._is_closed:
            raise ValueError(f"flush on a closed {self._owner}")
        errors = []
        for index, consumer in enumerate(self._consumers_now()):
            flush = getattr(consumer, "flush", None)
            if flush is None:
                continue
            try:
                flush()
            except Exception as exc:
                errors.append((index, exc))
        _raise_first(self._owner, "flush", errors)

    def abort(self) -> None:
        """Abort every runner among the consumers now (see abort_all), a runner whose
        close(timeout=) stalled included; idempotent, never raises. Plain consumers are
        left unclosed: their stream is incomplete."""
        if self._mark_closed():
            abort_all(self._consumers_now())
        elif self._stalled:
            left, self._stalled = self._stalled, []
            abort_all(consumer for _, consumer in left)


def _close_within(consumer, timeout: float | None) -> None:
    """``consumer.close(timeout=timeout)`` if its close() takes a timeout, else close()."""
    close = consumer.close
    if timeout is not None:
        code = getattr(getattr(close, "__func__", close), "__code__", None)
        if code is not None and "timeout" in code.co_varnames[:code.co_argcount
                                                             + code.co_kwonlyargcount]:
            close(timeout=timeout)
            return
    close()



class Broadcast(_FanOut):
    """Producer-side fan-out: every item goes to every registered consumer, in the order
    they were registered.

    Consumers may be registered and unregistered at any time, even while another thread
    is sending (a send goes to the consumers registered when it began). ``send`` returns
    None; to keep results, register runners that have ``results=``.

    Raises TypeError when registering a non-consumer, ValueError when registering one
    twice, unregistering one that is not registered, or using a closed Broadcast. If some
    consumers raise in ``send`` or ``close``, the others still get the call; then the first
    error is raised unchanged except for one note (``__notes__``) per later error naming
    the consumer's index. ``close()`` is idempotent.

    >>> from gilstudy.consumers import Collect
    >>> first, second = Collect(), Collect()
    >>> with Broadcast([first]) as everyone:
    ...     everyone.send("a")
    ...     everyone.register(second)
    ...     everyone.send("b")
    >>> first.items, second.items
    (['a', 'b'], ['b'])
    """

    _owner = "Broadcast"

    def __init__(self, consumers: Iterable = ()):
        super().__init__()
        self._lock = threading.Lock()
        # Replaced, never mutated, so a send can iterate it without the lock.
        self._consumers: tuple = ()
        for consumer in _consumer_tuple("Broadcast", consumers):
            self.register(consumer)

    @property
    def consumers(self) -> tuple:
        """The registered consumers, in the order they were registered."""
        return self._consumers

    def _consumers_now(self) -> tuple:
        return self._consumers

    def _mark_closed(self) -> bool:
        with self._lock:
            return super()._mark_closed()

    def register(self, consumer) -> None:
        """Send every later item to ``consumer`` too.

        Raises
        ------
        TypeError
            When ``consumer`` has no ``send`` or ``close``.
        ValueError
            After close(), or when ``consumer`` is registered already.
        """
        _checks.consumer("Broadcast.register", "consumer", consumer)
        with self._lock:
            if self._is_closed:
                raise ValueError("register on a closed Broadcast")
            if any(known is consumer for known in self._consumers):
                raise ValueError(f"Broadcast.register: {consumer!r} is already registered")
            self._consumers = (*self._consumers, consumer)

    def unregister(self, consumer) -> None:
        """Stop sending to ``consumer``; the caller still owns it (it is not closed)."""
        with self._lock:
            remaining = tuple(known for known in self._consumers if known is not consumer)
            if len(remaining) == len(self._consumers):
                raise ValueError(f"Broadcast.unregister: {consumer!r} is not registered")
            self._consumers = remaining

    def send(self, item: Any) -> None:
        """Send ``item`` to every registered consumer.

        Raises
        ------
        ValueError
            After close().
        """
        if self._is_closed:
            raise ValueError("send on a closed Broadcast")
        errors = []
        for index, consumer in enumerate(self._consumers):
            try:
                consumer.send(item)
            except Exception as exc:
                errors.append((index, exc))
        _raise_first("Broadcast", "send", errors)

    def __repr__(self) -> str:
        return f"Broadcast(<{len(self._consumers)} consumers>)"


class _Tally:
    """The load of a consumer without ``pending``: how many items Dispatch gave it."""

    __slots__ = ("_dispatched", "_index")

    def __init__(self, dispatched: list, index: int):
        self._dispatched = dispatched
        self._index = index

    @property
    def pending(self) -> int:
        return self._dispatched[self._index]


# Up to this many consumers Dispatch reads every load on every send and takes the least (a
# scan: at this size cheaper than keeping the heap); beyond, it keeps a heap of the loads
# and re-reads this many per send besides the chosen one, taking the consumers in turn
# (see Dispatch).
_READ_ALL_UP_TO = 8
_REFRESH_PER_SEND = 2


class Dispatch(_FanOut):
    """Give each item to exactly one of several consumers: the least loaded.

    This is the one fan-out mechanism for every runner type: threads, coprocesses, server
    connections, MPI ranks and whatever start_runners() starts go through it. A consumer's
    load is its ``pending`` when it has one (runners do); otherwise it is the number of
    items Dispatch gave it, which makes plain consumers take turns (round-robin). Each
    ``send`` picks the smallest load, ties going to the lowest index, so a runner stuck on a
    long item gets no more until the others catch up. ``send`` returns what the chosen
    consumer's ``send`` returned (None for runners, which forward results themselves).

    With 8 consumers or fewer, each send reads every load and takes the least. Beyond, the
    choice costs O(log N) for N consumers, not a scan of every load: Dispatch keeps a
    heap of the loads as it last read them. On each send it re-reads the load at the top of
    the heap until the one read matches the one kept (that consumer is chosen; the one chosen
    last is always re-read, as its item raised its load), and re-reads 2 other loads,
    taking the consumers in turn. What that guarantees:

    - With 8 consumers or fewer, or whenever loads change only through Dispatch's own sends
      (plain consumers; runners whose workers finished nothing since), the choice is
      exactly the scan's: the least load, ties to the lowest index.
    - When loads also fall behind its back (workers finish items in other threads), the
      chosen consumer's load, read during this send, is at most every other consumer's load
      as last read, and below that of every lower index; and every load is read at least
      once every ceil(N / 2) sends. So a worker that drained its queue is seen within N / 2
      sends: when the producer keeps up with N workers whose items take T seconds, sends
      come about N / T a second, and that is within about T / 2.

    Arguments:
        consumers: a non-empty iterable of consumers.

    Attributes:
        consumers: the consumers, as a tuple.
        dispatched: how many items went to each consumer (a list, by index).

    Raises TypeError for a non-iterable or a non-consumer in ``consumers`` (naming its
    index) and ValueError for an empty one, or for ``send`` after ``close()``.

    ``close()`` closes every consumer even if some raise, then raises the first error
    unchanged except for one note (``__notes__``) per later error naming the consumer's
    index, so ``except ConsumerError`` still works. (An ExceptionGroup would force every
    caller to use ``except*``.) ``close()`` is idempotent. ``abort()`` aborts every
    runner at once. Leaving a ``with`` block closes, or aborts when the block raised.
    Dispatch expects one producer thread; a failed runner keeps raising from its
    ``send``, so a producer stops at the first failure.

    Plain consumers take turns:

    >>> from gilstudy.consumers import Collect
    >>> left, right = Collect(), Collect()
    >>> with Dispatch([left, right]) as fan:
    ...     for n in range(5):
    ...         fan.send(n)
    >>> fan.dispatched
    [3, 2]
    >>> left.items, right.items
    ([0, 2, 4], [1, 3])

    Inline runners are never loaded (``pending`` is 0: each item is handled before ``send``
    returns), so the first one gets every item; threads share uneven work (see
    :func:`gilstudy.consumers.threads`).
    """

    _owner = "Dispatch"

    def __init__(self, consumers: Iterable):
        super().__init__()
        consumers = _consumer_tuple("Dispatch", consumers)
        if not consumers:
            raise ValueError("Dispatch: consumers must not be empty")
        self.consumers = consumers
        self.dispatched = [0] * len(consumers)
        # Where each load is read, as ``.pending``: the consumer itself, or its tally.
        self._sources = [consumer if hasattr(consumer, "pending") else _Tally(self.dispatched, index)
                         for index, consumer in enumerate(consumers)]
        # Each consumer's load as last read, kept as one int key, load * N + index, so that
        # keys order as (load, index) pairs do but compare several times faster; and a heap
        # of keys. A key in the heap that is no longer the one kept for its index is stale:
        # it is dropped when it reaches the top, and the heap is rebuilt when they pile up.
        self._count = len(consumers)
        self._kept = [self._key(index, source.pending)
                      for index, source in enumerate(self._sources)]
        self._heap: list[int] = []
        self._rebuild()
        self._next_refresh = 0
        self._refresh_count = _REFRESH_PER_SEND   # the heap is used past _READ_ALL_UP_TO only
        # Only loads that keep changing while a choice is made (another thread sending to
        # the same runners) could make it long: past this many reads, it takes the top.
        self._max_reads = 2 * self._count + 2
        self._scan = self._count <= _READ_ALL_UP_TO
        self._first_source = self._sources[0]
        self._sends = tuple(consumer.send for consumer in consumers)
        self._other_sources = tuple(enumerate(self._sources))[1:]

    def _key(self, index: int, load) -> int:
        if type(load) is not int:
            raise TypeError(f"Dispatch: consumers[{index}].pending must be an int, got "
                            f"{type(load).__name__} ({load!r})")
        return load * self._count + index

    def _rebuild(self) -> None:
        self._heap = list(self._kept)
        heapq.heapify(self._heap)

    def _consumers_now(self) -> tuple:
        return self.consumers

    def send(self, item: Any) -> Any:
        """Send ``item`` to the least loaded consumer (the smallest ``pending``, ties to the
        lowest index) and return what its ``send`` returned.

        Raises
        ------
        ValueError
            After close().
        Exception
            What the chosen consumer's ``send`` raises.
        """
        if self._is_closed:
            raise ValueError("send on a closed Dispatch")
        if self._scan:
            index = 0
            try:
                least = self._first_source.pending
                if type(least) is not int:
                    raise TypeError
                for other, source in self._other_sources:
                    load = source.pending
                    if type(load) is not int:
                        raise TypeError
                    if load < least:
                        least, index = load, other
            except TypeError:
                self._check_loads()
                raise
            self.dispatched[index] += 1
            return self._sends[index](item)
        # Written out in one method: at 10,000 consumers a call costs a tenth of the choice.
        # A load that changed and is not an int raises a bare TypeError here, which
        # _check_loads() turns into one naming the consumer.
        sources, kept, heap, count = self._sources, self._kept, self._heap, self._count
        try:
            # Re-read the next few loads in turn; push those that changed.
            index = self._next_refresh
            for _ in range(self._refresh_count):
                load = sources[index].pending
                key = load * count + index
                if key != kept[index]:
                    if type(load) is not int:
                        raise TypeError
                    kept[index] = key
                    heapq.heappush(heap, key)
                index += 1
                if index == count:
                    index = 0
            self._next_refresh = index
            if len(heap) > 2 * count + self._refresh_count:
                self._rebuild()
                heap = self._heap
            # Take the top of the heap once its load, read now, is the one kept. The last
            # chosen consumer's key is still the one from before its item: it is re-read
            # here, as the top, rather than right after its send (one read fewer).
            reads_left = self._max_reads
            while True:
                key = heap[0]
                index = key % count
                if key != kept[index]:
                    heapq.heappop(heap)  # stale
                    continue
                load = sources[index].pending
                now = load * count + index
                reads_left -= 1
                if now == key or not reads_left:
                    break
                if type(load) is not int:
                    raise TypeError
                kept[index] = now
                heapq.heapreplace(heap, now)
        except TypeError:
            self._check_loads()
            raise
        self.dispatched[index] += 1
        return self.consumers[index].send(item)

    def _check_loads(self) -> None:
        """After a TypeError while choosing: raise _key()'s TypeError for the first load
        that is not an int; if there is none, the caller re-raises the original."""
        for index, source in enumerate(self._sources):
            self._key(index, source.pending)

    def __repr__(self) -> str:
        return f"Dispatch(<{len(self.consumers)} consumers>, dispatched={self.dispatched})"


def start_runners(start_one: Callable[[int], Any], n: int,
                  owner: str = "start_runners") -> Dispatch:
    """Start ``n`` runners with ``start_one(index)`` (index 0 .. n-1) and return them
    behind one Dispatch: the one way every kind of runner is started in numbers.

    ``start_one`` returns a started runner (a consumer with ``pending``, ``close()`` and,
    to be stopped at once on trouble, ``abort()``): a ConsumerThread, a spawned coprocess,
    a connection to a server, or a runner of another kind. If starting one raises (Ctrl-C
    included), the runners already started are aborted, in reverse order, and the error is
    raised; nothing is left running. ``owner`` names the caller in argument errors.

    >>> from gilstudy.consumers import Collect, ConsumerThread
    >>> from gilstudy.examples import Checksum
    >>> results = Collect()
    >>> with start_runners(lambda index: ConsumerThread(Checksum(), results=results), 2) as fan:
    ...     for n in range(10):
    ...         fan.send(n)
    >>> sorted(count for count, _ in results.items) == sorted(fan.dispatched)
    True
    """
    _checks.positive_int(owner, "n", n)
    if not callable(start_one):
        raise TypeError(f"{owner}: start_one must be callable, got {start_one!r} "
                        f"({type(start_one).__name__})")
    runners = []
    try:
        for index in range(n):
            runners.append(start_one(index))
        return Dispatch(runners)
    except BaseException:
        abort_all(reversed(runners))
        raise
