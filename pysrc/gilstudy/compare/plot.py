"""A picture of a compare result: each model's speedup over its own 1-worker run against the
worker count, with the ideal line, and its speedup over the serial-python reference; error
bars span the repeats. Python and compiled rows, and interpreters, are drawn the one way
every gilstudy plot draws them (compare/style.py).
"""

from pathlib import Path
from typing import TYPE_CHECKING

from gilstudy.compare.style import Styler, dodge, legend_beside, new_figure, save

if TYPE_CHECKING:  # report.py imports this module, for CompareResult.plot()
    from gilstudy.compare.report import CompareResult, Row

__all__ = ["plot"]


def _span(reference_s: float, row: "Row") -> tuple[float, float, float]:
    """The speedup reference_s / median of ``row``, and how far below and above it the
    fastest and slowest repeats reach (the error bar)."""
    middle = reference_s / row.median_s
    return (middle, middle - reference_s / max(row.work_s),
            reference_s / min(row.work_s) - middle)


def _draw(axes, xs, spans, style: dict, label: str) -> None:
    axes.errorbar(xs, [m for m, _, _ in spans],
                  yerr=[[low for _, low, _ in spans], [high for _, _, high in spans]],
                  capsize=3, elinewidth=1, label=label, **style)


def plot(result: "CompareResult", path: str | Path) -> Path:
    """Write ``result`` as a PNG (or any format matplotlib writes, by the suffix; none
    means .png) and return the path written.

    Left: speedup over the model's own 1-worker run (the scaling), with the ideal
    S(N) = N and a dashed line at the usable cores; right: speedup over the reference
    (serial-python under the default interpreter), log scale, where the compiled kernels'
    head start and a slower interpreter's handicap show. Error bars reach from the slowest
    to the fastest repeat. Python rows are warm colours with circles, compiled rows cool
    colours with squares; each interpreter has its own line style (the default's solid).
    The legend sits to the right of the axes.

    Raises ModuleNotFoundError if matplotlib is missing (pip install 'gilstudy[compare]'),
    ValueError for a suffix matplotlib cannot write.
    """
    figure, (scaling, absolute) = new_figure(2)
    counts = sorted({r.workers for r in result.rows})
    styler = Styler()
    order = {i.label: n for n, i in enumerate(result.interpreters)}
    reference = result.rows_of(result.reference, result.default_label)[0].median_s
    infos = [m for m in sorted(result.models, key=lambda m: m.impl != "python")  # Python first
             if result.rows_of(m.name, m.interpreter)]
    for index, info in enumerate(infos):
        rows = result.rows_of(info.name, info.interpreter)
        style = styler.style(info.name, info.impl, order[info.interpreter])
        label = result.name_of(info.name, info.interpreter)
        xs = dodge([r.workers for r in rows], index, len(infos))
        one = next((r for r in rows if r.workers == 1), None)
        if one is not None and info.max_workers != 1:
            _draw(scaling, xs, [_span(one.median_s, r) for r in rows], style, label)
        _draw(absolute, xs, [_span(reference, r) for r in rows], style, label)
    scaling.plot(counts, counts, ":", color="grey", label="ideal: S(N) = N")
    for axes in (scaling, absolute):
        axes.axvline(result.usable_cores, color="grey", linestyle="--", linewidth=0.8)
        axes.set_xscale("log", base=2)
        axes.set_xticks(counts, [str(c) for c in counts])
        axes.set_xlabel(f"workers (dashed: {result.usable_cores} usable cores)")
        axes.grid(True, alpha=0.3)
    scaling.set_ylabel("speedup over the model's own 1-worker run")
    scaling.set_title("scaling (bars: slowest to fastest repeat)")
    absolute.set_yscale("log")
    reference_name = result.name_of(result.reference, result.default_label)
    absolute.set_ylabel(f"speedup over {reference_name} (log)")
    absolute.set_title(f"against {reference_name}")
    m = result.environment["machine"]
    pythons = " and ".join(
        f"python {i.environment['machine']['python']}"
        f"{f' @{i.label}' if result.spans_interpreters else ''}"
        f" (GIL {'enabled' if i.gil_enabled else 'disabled'})" for i in result.interpreters)
    figure.suptitle(f"gilstudy compare: {result.workload.describe()}; {pythons}, "
                    f"{m['usable_cores']} usable cores, {m['cpu_model']}", fontsize="medium")
    legend_beside(figure, (scaling, absolute),
                  [result.name_of(m.name, m.interpreter) for m in infos],
                  title="warm, circles: Python\ncool, squares: compiled")
    return save(figure, path)
