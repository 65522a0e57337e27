#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (configure --disable-gil) once per machine, cached under
# ~/.cache/gilstudy/, and a virtual environment beside this checkout with gilstudy and its test
# dependencies installed from it. `make ftpython` runs this; a second run takes seconds.
#
# The source is the upstream tarball shipped in Debian's python3.13 source package, fetched
# with `apt-get source --download-only` through a private apt configuration (its own sources
# list, lists and cache), so the machine's apt setup is never changed. The archive address
# is read from the machine's own apt sources at run time.
#
# The last line of output names the venv's python, the one to run experiments and tests with:
#     ftpython: /path/to/checkout/.venv-3.13t/bin/python3.13t

set -euo pipefail

usage() {
    cat <<'EOF'
usage: tools/ftpython.sh [--source TARBALL] [--rebuild] [--venv DIR]

Build (or reuse) a free-threaded CPython 3.13 and a venv with this checkout's gilstudy.

  --source TARBALL  build from this upstream Python-3.13.x tarball instead of fetching
                    Debian's python3.13 source package
  --rebuild         rebuild the interpreter even if a cached one works
  --venv DIR        where to create the venv (default: <checkout>/.venv-3.13t)

Environment: GILSTUDY_CACHE (default ~/.cache/gilstudy) holds the interpreter, the
downloaded source and the private apt state.
EOF
}

die() {
    echo "ftpython: error: $*" >&2
    exit 1
}

