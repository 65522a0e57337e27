"""The caller's side of an MPI job that gilstudy launches. ranks() starts `mpiexec -n N+1
python -m gilstudy.mpi`: ranks 0 to N-1 serve, and the last rank connects back here once
per serving rank, proving that it holds a fresh key (handed over on mpiexec's standard
input), and relays frames between that connection and its rank. Each rank is then a
RemoteConsumer behind one Dispatch, as a coprocess is. This process never loads MPI, so a
rank that dies, which ends the whole MPI job, cannot take it down.
"""

import collections
import itertools
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

from gilstudy import _checks, wire
from gilstudy.admission import describe_refusal, format_address, log_refusal
from gilstudy.dispatch import Dispatch, start_runners
from gilstudy.errors import AuthenticationError, MpiUnavailable, ProtocolError, WorkerDied
from gilstudy.mpi.exits import (EXITS_VARIABLE, exit_code, remove_segments,
                                shared_segments)
from gilstudy.mpi.find import find_mpiexec, unavailable_reason
from gilstudy.flow import EXIT_TIMEOUT, MAX_IN_FLIGHT
from gilstudy.remote import RemoteConsumer, open_remote
from gilstudy.startup import Start, prepare
from gilstudy.transports import CONNECT_TIMEOUT, START_TIMEOUT, family, open_socket

__all__ = ["ranks", "MpiJob", "LaunchedRank", "JOB_VARIABLE", "job_processes"]

# Every process of a job (mpiexec, its proxies, the ranks) carries this variable in its
# environment, set to the job's own marker, so that what is left of a job on this machine
# can be found and ended (job_processes()).
JOB_VARIABLE = "GILSTUDY_MPI_JOB"

_job_numbers = itertools.count()

# What mpiexec (MPICH's hydra) prints when a rank ends badly; the pid is the rank's.
_BANNER_PID = re.compile(r"^=\s+PID (\d+) RUNNING AT (\S+)")
_BANNER_CODE = re.compile(r"^=\s+EXIT CODE: (\d+)")
_BANNER_SIGNAL = re.compile(r"EXIT STRING: .*\(signal (\d+)\)")


def job_processes(marker: str) -> set[int]:
    """The processes on this machine whose environment carries the job ``marker``, leaving
    out those that have ended but are not yet reaped."""
    found = set()
    needle = f"{JOB_VARIABLE}={marker}".encode() + b"\0"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle not in environ.read():
                    continue
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
        except OSError:
            continue
        found.add(int(entry))
    return found


