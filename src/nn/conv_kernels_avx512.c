/*
 * conv2d's direct loops for AVX-512 (F, BW, VL; see conv_kernels.c and
 * conv_internal.h). CMakeLists.txt compiles this file alone with the
 * AVX-512 flags; nothing here runs unless the CPU has them.
 *
 *   direct      output channels in whole 16-float vectors (OCP a multiple
 *               of 16: LeNet-5's conv2 has 16): the AVX2 loop with half the
 *               instructions; at most 8 output channels at stride 1 (conv1):
 *               vectorised over 16 pixels of a row instead, y channel-major
 *   direct_same such a layer of the input's size (conv1): 16 pixels of the
 *               plane, across row ends, from the unpadded sample, masked
 *   pool_relu   of that channel-major y; of whole 16-channel vectors
 *               otherwise (conv2), or AVX2's
 *   gather_terms, transpose
 *               16 candidates (8 x 8 blocks) at a time, the last ones
 *               masked: no scalar tails
 *   weight_grad, input_grad
 *               8-wide rows and channel vectors as in AVX2 (5 taps and 6
 *               channels would leave a 16-wide vector more than half
 *               empty), a pointer per row in the block
 *   hwc_backward
 *               the fused backward of a sample on pixel-major copies
 *               (LeNet-5's conv2): kernel rows of K * C floats for dW,
 *               and each pooled window's input gradient over all output
 *               channels summed in registers (conv_internal.h)
 *
 * The rest, and direct for an odd number of 8-float channel vectors, is
 * the AVX2 code (conv_kernels_avx2.c).
 */
#include "nn/conv_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)

