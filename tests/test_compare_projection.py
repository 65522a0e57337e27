# What a compare result says past this machine's cores: each model's dispatch cost bounds its
# speedup (d / c), and scaling laws are fitted only to three or more worker counts within the
# usable cores; with fewer the report says so instead of printing figures for 64 cores.

import pytest

from gilstudy import compare
from gilstudy.compare import document, projection
from gilstudy.compare.facts import Interpreter, ModelInfo, Row, fill_speedups
from gilstudy.compare.measure import Repeat
from gilstudy.compare.projection import Ceiling, projection_text
from gilstudy.compare.result import CompareResult
from gilstudy.compare.workload import make_workload
from gilstudy.machine import IdleCheck

pytestmark = pytest.mark.one_pass

ITEMS = 64


def synthetic(cores: int, seconds: dict[int, float], dispatch_s: float = 1e-5) -> CompareResult:
    """A result measured at the worker counts of ``seconds`` (workers -> seconds per pass)
    on ``cores`` usable cores: serial-python at 1 worker and one model, 'pool-python'."""
    def row(model, workers, s, dispatch):
        return Row(model, "python", workers, workers > cores, False, "3.11", True,
                   startup_s=[0.0], repeats=[Repeat([s])], dispatch_s=dispatch)

    rows = [row("serial-python", 1, seconds[1], None)]
    rows += [row("pool-python", n, s, dispatch_s) for n, s in seconds.items()]
    infos = [ModelInfo(name, "python", "", True, None, True, maximum, False, "3.11", name)
             for name, maximum in (("serial-python", 1), ("pool-python", None))]
    fill_speedups(rows, "serial-python", "3.11")
    environment = {"machine": {"usable_cores": cores, "python": "3.11.7", "interpreter": "3.11",
                               "gil_enabled": True, "cpu_model": "test"}}
    return CompareResult(make_workload("count_primes", 10_000, ITEMS), sorted(seconds), 1,
                         "serial-python", infos, rows, 1229, seconds[1],
                         IdleCheck(True, 0.0, 0.0), environment,
                         [Interpreter("3.11", "python", True, True, seconds[1], environment)])


def test_a_ceiling_is_the_item_time_over_the_dispatch_cost_and_never_above_the_cores():
    ceiling = Ceiling("pool-python", "3.11", 2, dispatch_s=1e-4, item_s=2e-3)
    assert ceiling.bound == pytest.approx(20.0)
    assert [ceiling.at(n) for n in (4, 16, 64)] == [4, 16, pytest.approx(20.0)]
    assert Ceiling("prange-cython", "3.11", 2, None, 1e-3).at(64) == 64


def test_on_two_cores_there_are_ceilings_and_no_fitted_law():
    result = synthetic(2, {1: 0.64, 2: 0.33}, dispatch_s=1e-4)
    [ceiling] = projection.ceilings(result)
    assert (ceiling.model, ceiling.workers) == ("pool-python", 2)
    assert ceiling.item_s == pytest.approx(0.64 / ITEMS)
    assert ceiling.bound == pytest.approx(100.0)
    assert [p.reason for p in projection.projections(result)] == [
        "needs >= 3 worker counts within the 2 usable cores, measured 2"] * 2
    text = projection_text(result)
    assert text.startswith("PROJECTION, not a measurement. Past the 2 usable cores only bounds")
    assert "No scaling law is fitted" in text and "on 2 usable cores" in text
    assert "amdahl" not in text and "usl" not in text


def test_an_oversubscribed_count_does_not_count_towards_a_fit():
    result = synthetic(2, {1: 0.64, 2: 0.33, 4: 0.33})
    assert all(p.fit is None for p in projection.projections(result))


def test_with_three_counts_within_the_cores_the_laws_are_fitted():
    result = synthetic(16, {1: 1.0, 2: 0.52, 4: 0.28, 8: 0.16, 16: 0.1})
    fits = {p.law: p for p in projection.projections(result)}
    assert set(fits) == {"amdahl", "usl"} and all(p.fit is not None for p in fits.values())
    assert fits["amdahl"].points[-1] == (16, pytest.approx(10.0))
    text = projection_text(result)
    assert "Scaling laws fitted" in text and "No scaling law" not in text
    saved = document.to_dict(result)
    assert [p["law"] for p in saved["projections"]] == ["amdahl", "usl"]
    assert saved["ceilings"][0]["workers"] == 16


def test_compare_exports_the_projection_types():
    assert compare.Ceiling is Ceiling and compare.Projection.__name__ == "Projection"
