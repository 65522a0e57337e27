# The compare runner and its registry: models are entries, availability is reported with
# a reason, every answer is checked against serial-python's, failures name the model, and
# nothing (thread or process) is left running afterwards.

import threading
import time

import numpy as np
import pytest

from gilstudy import compare, kernels, machine
from gilstudy.compare import document, registry, report
from gilstudy.compare.measure import PROBE_ITEMS
from gilstudy.errors import ConsumerError, ModelFailed, WrongAnswer
from gilstudy.kernels.work import KernelConsumer

from _leftovers import child_pids, threads_left

# Only reached in case of a deadlock.
TIMEOUT = 60

# Every model but those that start an MPI job or a Dask cluster (seconds each: they run once,
# in tests/test_compare_cluster_models.py).
CLUSTER_FAMILIES = ("mpi-", "mpipool-", "dask-")
ONE_MACHINE_MODELS = [name for name in registry.names() if not name.startswith(CLUSTER_FAMILIES)]

# One pass per repeat and no re-runs, so that the events of a run can be counted exactly.
TINY = dict(kernel="count_primes", size=3000, items=8, repeat=2, idle_timeout_s=0, min_time_s=0,
            max_outside_cores=float("inf"))


class ScriptedWorkers:
    """Fake workers: answer with the real serial kernel, then let ``tamper`` change it;
    record every event in ``log``."""

    def __init__(self, workload, impl, workers, log, tamper=lambda answer: answer,
                 tamper_items=lambda items: items, fail_start=None, fail_run=None,
                 fail_close=None):
        if fail_start:
            raise fail_start
        self.consumer = KernelConsumer(workload.kernel, impl)
        self.workers, self.log, self.tamper, self.fail_run = workers, log, tamper, fail_run
        self.tamper_items, self.fail_close = tamper_items, fail_close
        log.append(("start", workers))

    def run(self, workload, patience_s):
        self.log.append(("run", self.workers))
        if self.fail_run:
            raise self.fail_run
        results = [self.consumer.send(i) for i in workload.items()]
        return self.tamper(workload.combine(self.tamper_items(results)))

    def close(self):
        self.log.append(("close", self.workers))
        if self.fail_close:
            raise self.fail_close


def fake_model(name, log, requires=(), reusable=True, dispatches_items=False, **behaviour):
    def start(workload, impl, workers):
        return ScriptedWorkers(workload, impl, workers, log, **behaviour)

    return registry.Model(name, "python", "a scripted model for tests", start,
                          requires=requires, reusable=reusable,
                          dispatches_items=dispatches_items)


# ---- the registry -------------------------------------------------------------------

def test_registry_holds_every_model_by_its_exact_name():
    assert registry.names() == [
        "serial-python", "serial-cython", "threads-python", "threads-cython",
        "coprocess-python", "coprocess-cython", "prange-cython", "pool-python", "pool-cython",
        "joblib-python", "joblib-cython", "interp-python", "interp-cython", "interppool-python",
        "numba-threads", "numba-prange", "mpi-python", "mpi-cython", "mpipool-python",
        "mpipool-cython", "dask-python", "dask-cython"]


def test_select_takes_names_and_glob_patterns_in_registry_order():
    chosen = registry.select("prange-cython, *-python")
    assert [m.name for m in chosen] == ["serial-python", "threads-python", "coprocess-python",
                                        "prange-cython", "pool-python", "joblib-python",
                                        "interp-python", "interppool-python", "mpi-python",
                                        "mpipool-python", "dask-python"]
    assert [m.name for m in registry.select(["serial-*"])] == ["serial-python", "serial-cython"]


@pytest.mark.parametrize("spec, message", [
    ("nope", r"^unknown model 'nope'; models: serial-python, serial-cython, "),
    ("gpu-*", r"^model pattern 'gpu-\*' matches no model; models: serial-python, "),
    (" , ", r"^no model named; models: "),
])
def test_select_rejects_unknown_names_listing_the_models(spec, message):
    with pytest.raises(ValueError, match=message):
        registry.select(spec)


def test_register_refuses_a_duplicate_name_and_unregister_an_unknown_one():
    with pytest.raises(ValueError, match=r"^a model named 'serial-python' is already registered$"):
        registry.register(registry.get("serial-python"))
    with pytest.raises(LookupError, match=r"^no model named 'nope' is registered$"):
        registry.unregister("nope")


def test_serial_baselines_run_at_one_worker_whatever_is_asked():
    assert registry.get("serial-python").worker_counts([2, 4]) == [1]
    assert registry.get("pool-python").worker_counts([4, 1, 2, 2]) == [1, 2, 4]


