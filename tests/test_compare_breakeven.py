# `gilstudy breakeven`: the sizes of each item duration are found by timing the serial call,
# every model is timed against the serial run of its own implementation at each duration,
# answers are checked, and the smallest duration that pays 1.5x is reported (table, JSON,
# plot). Tiny sweeps here; the figures themselves come from the command (docs/results/).

import json
import time

import pytest

from gilstudy import cli
from gilstudy.compare import breakeven, registry
from gilstudy.compare.breakeven import Curve, Point, _calibrate, _items_for
from gilstudy.compare.measure import Repeat, Timing
from gilstudy.errors import WrongAnswer
from gilstudy.machine import IdleCheck

pytestmark = pytest.mark.one_pass

TIMEOUT = 120
FAST = dict(targets_s=[1e-4, 1e-3], workers=[2], repeat=1, min_time_s=0, idle_timeout_s=0,
            max_outside_cores=float("inf"))


def test_calibration_finds_the_size_of_each_duration_by_doubling_and_interpolating():
    def call(size):  # about 10 us per unit of size
        end = time.perf_counter() + size * 1e-5
        while time.perf_counter() < end:
            pass

    sizes = _calibrate(call, [1e-4, 1e-3])
    assert 5 <= sizes[1e-4] <= 20 and 50 <= sizes[1e-3] <= 200


def test_a_duration_below_the_smallest_item_is_left_out():
    sizes = _calibrate(lambda size: time.sleep(0.002 + 1e-4 * size), [1e-5, 3e-3])
    assert set(sizes) == {3e-3} and 4 <= sizes[3e-3] <= 16


@pytest.mark.parametrize("target, counts, items", [
    (1e-5, [2], 2000), (1e-3, [2], 50), (1e-1, [2], 8), (1e-1, [2, 3], 12), (1e-3, [4, 6], 60),
])
def test_items_per_pass_are_a_multiple_of_every_worker_count_and_bounded(target, counts, items):
    assert _items_for(target, counts) == items


def synthetic(speedups: list[float]) -> tuple[breakeven.BreakevenResult, Curve]:
    targets = [1e-4, 1e-3, 1e-2, 1e-1]
    points = [Point("python", t, 1, 10, {2: [Repeat([t * 10])]}) for t in targets]
    curve = Curve("pool-python", "pool-python", "python", 2, 1e-4,
                  {t: [Repeat([t * 10 / s])] for t, s in zip(targets, speedups)})
    result = breakeven.BreakevenResult("countdown", points, [curve], {}, Timing(), 1,
                                       IdleCheck(True, 0.0, 0.0), {"machine": {}})
    return result, curve


@pytest.mark.parametrize("speedups, expected", [
    ([0.5, 1.2, 1.6, 1.9], 1e-2), ([1.6, 1.2, 1.6, 1.9], 1e-2), ([0.5, 0.8, 1.1, 1.4], None),
    ([1.5, 1.6, 1.7, 1.9], 1e-4),
], ids=["crosses", "dips-then-pays", "never", "always"])
def test_the_breakeven_is_the_smallest_duration_from_which_on_the_model_pays(speedups, expected):
    result, curve = synthetic(speedups)
    assert result.breakeven_s(curve) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("repeats, expected", [
    # The largest item's median (1.45x) dips under 1.5x, its fastest repeat reaches it:
    # within the spread, so the break-even stays where the model began to pay.
    ([[0.5], [1.2], [1.7, 1.8, 1.9], [1.4, 1.45, 1.6]], 1e-2),
    # Even its fastest repeat stays under 1.5x: the model does not pay from there on.
    ([[0.5], [1.2], [1.7, 1.8, 1.9], [1.3, 1.4, 1.45]], None),
], ids=["noisy-dip-within-spread", "dip-beyond-spread"])
def test_a_dip_within_the_repeats_spread_does_not_move_the_breakeven(repeats, expected):
    targets = [1e-4, 1e-3, 1e-2, 1e-1]
    points = [Point("python", t, 1, 10, {2: [Repeat([t * 10])]}) for t in targets]
    curve = Curve("pool-python", "pool-python", "python", 2, 1e-4,
                  {t: [Repeat([t * 10 / s]) for s in speedups]
                   for t, speedups in zip(targets, repeats)})
    result = breakeven.BreakevenResult("countdown", points, [curve], {}, Timing(), 3,
                                       IdleCheck(True, 0.0, 0.0), {"machine": {}})
    assert result.breakeven_s(curve) == (None if expected is None else pytest.approx(expected))


