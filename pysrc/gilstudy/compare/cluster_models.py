"""The compare models that reach past one machine: gilstudy.mpi's ranks (``mpi-*``), mpi4py.futures'
MPIPoolExecutor (``mpipool-*``), the peer people already use with MPI, and a Dask distributed
LocalCluster (``dask-*``), the other engine Python users pick for more than one machine. Each is
one registry entry per implementation; here all of them run on this machine.
"""

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from gilstudy.compare import registry
from gilstudy.compare.models import DispatchWorkers, probe_items, register_pair
from gilstudy.compare.workload import Work
from gilstudy.errors import CoprocessDied

__all__ = ["DASK_HINT", "needs_mpi"]

DASK_HINT = "pip install 'gilstudy[dask]'"

# Seconds a new job or cluster may take to answer: a fresh interpreter per rank importing
# numpy on a loaded machine takes a second or two; this is only reached if one hangs.
_START_PATIENCE_S = 120.0
# Seconds an MPI pool job has to end after it was told to, before it is killed.
_STOP_PATIENCE_S = 10.0


def needs_mpi() -> str | None:
    """A check: gilstudy.mpi can start ranks here (mpi4py and an mpiexec); else the
    one-line reason, naming the [mpi] extra."""
    from gilstudy.mpi import unavailable_reason

    return unavailable_reason()


def _ranks(workload: Work, impl: str, workers: int, results) -> object:
    from gilstudy import mpi

    factory, args = workload.consumer_factory(impl)
    return mpi.ranks(factory, workers, *args, results=results)


