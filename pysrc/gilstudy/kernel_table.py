"""`gilstudy kernels`: every kernel in both implementations, single-threaded, on one default
size, timed interleaved; the table shows how much the compiled kernel gains over Python.
"""

import math
import sys
from dataclasses import dataclass
from typing import Callable, TextIO

from gilstudy import kernels, machine
from gilstudy._table import format_table as _format_rows
from gilstudy.cli import add_command, positive_float, positive_int
from gilstudy.errors import UnknownKernelError
from gilstudy.kernels import _args
from gilstudy.timing import interleaved

__all__ = ["default_args", "check_scale", "KernelTiming", "time_kernels", "format_table", "main",
           "add_subcommand"]

# The argument checks of each kernel, so that a scale is refused before any timing starts.
_VALIDATE = {
    "countdown": _args.countdown_args,
    "count_primes": _args.count_primes_args,
    "mandelbrot": lambda width, height, max_iter: _args.mandelbrot_args(width, height, max_iter,
                                                                        0, None),
}


# Sizes at which the pure-Python kernels take a few tenths of a second each on one core;
# ``scale`` multiplies the amount of work.
def default_args(name: str, scale: float = 1.0) -> tuple:
    """Arguments of kernel ``name`` for the kernel table, with its work scaled by ``scale``
    (a finite number > 0, else ValueError)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"default_args: scale must be a number, got {type(scale).__name__} "
                        f"({scale!r})")
    if not 0 < scale < math.inf:
        raise ValueError(f"default_args: scale must be a finite number > 0, got {scale}")
    if name == "countdown":
        return (max(1, round(3_000_000 * scale)),)
    if name == "count_primes":
        return (0, max(1, round(200_000 * scale)))
    if name == "mandelbrot":
        return (240, max(1, round(160 * scale)), 200)
    raise UnknownKernelError(f"no default arguments for kernel {name!r}")


def check_scale(scale: float) -> float:
    """``scale`` if every kernel accepts its arguments at that scale and a mandelbrot image
    of that size fits in memory; else the kernel's own OverflowError or ValueError, with
    the scale named first. Run before timing anything, so a bad scale fails at once."""
    if not 0 < scale < math.inf:
        raise ValueError(f"must be a finite number > 0, got {scale}")
    for name in kernels.NAMES:
        args = default_args(name, scale)
        try:
            _VALIDATE[name](*args)
            if name == "mandelbrot":
                width, height, _ = args
                machine.check_memory(name, f"a {width} x {height} image", 4 * width * height)
        except (OverflowError, ValueError) as exc:
            raise type(exc)(f"{scale:g} makes {name}{args} too large: {exc}") from None
    return scale


@dataclass
class KernelTiming:
    kernel: str
    args: tuple
    python_s: float
    cython_s: float
    reference_s: float | None

    @property
    def speedup(self) -> float:
        return self.python_s / self.cython_s


def _same(a, b) -> bool:
    return bool((a == b).all()) if hasattr(a, "shape") else a == b


def time_kernels(repeat: int = 3, scale: float = 1.0,
                 progress: Callable[[str], None] | None = None) -> list[KernelTiming]:
    """Time every kernel in both implementations (and the C reference of count_primes).

    Raises RuntimeError if an implementation's answer differs from the pure-Python one:
    that is a bug to report, never a row of the table.
    """
    from gilstudy.kernels import cython as ckernels

    timings = []
    for name in kernels.NAMES:
        args = default_args(name, scale)
        candidates = {impl: (lambda f=kernels.get(name, impl): f(*args)) for impl in kernels.IMPLS}
        if name == "count_primes":
            candidates["reference"] = lambda: ckernels.count_primes_reference(*args)
        expected = kernels.get(name, "python")(*args)

        def check(impl, seconds, result, name=name, args=args, expected=expected):
            if not _same(result, expected):
                raise RuntimeError(f"{name}{args}: the {impl} result differs from python's")
            if progress:
                progress(f"{name} {impl}: {seconds:.4f} s")

        samples = interleaved(candidates, repeat, on_sample=check)
        timings.append(KernelTiming(
            kernel=name, args=args,
            python_s=samples["python"].median, cython_s=samples["cython"].median,
            reference_s=samples["reference"].median if "reference" in samples else None))
    return timings


def format_table(timings: list[KernelTiming]) -> str:
    """The timings as an aligned table, one row per kernel."""
    rows = [("kernel", "args", "python s", "cython s", "C ref s", "cython/C time",
             "cython/python speedup")]
    for t in timings:
        has_reference = t.reference_s is not None
        rows.append((t.kernel, ", ".join(map(str, t.args)), f"{t.python_s:.4f}",
                     f"{t.cython_s:.5f}",
                     f"{t.reference_s:.5f}" if has_reference else "-",
                     f"{t.cython_s / t.reference_s:.3f}x" if has_reference else "-",
                     f"{t.speedup:.1f}x"))
    return _format_rows(rows)


def main(repeat: int = 3, scale: float = 1.0, out: TextIO = sys.stdout, quiet: bool = False) -> int:
    """Print the kernel table; return the exit status: 2, with one line on stderr, for a
    scale that no kernel can run at."""
    try:
        check_scale(scale)
    except (TypeError, ValueError, OverflowError) as exc:
        print(f"gilstudy kernels: error: --scale: {exc}", file=sys.stderr)
        return 2
    facts = machine.describe()
    idle = machine.wait_for_idle_cpus(timeout_s=10.0)
    print(f"gilstudy kernels: one thread each, median of {repeat} interleaved runs", file=out)
    print(f"python {facts['python']} ({facts['interpreter']}, GIL "
          f"{'enabled' if facts['gil_enabled'] else 'disabled'}), {facts['cpu_model']}, "
          f"{facts['usable_cores']} usable cores; {idle.describe()}", file=out)
    progress = None if quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    print(format_table(time_kernels(repeat=repeat, scale=scale, progress=progress)), file=out)
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy kernels`` on the CLI's subparsers."""
    parser = add_command(
        subparsers, "kernels", help="time each kernel in Python and Cython on one thread",
        description="Time each kernel single-threaded in both implementations (interleaved, "
                    "median of --repeat runs) and print the Cython/Python speed ratio, with "
                    "the plain C reference for count_primes.")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="runs of each implementation; the median is shown (default 3)")
    parser.add_argument("--scale", type=positive_float, default=1.0,
                        help="multiply the default amount of work (default 1.0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(run=lambda args: main(repeat=args.repeat, scale=args.scale,
                                              quiet=args.quiet))
