"""The one look of every gilstudy plot (compare, breakeven, --python runs): Python rows in warm
colours with round markers, compiled (or nogil) rows in cool colours with square markers,
one line style per interpreter, spread as error bars, and the legend beside the axes, never
over the data. Only matplotlib's object API is used (no pyplot state, no GUI backend).
"""

import functools
from pathlib import Path

__all__ = ["Styler", "new_figure", "legend_beside", "dodge", "save", "plot_suffixes",
           "plot_path"]

# Warm colours for the rows that run Python, cool ones for the compiled rows: the family
# tells them apart at a glance, the shade tells the models apart.
_WARM = ("#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#b5651d", "#7f0000")
_COOL = ("#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#393b79", "#00796b", "#5e8fd9")
# Line styles of the first, second ... interpreter.
_INTERPRETER_LINES = ("-", "--", ":", "-.")


class Styler:
    """Hands out the style of each plotted line: ``style(model, impl, interpreter_index)``
    gives the colour (by model, from the warm family for impl "python", the cool one
    otherwise), the marker (circle or square) and the line style (by interpreter), the same
    model always getting the same colour."""

    def __init__(self):
        self._colours: dict[str, str] = {}
        self._used = {"python": 0, "compiled": 0}

    def style(self, model: str, impl: str, interpreter_index: int = 0) -> dict:
        family = "python" if impl == "python" else "compiled"
        if model not in self._colours:
            palette = _WARM if family == "python" else _COOL
            self._colours[model] = palette[self._used[family] % len(palette)]
            self._used[family] += 1
        return {"color": self._colours[model], "marker": "o" if family == "python" else "s",
                "linestyle": _INTERPRETER_LINES[interpreter_index % len(_INTERPRETER_LINES)],
                "markersize": 5, "linewidth": 1.5}


def new_figure(columns: int, width: float = 6.0, height: float = 5.0):
    """A figure of ``columns`` axes side by side, with room on the right for the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns + 3.0, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def legend_beside(figure, axes, order: list[str], title: str | None = None) -> None:
    """One legend for the whole figure, outside the axes on the right: the entries named in
    ``order`` in that order (the Python rows first, then the compiled), after any other
    entry (an ideal line)."""
    found = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    labels = [label for label in found if label not in order]
    labels += [label for label in order if label in found]
    figure.legend([found[label] for label in labels], labels, loc="outside right upper",
                  fontsize="small", title=title, title_fontsize="small", frameon=False)


def dodge(xs: list[float], index: int, count: int, log: bool = True) -> list[float]:
    """``xs`` shifted a little for the ``index``-th of ``count`` lines, so that lines and
    error bars at the same x do not hide each other (by a factor on a log axis)."""
    shift = (index - (count - 1) / 2) * 0.012
    return [x * 2 ** shift if log else x + shift for x in xs]


@functools.cache
def plot_suffixes() -> tuple[str, ...]:
    """The file suffixes matplotlib can write a figure to (".png", ".svg", ".pdf" ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(f".{suffix}" for suffix in sorted(FigureCanvasBase.get_supported_filetypes()))


def plot_path(path: str | Path, option: str = "--plot") -> Path:
    """The file a plot named ``path`` is written to: ``path`` itself, or with ".png" added
    when it has no suffix. Raises ValueError naming ``option`` for a suffix matplotlib
    cannot write, listing those it can."""
    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + ".png")
    if path.suffix.lower() not in plot_suffixes():
        raise ValueError(f"{option}: matplotlib cannot write {path.suffix!r} files; name a "
                         f"file ending in one of {', '.join(plot_suffixes())}")
    return path


def save(figure, path: str | Path) -> Path:
    """Write ``figure`` to plot_path(``path``) and return that path."""
    path = plot_path(path)
    figure.savefig(path, dpi=100)
    return path
