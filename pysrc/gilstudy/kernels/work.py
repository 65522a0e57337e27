"""A consumer that runs one kernel on every item it is sent: the unit of work that every
execution model moves around. Items are ``(index, args)`` pairs and results come back as
``(index, result)``, so a producer can put results from many workers back in order.
"""

from gilstudy.kernels import get

__all__ = ["KernelConsumer"]


class KernelConsumer:
    """Run kernel ``name`` in implementation ``impl`` on each item.

    ``send((index, args))`` computes ``kernel(*args)`` and returns ``(index, result)``;
    a runner forwards that return value to its ``results`` consumer. The instance holds
    only the two names, so it pickles cheaply and can be rebuilt in another process.

    >>> KernelConsumer("count_primes", "cython").send((7, (0, 100)))
    (7, 25)
    """

    def __init__(self, name: str, impl: str = "python"):
        self.name = name
        self.impl = impl
        self._kernel = get(name, impl)

    def send(self, item: tuple[int, tuple]) -> tuple[int, object]:
        index, args = item
        return index, self._kernel(*args)

    def close(self) -> None:
        return None

    def __reduce__(self):
        return (type(self), (self.name, self.impl))

    def __repr__(self) -> str:
        return f"KernelConsumer({self.name!r}, {self.impl!r})"
