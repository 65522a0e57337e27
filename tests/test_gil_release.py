# The compiled kernels really release the GIL, the pure-Python ones really hold it.
#
# The switch interval is raised to 100 s, so a thread holding the GIL keeps it for the whole
# test unless it releases it itself. A worker thread runs a kernel; the main thread waits
# until the worker is about to call it, then counts its own steps while the kernel is still
# running. A kernel that releases the GIL lets the main thread count to PROBE_STEPS before
# it finishes; a kernel that holds the GIL keeps the main thread frozen until it has
# finished, so the main thread sees it done before its first step. No clock is read.

import pytest

from _in_subinterpreter import (PROBE_STEPS, fresh_interpreter, steps_while_kernel_runs,
                                steps_while_named_kernel_runs)
from gilstudy import kernels
from gilstudy.machine import gil_enabled

# Arguments that keep each kernel busy for a few tenths of a second, far longer than
# PROBE_STEPS trips of the main thread's loop (well under 1 ms) and than the main thread
# takes to wake up on a loaded machine (which matters on a free-threaded build, where the
# main thread runs as soon as it wakes).
WORK = {
    "countdown": {"cython": (2_000_000_000,), "python": (3_000_000,)},
    "count_primes": {"cython": (0, 3_000_000), "python": (0, 200_000)},
    "mandelbrot": {"cython": (1600, 1200, 500), "python": (200, 120, 100)},
}


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


# In a fresh isolated subinterpreter (its own GIL), where the compiled module is loaded again
# with its own module state: the nogil loops still let that interpreter's other threads run,
# and the pure-Python kernels still hold its GIL, which is that interpreter's alone.

@pytest.mark.subinterpreters
@pytest.mark.timeout(120)
@pytest.mark.parametrize("impl", kernels.IMPLS)
@pytest.mark.parametrize("name", kernels.NAMES)
def test_inside_a_subinterpreter_cython_releases_its_gil_and_python_holds_it(name, impl):
    with fresh_interpreter() as interpreter:
        steps = interpreter.call(steps_while_named_kernel_runs, name, impl, WORK[name][impl])
    holds_the_gil = impl == "python" and gil_enabled()
    assert steps == (0 if holds_the_gil else PROBE_STEPS)
