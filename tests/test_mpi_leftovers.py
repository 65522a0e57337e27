# Nothing of an MPI job that gilstudy launched is left in /dev/shm after any ending: close,
# abort, an exception leaving the with block, a rank killed, a rank's os._exit(). And a
# rank's os._exit(code) is reported with its code, even when mpiexec reports another rank.

import os
import signal

import pytest

import _coprocess_consumers as cc

mpi = pytest.importorskip("gilstudy.mpi")
if mpi.unavailable_reason() is not None:
    pytest.skip(mpi.unavailable_reason(), allow_module_level=True)

from gilstudy.errors import CoprocessDied  # noqa: E402
from gilstudy.mpi.exits import shared_segments  # noqa: E402

TIMEOUT = 120

pytestmark = [pytest.mark.usefixtures("no_thread_left_behind"), pytest.mark.one_pass]


def segments_of(fan) -> set[str]:
    """The MPICH segments the job's processes map on this machine now."""
    marker = fan.consumers[0].peer.job.marker
    entry = f"{mpi.JOB_VARIABLE}={marker}".encode() + b"\0"
    found = set()
    for pid in mpi.job_processes(marker):
        found |= shared_segments(pid, entry)
    return found


def end(fan, how: str) -> None:
    if how == "close":
        fan.close()
    elif how == "abort":
        fan.abort()
    elif how == "exception in with":
        with pytest.raises(RuntimeError), fan:
            raise RuntimeError("the block failed")
    elif how == "rank killed":
        os.kill(fan.consumers[0].pid, signal.SIGKILL)
        with pytest.raises(CoprocessDied):
            with fan:
                for item in range(1000):
                    fan.send(item)
    elif how == "rank os._exit":
        with pytest.raises(CoprocessDied):
            with fan:
                fan.consumers[0].send("exit")


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("how", ["close", "abort", "exception in with", "rank killed",
                                 "rank os._exit"])
def test_no_segment_is_left_in_dev_shm_after_any_ending(how):
    fan = mpi.ranks(cc.Die, 2, "exit", "exit")
    try:
        segments = segments_of(fan)
        assert segments and all(os.path.exists(path) for path in segments)
        end(fan, how)
    finally:
        fan.abort()
    assert [path for path in segments if os.path.exists(path)] == []


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("n", [1, 2])
def test_a_rank_that_calls_os_exit_is_reported_with_its_code(n):
    fan = mpi.ranks(cc.Die, n, "exit", "exit")
    with pytest.raises(CoprocessDied) as info:
        with fan:
            fan.consumers[0].send("exit")
            fan.consumers[0].flush()
            fan.consumers[0].close()
    assert info.value.exitcode == 3
    assert "MPI rank 0 exited with code 3" in str(info.value)
