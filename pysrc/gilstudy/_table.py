"""Plain-text tables, the one layout every report prints (gilstudy kernels, gilstudy compare,
the experiments): columns padded to their widest cell, a rule of dashes under the header.
"""

from typing import Collection, Sequence

__all__ = ["format_table"]


def format_table(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    """``rows`` of cells (the first row is the header) as aligned columns two spaces apart,
    with a rule under the header and no trailing blanks. Columns whose index is in
    ``right`` are right-aligned (numbers); the others left-aligned.

    >>> print(format_table([("kernel", "s"), ("countdown", "0.25"), ("mandelbrot", "10.5")],
    ...                    right={1}))
    kernel         s
    ----------  ----
    countdown   0.25
    mandelbrot  10.5
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * width for width in widths),
                      *map(line, rows[1:])])
