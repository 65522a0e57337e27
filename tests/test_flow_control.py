# Flow control by items and by progress, over every transport: a producer faster than its
# consumer is held to max_in_flight items ahead; a timeout means "no progress for that
# long" (no item acknowledged, no byte read), so a slow consumer that keeps working never
# stalls, while one that stops does, within the timeout.

import time

import pytest

import _coprocess_consumers as cc
from gilstudy.consumers import Collect
from gilstudy.coprocess import TRANSPORTS, connect, serve, spawn
from gilstudy.errors import CoprocessStalled
from gilstudy.flow import MAX_IN_FLIGHT

# Only reached when something deadlocks.
TIMEOUT = 60
# What a loaded 2-core machine may add to a bound.
SLACK = 2.0

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


def started(consumer):
    """``consumer`` once its worker has handled a first item (None): a worker still
    starting makes no progress either, and the timeouts below are shorter than a start."""
    consumer.send(None)
    consumer.flush()
    deadline = time.monotonic() + TIMEOUT
    while not consumer.acknowledged:
        assert time.monotonic() < deadline, f"{consumer!r} never started"
        time.sleep(0.001)
    return consumer


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_fast_producer_stays_at_most_max_in_flight_items_ahead_of_a_slow_consumer(transport):
    # 1 ms an item: without the bound the producer would send all 400 items at once.
    results = Collect()
    with spawn(cc.Sleepy, 0.001, transport=transport, results=results,
               max_in_flight=16) as consumer:
        ahead = []
        for item in range(400):
            consumer.send(item)
            ahead.append(consumer.sent - consumer.acknowledged)
    assert max(ahead) <= 16
    assert max(ahead) == 16  # the producer did run ahead as far as allowed
    assert results.items == [*range(400), "closed"]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_slow_consumer_that_keeps_acknowledging_never_stalls(transport):
    # 20 ms an item, at most 4 ahead: each send() waits about 20 ms for room, and the
    # whole stream takes 2 s, ten times the timeout given to every call.
    results = Collect()
    start = time.monotonic()
    with started(spawn(cc.Sleepy, 0.02, transport=transport, results=results,
                       max_in_flight=4)) as consumer:
        for item in range(100):
            consumer.send(item, timeout=0.2)
        consumer.flush(timeout=0.2)
        consumer.close(timeout=0.2)
    assert time.monotonic() - start > 10 * 0.2
    assert results.items == [*range(100), "closed"]  # None is no result


@pytest.mark.timeout(TIMEOUT)
def test_close_with_a_timeout_waits_for_a_long_queue_while_items_are_acknowledged():
    # 50 items of 20 ms queued: close() waits a second for them, five times its timeout.
    results = Collect()
    consumer = started(spawn(cc.Sleepy, 0.02, results=results))
    for item in range(50):
        consumer.send(item)
    consumer.close(timeout=0.2)
    assert results.items == [*range(50), "closed"]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_consumer_that_stops_stalls_a_send_waiting_for_room_within_its_timeout(transport,
                                                                             tmp_path):
    # The consumer never gets past item 0: four items fill the window, the fifth waits.
    consumer = spawn(cc.Blocker, str(tmp_path / "never"), transport=transport,
                     max_in_flight=4)
    try:
        for item in range(4):
            consumer.send(item, timeout=0.3)
        start = time.monotonic()
        with pytest.raises(CoprocessStalled, match=r"\(4 items sent, 0 acknowledged\): send\(\) "
                                                   r"saw no progress for 0\.3 s: no item "
                                                   r"acknowledged and no byte read$"):
            consumer.send(4, timeout=0.3)
        assert 0.3 <= time.monotonic() - start < 0.3 + SLACK
    finally:
        consumer.abort()


@pytest.mark.timeout(TIMEOUT)
def test_the_window_bounds_a_connection_to_a_server_too():
    results = Collect()
    with serve(("127.0.0.1", 0), cc.Sleepy, 0.001, insecure=True) as server:
        with connect(server.address, results=results, insecure=True,
                     max_in_flight=8) as consumer:
            ahead = []
            for item in range(200):
                consumer.send(item, timeout=1)
                ahead.append(consumer.pending)
    assert max(ahead) <= 8
    assert results.items == [*range(200), "closed"]


def test_the_default_window_holds_sixteen_frames_of_the_smallest_items():
    assert MAX_IN_FLIGHT == 65536


@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, r"^spawn: max_in_flight must be >= 1, got 0$"),
    (True, TypeError, r"^spawn: max_in_flight must be an int, got bool \(True\)$"),
    (2.5, TypeError, r"^spawn: max_in_flight must be an int, got float \(2\.5\)$"),
], ids=["zero", "bool", "float"])
def test_spawn_refuses_a_bad_window_before_starting_anything(value, error, message):
    with pytest.raises(error, match=message):
        spawn(cc.Echo, max_in_flight=value)


def test_connect_and_coprocesses_refuse_a_bad_window_before_starting_anything():
    with pytest.raises(ValueError, match=r"^connect: max_in_flight must be >= 1, got -1$"):
        connect(("127.0.0.1", 9), insecure=True, max_in_flight=-1)
    with pytest.raises(ValueError, match=r"^coprocesses: max_in_flight must be >= 1, got 0$"):
        from gilstudy.coprocess import coprocesses

        coprocesses(cc.Echo, 2, max_in_flight=0)
