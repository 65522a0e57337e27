# C-level API of gilstudy's compiled kernels, for other Cython modules:
#
#     from gilstudy.kernels._ckernels cimport count_primes_c
#     with nogil:
#         n = count_primes_c(0, 1000)
#
# Every function runs without the GIL and takes already-validated arguments: the caller
# guarantees 0 <= lo <= hi, n >= 0, and an output buffer of (row_stop - row_start) * width
# elements. Nothing here raises.

cdef long countdown_c(long n) noexcept nogil
cdef bint is_prime_c(long p) noexcept nogil
cdef long count_primes_c(long lo, long hi) noexcept nogil
cdef unsigned int mandelbrot_point_c(double cr, double ci, unsigned int max_iter) noexcept nogil
cdef void mandelbrot_rows_c(unsigned int *out, long width, long height, unsigned int max_iter,
                            long row_start, long row_stop) noexcept nogil
