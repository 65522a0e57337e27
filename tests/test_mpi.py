# gilstudy.mpi: ranks that gilstudy launches (ranks()) and ranks of a job the user launched
# (world()) run the same consumers as threads and coprocesses; every item sent before
# close() arrives, arrays travel as raw MPI buffers, a consumer that raises is a RemoteError
# naming its rank, an idle rank sleeps, nothing of a job is left after it, a missing MPI is
# one line naming the extra; and, on test hosts made as network namespaces, ranks on two
# hosts talk across a real interface. (The crash cases of every runner, MPI ranks included,
# are in test_faults.py; the same consumers every way in test_runners.py.)

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types
from typing import NamedTuple

import numpy as np
import pytest

import _coprocess_consumers as cc
from gilstudy import Collect, Dispatch, mpi
from gilstudy.errors import MpiUnavailable, RemoteError
from gilstudy.examples import Checksum

# Only reached when something deadlocks.
TIMEOUT = 120
HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


def run_job(ranks: int, scenario: str, *args: str, env=None, wrap=()) -> dict:
    """Launch ``_mpi_job.py SCENARIO ARGS`` under mpiexec with ``ranks`` ranks (or, with
    ``ranks`` 0, as a plain program that launches its own job); return the JSON line it
    printed."""
    program = [sys.executable, os.path.join(HERE, "_mpi_job.py"), scenario, *args]
    command = [*wrap, *([mpi.find_mpiexec(), "-n", str(ranks)] if ranks else []), *program]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "PYTHONPATH": HERE, **(env or {})})
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(line)


def sends_to(fan: Dispatch, item) -> int:
    before = list(fan.dispatched)
    fan.send(item)
    return next(index for index, count in enumerate(fan.dispatched) if count != before[index])


# --- ranks(): a job gilstudy launches ------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_every_item_sent_before_close_arrives_on_every_rank_in_order():
    items = [(index, index % 13) for index in range(30_000)]
    routed = [[], [], []]
    results = Collect()
    with mpi.ranks(Checksum, 3, results=results) as fan:
        for item in items:
            routed[sends_to(fan, item)].append(item)
    assert sorted(results.items) == sorted(Checksum.of(part) for part in routed)
    assert [len(part) for part in routed] == fan.dispatched
    assert all(fan.dispatched)


@pytest.mark.timeout(TIMEOUT)
def test_ranks_are_named_by_their_mpi_rank_and_run_in_processes_of_their_own():
    with mpi.ranks(cc.Echo, 2) as fan:
        names = [runner.peer.name for runner in fan.consumers]
        pids = {runner.pid for runner in fan.consumers}
    assert names == ["MPI rank 0", "MPI rank 1"]
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.timeout(TIMEOUT)
def test_numpy_arrays_reach_the_ranks_and_come_back_whole():
    results = Collect()
    arrays = [np.full((512, 1024), value, dtype=np.int32) for value in range(6)]
    with mpi.ranks(cc.Shapes, 2, results=results) as fan:
        for array in arrays:
            fan.send(array)
    shapes = sorted(item for item in results.items if isinstance(item, tuple))
    assert shapes == [((512, 1024), "int32", value * 512 * 1024) for value in range(6)]
    assert [item for item in results.items if isinstance(item, bool)] == [True, True]


@pytest.mark.timeout(TIMEOUT)
def test_an_array_travels_as_a_raw_mpi_buffer_beside_a_small_pickle():
    facts = run_job(2, "buffers")
    # The first message holds the frame's header and the item's pickle without the data,
    # as the sender wrote it (raw bytes: MPI pickles nothing again); the array's 1 MiB is
    # a message of its own, exactly its bytes.
    assert facts == {"header_bytes": facts["header_bytes"], "buffer_bytes": 1 << 20,
                     "sizes": [1 << 20], "kind": "I", "equal": True,
                     "payload_as_written": True, "pickled_again": False}
    assert facts["header_bytes"] < 1024


