# The package root: every public name resolves, and importing gilstudy stays light.

import subprocess
import sys

import pytest

import gilstudy

pytestmark = pytest.mark.one_pass


def test_every_public_name_resolves():
    for name in gilstudy.__all__:
        assert getattr(gilstudy, name) is not None, name


def test_public_names_come_from_their_modules():
    from gilstudy.consumers import Dispatch
    from gilstudy.coprocess import spawn
    from gilstudy.errors import WorkerDied
    from gilstudy.mpi import ranks

    assert gilstudy.Dispatch is Dispatch and gilstudy.spawn is spawn
    assert gilstudy.WorkerDied is WorkerDied and gilstudy.ranks is ranks


def test_all_holds_the_consumer_interface_the_runner_starters_the_executor_compare_and_the_errors():
    from gilstudy import errors

    consumer_interface = {"Consumer", "Runner", "Collect", "Inline", "ConsumerThread",
                          "coroutine", "threads", "Dispatch", "Broadcast", "start_runners"}
    starters = {"spawn", "coprocesses", "connect", "serve", "subinterpreter",
                "subinterpreters", "ranks", "world", "Executor"}
    # Every error but the older names of renamed ones, and PeerGone, which never reaches a
    # caller, and RemoteTraceback, which is only ever a RemoteError's __cause__.
    error_names = set(errors.__all__) - {"CoprocessDied", "CoprocessStalled",
                                         "InterpreterFailed", "PeerGone", "RemoteTraceback"}
    assert set(gilstudy.__all__) == ({"__version__", "compare"} | consumer_interface
                                     | starters | error_names)


def test_a_name_dropped_from_the_top_level_still_resolves_but_is_not_listed():
    from gilstudy.errors import CoprocessDied
    from gilstudy.shared import shared_array

    assert gilstudy.shared_array is shared_array and gilstudy.CoprocessDied is CoprocessDied
    for name in ("shared_array", "CoprocessDied", "RemoteConsumer", "wire"):
        assert name not in gilstudy.__all__
    assert "shared_array" not in dir(gilstudy)


def test_unknown_names_raise_attribute_error():
    try:
        gilstudy.nonexistent
    except AttributeError as error:
        assert str(error) == "module 'gilstudy' has no attribute 'nonexistent'"
    else:
        raise AssertionError("gilstudy.nonexistent resolved")


def test_importing_gilstudy_loads_no_heavy_module():
    # A coprocess child imports gilstudy first; it must not pay for numpy, threads or sockets.
    code = ("import sys, gilstudy; heavy = {'numpy', 'threading', 'socket', 'subprocess', "
            "'gilstudy.consumers', 'gilstudy.compare'}; print(sorted(heavy & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
