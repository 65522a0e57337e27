"""Waits that Ctrl-C can always end, and a guard that keeps a second Ctrl-C from cutting a
runner's cleanup short: what the near side of a channel (gilstudy.remote) and the server
(gilstudy.server) wait with.
"""

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


class interrupts_held:
    """Ctrl-C while a runner is being ended: ``with interrupts_held(first_raises, cleanup):``.

    In the main thread under Python's own SIGINT handler, the first interrupt raises
    KeyboardInterrupt as usual when ``first_raises`` (so a close() that waits for ever can
    be interrupted), and every later one until the block ends is only noted, since ending
    the runner is what it asks for; a cleanup cut short by a second Ctrl-C would leave pipes
    and processes behind. Without ``first_raises`` all are noted and one KeyboardInterrupt
    is raised after the block. Anywhere else (another thread, a handler of the program's
    own) nothing changes.

    The guard's own installation and removal are interrupt-safe: an interrupt that lands
    while the handler is being put in place (Python's handler is still the one that runs)
    or while the guard's own methods run counts as the block's first interrupt instead of
    escaping from them. ``cleanup`` (for close(): the runner's abort) runs, with every
    interrupt held, whenever a KeyboardInterrupt ends the guard, also when it landed
    before the block's own ``try`` could catch it; it must be idempotent.
    """

    def __init__(self, first_raises: bool, cleanup=None):
        self.noted = 0
        self._first_raises = first_raises
        self._raising = first_raises     # the next interrupt raises, if it lands in the block
        self._cleanup = cleanup
        self._holding = False
        self._handler = self._on_interrupt

    def _on_interrupt(self, signum, frame) -> None:
        self.noted += 1
        if self._raising and not _in_guard(frame):
            self._raising = False
            raise KeyboardInterrupt

    def __enter__(self) -> "interrupts_held":
        while True:
            try:
                self._install()
                break
            except KeyboardInterrupt:
                # Raised by Python's handler before ours was in place: count it as ours.
                if signal.getsignal(signal.SIGINT) is not self._handler:
                    self.noted += 1
        if self._first_raises and self._raising and self.noted:
            # The first interrupt landed here, before the block's try: end now.
            self._raising = False
            self._end(KeyboardInterrupt)
            raise KeyboardInterrupt
        return self

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(signal.SIGINT)
        if handler is signal.default_int_handler:
            try:
                signal.signal(signal.SIGINT, self._handler)
            except ValueError:
                return  # not the main interpreter: signals are not ours to handle
        self._holding = signal.getsignal(signal.SIGINT) is self._handler

    def __exit__(self, exc_type, exc, tb) -> None:
        self._raising = False
        if exc_type is None and self._first_raises and self.noted:
            exc_type = KeyboardInterrupt   # noted in the guard's own code: still the first
            self._end(exc_type)
            raise KeyboardInterrupt
        self._end(exc_type)
        if exc_type is None and self.noted:
            raise KeyboardInterrupt

    def _end(self, exc_type) -> None:
        """Run the cleanup if a KeyboardInterrupt ends the guard, then put Python's handler
        back."""
        try:
            if (self._cleanup is not None and exc_type is not None
                    and issubclass(exc_type, KeyboardInterrupt)):
                self._cleanup()
        finally:
            if self._holding:
                # A SIGINT that arrived with the one that raised is still pending (Python
                # runs a handler once per check): checking now gives it to our handler,
                # not to Python's after the guard is gone.
                signal.pthread_kill(threading.get_ident(), 0)
                self._holding = False
                signal.signal(signal.SIGINT, signal.default_int_handler)


def _in_guard(frame) -> bool:
    """Whether ``frame`` or one of its three callers runs the guard's own code."""
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_code in _GUARD_CODE:
            return True
        frame = frame.f_back
    return False


_GUARD_CODE = frozenset(method.__code__ for method in (
    interrupts_held.__enter__, interrupts_held.__exit__, interrupts_held._install,
    interrupts_held._end))