@pytest.mark.timeout(TIMEOUT)
def test_a_large_array_to_a_rank_that_receives_is_sent_whole_by_the_write():
    # MPI moves a large message only while the sender calls into it: the write keeps at
    # it until the array is across, rather than leave it to crawl between later polls.
    facts = run_job(2, "large-sends-driven", "0")
    # Complete when the write returned, unless the machine held rank 1 back for longer
    # than the write drives it (16 MiB at 1 GB/s).
    assert facts["complete_at_return"] or facts["write_s"] >= (16 << 20) / 1e9
    assert facts["complete_later"]
    assert facts["sizes"] == [16 << 20] and facts["equal"]


@pytest.mark.timeout(TIMEOUT)
def test_a_large_array_to_a_busy_rank_does_not_hold_the_write_until_it_receives():
    # Rank 1 posts its receive after 2 s: the write gives up driving after about the time
    # 16 MiB takes at 1 GB/s and returns; the array still arrives whole once received.
    facts = run_job(2, "large-sends-driven", "2")
    assert facts["write_s"] < 1.0
    assert not facts["complete_at_return"] and facts["complete_later"]
    assert facts["sizes"] == [16 << 20] and facts["equal"]


@pytest.mark.timeout(TIMEOUT)
def test_a_consumer_that_raises_on_a_rank_is_a_remote_error_naming_the_rank():
    with pytest.raises(RemoteError) as info:
        with mpi.ranks(cc.FailOn, 1, 3) as fan:
            for item in range(6):
                fan.send(item)
    error = info.value
    assert error.where == "MPI rank 0"
    assert str(error).startswith("MPI rank 0: ValueError: item 3 is bad")
    assert error.acknowledged == 3
    assert "in send" in error.__cause__.text and "ValueError: item 3 is bad" in error.__cause__.text


@pytest.mark.timeout(TIMEOUT)
def test_after_close_nothing_of_the_job_is_left_on_this_machine():
    with mpi.ranks(cc.Echo, 2) as fan:
        marker = fan.consumers[0].peer.job.marker
        running = mpi.job_processes(marker)
        fan.send(1)
    # mpiexec, its proxy, the two ranks and the relay carried the marker while it ran.
    assert len(running) >= 5
    assert mpi.job_processes(marker) == set()


@pytest.mark.timeout(TIMEOUT)
def test_an_idle_rank_and_the_relay_use_under_5_percent_of_a_core():
    with mpi.ranks(cc.Echo, 1) as fan:
        rank = fan.consumers[0]
        rank.send("wake up")
        rank.flush()
        while rank.pending:
            time.sleep(0.001)
        relay = rank.peer.job.relay_pid
        time.sleep(0.1)   # the back-off reaches its longest sleep within milliseconds
        before = {pid: cpu_seconds(pid) for pid in (rank.pid, relay)}
        start = time.monotonic()
        time.sleep(1.0)
        elapsed = time.monotonic() - start
        used = {pid: (cpu_seconds(pid) - before[pid]) / elapsed for pid in before}
    assert used[rank.pid] < 0.05, f"an idle rank used {used[rank.pid]:.1%} of a core"
    assert used[relay] < 0.05, f"the idle relay used {used[relay]:.1%} of a core"


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid``, all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("call, error, message", [
    (lambda: mpi.ranks(cc.Echo, 0), ValueError, r"^ranks: n must be >= 1, got 0$"),
    (lambda: mpi.ranks(cc.Echo, 1.0), TypeError, r"^ranks: n must be an int, got float \(1\.0\)$"),
    (lambda: mpi.ranks(3, 1), TypeError, r"^ranks: factory must be callable, got 3 \(int\)$"),
    (lambda: mpi.ranks(cc.Echo, 1, results=3), TypeError, r"^ranks: results must have a send\(\)"),
    (lambda: mpi.ranks(cc.Echo, 1, hostfile="/nonexistent/hosts"), FileNotFoundError,
     r"^ranks: hostfile '/nonexistent/hosts' is not a file$"),
    (lambda: mpi.ranks(cc.Echo, 1, mpiexec_args="-hosts a"), TypeError,
     r"^ranks: mpiexec_args must be a sequence of strings, got '-hosts a'$"),
    (lambda: mpi.ranks(cc.Echo, 1, max_frame=10), ValueError, r"^ranks: max_frame must be >= 1024"),
    (lambda: mpi.ranks(cc.Echo, 1, b"x" * 4096, max_frame=1024), ValueError,
     r"^ranks: the factory and its arguments pickle to \d+ bytes, more than max_frame \(1024\)$"),
], ids=["zero", "float", "not-callable", "bad-results", "no-hostfile", "args-string",
        "small-frame", "setup-too-large"])
