"""Argument checks shared across the package, so that every entry point rejects a bad value
with the same exception and the same words: the caller, the argument, the rule, the value.
Each check returns the value it accepted (converted where the rule says so).
"""

import ctypes
import operator

__all__ = ["LONG_MAX", "integer", "positive_int", "timeout", "seconds", "max_frame",
           "consumer", "results", "is_consumer", "MIN_FRAME"]

LONG_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_long) - 1) - 1

# The smallest frame limit an end may announce or accept: a HELLO and an ERROR must fit.
MIN_FRAME = 1024
# The largest: the frame header holds the length in 8 bytes.
MAX_FRAME_LIMIT = 2**64 - 1


def integer(owner: str, name: str, value, minimum: int | None = 0,
            maximum: int | None = LONG_MAX, limit_name: str = "a C long") -> int:
    """Return ``value`` as an int in [minimum, maximum] (either bound None: none), or raise
    TypeError, ValueError (below ``minimum``) or OverflowError (above ``maximum``, which
    ``limit_name`` names).

    Anything with ``__index__`` counts as an integer (numpy integers do), except bool: a
    flag passed where a count belongs is a mistake, never 0 or 1.

    >>> integer("threads", "n", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: threads: n must be >= 1, got 0
    """
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} "
                        f"({value!r})")
    value = operator.index(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise OverflowError(f"{owner}: {name} must fit in {limit_name} (<= {maximum}), "
                            f"got {value}")
    return value


def positive_int(owner: str, name: str, value) -> int:
    """``value`` as an int >= 1 (counts: workers, items, repeats, queue sizes)."""
    return integer(owner, name, value, minimum=1, maximum=None)


def timeout(owner: str, value, name: str = "timeout") -> float | None:
    """A timeout in seconds: None (wait as long as it takes) or a finite number > 0."""
    if value is None:
        return None
    return _seconds(owner, name, value, "a positive number of seconds or None")


def seconds(owner: str, name: str, value) -> float:
    """A duration in seconds that must be given: a finite number > 0 (None is refused)."""
    return _seconds(owner, name, value, "a positive, finite number of seconds")


def _seconds(owner: str, name: str, value, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a number of seconds" + (" or None" if rule.endswith("None") else "")
        raise TypeError(f"{owner}: {name} must be {kind}, got {type(value).__name__} "
                        f"({value!r})")
    if not 0 < value < float("inf"):
        raise ValueError(f"{owner}: {name} must be {rule}, got {value!r}")
    return float(value)


def max_frame(owner: str, value) -> int:
    """A frame limit in bytes: an int from MIN_FRAME up to what a frame header can hold."""
    return integer(owner, "max_frame", value, minimum=MIN_FRAME, maximum=MAX_FRAME_LIMIT,
                   limit_name="a frame header's 8-byte length")


def is_consumer(obj: object) -> bool:
    """Whether ``obj`` has callable ``send`` and ``close``: the consumer interface."""
    return callable(getattr(obj, "send", None)) and callable(getattr(obj, "close", None))


def consumer(owner: str, name: str, obj):
    """``obj`` if it is a consumer, else TypeError naming the argument."""
    if not is_consumer(obj):
        raise TypeError(f"{owner}: {name} must be a consumer (an object with send() and "
                        f"close()), got {obj!r} ({type(obj).__name__})")
    return obj


def results(owner: str, obj):
    """``obj`` if it can receive results (a callable ``send``; runners never close it), or
    None; else TypeError."""
    if obj is not None and not callable(getattr(obj, "send", None)):
        raise TypeError(f"{owner}: results must have a send() method (a consumer such as "
                        f"Collect), got {obj!r} ({type(obj).__name__})")
    return obj
