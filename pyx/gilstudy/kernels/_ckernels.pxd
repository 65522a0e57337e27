# C-level API of gilstudy's compiled kernels, for other Cython modules:
#
#     from gilstudy.kernels._ckernels cimport count_primes_c
#     with nogil:
#         n = count_primes_c(0, 1000)
#
# Every function runs without the GIL and takes already-validated arguments: the caller
# guarantees 0 <= lo <= hi, n >= 0, and an output buffer of (row_stop - row_start) * width
# elements, and nthreads >= 1. Nothing here raises. The *_prange_c functions split
# their loop over nthreads OpenMP threads (one thread when built without OpenMP).

cdef long countdown_c(long n) noexcept nogil
cdef bint is_prime_c(long p) noexcept nogil
cdef long count_primes_c(long lo, long hi) noexcept nogil
cdef unsigned int mandelbrot_point_c(double cr, double ci, unsigned int max_iter) noexcept nogil
cdef void mandelbrot_rows_c(unsigned int *out, long width, long height, unsigned int max_iter,
                            long row_start, long row_stop) noexcept nogil
cdef long countdown_prange_c(long n, int nthreads) noexcept nogil
cdef long count_primes_prange_c(long lo, long hi, int nthreads) noexcept nogil
cdef void mandelbrot_rows_prange_c(unsigned int *out, long width, long height,
                                   unsigned int max_iter, long row_start, long row_stop,
                                   int nthreads) noexcept nogil
