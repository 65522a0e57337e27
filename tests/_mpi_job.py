# Consumers and programs for the MPI tests. The consumers live in a module of their own, as
# for coprocesses: a rank imports its factory by name, with the test process's sys.path.
# Run as a program (`mpiexec -n N python _mpi_job.py SCENARIO`, or plain python for the
# scenarios that launch their own job), rank 0 or the driver prints one JSON line of facts
# for the test to check.

import json
import os
import sys

import numpy as np

import _coprocess_consumers as cc
from gilstudy import Collect
from gilstudy import mpi
from gilstudy.errors import RemoteError


class Where:
    """Counts the items and the bytes of the arrays it gets; close() says where it ran: its
    MPI rank (from the launcher's environment), its network namespace, the totals."""

    def __init__(self):
        self.count = 0
        self.nbytes = 0

    def send(self, item):
        self.count += 1
        self.nbytes += item.nbytes if isinstance(item, np.ndarray) else 0

    def close(self):
        return {"rank": int(os.environ.get("PMI_RANK", -1)),
                "netns": os.readlink("/proc/self/ns/net"), "count": self.count,
                "nbytes": self.nbytes}


class Doubler:
    """Returns twice each item (numbers and arrays alike)."""

    def send(self, item):
        return item * 2

    def close(self):
        return "closed"


def _world_delivers() -> dict:
    results = Collect()
    fan = mpi.world(Doubler, results=results)
    if fan is None:
        return None
    with fan:
        for item in range(1000):
            fan.send(item)
        for value in range(4):
            fan.send(np.full(1 << 18, value, dtype=np.int64))
    numbers = sorted(r for r in results.items if isinstance(r, int))
    arrays = sorted(int(r[0]) for r in results.items if isinstance(r, np.ndarray)
                    and (r == r[0]).all() and r.size == 1 << 18)
    return {"numbers_ok": numbers == [2 * item for item in range(1000)], "arrays": arrays,
            "closed": sum(isinstance(r, str) and r == "closed" for r in results.items), "dispatched": fan.dispatched,
            "names": [runner.peer.name for runner in fan.consumers]}


def _world_raises() -> dict:
    fan = mpi.world(cc.FailOn, 3)
    if fan is None:
        return None
    routed = []   # the consumer each item went to: the least loaded at the time
    try:
        with fan:
            for item in range(6):
                before = list(fan.dispatched)
                try:
                    fan.send(item)
                finally:
                    routed.append(next(index for index, count in enumerate(fan.dispatched)
                                       if count != before[index]))
    except RemoteError as error:
        return {"where": error.where, "remote_type": error.remote_type,
                "message": error.remote_message, "acknowledged": error.acknowledged,
                "cause": type(error.__cause__).__name__,
                "traceback_names_send": "in send" in error.remote_traceback,
                "routed": routed}
    return {"raised": False}


def _buffers_travel_unpickled() -> dict:
    """Rank 0 writes one frame holding a 1 MiB array through an MpiChannel; rank 1 looks at
    the MPI messages themselves: a small one of raw bytes (the frame's header and the
    item's pickle as written, not pickled again), then the array's bytes alone."""
    from mpi4py import MPI

    from gilstudy import wire
    from gilstudy.mpi.channel import TAG, MpiChannel, decode_headers

    comm = MPI.COMM_WORLD
    array = np.arange(1 << 17, dtype=np.int64)   # 1 MiB
    if comm.Get_rank() == 0:
        channel = MpiChannel(comm, 1)
        payload, buffers = wire.dumps([array])
        channel.write_frames([(wire.ITEMS, payload, buffers)])
        assert channel.drain(60)
        return comm.recv(source=1, tag=TAG + 1)
    if comm.Get_rank() != 1:
        return None
    status = MPI.Status()
    comm.Probe(0, TAG, status)
    header_bytes = status.Get_count(MPI.BYTE)
    first = bytearray(header_bytes)
    comm.Recv([first, MPI.BYTE], 0, TAG)
    frames = decode_headers(first)
    comm.Probe(0, TAG, status)
    buffer_bytes = status.Get_count(MPI.BYTE)
    received = np.empty_like(array)
    comm.Recv([received, MPI.BYTE], 0, TAG)
    (kind, payload, sizes), = frames
    comm.send({"header_bytes": header_bytes, "buffer_bytes": buffer_bytes, "sizes": sizes,
               "kind": chr(kind), "equal": bool((received == array).all()),
               "payload_as_written": first.endswith(wire.dumps([array])[0]) and payload
               == wire.dumps([array])[0], "pickled_again": first.startswith(b"\x80")},
              0, TAG + 1)
    return None


