# start_runners(), the one way N runners of any kind are started, and the exit rule of the
# fan-outs: what is started, what is undone when a start fails, and what a with block does
# on a normal exit and on an exception; and what Dispatch's O(log N) choice guarantees,
# against the plain scan of every load. (Dispatch's and Broadcast's delivery rules are
# specified in test_consumers.py.)

import random
import threading

import pytest

from gilstudy.consumers import Collect, ConsumerThread
from gilstudy.dispatch import Broadcast, Dispatch, start_runners
from gilstudy.examples import Checksum

TIMEOUT = 30


pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


class Recorded:
    """A runner stand-in that records what happens to it in ``events`` (shared)."""

    def __init__(self, index: int, events: list):
        self.index = index
        self.events = events
        self.pending = 0

    def send(self, item):
        self.events.append(("send", self.index, item))

    def close(self):
        self.events.append(("close", self.index))

    def abort(self):
        self.events.append(("abort", self.index))


def test_start_runners_starts_n_runners_in_order_behind_one_dispatch():
    events = []
    fan = start_runners(lambda index: Recorded(index, events), 3)
    assert isinstance(fan, Dispatch)
    assert [runner.index for runner in fan.consumers] == [0, 1, 2]
    fan.close()
    assert events == [("close", 0), ("close", 1), ("close", 2)]


def test_a_failed_start_aborts_the_runners_already_started_last_first_and_raises():
    events = []

    def start_one(index):
        if index == 2:
            raise OSError("no more processes")
        return Recorded(index, events)

    with pytest.raises(OSError, match=r"^no more processes$"):
        start_runners(start_one, 4)
    assert events == [("abort", 1), ("abort", 0)]


@pytest.mark.timeout(TIMEOUT)
def test_a_failed_start_leaves_no_thread_running():
    def start_one(index):
        if index == 1:
            raise KeyboardInterrupt
        return ConsumerThread(Checksum())

    with pytest.raises(KeyboardInterrupt):
        start_runners(start_one, 3)


@pytest.mark.timeout(TIMEOUT)
def test_start_runners_delivers_every_item_once_through_real_threads():
    results = Collect()
    with start_runners(lambda index: ConsumerThread(Checksum(), results=results), 3) as fan:
        for item in range(3000):
            fan.send(item)
    assert sum(count for count, _ in results.items) == 3000
    assert sorted(count for count, _ in results.items) == sorted(fan.dispatched)


@pytest.mark.parametrize("n, error, message", [
    (0, ValueError, r"^workers: n must be >= 1, got 0$"),
    (2.0, TypeError, r"^workers: n must be an int, got float \(2\.0\)$"),
    (True, TypeError, r"^workers: n must be an int, got bool \(True\)$"),
], ids=["zero", "float", "bool"])
def test_start_runners_rejects_a_bad_count_naming_its_caller(n, error, message):
    with pytest.raises(error, match=message):
        start_runners(lambda index: Collect(), n, owner="workers")


def test_start_runners_rejects_a_start_one_that_is_not_callable():
    with pytest.raises(TypeError, match=r"^start_runners: start_one must be callable, got 3 "
                                        r"\(int\)$"):
        start_runners(3, 2)


@pytest.mark.parametrize("fan_out", [Dispatch, Broadcast])
def test_a_fan_out_left_normally_closes_every_consumer(fan_out):
    events = []
    with fan_out([Recorded(0, events), Recorded(1, events)]):
        pass
    assert events == [("close", 0), ("close", 1)]


@pytest.mark.parametrize("fan_out", [Dispatch, Broadcast])
def test_a_fan_out_left_on_an_exception_aborts_runners_and_leaves_plain_consumers_open(fan_out):
    events = []
    plain = Collect()
    plain.close = lambda: events.append(("close", "plain"))
    error = LookupError("the producer failed")
    with pytest.raises(LookupError) as info:
        with fan_out([Recorded(0, events), plain, Recorded(1, events)]) as fan:
            raise error
    assert info.value is error
    assert events == [("abort", 0), ("abort", 1)]
    assert fan.is_closed


def test_a_fan_out_ends_once_whichever_of_close_and_abort_comes_first():
    events = []
    fan = Dispatch([Recorded(0, events)])
    fan.abort()
    fan.close()
    fan.abort()
    assert events == [("abort", 0)]


class Flushed(Recorded):
    """A Recorded runner that batches: flush() is recorded, or raises ``error``."""

    def __init__(self, index: int, events: list, error: Exception | None = None):
        super().__init__(index, events)
        self.error = error

    def flush(self):
        self.events.append(("flush", self.index))
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize("fan_out", [Dispatch, Broadcast])
def test_a_fan_outs_flush_flushes_each_consumer_that_batches_and_skips_the_others(fan_out):
    events = []
    fan = fan_out([Flushed(0, events), Recorded(1, events), Flushed(2, events)])
    fan.flush()
    assert events == [("flush", 0), ("flush", 2)]
    fan.close()
    with pytest.raises(ValueError, match=rf"^flush on a closed {fan_out.__name__}$"):
        fan.flush()


def test_a_flush_that_raises_still_flushes_the_rest_then_raises_the_first_error():
    events = []
    first, later = LookupError("worker 0 died"), KeyError("worker 2 died")
    fan = Dispatch([Flushed(0, events, first), Flushed(1, events), Flushed(2, events, later)])
    with pytest.raises(LookupError) as info:
        fan.flush()
    assert info.value is first
    assert info.value.__notes__ == ["Dispatch: consumers[2].flush() also raised KeyError: "
                                    "'worker 2 died'"]
    assert events == [("flush", 0), ("flush", 1), ("flush", 2)]
    fan.abort()


