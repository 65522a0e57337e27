# gilstudy.pythons, the one way to find and ask other interpreters: probe() tells what an
# interpreter is, with or without gilstudy there, and says what is wrong in one line;
# installed() and survey() find every one, once each, sorted, the unusable ones said why; a
# Child that cannot start, stays silent or fails is an InterpreterFailed naming it.

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import gilstudy
from gilstudy import machine, pythons
from gilstudy.errors import InterpreterFailed

pytestmark = pytest.mark.one_pass

# Only reached if an interpreter hangs.
TIMEOUT = 120


def executable(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def fake_python(path, version: str, free_threaded: bool = False,
                implementation: str = "CPython") -> str:
    """A shell script that answers probe() as an interpreter of ``version`` would (and
    nothing else): for what survey() makes of versions this machine may not have."""
    answer = {"version": [int(part) for part in version.split(".")], "executable": str(path),
              "implementation": implementation, "free_threaded": free_threaded,
              "gil_enabled": not free_threaded}
    return executable(path, f"#!/bin/sh\necho 'gilstudy-probe {json.dumps(answer)}'\n")


@pytest.fixture
def bare_machine(tmp_path, monkeypatch):
    """A machine with no Python but this one, as installed() looks at it: PATH, HOME, the
    cache and pyenv's root are empty directories under tmp_path, and so is the current
    directory. Returns tmp_path."""
    for variable in ("PYENV_ROOT", "GILSTUDY_FTPYTHON", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    for directory in ("bin", "home", "cache", "work"):
        (tmp_path / directory).mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GILSTUDY_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


@pytest.fixture(scope="module")
def python_without_gilstudy(tmp_path_factory) -> str:
    """A venv of this Python with nothing installed in it (test_compare_pythons.py and
    test_experiments.py import this fixture too)."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=TIMEOUT)
    return str(venv / "bin" / "python")


@pytest.mark.timeout(TIMEOUT)
def test_probe_tells_what_this_interpreter_is():
    python = pythons.probe(sys.executable)
    assert python.path == sys.executable
    assert python.version == ".".join(map(str, sys.version_info[:3]))
    assert python.label == machine.interpreter_label()
    assert python.gil_enabled == machine.gil_enabled()
    assert python.gilstudy_version == gilstudy.__version__
    assert python.identity == {}


@pytest.mark.timeout(TIMEOUT)
def test_probe_finds_a_command_on_path_by_its_name(monkeypatch, tmp_path):
    (tmp_path / "python-here").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(tmp_path))
    python = pythons.probe("python-here")
    assert python.path == str(tmp_path / "python-here")
    assert python.label == machine.interpreter_label()


@pytest.mark.timeout(TIMEOUT)
def test_probe_needs_nothing_installed_unless_asked_for_a_module(python_without_gilstudy):
    python = pythons.probe(python_without_gilstudy)
    assert (python.label, python.gilstudy_version) == (machine.interpreter_label(), None)
    with pytest.raises(ValueError, match=(
            f"^{re.escape(python_without_gilstudy)}: gilstudy is not installed there ")):
        pythons.probe(python_without_gilstudy, module="gilstudy.experiments.race")


@pytest.mark.timeout(TIMEOUT)
def test_probe_of_a_module_that_gilstudy_lacks_says_it_is_too_old():
    with pytest.raises(ValueError, match=(
            f"^{re.escape(sys.executable)}: its gilstudy {re.escape(gilstudy.__version__)} is "
            "too old \\(it has no gilstudy.no_such_module\\): install this gilstudy there$")):
        pythons.probe(sys.executable, module="gilstudy.no_such_module")


@pytest.mark.timeout(TIMEOUT)
def test_probe_kills_an_interpreter_that_does_not_answer(tmp_path):
    path = executable(tmp_path / "python", "#!/bin/sh\nexec sleep 600\n")
    with pytest.raises(ValueError, match=(
            f"^{re.escape(path)}: no answer for 1 s; the child process was killed$")):
        pythons.probe(path, timeout_s=1)


def test_a_child_that_cannot_be_started_is_interpreter_failed(tmp_path):
    path = executable(tmp_path / "python", "#!/no/such/interpreter\n")
    with pytest.raises(InterpreterFailed, match=(
            "^--python x: cannot be started: No such file or directory$")) as caught:
        pythons.Child(path, [], where="--python x")
    assert caught.value.subject == path


@pytest.mark.timeout(TIMEOUT)
def test_a_child_that_fails_is_quoted_with_its_status_and_last_words(tmp_path):
    path = executable(tmp_path / "python", "#!/bin/sh\necho first >&2\necho 'last words' >&2\n"
                                           "exit 3\n")
    with pythons.Child(path, [], where="here", stdin=False) as child:
        assert child.output(TIMEOUT) == ""
        error = child.failed("the child process failed")
    assert str(error) == "here: the child process failed (status 3: last words)"
    assert error.subject == path


@pytest.mark.timeout(TIMEOUT)
def test_a_silent_child_is_killed_after_the_timeout(tmp_path):
    path = executable(tmp_path / "python", "#!/bin/sh\nexec sleep 600\n")
    with pythons.Child(path, [], where="here", stdin=False) as child:
        with pytest.raises(InterpreterFailed, match="^here: no answer for 1 s; the child "
                                                    "process was killed$"):
            child.output(1)
        assert child.process.wait(TIMEOUT) == -9
        assert child.ending() == "status -9, nothing on stderr"


@pytest.mark.timeout(TIMEOUT)
def test_probe_tells_the_implementation_and_the_build():
    python = pythons.probe(sys.executable)
    assert python.implementation == "CPython"
    assert python.free_threaded is machine.is_free_threaded_build()
    assert python.version_info == sys.version_info[:3]


# ---- installed(): where interpreters are looked for ---------------------------------------

def test_installed_on_a_bare_machine_is_this_interpreter(bare_machine):
    assert pythons.installed() == [sys.executable]


def test_installed_finds_the_pythons_on_path_by_their_names(bare_machine):
    bin_dir = bare_machine / "bin"
    for name in ("python", "python3", "python2.7", "python3.12", "python3.13t",
                 "python3-config", "python3.11-dbg", "pythonw", "ipython"):
        executable(bin_dir / name, "#!/bin/sh\n")
    (bin_dir / "python3.10").write_text("not executable")
    assert pythons.installed() == [sys.executable] + [
        str(bin_dir / name) for name in ("python", "python2.7", "python3", "python3.12",
                                         "python3.13t")]


def test_installed_keeps_one_name_per_file_through_symbolic_and_hard_links(bare_machine):
    bin_dir = bare_machine / "bin"
    real = executable(bin_dir / "python3.13t", "#!/bin/sh\n")
    (bin_dir / "python3").symlink_to(real)
    os.link(real, bin_dir / "python3.13")
    (bin_dir / "python").symlink_to(sys.executable)
    assert pythons.installed() == [sys.executable, str(bin_dir / "python3")]


def test_installed_looks_in_the_project_the_cache_and_pyenv_and_not_at_pyenv_shims(
        bare_machine, monkeypatch):
    root = bare_machine / "pyenv"
    found = [
        executable(bare_machine / "work" / ".venv-3.13t" / "bin" / "python3.13t", "#!/bin/sh\n"),
        executable(bare_machine / "elsewhere" / "python3.14t", "#!/bin/sh\n"),
        executable(bare_machine / "cache" / "cpython-3.13t" / "bin" / "python3.13", "#!/bin/sh\n"),
        executable(root / "versions" / "2.7.18" / "bin" / "python2.7", "#!/bin/sh\n"),
        executable(root / "versions" / "3.6.15" / "bin" / "python3.6", "#!/bin/sh\n"),
    ]
    executable(root / "shims" / "python", "#!/bin/sh\n")
    monkeypatch.setenv("GILSTUDY_FTPYTHON", found[1])
    monkeypatch.setenv("PYENV_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{root / 'shims'}{os.pathsep}{bare_machine / 'bin'}")
    assert pythons.installed() == [sys.executable, *found]


# ---- survey(): each interpreter probed once, sorted, the unusable ones said why ----------

@pytest.mark.timeout(TIMEOUT)
def test_survey_sorts_by_version_with_a_free_threaded_build_after_its_gil_build(tmp_path):
    paths = [fake_python(tmp_path / "a", "3.13.1", free_threaded=True),
             fake_python(tmp_path / "b", "3.9.18"), fake_python(tmp_path / "c", "3.13.1"),
             fake_python(tmp_path / "d", "3.10.13"), fake_python(tmp_path / "e", "2.7.18")]
    found = pythons.survey(paths)
    assert [(python.version, python.label) for python in found] == [
        ("2.7.18", "2.7"), ("3.9.18", "3.9"), ("3.10.13", "3.10"), ("3.13.1", "3.13"),
        ("3.13.1", "3.13t")]
    assert [python.gil_enabled for python in found] == [True, True, True, True, False]


@pytest.mark.timeout(TIMEOUT)
def test_survey_probes_each_interpreter_once_whatever_it_is_called(tmp_path):
    (tmp_path / "again").symlink_to(sys.executable)
    found = pythons.survey([sys.executable, str(tmp_path / "again"), sys.executable])
    assert [python.path for python in found] == [sys.executable]


@pytest.mark.timeout(TIMEOUT)
def test_survey_of_all_is_this_interpreter_and_what_installed_finds(bare_machine):
    fake_python(bare_machine / "bin" / "python2.7", "2.7.18")
    found = pythons.survey([pythons.ALL])
    assert [python.path for python in found] == [str(bare_machine / "bin" / "python2.7"),
                                                  sys.executable]


@pytest.mark.timeout(TIMEOUT)
def test_survey_says_in_one_line_why_each_unusable_interpreter_is_unusable(
        tmp_path, monkeypatch):
    monkeypatch.setattr(pythons, "PROBE_TIMEOUT_S", 3)
    garbage = executable(tmp_path / "garbage", "#!/bin/sh\necho 'hello'\nexit 1\n")
    old = fake_python(tmp_path / "old", "2.6.9")
    pypy = fake_python(tmp_path / "pypy", "3.10.14", implementation="PyPy")
    silent = executable(tmp_path / "silent", f"#!/bin/sh\nexec {shutil.which('sleep')} 600\n")
    missing = str(tmp_path / "missing")
    found = pythons.survey([garbage, old, sys.executable, pypy, silent, missing])
    assert found[0].path == sys.executable
    assert found[1:] == [
        pythons.Unusable(garbage, f"{garbage}: is not a Python interpreter (asked to run a "
                                  "Python script, it printed 'hello' and exited with status 1)"),
        pythons.Unusable(old, f"{old}: is Python 2.6.9; this needs Python 2.7 or later"),
        pythons.Unusable(pypy, f"{pypy}: is PyPy 3.10.14, not CPython"),
        pythons.Unusable(silent, f"{silent}: no answer for 3 s; the child process was killed"),
        pythons.Unusable(missing, f"{missing}: no such file"),
    ]


def test_survey_of_nothing_is_nothing():
    assert pythons.survey([]) == []
