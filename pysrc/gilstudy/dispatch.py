# Fan-out on the producer's side: Dispatch gives each item to one of several consumers (the
# least loaded), Broadcast gives every item to all of them, and start_runners() is the one
# way to start N runners of any kind (threads, coprocesses, and whatever runs the far-side
# loop next) and put them behind a Dispatch.

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

    def close(self) -> None:
        """Close every consumer even if some raise, then raise the first error unchanged
        except for one note per later error naming the consumer's index; idempotent."""
        if self._mark_closed():
            close_all(self._owner, self._consumers_now())

    def abort(self) -> None:
        """Abort every runner among the consumers now (see abort_all); idempotent, never
        raises. Plain consumers are left unclosed: their stream is incomplete."""
        if self._mark_closed():
            abort_all(self._consumers_now())



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
        return self._consumers

    def _consumers_now(self) -> tuple:
        return self._consumers

    def _mark_closed(self) -> bool:
        with self._lock:
            return super()._mark_closed()

    def register(self, consumer) -> None:
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


class Dispatch(_FanOut):
    """Give each item to exactly one of several consumers: the least loaded.

    This is the one fan-out mechanism for every runner type: threads, coprocesses, server
    connections and whatever start_runners() starts go through it. A consumer's load is
    its ``pending`` when it has one (runners do); otherwise it is the number of items
    Dispatch gave it, which makes plain consumers take turns (round-robin). Each ``send``
    picks the smallest load, ties going to the lowest index, so a runner stuck on a long
    item gets no more until the others catch up. ``send`` returns what the chosen
    consumer's ``send`` returned (None for runners, which forward results themselves).

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
        # One load function per consumer, chosen once: its pending count, or its tally.
        self._loads = [self._load_of(index, consumer) for index, consumer in enumerate(consumers)]

    def _load_of(self, index: int, consumer) -> Callable[[], int]:
        if hasattr(consumer, "pending"):
            return lambda: consumer.pending
        return lambda: self.dispatched[index]

    def _consumers_now(self) -> tuple:
        return self.consumers

    def send(self, item: Any) -> Any:
        if self._is_closed:
            raise ValueError("send on a closed Dispatch")
        loads = [load() for load in self._loads]
        index = loads.index(min(loads))
        self.dispatched[index] += 1
        return self.consumers[index].send(item)

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