def test_the_answer_comes_first_with_the_item_each_model_pays_from():
    targets = [1e-4, 1e-3, 1e-2]
    points = [Point("python", t, 1, 10, {2: [Repeat([t * 10])]}) for t in targets]
    curves = [Curve(name, name, "python", 2, 1e-4,
                    {t: [Repeat([t * 10 / s])] for t, s in zip(targets, speedups)})
              for name, speedups in (("threads-python", [1.0, 1.0, 1.0]),
                                     ("pool-python", [0.5, 1.2, 1.8]),
                                     ("coprocess-python", [0.9, 1.6, 1.9]))]
    machine = {"usable_cores": 2, "python": "3.11.7", "gil_enabled": True,
               "interpreter": "3.11", "cpu_model": "test"}
    result = breakeven.BreakevenResult("countdown", points, curves, {}, Timing(), 1,
                                       IdleCheck(True, 0.0, 0.0), {"machine": machine})
    assert result.pays_from() == {2: [("coprocess-python", pytest.approx(1e-3)),
                                      ("pool-python", pytest.approx(1e-2)),
                                      ("threads-python", None)]}
    lines = result.answer_lines()
    assert len(lines) <= 10
    assert lines[1] == ("With 2 workers: coprocess-python from 1.00 ms, pool-python from "
                        "10.00 ms; never within the sweep: threads-python.")
    assert lines[2].startswith("Next: for items under 1.00 ms of work, nothing here pays")
    assert result.report().startswith(lines[0] + "\n  " + lines[1])
    assert json.loads(result.to_json())["answer"]["pays_from"]["2"]["threads-python"] is None


@pytest.mark.timeout(TIMEOUT)
def test_a_tiny_sweep_times_each_model_against_its_own_serial_run(tmp_path):
    result = breakeven.run(models="threads-*", **FAST)
    assert [(c.model, c.workers) for c in result.curves] == [("threads-python", 2),
                                                            ("threads-cython", 2)]
    assert {(p.impl, p.target_s) for p in result.points} == {
        (impl, t) for impl in ("python", "cython") for t in (1e-4, 1e-3)}
    for curve in result.curves:
        assert curve.dispatch_s > 0 and len(result.speedups(curve)) == 2
    table = result.table()
    assert "pays 1.5x from" in table and "\nthreads-python " in table
    document = json.loads(result.to_json())
    assert document["tool"] == "gilstudy breakeven" and document["goal"] == 1.5
    assert [c["model"] for c in document["curves"]] == ["threads-python", "threads-cython"]
    assert all(len(c["points"]) == 2 for c in document["curves"])
    assert result.plot(tmp_path / "b").name == "b.png"
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.timeout(TIMEOUT)
def test_a_users_function_of_a_size_is_swept_and_models_it_cannot_run_are_listed():
    result = breakeven.run(function="_compare_functions:digest", models="threads-*,prange-*",
                           **{**FAST, "targets_s": [3e-4]})
    assert [c.model for c in result.curves] == ["threads-python"]
    assert result.unavailable == {"threads-nogil": "no GIL-releasing implementation was given "
                                                   "(nogil)"}
    assert result.title == "_compare_functions:digest"


@pytest.mark.timeout(TIMEOUT)
def test_a_model_that_gets_another_answer_stops_the_sweep_naming_it():
    from gilstudy.compare.models import _SerialWorkers

    class Wrong(_SerialWorkers):
        def __init__(self, workload, impl, workers):
            super().__init__(workload, impl, 1)

        def run(self, workload, patience_s):
            answer = super().run(workload, patience_s)
            return answer if workload.items_count > 200 else answer[:-1] + [-1]

    with registry.registered(registry.Model("wrong-python", "python", "wrong", Wrong)):
        with pytest.raises(WrongAnswer, match=r"^wrong-python with 2 workers computed a wrong "
                                              r"answer for \d+ items of countdown"):
            breakeven.run(models="wrong-python", **FAST)


@pytest.mark.timeout(TIMEOUT)
def test_the_command_writes_its_table_json_and_plot(capsys, tmp_path):
    status = cli.main(["breakeven", "--models", "threads-python", "--durations", "1e-3",
                       "--workers", "2", "--repeat", "1", "--min-time", "0",
                       "--idle-timeout", "0", "--quiet", "--markdown",
                       "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.svg")])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert out.startswith("**Answer for items of countdown on this machine (")
    assert "\n\ngilstudy breakeven: countdown, items of about 1.00 ms to 1.00 ms" in out
    assert "| model | workers | dispatch c | pays 1.5x from | 1.00 ms |" in out
    assert json.loads((tmp_path / "b.json").read_text())["curves"][0]["workers"] == 2
    assert (tmp_path / "b.svg").read_text().lstrip().startswith("<?xml")