#include "nn/conv_avx.h"
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
                                const float *bias, float *y, const int P, const int B, const int KC)
{
    __m512 acc[BLOCK_MAX];
#pragma GCC unroll 16
    for (int j = 0; j < P; j++)
        for (int b = 0; b < B; b++)
            acc[j * B + b] = _mm512_loadu_ps(bias + ZMM * b);
    const int k = KC ? KC : g->win.k;
    for (int c = 0; c < g->win.c; c++)
#pragma GCC unroll 5
        for (int kh = 0; kh < k; kh++) {
            const float *row = x + ((size_t)c * g->hp + kh) * g->wp;
#pragma GCC unroll 5
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

static void direct_one_vector(const nn_conv_geom *g, const float *x, int S, const float *wt,
                              const float *bias, float *y, int P)
{
    switch (P) {
        NN_DIRECT_CASE(1, 1) NN_DIRECT_CASE(2, 1) NN_DIRECT_CASE(3, 1) NN_DIRECT_CASE(4, 1) NN_DIRECT_CASE(5, 1)
        NN_DIRECT_CASE(6, 1) NN_DIRECT_CASE(7, 1) NN_DIRECT_CASE(8, 1) NN_DIRECT_CASE(9, 1) NN_DIRECT_CASE(10, 1)
        NN_DIRECT_CASE(11, 1) NN_DIRECT_CASE(12, 1) NN_DIRECT_CASE(13, 1) NN_DIRECT_CASE(14, 1) NN_DIRECT_CASE(15, 1)
        NN_DIRECT_CASE(16, 1)
    }
}

static void direct_two_vectors(const nn_conv_geom *g, const float *x, int S, const float *wt,
                               const float *bias, float *y, int P)
{
    switch (P) {
        NN_DIRECT_CASE(1, 2) NN_DIRECT_CASE(2, 2) NN_DIRECT_CASE(3, 2) NN_DIRECT_CASE(4, 2) NN_DIRECT_CASE(5, 2)
        NN_DIRECT_CASE(6, 2) NN_DIRECT_CASE(7, 2) NN_DIRECT_CASE(8, 2)
    }
}

/*
 * Layers with few output channels (at most 8, stride 1: LeNet-5's conv1,
 * 1 -> 6) vectorise over pixels instead: 16 output pixels of a row in a
 * vector, one vector per output channel and row, each tap one input row
 * load and one broadcast weight per channel, four output rows at a time
 * (24 sums in registers; two rows above 6 channels). y is then channel-major, (OC, OH, OW), which
 * pool_relu and to_channels of this level read; the sums are the same, in
 * the same order, as the channel-vectorised loops (the same bits).
 */
static bool pixel_major(const nn_conv_geom *g)
{
    return g->win.stride == 1 && g->oc <= 8 && g->win.ow >= 8;
}

static inline __mmask16 lanes_below(int n)
{
    return n >= ZMM ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* One tap of a pixel-major block: acc[r][o] += x[r] * the tap's weight of channel o. */
ALWAYS_INLINE void tap_fma(__m512 acc[4][8], const __m512 x[4], const float *wt, const int R, const int OC)
{
#pragma GCC unroll 8
    for (int o = 0; o < OC; o++) {
        __m512 w = _mm512_set1_ps(wt[o]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[r][o] = _mm512_fmadd_ps(x[r], w, acc[r][o]);
    }
}

/* R output rows (1, 2, or 4 when OC <= 6) from oy, the 16 (or `mask`) pixels from ox, of OC channels. */
ALWAYS_INLINE void pixel_block(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias,
                               float *y, int oy, int ox, __mmask16 mask, const int R, const int OC, const int KC)
{
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < R; r++)
            acc[r][o] = _mm512_set1_ps(bias[o]);
    const int k = KC ? KC : g->win.k;
    for (int c = 0; c < g->win.c; c++)
#pragma GCC unroll 5
        for (int kh = 0; kh < k; kh++) {
            const float *row = xpad + ((size_t)c * g->hp + oy + kh) * g->wp + ox;
#pragma GCC unroll 5
            for (int kw = 0; kw < k; kw++, wt += g->ocp) {
                /* whole vectors: lanes past the row read the next row (or xpad's slack) and are not stored */
                __m512 x[4];
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    x[r] = _mm512_loadu_ps(row + (size_t)r * g->wp + kw);
                tap_fma(acc, x, wt, R, OC);
            }
        }
    size_t plane = (size_t)g->win.oh * g->win.ow;
#pragma GCC unroll 8
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(y + o * plane + (size_t)(oy + r) * g->win.ow + ox, mask, acc[r][o]);
}

/*
 * The pixel-major blocks of up to 8 channels, OC and K constants: a switch
 * on g->oc of blocks of n (4, 2 or 1) rows or vectors, BLOCK_(R, OC, KC)
 * being the caller's block (defined around OC_SWITCH).
 */
#define BLOCK_4(KC) BLOCK_(4, OC_, KC)
#define BLOCK_2(KC) BLOCK_(2, OC_, KC)
#define OC_CASE(OC, n)                                                                         \
    case OC: {                                                                                 \
        enum { OC_ = OC };                                                                     \
        if (OC <= 6 && (n) == 4) /* constant OC: no 4-block code above 6 channels */           \
            NN_WITH_K(g->win.k, BLOCK_4);                                                      \
        else if ((n) == 2)                                                                     \
            NN_WITH_K(g->win.k, BLOCK_2);                                                      \
        else                                                                                   \
            BLOCK_(1, OC, 0);                                                                  \
        return;                                                                                \
    }
#define OC_SWITCH(n)                                                                           \
    switch (g->oc) {                                                                           \
        OC_CASE(1, n) OC_CASE(2, n) OC_CASE(3, n) OC_CASE(4, n) OC_CASE(5, n) OC_CASE(6, n)    \
        OC_CASE(7, n) OC_CASE(8, n)                                                            \
    }

static void pixel_rows(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y,
                       int oy, int rows, int ox, __mmask16 mask)
{
#define BLOCK_(R, OC, KC) pixel_block(g, xpad, wt, bias, y, oy, ox, mask, R, OC, KC)
    OC_SWITCH(rows)
#undef BLOCK_
}

static void pixel_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y)
{
    const nn_window *w = &g->win;
    for (int oy = 0, rows; oy < w->oh; oy += rows) { /* 4 rows (24 sums in registers) up to 6 channels, else 2 */
        int left = w->oh - oy;
        rows = g->oc <= 6 && left >= 4 ? 4 : left >= 2 ? 2 : 1;
        for (int ox = 0; ox < w->ow; ox += ZMM)
            pixel_rows(g, xpad, wt, bias, y, oy, rows, ox, lanes_below(w->ow - ox));
    }
}

/* kmovw straight from memory (GCC's _load_mask16 goes through a general register: two ops) */
ALWAYS_INLINE __mmask16 load_mask(const uint16_t *m)
{
    __mmask16 k;
    __asm__("kmovw %1, %0" : "=k"(k) : "m"(*m));
    return k;
}

/*
 * direct_same (conv_internal.h): R vectors of 16 consecutive pixels of
 * the plane from vector v, across row ends, of OC channels; each tap one
 * masked load of the unpadded channel per vector (the lanes off are the
 * padding: +0, as xpad's) and one broadcast weight per channel, the taps
 * in pixel_block's order: its sums, bit for bit. LeNet-5's conv1: 49
 * vectors a channel against pixel_block's 56 (rows of 28 in two vectors),
 * and no xpad to fill.
 */
ALWAYS_INLINE void same_block(const nn_conv_geom *g, const float *x, const uint16_t *masks, const float *wt,
                              const float *bias, float *y, int v, const int R, const int OC, const int KC)
{
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < R; r++)
            acc[r][o] = _mm512_set1_ps(bias[o]);
    const int k = KC ? KC : g->win.k, taps = k * k, w = g->win.w;
    const size_t in_plane = (size_t)g->win.h * w;
    /* the address of a tap's first lane (p + (kh - pad) * W + kw - pad) may lie before x or
     * past it, in lanes the mask turns off (never read): integer arithmetic, not a pointer */
    const intptr_t lane0 = (intptr_t)ZMM * v - (intptr_t)g->win.pad * (w + 1); /* tap (0, 0) of pixel 16v */
    const intptr_t first = (intptr_t)x + (intptr_t)sizeof(float) * lane0;
    for (int c = 0; c < g->win.c; c++) {
        const uint16_t *m = masks + (size_t)v * taps;
        __asm__("" : "+r"(m)); /* each tap's masks loaded at the tap, not hoisted out of c into spills */
        const intptr_t xc = first + (intptr_t)(sizeof(float) * c * in_plane);
#pragma GCC unroll 5
        for (int kh = 0; kh < k; kh++) {
            intptr_t row = xc + (intptr_t)sizeof(float) * kh * w;
            __asm__("" : "+r"(row)); /* one base register a kernel row, the taps' offsets constants */
#pragma GCC unroll 5
            for (int kw = 0; kw < k; kw++, wt += g->ocp, m++) {
                __m512 xv[4];
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    xv[r] = _mm512_maskz_loadu_ps(load_mask(&m[r * taps]),
                                                  (const void *)(row + (intptr_t)(sizeof(float) * (ZMM * r + kw))));
                tap_fma(acc, xv, wt, R, OC);
            }
        }
    }
    const int plane = g->win.oh * g->win.ow;
#pragma GCC unroll 8
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(y + (size_t)o * plane + (size_t)ZMM * (v + r),
                                  lanes_below(plane - ZMM * (v + r)), acc[r][o]);
}

static void same_vectors(const nn_conv_geom *g, const float *x, const uint16_t *masks, const float *wt,
                         const float *bias, float *y, int v, int vectors)
{
#define BLOCK_(R, OC, KC) same_block(g, x, masks, wt, bias, y, v, R, OC, KC)
    OC_SWITCH(vectors)
#undef BLOCK_
}

static void avx512_direct_same(const nn_conv_geom *g, const float *x, const uint16_t *masks, const float *wt,
                               const float *bias, float *y)
{
    int total = (g->win.oh * g->win.ow + ZMM - 1) / ZMM;
    for (int v = 0, vectors; v < total; v += vectors) { /* 4 vectors (24 sums) up to 6 channels, else 2 */
        int left = total - v;
        vectors = g->oc <= 6 && left >= 4 ? 4 : left >= 2 ? 2 : 1;
        same_vectors(g, x, masks, wt, bias, y, v, vectors);
    }
}

/*
 * pool_relu of a channel-major y: 16 pooled outputs at a time from 32
 * pixels of two rows, split into even and odd columns; the candidates in
 * the order of the other levels (ties keep the first) and the same
 * window offsets (stride 1: row * WP + column).
 */
static void pixel_pool_relu(const nn_conv_geom *g, const float *y, float *out, int32_t *arg)
{
    int ow = g->win.ow, ph = g->win.oh / 2, pw = ow / 2;
    size_t plane = (size_t)g->win.oh * ow, pooled = (size_t)ph * pw;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i even = _mm512_add_epi32(lane, lane), odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512 zero = _mm512_setzero_ps();
    const int step[4] = {0, 1, g->wp, g->wp + 1};
    for (int o = 0; o < g->oc; o++)
        for (int py = 0; py < ph; py++)
            for (int px = 0; px < pw; px += ZMM) { /* 16 pooled outputs from 32 pixels of two rows */
                int n = pw - px < ZMM ? pw - px : ZMM;
                __mmask16 lo = lanes_below(2 * n), hi = lanes_below(2 * n - ZMM);
                const float *r0 = y + o * plane + (size_t)2 * py * ow + 2 * px, *r1 = r0 + ow;
                __m512 a0 = _mm512_maskz_loadu_ps(lo, r0), a1 = _mm512_maskz_loadu_ps(hi, r0 + ZMM);
                __m512 b0 = _mm512_maskz_loadu_ps(lo, r1), b1 = _mm512_maskz_loadu_ps(hi, r1 + ZMM);
                __m512 cand[4] = {_mm512_permutex2var_ps(a0, even, a1), _mm512_permutex2var_ps(a0, odd, a1),
                                  _mm512_permutex2var_ps(b0, even, b1), _mm512_permutex2var_ps(b0, odd, b1)};
                __m512i corner = _mm512_add_epi32(_mm512_set1_epi32(2 * py * g->wp + 2 * px), even);
                __m512 best = cand[0];
                __m512i where = corner;
                for (int t = 1; t < 4; t++) {
                    __mmask16 wins = _mm512_cmp_ps_mask(cand[t], best, _CMP_GT_OQ); /* strictly: ties keep the first */
                    best = _mm512_mask_blend_ps(wins, best, cand[t]);
                    where = _mm512_mask_blend_epi32(wins, where, _mm512_add_epi32(corner, _mm512_set1_epi32(step[t])));
                }
                size_t at = o * pooled + (size_t)py * pw + px;
                __mmask16 keep = lanes_below(n);
                _mm512_mask_storeu_ps(out + at, keep, _mm512_max_ps(best, zero)); /* relu; NaN -> 0 */
                _mm512_mask_storeu_epi32(arg + at, keep, where);
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

/*
 * dst[c][p] = src[p][c] (as bits) in 8 x 8 blocks, the last block of
 * pixels and of channels masked: no float past a pixel's channels is read
 * and none past the pixels is written (AVX2's loop does the pixels beyond
 * the last whole block one float at a time: LeNet-5's conv2 unpads rows of
 * 14 pixels and pools planes of 25).
 */
static void avx512_transpose(const float *src, int stride, int pixels, int channels, float *dst,
                             size_t dst_stride)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int p = 0; p < pixels; p += 8) {
        int n = pixels - p < 8 ? pixels - p : 8;
        __mmask8 keep = (__mmask8)lanes_below(n);
        for (int c0 = 0; c0 < channels; c0 += 8) {
            int m = channels - c0 < 8 ? channels - c0 : 8;
            __mmask8 in = (__mmask8)lanes_below(m);
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < n ? _mm256_maskz_loadu_ps(in, src + (size_t)(p + i) * stride + c0) : zero;
            nn_transpose8(r);
            for (int lane = 0; lane < m; lane++)
                _mm256_mask_storeu_ps(dst + (size_t)(c0 + lane) * dst_stride + p, keep, r[lane]);
        }
    }
}

/*
 * nn_conv_pad with padding: each row 16 floats at a time, the last piece
 * masked (LeNet-5's conv1: 28 = 16 + 12; the generic loop's AVX-512 clone
 * did the 12 one float at a time).
 */
static void avx512_pad(const nn_conv_geom *g, const float *x, float *xpad)
{
    const nn_window *w = &g->win;
    size_t in_plane = (size_t)w->h * w->w, plane = (size_t)g->hp * g->wp;
    for (int c = 0; c < w->c; c++)
        for (int y = 0; y < w->h; y++) {
            float *dst = xpad + c * plane + (size_t)(y + w->pad) * g->wp + w->pad;
            const float *src = x + c * in_plane + (size_t)y * w->w;
            for (int i = 0; i < w->w; i += ZMM) {
                __mmask16 keep = lanes_below(w->w - i);
                _mm512_mask_storeu_ps(dst + i, keep, _mm512_maskz_loadu_ps(keep, src + i));
            }
        }
}

/*
 * pool_relu of a pixel-major y whose channels are whole 16-float vectors
 * (LeNet-5's conv2): AVX2's loop (the candidates in the same order, ties
 * keep the first) a vector of 16 channels at a time, then the values and
 * the argmax offsets transposed to channel-major.
 */
static void vector_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp, float *out,
                             int32_t *arg)
{
    int ow = g->win.ow, ph = g->win.oh / 2, pw = ow / 2, plane = ph * pw, vectors = g->ocp / ZMM;
    float *value = tmp, *where = tmp + (size_t)plane * g->ocp; /* pixel-major, then transposed */
    const __m512 zero = _mm512_setzero_ps();
    for (int py = 0; py < ph; py++)
        for (int px = 0; px < pw; px++) {
            int q = py * pw + px, p0 = 2 * py * ow + 2 * px;
            int at[4] = {p0, p0 + 1, p0 + ow, p0 + ow + 1};
            for (int v = 0; v < vectors; v++) {
                const float *yv = y + ZMM * v;
                __m512 best = _mm512_loadu_ps(yv + (size_t)at[0] * g->ocp);
                __m512i idx = _mm512_set1_epi32(winoff[at[0]]);
                for (int t = 1; t < 4; t++) {
                    __m512 x = _mm512_loadu_ps(yv + (size_t)at[t] * g->ocp);
                    __mmask16 wins = _mm512_cmp_ps_mask(x, best, _CMP_GT_OQ); /* strictly: ties keep the first */
                    best = _mm512_mask_blend_ps(wins, best, x);
                    idx = _mm512_mask_blend_epi32(wins, idx, _mm512_set1_epi32(winoff[at[t]]));
                }
                size_t o = (size_t)q * g->ocp + ZMM * v;
                _mm512_storeu_ps(value + o, _mm512_max_ps(best, zero)); /* relu; NaN -> 0 as relu does */
                _mm512_storeu_si512(where + o, idx);
            }
        }
    avx512_transpose(value, g->ocp, plane, g->oc, out, (size_t)plane);
    avx512_transpose(where, g->ocp, plane, g->oc, (float *)arg, (size_t)plane); /* int32 bits moved as floats */
}

