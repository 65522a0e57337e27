# The answer a compare run gives first, tested through the real runner on a fake registry
# whose timings are known: fake models advance a fake clock (gilstudy.timing's) by scripted
# seconds per pass instead of working, so the fastest model, the spread and the ties are
# fixed in advance. The answer must be the fastest within spread, ties must be reported as
# ties, and for a user's function the answer must say so when processes win and when the
# items are too small for anything to help.

import itertools
import json
import types

import pytest

from gilstudy import compare, timing
from gilstudy.compare import document, registry, report
from gilstudy.compare.workload import Probe

import _compare_functions as functions

pytestmark = pytest.mark.one_pass

# Only reached in case of a deadlock.
TIMEOUT = 60


class FakeClock:
    """A perf_counter that moves only when told to."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


class ScriptedWorkers:
    """Workers that compute the real answer serially (so every check passes) and take,
    on the fake clock, the next of ``seconds`` per pass, or ``dispatch_s`` per probe item."""

    def __init__(self, clock, workload, impl, seconds, dispatch_s):
        self.clock, self.seconds, self.dispatch_s = clock, itertools.cycle(seconds), dispatch_s
        self.consumer = workload.consumer(impl)

    def run(self, workload, patience_s):
        results = [self.consumer.send(item) for item in workload.items()]
        if isinstance(workload, Probe):
            self.clock.advance(self.dispatch_s * workload.items_count)
        else:
            self.clock.advance(next(self.seconds))
        return workload.combine(results)

    def close(self):
        pass


def fake(clock, name, family, times, impl="python", dispatch_s=1e-6, max_workers=None,
         shares_gil=False):
    """A registry entry whose passes take ``times[workers]`` (a list, cycled per pass)."""
    def start(workload, impl_, workers):
        return ScriptedWorkers(clock, workload, impl_, times[workers], dispatch_s)

    return registry.Model(name, impl, "a model with scripted timings", start,
                          max_workers=max_workers, family=family, shares_gil=shares_gil)


def run_fakes(clock, entries, **options):
    """compare.run over the fake entries only, fake-serial the reference, one pass per
    repeat (min_time 0), no load check."""
    stack = [registry.registered(entry) for entry in entries]
    for context in stack:
        context.__enter__()
    try:
        settings = dict(kernel="count_primes", size=2000, items=8, workers=[1, 2], repeat=3,
                        idle_timeout_s=0, min_time_s=0, max_outside_cores=float("inf"),
                        reference="fake-serial", models="fake-*")
        settings.update(options)
        return compare.run(**settings)
    finally:
        for context in reversed(stack):
            context.__exit__(None, None, None)


def serial(clock, seconds=(1.0, 1.0, 1.0)):
    return fake(clock, "fake-serial", "serial", {1: list(seconds)}, max_workers=1,
                shares_gil=True)


@pytest.mark.timeout(TIMEOUT)
def test_the_answer_is_the_fastest_model_with_its_speedup_and_spread(clock):
    result = run_fakes(clock, [
        serial(clock),
        fake(clock, "fake-threads", "threads", {1: [1.0], 2: [0.98, 1.0, 1.02]},
             shares_gil=True),
        fake(clock, "fake-procs", "coprocesses", {1: [1.0], 2: [0.50, 0.52, 0.54]},
             dispatch_s=1e-4),
    ])
    answer = result.answer
    assert (answer.model, answer.workers, answer.ties) == ("fake-procs", 2, ())
    assert answer.speedup_vs_serial == pytest.approx(1 / 0.52)
    assert (answer.best.low, answer.best.high) == (pytest.approx(1 / 0.54),
                                                   pytest.approx(1 / 0.50))
    assert answer.spread == pytest.approx((1 / 0.50 - 1 / 0.54) * 0.52)
    # The dispatch bound d / c reaches 2 workers from items of 2 c.
    assert answer.min_item_s == pytest.approx(2e-4)
    assert answer.item_s == pytest.approx(1.0 / 8)
    assert answer.threads.model == "fake-threads" and not answer.threads.helped
    lines = report.answer_lines(result)
    assert len(lines) <= report.MAX_ANSWER_LINES
    assert lines[1] == ("Use fake-procs with 2 workers: 1.92x fake-serial (repeats 1.85x to "
                        "2.00x).")
    assert "Threads do not help the pure-Python kernel here" in lines[2]
    assert "the GIL is enabled, so Python threads take turns" in lines[2]
    assert lines[3] == ("Items: fake-procs spends 100.0 us handing over an item, so items of "
                        "200.0 us or more keep 2 workers busy; this workload's items hold "
                        "125.00 ms of work each.")
    # The report opens with the answer; the JSON carries it for tools.
    assert report.report(result).startswith("\n".join(
        [lines[0], *[f"  {line}" for line in lines[1:]]]))
    saved = json.loads(document.to_json(result))["answer"]
    assert (saved["model"], saved["workers"], saved["ties"]) == ("fake-procs", 2, [])
    assert saved["min_item_s"] == pytest.approx(2e-4)
    assert saved["text"] == lines


@pytest.mark.timeout(TIMEOUT)
def test_two_models_within_each_others_spread_tie_and_neither_is_crowned(clock):
    result = run_fakes(clock, [
        serial(clock),
        fake(clock, "fake-procs", "coprocesses", {1: [1.0], 2: [0.50, 0.52, 0.56]}),
        fake(clock, "fake-pool", "pools", {1: [1.0], 2: [0.53, 0.55, 0.57]}),
        fake(clock, "fake-slow", "pools", {1: [1.0], 2: [0.70, 0.71, 0.72]}),
    ])
    answer = result.answer
    assert answer.model == "fake-procs"  # the faster median
    assert [t.model for t in answer.ties] == ["fake-pool"]  # not fake-slow: beyond spread
    use = report.answer_lines(result)[1]
    assert use == ("Tie, within each other's spread: fake-procs 1.92x, fake-pool 1.82x "
                   "fake-serial, each with 2 workers (repeats 1.75x to 2.00x); this run "
                   "cannot tell them apart, so use any.")
    assert not use.startswith("Use ")
    assert json.loads(document.to_json(result))["answer"]["ties"] == ["fake-pool"]


@pytest.mark.timeout(TIMEOUT)
def test_a_clear_lead_beyond_the_spread_is_no_tie(clock):
    result = run_fakes(clock, [
        serial(clock),
        fake(clock, "fake-procs", "coprocesses", {1: [1.0], 2: [0.40, 0.41, 0.42]}),
        fake(clock, "fake-pool", "pools", {1: [1.0], 2: [0.53, 0.55, 0.57]}),
    ])
    assert (result.answer.model, result.answer.ties) == ("fake-procs", ())


@pytest.mark.timeout(TIMEOUT)
def test_for_a_function_that_processes_speed_up_the_answer_is_processes(clock):
    result = run_fakes(clock, [
        serial(clock, (0.8, 0.8, 0.8)),
        fake(clock, "fake-threads", "threads", {1: [0.8], 2: [0.8, 0.81, 0.82]},
             shares_gil=True),
        fake(clock, "fake-procs", "coprocesses", {1: [0.8], 2: [0.41, 0.42, 0.43]},
             dispatch_s=5e-5),
    ], kernel=None, size=None, items=None, function=functions.sum_of_squares,
        inputs=functions.INPUTS)
    answer = result.answer
    assert (answer.model, answer.workers, answer.ties) == ("fake-procs", 2, ())
    lines = report.answer_lines(result)
    assert "the function sum_of_squares" in lines[0] or "sum_of_squares" in lines[0]
    assert lines[1].startswith("Use fake-procs with 2 workers: 1.90x fake-serial")
    # A user's function may release the GIL, so the words do not claim it holds it.
    assert "threads help only while the function releases it" in lines[2]
    [next_line] = [line for line in lines if line.startswith("Next: ")]
    assert "ran fastest in processes (coprocesses or a pool)" in next_line


@pytest.mark.timeout(TIMEOUT)
def test_threads_that_scale_from_a_slow_first_worker_but_trail_serial_do_not_help(clock):
    # 1.25x their own 1-worker speed, yet slower than serial: threads handing each item
    # over cost more than the second worker gains.
    result = run_fakes(clock, [
        serial(clock, (0.8, 0.8, 0.8)),
        fake(clock, "fake-threads", "threads", {1: [1.1], 2: [0.87, 0.88, 0.89]},
             shares_gil=True),
        fake(clock, "fake-procs", "coprocesses", {1: [0.8], 2: [0.41, 0.42, 0.43]},
             dispatch_s=5e-5),
    ], kernel=None, size=None, items=None, function=functions.sum_of_squares,
        inputs=functions.INPUTS)
    found = result.answer.threads
    assert found.speedup_vs_own_1 == pytest.approx(1.1 / 0.88)
    assert found.speedup_vs_serial == pytest.approx(0.8 / 0.88)
    assert not found.helped
    line = report.answer_lines(result)[2]
    assert line.startswith("Threads do not help ")
    assert "ran at 1.25x its 1-worker speed with 2 workers, 0.91x fake-serial" in line
    [verdict] = [v for v in report.verdict_lines(result) if v.startswith("fake-threads")]
    assert "threads did not help" in verdict and "0.91x fake-serial" in verdict


@pytest.mark.timeout(TIMEOUT)
def test_for_a_function_whose_items_are_too_small_the_answer_is_bigger_items(clock):
    items = len(functions.INPUTS)
    # Each item holds 1 ms of work; handing one over costs 5 ms: nothing parallel helps.
    result = run_fakes(clock, [
        serial(clock, [1e-3 * items] * 3),
        fake(clock, "fake-procs", "coprocesses",
             {1: [6e-3 * items], 2: [5.1e-3 * items, 5.2e-3 * items, 5.3e-3 * items]},
             dispatch_s=5e-3),
    ], kernel=None, size=None, items=None, function=functions.sum_of_squares,
        inputs=functions.INPUTS)
    answer = result.answer
    assert (answer.model, answer.workers) == ("fake-serial", 1)
    assert answer.min_item_s is None and answer.item_s == pytest.approx(1e-3)
    lines = report.answer_lines(result)
    assert lines[1].startswith("Use fake-serial with 1 worker: 1.00x fake-serial")
    [next_line] = [line for line in lines if line.startswith("Next: ")]
    assert next_line == ("Next: the items are too small: each holds 1.0 ms of work, and even "
                         "fake-procs spends 5.0 ms handing one over; cut the work into bigger "
                         "items, 10.0 ms or more each.")
    assert "too small" in json.loads(document.to_json(result))["answer"]["next"]


def test_the_default_set_is_a_registry_notion_and_all_means_every_model():
    quick = [m.name for m in registry.quick_models()]
    assert quick[:8] == ["serial-python", "serial-cython", "threads-python", "threads-cython",
                         "coprocess-python", "coprocess-cython", "prange-cython", "pool-python"]
    assert [m.name for m in registry.select(None)] == quick
    assert [m.name for m in registry.select("all")] == registry.names()
    assert not {"mpi-python", "dask-python", "interp-python"} & set(quick)
    with pytest.raises(ValueError, match=r"^model name 'all' is reserved"):
        registry.Model("all", "python", "", lambda *a: None)
    with pytest.raises(ValueError, match=r"^model 'x': family must be one of .*, got 'mpi'$"):
        registry.Model("x", "python", "", lambda *a: None, family="mpi")


def test_default_workers_are_one_and_the_usable_cores_and_nothing_oversubscribed():
    assert compare.default_workers(2) == [1, 2]
    assert compare.default_workers(8) == [1, 8]
    assert compare.default_workers(1) == [1]
    assert compare.scaling_workers(2) == [1, 2, 4]


@pytest.mark.timeout(TIMEOUT)
def test_the_answer_ends_in_the_executor_line_that_runs_work_its_way(clock):
    result = run_fakes(clock, [
        serial(clock),
        fake(clock, "coprocess-fake", "coprocesses", {1: [1.0], 2: [0.50, 0.52, 0.54]}),
    ], models="fake-*,coprocess-fake")
    assert result.answer.model == "coprocess-fake"
    assert result.answer.code == "gilstudy.Executor('coprocess', max_workers=2)"
    assert "Code: gilstudy.Executor('coprocess', max_workers=2)" in report.answer_lines(result)
    assert json.loads(document.to_json(result))["answer"]["code"] == result.answer.code


@pytest.mark.timeout(TIMEOUT)
def test_no_executor_line_when_the_serial_run_wins(clock):
    result = run_fakes(clock, [
        serial(clock, seconds=(0.5, 0.5, 0.5)),
        fake(clock, "coprocess-fake", "coprocesses", {1: [1.0], 2: [0.90, 0.92, 0.94]}),
    ], models="fake-*,coprocess-fake")
    assert result.answer.model == "fake-serial"
    assert result.answer.code is None
    assert not any(line.startswith("Code:") for line in report.answer_lines(result))


@pytest.mark.timeout(TIMEOUT)
def test_where_no_executor_runs_the_winner_the_line_is_for_the_pure_python_code(clock):
    result = run_fakes(clock, [
        serial(clock),
        fake(clock, "prange-fake", "prange", {1: [0.1], 2: [0.05, 0.051, 0.052]},
             impl="cython"),
        fake(clock, "coprocess-fake", "coprocesses", {1: [1.0], 2: [0.50, 0.52, 0.54]}),
    ], models="fake-*,prange-fake,coprocess-fake")
    assert result.answer.model == "prange-fake"
    assert result.answer.code == ("gilstudy.Executor('coprocess', max_workers=2)"
                                  "  # for pure-Python code, as coprocess-fake")
