# Exact answers at the edges of a stream: a send() racing close() in another thread either
# returns and has its item handled, or raises and has not (both interleavings forced, then
# left to chance many times); Ctrl-C after Ctrl-C during close() leaves nothing open;
# flush() after close() names itself; a frame limit past what a header holds leaks nothing;
# a server that hangs up at once is a CoprocessDied.

import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading

import pytest

import _coprocess_consumers as cc
from gilstudy.consumers import Collect
from gilstudy.coprocess import TRANSPORTS, connect, serve, spawn
from gilstudy.errors import CoprocessDied

HERE = os.path.dirname(os.path.abspath(__file__))
# Only reached when something deadlocks.
TIMEOUT = 60
LOOPBACK = ("127.0.0.1", 0)
KEY = b"the edges' key"

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


class PausingBatch(list):
    """A RemoteConsumer's batch that lets a test stop the threads using it at two places:
    just after ``pause_after`` is appended (its send() has not yet looked at the limit), and
    inside the deletion that takes the batch to be written (with the channel's state lock
    held). The events say when each place is reached; ``resume`` lets them go on."""

    def __init__(self, pause_after=None, pause_in_take=False):
        super().__init__()
        self.pause_after = pause_after
        self.pause_in_take = pause_in_take
        self.appended = threading.Event()
        self.taking = threading.Event()
        self.resume = threading.Event()

    def append(self, item):
        super().append(item)
        self.appended.set()
        if item == self.pause_after:
            self.resume.wait(TIMEOUT)

    def __delitem__(self, index):
        super().__delitem__(index)
        if self.pause_in_take:
            self.taking.set()
            self.resume.wait(TIMEOUT)


def with_batch(consumer, batch: PausingBatch):
    consumer._link.sender.batch = consumer._batch = batch
    return consumer


def send_in_a_thread(consumer, item, outcome: list) -> threading.Thread:
    def send():
        try:
            consumer.send(item)
        except ValueError as exc:
            outcome.append(str(exc))
        else:
            outcome.append("returned")

    thread = threading.Thread(target=send)
    thread.start()
    return thread


@pytest.mark.timeout(TIMEOUT)
def test_a_send_whose_item_close_took_returns_and_the_item_is_handled():
    results = Collect()
    consumer = with_batch(spawn(cc.Echo, results=results), PausingBatch(pause_after="mine"))
    outcome = []
    producer = send_in_a_thread(consumer, "mine", outcome)
    assert consumer._batch.appended.wait(TIMEOUT)
    closer = threading.Thread(target=consumer.close)
    closer.start()
    # close() takes the batch, item included, before that send() looks at the limit.
    results.wait(1, timeout=TIMEOUT)
    consumer._batch.resume.set()
    producer.join(TIMEOUT)
    closer.join(TIMEOUT)
    assert outcome == ["returned"]
    assert results.items == ["mine", "closed"]


@pytest.mark.timeout(TIMEOUT)
def test_a_send_whose_item_came_after_close_took_the_batch_raises_and_the_item_is_not_handled():
    results = Collect()
    consumer = with_batch(spawn(cc.Echo, results=results), PausingBatch(pause_in_take=True))
    closer = threading.Thread(target=consumer.close)
    closer.start()
    assert consumer._batch.taking.wait(TIMEOUT)  # close() has taken the (empty) batch
    outcome = []
    producer = send_in_a_thread(consumer, "late", outcome)
    assert consumer._batch.appended.wait(TIMEOUT)
    consumer._batch.resume.set()
    producer.join(TIMEOUT)
    closer.join(TIMEOUT)
    assert outcome == [f"send() on a closed coprocess {consumer.pid}"]
    assert results.items == ["closed"]


RACES = 20


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", ["pipe", "socket"])
def test_a_send_racing_close_delivers_exactly_the_items_whose_send_returned(transport):
    # Left to chance: each round closes after a different number of items, while the
    # producer sends as fast as it can, until a send() is refused.
    for round_number in range(RACES):
        results = Collect()
        consumer = spawn(cc.Echo, transport=transport, results=results)
        returned, refused = [], []
        after = round_number * 997 % 5000
        started = threading.Event()

        def produce():
            for item in itertools.count():
                if item == after:
                    started.set()
                try:
                    consumer.send(item)
                except ValueError:
                    refused.append(item)
                    return
                returned.append(item)

        producer = threading.Thread(target=produce)
        producer.start()
        assert started.wait(TIMEOUT)
        consumer.close()
        producer.join(TIMEOUT)
        assert results.items == [*returned, "closed"], f"round {round_number}"
        assert refused == [len(returned)]