static void avx512_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
                             float *out, int32_t *arg)
{
    if (pixel_major(g))
        pixel_pool_relu(g, y, out, arg);
    else if (g->ocp % ZMM == 0)
        vector_pool_relu(g, y, winoff, tmp, out, arg);
    else
        nn_conv_avx2_pool_relu(g, y, winoff, tmp, out, arg);
}

static void avx512_to_channels(const nn_conv_geom *g, const float *y, int pixels, float *dst)
{
    if (pixel_major(g))
        memcpy(dst, y, (size_t)g->oc * pixels * sizeof *dst);
    else
        avx512_transpose(y, g->ocp, pixels, g->oc, dst, (size_t)pixels);
}

/*
 * gather_terms 16 candidates at a time, the last ones masked (no scalar
 * tail: LeNet-5's conv2 has planes of 25), each vector's kept terms
 * compressed to the front in order and stored as a whole vector (the
 * next one overwrites the lanes past them; t's slack takes the last):
 * the same terms in the same order as the other levels. Whole stores
 * took 25-35 ns for a 196-candidate plane (LeNet-5's conv1) where masked
 * ones took 35-44, AVX2's 32-67.
 */
static void avx512_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t)
{
    const __m512 zero = _mm512_setzero_ps();
    int count = 0;
    for (int i = 0; i < n; i += ZMM) {
        __mmask16 in = lanes_below(n - i);
        __m512 d = _mm512_maskz_loadu_ps(in, grad + i);
        __mmask16 keep = _mm512_mask_cmp_ps_mask(in, d, zero, _CMP_NEQ_UQ);
        if (y)
            keep &= _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, y + i), zero, _CMP_GT_OQ);
        _mm512_storeu_ps(t->grad + count, _mm512_maskz_compress_ps(keep, d));
        _mm512_storeu_si512(t->off + count, _mm512_maskz_compress_epi32(keep, _mm512_maskz_loadu_epi32(in, off + i)));
        count += __builtin_popcount((unsigned)keep);
    }
    t->count = count;
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

