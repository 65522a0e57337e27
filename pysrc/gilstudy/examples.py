"""Small consumers for examples, tests and benchmarks: Countdown announces each number it is
sent; Checksum folds a stream into (count, checksum) so a test can prove that no item was
lost, repeated or reordered on the way, in this process or in another; Count only counts
(the cheapest consumer, for timing a handoff); Square is the tiniest task with a result.
"""

import zlib
from typing import Any, Iterable

from gilstudy.consumers import coroutine

__all__ = ["Countdown", "countdown", "Checksum", "Count", "Square"]


class Countdown:
    """Announce each number it is sent, like a launch controller: ``send(n)`` records the
    line ``"T-minus n"`` in ``lines`` (and prints it when ``echo`` is true) and returns
    ``n``; ``close()`` returns a summary such as ``"liftoff after 3 counts"``.

    It holds only plain data, so it pickles and can be rebuilt in another process.

    >>> countdown = Countdown(echo=True)
    >>> countdown.send(2)
    T-minus 2
    2
    >>> countdown.close()
    'liftoff after 1 count'
    """

    def __init__(self, echo: bool = False):
        self.echo = echo
        self.lines: list[str] = []

    def send(self, n: int) -> int:
        line = f"T-minus {n}"
        self.lines.append(line)
        if self.echo:
            print(line)
        return n

    def close(self) -> str:
        return _liftoff(len(self.lines))

    def __repr__(self) -> str:
        return f"Countdown(echo={self.echo!r})"


def _liftoff(count: int) -> str:
    return f"liftoff after {count} count{'' if count == 1 else 's'}"


@coroutine
def countdown(echo: bool = False):
    """Countdown written as a coroutine: sending ``n`` yields ``n`` back and records the
    line ``"T-minus n"`` (printed when ``echo`` is true); closing prints the summary when
    ``echo`` is true.

    >>> counting = countdown(echo=True)
    >>> counting.send(1)
    T-minus 1
    1
    >>> counting.close()
    liftoff after 1 count
    """
    count = 0
    n = None
    try:
        while True:
            n = yield n
            count += 1
            if echo:
                print(f"T-minus {n}")
    finally:
        if echo:
            print(_liftoff(count))


# Folding the CRC-32 of each item's repr (rather than one CRC over the concatenation) keeps
# item boundaries: (1, 23) and (12, 3) give different checksums.
_MULTIPLIER = 1_000_003
_MASK = (1 << 64) - 1


class Checksum:
    """Count the items sent and fold them into an order-sensitive 64-bit checksum;
    ``close()`` returns ``(count, checksum)``.

    Two streams agree when they had the same items (compared by ``repr``) in the same
    order, so the checksum must be computed from items whose repr is the same in every
    process: numbers, strings, bytes, and tuples or lists of them (not sets of strings,
    whose order varies between processes). It catches loss, duplication and reordering, not
    tampering. ``Checksum.of(items)`` gives the expected pair; ``send`` returns None. It
    pickles with its running state.

    >>> checksum = Checksum()
    >>> for item in [(0, 1), (1, 2)]:
    ...     checksum.send(item)
    >>> checksum.close() == Checksum.of([(0, 1), (1, 2)])
    True
    >>> Checksum.of([(0, 1), (1, 2)]) == Checksum.of([(1, 2), (0, 1)])
    False
    """

    def __init__(self, count: int = 0, checksum: int = 0):
        self.count = count
        self.checksum = checksum

    def send(self, item: Any) -> None:
        self.checksum = (self.checksum * _MULTIPLIER ^ zlib.crc32(repr(item).encode())) & _MASK
        self.count += 1

    def close(self) -> tuple[int, int]:
        return self.count, self.checksum

    @classmethod
    def of(cls, items: Iterable[Any]) -> tuple[int, int]:
        """The ``(count, checksum)`` that a Checksum sent ``items`` returns on close."""
        checksum = cls()
        for item in items:
            checksum.send(item)
        return checksum.close()

    def __reduce__(self):
        return (type(self), (self.count, self.checksum))

    def __repr__(self) -> str:
        return f"Checksum(count={self.count}, checksum={self.checksum:#x})"


class Count:
    """Only counts the items it is sent; ``close()`` returns the count. The cheapest useful
    consumer: what a benchmark of a runner measures is then the runner's own cost.

    >>> count = Count()
    >>> for item in "abc":
    ...     count.send(item)
    >>> count.close()
    3
    """

    def __init__(self):
        self.count = 0

    def send(self, item: Any) -> None:
        self.count += 1

    def close(self) -> int:
        return self.count


class Square:
    """The tiniest task that has a result: ``send((index, x))`` returns ``(index, x * x)``,
    so results that come back out of order can be put back in it.

    >>> Square().send((3, 7))
    (3, 49)
    """

    def send(self, item: tuple[int, Any]) -> tuple[int, Any]:
        index, x = item
        return index, x * x

    def close(self) -> None:
        return None