def _across_hosts(hostfile: str, launcher: str, iface: str) -> dict:
    """Ranks that gilstudy launches over the test hosts of ``hostfile``, fed 1 MiB arrays
    from here; the bytes that crossed ``iface`` (this host's end of the link) meanwhile."""
    statistics = f"/sys/class/net/{iface}/statistics"

    def counter(name: str) -> int:
        with open(f"{statistics}/{name}") as file:
            return int(file.read())

    # Run as a program, this file is __main__, which the ranks cannot import by that name.
    import _mpi_job

    results = Collect()
    before = counter("tx_bytes")
    fan = mpi.ranks(_mpi_job.Where, 3, results=results, hostfile=hostfile,
                    mpiexec_args=["-launcher", "ssh", "-launcher-exec", launcher,
                                  "-iface", iface])
    marker = fan.consumers[0].peer.job.marker
    with fan:
        for value in range(24):
            fan.send(np.full(1 << 17, value, dtype=np.int64))
    sent_bytes = counter("tx_bytes") - before
    return {"ranks": sorted(results.items, key=lambda facts: facts["rank"]),
            "here": os.readlink("/proc/self/ns/net"), "tx_bytes": sent_bytes,
            "dispatched": fan.dispatched, "left": sorted(mpi.job_processes(marker))}


def _large_sends_driven(delay: str) -> dict:
    """Rank 0 writes one frame holding a 16 MiB array through an MpiChannel; rank 1 posts
    its receives after ``delay`` seconds. What rank 0 saw: how long the write took,
    whether the send was complete when it returned, and whether it completed later; what
    rank 1 received."""
    import time

    from mpi4py import MPI

    from gilstudy import wire
    from gilstudy.mpi.channel import TAG, MpiChannel, decode_headers

    comm = MPI.COMM_WORLD
    array = np.arange(1 << 21, dtype=np.int64)   # 16 MiB
    comm.Barrier()   # both ranks started
    if comm.Get_rank() == 0:
        channel = MpiChannel(comm, 1)
        payload, buffers = wire.dumps([array])
        started = time.perf_counter()
        channel.write_frames([(wire.ITEMS, payload, buffers)])
        write_s = time.perf_counter() - started
        complete_at_return = channel.drain(1e-4)
        complete_later = channel.drain(60)
        received = comm.recv(source=1, tag=TAG + 1)
        return {"write_s": write_s, "complete_at_return": complete_at_return,
                "complete_later": complete_later, **received}
    if comm.Get_rank() != 1:
        return None
    time.sleep(float(delay))
    status = MPI.Status()
    comm.Probe(0, TAG, status)
    first = bytearray(status.Get_count(MPI.BYTE))
    comm.Recv([first, MPI.BYTE], 0, TAG)
    (_, _, sizes), = decode_headers(first)
    received = np.empty_like(array)
    comm.Recv([received, MPI.BYTE], 0, TAG)
    comm.send({"sizes": sizes, "equal": bool((received == array).all())}, 0, TAG + 1)
    return None


SCENARIOS = {"world-delivers": _world_delivers, "world-raises": _world_raises,
             "buffers": _buffers_travel_unpickled, "across-hosts": _across_hosts,
             "large-sends-driven": _large_sends_driven}

if __name__ == "__main__":
    facts = SCENARIOS[sys.argv[1]](*sys.argv[2:])
    if facts is not None:
        print(json.dumps(facts), flush=True)
