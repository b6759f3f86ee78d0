/*
 * One core's fp32 FMA rate, measured: CHAINS independent chains of 8-float
 * (AVX2) or 16-float (AVX-512) FMAs, enough of them to hide the latency,
 * so the rate is the FMA units' (fma_peak prints it; bench_config takes
 * the widest level's as its per-layer breakdown's peak).
 *
 * The rates tell the machines this project has run on apart: an Intel Xeon
 * with two 512-bit FMA units runs AVX-512 at twice AVX2's rate; AMD's Zen 4
 * runs a 512-bit FMA as two 256-bit halves, so both rates are the same.
 */
#ifndef ODYSSEY_BENCH_FMA_RATE_H
#define ODYSSEY_BENCH_FMA_RATE_H

#include <stdbool.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

enum { FMA_CHAINS = 12 };

static inline double fma_rate_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static volatile float fma_rate_sink;

/* name(rounds): GFLOP/s of FMA_CHAINS chains of `rounds` LANES-float FMAs (V, its set1, fmadd and first lane). */
#define FMA_RATE(name, isa, V, LANES, set1, fmadd, first)                    \
    __attribute__((target(isa))) static double name(long rounds)             \
    {                                                                        \
        V acc[FMA_CHAINS], a = set1(1.0000001f), b = set1(1e-7f);            \
        for (int i = 0; i < FMA_CHAINS; i++)                                 \
            acc[i] = set1((float)i);                                         \
        double t = fma_rate_now();                                           \
        for (long r = 0; r < rounds; r++)                                    \
            for (int i = 0; i < FMA_CHAINS; i++)                             \
                acc[i] = fmadd(acc[i], a, b);                                \
        t = fma_rate_now() - t;                                              \
        float s = 0.0f;                                                      \
        for (int i = 0; i < FMA_CHAINS; i++)                                 \
            s += first(acc[i]);                                              \
        fma_rate_sink = s;                                                   \
        return 2.0 * (LANES) * FMA_CHAINS * (double)rounds / t * 1e-9;       \
    }

FMA_RATE(fma_rate_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_cvtss_f32)
FMA_RATE(fma_rate_avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_cvtss_f32)

/* The best of `runs` measurements at the widest level the CPU has (AVX-512, else AVX2); 0 without either. */
static inline double fma_rate_widest(int runs, long rounds)
{
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f");
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    double best = 0.0;
    for (int r = 0; r < runs && (avx512 || avx2); r++) {
        double x = avx512 ? fma_rate_avx512(rounds) : fma_rate_avx2(rounds);
        best = x > best ? x : best;
    }
    return best;
}
#else
static inline double fma_rate_widest(int runs, long rounds)
{
    (void)runs, (void)rounds;
    return 0.0;
}
#endif

#endif /* ODYSSEY_BENCH_FMA_RATE_H */
