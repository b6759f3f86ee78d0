/*
 * conv2d's direct loops for AVX2 + FMA (see conv_kernels.c for what each
 * does and conv_internal.h for the layouts). CMakeLists.txt compiles this
 * file alone with -mavx2 -mfma; nothing here runs unless the CPU has them
 * (nn_conv_kernels_for, core/cpu.c). The AVX-512 level calls these where
 * its own loops do not apply.
 */
#include "nn/conv_internal.h"

#if defined(__AVX2__) && defined(__FMA__)

#include "nn/conv_avx.h"
#include <string.h>

enum { BLOCK_MAX = 12 };

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/*
 * P output pixels of one row (x: the first one's window corner in xpad,
 * the next ones S floats apart) times B channel vectors (wt, bias and y at
 * the first of them): P * B sums in registers over every tap.
 */
ALWAYS_INLINE void direct_block(const nn_conv_geom *g, const float *x, const int S, const float *wt,
                                const float *bias, float *y, const int P, const int B, const int KC)
{
    __m256 acc[BLOCK_MAX];
#pragma GCC unroll 12
    for (int j = 0; j < P; j++)
        for (int b = 0; b < B; b++)
            acc[j * B + b] = _mm256_loadu_ps(bias + NN_VEC * b);
    const int k = KC ? KC : g->win.k;
    for (int c = 0; c < g->win.c; c++)
#pragma GCC unroll 5
        for (int kh = 0; kh < k; kh++) {
            const float *row = x + ((size_t)c * g->hp + kh) * g->wp;
#pragma GCC unroll 5
            for (int kw = 0; kw < k; kw++, wt += g->ocp) {
                __m256 w0 = _mm256_loadu_ps(wt), w1 = B > 1 ? _mm256_loadu_ps(wt + NN_VEC) : w0;
#pragma GCC unroll 12
                for (int j = 0; j < P; j++) {
                    __m256 xv = _mm256_broadcast_ss(row + kw + j * S);
                    acc[j * B] = _mm256_fmadd_ps(xv, w0, acc[j * B]);
                    if (B > 1)
                        acc[j * B + 1] = _mm256_fmadd_ps(xv, w1, acc[j * B + 1]);
                }
            }
        }
#pragma GCC unroll 12
    for (int j = 0; j < P; j++)
        for (int b = 0; b < B; b++)
            _mm256_storeu_ps(y + (size_t)j * g->ocp + NN_VEC * b, acc[j * B + b]);
}

static void direct_one_vector(const nn_conv_geom *g, const float *x, int S, const float *wt,
                              const float *bias, float *y, int P)
{
    switch (P) {
        NN_DIRECT_CASE(1, 1) NN_DIRECT_CASE(2, 1) NN_DIRECT_CASE(3, 1) NN_DIRECT_CASE(4, 1) NN_DIRECT_CASE(5, 1)
        NN_DIRECT_CASE(6, 1) NN_DIRECT_CASE(7, 1) NN_DIRECT_CASE(8, 1) NN_DIRECT_CASE(9, 1) NN_DIRECT_CASE(10, 1)
        NN_DIRECT_CASE(11, 1) NN_DIRECT_CASE(12, 1)
    }
}

static void direct_two_vectors(const nn_conv_geom *g, const float *x, int S, const float *wt,
                               const float *bias, float *y, int P)
{
    switch (P) {
        NN_DIRECT_CASE(1, 2) NN_DIRECT_CASE(2, 2) NN_DIRECT_CASE(3, 2) NN_DIRECT_CASE(4, 2) NN_DIRECT_CASE(5, 2)
        NN_DIRECT_CASE(6, 2)
    }
}

void nn_conv_avx2_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y)
{
    const nn_window *w = &g->win;
    int vectors = g->ocp / NN_VEC;
    for (int v = 0; v < vectors; v += 2) {
        int two = vectors - v >= 2, pmax = two ? BLOCK_MAX / 2 : BLOCK_MAX;
        int nseg = (w->ow + pmax - 1) / pmax;
        for (int oy = 0; oy < w->oh; oy++)
            for (int seg = 0; seg < nseg; seg++) {
                int ox0, ox1;
                nn_conv_segment(w->ow, seg, nseg, &ox0, &ox1);
                const float *x = xpad + (size_t)oy * w->stride * g->wp + (size_t)ox0 * w->stride;
                float *at = y + ((size_t)oy * w->ow + ox0) * g->ocp + NN_VEC * v;
                (two ? direct_two_vectors : direct_one_vector)(g, x, w->stride, wt + NN_VEC * v,
                                                               bias + NN_VEC * v, at, ox1 - ox0);
            }
    }
}

