# What Dispatch's choice costs per item as the consumers grow (10, 1,000 and 10,000
# in-process fakes that have ``pending``), next to the plain scan of every load it replaced,
# and a simulated run of 1,000 workers with 10 ms items showing that the producer is not
# what limits them. Run: pytest bench/bench_dispatch.py --benchmark-only
# --benchmark-group-by=group

import collections
import time

import pytest

from gilstudy.dispatch import Dispatch

ROUNDS = 5
# Sends per round: long enough (0.1 s or more at 10,000 consumers) for the timer.
SENDS = 100_000


class FakeRunner:
    """A runner without a worker: each send queues one item, so ``pending`` rises by one,
    as a ConsumerThread's or a coprocess's does until its worker finishes the item."""

    __slots__ = ("pending",)

    def __init__(self):
        self.pending = 0

    def send(self, item) -> None:
        self.pending += 1

    def close(self) -> None:
        return None


class ScanDispatch(Dispatch):
    """The rule as Dispatch used to apply it: read every load on every send."""

    def send(self, item):
        loads = [consumer.pending for consumer in self.consumers]
        index = loads.index(min(loads))
        self.dispatched[index] += 1
        return self.consumers[index].send(item)


def send_all(fan: Dispatch, sends: int) -> Dispatch:
    send = fan.send
    for item in range(sends):
        send(item)
    return fan


CHOICES = [("heap", 10), ("heap", 1_000), ("heap", 10_000), ("scan", 10), ("scan", 1_000)]


@pytest.mark.benchmark(group="dispatch-choice")
@pytest.mark.parametrize("kind, consumers", CHOICES,
                         ids=[f"{kind}-{consumers}" for kind, consumers in CHOICES])
def test_choice_per_item(benchmark, kind, consumers):
    # The scan at 1,000 takes about 100 times longer per send: fewer sends keep a round
    # near a second, and the per-item figure is what compares.
    sends = SENDS if kind == "heap" or consumers <= 10 else SENDS // 50
    make = Dispatch if kind == "heap" else ScanDispatch
    fan = benchmark.pedantic(send_all, setup=lambda: (
        (make([FakeRunner() for _ in range(consumers)]), sends), {}), rounds=ROUNDS)
    # Every item went somewhere, and evenly: the loads only rise, so the rule deals them
    # round and round.
    assert sum(fan.dispatched) == sends
    assert max(fan.dispatched) - min(fan.dispatched) <= 1
    benchmark.extra_info["sends_per_round"] = sends
    benchmark.extra_info["us_per_item"] = round(benchmark.stats.stats.median / sends * 1e6, 3)


class SimulatedWorker:
    """A worker that takes ITEM_SECONDS per item, one at a time, in simulated parallel:
    ``pending`` is the items sent whose finish time (on the real clock) is still ahead."""

    def __init__(self, item_seconds: float):
        self.item_seconds = item_seconds
        self.finishes = collections.deque()
        self.busy_until = 0.0
        self.handled = 0

    @property
    def pending(self) -> int:
        now = time.monotonic()
        finishes = self.finishes
        while finishes and finishes[0] <= now:
            finishes.popleft()
        return len(finishes)

    def send(self, item) -> None:
        start = max(time.monotonic(), self.busy_until)
        self.busy_until = start + self.item_seconds
        self.finishes.append(self.busy_until)
        self.handled += 1

    def close(self) -> None:
        return None


def simulate(make, workers: int, items_each: int, item_seconds: float) -> dict:
    """Dispatch workers * items_each items over ``workers`` simulated workers; return the
    producer's time, the makespan (until the last simulated item ends) and the ideal."""
    pool = [SimulatedWorker(item_seconds) for _ in range(workers)]
    fan = make(pool)
    start = time.monotonic()
    send_all(fan, workers * items_each)
    dispatched = time.monotonic()
    makespan = max(worker.busy_until for worker in pool) - start
    assert sum(worker.handled for worker in pool) == workers * items_each
    ideal = items_each * item_seconds
    return {"producer_s": dispatched - start, "makespan_s": makespan, "ideal_s": ideal,
            "efficiency": ideal / makespan,
            "producer_items_per_s": workers * items_each / (dispatched - start),
            "workers_items_per_s": workers / item_seconds}


@pytest.mark.benchmark(group="dispatch-1000-workers-10ms")
@pytest.mark.parametrize("kind", ["heap", "scan"])
def test_simulated_1000_workers_with_10ms_items(benchmark, kind):
    # 20 items each: 0.2 s of work if the producer keeps up.
    make = Dispatch if kind == "heap" else ScanDispatch
    figures = benchmark.pedantic(simulate, args=(make, 1_000, 20, 0.010), rounds=3)
    for name, value in figures.items():
        benchmark.extra_info[name] = round(value, 4)
