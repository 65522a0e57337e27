# One table of deliberately broken cases, run over every transport: an item that fails to
# pickle, one that fails to unpickle in the coprocess, a consumer that raises, a coprocess
# killed with SIGKILL, one that segfaults, one that exits early, one that stops reading and
# one that stops finishing. Each states what the caller sees and how soon; the error says how
# many items were sent and how many acknowledged; and a coprocess started afterwards works.
# (pytest-timeout prints every thread's stack if a case hangs.)

import os
import pickle
import threading
import time
from typing import NamedTuple

import pytest

import _coprocess_consumers as cc
from gilstudy.coprocess import EXIT_TIMEOUT, TRANSPORTS, spawn
from gilstudy.errors import CoprocessDied, CoprocessStalled, RemoteError

# Only reached when something deadlocks.
TIMEOUT = 60
# Items every case sends, and sees acknowledged, before its fault.
GOOD = 5
# The timeout the stalled cases give send() and close().
STALL = 0.5
# Items sent after the fault item, so that the fault happens mid-stream.
TRAILING = 100
# What a loaded 2-core machine may add to a bound.
SLACK = 2.0


class Fault(NamedTuple):
    factory: object
    args: tuple
    good: int            # items handled before the fault
    fault: object        # the item that triggers it (None: the fault needs no item)
    how: str             # "close": the fault shows at close(); "send": at send(timeout)
    expected: tuple      # exception types the caller may see
    bound: float         # seconds the raising call may take at most
    facts: dict          # attributes the exception must have


PICKLING = (pickle.PicklingError, TypeError, AttributeError)

FAULTS = {
    "item-fails-to-pickle": Fault(cc.Echo, (), GOOD, threading.Lock(), "close", PICKLING,
                                  SLACK, {}),
    "item-fails-to-unpickle": Fault(cc.Echo, (), GOOD, cc.FailsToUnpickle(), "close",
                                    (RemoteError,), SLACK,
                                    {"remote_type": "gilstudy.errors.ProtocolError"}),
    "consumer-raises": Fault(cc.FailOn, (GOOD,), GOOD, GOOD, "close", (RemoteError,), SLACK,
                             {"remote_type": "ValueError"}),
    "SIGKILL-mid-stream": Fault(cc.Die, ("kill", GOOD), GOOD, GOOD, "close", (CoprocessDied,),
                                EXIT_TIMEOUT, {"signal": 9}),
    "segfault": Fault(cc.Die, ("segfault", GOOD), GOOD, GOOD, "close", (CoprocessDied,),
                      EXIT_TIMEOUT, {"signal": 11}),
    "os._exit-early": Fault(cc.exit_at_once, (), 0, None, "close", (CoprocessDied,),
                            EXIT_TIMEOUT, {"exitcode": 3}),
    "stops-reading": Fault(cc.StopsAt, (GOOD,), GOOD, GOOD, "send", (CoprocessStalled,),
                           STALL + SLACK, {}),
    "stops-finishing": Fault(cc.StopsAt, (GOOD,), GOOD, GOOD, "close-with-timeout",
                             (CoprocessStalled,), STALL + SLACK, {}),
}


@pytest.fixture(autouse=True)
def no_stray_threads():
    before = set(threading.enumerate())
    yield
    assert [t.name for t in threading.enumerate() if t not in before] == []


def assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_acknowledged(consumer, count: int) -> None:
    if not count:
        return
    consumer.flush()
    deadline = time.monotonic() + TIMEOUT
    while consumer.acknowledged < count:
        assert time.monotonic() < deadline, f"{consumer!r} never acknowledged {count} items"
        time.sleep(0.001)


def provoke(consumer, fault: Fault) -> tuple[BaseException, float]:
    """Send the fault's items and make it show; return the exception and how long the call
    that raised it took."""
    if fault.fault is not None:
        consumer.send(fault.fault)
        if fault.how == "close":
            for item in range(TRAILING):
                consumer.send(-item)
    if fault.how == "send":
        big = b"x" * (1 << 16)  # fills any pipe or socket buffer in a few hundred sends
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                consumer.send(big, timeout=STALL)
            except fault.expected as exc:
                return exc, time.monotonic() - start
        raise AssertionError("send() never stalled")
    start = time.monotonic()
    try:
        consumer.close(timeout=STALL if fault.how == "close-with-timeout" else None)
    except fault.expected as exc:
        return exc, time.monotonic() - start
    raise AssertionError(f"close() raised none of {fault.expected}")


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_is_reported_in_bounded_time_with_counts_and_a_new_coprocess_works(name,
                                                                                   transport):
    fault = FAULTS[name]
    consumer = spawn(fault.factory, *fault.args, transport=transport)
    try:
        for item in range(fault.good):
            consumer.send(item)
        wait_acknowledged(consumer, fault.good)
        error, took = provoke(consumer, fault)
        assert took < fault.bound
        for attribute, value in fault.facts.items():
            assert getattr(error, attribute) == value
        # Everything acknowledged before the fault was delivered: the caller resends the rest.
        if isinstance(error, PICKLING):
            assert error.__notes__[-1].startswith(f"gilstudy: item number {fault.good} sent "
                                                  f"to coprocess {consumer.pid} could not be "
                                                  "pickled")
            assert consumer.acknowledged == fault.good
        else:
            assert error.acknowledged == fault.good
            assert error.sent == consumer.sent
            if fault.how == "close" and fault.fault is not None:
                assert error.sent == fault.good + 1 + TRAILING
    finally:
        consumer.abort()
    assert_reaped(consumer.pid)

    got = []
    with spawn(cc.Echo, transport=transport, results=cc.Appender(got)) as fresh:
        for item in range(3):
            fresh.send(item)
    assert got == [0, 1, 2, "closed"]
    assert_reaped(fresh.pid)


def test_the_table_covers_every_fault_the_issue_names():
    assert set(FAULTS) >= {"item-fails-to-pickle", "item-fails-to-unpickle", "consumer-raises",
                           "SIGKILL-mid-stream", "segfault", "os._exit-early",
                           "stops-reading"}
