"""What runs inside an MPI job. Every rank but 0 serves: it builds its consumer from the
factory rank 0 sends and runs the far-side loop over an MpiChannel. Rank 0 is either the
user's producer (world(), in a job the user launched with mpiexec), holding one
RemoteConsumer per rank behind a Dispatch, or, in a job that ranks() launched, a relay
between the caller's connections and the ranks (main(), run as `python -m gilstudy.mpi`).
"""

import os
import signal
import sys
import threading
from typing import Any, Callable

from gilstudy import wire
from gilstudy.dispatch import Dispatch, start_runners
from gilstudy.errors import PeerGone, ProtocolError
from gilstudy.farside import serve_channel
from gilstudy.flow import MAX_IN_FLIGHT
from gilstudy.mpi.find import load_mpi
from gilstudy.startup import prepare

__all__ = ["world", "serve", "relay", "main"]

# How long a rank that is done waits for its last messages to be received before it leaves.
_DRAIN_TIMEOUT = 5.0


def serve(comm, producer: int, max_frame: int) -> None:
    """Serve rank ``producer`` of ``comm`` until it closes: answer its HELLO, build the
    consumer from its SETUP and run the far-side loop; read what the producer still sends up
    to its end of stream; then tell the producer that this rank is done and wait (at most
    _DRAIN_TIMEOUT) until it has received everything. No message is left unreceived on
    either side when MPI finalizes. A consumer that raises is reported to the producer by
    the loop; a broken frame is also printed to stderr. Never raises for a producer that
    went away: nobody is left to tell."""
    from gilstudy.mpi.channel import MpiChannel

    channel = MpiChannel(comm, producer, max_frame=max_frame)
    try:
        serve_channel(channel)
        _read_to_end(channel)
    except (PeerGone, EOFError):
        pass
    except ProtocolError as exc:
        print(f"gilstudy MPI rank {comm.Get_rank()}: {exc}", file=sys.stderr)
        _read_to_end(channel)
    finally:
        channel.close_writer()
        channel.drain(_DRAIN_TIMEOUT)
        channel.close()


def _read_to_end(channel) -> None:
    """Discard frames until the producer's end of stream."""
    while True:
        try:
            channel.read_frame()
        except EOFError:
            return
        except ProtocolError:
            continue


class _SharedPostbox:
    """The Postbox and duplicated communicator that world()'s RemoteConsumers share: freed
    when the last of them has finished (or at once, when starting them failed)."""

    def __init__(self, comm, postbox, users: int):
        self.comm = comm
        self.postbox = postbox
        self._users = users
        self._freed = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.free()

    def free(self) -> None:
        """Idempotent: aborting the runners already started releases them too."""
        with self._lock:
            if self._freed:
                return
            self._freed = True
        self.postbox.close()
        self.comm.Free()


def world(factory: Callable, *args: Any, results: Any = None, comm=None,
          max_frame: int = wire.MAX_FRAME, allowed=None,
          max_in_flight: int = MAX_IN_FLIGHT) -> Dispatch | None:
    """The ranks of an MPI job the user launched (``mpiexec -n 5 python myjob.py``) as
    consumers: every rank calls world() with the same arguments. On rank 0 it returns a
    Dispatch over one RemoteConsumer per other rank, each running ``factory(*args)``; on the
    other ranks it serves rank 0 until rank 0 closes it, then returns None::

        fan = world(KernelConsumer, "count_primes", "cython", results=results)
        if fan is not None:              # rank 0: the producer
            with fan:
                for item in items:
                    fan.send(item)

    ``comm`` (default MPI.COMM_WORLD) is duplicated, so gilstudy's messages never meet the
    program's own. The factory travels from rank 0 as a pickle, by reference: every rank
    runs the same program, so a factory defined in ``__main__`` is found too. ``results``,
    ``max_frame``, ``allowed`` and ``max_in_flight`` are spawn()'s. Items and results
    travel as a coprocess's do (batched, acknowledged; numpy arrays as raw MPI buffers), and a consumer that raises
    is a RemoteError naming its rank. A rank that dies ends the whole job: that is MPI's
    rule, and mpiexec reports which rank and how.

    Raises MpiUnavailable without mpi4py, TypeError or ValueError for bad arguments (on
    every rank, before any MPI call), and ValueError on a job of one rank.
    """
    # Checked on every rank, before any MPI call; only rank 0 sends the SETUP.
    start = prepare("world", factory, args, results=results, max_frame=max_frame,
                    allowed=allowed, max_in_flight=max_in_flight, worker="a rank",
                    in_main_ok=True)
    MPI = load_mpi()
    comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
    if comm.Get_rank() != 0:
        try:
            serve(comm, 0, max_frame)
        finally:
            comm.Free()
        return None
    size = comm.Get_size()
    if size < 2:
        comm.Free()
        raise ValueError("world: this MPI job has one rank, so none to serve; launch it with "
                         "mpiexec -n 2 or more")
    from gilstudy.mpi.channel import MpiChannel, Postbox
    from gilstudy.remote import RemoteConsumer, UnownedPeer, open_remote

    shared = _SharedPostbox(comm, Postbox(comm, range(1, size)), size - 1)

    def start_one(index: int) -> RemoteConsumer:
        # MPI gives no rank a way to end another or to see how it ended: when one dies,
        # the launcher ends the whole job, this process included.
        rank = index + 1
        channel = MpiChannel(comm, rank, shared.postbox.inbox(rank), **start.options)
        return open_remote(channel, lambda hello: UnownedPeer(f"MPI rank {rank}", hello.pid),
                           start, where="MPI job", cleanups=[shared.release])

    try:
        return start_runners(start_one, size - 1, owner="world")
    except BaseException:
        shared.free()
        raise


