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

.PHONY: run test bench ftpython clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras; rebuilt whenever a source file changes.
$(VENV)/.installed-test: $(VENV)/bin/python $(SOURCES)
	$(PY) -m pip install --quiet ".[test]"
	touch $@

$(VENV)/.installed-run: $(VENV)/bin/python $(SOURCES)
	$(PY) -m pip install --quiet ".[compare,mpi]"
	touch $@

# The main job: the single-thread kernel table, then every execution model side by side.
run: $(VENV)/.installed-run
	mkdir -p results
	$(VENV)/bin/gilstudy kernels
	$(VENV)/bin/gilstudy compare --json results/compare.json --plot results/compare.png

ftpython:
	bash tools/ftpython.sh --venv $(CURDIR)/.venv-3.13t

# The whole suite runs twice: under the default interpreter (with the GIL) and under the
# free-threaded build, where tests marked `ftpython` also call into it from 3.11.
test: $(VENV)/.installed-test ftpython
	GILSTUDY_FTPYTHON=$(FTPYTHON) $(PY) -m pytest $(PYTEST_ARGS)
	GILSTUDY_FTPYTHON=$(FTPYTHON) $(FTPYTHON) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(PY) -m pytest bench/ --benchmark-only --benchmark-group-by=group --benchmark-autosave $(PYTEST_ARGS)

clean:
	rm -rf build dist pysrc/*.egg-info $(VENV) .venv-3.13t .pytest_cache .benchmarks results
	find pyx -name '*.c' -delete
