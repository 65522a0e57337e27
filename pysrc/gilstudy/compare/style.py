"""The one look of every gilstudy plot (compare, breakeven, --python runs): each model in a
shade of its family's colour, Python with circles and dashed lines, compiled code (or a
nogil twin) with squares and solid lines, another interpreter with hollow markers and dotted
lines, spread as bands or error bars, and the legends beside the axes, never over the data.
Only matplotlib's object API is used (no pyplot state, no GUI backend)."""

import functools
from pathlib import Path

__all__ = ["FamilyStyler", "FAMILIES", "family_title", "new_figure", "legend_beside",
           "dodge", "save", "plot_suffixes", "plot_path"]

# The families of models (registry.Model.family), in the order plots show them: the title
# of each one's panel and its colour. Every model of a family is drawn in a shade of it.
FAMILIES = {
    "serial": ("serial (the baselines)", "#7f7f7f"),
    "threads": ("threads", "#1f77b4"),
    "coprocesses": ("coprocesses", "#2ca02c"),
    "prange": ("prange (OpenMP threads)", "#9467bd"),
    "pools": ("pools and peers", "#ff7f0e"),
    "interpreters": ("subinterpreters", "#8c564b"),
    "cluster": ("MPI and Dask", "#d62728"),
    "other": ("other models", "#e377c2"),
}
# How far each successive model of a family moves from the family's colour: 0 is the
# colour itself, > 0 towards white, < 0 towards black.
_SHADES = (0.0, -0.45, 0.4, -0.7, 0.6, -0.25, 0.2, -0.85)


def family_title(family: str) -> str:
    """The words for ``family`` in a plot ("pools and peers")."""
    return FAMILIES.get(family, (family, None))[0]


def _shade(colour: str, amount: float) -> str:
    rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    target = 1.0 if amount > 0 else 0.0
    mixed = [c + (target - c) * abs(amount) for c in rgb]
    return "#" + "".join(f"{round(c * 255):02x}" for c in mixed)


class FamilyStyler:
    """Hands out the style of each plotted model: its family's colour (FAMILIES), a
    different shade for each model of the family, a circle and a dashed line for the
    Python implementation, a square and a solid line for the compiled one, hollow markers
    and a dotted line under any interpreter but the first. The same model always gets the
    same style."""

    def __init__(self):
        self._colours: dict[str, str] = {}
        self._used: dict[str, int] = {}

    def colour(self, model: str, family: str) -> str:
        if model not in self._colours:
            index = self._used.get(family, 0)
            base = FAMILIES.get(family, FAMILIES["other"])[1]
            self._colours[model] = _shade(base, _SHADES[index % len(_SHADES)])
            self._used[family] = index + 1
        return self._colours[model]

    def style(self, model: str, family: str, impl: str, interpreter_index: int = 0) -> dict:
        python = impl == "python"
        colour = self.colour(model, family)
        return {"color": colour, "marker": "o" if python else "s",
                "linestyle": ":" if interpreter_index else ("--" if python else "-"),
                "markerfacecolor": "white" if interpreter_index else colour,
                "markersize": 6, "linewidth": 1.8}


def new_figure(columns: int, width: float = 6.0, height: float = 5.0, rows: int = 1,
               legend_room: float = 3.0):
    """A figure of ``rows`` x ``columns`` axes (returned row by row), with
    ``legend_room`` inches on the right for a legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns + legend_room, height * rows),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, [ax for row in axes for ax in row]


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