/* Term e of t into M rows' sums, and into the bias sum *b unless b is NULL. */
ALWAYS_INLINE void weight_grad_term(const float *const row[], const nn_conv_terms *t, int e, __m256 sum[],
                                    float *b, const int M)
{
    __m256 grad = _mm256_set1_ps(t->grad[e]);
    int32_t off = t->off[e];
    if (b)
        *b += t->grad[e];
#pragma GCC unroll 8
    for (int r = 0; r < M; r++)
        sum[r] = _mm256_fmadd_ps(grad, _mm256_loadu_ps(row[r] + off), sum[r]);
}

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
    for (int e = 0; e < t->count; e++)
        weight_grad_term(row, t, e, sum, bias ? &b : NULL, M);
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

/*
 * Two channels' weight_grad_rows side by side, over the terms both have,
 * then each one's rest: each sum (and each bias) takes its own terms in
 * order, so the bits are two weight_grad calls', but the two bias chains
 * run together.
 */
ALWAYS_INLINE void weight_grad_pair_rows(const float *xpad, const int32_t *rowoff, const nn_conv_terms t[2],
                                         float *const acc[2], float bias[2], const int M)
{
    __m256 sum[2][ROWS_MAX];
    const float *row[ROWS_MAX];
    float b[2] = {0.0f, 0.0f};
#pragma GCC unroll 8
    for (int r = 0; r < M; r++) {
        sum[0][r] = _mm256_loadu_ps(acc[0] + YMM * r);
        sum[1][r] = _mm256_loadu_ps(acc[1] + YMM * r);
        row[r] = xpad + rowoff[r];
    }
    int both = t[0].count < t[1].count ? t[0].count : t[1].count;
    for (int e = 0; e < both; e++) {
        weight_grad_term(row, &t[0], e, sum[0], &b[0], M);
        weight_grad_term(row, &t[1], e, sum[1], &b[1], M);
    }
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++)
        for (int e = both; e < t[k].count; e++)
            weight_grad_term(row, &t[k], e, sum[k], &b[k], M);
#pragma GCC unroll 8
    for (int r = 0; r < M; r++) {
        _mm256_storeu_ps(acc[0] + YMM * r, sum[0][r]);
        _mm256_storeu_ps(acc[1] + YMM * r, sum[1][r]);
    }
    bias[0] = b[0];
    bias[1] = b[1];
}

