"""`gilstudy kernels`: every kernel in both implementations (and in Numba where it loads),
single-threaded, on one default size, timed interleaved; the table shows how much the
compiled kernels gain over Python, and what Numba's compilation costs first.
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
from gilstudy.timing import interleaved, time_call

__all__ = ["default_args", "check_scale", "KernelTiming", "time_kernels", "format_table", "main",
           "add_subcommand", "numba_unavailable_reason"]

# The argument checks of each kernel, so that a scale is refused before any timing starts.
_VALIDATE = {
    "countdown": _args.countdown_args,
    "count_primes": _args.count_primes_args,
    "mandelbrot": lambda width, height, max_iter: _args.mandelbrot_args(width, height, max_iter,
                                                                        0, None),
}


# Arguments that do almost no work: a first call on them is Numba's compilation alone.
_SMALLEST = {"countdown": (0,), "count_primes": (0, 0), "mandelbrot": (1, 1, 1)}


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
    """One kernel's row: the median seconds of each implementation; ``numba_s`` and
    ``numba_compile_s`` (its first call on almost no work: the compilation, 0 when this
    process had compiled it already) are None where numba cannot load."""

    kernel: str
    args: tuple
    python_s: float
    cython_s: float
    reference_s: float | None
    numba_s: float | None = None
    numba_compile_s: float | None = None

    @property
    def speedup(self) -> float:
        return self.python_s / self.cython_s

    @property
    def numba_speedup(self) -> float | None:
        return None if self.numba_s is None else self.python_s / self.numba_s


def _same(a, b) -> bool:
    return bool((a == b).all()) if hasattr(a, "shape") else a == b


def time_kernels(repeat: int = 3, scale: float = 1.0,
                 progress: Callable[[str], None] | None = None) -> list[KernelTiming]:
    """Time every kernel in both implementations (and the C reference of count_primes),
    and in Numba where it loads (numba_unavailable_reason() says why not), after timing
    its compilation apart.

    Raises RuntimeError if an implementation's answer differs from the pure-Python one:
    that is a bug to report, never a row of the table.
    """
    from gilstudy.kernels import cython as ckernels

    impls = kernels.IMPLS + (() if numba_unavailable_reason() else ("numba",))
    timings = []
    for name in kernels.NAMES:
        args = default_args(name, scale)
        compile_s = None
        if "numba" in impls:
            compile_s, _ = time_call(lambda: kernels.get(name, "numba")(*_SMALLEST[name]))
            if progress:
                progress(f"{name} numba: compiled in {compile_s:.3f} s")
        candidates = {impl: (lambda f=kernels.get(name, impl): f(*args)) for impl in impls}
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
            reference_s=samples["reference"].median if "reference" in samples else None,
            numba_s=samples["numba"].median if "numba" in samples else None,
            numba_compile_s=compile_s))
    return timings


def numba_unavailable_reason() -> str | None:
    """None when the Numba kernels load here, else why not (kernels.impl_unavailable_reason)."""
    return kernels.impl_unavailable_reason("numba")


def format_table(timings: list[KernelTiming]) -> str:
    """The timings as an aligned table, one row per kernel ("-" where there is no figure:
    no C reference, no numba)."""
    rows = [("kernel", "args", "python s", "cython s", "numba s", "C ref s", "cython/C time",
             "numba compile s", "numba/python speedup", "cython/python speedup")]
    for t in timings:
        has_reference = t.reference_s is not None
        has_numba = t.numba_s is not None
        rows.append((t.kernel, ", ".join(map(str, t.args)), f"{t.python_s:.4f}",
                     f"{t.cython_s:.5f}",
                     f"{t.numba_s:.5f}" if has_numba else "-",
                     f"{t.reference_s:.5f}" if has_reference else "-",
                     f"{t.cython_s / t.reference_s:.3f}x" if has_reference else "-",
                     f"{t.numba_compile_s:.3f}" if has_numba else "-",
                     f"{t.numba_speedup:.1f}x" if has_numba else "-",
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
    numba_reason = numba_unavailable_reason()
    if numba_reason:
        print(f"numba: no figures ({numba_reason})", file=out)
    else:
        from gilstudy.kernels import numba as numba_kernels

        print(f"numba {numba_kernels.build_info()['numba_version']}: numba compile s is its "
              "first call, on almost no work, in this process (no on-disk cache); numba s "
              "excludes it", file=out)
    progress = None if quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    print(format_table(time_kernels(repeat=repeat, scale=scale, progress=progress)), file=out)
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy kernels`` on the CLI's subparsers."""
    parser = add_command(
        subparsers, "kernels", help="time each kernel in Python, Cython and Numba on one thread",
        description="Time each kernel single-threaded in both implementations, and in Numba "
                    "where it is installed (gilstudy[numba]), interleaved, median of --repeat "
                    "runs; print the Cython/Python and Numba/Python speed ratios, with the "
                    "plain C reference for count_primes and Numba's compile time.")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="runs of each implementation; the median is shown (default 3)")
    parser.add_argument("--scale", type=positive_float, default=1.0,
                        help="multiply the default amount of work (default 1.0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(run=lambda args: main(repeat=args.repeat, scale=args.scale,
                                              quiet=args.quiet))
