"""Flow control for the sending end of a framed channel (gilstudy.remote), by items and by
progress: at most max_in_flight items sent and not yet acknowledged, and a timeout that
means "no progress for that long" (no acknowledgement arrived, no byte of ours was read),
never "the consumer is slow".
"""

import time
from typing import Callable

__all__ = ["MAX_IN_FLIGHT", "EXIT_TIMEOUT", "POLL", "FlowControl", "Patience"]

# How many items may be sent to one worker and not yet acknowledged, by default: sixteen
# frames of the smallest items (gilstudy.batching puts at most 4096 in a frame of about
# 64 KiB), what a 1 MiB pipe holds. The worker acknowledges a frame once it has handled
# it, so the window must cover the frames in the pipe as well as the one being handled:
# with four frames (the earlier default), a worker descheduled for a few milliseconds on
# a busy machine left the producer waiting, and a stream of small items ran at 0.8 of
# the rate it reaches here. A producer faster than its consumer still waits instead of
# running minutes ahead.
MAX_IN_FLIGHT = 65536

# How long a worker may take to exit once its channel has closed, in seconds, before it
# is killed; close() raises WorkerDied for a dead one at the latest this long after the
# death, and usually within milliseconds.
EXIT_TIMEOUT = 5.0

# How often, in seconds, a wait looks again whether the peer made progress or the channel
# halted.
POLL = 0.05


class Patience:
    """One call's wait on the peer. stalled() becomes true once the peer has made no
    progress for ``timeout`` seconds (never when ``timeout`` is None), counted from the
    later of the call's start and the peer's last progress: an acknowledgement arriving
    (FlowControl.acknowledge) or the peer reading part of a frame we write (moved(), which
    wire.Channel calls). A slow consumer that keeps acknowledging is never stalled."""

    __slots__ = ("_flow", "timeout", "_since")

    def __init__(self, flow: "FlowControl", timeout: float | None):
        self._flow = flow
        self.timeout = timeout
        self._since = time.monotonic()

    def moved(self) -> None:
        self._flow.progress_at = time.monotonic()

    def stalled(self) -> bool:
        if self.timeout is None:
            return False
        return time.monotonic() - max(self._since, self._flow.progress_at) > self.timeout

    def lock_wait(self) -> float:
        """How long to block on a lock before asking stalled() again (and before a
        pending Ctrl-C is handled: see gilstudy._waits.Gate)."""
        return POLL


class FlowControl:
    """The window of one channel: ``acknowledged``, the count in the peer's last ACK;
    ``progress_at``, when the peer last made progress (time.monotonic()); and the bound,
    ``max_in_flight`` items sent and not yet acknowledged.

    The reader thread calls acknowledge() for each ACK; a sender that needs room calls
    wait_for_room(). Waiters sleep on a plain lock that each acknowledgement releases (a
    lock, not a Condition: Ctrl-C interrupts a lock's acquire cleanly), and look again at
    least every POLL seconds, so a wake-up taken by another waiter costs at most that.
    """

    def __init__(self, max_in_flight: int):
        # Imported here: a spawned coprocess imports this module (for MAX_IN_FLIGHT, a
        # default of spawn's) and starts faster without threading.
        import threading

        self.max_in_flight = max_in_flight
        self.acknowledged = 0
        self.progress_at = 0.0
        self._wakeup = threading.Lock()
        self._wakeup.acquire()

    def patience(self, timeout: float | None) -> Patience:
        return Patience(self, timeout)

    def acknowledge(self, count: int) -> None:
        """The peer has handled ``count`` items in all (from the reader thread)."""
        self.acknowledged = count
        self.progress_at = time.monotonic()
        self.wake()

    def wake(self) -> None:
        """Make a waiter look again now (an acknowledgement came, or the channel halted)."""
        try:
            self._wakeup.release()
        except RuntimeError:
            pass  # a wake-up is already pending

    def room(self, taken: int) -> int:
        """How many more items may be sent when ``taken`` were written so far."""
        return self.max_in_flight - (taken - self.acknowledged)

    def wait_for_room(self, sent: Callable[[], int], count: int, patience: Patience,
                      halted: Callable[[], bool]) -> bool:
        """Wait until ``count`` more items fit beside the ``sent() - acknowledged`` in
        flight, or nothing is in flight at all (so an oversized batch still goes, alone).
        Returns False as soon as ``halted()`` is true; raises TimeoutError when
        ``patience`` runs out first."""
        while sent() + count - self.acknowledged > self.max_in_flight and (
                sent() > self.acknowledged):
            if halted():
                return False
            if patience.stalled():
                raise TimeoutError("no progress")
            self._wakeup.acquire(timeout=POLL)
        return True