say() {
    echo "ftpython: $*"
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# debian_archive_uri: the Debian archive this machine uses, read from its apt configuration
source "$REPO/tools/debian_archive.sh"
CACHE=${GILSTUDY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gilstudy}
PREFIX=$CACHE/cpython-3.13t
INTERP=$PREFIX/bin/python3.13t
VENV=$REPO/.venv-3.13t
SOURCE_TARBALL=
REBUILD=0
# numpy 2.5 ships no cp313t wheel and would build from source for many minutes.
NUMPY_PIN='numpy<2.5'
# Build dependencies that CPython needs for pip (ssl, zlib) and for a complete stdlib.
BUILD_DEPS=(build-essential pkg-config xz-utils libssl-dev zlib1g-dev libffi-dev libbz2-dev
            liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev)
# Stdlib modules that must import in the finished interpreter: a build missing one of them
# is broken for our purposes (pip needs ssl and zlib; numpy's tests and ours need the rest).
REQUIRED_MODULES=ssl,zlib,ctypes,bz2,lzma,sqlite3,_decimal,readline,uuid,hashlib

while [[ $# -gt 0 ]]; do
    case $1 in
        --source) [[ $# -ge 2 ]] || die "--source needs a tarball path"
                  SOURCE_TARBALL=$(realpath -e -- "$2" 2>/dev/null) || die "--source: no such file: $2"
                  shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        --venv) [[ $# -ge 2 ]] || die "--venv needs a directory"
                VENV=$(realpath -m -- "$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

mkdir -p "$CACHE"
# One build at a time per cache: CI and a developer may run this together.
exec 9>"$CACHE/ftpython.lock"
if ! flock -n 9; then
    say "waiting for another ftpython run to finish (lock $CACHE/ftpython.lock)"
    flock 9
fi

interpreter_works() {
    [[ -x $INTERP ]] && "$INTERP" - "$REQUIRED_MODULES" >/dev/null 2>&1 <<'EOF'
import importlib, sys
assert sys.version_info[:2] == (3, 13)
assert not sys._is_gil_enabled()
for name in sys.argv[1].split(","):
    importlib.import_module(name)
EOF
}

# ---- build dependencies ------------------------------------------------------------------

install_build_deps() {
    local missing=() pkg
    for pkg in "${BUILD_DEPS[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    say "installing missing build dependencies: ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "missing build dependencies ${missing[*]}; install them as root (apt-get install ${missing[*]})"
        sudo=(sudo)
    fi
    if ! "${sudo[@]}" apt-get install -y --no-upgrade "${missing[@]}"; then
        "${sudo[@]}" apt-get update || true
        "${sudo[@]}" apt-get install -y --no-upgrade "${missing[@]}" \
            || die "could not install build dependencies: ${missing[*]}"
    fi
}

# ---- source: Debian's python3.13 source package through a private apt configuration ------

fetch_source() {
    local dest=$1 apt_dir=$CACHE/apt uri keyring versions version
    uri=$(debian_archive_uri)
    [[ -n $uri ]] || die "no Debian archive found in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/); pass --source Python-3.13.x.tar.xz instead"
    mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,state}
    : > "$apt_dir/status"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    local signed=""
    [[ -r $keyring ]] && signed="[signed-by=$keyring] "
    # Debian 12 has no python3.13; trixie and unstable do. testing follows the next release.
    {
        echo "deb-src ${signed}${uri} trixie main"
        echo "deb-src ${signed}${uri} testing main"
        echo "deb-src ${signed}${uri} sid main"
    } > "$apt_dir/sources.list"
    local apt_opts=(
        -o "Dir::State=$apt_dir/state"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::State::status=$apt_dir/status"
        -o "Dir::Cache=$apt_dir/cache"
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::Etc::Preferences=/dev/null"
        -o "Dir::Etc::PreferencesParts=/dev/null"
        -o "APT::Sandbox::User=root"
    )
    say "reading python3.13 source versions (private apt state in $apt_dir)"
    if ! apt-get "${apt_opts[@]}" -q update > "$apt_dir/update.log" 2>&1; then
        say "apt-get update reported errors (continuing with what it fetched):"
        grep -E '^(E|W):' "$apt_dir/update.log" >&2 || tail -5 "$apt_dir/update.log" >&2
    fi
    versions=$(apt-cache "${apt_opts[@]}" showsrc python3.13 2>/dev/null \
               | awk '$1 == "Package:" { p = $2 } $1 == "Version:" && p == "python3.13" { print $2 }' \
               | sort -u)
    [[ -n $versions ]] || die "the Debian archive at $uri lists no python3.13 source package in trixie, testing or sid (see $apt_dir/update.log); pass --source Python-3.13.x.tar.xz instead"
    # Newest first, by Debian version ordering. An index can list versions the archive has
    # already dropped, so try each until a download succeeds.
    local sorted=() v i j
    for v in $versions; do sorted+=("$v"); done
    for ((i = 0; i < ${#sorted[@]}; i++)); do
        for ((j = i + 1; j < ${#sorted[@]}; j++)); do
            if dpkg --compare-versions "${sorted[j]}" gt "${sorted[i]}"; then
                v=${sorted[i]}; sorted[i]=${sorted[j]}; sorted[j]=$v
            fi
        done
    done
    mkdir -p "$dest"
    for version in "${sorted[@]}"; do
        say "fetching python3.13=$version source"
        rm -f "$dest"/python3.13_*
        if (cd "$dest" && apt-get "${apt_opts[@]}" -q source --download-only "python3.13=$version") \
                > "$dest/fetch.log" 2>&1 \
                && compgen -G "$dest/python3.13_*.orig.tar.xz" >/dev/null; then
            SOURCE_TARBALL=$(compgen -G "$dest/python3.13_*.orig.tar.xz" | head -1)
            say "got $(basename "$SOURCE_TARBALL") (Debian $version)"
            return 0
        fi
        say "python3.13=$version is listed but not served: $(grep -m1 -E '^E:' "$dest/fetch.log" || echo 'download failed')"
    done
    die "no listed python3.13 source version could be downloaded (tried: ${sorted[*]}); see $dest/fetch.log"
}

# ---- the interpreter ---------------------------------------------------------------------

build_interpreter() {
    install_build_deps
    # Leftovers of an interrupted run; we hold the lock, so nobody else is using them.
    rm -rf "$CACHE"/build.*
    WORK=$(mktemp -d "$CACHE/build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    local work=$WORK
    if [[ -z $SOURCE_TARBALL ]]; then
        fetch_source "$work/download"
    fi
    say "unpacking $(basename "$SOURCE_TARBALL")"
    mkdir -p "$work/src"
    tar -xf "$SOURCE_TARBALL" -C "$work/src" --strip-components=1
    grep -qsE 'define PY_VERSION +"3\.13\.' "$work/src/Include/patchlevel.h" \
        || die "$SOURCE_TARBALL is not a CPython 3.13 source tarball"
    local jobs
    jobs=$(nproc)
    say "configuring (--disable-gil, prefix $PREFIX)"
    # No --enable-optimizations/LTO: PGO would triple the build time for a few percent.
    # --disable-test-modules skips installing CPython's own test suite.
    (cd "$work/src" && ./configure --prefix="$PREFIX" --disable-gil --with-ensurepip=no \
        --disable-test-modules > "$work/configure.log" 2>&1) \
        || { tail -30 "$work/configure.log" >&2; die "configure failed (log above)"; }
    say "compiling with make -j$jobs (a few minutes)"
    (cd "$work/src" && make -j"$jobs" > "$work/make.log" 2>&1) \
        || { tail -40 "$work/make.log" >&2; die "make failed (log above)"; }
    # Stage the install in a temporary root, then move it into place with one rename, so an
    # interrupted run never leaves a half-installed interpreter at $PREFIX.
    (cd "$work/src" && make install DESTDIR="$work/stage" > "$work/install.log" 2>&1) \
        || { tail -40 "$work/install.log" >&2; die "make install failed (log above)"; }
    local staged=$work/stage$PREFIX
    [[ -x $staged/bin/python3.13t ]] || die "make install produced no $staged/bin/python3.13t"
    if [[ -e $PREFIX ]]; then
        mv "$PREFIX" "$work/old-prefix"
    fi
    mv "$staged" "$PREFIX"
    interpreter_works || die "the new interpreter at $INTERP fails its checks (GIL disabled, modules $REQUIRED_MODULES); see make.log in a rerun"
    rm -rf "$work"
    trap - EXIT
}

start=$(date +%s)
if [[ $REBUILD -eq 0 ]] && interpreter_works; then
    say "reusing cached interpreter $INTERP"
else
    [[ -e $INTERP ]] && say "cached interpreter at $PREFIX fails its checks or --rebuild given: rebuilding"
    build_interpreter
    say "built $INTERP in $(( $(date +%s) - start )) s"
fi

# ---- the venv: per checkout, gilstudy installed editable from this checkout --------------

# Reinstall when the interpreter or anything that shapes the compiled extension changed;
# .py edits need nothing, the install is editable.
build_inputs_hash() {
    {
        "$INTERP" -c 'import sys; print(sys.version)'
        stat -c '%n %Y' "$INTERP"
        (cd "$REPO" && find setup.py pyproject.toml pyx -type f -print0 | sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -d' ' -f1
}

venv_python=$VENV/bin/python3.13t
stamp=$VENV/.gilstudy-install-stamp
want=$(build_inputs_hash)
if [[ -x $venv_python ]] && [[ -f $stamp ]] && [[ $(cat "$stamp") == "$want" ]] \
        && "$venv_python" -c 'import sys, gilstudy.kernels.cython; assert not sys._is_gil_enabled()' 2>/dev/null; then
    say "reusing venv $VENV (gilstudy from $REPO, up to date)"
else
    if ! "$VENV/bin/python3.13t" -c 'import sys; assert sys.prefix != sys.base_prefix' >/dev/null 2>&1 \
            || [[ $("$VENV/bin/python3.13t" -c 'import sys; print(sys._base_executable)' 2>/dev/null) != "$INTERP" ]]; then
        say "creating venv $VENV"
        rm -rf "$VENV"
        "$INTERP" -m venv "$VENV" || die "could not create the venv $VENV"
    fi
    say "installing gilstudy[test] from $REPO into $VENV"
    # Few packages ship cp313t wheels yet: --prefer-binary takes an older wheel over a newer
    # sdist that would need a compiler toolchain (numpy, or Rust for some). numpy is pinned
    # through a constraints file, and the build runs without pip's isolated build environment,
    # whose own numpy no constraints file reaches in recent pip: the build requirements (read
    # from pyproject.toml) go into the venv first, under the same pin.
    constraints=$VENV/constraints.txt
    echo "$NUMPY_PIN" > "$constraints"
    build_requires=$("$venv_python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))' "$REPO/pyproject.toml") \
        || die "cannot read [build-system] requires from $REPO/pyproject.toml"
    mapfile -t build_requires <<< "$build_requires"
    "$venv_python" -m pip install -q --prefer-binary -c "$constraints" "${build_requires[@]}" \
        || die "pip could not install the build requirements (${build_requires[*]}) under $venv_python"
    "$venv_python" -m pip install -q --prefer-binary -c "$constraints" --no-build-isolation -e "$REPO[test]" \
        || die "pip install -e '$REPO[test]' failed under $venv_python"
    echo "$want" > "$stamp"
fi

# The checks the whole exercise is for: the GIL stays off, even after importing the
# compiled kernels (an extension not declared free-threading compatible would re-enable it).
"$INTERP" -c 'import sys; assert not sys._is_gil_enabled()' \
    || die "$INTERP runs with the GIL enabled"
"$venv_python" -c '
import sys
import gilstudy.kernels.cython as k
assert k.count_primes(0, 100) == 25
assert not sys._is_gil_enabled(), "importing gilstudy.kernels.cython re-enabled the GIL"
' || die "gilstudy's Cython kernels under $venv_python fail or re-enable the GIL"

say "interpreter: $INTERP"
say "ready in $(( $(date +%s) - start )) s; GIL disabled, also after importing gilstudy.kernels.cython"
echo "ftpython: $venv_python"
