/*
 * conv2d kernels (see conv_internal.h for the layouts): packing and
 * padding in plain C, and the loops below in portable C here, for AVX2+FMA
 * in conv_kernels_avx2.c and for AVX-512 in conv_kernels_avx512.c (those
 * two files are compiled with their own -m flags and called only when the
 * CPU has them, core/cpu.c):
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

/* Moves only (the same bits anywhere): wider copies of the short rows where
 * the CPU has them, picked at load time; the level's own (AVX-512: each
 * row's last piece masked, no scalar tail) where it has one. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void pad_rows(const nn_conv_geom *g, const float *x, float *xpad)
{
    const nn_window *w = &g->win;
    size_t in_plane = (size_t)w->h * w->w, plane = (size_t)g->hp * g->wp;
    if (w->pad == 0) { /* the same layout */
        memcpy(xpad, x, w->c * in_plane * sizeof *x);
        return;
    }
    for (int c = 0; c < w->c; c++)
        for (int y = 0; y < w->h; y++) { /* rows are short (LeNet-5: 28 floats): a loop, not a memcpy call */
            float *restrict dst = xpad + c * plane + (size_t)(y + w->pad) * g->wp + w->pad;
            const float *restrict src = x + c * in_plane + (size_t)y * w->w;
            for (int i = 0; i < w->w; i++)
                dst[i] = src[i];
        }
}

void nn_conv_pad(const nn_conv_geom *g, const float *x, float *xpad)
{
    const nn_conv_kernels *k = nn_conv_kernels_active();
    if (k->pad && g->win.pad)
        k->pad(g, x, xpad);
    else
        pad_rows(g, x, xpad);
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

bool nn_conv_hwc_fits(const nn_conv_geom *g)
{
    const nn_window *w = &g->win;
    return w->stride == 1 && w->c >= 2 && w->c <= 7 && w->k <= 5 && w->k * w->c <= NN_HWC_ROW &&
           (w->k + 1) * w->c <= NN_HWC_WROW && w->oh >= 2 && w->ow >= 2;
}

/* The next n floats (64-byte pieces) from base, or NULL when only counting. */
static float *hwc_take(float *base, size_t *used, size_t n)
{
    float *p = base ? base + *used : NULL;
    *used += (n + 15) / 16 * 16;
    return p;
}

size_t nn_conv_hwc_carve(const nn_conv_geom *g, float *base, nn_hwc_work *work)
{
    const nn_window *w = &g->win;
    size_t hwc = (size_t)g->hp * g->wp * w->c, pooled = (size_t)(w->oh / 2) * (w->ow / 2);
    size_t groups = (size_t)(g->oc + 15) / 16, used = 0;
    work->xhwc = hwc_take(base, &used, hwc + NN_HWC_SLACK);
    work->dhwc = hwc_take(base, &used, hwc + NN_HWC_SLACK);
    work->wrow = hwc_take(base, &used, groups * 16 * 2 * w->k * NN_HWC_WROW);
    work->hacc = hwc_take(base, &used, (size_t)g->oc * w->k * NN_HWC_ROW);
    work->grad = hwc_take(base, &used, pooled + NN_SLACK); /* gather_terms' slack */
    work->off = (int32_t *)hwc_take(base, &used, pooled + NN_SLACK);
    work->tgrad = hwc_take(base, &used, pooled * groups * 16);
    work->toff = (int32_t *)hwc_take(base, &used, pooled * groups * 16);
    work->tmask = (uint32_t *)hwc_take(base, &used, pooled * groups);
    work->ty = hwc_take(base, &used, pooled * groups * 16);
    return used;
}

void nn_conv_hwc_prepare(const nn_conv_geom *g, const float *w, const nn_hwc_work *work, bool input_grad)
{
    const nn_window *win = &g->win;
    int c_n = win->c, k = win->k;
    size_t pixels = (size_t)g->hp * g->wp, hwc = pixels * c_n;
    memset(work->hacc, 0, (size_t)g->oc * k * NN_HWC_ROW * sizeof *work->hacc);
    memset(work->xhwc + hwc, 0, NN_HWC_SLACK * sizeof *work->xhwc);
    if (!input_grad)
        return;
    memset(work->dhwc + hwc, 0, NN_HWC_SLACK * sizeof *work->dhwc);
    size_t taps = (size_t)c_n * k * k;
    memset(work->wrow, 0, (size_t)g->oc * 2 * k * NN_HWC_WROW * sizeof *work->wrow);
    for (int o = 0; o < g->oc; o++)
        for (int dx = 0; dx < 2; dx++)
            for (int kh = 0; kh < k; kh++) {
                float *row = work->wrow + (((size_t)o * 2 + dx) * k + kh) * NN_HWC_WROW;
                for (int kw = 0; kw < k; kw++)
                    for (int c = 0; c < c_n; c++)
                        row[(dx + kw) * c_n + c] = w[o * taps + ((size_t)c * k + kh) * k + kw];
            }
}

void nn_conv_hwc_fold(const nn_conv_geom *g, const float *hacc, float *dw)
{
    int k = g->win.k, c_n = g->win.c;
    size_t taps = (size_t)c_n * k * k;
    for (int o = 0; o < g->oc; o++)
        for (int c = 0; c < c_n; c++)
            for (int kh = 0; kh < k; kh++)
                for (int kw = 0; kw < k; kw++)
                    dw[o * taps + ((size_t)c * k + kh) * k + kw] +=
                        hacc[((size_t)o * k + kh) * NN_HWC_ROW + kw * c_n + c];
}

/*
 * Without branches (the kept ones are random): each candidate is written
 * at the end and counted only when kept.
 */
void nn_conv_gather_tail(const float *grad, const float *y, const int32_t *off, int i, int n, nn_conv_terms *t)
{
    int count = t->count;
    for (; i < n; i++) {
        t->off[count] = off[i];
        t->grad[count] = grad[i];
        count += grad[i] != 0.0f && (!y || y[i] > 0.0f);
    }
    t->count = count;
}

/* As bits: the argmax offsets travel this way too. */
void nn_conv_transpose_tail(const float *src, int stride, int p, int pixels, int channels, float *dst,
                            size_t dst_stride)
{
    for (; p < pixels; p++)
        for (int c = 0; c < channels; c++)
            memcpy(&dst[(size_t)c * dst_stride + p], &src[(size_t)p * stride + c], sizeof *dst);
}

/* ------------------------------------------------------------ portable */

static void portable_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias,
                            float *y)
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

