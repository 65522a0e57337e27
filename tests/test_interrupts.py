# Ctrl-C at any instant of a coprocess's close() and abort(): the interrupt is raised (with
# signal.raise_signal, so whichever SIGINT handler is in place at that instant runs) at each
# instant of close(), abort() and the guard's own code where Python would run a signal
# handler (a function's entry, a C call's return), in turn, from a profile hook; after each
# the worker, its threads and the SIGINT handler must all be as they were, once the consumer
# is dropped. Then the same with real bursts of signals from another thread.

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import _coprocess_consumers as cc
from gilstudy import remote
from gilstudy.coprocess import spawn
from _leftovers import process_gone

TIMEOUT = 60
HERE = os.path.dirname(os.path.abspath(__file__))

# The code whose every line gets an interrupt: the two calls and the guard they enter.
TRACED = {remote.RemoteConsumer.close.__code__, remote.RemoteConsumer.abort.__code__,
          remote.RemoteConsumer._close_held.__code__,
          *(method.__code__ for method in vars(remote.interrupts_held).values()
            if callable(method) and hasattr(method, "__code__"))}




def interrupt_at(step: int):
    """A profile function that raises SIGINT at event number ``step`` among the instants
    where Python runs a signal handler, in the traced code: the entry of each traced
    function and of each function it calls, and the return of each C function it calls.
    Returns it and a list that tells where it fired."""
    seen = [0]
    fired = []

    def profile(frame, event, arg):
        if event == "call":
            caller = frame.f_back
            due = frame.f_code in TRACED or (caller is not None and caller.f_code in TRACED)
        else:
            due = event == "c_return" and frame.f_code in TRACED
        if due:
            seen[0] += 1
            if seen[0] == step:
                fired.append((frame.f_code.co_name, frame.f_lineno, event))
                sys.setprofile(None)
                signal.raise_signal(signal.SIGINT)

    return profile, fired


@pytest.mark.timeout(600)
@pytest.mark.parametrize("call", ["close", "abort", "with-raises"])
def test_ctrl_c_at_each_line_of_ending_leaves_nothing_behind(call):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    threads = threading.active_count()
    step = 0
    while True:
        step += 1
        consumer = spawn(cc.Echo)
        consumer.send(1)
        consumer.flush()
        pid = consumer.pid
        profile, fired = interrupt_at(step)
        sys.setprofile(profile)
        interrupted = False
        try:
            if call == "with-raises":
                with consumer:
                    raise ValueError("the block failed")
            getattr(consumer, call)()
        except KeyboardInterrupt:
            interrupted = True
        except ValueError:
            pass
        finally:
            sys.setprofile(None)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, (step, fired)
        if fired:
            assert interrupted, (step, fired)
        del consumer
        gc.collect()
        assert process_gone(pid), (step, fired)
        deadline = time.monotonic() + TIMEOUT
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threading.active_count() == threads, (step, fired)
        if not fired:
            break
    assert step > 10   # the hook saw the guard's steps, not only the first few


BURST = """
    import gc, json, os, signal, sys, threading, time
    import _coprocess_consumers as cc
    from gilstudy.coprocess import spawn

    call, runs = sys.argv[1], int(sys.argv[2])
    main = threading.main_thread().ident
    left = []


    def quiet(signum, frame):
        pass


    # Between two runs SIGINT does nothing, so a signal of the last burst that Python
    # handles late (it may, well after it was sent) cannot interrupt the test itself.
    signal.signal(signal.SIGINT, quiet)
    for run in range(runs):
        consumer = spawn(cc.Echo)
        consumer.send(1)
        consumer.flush()
        pid = consumer.pid

        def burst(delay=run % 7 * 0.0002):
            time.sleep(delay)
            for _ in range(10):
                signal.pthread_kill(main, signal.SIGINT)
                time.sleep(0.0003)

        sender = threading.Thread(target=burst)
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sender.start()
            getattr(consumer, call)()
        except KeyboardInterrupt:
            pass
        while True:
            try:
                signal.signal(signal.SIGINT, quiet)
                break
            except KeyboardInterrupt:
                pass
        sender.join()
        del consumer
        gc.collect()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        else:
            left.append(pid)
    print(json.dumps({"left": left, "threads": threading.active_count()}))
    """


@pytest.mark.timeout(600)
@pytest.mark.parametrize("call", ["close", "abort"])
def test_bursts_of_ctrl_c_during_ending_leave_nothing_behind(call):
    script = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BURST), call, "40"],
        env={**os.environ, "PYTHONPATH": HERE}, capture_output=True, text=True, timeout=500)
    assert script.returncode == 0, script.stderr
    assert json.loads(script.stdout) == {"left": [], "threads": 1}