# -- A job that ranks() launched ----------------------------------------------------------------

def _pump(source, target) -> None:
    """Copy frames from ``source`` to ``target`` until ``source`` ends; then close
    ``target``'s writing side, so the end travels on."""
    try:
        while True:
            kind, payload = source.read_frame()
            if type(payload) is wire.OutOfBand:
                target.write_frames([(kind, payload.pickle, payload.buffers)])
            else:
                target.write_frames([(kind, payload)])
    except (EOFError, OSError, ProtocolError):
        pass
    finally:
        target.close_writer()


def relay(comm, address: tuple[str, int], authkey: bytes, max_frame: int) -> None:
    """The last rank of a job ranks() launched: connect to the caller at ``address`` once
    per serving rank (all the others), in rank order, proving each time that this process
    holds ``authkey``; then copy frames both ways between each connection and its rank
    until both ends have closed. Raises what connecting raises; the caller sees the job
    end."""
    import socket

    # Loaded here, the relay reads arrays from the caller into numpy.empty() buffers, which
    # reuse freed memory, instead of zero-filled bytearrays (see wire's receive buffers).
    import numpy  # noqa: F401

    from gilstudy.mpi.channel import MpiChannel, Postbox

    serving = range(comm.Get_size() - 1)
    postbox = Postbox(comm, serving)
    pumps, channels = [], []
    try:
        for rank in serving:
            sock = socket.create_connection(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            near = wire.Channel.from_socket(sock, max_frame=max_frame)
            channels.append(near)
            wire.handshake(near, pid=os.getpid(), authkey=authkey, accepting=False)
            far = MpiChannel(comm, rank, postbox.inbox(rank), max_frame=max_frame)
            for source, target in ((near, far), (far, near)):
                pump = threading.Thread(target=_pump, args=(source, target), daemon=True,
                                        name=f"gilstudy-mpi-relay-{rank}")
                pump.start()
                pumps.append(pump)
        for pump in pumps:
            pump.join()
    finally:
        postbox.close()
        for channel in channels:
            channel.close()


def main(argv: list[str]) -> int:
    """The program of every rank of a job ranks() launched: ``HOST PORT MAX_FRAME``, the
    caller's address and the frame limit. The last rank relays, the others serve. (Last,
    not first: when a rank dies, mpiexec names the first rank, in rank order, that ended
    badly, and the relay, killed by that death, must not hide the one that died.) The key
    arrives on mpiexec's standard input, one line in hex, which mpiexec hands to rank 0
    only; rank 0 passes it on to the relay. Then every rank waits for the others without
    spinning, and MPI finalizes. An interrupt (what mpiexec passes on when the caller ends
    the job) ends a rank at once, without Python's cleanup, which could wait on the
    others."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    host, port, max_frame = argv[0], int(argv[1]), int(argv[2])
    MPI = load_mpi()
    from gilstudy.mpi.channel import TAG, quiet_barrier

    comm = MPI.COMM_WORLD.Dup()
    relay_rank = comm.Get_size() - 1
    if comm.Get_rank() == 0:
        comm.send(bytes.fromhex(sys.stdin.readline().strip()), relay_rank, TAG)
    if comm.Get_rank() == relay_rank:
        relay(comm, (host, port), comm.recv(source=0, tag=TAG), max_frame)
    else:
        serve(comm, relay_rank, max_frame)
    quiet_barrier(comm)
    comm.Free()
    return 0
