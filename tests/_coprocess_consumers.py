# Consumers for the coprocess tests. A coprocess imports its consumer's factory by name, so
# they live in a module of their own: spawn() gives the child the test process's sys.path,
# where pytest has put this directory, and the `gilstudy serve` test puts it on PYTHONPATH.

import os
import signal
import sys
import time

from gilstudy.examples import Checksum, Count, Square  # noqa: F401 (factories by name)


class Echo:
    """Returns every item; close() returns the string "closed"."""

    def send(self, item):
        return item

    def close(self):
        return "closed"


class FailOn:
    """Raises ValueError on item ``bad``; echoes the others."""

    def __init__(self, bad):
        self.bad = bad

    def send(self, item):
        if item == self.bad:
            raise ValueError(f"item {item!r} is bad")
        return item

    def close(self):
        return None


class FailOnClose:
    def send(self, item):
        return None

    def close(self):
        raise KeyError("close failed")


def broken_factory():
    raise RuntimeError("no consumer today")


class Die:
    """Ends its own process on item ``when``: "exit" (os._exit(3)), "kill" (SIGKILL) or
    "segfault" (reads address 0 through ctypes, core dumps off)."""

    def __init__(self, how, when=0):
        self.how = how
        self.when = when

    def send(self, item):
        if item != self.when:
            return item
        if self.how == "exit":
            os._exit(3)
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "segfault":
            import ctypes
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            ctypes.string_at(0)
        raise AssertionError(f"unknown way to die: {self.how!r}")

    def close(self):
        return None


class Unpicklable:
    """Returns a result that cannot be pickled."""

    def send(self, item):
        return lambda: item

    def close(self):
        return None


class Joined:
    """Joins string arguments, for the `gilstudy serve` CLI: each item comes back prefixed."""

    def __init__(self, *words):
        self.prefix = "-".join(words)

    def send(self, item):
        return f"{self.prefix}:{item}"

    def close(self):
        return None


class Blocker:
    """Returns each item, but only once the file at ``path`` exists (looked for every
    millisecond): the test decides when the coprocess may go on."""

    def __init__(self, path):
        self.path = path

    def send(self, item):
        while not os.path.exists(self.path):
            time.sleep(0.001)
        return item

    def close(self):
        return None


class ModulesLoaded:
    """close() returns the names of the modules loaded in this process."""

    def send(self, item):
        return None

    def close(self):
        return sorted(sys.modules)


class Printer:
    """Prints each item as a line on standard output; close() prints "done"."""

    def send(self, item):
        print(f"got {item}", flush=True)

    def close(self):
        print("done", flush=True)


class Recorder:
    """Appends a line to the file at ``path`` for every call, its own construction
    included: a test can tell whether anything at all reached the consumer."""

    def __init__(self, path):
        self.path = path
        self._note("init")

    def _note(self, line):
        with open(self.path, "a") as record:
            record.write(line + "\n")

    def send(self, item):
        self._note(f"send {item!r}")
        return item

    def close(self):
        self._note("close")


def refuse_to_load():
    raise RuntimeError("this item cannot be unpickled here")


class FailsToUnpickle:
    """Pickles anywhere; unpickling it raises RuntimeError."""

    def __reduce__(self):
        return refuse_to_load, ()


class StopsAt:
    """Returns items until item ``when``, then sleeps (for an hour): a coprocess that stops
    reading its input."""

    def __init__(self, when):
        self.when = when

    def send(self, item):
        if item == self.when:
            time.sleep(3600)
        return item

    def close(self):
        return None


class Shapes:
    """Returns ``(shape, dtype name, sum)`` of each numpy array it gets; close() returns
    whether every array arrived writable and in its own memory (as received arrays do)."""

    def __init__(self):
        self.all_writable = True

    def send(self, item):
        self.all_writable = self.all_writable and item.flags.writeable
        return item.shape, item.dtype.name, int(item.sum())

    def close(self):
        return self.all_writable


class Appender:
    """A results consumer for the test process itself: appends what it gets to ``into``."""

    def __init__(self, into):
        self.send = into.append


def exit_at_once():
    """A factory whose process exits (code 3) before it builds anything."""
    os._exit(3)


class Times:
    """Returns each item repeated ``count`` times (``item * count``)."""

    def __init__(self, count):
        self.count = count

    def send(self, item):
        return item * self.count

    def close(self):
        return None


class Sleepy:
    """Sleeps ``seconds`` on every item, then returns it; close() returns "closed"."""

    def __init__(self, seconds):
        self.seconds = seconds

    def send(self, item):
        time.sleep(self.seconds)
        return item

    def close(self):
        return "closed"


def build(name, arguments):
    """``name(*json.loads(arguments))`` from this module: how `gilstudy serve`, which passes
    its arguments as strings, builds any consumer here."""
    import json

    return globals()[name](*json.loads(arguments))


class IgnoresTerm(Blocker):
    """A Blocker whose process ignores SIGTERM: ending it takes EXIT_TIMEOUT and a SIGKILL,
    which leaves a test time to send Ctrl-C after Ctrl-C meanwhile. It creates the file at
    ``ready`` once SIGTERM is ignored."""

    def __init__(self, path, ready):
        super().__init__(path)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(ready, "w").close()


class ArrayEcho:
    """Returns each numpy array it gets, with what it saw of it: the SHA-256 of its bytes
    in C order, whether it lies over a mapping of shared memory (a ctypes array at the end
    of its bases, see gilstudy.shared) and whether it is writable; so a test sees both
    directions of a transfer and the data on arrival."""

    def send(self, item):
        import ctypes
        import hashlib

        import numpy

        base = item
        while isinstance(base, numpy.ndarray):
            base = base.base
        digest = hashlib.sha256(numpy.ascontiguousarray(item).tobytes()).hexdigest()
        return item, digest, isinstance(base, ctypes.Array), item.flags.writeable

    def close(self):
        return None


class Fill:
    """Writes ``value`` into every array it gets, in place, and returns its size: for
    arrays from gilstudy.shared_array, the sender sees the write."""

    def __init__(self, value):
        self.value = value

    def send(self, item):
        item[...] = self.value
        return item.nbytes

    def close(self):
        return None


class Keep:
    """Keeps every item it gets (arrays stay mapped until it is closed) and returns the
    count so far."""

    def __init__(self):
        self.items = []

    def send(self, item):
        self.items.append(item)
        return len(self.items)

    def close(self):
        return None
