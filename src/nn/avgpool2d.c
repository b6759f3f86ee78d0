/*
 * avgpool2d: the mean of each k x k window, per channel. Padded positions
 * count as zeros in the mean (the divisor is always k*k), as PyTorch's
 * AvgPool2d with its default count_include_pad=True.
 *
 *   in (n, C, H, W) -> out (n, C, OH, OW)
 */
#include "nn/nn_internal.h"

#include <string.h>

/* Clip window [o*stride - pad, + k) of one dimension to [0, size). */
static void clip(const nn_window *g, int o, int size, int *lo, int *hi)
{
    *lo = o * g->stride - g->pad;
    *hi = *lo + g->k;
    *lo = *lo < 0 ? 0 : *lo;
    *hi = *hi > size ? size : *hi;
}

static void pool_plane(const nn_window *g, const float *in, float *out)
{
    float scale = 1.0f / (float)(g->k * g->k);
    for (int oy = 0; oy < g->oh; oy++) {
        int y0, y1;
        clip(g, oy, g->h, &y0, &y1);
        for (int ox = 0; ox < g->ow; ox++) {
            int x0, x1;
            clip(g, ox, g->w, &x0, &x1);
            float sum = 0.0f;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    sum += in[y * g->w + x];
            out[oy * g->ow + ox] = sum * scale;
        }
    }
}

static void unpool_plane(const nn_window *g, const float *dout, float *din)
{
    float scale = 1.0f / (float)(g->k * g->k);
    for (int oy = 0; oy < g->oh; oy++) {
        int y0, y1;
        clip(g, oy, g->h, &y0, &y1);
        for (int ox = 0; ox < g->ow; ox++) {
            int x0, x1;
            clip(g, ox, g->w, &x0, &x1);
            float d = dout[oy * g->ow + ox] * scale;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    din[y * g->w + x] += d;
        }
    }
}

static void avgpool2d_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                              float *out)
{
    const nn_window *g = &((nn_pool_layer *)l)->win;
    size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    for (size_t p = 0; p < (size_t)n * g->c; p++)
        pool_plane(g, in + p * in_plane, out + p * out_plane);
}

static void avgpool2d_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                               const float *out, const float *dout, float *din)
{
    if (!din)
        return;
    const nn_window *g = &((nn_pool_layer *)l)->win;
    size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    memset(din, 0, (size_t)n * g->c * in_plane * sizeof *din);
    for (size_t p = 0; p < (size_t)n * g->c; p++)
        unpool_plane(g, dout + p * out_plane, din + p * in_plane);
}

static const ody_layer_ops avgpool2d_ops = {
    .kind = "avgpool2d",
    .forward = avgpool2d_forward,
    .backward = avgpool2d_backward,
};

ody_status nn_avgpool2d_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape,
                               ody_layer **out)
{
    return nn_pool_create(ctx, &avgpool2d_ops, spec, in_shape, out);
}
