# Shared test settings. TIMEOUT bounds every blocking wait in the suite: it is only reached
# when something deadlocks, so it is generous on purpose (loky's habit). Tests that need what
# a machine may lack (an interpreter) are deselected where it is missing, and counted.

import functools
import os
import shutil
import subprocess
import sys
import threading

import pytest

from gilstudy import pythons

TIMEOUT = 60.0

IMPLS = ("python", "cython")

# Tests marked `ftpython` need a free-threaded interpreter with gilstudy installed, named by
# this variable (CI sets it). Without it they are deselected, and the summary says so.
FTPYTHON_VARIABLE = "GILSTUDY_FTPYTHON"

# Tests marked `history_python(LABEL)` run under the CPython of that label ('2.7', '3.13t')
# that gilstudy.pythons.survey() finds on this machine (the `history_python` fixture gives
# it). Where there is none they are deselected, and the summary names the labels missing.
HISTORY_MARKER = "history_python"

_DESELECTED = pytest.StashKey[dict]()


@functools.cache
def history_pythons() -> dict:
    """{label: Python}: the first interpreter of each label that survey() finds here (the
    oldest version of that label; this interpreter is probed like the others)."""
    found: dict = {}
    for python in pythons.survey([pythons.ALL]):
        if isinstance(python, pythons.Python):
            found.setdefault(python.label, python)
    return found


@pytest.fixture
def history_python(request) -> pythons.Python:
    """The interpreter named by the test's history_python marker (it is found: the test is
    deselected otherwise)."""
    return history_pythons()[request.node.get_closest_marker(HISTORY_MARKER).args[0]]


@pytest.fixture
def no_thread_left_behind():
    """Fail the test if it leaves a thread running. Modules whose every test starts
    threads use it for all of them: ``pytestmark = pytest.mark.usefixtures(...)``."""
    before = set(threading.enumerate())
    yield
    left = set(threading.enumerate()) - before
    assert not left, f"threads left running: {sorted(thread.name for thread in left)}"


@pytest.fixture
def long_switch_interval():
    """A 100 s switch interval for the test: a thread that holds the GIL keeps it, so a
    thread that runs meanwhile shows that the GIL was released."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.fixture(params=IMPLS)
def impl(request) -> str:
    """Run the test once per kernel implementation."""
    return request.param


def _ftpython_missing(config: pytest.Config, marker: pytest.Mark) -> str | None:
    """Unless GILSTUDY_FTPYTHON is set or a -m expression names the marker (then -m
    decides, and a selected test fails without the variable): why it cannot run."""
    if os.environ.get(FTPYTHON_VARIABLE) or "ftpython" in (config.getoption("markexpr") or ""):
        return None
    return FTPYTHON_VARIABLE


def _history_python_missing(config: pytest.Config, marker: pytest.Mark) -> str | None:
    label = marker.args[0]
    return None if label in history_pythons() else label


def _subinterpreters_missing(config: pytest.Config, marker: pytest.Mark) -> str | None:
    """Tests marked `subinterpreters` need concurrent.interpreters (Python 3.14+); `make test`
    runs them in its 3.15 pass (make py315). A -m expression naming the marker decides."""
    from gilstudy.interpreters import unavailable_reason

    if "subinterpreters" in (config.getoption("markexpr") or ""):
        return None
    return unavailable_reason()


@functools.cache
def netns_unavailable_reason() -> str | None:
    """None when this process can make a network namespace (root and iproute2's `ip`),
    else why not. Probed once per session."""
    if os.geteuid() != 0:
        return "not root"
    ip = shutil.which("ip")
    if ip is None:
        return "no ip command (install iproute2)"
    probe = f"gilstudy-probe-{os.getpid()}"
    made = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run([ip, "netns", "delete", probe], capture_output=True)
    return None


def _numba_missing(config: pytest.Config, marker: pytest.Mark) -> str | None:
    """Tests marked `numba` need gilstudy's Numba kernels (the numba extra, which make test
    installs in its first pass only). Where they cannot load, tests/test_numba.py checks
    that the numba-* models say why."""
    from gilstudy import kernels

    return kernels.impl_unavailable_reason("numba")


def _netns_missing(config: pytest.Config, marker: pytest.Mark) -> str | None:
    """Tests marked `netns` make test hosts as network namespaces. A -m expression naming
    the marker decides (then a selected test fails where they cannot be made)."""
    if "netns" in (config.getoption("markexpr") or ""):
        return None
    return netns_unavailable_reason()


# For each marker: why a test carrying it cannot run here (None when it can), and the
# summary line's reason made of those whys.
_NEEDS = {
    "ftpython": (_ftpython_missing, lambda whys: (
        f"{FTPYTHON_VARIABLE} is not set (point it at a free-threaded python with gilstudy "
        "installed)")),
    HISTORY_MARKER: (_history_python_missing, lambda labels: (
        f"no Python {', '.join(labels)} on this machine")),
    "subinterpreters": (_subinterpreters_missing, lambda whys: (
        f"{whys[0]} (make test runs them under 3.15: make py315)")),
    "netns": (_netns_missing, lambda whys: (
        f"network namespaces cannot be made here ({whys[0]}); run as root with iproute2")),
    "numba": (_numba_missing, lambda whys: (
        f"{whys[0]} (the other numba tests checked that the numba-* models say so)")),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{HISTORY_MARKER}(label): runs under the CPython of that label found on "
                   "this machine (deselected, and counted in the summary, where there is none)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests whose marker's need is missing here; keep, per marker, their
    number and the distinct reasons for the terminal summary."""
    deselected, counts = [], {}
    for item in items:
        for name, (missing, _) in _NEEDS.items():
            marker = item.get_closest_marker(name)
            why = missing(config, marker) if marker else None
            if why is not None:
                count, whys = counts.get(name, (0, []))
                counts[name] = (count + 1, whys if why in whys else [*whys, why])
                deselected.append(item)
                break
    if deselected:
        dropped = set(map(id, deselected))
        items[:] = [item for item in items if id(item) not in dropped]
        config.hook.pytest_deselected(items=deselected)
    config.stash[_DESELECTED] = counts


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for name, (count, whys) in config.stash.get(_DESELECTED, {}).items():
        terminalreporter.write_line(
            f"{count} {name} test{'s' if count != 1 else ''} deselected: "
            f"{_NEEDS[name][1](whys)}")
