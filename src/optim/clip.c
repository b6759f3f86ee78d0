/* optim: gradient norms, finiteness and clipping (by global norm or by value). */
#include "odyssey/optim.h"

#include <math.h>

#include "core/cpu_internal.h"

/*
 * Both loops below are inlined into a copy for the build's baseline and
 * one compiled for AVX-512 (a target attribute, run where the CPU has it,
 * as the optimizer's step): ISO C with no contraction, so the two give
 * the same bits.
 */
#define BODY static inline __attribute__((always_inline))

/*
 * Sum of squares in double over LANES interleaved partial sums, combined
 * in a fixed order at the end: the compiler may vectorise the lanes (the
 * order of additions is written out, so no reassociation is needed) and
 * the result is the same on every machine. 32 lanes: four chains of
 * 8-double vectors in flight at AVX-512, so the adds' latency does not
 * bound the loop (8 lanes, one chain, took 10-12 us over LeNet-5's 61,706
 * gradients).
 */
BODY double grad_norm(const float *g, size_t n)
{
    enum { LANES = 32 };
    double part[LANES] = {0};
    size_t whole = n / LANES * LANES;
    for (size_t i = 0; i < whole; i += LANES)
        for (int k = 0; k < LANES; k++)
            part[k] += (double)g[i + k] * g[i + k];
    for (size_t i = whole; i < n; i++)
        part[i - whole] += (double)g[i] * g[i];
    double s = 0.0;
    for (int k = 0; k < LANES; k++)
        s += part[k];
    return sqrt(s);
}

BODY bool all_finite(const float *g, size_t n)
{
    /* Sum of x*0 is NaN iff some x is inf or NaN; branch-free, and in
     * LANES independent sums so that it vectorises without -ffast-math
     * (64: several vectors' chains of additions in flight at any width). */
    enum { LANES = 64 };
    float acc[LANES] = {0};
    size_t whole = n - n % LANES;
    for (size_t i = 0; i < whole; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += g[i + k] * 0.0f;
    float total = 0.0f;
    for (size_t i = whole; i < n; i++)
        total += g[i] * 0.0f;
    for (int k = 0; k < LANES; k++)
        total += acc[k];
    return total == 0.0f;
}

#ifdef ODY_TARGET_AVX512
ODY_TARGET_AVX512 static double grad_norm_avx512(const float *g, size_t n) { return grad_norm(g, n); }
ODY_TARGET_AVX512 static bool all_finite_avx512(const float *g, size_t n) { return all_finite(g, n); }
#endif

double ody_grad_norm(const float *g, size_t n)
{
#ifdef ODY_TARGET_AVX512
    if (ody_cpu_isa_active() >= ODY_ISA_AVX512)
        return grad_norm_avx512(g, n);
#endif
    return grad_norm(g, n);
}

bool ody_all_finite(const float *g, size_t n)
{
#ifdef ODY_TARGET_AVX512
    if (ody_cpu_isa_active() >= ODY_ISA_AVX512)
        return all_finite_avx512(g, n);
#endif
    return all_finite(g, n);
}

/* g *= c, element-wise. */
static void scale(float *restrict g, size_t n, float c)
{
    for (size_t i = 0; i < n; i++)
        g[i] *= c;
}

double ody_clip_grad_norm(float *g, size_t n, double max_norm)
{
    double norm = ody_grad_norm(g, n);
    if (!isfinite(norm) || !(max_norm > 0.0))
        return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
        scale(g, n, (float)coef);
    return norm;
}

void ody_clip_grad_value(float *restrict g, size_t n, double clip)
{
    const float hi = (float)clip, lo = -hi;
    /* Comparisons, not fminf/fmaxf: those would turn a NaN into the bound. */
    for (size_t i = 0; i < n; i++) {
        float x = g[i];
        x = x < lo ? lo : x;
        g[i] = x > hi ? hi : x;
    }
}
