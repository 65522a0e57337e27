# One table of deliberately broken cases, run against every kind of runner: inline, a thread,
# a coprocess over each transport, a connection to `gilstudy serve`, a subinterpreter, an MPI
# rank, and the toy runner of docs/guide/new-runner.md. The cases: an item
# that fails to pickle, one that fails to unpickle on the far side, a consumer that raises,
# a worker killed with SIGKILL, one that segfaults, one that exits early, one that stops
# reading and one that stops finishing. Each states what the caller sees and how soon; the
# error says how many items were sent and how many acknowledged; and a runner of the same
# kind started afterwards works. Where a case cannot happen to a kind of runner, the table
# says why. A new kind of runner joins by adding one entry to RUNNERS. (pytest-timeout
# prints every thread's stack if a case hangs.)

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, NamedTuple

import pytest

import _coprocess_consumers as cc
import _toy_runner
from gilstudy.consumers import ConsumerThread, Inline
from gilstudy.coprocess import EXIT_TIMEOUT, TRANSPORTS, connect, parse_address, spawn
from gilstudy.server import CLOSE_GRACE
from gilstudy.errors import ConsumerError, CoprocessDied, CoprocessStalled, RemoteError
from gilstudy.interpreters import subinterpreter

# Only reached when something deadlocks.
TIMEOUT = 60
HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "the fault table's key"
# Items every case sends, and sees acknowledged, before its fault.
GOOD = 5
# The timeout the stalled cases give send() and close().
STALL = 0.5
# Items sent after the fault item, so that the fault happens mid-stream.
TRAILING = 100
# What a loaded 2-core machine may add to a bound.
SLACK = 2.0


class Fault(NamedTuple):
    factory: Callable
    args: tuple
    good: int            # items handled before the fault
    fault: object        # the item that triggers it (None: the fault needs no item)
    how: str             # "close": shows at close(); "send": at send(timeout); "close-with-timeout"
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
    "consumer-raises": Fault(cc.FailOn, (GOOD,), GOOD, GOOD, "close", (ConsumerError,), SLACK,
                             {}),
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

_THREAD_DIES_WITH_US = ("a thread cannot die alone: a signal, a segfault or os._exit ends "
                        "the whole process, the caller's included")
_NOTHING_PICKLED = "a thread is handed the object itself: nothing is pickled or unpickled"
_INLINE_NOTHING_PICKLED = "inline, the consumer is called with the object itself"
_INLINE_NO_WORKER = ("inline, the consumer runs in the caller's thread: there is no worker "
                     "to die, to stop reading or to stall, and no timeout")
_NO_TIMEOUT = ("a thread's send() and close() take no timeout: back-pressure blocks send() "
               "while maxsize items wait, and close() waits for the consumer")
# A server's process is not ours: how it ended cannot be known from the connection.
_UNKNOWN_END = {"exitcode": None, "signal": None}


class Started(NamedTuple):
    runner: object
    end: Callable[[], None]    # stops what the kind started besides the runner, and checks it


class RunnerKind(NamedTuple):
    start: Callable[..., Started]      # (factory, args, results=None)
    not_applicable: dict       # fault name -> why it cannot happen to this kind
    facts: dict                # fault name -> facts that replace the fault's own
    marks: tuple = ()          # pytest marks of every case of this kind


def _assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _start_inline(factory, args, results=None) -> Started:
    return Started(Inline(factory(*args), results=results), lambda: None)


def _start_thread(factory, args, results=None) -> Started:
    return Started(ConsumerThread(factory(*args), results=results), lambda: None)


def _start_pipe_thread(factory, args, results=None) -> Started:
    runner = _toy_runner.pipe_thread(factory, *args, results=results)

    def end() -> None:
        # Its far side has ended, and with it the thread that ran it.
        assert runner.peer.wait(TIMEOUT) is not None, f"{runner.peer.name} still runs"

    return Started(runner, end)


def _start_coprocess(transport):
    def start(factory, args, results=None) -> Started:
        runner = spawn(factory, *args, transport=transport, results=results)
        return Started(runner, lambda: _assert_reaped(runner.pid))
    return start


