"""Waits that Ctrl-C can always end, and a guard that keeps a second Ctrl-C from cutting a
runner's cleanup short: what the near side of a channel (gilstudy.remote) and the server
(gilstudy.server) wait with.
"""

import contextlib
import signal
import threading
import time

from gilstudy.flow import POLL

__all__ = ["Gate", "interrupts_held"]


class Gate:
    """A one-way door: closed until open() is called, then open for good. wait() uses a
    plain lock, because Ctrl-C interrupts a lock's acquire cleanly, while an Event's
    Condition can be left inconsistent by an interrupt on the free-threaded build. It
    waits in slices of at most POLL seconds: on 3.13t a Ctrl-C that arrives just before
    the acquire blocks is otherwise handled only once the lock comes free, which for a
    close() waiting on a stuck consumer is never."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()

    def open(self) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """True once open; False if ``timeout`` seconds passed first."""
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = POLL if give_up is None else min(POLL, give_up - time.monotonic())
            if self._lock.acquire(timeout=max(0.0, wait)):
                self._lock.release()
                return True
            if give_up is not None and time.monotonic() >= give_up:
                return False


@contextlib.contextmanager
def interrupts_held(first_raises: bool):
    """Ctrl-C while a runner is being ended. In the main thread under Python's own SIGINT
    handler, the first interrupt raises KeyboardInterrupt as usual when ``first_raises``
    (so a close() that waits for ever can be interrupted), and every later one until the
    block ends is only noted, since ending the runner is what it asks for; a cleanup cut
    short by a second Ctrl-C would leave pipes and processes behind. Without
    ``first_raises`` all are noted and one KeyboardInterrupt is raised after the block.
    Anywhere else (another thread, a handler of the program's own) nothing changes."""
    noted = []

    def on_interrupt(signum, frame):
        noted.append(signum)
        if first_raises and len(noted) == 1:
            raise KeyboardInterrupt

    holding = False
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        try:
            signal.signal(signal.SIGINT, on_interrupt)
            holding = True
        except ValueError:
            pass  # not the main interpreter: signals are not ours to handle
    try:
        yield
    finally:
        if holding:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if noted and not first_raises:
        raise KeyboardInterrupt
