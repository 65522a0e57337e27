# How a timed repeat is measured for every model alike: passes until the minimum time, the
# outside load sampled, a disturbed repeat run again a bounded number of times and the least
# disturbed try kept; the load sampler counts our own children as ours; sizes that cannot fit
# in memory are refused.

import subprocess
import sys
import time

import pytest

from gilstudy import machine
from gilstudy.compare import measure
from gilstudy.compare.measure import Timing, measure_repeat
from gilstudy.timing import repeat_for

pytestmark = pytest.mark.one_pass

TIMEOUT = 60


def test_repeat_for_runs_passes_until_they_add_up_to_the_minimum_time():
    results = []
    passes = repeat_for(lambda: time.sleep(0.01) or len(results), 0.05, on_pass=results.append)
    assert passes.passes >= 5 and passes.seconds >= 0.05
    assert results == list(range(passes.passes))  # each pass's result, in order
    assert passes.per_pass_s == pytest.approx(passes.seconds / passes.passes)


def test_repeat_for_with_no_minimum_runs_exactly_one_pass():
    assert repeat_for(lambda: None, 0).passes == 1


def test_repeat_for_stops_at_the_first_error_of_a_pass_or_of_its_check():
    calls = []

    def check(result):
        calls.append(result)
        raise ValueError("wrong")

    with pytest.raises(ValueError, match="^wrong$"):
        repeat_for(lambda: 1, 10.0, on_pass=check)
    assert calls == [1]


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), True, "1"])
def test_repeat_for_refuses_a_minimum_that_is_not_a_finite_number_of_seconds(value):
    with pytest.raises(ValueError, match=r"^repeat_for: min_time_s must be a finite number of "
                                         r"seconds >= 0, got "):
        repeat_for(lambda: None, value)


class ScriptedLoad:
    """Stands in for machine.LoadSampler: each sample reports the next outside load."""

    loads: list = []

    def start(self):
        pass

    def stop(self):
        outside = type(self).loads.pop(0)
        return machine.LoadSample(0.1, None if outside is None else outside + 1.0, 1.0)


@pytest.fixture
def scripted_load(monkeypatch):
    monkeypatch.setattr(machine, "LoadSampler", ScriptedLoad)
    return ScriptedLoad


@pytest.mark.parametrize("loads, reruns, kept_load, tries, disturbed, set_aside", [
    ([0.1], 2, 0.1, 1, False, []),
    ([1.5, 1.2, 0.1], 2, 0.1, 3, False, [1.5, 1.2]),
    ([1.5, 0.9, 1.2], 2, 0.9, 3, True, [1.5, 1.2]),
    ([1.5], 0, 1.5, 1, True, []),
    ([None], 2, None, 1, False, []),
], ids=["quiet", "quiet-at-the-third-try", "never-quiet", "no-reruns", "load-unknown"])
def test_a_disturbed_repeat_is_run_again_and_the_least_disturbed_try_kept(
        scripted_load, loads, reruns, kept_load, tries, disturbed, set_aside):
    scripted_load.loads = list(loads)
    runs = []
    kept, aside = measure_repeat(lambda: runs.append(1), lambda result: None,
                                 Timing(min_time_s=0, max_outside_cores=0.5, reruns=reruns))
    assert kept.outside_cores == pytest.approx(kept_load) if kept_load else kept_load is None
    assert (kept.tries, kept.disturbed) == (tries, disturbed)
    assert [t.outside_cores for t in aside] == pytest.approx(set_aside)
    assert len(runs) == tries and scripted_load.loads == []


@pytest.mark.parametrize("arguments, error, message", [
    (dict(min_time_s=-1), ValueError, r"^compare: min_time_s must be a finite number of seconds "
                                      r">= 0, got -1$"),
    (dict(min_time_s="0.3"), TypeError, r"^compare: min_time_s must be a number, got str "),
    (dict(max_outside_cores=0), ValueError, r"^compare: max_outside_cores must be > 0 \(inf: "
                                            r"never run a repeat again\), got 0$"),
    (dict(reruns=-1), ValueError, r"^compare: reruns must be >= 0, got -1$"),
    (dict(reruns=1.5), TypeError, r"^compare: reruns must be an int, got float \(1.5\)$"),
])
def test_timing_settings_are_checked(arguments, error, message):
    with pytest.raises(error, match=message):
        Timing(**arguments)


def test_timing_settings_survive_their_json_form():
    for timing in (Timing(), Timing(0.5, float("inf"), 0)):
        assert Timing.from_dict(timing.to_dict()) == timing


@pytest.mark.timeout(TIMEOUT)
def test_the_load_sampler_counts_a_busy_child_as_our_own_load():
    # The child burns 0.3 s of CPU, says so, and waits: its CPU time is ours, whatever else
    # the machine is doing, and it is read from /proc while the child still lives.
    burn = ("import sys, time\n"
            "while time.process_time() < 0.3: pass\n"
            "print('done', flush=True)\n"
            "sys.stdin.read()\n")
    sampler = machine.LoadSampler()
    sampler.start()
    with subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline() == "done\n"
        sample = sampler.stop()
        child.stdin.close()
        child.wait(TIMEOUT)
    assert sample.own_cores * sample.seconds >= 0.25
    assert sample.outside_cores is None or sample.outside_cores >= 0


def test_check_memory_refuses_what_cannot_fit_and_says_how_much_it_needs():
    assert machine.memory_bytes() > 0
    assert machine.check_memory("x", "a buffer", 1024) == 1024
    with pytest.raises(ValueError, match=r"^mandelbrot: an image needs 1,024.0 TiB of memory; "
                                         r"this machine has [\d,.]+ [KMGT]iB$"):
        machine.check_memory("mandelbrot", "an image", 2**50)


def test_the_dispatch_probe_reports_seconds_per_item():
    from gilstudy.compare.workload import make_workload

    workload = make_workload("countdown", 1000, 4)
    consumer = workload.consumer("python")
    seen = []

    def run(work):
        seen.append(work.items_count)
        return work.combine(consumer.send(item) for item in work.items())

    cost = measure.dispatch_cost(run, workload, count=32)
    assert 0 < cost < 0.01
    assert set(seen) == {32}
