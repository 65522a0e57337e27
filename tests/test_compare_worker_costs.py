# The start-up and memory table of `gilstudy compare`: thread, subinterpreter and coprocess
# side by side, under each interpreter of the run, in the report, the verdict and the JSON; a
# kind that an interpreter cannot run, or whose measurement failed, is a row with the reason.

import json
import platform
import sys

import pytest

from gilstudy import compare, machine
from gilstudy.compare import document, report, worker_costs
from gilstudy.footprint import Footprint

pytestmark = pytest.mark.one_pass

# Only reached in case of a deadlock; each kind is measured in a fresh process.
TIMEOUT = 120

TINY = dict(kernel="count_primes", size=3000, items=8, repeat=1, idle_timeout_s=0,
            min_time_s=0, max_outside_cores=float("inf"))


def test_the_workers_measured_are_the_widest_count_within_the_cores():
    assert worker_costs.footprint_workers([1, 2, 4], 2) == 2
    assert worker_costs.footprint_workers([4, 8], 2) == 1
    assert worker_costs.footprint_workers([1, 3], 16) == 3


@pytest.mark.timeout(TIMEOUT)
def test_a_run_with_footprint_measures_each_kind_under_each_interpreter():
    result = compare.run(models="serial-python", workers=[1, 2], pythons=[sys.executable],
                         footprint=True, **TINY)
    here, again = (i.label for i in result.interpreters)
    assert [(f.kind, f.python) for f in result.footprints] == [
        (kind, label) for label in (here, again)
        for kind in ("thread", "subinterpreter", "coprocess")]
    for f in result.footprints:
        assert f.workers == min(2, machine.usable_cores())
        if f.kind == "subinterpreter" and sys.version_info < (3, 14):
            assert f.unavailable == (
                "subinterpreters need Python 3.14 or newer (concurrent.interpreters); this is "
                f"Python {platform.python_version()}")
            continue
        assert f.unavailable is None and f.startup_s > 0, f
        assert f.rss_bytes is not None and f.pss_bytes is not None, f
    assert result.footprint_kernel == "count_primes"

    table = report.footprint_table(result)
    lines = table.splitlines()
    assert lines[0].split() == ["kind", "python", "workers", "start-up", "s", "per", "worker",
                                "s", "RSS", "MiB/worker", "PSS", "MiB/worker", "note"]
    assert [line.split()[:2] for line in lines[2:8]] == [
        [f.kind, f.python] for f in result.footprints]
    assert lines[8].startswith("start-up: from the first start until every worker answered "
                               "a first item of count_primes")
    assert table in report.report(result, details=True)
    assert f"```\n{table}\n```" in report.report(result, markdown=True, details=True)
    [costs] = [line for line in report.verdict(result).splitlines() if line.startswith("Per worker")]
    assert costs.startswith(f"Per worker (start-up, resident memory): @{here}: a thread ")
    assert f"; @{again}: a thread " in costs

    saved = json.loads(document.to_json(result))
    assert saved["footprint_kernel"] == "count_primes"
    assert [(f["kind"], f["interpreter"]) for f in saved["footprints"]] == [
        (f.kind, f.python) for f in result.footprints]
    assert set(saved["footprints"][0]) == {
        "kind", "interpreter", "workers", "startup_s", "startup_per_worker_s", "rss_bytes",
        "pss_bytes", "unavailable"}


def test_without_footprint_there_is_no_table_and_the_json_says_so():
    result = compare.run(models="serial-python", workers=[1], **TINY)
    assert result.footprints == [] and report.footprint_table(result) is None
    assert "kind            python" not in report.report(result, details=True)
    saved = document.to_dict(result)
    assert (saved["footprints"], saved["footprint_kernel"]) == ([], None)


def test_a_measurement_that_fails_is_a_row_with_its_reason_not_a_lost_run(tmp_path):
    missing = str(tmp_path / "no-such-python")
    found = worker_costs.measure_all([("3.99", missing)], 1, "count_primes")
    assert [(f.kind, f.python) for f in found] == [
        ("thread", "3.99"), ("subinterpreter", "3.99"), ("coprocess", "3.99")]
    assert all(f.startup_s is None and f.unavailable.startswith("measuring failed: ")
               and missing in f.unavailable for f in found)


def test_the_verdict_line_leaves_out_kinds_that_were_not_measured():
    line = worker_costs.summary_line([
        Footprint("thread", 2, "3.11", 0.002, 4096, 4096),
        Footprint("subinterpreter", 2, "3.11", unavailable="too old"),
        Footprint("coprocess", 2, "3.11", 0.3, 12 << 20, 6 << 20)])
    assert line == ("Per worker (start-up, resident memory): @3.11: a thread 1.0 ms, 0.0 MiB, "
                    "a coprocess 150.0 ms, 12.0 MiB.")
    assert worker_costs.summary_line([]) is None
