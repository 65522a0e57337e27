# A script's own classes and functions in process-based workers (gilstudy.mainscript): the
# workers load the script under __mp_main__, so its guarded block runs once, in the parent
# only; a __main__ that cannot be loaded again (python -c, standard input) is refused saying
# why and what to do. Every case runs a real script file in a fresh interpreter.

import os
import subprocess
import sys
import textwrap
import types

import pytest

from gilstudy import mainscript

# Only reached when something deadlocks.
TIMEOUT = 120

# A script whose guarded block would start workers again if it ran in a worker: the block
# counts itself in GUARD_LOG (and refuses to go deeper than once, so that a broken
# implementation fails instead of starting processes without end); every load of the
# script is logged in BODY_LOG with its __name__. RUN is the runner's code.
SCRIPT = textwrap.dedent('''
    import os
    import sys

    import gilstudy
    from gilstudy import Collect

    with open(os.environ["BODY_LOG"], "a") as log:
        log.write(f"{__name__} {os.getpid()}\\n")


    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __repr__(self):
            return f"Point({self.x}, {self.y})"


    class Squares:
        def send(self, n):
            return Point(n, n * n)

        def close(self):
            return None


    def square(n):
        return Point(n, n * n)


    def run():
    {run}


    if __name__ == "__main__":
        with open(os.environ["GUARD_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")
        if os.environ.get("GUARD_RAN"):
            sys.exit("the guarded block ran again in a worker")
        os.environ["GUARD_RAN"] = "1"
        print(run())
''')

RUNNERS = {
    "spawn": '''
        results = Collect()
        with gilstudy.spawn(Squares, results=results) as worker:
            for n in range(4):
                worker.send(n)
        return results.items''',
    "coprocesses": '''
        results = Collect()
        with gilstudy.coprocesses(Squares, 2, results=results) as fan:
            for n in range(4):
                fan.send(n)
        return sorted(results.items, key=lambda point: point.x)''',
    "mpi-ranks": '''
        from gilstudy import mpi
        results = Collect()
        with mpi.ranks(Squares, 2, results=results) as fan:
            for n in range(4):
                fan.send(n)
        return sorted(results.items, key=lambda point: point.x)''',
    "executor-coprocess": '''
        with gilstudy.Executor("coprocess", max_workers=2) as pool:
            return list(pool.map(square, range(4), chunksize=1))''',
    "executor-mpi": '''
        with gilstudy.Executor("mpi", max_workers=2) as pool:
            return list(pool.map(square, range(4), chunksize=1))''',
    "executor-subinterpreter": '''
        with gilstudy.Executor("subinterpreter", max_workers=2) as pool:
            return list(pool.map(square, range(4), chunksize=1))''',
}
# Subinterpreters need Python 3.14+ (make test runs them under 3.15).
RUNNER_PARAMS = [pytest.param(name, marks=pytest.mark.subinterpreters) if "subinterpreter" in name
                 else name for name in RUNNERS]

EXPECTED = "[Point(0, 0), Point(1, 1), Point(2, 4), Point(3, 9)]"


def write_script(folder, runner: str, name: str = "myscript.py"):
    body = textwrap.indent(textwrap.dedent(RUNNERS[runner]).strip(), "    ")
    path = folder / name
    path.write_text(SCRIPT.replace("{run}", body))
    return path


def run_python(folder, *args, stdin=None):
    env = {**os.environ, "BODY_LOG": str(folder / "body.log"),
           "GUARD_LOG": str(folder / "guard.log")}
    env.pop("GUARD_RAN", None)
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, input=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT)


