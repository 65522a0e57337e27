# Shared test settings. TIMEOUT bounds every blocking wait in the suite: it is only reached
# when something deadlocks, so it is generous on purpose (loky's habit).

import os
import threading

import pytest

TIMEOUT = 60.0

IMPLS = ("python", "cython")

# Tests marked `ftpython` need a free-threaded interpreter with gilstudy installed, named by
# this variable (CI sets it). Without it they are deselected, and the summary says so.
FTPYTHON_VARIABLE = "GILSTUDY_FTPYTHON"
_FTPYTHON_DESELECTED = pytest.StashKey[int]()


@pytest.fixture
def no_thread_left_behind():
    """Fail the test if it leaves a thread running. Modules whose every test starts
    threads use it for all of them: ``pytestmark = pytest.mark.usefixtures(...)``."""
    before = set(threading.enumerate())
    yield
    left = set(threading.enumerate()) - before
    assert not left, f"threads left running: {sorted(thread.name for thread in left)}"


@pytest.fixture(params=IMPLS)
def impl(request) -> str:
    """Run the test once per kernel implementation."""
    return request.param


def _deselect_ftpython_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests marked ftpython when GILSTUDY_FTPYTHON is unset, unless a -m
    expression names the marker (then -m decides, and a selected test fails without the
    variable). Their number is kept for the terminal summary."""
    if os.environ.get(FTPYTHON_VARIABLE) or "ftpython" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("ftpython")]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker("ftpython")]
        config.hook.pytest_deselected(items=deselected)
    config.stash[_FTPYTHON_DESELECTED] = len(deselected)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_ftpython_tests(config, items)
    _deselect_subinterpreter_tests(config, items)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    count = config.stash.get(_FTPYTHON_DESELECTED, 0)
    if count:
        terminalreporter.write_line(
            f"{count} ftpython test{'s' if count != 1 else ''} deselected: {FTPYTHON_VARIABLE} "
            "is not set (point it at a free-threaded python with gilstudy installed)")
    _summarize_subinterpreter_tests(terminalreporter, config)


# Tests marked `subinterpreters` need concurrent.interpreters (Python 3.14+). Under an older
# Python they are deselected and counted in the summary; `make test` runs them in its 3.15
# pass (make py315).
_SUBINTERPRETERS_DESELECTED = pytest.StashKey[int]()


def _deselect_subinterpreter_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests marked subinterpreters on a Python without concurrent.interpreters,
    unless a -m expression names the marker (then -m decides, and they fail there)."""
    from gilstudy.interpreters import unavailable_reason

    if unavailable_reason() is None or "subinterpreters" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("subinterpreters")]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker("subinterpreters")]
        config.hook.pytest_deselected(items=deselected)
    config.stash[_SUBINTERPRETERS_DESELECTED] = len(deselected)


def _summarize_subinterpreter_tests(terminalreporter, config: pytest.Config) -> None:
    from gilstudy.interpreters import unavailable_reason

    count = config.stash.get(_SUBINTERPRETERS_DESELECTED, 0)
    if count:
        terminalreporter.write_line(
            f"{count} subinterpreters test{'s' if count != 1 else ''} deselected: "
            f"{unavailable_reason()} (make test runs them under 3.15: make py315)")
