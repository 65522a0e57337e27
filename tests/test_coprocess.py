# Coprocesses: the plain protocol against the bare standard library, spawn() over every
# transport, serve()/connect(), `gilstudy serve`, and what each failure looks like to the
# caller. The consumers live in _coprocess_consumers (a coprocess imports them by name).
# Every test also checks that it left no thread behind; tests that start processes check
# that each was reaped.

import gc
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types

import pytest

import _coprocess_consumers as cc
from gilstudy import cli
from gilstudy.consumers import Collect
from gilstudy.coprocess import (EXIT_TIMEOUT, FLUSH_INTERVAL, Coprocess, CoprocessSender,
                                RemoteConsumer, connect, parse_address, serve, spawn)
from gilstudy.errors import (CoprocessDied, CoprocessStalled, ProtocolError, RemoteError,
                             RemoteTraceback, WorkerDied)

# Only reached when something deadlocks.
TIMEOUT = 60
HERE = os.path.dirname(os.path.abspath(__file__))
TRANSPORTS = ["pipe", "fifo", "socket"]
LOOPBACK = ("127.0.0.1", 0)
# The key serve() and connect() share in these tests (test_security.py tries others).
KEY = b"the tests' key"


pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


def assert_reaped(pid: int) -> None:
    """``pid`` was a child of this process and is gone: not running, not a zombie."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not os.path.exists(f"/proc/{pid}")


def send_until_raises(consumer, expected):
    """Keep sending until ``consumer`` raises ``expected``, at most EXIT_TIMEOUT + 5 s
    (the documented bound for noticing a death, with room for a loaded machine)."""
    deadline = time.monotonic() + EXIT_TIMEOUT + 5
    with pytest.raises(expected) as info:
        while time.monotonic() < deadline:
            consumer.send(0)
            time.sleep(0.001)
    return info.value


def small_items(count: int) -> list:
    # Tuples of ints: their repr, which Checksum folds, is the same in every process.
    return [(i, i * 7) for i in range(count)]


# --- The plain protocol ---------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_coprocess_reads_the_pickles_a_bare_pickle_dump_loop_writes_in_another_process():
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import pickle, sys
        for i in range(1000):
            pickle.dump((i, i * 7), sys.stdout.buffer)
        """)], stdout=subprocess.PIPE)
    results = Collect()
    with writer.stdout:
        Coprocess(writer.stdout, cc.Checksum(), results=results).run()
    assert writer.wait(TIMEOUT) == 0
    assert results.items == [cc.Checksum.of(small_items(1000))]


@pytest.mark.timeout(TIMEOUT)
def test_coprocess_sender_feeds_a_bare_pickle_load_loop_in_another_process():
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import pickle, sys
        items = []
        while True:
            try:
                items.append(pickle.load(sys.stdin.buffer))
            except EOFError:
                break
        print(repr(items))
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    sender = CoprocessSender(reader.stdin)
    for item in [1, "two", (3, 3.0), None, {"five": [5]}]:
        sender.send(item)
    sender.close()
    with reader.stdout:
        output = reader.stdout.read()
    assert reader.wait(TIMEOUT) == 0
    assert output.decode().strip() == repr([1, "two", (3, 3.0), None, {"five": [5]}])


