/*
 * conv2d: 2-D convolution with stride and zero padding, over the whole
 * batch at once: im2col into one column matrix, then one GEMM each for the
 * output, the weight gradient and the input gradient.
 *
 *   col  (C*K*K, n*OH*OW)  row (c, kh, kw), column (sample, oh, ow); saved
 *   W    (OC, C*K*K)       params[0], PyTorch's (OC, C, K, K) flattened
 *   b    (OC)              params[1]
 *   y    (OC, n*OH*OW)  = W col, in scratch; scattered to out (n, OC, OH, OW) + b
 *
 * Backward gathers dout into dy (OC, n*OH*OW) and computes the weight
 * gradient transposed, dW^T (C*K*K, OC) = col dy^T: OpenBLAS runs that
 * shape (long K, tall M) much faster than dy col^T, and the transpose-add
 * into dW is only OC*C*K*K floats.
 */
#include "nn/nn_internal.h"

#include <cblas.h>
#include <string.h>

typedef struct {
    ody_layer base;
    nn_window win;
    int out_channels;
} conv2d_layer;

static size_t col_rows(const conv2d_layer *c) { return (size_t)c->win.c * c->win.k * c->win.k; }
static size_t plane(const conv2d_layer *c) { return (size_t)c->win.oh * c->win.ow; }

static size_t conv2d_scratch_floats(const ody_layer *l, int max_batch)
{
    const conv2d_layer *c = (const conv2d_layer *)l;
    size_t cols = (size_t)max_batch * plane(c);
    /* y or dy (OC, cols); in backward also dW^T (C*K*K, OC) and dcol (C*K*K, cols). */
    return (size_t)c->out_channels * cols + col_rows(c) * c->out_channels + col_rows(c) * cols;
}

static size_t conv2d_saved_floats(const ody_layer *l, int max_batch)
{
    const conv2d_layer *c = (const conv2d_layer *)l;
    return col_rows(c) * (size_t)max_batch * plane(c);
}

/*
 * One row (c, kh, kw) of col for n samples: zeros where the window is in the
 * padding. Rows are short (OW floats), so the copies are plain loops rather
 * than many tiny memcpy/memset calls; a block that touches the padding is
 * cleared whole first.
 */
static void im2col_row(const nn_window *g, int n, int c, int kh, int kw, const float *in, float *row)
{
    int ylo, yhi, xlo, xhi;
    nn_window_span(g, kh, g->h, g->oh, &ylo, &yhi);
    nn_window_span(g, kw, g->w, g->ow, &xlo, &xhi);
    size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    bool padded = ylo > 0 || yhi < g->oh || xlo > 0 || xhi < g->ow;
    int x0 = kw - g->pad, stride = g->stride; /* input column of output column 0 */
    for (int s = 0; s < n; s++) {
        const float *src = in + ((size_t)s * g->c + c) * in_plane;
        float *dst = row + (size_t)s * out_plane;
        if (padded)
            memset(dst, 0, out_plane * sizeof *dst);
        for (int oy = ylo; oy < yhi; oy++) {
            const float *srow = src + (size_t)(oy * stride + kh - g->pad) * g->w;
            float *d = dst + (size_t)oy * g->ow;
            if (stride == 1) /* the common case, kept apart so that it vectorises */
                for (int ox = xlo; ox < xhi; ox++)
                    d[ox] = srow[ox + x0];
            else
                for (int ox = xlo; ox < xhi; ox++)
                    d[ox] = srow[ox * stride + x0];
        }
    }
}

/* The adjoint of im2col_row: add one row of dcol into din. */
static void col2im_row(const nn_window *g, int n, int c, int kh, int kw, const float *row, float *din)
{
    int ylo, yhi, xlo, xhi;
    nn_window_span(g, kh, g->h, g->oh, &ylo, &yhi);
    nn_window_span(g, kw, g->w, g->ow, &xlo, &xhi);
    size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    for (int s = 0; s < n; s++) {
        float *dst = din + ((size_t)s * g->c + c) * in_plane;
        const float *src = row + (size_t)s * out_plane;
        for (int oy = ylo; oy < yhi; oy++) {
            float *drow = dst + (size_t)(oy * g->stride + kh - g->pad) * g->w;
            const float *r = src + (size_t)oy * g->ow;
            int x0 = kw - g->pad;
            for (int ox = xlo; ox < xhi; ox++)
                drow[ox * g->stride + x0] += r[ox];
        }
    }
}

