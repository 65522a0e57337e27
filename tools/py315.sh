#!/usr/bin/env bash
# Provide CPython 3.15 (with the GIL, and with concurrent.interpreters) from Debian's unstable
# suite: a folder made once per machine with debootstrap, cached under ~/.cache/gilstudy/, a
# venv of this checkout inside it, and a wrapper, <checkout>/.venv-3.15/bin/python, that runs
# that venv's python in the folder as if it were a local interpreter. `make py315` runs this.
#
# Debian serves python3.15 binaries in sid but they need a newer libc than a stable machine
# has, so they run in their own root: the wrapper enters a private mount namespace (nothing
# stays mounted after it exits), binds /proc, /sys, /dev (with /dev/shm), /tmp, the checkout,
# the venv and the caller's working directory into the folder, and chroots there. Arguments,
# standard streams, the working directory and the exit status pass through. That needs root.
#
# Exit status: 0 ready (the last line names the wrapper); 3 when it cannot be made on this
# machine (not root, no unshare, no debootstrap, no archive or no network), with the reason;
# 1 for any other failure. `make test` runs its third pass only after a 0.

set -euo pipefail

usage() {
    cat <<'EOF'
usage: tools/py315.sh [--rebuild] [--venv DIR]

Make (or reuse) the Debian sid folder with CPython 3.15 and a venv with this checkout's
gilstudy inside it; print the wrapper to run it with.

  --rebuild   make the folder again even if the cached one works
  --venv DIR  where the venv and its wrapper go (default: <checkout>/.venv-3.15)

Environment: GILSTUDY_CACHE (default ~/.cache/gilstudy) holds the folder.
EOF
}

die() {
    echo "py315: error: $*" >&2
    exit 1
}

# Not an error in the project: this machine cannot run the folder.
unavailable() {
    echo "py315: unavailable here: $*" >&2
    exit 3
}

