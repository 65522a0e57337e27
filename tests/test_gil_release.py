# The compiled kernels really release the GIL, the pure-Python ones really hold it.
#
# The switch interval is raised to 100 s, so a thread holding the GIL keeps it for the whole
# test unless it releases it itself. A worker thread runs a kernel; the main thread waits
# until the worker is about to call it, then counts its own steps while the kernel is still
# running. A kernel that releases the GIL lets the main thread count to PROBE_STEPS before
# it finishes; a kernel that holds the GIL keeps the main thread frozen until it has
# finished, so the main thread sees it done before its first step. No clock is read.

import sys
import threading

import pytest

from gilstudy import kernels
from gilstudy.machine import gil_enabled
from conftest import TIMEOUT

PROBE_STEPS = 20_000

# Arguments that keep each kernel busy for a few tenths of a second, far longer than
# PROBE_STEPS trips of the main thread's loop (well under 1 ms) and than the main thread
# takes to wake up on a loaded machine (which matters on a free-threaded build, where the
# main thread runs as soon as it wakes).
WORK = {
    "countdown": {"cython": (2_000_000_000,), "python": (3_000_000,)},
    "count_primes": {"cython": (0, 3_000_000), "python": (0, 200_000)},
    "mandelbrot": {"cython": (1600, 1200, 500), "python": (200, 120, 100)},
}


@pytest.fixture
def long_switch_interval():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def steps_while_kernel_runs(kernel, args) -> int:
    """How many steps the main thread made while ``kernel(*args)`` ran in another thread
    (at most PROBE_STEPS)."""
    about_to_call = threading.Event()
    finished = threading.Event()
    outcome = []

    def run():
        about_to_call.set()
        outcome.append(kernel(*args))
        finished.set()

    worker = threading.Thread(target=run)
    worker.start()
    assert about_to_call.wait(TIMEOUT)
    steps = 0
    # The loop takes no lock and calls nothing that could release the GIL, so with the GIL
    # held by the kernel thread it cannot run at all until that thread is done.
    while steps < PROBE_STEPS and not finished.is_set():
        steps += 1
    worker.join(TIMEOUT)
    assert not worker.is_alive() and outcome
    return steps


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", kernels.NAMES)
def test_cython_kernels_let_other_threads_run(long_switch_interval, name):
    steps = steps_while_kernel_runs(kernels.get(name, "cython"), WORK[name]["cython"])
    assert steps == PROBE_STEPS


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", kernels.NAMES)
def test_python_kernels_hold_the_gil_when_there_is_one(long_switch_interval, name):
    steps = steps_while_kernel_runs(kernels.get(name, "python"), WORK[name]["python"])
    # On a free-threaded build there is no GIL to hold: the main thread runs alongside.
    assert steps == (0 if gil_enabled() else PROBE_STEPS)
