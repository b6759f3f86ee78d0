/*
 * conv2d's gemm algorithm: im2col over a group of samples, then one
 * OpenBLAS sgemm per group for each product. Groups keep the work buffers
 * small and independent of the batch (and so of the validation batch):
 *
 *   col  (C*K*K, G*OH*OW)  row (c, kh, kw), column (sample, oh, ow) of the group
 *   W    (OC, C*K*K)       params[0], PyTorch's (OC, C, K, K) flattened
 *   y    (OC, G*OH*OW)     W col; out (G, OC, OH, OW) = y + b, scattered
 *   dy   (OC, G*OH*OW)     dout of the group, gathered
 *
 *   dW  += dy col^T        (beta 1: straight into params[0].grad)
 *   dcol = W^T dy          (into col's place, which dW no longer needs)
 *   din  = col2im(dcol)
 *
 * The group size G depends only on the layer's shape, never on n or the
 * prepared batch: a sample's results, and the order in which a batch's
 * gradient terms are summed, are the same whatever the batch around it
 * (the deterministic mode relies on that within a chunk).
 */
#include "nn/conv_internal.h"

#include <cblas.h>
#include <string.h>

/*
 * Floats of col and y together for one group: 256K (1 MiB, a core's L2).
 * On one thread (AMD EPYC, OpenBLAS 0.3.21) the three sgemms of a group
 * ran at 80-95 GFLOP/s with 256-512 columns and 1 MiB or less of col + y,
 * and slower as the group grew (45-75 GFLOP/s at 5-20 MiB); a layer wider
 * than the budget takes one sample per group.
 */
enum { GROUP_FLOATS = 1 << 18 };

static size_t col_rows(const nn_conv_geom *g) { return (size_t)g->win.c * g->win.k * g->win.k; }
static size_t out_plane(const nn_conv_geom *g) { return (size_t)g->win.oh * g->win.ow; }

/* Samples per group: as many as fit GROUP_FLOATS, at least one. */
static int group_samples(const nn_conv_geom *g)
{
    size_t per_sample = (col_rows(g) + (size_t)g->oc) * out_plane(g);
    size_t samples = GROUP_FLOATS / per_sample;
    return samples < 1 ? 1 : (int)samples;
}

size_t nn_conv_gemm_scratch_floats(const nn_conv_geom *g)
{
    size_t cols = (size_t)group_samples(g) * out_plane(g);
    return ody_arena_round(col_rows(g) * cols) + ody_arena_round((size_t)g->oc * cols);
}

/* What both passes walk: the group size, a sample's floats in and out, col and y (or dy) in scratch. */
typedef struct {
    int group, rows;
    size_t in_numel, out_numel;
    float *col, *y;
} groups;

static groups carve(const nn_conv_geom *g, float *scratch)
{
    int group = group_samples(g);
    return (groups){.group = group,
                    .rows = (int)col_rows(g),
                    .in_numel = (size_t)g->win.c * g->win.h * g->win.w,
                    .out_numel = (size_t)g->oc * out_plane(g),
                    .col = scratch,
                    .y = scratch + ody_arena_round(col_rows(g) * group * out_plane(g))};
}

/*
 * One row (c, kh, kw) of col for n samples of x (n, C, H, W): zeros where
 * the window is in the padding. A sample's block that touches the padding
 * is cleared whole first; stride 1 is kept apart so that it vectorises.
 */
static void im2col_row(const nn_window *w, int n, int c, int kh, int kw, const float *x, float *row)
{
    int ylo, yhi, xlo, xhi;
    nn_window_span(w, kh, w->h, w->oh, &ylo, &yhi);
    nn_window_span(w, kw, w->w, w->ow, &xlo, &xhi);
    size_t in_plane = (size_t)w->h * w->w, plane = (size_t)w->oh * w->ow;
    bool padded = ylo > 0 || yhi < w->oh || xlo > 0 || xhi < w->ow;
    int x0 = kw - w->pad, stride = w->stride; /* input column of output column 0 */
    for (int s = 0; s < n; s++) {
        const float *src = x + ((size_t)s * w->c + c) * in_plane;
        float *dst = row + (size_t)s * plane;
        if (padded)
            memset(dst, 0, plane * sizeof *dst);
        for (int oy = ylo; oy < yhi; oy++) {
            const float *srow = src + (size_t)(oy * stride + kh - w->pad) * w->w;
            float *d = dst + (size_t)oy * w->ow;
            if (stride == 1)
                for (int ox = xlo; ox < xhi; ox++)
                    d[ox] = srow[ox + x0];
            else
                for (int ox = xlo; ox < xhi; ox++)
                    d[ox] = srow[ox * stride + x0];
        }
    }
}

