"""Build the Cython kernels of gilstudy.

Everything declarative lives in pyproject.toml; this file only describes the extension:
its sources in pyx/, optimisation flags, OpenMP when the compiler has it, and the build
facts that ``gilstudy.kernels.build_info()`` reports at run time.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import Cython
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
PYX = "pyx"

# -ffp-contract=off keeps every floating-point operation rounded on its own, so the compiled
# mandelbrot gives bit-for-bit the counts of the pure-Python twin even on FMA-capable targets.
BASE_CFLAGS = ["-O3", "-ffp-contract=off"]
OPENMP_FLAGS = ["-fopenmp"]


def compiler_command() -> str:
    return os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"


def compiler_version() -> str:
    """First line of ``CC --version`` (for instance 'gcc (Debian 12.2.0-14) 12.2.0')."""
    try:
        done = subprocess.run([*compiler_command().split(), "--version"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return compiler_command()
    lines = done.stdout.splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else compiler_command()


def compiler_has_openmp() -> bool:
    """Compile and link a tiny OpenMP program; True only when both steps succeed."""
    if os.environ.get("GILSTUDY_NO_OPENMP"):
        return False
    source = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    cc = compiler_command().split()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text(source)
        try:
            done = subprocess.run(
                [*cc, *OPENMP_FLAGS, str(src), "-o", str(Path(tmp, "probe"))],
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0


def c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


HAS_OPENMP = compiler_has_openmp()
CFLAGS = BASE_CFLAGS + (OPENMP_FLAGS if HAS_OPENMP else [])
LDFLAGS = OPENMP_FLAGS if HAS_OPENMP else []
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "freethreading_compatible": True,
    # Loads in isolated subinterpreters, each with its own GIL (PEP 684). Cython emits the
    # Py_mod_multiple_interpreters slot only with module state (CYTHON_USE_MODULE_STATE
    # below); the free-threaded build's Py_mod_gil slot is independent of it.
    "subinterpreters_compatible": "own_gil",
}

kernels = Extension(
    "gilstudy.kernels._ckernels",
    sources=[f"{PYX}/gilstudy/kernels/_ckernels.pyx"],
    include_dirs=[f"{PYX}/gilstudy/kernels"],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
    define_macros=[
        ("GILSTUDY_CYTHON_VERSION", c_string(Cython.__version__)),
        ("GILSTUDY_COMPILER", c_string(compiler_version())),
        ("GILSTUDY_CFLAGS", c_string(" ".join(CFLAGS))),
        ("GILSTUDY_FREETHREADING_COMPATIBLE", "1" if DIRECTIVES["freethreading_compatible"] else "0"),
        ("GILSTUDY_SUBINTERPRETERS_COMPATIBLE", c_string(DIRECTIVES["subinterpreters_compatible"])),
        ("CYTHON_USE_MODULE_STATE", "1"),
    ],
)


class build_py_with_pxd(build_py):
    """Install the .pxd files from pyx/ beside the compiled module, so other Cython code can
    ``cimport gilstudy.kernels._ckernels`` against an installed gilstudy."""

    def run(self):
        super().run()
        for pxd in Path(PYX).rglob("*.pxd"):
            target = Path(self.build_lib, pxd.relative_to(PYX))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pxd, target)


setup(
    ext_modules=cythonize(
        [kernels],
        include_path=[PYX],
        compiler_directives=DIRECTIVES,
        quiet=True,
    ),
    cmdclass={"build_py": build_py_with_pxd},
)