# A reader as old as Python 2's pickle: it refuses any pickle whose protocol is above 2,
# then loads it. Checking the PROTO opcode of each pickle is what an older pickle.load does
# on its own ("unsupported pickle protocol").
_PROTOCOL_2_READER = textwrap.dedent("""
    import pickle, pickletools, sys
    data = sys.stdin.buffer.read()
    items, position = [], 0
    while position < len(data):
        protocol = 0
        for opcode, argument, offset in pickletools.genops(data[position:]):
            if opcode.name == "PROTO":
                protocol = argument
            if opcode.name == "STOP":
                end = position + offset + 1
        if protocol > 2:
            sys.exit("refused a pickle of protocol %d" % protocol)
        items.append(pickle.loads(data[position:end]))
        position = end
    print(repr(items))
    """)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("protocol, status, said", [
    (2, 0, repr([1, "two", (3, 3.0), None, {"five": [5]}]).encode()),
    (None, 1, b"refused a pickle of protocol %d" % pickle.DEFAULT_PROTOCOL),
], ids=["protocol-2", "default-protocol"])
def test_coprocess_sender_speaks_the_protocol_an_older_reader_understands(protocol, status,
                                                                          said):
    reader = subprocess.Popen([sys.executable, "-c", _PROTOCOL_2_READER],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    with CoprocessSender(reader.stdin, protocol=protocol) as sender:
        for item in [1, "two", (3, 3.0), None, {"five": [5]}]:
            sender.send(item)
    with reader.stdout:
        output = reader.stdout.read()
    assert reader.wait(TIMEOUT) == status
    assert output.strip() == said


@pytest.mark.parametrize("protocol, error, message", [
    (pickle.HIGHEST_PROTOCOL + 1, ValueError,
     rf"^CoprocessSender: protocol must be <= {pickle.HIGHEST_PROTOCOL} \(pickle\.HIGHEST_"
     rf"PROTOCOL here\), got {pickle.HIGHEST_PROTOCOL + 1}$"),
    (-1, ValueError, r"^CoprocessSender: protocol must be >= 0, got -1$"),
    ("2", TypeError, r"^CoprocessSender: protocol must be an int, got str \('2'\)$"),
], ids=["too-new", "negative", "not-an-int"])
def test_coprocess_sender_refuses_a_protocol_pickle_does_not_have(protocol, error, message):
    with open(os.devnull, "wb") as stream, pytest.raises(error, match=message):
        CoprocessSender(stream, protocol=protocol)


@pytest.mark.timeout(TIMEOUT)
def test_a_coprocess_sender_feeds_a_coprocess_reading_standard_input_in_another_process():
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        import _coprocess_consumers as cc
        from gilstudy.coprocess import Coprocess
        Coprocess(sys.stdin.buffer, cc.Printer()).run()
        """)], env={**os.environ, "PYTHONPATH": HERE}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    with CoprocessSender(reader.stdin) as sender:
        for item in (3, 2, 1):
            sender.send(item)
    with reader.stdout:
        output = reader.stdout.read()
    assert reader.wait(TIMEOUT) == 0
    assert output == b"got 3\ngot 2\ngot 1\ndone\n"


def test_coprocess_sends_every_item_in_order_then_closes_its_consumer(tmp_path):
    path = tmp_path / "stream"
    with open(path, "wb") as stream, CoprocessSender(stream) as sender:
        for item in small_items(500):
            sender.send(item)
    results = Collect()
    with open(path, "rb") as stream:
        Coprocess(stream, cc.Echo(), results=results).run()
    assert results.items == small_items(500) + ["closed"]


@pytest.mark.parametrize("allowed", [None, set()], ids=["any-global", "allowed"])
def test_coprocess_says_truncated_for_a_stream_cut_anywhere_and_leaves_consumer_open(tmp_path,
                                                                                     allowed):
    # Every cut of the second pickle, whichever unpickler reads it (the C one, or the
    # pure-Python one behind allowed=), reads the same.
    whole = pickle.dumps("whole")
    cut = pickle.dumps({"a": [1, 2.5, "xyz", (3, 4)], "b": b"bytes" * 3, "c": None})
    for length in range(1, len(cut)):
        path = tmp_path / "stream"
        path.write_bytes(whole + cut[:length])
        results = Collect()
        with open(path, "rb") as stream:
            with pytest.raises(ProtocolError, match=r"^the stream was truncated: it ended "
                                                    r"inside a pickle$"):
                Coprocess(stream, cc.Echo(), results=results, allowed=allowed).run()
        assert results.items == ["whole"], length


def test_coprocess_sender_close_is_idempotent(tmp_path):
    with open(tmp_path / "stream", "wb") as stream:
        sender = CoprocessSender(stream)
        sender.send(1)
        sender.close()
        sender.close()
        assert stream.closed


# --- spawn(): delivery ----------------------------------------------------------------------

# In make test's first pass only: test_runners.py sends the same million over each
# transport in every pass.
@pytest.mark.one_pass
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_transport_delivers_a_million_small_items_in_order(transport):
    items = small_items(10**6)
    results = Collect()
    consumer = spawn(cc.Checksum, transport=transport, results=results)
    for item in items:
        consumer.send(item)
    consumer.close()
    assert results.items == [cc.Checksum.of(items)]
    assert (consumer.sent, consumer.acknowledged, consumer.pending) == (10**6, 10**6, 0)
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_results_come_back_in_order_with_the_close_result_last(transport):
    results = Collect()
    with spawn(cc.Echo, transport=transport, results=results) as consumer:
        for item in range(100):
            consumer.send(item)
    assert results.items == list(range(100)) + ["closed"]
    assert_reaped(consumer.pid)


class Frames:
    """A results consumer with ``extend``: records each call, so a test sees how results
    were handed over (several per call, one per send)."""

    def __init__(self):
        self.calls = []

    def send(self, item):
        self.calls.append(("send", item))

    def extend(self, items):
        self.calls.append(("extend", list(items)))

    def close(self):
        return None


@pytest.mark.timeout(TIMEOUT)
def test_a_results_consumer_with_extend_gets_each_frames_results_in_one_call():
    results = Frames()
    with spawn(cc.Echo, results=results) as consumer:
        for item in range(5000):
            consumer.send(item)
    kinds = {kind for kind, _ in results.calls}
    delivered = [value for _, values in results.calls for value in values]
    assert kinds == {"extend"}
    assert delivered == list(range(5000)) + ["closed"]
    assert len(results.calls) < 5000 / 2    # many results to a call, not one each


@pytest.mark.timeout(TIMEOUT)
def test_the_factory_gets_its_arguments():
    results = Collect()
    with spawn(cc.Joined, "a", "b", results=results) as consumer:
        consumer.send("x")
    assert results.items == ["a-b:x"]


@pytest.mark.timeout(TIMEOUT)
def test_pid_is_the_coprocess_running_gilstudy_child():
    with spawn(cc.Count) as consumer:
        with open(f"/proc/{consumer.pid}/cmdline", "rb") as f:
            command = f.read().split(b"\0")
    assert command[:3] == [sys.executable.encode(), b"-m", b"gilstudy.processes"]


@pytest.mark.timeout(TIMEOUT)
def test_the_consumer_prints_to_the_standard_output_of_the_parent(capfd):
    with spawn(cc.Printer) as consumer:
        consumer.send("a line")
    assert capfd.readouterr().out == "got a line\ndone\n"


@pytest.mark.timeout(TIMEOUT)
def test_a_kernel_consumer_runs_as_a_coprocess():
    from gilstudy.kernels.work import KernelConsumer

    results = Collect()
    with spawn(KernelConsumer, "count_primes", "cython", results=results) as worker:
        for index in range(10):
            worker.send((index, (0, 100 * (index + 1))))
    assert results.items == [(i, KernelConsumer("count_primes").send((i, (0, 100 * (i + 1))))[1])
                             for i in range(10)]


@pytest.mark.timeout(TIMEOUT)
def test_the_coprocess_does_not_import_numpy():
    results = Collect()
    with spawn(cc.ModulesLoaded, results=results):
        pass
    assert [m for m in results.items[0] if m.split(".")[0] == "numpy"] == []


@pytest.mark.timeout(TIMEOUT)
def test_a_lone_item_is_flushed_without_close_or_flush():
    results = Collect()
    with spawn(cc.Echo, results=results) as consumer:
        consumer.send("warm-up")
        results.wait(1, timeout=TIMEOUT)
        start = time.monotonic()
        consumer.send("lone")
        results.wait(2, timeout=TIMEOUT)
        # The bound is FLUSH_INTERVAL plus a round trip; a loaded machine gets ample room.
        assert time.monotonic() - start < FLUSH_INTERVAL + 1.0
    assert results.items == ["warm-up", "lone", "closed"]


@pytest.mark.timeout(TIMEOUT)
def test_small_items_travel_many_to_a_frame():
    with spawn(cc.Count) as consumer:
        for item in small_items(20_000):
            consumer.send(item)
        frames = consumer._link.sender.flushes
    assert frames <= 40  # 500 items a frame or more, on average


@pytest.mark.timeout(TIMEOUT)
def test_acknowledgements_flow_back_without_results():
    with spawn(cc.Count) as consumer:  # no results consumer: only ACKs come back
        for item in range(10):
            consumer.send(item)
        consumer.flush()
        deadline = time.monotonic() + TIMEOUT
        while consumer.pending and time.monotonic() < deadline:
            time.sleep(0.001)
        assert (consumer.pending, consumer.acknowledged) == (0, 10)


@pytest.mark.timeout(TIMEOUT)
def test_pending_counts_items_the_consumer_has_not_yet_handled(tmp_path):
    go = tmp_path / "go"
    results = Collect()
    with spawn(cc.Blocker, str(go), results=results) as consumer:
        for item in range(10):
            consumer.send(item)
        consumer.flush()
        assert consumer.pending == 10
        go.touch()
    assert consumer.pending == 0
    assert results.items == list(range(10))


@pytest.mark.timeout(TIMEOUT)
def test_fifos_are_gone_once_spawn_returns_and_the_directory_is_kept(tmp_path):
    with spawn(cc.Count, transport="fifo", path=tmp_path) as consumer:
        assert list(tmp_path.iterdir()) == []
        consumer.send(1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(TIMEOUT)
def test_the_default_fifo_directory_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with spawn(cc.Count, transport="fifo") as consumer:
        assert list(tmp_path.iterdir()) == []
        consumer.send(1)


@pytest.mark.timeout(TIMEOUT)
def test_the_socket_transport_listens_where_asked():
    results = Collect()
    with spawn(cc.Echo, transport="socket", address=("127.0.0.1", 0), results=results) as c:
        c.send(1)
    assert results.items == [1, "closed"]


# --- spawn(): arguments ---------------------------------------------------------------------

def factory_in_main():
    return cc.Count()


factory_in_main.__module__ = "__main__"


@pytest.mark.parametrize("kwargs, message", [
    ({"transport": "carrier-pigeon"},
     r"^spawn: transport must be one of pipe, fifo, socket, got 'carrier-pigeon'$"),
    ({"transport": "pipe", "path": "/tmp"}, r"^spawn: path is for transport='fifo', not 'pipe'$"),
    ({"transport": "fifo", "address": LOOPBACK},
     r"^spawn: address is for transport='socket', not 'fifo'$"),
], ids=["unknown-transport", "path-without-fifo", "address-without-socket"])
def test_spawn_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        spawn(cc.Count, **kwargs)


def test_spawn_refuses_a_factory_defined_in_a_main_that_cannot_be_loaded_again(monkeypatch):
    # As under python -c: a __main__ with no file. (A script's __main__ is loaded again in
    # the child: tests/test_mainscript.py.)
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.setattr(sys, "argv", ["-c"])
    with pytest.raises(ValueError, match=r"^spawn: factory 'factory_in_main' is defined in "
                                         r"__main__, which a coprocess cannot import: this "
                                         r"program's main script cannot be loaded again "
                                         r"because it is a program given with python -c; "):
        spawn(factory_in_main)


def test_spawn_refuses_an_unpicklable_argument_before_starting_anything():
    with pytest.raises((pickle.PicklingError, AttributeError)):
        spawn(cc.Joined, lambda: "not picklable")


def test_spawn_refuses_a_fifo_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(NotADirectoryError, match=r"^spawn: path must be an existing directory"):
        spawn(cc.Count, transport="fifo", path=tmp_path / "missing")


# --- Errors come home -----------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_a_remote_exception_is_raised_by_the_next_send():
    results = Collect()
    consumer = spawn(cc.FailOn, 5, results=results)
    for item in range(10):
        consumer.send(item)
    consumer.flush()
    error = send_until_raises(consumer, RemoteError)
    assert error.remote_type == "ValueError"
    assert error.remote_message == "item 5 is bad"
    assert 'raise ValueError(f"item {item!r} is bad")' in error.remote_traceback
    assert error.acknowledged == 5
    assert error.sent >= 10
    assert results.items == [0, 1, 2, 3, 4]
    with pytest.raises(RemoteError):
        consumer.send(11)  # a broken coprocess keeps refusing
    consumer.close()  # raised already: close only cleans up
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_remote_exception_is_raised_by_close(transport):
    consumer = spawn(cc.FailOn, 5, transport=transport)
    for item in range(10):
        consumer.send(item)
    with pytest.raises(RemoteError, match=rf"^coprocess {consumer.pid}: ValueError: item 5 is "
                                          r"bad \(10 items sent, 5 acknowledged\)$") as info:
        consumer.close()
    # The far side's traceback is the cause: where the consumer raised, in the child.
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in send\n    raise ValueError(f\"item {item!r} is bad\")" in info.value.__cause__.text
    assert info.value.__cause__.text.endswith(f"(in process {consumer.pid})\n")
    consumer.close()
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("factory, args, remote_type, message", [
    (cc.broken_factory, (), "RuntimeError", "no consumer today"),
    (cc.FailOnClose, (), "KeyError", "'close failed'"),
    (cc.Joined, (object(),), "TypeError", "sequence item 0: expected str instance, object found"),
], ids=["factory-raises", "close-raises", "factory-rejects-arguments"])
def test_failures_in_building_or_closing_the_consumer_come_home(factory, args, remote_type,
                                                                message):
    consumer = spawn(factory, *args)
    consumer.send(1)
    with pytest.raises(RemoteError) as info:
        consumer.close()
    assert (info.value.remote_type, info.value.remote_message) == (remote_type, message)
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_a_result_that_cannot_be_pickled_is_a_remote_error():
    with pytest.raises(RemoteError, match=r"Can't (pickle|get local object)"):
        with spawn(cc.Unpicklable, results=Collect()) as consumer:
            consumer.send(1)
            consumer.close()


@pytest.mark.timeout(TIMEOUT)
def test_an_item_that_cannot_be_pickled_abandons_the_coprocess():
    consumer = spawn(cc.Count)
    consumer.send(1)
    consumer.send(lambda: 2)
    with pytest.raises((pickle.PicklingError, AttributeError)) as info:
        consumer.close()
    assert info.value.__notes__ == [
        f"gilstudy: item number 1 sent to coprocess {consumer.pid} could not be pickled; "
        "the worker was abandoned with its consumer unclosed"]
    assert_reaped(consumer.pid)


class RefusesSend:
    def send(self, item):
        raise LookupError("no room")


class RefusesExtend(Frames):
    def extend(self, items):
        raise LookupError("no room")


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("refuses", [RefusesSend, RefusesExtend], ids=["send", "extend"])
def test_an_exception_in_the_results_consumer_is_raised_in_the_caller(refuses):
    consumer = spawn(cc.Echo, results=refuses())
    consumer.send(1)
    with pytest.raises(LookupError, match=rf"^no room\ngilstudy: raised by the results consumer "
                                          rf"of coprocess {consumer.pid}$"):
        consumer.close()
    assert_reaped(consumer.pid)


# --- Faults never hang ----------------------------------------------------------------------

CRASHES = [("exit", 3, None), ("kill", -9, 9), ("segfault", -11, 11)]
CRASH_IDS = ["os._exit", "SIGKILL", "segfault"]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("how, exitcode, signum", CRASHES, ids=CRASH_IDS)
def test_a_crashed_coprocess_makes_the_next_send_raise_coprocess_died(how, exitcode, signum):
    consumer = spawn(cc.Die, how, 3)
    for item in range(4):
        consumer.send(item)
    consumer.flush()
    start = time.monotonic()
    error = send_until_raises(consumer, CoprocessDied)
    assert time.monotonic() - start < EXIT_TIMEOUT
    assert (error.pid, error.exitcode, error.signal) == (consumer.pid, exitcode, signum)
    assert error.sent >= 4
    consumer.close()
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("how, exitcode, signum", CRASHES, ids=CRASH_IDS)
def test_a_crashed_coprocess_makes_close_raise_coprocess_died(how, exitcode, signum, transport):
    consumer = spawn(cc.Die, how, 3, transport=transport)
    for item in range(10):
        consumer.send(item)
    with pytest.raises(CoprocessDied) as info:
        consumer.close()
    assert (info.value.exitcode, info.value.signal) == (exitcode, signum)
    # The first item, sent after a quiet spell, left alone and was handled; the rest went
    # in one batch, in which the consumer died at item 3 before acknowledging any.
    assert (info.value.sent, info.value.acknowledged) == (10, 1)
    consumer.close()
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_a_producer_blocked_on_a_full_channel_gets_coprocess_died_not_a_hang():
    consumer = spawn(cc.Die, "exit", 5000)
    with pytest.raises(CoprocessDied) as info:
        for item in range(10**8):  # far more than a pipe holds: writes block, then break
            consumer.send(item)
    assert info.value.exitcode == 3
    consumer.close()
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_a_coprocess_killed_from_outside_makes_close_raise_coprocess_died(tmp_path):
    consumer = spawn(cc.Blocker, str(tmp_path / "never"))
    consumer.send(1)
    os.kill(consumer.pid, signal.SIGKILL)
    with pytest.raises(CoprocessDied, match=rf"^coprocess {consumer.pid} was killed by signal 9 "
                                            r"\(1 items sent, 0 acknowledged\)"):
        consumer.close()
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_child_that_never_starts_is_reported_and_leaves_nothing(transport, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(CoprocessDied) as info:
        with spawn(cc.Count, transport=transport) as consumer:
            consumer.send(1)
            consumer.close()
    assert info.value.exitcode == 1
    assert_reaped(info.value.pid)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(TIMEOUT)
def test_close_is_idempotent_and_send_after_close_raises():
    consumer = spawn(cc.Count)
    consumer.close()
    consumer.close()
    assert consumer.is_closed
    with pytest.raises(ValueError, match=rf"^send\(\) on a closed coprocess {consumer.pid}$"):
        consumer.send(1)
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_leaving_a_with_block_on_an_exception_terminates_the_coprocess(tmp_path):
    with pytest.raises(KeyError):
        with spawn(cc.Blocker, str(tmp_path / "never")) as consumer:
            consumer.send(1)
            consumer.flush()
            raise KeyError("the caller's own trouble")
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_ctrl_c_while_close_waits_ends_the_coprocess(tmp_path):
    consumer = spawn(cc.Blocker, str(tmp_path / "never"))
    consumer.send(1)

    def interrupt_once_closing():
        # Until the main thread waits in close(). Without a GIL this thread runs alongside
        # it, and a signal that lands before the wait begins is handled only at the next
        # signal (the 3.13t build), so the wait must have begun.
        main = threading.main_thread().ident
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(main)
            if consumer.is_closed and frame is not None and frame.f_code.co_name == "wait":
                break
            time.sleep(0.001)
        time.sleep(0.05)  # from the frame's first line into the lock's wait
        # A real signal: it wakes the main thread from the wait, as Ctrl-C in a terminal does.
        signal.pthread_kill(main, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_closing)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        consumer.close()  # would wait for ever: the consumer never gets past item 1
    interrupter.join(TIMEOUT)
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_a_forgotten_coprocess_is_ended_when_garbage_collected():
    consumer = spawn(cc.Count)
    consumer.send(1)
    pid = consumer.pid
    del consumer
    gc.collect()
    assert_reaped(pid)


def run_script(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            env={**os.environ, "PYTHONPATH": HERE},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def gone(pid: int) -> bool:
    """``pid`` (not our child) has exited and been reaped by its parent."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.mark.timeout(TIMEOUT)
def test_coprocesses_left_open_are_ended_at_interpreter_exit():
    script = run_script("""
        import _coprocess_consumers as cc
        from gilstudy.coprocess import spawn
        consumer = spawn(cc.Count)
        consumer.send(1)
        print(consumer.pid, flush=True)
        """)
    out, err = script.communicate(timeout=TIMEOUT)
    assert (script.returncode, err) == (0, "")
    assert gone(int(out))


@pytest.mark.timeout(TIMEOUT)
def test_ctrl_c_in_the_parent_ends_its_coprocesses_quietly():
    # Ctrl-C in a terminal signals the whole process group: the script and its coprocess.
    script = run_script("""
        import sys
        import _coprocess_consumers as cc
        from gilstudy.coprocess import spawn

        class SayReady:
            def send(self, item):
                if item == "ready":
                    print(item, flush=True)

        try:
            with spawn(cc.Echo, results=SayReady()) as consumer:
                print(consumer.pid, flush=True)
                consumer.send("ready")
                while True:
                    consumer.send(1)
        except KeyboardInterrupt:
            sys.exit(130)
        """, start_new_session=True)
    child_pid = int(script.stdout.readline())
    assert script.stdout.readline() == "ready\n"  # the coprocess runs: Ctrl-C now
    os.killpg(script.pid, signal.SIGINT)
    out, err = script.communicate(timeout=TIMEOUT)
    assert (script.returncode, err) == (130, "")
    assert gone(child_pid)


# --- serve() and connect() ------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_serve_and_connect_round_trip():
    results = Collect()
    with serve(LOOPBACK, cc.Echo, authkey=KEY) as server:
        with connect(server.address, results=results, authkey=KEY) as consumer:
            for item in range(1000):
                consumer.send(item)
        assert consumer.pid == os.getpid()
    assert results.items == list(range(1000)) + ["closed"]


@pytest.mark.timeout(TIMEOUT)
def test_a_server_builds_a_consumer_per_connection_and_serves_them_at_once():
    with serve(LOOPBACK, cc.Checksum, authkey=KEY) as server:
        first, second = Collect(), Collect()
        a = connect(server.address, results=first, authkey=KEY)
        b = connect(server.address, results=second, authkey=KEY)
        for item in small_items(1000):
            a.send(item)
            b.send(item)
        b.send("extra")
        a.close()
        b.close()
    assert first.items == [cc.Checksum.of(small_items(1000))]
    assert second.items == [cc.Checksum.of(small_items(1000) + ["extra"])]


@pytest.mark.timeout(TIMEOUT)
def test_a_remote_error_over_a_connection_leaves_the_server_serving():
    with serve(LOOPBACK, cc.FailOn, 2, authkey=KEY) as server:
        failing = connect(server.address, authkey=KEY)
        for item in range(5):
            failing.send(item)
        with pytest.raises(RemoteError, match=r"^coprocess at 127\.0\.0\.1:\d+: ValueError: "
                                              r"item 2 is bad \(5 items sent, 2 acknowledged\)"):
            failing.close()
        results = Collect()
        with connect(server.address, results=results, authkey=KEY) as working:
            working.send(1)
    assert results.items == [1]


@pytest.mark.timeout(TIMEOUT)
def test_a_server_closed_under_a_connection_makes_close_raise_coprocess_died(tmp_path):
    server = serve(LOOPBACK, cc.Blocker, str(tmp_path / "go"), authkey=KEY)
    consumer = connect(server.address, authkey=KEY)
    consumer.send(1)
    consumer.flush()
    closer = threading.Thread(target=server.close)
    closer.start()
    (tmp_path / "go").touch()  # the item in hand is finished, then the connection drops
    closer.join(TIMEOUT)
    assert server.is_closed
    with pytest.raises(CoprocessDied, match=r"stopped answering .*: its connection to "
                                            r"127\.0\.0\.1:\d+ closed before"):
        for item in range(10**6):
            consumer.send(item)
        consumer.close()
    consumer.close()


@pytest.mark.timeout(TIMEOUT)
def test_connect_to_a_peer_that_is_not_gilstudy_raises_protocol_error():
    with socket.create_server(LOOPBACK) as listener:
        def answer():
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.recv(100)

        peer = threading.Thread(target=answer)
        peer.start()
        with pytest.raises(ProtocolError):
            connect(listener.getsockname(), authkey=KEY)
        peer.join(TIMEOUT)


@pytest.mark.timeout(TIMEOUT)
def test_a_client_that_is_not_gilstudy_is_dropped_and_logged(caplog):
    with serve(LOOPBACK, cc.Echo, authkey=KEY) as server:
        with socket.create_connection(server.address) as intruder:
            intruder.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert intruder.recv(1 << 16).startswith(b"H")  # its HELLO
            assert intruder.recv(1 << 16) == b""  # then it hangs up
        results = Collect()
        with connect(server.address, results=results, authkey=KEY) as consumer:
            consumer.send("still serving")
    assert results.items == ["still serving", "closed"]
    assert re.search(r"dropped a connection from 127\.0\.0\.1:\d+: the peer is not a gilstudy "
                     r"end: it sent an HTTP request, beginning b'GET / HTT'", caplog.text)


def test_connect_to_a_closed_port_raises_connection_refused():
    with socket.create_server(LOOPBACK) as placeholder:
        address = placeholder.getsockname()
    with pytest.raises(ConnectionRefusedError):
        connect(address, authkey=KEY)


@pytest.mark.timeout(TIMEOUT)
def test_server_close_is_idempotent_and_stops_accepting():
    server = serve(LOOPBACK, cc.Echo, authkey=KEY)
    server.close()
    server.close()
    with pytest.raises(ConnectionRefusedError):
        connect(server.address, authkey=KEY)


# --- `gilstudy serve` -----------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_gilstudy_serve_prints_its_address_and_serves_until_interrupted():
    command = subprocess.Popen(
        [sys.executable, "-m", "gilstudy", "serve", "127.0.0.1:0", "_coprocess_consumers:Joined",
         "a", "b"], env={**os.environ, "PYTHONPATH": HERE, "GILSTUDY_AUTHKEY": KEY.decode()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = command.stdout.readline()
        assert line.startswith("serving on 127.0.0.1:")
        results = Collect()
        with connect(parse_address(line.split()[-1]), results=results,
                     authkey=KEY) as consumer:
            consumer.send("x")
        assert results.items == ["a-b:x"]
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=TIMEOUT)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    assert (command.returncode, out, err) == (130, "", "gilstudy: interrupted\n")


@pytest.mark.parametrize("argv, message", [
    (["nohost", "_coprocess_consumers:Echo"], "address must be HOST:PORT, got 'nohost'"),
    (["127.0.0.1:http", "_coprocess_consumers:Echo"],
     "address '127.0.0.1:http': port must be an integer, got 'http'"),
    (["127.0.0.1:70000", "_coprocess_consumers:Echo"],
     "address '127.0.0.1:70000': port must be in 0..65535, got 70000"),
    (["127.0.0.1:0", "no_such_module:Echo"],
     "cannot import factory 'no_such_module:Echo': ModuleNotFoundError: No module named "
     "'no_such_module'"),
    (["127.0.0.1:0", "_coprocess_consumers:Nothing"],
     "cannot import factory '_coprocess_consumers:Nothing': AttributeError: module "
     "'_coprocess_consumers' has no attribute 'Nothing'"),
    (["127.0.0.1:0", "Echo"], "cannot import factory 'Echo': ValueError: factory must be "
                              "MODULE:NAME, got 'Echo'"),
    # Every option is checked before the factory is even imported.
    (["127.0.0.1:0", "no_such_module:Echo", "--max-connections", "0"],
     "serve: max_connections must be >= 1, got 0"),
    (["127.0.0.1:0", "no_such_module:Echo", "--max-connections", "-5"],
     "serve: max_connections must be >= 1, got -5"),
    (["127.0.0.1:0", "no_such_module:Echo", "--max-connections", "many"],
     "argument --max-connections: invalid int value: 'many'"),
    (["127.0.0.1:0", "no_such_module:Echo", "--handshake-timeout", "0"],
     "serve: handshake_timeout must be a positive, finite number of seconds, got 0.0"),
    (["127.0.0.1:0", "no_such_module:Echo", "--handshake-timeout", "inf"],
     "serve: handshake_timeout must be a positive, finite number of seconds, got inf"),
    (["127.0.0.1:0", "no_such_module:Echo", "--handshake-timeout", "nan"],
     "serve: handshake_timeout must be a positive, finite number of seconds, got nan"),
    (["127.0.0.1:0", "no_such_module:Echo", "--handshake-timeout", "soon"],
     "argument --handshake-timeout: invalid float value: 'soon'"),
    (["127.0.0.1:0", "no_such_module:Echo", "--max-frame", str(2**64)],
     "serve: max_frame must fit in a frame header's 8-byte length (<= 18446744073709551615), "
     "got 18446744073709551616"),
    (["127.0.0.1:0", "no_such_module:Echo", "--max-frame", "10"],
     "serve: max_frame must be >= 1024, got 10"),
    (["127.0.0.1:0", "no_such_module:Echo", "--allow", "nodot"],
     "serve: allowed: each global must be a 'module.name' string, got 'nodot'"),
], ids=["no-port", "port-not-a-number", "port-too-large", "no-module", "no-attribute",
        "no-colon", "no-connections", "negative-connections", "connections-not-a-number",
        "zero-handshake", "endless-handshake", "nan-handshake", "handshake-not-a-number",
        "frame-past-a-header", "frame-too-small", "allow-without-a-module"])
def test_gilstudy_serve_refuses_bad_arguments_in_one_line(argv, message, capsys):
    try:
        status = cli.main(["serve", *argv])
    except SystemExit as exit:  # what argparse itself refuses
        status = exit.code
    assert status == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"gilstudy serve: error: {message}\n")


@pytest.mark.parametrize("text, address", [
    ("127.0.0.1:8000", ("127.0.0.1", 8000)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:9", ("::1", 9)),
])
def test_parse_address(text, address):
    assert parse_address(text) == address


# --- Errors and runners across process boundaries -------------------------------------------

def test_remote_error_survives_pickling_with_its_facts():
    error = RemoteError("ValueError", "bad", "Traceback...\n", sent=10, acknowledged=5)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RemoteError
    assert (copy.remote_type, copy.remote_message, copy.remote_traceback, copy.sent,
            copy.acknowledged) == ("ValueError", "bad", "Traceback...\n", 10, 5)
    assert str(copy) == str(error)


def test_worker_died_survives_pickling_with_its_facts():
    error = CoprocessDied(123, -9, "its pipe closed", sent=4, acknowledged=2,
                          where="coprocess 123")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is CoprocessDied is WorkerDied
    assert (copy.pid, copy.exitcode, copy.signal, copy.detail, copy.sent,
            copy.acknowledged) == (123, -9, 9, "its pipe closed", 4, 2)
    assert str(copy) == str(error) == ("coprocess 123 was killed by signal 9 (4 items sent, 2 "
                                       "acknowledged): its pipe closed")


@pytest.mark.timeout(TIMEOUT)
def test_a_remote_consumer_cannot_be_pickled():
    with spawn(cc.Count) as consumer:
        assert isinstance(consumer, RemoteConsumer)
        with pytest.raises(TypeError, match=r"^a RemoteConsumer cannot be pickled"):
            pickle.dumps(consumer)


# --- Large arrays and frame limits ----------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_numpy_arrays_arrive_whole_and_writable_in_and_out_of_band(transport):
    np = pytest.importorskip("numpy")
    arrays = [np.arange(1 << 18, dtype=np.int32), np.ones((512, 512)), np.arange(10),
              np.arange(1 << 18, dtype=np.int64)[::2], np.asfortranarray(np.ones((300, 300)))]
    results = Collect()
    with spawn(cc.Shapes, transport=transport, results=results) as consumer:
        for array in arrays:
            consumer.send(array)
    assert results.items == [(a.shape, a.dtype.name, int(a.sum())) for a in arrays] + [True]


@pytest.mark.timeout(TIMEOUT)
def test_arrays_come_back_as_results_out_of_band():
    np = pytest.importorskip("numpy")
    results = Collect()
    with spawn(cc.Echo, results=results) as consumer:
        consumer.send(np.arange(1 << 20, dtype=np.uint8))
    assert (results.items[0] == np.arange(1 << 20, dtype=np.uint8)).all()


@pytest.mark.timeout(TIMEOUT)
def test_a_batch_larger_than_the_frame_limit_travels_in_several_frames():
    results = Collect()
    with spawn(cc.Echo, results=results, max_frame=64 << 10) as consumer:
        for index in range(20):
            consumer.send(bytes([index]) * 10_000)
    assert results.items == [bytes([index]) * 10_000 for index in range(20)] + ["closed"]


@pytest.mark.timeout(TIMEOUT)
def test_an_item_larger_than_the_frame_limit_abandons_the_coprocess_naming_it():
    consumer = spawn(cc.Count, max_frame=64 << 10)
    consumer.send(b"small")
    consumer.send(b"x" * (100 << 10))
    with pytest.raises(ProtocolError, match=rf"^item number 1 sent to coprocess {consumer.pid} "
                                            r"pickles to more than the 65536 bytes a frame may "
                                            r"hold there; raise max_frame on both ends"):
        consumer.close()
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_a_result_larger_than_the_frame_limit_is_a_remote_error():
    results = Collect()
    consumer = spawn(cc.Times, 100, results=results, max_frame=64 << 10)
    consumer.send(b"fits")
    consumer.flush()
    results.wait(1, timeout=TIMEOUT)
    consumer.send(b"x" * 1000)  # comes back as 100 kB
    with pytest.raises(RemoteError, match=r"^coprocess \d+: gilstudy\.errors\.ProtocolError: "
                                          r"a bytes pickles "
                                          r"to a frame of 100\d\d\d bytes, more than the "
                                          r"65536 bytes the peer accepts") as info:
        consumer.close()
    # Item 1 was handled, but its result lost: it is not acknowledged, so it is sent again.
    assert (info.value.sent, info.value.acknowledged) == (2, 1)
    assert results.items == [b"fits" * 100]


@pytest.mark.parametrize("max_frame, error, message", [
    (512, ValueError, r"^spawn: max_frame must be >= 1024, got 512$"),
    (2.0**20, TypeError, r"^spawn: max_frame must be an int, got float \(1048576\.0\)$"),
    (2**64, OverflowError, r"^spawn: max_frame must fit in a frame header's 8-byte length "
                           r"\(<= 18446744073709551615\), got 18446744073709551616$"),
], ids=["too-small", "not-an-int", "too-large"])
def test_spawn_refuses_a_bad_frame_limit(max_frame, error, message):
    with pytest.raises(error, match=message):
        spawn(cc.Count, max_frame=max_frame)


def test_spawn_and_connect_refuse_results_without_send_before_starting_anything():
    with pytest.raises(TypeError, match=r"^spawn: results must have a send\(\) method"):
        spawn(cc.Count, results=[])
    with pytest.raises(TypeError, match=r"^connect: results must have a send\(\) method"):
        connect(("127.0.0.1", 9), results=42, authkey=KEY)


# --- Timeouts -------------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_close_with_a_timeout_leaves_a_slow_coprocess_and_a_second_close_ends_it(tmp_path):
    consumer = spawn(cc.Blocker, str(tmp_path / "go"))
    consumer.send(1)
    with pytest.raises(CoprocessStalled, match=rf"^coprocess {consumer.pid} stalled \(1 items "
                                               r"sent, 0 acknowledged\): close\(\) saw no "
                                               r"progress for 0\.2 s: its consumer acknowledged "
                                               r"no item and did not finish closing$"):
        consumer.close(timeout=0.2)
    assert os.path.exists(f"/proc/{consumer.pid}")
    (tmp_path / "go").touch()
    consumer.close()  # the consumer finishes, the process exits
    assert_reaped(consumer.pid)


@pytest.mark.timeout(TIMEOUT)
def test_a_stalled_send_keeps_raising_until_abort():
    consumer = spawn(cc.StopsAt, 0)
    consumer.send(0)
    big = b"x" * (1 << 16)
    with pytest.raises(CoprocessStalled) as info:
        for _ in range(10**4):
            consumer.send(big, timeout=0.2)
    assert str(info.value).endswith("send() saw no progress for 0.2 s: no item acknowledged "
                                    "and no byte read")
    with pytest.raises(CoprocessStalled):
        consumer.send(1)
    consumer.abort()
    assert_reaped(consumer.pid)


@pytest.mark.parametrize("call", ["send", "flush", "close"])
def test_a_timeout_must_be_positive(call):
    with spawn(cc.Count) as consumer:
        arguments = (1,) if call == "send" else ()
        with pytest.raises(ValueError, match=rf"^{call}: timeout must be a positive number of "
                                             r"seconds or None, got -1$"):
            for _ in range(100):  # send() checks it when it writes
                getattr(consumer, call)(*arguments, timeout=-1)


@pytest.mark.timeout(TIMEOUT)
def test_connect_to_a_server_that_never_answers_times_out():
    with socket.create_server(LOOPBACK) as listener:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^connect: the server at 127\.0\.0\.1:\d+ did "
                                               r"not finish the handshake within 0\.3 s; "
                                               r"nothing of its HELLO had arrived$"):
            connect(listener.getsockname(), authkey=KEY, timeout=0.3)
        assert time.monotonic() - start < 0.3 + 2


# --- Errors never wait for the next call ------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_an_item_the_flusher_cannot_pickle_is_raised_to_a_caller_waiting_for_results():
    results = Collect()
    consumer = spawn(cc.Echo, results=results)
    try:
        time.sleep(0.02)
        consumer.send(1)                    # alone after a quiet spell: written at once
        consumer.send(threading.Lock())     # the flusher writes it 5 ms later, and fails
        start = time.monotonic()
        with pytest.raises(TypeError, match="lock"):
            results.wait(2)                 # without a timeout: it must not wait for ever
        assert time.monotonic() - start < EXIT_TIMEOUT
        with pytest.raises(TypeError):
            consumer.close()
    finally:
        consumer.abort()


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_consumer_error_is_raised_to_a_caller_waiting_for_results(transport):
    results = Collect()
    with pytest.raises(RemoteError):
        with spawn(cc.FailOn, 2, transport=transport, results=results) as consumer:
            for item in range(3):
                consumer.send(item)
            consumer.flush()
            with pytest.raises(RemoteError, match="2"):
                results.wait(3)
    assert results.items == [0, 1]
