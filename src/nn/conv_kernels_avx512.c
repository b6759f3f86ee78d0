/*
 * conv2d's direct loops for AVX-512 (F, BW, VL; see conv_kernels.c and
 * conv_internal.h). CMakeLists.txt compiles this file alone with the
 * AVX-512 flags; nothing here runs unless the CPU has them.
 *
 *   direct      output channels in whole 16-float vectors (OCP a multiple
 *               of 16: LeNet-5's conv2 has 16): the AVX2 loop with half the
 *               instructions; at most 8 output channels at stride 1 (conv1):
 *               vectorised over 16 pixels of a row instead, y channel-major
 *   pool_relu   of that channel-major y; otherwise AVX2's
 *   weight_grad, input_grad
 *               8-wide rows and channel vectors as in AVX2 (5 taps and 6
 *               channels would leave a 16-wide vector more than half
 *               empty), a pointer per row in the block
 *
 * The rest, and direct for an odd number of 8-float channel vectors, is
 * the AVX2 code (conv_kernels_avx2.c).
 */
#include "nn/conv_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)

#include <immintrin.h>
#include <string.h>

enum { ZMM = 16, BLOCK_MAX = 16 };

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/*
 * P output pixels of one row (x: the first one's window corner in xpad,
 * the next ones S floats apart) times B 16-channel vectors (wt, bias and y
 * at the first of them): P * B sums in registers over every tap, in the
 * taps' order (c, kh, kw) as the other levels.
 */
ALWAYS_INLINE void direct_block(const nn_conv_geom *g, const float *x, const int S, const float *wt,
                                const float *bias, float *y, const int P, const int B)
{
    __m512 acc[BLOCK_MAX];
#pragma GCC unroll 16
    for (int j = 0; j < P; j++)
        for (int b = 0; b < B; b++)
            acc[j * B + b] = _mm512_loadu_ps(bias + ZMM * b);
    int k = g->win.k;
    for (int c = 0; c < g->win.c; c++)
        for (int kh = 0; kh < k; kh++) {
            const float *row = x + ((size_t)c * g->hp + kh) * g->wp;
            for (int kw = 0; kw < k; kw++, wt += g->ocp) {
                __m512 w0 = _mm512_loadu_ps(wt), w1 = B > 1 ? _mm512_loadu_ps(wt + ZMM) : w0;
#pragma GCC unroll 16
                for (int j = 0; j < P; j++) {
                    __m512 xv = _mm512_set1_ps(row[kw + j * S]);
                    acc[j * B] = _mm512_fmadd_ps(xv, w0, acc[j * B]);
                    if (B > 1)
                        acc[j * B + 1] = _mm512_fmadd_ps(xv, w1, acc[j * B + 1]);
                }
            }
        }
#pragma GCC unroll 16
    for (int j = 0; j < P; j++)
        for (int b = 0; b < B; b++)
            _mm512_storeu_ps(y + (size_t)j * g->ocp + ZMM * b, acc[j * B + b]);
}

/* direct_block with P and B as constants (so that acc lives in registers) and stride 1 apart. */
#define DIRECT_CASE(P, B)                                                                      \
    case P:                                                                                    \
        if (S == 1)                                                                            \
            direct_block(g, x, 1, wt, bias, y, P, B);                                          \
        else                                                                                   \
            direct_block(g, x, S, wt, bias, y, P, B);                                          \
        return;

static void direct_one_vector(const nn_conv_geom *g, const float *x, int S, const float *wt,
                              const float *bias, float *y, int P)
{
    switch (P) {
        DIRECT_CASE(1, 1) DIRECT_CASE(2, 1) DIRECT_CASE(3, 1) DIRECT_CASE(4, 1) DIRECT_CASE(5, 1)
        DIRECT_CASE(6, 1) DIRECT_CASE(7, 1) DIRECT_CASE(8, 1) DIRECT_CASE(9, 1) DIRECT_CASE(10, 1)
        DIRECT_CASE(11, 1) DIRECT_CASE(12, 1) DIRECT_CASE(13, 1) DIRECT_CASE(14, 1) DIRECT_CASE(15, 1)
        DIRECT_CASE(16, 1)
    }
}

