/*
 * conv2d kernels (see conv_internal.h for the layouts): packing and
 * padding in plain C, and four loops with an AVX2+FMA version (built when
 * the compiler targets it, ODY_ARCH_FLAGS) and a portable one:
 *
 *   direct      y = conv(xpad) + b, vectorised over output channels: a
 *               register block of up to 12 (pixel, channel vector) sums
 *               takes one broadcast input and one weight vector per tap
 *   pool_relu   relu(2x2 max pool) of y with the argmax, channel-major out
 *   weight_grad dW rows += grad * input rows, a block of rows in registers
 *   input_grad  dint pixels += grad * filter taps, the filter in registers
 *
 * weight_grad takes 8-wide rows: lanes beyond the kernel's width read the
 * input next to the window (or the slack); those lanes of acc are never
 * folded into dW.
 */
#include "nn/conv_internal.h"

#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define NN_CONV_AVX2 1
#endif

void nn_conv_geom_make(const nn_window *win, int oc, nn_conv_geom *g)
{
    *g = (nn_conv_geom){.win = *win, .oc = oc};
    g->ocp = (oc + NN_VEC - 1) / NN_VEC * NN_VEC;
    g->hp = win->h + 2 * win->pad;
    g->wp = win->w + 2 * win->pad;
    g->kv = (win->k + NN_VEC - 1) / NN_VEC;
    g->rows = win->c * win->k * g->kv;
    g->cp = (win->c + NN_VEC - 1) / NN_VEC * NN_VEC;
    g->taps = win->k * win->k * g->cp / NN_VEC;
}

size_t nn_conv_padded_floats(const nn_conv_geom *g)
{
    return (size_t)g->win.c * g->hp * g->wp + NN_SLACK;
}

size_t nn_conv_dint_floats(const nn_conv_geom *g)
{
    return (size_t)g->hp * g->wp * g->cp;
}

void nn_conv_pad_clear(const nn_conv_geom *g, float *xpad)
{
    memset(xpad, 0, nn_conv_padded_floats(g) * sizeof *xpad);
}

void nn_conv_pad(const nn_conv_geom *g, const float *x, float *xpad)
{
    const nn_window *w = &g->win;
    size_t in_plane = (size_t)w->h * w->w, plane = (size_t)g->hp * g->wp;
    if (w->pad == 0) { /* the same layout */
        memcpy(xpad, x, w->c * in_plane * sizeof *x);
        return;
    }
    for (int c = 0; c < w->c; c++)
        for (int y = 0; y < w->h; y++)
            memcpy(xpad + c * plane + (size_t)(y + w->pad) * g->wp + w->pad, x + c * in_plane + (size_t)y * w->w,
                   (size_t)w->w * sizeof *x);
}

void nn_conv_pack_forward(const nn_conv_geom *g, const float *w, const float *b, float *wt, float *bias)
{
    size_t taps = (size_t)g->win.c * g->win.k * g->win.k;
    for (size_t t = 0; t < taps; t++)
        for (int o = 0; o < g->ocp; o++)
            wt[t * g->ocp + o] = o < g->oc ? w[o * taps + t] : 0.0f;
    for (int o = 0; o < g->ocp; o++)
        bias[o] = o < g->oc ? b[o] : 0.0f;
}

void nn_conv_pack_backward(const nn_conv_geom *g, const float *w, float *wq, int32_t *rowoff,
                           int32_t *tapoff)
{
    int k = g->win.k, c_n = g->win.c;
    size_t taps = (size_t)c_n * k * k;
    for (int c = 0; c < c_n; c++)
        for (int kh = 0; kh < k; kh++)
            for (int j = 0; j < g->kv; j++)
                rowoff[(c * k + kh) * g->kv + j] = (c * g->hp + kh) * g->wp + NN_VEC * j;
    if (!wq)
        return;
    int vectors = g->cp / NN_VEC;
    for (int t = 0; t < k * k * vectors; t++)
        tapoff[t] = (t / vectors / k * g->wp + t / vectors % k) * g->cp + NN_VEC * (t % vectors);
    for (int o = 0; o < g->oc; o++)
        for (int t = 0; t < k * k; t++)
            for (int c = 0; c < g->cp; c++)
                wq[((size_t)o * k * k + t) * g->cp + c] = c < c_n ? w[o * taps + (size_t)c * k * k + t] : 0.0f;
}

