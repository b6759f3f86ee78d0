/*
 * global_avgpool: (C, H, W) -> (C), the mean of each channel's H*W values
 * (PyTorch's AdaptiveAvgPool2d(1) and a flatten): what a residual net
 * ends with before its classifier.
 */
#include "nn/nn_internal.h"

static void gap_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    (void)info;
    const int c = l->in_shape.dims[0], hw = l->in_shape.dims[1] * l->in_shape.dims[2];
    const float inv = 1.0f / (float)hw;
    for (int r = 0; r < n * c; r++) {
        const float *x = in + (size_t)r * hw;
        float s = 0.0f;
        for (int e = 0; e < hw; e++)
            s += x[e];
        out[r] = s * inv;
    }
}

static void gap_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in, const float *out,
                         const float *dout, float *din)
{
    (void)info;
    (void)in;
    (void)out;
    if (!din)
        return;
    const int c = l->in_shape.dims[0], hw = l->in_shape.dims[1] * l->in_shape.dims[2];
    const float inv = 1.0f / (float)hw;
    for (int r = 0; r < n * c; r++) {
        float g = dout[r] * inv;
        float *dx = din + (size_t)r * hw;
        for (int e = 0; e < hw; e++)
            dx[e] = g;
    }
}

static const ody_layer_ops gap_ops = {
    .kind = "global_avgpool",
    .forward = gap_forward,
    .backward = gap_backward,
};

ody_status nn_global_avgpool_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape,
                                    ody_layer **out)
{
    (void)spec;
    char shape[64];
    if (in_shape.ndim != 3)
        return ody_fail(ctx, ODY_ERR_CONFIG, "global_avgpool averages each channel of a (C, H, W) input, not %s",
                        ody_shape_format(&in_shape, shape, sizeof shape));
    ody_status st = nn_layer_new(ctx, sizeof(ody_layer), &gap_ops, in_shape, out);
    if (st == ODY_OK)
        (*out)->out_shape = ody_shape1(in_shape.dims[0]);
    return st;
}