static void conv2d_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    conv2d_layer *c = (conv2d_layer *)l;
    const nn_window *g = &c->win;
    size_t rows = col_rows(c), cols = (size_t)n * plane(c), p = plane(c);
    float *col = l->saved, *y = l->scratch;
    for (int ch = 0; ch < g->c; ch++)
        for (int kh = 0; kh < g->k; kh++)
            for (int kw = 0; kw < g->k; kw++)
                im2col_row(g, n, ch, kh, kw, in, col + (((size_t)ch * g->k + kh) * g->k + kw) * cols);
    int oc_n = c->out_channels;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc_n, (int)cols, (int)rows, 1.0f,
                l->params[0].value, (int)rows, col, (int)cols, 0.0f, y, (int)cols);
    const float *bias = l->params[1].value;
    for (int s = 0; s < n; s++)
        for (int oc = 0; oc < oc_n; oc++) {
            const float *src = y + (size_t)oc * cols + (size_t)s * p;
            float *dst = out + ((size_t)s * oc_n + oc) * p, b = bias[oc];
            for (size_t i = 0; i < p; i++)
                dst[i] = src[i] + b;
        }
}

/* dy (OC, n*OH*OW) from dout (n, OC, OH, OW), adding each channel's sum into the bias gradient. */
static void gather_dout(const conv2d_layer *c, int n, const float *dout, float *dy, float *dbias)
{
    size_t p = plane(c), cols = (size_t)n * p;
    for (int oc = 0; oc < c->out_channels; oc++) {
        double sum = 0.0; /* over n*OH*OW terms: float per plane, double across */
        for (int s = 0; s < n; s++) {
            const float *src = dout + ((size_t)s * c->out_channels + oc) * p;
            float *dst = dy + (size_t)oc * cols + (size_t)s * p, plane_sum = 0.0f;
            for (size_t i = 0; i < p; i++) {
                dst[i] = src[i];
                plane_sum += src[i];
            }
            sum += plane_sum;
        }
        dbias[oc] += (float)sum;
    }
}

static void conv2d_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                            const float *out, const float *dout, float *din)
{
    conv2d_layer *c = (conv2d_layer *)l;
    const nn_window *g = &c->win;
    int oc_n = c->out_channels;
    size_t rows = col_rows(c), cols = (size_t)n * plane(c);
    float *dy = l->scratch, *dwt = dy + (size_t)oc_n * cols, *dcol = dwt + rows * oc_n;
    gather_dout(c, n, dout, dy, l->params[1].grad);
    /* dW^T (C*K*K, OC) = col dy^T, then dW (OC, C*K*K) += its transpose */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, oc_n, (int)cols, 1.0f, l->saved,
                (int)cols, dy, (int)cols, 0.0f, dwt, oc_n);
    float *dw = l->params[0].grad;
    for (int oc = 0; oc < oc_n; oc++)
        for (size_t r = 0; r < rows; r++)
            dw[(size_t)oc * rows + r] += dwt[r * oc_n + oc];
    if (!din)
        return;
    /* dcol (C*K*K, cols) = W^T dy, then scattered back onto the input positions. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)cols, oc_n, 1.0f,
                l->params[0].value, (int)rows, dy, (int)cols, 0.0f, dcol, (int)cols);
    memset(din, 0, (size_t)n * nn_numel(l->in_shape) * sizeof *din);
    for (int ch = 0; ch < g->c; ch++)
        for (int kh = 0; kh < g->k; kh++)
            for (int kw = 0; kw < g->k; kw++)
                col2im_row(g, n, ch, kh, kw, dcol + (((size_t)ch * g->k + kh) * g->k + kw) * cols, din);
}

static const ody_layer_ops conv2d_ops = {
    .kind = "conv2d",
    .scratch_floats = conv2d_scratch_floats,
    .saved_floats = conv2d_saved_floats,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
};

ody_status nn_conv2d_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    *out = NULL;
    nn_window win;
    int k = nn_arg(spec, NN_CONV_KERNEL);
    ody_status st = nn_window_make(ctx, "conv2d", in_shape, k, nn_arg(spec, NN_CONV_STRIDE),
                                   nn_arg(spec, NN_CONV_PADDING), &win);
    if (st != ODY_OK)
        return st;
    ody_layer *l;
    if ((st = nn_layer_new(ctx, sizeof(conv2d_layer), &conv2d_ops, in_shape, &l)) != ODY_OK)
        return st;
    conv2d_layer *c = (conv2d_layer *)l;
    c->win = win;
    c->out_channels = nn_arg(spec, NN_CONV_OUT_CHANNELS);
    l->out_shape = ody_shape3(c->out_channels, win.oh, win.ow);
    int64_t fan_in = (int64_t)win.c * k * k, fan_out = (int64_t)c->out_channels * k * k;
    nn_param_set(l, 0, "weight", ody_shape4(c->out_channels, win.c, k, k), fan_in, fan_out);
    nn_param_set(l, 1, "bias", ody_shape1(c->out_channels), fan_in, fan_out);
    *out = l;
    return ODY_OK;
}
