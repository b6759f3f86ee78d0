/* optim: gradient norms, finiteness and clipping (by global norm or by value). */
#include "odyssey/optim.h"

#include <math.h>

/*
 * Sum of squares in double over LANES interleaved partial sums, combined
 * in a fixed order at the end: the compiler may vectorise the lanes (the
 * order of additions is written out, so no reassociation is needed) and
 * the result is the same on every machine.
 */
double ody_grad_norm(const float *g, size_t n)
{
    enum { LANES = 8 };
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

bool ody_all_finite(const float *g, size_t n)
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