# ---- availability --------------------------------------------------------------------

def test_threads_and_coprocess_models_need_nothing_but_gilstudy_itself():
    for name in ("threads-python", "threads-cython", "coprocess-python", "coprocess-cython"):
        model = registry.get(name)
        assert (model.requires, model.unavailable_reason()) == ((), None), name


def test_prange_is_available_exactly_when_openmp_was_compiled_in():
    reason = registry.get("prange-cython").unavailable_reason()
    if kernels.build_info()["openmp"]:
        assert reason is None
    else:
        assert reason.startswith("gilstudy's Cython kernels were built without OpenMP")


def test_an_unavailable_model_is_listed_with_its_reason_and_not_run():
    log = []
    model = fake_model("quantum-python", log, requires=(lambda: "needs a quantum computer",))
    with registry.registered(model):
        result = compare.run(models="quantum-python", workers=[1], **TINY)
    assert log == []
    assert result.unavailable == {"quantum-python": "needs a quantum computer"}
    assert [r.model for r in result.rows] == ["serial-python"]
    assert "unavailable: quantum-python: needs a quantum computer" in report.table(result)


def test_an_availability_check_that_raises_is_reported_not_raised():
    def broken_check():
        raise OSError("no /dev/quantum")

    model = fake_model("broken-python", [], requires=(broken_check,))
    assert model.unavailable_reason() == "availability check failed: OSError: no /dev/quantum"


# ---- timing and answers ----------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_models_run_interleaved_on_workers_started_once_per_count():
    log = []
    with registry.registered(fake_model("fake-python", log)):
        result = compare.run(models="fake-python", workers=[1, 2], **TINY)
    assert log == [("start", 1), ("run", 1), ("run", 1), ("close", 1),
                   ("start", 2), ("run", 2), ("run", 2), ("close", 2)]
    rows = {(r.model, r.workers): r for r in result.rows}
    assert set(rows) == {("serial-python", 1), ("fake-python", 1), ("fake-python", 2)}
    assert all(len(r.work_s) == 2 and len(r.startup_s) == 1 for r in result.rows)
    assert rows[("serial-python", 1)].speedup_vs_serial == 1.0
    two = rows[("fake-python", 2)]
    assert two.speedup_vs_own_1 == pytest.approx(rows[("fake-python", 1)].median_s / two.median_s)
    assert two.efficiency == pytest.approx(two.speedup_vs_own_1 / 2)


@pytest.mark.timeout(TIMEOUT)
def test_a_model_that_cannot_reuse_its_workers_is_restarted_every_repeat():
    log = []
    with registry.registered(fake_model("oneshot-python", log, reusable=False)):
        result = compare.run(models="oneshot-python", workers=[1], **TINY)
    assert log == [("start", 1), ("run", 1), ("close", 1)] * 2
    row = result.rows_of("oneshot-python")[0]
    assert row.restarted and len(row.startup_s) == 2
    assert "(each)" in report.table(result)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("behaviour, cause, message", [
    (dict(tamper=lambda answer: answer + 1), type(None),
     "wrong-python with 2 workers computed a wrong answer for count_primes(0, 3000) in 8 "
     "items (repeat 1): got 431, serial-python got 430"),
    (dict(tamper_items=lambda results: results[1:]), WrongAnswer,
     "wrong-python with 2 workers: repeat 1 failed: WrongAnswer: count_primes: expected one "
     "result for each of the 8 items (indexes 0..7), got 7 results for 7 distinct indexes"),
], ids=["another-answer", "an-item-lost"])
def test_a_wrong_answer_is_an_error_never_a_row(behaviour, cause, message):
    log = []
    with registry.registered(fake_model("wrong-python", log, **behaviour)):
        with pytest.raises(WrongAnswer) as caught:
            compare.run(models="wrong-python", workers=[2], **TINY)
    assert str(caught.value) == message
    assert caught.value.subject == "wrong-python"
    assert isinstance(caught.value.__cause__, cause)
    assert log[-1] == ("close", 2)


