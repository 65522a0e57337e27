"""What is left of an MPI job that ends badly, on this machine: the exit code of a rank that
ended through os._exit() (which mpiexec does not always report: once one rank ends, it kills
the others and may report one of those instead) and the shared-memory segments MPICH maps
in /dev/shm (which a rank removes only if it reaches MPI_Finalize).

A job that gilstudy launches (gilstudy.mpi.job.MpiJob) names a directory in EXITS_VARIABLE;
each of its ranks calls record_exits() first, so that an os._exit(code) writes ``code`` to a
file named by its pid there before the process ends. The job reads it with exit_code()."""

import os

__all__ = ["EXITS_VARIABLE", "record_exits", "exit_code", "shared_segments",
           "remove_segments"]

EXITS_VARIABLE = "GILSTUDY_MPI_EXITS"

# MPICH's segments, as a rank's /proc/PID/maps names them.
_SEGMENT_PREFIX = "/dev/shm/mpich_shm_"


def record_exits() -> None:
    """In a rank: make os._exit() note its code in the job's directory before it ends the
    process. Does nothing outside a job that names a directory."""
    directory = os.environ.get(EXITS_VARIABLE)
    if not directory:
        return
    real_exit = os._exit

    def _exit(code: int) -> None:
        try:
            path = os.path.join(directory, str(os.getpid()))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, str(int(code)).encode())
            finally:
                os.close(fd)
        except (OSError, TypeError, ValueError):
            pass  # the exit matters more than its record
        real_exit(code)

    os._exit = _exit


def exit_code(directory: str, pid: int) -> int | None:
    """The code the rank ``pid`` passed to os._exit(), if it noted one in ``directory``."""
    try:
        with open(os.path.join(directory, str(pid))) as record:
            return int(record.read())
    except (OSError, ValueError):
        return None


def shared_segments(pid: int, marker_entry: bytes) -> set[str]:
    """The MPICH segments in /dev/shm that process ``pid`` maps, if it carries
    ``marker_entry`` (``b"VARIABLE=marker\\0"``) in its environment: a pid that a rank on
    another host reported names no process of ours here."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            if marker_entry not in environ.read():
                return set()
        with open(f"/proc/{pid}/maps") as maps:
            return {line.split()[-1] for line in maps
                    if _SEGMENT_PREFIX in line and not line.rstrip().endswith("(deleted)")}
    except OSError:
        return set()


def remove_segments(paths) -> None:
    """Remove the segments ``paths`` (each a /dev/shm/mpich_shm_* path) that are still
    there: called once every process of the job has ended."""
    for path in paths:
        if path.startswith(_SEGMENT_PREFIX) and "/" not in path[len(_SEGMENT_PREFIX):]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