void nn_conv_window_offsets(const nn_conv_geom *g, int32_t *winoff)
{
    const nn_window *w = &g->win;
    for (int oy = 0; oy < w->oh; oy++)
        for (int ox = 0; ox < w->ow; ox++)
            winoff[oy * w->ow + ox] = (oy * g->wp + ox) * w->stride;
}

void nn_conv_fold_weight_grad(const nn_conv_geom *g, const float *acc, float *dw)
{
    int k = g->win.k;
    size_t taps = (size_t)g->win.c * k * k;
    for (int o = 0; o < g->oc; o++)
        for (int ck = 0; ck < g->win.c * k; ck++) /* (c, kh) */
            for (int kw = 0; kw < k; kw++)
                dw[o * taps + (size_t)ck * k + kw] +=
                    acc[((size_t)o * g->rows + (size_t)ck * g->kv + kw / NN_VEC) * NN_VEC + kw % NN_VEC];
}

/*
 * Candidates [i, n) of nn_conv_gather_terms, appended to t without
 * branches (the kept ones are random): each is written at the end and
 * counted only when kept.
 */
static void gather_scalar(const float *grad, const float *y, const int32_t *off, int i, int n,
                          nn_conv_terms *t)
{
    int count = t->count;
    for (; i < n; i++) {
        t->off[count] = off[i];
        t->grad[count] = grad[i];
        count += grad[i] != 0.0f && (!y || y[i] > 0.0f);
    }
    t->count = count;
}

/*
 * Pixels [p, pixels) of transpose_out, one float at a time; without b the
 * floats are copied as bits (the argmax offsets travel this way too).
 */
static void transpose_tail(const float *a, const float *b, int stride, int p, int pixels, int channels,
                           float *dst, size_t dst_stride)
{
    for (; p < pixels; p++)
        for (int c = 0; c < channels; c++) {
            size_t at = (size_t)p * stride + c;
            if (b)
                dst[(size_t)c * dst_stride + p] = a[at] + b[at];
            else
                memcpy(&dst[(size_t)c * dst_stride + p], &a[at], sizeof *dst);
        }
}

#ifdef NN_CONV_AVX2

enum { BLOCK_MAX = 12 };

