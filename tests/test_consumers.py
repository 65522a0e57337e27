# Specifications of the consumer interface and the in-process runners: what reaches the
# consumer, what reaches results, how back-pressure and failures behave, how Dispatch and
# Broadcast fan out. Interleavings are forced with events; nothing sleeps and hopes.

import gc
import inspect
import pickle
import sys
import threading
import traceback
import time

import pytest

from gilstudy import errors
from gilstudy.consumers import (
    Broadcast,
    Collect,
    Consumer,
    ConsumerThread,
    Dispatch,
    Inline,
    Runner,
    coroutine,
    threads,
)
from gilstudy.errors import (
    AuthenticationError,
    ConsumerError,
    CoprocessDied,
    CoprocessStalled,
    GilstudyError,
    ProtocolError,
    RemoteError,
    UnknownKernelError,
)
from gilstudy.examples import Checksum, Countdown, countdown

# Only reached in case of a deadlock.
TIMEOUT = 30

MANY = 10**6


pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


def wait_until(predicate, what: str) -> None:
    """Poll ``predicate`` until it holds; fail after TIMEOUT. For states that no event
    announces (a runner's pending count going down)."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.001)


class Background:
    """Run ``target()`` in a thread; ``join()`` returns its result or raises its error."""

    def __init__(self, target):
        self._target = target
        self._result = None
        self._error = None
        self._thread = threading.Thread(target=self._run, name="test-background")
        self._thread.start()

    def _run(self):
        try:
            self._result = self._target()
        except BaseException as exc:
            self._error = exc

    def join(self):
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "background thread still running"
        if self._error is not None:
            raise self._error
        return self._result


class Failing:
    """Raises ValueError on item ``bad``; waits for ``go`` (when given) before item 0."""

    def __init__(self, bad, go: threading.Event | None = None):
        self.bad = bad
        self.go = go
        self.seen = []
        self.is_closed = False

    def send(self, item):
        if item == 0 and self.go is not None:
            assert self.go.wait(TIMEOUT)
        if item == self.bad:
            raise ValueError(f"bad item {item}")
        self.seen.append(item)
        return item

    def close(self):
        self.is_closed = True
        return "summary"


class Gate:
    """Records every item; holds item 0 until ``release`` is set (``first_in_hand`` says
    when it is holding it)."""

    def __init__(self):
        self.first_in_hand = threading.Event()
        self.release = threading.Event()
        self.seen = []

    def send(self, item):
        if item == 0:
            self.first_in_hand.set()
            assert self.release.wait(TIMEOUT)
        self.seen.append(item)

    def close(self):
        return None


class FailsOnClose:
    def __init__(self, message: str):
        self.message = message
        self.close_calls = 0

    def send(self, item):
        return None

    def close(self):
        self.close_calls += 1
        raise OSError(self.message)


class Loaded:
    """A consumer whose ``pending`` the test sets by hand."""

    def __init__(self, pending: int = 0):
        self.pending = pending
        self.items = []

    def send(self, item):
        self.items.append(item)

    def close(self):
        return None


def small_items():
    return ((n, n % 7) for n in range(MANY))


@pytest.fixture(scope="module")
def expected_checksum():
    return Checksum.of(small_items())


@coroutine
def checksum_coroutine(outcome: list):
    """Checksum as a coroutine; on close it appends (count, checksum) to ``outcome``."""
    checksum = Checksum()
    try:
        while True:
            checksum.send((yield))
    finally:
        outcome.append(checksum.close())


def checksum_class():
    checksum = Checksum()
    return checksum, lambda: (checksum.count, checksum.checksum)


def checksum_generator():
    outcome = []
    return checksum_coroutine(outcome), lambda: outcome[0]


# --- every runner delivers everything, in order ---------------------------------------

RUNNERS = {
    "inline": lambda consumer, **options: Inline(consumer, **options),
    "thread": lambda consumer, **options: ConsumerThread(consumer, **options),
}
CHECKSUMS = {"class": checksum_class, "coroutine": checksum_generator}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make_consumer", CHECKSUMS.values(), ids=CHECKSUMS.keys())
@pytest.mark.parametrize("make_runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_close_delivers_every_item_sent_before_it_in_order(make_runner, make_consumer,
                                                           expected_checksum):
    consumer, outcome = make_consumer()
    runner = make_runner(consumer)
    for item in small_items():
        runner.send(item)
    runner.close()
    assert outcome() == expected_checksum


# --- results ----------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("make_runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_runner_forwards_send_and_close_results_in_order(make_runner):
    results = Collect()
    runner = make_runner(Countdown(), results=results)
    for n in (3, 2, 1):
        runner.send(n)
    runner.close()
    assert results.items == [3, 2, 1, "liftoff after 3 counts"]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("make_runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_runner_forwards_what_a_coroutine_yields(make_runner):
    results = Collect()
    runner = make_runner(countdown(), results=results)
    for n in (3, 2, 1):
        runner.send(n)
    runner.close()
    assert results.items == [3, 2, 1]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("make_runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_runner_forwards_no_none_results(make_runner):
    results = Collect()
    runner = make_runner(Failing(bad=-1), results=results)
    for item in (None, 1, None, 2):
        runner.send(item)
    runner.close()
    assert results.items == [1, 2, "summary"]


@pytest.mark.timeout(TIMEOUT)
def test_runner_send_and_close_return_none():
    with ConsumerThread(Countdown()) as runner:
        assert runner.send(1) is None
    with Inline(Countdown()) as inline:
        assert inline.send(1) is None
    assert inline.close() is None
    assert runner.close() is None


@pytest.mark.timeout(TIMEOUT)
def test_collect_keeps_items_sent_from_several_threads():
    results = Collect()
    with threads(Countdown, 4, results=results) as fan:
        for n in range(1000):
            fan.send(n)
    counts = sorted(item for item in results.items if isinstance(item, int))
    assert counts == list(range(1000))
    assert len(results.items) == 1000 + 4


# --- Inline -----------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_collect_wait_returns_once_the_count_has_arrived_from_another_thread():
    results = Collect()
    with ConsumerThread(Countdown(), results=results) as runner:
        for n in range(100):
            runner.send(n)
        results.wait(100, timeout=TIMEOUT)
        assert results.items == list(range(100))


def test_collect_wait_times_out_when_nothing_arrives_for_that_long():
    results = Collect([1])
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^Collect\.wait: no item for 0\.05 s \(1 of 2 "
                                           r"arrived\)$"):
        results.wait(2, timeout=0.05)
    assert 0.05 <= time.monotonic() - start < TIMEOUT


@pytest.mark.timeout(TIMEOUT)
def test_collect_wait_counts_its_timeout_from_the_last_arrival():
    # Items keep arriving 30 ms apart for longer than the 100 ms timeout: no TimeoutError,
    # because the timeout bounds silence, not the whole wait.
    results = Collect()
    feeder = Background(lambda: [(time.sleep(0.03), results.send(n)) for n in range(10)])
    results.wait(10, timeout=0.1)
    feeder.join()
    assert results.items == list(range(10))


@pytest.mark.timeout(TIMEOUT)
def test_collect_wait_wakes_for_items_that_arrive_by_extend_and_keeps_their_order():
    results = Collect(["first"])
    feeder = Background(lambda: [(time.sleep(0.02), results.extend([n, n + 100]))
                                 for n in range(5)])
    results.wait(11, timeout=TIMEOUT)
    feeder.join()
    assert results.items == ["first", 0, 100, 1, 101, 2, 102, 3, 103, 4, 104]


@pytest.mark.timeout(TIMEOUT)
def test_collect_arrivals_short_of_the_count_still_reset_the_timeout():
    # Each arrival (send or extend) is short of what wait() needs, so it wakes no one,
    # yet it proves the worker alive: 8 arrivals 30 ms apart outlast the 0.1 s timeout.
    results = Collect()

    def feed():
        for n in range(4):
            time.sleep(0.03)
            results.send(n)
            time.sleep(0.03)
            results.extend([n])

    feeder = Background(feed)
    results.wait(8, timeout=0.1)
    feeder.join()
    assert results.items == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.timeout(TIMEOUT)
def test_collect_two_waiters_for_different_counts_each_return_at_their_own():
    results = Collect()
    returned = []
    waiters = [Background(lambda count=count: (results.wait(count, timeout=TIMEOUT),
                                                returned.append((count, len(results.items)))))
               for count in (3, 6)]
    time.sleep(0.05)
    for n in range(6):
        results.send(n)
        time.sleep(0.02)
    for waiter in waiters:
        waiter.join()
    assert sorted(returned)[0][0] == 3 and 3 <= sorted(returned)[0][1] <= 6
    assert sorted(returned)[1] == (6, 6)


def test_collect_take_removes_and_returns_the_first_items():
    results = Collect("abcde")
    assert results.take(3) == ["a", "b", "c"]
    assert results.items == ["d", "e"]
    assert results.take(0) == []


@pytest.mark.parametrize("count, timeout, error, message", [
    (-1, None, ValueError, r"^Collect\.wait: count must be >= 0, got -1$"),
    (1.5, None, TypeError, r"^Collect\.wait: count must be an int, got float \(1\.5\)$"),
    (1, 0, ValueError, r"^Collect\.wait: timeout must be a positive number of seconds or "
                       r"None, got 0$"),
    (1, "1", TypeError, r"^Collect\.wait: timeout must be a number of seconds or None, got "
                        r"str \('1'\)$"),
], ids=["negative", "float-count", "zero-timeout", "str-timeout"])
def test_collect_wait_rejects_bad_arguments(count, timeout, error, message):
    with pytest.raises(error, match=message):
        Collect([1, 2]).wait(count, timeout)


def test_inline_has_nothing_pending():
    runner = Inline(Countdown())
    runner.send(1)
    assert runner.pending == 0


def test_inline_raises_a_consumer_error_caused_by_the_consumers_exception():
    runner = Inline(Failing(bad=1))
    runner.send(0)
    with pytest.raises(ConsumerError, match=r"^Inline: the consumer's send\(\) raised "
                                            r"ValueError: bad item 1 \(2 items sent, 1 "
                                            r"acknowledged\)$") as caught:
        runner.send(1)
    assert isinstance(caught.value.__cause__, ValueError)
    assert (caught.value.sent, caught.value.acknowledged) == (2, 1)
    assert (runner.sent, runner.acknowledged, runner.is_closed) == (2, 1, True)


def test_inline_send_after_close_raises():
    runner = Inline(Countdown())
    runner.close()
    with pytest.raises(ValueError, match=r"^send on a closed Inline runner$"):
        runner.send(1)


def test_inline_close_is_idempotent():
    consumer = FailsOnClose("once")
    runner = Inline(consumer)
    with pytest.raises(ConsumerError, match=r"^Inline: the consumer's close\(\) raised "
                                            r"OSError: once \(0 items sent, 0 "
                                            r"acknowledged\)$"):
        runner.close()
    runner.close()
    assert consumer.close_calls == 1


# --- ConsumerThread: back-pressure ------------------------------------------------------

class Observed(Gate):
    """A Gate that notes its runner's pending count at every item and logs ("handled",
    item) after each."""

    def __init__(self, log: list):
        super().__init__()
        self.log = log
        self.runner = None
        self.pending_seen = []

    def send(self, item):
        self.pending_seen.append(self.runner.pending)
        super().send(item)
        self.log.append(("handled", item))


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("maxsize", [1, 3])
def test_send_blocks_while_maxsize_items_are_queued(maxsize):
    log = []
    gate = Observed(log)
    runner = gate.runner = ConsumerThread(gate, maxsize=maxsize)
    all_that_fit_are_sent = threading.Event()
    total = maxsize + 6

    def produce():
        for item in range(total):
            runner.send(item)
            log.append(("sent", item))
            if item == maxsize:
                all_that_fit_are_sent.set()

    producer = Background(produce)
    assert gate.first_in_hand.wait(TIMEOUT)
    assert all_that_fit_are_sent.wait(TIMEOUT)
    # Item 0 is in the worker's hands and items 1..maxsize fill the queue: the next send
    # cannot return until the worker takes one.
    assert runner.pending == maxsize + 1
    assert ("sent", maxsize + 1) not in log
    gate.release.set()
    producer.join()
    runner.close()
    assert gate.seen == list(range(total))
    assert max(gate.pending_seen) <= maxsize + 1
    # send(n) returns only once the worker took item n - maxsize off the queue, that is
    # after it finished item n - maxsize - 1.
    for n in range(maxsize + 1, total):
        assert log.index(("handled", n - maxsize - 1)) < log.index(("sent", n))


@pytest.mark.timeout(TIMEOUT)
def test_pending_counts_items_sent_and_not_yet_handled():
    gate = Gate()
    runner = ConsumerThread(gate, maxsize=10)
    for item in range(4):
        runner.send(item)
    assert gate.first_in_hand.wait(TIMEOUT)
    assert runner.pending == 4
    gate.release.set()
    wait_until(lambda: runner.pending == 0, "every item is handled")
    runner.close()


@pytest.mark.timeout(TIMEOUT)
def test_close_wakes_a_producer_blocked_on_a_full_queue():
    gate = Gate()
    runner = ConsumerThread(gate, maxsize=1)

    def produce():
        for item in range(3):
            runner.send(item)

    producer = Background(produce)
    assert gate.first_in_hand.wait(TIMEOUT)
    wait_until(lambda: runner.pending == 2, "item 1 is queued behind item 0")
    closer = Background(runner.close)
    with pytest.raises(ValueError, match=r"^send on a closed ConsumerThread 'ConsumerThread-\d+'$"):
        producer.join()
    gate.release.set()
    closer.join()
    assert gate.seen == [0, 1]


# --- ConsumerThread: failures -----------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_close_raises_consumer_error_caused_by_the_consumers_exception():
    go = threading.Event()
    consumer = Failing(bad=2, go=go)
    runner = ConsumerThread(consumer, name="failing")
    for item in range(5):
        runner.send(item)
    go.set()
    message = (r"^failing: Failing\.send\(\) raised ValueError: bad item 2 "
               r"\(5 items sent, 2 acknowledged\)$")
    with pytest.raises(ConsumerError, match=message) as info:
        runner.close()
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "bad item 2"
    assert (info.value.sent, info.value.acknowledged) == (5, 2)
    assert consumer.seen == [0, 1]


@pytest.mark.timeout(TIMEOUT)
def test_next_send_after_a_failure_raises_consumer_error():
    runner = ConsumerThread(Failing(bad=2), name="failing")
    for item in range(3):
        runner.send(item)
    wait_until(lambda: runner.pending == 0, "the failing item is handled")
    message = (r"^failing: Failing\.send\(\) raised ValueError: bad item 2 "
               r"\(3 items sent, 2 acknowledged\)$")
    with pytest.raises(ConsumerError, match=message) as info:
        runner.send(3)
    assert isinstance(info.value.__cause__, ValueError)
    runner.close()


@pytest.mark.timeout(TIMEOUT)
def test_every_send_after_a_failure_raises():
    runner = ConsumerThread(Failing(bad=0))
    runner.send(0)
    wait_until(lambda: runner.pending == 0, "the failing item is handled")
    for item in range(3):
        with pytest.raises(ConsumerError):
            runner.send(item)
    runner.close()


@pytest.mark.timeout(TIMEOUT)
def test_close_does_not_raise_a_failure_that_send_already_raised():
    runner = ConsumerThread(Failing(bad=0))
    runner.send(0)
    wait_until(lambda: runner.pending == 0, "the failing item is handled")
    with pytest.raises(ConsumerError):
        runner.send(1)
    assert runner.close() is None


@pytest.mark.timeout(TIMEOUT)
def test_a_failure_releases_a_producer_blocked_on_a_full_queue():
    go = threading.Event()
    consumer = Failing(bad=0, go=go)
    runner = ConsumerThread(consumer, maxsize=1, name="failing")

    def produce():
        for item in range(3):
            runner.send(item)

    producer = Background(produce)
    wait_until(lambda: runner.pending == 2, "item 1 is queued behind item 0")
    go.set()
    # Item 2 waits for room until the worker discards item 1, after recording the failure.
    with pytest.raises(ConsumerError, match=r"^failing: Failing\.send\(\) raised ValueError: "
                                            r"bad item 0 \(2 items sent, 0 acknowledged\)$"):
        producer.join()
    runner.close()
    assert consumer.seen == []


@pytest.mark.timeout(TIMEOUT)
def test_consumer_is_closed_after_a_failure_but_its_summary_is_dropped():
    consumer = Failing(bad=1)
    results = Collect()
    runner = ConsumerThread(consumer, results=results)
    runner.send(0)
    runner.send(1)
    with pytest.raises(ConsumerError):
        runner.close()
    assert consumer.is_closed
    assert results.items == [0]


@pytest.mark.timeout(TIMEOUT)
def test_close_raises_consumer_error_when_the_consumers_close_raises():
    runner = ConsumerThread(FailsOnClose("disk full"), name="closing")
    runner.send(1)
    with pytest.raises(ConsumerError, match=r"^closing: FailsOnClose\.close\(\) raised OSError: "
                                            r"disk full \(1 items sent, 1 acknowledged\)$") as info:
        runner.close()
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.timeout(TIMEOUT)
def test_a_later_close_failure_becomes_a_note_on_the_first():
    class FailsTwice(FailsOnClose):
        def send(self, item):
            raise KeyError(item)

    runner = ConsumerThread(FailsTwice("disk full"), name="twice")
    runner.send("k")
    with pytest.raises(ConsumerError, match=r"^twice: FailsTwice\.send\(\) raised KeyError: 'k' "
                                            r"\(1 items sent, 0 acknowledged\)\nthen FailsTwice"
                                            r"\.close\(\) raised OSError: disk full$") as info:
        runner.close()
    assert info.value.__notes__ == ["then FailsTwice.close() raised OSError: disk full"]


@pytest.mark.timeout(TIMEOUT)
def test_close_raises_consumer_error_when_results_raise():
    class Refuses:
        def send(self, item):
            raise RuntimeError("results are full")

        def close(self):
            return None

    runner = ConsumerThread(Countdown(), results=Refuses(), name="forwarding")
    runner.send(1)
    with pytest.raises(ConsumerError, match=r"^forwarding: results Refuses\.send\(\) raised "
                                            r"RuntimeError: results are full "
                                            r"\(1 items sent, 0 acknowledged\)$"):
        runner.close()


@pytest.mark.timeout(TIMEOUT)
def test_close_is_idempotent():
    runner = ConsumerThread(Failing(bad=0))
    runner.send(0)
    with pytest.raises(ConsumerError):
        runner.close()
    assert runner.close() is None
    assert runner.is_closed


@pytest.mark.timeout(TIMEOUT)
def test_send_after_close_raises():
    runner = ConsumerThread(Countdown(), name="named")
    runner.close()
    with pytest.raises(ValueError, match=r"^send on a closed ConsumerThread 'named'$"):
        runner.send(1)


# --- ConsumerThread: no thread left behind ----------------------------------------------

def consumer_threads_named(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


@pytest.mark.timeout(TIMEOUT)
def test_close_joins_the_worker_thread():
    runner = ConsumerThread(Countdown(), name="joined")
    assert len(consumer_threads_named("joined")) == 1
    runner.close()
    assert consumer_threads_named("joined") == []


@pytest.mark.timeout(TIMEOUT)
def test_no_thread_is_left_after_a_failure():
    runner = ConsumerThread(Failing(bad=0), name="failed")
    runner.send(0)
    with pytest.raises(ConsumerError):
        runner.close()
    assert consumer_threads_named("failed") == []


@pytest.mark.timeout(TIMEOUT)
def test_context_manager_closes_the_runner():
    countdown_ = Countdown()
    with ConsumerThread(countdown_, name="managed") as runner:
        runner.send(1)
    assert runner.is_closed
    assert countdown_.lines == ["T-minus 1"]
    assert consumer_threads_named("managed") == []


@pytest.mark.timeout(TIMEOUT)
def test_abort_drops_queued_items_and_leaves_the_consumer_unclosed():
    gate = Gate()
    results = Collect()
    runner = ConsumerThread(gate, results=results)
    for item in range(50):
        runner.send(item)
    assert gate.first_in_hand.wait(TIMEOUT)
    closing = Background(runner.abort)
    wait_until(lambda: runner.is_closed, "abort() has begun")
    gate.release.set()
    closing.join()
    # Item 0 was in the worker's hands and is finished; the 49 queued behind it are dropped.
    assert gate.seen == [0]
    assert results.items == []
    runner.close()  # after abort, close() does nothing
    runner.abort()


@pytest.mark.timeout(TIMEOUT)
def test_abort_raises_no_failure_and_drops_items_after_it():
    failing = Failing(bad=1)
    runner = ConsumerThread(failing)
    runner.send(1)
    wait_until(lambda: runner.pending == 0, "the bad item is handled")
    runner.abort()
    assert not failing.is_closed
    with pytest.raises(ValueError, match=r"^send on a closed ConsumerThread"):
        runner.send(2)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("make_runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_leaving_a_with_block_on_an_exception_aborts_and_the_exception_passes(make_runner):
    failing = Failing(bad=None)
    error = LookupError("the producer failed")
    with pytest.raises(LookupError) as info:
        with make_runner(failing) as runner:
            runner.send(0)
            raise error
    assert info.value is error
    assert runner.is_closed and not failing.is_closed


@pytest.mark.timeout(TIMEOUT)
def test_a_runner_dropped_without_close_stops_its_thread():
    countdown_ = Countdown()
    runner = ConsumerThread(countdown_, name="dropped")
    runner.send(1)
    [thread] = consumer_threads_named("dropped")
    del runner
    gc.collect()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert countdown_.lines == ["T-minus 1"]


# --- ConsumerThread: arguments ----------------------------------------------------------

@pytest.mark.parametrize("maxsize, error, message", [
    (0, ValueError, r"^ConsumerThread: maxsize must be >= 1, got 0$"),
    (-3, ValueError, r"^ConsumerThread: maxsize must be >= 1, got -3$"),
    ("8", TypeError, r"^ConsumerThread: maxsize must be an int, got str \('8'\)$"),
    (True, TypeError, r"^ConsumerThread: maxsize must be an int, got bool \(True\)$"),
    (2.0, TypeError, r"^ConsumerThread: maxsize must be an int, got float \(2\.0\)$"),
], ids=["zero", "negative", "str", "bool", "float"])
def test_consumer_thread_rejects_a_bad_maxsize(maxsize, error, message):
    with pytest.raises(error, match=message):
        ConsumerThread(Countdown(), maxsize=maxsize)


@pytest.mark.parametrize("runner_class", [Inline, ConsumerThread])
def test_runner_rejects_a_non_consumer(runner_class):
    name = runner_class.__name__
    with pytest.raises(TypeError, match=rf"^{name}: consumer must be a consumer \(an object "
                                        rf"with send\(\) and close\(\)\), got 42 \(int\)$"):
        runner_class(42)
    with pytest.raises(TypeError, match=rf"^{name}: results must have a send\(\) method \(a "
                                        rf"consumer such as Collect\), got \[\] \(list\)$"):
        runner_class(Countdown(), results=[])


def test_consumer_thread_rejects_a_name_that_is_not_a_string():
    with pytest.raises(TypeError, match=r"^ConsumerThread: name must be a str or None, "
                                        r"got 7 \(int\)$"):
        ConsumerThread(Countdown(), name=7)


# --- coroutine --------------------------------------------------------------------------

def test_coroutine_returns_the_generator_primed():
    counting = countdown()
    assert inspect.getgeneratorstate(counting) == inspect.GEN_SUSPENDED
    assert isinstance(counting, Consumer)
    counting.close()


def test_coroutine_send_returns_what_the_generator_yields_next():
    counting = countdown()
    assert counting.send(10) == 10
    assert counting.send(9) == 9
    counting.close()


def test_coroutine_close_runs_the_generators_cleanup():
    events = []

    @coroutine
    def tidy():
        try:
            while True:
                events.append((yield))
        finally:
            events.append("cleaned up")

    consumer = tidy()
    consumer.send("a")
    consumer.close()
    assert events == ["a", "cleaned up"]


def test_coroutine_close_returns_the_generators_return_value_from_python_3_13():
    @coroutine
    def summarising():
        count = 0
        try:
            while True:
                yield
                count += 1
        except GeneratorExit:
            return f"{count} items"

    consumer = summarising()
    consumer.send("a")
    expected = "1 items" if sys.version_info >= (3, 13) else None
    assert consumer.close() == expected


def test_coroutine_keeps_the_functions_name_and_docstring():
    assert countdown.__name__ == "countdown"
    assert countdown.__doc__.startswith("Countdown written as a coroutine")


def test_coroutine_rejects_a_function_that_is_not_a_generator():
    def plain():
        return 1

    with pytest.raises(TypeError, match=r"^coroutine: test_coroutine_rejects_a_function_that_is_"
                                        r"not_a_generator\.<locals>\.plain is not a generator "
                                        r"function \(it must contain 'item = yield result'\)$"):
        coroutine(plain)


def test_coroutine_that_returns_before_its_first_yield_is_an_error():
    @coroutine
    def finished():
        return
        yield

    with pytest.raises(RuntimeError, match=r"^coroutine: test_coroutine_that_returns_before_its_"
                                           r"first_yield_is_an_error\.<locals>\.finished\(\) "
                                           r"returned before its first yield, so it cannot "
                                           r"receive items$"):
        finished()


# --- Dispatch ---------------------------------------------------------------------------

def test_dispatch_makes_plain_consumers_take_turns():
    consumers = [Collect() for _ in range(3)]
    fan = Dispatch(consumers)
    for n in range(7):
        fan.send(n)
    assert fan.dispatched == [3, 2, 2]
    assert [consumer.items for consumer in consumers] == [[0, 3, 6], [1, 4], [2, 5]]


@pytest.mark.timeout(TIMEOUT)
def test_dispatch_gives_each_item_to_exactly_one_runner():
    with threads(Collect, 3) as fan:
        for n in range(10_000):
            fan.send(n)
    received = [runner.consumer.items for runner in fan.consumers]
    assert sorted(item for items in received for item in items) == list(range(10_000))
    assert all(items == sorted(items) for items in received)
    assert fan.dispatched == [len(items) for items in received]


@pytest.mark.parametrize("loads, chosen", [
    ([2, 0, 1], 1),
    ([1, 1, 1], 0),
    ([3, 1, 1], 1),
    ([5, 4, 0], 2),
], ids=["smallest", "all-tied", "tie-lowest-index", "last"])
def test_dispatch_sends_to_the_least_pending_consumer(loads, chosen):
    consumers = [Loaded(pending) for pending in loads]
    Dispatch(consumers).send("item")
    assert [consumer.items for consumer in consumers] == [
        ["item"] if index == chosen else [] for index in range(len(loads))]


@pytest.mark.timeout(TIMEOUT)
def test_dispatch_sends_around_a_runner_busy_with_a_long_item():
    slow_in_hand = threading.Event()
    release = threading.Event()

    class Uneven:
        def __init__(self):
            self.items = []

        def send(self, item):
            if item == "slow":
                slow_in_hand.set()
                assert release.wait(TIMEOUT)
            self.items.append(item)

        def close(self):
            return None

    busy, free = ConsumerThread(Uneven()), ConsumerThread(Uneven())
    with Dispatch([busy, free]) as fan:
        fan.send("slow")
        assert slow_in_hand.wait(TIMEOUT)
        for n in range(5):
            fan.send(n)
            wait_until(lambda: free.pending == 0, f"item {n} is handled")
        assert fan.dispatched == [1, 5]
        release.set()
    assert busy.consumer.items == ["slow"]
    assert free.consumer.items == [0, 1, 2, 3, 4]


def test_dispatch_send_returns_what_the_consumer_returned():
    assert Dispatch([Countdown()]).send(5) == 5


def test_dispatch_closes_every_consumer_and_raises_the_first_error_with_notes():
    first, healthy, second = FailsOnClose("first"), Loaded(), FailsOnClose("second")
    closed = []
    healthy.close = lambda: closed.append("healthy")
    fan = Dispatch([first, healthy, second])
    with pytest.raises(OSError, match=r"^first\nDispatch: consumers\[2\]\.close\(\) also "
                                      r"raised OSError: second$") as info:
        fan.close()
    assert info.value.__notes__ == ["Dispatch: consumers[2].close() also raised OSError: second"]
    assert (first.close_calls, closed, second.close_calls) == (1, ["healthy"], 1)


@pytest.mark.timeout(TIMEOUT)
def test_dispatch_close_raises_a_runners_consumer_error():
    fan = Dispatch([ConsumerThread(Failing(bad=0), name="bad"), ConsumerThread(Countdown())])
    fan.send(0)
    with pytest.raises(ConsumerError, match=r"^bad: Failing\.send\(\) raised ValueError"):
        fan.close()
    assert all(runner.is_closed for runner in fan.consumers)


def test_dispatch_close_is_idempotent():
    consumer = FailsOnClose("once")
    fan = Dispatch([consumer])
    with pytest.raises(OSError):
        fan.close()
    fan.close()
    assert consumer.close_calls == 1


def test_dispatch_send_after_close_raises():
    fan = Dispatch([Collect()])
    fan.close()
    with pytest.raises(ValueError, match=r"^send on a closed Dispatch$"):
        fan.send(1)


def test_dispatch_context_manager_closes_every_consumer():
    consumers = [ConsumerThread(Countdown()) for _ in range(2)]
    with Dispatch(consumers) as fan:
        fan.send(1)
    assert all(runner.is_closed for runner in consumers)


@pytest.mark.parametrize("consumers, error, message", [
    ([], ValueError, r"^Dispatch: consumers must not be empty$"),
    ((), ValueError, r"^Dispatch: consumers must not be empty$"),
    ([Collect(), 42], TypeError, r"^Dispatch: consumers\[1\] must be a consumer \(an object with "
                                 r"send\(\) and close\(\)\), got 42 \(int\)$"),
    (42, TypeError, r"^Dispatch: consumers must be an iterable of consumers, got 42 \(int\)$"),
    (Collect(), TypeError, r"^Dispatch: consumers must be an iterable of consumers, got the "
                           r"single consumer Collect\(<0 items>\); pass \[consumer\]$"),
], ids=["empty-list", "empty-tuple", "non-consumer", "not-iterable", "single-consumer"])
def test_dispatch_rejects_bad_consumers(consumers, error, message):
    with pytest.raises(error, match=message):
        Dispatch(consumers)


def test_dispatch_exposes_its_consumers():
    consumers = [Collect(), Collect()]
    fan = Dispatch(consumers)
    assert fan.consumers == tuple(consumers)
    assert fan.dispatched == [0, 0]


# --- threads() ----------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_threads_builds_one_consumer_thread_per_factory_call():
    with threads(Countdown, 3, True) as fan:
        assert len(fan.consumers) == 3
        assert all(isinstance(runner, ConsumerThread) for runner in fan.consumers)
        assert all(runner.consumer.echo is True for runner in fan.consumers)
        assert len({id(runner.consumer) for runner in fan.consumers}) == 3


@pytest.mark.timeout(TIMEOUT)
def test_threads_passes_maxsize_to_every_runner():
    with threads(Countdown, 2, maxsize=5) as fan:
        assert [runner.maxsize for runner in fan.consumers] == [5, 5]


@pytest.mark.parametrize("n, error, message", [
    (0, ValueError, r"^threads: n must be >= 1, got 0$"),
    ("2", TypeError, r"^threads: n must be an int, got str \('2'\)$"),
    (True, TypeError, r"^threads: n must be an int, got bool \(True\)$"),
], ids=["zero", "str", "bool"])
def test_threads_rejects_a_bad_n(n, error, message):
    with pytest.raises(error, match=message):
        threads(Countdown, n)


def test_threads_rejects_a_factory_that_is_not_callable():
    with pytest.raises(TypeError, match=r"^threads: factory must be callable, got 'Countdown' "
                                        r"\(str\)$"):
        threads("Countdown", 2)


# --- Broadcast --------------------------------------------------------------------------

def test_broadcast_sends_every_item_to_every_consumer():
    consumers = [Collect(), Collect()]
    with Broadcast(consumers) as everyone:
        everyone.send(1)
        everyone.send(2)
    assert [consumer.items for consumer in consumers] == [[1, 2], [1, 2]]


def test_broadcast_sends_to_consumers_registered_later_from_then_on():
    early, late = Collect(), Collect()
    everyone = Broadcast([early])
    everyone.send(1)
    everyone.register(late)
    everyone.send(2)
    assert everyone.consumers == (early, late)
    assert (early.items, late.items) == ([1, 2], [2])


def test_broadcast_stops_sending_to_an_unregistered_consumer_without_closing_it():
    staying, leaving = Collect(), FailsOnClose("must not be closed")
    everyone = Broadcast([staying, leaving])
    everyone.unregister(leaving)
    everyone.send(1)
    everyone.close()
    assert everyone.consumers == (staying,)
    assert staying.items == [1]
    assert leaving.close_calls == 0


def test_broadcast_unregister_of_an_unknown_consumer_raises():
    with pytest.raises(ValueError, match=r"^Broadcast\.unregister: Collect\(<0 items>\) is not "
                                         r"registered$"):
        Broadcast([Collect()]).unregister(Collect())


def test_broadcast_register_twice_raises():
    consumer = Collect()
    everyone = Broadcast([consumer])
    with pytest.raises(ValueError, match=r"^Broadcast\.register: Collect\(<0 items>\) is already "
                                         r"registered$"):
        everyone.register(consumer)


def test_broadcast_register_rejects_a_non_consumer():
    with pytest.raises(TypeError, match=r"^Broadcast\.register: consumer must be a consumer \(an "
                                        r"object with send\(\) and close\(\)\), got 'x' \(str\)$"):
        Broadcast().register("x")


def test_broadcast_send_reaches_every_consumer_even_if_some_raise():
    after = Collect()
    everyone = Broadcast([Failing(bad=1), after, Failing(bad=1)])
    with pytest.raises(ValueError, match=r"^bad item 1\nBroadcast: consumers\[2\]\.send\(\) "
                                         r"also raised ValueError: bad item 1$") as info:
        everyone.send(1)
    assert info.value.__notes__ == [
        "Broadcast: consumers[2].send() also raised ValueError: bad item 1"]
    assert after.items == [1]


def test_broadcast_closes_every_consumer_and_raises_the_first_error_with_notes():
    first, healthy, second = FailsOnClose("first"), Loaded(), FailsOnClose("second")
    everyone = Broadcast([first, healthy, second])
    with pytest.raises(OSError, match=r"^first\nBroadcast: consumers\[2\]\.close\(\) also "
                                      r"raised OSError: second$") as info:
        everyone.close()
    assert info.value.__notes__ == ["Broadcast: consumers[2].close() also raised OSError: second"]
    assert (first.close_calls, second.close_calls) == (1, 1)
    everyone.close()
    assert (first.close_calls, second.close_calls) == (1, 1)


def test_broadcast_refuses_items_and_consumers_after_close():
    everyone = Broadcast()
    everyone.close()
    with pytest.raises(ValueError, match=r"^send on a closed Broadcast$"):
        everyone.send(1)
    with pytest.raises(ValueError, match=r"^register on a closed Broadcast$"):
        everyone.register(Collect())


# --- the interface ------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_runners_are_runners_and_everything_else_is_a_consumer():
    with ConsumerThread(Countdown()) as runner:
        assert isinstance(runner, Runner)
    assert isinstance(Inline(Countdown()), Runner)
    for consumer in (Collect(), Countdown(), Checksum(), Dispatch([Collect()]), Broadcast()):
        assert isinstance(consumer, Consumer)
    assert not isinstance(Countdown(), Runner)
    assert not isinstance(42, Consumer)


# --- pickling -------------------------------------------------------------------------------

def round_trip(obj):
    return pickle.loads(pickle.dumps(obj))


def test_collect_pickles_with_its_items():
    results = Collect([1, "two"])
    copy = round_trip(results)
    assert copy.items == [1, "two"]
    copy.send(3)
    assert copy.items == [1, "two", 3]


def test_countdown_pickles_with_its_lines():
    counting = Countdown(echo=False)
    counting.send(3)
    copy = round_trip(counting)
    assert copy.lines == ["T-minus 3"]
    assert copy.send(2) == 2
    assert copy.close() == "liftoff after 2 counts"


def test_checksum_pickles_with_its_running_state():
    checksum = Checksum()
    checksum.send((1, 2))
    copy = round_trip(checksum)
    copy.send((3, 4))
    assert copy.close() == Checksum.of([(1, 2), (3, 4)])


ERRORS = [
    GilstudyError("something failed"),
    UnknownKernelError("unknown kernel 'fib'; choose one of: countdown"),
    ConsumerError("worker: Checksum.send() raised ValueError: x", sent=5, acknowledged=2),
    RemoteError("ValueError", "bad item", "Traceback (most recent call last): ...",
                sent=3, acknowledged=1),
    CoprocessDied(1234, -9, "while sending", sent=4, acknowledged=2),
    CoprocessStalled(1234, "send() waited 0.5 s for it to read a frame", sent=9,
                     acknowledged=3),
    ProtocolError("truncated message"),
    AuthenticationError("wrong key"),
    errors.RemoteTraceback("Traceback (most recent call last): ...\nValueError: bad\n"),
    errors.PeerGone("the sender closed the channel"),
    errors.RunnerUnavailable("this runner needs something that is missing"),
    errors.MpiUnavailable("gilstudy.mpi needs mpi4py, which is not installed"),
    errors.SubinterpretersUnavailable("subinterpreter: subinterpreters need Python 3.14",
                                      name="concurrent.interpreters"),
    errors.CompareError("compare failed", subject="threads-python"),
    errors.ModelFailed("threads-python with 2 workers: repeat 1 failed", "threads-python"),
    errors.WrongAnswer("pool-cython computed a wrong answer", "pool-cython"),
    errors.PythonExecutableFailed("--python /x: exited early", "/x"),
    errors.BrokenWorkerPool("gilstudy.Executor('coprocess', max_workers=2): coprocess 7 was "
                            "killed by signal 9", worker="coprocess 7", exitcode=-9),
]
# The older names of renamed errors: the same classes.
ALIASES = {"CoprocessDied": "WorkerDied", "CoprocessStalled": "WorkerStalled",
           "InterpreterFailed": "PythonExecutableFailed"}


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: type(error).__name__)
def test_error_pickles_with_its_message_and_facts(error):
    copy = round_trip(error)
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_every_error_class_is_pickle_tested():
    assert {type(error).__name__ for error in ERRORS} == set(errors.__all__) - set(ALIASES)


def test_an_older_error_name_is_the_same_class_as_the_new_one():
    for old, new in ALIASES.items():
        assert getattr(errors, old) is getattr(errors, new)
    assert str(errors.WorkerDied(7, 3)) == "worker 7 exited with code 3"


def test_every_missing_runner_support_is_a_runner_unavailable():
    assert issubclass(errors.MpiUnavailable, errors.RunnerUnavailable)
    assert issubclass(errors.SubinterpretersUnavailable, errors.RunnerUnavailable)
    # Both stay what they were: an ImportError, and for subinterpreters a
    # ModuleNotFoundError.
    assert issubclass(errors.RunnerUnavailable, ImportError)
    assert issubclass(errors.SubinterpretersUnavailable, ModuleNotFoundError)


def test_a_remote_error_is_a_consumer_error_caused_by_the_remote_traceback():
    text = 'Traceback (most recent call last):\n  File "w.py", line 3, in send\nValueError: bad\n'
    error = RemoteError("ValueError", "bad", text, sent=3, acknowledged=1, where="coprocess 7")
    assert isinstance(error, ConsumerError)
    assert str(error) == "coprocess 7: ValueError: bad (3 items sent, 1 acknowledged)"
    assert isinstance(error.__cause__, errors.RemoteTraceback)
    assert error.__cause__.text == text
    try:
        raise error
    except RemoteError as caught:
        printed = "".join(traceback.format_exception(caught))
    # The far side's traceback comes first, then the caller's, as concurrent.futures does.
    assert printed.index('File "w.py", line 3, in send') < printed.index(
        "The above exception was the direct cause of the following exception")
    assert printed.rstrip().endswith(str(error))


def test_consumer_error_keeps_its_counts_through_pickle():
    copy = round_trip(ConsumerError("lost", sent=5, acknowledged=2))
    assert (copy.sent, copy.acknowledged) == (5, 2)