/* Pixel-major vectors to channel-major rows, 8 x 8 at a time. */
void nn_conv_avx2_transpose(const float *a, int stride, int pixels, int channels, float *dst, size_t dst_stride)
{
    int p = 0;
    for (; p + NN_VEC <= pixels; p += NN_VEC)
        for (int v = 0; v * NN_VEC < channels; v++) {
            __m256 r[NN_VEC];
            for (int i = 0; i < NN_VEC; i++) {
                size_t at = (size_t)(p + i) * stride + NN_VEC * v;
                r[i] = _mm256_loadu_ps(a + at);
            }
            nn_transpose8(r);
            for (int lane = 0; lane < NN_VEC && NN_VEC * v + lane < channels; lane++)
                _mm256_storeu_ps(dst + (size_t)(NN_VEC * v + lane) * dst_stride + p, r[lane]);
        }
    nn_conv_transpose_tail(a, stride, p, pixels, channels, dst, dst_stride);
}

static void avx2_to_channels(const nn_conv_geom *g, const float *y, int pixels, float *dst)
{
    nn_conv_avx2_transpose(y, g->ocp, pixels, g->oc, dst, (size_t)pixels);
}

void nn_conv_avx2_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
                            float *out, int32_t *arg)
{
    int ow = g->win.ow, ph = g->win.oh / 2, pw = ow / 2, plane = ph * pw, vectors = g->ocp / NN_VEC;
    float *value = tmp, *where = tmp + (size_t)plane * g->ocp; /* pixel-major, then transposed */
    __m256 zero = _mm256_setzero_ps();
    for (int py = 0; py < ph; py++)
        for (int px = 0; px < pw; px++) {
            int q = py * pw + px, p0 = 2 * py * ow + 2 * px;
            int at[4] = {p0, p0 + 1, p0 + ow, p0 + ow + 1};
            for (int v = 0; v < vectors; v++) {
                const float *yv = y + NN_VEC * v;
                __m256 best = _mm256_loadu_ps(yv + (size_t)at[0] * g->ocp);
                __m256 idx = _mm256_castsi256_ps(_mm256_set1_epi32(winoff[at[0]]));
                for (int t = 1; t < 4; t++) {
                    __m256 x = _mm256_loadu_ps(yv + (size_t)at[t] * g->ocp);
                    __m256 wins = _mm256_cmp_ps(x, best, _CMP_GT_OQ); /* strictly: ties keep the first */
                    best = _mm256_blendv_ps(best, x, wins);
                    idx = _mm256_blendv_ps(idx, _mm256_castsi256_ps(_mm256_set1_epi32(winoff[at[t]])), wins);
                }
                size_t o = (size_t)q * g->ocp + NN_VEC * v;
                _mm256_storeu_ps(value + o, _mm256_max_ps(best, zero)); /* relu; NaN -> 0 as relu does */
                _mm256_storeu_ps(where + o, idx);
            }
        }
    nn_conv_avx2_transpose(value, g->ocp, plane, g->oc, out, (size_t)plane);
    nn_conv_avx2_transpose(where, g->ocp, plane, g->oc, (float *)arg, (size_t)plane); /* int32 bits moved as floats */
}