static void direct_two_vectors(const nn_conv_geom *g, const float *x, int S, const float *wt,
                               const float *bias, float *y, int P)
{
    switch (P) {
        DIRECT_CASE(1, 2) DIRECT_CASE(2, 2) DIRECT_CASE(3, 2) DIRECT_CASE(4, 2) DIRECT_CASE(5, 2)
        DIRECT_CASE(6, 2) DIRECT_CASE(7, 2) DIRECT_CASE(8, 2)
    }
}

/*
 * Layers with few output channels (at most 8, stride 1: LeNet-5's conv1,
 * 1 -> 6) vectorise over pixels instead: 16 output pixels of a row in a
 * vector, one vector per output channel and row, each tap one input row
 * load and one broadcast weight per channel, two output rows at a time
 * (16 sums in registers). y is then channel-major, (OC, OH, OW), which
 * pool_relu and to_channels of this level read; the sums are the same, in
 * the same order, as the channel-vectorised loops (the same bits).
 */
static bool pixel_major(const nn_conv_geom *g)
{
    return g->win.stride == 1 && g->oc <= 8 && g->win.ow >= 8;
}

static inline __mmask16 lanes_below(int n)
{
    return n >= ZMM ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* R output rows (1 or 2) from oy, the 16 (or `mask`) pixels from ox, of OC channels. */
ALWAYS_INLINE void pixel_block(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias,
                               float *y, int oy, int ox, __mmask16 mask, const int R, const int OC)
{
    __m512 acc[2][8];
#pragma GCC unroll 8
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < R; r++)
            acc[r][o] = _mm512_set1_ps(bias[o]);
    int k = g->win.k;
    for (int c = 0; c < g->win.c; c++)
        for (int kh = 0; kh < k; kh++) {
            const float *row = xpad + ((size_t)c * g->hp + oy + kh) * g->wp + ox;
            for (int kw = 0; kw < k; kw++, wt += g->ocp) {
                __m512 x0 = _mm512_maskz_loadu_ps(mask, row + kw);
                __m512 x1 = R > 1 ? _mm512_maskz_loadu_ps(mask, row + g->wp + kw) : x0;
#pragma GCC unroll 8
                for (int o = 0; o < OC; o++) {
                    __m512 w = _mm512_set1_ps(wt[o]);
                    acc[0][o] = _mm512_fmadd_ps(x0, w, acc[0][o]);
                    if (R > 1)
                        acc[1][o] = _mm512_fmadd_ps(x1, w, acc[1][o]);
                }
            }
        }
    size_t plane = (size_t)g->win.oh * g->win.ow;
#pragma GCC unroll 8
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(y + o * plane + (size_t)(oy + r) * g->win.ow + ox, mask, acc[r][o]);
}

#define PIXEL_CASE(OC)                                                                         \
    case OC:                                                                                   \
        if (rows == 2)                                                                         \
            pixel_block(g, xpad, wt, bias, y, oy, ox, mask, 2, OC);                            \
        else                                                                                   \
            pixel_block(g, xpad, wt, bias, y, oy, ox, mask, 1, OC);                            \
        return;

static void pixel_rows(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y,
                       int oy, int rows, int ox, __mmask16 mask)
{
    switch (g->oc) {
        PIXEL_CASE(1) PIXEL_CASE(2) PIXEL_CASE(3) PIXEL_CASE(4) PIXEL_CASE(5) PIXEL_CASE(6) PIXEL_CASE(7)
        PIXEL_CASE(8)
    }
}

static void pixel_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y)
{
    const nn_window *w = &g->win;
    for (int oy = 0; oy < w->oh; oy += 2)
        for (int ox = 0; ox < w->ow; ox += ZMM)
            pixel_rows(g, xpad, wt, bias, y, oy, w->oh - oy >= 2 ? 2 : 1, ox, lanes_below(w->ow - ox));
}

