# Coprocesses: spawn() starts a fresh Python interpreter that builds a consumer and runs
# the far-side loop on the items sent here, over one of the transports (pipe, FIFO,
# socket); coprocesses() starts N of them behind a Dispatch. Both ends live here: the
# parent's spawn() and the child's main(), which the new interpreter runs as
# ``python -m gilstudy.processes``. The child needs only the module's top-level imports
# (no threads, no subprocess), so a coprocess starts fast; what only the parent needs is
# imported inside spawn().

import os
import pickle
import signal
import sys
from typing import Any, Callable

from gilstudy import _checks, wire
from gilstudy.errors import AuthenticationError, PeerGone, ProtocolError
from gilstudy.farside import run_far_side
from gilstudy.flow import MAX_IN_FLIGHT
from gilstudy.shared import SharedMemory, side_pair
from gilstudy.transports import TRANSPORTS

__all__ = ["spawn", "coprocesses", "SpawnedProcess", "check_factory", "setup_payload",
           "open_link", "main"]

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
        from gilstudy.remote import EXIT_TIMEOUT

        process = self.process
        if force and process.poll() is None:
            process.terminate()
        if not _reap(process, EXIT_TIMEOUT):
            process.kill()
            process.wait()
        return True


def check_factory(factory: Callable, owner: str = "spawn", worker: str = "a coprocess",
                  in_main_ok: bool = False) -> None:
    """Refuse a ``factory`` that ``worker`` cannot rebuild from its pickle: one that is not
    callable (TypeError) or, unless ``in_main_ok`` (the workers run this same ``__main__``),
    is defined in ``__main__`` (ValueError)."""
    if not callable(factory):
        raise TypeError(f"{owner}: factory must be callable, got {factory!r} "
                        f"({type(factory).__name__})")
    if not in_main_ok and getattr(factory, "__module__", None) == "__main__":
        raise ValueError(
            f"{owner}: factory {getattr(factory, '__qualname__', factory)!r} is defined in "
            f"__main__, which {worker} cannot import; define it in a module")


def setup_payload(factory: Callable, args: tuple, max_frame: int, owner: str = "spawn") -> bytes:
    """The SETUP frame that makes the child's end build ``factory(*args)`` (see
    _build_from_setup): this process's sys.path and the pickled call. Pickled before
    anything starts, so an unpicklable factory or argument fails here; ValueError when it
    is longer than ``max_frame``."""
    call = pickle.dumps((factory, args), wire.PICKLE_PROTOCOL)
    setup = pickle.dumps((sys.path, call), wire.PICKLE_PROTOCOL)
    if len(setup) > max_frame:
        raise ValueError(f"{owner}: the factory and its arguments pickle to {len(setup)} "
                         f"bytes, more than max_frame ({max_frame})")
    return setup


def spawn(factory: Callable, *args: Any, transport: str = "pipe", path=None, address=None,
          results: Any = None, max_frame: int = wire.MAX_FRAME, allowed=None,
          max_in_flight: int = MAX_IN_FLIGHT):
    """Start a new Python interpreter that runs the consumer ``factory(*args)``; return the
    RemoteConsumer that feeds it.

    ``factory`` and ``args`` are pickled here (``factory`` by reference: it must be
    importable by its module name, not defined in ``__main__``) and the child, started with
    ``sys.executable -m gilstudy.processes``, first takes this process's sys.path. Its
    standard input, output and error are this process's. ``transport`` is "pipe"
    (anonymous pipes), "fifo" (two named pipes in directory ``path``, by default a fresh
    temporary directory, removed as soon as both ends opened them) or "socket" (this
    process listens on ``address``, by default 127.0.0.1 on an ephemeral port, and the
    child connects back, proving that it holds the fresh random key spawn handed it). For
    "pipe" spawn returns at once; for the others once the child has opened its end,
    raising CoprocessDied if it ends first or takes more than START_TIMEOUT. Non-None
    results of the consumer go to ``results.send``, from a reader thread; ``results.send``
    must not wait for the thread that calls ``send`` here.

    ``max_frame`` (bytes, 64 MiB by default) bounds each frame both ways: a batch of items,
    a batch of results, their out-of-band buffers included. numpy arrays of 1 MiB or more,
    items or results, cross through shared memory instead (gilstudy.shared), and the frame
    holds only their handles: no frame limit applies to them. With ``allowed`` (see
    gilstudy.wire.RestrictedUnpickler) results load only the globals it permits.
    ``max_in_flight`` bounds the items sent and not yet acknowledged (see gilstudy.flow):
    the send() that would exceed it waits for the consumer.

        from gilstudy.kernels.work import KernelConsumer
        with spawn(KernelConsumer, "count_primes", "cython", results=collect) as worker:
            for index in range(100):
                worker.send((index, (0, 10_000)))
        # collect got (index, 1229) for every index
    """
    import subprocess

    if transport not in TRANSPORTS:
        raise ValueError(f"spawn: transport must be one of {', '.join(TRANSPORTS)}, "
                         f"got {transport!r}")
    if path is not None and transport != "fifo":
        raise ValueError(f"spawn: path is for transport='fifo', not {transport!r}")
    if address is not None and transport != "socket":
        raise ValueError(f"spawn: address is for transport='socket', not {transport!r}")
    check_factory(factory)
    options = wire.channel_options("spawn", max_frame, allowed)
    _checks.results("spawn", results)
    _checks.positive_int("spawn", "max_in_flight", max_in_flight)
    setup = setup_payload(factory, args, max_frame)
    if transport == "pipe":
        opener = TRANSPORTS[transport]()
    elif transport == "fifo":
        opener = TRANSPORTS[transport](path)
    else:
        opener = TRANSPORTS[transport](address)
    flags = wire.WANT_RESULTS if results is not None else 0
    process = None
    side_near, side_far = side_pair()
    try:
        where, pass_fds = opener.prepare()
        process = subprocess.Popen([sys.executable, "-m", CHILD_MODULE, transport,
                                    str(max_frame), *where],
                                   pass_fds=(*pass_fds, side_far.fileno()),
                                   env={**os.environ, SIDE_FD_ENV: str(side_far.fileno())})
        side_far.close()
        channel = opener.connect(process, options, flags)
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        opener.cleanup()
        side_far.close()
        side_near.close()
        raise
    channel.shared = SharedMemory(side_near)
    return open_link(channel, SpawnedProcess(process), setup, flags, results=results,
                     where=opener.name, hello=not opener.handshakes, cleanups=[opener.cleanup],
                     max_in_flight=max_in_flight)