static void avx512_weight_grad_pair(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                                    const nn_conv_terms t[2], float *const acc[2], float bias[2])
{
    ROWS_SWITCH(g->rows, weight_grad_pair_rows, xpad, rowoff, t, acc, bias)
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

/*
 * hwc_backward (conv_internal.h, nn_hwc_work): the fused backward on
 * pixel-major copies of one sample.
 */

/*
 * xhwc (pixels, C) = xpad (C, pixels), C <= 8: 8 pixels at a time; each
 * pixel's 8 floats (zeros beyond C) are stored at its place, in order,
 * so the next pixel's store overwrites the zeros and the last ones land
 * in xhwc's slack.
 */
static void to_hwc(const float *xpad, int c_n, int pixels, float *xhwc)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int p = 0; p < pixels; p += 8) {
        int n = pixels - p < 8 ? pixels - p : 8;
        __mmask8 in = (__mmask8)lanes_below(n);
        __m256 r[8];
        for (int c = 0; c < 8; c++)
            r[c] = c < c_n ? _mm256_maskz_loadu_ps(in, xpad + (size_t)c * pixels + p) : zero;
        nn_transpose8(r);
        for (int j = 0; j < n; j++)
            _mm256_storeu_ps(xhwc + (size_t)(p + j) * c_n, r[j]);
    }
}

/*
 * One channel's terms: its K kernel rows of K * C floats (V vectors) in
 * registers, each term one FMA per vector, in the terms' order as
 * weight_grad (the same sums, the same bits). Lanes beyond K * C read the
 * pixels after the window's row (or xhwc's slack); they are never folded.
 */
ALWAYS_INLINE float hwc_weight_grad(const float *xhwc, size_t rowstep, int c_n, const nn_conv_terms *t,
                                    float *acc, const int K, const int V)
{
    __m512 sum[5][3];
    float b = 0.0f;
#pragma GCC unroll 5
    for (int kh = 0; kh < K; kh++)
        for (int v = 0; v < V; v++)
            sum[kh][v] = _mm512_loadu_ps(acc + kh * NN_HWC_ROW + v * ZMM);
    for (int e = 0; e < t->count; e++) {
        __m512 grad = _mm512_set1_ps(t->grad[e]);
        const float *x = xhwc + (size_t)t->off[e] * c_n;
        b += t->grad[e];
#pragma GCC unroll 5
        for (int kh = 0; kh < K; kh++)
            for (int v = 0; v < V; v++) {
                sum[kh][v] = _mm512_fmadd_ps(grad, _mm512_loadu_ps(x + kh * rowstep + v * ZMM), sum[kh][v]);
            }
    }
#pragma GCC unroll 5
    for (int kh = 0; kh < K; kh++)
        for (int v = 0; v < V; v++)
            _mm512_storeu_ps(acc + kh * NN_HWC_ROW + v * ZMM, sum[kh][v]);
    return b;
}

/*
 * One term of a pooled window: acc rows DY.. += grad * the filter rows
 * placed at its dx (w). Y: a row's last vector holds at most 8 floats
 * (LeNet-5's conv2: 36 = 16 + 16 + 4), so it is summed in tail, 8 wide:
 * the same sums, and on a CPU that runs 512-bit FMAs as two halves
 * (AMD's Zen 4) 5 FMA slots a row instead of 6. tail is widened back
 * into acc's last vector only where the block slides (in the FMA's
 * place, a widening move after each one cost 14% of conv2's input
 * gradient on the Zen 4: 138 against 119 us for 64 samples).
 */
ALWAYS_INLINE void hwc_window_term(__m512 acc[6][3], __m256 tail[6], float grad, const float *w, const int DY,
                                   const int K, const int V, const bool Y)
{
    __m512 g = _mm512_set1_ps(grad);
#pragma GCC unroll 5
    for (int kh = 0; kh < K; kh++)
        for (int v = 0; v < V; v++) {
            const float *wv = w + kh * NN_HWC_WROW + v * ZMM;
            if (Y && v == V - 1)
                tail[kh + DY] = _mm256_fmadd_ps(_mm512_castps512_ps256(g), _mm256_loadu_ps(wv), tail[kh + DY]);
            else
                acc[kh + DY][v] = _mm512_fmadd_ps(g, _mm512_loadu_ps(wv), acc[kh + DY][v]);
        }
}

/*
 * Each pooled window's terms, 16 channels at a time (the three planes
 * transposed pixel-major first: AVX-512's gathers across the planes,
 * three a window, took 3.4% of a LeNet-5 step on an AMD EPYC, Zen 4):
 * tmask the live ones (a relu passed them and their gradient is not zero)
 * whose argmax is in the window's top row (low 16 bits) or bottom row
 * (high 16), tgrad their gradients and toff the offset in wrow of their
 * filter placed at the argmax's column. Lanes past OC are never live.
 */
