# Functions for the CLI failure tests (test_cli_failures.py), importable by name.


def raising_inputs():
    """An --inputs function that raises."""
    raise RuntimeError("the inputs broke")


def raising_work(size):
    """A --function that raises."""
    raise RuntimeError(f"the work broke at size {size}")


def work(n):
    """A plain function of one size argument."""
    return sum(range(n))


def constant_work(size):
    """A --function whose time does not grow with its size."""
    return size % 7