def open_link(channel: wire.Channel, peer, setup: bytes, flags: int, *, results, where: str,
              hello: bool = True, cleanups=(), max_in_flight: int = MAX_IN_FLIGHT):
    """Say HELLO (unless a handshake did already, ``hello=False``) and SETUP on ``channel``
    to a child's end that has just started, and return the RemoteConsumer that feeds it,
    with ``peer`` (gilstudy.remote.Peer) behind it. A child that ended at once leaves the
    writer broken; its reader thread tells how (CoprocessDied)."""
    from gilstudy.link import Link
    from gilstudy.remote import RemoteConsumer

    try:
        if hello:
            wire.send_hello(channel, os.getpid(), flags)
        channel.write_frame(wire.SETUP, setup)
    except OSError:
        broken = True
    else:
        broken = False
    link = Link(channel, peer, results=results, where=where, expect_hello=hello,
                 cleanups=cleanups, max_in_flight=max_in_flight)
    if broken:
        link.break_writer()
    return RemoteConsumer(link)


def coprocesses(factory: Callable, n: int, *args: Any, transport: str = "pipe",
                results: Any = None, max_frame: int = wire.MAX_FRAME, allowed=None,
                max_in_flight: int = MAX_IN_FLIGHT):
    """``n`` coprocesses, each running its own ``factory(*args)``, behind one Dispatch: the
    process twin of :func:`gilstudy.consumers.threads`.

    Every item goes to the coprocess with the fewest unacknowledged items. Give a
    thread-safe ``results`` (such as :class:`gilstudy.consumers.Collect`): each coprocess's
    reader thread sends to it. ``max_frame``, ``allowed`` and ``max_in_flight`` are
    spawn()'s. If starting one
    fails, those already started are ended and the error is raised.

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

def _build_from_setup(channel: wire.Channel):
    """Read the SETUP frame of a spawned coprocess: take the parent's sys.path, so that
    whatever the parent imports by name the child can import too, then unpickle the
    factory and its arguments (which may need that path) and call it."""
    kind, payload = channel.read_frame()
    if kind != wire.SETUP:
        raise ProtocolError(f"expected a SETUP frame, got {wire.KIND_NAMES[kind]}")
    sys_path, call = channel.load(payload)
    sys.path[:] = sys_path
    factory, args = channel.load(call)
    return factory(*args)


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
    # to its coprocesses, and this one ends when its input closes. A subinterpreter
    # (gilstudy.interpreters) runs this too, where signals are not its own to set.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass  # not the main thread of the main interpreter
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
    try:
        hello = wire.handshake(channel, pid=os.getpid(), authkey=authkey, accepting=False)
        run_far_side(channel, lambda: _build_from_setup(channel),
                     want_results=bool(hello.flags & wire.WANT_RESULTS))
    except AuthenticationError as exc:
        print(f"gilstudy coprocess {os.getpid()}: {exc}", file=sys.stderr)
        return 2
    except (PeerGone, EOFError, OSError):
        return 0  # the parent is gone: nobody to report to
    except ProtocolError as exc:
        print(f"gilstudy coprocess {os.getpid()}: {exc}", file=sys.stderr)
        return 2
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
