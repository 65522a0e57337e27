# gilstudy: `make run` sets everything up and runs the main job; `make test` sets everything
# up and runs the tests. Both need only python3 (3.11+) and a C compiler.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := pyproject.toml setup.py $(shell find pyx pysrc -type f \( -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.h' \) 2>/dev/null)
PYTEST_ARGS ?=
# The free-threaded CPython 3.13 (built once per machine, cached in ~/.cache/gilstudy) and this
# checkout's venv for it; `make ftpython` makes both and prints the python's path.
FTPYTHON := $(CURDIR)/.venv-3.13t/bin/python3.13t
# CPython 3.15 with the GIL (and concurrent.interpreters) from Debian's unstable suite, in a
# folder made once per machine (cached in ~/.cache/gilstudy), with this checkout's venv in it;
# `make py315` makes both and prints the wrapper that runs it (root only: it chroots).
PY315 := $(CURDIR)/.venv-3.15/bin/python

.PHONY: run run-all test bench docs ftpython clean release-check
.PHONY: py315 test-py315
# A comma, to write one inside an argument of $(call).
, := ,

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras; rebuilt whenever a source file changes. The default venv
# (with the GIL) gets the numba extra too; tools/ftpython.sh and tools/py315.sh install
# `test` alone (numba has no wheel for the free-threaded build), and those passes check that
# the numba-* models say why they cannot run.
$(VENV)/.installed-test: $(VENV)/bin/python $(SOURCES)
	$(PY) -m pip install --quiet ".[test,numba]"
	touch $@

# `make run` needs only the compare extra (joblib, matplotlib); `make run-all` adds the
# MPI, Dask and Numba extras for the models that use them.
$(VENV)/.installed-run: $(VENV)/bin/python $(SOURCES)
	$(PY) -m pip install --quiet ".[compare]"
	touch $@

$(VENV)/.installed-run-all: $(VENV)/bin/python $(SOURCES)
	$(PY) -m pip install --quiet ".[compare,mpi,dask,numba]"
	touch $@

# The main job: the single-thread kernel table, then the quick set of execution models side
# by side, the answer first (about a minute of compare on an idle 2-core machine).
run: $(VENV)/.installed-run
	mkdir -p results
	$(VENV)/bin/gilstudy kernels
	$(VENV)/bin/gilstudy compare --json results/compare.json --plot results/compare.png

# The documentation site, into docs/_build/html (git-ignored), with warnings as errors and
# every cross-reference checked; the test extra brings Sphinx, and make test builds it too
# (tests/test_docs.py).
docs: $(VENV)/.installed-test
	$(PY) -m sphinx -W --keep-going -n -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

# Every model (subinterpreters where the interpreter has them, MPI ranks, MPIPoolExecutor,
# Dask): about 5 minutes of compare on 2 cores.
run-all: $(VENV)/.installed-run-all
	mkdir -p results
	$(VENV)/bin/gilstudy kernels
	$(VENV)/bin/gilstudy compare --models all --json results/compare-all.json \
	    --plot results/compare-all.png

ftpython:
	bash tools/ftpython.sh --venv $(CURDIR)/.venv-3.13t

py315:
	bash tools/py315.sh --venv $(CURDIR)/.venv-3.15

# The suite runs three times: the whole of it under the default interpreter (with the GIL),
# where tests marked `ftpython` also call into the free-threaded build; then, under the
# free-threaded build and under 3.15, every test but those marked `one_pass` (they check what
# does not change with the interpreter running pytest; pytest counts them as deselected).
# The tests marked `netns` make test hosts as network namespaces (root and iproute2):
# tools/netns.sh installs iproute2 where it is missing and apt-get can; where they cannot be
# made here (it exits 3), every pass deselects them and the last line of make test says so.
ONE_PASS := -m "not one_pass"
test: $(VENV)/.installed-test ftpython
	@status=0; bash tools/netns.sh || status=$$?; [ $$status -eq 0 ] || [ $$status -eq 3 ] || exit $$status
	GILSTUDY_FTPYTHON=$(FTPYTHON) $(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory release-check
	GILSTUDY_FTPYTHON=$(FTPYTHON) $(FTPYTHON) -m pytest $(ONE_PASS) $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-py315
	@bash tools/netns.sh --check >/dev/null 2>&1 || echo "make test: the tests marked netns were NOT run (tools/netns.sh said why above), so $$($(PY) -m pytest -q --collect-only -m netns $(PYTEST_ARGS) | grep -c '::') tests marked netns ran under no interpreter"

# The release as a user gets it: the sdist, the wheel built from it, twine check, then the
# wheel in a fresh venv outside the checkout running the kernel table, a two-worker compare,
# a script through gilstudy.Executor and a cimport build (tools/release_check.sh; 1-2 min).
release-check: $(VENV)/.installed-test
	bash tools/release_check.sh $(abspath $(PY))

# $(call under-py315,NOT-RUN-MESSAGE,COMMAND): make 3.15 (tools/py315.sh) and run COMMAND
# under it. Where 3.15 cannot be made here (not root, no debootstrap, no network: py315.sh
# exits 3), print the message instead; any other failure fails.
define under-py315
	@status=0; bash tools/py315.sh --venv $(CURDIR)/.venv-3.15 || status=$$?; \
	if [ $$status -eq 0 ]; then \
	    echo '$(2)'; $(2); \
	elif [ $$status -eq 3 ]; then \
	    echo "$(1)"; \
	else \
	    exit $$status; \
	fi
endef

# The third pass, under 3.15, where the tests marked `subinterpreters` run too; where 3.15
# cannot be made, the last line says so and counts the tests that then ran nowhere.
test-py315: $(VENV)/.installed-test
	$(call under-py315,make test: the 3.15 pass was NOT run (tools/py315.sh said why above)$(,) so $$($(PY) -m pytest -q --collect-only -m subinterpreters $(PYTEST_ARGS) | grep -c '::') tests marked subinterpreters ran under no interpreter,$(PY315) -m pytest $(ONE_PASS) $(PYTEST_ARGS))

# bench_interpreters.py needs Python 3.14+: it runs under 3.15, the others under $(PY).
bench: $(VENV)/.installed-test
	$(PY) -m pytest bench/ --ignore=bench/bench_interpreters.py --benchmark-only --benchmark-group-by=group --benchmark-autosave $(PYTEST_ARGS)
	$(call under-py315,make bench: bench/bench_interpreters.py was NOT run (tools/py315.sh said why above),$(PY315) -m pytest bench/bench_interpreters.py --benchmark-only --benchmark-group-by=group --benchmark-autosave $(PYTEST_ARGS))

clean:
	rm -rf build dist pysrc/*.egg-info $(VENV) .venv-3.13t .venv-3.15 .pytest_cache .benchmarks results docs/_build docs/api/modules
	find pyx -name '*.c' -delete
