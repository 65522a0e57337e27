# Shared test settings. TIMEOUT bounds every blocking wait in the suite: it is only reached
# when something deadlocks, so it is generous on purpose (loky's habit).

import os
import shutil
import subprocess
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


# Tests marked `netns` make test hosts as network namespaces, which needs root and
# iproute2's `ip`. Where namespaces cannot be made they are deselected, and the summary
# says how many and why.
_NETNS_DESELECTED = pytest.StashKey[tuple[int, str]]()


def netns_unavailable_reason() -> str | None:
    """None when this process can make a network namespace, else why not."""
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


def _deselect_netns_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests marked netns when namespaces cannot be made here, unless a -m
    expression names the marker (then -m decides, and a selected test fails)."""
    marked = [item for item in items if item.get_closest_marker("netns")]
    if not marked or "netns" in (config.getoption("markexpr") or ""):
        return
    reason = netns_unavailable_reason()
    if reason is None:
        return
    items[:] = [item for item in items if not item.get_closest_marker("netns")]
    config.hook.pytest_deselected(items=marked)
    config.stash[_NETNS_DESELECTED] = (len(marked), reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_ftpython_tests(config, items)
    _deselect_netns_tests(config, items)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    count = config.stash.get(_FTPYTHON_DESELECTED, 0)
    if count:
        terminalreporter.write_line(
            f"{count} ftpython test{'s' if count != 1 else ''} deselected: {FTPYTHON_VARIABLE} "
            "is not set (point it at a free-threaded python with gilstudy installed)")
    count, reason = config.stash.get(_NETNS_DESELECTED, (0, ""))
    if count:
        terminalreporter.write_line(
            f"{count} netns test{'s' if count != 1 else ''} deselected: network namespaces "
            f"cannot be made here ({reason}); run as root with iproute2")
