"""Coprocesses: spawn() starts a fresh Python interpreter that builds a consumer and runs
the far-side loop on the items sent here, over one of the transports (pipe, FIFO,
socket); coprocesses() starts N of them behind a Dispatch. Both ends live here: the
parent's spawn() and the child's main(), which the new interpreter runs as
``python -m gilstudy.processes``. The child needs only the module's top-level imports
(no threads, no subprocess), so a coprocess starts fast; what only the parent needs is
imported inside spawn().
"""

import os
import signal
import sys
from typing import Any, Callable

from gilstudy import _checks, wire
from gilstudy.farside import serve_as_worker
from gilstudy.flow import EXIT_TIMEOUT, MAX_IN_FLIGHT
from gilstudy.shared import SharedMemory, side_pair
from gilstudy.startup import check_factory, prepare, setup_payload
from gilstudy.transports import TRANSPORTS

__all__ = ["spawn", "coprocesses", "SpawnedProcess", "check_factory", "setup_payload", "main"]

# The module a spawned interpreter runs; its main() is the child's end.
CHILD_MODULE = "gilstudy.processes"

# The environment variable that tells a spawned child the descriptor of its end of the
# side socket, which shared memory crosses (see gilstudy.shared). The child removes it, so
# that processes its consumer starts do not take a stranger's descriptor for one.
SIDE_FD_ENV = "GILSTUDY_SIDE_FD"


