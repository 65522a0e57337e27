# gilstudy.pythons, the one way to find and ask other interpreters: probe() tells what an
# interpreter is, with or without gilstudy there, and says what is wrong in one line; a
# Child that cannot start, stays silent or fails is an InterpreterFailed naming it.

import re
import subprocess
import sys

import pytest

import gilstudy
from gilstudy import machine, pythons
from gilstudy.errors import InterpreterFailed

# Only reached if an interpreter hangs.
TIMEOUT = 120


def executable(path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


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
