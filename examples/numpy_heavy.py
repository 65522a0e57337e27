# A function whose heavy part is a numpy call, next to its pure-Python twin: how many distinct
# values a block of hashed integers holds. numpy computes and sorts them in C without the GIL,
# so threads running it use several cores; the pure-Python set() version holds the GIL.
#
#     cd examples && gilstudy compare --function numpy_heavy:distinct_python \
#         --nogil numpy_heavy:distinct_numpy --inputs numpy_heavy:INPUTS --workers 1,2

import numpy as np

__all__ = ["distinct_python", "distinct_numpy", "INPUTS"]

# Knuth's multiplicative hash on 32 bits, its high bits folded in, then a bucket: exact integer
# arithmetic (every product fits in 64 bits), so both versions compute the same numbers.
_MULTIPLIER = 2_654_435_761
_MASK = 2**32 - 1
_BUCKETS = 300_007


def distinct_python(seed: int, n: int) -> int:
    """The number of distinct buckets among n hashed integers, in pure Python."""
    found = set()
    for i in range(seed, seed + n):
        x = (i * _MULTIPLIER) & _MASK
        found.add((x ^ (x >> 16)) % _BUCKETS)
    return len(found)


def distinct_numpy(seed: int, n: int) -> int:
    """The same count with numpy: the arithmetic and the sort run in C and release the GIL
    (np.sort, then the places where the sorted values change)."""
    x = (np.arange(seed, seed + n, dtype=np.int64) * _MULTIPLIER) & _MASK
    values = np.sort((x ^ (x >> 16)) % _BUCKETS)
    return int(1 + np.count_nonzero(values[1:] != values[:-1]))


# 16 blocks of 50,000 integers: tens of ms each in pure Python, about 2 ms with numpy.
INPUTS = [(seed * 50_000, 50_000) for seed in range(16)]