/* The adjoint of im2col_row: add one row of dcol into din (n, C, H, W). */
static void col2im_row(const nn_window *w, int n, int c, int kh, int kw, const float *row, float *din)
{
    int ylo, yhi, xlo, xhi;
    nn_window_span(w, kh, w->h, w->oh, &ylo, &yhi);
    nn_window_span(w, kw, w->w, w->ow, &xlo, &xhi);
    size_t in_plane = (size_t)w->h * w->w, plane = (size_t)w->oh * w->ow;
    int x0 = kw - w->pad;
    for (int s = 0; s < n; s++) {
        float *dst = din + ((size_t)s * w->c + c) * in_plane;
        const float *src = row + (size_t)s * plane;
        for (int oy = ylo; oy < yhi; oy++) {
            float *drow = dst + (size_t)(oy * w->stride + kh - w->pad) * w->w;
            const float *r = src + (size_t)oy * w->ow;
            for (int ox = xlo; ox < xhi; ox++)
                drow[ox * w->stride + x0] += r[ox];
        }
    }
}

/* col (C*K*K, n*OH*OW) of n samples of x. */
static void im2col(const nn_window *w, int n, const float *x, float *col)
{
    size_t cols = (size_t)n * w->oh * w->ow;
    for (int c = 0, r = 0; c < w->c; c++)
        for (int kh = 0; kh < w->k; kh++)
            for (int kw = 0; kw < w->k; kw++, r++)
                im2col_row(w, n, c, kh, kw, x, col + (size_t)r * cols);
}

/* din (n, C, H, W) = col2im(dcol (C*K*K, n*OH*OW)). */
static void col2im(const nn_window *w, int n, const float *dcol, float *din)
{
    size_t cols = (size_t)n * w->oh * w->ow;
    memset(din, 0, (size_t)n * w->c * w->h * w->w * sizeof *din);
    for (int c = 0, r = 0; c < w->c; c++)
        for (int kh = 0; kh < w->k; kh++)
            for (int kw = 0; kw < w->k; kw++, r++)
                col2im_row(w, n, c, kh, kw, dcol + (size_t)r * cols, din);
}

/* out (n, OC, OH, OW) = y (OC, n*OH*OW) + b. */
static void scatter_out(const nn_conv_geom *g, int n, const float *y, const float *b, float *out)
{
    size_t plane = out_plane(g), cols = (size_t)n * plane;
    for (int s = 0; s < n; s++)
        for (int o = 0; o < g->oc; o++) {
            const float *src = y + (size_t)o * cols + (size_t)s * plane;
            float *dst = out + ((size_t)s * g->oc + o) * plane, bias = b[o];
            for (size_t i = 0; i < plane; i++)
                dst[i] = src[i] + bias;
        }
}

/* dy (OC, n*OH*OW) from dout (n, OC, OH, OW); each plane's sum added to db in sample order. */
static void gather_dout(const nn_conv_geom *g, int n, const float *dout, float *dy, float *db)
{
    size_t plane = out_plane(g), cols = (size_t)n * plane;
    for (int o = 0; o < g->oc; o++)
        for (int s = 0; s < n; s++) {
            const float *src = dout + ((size_t)s * g->oc + o) * plane;
            float *dst = dy + (size_t)o * cols + (size_t)s * plane, sum = 0.0f;
            for (size_t i = 0; i < plane; i++) {
                dst[i] = src[i];
                sum += src[i];
            }
            db[o] += sum;
        }
}

void nn_conv_gemm_forward(const nn_conv_geom *g, const float *w, const float *b, float *scratch, int n,
                          const float *in, float *out)
{
    groups p = carve(g, scratch);
    for (int s = 0; s < n; s += p.group) {
        int m = n - s < p.group ? n - s : p.group, cols = m * (int)out_plane(g);
        im2col(&g->win, m, in + s * p.in_numel, p.col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->oc, cols, p.rows, 1.0f, w, p.rows, p.col,
                    cols, 0.0f, p.y, cols);
        scatter_out(g, m, p.y, b, out + s * p.out_numel);
    }
}

void nn_conv_gemm_backward(const nn_conv_geom *g, const float *w, float *dw, float *db, float *scratch,
                           int n, const float *in, const float *dout, float *din)
{
    groups p = carve(g, scratch);
    float *dy = p.y, *dcol = p.col; /* dcol takes col's place once dW has used it */
    for (int s = 0; s < n; s += p.group) {
        int m = n - s < p.group ? n - s : p.group, cols = m * (int)out_plane(g);
        gather_dout(g, m, dout + s * p.out_numel, dy, db);
        im2col(&g->win, m, in + s * p.in_numel, p.col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->oc, p.rows, cols, 1.0f, dy, cols, p.col, cols,
                    1.0f, dw, p.rows);
        if (!din)
            continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p.rows, cols, g->oc, 1.0f, w, p.rows, dy, cols,
                    0.0f, dcol, cols);
        col2im(&g->win, m, dcol, din + s * p.in_numel);
    }
}