static void portable_transpose(const float *src, int stride, int pixels, int channels, float *dst,
                               size_t dst_stride)
{
    nn_conv_transpose_tail(src, stride, 0, pixels, channels, dst, dst_stride);
}

static void portable_to_channels(const nn_conv_geom *g, const float *y, int pixels, float *dst)
{
    nn_conv_transpose_tail(y, g->ocp, 0, pixels, g->oc, dst, (size_t)pixels);
}

static void portable_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
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

static void portable_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t)
{
    t->count = 0;
    nn_conv_gather_tail(grad, y, off, 0, n, t);
}

static float portable_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
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

static void portable_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                                const nn_conv_terms *t, float *dint)
{
    for (int e = 0; e < t->count; e++)
        for (int r = 0; r < g->taps; r++) {
            float *d = dint + (size_t)t->off[e] * g->cp + tapoff[r];
            for (int lane = 0; lane < NN_VEC; lane++)
                d[lane] += t->grad[e] * wq[r * NN_VEC + lane];
        }
}


const nn_conv_kernels nn_conv_kernels_portable = {
    .isa = ODY_ISA_PORTABLE,
    .direct = portable_direct,
    .pool_relu = portable_pool_relu,
    .gather_terms = portable_gather_terms,
    .weight_grad = portable_weight_grad,
    .input_grad = portable_input_grad,
    .to_channels = portable_to_channels,
    .transpose = portable_transpose,
};

const nn_conv_kernels *nn_conv_kernels_for(ody_cpu_isa isa)
{
#ifdef ODY_X86_KERNELS
    if (isa == ODY_ISA_AVX512)
        return &nn_conv_kernels_avx512;
    if (isa == ODY_ISA_AVX2)
        return &nn_conv_kernels_avx2;
#endif
    return isa == ODY_ISA_PORTABLE ? &nn_conv_kernels_portable : NULL;
}