/* Left-packing: entry m holds, one per byte, the lanes whose bit is set in m, in order. */
static const uint64_t pack_lanes[256] = {
    0x0000000000000000u, 0x0000000000000000u, 0x0000000000000001u, 0x0000000000000100u,
    0x0000000000000002u, 0x0000000000000200u, 0x0000000000000201u, 0x0000000000020100u,
    0x0000000000000003u, 0x0000000000000300u, 0x0000000000000301u, 0x0000000000030100u,
    0x0000000000000302u, 0x0000000000030200u, 0x0000000000030201u, 0x0000000003020100u,
    0x0000000000000004u, 0x0000000000000400u, 0x0000000000000401u, 0x0000000000040100u,
    0x0000000000000402u, 0x0000000000040200u, 0x0000000000040201u, 0x0000000004020100u,
    0x0000000000000403u, 0x0000000000040300u, 0x0000000000040301u, 0x0000000004030100u,
    0x0000000000040302u, 0x0000000004030200u, 0x0000000004030201u, 0x0000000403020100u,
    0x0000000000000005u, 0x0000000000000500u, 0x0000000000000501u, 0x0000000000050100u,
    0x0000000000000502u, 0x0000000000050200u, 0x0000000000050201u, 0x0000000005020100u,
    0x0000000000000503u, 0x0000000000050300u, 0x0000000000050301u, 0x0000000005030100u,
    0x0000000000050302u, 0x0000000005030200u, 0x0000000005030201u, 0x0000000503020100u,
    0x0000000000000504u, 0x0000000000050400u, 0x0000000000050401u, 0x0000000005040100u,
    0x0000000000050402u, 0x0000000005040200u, 0x0000000005040201u, 0x0000000504020100u,
    0x0000000000050403u, 0x0000000005040300u, 0x0000000005040301u, 0x0000000504030100u,
    0x0000000005040302u, 0x0000000504030200u, 0x0000000504030201u, 0x0000050403020100u,
    0x0000000000000006u, 0x0000000000000600u, 0x0000000000000601u, 0x0000000000060100u,
    0x0000000000000602u, 0x0000000000060200u, 0x0000000000060201u, 0x0000000006020100u,
    0x0000000000000603u, 0x0000000000060300u, 0x0000000000060301u, 0x0000000006030100u,
    0x0000000000060302u, 0x0000000006030200u, 0x0000000006030201u, 0x0000000603020100u,
    0x0000000000000604u, 0x0000000000060400u, 0x0000000000060401u, 0x0000000006040100u,
    0x0000000000060402u, 0x0000000006040200u, 0x0000000006040201u, 0x0000000604020100u,
    0x0000000000060403u, 0x0000000006040300u, 0x0000000006040301u, 0x0000000604030100u,
    0x0000000006040302u, 0x0000000604030200u, 0x0000000604030201u, 0x0000060403020100u,
    0x0000000000000605u, 0x0000000000060500u, 0x0000000000060501u, 0x0000000006050100u,
    0x0000000000060502u, 0x0000000006050200u, 0x0000000006050201u, 0x0000000605020100u,
    0x0000000000060503u, 0x0000000006050300u, 0x0000000006050301u, 0x0000000605030100u,
    0x0000000006050302u, 0x0000000605030200u, 0x0000000605030201u, 0x0000060503020100u,
    0x0000000000060504u, 0x0000000006050400u, 0x0000000006050401u, 0x0000000605040100u,
    0x0000000006050402u, 0x0000000605040200u, 0x0000000605040201u, 0x0000060504020100u,
    0x0000000006050403u, 0x0000000605040300u, 0x0000000605040301u, 0x0000060504030100u,
    0x0000000605040302u, 0x0000060504030200u, 0x0000060504030201u, 0x0006050403020100u,
    0x0000000000000007u, 0x0000000000000700u, 0x0000000000000701u, 0x0000000000070100u,
    0x0000000000000702u, 0x0000000000070200u, 0x0000000000070201u, 0x0000000007020100u,
    0x0000000000000703u, 0x0000000000070300u, 0x0000000000070301u, 0x0000000007030100u,
    0x0000000000070302u, 0x0000000007030200u, 0x0000000007030201u, 0x0000000703020100u,
    0x0000000000000704u, 0x0000000000070400u, 0x0000000000070401u, 0x0000000007040100u,
    0x0000000000070402u, 0x0000000007040200u, 0x0000000007040201u, 0x0000000704020100u,
    0x0000000000070403u, 0x0000000007040300u, 0x0000000007040301u, 0x0000000704030100u,
    0x0000000007040302u, 0x0000000704030200u, 0x0000000704030201u, 0x0000070403020100u,
    0x0000000000000705u, 0x0000000000070500u, 0x0000000000070501u, 0x0000000007050100u,
    0x0000000000070502u, 0x0000000007050200u, 0x0000000007050201u, 0x0000000705020100u,
    0x0000000000070503u, 0x0000000007050300u, 0x0000000007050301u, 0x0000000705030100u,
    0x0000000007050302u, 0x0000000705030200u, 0x0000000705030201u, 0x0000070503020100u,
    0x0000000000070504u, 0x0000000007050400u, 0x0000000007050401u, 0x0000000705040100u,
    0x0000000007050402u, 0x0000000705040200u, 0x0000000705040201u, 0x0000070504020100u,
    0x0000000007050403u, 0x0000000705040300u, 0x0000000705040301u, 0x0000070504030100u,
    0x0000000705040302u, 0x0000070504030200u, 0x0000070504030201u, 0x0007050403020100u,
    0x0000000000000706u, 0x0000000000070600u, 0x0000000000070601u, 0x0000000007060100u,
    0x0000000000070602u, 0x0000000007060200u, 0x0000000007060201u, 0x0000000706020100u,
    0x0000000000070603u, 0x0000000007060300u, 0x0000000007060301u, 0x0000000706030100u,
    0x0000000007060302u, 0x0000000706030200u, 0x0000000706030201u, 0x0000070603020100u,
    0x0000000000070604u, 0x0000000007060400u, 0x0000000007060401u, 0x0000000706040100u,
    0x0000000007060402u, 0x0000000706040200u, 0x0000000706040201u, 0x0000070604020100u,
    0x0000000007060403u, 0x0000000706040300u, 0x0000000706040301u, 0x0000070604030100u,
    0x0000000706040302u, 0x0000070604030200u, 0x0000070604030201u, 0x0007060403020100u,
    0x0000000000070605u, 0x0000000007060500u, 0x0000000007060501u, 0x0000000706050100u,
    0x0000000007060502u, 0x0000000706050200u, 0x0000000706050201u, 0x0000070605020100u,
    0x0000000007060503u, 0x0000000706050300u, 0x0000000706050301u, 0x0000070605030100u,
    0x0000000706050302u, 0x0000070605030200u, 0x0000070605030201u, 0x0007060503020100u,
    0x0000000007060504u, 0x0000000706050400u, 0x0000000706050401u, 0x0000070605040100u,
    0x0000000706050402u, 0x0000070605040200u, 0x0000070605040201u, 0x0007060504020100u,
    0x0000000706050403u, 0x0000070605040300u, 0x0000070605040301u, 0x0007060504030100u,
    0x0000070605040302u, 0x0007060504030200u, 0x0007060504030201u, 0x0706050403020100u,
};

