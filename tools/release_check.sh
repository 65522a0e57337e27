#!/usr/bin/env bash
# make release-check: build the release as a user gets it and try it where a user would.
# Builds the sdist, then the wheel from that sdist (python -m build), checks that the sdist
# holds every file the extension is built from and that twine accepts both; then installs
# the wheel into a fresh venv in a temporary folder outside this checkout and, from there,
# runs the kernel table, a two-worker compare of the compiled rows, a script of the user's
# own running through gilstudy.Executor, and a Cython module that cimports
# gilstudy.kernels, built against the installed package.
#
# Usage: tools/release_check.sh PYTHON
#   PYTHON: an interpreter with build and the build requirements installed (the test
#   venv's); the fresh venvs (one for twine, one for the wheel) are made from it. Exits 1, after saying what failed, on the
#   first failure. Everything it makes is removed on exit.
set -euo pipefail

PY=${1:?usage: tools/release_check.sh PYTHON}
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gilstudy-release.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

say() { echo "release-check: $*"; }
fail() { echo "release-check: FAILED: $*" >&2; exit 1; }

# 1. The sdist, and the wheel built from it (not from the checkout), without isolation:
# the build requirements are those of PYTHON's environment (build checks they are there).
say "building the sdist and, from it, the wheel"
(cd "$CHECKOUT" && "$PY" -m build --no-isolation --outdir "$WORK/dist" .) \
    > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "python -m build"; }
sdists=("$WORK"/dist/gilstudy-*.tar.gz)
wheels=("$WORK"/dist/gilstudy-*.whl)
[ -f "${sdists[0]}" ] && [ -f "${wheels[0]}" ] || fail "python -m build made no sdist or no wheel"
sdist=${sdists[0]}
wheel=${wheels[0]}
say "built $(basename "$sdist") and $(basename "$wheel")"

listing=$(tar tzf "$sdist")
for needed in setup.py pyproject.toml README.md LICENSE \
              pyx/gilstudy/__init__.pxd pyx/gilstudy/kernels/__init__.pxd \
              pyx/gilstudy/kernels/_ckernels.pyx pyx/gilstudy/kernels/_ckernels.pxd \
              pyx/gilstudy/kernels/primes_ref.h pysrc/gilstudy/__init__.py; do
    grep -qx "gilstudy-[^/]*/$needed" <<<"$listing" || fail "the sdist lacks $needed"
done
say "the sdist holds the .pyx, .pxd and .h sources, setup.py, the README and the licence"

# twine in a venv of its own: it is no requirement of the test environment (one of its
# dependencies has no wheel for a free-threaded Python).
"$PY" -m venv "$WORK/twine"
"$WORK/twine/bin/python" -m pip install --quiet --disable-pip-version-check "twine>=5" \
    > "$WORK/twine.log" 2>&1 || { tail -40 "$WORK/twine.log"; fail "pip install twine"; }
"$WORK/twine/bin/twine" check --strict "$WORK"/dist/* || fail "twine check"

# 2. A fresh venv outside the checkout, with the wheel (and, for the cimport build, Cython
# and setuptools).
say "installing the wheel into a fresh venv in $WORK"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet --disable-pip-version-check "$wheel" "Cython>=3.1" \
    "setuptools>=68" > "$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log"; fail "pip install"; }
cd "$WORK"
where=$("$VPY" -c "import gilstudy; print(gilstudy.__file__)")
case "$where" in
    "$WORK"/venv/*) say "gilstudy imports from $where" ;;
    *) fail "gilstudy imports from $where, not from the fresh venv" ;;
esac

# 3. The smoke test, run from the temporary folder.
say "gilstudy kernels"
"$WORK/venv/bin/gilstudy" kernels --repeat 1 --scale 0.1 --quiet || fail "gilstudy kernels"

say "gilstudy compare of the compiled rows at 1 and 2 workers"
"$WORK/venv/bin/gilstudy" compare --models 'serial-cython,threads-cython,prange-cython' \
    --workers 1,2 --size 100000 --repeat 1 --min-time 0.01 --reruns 0 \
    --max-outside-load inf --idle-timeout 0 --no-footprint --quiet || fail "gilstudy compare"

say "a script's own function through gilstudy.Executor"
cat > "$WORK/myscript.py" <<'EOF'
import gilstudy


def square(n):
    return n * n


if __name__ == "__main__":
    with gilstudy.Executor("coprocess", max_workers=2) as pool:
        assert list(pool.map(square, range(1000))) == [n * n for n in range(1000)]
        print("Executor: 1000 squares from myscript.square on 2 coprocesses")
EOF
"$VPY" "$WORK/myscript.py" || fail "the Executor script"

say "a Cython module that cimports gilstudy.kernels, built against the installed package"
mkdir "$WORK/cimport"
cat > "$WORK/cimport/usercode.pyx" <<'EOF'
# cython: language_level=3
from gilstudy.kernels._ckernels cimport count_primes_c

def primes(long lo, long hi):
    cdef long found
    with nogil:
        found = count_primes_c(lo, hi)
    return found
EOF
cat > "$WORK/cimport/setup.py" <<'EOF'
from Cython.Build import cythonize
from setuptools import setup

from gilstudy import kernels

setup(ext_modules=cythonize(["usercode.pyx"], include_path=[kernels.get_include()], quiet=True),
      script_args=["build_ext", "--inplace"])
EOF
(cd "$WORK/cimport" && "$VPY" setup.py > build.log 2>&1) \
    || { tail -40 "$WORK/cimport/build.log"; fail "the cimport build"; }
answer=$(cd "$WORK/cimport" && "$VPY" -c "import usercode; print(usercode.primes(0, 1000))")
[ "$answer" = "168" ] || fail "usercode.primes(0, 1000) gave $answer, not 168"
say "usercode.primes(0, 1000) = 168 through the cimported kernel"

say "passed: the release builds, installs and runs outside the checkout"