class MpiJob:
    """One ``mpiexec`` this process started: ``serving`` ranks, then one more, the relay,
    and the listening socket the relay connects back to.

    What the ranks print to standard output comes through mpiexec and is passed on to this
    process's standard output, by a thread that also reads mpiexec's report of a rank that
    ended badly. ``end()`` stops the whole job and removes what is left of it on this
    machine; MPI has no way to stop one rank alone.
    """

    def __init__(self, serving: int, *, hostfile: str | None, mpiexec_args: Sequence[str],
                 address: tuple[str, int], max_frame: int):
        import socket
        import subprocess

        mpiexec = find_mpiexec()
        self.serving = serving
        self.marker = f"{os.getpid()}-{next(_job_numbers)}-{os.urandom(4).hex()}"
        self._key = os.urandom(32)
        self._released = 0
        self._lock = threading.Lock()
        self._ended = False
        # What mpiexec reported of a rank that ended badly, and its last lines of output.
        self.failed_pid: int | None = None
        self.failed_code: int | None = None
        self.failed_signal: int | None = None
        self.relay_pid: int | None = None
        self._last_lines: collections.deque = collections.deque(maxlen=3)
        # Where the ranks note an os._exit() code, and the MPICH segments they map here.
        self._exits: str | None = tempfile.mkdtemp(prefix="gilstudy-mpi-exits-")
        self._exit_codes: dict[int, int] = {}
        self._segments: set[str] = set()
        self._listener = socket.create_server(address, family=family(address[0]))
        host, port = self._listener.getsockname()[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        command = [mpiexec, *(("-f", hostfile) if hostfile else ()), *mpiexec_args,
                   "-n", str(serving + 1), sys.executable, "-m", "gilstudy.mpi", host,
                   str(port), str(max_frame)]
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env={**os.environ, JOB_VARIABLE: self.marker, EXITS_VARIABLE: self._exits},
                start_new_session=True)
        except BaseException:
            self._listener.close()
            shutil.rmtree(self._exits, ignore_errors=True)
            raise
        self.name = f"MPI job (mpiexec {self.process.pid})"
        self._output = threading.Thread(target=self._pass_output, daemon=True,
                                        name=f"gilstudy-mpiexec-{self.process.pid}-output")
        self._output.start()
        try:
            self.process.stdin.write(self._key.hex().encode() + b"\n")
            self.process.stdin.close()
        except OSError:
            pass  # mpiexec ended at once: accept() says how

    # Output ---------------------------------------------------------------------------------

    def _pass_output(self) -> None:
        read_fd = self.process.stdout.fileno()
        partial = b""
        while chunk := os.read(read_fd, 1 << 16):
            _write_all(1, chunk)
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                self._note(line.decode(errors="replace"))
        if partial:
            self._note(partial.decode(errors="replace"))

    def _note(self, line: str) -> None:
        if line.strip():
            self._last_lines.append(line.strip())
        if match := _BANNER_PID.match(line):
            self.failed_pid = int(match.group(1))
        elif match := _BANNER_CODE.match(line):
            self.failed_code = int(match.group(1))
        elif match := _BANNER_SIGNAL.search(line):
            self.failed_signal = int(match.group(1))

    # Starting the ranks ---------------------------------------------------------------------

    def _died(self, before: str) -> WorkerDied:
        code = self.process.poll()
        said = "; it printed: " + " | ".join(self._last_lines) if self._last_lines else ""
        return WorkerDied(self.process.pid, code, f"it ended {before}{said}",
                             where=self.name)

    def _accept(self, options: dict, deadline: float):
        """The next connection from the relay, once it proved that it holds the key; a
        stranger's is logged and dropped. Raises WorkerDied if mpiexec ends first or
        ``deadline`` passes (the caller then ends the job)."""
        while True:
            self._listener.settimeout(0.05)
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                if self.process.poll() is not None:
                    self._output.join(EXIT_TIMEOUT)
                    raise self._died("before its relay connected back") from None
                if time.monotonic() > deadline:
                    raise WorkerDied(self.process.pid, None,
                                        f"{START_TIMEOUT:g} s passed before its relay "
                                        "connected back", where=self.name) from None
                continue
            channel = open_socket(conn, options,
                                  max(0.05, min(CONNECT_TIMEOUT, deadline - time.monotonic())))
            try:
                self.relay_pid = wire.handshake(channel, pid=os.getpid(), authkey=self._key,
                                                accepting=True).pid
            except (AuthenticationError, ProtocolError, EOFError, OSError) as exc:
                channel.close()
                log_refusal("gilstudy.mpi: refused a connection to %s from %s: %s", self.name,
                            format_address(*peer[:2]), describe_refusal(exc))
                continue
            return conn, channel

    def start_rank(self, rank: int, start: Start) -> RemoteConsumer:
        """The RemoteConsumer of serving rank ``rank`` (0, 1, ...: the relay connects in
        rank order): its connection, the HELLO and SETUP relayed to it, its HELLO back."""
        deadline = time.monotonic() + START_TIMEOUT
        conn, channel = self._accept(start.options, deadline)

        def peer(hello: wire.Hello) -> LaunchedRank:
            self._note_segments(hello.pid)
            conn.settimeout(None)
            return LaunchedRank(self, rank, hello.pid)

        try:
            conn.settimeout(max(0.05, deadline - time.monotonic()))
            return open_remote(channel, peer, start, where="MPI job", cleanups=[self.release])
        except (EOFError, OSError) as exc:
            channel.close()
            self.wait(EXIT_TIMEOUT)
            raise self._died(f"before MPI rank {rank} answered ({exc!r})") from None
        except BaseException:
            channel.close()
            raise

    def _note_segments(self, pid: int) -> None:
        """Note the MPICH segments that rank ``pid`` (and the relay) map on this machine, to
        be removed at the end: a rank that is killed or calls os._exit() leaves them."""
        entry = f"{JOB_VARIABLE}={self.marker}".encode() + b"\0"
        for process in (pid, self.relay_pid):
            if process is not None:
                self._segments |= shared_segments(process, entry)

    # Ending ---------------------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Whether mpiexec has ended, and its report been read, within ``timeout`` s."""
        import subprocess

        deadline = time.monotonic() + timeout
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._output.join(max(0.0, deadline - time.monotonic()))
        return not self._output.is_alive()

    def status_of(self, pid: int) -> int | None:
        """How the rank with ``pid`` ended, as an exit status (-N for signal N), once the
        job has ended: mpiexec names the pid of a rank that ended badly. None when that
        cannot be told: the job still runs, or another rank's end took this one down."""
        code = self.process.returncode
        if code is None:
            return None
        if code == 0:
            return 0
        # A rank that called os._exit() noted its code (mpiexec may report another rank).
        noted = exit_code(self._exits, pid) if self._exits else self._exit_codes.get(pid)
        if noted is not None:
            return noted
        # The relay, killed when a rank died, says nothing of which one.
        if self.failed_pid is not None and self.failed_pid != self.relay_pid:
            if self.failed_pid != pid:
                return None
            return -self.failed_signal if self.failed_signal else self.failed_code
        # A rank that exits with a code is not named: it can only be the one rank.
        return code if self.serving == 1 else None

    def release(self) -> None:
        """One rank's RemoteConsumer has finished; once all have, the job ends."""
        with self._lock:
            self._released += 1
            last = self._released >= self.serving
        if last:
            self.end(force=False)

    def end(self, force: bool) -> None:
        """Stop the job: unless ``force``, give it EXIT_TIMEOUT to end on its own (its ranks
        end when their channels close); then interrupt mpiexec (which ends every rank), and
        kill it after EXIT_TIMEOUT more. Whatever of the job is still running on this
        machine after that is killed. Idempotent; a later call after force does nothing."""
        import subprocess

        with self._lock:
            if self._ended:
                return
            self._ended = True
        process = self.process
        try:
            if not force:
                try:
                    process.wait(EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self._output.join(EXIT_TIMEOUT)
        finally:
            for pid in job_processes(self.marker):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._output.join()
            process.stdout.close()
            self._listener.close()
            self._forget_leftovers()

    def _forget_leftovers(self) -> None:
        """Once no process of the job runs here: remove the MPICH segments its ranks mapped,
        and the directory of exit codes (keeping those codes for status_of())."""
        remove_segments(self._segments)
        directory, self._exits = self._exits, None
        if directory is not None:
            self._exit_codes = {int(name): code for name in os.listdir(directory)
                                if name.isdigit()
                                and (code := exit_code(directory, int(name))) is not None}
            shutil.rmtree(directory, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # standard output is gone: the ranks' prints have nowhere to go


class LaunchedRank:
    """The Peer (gilstudy.remote.Peer) of a serving rank of a job this process launched.
    ``pid`` is the rank's on its host. Its end is known once the whole job ended, from
    mpiexec's report (see MpiJob.status_of). stop(force) ends the whole job, the only way
    MPI offers to end a rank; stop() without force leaves the rank to end when its channel
    closes, and the job when all have."""

    def __init__(self, job: MpiJob, rank: int, pid: int):
        self.job = job
        self.rank = rank
        self.pid = pid
        self.name = f"MPI rank {rank}"

    def wait(self, timeout: float) -> int | None:
        if not self.job.wait(timeout):
            return None
        return self.job.status_of(self.pid)

    def stop(self, force: bool) -> bool:
        if force:
            self.job.end(force=True)
            return True
        return False


def ranks(factory: Callable, n: int, *args: Any, results: Any = None,
          hostfile: str | os.PathLike | None = None, mpiexec_args: Sequence[str] = (),
          address: tuple[str, int] | None = None, max_frame: int = wire.MAX_FRAME,
          allowed=None, max_in_flight: int = MAX_IN_FLIGHT) -> Dispatch:
    """``n`` MPI ranks, each running its own ``factory(*args)``, behind one Dispatch: the
    MPI twin of coprocesses(). gilstudy launches ``mpiexec -n n+1`` itself (the mpich
    wheel's, see find_mpiexec()): ranks 0 to n-1 serve, and rank n relays between this
    process and them.

    ``factory`` is pickled by reference (a module's, or a main script's that the ranks load
    again under ``__mp_main__``: gilstudy.mainscript); every
    rank takes this process's sys.path first. ``hostfile`` is an MPICH host file (``host``
    or ``host:slots`` per line) and ``mpiexec_args`` more options for mpiexec (``-hosts``,
    ``-launcher-exec``, ``-iface``...). The relay, the last rank, takes the last slot and
    connects back to ``address`` (default 127.0.0.1, an ephemeral port): make the last
    host this machine, or pass an address of this machine that the last host reaches.
    ``results``, ``max_frame``, ``allowed`` and ``max_in_flight`` are spawn()'s.

    Trouble: a consumer that raises is a RemoteError naming its rank ("MPI rank 2"), its
    traceback the ``__cause__``. A rank that is killed, crashes or exits ends the whole
    job (MPI's rule): every rank's next send() or close() raises WorkerDied within
    EXIT_TIMEOUT (5 s); the rank that died says how (its ``signal`` or ``exitcode``, read
    from mpiexec's report), the others that they stopped answering. After close(),
    abort() or such a failure no mpiexec, proxy or rank is left on this machine. Aborting
    one rank's runner ends the whole job.

    Raises MpiUnavailable when mpi4py or mpiexec is missing, TypeError or ValueError for bad
    arguments before anything starts, and WorkerDied when the job ends before its ranks
    answered (with mpiexec's last words) or does not answer within START_TIMEOUT.
    """
    n = _checks.positive_int("ranks", "n", n)
    start = prepare("ranks", factory, args, results=results, max_frame=max_frame,
                    allowed=allowed, max_in_flight=max_in_flight, worker="the ranks")
    if hostfile is not None:
        hostfile = os.fspath(hostfile)
        if not os.path.isfile(hostfile):
            raise FileNotFoundError(f"ranks: hostfile {hostfile!r} is not a file")
    if isinstance(mpiexec_args, str) or not all(isinstance(arg, str) for arg in mpiexec_args):
        raise TypeError(f"ranks: mpiexec_args must be a sequence of strings, got "
                        f"{mpiexec_args!r}")
    reason = unavailable_reason()
    if reason is not None:
        raise MpiUnavailable(reason)
    job = MpiJob(n, hostfile=hostfile, mpiexec_args=tuple(mpiexec_args),
                 address=("127.0.0.1", 0) if address is None else address, max_frame=max_frame)
    try:
        return start_runners(lambda index: job.start_rank(index, start), n, owner="ranks")
    except BaseException:
        job.end(force=True)
        raise