/* The upper 8 floats of v. */
static inline __m256 upper_half(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/*
 * pool_relu of a channel-major y: 8 pooled outputs at a time from 16
 * pixels of two rows, split into even and odd columns; the candidates in
 * the order of the other levels (ties keep the first) and the same
 * window offsets (stride 1: row * WP + column).
 */
static void pixel_pool_relu(const nn_conv_geom *g, const float *y, float *out, int32_t *arg)
{
    int ow = g->win.ow, ph = g->win.oh / 2, pw = ow / 2;
    size_t plane = (size_t)g->win.oh * ow, pooled = (size_t)ph * pw;
    const __m512i split = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256 zero = _mm256_setzero_ps();
    for (int o = 0; o < g->oc; o++)
        for (int py = 0; py < ph; py++)
            for (int px = 0; px < pw; px += 8) {
                int n = pw - px < 8 ? pw - px : 8;
                __mmask16 in = lanes_below(2 * n);
                const float *r0 = y + o * plane + (size_t)2 * py * ow + 2 * px;
                __m512 a = _mm512_permutexvar_ps(split, _mm512_maskz_loadu_ps(in, r0));
                __m512 b = _mm512_permutexvar_ps(split, _mm512_maskz_loadu_ps(in, r0 + ow));
                __m256 cand[4] = {_mm512_castps512_ps256(a), upper_half(a), _mm512_castps512_ps256(b), upper_half(b)};
                __m256i corner = _mm256_add_epi32(_mm256_set1_epi32(2 * py * g->wp + 2 * px), even);
                int step[4] = {0, 1, g->wp, g->wp + 1};
                __m256 best = cand[0];
                __m256i where = corner;
                for (int t = 1; t < 4; t++) {
                    __mmask8 wins = _mm256_cmp_ps_mask(cand[t], best, _CMP_GT_OQ); /* strictly: ties keep the first */
                    best = _mm256_mask_blend_ps(wins, best, cand[t]);
                    where = _mm256_mask_blend_epi32(wins, where, _mm256_add_epi32(corner, _mm256_set1_epi32(step[t])));
                }
                size_t at = o * pooled + (size_t)py * pw + px;
                __mmask8 keep = (__mmask8)lanes_below(n);
                _mm256_mask_storeu_ps(out + at, keep, _mm256_max_ps(best, zero)); /* relu; NaN -> 0 */
                _mm256_mask_storeu_epi32(arg + at, keep, where);
            }
}

static void avx512_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y)
{
    if (pixel_major(g)) {
        pixel_direct(g, xpad, wt, bias, y);
        return;
    }
    if (g->ocp % ZMM != 0) {
        nn_conv_avx2_direct(g, xpad, wt, bias, y);
        return;
    }
    const nn_window *w = &g->win;
    int vectors = g->ocp / ZMM;
    for (int v = 0; v < vectors; v += 2) {
        int two = vectors - v >= 2, pmax = two ? BLOCK_MAX / 2 : BLOCK_MAX;
        int nseg = (w->ow + pmax - 1) / pmax;
        for (int oy = 0; oy < w->oh; oy++)
            for (int seg = 0; seg < nseg; seg++) {
                int ox0, ox1;
                nn_conv_segment(w->ow, seg, nseg, &ox0, &ox1);
                const float *x = xpad + (size_t)oy * w->stride * g->wp + (size_t)ox0 * w->stride;
                float *at = y + ((size_t)oy * w->ow + ox0) * g->ocp + ZMM * v;
                (two ? direct_two_vectors : direct_one_vector)(g, x, w->stride, wt + ZMM * v, bias + ZMM * v,
                                                               at, ox1 - ox0);
            }
    }
}

static void avx512_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
                             float *out, int32_t *arg)
{
    if (pixel_major(g))
        pixel_pool_relu(g, y, out, arg);
    else
        nn_conv_avx2_pool_relu(g, y, winoff, tmp, out, arg);
}

static void avx512_to_channels(const nn_conv_geom *g, const float *y, int pixels, float *dst)
{
    if (pixel_major(g))
        memcpy(dst, y, (size_t)g->oc * pixels * sizeof *dst);
    else
        nn_conv_avx2_transpose(y, g->ocp, pixels, g->oc, dst, (size_t)pixels);
}

/*
 * weight_grad and input_grad on the 8-wide rows and channel vectors of the
 * AVX2 level, with the addressing reorganised: a block of up to 8 rows
 * (or taps) keeps a pointer per row, so each term's row is one FMA with
 * its address as pointer + the term's offset (no address arithmetic, no
 * spilled offsets), and the block passes over the terms. weight_grad's
 * sums take the terms in the same order as the other levels (the same
 * bits); input_grad adds a dint element's updates in another order than
 * AVX2 (blocks differ), so its last bits may differ.
 */
