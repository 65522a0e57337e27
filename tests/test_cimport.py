# Another Cython module can cimport the kernels' C-level functions from an installed gilstudy
# and call them inside its own nogil block.

import subprocess
import sys
import textwrap

import pytest

from gilstudy import kernels

USER_MODULE = textwrap.dedent("""
    # cython: language_level=3
    from gilstudy.kernels._ckernels cimport count_primes_c, countdown_c, mandelbrot_rows_c

    def primes_and_steps(long lo, long hi):
        cdef long primes, steps
        with nogil:
            primes = count_primes_c(lo, hi)
            steps = countdown_c(hi)
        return primes, steps

    def corner(long width, long height):
        cdef unsigned int pixel[1]
        with nogil:
            mandelbrot_rows_c(pixel, 1, height, 50, 0, 1)
        return pixel[0]
""")

SETUP = textwrap.dedent("""
    import sys
    from Cython.Build import cythonize
    from setuptools import setup
    setup(ext_modules=cythonize(["usercode.pyx"], include_path=[sys.argv.pop()], quiet=True),
          script_args=["build_ext", "--inplace"])
""")


@pytest.mark.timeout(240)
def test_a_cython_module_cimports_and_calls_the_kernels_without_the_gil(tmp_path):
    (tmp_path / "usercode.pyx").write_text(USER_MODULE)
    (tmp_path / "setup.py").write_text(SETUP)
    build = subprocess.run([sys.executable, "setup.py", kernels.get_include()], cwd=tmp_path,
                           capture_output=True, text=True, timeout=220)
    assert build.returncode == 0, build.stderr[-3000:]
    check = subprocess.run(
        [sys.executable, "-c",
         "import usercode; print(usercode.primes_and_steps(0, 1000), usercode.corner(1, 1))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["(168,", "1000)", "1"]


def test_get_include_points_at_the_pxd():
    import os

    pxd = os.path.join(kernels.get_include(), "gilstudy", "kernels", "_ckernels.pxd")
    with open(pxd) as f:
        assert "cdef long count_primes_c(long lo, long hi) noexcept nogil" in f.read()
