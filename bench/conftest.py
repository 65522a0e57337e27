# Settings shared by every benchmark suite. Before anything is timed the session waits for
# the CPUs to go quiet (a shared 2-core machine can halve a 2-worker figure), and every
# saved run records what produced it: interpreter and build, GIL state, the extension's
# build facts, and whether the CPUs were idle.

import pytest

from gilstudy import kernels, machine

_idle_check: machine.IdleCheck | None = None


def _wait_once() -> machine.IdleCheck:
    global _idle_check
    if _idle_check is None:
        _idle_check = machine.wait_for_idle_cpus(timeout_s=60.0)
    return _idle_check


@pytest.fixture(scope="session", autouse=True)
def quiet_cpus():
    """Wait (up to a minute) for idle CPUs before the first benchmark."""
    return _wait_once()


def pytest_benchmark_update_machine_info(config, machine_info):
    check = _wait_once()
    machine_info["gilstudy"] = {
        "environment": machine.describe(),
        "build": kernels.build_info(),
        "cpus_idle_before_run": check.idle,
        "other_load_cores": check.busy_cores,
    }


def _format(value) -> str:
    return f"{value:,.3g}" if isinstance(value, float) else str(value)


def pytest_terminal_summary(terminalreporter, config):
    """Print every benchmark's extra figures (ns per step, items/s, ...) and the conditions."""
    session = getattr(config, "_benchmarksession", None)
    for bench in getattr(session, "benchmarks", []) or []:
        if bench.extra_info:
            figures = ", ".join(f"{k}={_format(v)}" for k, v in bench.extra_info.items())
            terminalreporter.write_line(f"{bench.fullname.split('::')[-1]}: {figures}")
    if _idle_check is not None:
        facts = machine.describe()
        terminalreporter.write_line(
            f"gilstudy bench: python {facts['python']} ({facts['interpreter']}, GIL "
            f"{'enabled' if facts['gil_enabled'] else 'disabled'}), {facts['usable_cores']} "
            f"usable cores; before timing: {_idle_check.describe()}")
