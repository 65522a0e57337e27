# The compare figure, read through matplotlib's objects rather than its pixels: one panel per
# family, the family's models in each, distinct colours within a panel and one hue per family,
# Python and compiled told apart by marker and line style, the spread drawn, the usable cores
# and the ideal marked, and every legend outside the axes it explains.

import colorsys

import pytest
from matplotlib.colors import to_rgb

from gilstudy import compare
from gilstudy.compare import registry
from gilstudy.compare.facts import Interpreter, ModelInfo, Row, fill_speedups
from gilstudy.compare.measure import Repeat
from gilstudy.compare.plot import figure, panels
from gilstudy.compare.result import CompareResult
from gilstudy.compare.style import FAMILIES, family_title
from gilstudy.compare.workload import make_workload
from gilstudy.machine import IdleCheck

pytestmark = pytest.mark.one_pass

ENVIRONMENT = {"machine": {"usable_cores": 2, "python": "3.11.7", "interpreter": "3.11",
                           "gil_enabled": True, "cpu_model": "test"}}


def synthetic(spec) -> CompareResult:
    """Every model of the registry that ``spec`` selects, at 1 and 2 workers, with made-up
    repeats that differ (so that the spread has a width)."""
    rows, infos = [], []
    for m in registry.select(spec):
        infos.append(ModelInfo(m.name, m.impl, "", True, None, m.reusable, m.max_workers,
                               m.shares_gil, "3.11", m.name, m.family, m.quick))
        one = 0.7 if m.impl == "python" else 0.02
        for n in m.worker_counts([1, 2]):
            t = one / (1.0 if n == 1 or m.family == "threads" else 1.8)
            rows.append(Row(m.name, m.impl, n, False, False, "3.11", True, startup_s=[0.01],
                            repeats=[Repeat([t * f]) for f in (0.95, 1.0, 1.05)],
                            dispatch_s=2e-5))
    fill_speedups(rows, "serial-python", "3.11")
    return CompareResult(make_workload("count_primes", 200_000, 64), [1, 2], 3, "serial-python",
                         infos, rows, 0, 0.7, IdleCheck(True, 0.0, 0.0), ENVIRONMENT,
                         [Interpreter("3.11", "python", True, True, 0.7, ENVIRONMENT)])


def model_lines(axes):
    return [line for line in axes.get_lines() if str(line.get_gid()).startswith("model:")]


def hue(colour) -> float:
    return colorsys.rgb_to_hls(*to_rgb(colour))[0]


@pytest.mark.parametrize("spec", [None, "all"], ids=["quick", "all"])
def test_one_panel_per_family_with_its_models_in_distinct_shades_of_one_colour(spec):
    result = synthetic(spec)
    fig = figure(result)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    groups = panels(result)
    assert [ax.get_title() for ax in shown] == [family_title(f) for f, _ in groups]
    assert "serial" not in [f for f, _ in groups]  # the baselines are lines in every panel
    family_hues = []
    for ax, (family, infos) in zip(shown, groups):
        lines = model_lines(ax)
        assert sorted(line.get_gid() for line in lines) == sorted(f"model:{m.name}"
                                                                 for m in infos)
        colours = [line.get_color() for line in lines]
        assert len(set(colours)) == len(colours), (family, colours)
        # one family, one hue (on the colour wheel: red sits at both ends)
        hues = [hue(c) for c in colours]
        assert max(min(abs(a - b), 1 - abs(a - b)) for a in hues for b in hues) < 0.03, family
        family_hues.append(round(hue(FAMILIES[family][1]), 2))
        for line, info in zip(lines, infos):
            python = info.impl == "python"
            assert (line.get_marker(), line.get_linestyle()) == (("o", "--") if python
                                                                  else ("s", "-"))
        # the spread, the ideal and the usable cores are drawn
        assert {c.get_gid() for c in ax.collections} == {f"spread:{m.name}" for m in infos}
        ideals = [line for line in ax.get_lines() if str(line.get_gid()).startswith("ideal:")]
        assert {line.get_gid() for line in ideals} == {
            f"ideal:{m.name}" for m in infos if m.max_workers != 1}
        [cores] = [line for line in ax.get_lines() if line.get_gid() == "cores"]
        assert list(cores.get_xdata()) == [2, 2]
    assert len(set(family_hues)) == len(family_hues)  # the families differ


def test_every_legend_sits_outside_the_axes():
    fig = figure(synthetic("all"))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [ax for ax in fig.axes if ax.get_visible()]
    boxes = [ax.get_window_extent(renderer) for ax in shown]
    legends = [ax.get_legend() for ax in shown] + fig.legends
    assert all(legend is not None for legend in legends) and len(fig.legends) == 1
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(axes_box) for axes_box in boxes), legend


def test_the_plot_is_written_where_asked(tmp_path):
    written = compare.plot(synthetic(None), tmp_path / "figure")
    assert written.name == "figure.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_family_the_registry_allows_has_a_title_and_a_colour():
    assert tuple(FAMILIES) == registry.FAMILIES
    assert len({colour for _, colour in FAMILIES.values()}) == len(FAMILIES)
