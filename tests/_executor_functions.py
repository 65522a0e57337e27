"""Functions the Executor tests run in workers: importable by name, so every kind of
worker finds them (tests/ is on the sys.path the workers take)."""

import os
import signal
import threading
import time


def square(x):
    return x * x


def add(x, y, *, scale=1):
    return (x + y) * scale


def pid(_=None):
    return os.getpid()


def fail_at(x, bad):
    if x == bad:
        raise KeyError(f"no entry {x}")
    return x


class Unpicklable(Exception):
    """An exception that does not survive a round trip through pickle (its __init__ takes
    two arguments, its args hold one)."""

    def __init__(self, first, second):
        super().__init__(f"{first}/{second}")


def raise_unpicklable():
    raise Unpicklable("a", "b")


def return_a_lock():
    return threading.Lock()


def exit_now(code):
    os._exit(code)


def kill_myself():
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def wait_for(path, timeout=60.0, started=None):
    """Block until ``path`` exists (the test creates it to let the call finish); first
    create the file ``started``, when given, to say the call began."""
    if started is not None:
        open(started, "a").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return path


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value