void nn_conv_avx2_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t)
{
    __m256 zero = _mm256_setzero_ps();
    int count = 0, i = 0;
    for (; i + NN_VEC <= n; i += NN_VEC) {
        __m256 d = _mm256_loadu_ps(grad + i), keep = _mm256_cmp_ps(d, zero, _CMP_NEQ_UQ);
        if (y)
            keep = _mm256_and_ps(keep, _mm256_cmp_ps(_mm256_loadu_ps(y + i), zero, _CMP_GT_OQ));
        int mask = _mm256_movemask_ps(keep);
        __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)pack_lanes[mask]));
        _mm256_storeu_ps(t->grad + count, _mm256_permutevar8x32_ps(d, lanes));
        __m256i o = _mm256_loadu_si256((const __m256i *)(off + i));
        _mm256_storeu_si256((__m256i *)(t->off + count), _mm256_permutevar8x32_epi32(o, lanes));
        count += __builtin_popcount((unsigned)mask);
    }
    t->count = count;
    nn_conv_gather_tail(grad, y, off, i, n, t);
}

/*
 * M rows of acc (from rowoff) += sum of grad * the rows of each term's
 * window; *bias (when not NULL) += each grad in turn, a chain that runs
 * beside the FMAs at no cost.
 */
ALWAYS_INLINE void weight_grad_block(const float *xpad, const int32_t *rowoff, const nn_conv_terms *t,
                                     float *acc, float *bias, const int M)
{
    __m256 sum[BLOCK_MAX];
    int32_t off[BLOCK_MAX];
    float b = 0.0f;
#pragma GCC unroll 12
    for (int r = 0; r < M; r++) {
        sum[r] = _mm256_loadu_ps(acc + NN_VEC * r);
        off[r] = rowoff[r];
    }
    for (int e = 0; e < t->count; e++) {
        __m256 grad = _mm256_set1_ps(t->grad[e]);
        const float *x = xpad + t->off[e];
        if (bias)
            b += t->grad[e];
#pragma GCC unroll 12
        for (int r = 0; r < M; r++)
            sum[r] = _mm256_fmadd_ps(grad, _mm256_loadu_ps(x + off[r]), sum[r]);
    }
#pragma GCC unroll 12
    for (int r = 0; r < M; r++)
        _mm256_storeu_ps(acc + NN_VEC * r, sum[r]);
    if (bias)
        *bias = b;
}

