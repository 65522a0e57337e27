# The rules every kind of runner keeps (docs/guide/new-runner.md), each checked on every kind
# it applies to: a consumer's error is a ConsumerError (here for the runners the fault table
# of test_faults.py does not drive through their starters), a kind that cannot run here is a
# RunnerUnavailable, max_in_flight bounds every runner outside this interpreter, and the
# plain-protocol CoprocessSender follows the exit rule.

import io
import pickle
import sys

import pytest

import _coprocess_consumers as cc
import _toy_runner
from gilstudy import errors, mpi
from gilstudy.consumers import Collect
from gilstudy.coprocess import connect, coprocesses, serve, spawn
from gilstudy.interpreters import subinterpreter, subinterpreters
from gilstudy.stream import Coprocess, CoprocessSender

# Only reached when something deadlocks.
TIMEOUT = 120
KEY = b"the rules' key"


# --- a kind that cannot run here: RunnerUnavailable -------------------------------------------

UNAVAILABLE = {
    # A None entry in sys.modules makes the import fail, as where the support is missing.
    "subinterpreter": ("concurrent.interpreters", lambda: subinterpreter(cc.Echo),
                       errors.SubinterpretersUnavailable),
    "subinterpreters": ("concurrent.interpreters", lambda: subinterpreters(cc.Echo, 2),
                        errors.SubinterpretersUnavailable),
    "ranks": ("mpi4py", lambda: mpi.ranks(cc.Echo, 1), errors.MpiUnavailable),
    "world": ("mpi4py", lambda: mpi.world(cc.Echo), errors.MpiUnavailable),
}


@pytest.mark.parametrize("starter", UNAVAILABLE)
def test_a_kind_that_cannot_run_here_raises_a_runner_unavailable_naming_what_is_missing(
        starter, monkeypatch):
    module, start, specific = UNAVAILABLE[starter]
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(errors.RunnerUnavailable) as caught:
        start()
    assert type(caught.value) is specific
    assert isinstance(caught.value, ImportError)
    needed = "Python 3.14" if module == "concurrent.interpreters" else "mpi4py"
    assert needed in str(caught.value)


# --- max_in_flight on every runner outside this interpreter -----------------------------------

BAD_MAX_IN_FLIGHT = {
    "spawn": lambda value: spawn(cc.Echo, max_in_flight=value),
    "coprocesses": lambda value: coprocesses(cc.Echo, 2, max_in_flight=value),
    "connect": lambda value: connect(("127.0.0.1", 9), insecure=True, max_in_flight=value),
    "ranks": lambda value: mpi.ranks(cc.Echo, 1, max_in_flight=value),
    "world": lambda value: mpi.world(cc.Echo, max_in_flight=value),
    "pipe_thread": lambda value: _toy_runner.pipe_thread(cc.Echo, max_in_flight=value),
    "subinterpreter": lambda value: subinterpreter(cc.Echo, max_in_flight=value),
    "subinterpreters": lambda value: subinterpreters(cc.Echo, 2, max_in_flight=value),
}
# Runs only where concurrent.interpreters exists (make test's 3.15 pass).
_IN_SUBINTERPRETERS = ("subinterpreter", "subinterpreters")


@pytest.mark.parametrize("starter", [
    pytest.param(name, marks=pytest.mark.subinterpreters) if name in _IN_SUBINTERPRETERS
    else name for name in BAD_MAX_IN_FLIGHT])
def test_every_starter_refuses_a_bad_max_in_flight_before_anything_starts(starter):
    start = BAD_MAX_IN_FLIGHT[starter]
    with pytest.raises(ValueError, match=rf"^{starter}: max_in_flight must be >= 1, got 0$"):
        start(0)
    with pytest.raises(TypeError, match=rf"^{starter}: max_in_flight must be an int"):
        start(2.5)


@pytest.fixture(scope="module")
def sleepy_server():
    with serve(("127.0.0.1", 0), cc.Sleepy, 0.01, authkey=KEY) as server:
        yield server


def _bounded_runners(server, window: int) -> dict:
    """Each kind of runner outside this interpreter, on cc.Sleepy(0.01), with
    max_in_flight=window."""
    return {
        "coprocess": lambda results: spawn(cc.Sleepy, 0.01, results=results,
                                           max_in_flight=window),
        "server-connection": lambda results: connect(server.address, results=results,
                                                     authkey=KEY, max_in_flight=window),
        "subinterpreter": lambda results: subinterpreter(cc.Sleepy, 0.01, results=results,
                                                         max_in_flight=window),
        "mpi-rank": lambda results: mpi.ranks(cc.Sleepy, 1, 0.01, results=results,
                                              max_in_flight=window).consumers[0],
        "pipe-thread": lambda results: _toy_runner.pipe_thread(cc.Sleepy, 0.01,
                                                               results=results,
                                                               max_in_flight=window),
    }


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("kind", ["coprocess", "server-connection", "mpi-rank", "pipe-thread",
                                  pytest.param("subinterpreter",
                                               marks=pytest.mark.subinterpreters)])
def test_max_in_flight_bounds_the_items_unacknowledged_on_every_kind(kind, sleepy_server):
    window = 2
    results = Collect()
    with _bounded_runners(sleepy_server, window)[kind](results) as runner:
        most = 0
        for item in range(12):
            runner.send(item)
            most = max(most, runner.pending)
        assert most <= window
    assert [item for item in results.items if item != "closed"] == list(range(12))


# --- the exit rule of the plain protocol's sender ---------------------------------------------

class _KeptBytes(io.BytesIO):
    """A stream that keeps what was written after it is closed."""

    def close(self) -> None:
        self.kept = self.getvalue()
        super().close()


class _Recorder:
    def __init__(self):
        self.items, self.closed = [], False

    def send(self, item):
        self.items.append(item)

    def close(self):
        self.closed = True


def test_coprocess_sender_left_normally_ends_a_finished_stream():
    sink = _KeptBytes()
    with CoprocessSender(sink) as sender:
        sender.send(1)
        sender.send(2)
    reader = _Recorder()
    Coprocess(io.BufferedReader(io.BytesIO(sink.kept)), reader).run()
    assert (reader.items, reader.closed) == ([1, 2], True)


@pytest.mark.parametrize("allowed", [None, {"builtins.int"}], ids=["plain", "restricted"])
def test_coprocess_sender_left_on_an_exception_ends_a_truncated_stream(allowed):
    sink = _KeptBytes()
    error = LookupError("the producer failed")
    with pytest.raises(LookupError) as caught:
        with CoprocessSender(sink) as sender:
            sender.send(1)
            raise error
    assert caught.value is error and sink.closed
    # The reader sees where the stream was cut: its consumer is not closed.
    reader = _Recorder()
    with pytest.raises(errors.ProtocolError, match="truncated"):
        Coprocess(io.BufferedReader(io.BytesIO(sink.kept)), reader, allowed=allowed).run()
    assert (reader.items, reader.closed) == ([1], False)
    # A plain pickle.load loop, which takes EOFError for the end, fails instead.
    stream = io.BytesIO(sink.kept)
    assert pickle.load(stream) == 1
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        pickle.load(stream)


def test_coprocess_sender_abort_is_idempotent_and_quiet_when_the_reader_is_gone():
    sink = _KeptBytes()
    sender = CoprocessSender(sink)
    sender.abort()
    sender.abort()
    sender.close()
    assert sink.kept == b"\x80"

    class Broken(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise BrokenPipeError("the reader is gone")

    CoprocessSender(Broken()).abort()
