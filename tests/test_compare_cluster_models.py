# The compare models past one machine: gilstudy.mpi's ranks (mpi-*), mpi4py.futures'
# MPIPoolExecutor (mpipool-*) and a Dask LocalCluster (dask-*). Each starts a job or a cluster,
# which costs seconds, so each model runs once here, at the smallest size: it must give
# serial-python's answer, show in the table, JSON and plot, fail by name, and leave nothing
# behind. Without its extra a model is unavailable with a one-line reason naming the extra.

import json
import os
import signal
import sys
import threading

import pytest

from gilstudy import cli, compare
from gilstudy.compare import document, registry, report
from gilstudy.errors import CoprocessDied, ModelFailed

from _leftovers import child_pids, threads_left

pytestmark = pytest.mark.one_pass

# Only reached in case of a deadlock; a job on a loaded machine starts in a few seconds.
TIMEOUT = 240

CLUSTER_MODELS = ["mpi-python", "mpi-cython", "mpipool-python", "mpipool-cython",
                  "dask-python", "dask-cython"]

TINY = dict(kernel="count_primes", size=3000, items=8, repeat=1, idle_timeout_s=0,
            min_time_s=0, max_outside_cores=float("inf"))


def test_the_cluster_models_are_registered_after_the_others_in_pairs():
    names = registry.names()
    assert names[-len(CLUSTER_MODELS):] == CLUSTER_MODELS
    assert [registry.get(name).impl for name in CLUSTER_MODELS] == ["python", "cython"] * 3


def test_the_mpi_models_are_available_with_the_mpi_extra_installed():
    for name in CLUSTER_MODELS[:4]:
        assert registry.get(name).unavailable_reason() is None, name


@pytest.mark.parametrize("module, models, reason", [
    ("distributed", ["dask-python", "dask-cython"],
     "distributed not installed (pip install 'gilstudy[dask]')"),
    ("mpi4py", ["mpi-python", "mpi-cython", "mpipool-python", "mpipool-cython"],
     "gilstudy.mpi needs mpi4py, which is not installed: pip install 'gilstudy[mpi]' "
     "(mpi4py and the mpich wheel)"),
], ids=["dask", "mpi"])
def test_without_its_extra_a_model_is_unavailable_with_one_line_naming_it(
        monkeypatch, module, models, reason):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    for name in models:
        assert registry.get(name).unavailable_reason() == reason
    result = compare.run(models=models, workers=[1], **TINY)
    assert result.unavailable == {name: reason for name in models}
    assert [r.model for r in result.rows] == ["serial-python"]
    assert report.table(result).endswith(f"\nunavailable: {', '.join(models)}: {reason}")


def test_on_the_command_line_a_missing_extra_is_a_note_never_a_traceback(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    status = cli.main(["compare", "--models", "dask-*", "--workers", "1", "--size", "3000",
                       "--items", "8", "--repeat", "1", "--idle-timeout", "0", "--quiet",
                       "--min-time", "0", "--no-footprint"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert ("\nunavailable: dask-python, dask-cython: distributed not installed (pip install "
            "'gilstudy[dask]')\n") in out
    assert "Traceback" not in out


# About 20 s on the loaded 2-core machine: six jobs or clusters, each started once, is the
# only way to see each model give its answer.
@pytest.mark.timeout(TIMEOUT)
def test_each_cluster_model_gives_serials_answer_in_the_table_json_and_plot(tmp_path):
    threads_before = set(threading.enumerate())
    children_before = child_pids()
    result = compare.run(models=CLUSTER_MODELS, workers=[2], **TINY)
    rows = {r.model: r for r in result.rows}
    assert list(rows) == ["serial-python", *CLUSTER_MODELS]
    assert result.expected == 430  # primes below 3000; every row's answer was checked against it
    for name in CLUSTER_MODELS:
        assert rows[name].workers == 2 and len(rows[name].repeats) == 1, name
        assert rows[name].dispatch_s > 0 and rows[name].startup_s[0] > 0, name
        assert f"\n{name} " in report.table(result)
    saved = json.loads(document.to_json(result))
    assert [r["model"] for r in saved["rows"]] == list(rows)
    assert {m["name"] for m in saved["models"] if m["available"]} == set(rows)
    png = tmp_path / "cluster.png"
    compare.plot(result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing of the jobs or clusters is left: no process, no thread but the one that Dask
    # keeps for the whole process (its offload pool, shared by every client and cluster).
    assert threads_left(threads_before) == set()
    assert child_pids() - children_before == set()


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("model", ["mpipool-python", "dask-python"])
def test_a_worker_that_raises_fails_the_model_by_name_with_its_own_error(model):
    with pytest.raises(ModelFailed, match=rf"^{model} with 1 worker: .*ValueError: not in the "
                                          r"test process \(got \d+\)") as caught:
        compare.run(function="_compare_functions:fails_in_workers",
                    inputs="_compare_functions:make_inputs", models=[model], workers=[1],
                    repeat=1, idle_timeout_s=0, min_time_s=0)
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.timeout(TIMEOUT)
def test_an_mpi_pool_job_that_dies_is_coprocess_died_within_bounded_time():
    from gilstudy.compare.workload import make_workload
    from gilstudy.mpi import job_processes

    workload = make_workload("count_primes", 3000, 8)
    workers = registry.get("mpipool-python").launch(workload, 1)
    assert workers.run(workload, 60) == 430
    ranks = job_processes(workers._marker) - {workers._process.pid}
    assert ranks
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(CoprocessDied, match=r"^the MPI pool job \(mpiexec \d+\) (exited with "
                                            r"code \d+|was killed by signal \d+): it ended "
                                            r"before answering$"):
        workers.run(workload, 60)
    with pytest.raises(CoprocessDied):
        workers.close()
    assert job_processes(workers._marker) == set()
    workers.close()  # idempotent


@pytest.mark.timeout(TIMEOUT)
def test_an_mpi_pool_job_that_stops_answering_times_out_and_is_ended(monkeypatch):
    from gilstudy.compare import cluster_models
    from gilstudy.compare.workload import make_workload
    from gilstudy.mpi import job_processes

    monkeypatch.setattr(cluster_models, "_STOP_PATIENCE_S", 1.0)
    workload = make_workload("count_primes", 3000, 8)
    workers = registry.get("mpipool-python").launch(workload, 1)
    stopped = job_processes(workers._marker) - {workers._process.pid}
    for pid in stopped:  # every rank and proxy, frozen: nothing answers, nothing ends
        os.kill(pid, signal.SIGSTOP)
    with pytest.raises(TimeoutError, match=r"^the MPI pool job gave no answer for 1 s$"):
        workers.run(workload, 1.0)
    with pytest.raises(CoprocessDied, match=r"was killed by signal 9: when told to end$"):
        workers.close()
    assert job_processes(workers._marker) == set()