def test_ranks_refuses_bad_arguments_before_it_starts_anything(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_ranks_refuses_a_factory_from_a_main_that_cannot_be_loaded_again(monkeypatch):
    def factory():
        return cc.Echo()

    factory.__module__ = "__main__"
    # As in an interactive session: a __main__ with no file (a script's is loaded again in
    # the ranks: tests/test_mainscript.py).
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    with pytest.raises(ValueError, match=r"^ranks: factory .* is defined in __main__, which the "
                                         r"ranks cannot import: this program's main script "
                                         r"cannot be loaded again because it is an "
                                         r"interactive session; define .* in a module"):
        mpi.ranks(factory, 1)


# --- finding MPI ---------------------------------------------------------------------------------

def test_the_mpiexec_found_is_the_mpich_wheels_without_any_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    path = mpi.find_mpiexec()
    assert os.path.basename(path) == "mpiexec" and os.access(path, os.X_OK)
    assert path.startswith(sys.prefix)


def test_without_mpi4py_there_is_one_line_naming_the_extra(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "mpi4py" else real_find_spec(name, *rest))
    message = ("gilstudy.mpi needs mpi4py, which is not installed: pip install 'gilstudy[mpi]' "
               "(mpi4py and the mpich wheel)")
    assert mpi.unavailable_reason() == message
    with pytest.raises(MpiUnavailable) as info:
        mpi.ranks(cc.Echo, 1)
    assert str(info.value) == message and isinstance(info.value, ImportError)


def test_without_mpiexec_there_is_one_line_naming_the_extra(monkeypatch):
    def no_mpich(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_mpich)
    monkeypatch.setenv("PATH", "")
    message = ("gilstudy.mpi found no mpiexec to start ranks with: pip install 'gilstudy[mpi]' "
               "(mpi4py and the mpich wheel)")
    with pytest.raises(MpiUnavailable, match=rf"^{re.escape(message)}$"):
        mpi.find_mpiexec()
    assert mpi.unavailable_reason() == message


@pytest.mark.timeout(TIMEOUT)
def test_world_without_mpi4py_is_one_line_naming_the_extra():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from gilstudy import mpi\n"
            "from gilstudy.examples import Checksum\n"
            "try:\n    mpi.world(Checksum)\n"
            "except ImportError as error:\n    print(type(error).__name__, error)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.stdout.startswith("MpiUnavailable gilstudy.mpi cannot load mpi4py "
                                  "(ModuleNotFoundError: ")
    assert done.stdout.rstrip().endswith("): pip install 'gilstudy[mpi]' (mpi4py and the mpich "
                                          "wheel)")
    assert len(done.stdout.splitlines()) == 1


# --- world(): a job the user launched ------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_world_on_a_job_the_user_launched_serves_from_every_other_rank():
    facts = run_job(3, "world-delivers")
    assert facts == {"numbers_ok": True, "arrays": [0, 2, 4, 6], "closed": 2,
                     "dispatched": facts["dispatched"], "names": ["MPI rank 1", "MPI rank 2"]}
    assert sum(facts["dispatched"]) == 1004


@pytest.mark.timeout(TIMEOUT)
def test_world_reports_a_consumer_that_raises_as_a_remote_error_naming_its_rank():
    facts = run_job(3, "world-raises")
    # Items go to the least loaded rank (they alternate unless a rank acknowledged one
    # first): the rank item 3 went to failed on it, having handled the items before it.
    routed = facts.pop("routed")
    failed = routed[3]
    assert facts == {"where": f"MPI rank {failed + 1}", "remote_type": "ValueError",
                     "message": "item 3 is bad",
                     "acknowledged": sum(1 for index in routed[:3] if index == failed),
                     "cause": "RemoteTraceback", "traceback_names_send": True}