/* Items [lo, hi) of part `part` of `parts` nearly equal parts of n (a row's pixels, a filter's rows). */
static void segment(int n, int part, int parts, int *lo, int *hi)
{
    *lo = (int)((long)part * n / parts);
    *hi = (int)((long)(part + 1) * n / parts);
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/*
 * P output pixels of one row (x: the first one's window corner in xpad,
 * the next ones S floats apart) times B channel vectors (wt, bias and y at
 * the first of them): P * B sums in registers over every tap.
 */
ALWAYS_INLINE void direct_block(const nn_conv_geom *g, const float *x, const int S, const float *wt,
                                const float *bias, float *y, const int P, const int B)
{
    __m256 acc[BLOCK_MAX];
#pragma GCC unroll 12
    for (int j = 0; j < P; j++)
        for (int b = 0; b < B; b++)
            acc[j * B + b] = _mm256_loadu_ps(bias + NN_VEC * b);
    int k = g->win.k;
    for (int c = 0; c < g->win.c; c++)
        for (int kh = 0; kh < k; kh++) {
            const float *row = x + ((size_t)c * g->hp + kh) * g->wp;
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
        DIRECT_CASE(11, 1) DIRECT_CASE(12, 1)
    }
}

static void direct_two_vectors(const nn_conv_geom *g, const float *x, int S, const float *wt,
                               const float *bias, float *y, int P)
{
    switch (P) {
        DIRECT_CASE(1, 2) DIRECT_CASE(2, 2) DIRECT_CASE(3, 2) DIRECT_CASE(4, 2) DIRECT_CASE(5, 2)
        DIRECT_CASE(6, 2)
    }
}

void nn_conv_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y)
{
    const nn_window *w = &g->win;
    int vectors = g->ocp / NN_VEC;
    for (int v = 0; v < vectors; v += 2) {
        int two = vectors - v >= 2, pmax = two ? BLOCK_MAX / 2 : BLOCK_MAX;
        int nseg = (w->ow + pmax - 1) / pmax;
        for (int oy = 0; oy < w->oh; oy++)
            for (int seg = 0; seg < nseg; seg++) {
                int ox0, ox1;
                segment(w->ow, seg, nseg, &ox0, &ox1);
                const float *x = xpad + (size_t)oy * w->stride * g->wp + (size_t)ox0 * w->stride;
                float *at = y + ((size_t)oy * w->ow + ox0) * g->ocp + NN_VEC * v;
                (two ? direct_two_vectors : direct_one_vector)(g, x, w->stride, wt + NN_VEC * v,
                                                               bias + NN_VEC * v, at, ox1 - ox0);
            }
    }
}

/* Transpose 8 rows of 8 floats in place: r[l] becomes lane l of r[0..8). */
static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/*
 * dst[c * dst_stride + p] = a[p * stride + c] (+ b[p * stride + c] when b
 * is not NULL) for p < pixels, c < channels: pixel-major vectors to
 * channel-major rows, 8 x 8 at a time.
 */
static void transpose_out(const float *a, const float *b, int stride, int pixels, int channels,
                          float *dst, size_t dst_stride)
{
    int p = 0;
    for (; p + NN_VEC <= pixels; p += NN_VEC)
        for (int v = 0; v * NN_VEC < channels; v++) {
            __m256 r[NN_VEC];
            for (int i = 0; i < NN_VEC; i++) {
                size_t at = (size_t)(p + i) * stride + NN_VEC * v;
                r[i] = b ? _mm256_add_ps(_mm256_loadu_ps(a + at), _mm256_loadu_ps(b + at)) : _mm256_loadu_ps(a + at);
            }
            transpose8(r);
            for (int lane = 0; lane < NN_VEC && NN_VEC * v + lane < channels; lane++)
                _mm256_storeu_ps(dst + (size_t)(NN_VEC * v + lane) * dst_stride + p, r[lane]);
        }
    transpose_tail(a, b, stride, p, pixels, channels, dst, dst_stride);
}

void nn_conv_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
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
    nn_conv_to_channels(g, value, plane, out);
    nn_conv_to_channels(g, where, plane, (float *)arg); /* int32 bits moved as floats */
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

void nn_conv_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t)
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
    gather_scalar(grad, y, off, i, n, t);
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

float nn_conv_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                          const nn_conv_terms *t, float *acc)
{
    int nblocks = (g->rows + BLOCK_MAX - 1) / BLOCK_MAX;
    float bias = 0.0f;
    for (int b = 0; b < nblocks; b++) {
        int r0, r1;
        segment(g->rows, b, nblocks, &r0, &r1);
        ROWS_SWITCH(r1 - r0, weight_grad_block, xpad, rowoff + r0, t, acc + (size_t)NN_VEC * r0,
                    b == 0 ? &bias : NULL)
    }
    return bias;
}

void nn_conv_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                        const nn_conv_terms *t, float *dint)
{
    int nblocks = (g->taps + BLOCK_MAX - 1) / BLOCK_MAX;
    for (int b = 0; b < nblocks; b++) {
        int r0, r1;
        segment(g->taps, b, nblocks, &r0, &r1);
        ROWS_SWITCH(r1 - r0, input_grad_block, wq + (size_t)NN_VEC * r0, tapoff + r0, t, g->cp, dint)
    }
}