# --- the choice: O(log N), and what it guarantees ----------------------------------------------

class Probe:
    """A runner stand-in whose load the test moves by hand. Every read of ``pending`` is
    recorded in ``log`` (shared: send number, index, value), and ``send`` records what
    Dispatch had last read of every consumer at that moment (``seen``, shared)."""

    def __init__(self, index: int, log: list, seen: list, step: int = 1):
        self.index = index
        self.load = 0
        self.step = step
        self.log = log
        self.seen = seen
        self.sends: list[tuple[int, list]] = []   # (own load then, what Dispatch had read)

    @property
    def pending(self) -> int:
        send_number = self.log[-1][0] if self.log else 0
        self.log.append((send_number, self.index, self.load))
        self.seen[self.index] = self.load
        return self.load

    def send(self, item):
        self.sends.append((self.load, list(self.seen)))
        self.load += self.step

    def close(self):
        return None


def scan_choice(loads: list[int]) -> int:
    """The rule, written as the plain scan: the least load, ties to the lowest index."""
    return loads.index(min(loads))


def probes(count: int, steps=None) -> tuple[list, list]:
    log, seen = [(0, -1, 0)], [None] * count
    made = [Probe(index, log, seen, 1 if steps is None else steps[index])
            for index in range(count)]
    return made, log


def sends_to(fan: Dispatch, item) -> int:
    """Send ``item`` through ``fan``; return the index of the consumer that got it."""
    before = list(fan.dispatched)
    fan.send(item)
    (chosen,) = [index for index, (after, was) in enumerate(zip(fan.dispatched, before))
                 if after != was]
    return chosen


@pytest.mark.parametrize("count", [1, 2, 3, 8, 9, 10, 64, 300])
def test_the_choice_is_the_scans_when_loads_change_only_through_sends(count):
    # Steps of 0 (an Inline runner), 1 (a runner queueing the item) and 2, at random.
    rng = random.Random(count)
    consumers, _ = probes(count, [rng.choice((0, 1, 1, 2)) for _ in range(count)])
    fan = Dispatch(consumers)
    for number in range(3 * count + 200):
        expected = scan_choice([probe.load for probe in consumers])
        assert sends_to(fan, number) == expected


@pytest.mark.parametrize("count", range(1, 9))
def test_with_eight_consumers_or_fewer_the_choice_is_the_scans_whatever_the_loads_do(count):
    rng = random.Random(count)
    consumers, _ = probes(count)
    fan = Dispatch(consumers)
    for number in range(500):
        for probe in consumers:   # workers finish items, or queue more, behind its back
            probe.load = max(0, probe.load + rng.choice((-2, -1, 0, 0, 1)))
        expected = scan_choice([probe.load for probe in consumers])
        assert sends_to(fan, number) == expected


@pytest.mark.parametrize("count", [9, 10, 57, 200])
def test_when_loads_fall_behind_its_back_it_chooses_the_least_as_last_read(count):
    rng = random.Random(count)
    consumers, log = probes(count)
    fan = Dispatch(consumers)
    for number in range(1, 20 * count + 1):
        log.append((number, -1, 0))    # reads from here on belong to send ``number``
        for _ in range(rng.randrange(3)):   # a few workers finish items
            probe = rng.choice(consumers)
            probe.load = max(0, probe.load - rng.randrange(1, 4))
        fan.send(number)
    for chosen in consumers:
        for own, seen in chosen.sends:
            # Its load, read during this send, is at most every other's as last read,
            # and below that of every lower index.
            assert seen[chosen.index] == own
            assert all(load >= own for load in seen)
            assert all(load > own for load in seen[:chosen.index])
    # Every load is read at least once every ceil(N / 2) sends.
    gap = -(-count // 2)
    for probe in consumers:
        read_at = sorted({number for number, index, _ in log if index == probe.index})
        assert read_at[0] == 0
        assert all(later - earlier <= gap for earlier, later in zip(read_at, read_at[1:]))
        assert 20 * count - read_at[-1] < gap


def test_a_worker_that_drained_behind_its_back_gets_items_again_within_half_the_consumers():
    consumers, _ = probes(20)
    fan = Dispatch(consumers)
    for number in range(20 * 10):      # every consumer holds 10
        fan.send(number)
    drained = consumers[13]
    drained.load = 0
    sends_before = len(drained.sends)
    for number in range(10):           # ceil(20 / 2) sends
        fan.send(number)
    assert len(drained.sends) > sends_before


@pytest.mark.parametrize("bad", [1.5, True, "3"], ids=["float", "bool", "str"])
def test_a_pending_that_is_not_an_int_is_refused_naming_the_consumer(bad):
    consumers, _ = probes(3)
    consumers[1].load = bad
    with pytest.raises(TypeError, match=rf"^Dispatch: consumers\[1\]\.pending must be an int, "
                                        rf"got {type(bad).__name__} \({bad!r}\)$"):
        Dispatch(consumers)
    consumers, _ = probes(3)
    fan = Dispatch(consumers)
    consumers[2].load = bad
    with pytest.raises(TypeError, match=r"^Dispatch: consumers\[2\]\.pending must be an int"):
        fan.send("item")