# A worker's own error, which compare must attach as the cause of the ModelFailed it raises.
OUT_OF_PROCESSES = OSError("out of processes")
WORKER_RAISED = ConsumerError("worker 3 raised")
NO_EXIT = ChildProcessError("worker 2 did not exit")


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("behaviour, cause, message", [
    (dict(fail_start=OUT_OF_PROCESSES), OUT_OF_PROCESSES,
     "crash-python with 1 worker: starting its workers failed: OSError: out of processes"),
    (dict(fail_run=WORKER_RAISED), WORKER_RAISED,
     "crash-python with 1 worker: repeat 1 failed: ConsumerError: worker 3 raised"),
    (dict(fail_close=NO_EXIT), NO_EXIT,
     "crash-python with 1 worker: stopping its workers failed: ChildProcessError: worker 2 "
     "did not exit"),
], ids=["start", "run", "stop"])
def test_a_failing_model_is_named_with_its_own_error_as_the_cause(behaviour, cause, message):
    log = []
    with registry.registered(fake_model("crash-python", log, **behaviour)):
        with pytest.raises(ModelFailed, match=f"^{message}$") as caught:
            compare.run(models="crash-python", workers=[1], **TINY)
    assert caught.value.__cause__ is cause
    assert caught.value.subject == "crash-python"
    assert log.count(("start", 1)) == log.count(("close", 1))


@pytest.mark.timeout(TIMEOUT)
def test_a_reference_model_that_fails_is_model_failed():
    log = []
    with registry.registered(fake_model("broken-python", log, fail_run=WORKER_RAISED)):
        with pytest.raises(ModelFailed) as caught:
            compare.run(models="broken-python", reference="broken-python", workers=[1], **TINY)
    assert str(caught.value) == ("broken-python with 1 worker: the reference run failed: "
                                 "ConsumerError: worker 3 raised")
    assert caught.value.subject == "broken-python"
    assert caught.value.__cause__ is WORKER_RAISED
    assert log == [("start", 1), ("run", 1), ("close", 1)]


@pytest.mark.parametrize("arguments, error, message", [
    (dict(workers=[0]), ValueError, r"^workers: each count must be >= 1, got 0$"),
    (dict(workers=[1, True]), TypeError, r"^workers: each count must be an int, got bool \(True\)$"),
    (dict(workers=[]), ValueError, r"^workers: give at least one worker count$"),
    (dict(repeat=0), ValueError, r"^compare\.run: repeat must be >= 1, got 0$"),
    (dict(repeat="3"), TypeError, r"^compare\.run: repeat must be an int, got str \('3'\)$"),
], ids=["workers-0", "workers-bool", "workers-none", "repeat-0", "repeat-str"])
def test_bad_arguments_are_rejected_before_anything_runs(arguments, error, message):
    log = []
    with registry.registered(fake_model("fake-python", log)):
        with pytest.raises(error, match=message):
            compare.run(**{**TINY, "models": "fake-python", **arguments})
    assert log == []


def test_worker_counts_may_be_numpy_integers_and_come_back_as_sorted_ints():
    counts = compare.runner.check_workers([np.int64(4), 1, np.int32(2), 2])
    assert counts == [1, 2, 4] and all(type(n) is int for n in counts)


def test_scaling_workers_are_powers_of_two_to_the_cores_and_twice_the_cores():
    assert compare.scaling_workers(1) == [1, 2]
    assert compare.scaling_workers(2) == [1, 2, 4]
    assert compare.scaling_workers(16) == [1, 2, 4, 8, 16, 32]
    assert compare.scaling_workers(6) == [1, 2, 4, 6, 12]


# ---- the threads model against the gilstudy.consumers contract -------------------------

@pytest.mark.timeout(TIMEOUT)
def test_threads_models_run_consumer_threads_through_dispatch(monkeypatch):
    from gilstudy import dispatch
    from gilstudy.consumers import ConsumerThread

    dispatches = []

    class RecordingDispatch(dispatch.Dispatch):
        def __init__(self, consumers):
            super().__init__(consumers)
            self.sent = 0
            dispatches.append(self)

        def send(self, item):
            self.sent += 1
            return super().send(item)

    monkeypatch.setattr(dispatch, "Dispatch", RecordingDispatch)
    result = compare.run(models="threads-*", workers=[1, 3], **TINY)
    assert {(r.model, r.workers) for r in result.rows} == {
        ("serial-python", 1), ("threads-python", 1), ("threads-python", 3),
        ("threads-cython", 1), ("threads-cython", 3)}
    assert sorted(len(d.consumers) for d in dispatches) == [1, 1, 3, 3]
    assert all(isinstance(c, ConsumerThread) for d in dispatches for c in d.consumers)
    # every item of both repeats, and whole passes of probe items for the dispatch cost
    assert all(d.sent > 2 * 8 and (d.sent - 2 * 8) % PROBE_ITEMS == 0 for d in dispatches)
    assert all(d.is_closed for d in dispatches)