#else /* portable */

void nn_conv_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y)
{
    const nn_window *w = &g->win;
    for (int oy = 0; oy < w->oh; oy++)
        for (int ox = 0; ox < w->ow; ox++) {
            float *out = y + ((size_t)oy * w->ow + ox) * g->ocp;
            const float *x = xpad + (size_t)oy * w->stride * g->wp + (size_t)ox * w->stride, *tap = wt;
            memcpy(out, bias, (size_t)g->ocp * sizeof *out);
            for (int c = 0; c < w->c; c++)
                for (int kh = 0; kh < w->k; kh++)
                    for (int kw = 0; kw < w->k; kw++, tap += g->ocp) {
                        float v = x[((size_t)c * g->hp + kh) * g->wp + kw];
                        for (int o = 0; o < g->ocp; o++)
                            out[o] += v * tap[o];
                    }
        }
}

static void transpose_out(const float *a, const float *b, int stride, int pixels, int channels,
                          float *dst, size_t dst_stride)
{
    transpose_tail(a, b, stride, 0, pixels, channels, dst, dst_stride);
}

void nn_conv_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
                       float *out, int32_t *arg)
{
    int ow = g->win.ow, ph = g->win.oh / 2, pw = ow / 2, plane = ph * pw;
    for (int o = 0; o < g->oc; o++)
        for (int py = 0; py < ph; py++)
            for (int px = 0; px < pw; px++) {
                int p0 = 2 * py * ow + 2 * px, at[4] = {p0, p0 + 1, p0 + ow, p0 + ow + 1}, where = p0;
                float best = y[(size_t)p0 * g->ocp + o];
                for (int t = 1; t < 4; t++)
                    if (y[(size_t)at[t] * g->ocp + o] > best) {
                        best = y[(size_t)at[t] * g->ocp + o];
                        where = at[t];
                    }
                out[(size_t)o * plane + py * pw + px] = best > 0.0f ? best : 0.0f;
                arg[(size_t)o * plane + py * pw + px] = winoff[where];
            }
}

void nn_conv_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t)
{
    t->count = 0;
    gather_scalar(grad, y, off, 0, n, t);
}

float nn_conv_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                          const nn_conv_terms *t, float *acc)
{
    float bias = 0.0f;
    for (int e = 0; e < t->count; e++) {
        bias += t->grad[e];
        for (int r = 0; r < g->rows; r++) {
            const float *x = xpad + t->off[e] + rowoff[r];
            for (int lane = 0; lane < NN_VEC; lane++)
                acc[r * NN_VEC + lane] += t->grad[e] * x[lane];
        }
    }
    return bias;
}

void nn_conv_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                        const nn_conv_terms *t, float *dint)
{
    for (int e = 0; e < t->count; e++)
        for (int r = 0; r < g->taps; r++) {
            float *d = dint + (size_t)t->off[e] * g->cp + tapoff[r];
            for (int lane = 0; lane < NN_VEC; lane++)
                d[lane] += t->grad[e] * wq[r * NN_VEC + lane];
        }
}

#endif

void nn_conv_to_channels(const nn_conv_geom *g, const float *src, int pixels, float *dst)
{
    transpose_out(src, NULL, g->ocp, pixels, g->oc, dst, (size_t)pixels);
}

void nn_conv_unpad(const nn_conv_geom *g, const float *dint, float *din)
{
    const nn_window *w = &g->win;
    for (int y = 0; y < w->h; y++) {
        size_t first = ((size_t)(y + w->pad) * g->wp + w->pad) * g->cp;
        transpose_out(dint + first, NULL, g->cp, w->w, w->c, din + (size_t)y * w->w, (size_t)w->h * w->w);
    }
}