const nn_conv_kernels *nn_conv_kernels_active(void)
{
    const nn_conv_kernels *k = nn_conv_kernels_for(ody_cpu_isa_active());
    return k ? k : &nn_conv_kernels_portable;
}

bool nn_conv_winograd_fits(const nn_conv_geom *g)
{
    const nn_window *w = &g->win;
    return w->stride == 1 && w->k == NN_WINO_K && g->ocp % 16 == 0 && w->ow % 2 == 0 && w->ow <= 10 && g->wp <= 16 &&
           nn_conv_kernels_active()->winograd;
}

size_t nn_conv_winograd_u_floats(const nn_conv_geom *g)
{
    return nn_wino_u_at(g, g->ocp / 16, 0, 0);
}

size_t nn_conv_winograd_vt_floats(const nn_conv_geom *g)
{
    return nn_wino_vt_at(g, g->win.c, 0);
}

void nn_conv_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y)
{
    nn_conv_kernels_active()->direct(g, xpad, wt, bias, y);
}

enum { SAME_LANES = 16 }; /* pixels per mask: a 16-float vector */

size_t nn_conv_same_masks(const nn_conv_geom *g)
{
    const nn_window *w = &g->win;
    if (w->stride != 1 || w->pad < 1 || w->k != 2 * w->pad + 1 || g->oc > 8 || w->ow < 8)
        return 0;
    size_t vectors = ((size_t)w->oh * w->ow + SAME_LANES - 1) / SAME_LANES;
    return vectors * w->k * w->k;
}

bool nn_conv_same_active(const nn_conv_geom *g)
{
    return nn_conv_same_masks(g) > 0 && nn_conv_kernels_active()->direct_same;
}

void nn_conv_same_fill(const nn_conv_geom *g, uint16_t *masks)
{
    const nn_window *w = &g->win;
    int plane = w->oh * w->ow, vectors = (plane + SAME_LANES - 1) / SAME_LANES;
    for (int v = 0; v < vectors; v++)
        for (int kh = 0; kh < w->k; kh++)
            for (int kw = 0; kw < w->k; kw++) {
                unsigned bits = 0;
                for (int lane = 0; lane < SAME_LANES; lane++) {
                    int p = v * SAME_LANES + lane, iy = p / w->ow + kh - w->pad, ix = p % w->ow + kw - w->pad;
                    if (p < plane && iy >= 0 && iy < w->h && ix >= 0 && ix < w->w)
                        bits |= 1u << lane;
                }
                *masks++ = (uint16_t)bits;
            }
}

void nn_conv_direct_same(const nn_conv_geom *g, const float *x, const uint16_t *masks, const float *wt,
                         const float *bias, float *y)
{
    nn_conv_kernels_active()->direct_same(g, x, masks, wt, bias, y);
}

void nn_conv_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
                       float *out, int32_t *arg)
{
    nn_conv_kernels_active()->pool_relu(g, y, winoff, tmp, out, arg);
}

void nn_conv_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t)
{
    nn_conv_kernels_active()->gather_terms(grad, y, off, n, t);
}

float nn_conv_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                          const nn_conv_terms *t, float *acc)
{
    return nn_conv_kernels_active()->weight_grad(g, xpad, rowoff, t, acc);
}

void nn_conv_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                        const nn_conv_terms *t, float *dint)
{
    nn_conv_kernels_active()->input_grad(g, wq, tapoff, t, dint);
}

void nn_conv_to_channels(const nn_conv_geom *g, const float *src, int pixels, float *dst)
{
    nn_conv_kernels_active()->to_channels(g, src, pixels, dst);
}

void nn_conv_unpad(const nn_conv_geom *g, const float *dint, int stride, float *din)
{
    const nn_window *w = &g->win;
    const nn_conv_kernels *k = nn_conv_kernels_active();
    for (int y = 0; y < w->h; y++) {
        size_t first = ((size_t)(y + w->pad) * g->wp + w->pad) * stride;
        k->transpose(dint + first, stride, w->w, w->c, din + (size_t)y * w->w, (size_t)w->h * w->w);
    }
}