# ---- nothing left behind --------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("model", ["coprocess-python", "mpi-python"])
def test_a_far_side_worker_that_raises_fails_the_run_at_once_not_after_the_patience(model):
    started = time.monotonic()
    with pytest.raises(ModelFailed, match=rf"^{model} with 1 worker: repeat 1 failed: "
                                          r"RemoteError: .*ValueError: not in the test "
                                          r"process \(got \d+\)"):
        compare.run(function="_compare_functions:fails_in_workers",
                    inputs="_compare_functions:make_inputs", models=[model], workers=[1],
                    repeat=1, idle_timeout_s=0, min_time_s=0)
    assert time.monotonic() - started < 50  # the patience is 60 s and more


@pytest.mark.one_pass  # the other passes' compare tests start every model of theirs too
@pytest.mark.timeout(360)  # every model starts twice: slow on a loaded machine
def test_no_thread_or_process_is_left_behind_after_a_run():
    threads_before = set(threading.enumerate())
    children_before = child_pids()
    result = compare.run(workers=[1, 2], models=ONE_MACHINE_MODELS, **TINY)
    assert len({r.model for r in result.rows}) == len(ONE_MACHINE_MODELS) - len(result.unavailable)
    assert threads_left(threads_before) == set()
    assert child_pids() - children_before == set()


# ---- equal time, outside load, dispatch cost ---------------------------------------------

class SlowWorkers(ScriptedWorkers):
    """Scripted workers whose every pass takes at least 10 ms."""

    def run(self, workload, patience_s):
        time.sleep(0.01)
        return super().run(workload, patience_s)


@pytest.mark.timeout(TIMEOUT)
def test_each_repeat_runs_the_workload_again_until_the_minimum_time():
    def start(workload, impl, workers):
        return SlowWorkers(workload, impl, workers, [])

    with registry.registered(registry.Model("slow-python", "python", "10 ms a pass", start,
                                            dispatches_items=False)):
        result = compare.run(models="slow-python", workers=[1],
                             **{**TINY, "min_time_s": 0.05})
    [row] = result.rows_of("slow-python")
    assert len(row.repeats) == 2 and all(n >= 2 for n in row.passes)
    # passes were added until, and only until, they lasted the minimum time
    assert all(sum(r.pass_s[:-1]) < 0.05 <= sum(r.pass_s) for r in row.repeats)
    assert row.work_s == [pytest.approx(sum(r.pass_s) / r.passes) for r in row.repeats]
    assert "until it lasted at least 0.05 s" in report.table(result)
    [document_row] = [r for r in document.to_dict(result)["rows"] if r["model"] == "slow-python"]
    assert document_row["passes"] == row.passes
    assert [len(r["pass_s"]) for r in document_row["repeats"]] == row.passes


class AlwaysBusy:
    """Stands in for machine.LoadSampler: other processes always used 1.5 cores."""

    def start(self):
        pass

    def stop(self):
        return machine.LoadSample(0.1, 2.5, 1.0)


@pytest.mark.timeout(TIMEOUT)
def test_disturbed_repeats_are_run_again_a_bounded_number_of_times_and_reported(monkeypatch):
    monkeypatch.setattr(machine, "LoadSampler", AlwaysBusy)
    log = []
    with registry.registered(fake_model("fake-python", log)):
        result = compare.run(models="fake-python", workers=[1],
                             **{**TINY, "max_outside_cores": 0.5, "reruns": 1})
    assert log.count(("run", 1)) == 2 * 2  # two repeats, each tried twice
    for row in result.rows:
        assert [r.tries for r in row.repeats] == [2, 2] and len(row.set_aside) == 2
        assert row.stayed_disturbed == 2
    load = result.outside_load()
    assert {k: load[k] for k in ("repeats", "disturbed", "reruns", "stayed_disturbed")} == {
        "repeats": 4, "disturbed": 4, "reruns": 4, "stayed_disturbed": 4}
    assert load["text"] == ("outside load: 4 of 4 timed repeats were disturbed (other processes "
                            "used more than 0.5 cores) and run again, 4 tries in all; 4 stayed "
                            "disturbed after 1 re-runs and kept their least disturbed try "
                            "(marked !)")
    assert load["text"] in report.table(result)
    assert "%!" in report.table(result)
    assert "Caution: some repeats stayed disturbed" in report.verdict(result)


@pytest.mark.timeout(TIMEOUT)
def test_the_dispatch_cost_is_measured_for_models_that_hand_over_items():
    result = compare.run(models="threads-python,prange-cython", workers=[1], **TINY)
    assert result.rows_of("threads-python")[0].dispatch_s > 0
    assert 0 < result.rows_of("serial-python")[0].dispatch_s < result.rows_of("threads-python")[0].dispatch_s
    if not result.unavailable:
        assert result.rows_of("prange-cython")[0].dispatch_s is None
