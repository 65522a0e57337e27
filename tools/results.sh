#!/usr/bin/env bash
# Regenerate the tracked result tables in docs/results/ on this machine: each file holds the
# commands that printed it and their output, verbatim. Run it on an idle machine, after
# `make test` (it uses .venv and .venv-3.13t):
#     bash tools/results.sh [compare|compare-all|examples|breakeven|freethreaded|interpreters|history]...
# With no argument it regenerates every file it knows. Each target takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

gilstudy=.venv/bin/gilstudy
ftpython=.venv-3.13t/bin/python3.13t
py315=.venv-3.15/bin/python
out=docs/results
mkdir -p "$out"
[ -x "$gilstudy" ] || { echo "results: $gilstudy is missing; run make test first" >&2; exit 1; }

# run FILE COMMAND...: append "## COMMAND" and the command's output to FILE: as it is when the
# command writes Markdown (--markdown: its tables render as tables), else in a code block whose
# four-backtick fence no line of the output can close.
run() {
    local file=$1 fence='````'
    shift
    echo "results: $*" >&2
    case " $* " in *" --markdown "*) fence= ;; esac
    {
        printf '\n## `%s`\n\n' "$*"
        [ -z "$fence" ] || printf '%stext\n' "$fence"
        "$@" 2>&1
        [ -z "$fence" ] || printf '%s\n' "$fence"
    } >>"$file"
}

header() {
    local file=$1 title=$2
    {
        printf '# %s\n\n' "$title"
        printf 'Measured with `bash tools/results.sh` on %s: %s, %s usable cores, gilstudy %s.\n' \
            "$(date -u +%Y-%m-%d)" \
            "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
            "$(.venv/bin/python -c 'from gilstudy import machine; print(machine.usable_cores())')" \
            "$(.venv/bin/python -c 'import gilstudy; print(gilstudy.__version__)')"
        printf 'Every command below printed what follows it; each waited for idle CPUs first and says\n'
        printf 'whether it got them.\n'
    } >"$file"
}

# The quick default (what `make run` runs), then a few focused runs.
compare() {
    local file=$out/compare-2core.md
    header "$file" "gilstudy compare on the 2-core development machine: the quick default"
    run "$file" "$gilstudy" compare --quiet --markdown --json "$out/compare-2core.json" \
        --plot "$out/compare-2core.png"
    run "$file" .venv/bin/python tools/check_scaling.py "$out/compare-2core.json" \
        --models threads-cython,coprocess-cython,prange-cython --min 1.75 || true
    run "$file" "$gilstudy" compare --quiet --markdown --kernel count_primes --size 4000000 \
        --models '*-cython' --workers 1,2
    run "$file" "$gilstudy" compare --quiet --markdown --kernel mandelbrot --size 2000 \
        --models '*-cython' --workers 1,2
    run "$file" "$gilstudy" compare --quiet --markdown --kernel countdown --items 20000 \
        --models 'coprocess-python,pool-python,joblib-python' --workers 2
}

# Every model (needs the mpi and dask extras: make run-all, or make test).
compare_all() {
    local file=$out/compare-all-2core.md
    header "$file" "gilstudy compare --models all on the 2-core development machine"
    run "$file" "$gilstudy" compare --quiet --markdown --details --models all \
        --json "$out/compare-all-2core.json" --plot "$out/compare-all-2core.png"
    run "$file" .venv/bin/python tools/check_scaling.py "$out/compare-all-2core.json" \
        --models threads-cython,coprocess-cython,prange-cython,mpi-cython --min 1.75 || true
}

# The three examples of examples/, run from there as a user would (the current directory is
# where --function and --inputs are looked up).
examples() {
    local file=$out/compare-examples-2core.md
    header "$file" "gilstudy compare on the user's own functions (examples/)"
    (
        cd examples
        export PATH="$PWD/../.venv/bin:$PATH"
        run "../$file" gilstudy compare --quiet --markdown --workers 1,2 --repeat 3 \
            --function pure_python:longest_chain --inputs pure_python:INPUTS
        run "../$file" gilstudy compare --quiet --markdown --workers 1,2 --repeat 3 \
            --function numpy_heavy:distinct_python --nogil numpy_heavy:distinct_numpy \
            --inputs numpy_heavy:INPUTS
        run "../$file" gilstudy compare --quiet --markdown --workers 1,2 --repeat 3 \
            --function hashing:sha256_hex --inputs hashing:make_inputs
    )
}

breakeven() {
    local file=$out/breakeven-2core.md
    header "$file" "gilstudy breakeven on the 2-core development machine"
    run "$file" "$gilstudy" breakeven --quiet --markdown --json "$out/breakeven-2core.json" \
        --plot "$out/breakeven-2core.png"
}

freethreaded() {
    [ -x "$ftpython" ] || { echo "results: $ftpython is missing; run make ftpython" >&2; exit 1; }
    local file=$out/compare-freethreaded-2core.md
    header "$file" "gilstudy compare under CPython 3.11 and the free-threaded 3.13t"
    run "$file" "$gilstudy" compare --quiet --markdown --kernel count_primes --workers 1,2 \
        --repeat 3 --python "$ftpython"
    run "$file" "$gilstudy" compare --quiet --markdown --kernel mandelbrot --workers 1,2 \
        --repeat 3 --python "$ftpython"
}

# Subinterpreters (CPython 3.15 from make py315) beside the same models under 3.11 and the
# free-threaded 3.13t, with the start-up and memory table of each interpreter.
interpreters() {
    [ -x "$ftpython" ] || { echo "results: $ftpython is missing; run make ftpython" >&2; exit 1; }
    [ -x "$py315" ] || { echo "results: $py315 is missing; run make py315" >&2; exit 1; }
    local file=$out/compare-interpreters-2core.md
    header "$file" "Subinterpreters under CPython 3.15 beside 3.11 and the free-threaded 3.13t"
    run "$file" "$gilstudy" compare --quiet --markdown --kernel count_primes --workers 1,2 \
        --repeat 3 --models 'serial-*,threads-*,coprocess-*,interp*' \
        --python "$ftpython,$py315" --json "$out/compare-interpreters-2core.json"
    run "$file" .venv/bin/python tools/check_scaling.py "$out/compare-interpreters-2core.json" \
        --models interp-python@3.15,interp-cython@3.15 --min 1.8 || true
}

# The race and the convoy under every CPython on this machine (pyenv's 2.7 to 3.13 and the
# free-threaded build), then both as one table. The JSON goes to the ignored results/.
history() {
    [ -x "$ftpython" ] || { echo "results: $ftpython is missing; run make ftpython" >&2; exit 1; }
    local file=$out/history-2core.md
    mkdir -p results
    header "$file" "The race and the convoy from Python 2.7 to the free-threaded 3.13t"
    run "$file" "$gilstudy" experiment race --quiet --repeat 3 --python all \
        --json results/history-race.json
    run "$file" "$gilstudy" experiment convoy --quiet --seconds 2 --python all \
        --json results/history-convoy.json
    run "$file" "$gilstudy" experiment history results/history-race.json \
        results/history-convoy.json
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(compare compare-all examples breakeven freethreaded interpreters
                                    history)
for target in "${targets[@]}"; do
    case "$target" in
        compare | examples | breakeven | freethreaded | interpreters | history) "$target" ;;
        compare-all) compare_all ;;
        *) echo "results: unknown target $target (compare, compare-all, examples, breakeven," \
                "freethreaded, interpreters, history)" >&2
           exit 2 ;;
    esac
done