class _MpiPoolWorkers:
    """mpi4py.futures.MPIPoolExecutor with ``workers`` worker ranks, items through
    ``executor.map`` with its defaults (one item per task).

    The job is ``mpiexec -n workers+1 python -m mpi4py.futures -m
    gilstudy.compare.mpipool_job``, mpi4py's own launch for a pool whose workers are ranks
    of the job: rank 0 runs the executor and connects back here over a local socket, after
    a mutual proof of a fresh key that mpiexec hands it on its standard input; the other
    ranks are the pool's workers. The other way, a pool that spawns its workers from this
    process (MPI_Comm_spawn from a singleton), would load MPI into the compare process, and
    with the mpich wheel it needs mpiexec on PATH (without it, it hangs). Each pass sends
    the whole list of items to rank 0 and gets their results back in one message, so the
    hop from here to rank 0 costs one round trip per pass.

    Trouble: an item's consumer that raises makes ``run`` raise the same exception; a rank
    that dies ends the whole job (MPI's rule) and ``run`` raises CoprocessDied; a job that
    stops answering makes ``run`` raise TimeoutError after ``patience_s``. ``close`` ends
    the job, and kills what is left of it on this machine (mpiexec, its proxy, the ranks).
    """

    def __init__(self, workload: Work, impl: str, workers: int):
        from multiprocessing.connection import Connection

        from gilstudy.compare.mpipool_job import CHALLENGE_BYTES, prove
        from gilstudy.mpi import JOB_VARIABLE, find_mpiexec

        key = os.urandom(32)
        self._marker = f"{os.getpid()}-mpipool-{os.urandom(4).hex()}"
        self._link = None
        listener = socket.create_server(("127.0.0.1", 0))
        try:
            host, port = listener.getsockname()[:2]
            path = os.pathsep.join(p for p in sys.path if p)
            self._process = subprocess.Popen(
                [find_mpiexec(), "-n", str(workers + 1), sys.executable, "-m", "mpi4py.futures",
                 "-m", "gilstudy.compare.mpipool_job", host, str(port)],
                stdin=subprocess.PIPE, start_new_session=True,
                env={**os.environ, JOB_VARIABLE: self._marker, "PYTHONPATH": path})
            try:
                self._process.stdin.write(key.hex().encode() + b"\n")
                self._process.stdin.close()
            except OSError:
                pass  # mpiexec ended at once: the wait below says so
            listener.settimeout(0.1)
            deadline = time.monotonic() + _START_PATIENCE_S
            while self._link is None:
                self._check_alive("before its rank 0 connected")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"MPI pool job: rank 0 did not connect within "
                                       f"{_START_PATIENCE_S:g} s")
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    continue
                sock.setblocking(True)
                link = Connection(sock.detach())
                try:
                    prove(link, key, os.urandom(CHALLENGE_BYTES), timeout=10.0)
                except (PermissionError, TimeoutError, OSError, EOFError):
                    link.close()  # not our rank 0: wait for it
                    continue
                self._link = link
            self._link.send(workload.consumer_factory(impl))
            self._call(probe_items(workload, workers), _START_PATIENCE_S)
        except BaseException:
            self._end(force=True)
            raise
        finally:
            listener.close()

    def _died(self, exitcode: int | None, detail: str) -> CoprocessDied:
        return CoprocessDied(self._process.pid, exitcode, detail,
                             where=f"the MPI pool job (mpiexec {self._process.pid})")

    def _check_alive(self, when: str) -> None:
        status = self._process.poll()
        if status is not None:
            raise self._died(status, f"it ended {when}")

    def _call(self, items: list, patience_s: float) -> list:
        deadline = time.monotonic() + patience_s
        try:
            self._link.send(items)
            while not self._link.poll(0.1):
                self._check_alive("before answering")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the MPI pool job gave no answer for {patience_s:g} s")
            outcome, value = self._link.recv()
        except (ConnectionError, EOFError) as exc:
            # Its link broke: the job is ending (a rank died, and MPI ends them all).
            try:
                self._process.wait(_STOP_PATIENCE_S)
            except subprocess.TimeoutExpired:
                pass
            self._check_alive("before answering")
            raise self._died(None, f"its link broke: {type(exc).__name__}: {exc}") from exc
        if outcome == "error":
            raise value
        return value

    def run(self, workload: Work, patience_s: float) -> object:
        return workload.combine(self._call(workload.items(), patience_s))

    def _end(self, force: bool) -> None:
        from gilstudy.mpi import job_processes

        if self._link is not None:
            try:
                if not force:
                    self._link.send(None)
            except OSError:
                pass
        process = getattr(self, "_process", None)
        if process is not None:
            try:
                process.wait(0 if force else _STOP_PATIENCE_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        # What is left of the job (a proxy or rank that mpiexec did not take down with it)
        # is killed, and waited for until it is gone, briefly.
        deadline = time.monotonic() + _STOP_PATIENCE_S
        while (left := job_processes(self._marker)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        if self._link is not None:
            self._link.close()
            self._link = None

    def close(self) -> None:
        if self._link is None:
            return
        self._end(force=False)
        status = self._process.returncode
        if status != 0:
            raise self._died(status, "when told to end")


class _DaskWorkers:
    """A Dask distributed LocalCluster of ``workers`` worker processes with one thread
    each (``processes=True, threads_per_worker=1``) on 127.0.0.1, no dashboard, and a
    Client to it; items go through ``client.map`` (one task per item, ``pure=False`` so
    that none is deduplicated) and ``client.gather``. Start-up ends when the cluster has
    answered one probe item per worker.

    Trouble: an item's consumer that raises makes ``run`` raise it (Dask re-raises the
    task's exception); a worker process that dies is restarted by its nanny and its tasks
    rerun, as Dask does; a cluster that gives no answer for ``patience_s`` makes ``run``
    raise TimeoutError. ``close`` closes the client and the cluster and waits for the
    worker processes.
    """

    def __init__(self, workload: Work, impl: str, workers: int):
        from distributed import Client, LocalCluster

        self._consumer = workload.consumer(impl)
        # The scheduler serves HTTP even without a dashboard, on port 8787 unless told: a
        # free port instead, so that two clusters (or another user's) never collide. Its
        # workers log at ERROR with a traceback when a heartbeat meets the scheduler already
        # closed, as it does at every close(): only CRITICAL lines are shown. A task's own
        # failure reaches the client as its exception, not as a log line.
        self._cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                                     host="127.0.0.1", dashboard_address=":0",
                                     scheduler_kwargs={"dashboard": False},
                                     silence_logs=logging.CRITICAL)
        self._client = None
        try:
            self._client = Client(self._cluster, set_as_default=False)
            self._client.wait_for_workers(workers, timeout=_START_PATIENCE_S)
            self._map(probe_items(workload, workers), _START_PATIENCE_S)
        except BaseException:
            self.close()
            raise

    def _map(self, items: list, patience_s: float) -> list:
        from distributed import wait

        futures = self._client.map(self._consumer.send, items, pure=False)
        with self._client.as_current():  # wait() waits through the current client
            wait(futures, timeout=None if patience_s == float("inf") else patience_s)
        return self._client.gather(futures)

    def run(self, workload: Work, patience_s: float) -> object:
        return workload.combine(self._map(workload.items(), patience_s))

    def close(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


_DASK = registry.needs_module("distributed", hint=DASK_HINT)


# Idle, these models' workers still use CPU (ranks and the relay poll with a back-off, the
# pool's ranks likewise, Dask's scheduler and workers beat their hearts), and they are this
# process's children, so the outside-load check cannot see it: kept alive beside the other
# models, they cut every model's 2-worker speedup (threads-cython 1.87x alone, 1.41x beside
# them, in one idle hour). So they live only around their own repeats (reusable=False).
register_pair("mpi", "N MPI ranks (gilstudy.mpi.ranks, a job mpiexec runs) fed through "
               "Dispatch, running the {impl} kernel",
               functools.partial(DispatchWorkers, start_fan=_ranks), requires=(needs_mpi,),
               requires_work=(registry.needs_new_process,), reusable=False,
               family="cluster")
register_pair("mpipool", "mpi4py.futures.MPIPoolExecutor with N worker ranks running the "
               "{impl} kernel", _MpiPoolWorkers, requires=(needs_mpi,),
               requires_work=(registry.needs_new_process,), reusable=False,
               family="cluster")
register_pair("dask", "a Dask distributed LocalCluster of N single-threaded worker "
               "processes running the {impl} kernel", _DaskWorkers, requires=(_DASK,),
               requires_work=(registry.needs_new_process,), reusable=False,
               family="cluster")
