/*
 * The CPU's float32 FMA peak: 12 independent AVX-512 accumulators per thread (enough to cover
 * the FMA latency on two pipes), register-resident, on 1 and then 2 threads. The convolution and
 * matmul rates in docs/performance.md are compared against this number.
 *
 *   gcc -O3 -march=native -pthread docs/performance/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 *
 * Needs a CPU with AVX-512F. Counts 2 FLOP per lane per FMA (16 lanes).
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define ITERS 333333333L /* per accumulator: 4.0e9 FMAs per thread in all */
#define ACC 12

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *run(void *out) {
    __m512 acc[ACC];
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps(i * 0.001f);
    const __m512 x = _mm512_set1_ps(0.9999f), y = _mm512_set1_ps(0.0001f);
    for (long n = 0; n < ITERS; n++) {
#pragma GCC unroll 12
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    }
    float s = 0; /* the result is used, so the loop is not removed */
    for (int i = 0; i < ACC; i++) s += _mm512_reduce_add_ps(acc[i]);
    *(float *)out = s;
    return NULL;
}

int main(void) {
    for (int threads = 1; threads <= 2; threads++) {
        pthread_t t[2];
        float sums[2];
        double t0 = now();
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, run, &sums[i]);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        double dt = now() - t0;
        double flop = threads * (double)ITERS * ACC * 16 * 2;
        printf("%d thread%s: %.1f GFLOP/s (%.2f s; checksum %g)\n", threads,
               threads > 1 ? "s" : "", flop / dt / 1e9, dt, (double)(sums[0] + sums[threads - 1]));
    }
    return 0;
}
