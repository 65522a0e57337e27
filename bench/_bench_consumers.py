# Consumers and process targets for bench_coprocess.py, in a module of their own so that a
# coprocess (or a multiprocessing child) can import them by name: pytest puts this directory
# on sys.path and spawn() passes sys.path on. (Count and Square are gilstudy.examples'.)


def square(item):
    index, x = item
    return index, x * x


class Started:
    """Answers its first item, to time how long a coprocess takes to start."""

    def send(self, item):
        return item

    def close(self):
        return None


def count_from_queue(items, counts):
    """multiprocessing target: put "ready", count what ``items`` delivers until None, then
    put the count."""
    counts.put("ready")
    count = 0
    get = items.get
    while get() is not None:
        count += 1
    counts.put(count)


def nothing():
    pass


class Bytes:
    """Returns the size of each numpy array it gets (so the sender learns when it arrived)
    and whether it arrived writable; close() returns the total size."""

    def __init__(self):
        self.total = 0

    def send(self, item):
        self.total += item.nbytes
        return item.nbytes, item.flags.writeable

    def close(self):
        return self.total


class Pages:
    """Reads one byte of every page of each array it gets (so its mapping is faulted in, as a
    consumer that uses the data would) and returns the size and that byte sum."""

    def send(self, item):
        flat = item.reshape(-1).view("u1")
        return item.nbytes, int(flat[::4096].sum(dtype="u8"))

    def close(self):
        return None


class Arrival:
    """Returns when each array reached it (time.perf_counter(), one clock for every process
    on Linux) and its size."""

    def send(self, item):
        import time

        return time.perf_counter(), item.nbytes

    def close(self):
        return None


class Tally:
    """Counts its items; close() returns the count. gilstudy.examples.Count does the same,
    but stream_rate.py also runs under older commits, whose gilstudy has no Count."""

    def __init__(self):
        self.count = 0

    def send(self, item):
        self.count += 1

    def close(self):
        return self.count


def spin(seed, steps):
    """About 0.15 ms of pure Python at 2,600 steps on the 2-core machine: a short item."""
    total = 0
    for k in range(steps):
        total += (seed * k) % 7
    return total


class Spin:
    """Runs spin() on each (index, seed, steps) item and returns (index, its value)."""

    def send(self, item):
        index, seed, steps = item
        return index, spin(seed, steps)

    def close(self):
        return None
