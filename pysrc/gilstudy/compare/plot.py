"""A compare result as a figure read in a few seconds: one panel per family of models
(threads, coprocesses, prange, pools and peers, subinterpreters, MPI and Dask), each model's
speedup over serial-python against the worker count, in its family's colour, a circle and a
dashed line for Python, a square and a solid line for compiled code. A band spans the
slowest to the fastest repeat; a grey dotted line is each model's ideal (its 1-worker speed
times the workers), a dashed one the usable cores. The serial baselines are the grey
horizontal lines of every panel. Legends sit under each panel and to the right, never over
the data."""

import math
from pathlib import Path

from gilstudy.compare.facts import ModelInfo, Row
from gilstudy.compare.result import CompareResult
from gilstudy.compare.style import FAMILIES, FamilyStyler, family_title, new_figure, save

__all__ = ["plot", "figure", "panels"]

# Panels per row of the figure.
_COLUMNS = 3


def panels(result: CompareResult) -> list[tuple[str, list[ModelInfo]]]:
    """(family, its models that have rows) per panel, in FAMILIES' order; the serial
    baselines get no panel of their own (every panel draws them) unless they are all."""
    measured = [m for m in result.models if result.rows_of(m.name, m.interpreter)]
    order = list(FAMILIES)
    families = sorted({m.family for m in measured},
                      key=lambda f: order.index(f) if f in order else len(order))
    if families != ["serial"]:
        families = [f for f in families if f != "serial"]
    return [(f, [m for m in measured if m.family == f]) for f in families]


def _speedups(reference_s: float, rows: list[Row]) -> tuple[list, list, list]:
    """Per row: the speedup of its median, of its slowest and of its fastest repeat."""
    return ([reference_s / r.median_s for r in rows],
            [reference_s / max(r.work_s) for r in rows],
            [reference_s / min(r.work_s) for r in rows])


def figure(result: CompareResult):
    """The matplotlib Figure (not saved). Raises ModuleNotFoundError without matplotlib.
    Each model's line has the gid ``model:NAME``, its band ``spread:NAME``, each ideal
    line ``ideal:NAME``; the usable cores line is ``cores``."""
    groups = panels(result)
    columns = 2 if len(groups) == 4 else min(_COLUMNS, len(groups))
    rows_count = math.ceil(len(groups) / columns)
    fig, axes_list = new_figure(columns, width=4.6, height=3.9, rows=rows_count,
                                legend_room=2.6)
    for spare in axes_list[len(groups):]:
        spare.set_visible(False)
    styler = FamilyStyler()
    order = {i.label: n for n, i in enumerate(result.interpreters)}
    reference_s = result.rows_of(result.reference, result.default_label)[0].median_s
    counts = sorted({r.workers for r in result.rows})
    serials = [m for m in result.models if m.family == "serial"
               and result.rows_of(m.name, m.interpreter)]
    top = max(reference_s / min(r.work_s) for r in result.rows)
    bottom = min(reference_s / max(r.work_s) for r in result.rows)
    for index, (axes, (family, infos)) in enumerate(zip(axes_list, groups)):
        for info in serials if family != "serial" else []:
            row = result.rows_of(info.name, info.interpreter)[0]
            axes.axhline(reference_s / row.median_s, color="#7f7f7f", linewidth=1.0,
                         linestyle="--" if info.impl == "python" else "-", alpha=0.7)
        for info in infos:
            rows = result.rows_of(info.name, info.interpreter)
            name = result.name_of(info.name, info.interpreter)
            style = styler.style(name, family, info.impl, order[info.interpreter])
            xs = [r.workers for r in rows]
            middle, low, high = _speedups(reference_s, rows)
            [line] = axes.plot(xs, middle, label=name, **style)
            line.set_gid(f"model:{name}")
            band = axes.fill_between(xs, low, high, color=style["color"], alpha=0.18,
                                     linewidth=0)
            band.set_gid(f"spread:{name}")
            one = next((r for r in rows if r.workers == 1), None)
            if one is not None and info.max_workers != 1:
                [ideal] = axes.plot(counts, [reference_s / one.median_s * n for n in counts],
                                    color="#555555", linestyle=":", linewidth=1.0, alpha=0.8)
                ideal.set_gid(f"ideal:{name}")
        cores = axes.axvline(result.usable_cores, color="#555555", linestyle="-.",
                             linewidth=1.0, alpha=0.8)
        cores.set_gid("cores")
        axes.set_title(family_title(family), color=FAMILIES.get(family, FAMILIES["other"])[1],
                       fontsize="medium", fontweight="bold")
        axes.set_xscale("log", base=2)
        axes.set_xticks(counts, [str(c) for c in counts])
        axes.set_xlim(counts[0] / 1.25, counts[-1] * 1.25)
        axes.set_yscale("log")
        axes.set_ylim(bottom / 1.6, top * 2.2)
        axes.grid(True, which="major", alpha=0.3)
        axes.set_xlabel("workers")
        if index % columns == 0:
            axes.set_ylabel(f"speedup over "
                            f"{result.name_of(result.reference, result.default_label)} (log)")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2,
                    fontsize="small", frameon=False)
    _key(fig, result, serials)
    m = result.environment["machine"]
    pythons = " and ".join(
        f"python {i.environment['machine']['python']}"
        f"{f' @{i.label}' if result.spans_interpreters else ''}"
        f" (GIL {'enabled' if i.gil_enabled else 'disabled'})" for i in result.interpreters)
    fig.suptitle(f"gilstudy compare: {result.workload.describe()}\n{pythons}, "
                 f"{m['usable_cores']} usable cores, {m['cpu_model']}", fontsize="medium")
    return fig


def _key(fig, result: CompareResult, serials: list[ModelInfo]) -> None:
    """The figure's legend, on the right: how to read every panel."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color="black", marker="o", linestyle="--", label="Python"),
        Line2D([], [], color="black", marker="s", linestyle="-", label="compiled"),
        Patch(color="black", alpha=0.18, label="slowest to fastest\nrepeat"),
        Line2D([], [], color="#555555", linestyle=":", label="ideal: 1-worker\nspeed x workers"),
        Line2D([], [], color="#555555", linestyle="-.",
               label=f"{result.usable_cores} usable cores"),
    ]
    handles += [Line2D([], [], color="#7f7f7f", linestyle="--" if m.impl == "python" else "-",
                       label=f"{result.name_of(m.name, m.interpreter)}\n(1 worker)")
                for m in serials]
    if result.spans_interpreters:
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white",
                              linestyle=":", label="another interpreter"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False,
               title="how to read", title_fontsize="small")


def plot(result: CompareResult, path: str | Path) -> Path:
    """Write figure(``result``) as a PNG (or any format matplotlib writes, by the suffix;
    none means .png) and return the path written.

    Raises ModuleNotFoundError if matplotlib is missing (pip install 'gilstudy[compare]'),
    ValueError for a suffix matplotlib cannot write.
    """
    return save(figure(result), path)