static void hwc_window_terms(const nn_conv_geom *g, const float *out, const float *dout, const int32_t *arg,
                             const nn_hwc_work *work)
{
    const int wp = g->wp, ph = g->win.oh / 2, pw = g->win.ow / 2, plane = ph * pw, groups = (g->oc + ZMM - 1) / ZMM;
    const int entry = g->win.k * NN_HWC_WROW; /* wrow floats of one (channel, dx) */
    const size_t lanes = (size_t)groups * ZMM;
    const __m512 zero = _mm512_setzero_ps();
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i filter = _mm512_mullo_epi32(lane, _mm512_set1_epi32(2 * entry));
    avx512_transpose(dout, plane, g->oc, plane, work->tgrad, lanes);
    avx512_transpose(out, plane, g->oc, plane, work->ty, lanes);
    avx512_transpose((const float *)arg, plane, g->oc, plane, (float *)work->toff, lanes); /* int32 bits */
    for (int q = 0; q < plane; q++) {
        int base = 2 * (q / pw) * wp + 2 * (q % pw);
        for (int grp = 0; grp < groups; grp++) {
            int o0 = grp * ZMM;
            __mmask16 in = lanes_below(g->oc - o0);
            size_t at_q = ((size_t)q * groups + grp) * ZMM;
            __m512 d = _mm512_loadu_ps(work->tgrad + at_q), y = _mm512_loadu_ps(work->ty + at_q);
            __m512i a = _mm512_sub_epi32(_mm512_loadu_si512(work->toff + at_q), _mm512_set1_epi32(base));
            __mmask16 live = _mm512_mask_cmp_ps_mask(in, d, zero, _CMP_NEQ_UQ) &
                             _mm512_mask_cmp_ps_mask(in, y, zero, _CMP_GT_OQ);
            __mmask16 top = _mm512_cmp_epi32_mask(a, _mm512_set1_epi32(wp), _MM_CMPINT_LT);
            __m512i dx = _mm512_mask_sub_epi32(a, (__mmask16)~top, a, _mm512_set1_epi32(wp));
            _mm512_storeu_si512(work->toff + at_q,
                                _mm512_add_epi32(_mm512_add_epi32(filter, _mm512_set1_epi32(o0 * 2 * entry)),
                                                 _mm512_mullo_epi32(dx, _mm512_set1_epi32(entry))));
            work->tmask[(size_t)q * groups + grp] = (uint32_t)(live & top) | (uint32_t)(live & (__mmask16)~top) << 16;
        }
    }
}

/*
 * The input gradient, window by window along each pooled row (the terms
 * from hwc_window_terms): the terms of a window add their filter, placed
 * at the argmax, into K + 1 rows of K + 1 pixels held in registers (V
 * vectors a row): the top row's terms first, then the bottom row's (each
 * in channel order). The block then slides 2 pixels right to the next
 * window: the 2 pixels it leaves behind are final for this pooled row and
 * are added into dhwc (no later store of the row overlaps them, so no
 * load waits on a store in flight), the rest moves down 2 * C lanes; the
 * last window of the row adds its whole block.
 */
ALWAYS_INLINE void hwc_input_grad(const nn_conv_geom *g, const nn_hwc_work *work, const bool Y, const int K,
                                  const int V)
{
    const int c_n = g->win.c, wp = g->wp, ph = g->win.oh / 2, pw = g->win.ow / 2, groups = (g->oc + ZMM - 1) / ZMM;
    const __mmask16 last = lanes_below((K + 1) * c_n - (V - 1) * ZMM), left = lanes_below(2 * c_n);
    const __m512 zero = _mm512_setzero_ps();
    const __m512i slide = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(2 * c_n)); /* lane i <- i + 2C of (v, next) */
    const float *wrow = work->wrow;
    for (int py = 0; py < ph; py++) {
        __m512 acc[6][3];
        __m256 tail[6]; /* Y: acc's last vectors, 8 wide */
#pragma GCC unroll 6
        for (int r = 0; r <= K; r++) {
            for (int v = 0; v < V; v++)
                acc[r][v] = zero;
            tail[r] = _mm256_setzero_ps();
        }
        for (int px = 0; px < pw; px++) {
            size_t q = (size_t)py * pw + px;
            for (int grp = 0; grp < groups; grp++) {
                const float *grad = work->tgrad + (q * groups + grp) * ZMM;
                const int32_t *off = work->toff + (q * groups + grp) * ZMM;
                uint32_t mask = work->tmask[q * groups + grp];
                for (uint32_t m = mask & 0xFFFFu; m; m &= m - 1) {
                    int o = __builtin_ctz(m);
                    hwc_window_term(acc, tail, grad[o], wrow + off[o], 0, K, V, Y);
                }
                for (uint32_t m = mask >> 16; m; m &= m - 1) {
                    int o = __builtin_ctz(m);
                    hwc_window_term(acc, tail, grad[o], wrow + off[o], 1, K, V, Y);
                }
            }
            bool end = px == pw - 1;
            int base = 2 * py * wp + 2 * px;
#pragma GCC unroll 6
            for (int r = 0; r <= K; r++) {
                if (Y)
                    acc[r][V - 1] = _mm512_zextps256_ps512(tail[r]);
                float *dst = work->dhwc + (size_t)(base + r * wp) * c_n;
                for (int v = 0; v < (end ? V : 1); v++) {
                    __mmask16 m = !end ? left : v == V - 1 ? last : (__mmask16)0xFFFF;
                    __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + v * ZMM), acc[r][v]);
                    _mm512_mask_storeu_ps(dst + v * ZMM, m, sum);
                }
                for (int v = 0; v < V; v++)
                    acc[r][v] = _mm512_permutex2var_ps(acc[r][v], slide, v + 1 < V ? acc[r][v + 1] : zero);
                if (Y)
                    tail[r] = _mm512_castps512_ps256(acc[r][V - 1]);
            }
        }
    }
}

/* pre fn(..., K, V) with K (<= 5) and V (<= 3) as constants. */
#define HWC_CASE(pre, fn, K, V, ...) \
    case (K) * 4 + (V):              \
        pre fn(__VA_ARGS__, K, V);   \
        break;
#define HWC_SWITCH(k, v, pre, fn, ...) \
    switch ((k) * 4 + (v)) { \
        HWC_CASE(pre, fn, 1, 1, __VA_ARGS__) HWC_CASE(pre, fn, 1, 2, __VA_ARGS__) HWC_CASE(pre, fn, 1, 3, __VA_ARGS__) \
        HWC_CASE(pre, fn, 2, 1, __VA_ARGS__) HWC_CASE(pre, fn, 2, 2, __VA_ARGS__) HWC_CASE(pre, fn, 2, 3, __VA_ARGS__) \
        HWC_CASE(pre, fn, 3, 1, __VA_ARGS__) HWC_CASE(pre, fn, 3, 2, __VA_ARGS__) HWC_CASE(pre, fn, 3, 3, __VA_ARGS__) \
        HWC_CASE(pre, fn, 4, 1, __VA_ARGS__) HWC_CASE(pre, fn, 4, 2, __VA_ARGS__) HWC_CASE(pre, fn, 4, 3, __VA_ARGS__) \
        HWC_CASE(pre, fn, 5, 1, __VA_ARGS__) HWC_CASE(pre, fn, 5, 2, __VA_ARGS__) HWC_CASE(pre, fn, 5, 3, __VA_ARGS__) \
    }

