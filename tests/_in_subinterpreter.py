# What the subinterpreter tests run inside one: consumers a subinterpreter builds by name, and
# probes called in a fresh isolated interpreter. A subinterpreter imports them from the
# caller's sys.path (where pytest put this directory), so this module imports nothing that
# cannot load there: no numpy, no pytest, no conftest.

import sys
import threading
from contextlib import contextmanager

# How many steps the probing thread counts while a kernel runs (see test_gil_release.py).
PROBE_STEPS = 20_000
# Only reached when something deadlocks.
TIMEOUT = 60.0


@contextmanager
def fresh_interpreter():
    """A new isolated interpreter (its own GIL) that has this one's sys.path; closed after."""
    import concurrent.interpreters

    interpreter = concurrent.interpreters.create()
    try:
        interpreter.prepare_main(path=tuple(sys.path))
        interpreter.exec("import sys; sys.path[:] = path")
        yield interpreter
    finally:
        interpreter.close()


def steps_while_kernel_runs(kernel, args, probe_steps: int = PROBE_STEPS) -> int:
    """How many steps this thread made while ``kernel(*args)`` ran in another thread of the
    same interpreter (at most ``probe_steps``). With a long switch interval, a kernel that
    holds the GIL freezes this thread until it is done (0 steps); one that releases it lets
    this thread count them all. No clock is read."""
    about_to_call = threading.Event()
    finished = threading.Event()
    outcome = []

    def run():
        about_to_call.set()
        outcome.append(kernel(*args))
        finished.set()

    # Not a daemon: an isolated subinterpreter refuses daemon threads.
    worker = threading.Thread(target=run, daemon=False)
    worker.start()
    assert about_to_call.wait(TIMEOUT)
    steps = 0
    # The loop takes no lock and calls nothing that could release the GIL, so with the GIL
    # held by the kernel thread it cannot run at all until that thread is done.
    while steps < probe_steps and not finished.is_set():
        steps += 1
    worker.join(TIMEOUT)
    assert not worker.is_alive() and outcome
    return steps


def steps_while_named_kernel_runs(name: str, impl: str, args: tuple) -> int:
    """steps_while_kernel_runs() for kernel ``name`` in ``impl``, with this interpreter's
    switch interval raised to 100 s meanwhile: to be called in a fresh interpreter."""
    from gilstudy import kernels
    from gilstudy.kernels import _image

    # The one try at importing numpy (which reads files, releasing the GIL) happens here,
    # not at the end of the probed call.
    _image.numpy_or_none()
    previous = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        return steps_while_kernel_runs(kernels.get(name, impl), args)
    finally:
        sys.setswitchinterval(previous)


def signal_then_run(fd: int, name: str, impl: str, args: tuple) -> object:
    """Write one byte to ``fd``, then run kernel ``name`` in ``impl``: the caller, in another
    interpreter, learns that the kernel is about to start."""
    import os

    from gilstudy import kernels

    kernel = kernels.get(name, impl)
    os.write(fd, b"!")
    return kernel(*args)


# The arguments every_kernel_result() runs each kernel on: small, but through every loop.
SMALL_ARGS = {
    "countdown": (10_000,),
    "count_primes": (0, 20_000),
    "mandelbrot": (48, 32, 80, 3, 29),
}


def every_kernel_result() -> bytes:
    """Run every kernel, both implementations and the prange twins, on SMALL_ARGS; return
    the results pickled, as {(name, variant): result}, together with the names of the
    modules loaded."""
    import pickle

    from gilstudy import kernels
    from gilstudy.kernels import cython

    results = {}
    for name in kernels.NAMES:
        for impl in kernels.IMPLS:
            results[name, impl] = kernels.get(name, impl)(*SMALL_ARGS[name])
        results[name, "prange"] = getattr(cython, f"{name}_prange")(*SMALL_ARGS[name], 2)
    return pickle.dumps((results, sorted(sys.modules)), 5)


class ExitsAt:
    """Returns items until item ``when``, then calls sys.exit(``code``): in a subinterpreter,
    the far side ends without closing its consumer, and the process goes on."""

    def __init__(self, code, when):
        self.code = code
        self.when = when

    def send(self, item):
        if item == self.when:
            sys.exit(self.code)
        return item

    def close(self):
        return None


class Whereabouts:
    """close() returns where it ran: its interpreter's id, the main interpreter's id, and
    whether numpy and the compiled kernels are loaded there."""

    def send(self, item):
        return None

    def close(self):
        import concurrent.interpreters

        return {"interpreter": concurrent.interpreters.get_current().id,
                "main": concurrent.interpreters.get_main().id,
                "numpy": "numpy" in sys.modules,
                "far side": "gilstudy.farside" in sys.modules}
