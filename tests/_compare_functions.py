# Functions that the compare tests run in every model: importable by name (a module of their
# own), so process models can run them too. Each has a docstring saying what a test uses it for.

import hashlib
import os

# The process that imported this module first: the test process. Its worker processes
# inherit the variable, so they know that they are not it.
FIRST_PID = int(os.environ.setdefault("COMPARE_FUNCTIONS_FIRST_PID", str(os.getpid())))

INPUTS = [(n,) for n in range(200, 216)]


def sum_of_squares(n):
    """The plain function: sum(i * i for i in range(n))."""
    return sum(i * i for i in range(n))


def sum_of_squares_closed_form(n):
    """Its twin (standing in for a GIL-releasing implementation): the same results."""
    return (n - 1) * n * (2 * n - 1) // 6


def make_inputs():
    """Inputs given as a callable returning them."""
    return [(n,) for n in range(10)]


def fails_on_seven(n):
    """A function that raises for one input."""
    if n == 7:
        raise ValueError(f"seven is not allowed (got {n})")
    return n


def differs_in_other_processes(n):
    """The same results in this process, different ones in any other: process models
    disagree with serial-python."""
    return n if os.getpid() == FIRST_PID else -n


def fails_in_workers(n):
    """The plain function in the test process; in any other process it raises: a worker
    fails while serial-python succeeds."""
    if os.getpid() != FIRST_PID:
        raise ValueError(f"not in the test process (got {n})")
    return n


NOT_TUPLES = [1, 2, 3]


def digest(size):
    """sha256 over size KiB: hashlib releases the GIL for large buffers."""
    return hashlib.sha256(b"x" * (1024 * size)).hexdigest()