static float hwc_weight_grad_any(const float *xhwc, size_t rowstep, int c_n, const nn_conv_terms *t, float *acc,
                                 int k)
{
    float bias = 0.0f;
    HWC_SWITCH(k, (k * c_n + ZMM - 1) / ZMM, bias =, hwc_weight_grad, xhwc, rowstep, c_n, t, acc)
    return bias;
}

static void hwc_input_grad_any(const nn_conv_geom *g, const nn_hwc_work *work)
{
    int k = g->win.k, floats = (k + 1) * g->win.c, v = (floats + ZMM - 1) / ZMM;
    if (v > 1 && floats - (v - 1) * ZMM <= ZMM / 2) /* the last vector 8 wide */
        HWC_SWITCH(k, v, , hwc_input_grad, g, work, true)
    else
        HWC_SWITCH(k, v, , hwc_input_grad, g, work, false)
}

static void avx512_hwc_backward(const nn_conv_geom *g, const float *xpad, const float *out, const float *dout,
                                const int32_t *arg, const nn_hwc_work *work, float *dbias, float *din)
{
    const nn_window *w = &g->win;
    int c_n = w->c, plane = (w->oh / 2) * (w->ow / 2);
    size_t hwc = (size_t)g->hp * g->wp * c_n;
    to_hwc(xpad, c_n, g->hp * g->wp, work->xhwc);
    for (int o = 0; o < g->oc; o++) {
        nn_conv_terms t = {.off = work->off, .grad = work->grad};
        size_t at = (size_t)o * plane;
        avx512_gather_terms(dout + at, out + at, arg + at, plane, &t);
        dbias[o] += hwc_weight_grad_any(work->xhwc, (size_t)g->wp * c_n, c_n, &t,
                                        work->hacc + (size_t)o * w->k * NN_HWC_ROW, w->k);
    }
    if (!din)
        return;
    memset(work->dhwc, 0, hwc * sizeof *work->dhwc);
    hwc_window_terms(g, out, dout, arg, work);
    hwc_input_grad_any(g, work);
    nn_conv_unpad(g, work->dhwc, c_n, din);
}

/*
 * winograd (conv_internal.h): F(2, 5) along each row. A kernel row's 5
 * taps make 2 outputs from 6 inputs with 6 products instead of 10, from
 * the points 0, 1, -1, 2, -2 and infinity (Lavin and Gray's transforms,
 * nn_conv_winograd_fits):
 *
 *   d' = B^T d (input, 6 -> 6)   g' = G g (kernel row, 5 -> 6)
 *   y0 = m0 + m1 + m2 + m3 + m4,  y1 = m1 - m2 + 2 (m3 - m4) + m5,  m = d' g'
 *
 *   B^T =  4  0 -5  0  1  0      G = 1/4   0     0    0    0
 *          0  4  4 -1 -1  0          1/6   1/6   1/6  1/6  1/6
 *          0 -4  4  1 -1  0          1/6  -1/6   1/6 -1/6  1/6
 *          0 -2 -1  2  1  0          1/24  1/12  1/6  1/3  2/3
 *          0  2 -1 -2  1  0          1/24 -1/12  1/6 -1/3  2/3
 *          0  4  0 -5  0  1          0     0     0    0    1
 *
 * The sums over (c, kh) then run on the transformed values: 6 FMAs for 2
 * outputs and a kernel row instead of 10.
 */
static const float WINO_G[NN_WINO_POINTS][NN_WINO_K] = {
    {1.0f / 4, 0, 0, 0, 0},
    {1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6},
    {1.0f / 6, -1.0f / 6, 1.0f / 6, -1.0f / 6, 1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6, 1.0f / 3, 2.0f / 3},
    {1.0f / 24, -1.0f / 12, 1.0f / 6, -1.0f / 3, 2.0f / 3},
    {0, 0, 0, 0, 1},
};

/* u ((OCP/16, C, 5, 6) vectors of 16 channels) = G times each kernel row of wt (C*5*5, OCP). */
static void avx512_winograd_pack(const nn_conv_geom *g, const float *wt, float *u)
{
    const int c_n = g->win.c, groups = g->ocp / ZMM;
    for (int grp = 0; grp < groups; grp++)
        for (int c = 0; c < c_n; c++)
            for (int kh = 0; kh < NN_WINO_K; kh++) {
                const float *row = wt + (size_t)(c * NN_WINO_K + kh) * NN_WINO_K * g->ocp + grp * ZMM;
                float *out = u + nn_wino_u_at(g, grp, c, kh);
                for (int i = 0; i < NN_WINO_POINTS; i++) {
                    __m512 sum = _mm512_setzero_ps();
                    for (int k = 0; k < NN_WINO_K; k++)
                        sum = _mm512_fmadd_ps(_mm512_set1_ps(WINO_G[i][k]), _mm512_loadu_ps(row + k * g->ocp), sum);
                    _mm512_storeu_ps(out + i * ZMM, sum);
                }
            }
}

/*
 * vt ((C * HP * 6) rows of 8 floats) = B^T d of each tile of each padded
 * row, tile t (inputs 2t .. 2t + 5) in lane t: a row is one vector (WP <=
 * 16), its 6 strided views permuted out of it.
 */