enum { YMM = 8, ROWS_MAX = 8 };

ALWAYS_INLINE void weight_grad_rows(const float *xpad, const int32_t *rowoff, const nn_conv_terms *t,
                                    float *acc, float *bias, const int M)
{
    __m256 sum[ROWS_MAX];
    const float *row[ROWS_MAX];
    float b = 0.0f;
#pragma GCC unroll 8
    for (int r = 0; r < M; r++) {
        sum[r] = _mm256_loadu_ps(acc + YMM * r);
        row[r] = xpad + rowoff[r];
    }
    for (int e = 0; e < t->count; e++) {
        __m256 grad = _mm256_set1_ps(t->grad[e]);
        int32_t off = t->off[e];
        if (bias)
            b += t->grad[e];
#pragma GCC unroll 8
        for (int r = 0; r < M; r++)
            sum[r] = _mm256_fmadd_ps(grad, _mm256_loadu_ps(row[r] + off), sum[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < M; r++)
        _mm256_storeu_ps(acc + YMM * r, sum[r]);
    if (bias)
        *bias = b;
}

ALWAYS_INLINE void input_grad_rows(const float *wq, const int32_t *tapoff, const nn_conv_terms *t, int cp,
                                   float *dint, const int M)
{
    __m256 w[ROWS_MAX];
    float *tap[ROWS_MAX];
#pragma GCC unroll 8
    for (int r = 0; r < M; r++) {
        w[r] = _mm256_loadu_ps(wq + YMM * r);
        tap[r] = dint + tapoff[r];
    }
    for (int e = 0; e < t->count; e++) {
        __m256 grad = _mm256_set1_ps(t->grad[e]);
        size_t off = (size_t)t->off[e] * cp;
#pragma GCC unroll 8
        for (int r = 0; r < M; r++)
            _mm256_storeu_ps(tap[r] + off, _mm256_fmadd_ps(grad, w[r], _mm256_loadu_ps(tap[r] + off)));
    }
}

#define ROWS_CASE(fn, M, ...) \
    case M:                   \
        fn(__VA_ARGS__, M);   \
        break;
#define ROWS_SWITCH(m, fn, ...)                                                                   \
    switch (m) {                                                                                  \
        ROWS_CASE(fn, 1, __VA_ARGS__) ROWS_CASE(fn, 2, __VA_ARGS__) ROWS_CASE(fn, 3, __VA_ARGS__) \
        ROWS_CASE(fn, 4, __VA_ARGS__) ROWS_CASE(fn, 5, __VA_ARGS__) ROWS_CASE(fn, 6, __VA_ARGS__) \
        ROWS_CASE(fn, 7, __VA_ARGS__) ROWS_CASE(fn, 8, __VA_ARGS__)                               \
    }

static float avx512_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                                const nn_conv_terms *t, float *acc)
{
    int nblocks = (g->rows + ROWS_MAX - 1) / ROWS_MAX;
    float bias = 0.0f;
    for (int b = 0; b < nblocks; b++) {
        int r0, r1;
        nn_conv_segment(g->rows, b, nblocks, &r0, &r1);
        ROWS_SWITCH(r1 - r0, weight_grad_rows, xpad, rowoff + r0, t, acc + (size_t)YMM * r0, b == 0 ? &bias : NULL)
    }
    return bias;
}

static void avx512_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                              const nn_conv_terms *t, float *dint)
{
    int nblocks = (g->taps + ROWS_MAX - 1) / ROWS_MAX;
    for (int b = 0; b < nblocks; b++) {
        int r0, r1;
        nn_conv_segment(g->taps, b, nblocks, &r0, &r1);
        ROWS_SWITCH(r1 - r0, input_grad_rows, wq + (size_t)YMM * r0, tapoff + r0, t, g->cp, dint)
    }
}

const nn_conv_kernels nn_conv_kernels_avx512 = {
    .isa = ODY_ISA_AVX512,
    .direct = avx512_direct,
    .pool_relu = avx512_pool_relu,
    .to_channels = avx512_to_channels,
    .gather_terms = nn_conv_avx2_gather_terms,
    .weight_grad = avx512_weight_grad,
    .input_grad = avx512_input_grad,
    .transpose = nn_conv_avx2_transpose,
};

#endif
