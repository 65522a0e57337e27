# A pure-Python function in every execution model: the longest Collatz chain that starts in a
# range of numbers. It holds the GIL from start to end, so threads take turns and only
# processes (or a free-threaded build) run it on several cores at once.
#
#     cd examples && gilstudy compare --function pure_python:longest_chain \
#         --inputs pure_python:INPUTS --models '*-python' --workers 1,2

__all__ = ["longest_chain", "INPUTS"]


def longest_chain(lo: int, hi: int) -> tuple[int, int]:
    """(start, steps) of the longest Collatz chain starting in [lo, hi): plain integer
    arithmetic in a Python loop."""
    best = (lo, 0)
    for start in range(lo, hi):
        n, steps = start, 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        if steps > best[1]:
            best = (start, steps)
    return best


# 32 ranges of 2,000 numbers: about 15 ms each in CPython 3.11, half a second in all.
INPUTS = [(lo, lo + 2_000) for lo in range(1, 64_001, 2_000)]
