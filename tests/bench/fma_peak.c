/*
 * fma_peak: one core's fp32 limits, the figures behind the per-layer
 * breakdown's "share of peak" (bench_config measures the widest FMA rate
 * itself unless --peak-gflops is given). Prints the FMA rate of 12
 * independent chains of 8-float (AVX2) and 16-float (AVX-512) FMAs
 * (fma_rate.h), and oneDNN's sgemm on 1024 x 1024 x 1024 on one OpenMP
 * thread; each the best of 5 runs. On AMD's Zen 4 both FMA rates are 115
 * GFLOP/s (2026-12-07, dnnl_sgemm 99-106); on the Intel Xeon this project
 * ran on before, AVX-512's was twice AVX2's.
 *
 *   build/tests/bench/fma_peak
 */
#define _POSIX_C_SOURCE 200809L
#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "fma_rate.h"

/* libgomp's, linked for oneDNN's OpenMP threads (as src/nn/dnnl.c declares it) */
extern void omp_set_num_threads(int n);

enum { RUNS = 5 };
static const long ROUNDS = 20000000;

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
        double t = fma_rate_now();
        if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success) {
            fprintf(stderr, "fma_peak: dnnl_sgemm failed\n");
            exit(1);
        }
        t = fma_rate_now() - t;
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
            double x = fma_rate_avx2(ROUNDS);
            avx2 = x > avx2 ? x : avx2;
        }
        if (__builtin_cpu_supports("avx512f")) {
            double x = fma_rate_avx512(ROUNDS);
            avx512 = x > avx512 ? x : avx512;
        }
    }
    printf("fma_peak: one core, fp32 GFLOP/s (best of %d)\n", RUNS);
    printf("  AVX2 FMA      %7.1f%s\n", avx2, avx2 > 0 ? "" : "  (no AVX2)");
    printf("  AVX-512 FMA   %7.1f%s\n", avx512, avx512 > 0 ? "" : "  (no AVX-512)");
    printf("  dnnl_sgemm    %7.1f  (1024 x 1024 x 1024)\n", sgemm());
    return 0;
}