say() {
    echo "py315: $*"
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# debian_archive_uri: the Debian archive this machine uses, read from its apt configuration
source "$REPO/tools/debian_archive.sh"
CACHE=${GILSTUDY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gilstudy}
ROOT=$CACHE/debian-sid-py315
VENV=$REPO/.venv-3.15
REBUILD=0
# The interpreter, what building gilstudy needs, and the tools the test suite calls:
# pgrep (procps: joblib's loky ends its workers with it) and git (the README link test).
PACKAGES=python3.15,python3.15-venv,python3.15-dev,gcc,libc6-dev,procps,git

while [[ $# -gt 0 ]]; do
    case $1 in
        --rebuild) REBUILD=1; shift ;;
        --venv) [[ $# -ge 2 ]] || die "--venv needs a directory"
                VENV=$(realpath -m -- "$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[[ $(id -u) -eq 0 ]] || unavailable "running CPython 3.15 from a Debian sid folder needs root (chroot and bind mounts); run make py315 (or make test) as root"
command -v unshare >/dev/null && command -v mount >/dev/null \
    || unavailable "unshare and mount (util-linux) are needed to enter the folder"

mkdir -p "$CACHE"
# One run at a time per cache: CI and a developer may run this together.
exec 9>"$CACHE/py315.lock"
if ! flock -n 9; then
    say "waiting for another py315 run to finish (lock $CACHE/py315.lock)"
    flock 9
fi

start=$(date +%s)

# ---- the wrappers ------------------------------------------------------------------------

# $VENV/bin/in-sid COMMAND [ARG...] runs COMMAND inside the folder; $VENV/bin/python runs the
# venv's python there. Paths are the same inside and outside, so a script, a file argument or
# sys.path entry under the checkout, the venv, /tmp or the working directory means the same.
write_wrappers() {
    local git_dir
    # A git worktree keeps its repository outside the checkout: bind that too, so git works.
    git_dir=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    [[ -n $git_dir && $git_dir != "$REPO"/* ]] || git_dir=
    mkdir -p "$VENV/bin"
    cat > "$VENV/bin/in-sid" <<EOF
#!/usr/bin/env bash
# Made by tools/py315.sh: run COMMAND [ARG...] inside the Debian sid folder $ROOT,
# in a private mount namespace, with this process's arguments, streams, working directory
# and exit status. Needs root.
if [[ \$(id -u) -ne 0 ]]; then
    echo "\$0: entering $ROOT needs root (chroot and bind mounts)" >&2
    exit 126
fi
exec unshare --mount --propagation private -- /bin/bash -c '
    set -e
    root=\$1 cwd=\$PWD
    shift
    mount --rbind /proc "\$root/proc"
    mount --rbind /sys "\$root/sys"
    mount --rbind /dev "\$root/dev"
    bound=(/tmp "$REPO" "$VENV")
    inside=0
    for dir in "\${bound[@]}"; do
        [[ \$cwd == "\$dir" || \$cwd == "\$dir"/* ]] && inside=1
    done
    [[ \$inside == 1 || \$cwd == / ]] || bound+=("\$cwd")
    for dir in "\${bound[@]}"; do
        mkdir -p "\$root\$dir"
        mount --bind "\$dir" "\$root\$dir"
    done
    for dir in ${git_dir:+"$git_dir"}; do
        mkdir -p "\$root\$dir"
        mount --bind -o ro "\$dir" "\$root\$dir"
    done
    # The name resolution and trusted certificates of this machine, so that pip inside reaches
    # the index its pip configuration names, through whatever proxy it trusts.
    if [[ -f /etc/resolv.conf ]]; then
        touch "\$root/etc/resolv.conf"
        mount --bind /etc/resolv.conf "\$root/etc/resolv.conf"
    fi
    if [[ -d /etc/ssl/certs ]]; then
        mkdir -p "\$root/etc/ssl/certs"
        mount --bind /etc/ssl/certs "\$root/etc/ssl/certs"
    fi
    exec unshare --root="\$root" --wd="\$cwd" -- "\$@"
' in-sid "$ROOT" "\$@"
EOF
    cat > "$VENV/bin/python" <<EOF
#!/usr/bin/env bash
# Made by tools/py315.sh: CPython 3.15 from Debian's unstable suite, with this checkout's
# gilstudy, run in the folder $ROOT (see in-sid beside this file). Needs root.
exec "$VENV/bin/in-sid" "$VENV/venv/bin/python3.15" "\$@"
EOF
    chmod +x "$VENV/bin/in-sid" "$VENV/bin/python"
    ln -sf python "$VENV/bin/python3"
    ln -sf python "$VENV/bin/python3.15"
}

in_sid() {
    (cd "$REPO" && "$VENV/bin/in-sid" "$@")
}

# ---- the folder: debootstrap of sid, made once per machine -------------------------------

folder_works() {
    [[ -f $ROOT/.gilstudy-complete && $(cat "$ROOT/.gilstudy-complete") == "$PACKAGES" ]] \
        && [[ -x $ROOT/usr/bin/python3.15 ]] \
        && in_sid /usr/bin/python3.15 -c '
import sys, concurrent.interpreters, venv, ensurepip
assert sys.version_info[:2] == (3, 15), sys.version
assert sys._is_gil_enabled()' >/dev/null 2>&1
}

install_debootstrap() {
    command -v debootstrap >/dev/null && return 0
    say "installing debootstrap"
    if ! apt-get install -y --no-upgrade debootstrap >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        apt-get install -y --no-upgrade debootstrap >/dev/null 2>&1 \
            || unavailable "debootstrap is not installed and apt-get could not install it"
    fi
}

make_folder() {
    install_debootstrap
    local uri work
    uri=$(debian_archive_uri)
    [[ -n $uri ]] || unavailable "no Debian archive found in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)"
    # Leftovers of an interrupted run; we hold the lock, so nobody else is using them.
    rm -rf "$CACHE"/debian-sid-py315.new.*
    work=$(mktemp -d "$CACHE/debian-sid-py315.new.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    say "making the Debian sid folder with $PACKAGES (about a minute; log in $work.log)"
    if ! debootstrap --variant=minbase --include="$PACKAGES" sid "$work/root" "$uri" \
            > "$work.log" 2>&1; then
        tail -5 "$work.log" >&2
        rm -rf "$work"
        unavailable "debootstrap could not make the sid folder from the machine's Debian archive (no network, or the archive lacks $PACKAGES); log: $work.log"
    fi
    echo "$PACKAGES" > "$work/root/.gilstudy-complete"
    # One rename puts the finished folder in place: an interrupted run never leaves half of one.
    rm -rf "$ROOT"
    mv "$work/root" "$ROOT"
    rm -rf "$work" "$work.log"
    trap - EXIT
}

write_wrappers
if [[ $REBUILD -eq 0 ]] && folder_works; then
    say "reusing the folder $ROOT"
else
    [[ -e $ROOT ]] && say "the folder $ROOT fails its checks or --rebuild given: making it again"
    make_folder
    folder_works || die "the new folder $ROOT does not run python3.15 with concurrent.interpreters"
    say "made $ROOT in $(( $(date +%s) - start )) s ($(du -sh "$ROOT" | cut -f1))"
fi

# ---- the venv: per checkout, gilstudy installed editable from this checkout --------------

# Reinstall when the folder or anything that shapes the compiled extension changed; .py
# edits need nothing, the install is editable.
build_inputs_hash() {
    {
        stat -c '%n %Y' "$ROOT/.gilstudy-complete"
        (cd "$REPO" && find setup.py pyproject.toml pyx -type f -print0 | sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -d' ' -f1
}

venv_python=$VENV/venv/bin/python3.15
stamp=$VENV/.gilstudy-install-stamp
want=$(build_inputs_hash)
if [[ -f $stamp ]] && [[ $(cat "$stamp") == "$want" ]] \
        && "$VENV/bin/python" -c 'import gilstudy.kernels.cython' >/dev/null 2>&1; then
    say "reusing venv $VENV/venv (gilstudy from $REPO, up to date)"
else
    pip_log=$VENV/pip.log
    : > "$pip_log"
    if ! in_sid "$venv_python" -c 'import sys; assert sys.prefix != sys.base_prefix' >/dev/null 2>&1; then
        rm -rf "$VENV/venv"
        say "creating venv $VENV/venv inside the folder"
        in_sid /usr/bin/python3.15 -m venv "$VENV/venv" || die "could not create the venv $VENV/venv"
    fi
    # The build requirements first (read from pyproject.toml), then an editable install
    # without build isolation, as for the free-threaded venv. Downloads come from the
    # index the machine's pip configuration names (its environment passes through).
    build_requires=$(in_sid "$venv_python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))' "$REPO/pyproject.toml") \
        || die "cannot read [build-system] requires from $REPO/pyproject.toml"
    mapfile -t build_requires <<< "$build_requires"
    if ! in_sid "$venv_python" -m pip install -q "${build_requires[@]}" >> "$pip_log" 2>&1; then
        tail -5 "$pip_log" >&2
        if grep -qE 'NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Could not fetch URL|No matching distribution' "$pip_log"; then
            unavailable "pip inside the folder could not download ${build_requires[*]} (no network?); log: $pip_log"
        fi
        die "pip could not install the build requirements (${build_requires[*]}) under $venv_python; log: $pip_log"
    fi
    say "installing gilstudy[test] from $REPO into $VENV/venv"
    in_sid "$venv_python" -m pip install -q --no-build-isolation -e "$REPO[test]" >> "$pip_log" 2>&1 \
        || { tail -20 "$pip_log" >&2; die "pip install -e '$REPO[test]' failed under $venv_python; log: $pip_log"; }
    echo "$want" > "$stamp"
fi

# What the whole exercise is for: a 3.15 with the GIL whose subinterpreters run the far-side
# loop and the compiled kernels.
"$VENV/bin/python" -c '
import sys
from gilstudy import Collect, subinterpreter
from gilstudy.kernels.work import KernelConsumer
assert sys.version_info[:2] == (3, 15), sys.version
assert sys._is_gil_enabled()
results = Collect()
with subinterpreter(KernelConsumer, "count_primes", "cython", results=results) as worker:
    worker.send((0, (0, 100)))
assert results.items == [(0, 25)], results.items
' || die "gilstudy under $VENV/bin/python fails its checks (a subinterpreter running the Cython kernels)"

say "interpreter: $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])') in $ROOT"
say "ready in $(( $(date +%s) - start )) s"
echo "py315: $VENV/bin/python"
