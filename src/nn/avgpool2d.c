/*
 * avgpool2d: the mean of each k x k window, per channel. Padded positions
 * count as zeros in the mean (the divisor is always k*k), as PyTorch's
 * AvgPool2d with its default count_include_pad=True.
 *
 *   in (n, C, H, W) -> out (n, C, OH, OW)
 */
#include "nn/nn_internal.h"

#include <string.h>

/* One input plane (H, W) -> one output plane (OH, OW) of window means. */
static void pool_plane(const nn_window *g, const float *in, float *out)
{
    float scale = 1.0f / (float)(g->k * g->k);
    for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
            nn_rect r = nn_window_at(g, oy, ox);
            float sum = 0.0f;
            for (int y = r.y0; y < r.y1; y++)
                for (int x = r.x0; x < r.x1; x++)
                    sum += in[y * g->w + x];
            out[oy * g->ow + ox] = sum * scale;
        }
}

/* The adjoint of pool_plane: spread each output gradient over its window. */
static void unpool_plane(const nn_window *g, const float *dout, float *din)
{
    float scale = 1.0f / (float)(g->k * g->k);
    for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
            nn_rect r = nn_window_at(g, oy, ox);
            float d = dout[oy * g->ow + ox] * scale;
            for (int y = r.y0; y < r.y1; y++)
                for (int x = r.x0; x < r.x1; x++)
                    din[y * g->w + x] += d;
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