/* M channel vectors of a filter in registers; each term adds grad * them to its window in dint. */
ALWAYS_INLINE void input_grad_block(const float *wq, const int32_t *tapoff, const nn_conv_terms *t, int cp,
                                    float *dint, const int M)
{
    __m256 w[BLOCK_MAX];
    int32_t off[BLOCK_MAX];
#pragma GCC unroll 12
    for (int r = 0; r < M; r++) {
        w[r] = _mm256_loadu_ps(wq + NN_VEC * r);
        off[r] = tapoff[r];
    }
    for (int e = 0; e < t->count; e++) {
        __m256 grad = _mm256_set1_ps(t->grad[e]);
        float *d = dint + (size_t)t->off[e] * cp;
#pragma GCC unroll 12
        for (int r = 0; r < M; r++)
            _mm256_storeu_ps(d + off[r], _mm256_fmadd_ps(grad, w[r], _mm256_loadu_ps(d + off[r])));
    }
}

#define ROWS_CASE(fn, M, ...) \
    case M:                   \
        fn(__VA_ARGS__, M);   \
        break;
#define ROWS_SWITCH(m, fn, ...)                                                                      \
    switch (m) {                                                                                     \
        ROWS_CASE(fn, 1, __VA_ARGS__) ROWS_CASE(fn, 2, __VA_ARGS__) ROWS_CASE(fn, 3, __VA_ARGS__)    \
        ROWS_CASE(fn, 4, __VA_ARGS__) ROWS_CASE(fn, 5, __VA_ARGS__) ROWS_CASE(fn, 6, __VA_ARGS__)    \
        ROWS_CASE(fn, 7, __VA_ARGS__) ROWS_CASE(fn, 8, __VA_ARGS__) ROWS_CASE(fn, 9, __VA_ARGS__)    \
        ROWS_CASE(fn, 10, __VA_ARGS__) ROWS_CASE(fn, 11, __VA_ARGS__) ROWS_CASE(fn, 12, __VA_ARGS__) \
    }

float nn_conv_avx2_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                               const nn_conv_terms *t, float *acc)
{
    int nblocks = (g->rows + BLOCK_MAX - 1) / BLOCK_MAX;
    float bias = 0.0f;
    for (int b = 0; b < nblocks; b++) {
        int r0, r1;
        nn_conv_segment(g->rows, b, nblocks, &r0, &r1);
        ROWS_SWITCH(r1 - r0, weight_grad_block, xpad, rowoff + r0, t, acc + (size_t)NN_VEC * r0,
                    b == 0 ? &bias : NULL)
    }
    return bias;
}

void nn_conv_avx2_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                             const nn_conv_terms *t, float *dint)
{
    int nblocks = (g->taps + BLOCK_MAX - 1) / BLOCK_MAX;
    for (int b = 0; b < nblocks; b++) {
        int r0, r1;
        nn_conv_segment(g->taps, b, nblocks, &r0, &r1);
        ROWS_SWITCH(r1 - r0, input_grad_block, wq + (size_t)NN_VEC * r0, tapoff + r0, t, g->cp, dint)
    }
}

const nn_conv_kernels nn_conv_kernels_avx2 = {
    .isa = ODY_ISA_AVX2,
    .direct = nn_conv_avx2_direct,
    .pool_relu = nn_conv_avx2_pool_relu,
    .gather_terms = nn_conv_avx2_gather_terms,
    .weight_grad = nn_conv_avx2_weight_grad,
    .input_grad = nn_conv_avx2_input_grad,
    .to_channels = avx2_to_channels,
    .transpose = nn_conv_avx2_transpose,
};

#endif