def lines(path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("runner", RUNNER_PARAMS)
def test_a_scripts_own_classes_run_in_the_workers_and_its_guard_runs_once(tmp_path, runner):
    script = write_script(tmp_path, runner)
    done = run_python(tmp_path, str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == EXPECTED
    assert len(lines(tmp_path / "guard.log")) == 1
    loads = (tmp_path / "body.log").read_text().splitlines()
    names = [line.split()[0] for line in loads]
    # Once as __main__ here; in each worker that needed it, once, as __mp_main__.
    assert names[0] == "__main__" and set(names[1:]) == {"__mp_main__"}
    assert 1 <= len(names) - 1 <= 2
    if "subinterpreter" not in runner:  # those run in this process
        assert len({line.split()[1] for line in loads}) == len(loads)


@pytest.mark.timeout(TIMEOUT)
def test_a_module_run_with_python_m_is_loaded_again_by_its_name(tmp_path):
    package = tmp_path / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_script(package, "coprocesses", "job.py")
    done = run_python(tmp_path, "-m", "mypackage.job")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == EXPECTED
    assert len(lines(tmp_path / "guard.log")) == 1


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("how, reason", [
    ("-c", "it is a program given with python -c"),
    ("stdin", "it was read from standard input or is an interactive session"),
])
def test_a_main_that_cannot_be_loaded_again_is_refused_saying_why_and_what_to_do(
        tmp_path, how, reason):
    source = write_script(tmp_path, "coprocesses").read_text()
    done = (run_python(tmp_path, "-c", source) if how == "-c"
            else run_python(tmp_path, "-", stdin=source))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"ValueError: spawn: factory 'Squares' is defined in __main__, which a coprocess "
        f"cannot import: this program's main script cannot be loaded again because {reason}; "
        f"define Squares in a module (a .py file beside your script) and import it from "
        f"there, or run your program as a script file")


@pytest.mark.timeout(TIMEOUT)
def test_a_script_that_fails_while_loading_in_the_worker_is_the_consumers_error(tmp_path):
    script = write_script(tmp_path, "spawn")
    # The worker's load of the script (as __mp_main__) raises; the parent's does not.
    script.write_text(script.read_text().replace(
        "class Point:", "if __name__ == '__mp_main__':\n    raise LookupError('not here')\n\n\n"
                        "class Point:", 1))
    done = run_python(tmp_path, str(script))
    assert done.returncode == 1
    assert "LookupError: not here" in done.stderr
    assert len(lines(tmp_path / "guard.log")) == 1


# --- the pieces, in this process ------------------------------------------------------------

def test_describe_names_a_script_by_its_path_and_python_m_by_its_module(monkeypatch, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.delitem(sys.modules, mainscript.MAIN_NAME, raising=False)
    assert mainscript.describe() == ("path", os.path.realpath(script))
    assert sys.modules[mainscript.MAIN_NAME] is main  # results of its classes unpickle here
    main.__spec__ = types.SimpleNamespace(name="mypackage.job")
    assert mainscript.describe() == ("module", "mypackage.job")
    del main.__file__
    main.__spec__ = None
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert mainscript.describe() == ("none", "it is a program given with python -c")


def test_the_stand_in_loads_nothing_for_a_dunder_and_says_what_is_missing(monkeypatch,
                                                                          tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import os\nLOADS = os.environ.setdefault('LOADS', '') + 'x'\n"
                      "os.environ['LOADS'] = LOADS\nVALUE = 42\n")
    monkeypatch.setenv("LOADS", "")
    stand_in = mainscript.LazyMain(("path", str(script)))
    with pytest.raises(AttributeError):
        stand_in.__wrapped__
    assert os.environ["LOADS"] == ""
    assert stand_in.VALUE == 42 and stand_in.__name__ == mainscript.MAIN_NAME
    with pytest.raises(AttributeError, match=r"^the caller's main script '.*job.py' defines "
                                             r"no 'OTHER'$"):
        stand_in.OTHER
    assert os.environ["LOADS"] == "x"  # loaded once
    unloadable = mainscript.LazyMain(("none", "it is an interactive session"))
    with pytest.raises(AttributeError, match=r"^'f' is defined in the caller's __main__, "
                                             r"which this worker cannot load because it is "
                                             r"an interactive session; define it in a module"):
        unloadable.f


def test_install_leaves_alone_a_main_that_already_is_the_callers_script(monkeypatch, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    mainscript.install(("path", os.path.realpath(script)))
    assert sys.modules["__main__"] is main
    mainscript.install(None)
    assert sys.modules["__main__"] is main


NESTED = textwrap.dedent('''
    import gilstudy
    from gilstudy import Collect


    class Inner:
        def send(self, n):
            return n + 100

        def close(self):
            return None


    class Outer:
        """Starts a coprocess of its own, running another class of the script."""

        def send(self, n):
            results = Collect()
            with gilstudy.spawn(Inner, results=results) as worker:
                worker.send(n)
            return results.items[0]

        def close(self):
            return None


    if __name__ == "__main__":
        results = Collect()
        with gilstudy.spawn(Outer, results=results) as worker:
            worker.send(1)
        print(results.items)
''')


@pytest.mark.timeout(TIMEOUT)
def test_a_workers_own_workers_find_the_scripts_classes_too(tmp_path):
    (tmp_path / "nested.py").write_text(NESTED)
    done = run_python(tmp_path, "nested.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[101]"
