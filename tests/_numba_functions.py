"""Functions that tests/test_numba.py runs through compare's ``--nogil``: a plain Python
function and its ``@njit(nogil=True)`` twin, in a module of their own so that process
models can import them by name. Importing this module needs numba."""

from numba import njit

INPUTS = [(n,) for n in range(200, 216)]


def sum_of_squares(n):
    """The plain function: sum(i * i for i in range(n))."""
    return sum(i * i for i in range(n))


@njit(nogil=True)
def sum_of_squares_nogil(n):
    """Its Numba twin, compiled lazily (on its first call, or by compare at start-up)."""
    total = 0
    for i in range(n):
        total += i * i
    return total
