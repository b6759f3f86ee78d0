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

void nn_conv_pad(const nn_conv_geom *g, const float *x, float *xpad)
{
    const nn_window *w = &g->win;
    size_t in_plane = (size_t)w->h * w->w, plane = (size_t)g->hp * g->wp;
    if (w->pad == 0) { /* the same layout */
        memcpy(xpad, x, w->c * in_plane * sizeof *x);
        memset(xpad + w->c * in_plane, 0, NN_SLACK * sizeof *x);
        return;
    }
    memset(xpad, 0, nn_conv_padded_floats(g) * sizeof *xpad);
    for (int c = 0; c < w->c; c++)
        for (int y = 0; y < w->h; y++)
            memcpy(xpad + c * plane + (size_t)(y + w->pad) * g->wp + w->pad, x + c * in_plane + (size_t)y * w->w,
                   (size_t)w->w * sizeof *x);
}

void nn_conv_unpad(const nn_conv_geom *g, const float *dint, float *din)
{
    const nn_window *w = &g->win;
    for (int y = 0; y < w->h; y++)
        for (int x = 0; x < w->w; x++) {
            const float *pixel = dint + ((size_t)(y + w->pad) * g->wp + x + w->pad) * g->cp;
            for (int c = 0; c < w->c; c++)
                din[((size_t)c * w->h + y) * w->w + x] = pixel[c];
        }
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

void nn_conv_pool_relu(const nn_conv_geom *g, const float *y, float *tmp, float *out, int32_t *arg)
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
                __m256 idx = _mm256_castsi256_ps(_mm256_set1_epi32(at[0]));
                for (int t = 1; t < 4; t++) {
                    __m256 x = _mm256_loadu_ps(yv + (size_t)at[t] * g->ocp);
                    __m256 wins = _mm256_cmp_ps(x, best, _CMP_GT_OQ); /* strictly: ties keep the first */
                    best = _mm256_blendv_ps(best, x, wins);
                    idx = _mm256_blendv_ps(idx, _mm256_castsi256_ps(_mm256_set1_epi32(at[t])), wins);
                }
                size_t o = (size_t)q * g->ocp + NN_VEC * v;
                _mm256_storeu_ps(value + o, _mm256_max_ps(best, zero)); /* relu; NaN -> 0 as relu does */
                _mm256_storeu_ps(where + o, idx);
            }
        }
    for (int o = 0; o < g->oc; o++)
        for (int q = 0; q < plane; q++) {
            out[(size_t)o * plane + q] = value[(size_t)q * g->ocp + o];
            memcpy(&arg[(size_t)o * plane + q], &where[(size_t)q * g->ocp + o], sizeof *arg);
        }
}

/* M rows of acc (from rowoff) += sum of grad * the rows of each term's window. */
ALWAYS_INLINE void weight_grad_block(const float *xpad, const int32_t *rowoff, const nn_conv_terms *t,
                                     float *acc, const int M)
{
    __m256 sum[BLOCK_MAX];
    int32_t off[BLOCK_MAX];
#pragma GCC unroll 12
    for (int r = 0; r < M; r++) {
        sum[r] = _mm256_loadu_ps(acc + NN_VEC * r);
        off[r] = rowoff[r];
    }
    for (int e = 0; e < t->count; e++) {
        __m256 grad = _mm256_set1_ps(t->grad[e]);
        const float *x = xpad + t->off[e];
#pragma GCC unroll 12
        for (int r = 0; r < M; r++)
            sum[r] = _mm256_fmadd_ps(grad, _mm256_loadu_ps(x + off[r]), sum[r]);
    }
#pragma GCC unroll 12
    for (int r = 0; r < M; r++)
        _mm256_storeu_ps(acc + NN_VEC * r, sum[r]);
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

void nn_conv_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                         const nn_conv_terms *t, float *acc)
{
    int nblocks = (g->rows + BLOCK_MAX - 1) / BLOCK_MAX;
    for (int b = 0; b < nblocks; b++) {
        int r0, r1;
        segment(g->rows, b, nblocks, &r0, &r1);
        ROWS_SWITCH(r1 - r0, weight_grad_block, xpad, rowoff + r0, t, acc + (size_t)NN_VEC * r0)
    }
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

void nn_conv_pool_relu(const nn_conv_geom *g, const float *y, float *tmp, float *out, int32_t *arg)
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
                arg[(size_t)o * plane + py * pw + px] = where;
            }
}

void nn_conv_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                         const nn_conv_terms *t, float *acc)
{
    for (int e = 0; e < t->count; e++)
        for (int r = 0; r < g->rows; r++) {
            const float *x = xpad + t->off[e] + rowoff[r];
            for (int lane = 0; lane < NN_VEC; lane++)
                acc[r * NN_VEC + lane] += t->grad[e] * x[lane];
        }
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
