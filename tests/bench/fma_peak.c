/*
 * fma_peak: one core's fp32 limits, the figures the per-layer breakdown's
 * "share of peak" needs (bench_config --peak-gflops). Prints the FMA rate of
 * 12 independent chains of 8-float (AVX2) and 16-float (AVX-512) FMAs, and
 * oneDNN's sgemm on 1024 x 1024 x 1024 on one OpenMP thread; each the
 * best of 5 runs.
 *
 * The two FMA rates tell the machines this project has run on apart: an
 * Intel Xeon with two 512-bit FMA units runs AVX-512 at twice AVX2's rate;
 * AMD's Zen 4 runs a 512-bit FMA as two 256-bit halves, so both rates are
 * the same (115 GFLOP/s on 2026-12-07, dnnl_sgemm 100-106).
 *
 *   build/tests/bench/fma_peak
 */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* libgomp's, linked for oneDNN's OpenMP threads (as src/nn/dnnl.c declares it) */
extern void omp_set_num_threads(int n);

enum { CHAINS = 12, RUNS = 5 };
static const long ROUNDS = 20000000;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static volatile float sink;

/* name(): GFLOP/s of CHAINS independent chains of LANES-float FMAs (V, its set1, fmadd and first lane). */
#define FMA_RATE(name, isa, V, LANES, set1, fmadd, first)                    \
    __attribute__((target(isa))) static double name(void)                    \
    {                                                                        \
        V acc[CHAINS], a = set1(1.0000001f), b = set1(1e-7f);                \
        for (int i = 0; i < CHAINS; i++)                                     \
            acc[i] = set1((float)i);                                         \
        double t = now();                                                    \
        for (long r = 0; r < ROUNDS; r++)                                    \
            for (int i = 0; i < CHAINS; i++)                                 \
                acc[i] = fmadd(acc[i], a, b);                                \
        t = now() - t;                                                       \
        float s = 0.0f;                                                      \
        for (int i = 0; i < CHAINS; i++)                                     \
            s += first(acc[i]);                                              \
        sink = s;                                                            \
        return 2.0 * (LANES) * CHAINS * (double)ROUNDS / t * 1e-9;           \
    }

FMA_RATE(fma_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_cvtss_f32)
FMA_RATE(fma_avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_cvtss_f32)

static double sgemm(void)
{
    const int n = 1024;
    omp_set_num_threads(1);
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        fprintf(stderr, "fma_peak: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < n * n; i++) {
        a[i] = 1e-3f * (float)(i % 7);
        b[i] = 1e-3f * (float)(i % 5);
    }
    double best = 0.0;
    for (int r = 0; r < RUNS; r++) {
        double t = now();
        if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success) {
            fprintf(stderr, "fma_peak: dnnl_sgemm failed\n");
            exit(1);
        }
        t = now() - t;
        double rate = 2.0 * n * n * (double)n / t * 1e-9;
        best = rate > best ? rate : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(void)
{
    __builtin_cpu_init();
    double avx2 = 0.0, avx512 = 0.0;
    for (int r = 0; r < RUNS; r++) {
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            double x = fma_avx2();
            avx2 = x > avx2 ? x : avx2;
        }
        if (__builtin_cpu_supports("avx512f")) {
            double x = fma_avx512();
            avx512 = x > avx512 ? x : avx512;
        }
    }
    printf("fma_peak: one core, fp32 GFLOP/s (best of %d)\n", RUNS);
    printf("  AVX2 FMA      %7.1f%s\n", avx2, avx2 > 0 ? "" : "  (no AVX2)");
    printf("  AVX-512 FMA   %7.1f%s\n", avx512, avx512 > 0 ? "" : "  (no AVX-512)");
    printf("  dnnl_sgemm    %7.1f  (1024 x 1024 x 1024)\n", sgemm());
    return 0;
}