static void winograd_input(const nn_conv_geom *g, const float *xpad, float *vt)
{
    const __m256i first = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), one = _mm256_set1_epi32(1);
    const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f), two = _mm256_set1_ps(2.0f);
    const __mmask16 in = lanes_below(g->wp);
    const int rows = g->win.c * g->hp;
    for (int r = 0; r < rows; r++) {
        __m512 row = _mm512_maskz_loadu_ps(in, xpad + (size_t)r * g->wp);
        __m256 s[6];
        __m256i at = first;
        for (int j = 0; j < 6; j++) {
            s[j] = _mm512_castps512_ps256(_mm512_permutexvar_ps(_mm512_castsi256_si512(at), row));
            at = _mm256_add_epi32(at, one);
        }
        __m256 a = _mm256_fnmadd_ps(four, s[2], s[4]), b = _mm256_fnmadd_ps(four, s[1], s[3]); /* s4 - 4 s2, s3 - 4 s1 */
        __m256 c = _mm256_sub_ps(s[4], s[2]), d = _mm256_mul_ps(two, _mm256_sub_ps(s[3], s[1]));
        float *v = vt + nn_wino_vt_at(g, 0, r); /* row r of the C * HP */
        _mm256_storeu_ps(v + 0 * NN_WINO_LANES, _mm256_add_ps(_mm256_fnmadd_ps(five, s[2], _mm256_mul_ps(four, s[0])), s[4]));
        _mm256_storeu_ps(v + 1 * NN_WINO_LANES, _mm256_sub_ps(_mm256_setzero_ps(), _mm256_add_ps(a, b)));
        _mm256_storeu_ps(v + 2 * NN_WINO_LANES, _mm256_sub_ps(b, a));
        _mm256_storeu_ps(v + 3 * NN_WINO_LANES, _mm256_add_ps(d, c));
        _mm256_storeu_ps(v + 4 * NN_WINO_LANES, _mm256_sub_ps(c, d));
        _mm256_storeu_ps(v + 5 * NN_WINO_LANES, _mm256_add_ps(_mm256_fnmadd_ps(five, s[3], _mm256_mul_ps(four, s[1])), s[5]));
    }
}

/* One output row of one 16-channel group: T tiles' 6 products summed over (c, kh) in registers, then y. */
ALWAYS_INLINE void winograd_row(const nn_conv_geom *g, const float *u, const float *vt, __m512 bias, float *y,
                                int oy, const int T)
{
    __m512 m[5][NN_WINO_POINTS];
#pragma GCC unroll 5
    for (int t = 0; t < T; t++)
#pragma GCC unroll 6
        for (int i = 0; i < NN_WINO_POINTS; i++)
            m[t][i] = _mm512_setzero_ps();
    for (int c = 0; c < g->win.c; c++)
#pragma GCC unroll 5
        for (int kh = 0; kh < NN_WINO_K; kh++) {
            const float *v = vt + nn_wino_vt_at(g, c, oy + kh), *uk = u + nn_wino_u_at(g, 0, c, kh);
#pragma GCC unroll 6
            for (int i = 0; i < NN_WINO_POINTS; i++) {
                __m512 w = _mm512_loadu_ps(uk + i * ZMM);
#pragma GCC unroll 5
                for (int t = 0; t < T; t++)
                    m[t][i] = _mm512_fmadd_ps(w, _mm512_set1_ps(v[i * NN_WINO_LANES + t]), m[t][i]);
            }
        }
    const __m512 two = _mm512_set1_ps(2.0f);
#pragma GCC unroll 5
    for (int t = 0; t < T; t++) {
        __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m[t][0], m[t][1]), _mm512_add_ps(m[t][2], m[t][3])),
                                  m[t][4]);
        __m512 y1 = _mm512_add_ps(_mm512_sub_ps(m[t][1], m[t][2]),
                                  _mm512_fmadd_ps(two, _mm512_sub_ps(m[t][3], m[t][4]), m[t][5]));
        float *at = y + ((size_t)oy * g->win.ow + 2 * t) * g->ocp;
        _mm512_storeu_ps(at, _mm512_add_ps(y0, bias));
        _mm512_storeu_ps(at + g->ocp, _mm512_add_ps(y1, bias));
    }
}

static void avx512_winograd(const nn_conv_geom *g, const float *xpad, const float *u, const float *bias, float *vt,
                            float *y)
{
    winograd_input(g, xpad, vt);
    const int tiles = g->win.ow / 2, groups = g->ocp / ZMM;
    for (int grp = 0; grp < groups; grp++) {
        const float *ug = u + nn_wino_u_at(g, grp, 0, 0);
        __m512 b = _mm512_loadu_ps(bias + grp * ZMM);
        float *yg = y + grp * ZMM;
        for (int oy = 0; oy < g->win.oh; oy++)
            switch (tiles) {
            case 5: winograd_row(g, ug, vt, b, yg, oy, 5); break;
            case 4: winograd_row(g, ug, vt, b, yg, oy, 4); break;
            case 3: winograd_row(g, ug, vt, b, yg, oy, 3); break;
            case 2: winograd_row(g, ug, vt, b, yg, oy, 2); break;
            default: winograd_row(g, ug, vt, b, yg, oy, 1); break;
            }
    }
}

const nn_conv_kernels nn_conv_kernels_avx512 = {
    .isa = ODY_ISA_AVX512,
    .direct = avx512_direct,
    .direct_same = avx512_direct_same,
    .winograd_pack = avx512_winograd_pack,
    .winograd = avx512_winograd,
    .pool_relu = avx512_pool_relu,
    .to_channels = avx512_to_channels,
    .gather_terms = avx512_gather_terms,
    .weight_grad = avx512_weight_grad,
    .weight_grad_pair = avx512_weight_grad_pair,
    .input_grad = avx512_input_grad,
    .hwc_backward = avx512_hwc_backward,
    .pad = avx512_pad,
    .transpose = avx512_transpose,
};

#endif