def _start_server_connection(factory, args, results=None) -> Started:
    """`gilstudy serve` in a process of its own (a consumer that kills its process kills
    the server), building factory(*args) for the connection made to it."""
    server = subprocess.Popen(
        [sys.executable, "-m", "gilstudy", "serve", "127.0.0.1:0", "_coprocess_consumers:build",
         "--", factory.__name__, json.dumps(args)],
        env={**os.environ, "PYTHONPATH": HERE, "GILSTUDY_AUTHKEY": KEY},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # These consumers end the server's own process: it is gone by the time the fault shows.
    killed_by_its_consumer = factory in (cc.Die, cc.exit_at_once)

    def end() -> None:
        # Ctrl-C ends the server promptly and cleanly, even while a consumer never returns
        # (the stall cases): it drops the connection and leaves that consumer behind.
        alive = not killed_by_its_consumer and server.poll() is None
        if alive:
            server.send_signal(signal.SIGINT)
        start = time.monotonic()
        try:
            _, err = server.communicate(timeout=TIMEOUT)
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
        if alive:
            assert server.returncode == 130, err
            assert time.monotonic() - start < CLOSE_GRACE + SLACK
            assert "Traceback" not in err and err.endswith("gilstudy: interrupted\n"), err

    try:
        line = server.stdout.readline()
        assert line.startswith("serving on "), f"gilstudy serve printed {line!r}"
        runner = connect(parse_address(line.split()[-1]), results=results,
                         authkey=KEY.encode())
    except BaseException:
        server.kill()
        end()
        raise
    return Started(runner, end)


def _start_subinterpreter(factory, args, results=None) -> Started:
    runner = subinterpreter(factory, *args, results=results)

    def end() -> None:
        # Its interpreter has ended, and with it the thread that ran it.
        assert runner.peer.wait(TIMEOUT) is not None, f"{runner.peer.name} still runs"

    return Started(runner, end)


_INTERPRETER_DIES_WITH_US = ("a subinterpreter is a thread of this process: a signal, a "
                             "segfault or os._exit ends the whole process, the caller's "
                             "included (sys.exit() is its early exit: test_interpreters.py)")
_INTERPRETER_NOT_KILLABLE = ("the case's consumer sleeps for an hour, and an interpreter cannot "
                             "be killed, so its thread would outlive the test; the stall with "
                             "a consumer the test releases is in test_interpreters.py")


def _start_mpi_rank(factory, args, results=None) -> Started:
    """One MPI rank that gilstudy.mpi.ranks() launched (with its relay, rank 0): when the
    runner is done, nothing of the job may be left on this machine."""
    from gilstudy import mpi

    runner = mpi.ranks(factory, 1, *args, results=results).consumers[0]
    return Started(runner, lambda: _assert_nothing_left(mpi, runner.peer.job.marker))


def _assert_nothing_left(mpi, marker: str) -> None:
    assert mpi.job_processes(marker) == set()


_PIPE_THREAD_DIES_WITH_US = ("the toy runner's far side is a thread of this process: a "
                             "signal, a segfault or os._exit ends the caller too")
_PIPE_THREAD_NOT_KILLABLE = ("the case's consumer sleeps for an hour, and a thread cannot be "
                             "killed, so it would outlive the test")

RUNNERS = {
    "inline": RunnerKind(_start_inline, {
        "item-fails-to-pickle": _INLINE_NOTHING_PICKLED,
        "item-fails-to-unpickle": _INLINE_NOTHING_PICKLED,
        "SIGKILL-mid-stream": _INLINE_NO_WORKER, "segfault": _INLINE_NO_WORKER,
        "os._exit-early": _INLINE_NO_WORKER, "stops-reading": _INLINE_NO_WORKER,
        "stops-finishing": _INLINE_NO_WORKER}, {}),
    "thread": RunnerKind(_start_thread, {
        "item-fails-to-pickle": _NOTHING_PICKLED, "item-fails-to-unpickle": _NOTHING_PICKLED,
        "SIGKILL-mid-stream": _THREAD_DIES_WITH_US, "segfault": _THREAD_DIES_WITH_US,
        "os._exit-early": _THREAD_DIES_WITH_US, "stops-reading": _NO_TIMEOUT,
        "stops-finishing": _NO_TIMEOUT}, {}),
    **{transport: RunnerKind(_start_coprocess(transport), {}, {}) for transport in TRANSPORTS},
    "server-connection": RunnerKind(_start_server_connection, {}, {
        "SIGKILL-mid-stream": _UNKNOWN_END, "segfault": _UNKNOWN_END,
        "os._exit-early": _UNKNOWN_END}),
    "subinterpreter": RunnerKind(_start_subinterpreter, {
        "SIGKILL-mid-stream": _INTERPRETER_DIES_WITH_US, "segfault": _INTERPRETER_DIES_WITH_US,
        "os._exit-early": _INTERPRETER_DIES_WITH_US, "stops-reading": _INTERPRETER_NOT_KILLABLE,
        "stops-finishing": _INTERPRETER_NOT_KILLABLE}, {}, (pytest.mark.subinterpreters,)),
    "mpi-rank": RunnerKind(_start_mpi_rank, {}, {}),
    "pipe-thread": RunnerKind(_start_pipe_thread, {
        "SIGKILL-mid-stream": _PIPE_THREAD_DIES_WITH_US, "segfault": _PIPE_THREAD_DIES_WITH_US,
        "os._exit-early": _PIPE_THREAD_DIES_WITH_US, "stops-reading": _PIPE_THREAD_NOT_KILLABLE,
        "stops-finishing": _PIPE_THREAD_NOT_KILLABLE}, {}),
}


def _cases():
    """Every (kind, fault) pair that can happen; the others are listed, with the reason,
    in each kind's not_applicable."""
    for kind_name, kind in RUNNERS.items():
        for fault_name in FAULTS:
            if fault_name not in kind.not_applicable:
                yield pytest.param(kind_name, fault_name, id=f"{kind_name}-{fault_name}",
                                   marks=kind.marks)


def wait_acknowledged(runner, count: int) -> None:
    if not count:
        return
    if hasattr(runner, "flush"):
        runner.flush()
    deadline = time.monotonic() + TIMEOUT
    while runner.acknowledged < count:
        assert time.monotonic() < deadline, f"{runner!r} never acknowledged {count} items"
        time.sleep(0.001)


def provoke(runner, fault: Fault) -> tuple[BaseException, float]:
    """Send the fault's items and make it show; return the exception and how long the call
    that raised it took."""
    if fault.fault is not None:
        try:
            runner.send(fault.fault)
        except fault.expected as exc:   # an item that cannot be sent: its own send() raises
            return exc, 0.0
        if fault.how == "close":
            for item in range(TRAILING):
                try:
                    runner.send(-item)
                except fault.expected as exc:   # the failure came back already
                    return exc, 0.0
    if fault.how == "send":
        big = b"x" * (1 << 16)  # fills any pipe or socket buffer in a few hundred sends
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                runner.send(big, timeout=STALL)
            except fault.expected as exc:
                return exc, time.monotonic() - start
        raise AssertionError("send() never stalled")
    start = time.monotonic()
    try:
        if fault.how == "close-with-timeout":
            runner.close(timeout=STALL)
        else:
            runner.close()
    except fault.expected as exc:
        return exc, time.monotonic() - start
    raise AssertionError(f"close() raised none of {fault.expected}")


pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("kind_name, fault_name", list(_cases()))
def test_a_fault_is_reported_in_bounded_time_with_counts_and_a_new_runner_works(kind_name,
                                                                                fault_name):
    kind, fault = RUNNERS[kind_name], FAULTS[fault_name]
    started = kind.start(fault.factory, fault.args)
    runner = started.runner
    try:
        for item in range(fault.good):
            runner.send(item)
        wait_acknowledged(runner, fault.good)
        error, took = provoke(runner, fault)
        assert took < fault.bound
        for attribute, value in kind.facts.get(fault_name, fault.facts).items():
            assert getattr(error, attribute) == value
        # Everything acknowledged before the fault was delivered: the caller resends the rest.
        if isinstance(error, PICKLING):
            assert error.__notes__[-1].startswith(f"gilstudy: item number {fault.good} sent "
                                                  f"to {runner.peer.name} could not be "
                                                  "pickled")
            assert runner.acknowledged == fault.good
        else:
            assert error.acknowledged == fault.good
            assert error.sent == runner.sent
    finally:
        runner.abort()
        started.end()

    got = []
    fresh = kind.start(cc.Echo, (), results=cc.Appender(got))
    with fresh.runner:
        for item in range(3):
            fresh.runner.send(item)
    fresh.end()
    assert got == [0, 1, 2, "closed"]


def test_every_case_a_kind_of_runner_skips_is_a_real_fault_with_a_reason():
    for kind_name, kind in RUNNERS.items():
        assert set(kind.not_applicable) <= set(FAULTS), kind_name
        assert all(reason.strip() for reason in kind.not_applicable.values()), kind_name
        assert set(kind.facts) <= set(FAULTS) - set(kind.not_applicable), kind_name