# --- across hosts --------------------------------------------------------------------------------

class HostPair(NamedTuple):
    hostfile: str              # an MPICH host file: the second host, then the first
    launcher: str              # what mpiexec runs instead of ssh to reach a host
    interface: str             # the first host's end of the link
    run_on_first: tuple        # a command prefix that runs a program on the first host
    environment: dict


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=TIMEOUT)


@pytest.fixture
def test_hosts(tmp_path):
    """Two test hosts made for the test: network namespaces joined by a veth pair, with
    addresses 10.77.0.1 (the first) and 10.77.0.2. mpiexec reaches a host through a launcher
    that enters its namespace, where it would log in with ssh. Both are removed afterwards,
    even when the test fails (the veth pair goes with them)."""
    tag = f"gs{os.getpid()}"
    names, links = (f"{tag}a", f"{tag}b"), (f"{tag}va", f"{tag}vb")
    addresses = ("10.77.0.1", "10.77.0.2")
    made = []
    try:
        for name in names:
            ip("netns", "add", name)
            made.append(name)
        ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for name, link, address in zip(names, links, addresses):
            ip("link", "set", link, "netns", name)
            ip("-n", name, "addr", "add", f"{address}/24", "dev", link)
            ip("-n", name, "link", "set", link, "up")
            ip("-n", name, "link", "set", "lo", "up")
        launcher = tmp_path / "enter-host"
        # mpiexec calls it as it would call ssh: [-x] HOST COMMAND...
        cases = "".join(f"    {address}) host={name} ;;\n" for address, name in zip(addresses, names))
        launcher.write_text("#!/bin/sh\n[ \"$1\" = -x ] && shift\n"
                            f"case $1 in\n{cases}    *) echo \"no test host $1\" >&2; exit 1 ;;\nesac\n"
                            "shift\nexec ip netns exec \"$host\" sh -c \"$*\"\n")
        launcher.chmod(0o755)
        hostfile = tmp_path / "hosts"
        hostfile.write_text(f"{addresses[1]}:2\n{addresses[0]}:2\n")
        # The two hosts share one kernel, so MPI's transport could move the bytes through
        # shared memory; tcp makes them cross the link, as between machines.
        yield HostPair(str(hostfile), str(launcher), links[0], ("ip", "netns", "exec", names[0]),
                        {"UCX_TLS": "tcp,self"})
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=TIMEOUT)


@pytest.mark.netns
@pytest.mark.timeout(TIMEOUT)
def test_ranks_on_two_test_hosts_talk_across_the_interface_between_them(test_hosts):
    facts = run_job(0, "across-hosts", test_hosts.hostfile, test_hosts.launcher,
                    test_hosts.interface, wrap=test_hosts.run_on_first,
                    env=test_hosts.environment)
    ranks = facts["ranks"]
    assert [rank["rank"] for rank in ranks] == [0, 1, 2]
    # Dispatch sends each item to the least loaded rank, so the split depends on when
    # each rank acknowledged; the first item always goes to rank 0, on the second host.
    counts = [rank["count"] for rank in ranks]
    assert counts == facts["dispatched"] and sum(counts) == 24 and counts[0] >= 1
    # Ranks 0 and 1 ran on the second host; rank 2 (then the relay) on the first, beside
    # the caller.
    second_host = {rank["netns"] for rank in ranks[:2]}
    assert len(second_host) == 1 and second_host != {facts["here"]}
    assert ranks[2]["netns"] == facts["here"]
    # What went to the second host's ranks crossed the link: at least as many bytes left
    # through the first host's end of it.
    remote_bytes = sum(rank["nbytes"] for rank in ranks[:2])
    assert remote_bytes == (counts[0] + counts[1]) * (1 << 20)
    assert facts["tx_bytes"] >= remote_bytes
    assert facts["left"] == []
