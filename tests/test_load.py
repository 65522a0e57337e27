# Load: eight coprocesses on however few cores, each streaming 10^5 items with a result for
# every one, three rounds in a row. Every result arrives, in order per coprocess; afterwards
# this process holds the same file descriptors as before and no new child, not even a zombie.

import gc
import os
import threading

import pytest

import _coprocess_consumers as cc
from gilstudy.coprocess import TRANSPORTS, spawn

pytestmark = pytest.mark.one_pass

WORKERS = 8
ITEMS = 10**5
ROUNDS = 3


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def children() -> list[int]:
    """Processes whose parent is this one (reaped or not)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == os.getpid():
            found.append(int(entry))
    return found


class Results:
    """A thread-safe list of results (each coprocess's reader thread appends)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def send(self, item):
        with self.lock:
            self.items.append(item)


@pytest.mark.timeout(300)
def test_eight_coprocesses_stream_a_hundred_thousand_items_each_three_rounds_in_a_row():
    gc.collect()
    fds_before = open_fds()
    children_before = set(children())
    items = [(i, i % 1000) for i in range(ITEMS)]
    expected = [(i, (i % 1000) ** 2) for i in range(ITEMS)]
    for round_number in range(ROUNDS):
        collected = [Results() for _ in range(WORKERS)]
        workers = [spawn(cc.Square, transport=TRANSPORTS[n % len(TRANSPORTS)],
                         results=collected[n]) for n in range(WORKERS)]
        sends = [worker.send for worker in workers]
        for item in items:
            for send in sends:
                send(item)
        for worker in workers:
            worker.close()
        assert [results.items == expected for results in collected] == [True] * WORKERS, \
            f"round {round_number}"
        assert all(worker.acknowledged == ITEMS for worker in workers)
    del workers, sends
    gc.collect()
    assert open_fds() == fds_before
    assert set(children()) <= children_before