def _reap(process, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``process`` (a subprocess.Popen) to exit and reap
    it; return whether it did. Popen.wait(timeout) polls with growing sleeps, which would
    add milliseconds to every close(); a pidfd (Linux 5.3+) wakes us the moment the
    process exits."""
    import select
    import subprocess

    if process.returncode is not None:
        return True
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            pidfd = pidfd_open(process.pid)
        except OSError:
            pass  # an older kernel (or already reaped): fall back to polling
        else:
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if not poller.poll(timeout * 1000):
                    return False
            finally:
                os.close(pidfd)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


class SpawnedProcess:
    """The Peer (gilstudy.remote.Peer) of a coprocess that spawn() started: a child
    process this one owns, reaps and, when it will not end, kills."""

    def __init__(self, process):
        self.process = process
        self.pid: int = process.pid
        self.name = f"coprocess {process.pid}"

    def wait(self, timeout: float) -> int | None:
        if not _reap(self.process, timeout):
            return None
        return self.process.returncode

    def stop(self, force: bool) -> bool:
        process = self.process
        if force and process.poll() is None:
            process.terminate()
        if not _reap(process, EXIT_TIMEOUT):
            process.kill()
            process.wait()
        return True


def spawn(factory: Callable, *args: Any, transport: str = "pipe", path=None, address=None,
          results: Any = None, max_frame: int = wire.MAX_FRAME, allowed=None,
          max_in_flight: int = MAX_IN_FLIGHT):
    """Start a new Python interpreter that runs the consumer ``factory(*args)``; return the
    RemoteConsumer that feeds it.

    ``factory`` and ``args`` are pickled here (``factory`` by reference: importable by its
    module name; one defined in your script's ``__main__`` is found too, as the child loads
    the script under the name ``__mp_main__``, so its ``if __name__ == "__main__":`` block
    does not run again; see gilstudy.mainscript) and the child, started with
    ``sys.executable -m gilstudy.processes``, first takes this process's sys.path. Its
    standard input, output and error are this process's. ``transport`` is "pipe"
    (anonymous pipes), "fifo" (two named pipes in directory ``path``, by default a fresh
    temporary directory, removed as soon as both ends opened them) or "socket" (this
    process listens on ``address``, by default 127.0.0.1 on an ephemeral port, and the
    child connects back, proving that it holds the fresh random key spawn handed it). For
    "pipe" spawn returns at once; for the others once the child has opened its end,
    raising WorkerDied if it ends first or takes more than START_TIMEOUT. Non-None
    results of the consumer go to ``results.send`` (or several at once to
    ``results.extend``, when it has one), from a reader thread; neither may wait for the
    thread that calls ``send`` here.

    ``max_frame`` (bytes, 64 MiB by default) bounds each frame both ways: a batch of items,
    a batch of results, their out-of-band buffers included. numpy arrays of 1 MiB or more,
    items or results, cross through shared memory instead (gilstudy.shared), and the frame
    holds only their handles: no frame limit applies to them. With ``allowed`` (see
    gilstudy.wire.RestrictedUnpickler) results load only the globals it permits.
    ``max_in_flight`` bounds the items sent and not yet acknowledged (see gilstudy.flow):
    the send() that would exceed it waits for the consumer. For example::

        from gilstudy.kernels.work import KernelConsumer
        with spawn(KernelConsumer, "count_primes", "cython", results=collect) as worker:
            for index in range(100):
                worker.send((index, (0, 10_000)))
        # collect got (index, 1229) for every index
    """
    import subprocess

    from gilstudy.remote import open_remote

    if transport not in TRANSPORTS:
        raise ValueError(f"spawn: transport must be one of {', '.join(TRANSPORTS)}, "
                         f"got {transport!r}")
    if path is not None and transport != "fifo":
        raise ValueError(f"spawn: path is for transport='fifo', not {transport!r}")
    if address is not None and transport != "socket":
        raise ValueError(f"spawn: address is for transport='socket', not {transport!r}")
    start = prepare("spawn", factory, args, results=results, max_frame=max_frame,
                    allowed=allowed, max_in_flight=max_in_flight)
    if transport == "pipe":
        opener = TRANSPORTS[transport]()
    elif transport == "fifo":
        opener = TRANSPORTS[transport](path)
    else:
        opener = TRANSPORTS[transport](address)
    process = None
    side_near, side_far = side_pair()
    try:
        where, pass_fds = opener.prepare()
        process = subprocess.Popen([sys.executable, "-m", CHILD_MODULE, transport,
                                    str(max_frame), *where],
                                   pass_fds=(*pass_fds, side_far.fileno()),
                                   env={**os.environ, SIDE_FD_ENV: str(side_far.fileno())})
        side_far.close()
        channel = opener.connect(process, start.options, start.flags)
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        opener.cleanup()
        side_far.close()
        side_near.close()
        raise
    channel.shared = SharedMemory(side_near)
    return open_remote(channel, SpawnedProcess(process), start, where=opener.name,
                       greet=not opener.handshakes, cleanups=[opener.cleanup])


def coprocesses(factory: Callable, n: int, *args: Any, transport: str = "pipe",
                results: Any = None, max_frame: int = wire.MAX_FRAME, allowed=None,
                max_in_flight: int = MAX_IN_FLIGHT):
    """``n`` coprocesses, each running its own ``factory(*args)``, behind one Dispatch: the
    process twin of :func:`gilstudy.consumers.threads`.

    Every item goes to the coprocess with the fewest unacknowledged items. Give a
    thread-safe ``results`` (such as :class:`gilstudy.consumers.Collect`): each coprocess's
    reader thread sends to it. ``max_frame``, ``allowed`` and ``max_in_flight`` are
    spawn()'s. If starting one
    fails, those already started are ended and the error is raised. For example::

        from gilstudy.consumers import Collect
        from gilstudy.kernels.work import KernelConsumer
        results = Collect()
        with coprocesses(KernelConsumer, 2, "count_primes", "python", results=results) as fan:
            for index in range(8):
                fan.send((index, (index * 1000, index * 1000 + 1000)))
        # results.items holds (index, count) for all eight ranges, in arrival order
    """
    from gilstudy.dispatch import start_runners

    _checks.positive_int("coprocesses", "n", n)
    _checks.positive_int("coprocesses", "max_in_flight", max_in_flight)
    return start_runners(lambda index: spawn(factory, *args, transport=transport,
                                             results=results, max_frame=max_frame,
                                             allowed=allowed, max_in_flight=max_in_flight),
                         n, owner="coprocesses")


# -- The child's end --------------------------------------------------------------------------

def _read_key(fd: int) -> bytes:
    """The key the parent wrote into the pipe ``fd`` (then closed): all of it, up to EOF."""
    chunks = []
    with open(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    """Entry point of a spawned coprocess, with the arguments spawn() passes:
    ``TRANSPORT MAX_FRAME KEY_FD WHERE...``; KEY_FD is a pipe holding the key a socket
    channel authenticates with, or "-" for none. When the environment has SIDE_FD_ENV,
    large arrays cross through shared memory, their descriptors over that Unix socket
    (gilstudy.shared)."""
    # Ctrl-C reaches the whole foreground process group; the parent decides what happens
    # to its coprocesses, and this one ends when its input closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    side = None
    side_fd = os.environ.pop(SIDE_FD_ENV, None)
    if side_fd is not None:
        import socket

        side = socket.socket(fileno=int(side_fd))
        side.set_inheritable(False)
    transport, max_frame, key_fd, *where = argv
    authkey = None if key_fd == "-" else _read_key(int(key_fd))
    channel = TRANSPORTS[transport].open_child_end(where, int(max_frame))
    if side is not None:
        channel.shared = SharedMemory(side)
    return serve_as_worker(channel, f"coprocess {os.getpid()}", authkey=authkey)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
