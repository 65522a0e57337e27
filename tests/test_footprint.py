# What a worker costs before it works (gilstudy.footprint): start-up time and memory per
# worker for threads, subinterpreters and coprocesses, each kind measured in a fresh process.
# These check the figures' shape and the failures, not their size (that is a benchmark).

import subprocess
import sys

import pytest

from gilstudy.errors import InterpreterFailed
from gilstudy.footprint import KINDS, Footprint, footprint, format_footprints, measure
from gilstudy.interpreters import unavailable_reason
from gilstudy.machine import interpreter_label

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


@pytest.mark.timeout(120)
def test_each_kind_is_measured_in_a_fresh_process_of_this_python():
    found = footprint(KINDS, workers=2)
    assert [item.kind for item in found] == list(KINDS)
    for item in found:
        assert (item.workers, item.python) == (2, interpreter_label())
        if item.kind == "subinterpreter" and unavailable_reason() is not None:
            assert item.unavailable == unavailable_reason()
            assert (item.startup_s, item.rss_bytes, item.pss_bytes) == (None, None, None)
            continue
        assert item.unavailable is None
        assert 0 < item.startup_s < 60 and item.startup_per_worker_s == item.startup_s / 2
        # Growth of this process for threads and subinterpreters: either can grow more than
        # the other (a page shared with a process that has since ended counts whole in PSS).
        assert item.rss_bytes >= 0 and item.pss_bytes >= 0
    coprocess = found[KINDS.index("coprocess")]
    # Whole processes: a shared page counts whole in RSS and split in PSS.
    assert coprocess.rss_bytes >= coprocess.pss_bytes
    # A coprocess is a whole interpreter: a megabyte at least, where a thread is a stack.
    assert coprocess.rss_bytes > 1 << 20


@pytest.mark.timeout(60)
def test_measure_in_this_process_leaves_nothing_running():
    item = measure("thread", workers=1, kernel="countdown", impl="cython")
    assert isinstance(item, Footprint) and item.kind == "thread" and item.startup_s > 0


def test_bad_arguments_name_the_rule():
    with pytest.raises(ValueError, match=r"^measure: kind must be one of thread, "
                                         r"subinterpreter, coprocess, got 'process'$"):
        measure("process")
    with pytest.raises(ValueError, match=r"^footprint: each kind must be one of thread, "
                                         r"subinterpreter, coprocess, got 'fiber'$"):
        footprint(["thread", "fiber"])
    with pytest.raises(ValueError, match=r"^footprint: workers must be >= 1, got 0$"):
        footprint(workers=0)


@pytest.mark.timeout(60)
def test_a_measuring_process_that_fails_is_an_interpreter_failure_with_its_last_words():
    with pytest.raises(InterpreterFailed, match=r"measuring thread workers failed with exit "
                                                r"status 2: .*unknown kernel 'nope'"):
        footprint(["thread"], workers=1, kernel="nope")


def test_the_table_has_a_row_per_kind_and_says_why_one_is_missing():
    table = format_footprints([
        Footprint("thread", 2, "3.11", 0.004, 100_000, 90_000),
        Footprint("subinterpreter", 2, "3.11", unavailable="needs 3.14"),
        Footprint("coprocess", 2, "3.11", 0.2, 16 << 20, 8 << 20)])
    lines = table.splitlines()
    assert lines[0].split() == ["kind", "python", "workers", "start-up", "s", "per", "worker",
                                "s", "RSS", "MiB/worker", "PSS", "MiB/worker", "note"]
    assert lines[2].split() == ["thread", "3.11", "2", "0.004", "0.002", "0.1", "0.1"]
    assert lines[3].split() == ["subinterpreter", "3.11", "2", "-", "-", "-", "-", "needs",
                                "3.14"]
    assert lines[4].split() == ["coprocess", "3.11", "2", "0.200", "0.100", "16.0", "8.0"]


@pytest.mark.timeout(120)
def test_the_command_prints_the_table():
    done = subprocess.run([sys.executable, "-m", "gilstudy.footprint", "--workers", "1"],
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[2:]] == list(KINDS)
