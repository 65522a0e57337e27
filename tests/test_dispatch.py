# start_runners(), the one way N runners of any kind are started, and the exit rule of the
# fan-outs: what is started, what is undone when a start fails, and what a with block does
# on a normal exit and on an exception. (Dispatch's and Broadcast's delivery rules are
# specified in test_consumers.py.)

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
