/* Plain C count of primes in [lo, hi) by trial division: the reference for how fast the
 * Cython loop can go. It is the same algorithm as the Cython and Python kernels, written
 * by hand, so the benchmark compares code generation rather than algorithms. */
#ifndef GILSTUDY_PRIMES_REF_H
#define GILSTUDY_PRIMES_REF_H

static int gilstudy_is_prime_ref(long p)
{
    long d;
    if (p < 2) return 0;
    if (p < 4) return 1;
    if (p % 2 == 0) return 0;
    /* d <= p / d instead of d * d <= p: it cannot overflow near LONG_MAX. */
    for (d = 3; d <= p / d; d += 2) {
        if (p % d == 0) return 0;
    }
    return 1;
}

static long gilstudy_count_primes_ref(long lo, long hi)
{
    long count = 0;
    long p;
    for (p = lo; p < hi; p++) {
        count += gilstudy_is_prime_ref(p);
    }
    return count;
}

#endif
