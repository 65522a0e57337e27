# A PNG of a compare result: each model's speedup over its own 1-worker run against the
# worker count, with the ideal line, and its speedup over the serial-python reference.
# Drawn with matplotlib's Agg canvas directly, so no GUI backend or pyplot state is used.

from pathlib import Path

from gilstudy.compare.report import CompareResult

__all__ = ["plot"]


def plot(result: CompareResult, path: str | Path) -> Path:
    """Write ``result`` as a PNG to ``path`` and return the path.

    Left: speedup over the model's own 1-worker run (the scaling), with the ideal
    S(N) = N and a dashed line at the usable cores; right: speedup over the reference
    (serial-python), log scale, where the compiled kernels' head start shows. Models
    measured at one worker count only appear as single points.

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
    for index, info in enumerate(result.models):
        rows = result.rows_of(info.name)
        if not rows:
            continue
        # One colour per model in both panels; solid circles run Python, dashed squares Cython.
        style = dict(color=palette(index % 20), linestyle="-" if info.impl == "python" else "--",
                     marker="o" if info.impl == "python" else "s", label=info.name)
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
        axes.legend(fontsize="small")
    scaling.set_ylabel("speedup over the model's own 1-worker run")
    scaling.set_title("scaling")
    absolute.set_yscale("log")
    absolute.set_ylabel(f"speedup over {result.reference} (log)")
    absolute.set_title(f"against {result.reference}")
    m = result.environment["machine"]
    figure.suptitle(f"gilstudy compare: {result.workload.describe()}; python {m['python']} "
                    f"(GIL {'enabled' if m['gil_enabled'] else 'disabled'}), "
                    f"{m['usable_cores']} usable cores, {m['cpu_model']}", fontsize="medium")
    figure.savefig(path, dpi=100)
    return path