STORM = """
    import json, os, signal, sys, threading, time
    import _coprocess_consumers as cc
    from gilstudy.coprocess import spawn

    def open_fds():
        return sorted(os.listdir("/proc/self/fd"))

    before = open_fds()
    never, ready, transport = sys.argv[1:]
    consumer = spawn(cc.IgnoresTerm, never, ready, transport=transport)
    consumer.send(1)
    consumer.flush()
    while not os.path.exists(ready):
        time.sleep(0.001)
    sent = []

    def storm():
        # Once close() has begun, one every 10 ms for half a second: the first interrupts
        # its wait, the others land while the coprocess is ended, which takes EXIT_TIMEOUT
        # since it ignores SIGTERM.
        while not consumer.is_closed:
            time.sleep(0.001)
        for _ in range(50):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            sent.append(1)
            time.sleep(0.01)

    stormer = threading.Thread(target=storm)
    stormer.start()
    try:
        consumer.close()
        outcome = "returned"
    except KeyboardInterrupt:
        outcome = "interrupted"
    stormer.join()
    try:
        os.waitpid(consumer.pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:
        reaped = True
    print(json.dumps({"outcome": outcome, "interrupts": len(sent), "reaped": reaped,
                      "fds_left": sorted(set(open_fds()) - set(before)),
                      "threads": threading.active_count()}))
    """


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", ["pipe", "socket"])
def test_ctrl_c_after_ctrl_c_during_close_leaves_nothing_open(transport, tmp_path):
    script = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STORM), str(tmp_path / "never"),
         str(tmp_path / "ready"), transport],
        env={**os.environ, "PYTHONPATH": HERE}, capture_output=True, text=True,
        timeout=TIMEOUT / 2)
    assert (script.returncode, script.stderr) == (0, "")
    assert json.loads(script.stdout) == {"outcome": "interrupted", "interrupts": 50,
                                         "reaped": True, "fds_left": [], "threads": 1}


@pytest.mark.timeout(TIMEOUT)
def test_flush_after_close_names_flush():
    consumer = spawn(cc.Echo)
    consumer.close()
    with pytest.raises(ValueError, match=rf"^flush\(\) on a closed coprocess {consumer.pid}$"):
        consumer.flush()
    with pytest.raises(ValueError, match=rf"^send\(\) on a closed coprocess {consumer.pid}$"):
        consumer.send(1)


def children() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        found.add(int(entry))
            except OSError:
                pass  # it ended while we looked
    return found


TOO_LARGE = (r"max_frame must fit in a frame header's 8-byte length \(<= 18446744073709551615\), "
             r"got 18446744073709551616$")


def test_a_frame_limit_past_what_a_header_holds_is_refused_and_leaks_nothing():
    fds, kids = sorted(os.listdir("/proc/self/fd")), children()
    for _ in range(10):
        for transport in TRANSPORTS:
            with pytest.raises(OverflowError, match=rf"^spawn: {TOO_LARGE}"):
                spawn(cc.Echo, transport=transport, max_frame=2**64)
        with pytest.raises(OverflowError, match=rf"^serve: {TOO_LARGE}"):
            serve(LOOPBACK, cc.Echo, authkey=KEY, max_frame=2**64)
        with pytest.raises(OverflowError, match=rf"^connect: {TOO_LARGE}"):
            connect(("127.0.0.1", 9), authkey=KEY, max_frame=2**64)
    assert sorted(os.listdir("/proc/self/fd")) == fds
    assert children() == kids


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("reset", [False, True], ids=["closes", "resets"])
def test_connect_to_a_server_that_hangs_up_at_once_raises_coprocess_died(reset):
    with socket.create_server(LOOPBACK) as listener:
        def hang_up():
            conn, _ = listener.accept()
            if reset:  # an RST rather than a FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

        server = threading.Thread(target=hang_up)
        server.start()
        with pytest.raises(CoprocessDied, match=r"^the server at 127\.0\.0\.1:\d+ stopped "
                                                r"answering: connect: it (closed|reset) the "
                                                r"connection before its HELLO$") as info:
            connect(listener.getsockname(), authkey=KEY, timeout=TIMEOUT)
        server.join(TIMEOUT)
    assert (info.value.exitcode, info.value.signal) == (None, None)
