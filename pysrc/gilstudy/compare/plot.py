# A PNG of a compare result: each model's speedup over its own 1-worker run against the
# worker count, with the ideal line, and its speedup over the serial-python reference; one
# line per model@interpreter when several interpreters ran. Drawn with matplotlib's Agg
# canvas directly, so no GUI backend or pyplot state is used.

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # report.py imports this module, for CompareResult.plot()
    from gilstudy.compare.report import CompareResult

__all__ = ["plot"]

# Line styles of the second, third ... interpreter (the default's lines are solid).
_INTERPRETER_LINES = ("--", "-.", ":", (0, (5, 1, 1, 1)))


def plot(result: "CompareResult", path: str | Path) -> Path:
    """Write ``result`` as a PNG to ``path`` and return the path.

    Left: speedup over the model's own 1-worker run (the scaling), with the ideal
    S(N) = N and a dashed line at the usable cores; right: speedup over the reference
    (serial-python under the default interpreter), log scale, where the compiled kernels'
    head start and a slower interpreter's handicap show. Models measured at one worker
    count only appear as single points.

    One colour per model. With one interpreter, solid circles run Python and dashed
    squares Cython; with several, circles run Python and squares Cython, and the line
    style tells the interpreters apart (the default's are solid).

    Raises ModuleNotFoundError if matplotlib is missing (pip install 'gilstudy[compare]').
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    scaling, absolute = figure.subplots(1, 2)
    counts = sorted({r.workers for r in result.rows})
    palette = colormaps["tab20"]
    colours = {name: palette(i % 20) for i, name in enumerate(dict.fromkeys(
        m.name for m in result.models))}
    lines = {i.label: "-" if i.is_default else _INTERPRETER_LINES[(n - 1) % len(_INTERPRETER_LINES)]
             for n, i in enumerate(result.interpreters)}
    for info in result.models:
        rows = result.rows_of(info.name, info.interpreter)
        if not rows:
            continue
        if result.spans_interpreters:
            linestyle = lines[info.interpreter]
        else:
            linestyle = "-" if info.impl == "python" else "--"
        style = dict(color=colours[info.name], linestyle=linestyle,
                     marker="o" if info.impl == "python" else "s",
                     label=result.name_of(info.name, info.interpreter))
        workers = [r.workers for r in rows]
        own = [(r.workers, r.speedup_vs_own_1) for r in rows if r.speedup_vs_own_1 is not None]
        if own and info.max_workers != 1:
            scaling.plot([w for w, _ in own], [s for _, s in own], **style)
        absolute.plot(workers, [r.speedup_vs_serial for r in rows], **style)
    scaling.plot(counts, counts, ":", color="grey", label="ideal: S(N) = N")
    for axes in (scaling, absolute):
        axes.axvline(result.usable_cores, color="grey", linestyle="--", linewidth=0.8)
        axes.set_xscale("log", base=2)
        axes.set_xticks(counts, [str(c) for c in counts])
        axes.set_xlabel(f"workers (dashed: {result.usable_cores} usable cores)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="x-small" if result.spans_interpreters else "small")
    scaling.set_ylabel("speedup over the model's own 1-worker run")
    scaling.set_title("scaling")
    absolute.set_yscale("log")
    reference = result.name_of(result.reference, result.default_label)
    absolute.set_ylabel(f"speedup over {reference} (log)")
    absolute.set_title(f"against {reference}")
    m = result.environment["machine"]
    pythons = " and ".join(
        f"python {i.environment['machine']['python']}"
        f"{f' @{i.label}' if result.spans_interpreters else ''}"
        f" (GIL {'enabled' if i.gil_enabled else 'disabled'})" for i in result.interpreters)
    figure.suptitle(f"gilstudy compare: {result.workload.describe()}; {pythons}, "
                    f"{m['usable_cores']} usable cores, {m['cpu_model']}", fontsize="medium")
    figure.savefig(path, dpi=100)
    return path
